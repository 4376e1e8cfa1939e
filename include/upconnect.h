/* upconnect.h — the CONNECT request mitmlua sends to an upstream proxy
 * (upstream mode) for a tunnel to a target, for intercepted connections
 * (upstream.c) and passed-through ones (tunnel.c) alike.  Built as mitmproxy
 * 11+ builds it: "CONNECT host:port HTTP/1.1", a Host header unless
 * http_connect_send_host_header is off, then the scripts'
 * http_connect_upstream hooks, then Proxy-Authorization from upstream_auth
 * (mitmproxy's addon order: scripts before upstream_auth). */
#ifndef MITMLUA_UPCONNECT_H
#define MITMLUA_UPCONNECT_H

#include <stddef.h>
#include <stdint.h>
#include <event2/buffer.h>

#include "flow.h"
#include "worker.h"

/* Append the CONNECT request head for host:port to out, after the scripts'
 * http_connect_upstream hooks saw it (and may have changed its headers)
 * and upstream_auth's header was set.
 * `client` is the client connection the tunnel serves (NULL when none, e.g.
 * a script's own request).  0, or -1 with err (nothing was written): out of
 * memory, a hook that ran past script_timeout or killed the flow, a header a
 * hook made invalid. */
int upconnect_write(worker *w, const flow_conn *client, const char *host, uint16_t port, struct evbuffer *out,
                    char *err, size_t errsz);

#endif
