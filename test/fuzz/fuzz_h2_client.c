/* libFuzzer target: the HTTP/2 client side (our requests to a server) fed
 * a hostile server's bytes in pieces whose sizes come from the input.
 * Two requests are in flight; responses are delivered progressively, as
 * upstream.c takes them: the head is taken early, and body bytes are taken
 * and given back to the window, or left to the module, by turns, and
 * some heads are refused (the stream reset, the response freed).  Round
 * trip: a response the client side completed, sent by our server side to
 * a fresh client side and then once more, arrives the same. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include "h2.h"
#include "h2_pump.h"

/* ---- round trip through our own server and client sides ---- */

typedef struct rt {
    int32_t sid;           /* the server side's stream to answer on */
    flow_response *got;    /* what the client side received */
} rt;

static void rt_on_request(void *ud, int32_t sid, flow_request *r)
{
    ((rt *)ud)->sid = sid;
    flow_request_free(r);
}

static void rt_on_response(void *ud, int32_t sid, flow_response *s)
{
    rt *t = ud;
    flow_response_free(t->got);
    t->got = s;
}

/* s sent by a server side in answer to a GET: what the client side got,
 * or NULL when the server side would not send it */
static flow_response *relay(const flow_response *s)
{
    static const h2_events sev = {.on_request = rt_on_request};
    static const h2_events cev = {.on_response = rt_on_response};
    h2_limits lim;
    h2_limits_default(&lim);
    rt t = {0};
    h2_conn *cli = h2_conn_new(false, &lim, &cev, &t);
    h2_conn *srv = h2_conn_new(true, &lim, &sev, &t);
    struct evbuffer *b = evbuffer_new();
    flow_request *r = flow_request_new();
    if (r)
        r->port = 443;
    if (cli && srv && b && r && flow_strset(&r->method, "GET") == 0 &&
        flow_strset(&r->scheme, "https") == 0 && flow_strset(&r->host, "example.org") == 0 &&
        flow_strset(&r->path, "/rt") == 0 && h2_submit_request(cli, r) > 0) {
        for (int i = 0; i < 16 && !t.sid; i++) {
            pump(cli, srv, b);
            pump(srv, cli, b);
        }
        if (t.sid > 0 && h2_submit_response(srv, t.sid, s) == 0)
            for (int i = 0; i < 64 && !t.got; i++) {
                pump(srv, cli, b);
                pump(cli, srv, b);
            }
    }
    flow_request_free(r);
    evbuffer_free(b);
    h2_conn_free(cli);
    h2_conn_free(srv);
    return t.got;
}

static bool hdrs_same(const hdrs *a, const hdrs *b)
{
    if (a->n != b->n)
        return false;
    for (size_t i = 0; i < a->n; i++)
        if (a->v[i].name_len != b->v[i].name_len || a->v[i].value_len != b->v[i].value_len ||
            memcmp(a->v[i].name, b->v[i].name, a->v[i].name_len) != 0 ||
            memcmp(a->v[i].value, b->v[i].value, a->v[i].value_len) != 0)
            return false;
    return true;
}

static void round_trip(const flow_response *s)
{
    flow_response *once = relay(s);
    if (!once)
        return;
    flow_response *twice = relay(once);
    if (!twice || twice->status_code != once->status_code ||
        !hdrs_same(&once->headers, &twice->headers) || !hdrs_same(&once->trailers, &twice->trailers) ||
        once->content.len != twice->content.len ||
        (once->content.len && memcmp(once->content.p, twice->content.p, once->content.len) != 0))
        abort();  /* what our client side parsed does not travel unchanged */
    flow_response_free(once);
    flow_response_free(twice);
}

/* ---- the target ---- */

#define FZ_STREAMS 8

typedef struct fz {
    h2_conn *c;
    int32_t sid[FZ_STREAMS];
    flow_response *head[FZ_STREAMS];  /* taken at on_head, ours to free */
    unsigned turn;
} fz;

static int slot(fz *z, int32_t sid)
{
    for (int i = 0; i < FZ_STREAMS; i++)
        if (z->sid[i] == sid)
            return i;
    return -1;
}

static void on_request(void *ud, int32_t sid, flow_request *r)
{
    flow_request_free(r);
}

static void on_interim(void *ud, int32_t sid, const flow_response *s)
{
    (void)hdrs_get(&s->headers, "link", NULL);
}

static int on_head(void *ud, int32_t sid, flow_response *s)
{
    fz *z = ud;
    int i = slot(z, sid);
    if (i < 0 || z->head[i])
        return 0;
    if (z->turn++ % 3 == 2) {
        /* as upstream.c when a hook refuses the head: reset, then free */
        h2_reset_stream(z->c, sid, H2_CANCEL);
        flow_response_free(s);
        return 1;
    }
    z->head[i] = s;
    return 1;
}

static int on_data(void *ud, int32_t sid, const uint8_t *data, size_t n)
{
    fz *z = ud;
    if (z->turn++ % 2)
        return 0;
    h2_consume(z->c, sid, n);
    return 1;
}

static void on_response(void *ud, int32_t sid, flow_response *s)
{
    fz *z = ud;
    int i = slot(z, sid);
    if (i >= 0 && z->head[i] == s)
        z->head[i] = NULL;
    round_trip(s);
    flow_response_free(s);
}

static void on_close(void *ud, int32_t sid, uint32_t code)
{
    fz *z = ud;
    int i = slot(z, sid);
    if (i < 0)
        return;
    flow_response_free(z->head[i]); /* taken, never completed */
    z->head[i] = NULL;
    z->sid[i] = 0;
}

static void submit(fz *z, const char *method, const char *body)
{
    flow_request *r = flow_request_new();
    if (!r)
        return;
    flow_strset(&r->method, method);
    flow_strset(&r->scheme, "https");
    flow_strset(&r->host, "example.org");
    flow_strset(&r->path, "/fuzz");
    r->port = 443;
    hdrs_add(&r->headers, "Host", 4, "example.org", 11);
    hdrs_add(&r->headers, "Connection", 10, "keep-alive", 10);
    if (body) {
        bytes_set(&r->content, body, strlen(body));
        hdrs_add(&r->trailers, "X-Sum", 5, "1", 1);
    }
    int32_t sid = h2_submit_request(z->c, r);
    int i = slot(z, 0);
    if (sid > 0 && i >= 0)
        z->sid[i] = sid;
    flow_request_free(r);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static const h2_events ev = {.on_request = on_request, .on_response = on_response, .on_close = on_close,
                                 .on_interim = on_interim, .on_head = on_head, .on_data = on_data};
    h2_limits lim;
    h2_limits_default(&lim);
    lim.max_body = 1 << 16;
    lim.max_header_list = 4096;
    lim.window = 1 << 14;
    fz z;
    memset(&z, 0, sizeof z);
    z.c = h2_conn_new(false, &lim, &ev, &z);
    if (!z.c)
        return 0;
    submit(&z, "GET", NULL);
    submit(&z, "POST", "request body");
    struct evbuffer *out = evbuffer_new();
    h2_conn_flush(z.c, out, 0);
    evbuffer_drain(out, evbuffer_get_length(out));
    size_t step = size ? (size_t)data[0] % 64 + 1 : 1;
    for (size_t off = 0; off < size; off += step) {
        size_t n = size - off < step ? size - off : step;
        int rv = h2_conn_feed(z.c, data + off, n);
        h2_conn_flush(z.c, out, 1 << 16);
        evbuffer_drain(out, evbuffer_get_length(out));
        if (rv < 0)
            break;
        if (off == 0 && h2_conn_can_request(z.c))
            submit(&z, "GET", NULL); /* a stream opened after SETTINGS */
    }
    h2_conn_flush(z.c, out, 0);
    evbuffer_free(out);
    h2_conn_free(z.c);
    for (int i = 0; i < FZ_STREAMS; i++)
        flow_response_free(z.head[i]); /* h2_conn_free does not report closes */
    return 0;
}
