/* httpc.h — an HTTP client for code running on a worker's event loop (the
 * C side of mitm.http.request): one request to an http:// or https:// URL,
 * answered through a callback, never blocking the loop.
 *
 * The request is an upstream exchange (upstream.h) of its own, so it goes
 * out exactly as a proxied request would: the worker's resolver (with
 * RFC 6761's .localhost and .invalid), the upstream TLS context (system
 * store plus ssl_verify_upstream_trusted_ca, -k turning verification off,
 * SNI and the certificate checked against the URL's host), HTTP/2 when the
 * option http2 is on and the server picks it, and in upstream mode through
 * the upstream proxy (https by CONNECT) as the proxy's own requests go.
 * Never through mitmlua's own listener.  connect_timeout, read_timeout and
 * body_size_limit apply as to any upstream; the request's own timeout
 * bounds the whole exchange.  One connection per request, closed at the
 * end.  Response bodies are returned raw (still content-encoded). */
#ifndef MITMLUA_HTTPC_H
#define MITMLUA_HTTPC_H

#include <stddef.h>

#include "flow.h"

typedef struct worker worker;
typedef struct httpc_req httpc_req;   /* one request in flight */

typedef struct httpc_result {
    int status;              /* 0 when err is set */
    const char *reason;      /* the server's reason phrase, may be "" */
    const hdrs *headers;     /* the response's headers; NULL when err is set */
    const char *body;        /* NUL-terminated past body_len; "" when none */
    size_t body_len;
    const char *err;         /* NULL, or one line: "timeout", "error
                              * connecting to 127.0.0.1:1: Connection
                              * refused", "upstream certificate verification
                              * failed for …: …", … */
} httpc_result;

/* Called exactly once per request started, from the worker's loop (never
 * from inside httpc_start).  Everything in `res` is valid during the call
 * only; the request is freed when it returns. */
typedef void (*httpc_done_fn)(void *arg, const httpc_result *res);

/* Send `method` (NULL: "GET") to `url` on w's event loop.  `h` (may be
 * NULL) is copied; a Host header is added when it has none, and
 * Content-Length when there is a body (or the method is POST, PUT or
 * PATCH).  `body` is copied.  timeout_s > 0 bounds connect, TLS and the
 * whole response (err "timeout"); <= 0 leaves only connect_timeout and
 * read_timeout.  NULL with a one-line err (a bad URL, method or header,
 * out of memory): then cb is never called. */
httpc_req *httpc_start(worker *w, const char *method, const char *url, const hdrs *h, const char *body,
                       size_t body_len, double timeout_s, httpc_done_fn cb, void *arg, char *err, size_t errsz);
/* Abandon a request any time before its callback runs (not from inside
 * it): the callback is not called, and everything is freed now. */
void httpc_cancel(httpc_req *r);

#endif
