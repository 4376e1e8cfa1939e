/* fuzz_har.c — the HAR reader on arbitrary bytes, and the HAR and curl
 * exporters on whatever flows it produces. */
#include <stdint.h>
#include <stdlib.h>

#include "export.h"
#include "har.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char err[256];
    har_reader *r = har_reader_open_prefixed(-1, "fuzz", data, size, err, sizeof err);
    if (!r)
        return 0;
    flow *f;
    for (int calls = 0; calls < 10000; calls++) {
        int rc = har_reader_next(r, &f, err, sizeof err);
        if (rc == 0)
            break;
        if (rc == 1) {
            free(har_entry_json(f));
            free(export_curl(f));
            flow_free(f);
        }
    }
    har_reader_close(r);
    return 0;
}
