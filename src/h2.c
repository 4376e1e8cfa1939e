/* h2.c — HTTP/2 connections over nghttp2's in-memory API.  nghttp2 does the
 * framing, HPACK, flow control and most of RFC 9113's message checks; we map
 * streams to flow messages, count what nghttp2 1.52 does not bound (decoded
 * header size, body size), and turn its lenient defaults strict (invalid
 * header values reset the stream instead of being silently dropped). */
#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <nghttp2/nghttp2.h>

#include "h2.h"

/* RFC 9113 §8.1 lets a server answer before the upload ends and stop it
 * with RST_STREAM(NO_ERROR), but curl < 8 then discards the answer.  So
 * the rest of a refused upload is read and dropped, up to this much. */
#define H2_DISCARD_MAX (4u << 20)

typedef struct h2_stream {
    struct h2_stream *prev, *next;
    int32_t sid;
    flow_request *req;     /* server side: the request being received */
    flow_response *resp;   /* client side: the response being received */
    size_t hdr_bytes;      /* decoded size of the current header block */
    size_t hdr_fields;
    ssize_t cookie_idx;    /* request field holding the joined cookie crumbs */
    bool in_trailers;      /* the current header block is a trailer section */
    bool too_big;          /* the current header block broke a limit */
    bool refused;          /* we answered or reset it: ignore what follows */
    bool stop_peer;        /* we answered before the upload ended */
    size_t discarded;      /* upload bytes dropped since */
    bytes out;             /* body to send */
    size_t out_off;
    hdrs out_trailers;
    bool out_streaming;    /* the body comes piecewise (h2_stream_write) */
    bool out_eof;          /* ... and its end was given (h2_stream_end) */
    bool out_deferred;     /* read_body ran dry: resume when more comes */
    bool resp_lent;        /* client side: resp is the caller's (on_head) */
    bool reset_sent;       /* RST_STREAM is out (ours or nghttp2's): once is enough */
} h2_stream;

struct h2_conn {
    nghttp2_session *s;
    bool server;
    h2_limits lim;
    h2_events ev;
    void *ud;
    h2_stream *streams;
    size_t nstreams;
    char err[160];
};

void h2_limits_default(h2_limits *l)
{
    l->max_header_list = 64 * 1024;
    l->max_headers = 256;
    l->max_body = 0;
    l->max_streams = 100;
    l->window = 1024 * 1024;
}

static void set_err(h2_conn *c, const char *fmt, const char *arg)
{
    snprintf(c->err, sizeof c->err, fmt, arg);
}

/* ---- streams ------------------------------------------------------------ */

static h2_stream *stream_new(h2_conn *c)
{
    h2_stream *st = calloc(1, sizeof *st);
    if (!st)
        return NULL;
    st->cookie_idx = -1;
    st->next = c->streams;
    if (c->streams)
        c->streams->prev = st;
    c->streams = st;
    c->nstreams++;
    return st;
}

static void stream_free(h2_conn *c, h2_stream *st)
{
    if (st->prev)
        st->prev->next = st->next;
    else
        c->streams = st->next;
    if (st->next)
        st->next->prev = st->prev;
    c->nstreams--;
    flow_request_free(st->req);
    if (!st->resp_lent)
        flow_response_free(st->resp);
    bytes_free(&st->out);
    hdrs_free(&st->out_trailers);
    free(st);
}

static h2_stream *stream_get(h2_conn *c, int32_t sid)
{
    return nghttp2_session_get_stream_user_data(c->s, sid);
}

/* ---- building frames from flow messages --------------------------------- */

/* A header list for nghttp2: the name/value pairs plus the lower-cased
 * names they point into. */
typedef struct nvlist {
    nghttp2_nv *nv;
    size_t n;
    char *names;
} nvlist;

static void nvlist_free(nvlist *l)
{
    free(l->nv); /* names live in the same block */
}

/* The fields a Connection header names (RFC 9110 §7.6.1), gathered once
 * per message: nginx sends "Connection: keep-alive" with every response,
 * and looking through the header for each of its fields cost more than
 * the rest of the conversion. */
#define CONN_TOKENS_MAX 16
typedef struct conn_tokens {
    size_t n;
    bool overflow;          /* more than fit: ask hdrs_has_token */
    struct { const char *p; size_t len; } t[CONN_TOKENS_MAX];
} conn_tokens;

static void conn_tokens_of(const hdrs *h, conn_tokens *ct)
{
    ct->n = 0;
    ct->overflow = false;
    for (ssize_t i = hdrs_find(h, "connection", 0); i >= 0; i = hdrs_find(h, "connection", (size_t)i + 1)) {
        const char *p = h->v[i].value, *end = p + h->v[i].value_len, *t;
        size_t n;
        while ((t = hdrs_next_token(&p, end, &n)) != NULL) {
            if (ct->n == CONN_TOKENS_MAX) {
                ct->overflow = true;
                return;
            }
            ct->t[ct->n].p = t;
            ct->t[ct->n++].len = n;
        }
    }
}

/* Fields HTTP/2 forbids (RFC 9113 §8.2.2): they describe one hop of
 * HTTP/1 and must not cross into a multiplexed connection.  Called for
 * every field of every message: the length picks the one name to
 * compare. */
static bool connection_specific(const hdrs *h, const hdr_field *f, bool request, const conn_tokens *ct)
{
    const char *n = f->name;
    switch (f->name_len) {
    case 2:
        if (strcasecmp(n, "te") == 0)
            return !(f->value_len == 8 && strncasecmp(f->value, "trailers", 8) == 0);
        break;
    case 4:
        if (request && strcasecmp(n, "host") == 0)
            return true; /* it travels as :authority */
        break;
    case 7:
        if (strcasecmp(n, "upgrade") == 0)
            return true;
        break;
    case 10:
        if (strcasecmp(n, "connection") == 0 || strcasecmp(n, "keep-alive") == 0)
            return true;
        break;
    case 16:
        if (strcasecmp(n, "proxy-connection") == 0)
            return true;
        break;
    case 17:
        if (strcasecmp(n, "transfer-encoding") == 0)
            return true;
        break;
    default:
        break;
    }
    if (ct->overflow)
        return hdrs_has_token(h, "connection", n);
    for (size_t i = 0; i < ct->n; i++)
        if (ct->t[i].len == f->name_len && strncasecmp(ct->t[i].p, n, f->name_len) == 0)
            return true;
    return false;
}

static void nv_put(nvlist *l, const char *name, size_t nlen, const char *value, size_t vlen)
{
    nghttp2_nv *nv = &l->nv[l->n++];
    nv->name = (uint8_t *)name;
    nv->namelen = nlen;
    nv->value = (uint8_t *)value;
    nv->valuelen = vlen;
    nv->flags = NGHTTP2_NV_FLAG_NONE;
}

/* Room for `extra` pseudo-header fields (the caller puts them at 0 ..
 * extra-1) followed by h's fields that may be sent, their names
 * lowercased; one allocation for both.  0, or -1 with c->err set when a
 * field is not valid HTTP/2. */
static int nvlist_build(h2_conn *c, nvlist *l, size_t extra, const hdrs *h, bool request, bool trailers)
{
    size_t namebytes = 0;
    for (size_t i = 0; i < h->n; i++)
        namebytes += h->v[i].name_len + 1;
    size_t nvbytes = (extra + h->n + 1) * sizeof *l->nv;
    l->n = extra;
    if (!(l->nv = malloc(nvbytes + namebytes + 1))) {
        set_err(c, "%s", "out of memory");
        return -1;
    }
    l->names = (char *)l->nv + nvbytes;
    char *p = l->names;
    conn_tokens ct;
    conn_tokens_of(h, &ct);
    for (size_t i = 0; i < h->n; i++) {
        const hdr_field *f = &h->v[i];
        if (!trailers && connection_specific(h, f, request, &ct))
            continue;
        for (size_t k = 0; k < f->name_len; k++)
            p[k] = (char)tolower((unsigned char)f->name[k]);
        if (!nghttp2_check_header_name((uint8_t *)p, f->name_len) ||
            !nghttp2_check_header_value_rfc9113((uint8_t *)f->value, f->value_len)) {
            set_err(c, "header field %.60s cannot be sent over HTTP/2", f->name);
            return -1;
        }
        nv_put(l, p, f->name_len, f->value, f->value_len);
        p += f->name_len + 1;
    }
    return 0;
}

static ssize_t read_body(nghttp2_session *session, int32_t sid, uint8_t *buf, size_t length,
                         uint32_t *data_flags, nghttp2_data_source *src, void *user_data)
{
    h2_conn *c = user_data;
    h2_stream *st = src->ptr;
    size_t n = st->out.len - st->out_off;
    if (n > length)
        n = length;
    if (n)
        memcpy(buf, st->out.p + st->out_off, n);
    st->out_off += n;
    if (st->out_streaming && !st->out_eof && st->out_off == st->out.len) {
        /* all that came is framed: the buffer starts over (no realloc) */
        st->out.len = st->out_off = 0;
        if (n == 0) {
            st->out_deferred = true;
            return NGHTTP2_ERR_DEFERRED;
        }
        return (ssize_t)n;
    }
    if (st->out_off == st->out.len) {
        *data_flags |= NGHTTP2_DATA_FLAG_EOF;
        if (st->out_trailers.n) {
            nvlist l = {0};
            if (nvlist_build(c, &l, 0, &st->out_trailers, false, true) < 0) {
                nvlist_free(&l);
                return NGHTTP2_ERR_TEMPORAL_CALLBACK_FAILURE;
            }
            *data_flags |= NGHTTP2_DATA_FLAG_NO_END_STREAM;
            int rv = nghttp2_submit_trailer(session, sid, l.nv, l.n);
            nvlist_free(&l);
            if (rv < 0)
                return NGHTTP2_ERR_TEMPORAL_CALLBACK_FAILURE;
        }
    }
    return (ssize_t)n;
}

/* Copy body and trailers into the stream for read_body; NULL provider when
 * HEADERS alone can carry END_STREAM. */
static int stream_set_output(h2_stream *st, const bytes *body, const hdrs *trailers, bool lend,
                             nghttp2_data_provider *prd)
{
    if (lend)
        st->out = *body; /* the memory is the stream's now; the caller lets go */
    else if (body->len && bytes_set(&st->out, body->p, body->len) < 0)
        return -1;
    if (trailers->n && hdrs_copy(&st->out_trailers, trailers) < 0)
        return -1;
    prd->source.ptr = st;
    prd->read_callback = read_body;
    return body->len || trailers->n ? 1 : 0;
}

/* HEADERS for a response; its body and trailers are copied now, or, when
 * streaming, given later through h2_stream_write / h2_stream_end. */
static int submit_response(h2_conn *c, int32_t sid, const flow_response *s, bool streaming, bool lend)
{
    h2_stream *st = stream_get(c, sid);
    if (!st || !c->server) {
        set_err(c, "%s", "no such stream");
        return -1;
    }
    char status[8];
    snprintf(status, sizeof status, "%d", s->status_code >= 100 && s->status_code <= 999 ? s->status_code : 502);
    nvlist l = {0};
    nghttp2_data_provider prd;
    int rv = -1;
    if (nvlist_build(c, &l, 1, &s->headers, false, false) < 0)
        goto out;
    size_t total = l.n;
    l.n = 0;
    nv_put(&l, ":status", 7, status, strlen(status));
    l.n = total;
    int has = streaming ? 1 : stream_set_output(st, &s->content, &s->trailers, lend, &prd);
    if (streaming) {
        st->out_streaming = true;
        prd.source.ptr = st;
        prd.read_callback = read_body;
    }
    if (has < 0) {
        set_err(c, "%s", "out of memory");
        goto out;
    }
    int e = nghttp2_submit_response(c->s, sid, l.nv, l.n, has ? &prd : NULL);
    if (e < 0) {
        set_err(c, "%s", nghttp2_strerror(e));
        if (lend) /* still the caller's */
            st->out = (bytes){0};
        goto out;
    }
    rv = 0;
out:
    nvlist_free(&l);
    return rv;
}

int h2_submit_response(h2_conn *c, int32_t sid, const flow_response *s)
{
    return submit_response(c, sid, s, false, false);
}

int h2_submit_response_lent(h2_conn *c, int32_t sid, const flow_response *s)
{
    return submit_response(c, sid, s, false, true);
}

int h2_submit_interim(h2_conn *c, int32_t sid, const flow_response *s)
{
    h2_stream *st = stream_get(c, sid);
    if (!st || !c->server || s->status_code < 100 || s->status_code > 199) {
        set_err(c, "%s", "no such stream");
        return -1;
    }
    char status[8];
    snprintf(status, sizeof status, "%d", s->status_code);
    nvlist l = {0};
    int rv = -1;
    if (nvlist_build(c, &l, 1, &s->headers, false, false) == 0) {
        size_t total = l.n;
        l.n = 0;
        nv_put(&l, ":status", 7, status, strlen(status));
        l.n = total;
        int e = nghttp2_submit_headers(c->s, NGHTTP2_FLAG_NONE, sid, NULL, l.nv, l.n, NULL);
        if (e < 0)
            set_err(c, "%s", nghttp2_strerror(e));
        rv = e < 0 ? -1 : 0;
    }
    nvlist_free(&l);
    return rv;
}

int h2_submit_response_head(h2_conn *c, int32_t sid, const flow_response *s)
{
    return submit_response(c, sid, s, true, false);
}

/* The streaming stream `sid`, or NULL (gone: the client reset it). */
static h2_stream *streaming_stream(h2_conn *c, int32_t sid)
{
    h2_stream *st = stream_get(c, sid);
    if (!st || !st->out_streaming || st->out_eof) {
        set_err(c, "%s", "no such streaming response");
        return NULL;
    }
    return st;
}

/* More to send: wake nghttp2's data provider if it ran dry. */
static int stream_resume(h2_conn *c, h2_stream *st)
{
    if (!st->out_deferred)
        return 0;
    st->out_deferred = false;
    int e = nghttp2_session_resume_data(c->s, st->sid);
    if (e < 0) {
        set_err(c, "%s", nghttp2_strerror(e));
        return -1;
    }
    return 0;
}

int h2_stream_write(h2_conn *c, int32_t sid, const void *data, size_t n)
{
    h2_stream *st = streaming_stream(c, sid);
    if (!st)
        return -1;
    if (st->out_off && st->out_off >= st->out.len / 2) {
        /* keep the buffer from creeping forward: slide what is left */
        memmove(st->out.p, st->out.p + st->out_off, st->out.len - st->out_off);
        st->out.len -= st->out_off;
        st->out_off = 0;
    }
    if (bytes_append(&st->out, data, n) < 0) {
        set_err(c, "%s", "out of memory");
        return -1;
    }
    return stream_resume(c, st);
}

int h2_stream_end(h2_conn *c, int32_t sid, const hdrs *trailers)
{
    h2_stream *st = streaming_stream(c, sid);
    if (!st)
        return -1;
    if (trailers && trailers->n && hdrs_copy(&st->out_trailers, trailers) < 0) {
        set_err(c, "%s", "out of memory");
        return -1;
    }
    st->out_eof = true;
    return stream_resume(c, st);
}

size_t h2_stream_pending(const h2_conn *c, int32_t sid)
{
    h2_stream *st = nghttp2_session_get_stream_user_data(c->s, sid);
    return st ? st->out.len - st->out_off : 0;
}

int32_t h2_submit_request(h2_conn *c, const flow_request *r)
{
    if (c->server) {
        set_err(c, "%s", "requests go out on the client side only");
        return -1;
    }
    /* :authority: the Host header, else the authority the client wrote,
     * else host[:port].  Host first because it is what the HTTP/1 path
     * sends and what rewrites change (reverse mode sets Host and leaves
     * an HTTP/2 client's :authority as it came). */
    char abuf[300];
    size_t alen = 0;
    const char *auth = hdrs_get(&r->headers, "host", &alen);
    if (!alen && r->authority && *r->authority)
        alen = strlen(auth = r->authority);
    if (!alen) {
        auth = flow_authority(r->scheme, r->host, r->port, abuf, sizeof abuf);
        alen = strlen(abuf);
    }
    const char *method = r->method ? r->method : "GET";
    const char *scheme = r->scheme && *r->scheme ? r->scheme : "https";
    const char *path = r->path && *r->path ? r->path : "/";
    nvlist l = {0};
    int32_t sid = -1;
    h2_stream *st = NULL;
    if (nvlist_build(c, &l, 4, &r->headers, true, false) < 0)
        goto out;
    size_t total = l.n;
    l.n = 0;
    nv_put(&l, ":method", 7, method, strlen(method));
    nv_put(&l, ":scheme", 7, scheme, strlen(scheme));
    nv_put(&l, ":authority", 10, auth, alen);
    nv_put(&l, ":path", 5, path, strlen(path));
    l.n = total;
    if (!(st = stream_new(c)) || !(st->resp = flow_response_new())) {
        set_err(c, "%s", "out of memory");
        goto out;
    }
    nghttp2_data_provider prd;
    int has = stream_set_output(st, &r->content, &r->trailers, false, &prd);
    if (has < 0) {
        set_err(c, "%s", "out of memory");
        goto out;
    }
    sid = nghttp2_submit_request(c->s, NULL, l.nv, l.n, has ? &prd : NULL, st);
    if (sid < 0) {
        set_err(c, "%s", nghttp2_strerror(sid));
        sid = -1;
        goto out;
    }
    st->sid = sid;
    st = NULL;
out:
    if (st)
        stream_free(c, st);
    nvlist_free(&l);
    return sid;
}

void h2_consume(h2_conn *c, int32_t sid, size_t n)
{
    /* for a stream that is gone, nghttp2 opens the connection's window */
    nghttp2_session_consume(c->s, sid, n);
}

bool h2_conn_can_request(const h2_conn *c)
{
    return nghttp2_session_check_request_allowed(c->s) != 0 && h2_conn_alive(c);
}

const char *h2_error_name(uint32_t code)
{
    return nghttp2_http2_strerror(code);
}

int h2_reset_stream(h2_conn *c, int32_t sid, uint32_t code)
{
    /* a stream that closed, or that was reset already, gets no (second)
     * RST_STREAM: a strict peer may take one on a closed stream for a
     * connection error (RFC 9113 §5.1) */
    h2_stream *st = stream_get(c, sid);
    if (st && st->resp_lent) { /* the caller may free it now */
        st->resp = NULL;
        st->resp_lent = false;
    }
    if (!st || st->reset_sent)
        return 0;
    st->refused = st->reset_sent = true;
    return nghttp2_submit_rst_stream(c->s, NGHTTP2_FLAG_NONE, sid, code) < 0 ? -1 : 0;
}

int h2_conn_shutdown(h2_conn *c)
{
    int32_t last = nghttp2_session_get_last_proc_stream_id(c->s);
    return nghttp2_submit_goaway(c->s, NGHTTP2_FLAG_NONE, last, NGHTTP2_NO_ERROR, NULL, 0) < 0 ? -1 : 0;
}

int h2_ping(h2_conn *c)
{
    /* any 8 octets: mitmproxy sends "00000000" */
    static const uint8_t data[8] = {'0', '0', '0', '0', '0', '0', '0', '0'};
    return nghttp2_submit_ping(c->s, NGHTTP2_FLAG_NONE, data) < 0 ? -1 : 0;
}

/* ---- receiving ---------------------------------------------------------- */

/* Server side: answer a request ourselves (the caller never sees it). */
static void refuse(h2_conn *c, h2_stream *st, int status, const char *msg)
{
    if (st->refused)
        return;
    st->refused = true;
    flow_response *s = flow_response_new();
    if (s) {
        char len[24];
        size_t ml = strlen(msg);
        snprintf(len, sizeof len, "%zu", ml + 1);
        s->status_code = status;
        if (hdrs_add(&s->headers, "content-type", 12, "text/plain", 10) == 0 &&
            hdrs_add(&s->headers, "content-length", 14, len, strlen(len)) == 0 &&
            bytes_set(&s->content, msg, ml) == 0 && bytes_append(&s->content, "\n", 1) == 0 &&
            h2_submit_response(c, st->sid, s) == 0) {
            st->stop_peer = true; /* the rest of an upload is dropped */
        } else {
            nghttp2_submit_rst_stream(c->s, NGHTTP2_FLAG_NONE, st->sid, NGHTTP2_INTERNAL_ERROR);
        }
        flow_response_free(s);
    }
    if (c->ev.on_refused)
        c->ev.on_refused(c->ud, st->sid, status, msg);
}

/* Client side: give up on a response (the caller hears it through
 * on_refused, then on_close). */
static void abandon(h2_conn *c, h2_stream *st, const char *msg)
{
    if (st->refused)
        return;
    st->refused = st->reset_sent = true;
    nghttp2_submit_rst_stream(c->s, NGHTTP2_FLAG_NONE, st->sid, NGHTTP2_CANCEL);
    if (c->ev.on_refused)
        c->ev.on_refused(c->ud, st->sid, 502, msg);
}

static int on_begin_headers(nghttp2_session *session, const nghttp2_frame *frame, void *user_data)
{
    h2_conn *c = user_data;
    if (frame->hd.type != NGHTTP2_HEADERS)
        return 0;
    h2_stream *st = stream_get(c, frame->hd.stream_id);
    if (c->server && frame->headers.cat == NGHTTP2_HCAT_REQUEST) {
        if (!(st = stream_new(c)) || !(st->req = flow_request_new())) {
            if (st)
                stream_free(c, st);
            return NGHTTP2_ERR_CALLBACK_FAILURE;
        }
        st->sid = frame->hd.stream_id;
        st->req->timestamp_start = flow_now();
        nghttp2_session_set_stream_user_data(session, st->sid, st);
    } else if (!st || st->refused) {
        return 0; /* gone, or reset by us: what follows is dropped */
    } else if (!c->server && (!st->resp || st->resp->status_code < 200)) {
        /* a (next) response head: after an interim one, start afresh */
        flow_response_free(st->resp);
        if (!(st->resp = flow_response_new()))
            return NGHTTP2_ERR_CALLBACK_FAILURE;
        st->resp->timestamp_start = flow_now();
    } else {
        st->in_trailers = true;
    }
    st->hdr_bytes = st->hdr_fields = 0;
    st->too_big = false;
    return 0;
}

static int set_pseudo(h2_stream *st, const uint8_t *name, size_t nlen, const uint8_t *value, size_t vlen,
                      bool server)
{
    const char *n = (const char *)name, *v = (const char *)value;
    if (!server) {
        if (nlen == 7 && memcmp(n, ":status", 7) == 0)
            st->resp->status_code = atoi(v); /* nghttp2 checked: three digits */
        return 0;
    }
    char **dst = NULL;
    if (nlen == 7 && memcmp(n, ":method", 7) == 0)
        dst = &st->req->method;
    else if (nlen == 7 && memcmp(n, ":scheme", 7) == 0)
        dst = &st->req->scheme;
    else if (nlen == 10 && memcmp(n, ":authority", 10) == 0)
        dst = &st->req->authority;
    else if (nlen == 5 && memcmp(n, ":path", 5) == 0)
        dst = &st->req->path;
    return dst ? flow_strnset(dst, v, vlen) : 0;
}

/* RFC 9113 §8.2.3: a client may split Cookie into crumbs; HTTP/1 and
 * everything after us expect one field joined with "; ". */
static int add_cookie(h2_stream *st, const uint8_t *value, size_t vlen)
{
    hdrs *h = &st->req->headers;
    if (st->cookie_idx < 0) {
        st->cookie_idx = (ssize_t)h->n;
        return hdrs_add(h, "cookie", 6, (const char *)value, vlen);
    }
    /* The joined field replaces the first crumb in place, through the
     * hdrs API (a field's storage is flow.c's business). */
    hdr_field *f = &h->v[st->cookie_idx];
    bytes joined = {0};
    if (bytes_append(&joined, f->value, f->value_len) < 0 || bytes_append(&joined, "; ", 2) < 0 ||
        bytes_append(&joined, value, vlen) < 0 || hdrs_add(h, "cookie", 6, joined.p, joined.len) < 0) {
        bytes_free(&joined);
        return -1;
    }
    bytes_free(&joined);
    hdr_field tmp = h->v[st->cookie_idx];
    h->v[st->cookie_idx] = h->v[h->n - 1];
    h->v[h->n - 1] = tmp;
    hdrs_remove_at(h, h->n - 1);
    return 0;
}

static int on_invalid_header(nghttp2_session *session, const nghttp2_frame *frame, const uint8_t *name,
                             size_t nlen, const uint8_t *value, size_t vlen, uint8_t flags, void *user_data);

static int on_header(nghttp2_session *session, const nghttp2_frame *frame, const uint8_t *name, size_t nlen,
                     const uint8_t *value, size_t vlen, uint8_t flags, void *user_data)
{
    h2_conn *c = user_data;
    h2_stream *st = stream_get(c, frame->hd.stream_id);
    if (!st || st->refused || st->too_big)
        return 0;
    st->hdr_bytes += nlen + vlen + 32;
    if (st->hdr_bytes > c->lim.max_header_list || ++st->hdr_fields > c->lim.max_headers) {
        st->too_big = true; /* answered once the block ends: HPACK must go on decoding */
        return 0;
    }
    /* nghttp2 1.52 lets upper-case names through; RFC 9113 §8.2.1 calls
     * the message malformed. */
    for (size_t i = 0; i < nlen; i++)
        if (name[i] >= 'A' && name[i] <= 'Z')
            return on_invalid_header(session, frame, name, nlen, value, vlen, flags, user_data);
    int rv;
    if (nlen && name[0] == ':')
        rv = set_pseudo(st, name, nlen, value, vlen, c->server);
    else if (st->in_trailers)
        rv = hdrs_add(c->server ? &st->req->trailers : &st->resp->trailers, (const char *)name, nlen,
                      (const char *)value, vlen);
    else if (c->server && nlen == 6 && memcmp(name, "cookie", 6) == 0)
        rv = add_cookie(st, value, vlen);
    else
        rv = hdrs_add(c->server ? &st->req->headers : &st->resp->headers, (const char *)name, nlen,
                      (const char *)value, vlen);
    return rv < 0 ? NGHTTP2_ERR_CALLBACK_FAILURE : 0;
}

/* Without this callback nghttp2 drops a field with CR, LF or NUL in its
 * value and goes on: the message would reach the server minus a header the
 * client sent.  Refusing the stream (RST_STREAM PROTOCOL_ERROR) is the safe
 * reading of RFC 9113 §8.2.1. */
static int on_invalid_header(nghttp2_session *session, const nghttp2_frame *frame, const uint8_t *name,
                             size_t nlen, const uint8_t *value, size_t vlen, uint8_t flags, void *user_data)
{
    h2_stream *st = stream_get(user_data, frame->hd.stream_id);
    if (st)
        st->refused = true;
    return NGHTTP2_ERR_TEMPORAL_CALLBACK_FAILURE;
}

/* Server side: the request head is complete; fill what HTTP/2 leaves
 * implicit.  0, or a status to refuse it with (*msg says why). */
static int request_head(h2_stream *st, const char **msg)
{
    flow_request *r = st->req;
    size_t hlen;
    const char *host = hdrs_get(&r->headers, "host", &hlen);
    if (flow_strset(&r->http_version, "HTTP/2.0") < 0)
        return *msg = "out of memory", 500;
    if (!r->scheme && flow_strset(&r->scheme, "") < 0)
        return *msg = "out of memory", 500;
    if (!r->path && flow_strset(&r->path, "") < 0)
        return *msg = "out of memory", 500;
    if (r->authority && host && (hlen != strlen(r->authority) || strncasecmp(host, r->authority, hlen) != 0))
        return *msg = "Host header and :authority differ", 400;
    if (!r->authority && host && flow_strnset(&r->authority, host, hlen) < 0)
        return *msg = "out of memory", 500;
    if (!r->authority && flow_strset(&r->authority, "") < 0)
        return *msg = "out of memory", 500;
    uint16_t dflt = strcmp(r->scheme, "http") == 0 ? 80 : 443;
    if (*r->authority) {
        if (flow_parse_authority(r->authority, strlen(r->authority), dflt, &r->host, &r->port) < 0)
            return *msg = "invalid :authority", 400;
    } else if (flow_strset(&r->host, "") < 0) {
        return *msg = "out of memory", 500;
    } else {
        r->port = dflt;
    }
    return 0;
}

static void message_done(h2_conn *c, h2_stream *st)
{
    if (st->refused)
        return;
    if (c->server) {
        flow_request *r = st->req;
        st->req = NULL;
        r->timestamp_end = flow_now();
        st->refused = true; /* handed over: nothing more is ours */
        c->ev.on_request(c->ud, st->sid, r);
    } else {
        flow_response *s = st->resp;
        st->resp = NULL;
        s->timestamp_end = flow_now();
        if (!s->http_version)
            flow_strset(&s->http_version, "HTTP/2.0");
        if (!s->reason)
            flow_strset(&s->reason, "");
        st->refused = true;
        c->ev.on_response(c->ud, st->sid, s);
    }
}

/* Client side: a response head is complete.  An interim one is reported
 * and forgotten (-1: the final head follows); the final one may be lent
 * to the caller now, so that it sees the head before the body. */
static int response_head(h2_conn *c, h2_stream *st)
{
    flow_response *s = st->resp;
    if (s->status_code < 200) {
        if (c->ev.on_interim)
            c->ev.on_interim(c->ud, st->sid, s);
        return -1;
    }
    if (!s->http_version)
        flow_strset(&s->http_version, "HTTP/2.0");
    if (!s->reason)
        flow_strset(&s->reason, "");
    if (c->ev.on_head && c->ev.on_head(c->ud, st->sid, s))
        st->resp_lent = true;
    return 0;
}

static int on_frame_recv(nghttp2_session *session, const nghttp2_frame *frame, void *user_data)
{
    h2_conn *c = user_data;
    if (frame->hd.type != NGHTTP2_HEADERS && frame->hd.type != NGHTTP2_DATA)
        return 0;
    h2_stream *st = stream_get(c, frame->hd.stream_id);
    if (!st || st->refused)
        return 0;
    if (frame->hd.type == NGHTTP2_HEADERS) {
        if (st->too_big) {
            if (c->server)
                refuse(c, st, 431, "request header fields too large");
            else
                abandon(c, st, "response header fields too large");
            return 0;
        }
        if (c->server && !st->in_trailers) {
            const char *msg = NULL;
            int status = request_head(st, &msg);
            const char *cl = status ? NULL : hdrs_get(&st->req->headers, "content-length", NULL);
            if (cl && c->lim.max_body && strtoull(cl, NULL, 10) > c->lim.max_body) {
                /* as HTTP/1 does: refused at the headers, not after the
                 * body has been read up to the limit */
                status = 413;
                msg = "request body too large";
            }
            if (status) {
                refuse(c, st, status, msg);
                return 0;
            }
        }
        if (!c->server && !st->in_trailers && response_head(c, st) < 0)
            return 0; /* interim: the final head follows */
    }
    if (frame->hd.flags & NGHTTP2_FLAG_END_STREAM)
        message_done(c, st);
    return 0;
}

static int on_data_chunk(nghttp2_session *session, uint8_t flags, int32_t sid, const uint8_t *data, size_t len,
                         void *user_data)
{
    h2_conn *c = user_data;
    h2_stream *st = stream_get(c, sid);
    /* Taken by a caller that passes the body on: it opens the window as
     * its reader takes the bytes (h2_consume). */
    if (!c->server && st && !st->refused && c->ev.on_data && c->ev.on_data(c->ud, sid, data, len))
        return 0;
    /* The body is taken into the flow now, so the window opens now; what
     * we hold per stream is bounded by max_body, not by the peer. */
    nghttp2_session_consume(session, sid, len);
    if (st && st->stop_peer && (st->discarded += len) > H2_DISCARD_MAX)
        h2_reset_stream(c, sid, NGHTTP2_NO_ERROR);
    if (!st || st->refused)
        return 0;
    bytes *b = c->server ? &st->req->content : &st->resp->content;
    if (c->lim.max_body && b->len + len > c->lim.max_body) {
        if (c->server)
            refuse(c, st, 413, "request body too large");
        else
            abandon(c, st, "response body too large");
        return 0;
    }
    return bytes_append(b, data, len) < 0 ? NGHTTP2_ERR_CALLBACK_FAILURE : 0;
}

/* Client side: nghttp2 found a response malformed (no :status, a second
 * final head, DATA that disagrees with content-length...) and resets the
 * stream itself; the caller hears why, or it would blame the server for
 * a reset it never sent. */
static int on_invalid_frame(nghttp2_session *session, const nghttp2_frame *frame, int lib_error_code,
                            void *user_data)
{
    h2_conn *c = user_data;
    h2_stream *st = frame->hd.stream_id ? stream_get(c, frame->hd.stream_id) : NULL;
    if (c->server || !st || st->refused)
        return 0;
    st->refused = st->reset_sent = true; /* nghttp2 sends PROTOCOL_ERROR */
    char msg[120];
    snprintf(msg, sizeof msg, "malformed HTTP/2 response (%s)", nghttp2_strerror(lib_error_code));
    if (c->ev.on_refused)
        c->ev.on_refused(c->ud, st->sid, 502, msg);
    return 0;
}

static int on_stream_close(nghttp2_session *session, int32_t sid, uint32_t code, void *user_data)
{
    h2_conn *c = user_data;
    h2_stream *st = stream_get(c, sid);
    if (!st)
        return 0;
    nghttp2_session_set_stream_user_data(session, sid, NULL);
    stream_free(c, st);
    if (c->ev.on_close)
        c->ev.on_close(c->ud, sid, code);
    return 0;
}

/* ---- the connection ----------------------------------------------------- */

h2_conn *h2_conn_new(bool server, const h2_limits *lim, const h2_events *ev, void *ud)
{
    h2_conn *c = calloc(1, sizeof *c);
    nghttp2_session_callbacks *cb = NULL;
    nghttp2_option *opt = NULL;
    if (!c || nghttp2_session_callbacks_new(&cb) != 0 || nghttp2_option_new(&opt) != 0)
        goto fail;
    c->server = server;
    c->lim = *lim;
    c->ev = *ev;
    c->ud = ud;
    nghttp2_session_callbacks_set_on_begin_headers_callback(cb, on_begin_headers);
    nghttp2_session_callbacks_set_on_header_callback(cb, on_header);
    nghttp2_session_callbacks_set_on_invalid_header_callback(cb, on_invalid_header);
    nghttp2_session_callbacks_set_on_frame_recv_callback(cb, on_frame_recv);
    nghttp2_session_callbacks_set_on_data_chunk_recv_callback(cb, on_data_chunk);
    nghttp2_session_callbacks_set_on_stream_close_callback(cb, on_stream_close);
    nghttp2_session_callbacks_set_on_invalid_frame_recv_callback(cb, on_invalid_frame);

    /* Abuse limits, explicit rather than trusting defaults that moved
     * between nghttp2 releases (the last two are Debian backports):
     * a SETTINGS or PING flood fills the queue of ACKs we owe; a rapid
     * reset (CVE-2023-44487) opens and cancels streams faster than any
     * browser; a CONTINUATION flood (CVE-2024-28182) never ends a header
     * block.  Each ends the connection with GOAWAY ENHANCE_YOUR_CALM or
     * PROTOCOL_ERROR. */
    nghttp2_option_set_no_auto_window_update(opt, 1);
    nghttp2_option_set_max_settings(opt, 32);
    nghttp2_option_set_max_outbound_ack(opt, 1000);
    nghttp2_option_set_stream_reset_rate_limit(opt, 200, 50);
    nghttp2_option_set_max_continuations(opt, 8);
    nghttp2_option_set_max_deflate_dynamic_table_size(opt, 4096);
    if (!server)
        nghttp2_option_set_peer_max_concurrent_streams(opt, 100);
    int rv = server ? nghttp2_session_server_new2(&c->s, cb, c, opt) : nghttp2_session_client_new2(&c->s, cb, c, opt);
    if (rv != 0)
        goto fail;
    nghttp2_settings_entry iv[4] = {
        {NGHTTP2_SETTINGS_MAX_CONCURRENT_STREAMS, lim->max_streams},
        {NGHTTP2_SETTINGS_INITIAL_WINDOW_SIZE, lim->window},
        {NGHTTP2_SETTINGS_MAX_HEADER_LIST_SIZE, (uint32_t)lim->max_header_list},
        {NGHTTP2_SETTINGS_ENABLE_PUSH, 0},
    };
    if (nghttp2_submit_settings(c->s, NGHTTP2_FLAG_NONE, iv, server ? 3 : 4) != 0)
        goto fail;
    /* The connection window covers several streams' windows at once. */
    int32_t conn_window = lim->window > INT32_MAX / 4 ? INT32_MAX : (int32_t)lim->window * 4;
    if (nghttp2_session_set_local_window_size(c->s, NGHTTP2_FLAG_NONE, 0, conn_window) != 0)
        goto fail;
    nghttp2_session_callbacks_del(cb);
    nghttp2_option_del(opt);
    return c;
fail:
    nghttp2_session_callbacks_del(cb);
    nghttp2_option_del(opt);
    if (c && c->s)
        nghttp2_session_del(c->s);
    free(c);
    return NULL;
}

void h2_conn_free(h2_conn *c)
{
    if (!c)
        return;
    nghttp2_session_del(c->s);
    while (c->streams)
        stream_free(c, c->streams);
    free(c);
}

int h2_conn_feed(h2_conn *c, const void *data, size_t n)
{
    ssize_t rv = nghttp2_session_mem_recv(c->s, data, n);
    if (rv >= 0)
        return 0;
    set_err(c, "HTTP/2: %s", nghttp2_strerror((int)rv));
    if (rv == NGHTTP2_ERR_BAD_CLIENT_MAGIC)
        set_err(c, "%s", "not an HTTP/2 connection preface");
    /* nghttp2 has queued GOAWAY for protocol errors and floods; for the
     * rest (bad preface, our own failures) say goodbye ourselves. */
    nghttp2_session_terminate_session(c->s, rv == NGHTTP2_ERR_CALLBACK_FAILURE ? NGHTTP2_INTERNAL_ERROR
                                            : rv == NGHTTP2_ERR_FLOODED         ? NGHTTP2_ENHANCE_YOUR_CALM
                                                                                : NGHTTP2_PROTOCOL_ERROR);
    return -1;
}

/* Frames are gathered and added to `out` together: every add to a TLS
 * bufferevent is an SSL_write at once, a record of its own, and OpenSSL 3
 * spends about 10k instructions on each; a response is a HEADERS and a
 * DATA frame at least, and streams finish several to a read. */
#define H2_FLUSH_GATHER 16384

static int flush_add(h2_conn *c, struct evbuffer *out, const void *p, size_t n)
{
    if (n && evbuffer_add(out, p, n) < 0) {
        set_err(c, "%s", "out of memory");
        return -1;
    }
    return 0;
}

int h2_conn_flush(h2_conn *c, struct evbuffer *out, size_t max)
{
    unsigned char buf[H2_FLUSH_GATHER];
    size_t used = 0, queued = evbuffer_get_length(out);
    while (!max || queued + used < max) {
        const uint8_t *d;
        ssize_t n = nghttp2_session_mem_send(c->s, &d);
        if (n < 0) {
            set_err(c, "HTTP/2: %s", nghttp2_strerror((int)n));
            return -1;
        }
        if (n == 0)
            break;
        if (used + (size_t)n > sizeof buf) { /* d stays valid until the next mem_send */
            if (flush_add(c, out, buf, used) < 0)
                return -1;
            queued += used;
            used = 0;
        }
        if ((size_t)n > sizeof buf) {
            if (flush_add(c, out, d, (size_t)n) < 0)
                return -1;
            queued += (size_t)n;
            continue;
        }
        memcpy(buf + used, d, (size_t)n);
        used += (size_t)n;
    }
    return flush_add(c, out, buf, used);
}

bool h2_conn_alive(const h2_conn *c)
{
    return nghttp2_session_want_read(c->s) || nghttp2_session_want_write(c->s);
}

const char *h2_conn_error(const h2_conn *c)
{
    return c->err;
}

size_t h2_conn_streams(const h2_conn *c)
{
    return c->nstreams;
}

int h2_preface_match(const void *data, size_t n)
{
    static const char preface[] = NGHTTP2_CLIENT_MAGIC;
    size_t m = n < sizeof preface - 1 ? n : sizeof preface - 1;
    if (memcmp(data, preface, m) != 0)
        return -1;
    return m == sizeof preface - 1 ? 1 : 0;
}
