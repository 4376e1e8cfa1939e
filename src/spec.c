/* spec.c — "[/filter]/subject/replacement" option values and the parts of
 * Python's `re` they lean on (escape decoding, re.sub templates), so that
 * -M/-H/-B/map_local values mean what they mean to mitmproxy. */
#define PCRE2_CODE_UNIT_WIDTH 8
#include "spec.h"

#include <ctype.h>
#include <pcre2.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "filter.h"

/* ---- splitting ---------------------------------------------------------- */

/* Length of the UTF-8 sequence that starts with byte c (1 for anything
 * that is not a valid lead byte: the separator is then that one byte). */
static size_t utf8_len(unsigned char c)
{
    if (c >= 0xf0 && c < 0xf8)
        return 4;
    if (c >= 0xe0)
        return c < 0xf0 ? 3 : 1;
    if (c >= 0xc0)
        return 2;
    return 1;
}

static const char *find_sep(const char *p, const char *sep, size_t seplen)
{
    for (; *p; p++)
        if (strncmp(p, sep, seplen) == 0)
            return p;
    return NULL;
}

void spec_free(spec *s)
{
    if (!s)
        return;
    filter_free(s->flt);
    free(s->subject);
    free(s->replacement);
    memset(s, 0, sizeof *s);
}

int spec_parse(const char *optname, const char *text, spec *out, char *err, size_t errsz)
{
    memset(out, 0, sizeof *out);
    if (!*text) {
        snprintf(err, errsz, "%s: invalid spec '': empty (expected [/filter]/regex/replacement)", optname);
        return -1;
    }
    /* mitmproxy: sep, rem = option[0], option[1:]; rem.split(sep, 2) */
    size_t seplen = utf8_len((unsigned char)text[0]);
    if (strlen(text) < seplen)
        seplen = 1;
    char sep[5] = {0};
    memcpy(sep, text, seplen);
    const char *parts[3];
    size_t lens[3], n = 0;
    const char *p = text + seplen;
    while (n < 2) {
        const char *q = find_sep(p, sep, seplen);
        if (!q)
            break;
        parts[n] = p;
        lens[n] = (size_t)(q - p);
        n++;
        p = q + seplen;
    }
    parts[n] = p;
    lens[n] = strlen(p);
    n++;
    if (n < 2) {
        snprintf(err, errsz,
                 "%s: invalid spec '%s' at column %zu: expected 2 or 3 parts separated by '%s' "
                 "([%sfilter]%sregex%sreplacement)",
                 optname, text, strlen(text) + 1, sep, sep, sep, sep);
        return -1;
    }
    size_t first = n == 3 ? 1 : 0;
    if (n == 3) {
        char *ftext = strndup(parts[0], lens[0]);
        char ferr[400];
        size_t col = 0;
        if (!ftext) {
            snprintf(err, errsz, "%s: out of memory", optname);
            return -1;
        }
        /* the filter's own flags: MITMPROXY_CASE_SENSITIVE_FILTERS counts */
        unsigned fl = 0;
        const char *cs = getenv("MITMPROXY_CASE_SENSITIVE_FILTERS");
        const char *cs2 = getenv("MITMLUA_CASE_SENSITIVE_FILTERS");
        if ((cs && !strcmp(cs, "1")) || (cs2 && !strcmp(cs2, "1")))
            fl |= FILTER_CASE_SENSITIVE;
        out->flt = filter_compile_opts(ftext, fl, &col, ferr, sizeof ferr);
        free(ftext);
        if (!out->flt) {
            size_t at = (size_t)(parts[0] - text) + (col ? col - 1 : 0);
            snprintf(err, errsz, "%s: invalid spec '%s' at column %zu: invalid filter: %s", optname, text,
                     at + 1, ferr);
            return -1;
        }
    }
    out->subject = strndup(parts[first], lens[first]);
    out->replacement = strndup(parts[first + 1], lens[first + 1]);
    out->subject_at = (size_t)(parts[first] - text);
    out->replacement_at = (size_t)(parts[first + 1] - text);
    if (!out->subject || !out->replacement) {
        spec_free(out);
        snprintf(err, errsz, "%s: out of memory", optname);
        return -1;
    }
    return 0;
}

/* ---- escapes ------------------------------------------------------------ */

static int hexval(int c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    c = tolower(c);
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    return -1;
}

int spec_unescape(const char *s, size_t n, bytes *out, size_t *bad_at, char *err, size_t errsz)
{
    bytes_reset(out);
    if (bytes_append(out, "", 0) < 0)
        goto nomem;
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c != '\\') {
            if (bytes_append(out, &c, 1) < 0)
                goto nomem;
            continue;
        }
        if (i + 1 >= n) {
            *bad_at = i;
            snprintf(err, errsz, "trailing \\ in string");
            return -1;
        }
        char e = s[++i];
        unsigned char v;
        switch (e) {
        case '\n': continue;
        case '\\': v = '\\'; break;
        case '\'': v = '\''; break;
        case '"': v = '"'; break;
        case 'a': v = '\a'; break;
        case 'b': v = '\b'; break;
        case 'f': v = '\f'; break;
        case 'n': v = '\n'; break;
        case 'r': v = '\r'; break;
        case 't': v = '\t'; break;
        case 'v': v = '\v'; break;
        case 'x': {
            int h1 = i + 1 < n ? hexval((unsigned char)s[i + 1]) : -1;
            int h2 = i + 2 < n ? hexval((unsigned char)s[i + 2]) : -1;
            if (h1 < 0 || h2 < 0) {
                *bad_at = i - 1;
                snprintf(err, errsz, "invalid \\x escape (expected two hex digits)");
                return -1;
            }
            v = (unsigned char)(h1 * 16 + h2);
            i += 2;
            break;
        }
        default:
            if (e >= '0' && e <= '7') {
                unsigned x = (unsigned)(e - '0');
                for (int k = 0; k < 2 && i + 1 < n && s[i + 1] >= '0' && s[i + 1] <= '7'; k++)
                    x = x * 8 + (unsigned)(s[++i] - '0');
                v = (unsigned char)x;  /* Python keeps the low byte too */
                break;
            }
            /* unknown escapes stay as written */
            if (bytes_append(out, "\\", 1) < 0 || bytes_append(out, &e, 1) < 0)
                goto nomem;
            continue;
        }
        if (bytes_append(out, &v, 1) < 0)
            goto nomem;
    }
    return 0;
nomem:
    *bad_at = 0;
    snprintf(err, errsz, "out of memory");
    return -1;
}

/* ---- regexes ------------------------------------------------------------ */

struct spec_regex {
    pcre2_code *code;
    uint32_t groups;
};

spec_regex *spec_regex_compile(const char *pat, size_t n, unsigned flags, size_t *err_at,
                               char *err, size_t errsz)
{
    *err_at = 0;
    spec_regex *re = calloc(1, sizeof *re);
    char *tr = filter_regex_from_python(pat, n);
    pcre2_compile_context *cc = pcre2_compile_context_create(NULL);
    if (!re || !tr || !cc) {
        snprintf(err, errsz, "out of memory");
        goto fail;
    }
    /* Python's "." and "$" know only \n as a line end */
    pcre2_set_newline(cc, PCRE2_NEWLINE_LF);
    uint32_t o = 0;
    if (flags & SPEC_RX_TEXT)
        o |= PCRE2_UTF | PCRE2_UCP | PCRE2_MATCH_INVALID_UTF;
    if (flags & SPEC_RX_DOTALL)
        o |= PCRE2_DOTALL;
    int ec = 0;
    PCRE2_SIZE eo = 0;
    re->code = pcre2_compile((PCRE2_SPTR)tr, n, o, &ec, &eo, cc);
    if (!re->code) {
        PCRE2_UCHAR msg[200];
        pcre2_get_error_message(ec, msg, sizeof msg);
        *err_at = eo;
        snprintf(err, errsz, "invalid regular expression: %s", (char *)msg);
        goto fail;
    }
    pcre2_jit_compile(re->code, PCRE2_JIT_COMPLETE); /* best effort */
    pcre2_pattern_info(re->code, PCRE2_INFO_CAPTURECOUNT, &re->groups);
    free(tr);
    pcre2_compile_context_free(cc);
    return re;
fail:
    free(tr);
    pcre2_compile_context_free(cc);
    spec_regex_free(re);
    return NULL;
}

void spec_regex_free(spec_regex *re)
{
    if (!re)
        return;
    pcre2_code_free(re->code);
    free(re);
}

uint32_t spec_regex_groups(const spec_regex *re) { return re->groups; }

bool spec_regex_search(const spec_regex *re, const char *s, size_t n, const char **g1,
                       size_t *g1_len, size_t *end)
{
    pcre2_match_data *md = pcre2_match_data_create_from_pattern(re->code, NULL);
    if (!md)
        return false;
    int rc = pcre2_match(re->code, (PCRE2_SPTR)s, n, 0, 0, md, NULL);
    if (rc > 0) {
        PCRE2_SIZE *ov = pcre2_get_ovector_pointer(md);
        if (end)
            *end = ov[1];
        if (g1) {
            *g1 = NULL;
            *g1_len = 0;
            if (re->groups >= 1 && rc >= 2 && ov[2] != PCRE2_UNSET) {
                *g1 = s + ov[2];
                *g1_len = ov[3] - ov[2];
            }
        }
    }
    pcre2_match_data_free(md);
    return rc > 0;
}

/* ---- replacement templates ---------------------------------------------- */

/* A template is a list of pieces: literal bytes, or a group to insert. */
typedef struct tpiece {
    bool group;
    uint32_t num;      /* group number when `group` */
    size_t off, len;   /* literal: slice of t->lit */
} tpiece;

struct spec_template {
    bytes lit;
    tpiece *v;
    size_t n, cap;
};

void spec_template_free(spec_template *t)
{
    if (!t)
        return;
    bytes_free(&t->lit);
    free(t->v);
    free(t);
}

static int tpush_lit(spec_template *t, const void *p, size_t n)
{
    if (n == 0)
        return 0;
    if (t->n && !t->v[t->n - 1].group && t->v[t->n - 1].off + t->v[t->n - 1].len == t->lit.len) {
        t->v[t->n - 1].len += n;
        return bytes_append(&t->lit, p, n);
    }
    if (t->n == t->cap) {
        size_t nc = t->cap ? t->cap * 2 : 8;
        tpiece *nv = realloc(t->v, nc * sizeof *nv);
        if (!nv)
            return -1;
        t->v = nv;
        t->cap = nc;
    }
    t->v[t->n++] = (tpiece){.group = false, .off = t->lit.len, .len = n};
    return bytes_append(&t->lit, p, n);
}

static int tpush_group(spec_template *t, uint32_t g)
{
    if (t->n == t->cap) {
        size_t nc = t->cap ? t->cap * 2 : 8;
        tpiece *nv = realloc(t->v, nc * sizeof *nv);
        if (!nv)
            return -1;
        t->v = nv;
        t->cap = nc;
    }
    t->v[t->n++] = (tpiece){.group = true, .num = g};
    return 0;
}

/* Python's sre_parse.parse_template, for the parts a replacement uses. */
spec_template *spec_template_compile(const spec_regex *re, const char *s, size_t n, bool literal,
                                     size_t *err_at, char *err, size_t errsz)
{
    spec_template *t = calloc(1, sizeof *t);
    *err_at = 0;
    if (!t || bytes_append(&t->lit, "", 0) < 0)
        goto nomem;
    if (literal) {
        if (tpush_lit(t, s, n) < 0)
            goto nomem;
        return t;
    }
    for (size_t i = 0; i < n; i++) {
        if (s[i] != '\\') {
            if (tpush_lit(t, s + i, 1) < 0)
                goto nomem;
            continue;
        }
        if (i + 1 >= n) {
            *err_at = i;
            snprintf(err, errsz, "bad escape (end of pattern)");
            goto fail;
        }
        size_t at = i;
        char c = s[++i];
        if (c == 'g') {
            /* \g<name> or \g<number> */
            if (i + 1 >= n || s[i + 1] != '<') {
                *err_at = at;
                snprintf(err, errsz, "missing < after \\g");
                goto fail;
            }
            const char *name = s + i + 2;
            const char *close = memchr(name, '>', n - (size_t)(name - s));
            if (!close || close == name) {
                *err_at = at;
                snprintf(err, errsz, close ? "missing group name" : "missing >, unterminated name");
                goto fail;
            }
            size_t nl = (size_t)(close - name);
            long g = -1;
            bool digits = true;
            for (size_t k = 0; k < nl; k++)
                digits = digits && isdigit((unsigned char)name[k]);
            if (digits) {
                g = strtol(name, NULL, 10);
            } else {
                char nm[128];
                if (nl < sizeof nm) {
                    memcpy(nm, name, nl);
                    nm[nl] = '\0';
                    int r = pcre2_substring_number_from_name(re->code, (PCRE2_SPTR)nm);
                    g = r > 0 ? r : -1;
                }
                if (g < 0) {
                    *err_at = at;
                    snprintf(err, errsz, "unknown group name '%.*s'", (int)nl, name);
                    goto fail;
                }
            }
            if (g < 0 || (uint32_t)g > re->groups) {
                *err_at = at;
                snprintf(err, errsz, "invalid group reference %.*s", (int)nl, name);
                goto fail;
            }
            if (tpush_group(t, (uint32_t)g) < 0)
                goto nomem;
            i = (size_t)(close - s);
            continue;
        }
        if (c == '0' || (c >= '1' && c <= '9' && i + 2 < n && s[i + 1] >= '0' && s[i + 1] <= '7' &&
                         s[i + 2] >= '0' && s[i + 2] <= '7' && c <= '7')) {
            /* octal escape: \0, \0o, \0oo or three octal digits */
            unsigned v = (unsigned)(c - '0');
            size_t max = c == '0' ? 2 : 2;
            for (size_t k = 0; k < max && i + 1 < n && s[i + 1] >= '0' && s[i + 1] <= '7'; k++)
                v = v * 8 + (unsigned)(s[++i] - '0');
            if (v > 0377) {
                *err_at = at;
                snprintf(err, errsz, "octal escape value out of range");
                goto fail;
            }
            unsigned char b = (unsigned char)v;
            if (tpush_lit(t, &b, 1) < 0)
                goto nomem;
            continue;
        }
        if (c >= '1' && c <= '9') {
            uint32_t g = (uint32_t)(c - '0');
            if (i + 1 < n && isdigit((unsigned char)s[i + 1]))
                g = g * 10 + (uint32_t)(s[++i] - '0');
            if (g > re->groups) {
                *err_at = at;
                snprintf(err, errsz, "invalid group reference %u", g);
                goto fail;
            }
            if (tpush_group(t, g) < 0)
                goto nomem;
            continue;
        }
        static const char esc_from[] = "abfnrtv\\";
        static const char esc_to[] = "\a\b\f\n\r\t\v\\";
        const char *e = strchr(esc_from, c);
        if (e && c) {
            if (tpush_lit(t, &esc_to[e - esc_from], 1) < 0)
                goto nomem;
            continue;
        }
        if (isalpha((unsigned char)c)) {
            *err_at = at;
            snprintf(err, errsz, "bad escape \\%c", c);
            goto fail;
        }
        if (tpush_lit(t, s + at, 2) < 0)
            goto nomem;
    }
    return t;
nomem:
    snprintf(err, errsz, "out of memory");
fail:
    spec_template_free(t);
    return NULL;
}

static int expand(const spec_template *t, const char *s, const PCRE2_SIZE *ov, int rc, bytes *out)
{
    for (size_t i = 0; i < t->n; i++) {
        const tpiece *p = &t->v[i];
        if (!p->group) {
            if (bytes_append(out, t->lit.p + p->off, p->len) < 0)
                return -1;
        } else if ((int)p->num < rc && ov[2 * p->num] != PCRE2_UNSET) {
            /* a group that did not take part inserts nothing (Python >= 3.5) */
            if (bytes_append(out, s + ov[2 * p->num], ov[2 * p->num + 1] - ov[2 * p->num]) < 0)
                return -1;
        }
    }
    return 0;
}

/* re.sub: every non-overlapping match, empty matches included (also one
 * right after a non-empty match, as Python >= 3.7 does). */
long spec_sub(const spec_regex *re, const spec_template *t, const char *s, size_t n, bytes *out)
{
    bytes_reset(out);
    if (bytes_append(out, "", 0) < 0)
        return -1;
    pcre2_match_data *md = pcre2_match_data_create_from_pattern(re->code, NULL);
    if (!md)
        return -1;
    long count = 0;
    size_t pos = 0, copied = 0;
    bool last_empty = false;
    while (pos <= n) {
        uint32_t mo = last_empty ? (PCRE2_NOTEMPTY_ATSTART | PCRE2_ANCHORED) : 0;
        int rc = pcre2_match(re->code, (PCRE2_SPTR)s, n, pos, mo, md, NULL);
        if (rc == PCRE2_ERROR_NOMATCH && last_empty) {
            /* nothing non-empty here: step over one character */
            last_empty = false;
            pos++;
            continue;
        }
        if (rc <= 0)
            break;
        PCRE2_SIZE *ov = pcre2_get_ovector_pointer(md);
        if (bytes_append(out, s + copied, ov[0] - copied) < 0 || expand(t, s, ov, rc, out) < 0) {
            pcre2_match_data_free(md);
            return -1;
        }
        count++;
        copied = ov[1];
        pos = ov[1];
        last_empty = ov[0] == ov[1];
    }
    pcre2_match_data_free(md);
    if (bytes_append(out, s + copied, n - copied) < 0)
        return -1;
    return count;
}
