/* fuzz_mitmio.c — the mitmproxy flow file reader (tnetstring framing and
 * flow conversion) on arbitrary bytes. */
#include <stdint.h>
#include <stdlib.h>

#include "mitmio.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char err[256];
    mitmio_reader *r = mitmio_reader_open_prefixed(-1, "fuzz", data, size, err, sizeof err);
    if (!r)
        return 0;
    flow *f;
    for (int calls = 0; calls < 10000; calls++) {
        int rc = mitmio_reader_next(r, &f, err, sizeof err);
        if (rc == 0)
            break;
        if (rc == 1)
            flow_free(f);
    }
    mitmio_reader_close(r);
    return 0;
}
