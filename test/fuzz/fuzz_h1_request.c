/* libFuzzer target: the HTTP/1 request parser, fed in two pieces split at a
 * position taken from the input, then serialised back. */
#include <stdint.h>
#include <string.h>
#include "h1.h"

static int on_head(void *ud) { return 0; }
static int on_body(void *ud, const char *at, size_t n) { return bytes_append(ud, at, n); }

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static const h1_events ev = {on_head, on_body};
    h1_limits lim = {.max_head = 8192, .max_headers = 64, .max_body = 1 << 20};
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
