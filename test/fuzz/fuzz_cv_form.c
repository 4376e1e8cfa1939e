/* fuzz_cv_form.c — the url-encoded content view (contentview.h) on arbitrary
 * bytes, forced and as the auto view chooses for application/x-www-form-urlencoded. */
#include "fuzz_cv.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    fuzz_cv("url-encoded", "application/x-www-form-urlencoded", NULL, data, size);
    /* the same bytes as a query string, shown when the body is empty */
    char *q = malloc(size + 1);
    if (!q)
        return 0;
    memcpy(q, data, size);
    q[size] = '\0';
    fuzz_cv("query", NULL, q, (const uint8_t *)"", 0);
    free(q);
    return 0;
}
