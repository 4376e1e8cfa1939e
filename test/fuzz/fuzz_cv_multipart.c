/* fuzz_cv_multipart.c — the multipart form content view (contentview.h) on arbitrary
 * bytes, forced and as the auto view chooses for multipart/form-data; boundary=XX. */
#include "fuzz_cv.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    fuzz_cv("multipart form", "multipart/form-data; boundary=XX", NULL, data, size);
    return 0;
}
