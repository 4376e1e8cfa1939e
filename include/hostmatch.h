/* hostmatch.h — mitmproxy's ignore_hosts / allow_hosts: case-insensitive
 * regular expressions searched in "host:port" of a connection's target. */
#ifndef MITMLUA_HOSTMATCH_H
#define MITMLUA_HOSTMATCH_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef struct hostmatch hostmatch;

/* NULL with "option 'pattern': reason at offset N" in err when a pattern
 * does not compile; n == 0 gives a matcher that never matches. */
hostmatch *hostmatch_new(char *const *patterns, size_t n, const char *option, char *err, size_t errsz);
bool hostmatch_any(const hostmatch *m, const char *host, uint16_t port);
/* tcp_hosts: mitmproxy matches the host alone; ignore_hosts here matches
 * host:port.  Either form matching counts, so both styles of pattern work. */
bool hostmatch_any_host(const hostmatch *m, const char *host, uint16_t port);
size_t hostmatch_count(const hostmatch *m);
void hostmatch_free(hostmatch *m);

#endif
