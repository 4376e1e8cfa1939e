/* libFuzzer target: the HTTP/2 server side fed raw bytes in pieces whose
 * sizes come from the input; every complete request is answered (with its
 * own headers, body and trailers echoed), and output is drained between
 * pieces as a socket would.  Round trip: a request the server side parsed,
 * sent again by our client side to a fresh server side, arrives; sent once
 * more, it arrives unchanged (parse → serialise → parse is stable). */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include "h2.h"
#include "h2_pump.h"

/* ---- round trip through our own client and server sides ---- */

static void rt_on_request(void *ud, int32_t sid, flow_request *r)
{
    flow_request **got = ud;
    if (*got)
        flow_request_free(*got);
    *got = r;
}

/* r sent by a client side to a server side: what the server side got, or
 * NULL when the client side would not send it */
static flow_request *relay(const flow_request *r)
{
    static const h2_events sev = {.on_request = rt_on_request};
    static const h2_events cev = {0};
    h2_limits lim;
    h2_limits_default(&lim);
    flow_request *got = NULL;
    h2_conn *cli = h2_conn_new(false, &lim, &cev, NULL);
    h2_conn *srv = h2_conn_new(true, &lim, &sev, &got);
    struct evbuffer *b = evbuffer_new();
    if (cli && srv && b && h2_submit_request(cli, r) > 0)
        for (int i = 0; i < 64 && !got; i++) {
            pump(cli, srv, b);
            pump(srv, cli, b);
        }
    evbuffer_free(b);
    h2_conn_free(cli);
    h2_conn_free(srv);
    return got;
}

static bool str_eq(const char *a, const char *b)
{
    return (!a || !*a) ? (!b || !*b) : (b && strcmp(a, b) == 0);
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

static bool req_same(const flow_request *a, const flow_request *b)
{
    return str_eq(a->method, b->method) && str_eq(a->scheme, b->scheme) &&
           str_eq(a->authority, b->authority) && str_eq(a->path, b->path) &&
           hdrs_same(&a->headers, &b->headers) && hdrs_same(&a->trailers, &b->trailers) &&
           a->content.len == b->content.len &&
           (!a->content.len || memcmp(a->content.p, b->content.p, a->content.len) == 0);
}

static void round_trip(const flow_request *r)
{
    flow_request *once = relay(r);
    if (!once)
        return;
    flow_request *twice = relay(once);
    if (!twice || !req_same(once, twice))
        abort();  /* what our server side parsed does not travel unchanged */
    flow_request_free(once);
    flow_request_free(twice);
}

/* ---- the target ---- */

typedef struct fz {
    h2_conn *c;
} fz;

static void on_request(void *ud, int32_t sid, flow_request *r)
{
    fz *z = ud;
    round_trip(r);
    flow_response *s = flow_response_new();
    if (s) {
        s->status_code = 200;
        hdrs_copy(&s->headers, &r->headers);
        hdrs_copy(&s->trailers, &r->trailers);
        bytes_set(&s->content, r->content.p, r->content.len);
        h2_submit_response(z->c, sid, s);
        flow_response_free(s);
    }
    flow_request_free(r);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static const h2_events ev = {.on_request = on_request};
    h2_limits lim;
    h2_limits_default(&lim);
    lim.max_body = 1 << 16;
    lim.max_header_list = 4096;
    lim.max_streams = 8;
    fz z;
    z.c = h2_conn_new(true, &lim, &ev, &z);
    if (!z.c)
        return 0;
    struct evbuffer *out = evbuffer_new();
    size_t step = size ? (size_t)data[0] % 64 + 1 : 1;
    for (size_t off = 0; off < size; off += step) {
        size_t n = size - off < step ? size - off : step;
        int rv = h2_conn_feed(z.c, data + off, n);
        h2_conn_flush(z.c, out, 1 << 16);
        evbuffer_drain(out, evbuffer_get_length(out));
        if (rv < 0)
            break;
    }
    h2_conn_flush(z.c, out, 0);
    evbuffer_free(out);
    h2_conn_free(z.c);
    return 0;
}
