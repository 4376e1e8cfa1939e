/* httpc.c — one HTTP request from code on a worker's loop (see httpc.h).
 *
 * The request becomes a flow of its own and goes out as an upstream
 * exchange: connecting, TLS, verification, HTTP/1.1 or HTTP/2 framing and
 * the response limits are upstream.c's, so a script's request meets a
 * server exactly as a proxied one does.  What is ours: the URL, an
 * overall deadline, and a callback that is never run from httpc_start
 * (the exchange starts on the next loop turn, as it may fail at once). */
#include "httpc.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <event2/event.h>

#include "h1.h"
#include "opts.h"
#include "upstream.h"
#include "worker.h"

struct httpc_req {
    exch x;                 /* first: the owner is the request itself */
    flow *f;                /* the request, and the response as it comes */
    struct event *start;    /* runs exch_start from the loop */
    struct event *deadline; /* timeout_s, or NULL */
    httpc_done_fn cb;
    void *arg;
};

static void req_free(httpc_req *r)
{
    exch_close(&r->x);
    if (r->start)
        event_free(r->start);
    if (r->deadline)
        event_free(r->deadline);
    flow_free(r->f);
    free(r);
}

/* The one way out: the callback, then nothing is left. */
static void finish(httpc_req *r, const char *err)
{
    exch_close(&r->x); /* one connection per request: never kept */
    const flow_response *s = err ? NULL : r->f->response;
    httpc_result res = {
        .status = s ? s->status_code : 0,
        .reason = s && s->reason ? s->reason : "",
        .headers = s ? &s->headers : NULL,
        .body = s && s->content.p ? s->content.p : "",
        .body_len = s ? s->content.len : 0,
        .err = err,
    };
    if (!err && !s)
        res.err = "no response";
    r->cb(r->arg, &res);
    req_free(r);
}

/* ---- the exchange's callbacks -------------------------------------------- */

static void x_done(exch *x)
{
    finish(x->owner, NULL);
}

static void x_failed(exch *x, int status, const char *msg)
{
    (void)status;
    finish(x->owner, msg && *msg ? msg : "request failed");
}

static const exch_ops httpc_ops = {
    .head = NULL, .interim = NULL, .done = x_done, .failed = x_failed, .stream_head = NULL, .stream_data = NULL,
};

static void start_cb(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    httpc_req *r = arg;
    exch_start(&r->x, r->f);
}

static void deadline_cb(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    finish(arg, "timeout");
}

/* ---- building the request ------------------------------------------------ */

/* scheme, host, port and path of `url` into q: the authority as
 * opts_parse_url reads it, the rest as the origin-form target. */
static int parse_url(flow_request *q, const char *url, char *err, size_t errsz)
{
    const char *sep = url ? strstr(url, "://") : NULL;
    if (!sep) {
        snprintf(err, errsz, "bad URL '%s': expected http(s)://host[:port][/path]", url ? url : "");
        return -1;
    }
    const char *auth = sep + 3;
    size_t alen = strcspn(auth, "/?#");
    if (memchr(auth, '@', alen)) {
        snprintf(err, errsz, "bad URL '%s': user information is not supported", url);
        return -1;
    }
    size_t blen = (size_t)(auth - url) + alen;
    char *base = strndup(url, blen);
    if (!base) {
        snprintf(err, errsz, "out of memory");
        return -1;
    }
    opts_url pu;
    char why[512];
    int rc = opts_parse_url(base, &pu, why, sizeof why);
    free(base);
    if (rc < 0) { /* opts' line names the authority alone: name the URL */
        const char *w = strstr(why, "': ");
        snprintf(err, errsz, "bad URL '%s': %s", url, w ? w + 3 : why);
        return -1;
    }
    for (const char *c = pu.host; *c; c++)
        if ((unsigned char)*c <= 0x20 || (unsigned char)*c >= 0x7f || strchr("\"<>\\^`{|}[]/?#%", *c)) {
            snprintf(err, errsz, "bad URL '%s': invalid character in the host", url);
            opts_url_free(&pu);
            return -1;
        }
    const char *path = url + blen;
    size_t plen = strcspn(path, "#");
    for (size_t i = 0; i < plen; i++)
        if ((unsigned char)path[i] <= 0x20 || path[i] == 0x7f) {
            snprintf(err, errsz, "bad URL '%s': invalid character in the path", url);
            opts_url_free(&pu);
            return -1;
        }
    char *p = malloc(plen + 2);
    if (p) {
        p[0] = '/';  /* "" and "?q" get the root */
        memcpy(p + (path[0] != '/'), path, plen);
        p[plen + (path[0] != '/')] = '\0';
    }
    q->scheme = pu.scheme;
    q->host = pu.host;
    q->port = pu.port;
    q->path = p;
    if (!p) {
        snprintf(err, errsz, "out of memory");
        return -1;
    }
    return 0;
}

static bool wants_length(const char *method)
{
    return !strcmp(method, "POST") || !strcmp(method, "PUT") || !strcmp(method, "PATCH");
}

/* The request's head and body in q.  0, or -1 with err. */
static int build_request(flow_request *q, const char *method, const char *url, const hdrs *h, const char *body,
                         size_t body_len, char *err, size_t errsz)
{
    if (!h1_valid_name(method, strlen(method)) || !strcmp(method, "CONNECT")) {
        snprintf(err, errsz, "bad method '%s'", method);
        return -1;
    }
    if (parse_url(q, url, err, errsz) < 0)
        return -1;
    for (size_t i = 0; h && i < h->n; i++) {
        const hdr_field *fl = &h->v[i];
        if (!h1_valid_name(fl->name, fl->name_len) || !h1_valid_value(fl->value, fl->value_len)) {
            snprintf(err, errsz, "bad header '%.*s'", (int)(fl->name_len > 64 ? 64 : fl->name_len), fl->name);
            return -1;
        }
    }
    char ab[320];
    const char *authority = flow_authority(q->scheme, q->host, q->port, ab, sizeof ab);
    if (flow_strset(&q->method, method) < 0 || flow_strset(&q->http_version, "HTTP/1.1") < 0 ||
        flow_strset(&q->authority, authority) < 0 || (h && hdrs_copy(&q->headers, h) < 0) ||
        (!hdrs_get(&q->headers, "host", NULL) && hdrs_set(&q->headers, "Host", authority, strlen(authority)) < 0) ||
        (body_len && bytes_set(&q->content, body, body_len) < 0) ||
        ((body_len || wants_length(method)) && h1_fix_length(&q->headers, body_len, true) < 0)) {
        snprintf(err, errsz, "out of memory");
        return -1;
    }
    q->timestamp_start = flow_now();
    return 0;
}

/* ---- the API ------------------------------------------------------------- */

httpc_req *httpc_start(worker *w, const char *method, const char *url, const hdrs *h, const char *body,
                       size_t body_len, double timeout_s, httpc_done_fn cb, void *arg, char *err, size_t errsz)
{
    httpc_req *r = calloc(1, sizeof *r);
    if (!r || !(r->f = flow_new()) || !(r->f->request = flow_request_new()) ||
        !(r->start = event_new(w->base, -1, 0, start_cb, r)) ||
        (timeout_s > 0 && !(r->deadline = evtimer_new(w->base, deadline_cb, r)))) {
        snprintf(err, errsz, "out of memory");
        goto fail;
    }
    exch_init(&r->x, w, &httpc_ops, r);
    if (build_request(r->f->request, method ? method : "GET", url, h, body, body_len, err, errsz) < 0)
        goto fail;
    /* upstream mode: an https URL through the upstream proxy's CONNECT
     * (upstream.c sends upstream_auth with it), as an intercepted TLS
     * request goes; http in absolute form, with our credentials */
    r->x.in_tunnel = strcmp(r->f->request->scheme, "https") == 0;
    if (w->sh->o->mode == MODE_UPSTREAM && !r->x.in_tunnel && w->upstream_auth &&
        hdrs_set(&r->f->request->headers, "Proxy-Authorization", w->upstream_auth, strlen(w->upstream_auth)) < 0) {
        snprintf(err, errsz, "out of memory");
        goto fail;
    }
    r->cb = cb;
    r->arg = arg;
    if (r->deadline) {
        double s = timeout_s > 1e6 ? 1e6 : timeout_s;
        struct timeval tv = {(time_t)s, (suseconds_t)((s - (double)(time_t)s) * 1e6)};
        evtimer_add(r->deadline, &tv);
    }
    event_active(r->start, EV_TIMEOUT, 1);
    return r;
fail:
    if (r)
        req_free(r);
    return NULL;
}

void httpc_cancel(httpc_req *r)
{
    if (r)
        req_free(r);
}
