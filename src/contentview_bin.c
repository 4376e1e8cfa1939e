/* contentview_bin.c — the content views of binary formats (see
 * contentview_int.h): protobuf without a schema and gRPC as mitmproxy's
 * gRPC view flattens them, msgpack as its MsgPack view prints it, and the
 * metadata of PNG, GIF, JPEG and ICO images.  Every reader checks each
 * length against what is left; nesting is bounded. */
#include "contentview_int.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <zlib.h>

#include "encoding.h"

/* ---- protobuf ------------------------------------------------------------ */

#define PB_MAX_DEPTH 32

typedef struct pb_row {
    char *c1, *c3, *c4;     /* "[decoding]", tag path, value */
} pb_row;

typedef struct pb_rows {
    pb_row *v;
    size_t n, cap;
    bool oom;
} pb_rows;

static int pb_varint(const unsigned char *p, size_t n, size_t *pos, uint64_t *out)
{
    uint64_t v = 0;
    for (unsigned shift = 0; *pos < n; shift += 7) {
        unsigned char c = p[(*pos)++];
        if (shift >= 64 || (shift == 63 && (c & 0x7e)))
            return -1;  /* more than 64 bits: mitmproxy's Python ints go on (a documented difference) */
        v |= (uint64_t)(c & 0x7f) << shift;
        if (c < 0x80) {
            *out = v;
            return 0;
        }
    }
    return -1;
}

static char *str_of(cv_text *t)
{
    char *s = t->p ? t->p : strdup("");
    t->p = NULL;
    return s;
}

static void pb_add(pb_rows *r, const char *dec, const char *tag, char *val)
{
    if (r->n == r->cap) {
        size_t nc = r->cap ? r->cap * 2 : 16;
        pb_row *nv = realloc(r->v, nc * sizeof *nv);
        if (!nv) {
            r->oom = true;
            free(val);
            return;
        }
        r->v = nv;
        r->cap = nc;
    }
    char c1[32];
    snprintf(c1, sizeof c1, "[%s]", dec);
    r->v[r->n++] = (pb_row){strdup(c1), strdup(tag), val};
}

/* Check that data parses as a message (the fields, not what they hold). */
static bool pb_parses(const unsigned char *p, size_t n)
{
    size_t pos = 0;
    while (pos < n) {
        uint64_t key, v;
        if (pb_varint(p, n, &pos, &key) < 0)
            return false;
        switch (key & 7) {
        case 0:
            if (pb_varint(p, n, &pos, &v) < 0)
                return false;
            break;
        case 1:
            if (n - pos < 8)
                return false;
            pos += 8;
            break;
        case 2:
            if (pb_varint(p, n, &pos, &v) < 0 || v > n - pos)
                return false;
            pos += v;
            break;
        case 5:
            if (n - pos < 4)
                return false;
            pos += 4;
            break;
        default:
            return false;   /* groups and 6, 7: mitmproxy refuses them */
        }
    }
    return true;
}

static void pb_fields(pb_rows *r, const unsigned char *p, size_t n, const char *prefix, int depth)
{
    size_t pos = 0;
    char tag[512], num[32];
    while (pos < n && !r->oom) {
        uint64_t key, v = 0;
        pb_varint(p, n, &pos, &key);
        snprintf(tag, sizeof tag, "%s%s%llu", prefix, *prefix ? "." : "", (unsigned long long)(key >> 3));
        cv_text val = {.max_lines = CV_ALL};
        switch (key & 7) {
        case 0:
            pb_varint(p, n, &pos, &v);
            snprintf(num, sizeof num, "%llu", (unsigned long long)v);
            pb_add(r, v >> 32 ? "uint64" : "uint32", tag, strdup(num));
            break;
        case 1:
        case 5: {
            size_t w = (key & 7) == 1 ? 8 : 4;
            for (size_t i = 0; i < w; i++)
                v |= (uint64_t)p[pos + i] << (8 * i);
            pos += w;
            snprintf(num, sizeof num, "%llu", (unsigned long long)v);
            pb_add(r, w == 8 ? "fixed64" : "fixed32", tag, strdup(num));
            break;
        }
        case 2: {
            pb_varint(p, n, &pos, &v);
            const unsigned char *b = p + pos;
            pos += v;
            if (depth < PB_MAX_DEPTH && pb_parses(b, v)) {
                pb_add(r, "message", tag, strdup(""));
                pb_fields(r, b, v, tag, depth + 1);
            } else if (cv_utf8_valid((const char *)b, v)) {
                for (size_t i = 0; i < v; i++)
                    cv_put(&val, b[i] == '\n' ? "\\n" : (const char *)b + i, b[i] == '\n' ? 2 : 1);
                pb_add(r, "string", tag, str_of(&val));
            } else {
                cv_repr_bytes(&val, (const char *)b, v);
                pb_add(r, "bytes", tag, str_of(&val));
            }
            break;
        }
        }
        cv_text_free(&val);
    }
}

/* format_table: each column padded to its widest cell (at most 100) + 2;
 * the empty name column of mitmproxy's table is two spaces */
static void pb_table(cv_text *t, const pb_rows *r)
{
    size_t w1 = 0, w3 = 0, w4 = 0;
    for (size_t i = 0; i < r->n; i++) {
        size_t a = cv_u8len(r->v[i].c1, strlen(r->v[i].c1)), c = cv_u8len(r->v[i].c3, strlen(r->v[i].c3));
        size_t d = cv_u8len(r->v[i].c4, strlen(r->v[i].c4));
        w1 = a > w1 ? a : w1;
        w3 = c > w3 ? c : w3;
        w4 = d > w4 ? d : w4;
    }
    w1 = w1 > 100 ? 100 : w1;
    w3 = w3 > 100 ? 100 : w3;
    w4 = w4 > 100 ? 100 : w4;
    for (size_t i = 0; i < r->n; i++) {
        const char *cells[] = {r->v[i].c1, "", r->v[i].c3, r->v[i].c4};
        size_t ws[] = {w1, 0, w3, w4};
        for (size_t c = 0; c < 4; c++) {
            size_t l = strlen(cells[c]);
            cv_put_safe(t, cells[c], l);
            for (size_t x = cv_u8len(cells[c], l); x < ws[c] + 2; x++)
                cv_put(t, " ", 1);
        }
        cv_endl(t);
    }
}

static void pb_rows_free(pb_rows *r)
{
    for (size_t i = 0; i < r->n; i++) {
        free(r->v[i].c1);
        free(r->v[i].c3);
        free(r->v[i].c4);
    }
    free(r->v);
}

static int pb_message(cv_text *t, const unsigned char *p, size_t n)
{
    if (!pb_parses(p, n))
        return -1;
    pb_rows r = {0};
    pb_fields(&r, p, n, "", 0);
    if (!r.oom)
        pb_table(t, &r);
    bool oom = r.oom;
    pb_rows_free(&r);
    return oom ? -1 : 0;
}

int cv_protobuf(cv_text *t, const char *data, size_t len)
{
    return pb_message(t, (const unsigned char *)data, len);
}

/* gRPC: 1 byte "compressed", 4 bytes length (signed, big-endian), the
 * message; compressed ones are gzip (mitmproxy's default without a
 * grpc-encoding header) */
int cv_grpc(cv_text *t, const char *data, size_t len)
{
    const unsigned char *p = (const unsigned char *)data;
    size_t pos = 0;
    for (unsigned i = 0; pos < len; i++) {
        if (len - pos < 5)
            return -1;
        int32_t l = (int32_t)(((uint32_t)p[pos + 1] << 24) | ((uint32_t)p[pos + 2] << 16) |
                              ((uint32_t)p[pos + 3] << 8) | p[pos + 4]);
        bool comp = p[pos] != 0;
        if (l < 0 || (size_t)l > len - pos - 5)
            return -1;
        const unsigned char *m = p + pos + 5;
        pos += 5 + (size_t)l;
        bytes dec = {0};
        char err[128], head[64];
        if (comp) {
            if (encoding_decode_limit("gzip", m, (size_t)l, &dec, 64u << 20, err, sizeof err) < 0) {
                bytes_free(&dec);
                return -1;
            }
        }
        snprintf(head, sizeof head, "gRPC message %u (compressed %s)", i, comp ? "gzip" : "False");
        cv_puts(t, head);
        cv_endl(t);
        int rc = comp ? pb_message(t, (const unsigned char *)dec.p, dec.len) : pb_message(t, m, (size_t)l);
        bytes_free(&dec);
        if (rc < 0)
            return -1;
    }
    return 0;
}

/* ---- msgpack: decoded and printed as the MsgPack view's pretty() prints
 * Python values (repr, four spaces per level) ---------------------------------- */

#define MP_MAX_DEPTH 512

typedef struct mp {
    const unsigned char *p;
    size_t n, pos;
    int depth;
} mp;

static int mp_take(mp *m, size_t k, uint64_t *v)
{
    if (m->n - m->pos < k)
        return -1;
    *v = 0;
    for (size_t i = 0; i < k; i++)
        *v = (*v << 8) | m->p[m->pos + i];
    m->pos += k;
    return 0;
}

static void mp_nl(cv_text *t, int level)
{
    cv_endl(t);
    for (int i = 0; i < level * 4; i++)
        cv_put(t, " ", 1);
}

static int mp_value(mp *m, cv_text *t, int level, bool as_key);

static int mp_container(mp *m, cv_text *t, int level, uint64_t count, bool map)
{
    if (++m->depth > MP_MAX_DEPTH)
        return -1;
    cv_put(t, map ? "{" : "[", 1);
    for (uint64_t i = 0; i < count; i++) {
        if (m->pos >= m->n)
            return -1;   /* fewer items than announced */
        if (i)
            cv_put(t, ",", 1);
        mp_nl(t, level + 1);
        if (map) {
            if (mp_value(m, t, level + 1, true) < 0)
                return -1;
            cv_put(t, ": ", 2);
        }
        if (mp_value(m, t, level + 1, false) < 0)
            return -1;
    }
    mp_nl(t, level);
    cv_put(t, map ? "}" : "]", 1);
    m->depth--;
    return 0;
}

static int mp_ext(mp *m, cv_text *t, size_t len)
{
    uint64_t type;
    if (mp_take(m, 1, &type) < 0 || m->n - m->pos < len)
        return -1;
    const unsigned char *d = m->p + m->pos;
    m->pos += len;
    char buf[96];
    if ((int8_t)type == -1 && (len == 4 || len == 8 || len == 12)) {
        uint64_t a = 0, ns = 0;
        int64_t sec;
        for (size_t i = 0; i < len; i++)
            a = (a << 8) | d[i];
        if (len == 4) {
            sec = (int64_t)a;
        } else if (len == 8) {
            ns = a >> 34;
            sec = (int64_t)(a & 0x3ffffffffull);
        } else {
            ns = 0;
            for (size_t i = 0; i < 4; i++)
                ns = (ns << 8) | d[i];
            uint64_t s = 0;
            for (size_t i = 4; i < 12; i++)
                s = (s << 8) | d[i];
            sec = (int64_t)s;
        }
        if (ns > 999999999)
            return -1;
        snprintf(buf, sizeof buf, "Timestamp(seconds=%lld, nanoseconds=%llu)", (long long)sec,
                 (unsigned long long)ns);
        cv_puts(t, buf);
        return 0;
    }
    snprintf(buf, sizeof buf, "ExtType(code=%d, data=", (int)(int8_t)type);
    cv_puts(t, buf);
    cv_repr_bytes(t, (const char *)d, len);
    cv_put(t, ")", 1);
    return 0;
}

static int mp_bytes(mp *m, cv_text *t, size_t len, bool str)
{
    if (m->n - m->pos < len)
        return -1;
    const char *d = (const char *)m->p + m->pos;
    m->pos += len;
    if (str && !cv_utf8_valid(d, len))
        return -1;
    (str ? cv_repr_str : cv_repr_bytes)(t, d, len);
    return 0;
}

static int mp_value(mp *m, cv_text *t, int level, bool as_key)
{
    uint64_t b, v;
    char buf[48];
    if (mp_take(m, 1, &b) < 0)
        return -1;
    /* strict_map_key: keys are str or bytes */
    bool strish = (b >= 0xa0 && b <= 0xbf) || (b >= 0xc4 && b <= 0xc6) || (b >= 0xd9 && b <= 0xdb);
    if (as_key && !strish)
        return -1;
    if (b <= 0x7f || b >= 0xe0) {
        snprintf(buf, sizeof buf, "%d", b <= 0x7f ? (int)b : (int)(int8_t)b);
        cv_puts(t, buf);
        return 0;
    }
    if (b >= 0x80 && b <= 0x8f)
        return mp_container(m, t, level, b & 0x0f, true);
    if (b >= 0x90 && b <= 0x9f)
        return mp_container(m, t, level, b & 0x0f, false);
    if (b >= 0xa0 && b <= 0xbf)
        return mp_bytes(m, t, b & 0x1f, true);
    switch (b) {
    case 0xc0: cv_puts(t, "None"); return 0;
    case 0xc2: cv_puts(t, "False"); return 0;
    case 0xc3: cv_puts(t, "True"); return 0;
    case 0xc4: case 0xc5: case 0xc6:
        return mp_take(m, (size_t)1 << (b - 0xc4), &v) < 0 ? -1 : mp_bytes(m, t, v, false);
    case 0xd9: case 0xda: case 0xdb:
        return mp_take(m, (size_t)1 << (b - 0xd9), &v) < 0 ? -1 : mp_bytes(m, t, v, true);
    case 0xc7: case 0xc8: case 0xc9:
        return mp_take(m, (size_t)1 << (b - 0xc7), &v) < 0 ? -1 : mp_ext(m, t, v);
    case 0xd4: case 0xd5: case 0xd6: case 0xd7: case 0xd8:
        return mp_ext(m, t, (size_t)1 << (b - 0xd4));
    case 0xca: case 0xcb: {
        if (mp_take(m, b == 0xca ? 4 : 8, &v) < 0)
            return -1;
        double d;
        if (b == 0xca) {
            uint32_t u = (uint32_t)v;
            float f;
            memcpy(&f, &u, 4);
            d = f;
        } else {
            memcpy(&d, &v, 8);
        }
        pyfloat_repr(d, buf, sizeof buf);
        cv_puts(t, buf);
        return 0;
    }
    case 0xcc: case 0xcd: case 0xce: case 0xcf:
        if (mp_take(m, (size_t)1 << (b - 0xcc), &v) < 0)
            return -1;
        snprintf(buf, sizeof buf, "%llu", (unsigned long long)v);
        cv_puts(t, buf);
        return 0;
    case 0xd0: case 0xd1: case 0xd2: case 0xd3: {
        size_t k = (size_t)1 << (b - 0xd0);
        if (mp_take(m, k, &v) < 0)
            return -1;
        int64_t s = k == 8 ? (int64_t)v : (int64_t)(v ^ (1ull << (8 * k - 1))) - (int64_t)(1ull << (8 * k - 1));
        snprintf(buf, sizeof buf, "%lld", (long long)s);
        cv_puts(t, buf);
        return 0;
    }
    case 0xdc: case 0xdd: case 0xde: case 0xdf: {
        bool map = b >= 0xde;
        if (mp_take(m, (b == 0xdc || b == 0xde) ? 2 : 4, &v) < 0)
            return -1;
        return mp_container(m, t, level, v, map);
    }
    default:
        return -1;   /* 0xc1 is never used */
    }
}

int cv_msgpack(cv_text *t, const char *data, size_t len)
{
    mp m = {(const unsigned char *)data, len, 0, 0};
    if (mp_value(&m, t, 0, false) < 0 || m.pos != m.n)
        return -1;   /* trailing bytes: msgpack's ExtraData */
    cv_endl(t);
    return 0;
}

/* ---- images: what mitmproxy's image view lists ------------------------- */

typedef struct rd {
    const unsigned char *p;
    size_t n, pos;
    bool bad;
} rd;

static uint64_t rd_be(rd *r, size_t k)
{
    uint64_t v = 0;
    if (r->bad || r->n - r->pos < k) {
        r->bad = true;
        return 0;
    }
    for (size_t i = 0; i < k; i++)
        v = (v << 8) | r->p[r->pos + i];
    r->pos += k;
    return v;
}

static uint64_t rd_le(rd *r, size_t k)
{
    uint64_t v = 0;
    if (r->bad || r->n - r->pos < k) {
        r->bad = true;
        return 0;
    }
    for (size_t i = 0; i < k; i++)
        v |= (uint64_t)r->p[r->pos + i] << (8 * i);
    r->pos += k;
    return v;
}

static const unsigned char *rd_bytes(rd *r, size_t k)
{
    if (r->bad || r->n - r->pos < k) {
        r->bad = true;
        return NULL;
    }
    r->pos += k;
    return r->p + r->pos - k;
}

/* A metadata table: keys and values owned here */
typedef struct meta {
    cv_pair v[64];
    char *own[128];
    size_t n, nown;
} meta;

static const char *meta_own(meta *m, char *s)
{
    if (!s || m->nown == sizeof m->own / sizeof m->own[0]) {
        free(s);
        return "";
    }
    return m->own[m->nown++] = s;
}

static void meta_add(meta *m, const char *k, size_t kn, const char *v, size_t vn)
{
    if (m->n < sizeof m->v / sizeof m->v[0])
        m->v[m->n++] = (cv_pair){k, v, kn, vn};
}

static void meta_addf(meta *m, const char *k, const char *fmt, unsigned long long a, unsigned long long b)
{
    char buf[96];
    snprintf(buf, sizeof buf, fmt, a, b);
    const char *s = meta_own(m, strdup(buf));
    meta_add(m, k, strlen(k), s, strlen(s));
}

/* ISO 8859-1 to UTF-8 */
static const char *latin1(meta *m, const unsigned char *s, size_t n, size_t *outn)
{
    char *o = malloc(n * 2 + 1);
    size_t k = 0;
    for (size_t i = 0; o && i < n; i++) {
        if (s[i] < 0x80) {
            o[k++] = (char)s[i];
        } else {
            o[k++] = (char)(0xc0 | (s[i] >> 6));
            o[k++] = (char)(0x80 | (s[i] & 0x3f));
        }
    }
    *outn = o ? k : 0;
    return meta_own(m, o);
}

static int png_meta(meta *m, rd *r)
{
    rd_bytes(r, 8);
    uint64_t ihdr_len = rd_be(r, 4);
    const unsigned char *ihdr = rd_bytes(r, 4);
    if (r->bad || ihdr_len != 13 || memcmp(ihdr, "IHDR", 4) != 0)
        return -1;
    uint64_t w = rd_be(r, 4), h = rd_be(r, 4);
    rd_bytes(r, 5 + 4);
    meta_add(m, "Format", 6, "Portable network graphics", 25);
    meta_addf(m, "Size", "%llu x %llu px", w, h);
    for (;;) {
        uint64_t len = rd_be(r, 4);
        const unsigned char *type = rd_bytes(r, 4);
        const unsigned char *body = rd_bytes(r, (size_t)len);
        rd_bytes(r, 4);
        if (r->bad || !cv_utf8_valid((const char *)type, 4))
            return -1;
        rd b = {body, (size_t)len, 0, false};
        if (!memcmp(type, "gAMA", 4)) {
            char num[48];
            pyfloat_repr((double)rd_be(&b, 4) / 100000.0, num, sizeof num);
            const char *s = meta_own(m, strdup(num));
            meta_add(m, "gamma", 5, s, strlen(s));
        } else if (!memcmp(type, "pHYs", 4)) {
            uint64_t x = rd_be(&b, 4), y = rd_be(&b, 4);
            rd_be(&b, 1);
            meta_addf(m, "aspect", "%llu x %llu", x, y);
        } else if (!memcmp(type, "tEXt", 4) || !memcmp(type, "zTXt", 4) || !memcmp(type, "iTXt", 4)) {
            const unsigned char *nul = memchr(body, 0, (size_t)len);
            if (!nul)
                return -1;
            size_t kn, vn, klen = (size_t)(nul - body);
            const unsigned char *rest = nul + 1;
            size_t rn = (size_t)len - klen - 1;
            const char *k = type[0] == 'i' ? (const char *)body : latin1(m, body, klen, &kn);
            if (type[0] == 'i') {
                kn = klen;
                /* flag, method, language\0, translated keyword\0, text (UTF-8) */
                if (rn < 2 || !cv_utf8_valid(k, kn))
                    return -1;
                const unsigned char *x = rest + 2, *e = rest + rn;
                for (int z = 0; z < 2; z++) {
                    const unsigned char *n0 = memchr(x, 0, (size_t)(e - x));
                    if (!n0)
                        return -1;
                    x = n0 + 1;
                }
                if (!cv_utf8_valid((const char *)x, (size_t)(e - x)))
                    return -1;
                meta_add(m, k, kn, (const char *)x, (size_t)(e - x));
            } else if (type[0] == 't') {
                const char *v = latin1(m, rest, rn, &vn);
                meta_add(m, k, kn, v, vn);
            } else {
                if (rn < 1)
                    return -1;
                uLongf cap = 1 << 16;
                unsigned char *out = malloc(cap);
                if (!out || uncompress(out, &cap, rest + 1, rn - 1) != Z_OK) {
                    free(out);
                    return -1;
                }
                const char *v = latin1(m, out, cap, &vn);
                free(out);
                meta_add(m, k, kn, v, vn);
            }
        }
        if (b.bad)
            return -1;
        if (!memcmp(type, "IEND", 4))
            return 0;
    }
}

static int gif_subblocks(rd *r, meta *m, bool comment)
{
    for (;;) {
        uint64_t n = rd_be(r, 1);
        const unsigned char *b = rd_bytes(r, (size_t)n);
        if (r->bad)
            return -1;
        if (!n)
            return 0;
        if (comment) {
            cv_text t = {.max_lines = CV_ALL};
            cv_repr_bytes(&t, (const char *)b, (size_t)n);
            const char *s = meta_own(m, str_of(&t));
            meta_add(m, "comment", 7, s, strlen(s));
        }
    }
}

static int gif_meta(meta *m, rd *r)
{
    const unsigned char *hdr = rd_bytes(r, 6);
    uint64_t w = rd_le(r, 2), h = rd_le(r, 2), flags = rd_le(r, 1), bg = rd_le(r, 1);
    rd_le(r, 1);
    if (r->bad)
        return -1;
    if (flags & 0x80)
        rd_bytes(r, 3u << ((flags & 7) + 1));
    meta_add(m, "Format", 6, "Compuserve GIF", 14);
    const char *ver = meta_own(m, strndup((const char *)hdr, 6));
    meta_add(m, "Version", 7, ver, strlen(ver));
    meta_addf(m, "Size", "%llu x %llu px", w, h);
    meta_addf(m, "background", "%llu", bg, 0);
    for (;;) {
        uint64_t type = rd_le(r, 1);
        if (r->bad)
            return -1;
        if (type == 0x3b)
            return 0;
        if (type == 0x2c) {
            rd_bytes(r, 8);
            uint64_t f = rd_le(r, 1);
            if (f & 0x80)
                rd_bytes(r, 3u << ((f & 7) + 1));
            rd_le(r, 1);
            if (gif_subblocks(r, m, false) < 0)
                return -1;
        } else if (type == 0x21) {
            uint64_t label = rd_le(r, 1);
            if (label == 0xf9) {
                rd_bytes(r, 6);
            } else if (gif_subblocks(r, m, label == 0xfe) < 0) {
                return -1;
            }
        } else {
            return -1;   /* mitmproxy's parser fails on other block types */
        }
        if (r->bad)
            return -1;
    }
}

static int jpeg_meta(meta *m, rd *r)
{
    meta_add(m, "Format", 6, "JPEG (ISO 10918)", 16);
    while (r->pos < r->n) {
        uint64_t magic = rd_be(r, 1), marker = rd_be(r, 1);
        if (r->bad || magic != 0xff)
            return -1;
        bool known = marker == 1 || (marker >= 0xc0 && marker <= 0xc7) || (marker >= 0xd8 && marker <= 0xde) ||
                     (marker >= 0xe0 && marker <= 0xef) || marker == 0xfe;
        if (!known)
            return -1;
        if (marker == 0xd8 || marker == 0xd9)
            continue;
        uint64_t len = rd_be(r, 2);
        if (r->bad || len < 2)
            return -1;
        const unsigned char *d = rd_bytes(r, (size_t)len - 2);
        if (r->bad)
            return -1;
        rd s = {d, (size_t)len - 2, 0, false};
        if (marker == 0xc0) {
            rd_be(&s, 1);
            uint64_t h = rd_be(&s, 2), w = rd_be(&s, 2);
            rd_bytes(&s, 3 * rd_be(&s, 1));   /* the components */
            if (s.bad)
                return -1;
            meta_addf(m, "Size", "%llu x %llu px", w, h);
        } else if (marker == 0xe0) {
            rd_bytes(&s, 5);
            uint64_t maj = rd_be(&s, 1), min = rd_be(&s, 1), units = rd_be(&s, 1);
            uint64_t dx = rd_be(&s, 2), dy = rd_be(&s, 2);
            if (s.bad || units > 2)
                return -1;
            meta_addf(m, "jfif_version", "(%llu, %llu)", maj, min);
            meta_addf(m, "jfif_density", "(%llu, %llu)", dx, dy);
            meta_addf(m, "jfif_unit", "%llu", units, 0);
        } else if (marker == 0xfe) {
            cv_text t = {.max_lines = CV_ALL};
            cv_repr_bytes(&t, (const char *)d, (size_t)len - 2);
            const char *c = meta_own(m, str_of(&t));
            meta_add(m, "comment", 7, c, strlen(c));
        } else if (marker == 0xda) {
            rd_bytes(&s, 2 * rd_be(&s, 1) + 3);   /* components, spectral selection */
            if (s.bad)
                return -1;
            r->pos = r->n;   /* the image data runs to the end */
        }
    }
    return 0;
}

static int ico_meta(meta *m, rd *r)
{
    rd_bytes(r, 4);
    uint64_t n = rd_le(r, 2);
    if (r->bad)
        return -1;
    meta_add(m, "Format", 6, "ICO", 3);
    meta_addf(m, "Number of images", "%llu", n, 0);
    for (uint64_t i = 0; i < n; i++) {
        uint64_t w = rd_le(r, 1), h = rd_le(r, 1);
        rd_le(r, 1);
        if (rd_le(r, 1) != 0)
            return -1;
        rd_le(r, 2);
        uint64_t bpp = rd_le(r, 2), len = rd_le(r, 4), ofs = rd_le(r, 4);
        if (r->bad || ofs > r->n || len > r->n - ofs)
            return -1;
        bool png = len >= 8 && !memcmp(r->p + ofs, "\x89PNG\r\n\x1a\n", 8);
        /* the value's own lines start 18 columns in, the printer's four
         * spaces included */
        char k[32], v[160];
        snprintf(k, sizeof k, "Image %llu", (unsigned long long)i + 1);
        snprintf(v, sizeof v, "Size: %llu x %llu\n%14sBits per pixel: %llu\n%14sPNG: %s",
                 (unsigned long long)(w ? w : 256), (unsigned long long)(h ? h : 256), "",
                 (unsigned long long)bpp, "", png ? "True" : "False");
        const char *ks = meta_own(m, strdup(k)), *vs = meta_own(m, strdup(v));
        meta_add(m, ks, strlen(ks), vs, strlen(vs));
    }
    return 0;
}

/* imghdr.what, then mitmproxy's ico test */
static const char *image_type(const unsigned char *h, size_t n)
{
    if ((n >= 10 && (!memcmp(h + 6, "JFIF", 4) || !memcmp(h + 6, "Exif", 4))) ||
        (n >= 4 && !memcmp(h, "\xff\xd8\xff\xdb", 4)))
        return "jpeg";
    if (n >= 8 && !memcmp(h, "\x89PNG\r\n\x1a\n", 8))
        return "png";
    if (n >= 6 && (!memcmp(h, "GIF87a", 6) || !memcmp(h, "GIF89a", 6)))
        return "gif";
    if (n >= 2 && (!memcmp(h, "MM", 2) || !memcmp(h, "II", 2)))
        return "tiff";
    if (n >= 2 && !memcmp(h, "\x01\xda", 2))
        return "rgb";
    if (n >= 3 && h[0] == 'P' && strchr(" \t\n\r", h[2]) && h[2]) {
        if (h[1] == '1' || h[1] == '4')
            return "pbm";
        if (h[1] == '2' || h[1] == '5')
            return "pgm";
        if (h[1] == '3' || h[1] == '6')
            return "ppm";
    }
    if (n >= 4 && !memcmp(h, "\x59\xa6\x6a\x95", 4))
        return "rast";
    if (n >= 8 && !memcmp(h, "#define ", 8))
        return "xbm";
    if (n >= 2 && !memcmp(h, "BM", 2))
        return "bmp";
    if (n >= 12 && !memcmp(h, "RIFF", 4) && !memcmp(h + 8, "WEBP", 4))
        return "webp";
    if (n >= 4 && !memcmp(h, "\x76\x2f\x31\x01", 4))
        return "exr";
    if (n >= 4 && !memcmp(h, "\x00\x00\x01\x00", 4))
        return "ico";
    return NULL;
}

int cv_image(cv_text *t, const char *data, size_t len, const char **name)
{
    const unsigned char *p = (const unsigned char *)data;
    const char *type = image_type(p, len);
    meta m = {0};
    rd r = {p, len, 0, false};
    int rc = 0;
    static const char *const titles[][2] = {{"jpeg", "JPEG Image"}, {"png", "PNG Image"}, {"gif", "GIF Image"},
        {"tiff", "TIFF Image"}, {"rgb", "RGB Image"}, {"pbm", "PBM Image"}, {"pgm", "PGM Image"},
        {"ppm", "PPM Image"}, {"rast", "RAST Image"}, {"xbm", "XBM Image"}, {"bmp", "BMP Image"},
        {"webp", "WEBP Image"}, {"exr", "EXR Image"}, {"ico", "ICO Image"}};
    *name = "Unknown Image";
    for (size_t i = 0; type && i < sizeof titles / sizeof titles[0]; i++)
        if (!strcmp(type, titles[i][0]))
            *name = titles[i][1];
    if (type && !strcmp(type, "png"))
        rc = png_meta(&m, &r);
    else if (type && !strcmp(type, "gif"))
        rc = gif_meta(&m, &r);
    else if (type && !strcmp(type, "jpeg"))
        rc = jpeg_meta(&m, &r);
    else if (type && !strcmp(type, "ico"))
        rc = ico_meta(&m, &r);
    else
        meta_add(&m, "Image Format", 12, type ? type : "unknown", strlen(type ? type : "unknown"));
    if (rc == 0)
        cv_pairs(t, m.v, m.n);
    for (size_t i = 0; i < m.nown; i++)
        free(m.own[i]);
    return rc;
}
