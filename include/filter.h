/* filter.h — mitmproxy's flow filter expression language ("~u example &
 * !~s"), compiled once into a tree of matchers and evaluated against flows.
 * Used by the CLI's trailing expression, mitm.filter() in Lua and options
 * that take a |filter|.  A compiled filter is immutable: share it freely. */
#ifndef MITMLUA_FILTER_H
#define MITMLUA_FILTER_H

#include <stdbool.h>
#include <stddef.h>
#include "flow.h"

typedef struct filter filter;

/* Compile; NULL on error with a one-line message like
 * "~c abc: expected a number at column 4" in err. */
filter *filter_compile(const char *expr, char *err, size_t errsz);
bool filter_match(const filter *f, const flow *fl);
void filter_free(filter *f);

#endif
