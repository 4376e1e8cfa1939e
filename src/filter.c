/* filter.c — mitmproxy's filter expression language: a recursive-descent
 * parser (depth-limited) into a node tree, evaluated per flow.  Work in
 * progress: this first version accepts only the empty expression. */
#include <stdio.h>
#include <stdlib.h>

#include "filter.h"

struct filter {
    int dummy;
};

filter *filter_compile(const char *expr, char *err, size_t errsz)
{
    if (expr && *expr) {
        if (err && errsz)
            snprintf(err, errsz, "filter expressions are not implemented yet");
        return NULL;
    }
    return calloc(1, sizeof(filter));
}

bool filter_match(const filter *f, const flow *fl)
{
    return f != NULL && fl != NULL;
}

void filter_free(filter *f)
{
    free(f);
}
