/* libFuzzer target: the HTTP/1 request parser, fed in two pieces split at a
 * position taken from the input, then serialised back.  Round trip: what
 * the writer makes of a parsed request parses again, and serialises to the
 * same bytes (parse → serialise → parse → serialise is stable). */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include "h1.h"

static int on_head(void *ud) { return 0; }
static int on_body(void *ud, const char *at, size_t n) { return bytes_append(ud, at, n); }

static const h1_events ev = {on_head, on_body};
static const h1_limits lim = {.max_head = 8192, .max_headers = 64, .max_body = 1 << 20};

/* the request as the proxy forwards it (upstream.c): origin form, chunked
 * when its Transfer-Encoding says so */
static void serialise(struct evbuffer *out, const flow_request *r, const bytes *body)
{
    h1_write_request_head(out, r, false);
    h1_write_body(out, body, h1_is_chunked(&r->headers), &r->trailers);
}

static void round_trip(const flow_request *r0, const bytes *body0)
{
    struct evbuffer *first = evbuffer_new(), *second = evbuffer_new();
    serialise(first, r0, body0);
    size_t n1 = evbuffer_get_length(first);
    unsigned char *s1 = malloc(n1 + 1);
    evbuffer_copyout(first, s1, n1);

    bytes body = {0};
    h1_parser *p = h1_parser_new_request(&lim, &ev, &body);
    flow_request *r = flow_request_new();
    h1_parser_begin_request(p, r);
    enum h1_status st = h1_parser_feed(p, first);
    if (st == H1_NEED_MORE)
        st = h1_parser_eof(p);
    if (st != H1_DONE)
        abort();  /* the writer's output does not parse */
    serialise(second, r, &body);
    size_t n2 = evbuffer_get_length(second);
    unsigned char *s2 = evbuffer_pullup(second, -1);
    if (n1 != n2 || (n1 && memcmp(s1, s2, n1) != 0))
        abort();  /* the second serialisation differs from the first */
    free(s1);
    flow_request_free(r);
    h1_parser_free(p);
    bytes_free(&body);
    evbuffer_free(first);
    evbuffer_free(second);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    bytes body = {0};
    h1_parser *p = h1_parser_new_request(&lim, &ev, &body);
    struct evbuffer *in = evbuffer_new();
    size_t split = size ? data[0] % (size + 1) : 0;
    for (int msg = 0; msg < 4; msg++) {
        flow_request *r = flow_request_new();
        h1_parser_begin_request(p, r);
        enum h1_status st;
        if (msg == 0) {
            evbuffer_add(in, data, split);
            st = h1_parser_feed(p, in);
            if (st == H1_NEED_MORE) {
                evbuffer_add(in, data + split, size - split);
                st = h1_parser_feed(p, in);
            } else {
                evbuffer_add(in, data + split, size - split);
            }
        } else {
            st = h1_parser_feed(p, in);
        }
        if (st == H1_NEED_MORE)
            st = h1_parser_eof(p);
        if (st == H1_DONE) {
            struct evbuffer *out = evbuffer_new();
            h1_write_request_head(out, r, msg & 1);
            h1_write_body(out, &body, msg & 1, &r->trailers);
            evbuffer_free(out);
            /* an upgrade or CONNECT hands the rest of the bytes to another
             * protocol: nothing to compare */
            if (!h1_parser_upgrade(p) && strcmp(r->method, "CONNECT") != 0)
                round_trip(r, &body);
        }
        flow_request_free(r);
        bytes_reset(&body);
        if (st != H1_DONE || h1_parser_upgrade(p))
            break;
    }
    evbuffer_free(in);
    h1_parser_free(p);
    bytes_free(&body);
    return 0;
}
