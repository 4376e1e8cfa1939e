/* contentview_out.c — the output builder of the content views and
 * Python's ways of printing values that mitmproxy's views show (repr of
 * bytes and str, padded key tables; float repr is pyfloat.c's); contentview.c and
 * contentview_bin.c both write through it (contentview_int.h). */
#include "contentview_int.h"

#include <ctype.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---- output builder ------------------------------------------------------ */

static void cv_grow(cv_text *t, size_t n)
{
    if (t->oom || t->len + n + 1 <= t->cap)
        return;
    size_t nc = t->cap ? t->cap : 256;
    while (nc < t->len + n + 1)
        nc *= 2;
    char *np = realloc(t->p, nc);
    if (!np) {
        t->oom = true;
        return;
    }
    t->p = np;
    t->cap = nc;
}

void cv_put(cv_text *t, const char *s, size_t n)
{
    if (t->cut || t->oom || !n)
        return;
    cv_grow(t, n);
    if (t->oom)
        return;
    memcpy(t->p + t->len, s, n);
    t->len += n;
    t->p[t->len] = '\0';
}

void cv_puts(cv_text *t, const char *s)
{
    cv_put(t, s, strlen(s));
}

void cv_put_safe(cv_text *t, const char *s, size_t n)
{
    size_t i = 0;
    while (i < n && !t->cut && !t->oom) {
        size_t j = i;
        while (j < n && (unsigned char)s[j] >= 0x20 && s[j] != 0x7f)
            j++;
        cv_put(t, s + i, j - i);
        if (j < n)
            cv_put(t, s[j] == '\t' ? "\t" : ".", 1);
        i = j + 1;
    }
}

/* Length of the UTF-8 sequence at s (1..4), or 0 if it is not valid
 * (overlong forms, surrogates and values past U+10FFFF included). */
static size_t u8seq(const unsigned char *s, size_t n)
{
    unsigned c = s[0];
    if (c < 0x80)
        return 1;
    size_t len = c >= 0xf0 ? 4 : c >= 0xe0 ? 3 : c >= 0xc2 ? 2 : 0;
    if (!len || len > n || c > 0xf4)
        return 0;
    for (size_t i = 1; i < len; i++)
        if ((s[i] & 0xc0) != 0x80)
            return 0;
    if ((c == 0xe0 && s[1] < 0xa0) || (c == 0xed && s[1] >= 0xa0) || (c == 0xf0 && s[1] < 0x90) ||
        (c == 0xf4 && s[1] >= 0x90))
        return 0;
    return len;
}

bool cv_utf8_valid(const char *s, size_t n)
{
    for (size_t i = 0; i < n;) {
        size_t l = u8seq((const unsigned char *)s + i, n - i);
        if (!l)
            return false;
        i += l;
    }
    return true;
}

size_t cv_u8len(const char *s, size_t n)
{
    size_t c = 0;
    for (size_t i = 0; i < n; i++)
        c += ((unsigned char)s[i] & 0xc0) != 0x80;
    return c;
}

void cv_put_lossy(cv_text *t, const char *s, size_t n)
{
    for (size_t i = 0; i < n;) {
        size_t l = u8seq((const unsigned char *)s + i, n - i);
        if (l) {
            cv_put_safe(t, s + i, l);
            i += l;
        } else {
            cv_put(t, "\xef\xbf\xbd", 3);
            i++;
        }
    }
}

void cv_endl(cv_text *t)
{
    if (t->cut || t->oom)
        return;
    if (t->lines >= t->max_lines) {
        t->len = t->line_start;
        if (t->p)
            t->p[t->len] = '\0';
        t->cut = true;
        return;
    }
    cv_put(t, "\n", 1);
    t->lines++;
    t->line_start = t->len;
}

void cv_copy_lines(cv_text *dst, const cv_text *src)
{
    if (!src->p)
        return;
    const char *s = src->p, *end = src->p + src->len;
    while (s < end && !dst->cut) {
        const char *nl = memchr(s, '\n', (size_t)(end - s));
        cv_put(dst, s, (size_t)((nl ? nl : end) - s));
        cv_endl(dst);
        s = nl ? nl + 1 : end;
    }
}

void cv_text_free(cv_text *t)
{
    free(t->p);
    t->p = NULL;
    t->len = t->cap = t->lines = t->line_start = 0;
}


/* ---- Python's repr ------------------------------------------------------- */

static char repr_quote(const char *s, size_t n)
{
    return memchr(s, '\'', n) && !memchr(s, '"', n) ? '"' : '\'';
}

/* One byte as Python's repr writes it inside quotes q. */
static void repr_byte(cv_text *t, unsigned char c, char q)
{
    char buf[8];
    if (c == '\\' || c == (unsigned char)q)
        snprintf(buf, sizeof buf, "\\%c", c);
    else if (c == '\t' || c == '\n' || c == '\r')
        snprintf(buf, sizeof buf, "\\%c", c == '\t' ? 't' : c == '\n' ? 'n' : 'r');
    else if (c < 0x20 || c >= 0x7f)
        snprintf(buf, sizeof buf, "\\x%02x", c);
    else
        snprintf(buf, sizeof buf, "%c", c);
    cv_puts(t, buf);
}

void cv_repr_bytes(cv_text *t, const char *s, size_t n)
{
    char q = repr_quote(s, n);
    cv_put(t, "b", 1);
    cv_put(t, &q, 1);
    for (size_t i = 0; i < n; i++)
        repr_byte(t, (unsigned char)s[i], q);
    cv_put(t, &q, 1);
}

void cv_repr_str(cv_text *t, const char *s, size_t n)
{
    char q = repr_quote(s, n), buf[8];
    cv_put(t, &q, 1);
    for (size_t i = 0; i < n;) {
        unsigned char c = (unsigned char)s[i];
        size_t l = u8seq((const unsigned char *)s + i, n - i);
        if (c >= 0x80 && l) {
            unsigned cp = l == 2 ? ((c & 0x1fu) << 6) | (s[i + 1] & 0x3f) : 0x100;
            if (cp >= 0x80 && cp < 0xa0)
                snprintf(buf, sizeof buf, "\\x%02x", cp);
            else
                snprintf(buf, sizeof buf, "%.*s", (int)l, s + i);
            cv_puts(t, buf);
            i += l;
            continue;
        }
        repr_byte(t, c, q);
        i++;
    }
    cv_put(t, &q, 1);
}

void cv_pairs(cv_text *t, const cv_pair *p, size_t n)
{
    size_t w = 0;
    for (size_t i = 0; i < n; i++) {
        size_t l = cv_u8len(p[i].k, p[i].kn);
        w = l > w ? l : w;
    }
    w = w > 30 ? 30 : w;
    for (size_t i = 0; i < n && !t->cut; i++) {
        cv_put_lossy(t, p[i].k, p[i].kn);
        cv_put(t, ":", 1);
        for (size_t l = cv_u8len(p[i].k, p[i].kn) + 1; l < w + 2; l++)
            cv_put(t, " ", 1);
        /* a value's own line breaks start new lines */
        for (const char *v = p[i].v, *ve = p[i].v + p[i].vn; v <= ve && !t->cut;) {
            const char *nl = memchr(v, '\n', (size_t)(ve - v));
            cv_put_lossy(t, v, (size_t)((nl ? nl : ve) - v));
            cv_endl(t);
            if (!nl)
                break;
            v = nl + 1;
        }
    }
}
