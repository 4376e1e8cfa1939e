/* tlshello.c — a ClientHello's server name and ALPN list (see tlshello.h).
 * Every length is checked against what is left of its enclosing field: a
 * truncated or lying hello is refused, never read past. */
#include "tlshello.h"

#include <stdbool.h>
#include <stdio.h>
#include <string.h>

typedef struct rd {
    const uint8_t *p;
    size_t n;
} rd;

static int take(rd *r, size_t k, rd *sub)
{
    if (r->n < k)
        return -1;
    if (sub)
        *sub = (rd){r->p, k};
    r->p += k;
    r->n -= k;
    return 0;
}

static int u8(rd *r, size_t *v)
{
    if (r->n < 1)
        return -1;
    *v = r->p[0];
    return take(r, 1, NULL);
}

static int u16(rd *r, size_t *v)
{
    if (r->n < 2)
        return -1;
    *v = (size_t)r->p[0] << 8 | r->p[1];
    return take(r, 2, NULL);
}

/* a length of `width` bytes, then that many bytes */
static int vec(rd *r, int width, rd *sub)
{
    size_t len;
    if ((width == 1 ? u8(r, &len) : u16(r, &len)) < 0)
        return -1;
    return take(r, len, sub);
}

long tlshello_record_size(const uint8_t *p, size_t n)
{
    if (n < 5)
        return 0;
    if (p[0] != 0x16 || p[1] != 0x03)
        return -1;
    return 5 + ((long)p[3] << 8 | p[4]);
}

static void copy_str(char *dst, size_t dstsz, const rd *s)
{
    size_t k = s->n < dstsz - 1 ? s->n : dstsz - 1;
    memcpy(dst, s->p, k);
    dst[k] = '\0';
}

static int server_name(rd ext, tlshello *out)
{
    rd list;
    if (vec(&ext, 2, &list) < 0)
        return -1;
    while (list.n) {
        size_t type;
        rd name;
        if (u8(&list, &type) < 0 || vec(&list, 2, &name) < 0)
            return -1;
        if (type == 0 && !out->sni[0] && name.n && name.n < sizeof out->sni) {
            for (size_t i = 0; i < name.n; i++)
                if (name.p[i] <= 0x20 || name.p[i] >= 0x7f)
                    return -1; /* a host name, not arbitrary bytes */
            copy_str(out->sni, sizeof out->sni, &name);
        }
    }
    return 0;
}

static int alpn(rd ext, tlshello *out)
{
    rd list;
    if (vec(&ext, 2, &list) < 0)
        return -1;
    while (list.n) {
        rd proto;
        if (vec(&list, 1, &proto) < 0 || proto.n == 0)
            return -1;
        /* names are bytes (RFC 7301); the ones scripts can compare as
         * strings are printable, and only those are kept */
        bool printable = proto.n < sizeof out->alpn[0];
        for (size_t i = 0; printable && i < proto.n; i++)
            printable = proto.p[i] > 0x20 && proto.p[i] < 0x7f;
        if (out->nalpn < TLSHELLO_MAX_ALPN && printable)
            copy_str(out->alpn[out->nalpn++], sizeof out->alpn[0], &proto);
    }
    return 0;
}

int tlshello_parse(const uint8_t *p, size_t n, tlshello *out, char *err, size_t errsz)
{
    memset(out, 0, sizeof *out);
    long need = tlshello_record_size(p, n);
    if (need <= 0 || (size_t)need > n) {
        snprintf(err, errsz, "not a whole TLS handshake record");
        return -1;
    }
    rd r = {p + 5, (size_t)need - 5}, body, ext;
    size_t type, len_hi, len_lo, ext_type;
    if (u8(&r, &type) < 0 || type != 1) {
        snprintf(err, errsz, "not a ClientHello");
        return -1;
    }
    /* a hello longer than its record continues in the next one: what is
     * here is read, the rest (late extensions) is not ours to see */
    if (u8(&r, &len_hi) < 0 || u16(&r, &len_lo) < 0)
        goto bad;
    size_t len = len_hi << 16 | len_lo;
    body = (rd){r.p, len < r.n ? len : r.n};
    if (take(&body, 2 + 32, NULL) < 0 || vec(&body, 1, NULL) < 0 || vec(&body, 2, NULL) < 0 ||
        vec(&body, 1, NULL) < 0)
        goto bad;
    if (body.n == 0)
        return 0; /* no extensions at all */
    rd exts;
    if (vec(&body, 2, &exts) < 0) {
        if (len <= r.n)
            goto bad;
        exts = (rd){body.p + 2, body.n > 2 ? body.n - 2 : 0}; /* cut by the record's end */
    }
    while (exts.n >= 4) {
        if (u16(&exts, &ext_type) < 0 || vec(&exts, 2, &ext) < 0)
            break; /* the cut-off tail of a long hello */
        if ((ext_type == 0 && server_name(ext, out) < 0) || (ext_type == 16 && alpn(ext, out) < 0))
            goto bad;
    }
    return 0;
bad:
    snprintf(err, errsz, "malformed ClientHello");
    return -1;
}
