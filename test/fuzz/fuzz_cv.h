/* fuzz_cv.h — shared by the content-view fuzz targets: render arbitrary
 * bytes with one view (forced, and as auto chooses for its content type)
 * and check what every view promises: lines within the limit, no control
 * character but a tab in the text, the limit honoured. */
#ifndef FUZZ_CV_H
#define FUZZ_CV_H

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "contentview.h"

static void fuzz_cv_check(const cv_text *t, size_t max_lines)
{
    size_t lines = 0;
    for (size_t i = 0; i < t->len; i++) {
        unsigned char c = (unsigned char)t->p[i];
        if (c == '\n')
            lines++;
        else if ((c < 0x20 && c != '\t') || c == 0x7f)
            abort();   /* a control character reached the terminal */
    }
    if (lines != t->lines || lines > max_lines || (t->len && t->p[t->len - 1] != '\n'))
        abort();
}

static void fuzz_cv(const char *view, const char *ctype, const char *query, const uint8_t *data, size_t size)
{
    size_t limits[] = {70, (size_t)-1};
    for (size_t i = 0; i < 2; i++) {
        cv_text t = {.max_lines = limits[i]};
        contentview_render(view, ctype, query, (const char *)data, size, &t);
        fuzz_cv_check(&t, limits[i]);
        cv_text_free(&t);
        cv_text a = {.max_lines = limits[i]};
        contentview_render("auto", ctype, query, (const char *)data, size, &a);
        fuzz_cv_check(&a, limits[i]);
        cv_text_free(&a);
    }
}

#endif
