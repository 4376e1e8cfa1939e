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
 * Matching a flow is filter_eval.c's job; filter_int.h is what the two
 * share. */
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "filter_int.h"

/* ---- operators ---------------------------------------------------------- */

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
void filter_excerpt(const char *p, size_t n, char *out, size_t outsz)
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
        filter_excerpt(ps->s + op_at, pat_at + patlen - op_at, ex, sizeof ex);
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
            filter_excerpt(ps->s + op_at, before - op_at, ex, sizeof ex);
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
                filter_excerpt(ps->s + at, best + 1, ex, sizeof ex);
                perr(ps, at + 1 + best,
                     "%s: expected whitespace after the operator", ex);
            } else {
                filter_excerpt(ps->s + at, e - at, ex, sizeof ex);
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
            filter_excerpt(ps->s + at, we - at, ex, sizeof ex);
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

/* ---- description ------------------------------------------------------- */

const char *filter_op_name(enum fop op)
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
    const char *nm = filter_op_name(n->op);
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
