/* addons.h — mitmdump's built-in flow-changing options, in C: anticache,
 * anticomp, block_list, map_remote (-M), map_local, modify_body (-B), modify_headers
 * (-H), stickyauth and stickycookie.  They run before the Lua hooks
 * (request side before `request`, response side before `response`), in
 * mitmproxy's addon order.
 *
 * One `addons` object serves every worker: the compiled options are
 * read-only, and the sticky cookie jar and auth table (state that must be
 * shared, as in mitmproxy) sit behind a mutex.  Also meant for replayed
 * flows: client replay calls addons_request() for each flow it sends. */
#ifndef MITMLUA_ADDONS_H
#define MITMLUA_ADDONS_H

#include <stdbool.h>
#include <stddef.h>

#include "flow.h"
#include "opts.h"

typedef struct addons addons;

/* Compile every option; NULL with a one-line message in err on a bad value
 * (naming the option, the value and the column).  Returns NULL without an
 * error (err[0] == '\0') when no option is set: nothing to do. */
addons *addons_new(const opts *o, char *err, size_t errsz);
void addons_free(addons *a);

/* block_list, first of the request addons (before server replay, as in
 * mitmproxy's addon order): a matching request gets an empty response with
 * the rule's status (f->response), or with 444 is killed (f->killed); both
 * set metadata "blocklisted".  a may be NULL. */
void addons_block(addons *a, flow *f);

/* A complete request, before the Lua `request` hook.  Returns true when an
 * addon answered it (map_local: f->response is set, 200 or 404): send that
 * response instead of contacting the server.  a may be NULL. */
bool addons_request(addons *a, flow *f);

/* A complete response (from the server or made by the proxy), before the
 * Lua `response` hook.  a may be NULL. */
void addons_response(addons *a, flow *f);

/* Reverse mode, unless keep_alt_svc_header (mitmproxy's update_alt_svc):
 * every host:port in the Alt-Svc header (fields joined into one) becomes
 * :port, the proxy's own port, so that clients stay on the proxy. */
void addons_alt_svc(flow_response *resp, int port);

#endif
