/* fuzz_cv_json.c — the json content view (contentview.h) on arbitrary
 * bytes, forced and as the auto view chooses for application/json. */
#include "fuzz_cv.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    fuzz_cv("json", "application/json", NULL, data, size);
    return 0;
}
