/* fuzz_dump.c — the native dump reader on arbitrary bytes: every call
 * sequence (including resynchronisation after each error) must end without
 * a crash, a leak or a hang. */
#include <stdint.h>
#include <stdlib.h>

#include "dump.h"

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
            /* what came out must encode again */
            bytes b = {0};
            dump_encode_flow(f, &b);
            bytes_free(&b);
            flow_free(f);
        } else if (calls > 5000) {
            break;
        }
    }
    dump_reader_close(r);
    return 0;
}
