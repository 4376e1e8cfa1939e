/* libFuzzer target: the HTTP/1 response parser (HEAD or not, from the first
 * byte), including close-delimited bodies, then serialised back. */
#include <stdint.h>
#include <string.h>
#include "h1.h"

static int on_head(void *ud) { return 0; }
static int on_body(void *ud, const char *at, size_t n) { return bytes_append(ud, at, n); }

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1)
        return 0;
    static const h1_events ev = {on_head, on_body};
    h1_limits lim = {.max_head = 8192, .max_headers = 64, .max_body = 1 << 20};
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
    }
    flow_response_free(s);
    evbuffer_free(in);
    h1_parser_free(p);
    bytes_free(&body);
    return 0;
}
