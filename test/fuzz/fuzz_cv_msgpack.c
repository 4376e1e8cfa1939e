/* fuzz_cv_msgpack.c — the msgpack content view (contentview.h) on arbitrary
 * bytes, forced and as the auto view chooses for application/msgpack. */
#include "fuzz_cv.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    fuzz_cv("msgpack", "application/msgpack", NULL, data, size);
    return 0;
}
