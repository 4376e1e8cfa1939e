/* libFuzzer target: the HTTP/2 server side fed raw bytes in pieces whose
 * sizes come from the input; every complete request is answered (with its
 * own headers, body and trailers echoed), and output is drained between
 * pieces as a socket would. */
#include <stdint.h>
#include <string.h>
#include "h2.h"

typedef struct fz {
    h2_conn *c;
} fz;

static void on_request(void *ud, int32_t sid, flow_request *r)
{
    fz *z = ud;
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
