/* test_h2.c — the HTTP/2 module against real nghttp2 peers in memory: a
 * client session drives our server side, a server session answers our
 * client side; raw frames for the abuse cases a well-behaved peer never
 * sends. */
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <nghttp2/nghttp2.h>

#include "h2.h"
#include "t.h"

/* ---- the peer: a plain nghttp2 session recording what it receives ------ */

#define MAXSID 4096

typedef struct pstream {
    int status;
    hdrs headers;   /* regular fields of the head (names as received) */
    hdrs trailers;
    bytes body;
    bool headers_done;
    bool closed;
    uint32_t code;
} pstream;

typedef struct peer {
    nghttp2_session *s;
    pstream st[MAXSID];
    bool goaway;
    uint32_t goaway_code;
    bool consume;        /* open the window as data arrives */
    /* server peer: answer requests with this */
    const char *answer_body;
    bool answer_trailers;
    bool answer_interim;  /* a 103 before the answer */
    size_t body_off;
} peer;

static int p_begin_headers(nghttp2_session *s, const nghttp2_frame *f, void *ud)
{
    return 0;
}

static int p_header(nghttp2_session *s, const nghttp2_frame *f, const uint8_t *n, size_t nl, const uint8_t *v,
                    size_t vl, uint8_t flags, void *ud)
{
    peer *p = ud;
    pstream *st = &p->st[f->hd.stream_id % MAXSID];
    if (nl == 7 && memcmp(n, ":status", 7) == 0) {
        st->status = atoi((const char *)v);
        return 0;
    }
    hdrs_add(st->headers_done ? &st->trailers : &st->headers, (const char *)n, nl, (const char *)v, vl);
    return 0;
}

static ssize_t p_read(nghttp2_session *s, int32_t sid, uint8_t *buf, size_t len, uint32_t *flags,
                      nghttp2_data_source *src, void *ud)
{
    peer *p = ud;
    size_t total = strlen(p->answer_body), n = total - p->body_off;
    if (n > len)
        n = len;
    memcpy(buf, p->answer_body + p->body_off, n);
    p->body_off += n;
    if (p->body_off == total) {
        *flags |= NGHTTP2_DATA_FLAG_EOF;
        if (p->answer_trailers) {
            nghttp2_nv t[] = {{(uint8_t *)"grpc-status", (uint8_t *)"0", 11, 1, 0}};
            *flags |= NGHTTP2_DATA_FLAG_NO_END_STREAM;
            nghttp2_submit_trailer(s, sid, t, 1);
        }
    }
    return (ssize_t)n;
}

static int p_frame_recv(nghttp2_session *s, const nghttp2_frame *f, void *ud)
{
    peer *p = ud;
    if (f->hd.type == NGHTTP2_GOAWAY) {
        p->goaway = true;
        p->goaway_code = f->goaway.error_code;
    }
    if (f->hd.type == NGHTTP2_HEADERS)
        p->st[f->hd.stream_id % MAXSID].headers_done = true;
    if (f->hd.type == NGHTTP2_HEADERS || f->hd.type == NGHTTP2_DATA) {
        /* server peer: answer a complete request */
        if (nghttp2_session_check_server_session(s) && (f->hd.flags & NGHTTP2_FLAG_END_STREAM)) {
            nghttp2_nv nv[] = {
                {(uint8_t *)":status", (uint8_t *)"201", 7, 3, 0},
                {(uint8_t *)"content-type", (uint8_t *)"text/plain", 12, 10, 0},
            };
            nghttp2_data_provider prd = {.read_callback = p_read};
            p->body_off = 0;
            if (p->answer_interim) {
                nghttp2_nv hint[] = {
                    {(uint8_t *)":status", (uint8_t *)"103", 7, 3, 0},
                    {(uint8_t *)"link", (uint8_t *)"</a.css>; rel=preload", 4, 21, 0},
                };
                nghttp2_submit_headers(s, NGHTTP2_FLAG_NONE, f->hd.stream_id, NULL, hint, 2, NULL);
            }
            nghttp2_submit_response(s, f->hd.stream_id, nv, 2, &prd);
        }
    }
    return 0;
}

static int p_data(nghttp2_session *s, uint8_t flags, int32_t sid, const uint8_t *d, size_t n, void *ud)
{
    peer *p = ud;
    bytes_append(&p->st[sid % MAXSID].body, d, n);
    if (p->consume)
        nghttp2_session_consume(s, sid, n);
    return 0;
}

static int p_close(nghttp2_session *s, int32_t sid, uint32_t code, void *ud)
{
    peer *p = ud;
    p->st[sid % MAXSID].closed = true;
    p->st[sid % MAXSID].code = code;
    return 0;
}

static peer *peer_new(bool server, bool consume)
{
    peer *p = calloc(1, sizeof *p);
    nghttp2_session_callbacks *cb;
    nghttp2_option *opt;
    nghttp2_session_callbacks_new(&cb);
    nghttp2_option_new(&opt);
    nghttp2_option_set_no_auto_window_update(opt, 1);
    /* the peer plays by no rules of its own: we test ours */
    nghttp2_option_set_peer_max_concurrent_streams(opt, 10000);
    nghttp2_option_set_no_http_messaging(opt, 1);
    nghttp2_session_callbacks_set_on_begin_headers_callback(cb, p_begin_headers);
    nghttp2_session_callbacks_set_on_header_callback(cb, p_header);
    nghttp2_session_callbacks_set_on_frame_recv_callback(cb, p_frame_recv);
    nghttp2_session_callbacks_set_on_data_chunk_recv_callback(cb, p_data);
    nghttp2_session_callbacks_set_on_stream_close_callback(cb, p_close);
    if (server)
        nghttp2_session_server_new2(&p->s, cb, p, opt);
    else
        nghttp2_session_client_new2(&p->s, cb, p, opt);
    nghttp2_session_callbacks_del(cb);
    nghttp2_option_del(opt);
    nghttp2_submit_settings(p->s, NGHTTP2_FLAG_NONE, NULL, 0);
    p->consume = consume;
    p->answer_body = "";
    return p;
}

static void peer_free(peer *p)
{
    nghttp2_session_del(p->s);
    for (int i = 0; i < MAXSID; i++) {
        hdrs_free(&p->st[i].headers);
        hdrs_free(&p->st[i].trailers);
        bytes_free(&p->st[i].body);
    }
    free(p);
}

/* Move bytes both ways until neither side has anything to say.  `max`
 * bounds our output per round (the socket buffer of a slow reader).
 * Returns the result of the last h2_conn_feed. */
static int pump(peer *p, h2_conn *c, size_t max, size_t *ours_total)
{
    int rv = 0;
    for (int round = 0; round < 100000; round++) {
        bool moved = false;
        const uint8_t *d;
        ssize_t n;
        while ((n = nghttp2_session_mem_send(p->s, &d)) > 0) {
            moved = true;
            if ((rv = h2_conn_feed(c, d, (size_t)n)) < 0)
                break;
        }
        struct evbuffer *out = evbuffer_new();
        h2_conn_flush(c, out, max);
        size_t len = evbuffer_get_length(out);
        if (ours_total)
            *ours_total += len;
        if (len) {
            moved = true;
            nghttp2_session_mem_recv(p->s, evbuffer_pullup(out, -1), len);
        }
        evbuffer_free(out);
        if (!moved || rv < 0)
            break;
    }
    return rv;
}

/* ---- our side's callbacks ----------------------------------------------- */

typedef struct got {
    flow_request *req[64];
    int nreq;
    int32_t req_sid[64];
    flow_response *resp;
    int refused_status;
    int closed;
    uint32_t last_code;
} got;

static void g_request(void *ud, int32_t sid, flow_request *r)
{
    got *g = ud;
    if (g->nreq < 64) {
        g->req_sid[g->nreq] = sid;
        g->req[g->nreq++] = r;
    } else {
        flow_request_free(r);
    }
}

static void g_response(void *ud, int32_t sid, flow_response *s)
{
    got *g = ud;
    flow_response_free(g->resp);
    g->resp = s;
}

static void g_refused(void *ud, int32_t sid, int status, const char *msg)
{
    ((got *)ud)->refused_status = status;
}

static void g_close(void *ud, int32_t sid, uint32_t code)
{
    got *g = ud;
    g->closed++;
    g->last_code = code;
}

static const h2_events g_events = {.on_request = g_request, .on_response = g_response, .on_refused = g_refused,
                                   .on_close = g_close};

static void got_free(got *g)
{
    for (int i = 0; i < g->nreq; i++)
        flow_request_free(g->req[i]);
    flow_response_free(g->resp);
}

#define NV(n, v) {(uint8_t *)(n), (uint8_t *)(v), sizeof(n) - 1, sizeof(v) - 1, NGHTTP2_NV_FLAG_NONE}

static const char *hget(const hdrs *h, const char *name)
{
    size_t n;
    return hdrs_get(h, name, &n);
}

/* ---- server side -------------------------------------------------------- */

static void t_request_mapping(void)
{
    got g = {0};
    h2_limits lim;
    h2_limits_default(&lim);
    h2_conn *c = h2_conn_new(true, &lim, &g_events, &g);
    peer *p = peer_new(false, true);
    nghttp2_nv nv[] = {
        NV(":method", "GET"),     NV(":scheme", "https"), NV(":authority", "example.com:8443"),
        NV(":path", "/a?b=1"),    NV("cookie", "a=1"),    NV("user-agent", "t"),
        NV("cookie", "b=2"),
    };
    int32_t sid = nghttp2_submit_request(p->s, NULL, nv, 7, NULL, NULL);
    T_CHECK(pump(p, c, 0, NULL) == 0);
    T_CHECK(g.nreq == 1);
    if (g.nreq == 1) {
        flow_request *r = g.req[0];
        T_STREQ(r->method, "GET");
        T_STREQ(r->scheme, "https");
        T_STREQ(r->authority, "example.com:8443");
        T_STREQ(r->host, "example.com");
        T_CHECK(r->port == 8443);
        T_STREQ(r->path, "/a?b=1");
        T_STREQ(r->http_version, "HTTP/2.0");
        T_STREQ(hget(&r->headers, "cookie"), "a=1; b=2");
        T_CHECK(r->headers.n == 2);
        T_CHECK(g.req_sid[0] == sid);
    }
    /* The response loses what only made sense on an HTTP/1 hop. */
    flow_response *s = flow_response_new();
    s->status_code = 200;
    hdrs_add(&s->headers, "Content-Type", 12, "text/plain", 10);
    hdrs_add(&s->headers, "Connection", 10, "keep-alive, X-Hop", 17);
    hdrs_add(&s->headers, "Keep-Alive", 10, "timeout=5", 9);
    hdrs_add(&s->headers, "Transfer-Encoding", 17, "chunked", 7);
    hdrs_add(&s->headers, "X-Hop", 5, "1", 1);
    hdrs_add(&s->headers, "Upgrade", 7, "h2c", 3);
    hdrs_add(&s->headers, "X-End", 5, "2", 1);
    hdrs_add(&s->trailers, "Grpc-Status", 11, "0", 1);
    bytes_set(&s->content, "hello", 5);
    T_CHECK(h2_submit_response(c, sid, s) == 0);
    flow_response_free(s);
    T_CHECK(pump(p, c, 0, NULL) == 0);
    pstream *ps = &p->st[sid];
    T_CHECK(ps->status == 200);
    T_STREQ(hget(&ps->headers, "content-type"), "text/plain");
    T_STREQ(hget(&ps->headers, "x-end"), "2");
    T_CHECK(ps->headers.n == 2);
    T_CHECK(ps->body.len == 5 && memcmp(ps->body.p, "hello", 5) == 0);
    T_STREQ(hget(&ps->trailers, "grpc-status"), "0");
    T_CHECK(ps->closed && ps->code == 0);
    T_CHECK(g.closed == 1 && h2_conn_streams(c) == 0);
    h2_conn_free(c);
    peer_free(p);
    got_free(&g);
}

static void t_authority_from_host(void)
{
    got g = {0};
    h2_limits lim;
    h2_limits_default(&lim);
    h2_conn *c = h2_conn_new(true, &lim, &g_events, &g);
    peer *p = peer_new(false, true);
    nghttp2_nv nv[] = {NV(":method", "GET"), NV(":scheme", "http"), NV(":path", "/"), NV("host", "[::1]:81")};
    nghttp2_submit_request(p->s, NULL, nv, 4, NULL, NULL);
    nghttp2_nv bad[] = {NV(":method", "GET"), NV(":scheme", "http"), NV(":authority", "a.example"),
                        NV(":path", "/"), NV("host", "b.example")};
    int32_t sid2 = nghttp2_submit_request(p->s, NULL, bad, 5, NULL, NULL);
    pump(p, c, 0, NULL);
    T_CHECK(g.nreq == 1);
    if (g.nreq == 1) {
        T_STREQ(g.req[0]->authority, "[::1]:81");
        T_STREQ(g.req[0]->host, "::1");
        T_CHECK(g.req[0]->port == 81);
    }
    /* Host and :authority must agree: the second request is answered 400 */
    T_CHECK(p->st[sid2].status == 400);
    T_CHECK(g.refused_status == 400);
    h2_conn_free(c);
    peer_free(p);
    got_free(&g);
}

static ssize_t upload_read(nghttp2_session *s, int32_t sid, uint8_t *buf, size_t len, uint32_t *flags,
                           nghttp2_data_source *src, void *ud)
{
    size_t *left = src->ptr;
    size_t n = *left < len ? *left : len;
    memset(buf, 'u', n);
    *left -= n;
    if (!*left) {
        *flags |= NGHTTP2_DATA_FLAG_EOF | NGHTTP2_DATA_FLAG_NO_END_STREAM;
        nghttp2_nv t[] = {NV("x-checksum", "abc")};
        nghttp2_submit_trailer(s, sid, t, 1);
    }
    return (ssize_t)n;
}

static void t_request_body_and_trailers(void)
{
    got g = {0};
    h2_limits lim;
    h2_limits_default(&lim);
    lim.window = 65535; /* the upload needs many window updates */
    h2_conn *c = h2_conn_new(true, &lim, &g_events, &g);
    peer *p = peer_new(false, true);
    size_t left = 3 * 1024 * 1024 + 7;
    nghttp2_nv nv[] = {NV(":method", "POST"), NV(":scheme", "https"), NV(":authority", "x"), NV(":path", "/up")};
    nghttp2_data_provider prd = {.source.ptr = &left, .read_callback = upload_read};
    nghttp2_submit_request(p->s, NULL, nv, 4, &prd, NULL);
    T_CHECK(pump(p, c, 0, NULL) == 0);
    T_CHECK(g.nreq == 1);
    if (g.nreq == 1) {
        T_CHECK(g.req[0]->content.len == 3 * 1024 * 1024 + 7);
        T_STREQ(hget(&g.req[0]->trailers, "x-checksum"), "abc");
    }
    h2_conn_free(c);
    peer_free(p);
    got_free(&g);
}

static void t_request_body_limit(void)
{
    got g = {0};
    h2_limits lim;
    h2_limits_default(&lim);
    lim.max_body = 1000;
    h2_conn *c = h2_conn_new(true, &lim, &g_events, &g);
    peer *p = peer_new(false, true);
    size_t left = 200000;
    nghttp2_nv nv[] = {NV(":method", "POST"), NV(":scheme", "https"), NV(":authority", "x"), NV(":path", "/up")};
    nghttp2_data_provider prd = {.source.ptr = &left, .read_callback = upload_read};
    int32_t sid = nghttp2_submit_request(p->s, NULL, nv, 4, &prd, NULL);
    /* and a small one next to it, which must not suffer */
    nghttp2_nv nv2[] = {NV(":method", "GET"), NV(":scheme", "https"), NV(":authority", "x"), NV(":path", "/s")};
    int32_t sid2 = nghttp2_submit_request(p->s, NULL, nv2, 4, NULL, NULL);
    T_CHECK(pump(p, c, 0, NULL) == 0);
    T_CHECK(p->st[sid].status == 413);
    T_CHECK(p->st[sid].closed);
    T_CHECK(g.refused_status == 413);
    T_CHECK(g.nreq == 1 && g.req_sid[0] == sid2);
    h2_conn_free(c);
    peer_free(p);
    got_free(&g);
}

/* A reader that does not take its data holds our output at its window:
 * we neither produce frames past it nor copy the body more than once. */
static void t_response_flow_control(void)
{
    got g = {0};
    h2_limits lim;
    h2_limits_default(&lim);
    h2_conn *c = h2_conn_new(true, &lim, &g_events, &g);
    peer *p = peer_new(false, false);
    nghttp2_nv nv[] = {NV(":method", "GET"), NV(":scheme", "https"), NV(":authority", "x"), NV(":path", "/big")};
    int32_t sid = nghttp2_submit_request(p->s, NULL, nv, 4, NULL, NULL);
    pump(p, c, 0, NULL);
    T_CHECK(g.nreq == 1);
    size_t big = 8 * 1024 * 1024;
    flow_response *s = flow_response_new();
    s->status_code = 200;
    s->content.p = malloc(big + 1);
    memset(s->content.p, 'b', big);
    s->content.len = big;
    s->content.cap = big + 1;
    T_CHECK(h2_submit_response(c, sid, s) == 0);
    flow_response_free(s);
    size_t sent = 0;
    pump(p, c, 16384, &sent);
    /* the peer's default window is 65535 bytes */
    T_CHECK(p->st[sid].body.len == 65535);
    T_CHECK(sent < 65535 + 4096);
    T_CHECK(!p->st[sid].closed);
    /* the reader catches up: the rest follows as it consumes */
    p->consume = true;
    nghttp2_session_consume(p->s, sid, p->st[sid].body.len);
    pump(p, c, 16384, &sent);
    T_CHECK(p->st[sid].body.len == big);
    T_CHECK(p->st[sid].closed && p->st[sid].code == 0);
    h2_conn_free(c);
    peer_free(p);
    got_free(&g);
}

/* stream_large_bodies: the head first, the body piecewise; bytes wait in
 * the stream while the peer's window is shut (h2_stream_pending), and the
 * trailers end it. */
static void t_streamed_response(void)
{
    got g = {0};
    h2_limits lim;
    h2_limits_default(&lim);
    h2_conn *c = h2_conn_new(true, &lim, &g_events, &g);
    peer *p = peer_new(false, false);
    nghttp2_nv nv[] = {NV(":method", "GET"), NV(":scheme", "https"), NV(":authority", "x"), NV(":path", "/s")};
    int32_t sid = nghttp2_submit_request(p->s, NULL, nv, 4, NULL, NULL);
    pump(p, c, 0, NULL);
    T_CHECK(g.nreq == 1);
    flow_response *s = flow_response_new();
    s->status_code = 200;
    hdrs_add(&s->headers, "Content-Type", 12, "text/plain", 10);
    T_CHECK(h2_submit_response_head(c, sid, s) == 0);
    pump(p, c, 0, NULL);
    T_CHECK(p->st[sid].status == 200 && p->st[sid].headers_done && !p->st[sid].closed);
    T_CHECK(p->st[sid].body.len == 0);   /* nothing yet: the provider waits */
    char chunk[40000];
    memset(chunk, 'c', sizeof chunk);
    for (int i = 0; i < 4; i++)
        T_CHECK(h2_stream_write(c, sid, chunk, sizeof chunk) == 0);
    pump(p, c, 0, NULL);
    /* the peer's window (65535) took what it could; the rest waits */
    T_CHECK(p->st[sid].body.len == 65535);
    T_CHECK(h2_stream_pending(c, sid) == 4 * sizeof chunk - 65535);
    p->consume = true;
    nghttp2_session_consume(p->s, sid, p->st[sid].body.len);
    pump(p, c, 0, NULL);
    T_CHECK(p->st[sid].body.len == 4 * sizeof chunk && h2_stream_pending(c, sid) == 0);
    T_CHECK(!p->st[sid].closed);
    hdrs_add(&s->trailers, "x-sum", 5, "42", 2);
    T_CHECK(h2_stream_write(c, sid, "end", 3) == 0);
    T_CHECK(h2_stream_end(c, sid, &s->trailers) == 0);
    T_CHECK(h2_stream_write(c, sid, "late", 4) == -1);   /* after the end */
    pump(p, c, 0, NULL);
    T_CHECK(p->st[sid].body.len == 4 * sizeof chunk + 3 && memcmp(p->st[sid].body.p + 4 * sizeof chunk, "end", 3) == 0);
    T_STREQ(hget(&p->st[sid].trailers, "x-sum"), "42");
    T_CHECK(p->st[sid].closed && p->st[sid].code == 0);
    T_CHECK(h2_stream_write(c, sid, "x", 1) == -1 && h2_stream_pending(c, sid) == 0);   /* gone */
    flow_response_free(s);
    h2_conn_free(c);
    peer_free(p);
    got_free(&g);
}

static void t_invalid_header_resets(void)
{
    got g = {0};
    h2_limits lim;
    h2_limits_default(&lim);
    h2_conn *c = h2_conn_new(true, &lim, &g_events, &g);
    peer *p = peer_new(false, true);
    nghttp2_nv crlf[] = {NV(":method", "GET"), NV(":scheme", "https"), NV(":authority", "x"), NV(":path", "/"),
                         NV("x-evil", "a\r\nInjected: 1")};
    int32_t s1 = nghttp2_submit_request(p->s, NULL, crlf, 5, NULL, NULL);
    nghttp2_nv nul[] = {NV(":method", "GET"), NV(":scheme", "https"), NV(":authority", "x"), NV(":path", "/"),
                        {(uint8_t *)"x-nul", (uint8_t *)"a\0b", 5, 3, 0}};
    int32_t s2 = nghttp2_submit_request(p->s, NULL, nul, 5, NULL, NULL);
    nghttp2_nv conn[] = {NV(":method", "GET"), NV(":scheme", "https"), NV(":authority", "x"), NV(":path", "/"),
                         NV("connection", "close")};
    int32_t s3 = nghttp2_submit_request(p->s, NULL, conn, 5, NULL, NULL);
    nghttp2_nv ok[] = {NV(":method", "GET"), NV(":scheme", "https"), NV(":authority", "x"), NV(":path", "/ok")};
    int32_t s5 = nghttp2_submit_request(p->s, NULL, ok, 4, NULL, NULL);
    T_CHECK(pump(p, c, 0, NULL) == 0);
    T_CHECK(p->st[s1].closed && p->st[s1].code == NGHTTP2_PROTOCOL_ERROR);
    T_CHECK(p->st[s2].closed && p->st[s2].code == NGHTTP2_PROTOCOL_ERROR);
    T_CHECK(p->st[s3].closed && p->st[s3].code == NGHTTP2_PROTOCOL_ERROR);
    /* the connection lives on: only the good request reaches the caller */
    T_CHECK(g.nreq == 1 && g.req_sid[0] == s5);
    T_CHECK(!p->goaway);
    h2_conn_free(c);
    peer_free(p);
    got_free(&g);
}

static void t_header_list_limit(void)
{
    got g = {0};
    h2_limits lim;
    h2_limits_default(&lim);
    lim.max_header_list = 2048;
    h2_conn *c = h2_conn_new(true, &lim, &g_events, &g);
    peer *p = peer_new(false, true);
    static char big[4000];
    memset(big, 'v', sizeof big);
    nghttp2_nv nv[] = {NV(":method", "GET"), NV(":scheme", "https"), NV(":authority", "x"), NV(":path", "/"),
                       {(uint8_t *)"x-big", (uint8_t *)big, 5, sizeof big, 0}};
    int32_t sid = nghttp2_submit_request(p->s, NULL, nv, 5, NULL, NULL);
    T_CHECK(pump(p, c, 0, NULL) == 0);
    T_CHECK(p->st[sid].status == 431);
    T_CHECK(g.nreq == 0 && g.refused_status == 431);
    h2_conn_free(c);
    peer_free(p);
    got_free(&g);
}

static void t_bad_preface(void)
{
    got g = {0};
    h2_limits lim;
    h2_limits_default(&lim);
    h2_conn *c = h2_conn_new(true, &lim, &g_events, &g);
    const char *h1 = "GET / HTTP/1.1\r\nHost: x\r\n\r\n";
    T_CHECK(h2_conn_feed(c, h1, strlen(h1)) == -1);
    T_CHECK(strstr(h2_conn_error(c), "preface") != NULL);
    T_CHECK(h2_preface_match("PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n", 24) == 1);
    T_CHECK(h2_preface_match("PRI * HT", 8) == 0);
    T_CHECK(h2_preface_match("GET / HT", 8) == -1);
    h2_conn_free(c);
    got_free(&g);
}

/* ---- raw frames for abuse ---------------------------------------------- */

static void frame(struct evbuffer *b, uint8_t type, uint8_t flags, uint32_t sid, const void *payload, size_t n)
{
    uint8_t h[9] = {(uint8_t)(n >> 16), (uint8_t)(n >> 8), (uint8_t)n, type, flags,
                    (uint8_t)(sid >> 24), (uint8_t)(sid >> 16), (uint8_t)(sid >> 8), (uint8_t)sid};
    evbuffer_add(b, h, 9);
    if (n)
        evbuffer_add(b, payload, n);
}

/* :method GET, :scheme https, :path /, :authority a — HPACK static
 * indexes and one literal without indexing */
static const uint8_t req_block[] = {0x82, 0x87, 0x84, 0x01, 0x01, 'a'};

static void raw_start(struct evbuffer *b)
{
    evbuffer_add(b, NGHTTP2_CLIENT_MAGIC, NGHTTP2_CLIENT_MAGIC_LEN);
    frame(b, NGHTTP2_SETTINGS, 0, 0, NULL, 0);
}

/* Feed the raw bytes; the result and whether our answer has GOAWAY with
 * the expected code. */
static int raw_feed(h2_conn *c, struct evbuffer *in, uint32_t *goaway_code)
{
    int rv = h2_conn_feed(c, evbuffer_pullup(in, -1), evbuffer_get_length(in));
    struct evbuffer *out = evbuffer_new();
    h2_conn_flush(c, out, 0);
    *goaway_code = UINT32_MAX;
    /* walk our frames */
    size_t len = evbuffer_get_length(out);
    const uint8_t *o = evbuffer_pullup(out, -1);
    for (size_t i = 0; i + 9 <= len;) {
        size_t fl = (size_t)o[i] << 16 | (size_t)o[i + 1] << 8 | o[i + 2];
        if (o[i + 3] == NGHTTP2_GOAWAY && i + 9 + 8 <= len)
            *goaway_code = (uint32_t)o[i + 13] << 24 | (uint32_t)o[i + 14] << 16 | (uint32_t)o[i + 15] << 8 | o[i + 16];
        i += 9 + fl;
    }
    evbuffer_free(out);
    return rv;
}

static void t_continuation_flood(void)
{
    got g = {0};
    h2_limits lim;
    h2_limits_default(&lim);
    h2_conn *c = h2_conn_new(true, &lim, &g_events, &g);
    struct evbuffer *in = evbuffer_new();
    raw_start(in);
    frame(in, NGHTTP2_HEADERS, 0, 1, req_block, sizeof req_block);
    static const uint8_t crumb[] = {0x00, 0x01, 'x', 0x01, 'y'}; /* x: y, never indexed */
    for (int i = 0; i < 10000; i++)
        frame(in, NGHTTP2_CONTINUATION, 0, 1, crumb, sizeof crumb);
    uint32_t code;
    T_CHECK(raw_feed(c, in, &code) == -1);
    T_CHECK(code != UINT32_MAX && code != 0);
    T_CHECK(g.nreq == 0);
    evbuffer_free(in);
    h2_conn_free(c);
    got_free(&g);
}

static void t_rapid_reset(void)
{
    got g = {0};
    h2_limits lim;
    h2_limits_default(&lim);
    h2_conn *c = h2_conn_new(true, &lim, &g_events, &g);
    struct evbuffer *in = evbuffer_new();
    raw_start(in);
    static const uint8_t cancel[4] = {0, 0, 0, NGHTTP2_CANCEL};
    for (uint32_t sid = 1; sid < 2 * 5000; sid += 2) {
        frame(in, NGHTTP2_HEADERS, NGHTTP2_FLAG_END_HEADERS, sid, req_block, sizeof req_block);
        frame(in, NGHTTP2_RST_STREAM, 0, sid, cancel, 4);
    }
    uint32_t code;
    int rv = raw_feed(c, in, &code);
    T_CHECK(rv == -1 || code != UINT32_MAX);
    /* nghttp2's rate limit says INTERNAL_ERROR; either way the connection ends */
    T_CHECK(code == NGHTTP2_ENHANCE_YOUR_CALM || code == NGHTTP2_INTERNAL_ERROR);
    T_CHECK(!h2_conn_alive(c));
    T_CHECK(h2_conn_streams(c) == 0);
    evbuffer_free(in);
    h2_conn_free(c);
    got_free(&g);
}

static void t_settings_flood(void)
{
    got g = {0};
    h2_limits lim;
    h2_limits_default(&lim);
    h2_conn *c = h2_conn_new(true, &lim, &g_events, &g);
    struct evbuffer *in = evbuffer_new();
    raw_start(in);
    for (int i = 0; i < 5000; i++)
        frame(in, NGHTTP2_SETTINGS, 0, 0, NULL, 0);
    uint32_t code;
    int rv = raw_feed(c, in, &code);
    T_CHECK(rv == -1);
    T_CHECK(code == NGHTTP2_ENHANCE_YOUR_CALM);
    evbuffer_free(in);
    h2_conn_free(c);
    got_free(&g);
}

/* Streams past the granted maximum.  Before the client acknowledged our
 * SETTINGS the excess is refused (REFUSED_STREAM, which a client may
 * retry); after it, nghttp2 treats the excess as a connection error
 * (PROTOCOL_ERROR, RFC 9113 §5.1.2).  Either way three streams stay. */
static void too_many_streams(bool acked)
{
    got g = {0};
    h2_limits lim;
    h2_limits_default(&lim);
    lim.max_streams = 3;
    h2_conn *c = h2_conn_new(true, &lim, &g_events, &g);
    struct evbuffer *in = evbuffer_new();
    struct evbuffer *out = evbuffer_new();
    raw_start(in);
    T_CHECK(h2_conn_feed(c, evbuffer_pullup(in, -1), evbuffer_get_length(in)) == 0);
    evbuffer_drain(in, evbuffer_get_length(in));
    h2_conn_flush(c, out, 0); /* our SETTINGS are out */
    evbuffer_drain(out, evbuffer_get_length(out));
    if (acked)
        frame(in, NGHTTP2_SETTINGS, NGHTTP2_FLAG_ACK, 0, NULL, 0);
    for (uint32_t sid = 1; sid <= 11; sid += 2)
        frame(in, NGHTTP2_HEADERS, NGHTTP2_FLAG_END_HEADERS, sid, req_block, sizeof req_block);
    int rv = h2_conn_feed(c, evbuffer_pullup(in, -1), evbuffer_get_length(in));
    T_CHECK(rv == 0);
    T_CHECK(h2_conn_streams(c) == 3);
    h2_conn_flush(c, out, 0);
    size_t len = evbuffer_get_length(out), refused = 0;
    int goaway = -1;
    const uint8_t *o = evbuffer_pullup(out, -1);
    for (size_t i = 0; i + 9 <= len;) {
        size_t fl = (size_t)o[i] << 16 | (size_t)o[i + 1] << 8 | o[i + 2];
        if (o[i + 3] == NGHTTP2_RST_STREAM && o[i + 12] == NGHTTP2_REFUSED_STREAM)
            refused++;
        if (o[i + 3] == NGHTTP2_GOAWAY)
            goaway = o[i + 16];
        i += 9 + fl;
    }
    if (acked) {
        T_CHECK(goaway == NGHTTP2_PROTOCOL_ERROR);
    } else {
        T_CHECK(refused == 3);
        T_CHECK(goaway == -1);
    }
    evbuffer_free(out);
    evbuffer_free(in);
    h2_conn_free(c);
    got_free(&g);
}

static void t_too_many_streams(void)
{
    too_many_streams(false);
    too_many_streams(true);
}

/* Upper-case field names (nghttp2 1.52 lets them through; a well-behaved
 * encoder lower-cases, so raw frames) reset the stream. */
static void t_uppercase_name(void)
{
    got g = {0};
    h2_limits lim;
    h2_limits_default(&lim);
    h2_conn *c = h2_conn_new(true, &lim, &g_events, &g);
    struct evbuffer *in = evbuffer_new();
    raw_start(in);
    uint8_t block[sizeof req_block + 9];
    memcpy(block, req_block, sizeof req_block);
    memcpy(block + sizeof req_block, "\x00\x04X-Up\x01v", 8);
    frame(in, NGHTTP2_HEADERS, NGHTTP2_FLAG_END_HEADERS | NGHTTP2_FLAG_END_STREAM, 1, block, sizeof req_block + 8);
    frame(in, NGHTTP2_HEADERS, NGHTTP2_FLAG_END_HEADERS | NGHTTP2_FLAG_END_STREAM, 3, req_block, sizeof req_block);
    T_CHECK(h2_conn_feed(c, evbuffer_pullup(in, -1), evbuffer_get_length(in)) == 0);
    struct evbuffer *out = evbuffer_new();
    h2_conn_flush(c, out, 0);
    size_t len = evbuffer_get_length(out);
    const uint8_t *o = evbuffer_pullup(out, -1);
    bool reset1 = false;
    for (size_t i = 0; i + 9 <= len;) {
        size_t fl = (size_t)o[i] << 16 | (size_t)o[i + 1] << 8 | o[i + 2];
        if (o[i + 3] == NGHTTP2_RST_STREAM && o[i + 8] == 1 && o[i + 12] == NGHTTP2_PROTOCOL_ERROR)
            reset1 = true;
        i += 9 + fl;
    }
    T_CHECK(reset1);
    T_CHECK(g.nreq == 1 && g.req_sid[0] == 3);
    evbuffer_free(out);
    evbuffer_free(in);
    h2_conn_free(c);
    got_free(&g);
}

/* ---- client side -------------------------------------------------------- */

/* A plain GET for / on host "h" (port 0: the scheme's default), sent on c. */
static int32_t submit_get(h2_conn *c, const char *scheme, uint16_t port)
{
    flow_request *r = flow_request_new();
    flow_strset(&r->method, "GET");
    flow_strset(&r->host, "h");
    flow_strset(&r->scheme, scheme);
    flow_strset(&r->path, "/");
    r->port = port;
    int32_t sid = h2_submit_request(c, r);
    flow_request_free(r);
    return sid;
}

static void t_client_request(void)
{
    got g = {0};
    h2_limits lim;
    h2_limits_default(&lim);
    h2_conn *c = h2_conn_new(false, &lim, &g_events, &g);
    peer *p = peer_new(true, true);
    p->answer_body = "answer body";
    p->answer_trailers = true;
    flow_request *r = flow_request_new();
    flow_strset(&r->method, "POST");
    flow_strset(&r->scheme, "https");
    flow_strset(&r->authority, "client.example"); /* Host wins: rewrites change it */
    flow_strset(&r->host, "example.org");
    flow_strset(&r->path, "/p?q");
    r->port = 443;
    hdrs_add(&r->headers, "Host", 4, "example.org:8443", 16);
    hdrs_add(&r->headers, "Connection", 10, "keep-alive, X-Hop", 17);
    hdrs_add(&r->headers, "X-Hop", 5, "1", 1);
    hdrs_add(&r->headers, "Keep-Alive", 10, "timeout=5", 9);
    hdrs_add(&r->headers, "Proxy-Connection", 16, "keep-alive", 10);
    hdrs_add(&r->headers, "Upgrade", 7, "websocket", 9);
    hdrs_add(&r->headers, "Transfer-Encoding", 17, "chunked", 7);
    hdrs_add(&r->headers, "TE", 2, "trailers", 8);
    hdrs_add(&r->headers, "Accept", 6, "*/*", 3);
    bytes_set(&r->content, "up", 2);
    hdrs_add(&r->trailers, "X-Sum", 5, "42", 2);
    int32_t sid = h2_submit_request(c, r);
    T_CHECK(sid == 1);
    flow_request_free(r);
    T_CHECK(pump(p, c, 0, NULL) == 0);
    pstream *ps = &p->st[1];
    T_STREQ(hget(&ps->headers, ":authority"), "example.org:8443");
    T_STREQ(hget(&ps->headers, ":method"), "POST");
    T_STREQ(hget(&ps->headers, ":path"), "/p?q");
    T_STREQ(hget(&ps->headers, "te"), "trailers");
    T_STREQ(hget(&ps->headers, "accept"), "*/*");
    T_CHECK(hget(&ps->headers, "host") == NULL && hget(&ps->headers, "connection") == NULL &&
            hget(&ps->headers, "transfer-encoding") == NULL);
    /* what Connection names, and the other HTTP/1 hop fields, stay behind */
    T_CHECK(hget(&ps->headers, "x-hop") == NULL && hget(&ps->headers, "keep-alive") == NULL &&
            hget(&ps->headers, "proxy-connection") == NULL && hget(&ps->headers, "upgrade") == NULL);
    T_CHECK(ps->body.len == 2);
    T_STREQ(hget(&ps->trailers, "x-sum"), "42");
    T_CHECK(g.resp != NULL);
    if (g.resp) {
        T_CHECK(g.resp->status_code == 201);
        T_STREQ(g.resp->http_version, "HTTP/2.0");
        T_STREQ(g.resp->reason, "");
        T_STREQ(hget(&g.resp->headers, "content-type"), "text/plain");
        T_CHECK(g.resp->content.len == 11 && memcmp(g.resp->content.p, "answer body", 11) == 0);
        T_STREQ(hget(&g.resp->trailers, "grpc-status"), "0");
    }
    T_CHECK(g.closed == 1 && g.last_code == 0);
    h2_conn_free(c);
    peer_free(p);
    got_free(&g);
}

static void t_client_body_limit(void)
{
    got g = {0};
    h2_limits lim;
    h2_limits_default(&lim);
    lim.max_body = 4;
    h2_conn *c = h2_conn_new(false, &lim, &g_events, &g);
    peer *p = peer_new(true, true);
    p->answer_body = "more than four bytes";
    int32_t sid = submit_get(c, "http", 8080);
    T_CHECK(pump(p, c, 0, NULL) == 0);
    T_STREQ(hget(&p->st[sid].headers, ":authority"), "h:8080");
    T_CHECK(g.resp == NULL);
    T_CHECK(g.refused_status == 502);
    T_CHECK(g.closed == 1);
    h2_conn_free(c);
    peer_free(p);
    got_free(&g);
}

/* Progressive delivery on the client side: the 103 is reported, the head
 * is lent before the body, and body bytes the caller takes hold the
 * server back until it gives the window back with h2_consume. */
typedef struct prog {
    int interim_status;
    char interim_link[64];
    flow_response *head;
    flow_response *resp;
    size_t taken;
    bool closed;
} prog;

static void pg_interim(void *ud, int32_t sid, const flow_response *s)
{
    prog *g = ud;
    g->interim_status = s->status_code;
    snprintf(g->interim_link, sizeof g->interim_link, "%s", hget(&s->headers, "link") ? hget(&s->headers, "link") : "");
}

static int pg_head(void *ud, int32_t sid, flow_response *s)
{
    ((prog *)ud)->head = s;
    return 1;
}

static int pg_data(void *ud, int32_t sid, const uint8_t *d, size_t n)
{
    ((prog *)ud)->taken += n;
    return 1;
}

static void pg_response(void *ud, int32_t sid, flow_response *s)
{
    ((prog *)ud)->resp = s;
}

static void pg_close(void *ud, int32_t sid, uint32_t code)
{
    ((prog *)ud)->closed = true;
}

static void t_client_progressive(void)
{
    static const h2_events ev = {.on_request = g_request, .on_response = pg_response, .on_close = pg_close,
                                 .on_interim = pg_interim, .on_head = pg_head, .on_data = pg_data};
    prog g = {0};
    h2_limits lim;
    h2_limits_default(&lim);
    lim.window = 65535;
    h2_conn *c = h2_conn_new(false, &lim, &ev, &g);
    peer *p = peer_new(true, true);
    static char big[200000];
    memset(big, 'b', sizeof big - 1);
    p->answer_body = big;
    p->answer_interim = true;
    p->answer_trailers = true;
    int32_t sid = submit_get(c, "https", 443);
    T_CHECK(pump(p, c, 0, NULL) == 0);
    T_CHECK(g.interim_status == 103);
    T_STREQ(g.interim_link, "</a.css>; rel=preload");
    T_CHECK(g.head != NULL && g.head->status_code == 201);
    if (g.head)
        T_STREQ(g.head->http_version, "HTTP/2.0");
    /* nothing given back: the server stopped at the stream's window */
    T_CHECK(g.taken > 0 && g.taken <= 65535 && g.resp == NULL);
    size_t given = 0;
    for (int i = 0; i < 100 && !g.resp; i++) {
        h2_consume(c, sid, g.taken - given); /* the reader took it all */
        given = g.taken;
        pump(p, c, 0, NULL);
    }
    T_CHECK(g.taken == sizeof big - 1);
    T_CHECK(g.resp != NULL && g.resp == g.head);
    if (g.resp) {
        T_CHECK(g.resp->content.len == 0); /* the caller took the body */
        T_STREQ(hget(&g.resp->trailers, "grpc-status"), "0");
    }
    T_CHECK(g.closed && h2_conn_can_request(c));
    flow_response_free(g.resp);
    h2_conn_free(c);
    peer_free(p);
}

/* The caller takes the head, then gives up on the stream (a hook refused
 * the response): after h2_reset_stream the response is the caller's to
 * free at once, whatever frames of the stream are still on the way. */
static int pg_head_reset(void *ud, int32_t sid, flow_response *s)
{
    prog *g = ud;
    g->head = s;
    return 1;
}

static void t_client_reset_after_head(void)
{
    static const h2_events ev = {.on_request = g_request, .on_response = pg_response, .on_close = pg_close,
                                 .on_head = pg_head_reset};
    prog g = {0};
    h2_limits lim;
    h2_limits_default(&lim);
    h2_conn *c = h2_conn_new(false, &lim, &ev, &g);
    peer *p = peer_new(true, true);
    static char big[100000];
    memset(big, 'r', sizeof big - 1);
    p->answer_body = big;
    p->answer_trailers = true;
    int32_t sid = submit_get(c, "https", 0);
    /* our request out, the peer's head (and some body) in */
    struct evbuffer *out = evbuffer_new();
    h2_conn_flush(c, out, 0);
    nghttp2_session_mem_recv(p->s, evbuffer_pullup(out, -1), evbuffer_get_length(out));
    evbuffer_drain(out, evbuffer_get_length(out));
    const uint8_t *d;
    ssize_t n;
    while (!g.head && (n = nghttp2_session_mem_send(p->s, &d)) > 0)
        h2_conn_feed(c, d, (size_t)n);
    T_CHECK(g.head != NULL);
    T_CHECK(h2_reset_stream(c, sid, H2_CANCEL) == 0);
    T_CHECK(h2_reset_stream(c, sid, H2_CANCEL) == 0); /* a second one is not sent */
    flow_response_free(g.head);
    pump(p, c, 0, NULL); /* the rest of the body and the trailers: dropped */
    T_CHECK(g.resp == NULL && g.closed);
    T_CHECK(p->st[sid].closed);
    T_CHECK(h2_conn_can_request(c));
    evbuffer_free(out);
    h2_conn_free(c);
    peer_free(p);
}

/* A response field that HTTP/2 cannot carry fails the submission instead
 * of going out damaged. */
static void t_unsendable_field(void)
{
    got g = {0};
    h2_limits lim;
    h2_limits_default(&lim);
    h2_conn *c = h2_conn_new(true, &lim, &g_events, &g);
    peer *p = peer_new(false, true);
    nghttp2_nv nv[] = {NV(":method", "GET"), NV(":scheme", "https"), NV(":authority", "x"), NV(":path", "/")};
    int32_t sid = nghttp2_submit_request(p->s, NULL, nv, 4, NULL, NULL);
    pump(p, c, 0, NULL);
    flow_response *s = flow_response_new();
    s->status_code = 200;
    hdrs_add(&s->headers, "X-Bad", 5, "a\nb", 3);
    T_CHECK(h2_submit_response(c, sid, s) == -1);
    T_CHECK(strstr(h2_conn_error(c), "X-Bad") != NULL);
    flow_response_free(s);
    T_CHECK(h2_submit_response(c, 999, s = flow_response_new()) == -1);
    flow_response_free(s);
    h2_conn_free(c);
    peer_free(p);
    got_free(&g);
}

int main(void)
{
    T_RUN(t_request_mapping);
    T_RUN(t_streamed_response);
    T_RUN(t_authority_from_host);
    T_RUN(t_request_body_and_trailers);
    T_RUN(t_request_body_limit);
    T_RUN(t_response_flow_control);
    T_RUN(t_invalid_header_resets);
    T_RUN(t_header_list_limit);
    T_RUN(t_too_many_streams);
    T_RUN(t_uppercase_name);
    T_RUN(t_bad_preface);
    T_RUN(t_continuation_flood);
    T_RUN(t_rapid_reset);
    T_RUN(t_settings_flood);
    T_RUN(t_client_request);
    T_RUN(t_client_body_limit);
    T_RUN(t_client_progressive);
    T_RUN(t_client_reset_after_head);
    T_RUN(t_unsendable_field);
    T_DONE();
}
