/* fuzz_cv_image.c — the image content view (contentview.h) on arbitrary
 * bytes, forced and as the auto view chooses for image/png. */
#include "fuzz_cv.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    fuzz_cv("image", "image/png", NULL, data, size);
    return 0;
}
