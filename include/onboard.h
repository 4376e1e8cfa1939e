/* onboard.h — the http://mitm.it/ onboarding page: an HTML page on trusting
 * mitmlua's CA, and downloads of the CA certificate (never its key) from the
 * confdir.  Builds complete responses; knows nothing of sockets.  Stateless. */
#ifndef MITMLUA_ONBOARD_H
#define MITMLUA_ONBOARD_H

#include <stdbool.h>
#include <stddef.h>

#include "flow.h"

/* The host the proxy answers itself instead of forwarding (as mitmproxy),
 * unless onboarding_host names another. */
#define ONBOARD_HOST "mitm.it"

/* true when a request for `host` belongs to the onboarding app served under
 * `app_host` (NULL: ONBOARD_HOST) (case-insensitive; a trailing dot is
 * allowed). */
bool onboard_is_host(const char *app_host, const char *host);

/* Build the response to `path` (origin-form, query allowed) on mitm.it:
 *   /          the HTML page          /cert/pem  mitmlua-ca-cert.pem
 *   /cert/p12  mitmlua-ca-cert.p12    /cert/cer  mitmlua-ca-cert.cer
 * anything else a 404 page; a certificate file missing from `confdir`, a 500
 * page saying so.  Paths are matched exactly against that fixed table and
 * never joined to a file name, so the key file mitmlua-ca.pem cannot be
 * reached.  The body is always filled in: for HEAD the caller drops it.
 * Returns 0 with *out set (caller frees with flow_response_free), or -1 with
 * err (out of memory) and *out NULL. */
int onboard_handle(const char *confdir, const char *path, flow_response **out,
                   char *err, size_t errsz);

#endif
