/* block.h — mitmproxy's block_global / block_private: which client
 * addresses may use the proxy.  Loopback is always allowed; "private" and
 * "global" follow Python's ipaddress (IANA special-purpose registries), as
 * mitmproxy does, with IPv4-mapped IPv6 addresses judged as IPv4. */
#ifndef MITMLUA_BLOCK_H
#define MITMLUA_BLOCK_H

#include <stdbool.h>
#include <sys/socket.h>

enum block_class { BLOCK_LOOPBACK, BLOCK_PRIVATE, BLOCK_GLOBAL, BLOCK_OTHER };

enum block_class block_classify(const struct sockaddr *sa);
/* NULL when the client may connect, else the option that refuses it
 * ("block_global" or "block_private"). */
const char *block_client(const struct sockaddr *sa, bool block_global, bool block_private);

#endif
