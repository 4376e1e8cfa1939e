/* contentview.c — mitmproxy's content views for the console (see
 * contentview.h): the text views (Raw, Hex, JSON,
 * URL-encoded, Query, Multipart, XML/HTML) and the auto view's choice.
 * The binary formats live in contentview_bin.c, the output builder and
 * Python's ways of printing values in contentview_out.c. */
#include "contentview_int.h"

#include <ctype.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

static void cv_reset(cv_text *t)
{
    t->len = t->lines = t->line_start = 0;
    t->cut = t->oom = false;
    if (t->p)
        t->p[0] = '\0';
}


/* ---- Raw and Hex ---------------------------------------------------------- */

/* bytes_to_escaped_str(data, keep_spacing=True), split into lines as
 * Python's splitlines does (\n, \r\n, \r) */
static void view_raw(cv_text *t, const char *s, size_t n)
{
    char buf[8];
    for (size_t i = 0; i < n && !t->cut; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c == '\n' || c == '\r') {
            if (c == '\r' && i + 1 < n && s[i + 1] == '\n')
                i++;
            cv_endl(t);
        } else if (c == '\\') {
            cv_put(t, "\\\\", 2);
        } else if (c == '\t' || (c >= 0x20 && c < 0x7f)) {
            cv_put(t, (const char *)&c, 1);
        } else {
            snprintf(buf, sizeof buf, "\\x%02x", c);
            cv_put(t, buf, 4);
        }
    }
    if (n && s[n - 1] != '\n' && s[n - 1] != '\r')
        cv_endl(t);
}

static void view_hex(cv_text *t, const char *s, size_t n)
{
    char line[128];
    for (size_t off = 0; off < n && !t->cut; off += 16) {
        size_t k, o = (size_t)snprintf(line, sizeof line, "%010zx ", off);
        for (k = 0; k < 16 && off + k < n; k++)
            o += (size_t)snprintf(line + o, sizeof line - o, "%s%02x", k ? " " : "", (unsigned char)s[off + k]);
        size_t hexw = k ? k * 3 - 1 : 0;
        for (; hexw < 47; hexw++)
            line[o++] = ' ';
        o += (size_t)snprintf(line + o, sizeof line - o, "   ");
        for (k = 0; k < 16 && off + k < n; k++) {
            unsigned char c = (unsigned char)s[off + k];
            line[o++] = c >= 0x20 && c < 0x7f ? (char)c : '.';
        }
        cv_put(t, line, o);
        cv_endl(t);
    }
}

static bool is_mostly_bin(const char *s, size_t n)
{
    size_t m = n < 100 ? n : 100, bin = 0;
    for (size_t i = 0; i < m; i++) {
        unsigned char c = (unsigned char)s[i];
        bin += c < 9 || (c > 13 && c < 32) || c > 126;
    }
    return m && (double)bin / (double)m > 0.3;
}

static bool is_xml(const char *s, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (s[i] != '\t' && s[i] != '\n' && s[i] != ' ')
            return s[i] == '<';
    return false;
}

/* ---- JSON: parsed, then printed as Python's json.dumps(indent=4,
 * sort_keys=True, ensure_ascii=False) prints it ------------------------------ */

#define JSON_MAX_DEPTH 500

typedef struct jv {
    char type;              /* 'o' 'a' 's' 'n' (number text) 'f' (float) 'l' literal */
    char *s;                /* string (decoded UTF-8), number or literal text */
    size_t slen;
    struct jv *kids;        /* array items, object values */
    char **keys;
    size_t *klen;
    size_t n;
} jv;

typedef struct jp {
    const char *p, *end;
    int depth;
} jp;

static void jv_free(jv *v)
{
    for (size_t i = 0; i < v->n; i++) {
        jv_free(&v->kids[i]);
        if (v->keys)
            free(v->keys[i]);
    }
    free(v->kids);
    free(v->keys);
    free(v->klen);
    free(v->s);
}

static void jp_ws(jp *j)
{
    while (j->p < j->end && (*j->p == ' ' || *j->p == '\t' || *j->p == '\n' || *j->p == '\r'))
        j->p++;
}

static void u8put(char *o, size_t *on, unsigned cp)
{
    if (cp < 0x80) {
        o[(*on)++] = (char)cp;
    } else if (cp < 0x800) {
        o[(*on)++] = (char)(0xc0 | (cp >> 6));
        o[(*on)++] = (char)(0x80 | (cp & 0x3f));
    } else if (cp < 0x10000) {
        o[(*on)++] = (char)(0xe0 | (cp >> 12));
        o[(*on)++] = (char)(0x80 | ((cp >> 6) & 0x3f));
        o[(*on)++] = (char)(0x80 | (cp & 0x3f));
    } else {
        o[(*on)++] = (char)(0xf0 | (cp >> 18));
        o[(*on)++] = (char)(0x80 | ((cp >> 12) & 0x3f));
        o[(*on)++] = (char)(0x80 | ((cp >> 6) & 0x3f));
        o[(*on)++] = (char)(0x80 | (cp & 0x3f));
    }
}

static int hex4(const char *p, unsigned *out)
{
    unsigned v = 0;
    for (int i = 0; i < 4; i++) {
        char c = p[i];
        v <<= 4;
        if (c >= '0' && c <= '9')
            v |= (unsigned)(c - '0');
        else if (c >= 'a' && c <= 'f')
            v |= (unsigned)(c - 'a' + 10);
        else if (c >= 'A' && c <= 'F')
            v |= (unsigned)(c - 'A' + 10);
        else
            return -1;
    }
    *out = v;
    return 0;
}

/* A string at j->p (after the '"'): decoded into *out (malloc'd). */
static int jp_string(jp *j, char **out, size_t *olen)
{
    const char *s = j->p;
    size_t cap = 16, on = 0;
    char *o = malloc(cap);
    if (!o)
        return -1;
    while (s < j->end && *s != '"') {
        if (on + 8 > cap) {
            char *no = realloc(o, cap *= 2);
            if (!no)
                goto fail;
            o = no;
        }
        unsigned char c = (unsigned char)*s;
        if (c < 0x20)
            goto fail;   /* Python's strict mode: no raw control characters */
        if (c != '\\') {
            o[on++] = (char)c;
            s++;
            continue;
        }
        if (++s >= j->end)
            goto fail;
        const char *esc = strchr("\"\\/bfnrt", *s);
        if (*s && esc) {
            o[on++] = "\"\\/\b\f\n\r\t"[esc - "\"\\/bfnrt"];
            s++;
            continue;
        }
        unsigned cp, lo;
        if (*s != 'u' || j->end - s < 5 || hex4(s + 1, &cp) < 0)
            goto fail;
        s += 5;
        if (cp >= 0xd800 && cp < 0xdc00 && j->end - s >= 6 && s[0] == '\\' && s[1] == 'u' &&
            hex4(s + 2, &lo) == 0 && lo >= 0xdc00 && lo < 0xe000) {
            cp = 0x10000 + ((cp - 0xd800) << 10) + (lo - 0xdc00);
            s += 6;
        } else if (cp >= 0xd800 && cp < 0xe000) {
            cp = 0xfffd;  /* a lone surrogate: Python keeps it, a terminal cannot show it */
        }
        u8put(o, &on, cp);
    }
    if (s >= j->end)
        goto fail;
    j->p = s + 1;
    o[on] = '\0';
    *out = o;
    *olen = on;
    return 0;
fail:
    free(o);
    return -1;
}

static int jp_value(jp *j, jv *v);

static int jp_push(jv *v, jv *item, char *key, size_t klen, size_t *cap)
{
    if (v->n == *cap) {
        size_t nc = *cap ? *cap * 2 : 4;
        jv *nk = realloc(v->kids, nc * sizeof *nk);
        if (!nk)
            return -1;
        v->kids = nk;
        if (v->type == 'o') {
            char **nkeys = realloc(v->keys, nc * sizeof *nkeys);
            if (nkeys)
                v->keys = nkeys;
            size_t *nkl = nkeys ? realloc(v->klen, nc * sizeof *nkl) : NULL;
            if (!nkl)
                return -1;
            v->klen = nkl;
        }
        *cap = nc;
    }
    v->kids[v->n] = *item;
    if (v->type == 'o') {
        v->keys[v->n] = key;
        v->klen[v->n] = klen;
    }
    v->n++;
    return 0;
}

static int jp_container(jp *j, jv *v, char close)
{
    size_t cap = 0;
    v->type = close == '}' ? 'o' : 'a';
    if (++j->depth > JSON_MAX_DEPTH)
        return -1;
    jp_ws(j);
    if (j->p < j->end && *j->p == close) {
        j->p++;
        j->depth--;
        return 0;
    }
    for (;;) {
        char *key = NULL;
        size_t klen = 0;
        jp_ws(j);
        if (close == '}') {
            if (j->p >= j->end || *j->p != '"')
                return -1;
            j->p++;
            if (jp_string(j, &key, &klen) < 0)
                return -1;
            jp_ws(j);
            if (j->p >= j->end || *j->p != ':') {
                free(key);
                return -1;
            }
            j->p++;
        }
        jv item = {0};
        if (jp_value(j, &item) < 0 || jp_push(v, &item, key, klen, &cap) < 0) {
            jv_free(&item);
            free(key);
            return -1;
        }
        jp_ws(j);
        if (j->p < j->end && *j->p == ',') {
            j->p++;
            continue;
        }
        if (j->p < j->end && *j->p == close) {
            j->p++;
            j->depth--;
            return 0;
        }
        return -1;
    }
}

static int jp_number(jp *j, jv *v)
{
    const char *s = j->p, *c = s;
    bool isfloat = false;
    if (c < j->end && *c == '-')
        c++;
    if (c >= j->end || !isdigit((unsigned char)*c))
        return -1;
    if (*c == '0')
        c++;
    else
        while (c < j->end && isdigit((unsigned char)*c))
            c++;
    if (c < j->end && *c == '.' && c + 1 < j->end && isdigit((unsigned char)c[1])) {
        isfloat = true;
        for (c++; c < j->end && isdigit((unsigned char)*c); c++)
            ;
    }
    if (c < j->end && (*c == 'e' || *c == 'E')) {
        const char *e = c + 1;
        if (e < j->end && (*e == '+' || *e == '-'))
            e++;
        if (e < j->end && isdigit((unsigned char)*e)) {
            isfloat = true;
            for (c = e; c < j->end && isdigit((unsigned char)*c); c++)
                ;
        }
    }
    v->s = strndup(s, (size_t)(c - s));
    if (!v->s)
        return -1;
    v->type = isfloat ? 'f' : 'n';
    if (!isfloat && !strcmp(v->s, "-0"))
        memmove(v->s, v->s + 1, 2);
    v->slen = strlen(v->s);
    j->p = c;
    return 0;
}

static int jp_value(jp *j, jv *v)
{
    jp_ws(j);
    if (j->p >= j->end)
        return -1;
    static const char *const lits[] = {"true", "false", "null", "NaN", "Infinity", "-Infinity"};
    for (size_t i = 0; i < sizeof lits / sizeof lits[0]; i++) {
        size_t l = strlen(lits[i]);
        if ((size_t)(j->end - j->p) >= l && !memcmp(j->p, lits[i], l)) {
            v->type = 'l';
            v->s = strdup(lits[i]);
            j->p += l;
            return v->s ? 0 : -1;
        }
    }
    switch (*j->p) {
    case '{': j->p++; return jp_container(j, v, '}');
    case '[': j->p++; return jp_container(j, v, ']');
    case '"': j->p++; v->type = 's'; return jp_string(j, &v->s, &v->slen);
    default: return jp_number(j, v);
    }
}

static void jv_put_string(cv_text *t, const char *s, size_t n)
{
    char buf[8];
    cv_put(t, "\"", 1);
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        const char *e = c == '"' ? "\\\"" : c == '\\' ? "\\\\" : c == '\n' ? "\\n" : c == '\r' ? "\\r"
                      : c == '\t' ? "\\t" : c == '\b' ? "\\b" : c == '\f' ? "\\f" : NULL;
        if (e) {
            cv_puts(t, e);
        } else if (c < 0x20) {
            snprintf(buf, sizeof buf, "\\u%04x", c);
            cv_puts(t, buf);
        } else {
            cv_put_safe(t, (const char *)&c, 1);
        }
    }
    cv_put(t, "\"", 1);
}

static size_t *key_order(const jv *v)
{
    size_t *ord = malloc((v->n ? v->n : 1) * sizeof *ord);
    if (!ord)
        return NULL;
    for (size_t i = 0; i < v->n; i++)
        ord[i] = i;
    /* insertion sort keeps equal keys in order: the last one wins below */
    for (size_t i = 1; i < v->n; i++) {
        size_t x = ord[i], k = i;
        for (; k > 0; k--) {
            size_t y = ord[k - 1], m = v->klen[x] < v->klen[y] ? v->klen[x] : v->klen[y];
            int c = memcmp(v->keys[x], v->keys[y], m);
            if (c > 0 || (c == 0 && v->klen[x] >= v->klen[y]))
                break;
            ord[k] = ord[k - 1];
        }
        ord[k] = x;
    }
    return ord;
}

static void indent(cv_text *t, int level)
{
    for (int i = 0; i < level * 4; i++)
        cv_put(t, " ", 1);
}

static void jv_put(cv_text *t, const jv *v, int level)
{
    char buf[64];
    switch (v->type) {
    case 's': jv_put_string(t, v->s, v->slen); return;
    case 'n': cv_put(t, v->s, v->slen); return;
    case 'l':
        cv_puts(t, !strcmp(v->s, "NaN") ? "NaN" : v->s);
        return;
    case 'f': {
        double d = strtod(v->s, NULL);
        if (isinf(d))
            cv_puts(t, d < 0 ? "-Infinity" : "Infinity");
        else {
            pyfloat_repr(d, buf, sizeof buf);
            cv_puts(t, buf);
        }
        return;
    }
    default: break;
    }
    bool obj = v->type == 'o';
    size_t *ord = obj ? key_order(v) : NULL;
    size_t shown = 0;
    if ((obj && !ord) || !v->n) {
        cv_puts(t, obj ? "{}" : "[]");
        free(ord);
        return;
    }
    cv_put(t, obj ? "{" : "[", 1);
    for (size_t i = 0; i < v->n; i++) {
        size_t x = obj ? ord[i] : i;
        /* duplicate keys: Python's dict keeps the last value */
        if (obj && i + 1 < v->n && v->klen[ord[i + 1]] == v->klen[x] &&
            !memcmp(v->keys[ord[i + 1]], v->keys[x], v->klen[x]))
            continue;
        if (shown++)
            cv_put(t, ",", 1);
        cv_endl(t);
        indent(t, level + 1);
        if (obj) {
            jv_put_string(t, v->keys[x], v->klen[x]);
            cv_put(t, ": ", 2);
        }
        jv_put(t, &v->kids[x], level + 1);
    }
    cv_endl(t);
    indent(t, level);
    cv_put(t, obj ? "}" : "]", 1);
    free(ord);
}

static int view_json(cv_text *t, const char *s, size_t n)
{
    if (!cv_utf8_valid(s, n))
        return -1;
    jp j = {s, s + n, 0};
    jv v = {0};
    int rc = jp_value(&j, &v);
    jp_ws(&j);
    if (rc == 0 && j.p == j.end) {
        jv_put(t, &v, 0);
        cv_endl(t);
    } else {
        rc = -1;
    }
    jv_free(&v);
    return rc;
}

/* ---- URL-encoded forms and query strings (Python's parse_qsl with
 * keep_blank_values) ----------------------------------------------------------- */

static int hexval(char c)
{
    return c >= '0' && c <= '9' ? c - '0' : c >= 'a' && c <= 'f' ? c - 'a' + 10 : c >= 'A' && c <= 'F' ? c - 'A' + 10 : -1;
}

/* unquote_plus in place; returns the new length */
static size_t unquote_plus(char *s, size_t n)
{
    size_t o = 0;
    for (size_t i = 0; i < n; i++) {
        if (s[i] == '+') {
            s[o++] = ' ';
        } else if (s[i] == '%' && i + 2 < n + 0 && hexval(s[i + 1]) >= 0 && hexval(s[i + 2]) >= 0) {
            s[o++] = (char)(hexval(s[i + 1]) * 16 + hexval(s[i + 2]));
            i += 2;
        } else {
            s[o++] = s[i];
        }
    }
    return o;
}

static int view_pairs_qs(cv_text *t, const char *s, size_t n)
{
    char *copy = malloc(n + 1);
    cv_pair *pairs = calloc(n / 2 + 2, sizeof *pairs);
    size_t np = 0;
    if (!copy || !pairs) {
        free(copy);
        free(pairs);
        return -1;
    }
    memcpy(copy, s, n);
    copy[n] = '\0';
    for (char *p = copy, *end = copy + n; p < end;) {
        char *amp = memchr(p, '&', (size_t)(end - p));
        char *e = amp ? amp : end;
        if (e > p) {
            char *eq = memchr(p, '=', (size_t)(e - p));
            pairs[np].k = p;
            pairs[np].kn = unquote_plus(p, (size_t)((eq ? eq : e) - p));
            pairs[np].v = eq ? eq + 1 : e;
            pairs[np].vn = eq ? unquote_plus(eq + 1, (size_t)(e - eq - 1)) : 0;
            np++;
        }
        p = e + 1;
    }
    cv_pairs(t, pairs, np);
    free(pairs);
    free(copy);
    return np ? 0 : -1;
}

static int view_urlencoded(cv_text *t, const char *s, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if ((unsigned char)s[i] >= 0x80)
            return -1;  /* mitmproxy decodes the form as ASCII */
    view_pairs_qs(t, s, n);
    return 0;
}

/* ---- Multipart forms ----------------------------------------------------- */

/* The boundary parameter of a Content-Type value, or NULL (malloc'd). */
static char *ct_param(const char *ct, const char *name)
{
    size_t nl = strlen(name);
    for (const char *p = ct ? strchr(ct, ';') : NULL; p; p = strchr(p + 1, ';')) {
        const char *k = p + 1;
        while (*k == ' ' || *k == '\t')
            k++;
        if (strncasecmp(k, name, nl) || k[nl] != '=')
            continue;
        const char *v = k + nl + 1;
        size_t vl = strcspn(v, ";");
        while (vl && (v[vl - 1] == ' ' || v[vl - 1] == '\t'))
            vl--;
        if (vl >= 2 && v[0] == '"' && v[vl - 1] == '"') {
            v++;
            vl -= 2;
        }
        return strndup(v, vl);
    }
    return NULL;
}

static const char *memmem_(const char *h, size_t hn, const char *n, size_t nn)
{
    return nn ? memmem(h, hn, n, nn) : NULL;
}

/* mitmproxy's multipart.decode: each part's name="..." and its content
 * lines joined; "Form data:" and a table. */
static int view_multipart(cv_text *t, const char *ct, const char *s, size_t n)
{
    char *b = ct_param(ct, "boundary");
    if (!b || !*b) {
        free(b);
        return -1;
    }
    size_t bl = strlen(b) + 2;
    char *delim = malloc(bl + 1);
    cv_pair *pairs = calloc(n / bl + 2, sizeof *pairs);
    char **vals = calloc(n / bl + 2, sizeof *vals);
    size_t np = 0;
    int rc = -1;
    if (!delim || !pairs || !vals)
        goto out;
    snprintf(delim, bl + 1, "--%s", b);
    for (const char *p = s, *end = s + n; p <= end;) {
        const char *nx = memmem_(p, (size_t)(end - p), delim, bl);
        const char *pe = nx ? nx : end;
        /* lines of the part: [0] rest of the boundary line, [1] a header */
        const char *l1 = memchr(p, '\n', (size_t)(pe - p));
        if (l1 && !(pe - p >= 2 && p[0] == '-' && p[1] == '-')) {
            const char *h = l1 + 1, *he = memchr(h, '\n', (size_t)(pe - h));
            he = he ? he : pe;
            const char *nm = memmem_(h, (size_t)(he - h), "name=\"", 6);
            while (nm && nm > h && (isalnum((unsigned char)nm[-1]) || nm[-1] == '_'))
                nm = memmem_(nm + 1, (size_t)(he - nm - 1), "name=\"", 6);
            const char *q = nm ? memchr(nm + 6, '"', (size_t)(he - nm - 6)) : NULL;
            if (q && q > nm + 6) {
                /* the content: the lines after the first empty one, joined */
                const char *c = he < pe ? he + 1 : pe;
                while (c < pe) {
                    const char *ce = memchr(c, '\n', (size_t)(pe - c));
                    size_t ll = (size_t)((ce ? ce : pe) - c);
                    bool empty = ll == 0 || (ll == 1 && c[0] == '\r');
                    c = ce ? ce + 1 : pe;
                    if (empty)
                        break;
                    if (c == pe)
                        goto out;   /* no empty line: Python's list.index raises */
                }
                size_t vn = 0;
                char *v = malloc((size_t)(pe - c) + 1);
                if (!v)
                    goto out;
                for (const char *x = c; x < pe; x++)
                    if (*x != '\n' && *x != '\r')
                        v[vn++] = *x;
                vals[np] = v;
                pairs[np] = (cv_pair){nm + 6, v, (size_t)(q - nm - 6), vn};
                np++;
            }
        }
        if (!nx)
            break;
        p = nx + bl;
    }
    if (np) {
        cv_puts(t, "Form data:");
        cv_endl(t);
        cv_pairs(t, pairs, np);
        rc = 0;
    }
out:
    for (size_t i = 0; vals && i < np; i++)
        free(vals[i]);
    free(vals);
    free(pairs);
    free(delim);
    free(b);
    return rc;
}

/* ---- XML/HTML: mitmproxy's prettifier (tokens, a window of five, two
 * spaces per open element, at most 16 deep) --------------------------------- */

typedef struct xtok {
    bool tag;
    const char *p;
    size_t n;
    char name[64];          /* tags: the element name, lower case */
} xtok;

static bool xtag_char(char c)
{
    return isalnum((unsigned char)c) || c == '.' || c == '_' || c == ':' || c == '-';
}

static void xtag_name(xtok *k)
{
    /* REGEX_TAG = [a-zA-Z0-9._:\-]+(?!=), searched */
    for (size_t i = 0; i < k->n; i++) {
        size_t j = i;
        while (j < k->n && xtag_char(k->p[j]))
            j++;
        while (j > i && j < k->n && k->p[j] == '=')
            j--;
        if (j > i) {
            size_t l = j - i < sizeof k->name - 1 ? j - i : sizeof k->name - 1;
            for (size_t x = 0; x < l; x++)
                k->name[x] = (char)tolower((unsigned char)k->p[i + x]);
            k->name[l] = '\0';
            return;
        }
    }
    snprintf(k->name, sizeof k->name, "<empty>");
}

static bool starts(const xtok *k, const char *s)
{
    return k->n >= strlen(s) && !memcmp(k->p, s, strlen(s));
}

static bool ends(const xtok *k, const char *s)
{
    size_t l = strlen(s);
    return k->n >= l && !memcmp(k->p + k->n - l, s, l);
}

static bool x_closing(const xtok *k)
{
    return k && k->tag && starts(k, "</");
}

static bool x_selfclosing(const xtok *k)
{
    static const char *const voids[] = {"area", "base", "br", "col", "embed", "hr", "img", "input", "keygen",
                                        "link", "meta", "param", "source", "track", "wbr"};
    if (starts(k, "<!--") || starts(k, "<![CDATA[") || ends(k, "/>"))
        return true;
    for (size_t i = 0; i < sizeof voids / sizeof voids[0]; i++)
        if (!strcmp(k->name, voids[i]))
            return true;
    return false;
}

static bool x_opening(const xtok *k)
{
    return k && k->tag && !x_closing(k) && !x_selfclosing(k);
}

static bool is_space(char c)
{
    return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\v' || c == '\f';
}

static void strip(const char **p, size_t *n)
{
    while (*n && is_space(**p)) {
        (*p)++;
        (*n)--;
    }
    while (*n && is_space((*p)[*n - 1]))
        (*n)--;
}

static bool inline_text(const xtok *a, const xtok *b, const xtok *c)
{
    return a && b && c && a->tag && !b->tag && c->tag && x_opening(a) && !memchr(b->p, '\n', b->n) &&
           x_closing(c) && !strcmp(a->name, c->name);
}

static bool x_inline(const xtok *p2, const xtok *p1, const xtok *t, const xtok *n1, const xtok *n2)
{
    if (!t->tag)
        return inline_text(p1, t, n1);
    if (inline_text(p2, p1, t) || inline_text(t, n1, n2))
        return true;
    if (n1 && n1->tag && x_opening(t) && x_closing(n1) && !strcmp(t->name, n1->name))
        return true;
    return p1 && p1->tag && x_opening(p1) && x_closing(t) && !strcmp(p1->name, t->name);
}

/* textwrap.dedent(32 spaces + data).strip(), each line indented; lines
 * written one by one */
static void indent_text(cv_text *t, const char *s, size_t n, size_t ind, bool open_line)
{
    ind = ind > 32 ? 32 : ind;
    /* the common margin of the non-blank lines, the first counting 32 more */
    size_t margin = (size_t)-1;
    bool first = true;
    for (const char *l = s, *end = s + n; l <= end;) {
        const char *e = memchr(l, '\n', (size_t)(end - l));
        e = e ? e : end;
        size_t w = 0;
        while (l + w < e && (l[w] == ' ' || l[w] == '\t'))
            w++;
        if (l + w < e)
            margin = (first ? w + 32 : w) < margin ? (first ? w + 32 : w) : margin;
        first = false;
        l = e + 1;
    }
    const char *p = s;
    size_t m = n;
    strip(&p, &m);
    bool firstline = true;
    for (const char *l = p, *end = p + m; l < end || firstline;) {
        const char *e = memchr(l, '\n', (size_t)(end - l));
        e = e ? e : end;
        if (!firstline) {
            cv_endl(t);
            /* later lines lose the margin */
            size_t skip = 0;
            while (skip < margin && l + skip < e && (l[skip] == ' ' || l[skip] == '\t'))
                skip++;
            l += skip;
        }
        bool blank = true;
        for (const char *x = l; x < e; x++)
            blank = blank && is_space(*x);
        if (!blank)
            for (size_t i = 0; i < ind; i++)
                cv_put(t, " ", 1);
        cv_put_safe(t, l, (size_t)(e - l - (e > l && e[-1] == '\r')));
        firstline = false;
        l = e + 1;
        if (e >= end)
            break;
    }
    (void)open_line;
}

static size_t xml_tokens(const char *s, size_t n, xtok **out)
{
    size_t cap = 64, nt = 0, i = 0;
    xtok *v = malloc(cap * sizeof *v);
    bool in_tag = false;
    size_t tag_start = 0;
    if (!v)
        return (size_t)-1;
    while (i < n) {
        if (!in_tag) {
            const char *lt = memchr(s + i, '<', n - i);
            size_t e = lt ? (size_t)(lt - s) : n;
            const char *p = s + i;
            size_t m = e - i;
            strip(&p, &m);
            if (m) {
                if (nt == cap) {
                    xtok *nv = realloc(v, (cap *= 2) * sizeof *v);
                    if (!nv)
                        goto fail;
                    v = nv;
                }
                v[nt++] = (xtok){false, s + i, e - i, ""};
            }
            i = e;
            in_tag = true;
            tag_start = i;
        } else {
            const char *gt = memchr(s + i, '>', n - i);
            i = gt ? (size_t)(gt - s) + 1 : n;
            xtok k = {true, s + tag_start, i - tag_start, ""};
            bool done = starts(&k, "<!--") ? ends(&k, "-->") : starts(&k, "<![CDATA[") ? ends(&k, "]]>") : ends(&k, ">");
            if (done || i >= n) {
                if (!done) {  /* unfinished at the end: yielded if not blank */
                    const char *p = k.p;
                    size_t m = k.n;
                    strip(&p, &m);
                    if (!m)
                        break;
                }
                xtag_name(&k);
                if (nt == cap) {
                    xtok *nv = realloc(v, (cap *= 2) * sizeof *v);
                    if (!nv)
                        goto fail;
                    v = nv;
                }
                v[nt++] = k;
                in_tag = false;
            }
        }
    }
    *out = v;
    return nt;
fail:
    free(v);
    return (size_t)-1;
}

static int view_xml(cv_text *t, const char *s, size_t n)
{
    if (!cv_utf8_valid(s, n))
        return -1;   /* Python's decode with xmlcharrefreplace raises */
    xtok *k = NULL;
    size_t nt = xml_tokens(s, n, &k);
    if (nt == (size_t)-1)
        return -1;
    char open[17][64];
    size_t nopen = 0, ind = 0;
    static const char *const noind[] = {"xml", "doctype", "html"};
    for (size_t i = 0; i < nt; i++) {
        const xtok *p2 = i >= 2 ? &k[i - 2] : NULL, *p1 = i >= 1 ? &k[i - 1] : NULL;
        const xtok *n1 = i + 1 < nt ? &k[i + 1] : NULL, *n2 = i + 2 < nt ? &k[i + 2] : NULL, *tk = &k[i];
        bool inl = x_inline(p2, p1, tk, n1, n2);
        if (tk->tag && x_opening(tk)) {
            indent_text(t, tk->p, tk->n, ind, true);
            if (!inl)
                cv_endl(t);
            if (nopen <= 16) {
                snprintf(open[nopen++], 64, "%s", tk->name);
                bool ni = false;
                for (size_t x = 0; x < 3; x++)
                    ni = ni || !strcmp(tk->name, noind[x]);
                ind += ni ? 0 : 2;
            }
        } else if (tk->tag && x_closing(tk)) {
            size_t at = nopen;
            for (size_t x = 0; x < nopen; x++)
                if (!strcmp(open[x], tk->name))
                    at = x;
            if (at < nopen) {
                while (nopen > at) {
                    nopen--;
                    bool ni = false;
                    for (size_t x = 0; x < 3; x++)
                        ni = ni || !strcmp(open[nopen], noind[x]);
                    ind -= ni ? 0 : 2;
                }
            }
            if (inl)
                cv_put_safe(t, tk->p, tk->n);
            else
                indent_text(t, tk->p, tk->n, ind, false);
            cv_endl(t);
        } else if (tk->tag) {
            indent_text(t, tk->p, tk->n, ind, false);
            cv_endl(t);
        } else if (inl) {
            const char *p = tk->p;
            size_t m = tk->n;
            strip(&p, &m);
            cv_put_safe(t, p, m);
        } else {
            indent_text(t, tk->p, tk->n, ind, false);
            cv_endl(t);
        }
    }
    if (t->len > t->line_start)
        cv_endl(t);
    free(k);
    return 0;
}

/* ---- the auto view's choice ---------------------------------------------- */

enum cv_kind { CV_NONE, CV_RAW, CV_HEX, CV_JSON, CV_XML, CV_URLENC, CV_MULTIPART, CV_IMAGE, CV_QUERY,
               CV_PROTOBUF, CV_MSGPACK, CV_GRPC };

static const struct {
    const char *name;   /* --set dumper_default_contentview=NAME */
    const char *title;
    enum cv_kind kind;
} cv_views[] = {
    {"raw", "Raw", CV_RAW},
    {"hex", "Hex", CV_HEX},
    {"json", "JSON", CV_JSON},
    {"xml/html", "XML", CV_XML},
    {"url-encoded", "URLEncoded form", CV_URLENC},
    {"multipart form", "Multipart form", CV_MULTIPART},
    {"image", "Image", CV_IMAGE},
    {"query", "Query", CV_QUERY},
    {"protocol buffer", "Protobuf", CV_PROTOBUF},
    {"msgpack", "MsgPack", CV_MSGPACK},
    {"grpc/protocol buffer", "gRPC", CV_GRPC},
};
static const char *const cv_unimplemented[] = {"graphql", "wbxml", "javascript", "css"};

int contentview_known(const char *name)
{
    if (!name || !strcasecmp(name, "auto"))
        return 1;
    for (size_t i = 0; i < sizeof cv_views / sizeof cv_views[0]; i++)
        if (!strcasecmp(name, cv_views[i].name))
            return 1;
    for (size_t i = 0; i < sizeof cv_unimplemented / sizeof cv_unimplemented[0]; i++)
        if (!strcasecmp(name, cv_unimplemented[i]))
            return 0;
    return -1;
}

/* "type/subtype" of a Content-Type value, lower case, as mitmproxy's
 * parse_content_type gives it to the views (parameters dropped) */
static void media_type(const char *ct, char *out, size_t n)
{
    out[0] = '\0';
    if (!ct)
        return;
    const char *p = ct;
    size_t l = strcspn(ct, ";");
    strip(&p, &l);
    const char *slash = memchr(p, '/', l);
    if (!slash)
        return;
    size_t tl = (size_t)(slash - p), sl = l - tl - 1;
    const char *st = slash + 1;
    while (tl && is_space(p[tl - 1]))
        tl--;
    while (sl && is_space(*st)) {
        st++;
        sl--;
    }
    snprintf(out, n, "%.*s/%.*s", (int)tl, p, (int)sl, st);
    for (char *c = out; *c; c++)
        *c = (char)tolower((unsigned char)*c);
}

static bool mt_in(const char *mt, const char *const *list)
{
    for (; *list; list++)
        if (!strcmp(mt, *list))
            return true;
    return false;
}

static enum cv_kind auto_kind(const char *mt, bool has_query, const char *s, size_t n)
{
    static const char *const json[] = {"application/json", "application/json-rpc", NULL};
    static const char *const xml[] = {"text/xml", "text/html", NULL};
    static const char *const pb[] = {"application/x-protobuf", "application/x-protobuffer",
                                     "application/grpc-proto", NULL};
    static const char *const mp[] = {"application/msgpack", "application/x-msgpack", NULL};
    if (!n)
        return has_query ? CV_QUERY : CV_NONE;
    size_t ml = strlen(mt);
    if (mt_in(mt, pb) || !strcmp(mt, "application/grpc"))
        return !strcmp(mt, "application/grpc") ? CV_GRPC : CV_PROTOBUF;
    if (mt_in(mt, json) || (!strncmp(mt, "application/", 12) && ml > 5 && !strcmp(mt + ml - 5, "+json")))
        return CV_JSON;
    if (mt_in(mt, xml))
        return CV_XML;
    if (!strcmp(mt, "application/x-www-form-urlencoded"))
        return CV_URLENC;
    if (!strcmp(mt, "multipart/form-data"))
        return CV_MULTIPART;
    if (!strncmp(mt, "image/", 6) && strcmp(mt, "image/svg+xml") != 0)
        return CV_IMAGE;
    if (mt_in(mt, mp))
        return CV_MSGPACK;
    if (is_xml(s, n))
        return CV_XML;
    return is_mostly_bin(s, n) ? CV_HEX : CV_RAW;
}

static const char *title_of(enum cv_kind k)
{
    for (size_t i = 0; i < sizeof cv_views / sizeof cv_views[0]; i++)
        if (cv_views[i].kind == k)
            return cv_views[i].title;
    return "No content";
}

const char *contentview_render(const char *view, const char *content_type, const char *query, const char *data,
                               size_t len, cv_text *out)
{
    char mt[128];
    if (!data)
        data = "";   /* an empty body may have no buffer at all */
    media_type(content_type, mt, sizeof mt);
    cv_reset(out);
    if (!out->max_lines)
        out->max_lines = CV_ALL;
    enum cv_kind k = CV_NONE;
    if (view && strcasecmp(view, "auto") != 0) {
        for (size_t i = 0; i < sizeof cv_views / sizeof cv_views[0]; i++)
            if (!strcasecmp(view, cv_views[i].name))
                k = cv_views[i].kind;
    }
    if (k == CV_NONE)
        k = auto_kind(mt, query && *query, data, len);
    if (k == CV_NONE)
        return "No content";
    if (k == CV_RAW || k == CV_HEX) {
        (k == CV_RAW ? view_raw : view_hex)(out, data, len);
        return title_of(k);
    }
    /* a view that can fail renders whole first: Raw if it fails */
    cv_text tmp = {.max_lines = CV_ALL};
    const char *title = title_of(k);
    int rc = -1;
    switch (k) {
    case CV_JSON: rc = view_json(&tmp, data, len); break;
    case CV_XML:
        rc = view_xml(&tmp, data, len);
        title = !strcmp(mt, "text/html") ? "HTML" : "XML";
        break;
    case CV_URLENC: rc = view_urlencoded(&tmp, data, len); break;
    case CV_MULTIPART: rc = view_multipart(&tmp, content_type, data, len); break;
    case CV_QUERY: rc = query ? view_pairs_qs(&tmp, query, strlen(query)) : -1; break;
    case CV_IMAGE: rc = cv_image(&tmp, data, len, &title); break;
    case CV_PROTOBUF: rc = cv_protobuf(&tmp, data, len); title = "Protobuf (flattened)"; break;
    case CV_GRPC: rc = cv_grpc(&tmp, data, len); break;
    case CV_MSGPACK: rc = cv_msgpack(&tmp, data, len); break;
    default: break;
    }
    if (rc == 0 && !tmp.oom) {
        cv_copy_lines(out, &tmp);
    } else {
        cv_reset(out);
        view_raw(out, data, len);
        title = "Raw";
    }
    cv_text_free(&tmp);
    return title;
}
