/* fuzz_cv_grpc.c — the grpc/protocol buffer content view (contentview.h) on arbitrary
 * bytes, forced and as the auto view chooses for application/grpc. */
#include "fuzz_cv.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    fuzz_cv("grpc/protocol buffer", "application/grpc", NULL, data, size);
    return 0;
}
