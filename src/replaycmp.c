/* replaycmp.c — how a replayed response differs from the recorded one, in
 * a few lines a person reads in a CI log.  The point is a verdict and a
 * hint, not a patch: differences are counted past max_lines, not printed. */
#include "replaycmp.h"

#include <ctype.h>
#include <math.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <jansson.h>

#include "encoding.h"

/* Headers that differ between any two responses of the same server, or
 * that describe how the bytes travelled rather than what they say. */
static const char *const always_ignored[] = {
    "date", "expires", "last-modified", "age", "set-cookie", "server-timing",
    "content-length", "transfer-encoding", "connection", "keep-alive",
};

#define VALUE_MAX 60   /* characters of a value shown in a diff line */

typedef struct differ {
    const replaycmp_opts *o;
    bytes *out;
    size_t max;
    size_t n;          /* differences found */
    bool oom;
} differ;

static void add_line(differ *d, const char *fmt, ...)
{
    d->n++;
    if (d->n > d->max || d->oom)
        return;
    char buf[512];
    va_list ap;
    va_start(ap, fmt);
    int len = vsnprintf(buf, sizeof buf - 1, fmt, ap);
    va_end(ap);
    if (len < 0)
        return;
    if ((size_t)len > sizeof buf - 2)
        len = (int)sizeof buf - 2;
    buf[len++] = '\n';
    if (bytes_append(d->out, buf, (size_t)len) < 0)
        d->oom = true;
}

/* A short, printable, quoted rendering of bytes: escapes for control and
 * non-ASCII bytes, cut at VALUE_MAX with "...". */
static void show(const char *p, size_t n, char *buf, size_t bufsz)
{
    size_t o = 0;
    buf[o++] = '\'';
    for (size_t i = 0; i < n && o + 8 < bufsz; i++) {
        if (o >= VALUE_MAX) {
            o += (size_t)snprintf(buf + o, bufsz - o, "...");
            break;
        }
        unsigned char c = (unsigned char)p[i];
        if (c >= 0x20 && c < 0x7f && c != '\'' && c != '\\')
            buf[o++] = (char)c;
        else
            o += (size_t)snprintf(buf + o, bufsz - o, "\\x%02x", c);
    }
    if (o + 2 > bufsz)
        o = bufsz - 2;
    buf[o++] = '\'';
    buf[o] = '\0';
}

int replaycmp_parse_mode(const char *s, replaycmp_mode *out)
{
    if (!s)
        return -1;
    if (!strcmp(s, "status"))
        *out = REPLAYCMP_STATUS;
    else if (!strcmp(s, "headers"))
        *out = REPLAYCMP_HEADERS;
    else if (!strcmp(s, "body"))
        *out = REPLAYCMP_BODY;
    else
        return -1;
    return 0;
}

/* ---- headers ---------------------------------------------------------------- */

static bool header_ignored(const replaycmp_opts *o, const char *name, size_t n)
{
    for (size_t i = 0; i < sizeof always_ignored / sizeof *always_ignored; i++)
        if (strlen(always_ignored[i]) == n && strncasecmp(always_ignored[i], name, n) == 0)
            return true;
    for (size_t i = 0; i < o->nignore_headers; i++)
        if (strlen(o->ignore_headers[i]) == n && strncasecmp(o->ignore_headers[i], name, n) == 0)
            return true;
    return false;
}

/* Every value of `name`, joined with ", " in order; false when absent. */
static bool joined(const hdrs *h, const char *name, bytes *out)
{
    bytes_reset(out);
    bool found = false;
    for (ssize_t i = hdrs_find(h, name, 0); i >= 0; i = hdrs_find(h, name, (size_t)i + 1)) {
        if (found)
            bytes_append(out, ", ", 2);
        bytes_append(out, h->v[i].value, h->v[i].value_len);
        found = true;
    }
    return found;
}

/* Compare header `name` (the first field's spelling) if not seen before. */
static void compare_header(differ *d, const hdrs *a, const hdrs *b, const hdrs *first_side, size_t idx)
{
    const hdr_field *f = &first_side->v[idx];
    char name[256];
    size_t nl = f->name_len < sizeof name - 1 ? f->name_len : sizeof name - 1;
    for (size_t i = 0; i < nl; i++)
        name[i] = (char)tolower((unsigned char)f->name[i]);
    name[nl] = '\0';
    if (header_ignored(d->o, name, nl) || hdrs_find(first_side, name, 0) != (ssize_t)idx)
        return;               /* ignored, or an earlier field of that name was compared */
    if (first_side == b && hdrs_find(a, name, 0) >= 0)
        return;               /* present on both sides: compared from side a */
    bytes va = {0}, vb = {0};
    bool ina = joined(a, name, &va), inb = joined(b, name, &vb);
    char sa[VALUE_MAX * 4 + 16], sb[VALUE_MAX * 4 + 16];
    show(va.p, va.len, sa, sizeof sa);
    show(vb.p, vb.len, sb, sizeof sb);
    if (ina && !inb)
        add_line(d, "header %s: %s -> (missing)", name, sa);
    else if (!ina && inb)
        add_line(d, "header %s: (missing) -> %s", name, sb);
    else if (va.len != vb.len || (va.len && memcmp(va.p, vb.p, va.len) != 0))
        add_line(d, "header %s: %s -> %s", name, sa, sb);
    bytes_free(&va);
    bytes_free(&vb);
}

static void compare_headers(differ *d, const hdrs *a, const hdrs *b)
{
    for (size_t i = 0; i < a->n; i++)
        compare_header(d, a, b, a, i);
    for (size_t i = 0; i < b->n; i++)
        compare_header(d, a, b, b, i);
}

/* ---- JSON bodies -------------------------------------------------------- */

#define PATH_MAX_SEGS 64

typedef struct jpath {
    const char *seg[PATH_MAX_SEGS];
    char idxbuf[PATH_MAX_SEGS][24];
    size_t n;
} jpath;

static bool path_ignored(const differ *d, const jpath *p)
{
    for (size_t i = 0; i < d->o->nignore_json; i++) {
        const char *pat = d->o->ignore_json[i];
        size_t k = 0;
        bool ok = true;
        while (ok && *pat) {
            const char *dot = strchr(pat, '.');
            size_t len = dot ? (size_t)(dot - pat) : strlen(pat);
            if (k >= p->n || !((len == 1 && *pat == '*') ||
                               (strlen(p->seg[k]) == len && memcmp(p->seg[k], pat, len) == 0)))
                ok = false;
            k++;
            pat += len + (dot ? 1 : 0);
        }
        if (ok && k == p->n)
            return true;
    }
    return false;
}

static void path_str(const jpath *p, char *buf, size_t n)
{
    size_t o = 0;
    buf[0] = '\0';
    if (p->n == 0) {
        snprintf(buf, n, "(top level)");
        return;
    }
    for (size_t i = 0; i < p->n && o + 1 < n; i++)
        o += (size_t)snprintf(buf + o, n - o, "%s%s", i ? "." : "", p->seg[i]);
}

static void jshow(const json_t *v, char *buf, size_t n)
{
    if (!v) {
        snprintf(buf, n, "(missing)");
        return;
    }
    char *s = json_dumps(v, JSON_COMPACT | JSON_ENCODE_ANY);
    if (!s) {
        snprintf(buf, n, "?");
        return;
    }
    size_t len = strlen(s);
    if (len > VALUE_MAX)
        snprintf(buf, n, "%.*s...", VALUE_MAX, s);
    else
        snprintf(buf, n, "%s", s);
    free(s);
}

static void json_diff(differ *d, jpath *p, const json_t *a, const json_t *b);

static void json_leaf_diff(differ *d, jpath *p, const json_t *a, const json_t *b)
{
    char ps[512], sa[VALUE_MAX + 8], sb[VALUE_MAX + 8];
    path_str(p, ps, sizeof ps);
    jshow(a, sa, sizeof sa);
    jshow(b, sb, sizeof sb);
    add_line(d, "body: %s: %s -> %s", ps, sa, sb);
}

static void json_child(differ *d, jpath *p, const char *seg, const json_t *a, const json_t *b)
{
    if (p->n >= PATH_MAX_SEGS) {
        if (!json_equal((json_t *)a, (json_t *)b))
            json_leaf_diff(d, p, a, b);
        return;
    }
    p->seg[p->n++] = seg;
    if (!path_ignored(d, p)) {
        if (!a || !b)
            json_leaf_diff(d, p, a, b);
        else
            json_diff(d, p, a, b);
    }
    p->n--;
}

static void json_diff(differ *d, jpath *p, const json_t *a, const json_t *b)
{
    if (json_is_number(a) && json_is_number(b)) {
        if (json_number_value(a) != json_number_value(b))
            json_leaf_diff(d, p, a, b);
        return;
    }
    if (json_typeof(a) != json_typeof(b)) {
        json_leaf_diff(d, p, a, b);
        return;
    }
    if (json_is_object(a)) {
        const char *k;
        json_t *v;
        json_object_foreach((json_t *)a, k, v)
            json_child(d, p, k, v, json_object_get(b, k));
        json_object_foreach((json_t *)b, k, v)
            if (!json_object_get(a, k))
                json_child(d, p, k, NULL, v);
        return;
    }
    if (json_is_array(a)) {
        size_t na = json_array_size(a), nb = json_array_size(b);
        size_t depth = p->n < PATH_MAX_SEGS ? p->n : PATH_MAX_SEGS - 1;
        for (size_t i = 0; i < (na > nb ? na : nb); i++) {
            snprintf(p->idxbuf[depth], sizeof p->idxbuf[depth], "%zu", i);
            json_child(d, p, p->idxbuf[depth], json_array_get(a, i), json_array_get(b, i));
        }
        return;
    }
    if (!json_equal((json_t *)a, (json_t *)b))
        json_leaf_diff(d, p, a, b);
}

/* ---- bodies ------------------------------------------------------------- */

/* The decoded body, or the raw one when its coding is unknown or broken
 * (then both sides are compared as sent). */
static void decoded(const flow_response *r, bytes *out)
{
    size_t clen = 0;
    const char *ce = hdrs_get(&r->headers, "content-encoding", &clen);
    char err[128];
    if (ce && clen && r->content.len) {
        char *coding = strndup(ce, clen);
        int rc = coding ? encoding_decode(coding, r->content.p, r->content.len, out, err, sizeof err) : -1;
        free(coding);
        if (rc == 0)
            return;
    }
    bytes_set(out, r->content.p ? r->content.p : "", r->content.len);
}

static void compare_bodies(differ *d, const flow_response *ra, const flow_response *rb)
{
    bytes a = {0}, b = {0};
    decoded(ra, &a);
    decoded(rb, &b);
    json_t *ja = NULL, *jb = NULL;
    if (a.len && b.len) {
        ja = json_loadb(a.p, a.len, JSON_DECODE_ANY, NULL);
        jb = ja ? json_loadb(b.p, b.len, JSON_DECODE_ANY, NULL) : NULL;
    }
    if (ja && jb) {
        jpath p = {.n = 0};
        if (!path_ignored(d, &p))
            json_diff(d, &p, ja, jb);
    } else if (a.len != b.len || (a.len && memcmp(a.p, b.p, a.len) != 0)) {
        size_t i = 0;
        while (i < a.len && i < b.len && a.p[i] == b.p[i])
            i++;
        size_t from = i > 8 ? i - 8 : 0;
        char sa[VALUE_MAX * 4 + 16], sb[VALUE_MAX * 4 + 16];
        show(a.p + from, a.len - from, sa, sizeof sa);
        show(b.p + from, b.len - from, sb, sizeof sb);
        add_line(d, "body: %zu bytes -> %zu bytes, first difference at byte %zu: %s -> %s", a.len, b.len, i, sa,
                 sb);
    }
    json_decref(ja);
    json_decref(jb);
    bytes_free(&a);
    bytes_free(&b);
}

int replaycmp_compare(const replaycmp_opts *o, const flow_response *recorded, const flow_response *replayed,
                      bytes *diff)
{
    differ d = {.o = o, .out = diff, .max = o->max_lines ? o->max_lines : 8};
    if (recorded->status_code != replayed->status_code)
        add_line(&d, "status: %d -> %d", recorded->status_code, replayed->status_code);
    if (o->mode >= REPLAYCMP_HEADERS)
        compare_headers(&d, &recorded->headers, &replayed->headers);
    if (o->mode >= REPLAYCMP_BODY)
        compare_bodies(&d, recorded, replayed);
    if (d.n > d.max) {
        char buf[64];
        int len = snprintf(buf, sizeof buf, "... %zu more difference%s\n", d.n - d.max, d.n - d.max == 1 ? "" : "s");
        if (bytes_append(diff, buf, (size_t)len) < 0)
            d.oom = true;
    }
    if (d.oom)
        return -1;
    return d.n ? 1 : 0;
}
