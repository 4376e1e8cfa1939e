/* filter.h — mitmproxy's flow filter expression language ("~u example &
 * !~s"), compiled once into a tree of PCRE2 matchers and evaluated against
 * flows.  Used by the CLI's trailing expression, mitm.filter() in Lua and
 * options that take a |filter|.  A compiled filter is immutable and may be
 * shared by threads; filter_eval keeps its scratch state on its own stack
 * and heap.  The language is documented in man/mitmlua-filter.7. */
#ifndef MITMLUA_FILTER_H
#define MITMLUA_FILTER_H

#include <stdbool.h>
#include <stddef.h>
#include "flow.h"

typedef struct filter filter;

/* Nesting deeper than this ("((((" or "!!!!") is refused at compile time,
 * so neither the parser nor the matcher can exhaust the stack. */
#define FILTER_MAX_DEPTH 500

/* Flags for filter_compile_opts. */
enum {
    /* Regexes match case-sensitively, as mitmproxy does with
     * MITMPROXY_CASE_SENSITIVE_FILTERS=1.  Default: case-insensitive. */
    FILTER_CASE_SENSITIVE = 1u << 0,
};

/* Compile; NULL on error with a one-line message like
 * "~c abc: expected a number at column 4" in err.  Regexes are
 * case-insensitive unless the environment has
 * MITMPROXY_CASE_SENSITIVE_FILTERS=1 (or MITMLUA_CASE_SENSITIVE_FILTERS=1). */
filter *filter_compile(const char *expr, char *err, size_t errsz);

/* Like filter_compile, with explicit flags (the environment is not read).
 * On error, *errcol (if non-NULL) receives the 1-based column (in
 * characters) the message points at, 0 when there is none. */
filter *filter_compile_opts(const char *expr, unsigned flags, size_t *errcol,
                            char *err, size_t errsz);

/* Limits on each regex match, so a pathological regex ("(a+)+c") costs at
 * most this much and then says so instead of running for hours: PCRE2's
 * match limit (backtracking steps), depth limit and heap limit (KiB, for
 * the interpreter; JIT code uses a small stack and, when that is not
 * enough, the interpreter takes over). */
#define FILTER_MATCH_LIMIT 10000000u
#define FILTER_DEPTH_LIMIT 10000000u
#define FILTER_HEAP_LIMIT_KIB 65536u

/* 1 the flow matches, 0 it does not, -1 the filter could not answer (a
 * regex hit one of the limits above, or out of memory) and the answer
 * depends on it: err then gets one line naming the expression and the
 * regex, e.g. filter '~u "x$|(x+x+)+y"': ~u "x$|(x+x+)+y" could not be
 * evaluated: match limit exceeded.  There is deliberately no boolean
 * variant: every caller decides what "could not answer" means for it
 * (fail_on fails, the -w filter saves, -r exits non-zero, ...).
 * A NULL filter or flow gives 0. */
int filter_eval(const filter *f, const flow *fl, char *err, size_t errsz);
void filter_free(filter *f);

/* The parsed tree in a compact canonical form, for tests and debugging:
 * "&(~q, |(~u \"a\", !(~c 404)))" — operators with their (unquoted) regex,
 * "&" "|" "!" for and, or, not.  Caller frees; NULL on ENOMEM. */
char *filter_describe(const filter *f);

/* The expression text the filter was compiled from. */
const char *filter_pattern(const filter *f);

/* mitmproxy's Request.pretty_url (the URL ~u matches: host and port from
 * the Host header or :authority when there is one).  map_remote and
 * map_local match it too.  Caller frees; NULL without a request or on
 * ENOMEM. */
char *filter_pretty_url(const flow *fl);

/* A Python `re` pattern rewritten for PCRE2 where the two spell the same
 * thing differently (\Z).  Same length; caller frees; NULL on ENOMEM.
 * Shared with the options that take regexes (spec.c). */
char *filter_regex_from_python(const char *p, size_t n);

#endif
