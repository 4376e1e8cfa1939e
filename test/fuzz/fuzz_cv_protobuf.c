/* fuzz_cv_protobuf.c — the protocol buffer content view (contentview.h) on arbitrary
 * bytes, forced and as the auto view chooses for application/x-protobuf. */
#include "fuzz_cv.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    fuzz_cv("protocol buffer", "application/x-protobuf", NULL, data, size);
    return 0;
}
