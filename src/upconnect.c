/* upconnect.c — the CONNECT request to an upstream proxy (upconnect.h): a
 * request of its own, never recorded, written with the HTTP/1 serialiser so
 * that every header is checked on the way out. */
#include "upconnect.h"

#include <stdio.h>
#include <string.h>

#include "h1.h"

/* The CONNECT request as mitmproxy's HttpUpstreamProxy makes it. */
static flow_request *upconnect_request(const worker *w, const char *host, uint16_t port)
{
    flow_request *r = flow_request_new();
    char hb[300], authority[320];
    snprintf(authority, sizeof authority, "%s:%u", flow_host_for_url(host, hb, sizeof hb), port);
    if (!r || flow_strset(&r->method, "CONNECT") < 0 || flow_strset(&r->scheme, "http") < 0 ||
        flow_strset(&r->host, host) < 0 || flow_strset(&r->authority, authority) < 0 ||
        flow_strset(&r->path, "") < 0 || flow_strset(&r->http_version, "HTTP/1.1") < 0)
        goto fail;
    r->port = port;
    r->timestamp_start = r->timestamp_end = flow_now();
    if (w->sh->o->http_connect_send_host_header && hdrs_set(&r->headers, "Host", authority, strlen(authority)) < 0)
        goto fail;
    if (w->upstream_auth &&
        hdrs_set(&r->headers, "Proxy-Authorization", w->upstream_auth, strlen(w->upstream_auth)) < 0)
        goto fail;
    return r;
fail:
    flow_request_free(r);
    return NULL;
}

int upconnect_write(worker *w, const flow_conn *client, const char *host, uint16_t port, struct evbuffer *out,
                    char *err, size_t errsz)
{
    (void)client;
    flow_request *r = upconnect_request(w, host, port);
    if (!r) {
        snprintf(err, errsz, "out of memory");
        return -1;
    }
    int rc = h1_write_request_head(out, r, false);
    if (rc < 0)
        snprintf(err, errsz, "cannot write the CONNECT request to the upstream proxy for %s:%u", host, port);
    flow_request_free(r);
    return rc;
}
