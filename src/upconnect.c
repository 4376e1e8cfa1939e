/* upconnect.c — the CONNECT request to an upstream proxy (upconnect.h): a
 * flow of its own that the http_connect_upstream hook sees and may change,
 * never recorded, written with the HTTP/1 serialiser so that every header
 * is checked on the way out. */
#include "upconnect.h"

#include <stdio.h>
#include <string.h>

#include "h1.h"
#include "script.h"

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
    return r;
fail:
    flow_request_free(r);
    return NULL;
}

/* mitmproxy's http_connect_upstream: the request as an HTTP flow between
 * the client and the upstream proxy, never recorded; the hooks run to
 * completion (they cannot wait: the connection is being set up).  0, or -1
 * with err when a hook failed past its limits or killed the flow. */
static int upconnect_hook(worker *w, const flow_conn *client, flow *f, char *err, size_t errsz)
{
    const opts *o = w->sh->o;
    if ((client && flow_conn_copy(&f->client, client) < 0) ||
        flow_strset(&f->server.address_host, o->mode_url.host) < 0) {
        snprintf(err, errsz, "out of memory");
        return -1;
    }
    f->server.address_port = o->mode_url.port;
    int rc = script_env_run(w->scripts, SCRIPT_HOOK_HTTP_CONNECT_UPSTREAM, f);
    if (rc < 0)
        snprintf(err, errsz, "%s", f->error && f->error->msg ? f->error->msg : "http_connect_upstream hook failed");
    else if (f->killed)
        snprintf(err, errsz, "CONNECT to the upstream proxy killed by a script");
    script_env_forget(w->scripts, f);
    return rc < 0 || f->killed ? -1 : 0;
}

int upconnect_write(worker *w, const flow_conn *client, const char *host, uint16_t port, struct evbuffer *out,
                    char *err, size_t errsz)
{
    flow *f = flow_new();
    if (!f || !(f->request = upconnect_request(w, host, port))) {
        flow_free(f);
        snprintf(err, errsz, "out of memory");
        return -1;
    }
    int rc = 0;
    if (script_env_has_hook(w->scripts, SCRIPT_HOOK_HTTP_CONNECT_UPSTREAM))
        rc = upconnect_hook(w, client, f, err, errsz);
    /* upstream_auth after the scripts, as mitmproxy's addon order has it:
     * its Proxy-Authorization replaces one a hook set */
    if (rc == 0 && w->upstream_auth &&
        hdrs_set(&f->request->headers, "Proxy-Authorization", w->upstream_auth, strlen(w->upstream_auth)) < 0) {
        snprintf(err, errsz, "out of memory");
        rc = -1;
    }
    /* the serialiser refuses a header a hook made invalid (CR, LF, ...) */
    if (rc == 0 && (rc = h1_write_request_head(out, f->request, false)) < 0)
        snprintf(err, errsz, "cannot write the CONNECT request to the upstream proxy for %s:%u", host, port);
    flow_free(f);
    return rc;
}
