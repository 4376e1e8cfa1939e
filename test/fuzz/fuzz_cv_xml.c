/* fuzz_cv_xml.c — the xml/html content view (contentview.h) on arbitrary
 * bytes, forced and as the auto view chooses for text/html. */
#include "fuzz_cv.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    fuzz_cv("xml/html", "text/html", NULL, data, size);
    return 0;
}
