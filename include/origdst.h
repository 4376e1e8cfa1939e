/* origdst.h — transparent mode on Linux: where a redirected connection was
 * originally going (netfilter's SO_ORIGINAL_DST / IP6T_SO_ORIGINAL_DST). */
#ifndef MITMLUA_ORIGDST_H
#define MITMLUA_ORIGDST_H

#include <stddef.h>
#include <stdint.h>

/* 0 with the destination's IP literal and port, or -1 with err (no
 * netfilter redirection for this socket, or not Linux).  A socket that was
 * not redirected at all (its original destination is our own address)
 * is refused too: relaying it would connect the proxy to itself. */
int origdst_get(int fd, char *host, size_t hostsz, uint16_t *port, char *err, size_t errsz);

#endif
