/* t.h — a minimal TAP-like unit test harness.  Each test binary prints one
 * "ok N - name" or "not ok N - name" line per check group, then the plan
 * "1..N", and exits non-zero when anything failed; test/run-tests counts
 * the lines. */
#ifndef MITMLUA_T_H
#define MITMLUA_T_H

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int t_failed_total, t_count, t_cur_failed;
static const char *t_cur_name;

#define T_CHECK(cond)                                                          \
    do {                                                                       \
        if (!(cond)) {                                                         \
            fprintf(stderr, "  %s:%d: check failed: %s\n", __FILE__, __LINE__, \
                    #cond);                                                    \
            t_cur_failed = 1;                                                  \
        }                                                                      \
    } while (0)

#define T_STREQ(a, b)                                                          \
    do {                                                                       \
        const char *t_a = (a), *t_b = (b);                                     \
        if (!t_a || !t_b || strcmp(t_a, t_b) != 0) {                           \
            fprintf(stderr, "  %s:%d: \"%s\" != \"%s\"\n", __FILE__, __LINE__, \
                    t_a ? t_a : "(null)", t_b ? t_b : "(null)");               \
            t_cur_failed = 1;                                                  \
        }                                                                      \
    } while (0)

#define T_RUN(fn)                                                              \
    do {                                                                       \
        t_cur_name = #fn;                                                      \
        t_cur_failed = 0;                                                      \
        fn();                                                                  \
        t_count++;                                                             \
        printf("%s %d - %s\n", t_cur_failed ? "not ok" : "ok", t_count,        \
               t_cur_name);                                                    \
        fflush(stdout);                                                        \
        t_failed_total += t_cur_failed;                                        \
    } while (0)

/* the plan after the results: test/run-tests fails a binary whose count
 * of results differs from it (one that stopped half way) */
#define T_DONE()                                                               \
    do {                                                                       \
        printf("1..%d\n", t_count);                                            \
        return t_failed_total ? 1 : 0;                                         \
    } while (0)

#endif
