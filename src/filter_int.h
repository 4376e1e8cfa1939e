/* filter_int.h — private to filter.c (parsing, compiling, describing)
 * and filter_eval.c (matching): the operators and the compiled tree.
 * Nothing else includes it; include/filter.h is the API. */
#ifndef MITMLUA_FILTER_INT_H
#define MITMLUA_FILTER_INT_H

#ifndef PCRE2_CODE_UNIT_WIDTH
#define PCRE2_CODE_UNIT_WIDTH 8
#endif

#include <pcre2.h>
#include <stdbool.h>
#include <stddef.h>

#include "filter.h"

enum fop {
    OP_AND, OP_OR, OP_NOT,
    /* no argument */
    OP_ASSET, OP_ERR, OP_HTTP, OP_MARKED, OP_REPLAY, OP_REPLAYQ, OP_REPLAYS,
    OP_REQ, OP_RESP, OP_TCP, OP_UDP, OP_DNS, OP_WEBSOCKET, OP_ALL,
    /* regex argument */
    OP_BODY, OP_BODYQ, OP_BODYS, OP_CT, OP_CTQ, OP_CTS, OP_DOMAIN, OP_DST,
    OP_HEAD, OP_HEADQ, OP_HEADS, OP_METHOD, OP_SRC, OP_URL, OP_META,
    OP_MARKER, OP_COMMENT,
    /* integer argument */
    OP_CODE,
};

typedef struct fnode {
    enum fop op;
    long long num;            /* ~c; -1 never matches (too large) */
    pcre2_code *re;
    char *arg;                /* the regex as given (after unquoting) */
    size_t arglen;
    bool cs;                  /* ~uc and friends */
    struct fnode **kids;
    size_t nkids;
} fnode;

struct filter {
    fnode *root;
    pcre2_match_context *mctx; /* the limits below; read-only once built */
    fnode **pool;             /* every node ever built, freed together */
    size_t npool, cappool;
    char *pattern;
};

/* The operator's name without "~" (for messages and filter_describe). */
const char *filter_op_name(enum fop op);
/* A short, printable excerpt of p[0..n) for messages. */
void filter_excerpt(const char *p, size_t n, char *out, size_t outsz);

#endif
