/* libFuzzer target: the HTTP/1 response parser (HEAD or not, from the first
 * byte), including close-delimited bodies, then serialised back.  Round
 * trip: what the writer makes of a parsed response parses again, and
 * serialises to the same bytes (parse → serialise → parse → serialise is
 * stable). */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include "h1.h"

static int on_head(void *ud) { return 0; }
static int on_body(void *ud, const char *at, size_t n) { return bytes_append(ud, at, n); }

static const h1_events ev = {on_head, on_body};
static const h1_limits lim = {.max_head = 8192, .max_headers = 64, .max_body = 1 << 20};

/* the response as the proxy forwards it (proxy.c): chunked when its
 * Transfer-Encoding says so, whatever framing the body came with; no body
 * at all where HTTP/1.1 allows none (an answer to HEAD, 204, 304) */
static void serialise(struct evbuffer *out, const flow_response *s, const bytes *body, bool no_body)
{
    h1_write_response_head(out, s);
    if (!no_body && s->status_code != 204 && s->status_code != 304)
        h1_write_body(out, body, h1_is_chunked(&s->headers), &s->trailers);
}

static void round_trip(const flow_response *s0, const bytes *body0, bool no_body)
{
    struct evbuffer *first = evbuffer_new(), *second = evbuffer_new();
    serialise(first, s0, body0, no_body);
    size_t n1 = evbuffer_get_length(first);
    unsigned char *s1 = malloc(n1 + 1);
    evbuffer_copyout(first, s1, n1);

    bytes body = {0};
    h1_parser *p = h1_parser_new_response(&lim, &ev, &body);
    flow_response *s = flow_response_new();
    h1_parser_begin_response(p, s, no_body);
    enum h1_status st = h1_parser_feed(p, first);
    if (st == H1_NEED_MORE)
        st = h1_parser_eof(p);
    if (st != H1_DONE)
        abort();  /* the writer's output does not parse */
    serialise(second, s, &body, no_body);
    size_t n2 = evbuffer_get_length(second);
    unsigned char *s2 = evbuffer_pullup(second, -1);
    if (n1 != n2 || (n1 && memcmp(s1, s2, n1) != 0))
        abort();  /* the second serialisation differs from the first */
    free(s1);
    flow_response_free(s);
    h1_parser_free(p);
    bytes_free(&body);
    evbuffer_free(first);
    evbuffer_free(second);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1)
        return 0;
    bytes body = {0};
    h1_parser *p = h1_parser_new_response(&lim, &ev, &body);
    struct evbuffer *in = evbuffer_new();
    evbuffer_add(in, data + 1, size - 1);
    flow_response *s = flow_response_new();
    h1_parser_begin_response(p, s, data[0] & 1);
    enum h1_status st = h1_parser_feed(p, in);
    if (st == H1_NEED_MORE)
        st = h1_parser_eof(p);
    if (st == H1_DONE) {
        struct evbuffer *out = evbuffer_new();
        h1_write_response_head(out, s);
        h1_write_body(out, &body, data[0] & 2, &s->trailers);
        evbuffer_free(out);
        /* 1xx and 101 end the message at the head; an upgrade hands the
         * rest to another protocol: nothing to compare */
        if (!h1_parser_upgrade(p) && s->status_code >= 200)
            round_trip(s, &body, data[0] & 1);
    }
    flow_response_free(s);
    evbuffer_free(in);
    h1_parser_free(p);
    bytes_free(&body);
    return 0;
}
