/* fuzz_dump.c — the native dump reader on arbitrary bytes: every call
 * sequence (including resynchronisation after each error) must end without
 * a crash, a leak or a hang, and every flow read round-trips through the
 * encoder and decoder unchanged. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "dump.h"

/* the body of a record dump_encode_flow wrote: after its kind and length
 * varints */
static size_t record_body(const bytes *b)
{
    size_t i = 0;
    for (int v = 0; v < 2; v++) {
        while (i < b->len && (((const unsigned char *)b->p)[i] & 0x80))
            i++;
        i++;
    }
    if (i > b->len)
        abort();
    return i;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char err[256];
    dump_reader *r = dump_reader_open_prefixed(-1, "fuzz", data, size, err, sizeof err);
    if (!r)
        return 0;
    dump_reader_set_max_record(r, (size_t)16 << 20);
    flow *f;
    for (int calls = 0; calls < 10000; calls++) {
        int rc = dump_reader_next(r, &f, err, sizeof err);
        if (rc == 0)
            break;
        if (rc == 1) {
            /* what came out must encode again, and the encoding must
             * decode to a flow that encodes to the same bytes
             * (decode → encode → decode → encode is stable) */
            bytes b = {0}, b2 = {0};
            if (dump_encode_flow(f, &b) == 0) {
                flow *g = NULL;
                size_t at = record_body(&b);
                if (dump_decode_flow((const char *)b.p + at, b.len - at, &flow_limits_default, &g, err, sizeof err) != 0)
                    abort();  /* our own encoding does not decode */
                if (dump_encode_flow(g, &b2) != 0 || b2.len != b.len ||
                    memcmp(b.p, b2.p, b.len) != 0)
                    abort();  /* the round trip changed the flow */
                flow_free(g);
            }
            bytes_free(&b);
            bytes_free(&b2);
            flow_free(f);
        } else if (calls > 5000) {
            break;
        }
    }
    dump_reader_close(r);
    return 0;
}
