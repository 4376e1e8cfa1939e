/* proxyauth.h — `--proxyauth`: who may use the proxy.  mitmproxy's option
 * syntax: "user:pass", "any" (any credentials, but some must be sent) or
 * "@FILE" (an Apache htpasswd file: {SHA}, bcrypt $2y$/$2b$/$2a$ and the
 * crypt(3) schemes $1$ $5$ $6$).  Checks HTTP Basic credentials in constant
 * time.  Knows nothing of sockets: the proxy asks, this module answers.
 * A proxyauth is read-only once built, so workers share one. */
#ifndef MITMLUA_PROXYAUTH_H
#define MITMLUA_PROXYAUTH_H

#include <stdbool.h>
#include <stddef.h>

#include "flow.h"

typedef struct proxyauth proxyauth;

/* Build a checker from the option's value.  NULL with err ("proxyauth:
 * FILE line 3: unsupported hash ...") on a bad spec or file. */
proxyauth *proxyauth_new(const char *spec, char *err, size_t errsz);
void proxyauth_free(proxyauth *pa);

/* Does this user/password pair pass? */
bool proxyauth_check(const proxyauth *pa, const char *user, size_t ulen, const char *pass, size_t plen);

/* Check the value of a (Proxy-)Authorization header ("Basic base64").
 * `cache` (may be NULL) remembers, per connection, the last value that
 * passed: a client that repeats it is not hashed again (bcrypt costs tens of
 * milliseconds, which would stall the worker on every request).  The caller
 * frees *cache with free(). */
bool proxyauth_check_header(const proxyauth *pa, const char *value, size_t vlen, char **cache);

/* The answer to a request without valid credentials: 407 with
 * Proxy-Authenticate when acting as a proxy, 401 with WWW-Authenticate in
 * reverse mode (as mitmproxy); "Connection: close", since the request's body
 * (if any) is not read.  NULL when out of memory. */
flow_response *proxyauth_challenge(bool as_proxy);
/* The header carrying the credentials in that role. */
const char *proxyauth_header(bool as_proxy);

/* The realm sent in Proxy-Authenticate / WWW-Authenticate. */
#define PROXYAUTH_REALM "mitmlua"

#endif
