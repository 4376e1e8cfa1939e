/* filter.c — mitmproxy's filter expression language.
 *
 * The grammar follows mitmproxy's pyparsing one exactly, including its
 * corners, because users paste expressions between the two tools:
 *
 *   top     := or+                      juxtaposition is an implicit "&"
 *   or      := and ("|" and)*
 *   and     := not ("&" not)*
 *   not     := "!" not | primary
 *   primary := atom | "(" or ")"        (no implicit "&" inside parentheses)
 *   atom    := ~op | ~op REGEX | ~c DIGITS | REGEX   (a bare REGEX is ~u)
 *   REGEX   := word | "..." | '...'     word: no whitespace ()~'"
 *
 * An operator name must be followed by whitespace or the end ("(~q)" is an
 * error in mitmproxy too: pyparsing's WordEnd).  Where pyparsing tries an
 * alternative and backs off ("a &" is "a" and the bare word "&"), the
 * recursive descent below backtracks the same way.  Depth is bounded by
 * FILTER_MAX_DEPTH and total work by a step budget, so hostile input can
 * neither blow the stack nor take quadratic-of-exponential time.
 *
 * Evaluation walks the tree per flow; decoded bodies, header blocks and the
 * pretty URL are computed at most once per filter_match call. */
#define PCRE2_CODE_UNIT_WIDTH 8

#include <arpa/inet.h>
#include <ctype.h>
#include <errno.h>
#include <jansson.h>
#include <limits.h>
#include <math.h>
#include <pcre2.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "encoding.h"
#include "filter.h"

/* Weak until src/encoding.c lands on main, so the tree links meanwhile;
 * without it bodies are matched raw. */
#pragma weak encoding_decode

/* ---- operators ---------------------------------------------------------- */

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

enum fkind { K_UNARY, K_REX, K_INT };

/* text: mitmproxy matches a str (Unicode semantics: \w, case folding);
 * otherwise bytes (ASCII semantics), exactly as its _StrRex/_BinRex. */
enum { RX_TEXT = 1, RX_MULTILINE = 2, RX_DOTALL = 4 };

typedef struct opdef {
    const char *name;
    enum fop op;
    enum fkind kind;
    unsigned rx;
} opdef;

static const opdef filter_ops[] = {
    {"a", OP_ASSET, K_UNARY, 0},
    {"e", OP_ERR, K_UNARY, 0},
    {"http", OP_HTTP, K_UNARY, 0},
    {"marked", OP_MARKED, K_UNARY, 0},
    {"replay", OP_REPLAY, K_UNARY, 0},
    {"replayq", OP_REPLAYQ, K_UNARY, 0},
    {"replays", OP_REPLAYS, K_UNARY, 0},
    {"q", OP_REQ, K_UNARY, 0},
    {"s", OP_RESP, K_UNARY, 0},
    {"tcp", OP_TCP, K_UNARY, 0},
    {"udp", OP_UDP, K_UNARY, 0},
    {"dns", OP_DNS, K_UNARY, 0},
    {"websocket", OP_WEBSOCKET, K_UNARY, 0},
    {"all", OP_ALL, K_UNARY, 0},
    {"b", OP_BODY, K_REX, RX_DOTALL},
    {"bq", OP_BODYQ, K_REX, RX_DOTALL},
    {"bs", OP_BODYS, K_REX, RX_DOTALL},
    {"t", OP_CT, K_REX, 0},
    {"tq", OP_CTQ, K_REX, 0},
    {"ts", OP_CTS, K_REX, 0},
    {"d", OP_DOMAIN, K_REX, RX_TEXT},
    {"dst", OP_DST, K_REX, RX_TEXT},
    {"h", OP_HEAD, K_REX, RX_MULTILINE},
    {"hq", OP_HEADQ, K_REX, RX_MULTILINE},
    {"hs", OP_HEADS, K_REX, RX_MULTILINE},
    {"m", OP_METHOD, K_REX, 0},
    {"src", OP_SRC, K_REX, RX_TEXT},
    {"u", OP_URL, K_REX, RX_TEXT},
    {"meta", OP_META, K_REX, RX_TEXT | RX_MULTILINE},
    {"marker", OP_MARKER, K_REX, RX_TEXT},
    {"comment", OP_COMMENT, K_REX, RX_TEXT | RX_MULTILINE},
    {"c", OP_CODE, K_INT, 0},
};
#define FILTER_NOPS (sizeof filter_ops / sizeof filter_ops[0])

/* Every regex operator also exists with a "c" suffix (~uc, ~bqc, ...) that is
 * always case-sensitive, as in mitmproxy's development branch.  No base name
 * ends in "c" except ~c itself, whose variant would be "~cc": not defined. */
static const opdef *filter_lookup(const char *name, size_t n, bool *forced_cs)
{
    *forced_cs = false;
    for (size_t i = 0; i < FILTER_NOPS; i++) {
        const opdef *d = &filter_ops[i];
        size_t dn = strlen(d->name);
        if (dn == n && memcmp(d->name, name, n) == 0)
            return d;
        if (d->kind == K_REX && dn + 1 == n && memcmp(d->name, name, dn) == 0 &&
            name[dn] == 'c') {
            *forced_cs = true;
            return d;
        }
    }
    return NULL;
}

/* ---- the compiled tree --------------------------------------------------- */

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

static fnode *node_new(filter *f, enum fop op)
{
    if (f->npool == f->cappool) {
        size_t cap = f->cappool ? f->cappool * 2 : 16;
        fnode **p = realloc(f->pool, cap * sizeof *p);
        if (!p)
            return NULL;
        f->pool = p;
        f->cappool = cap;
    }
    fnode *n = calloc(1, sizeof *n);
    if (!n)
        return NULL;
    n->op = op;
    f->pool[f->npool++] = n;
    return n;
}

static int node_add_kid(fnode *n, fnode *k)
{
    fnode **p = realloc(n->kids, (n->nkids + 1) * sizeof *p);
    if (!p)
        return -1;
    n->kids = p;
    n->kids[n->nkids++] = k;
    return 0;
}

void filter_free(filter *f)
{
    if (!f)
        return;
    for (size_t i = 0; i < f->npool; i++) {
        pcre2_code_free(f->pool[i]->re);
        free(f->pool[i]->arg);
        free(f->pool[i]->kids);
        free(f->pool[i]);
    }
    free(f->pool);
    free(f->pattern);
    pcre2_match_context_free(f->mctx);
    free(f);
}

const char *filter_pattern(const filter *f)
{
    return f ? f->pattern : NULL;
}

/* ---- parser -------------------------------------------------------------- */

/* Generous: a legitimate expression needs a few steps per character. */
#define FILTER_STEPS_PER_BYTE 64
#define FILTER_STEPS_MIN 100000

typedef struct pstate {
    const char *s;
    size_t len, pos;
    filter *f;
    unsigned flags;
    int depth;
    unsigned long steps, max_steps;
    bool fatal;               /* stop at once: regex error, depth, memory */
    bool haserr;
    size_t errpos;            /* byte offset the message points at */
    bool errcol_none;
    char msg[320];
} pstate;

static bool is_ws(char c)
{
    /* pyparsing's default whitespace */
    return c == ' ' || c == '\t' || c == '\n' || c == '\r';
}

static bool is_printable_ascii(unsigned char c)
{
    return c >= 33 && c <= 126;
}

static bool is_word_char(char c)
{
    return c != '\0' && !is_ws(c) && !strchr("()~'\"", c);
}

static void skip_ws(pstate *ps)
{
    while (ps->pos < ps->len && is_ws(ps->s[ps->pos]))
        ps->pos++;
}

/* Record a soft error: the alternative failed, others may be tried.  The
 * message that survives is the one furthest into the input, the usual
 * heuristic for "where the user went wrong". */
__attribute__((format(printf, 3, 4)))
static void perr(pstate *ps, size_t at, const char *fmt, ...)
{
    if (ps->fatal || (ps->haserr && at < ps->errpos))
        return;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(ps->msg, sizeof ps->msg, fmt, ap);
    va_end(ap);
    ps->haserr = true;
    ps->errpos = at;
}

__attribute__((format(printf, 3, 4)))
static void pfatal(pstate *ps, size_t at, const char *fmt, ...)
{
    if (ps->fatal)
        return;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(ps->msg, sizeof ps->msg, fmt, ap);
    va_end(ap);
    ps->haserr = true;
    ps->fatal = true;
    ps->errpos = at;
}

static bool step(pstate *ps)
{
    if (++ps->steps > ps->max_steps) {
        pfatal(ps, ps->pos, "expression too complex to parse");
        return false;
    }
    return true;
}

/* A short, printable excerpt of the input for messages. */
static void excerpt(const char *p, size_t n, char *out, size_t outsz)
{
    size_t j = 0;
    for (size_t i = 0; i < n && j + 5 < outsz; i++) {
        unsigned char c = (unsigned char)p[i];
        if (c < 0x20 || c == 0x7f)
            j += (size_t)snprintf(out + j, outsz - j, "\\x%02x", c);
        else
            out[j++] = (char)c;
    }
    if (n && j + 5 >= outsz && j + 4 < outsz) {
        memcpy(out + j, "...", 3);
        j += 3;
    }
    out[j] = '\0';
}

/* Python's re spells "end of subject" \Z; PCRE2 spells it \z (its \Z also
 * matches before a final newline).  Rewrite outside character classes. */
char *filter_regex_from_python(const char *p, size_t n)
{
    char *out = malloc(n + 1);
    if (!out)
        return NULL;
    bool in_class = false;
    size_t i = 0;
    while (i < n) {
        char c = p[i];
        if (c == '\\' && i + 1 < n) {
            out[i] = c;
            out[i + 1] = (!in_class && p[i + 1] == 'Z') ? 'z' : p[i + 1];
            i += 2;
            continue;
        }
        if (!in_class && c == '[') {
            in_class = true;
            out[i++] = c;
            /* "[]" and "[^]" start with a literal ] */
            if (i < n && p[i] == '^')
                out[i] = p[i], i++;
            if (i < n && p[i] == ']')
                out[i] = p[i], i++;
            continue;
        }
        if (in_class && c == ']')
            in_class = false;
        out[i++] = c;
    }
    out[n] = '\0';
    return out;
}

/* Compile one regex argument.  Failure is fatal, as a ValueError raised by
 * a pyparsing parse action is. */
static pcre2_code *compile_regex(pstate *ps, const opdef *d, bool forced_cs,
                                 const char *pat, size_t patlen,
                                 size_t pat_at, size_t op_at)
{
    uint32_t opts = 0;
    if (d->rx & RX_TEXT)
        opts |= PCRE2_UTF | PCRE2_UCP | PCRE2_MATCH_INVALID_UTF;
    if (d->rx & RX_MULTILINE)
        opts |= PCRE2_MULTILINE;
    if (d->rx & RX_DOTALL)
        opts |= PCRE2_DOTALL;
    if (!forced_cs && !(ps->flags & FILTER_CASE_SENSITIVE))
        opts |= PCRE2_CASELESS;

    char *tr = filter_regex_from_python(pat, patlen);
    pcre2_compile_context *cc = pcre2_compile_context_create(NULL);
    if (!tr || !cc) {
        free(tr);
        pcre2_compile_context_free(cc);
        pfatal(ps, op_at, "out of memory");
        return NULL;
    }
    /* Python's "." and "$" know only \n as a line end. */
    pcre2_set_newline(cc, PCRE2_NEWLINE_LF);
    int ec = 0;
    PCRE2_SIZE eo = 0;
    pcre2_code *re = pcre2_compile((PCRE2_SPTR)tr, patlen, opts, &ec, &eo, cc);
    pcre2_compile_context_free(cc);
    free(tr);
    if (!re) {
        PCRE2_UCHAR m[160];
        if (pcre2_get_error_message(ec, m, sizeof m) < 0)
            snprintf((char *)m, sizeof m, "invalid regex");
        char ex[80];
        excerpt(ps->s + op_at, pat_at + patlen - op_at, ex, sizeof ex);
        size_t at = pat_at + (eo <= patlen ? eo : patlen);
        pfatal(ps, at, "%s: %s", ex, (const char *)m);
        return NULL;
    }
    (void)pcre2_jit_compile(re, PCRE2_JIT_COMPLETE); /* falls back to the interpreter */
    return re;
}

/* A regex argument: a bare word or a quoted string.  Quoted strings drop
 * backslashes as pyparsing's QuotedString(escChar='\\') does: \t \n \f \r
 * become those characters, any other \X becomes X (so "\." is "."). */
static bool parse_regex_token(pstate *ps, char **out, size_t *outlen, size_t *at,
                              bool *reported)
{
    size_t p = ps->pos;
    *reported = false;
    *at = p;
    if (p < ps->len && (ps->s[p] == '"' || ps->s[p] == '\'')) {
        char q = ps->s[p];
        char *buf = malloc(ps->len - p + 1);
        if (!buf) {
            pfatal(ps, p, "out of memory");
            return false;
        }
        size_t n = 0, i = p + 1;
        for (;;) {
            if (i >= ps->len || ps->s[i] == '\n' || ps->s[i] == '\r') {
                free(buf);
                perr(ps, p, "unterminated quoted string");
                *reported = true;
                return false;
            }
            char c = ps->s[i];
            if (c == q) {
                i++;
                break;
            }
            if (c == '\\') {
                if (i + 1 >= ps->len || ps->s[i + 1] == '\n') {
                    free(buf);
                    perr(ps, p, "unterminated quoted string");
                    *reported = true;
                    return false;
                }
                char e = ps->s[i + 1];
                buf[n++] = e == 't' ? '\t' : e == 'n' ? '\n' : e == 'f' ? '\f'
                         : e == 'r' ? '\r' : e;
                i += 2;
                continue;
            }
            buf[n++] = c;
            i++;
        }
        buf[n] = '\0';
        *at = p + 1;
        ps->pos = i;
        *out = buf;
        *outlen = n;
        return true;
    }
    size_t e = p;
    while (e < ps->len && is_word_char(ps->s[e]))
        e++;
    if (e == p)
        return false;
    char *buf = malloc(e - p + 1);
    if (!buf) {
        pfatal(ps, p, "out of memory");
        return false;
    }
    memcpy(buf, ps->s + p, e - p);
    buf[e - p] = '\0';
    *out = buf;
    *outlen = e - p;
    ps->pos = e;
    return true;
}

static fnode *regex_node(pstate *ps, const opdef *d, bool forced_cs, size_t op_at)
{
    char *pat = NULL;
    size_t patlen = 0, pat_at = 0;
    size_t before = ps->pos;
    bool reported;
    if (!parse_regex_token(ps, &pat, &patlen, &pat_at, &reported)) {
        if (!ps->fatal && !reported) {
            char ex[80];
            excerpt(ps->s + op_at, before - op_at, ex, sizeof ex);
            /* trim the whitespace we skipped */
            size_t l = strlen(ex);
            while (l && is_ws(ex[l - 1]))
                ex[--l] = '\0';
            perr(ps, before, "%s: expected a regex", ex);
        }
        return NULL;
    }
    pcre2_code *re = compile_regex(ps, d, forced_cs, pat, patlen, pat_at, op_at);
    if (!re) {
        free(pat);
        return NULL;
    }
    fnode *n = node_new(ps->f, d->op);
    if (!n) {
        free(pat);
        pcre2_code_free(re);
        pfatal(ps, op_at, "out of memory");
        return NULL;
    }
    n->re = re;
    n->arg = pat;
    n->arglen = patlen;
    n->cs = forced_cs;
    return n;
}

static fnode *parse_atom(pstate *ps)
{
    skip_ws(ps);
    size_t at = ps->pos;
    if (at >= ps->len) {
        perr(ps, at, "expected a filter expression");
        return NULL;
    }
    char c = ps->s[at];
    if (c == '~') {
        size_t e = at + 1;
        while (e < ps->len && is_printable_ascii((unsigned char)ps->s[e]))
            e++;
        bool forced_cs;
        const opdef *d = filter_lookup(ps->s + at + 1, e - at - 1, &forced_cs);
        if (!d) {
            /* "~q)" and "~c200": a known operator glued to more text. */
            size_t best = 0;
            for (size_t k = e - at - 1; k > 0 && !best; k--) {
                bool cs;
                if (filter_lookup(ps->s + at + 1, k, &cs))
                    best = k;
            }
            char ex[80];
            if (best) {
                excerpt(ps->s + at, best + 1, ex, sizeof ex);
                perr(ps, at + 1 + best,
                     "%s: expected whitespace after the operator", ex);
            } else {
                excerpt(ps->s + at, e - at, ex, sizeof ex);
                perr(ps, at, "unknown operator %s", ex);
            }
            return NULL;
        }
        ps->pos = e;
        if (d->kind == K_UNARY) {
            fnode *n = node_new(ps->f, d->op);
            if (!n)
                pfatal(ps, at, "out of memory");
            return n;
        }
        skip_ws(ps);
        if (d->kind == K_REX)
            return regex_node(ps, d, forced_cs, at);
        /* K_INT: pyparsing's Word(nums), with no word end after it, so
         * "~c 200x" is "~c 200" followed by the bare word "x". */
        size_t ds = ps->pos, de = ds;
        while (de < ps->len && ps->s[de] >= '0' && ps->s[de] <= '9')
            de++;
        if (de == ds) {
            size_t we = ds;
            while (we < ps->len && !is_ws(ps->s[we]) && we - ds < 40)
                we++;
            char ex[120];
            excerpt(ps->s + at, we - at, ex, sizeof ex);
            perr(ps, ds, "%s: expected a number", ex);
            return NULL;
        }
        long long v = 0;
        for (size_t i = ds; i < de; i++) {
            if (v > (LLONG_MAX - 9) / 10) {
                v = -1; /* larger than any status code: never matches */
                break;
            }
            v = v * 10 + (ps->s[i] - '0');
        }
        ps->pos = de;
        fnode *n = node_new(ps->f, OP_CODE);
        if (!n) {
            pfatal(ps, at, "out of memory");
            return NULL;
        }
        n->num = v;
        return n;
    }
    if (c == '(' || c == ')') {
        perr(ps, at, "unexpected %c", c);
        return NULL;
    }
    /* A bare regex means ~u. */
    static const opdef url = {"u", OP_URL, K_REX, RX_TEXT};
    return regex_node(ps, &url, false, at);
}

static fnode *parse_or(pstate *ps);

static bool depth_enter(pstate *ps, size_t at)
{
    if (ps->depth >= FILTER_MAX_DEPTH) {
        pfatal(ps, at, "expression nested too deeply (more than %d levels)",
               FILTER_MAX_DEPTH);
        return false;
    }
    ps->depth++;
    return true;
}

static fnode *parse_primary(pstate *ps)
{
    skip_ws(ps);
    if (ps->pos < ps->len && ps->s[ps->pos] == '(') {
        size_t open = ps->pos;
        if (!depth_enter(ps, open))
            return NULL;
        ps->pos++;
        fnode *inner = parse_or(ps);
        ps->depth--;
        if (!inner)
            return NULL;
        skip_ws(ps);
        if (ps->pos >= ps->len || ps->s[ps->pos] != ')') {
            perr(ps, ps->pos, "missing )");
            return NULL;
        }
        ps->pos++;
        return inner;
    }
    return parse_atom(ps);
}

static fnode *parse_not(pstate *ps)
{
    if (!step(ps))
        return NULL;
    skip_ws(ps);
    size_t save = ps->pos;
    if (save < ps->len && ps->s[save] == '!') {
        if (!depth_enter(ps, save))
            return NULL;
        ps->pos++;
        fnode *kid = parse_not(ps);
        ps->depth--;
        if (kid) {
            fnode *n = node_new(ps->f, OP_NOT);
            if (!n || node_add_kid(n, kid) < 0) {
                pfatal(ps, save, "out of memory");
                return NULL;
            }
            return n;
        }
        if (ps->fatal)
            return NULL;
        /* pyparsing falls back to reading "!..." as a bare word */
        ps->pos = save;
    }
    return parse_primary(ps);
}

/* One precedence level of a left-associative binary operator.  After the
 * operator, a failing right operand is not an error: the operator is left
 * unread, as pyparsing's lookahead does. */
static fnode *parse_binary(pstate *ps, char opch, enum fop op,
                           fnode *(*sub)(pstate *))
{
    fnode *first = sub(ps);
    if (!first)
        return NULL;
    fnode *group = NULL;
    for (;;) {
        skip_ws(ps);
        if (ps->pos >= ps->len || ps->s[ps->pos] != opch)
            break;
        size_t save = ps->pos;
        ps->pos++;
        fnode *rhs = sub(ps);
        if (!rhs) {
            if (ps->fatal)
                return NULL;
            ps->pos = save;
            break;
        }
        if (!group) {
            group = node_new(ps->f, op);
            if (!group || node_add_kid(group, first) < 0) {
                pfatal(ps, save, "out of memory");
                return NULL;
            }
        }
        if (node_add_kid(group, rhs) < 0) {
            pfatal(ps, save, "out of memory");
            return NULL;
        }
    }
    return group ? group : first;
}

static fnode *parse_and(pstate *ps)
{
    return parse_binary(ps, '&', OP_AND, parse_not);
}

static fnode *parse_or(pstate *ps)
{
    return parse_binary(ps, '|', OP_OR, parse_and);
}

static fnode *parse_top(pstate *ps)
{
    skip_ws(ps);
    if (ps->pos >= ps->len) {
        pfatal(ps, 0, "empty filter expression");
        ps->errcol_none = true;
        return NULL;
    }
    fnode *first = NULL, *group = NULL;
    while (skip_ws(ps), ps->pos < ps->len) {
        fnode *n = parse_or(ps);
        if (!n)
            return NULL;
        if (!first) {
            first = n;
            continue;
        }
        if (!group) {
            group = node_new(ps->f, OP_AND);
            if (!group || node_add_kid(group, first) < 0) {
                pfatal(ps, ps->pos, "out of memory");
                return NULL;
            }
        }
        if (node_add_kid(group, n) < 0) {
            pfatal(ps, ps->pos, "out of memory");
            return NULL;
        }
    }
    return group ? group : first;
}

/* 1-based column in characters (UTF-8 continuation bytes do not count). */
static size_t column_of(const char *s, size_t pos)
{
    size_t col = 1;
    for (size_t i = 0; i < pos && s[i]; i++)
        if (((unsigned char)s[i] & 0xC0) != 0x80)
            col++;
    return col;
}

filter *filter_compile_opts(const char *expr, unsigned flags, size_t *errcol,
                            char *err, size_t errsz)
{
    if (errcol)
        *errcol = 0;
    if (err && errsz)
        err[0] = '\0';
    if (!expr)
        expr = "";
    filter *f = calloc(1, sizeof *f);
    if (!f || !(f->pattern = strdup(expr))) {
        free(f);
        if (err && errsz)
            snprintf(err, errsz, "out of memory");
        return NULL;
    }
    /* Explicit limits, so the worst case is known whatever PCRE2's build
     * defaults are (its heap limit is 20 GB); documented in mitmlua-filter.7. */
    if (!(f->mctx = pcre2_match_context_create(NULL))) {
        filter_free(f);
        if (err && errsz)
            snprintf(err, errsz, "out of memory");
        return NULL;
    }
    pcre2_set_match_limit(f->mctx, FILTER_MATCH_LIMIT);
    pcre2_set_depth_limit(f->mctx, FILTER_DEPTH_LIMIT);
    pcre2_set_heap_limit(f->mctx, FILTER_HEAP_LIMIT_KIB);
    pstate ps = {.s = expr, .len = strlen(expr), .f = f, .flags = flags};
    ps.max_steps = ps.len * FILTER_STEPS_PER_BYTE + FILTER_STEPS_MIN;
    f->root = parse_top(&ps);
    if (!f->root) {
        if (!ps.haserr)
            snprintf(ps.msg, sizeof ps.msg, "invalid filter expression");
        size_t col = column_of(expr, ps.errpos);
        if (err && errsz) {
            if (ps.errcol_none)
                snprintf(err, errsz, "%s", ps.msg);
            else
                snprintf(err, errsz, "%s at column %zu", ps.msg, col);
        }
        if (errcol)
            *errcol = ps.errcol_none ? 0 : col;
        filter_free(f);
        return NULL;
    }
    return f;
}

filter *filter_compile(const char *expr, char *err, size_t errsz)
{
    unsigned flags = 0;
    const char *e1 = getenv("MITMPROXY_CASE_SENSITIVE_FILTERS");
    const char *e2 = getenv("MITMLUA_CASE_SENSITIVE_FILTERS");
    if ((e1 && strcmp(e1, "1") == 0) || (e2 && strcmp(e2, "1") == 0))
        flags |= FILTER_CASE_SENSITIVE;
    return filter_compile_opts(expr, flags, NULL, err, errsz);
}

/* ---- evaluation ---------------------------------------------------------- */

typedef struct ectx {
    const flow *fl;
    pcre2_match_context *mctx;  /* PCRE2 only reads it */
    pcre2_match_data *md;
    const fnode *err_node;    /* the first matcher that could not answer */
    int err_code;             /* its PCRE2 error */
    /* [0] request, [1] response */
    bool body_done[2];
    bytes body_dec[2];        /* owned when decoding happened */
    const char *body_p[2];
    size_t body_n[2];
    bool hdr_done[2], hdr_oom[2];
    bytes hdr[2];
    bool url_done, host_done, meta_done;
    char *url, *phost, *meta;
} ectx;

/* Matchers answer YES, NO or ERR: ERR when PCRE2 gave up (match, depth or
 * heap limit, out of memory).  A regex that could not answer must never
 * pass for one that did not match, so ERR travels up the tree; and, or and
 * not combine answers as Kleene's three-valued logic does, so ERR decides
 * the result only when the answer really depends on it. */
enum { NO = 0, YES = 1, ERR = -1 };

static int rx_fail(ectx *c, const fnode *n, int code)
{
    if (!c->err_node) {
        c->err_node = n;
        c->err_code = code;
    }
    return ERR;
}

static int rx(ectx *c, const fnode *n, const char *p, size_t len)
{
    if (!c->md && !(c->md = pcre2_match_data_create(1, NULL)))
        return rx_fail(c, n, PCRE2_ERROR_NOMEMORY);
    if (!p)
        p = "";
    int rc = pcre2_match(n->re, (PCRE2_SPTR)p, len, 0, 0, c->md, c->mctx);
    /* JIT code runs on a small machine stack; the interpreter keeps its
     * backtracking state on the heap, under FILTER_HEAP_LIMIT_KIB. */
    if (rc == PCRE2_ERROR_JIT_STACKLIMIT)
        rc = pcre2_match(n->re, (PCRE2_SPTR)p, len, 0, PCRE2_NO_JIT, c->md, c->mctx);
    if (rc >= 0)
        return YES;
    if (rc == PCRE2_ERROR_NOMATCH)
        return NO;
    return rx_fail(c, n, rc);
}

static int rx_str(ectx *c, const fnode *n, const char *s)
{
    return rx(c, n, s ? s : "", s ? strlen(s) : 0);
}

/* Kleene's or, for matchers tried in turn: YES wins, then ERR. */
#define OR3(acc, expr)                                                         \
    do {                                                                       \
        if ((acc) != YES) {                                                    \
            int or3_r = (expr);                                                \
            if (or3_r == YES || (acc) == NO)                                   \
                (acc) = or3_r;                                                 \
        }                                                                      \
    } while (0)

/* All values of `name`, joined with ", " as mitmproxy's Headers.get does;
 * NULL when absent.  Caller frees. */
static char *hdr_joined(const hdrs *h, const char *name)
{
    bytes b = {0};
    bool any = false;
    for (size_t i = 0; i < h->n; i++) {
        if (strlen(name) != h->v[i].name_len ||
            strncasecmp(h->v[i].name, name, h->v[i].name_len) != 0)
            continue;
        if ((any && bytes_append(&b, ", ", 2) < 0) ||
            bytes_append(&b, h->v[i].value ? h->v[i].value : "", h->v[i].value_len) < 0) {
            bytes_free(&b);
            return NULL;
        }
        any = true;
    }
    if (!any)
        return NULL;
    if (!b.p && bytes_append(&b, "", 0) < 0)
        return NULL;
    return b.p;
}

/* The body mitmproxy's get_content(strict=False) returns: decoded when the
 * Content-Encoding is one coding it knows, the raw bytes otherwise or when
 * decoding fails.  A list such as "gzip, br" is not decoded by mitmproxy
 * either. */
static void body_of(ectx *c, int which, const char **p, size_t *n)
{
    const flow *fl = c->fl;
    const hdrs *h = which ? &fl->response->headers : &fl->request->headers;
    const bytes *raw = which ? &fl->response->content : &fl->request->content;
    if (!c->body_done[which]) {
        c->body_done[which] = true;
        c->body_p[which] = raw->p ? raw->p : "";
        c->body_n[which] = raw->len;
        char *ce = hdr_joined(h, "content-encoding");
        if (ce && raw->len) {
            for (char *q = ce; *q; q++)
                *q = (char)tolower((unsigned char)*q);
            const char *coding = NULL;
            if (!strcmp(ce, "gzip") || !strcmp(ce, "br") || !strcmp(ce, "zstd") ||
                !strcmp(ce, "deflate"))
                coding = ce;
            else if (!strcmp(ce, "deflateraw"))
                coding = "deflate";
            char e[128];
            if (coding && encoding_decode != NULL && encoding_decode(coding, raw->p, raw->len,
                                          &c->body_dec[which], e, sizeof e) == 0) {
                c->body_p[which] = c->body_dec[which].p ? c->body_dec[which].p : "";
                c->body_n[which] = c->body_dec[which].len;
            }
        }
        free(ce);
    }
    *p = c->body_p[which];
    *n = c->body_n[which];
}

/* bytes(Headers): "name: value\r\n" per field, as sent. */
static int head_match(ectx *c, const fnode *n, int which)
{
    const hdrs *h = which ? &c->fl->response->headers : &c->fl->request->headers;
    if (!c->hdr_done[which]) {
        c->hdr_done[which] = true;
        bytes *b = &c->hdr[which];
        for (size_t i = 0; i < h->n; i++) {
            if (bytes_append(b, h->v[i].name, h->v[i].name_len) < 0 ||
                bytes_append(b, ": ", 2) < 0 ||
                bytes_append(b, h->v[i].value ? h->v[i].value : "", h->v[i].value_len) < 0 ||
                bytes_append(b, "\r\n", 2) < 0) {
                c->hdr_oom[which] = true;
                break;
            }
        }
    }
    if (c->hdr_oom[which])
        return rx_fail(c, n, PCRE2_ERROR_NOMEMORY);
    return rx(c, n, c->hdr[which].p, c->hdr[which].len);
}

static int ct_match(ectx *c, const fnode *n, const hdrs *h)
{
    int r = NO;
    for (size_t i = 0; i < h->n && r != YES; i++)
        if (h->v[i].name_len == 12 && strncasecmp(h->v[i].name, "content-type", 12) == 0)
            OR3(r, rx(c, n, h->v[i].value, h->v[i].value_len));
    return r;
}

static bool asset_match(const hdrs *h)
{
    /* mitmproxy's asset regexes, all of the form "prefix" or "prefix.*",
     * searched case-sensitively: a substring test is the same thing. */
    static const char *const types[] = {
        "text/javascript", "application/x-javascript", "application/javascript",
        "text/css", "image/", "font/", "application/font",
    };
    for (size_t i = 0; i < h->n; i++) {
        if (h->v[i].name_len != 12 || strncasecmp(h->v[i].name, "content-type", 12) != 0)
            continue;
        for (size_t t = 0; t < sizeof types / sizeof types[0]; t++)
            if (h->v[i].value && memmem(h->v[i].value, h->v[i].value_len, types[t],
                                        strlen(types[t])))
                return true;
    }
    return false;
}

/* mitmproxy.net.check.is_valid_host, for str input. */
static bool valid_host(const char *h, size_t n)
{
    if (n == 0 || n > 255)
        return false;
    /* labels: "[A-Za-z0-9-_]{1,63}" after dropping one trailing dot;
     * non-ASCII labels are valid once IDNA-encoded (approximated). */
    size_t m = (h[n - 1] == '.') ? n - 1 : n;
    bool labels_ok = m > 0;
    size_t ls = 0;
    for (size_t i = 0; i <= m && labels_ok; i++) {
        if (i == m || h[i] == '.') {
            if (i - ls < 1 || i - ls > 63)
                labels_ok = false;
            ls = i + 1;
            continue;
        }
        unsigned char ch = (unsigned char)h[i];
        if (!(isalnum(ch) || ch == '-' || ch == '_' || ch >= 0x80))
            labels_ok = false;
    }
    if (labels_ok)
        return true;
    char buf[256];
    memcpy(buf, h, n);
    buf[n] = '\0';
    unsigned char addr[16];
    if (inet_pton(AF_INET, buf, addr) == 1)
        return true;
    char *pct = strchr(buf, '%');
    if (pct && pct[1])
        *pct = '\0';
    return inet_pton(AF_INET6, buf, addr) == 1;
}

/* mitmproxy.net.http.url.parse_authority(authority, check=False): host and
 * port (0 = none); on malformed input the whole authority and no port. */
static char *parse_authority(const char *a, unsigned *port)
{
    size_t n = strlen(a);
    *port = 0;
    size_t hs = 0, he = 0;
    bool ok = false;
    const char *colon = strchr(a, ':');
    /* host alternative 1: [^:]+ */
    if (n > 0 && colon != a) {
        size_t k = colon ? (size_t)(colon - a) : n;
        if (k == n) {
            hs = 0, he = n, ok = true;
        } else {
            size_t d = k + 1;
            while (d < n && a[d] >= '0' && a[d] <= '9')
                d++;
            if (d == n && d > k + 1)
                hs = 0, he = k, ok = true;
        }
    }
    /* host alternative 2: \[.+\], greedy */
    if (!ok && n >= 3 && a[0] == '[') {
        for (size_t j = n; j-- > 2;) {
            if (a[j] != ']')
                continue;
            if (memchr(a + 1, '\n', j - 1))
                continue;
            size_t r = j + 1;
            if (r == n) {
                hs = 0, he = j + 1, ok = true;
                break;
            }
            if (a[r] == ':') {
                size_t d = r + 1;
                while (d < n && a[d] >= '0' && a[d] <= '9')
                    d++;
                if (d == n && d > r + 1) {
                    hs = 0, he = j + 1, ok = true;
                    break;
                }
            }
        }
    }
    if (ok) {
        size_t s = hs, e = he;
        if (e - s >= 2 && a[s] == '[' && a[e - 1] == ']')
            s++, e--;
        if (valid_host(a + s, e - s)) {
            unsigned long p = 0;
            bool port_ok = true;
            if (he < n) {
                const char *d = a + he + 1;
                if (strlen(d) > 6)
                    port_ok = false;
                else
                    p = strtoul(d, NULL, 10);
                if (p > 65535)
                    port_ok = false;
            }
            if (port_ok) {
                *port = (unsigned)p;
                return strndup(a + s, e - s);
            }
        }
    }
    return strdup(a);
}

static int default_port(const char *scheme)
{
    if (scheme && !strcmp(scheme, "http"))
        return 80;
    if (scheme && !strcmp(scheme, "https"))
        return 443;
    return 0;
}

/* url.unparse: no brackets around IPv6 hosts, "*" paths dropped. */
static char *unparse(const char *scheme, const char *host, unsigned port, const char *path)
{
    if (!path || !strcmp(path, "*"))
        path = "";
    char *u = NULL;
    int r;
    if (default_port(scheme) == (int)port)
        r = asprintf(&u, "%s://%s%s", scheme, host, path);
    else
        r = asprintf(&u, "%s://%s:%u%s", scheme, host, port, path);
    return r < 0 ? NULL : u;
}

/* Request.host_header: :authority for HTTP/2 and 3, else the Host header. */
static char *host_header(const flow_request *r)
{
    const char *v = r->http_version ? r->http_version : "";
    if ((!strcmp(v, "HTTP/2.0") || !strcmp(v, "HTTP/3")) && r->authority && *r->authority)
        return strdup(r->authority);
    return hdr_joined(&r->headers, "host");
}

static const char *pretty_host(ectx *c)
{
    if (!c->host_done) {
        c->host_done = true;
        const flow_request *r = c->fl->request;
        char *hh = host_header(r);
        if (hh && *hh) {
            unsigned port;
            c->phost = parse_authority(hh, &port);
        } else {
            c->phost = strdup(r->host ? r->host : "");
        }
        free(hh);
    }
    return c->phost;
}

/* Request.pretty_url */
static const char *pretty_url(ectx *c)
{
    if (!c->url_done) {
        c->url_done = true;
        const flow_request *r = c->fl->request;
        const char *scheme = r->scheme ? r->scheme : "http";
        if (r->method && !strcmp(r->method, "CONNECT")) {
            c->url = strdup(r->authority ? r->authority : "");
        } else {
            char *hh = host_header(r);
            if (!hh || !*hh) {
                c->url = unparse(scheme, r->host ? r->host : "", r->port, r->path);
            } else {
                unsigned port;
                char *h = parse_authority(hh, &port);
                if (!port)
                    port = default_port(scheme) ? (unsigned)default_port(scheme) : 443;
                if (h)
                    c->url = unparse(scheme, h, port, r->path);
                free(h);
            }
            free(hh);
        }
    }
    return c->url;
}

char *filter_pretty_url(const flow *fl)
{
    if (!fl->request)
        return NULL;
    ectx c = {.fl = fl};
    const char *u = pretty_url(&c);
    char *r = u ? strdup(u) : NULL;
    free(c.url);
    free(c.phost);
    return r;
}

/* ---- ~meta: Python's str() of each metadata value ------------------------ */

static int py_float(bytes *b, double x)
{
    char buf[64];
    if (isnan(x))
        return bytes_append(b, "nan", 3);
    if (isinf(x))
        return x < 0 ? bytes_append(b, "-inf", 4) : bytes_append(b, "inf", 3);
    /* shortest repr that reads back to the same double, like repr(float) */
    int prec;
    for (prec = 1; prec <= 17; prec++) {
        snprintf(buf, sizeof buf, "%.*e", prec - 1, x);
        if (strtod(buf, NULL) == x)
            break;
    }
    char digits[32];
    size_t nd = 0;
    const char *p = buf;
    bool neg = false;
    if (*p == '-')
        neg = true, p++;
    for (; *p && *p != 'e'; p++)
        if (*p >= '0' && *p <= '9')
            digits[nd++] = *p;
    int exp = atoi(p + 1);
    while (nd > 1 && digits[nd - 1] == '0')
        nd--;
    digits[nd] = '\0';
    char out[80];
    size_t o = 0;
    if (neg)
        out[o++] = '-';
    if (exp >= -5 + 1 && exp < 16) {
        if (exp < 0) {
            out[o++] = '0';
            out[o++] = '.';
            for (int i = 0; i < -exp - 1; i++)
                out[o++] = '0';
            memcpy(out + o, digits, nd);
            o += nd;
        } else {
            for (int i = 0; i <= exp; i++)
                out[o++] = (size_t)i < nd ? digits[i] : '0';
            out[o++] = '.';
            if ((size_t)exp + 1 < nd) {
                memcpy(out + o, digits + exp + 1, nd - (size_t)exp - 1);
                o += nd - (size_t)exp - 1;
            } else {
                out[o++] = '0';
            }
        }
    } else {
        out[o++] = digits[0];
        if (nd > 1) {
            out[o++] = '.';
            memcpy(out + o, digits + 1, nd - 1);
            o += nd - 1;
        }
        o += (size_t)snprintf(out + o, sizeof out - o, "e%c%02d", exp < 0 ? '-' : '+',
                              exp < 0 ? -exp : exp);
    }
    return bytes_append(b, out, o);
}

/* Characters str.isprintable() rejects, approximately: C0/C1 controls,
 * separators other than the ASCII space and common format characters. */
static bool py_unprintable(uint32_t cp)
{
    return cp < 0x20 || (cp >= 0x7f && cp <= 0xa0) || cp == 0xad || cp == 0x1680 ||
           (cp >= 0x2000 && cp <= 0x200f) || (cp >= 0x2028 && cp <= 0x202f) ||
           (cp >= 0x205f && cp <= 0x206f) || cp == 0x3000 || cp == 0xfeff ||
           (cp >= 0xfff9 && cp <= 0xfffb);
}

static int py_repr_str(bytes *b, const char *s, size_t n)
{
    char q = (memchr(s, '\'', n) && !memchr(s, '"', n)) ? '"' : '\'';
    if (bytes_append(b, &q, 1) < 0)
        return -1;
    for (size_t i = 0; i < n;) {
        unsigned char ch = (unsigned char)s[i];
        char esc[16];
        int el = 0;
        size_t adv = 1;
        uint32_t cp = ch;
        if (ch >= 0x80) {
            /* decode one UTF-8 sequence (jansson guarantees validity) */
            int len = ch >= 0xf0 ? 4 : ch >= 0xe0 ? 3 : 2;
            if (i + (size_t)len <= n) {
                cp = ch & (0x3f >> (len - 1));
                for (int k = 1; k < len; k++)
                    cp = (cp << 6) | ((unsigned char)s[i + (size_t)k] & 0x3f);
                adv = (size_t)len;
            }
        }
        if (cp == '\\')
            el = snprintf(esc, sizeof esc, "\\\\");
        else if (cp == (uint32_t)q)
            el = snprintf(esc, sizeof esc, "\\%c", q);
        else if (cp == '\t')
            el = snprintf(esc, sizeof esc, "\\t");
        else if (cp == '\n')
            el = snprintf(esc, sizeof esc, "\\n");
        else if (cp == '\r')
            el = snprintf(esc, sizeof esc, "\\r");
        else if (py_unprintable(cp))
            el = cp <= 0xff ? snprintf(esc, sizeof esc, "\\x%02x", cp)
                            : snprintf(esc, sizeof esc, "\\u%04x", cp);
        if (el > 0) {
            if (bytes_append(b, esc, (size_t)el) < 0)
                return -1;
        } else if (bytes_append(b, s + i, adv) < 0) {
            return -1;
        }
        i += adv;
    }
    return bytes_append(b, &q, 1);
}

static int py_value(bytes *b, const json_t *v, bool repr, int depth)
{
    char buf[32];
    if (depth > 64)
        return bytes_append(b, "...", 3);
    switch (json_typeof(v)) {
    case JSON_STRING:
        if (repr)
            return py_repr_str(b, json_string_value(v), json_string_length(v));
        return bytes_append(b, json_string_value(v), json_string_length(v));
    case JSON_INTEGER:
        snprintf(buf, sizeof buf, "%lld", (long long)json_integer_value(v));
        return bytes_append(b, buf, strlen(buf));
    case JSON_REAL:
        return py_float(b, json_real_value(v));
    case JSON_TRUE:
        return bytes_append(b, "True", 4);
    case JSON_FALSE:
        return bytes_append(b, "False", 5);
    case JSON_NULL:
        return bytes_append(b, "None", 4);
    case JSON_ARRAY: {
        if (bytes_append(b, "[", 1) < 0)
            return -1;
        for (size_t i = 0; i < json_array_size(v); i++)
            if ((i && bytes_append(b, ", ", 2) < 0) ||
                py_value(b, json_array_get(v, i), true, depth + 1) < 0)
                return -1;
        return bytes_append(b, "]", 1);
    }
    case JSON_OBJECT: {
        if (bytes_append(b, "{", 1) < 0)
            return -1;
        const char *k;
        json_t *x;
        bool first = true;
        json_object_foreach((json_t *)v, k, x) {
            if ((!first && bytes_append(b, ", ", 2) < 0) ||
                py_repr_str(b, k, strlen(k)) < 0 || bytes_append(b, ": ", 2) < 0 ||
                py_value(b, x, true, depth + 1) < 0)
                return -1;
            first = false;
        }
        return bytes_append(b, "}", 1);
    }
    }
    return 0;
}

/* "\n".join(f"{key}: {value}" for key, value in metadata.items()) */
static const char *meta_text(ectx *c)
{
    if (!c->meta_done) {
        c->meta_done = true;
        bytes b = {0};
        json_t *root = c->fl->metadata ? json_loads(c->fl->metadata, JSON_DECODE_ANY, NULL)
                                       : NULL;
        if (root && json_is_object(root)) {
            const char *k;
            json_t *v;
            bool first = true;
            json_object_foreach(root, k, v) {
                if ((!first && bytes_append(&b, "\n", 1) < 0) ||
                    bytes_append(&b, k, strlen(k)) < 0 || bytes_append(&b, ": ", 2) < 0 ||
                    py_value(&b, v, false, 0) < 0)
                    break;
                first = false;
            }
        }
        json_decref(root);
        if (!b.p)
            bytes_append(&b, "", 0);
        c->meta = b.p;
    }
    return c->meta;
}

/* WebSocket messages (or a TCP flow's messages) in a direction: 0 client,
 * 1 server, -1 both. */
static int msgs_match(ectx *c, const fnode *n, int dir)
{
    const flow *fl = c->fl;
    int r = NO;
    for (size_t i = 0; i < fl->ws_n && r != YES; i++) {
        const flow_ws_message *m = &fl->ws_msgs[i];
        if (dir == 0 && !m->from_client)
            continue;
        if (dir == 1 && m->from_client)
            continue;
        OR3(r, rx(c, n, m->content.p, m->content.len));
    }
    return r;
}

static int eval_node(ectx *c, const fnode *n)
{
    const flow *fl = c->fl;
    bool http = fl->type == FLOW_HTTP && fl->request;
    const char *p;
    size_t len;
    int r = NO;
    switch (n->op) {
    case OP_AND:
        /* Kleene's and: NO wins, then ERR */
        r = YES;
        for (size_t i = 0; i < n->nkids; i++) {
            int k = eval_node(c, n->kids[i]);
            if (k == NO)
                return NO;
            if (k == ERR)
                r = ERR;
        }
        return r;
    case OP_OR:
        for (size_t i = 0; i < n->nkids && r != YES; i++)
            OR3(r, eval_node(c, n->kids[i]));
        return r;
    case OP_NOT:
        r = eval_node(c, n->kids[0]);
        return r == ERR ? ERR : !r;
    case OP_ALL:
        return YES;
    case OP_ERR:
        return fl->error != NULL;
    case OP_MARKED:
        return fl->marked && *fl->marked;
    case OP_HTTP:
        return fl->type == FLOW_HTTP;
    case OP_WEBSOCKET:
        return fl->type == FLOW_HTTP && fl->websocket;
    case OP_TCP:
        return fl->type == FLOW_TCP;
    case OP_UDP:
    case OP_DNS:
        return NO; /* mitmlua has no UDP or DNS flows */
    case OP_REQ:
        return http && !fl->response;
    case OP_RESP:
        return http && fl->response;
    case OP_REPLAY:
        return fl->is_replay != NULL;
    case OP_REPLAYQ:
        return fl->is_replay && !strcmp(fl->is_replay, "request");
    case OP_REPLAYS:
        return fl->is_replay && !strcmp(fl->is_replay, "response");
    case OP_ASSET:
        return http && fl->response && asset_match(&fl->response->headers);
    case OP_CODE:
        return http && fl->response && n->num >= 0 && fl->response->status_code == n->num;
    case OP_CT:
        if (!http)
            return NO;
        r = ct_match(c, n, &fl->request->headers);
        if (fl->response)
            OR3(r, ct_match(c, n, &fl->response->headers));
        return r;
    case OP_CTQ:
        return http ? ct_match(c, n, &fl->request->headers) : NO;
    case OP_CTS:
        return http && fl->response ? ct_match(c, n, &fl->response->headers) : NO;
    case OP_HEAD:
        if (!http)
            return NO;
        r = head_match(c, n, 0);
        if (fl->response)
            OR3(r, head_match(c, n, 1));
        return r;
    case OP_HEADQ:
        return http ? head_match(c, n, 0) : NO;
    case OP_HEADS:
        return http && fl->response ? head_match(c, n, 1) : NO;
    case OP_BODY:
    case OP_BODYQ:
    case OP_BODYS: {
        int dir = n->op == OP_BODY ? -1 : n->op == OP_BODYQ ? 0 : 1;
        if (fl->type == FLOW_TCP)
            return msgs_match(c, n, dir);
        if (!http)
            return NO;
        if (dir <= 0) {
            body_of(c, 0, &p, &len);
            r = rx(c, n, p, len);
        }
        if (dir != 0 && fl->response) {
            body_of(c, 1, &p, &len);
            OR3(r, rx(c, n, p, len));
        }
        OR3(r, msgs_match(c, n, dir));
        return r;
    }
    case OP_METHOD:
        return http ? rx_str(c, n, fl->request->method) : NO;
    case OP_DOMAIN:
        if (!http)
            return NO;
        r = rx_str(c, n, fl->request->host);
        OR3(r, rx_str(c, n, pretty_host(c)));
        return r;
    case OP_URL: {
        if (!http)
            return NO;
        const char *u = pretty_url(c);
        return u ? rx_str(c, n, u) : rx_fail(c, n, PCRE2_ERROR_NOMEMORY);
    }
    case OP_SRC:
    case OP_DST: {
        const flow_conn *cn = n->op == OP_SRC ? &fl->client : &fl->server;
        if (!cn->address_host)
            return NO;
        char buf[320];
        int l = snprintf(buf, sizeof buf, "%s:%u", cn->address_host, cn->address_port);
        return l > 0 && (size_t)l < sizeof buf ? rx(c, n, buf, (size_t)l) : NO;
    }
    case OP_META:
        return rx_str(c, n, meta_text(c));
    case OP_MARKER:
        return rx_str(c, n, fl->marked ? fl->marked : "");
    case OP_COMMENT:
        return rx_str(c, n, fl->comment ? fl->comment : "");
    }
    return NO;
}

static const char *op_name(enum fop op);

int filter_eval(const filter *f, const flow *fl, char *err, size_t errsz)
{
    if (err && errsz)
        err[0] = '\0';
    if (!f || !fl || !f->root)
        return 0;
    ectx c = {.fl = fl, .mctx = f->mctx};
    int r = eval_node(&c, f->root);
    if (r == ERR && err && errsz) {
        const fnode *n = c.err_node;
        PCRE2_UCHAR m[120];
        if (pcre2_get_error_message(c.err_code, m, sizeof m) < 0)
            snprintf((char *)m, sizeof m, "error %d", c.err_code);
        char ex[80];
        excerpt(n->arg ? n->arg : "", n->arg ? n->arglen : 0, ex, sizeof ex);
        snprintf(err, errsz, "filter '%s': ~%s%s \"%s\" could not be evaluated: %s",
                 f->pattern, op_name(n->op), n->cs ? "c" : "", ex, (const char *)m);
    }
    pcre2_match_data_free(c.md);
    for (int i = 0; i < 2; i++) {
        bytes_free(&c.body_dec[i]);
        bytes_free(&c.hdr[i]);
    }
    free(c.url);
    free(c.phost);
    free(c.meta);
    return r;
}

/* ---- description ------------------------------------------------------- */

static const char *op_name(enum fop op)
{
    for (size_t i = 0; i < FILTER_NOPS; i++)
        if (filter_ops[i].op == op)
            return filter_ops[i].name;
    return "?";
}

static int describe(const fnode *n, bytes *b, int depth)
{
    if (depth > FILTER_MAX_DEPTH * 2 + 8)
        return -1;
    if (n->op == OP_AND || n->op == OP_OR || n->op == OP_NOT) {
        const char *o = n->op == OP_AND ? "&(" : n->op == OP_OR ? "|(" : "!(";
        if (bytes_append(b, o, 2) < 0)
            return -1;
        for (size_t i = 0; i < n->nkids; i++)
            if ((i && bytes_append(b, ", ", 2) < 0) || describe(n->kids[i], b, depth + 1) < 0)
                return -1;
        return bytes_append(b, ")", 1);
    }
    const char *nm = op_name(n->op);
    if (bytes_append(b, "~", 1) < 0 || bytes_append(b, nm, strlen(nm)) < 0 ||
        (n->cs && bytes_append(b, "c", 1) < 0))
        return -1;
    if (n->op == OP_CODE) {
        char num[32];
        snprintf(num, sizeof num, " %lld", n->num);
        return bytes_append(b, num, strlen(num));
    }
    if (!n->re)
        return 0;
    if (bytes_append(b, " \"", 2) < 0)
        return -1;
    for (size_t i = 0; i < n->arglen; i++) {
        unsigned char ch = (unsigned char)n->arg[i];
        char e[8];
        int el;
        if (ch == '"' || ch == '\\')
            el = snprintf(e, sizeof e, "\\%c", ch);
        else if (ch < 0x20 || ch == 0x7f)
            el = snprintf(e, sizeof e, "\\x%02x", ch);
        else
            e[0] = (char)ch, el = 1;
        if (bytes_append(b, e, (size_t)el) < 0)
            return -1;
    }
    return bytes_append(b, "\"", 1);
}

char *filter_describe(const filter *f)
{
    if (!f || !f->root)
        return NULL;
    bytes b = {0};
    if (describe(f->root, &b, 0) < 0) {
        bytes_free(&b);
        return NULL;
    }
    return b.p;
}
