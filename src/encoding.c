/* encoding.c — HTTP content-codings: gzip, deflate, br, zstd, identity.
 * Decoders are streaming loops that write straight into the caller's buffer
 * and grow it under a hard ceiling, so a compression bomb is stopped at the
 * limit without ever allocating much beyond it. */
#include "encoding.h"

#include <limits.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <brotli/decode.h>
#include <brotli/encode.h>
#include <zlib.h>
#include <zstd.h>
#include <zstd_errors.h>

/* A header can name each coding any number of times; every layer costs a
 * full pass over up to ENCODING_MAX_DECODED bytes, so a long list would be a
 * CPU bomb even with the size limit.  Real servers use one, rarely two. */
#define ENC_MAX_LAYERS 8

/* Levels chosen for a proxy re-encoding bodies on the fly: close to the
 * best ratio per CPU second, not the best ratio.  (nginx's brotli module
 * defaults to 6 for the same reason.) */
#define ENC_ZLIB_LEVEL 6
#define ENC_BROTLI_QUALITY 6
#define ENC_ZSTD_LEVEL 3

/* RFC 9659 §3: HTTP recipients may refuse zstd windows over 8 MB, and
 * browsers do.  Refusing them here bounds the decoder's own memory, which
 * ENCODING_MAX_DECODED does not cover. */
#define ENC_ZSTD_WINDOWLOG_MAX 23

/* Largest declared zstd content size allocated before seeing the data. */
#define ENC_TRUSTED_SIZE ((size_t)16 << 20)

/* Inputs are fed to zlib in pieces its 32-bit counters can hold. */
#define ENC_ZLIB_CHUNK ((size_t)1 << 30)

typedef enum enc_kind {
    ENC_IDENTITY,
    ENC_GZIP,
    ENC_DEFLATE,
    ENC_BR,
    ENC_ZSTD,
} enc_kind;

static const char *enc_name(enc_kind k)
{
    switch (k) {
    case ENC_GZIP: return "gzip";
    case ENC_DEFLATE: return "deflate";
    case ENC_BR: return "br";
    case ENC_ZSTD: return "zstd";
    default: return "identity";
    }
}

static void enc_err(char *err, size_t errsz, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static void enc_err(char *err, size_t errsz, const char *fmt, ...)
{
    if (!err || !errsz)
        return;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err, errsz, fmt, ap);
    va_end(ap);
}

/* ---- parsing the coding list ------------------------------------------ */

static bool enc_token_is(const char *t, size_t n, const char *name)
{
    return strlen(name) == n && strncasecmp(t, name, n) == 0;
}

/* Split a Content-Encoding value into codings in the order they were
 * applied.  identity and empty list elements (RFC 9110 §5.6.1 allows
 * them) are dropped.  Returns the number of layers or -1 with err. */
static int enc_parse(const char *coding, enc_kind *kinds, char *err, size_t errsz)
{
    int n = 0;
    const char *s = coding ? coding : "";
    for (;;) {
        while (*s == ' ' || *s == '\t' || *s == ',')
            s++;
        if (!*s)
            break;
        const char *t = s;
        while (*s && *s != ',')
            s++;
        size_t tl = (size_t)(s - t);
        while (tl && (t[tl - 1] == ' ' || t[tl - 1] == '\t'))
            tl--;
        enc_kind k;
        if (enc_token_is(t, tl, "identity"))
            continue;
        /* x-gzip: RFC 9110 §8.4.1.3 asks recipients to treat it as gzip */
        if (enc_token_is(t, tl, "gzip") || enc_token_is(t, tl, "x-gzip"))
            k = ENC_GZIP;
        else if (enc_token_is(t, tl, "deflate"))
            k = ENC_DEFLATE;
        else if (enc_token_is(t, tl, "br"))
            k = ENC_BR;
        else if (enc_token_is(t, tl, "zstd"))
            k = ENC_ZSTD;
        else {
            /* the name comes off the wire: print it tamed and short */
            char shown[41];
            size_t i;
            for (i = 0; i < tl && i < sizeof shown - 1; i++)
                shown[i] = (t[i] >= 0x20 && t[i] < 0x7f) ? t[i] : '?';
            shown[i] = '\0';
            enc_err(err, errsz, "unsupported content-coding \"%s%s\"", shown,
                    tl > sizeof shown - 1 ? "..." : "");
            return -1;
        }
        if (n == ENC_MAX_LAYERS) {
            enc_err(err, errsz, "too many content-codings (more than %d layers)",
                    ENC_MAX_LAYERS);
            return -1;
        }
        kinds[n++] = k;
    }
    return n;
}

int encoding_supported(const char *coding)
{
    enc_kind kinds[ENC_MAX_LAYERS];
    return enc_parse(coding, kinds, NULL, 0) >= 0;
}

/* ---- output sink ------------------------------------------------------ */

/* Where one decoding (or encoding) stage writes: the caller's `bytes`,
 * grown geometrically but never past start + limit + 1 bytes of payload.
 * The one byte over the limit is how a stage learns the decoder had more to
 * give: producing it is the error. */
typedef struct enc_sink {
    bytes *b;
    size_t start;  /* b->len when the stage began */
    size_t limit;  /* most bytes the stage may add */
    size_t hint;   /* first allocation size guess */
} enc_sink;

static void enc_limit_msg(char *err, size_t errsz, const char *name, size_t limit)
{
    if (limit && limit % ((size_t)1 << 20) == 0)
        enc_err(err, errsz, "%s: decoded body exceeds the %zu MiB limit", name,
                limit >> 20);
    else
        enc_err(err, errsz, "%s: decoded body exceeds the %zu byte limit", name,
                limit);
}

/* Give the stage free space at the end of the buffer.  -1 with err when the
 * limit is passed or memory runs out. */
static int sink_room(enc_sink *s, char **p, size_t *avail, const char *name,
                     char *err, size_t errsz)
{
    bytes *b = s->b;
    size_t made = b->len - s->start;
    if (made > s->limit) {
        enc_limit_msg(err, errsz, name, s->limit);
        return -1;
    }
    /* cap keeps one byte for the NUL that bytes promises */
    if (b->cap < b->len + 2) {
        size_t ceiling = s->limit > SIZE_MAX - s->start - 2
                             ? SIZE_MAX
                             : s->start + s->limit + 2; /* +1 over, +1 NUL */
        /* double (amortised O(n) copying), but start at the stage's size
         * guess so a body with a known size is allocated once */
        size_t hint = s->hint < 4096 ? 4096 : s->hint;
        size_t want = b->cap <= SIZE_MAX / 2 ? b->cap * 2 : SIZE_MAX;
        if (b->len == s->start && want < b->len + hint + 1 && hint <= SIZE_MAX - b->len - 1)
            want = b->len + hint + 1;
        if (want < b->len + 2)
            want = b->len + 2;
        if (want > ceiling)
            want = ceiling;
        if (want < b->len + 2) {
            enc_err(err, errsz, "%s: out of memory", name);
            return -1;
        }
        char *np = realloc(b->p, want);
        if (!np) {
            enc_err(err, errsz, "%s: out of memory (%zu bytes)", name, want);
            return -1;
        }
        b->p = np;
        b->cap = want;
    }
    *p = b->p + b->len;
    *avail = b->cap - b->len - 1;
    return 0;
}

/* Undo a failed stage: the caller's buffer is left as it was. */
static void sink_rollback(enc_sink *s)
{
    s->b->len = s->start;
    if (s->b->p)
        s->b->p[s->b->len] = '\0';
}

static int sink_finish(enc_sink *s, const char *name, char *err, size_t errsz)
{
    if (s->b->len - s->start > s->limit) {
        enc_limit_msg(err, errsz, name, s->limit);
        sink_rollback(s);
        return -1;
    }
    if (s->b->p)
        s->b->p[s->b->len] = '\0';
    return 0;
}

static size_t enc_hint(size_t n, size_t limit, unsigned mul)
{
    size_t h = n <= SIZE_MAX / mul ? n * mul : SIZE_MAX;
    return h > limit ? limit : h;
}

/* ---- zlib (gzip and deflate) ------------------------------------------ */

static bool enc_all_zero(const unsigned char *p, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (p[i])
            return false;
    return true;
}

/* One inflate pass with the given windowBits (16+ = gzip, + = zlib,
 * - = raw).  Returns 0, -1 on error (err set), or -2 on a data error seen
 * before any output, so deflate's auto-detection may retry as raw. */
static int enc_inflate(const unsigned char *in, size_t n, int wbits, enc_sink *s,
                       const char *name, char *err, size_t errsz)
{
    z_stream zs;
    memset(&zs, 0, sizeof zs);
    if (inflateInit2(&zs, wbits) != Z_OK) {
        enc_err(err, errsz, "%s: cannot start decoder: out of memory", name);
        return -1;
    }
    size_t fed = 0;
    int rc = -1;
    for (;;) {
        if (zs.avail_in == 0 && fed < n) {
            size_t c = n - fed < ENC_ZLIB_CHUNK ? n - fed : ENC_ZLIB_CHUNK;
            zs.next_in = (Bytef *)(uintptr_t)(in + fed);
            zs.avail_in = (uInt)c;
            fed += c;
        }
        char *op;
        size_t avail;
        if (sink_room(s, &op, &avail, name, err, errsz) < 0)
            goto out;
        if (avail > UINT_MAX)
            avail = UINT_MAX;
        zs.next_out = (Bytef *)op;
        zs.avail_out = (uInt)avail;
        int zr = inflate(&zs, Z_NO_FLUSH);
        s->b->len += avail - zs.avail_out;
        if (zr == Z_STREAM_END) {
            size_t left = zs.avail_in + (n - fed);
            if (left == 0)
                break;
            const unsigned char *rest = zs.next_in;
            if (wbits > 16) {
                /* gzip allows further members (RFC 1952 §2.2); zero padding
                 * after the last one is tolerated as gzip(1) does */
                if (enc_all_zero(rest, zs.avail_in) &&
                    enc_all_zero(in + fed, n - fed))
                    break;
                inflateReset(&zs);
                continue;
            }
            enc_err(err, errsz, "%s: %zu bytes of trailing data after the end of the stream",
                    name, left);
            goto out;
        }
        if (zr == Z_NEED_DICT) {
            enc_err(err, errsz, "%s: stream needs a preset dictionary", name);
            goto out;
        }
        if (zr == Z_DATA_ERROR) {
            if (s->b->len == s->start && zs.total_out == 0)
                rc = -2;
            enc_err(err, errsz, "%s: corrupt data (%s)", name,
                    zs.msg ? zs.msg : "invalid stream");
            goto out;
        }
        if (zr == Z_MEM_ERROR) {
            enc_err(err, errsz, "%s: out of memory", name);
            goto out;
        }
        /* Z_OK or Z_BUF_ERROR: inflate stopped with output room to spare
         * and nothing left to read, so the stream was cut short */
        if (zs.avail_in == 0 && fed == n && zs.avail_out > 0) {
            enc_err(err, errsz, "%s: truncated data (stream ends early)", name);
            goto out;
        }
    }
    rc = 0;
out:
    inflateEnd(&zs);
    return rc;
}

/* RFC 1950 §2.2: a zlib stream starts with CM=8, CINFO<=7 and a 16-bit
 * header that is a multiple of 31. */
static bool enc_looks_zlib(const unsigned char *p, size_t n)
{
    return n >= 2 && (p[0] & 0x0f) == 8 && (p[0] >> 4) <= 7 &&
           ((unsigned)p[0] << 8 | p[1]) % 31 == 0;
}

static int dec_deflate(const unsigned char *in, size_t n, enc_sink *s, char *err,
                       size_t errsz)
{
    /* "deflate" is meant to be zlib-wrapped (RFC 9110 §8.4.1.2) but some
     * servers send raw deflate; browsers accept both, so do we.  A raw
     * stream can look like a zlib header by chance: on an early data error
     * fall back to raw. */
    if (enc_looks_zlib(in, n)) {
        int r = enc_inflate(in, n, MAX_WBITS, s, "deflate", err, errsz);
        if (r != -2) {
            if (r < 0)
                sink_rollback(s);
            return r < 0 ? -1 : 0;
        }
        sink_rollback(s);
    }
    if (enc_inflate(in, n, -MAX_WBITS, s, "deflate", err, errsz) < 0) {
        sink_rollback(s);
        return -1;
    }
    return 0;
}

static int dec_gzip(const unsigned char *in, size_t n, enc_sink *s, char *err,
                    size_t errsz)
{
    if (enc_inflate(in, n, 16 + MAX_WBITS, s, "gzip", err, errsz) < 0) {
        sink_rollback(s);
        return -1;
    }
    return 0;
}

/* ---- brotli ----------------------------------------------------------- */

static int dec_br(const unsigned char *in, size_t n, enc_sink *s, char *err,
                  size_t errsz)
{
    BrotliDecoderState *st = BrotliDecoderCreateInstance(NULL, NULL, NULL);
    if (!st) {
        enc_err(err, errsz, "br: cannot start decoder: out of memory");
        return -1;
    }
    const uint8_t *next_in = in;
    size_t avail_in = n;
    int rc = -1;
    for (;;) {
        char *op;
        size_t avail;
        if (sink_room(s, &op, &avail, "br", err, errsz) < 0)
            goto out;
        uint8_t *next_out = (uint8_t *)op;
        size_t before = avail;
        BrotliDecoderResult r = BrotliDecoderDecompressStream(
            st, &avail_in, &next_in, &avail, &next_out, NULL);
        s->b->len += before - avail;
        if (r == BROTLI_DECODER_RESULT_SUCCESS) {
            if (avail_in) {
                enc_err(err, errsz, "br: %zu bytes of trailing data after the end of the stream",
                        avail_in);
                goto out;
            }
            break;
        }
        if (r == BROTLI_DECODER_RESULT_ERROR) {
            const char *why = BrotliDecoderErrorString(BrotliDecoderGetErrorCode(st));
            /* the library's names look like "_ERROR_FORMAT_PADDING_1" */
            if (why[0] == '_')
                why++;
            enc_err(err, errsz, "br: corrupt data (%s)", why);
            goto out;
        }
        if (r == BROTLI_DECODER_RESULT_NEEDS_MORE_INPUT) {
            enc_err(err, errsz, "br: truncated data (stream ends early)");
            goto out;
        }
        /* NEEDS_MORE_OUTPUT: loop for more room */
    }
    rc = 0;
out:
    BrotliDecoderDestroyInstance(st);
    if (rc < 0)
        sink_rollback(s);
    return rc;
}

/* ---- zstd ------------------------------------------------------------- */

static int dec_zstd(const unsigned char *in, size_t n, enc_sink *s, char *err,
                    size_t errsz)
{
    ZSTD_DCtx *dc = ZSTD_createDCtx();
    if (!dc) {
        enc_err(err, errsz, "zstd: cannot start decoder: out of memory");
        return -1;
    }
    int rc = -1;
    size_t zr = ZSTD_DCtx_setParameter(dc, ZSTD_d_windowLogMax, ENC_ZSTD_WINDOWLOG_MAX);
    if (ZSTD_isError(zr)) {
        enc_err(err, errsz, "zstd: %s", ZSTD_getErrorName(zr));
        goto out;
    }
    ZSTD_inBuffer ib = {in, n, 0};
    size_t last = 1; /* 0 once a frame is complete and flushed */
    for (;;) {
        char *op;
        size_t avail;
        if (sink_room(s, &op, &avail, "zstd", err, errsz) < 0)
            goto out;
        ZSTD_outBuffer ob = {op, avail, 0};
        last = ZSTD_decompressStream(dc, &ob, &ib);
        s->b->len += ob.pos;
        if (ZSTD_isError(last)) {
            if (ZSTD_getErrorCode(last) == ZSTD_error_frameParameter_windowTooLarge)
                enc_err(err, errsz, "zstd: window larger than %d MiB (RFC 9659 limit)",
                        1 << (ENC_ZSTD_WINDOWLOG_MAX - 20));
            else
                enc_err(err, errsz, "zstd: corrupt data (%s)", ZSTD_getErrorName(last));
            goto out;
        }
        if (ib.pos == ib.size) {
            if (last == 0)
                break;
            if (ob.pos < ob.size) {
                enc_err(err, errsz, "zstd: truncated data (stream ends early)");
                goto out;
            }
        }
        /* a finished frame with input left: zstd goes on with the next
         * concatenated frame, and rejects anything that is not one */
    }
    rc = 0;
out:
    ZSTD_freeDCtx(dc);
    if (rc < 0)
        sink_rollback(s);
    return rc;
}

/* ---- decoding --------------------------------------------------------- */

static int enc_decode_one(enc_kind k, const unsigned char *in, size_t n,
                          bytes *dst, size_t limit, char *err, size_t errsz)
{
    /* An empty body with a Content-Encoding (HEAD, 204, 304, a server that
     * labels every response) decodes to empty, as in mitmproxy, rather
     * than failing as a truncated stream. */
    if (n == 0)
        return sink_finish(&(enc_sink){dst, dst->len, limit, 0}, enc_name(k), err, errsz);
    enc_sink s = {dst, dst->len, limit, 0};
    switch (k) {
    case ENC_GZIP:
        s.hint = enc_hint(n, limit, 4);
        if (dec_gzip(in, n, &s, err, errsz) < 0)
            return -1;
        break;
    case ENC_DEFLATE:
        s.hint = enc_hint(n, limit, 4);
        if (dec_deflate(in, n, &s, err, errsz) < 0)
            return -1;
        break;
    case ENC_BR:
        s.hint = enc_hint(n, limit, 4);
        if (dec_br(in, n, &s, err, errsz) < 0)
            return -1;
        break;
    case ENC_ZSTD: {
        /* a frame usually states its size: size the buffer once.  The
         * header is the sender's claim, so only modest claims are trusted
         * up front; bigger bodies grow by doubling like the others. */
        unsigned long long cs = ZSTD_getFrameContentSize(in, n);
        s.hint = (cs != ZSTD_CONTENTSIZE_UNKNOWN && cs != ZSTD_CONTENTSIZE_ERROR &&
                  cs < limit && cs <= ENC_TRUSTED_SIZE)
                     ? (size_t)cs + 1
                     : enc_hint(n, limit, 4);
        if (dec_zstd(in, n, &s, err, errsz) < 0)
            return -1;
        break;
    }
    default:
        /* identity is not decoding: the body is already in memory, so the
         * limit (a defence against expansion) does not apply */
        if (bytes_append(dst, in, n) < 0) {
            enc_err(err, errsz, "out of memory");
            return -1;
        }
        return 0;
    }
    return sink_finish(&s, enc_name(k), err, errsz);
}

int encoding_decode_limit(const char *coding, const void *in, size_t n, bytes *out,
                          size_t limit, char *err, size_t errsz)
{
    enc_kind kinds[ENC_MAX_LAYERS];
    int layers = enc_parse(coding, kinds, err, errsz);
    if (layers < 0)
        return -1;
    if (layers == 0)
        return enc_decode_one(ENC_IDENTITY, in, n, out, limit, err, errsz);

    /* The last coding listed was applied last: undo it first.  Middle
     * layers go through scratch buffers; the final one writes straight
     * into `out`. */
    bytes cur = {0}, next = {0};
    const unsigned char *src = in;
    size_t srcn = n;
    int rc = -1;
    for (int i = layers - 1; i >= 0; i--) {
        bytes *dst = i == 0 ? out : &next;
        if (enc_decode_one(kinds[i], src, srcn, dst, limit, err, errsz) < 0)
            goto out;
        if (i > 0) {
            bytes t = cur;
            cur = next;
            next = t;
            bytes_reset(&next);
            src = (const unsigned char *)cur.p;
            srcn = cur.len;
        }
    }
    rc = 0;
out:
    bytes_free(&cur);
    bytes_free(&next);
    return rc;
}

int encoding_decode(const char *coding, const void *in, size_t n, bytes *out,
                    char *err, size_t errsz)
{
    return encoding_decode_limit(coding, in, n, out, ENCODING_MAX_DECODED, err, errsz);
}

/* ---- encoding --------------------------------------------------------- */

static int enc_deflate(const unsigned char *in, size_t n, int wbits, enc_sink *s,
                       const char *name, char *err, size_t errsz)
{
    z_stream zs;
    memset(&zs, 0, sizeof zs);
    if (deflateInit2(&zs, ENC_ZLIB_LEVEL, Z_DEFLATED, wbits, 8, Z_DEFAULT_STRATEGY) != Z_OK) {
        enc_err(err, errsz, "%s: cannot start encoder: out of memory", name);
        return -1;
    }
    if (n <= ULONG_MAX)
        s->hint = deflateBound(&zs, (uLong)n);
    size_t fed = 0;
    int rc = -1;
    for (;;) {
        if (zs.avail_in == 0 && fed < n) {
            size_t c = n - fed < ENC_ZLIB_CHUNK ? n - fed : ENC_ZLIB_CHUNK;
            zs.next_in = (Bytef *)(uintptr_t)(in + fed);
            zs.avail_in = (uInt)c;
            fed += c;
        }
        char *op;
        size_t avail;
        if (sink_room(s, &op, &avail, name, err, errsz) < 0)
            goto out;
        if (avail > UINT_MAX)
            avail = UINT_MAX;
        zs.next_out = (Bytef *)op;
        zs.avail_out = (uInt)avail;
        int zr = deflate(&zs, fed == n ? Z_FINISH : Z_NO_FLUSH);
        s->b->len += avail - zs.avail_out;
        if (zr == Z_STREAM_END)
            break;
        if (zr != Z_OK && zr != Z_BUF_ERROR) {
            enc_err(err, errsz, "%s: encoder failed (%s)", name,
                    zs.msg ? zs.msg : "zlib error");
            goto out;
        }
    }
    rc = 0;
out:
    deflateEnd(&zs);
    if (rc < 0)
        sink_rollback(s);
    return rc;
}

static int enc_encode_one(enc_kind k, const unsigned char *in, size_t n, bytes *dst,
                          char *err, size_t errsz)
{
    enc_sink s = {dst, dst->len, SIZE_MAX, 0};
    switch (k) {
    case ENC_GZIP:
        return enc_deflate(in, n, 16 + MAX_WBITS, &s, "gzip", err, errsz);
    case ENC_DEFLATE:
        /* zlib-wrapped, the form RFC 9110 names "deflate" */
        return enc_deflate(in, n, MAX_WBITS, &s, "deflate", err, errsz);
    case ENC_BR: {
        size_t bound = BrotliEncoderMaxCompressedSize(n);
        if (bound == 0) {
            enc_err(err, errsz, "br: input too large to encode");
            return -1;
        }
        s.hint = bound;
        char *op;
        size_t avail;
        if (sink_room(&s, &op, &avail, "br", err, errsz) < 0)
            return -1;
        size_t outn = avail;
        if (!BrotliEncoderCompress(ENC_BROTLI_QUALITY, BROTLI_DEFAULT_WINDOW,
                                   BROTLI_MODE_GENERIC, n, in, &outn, (uint8_t *)op)) {
            enc_err(err, errsz, "br: encoder failed");
            sink_rollback(&s);
            return -1;
        }
        dst->len += outn;
        dst->p[dst->len] = '\0';
        return 0;
    }
    case ENC_ZSTD: {
        s.hint = ZSTD_compressBound(n);
        char *op;
        size_t avail;
        if (sink_room(&s, &op, &avail, "zstd", err, errsz) < 0)
            return -1;
        size_t r = ZSTD_compress(op, avail, in, n, ENC_ZSTD_LEVEL);
        if (ZSTD_isError(r)) {
            enc_err(err, errsz, "zstd: encoder failed (%s)", ZSTD_getErrorName(r));
            sink_rollback(&s);
            return -1;
        }
        dst->len += r;
        dst->p[dst->len] = '\0';
        return 0;
    }
    default:
        if (bytes_append(dst, in, n) < 0) {
            enc_err(err, errsz, "out of memory");
            return -1;
        }
        return 0;
    }
}

int encoding_encode(const char *coding, const void *in, size_t n, bytes *out,
                    char *err, size_t errsz)
{
    enc_kind kinds[ENC_MAX_LAYERS];
    int layers = enc_parse(coding, kinds, err, errsz);
    if (layers < 0)
        return -1;
    if (layers == 0)
        return enc_encode_one(ENC_IDENTITY, in, n, out, err, errsz);

    bytes cur = {0}, next = {0};
    const unsigned char *src = in;
    size_t srcn = n;
    int rc = -1;
    for (int i = 0; i < layers; i++) {
        bytes *dst = i == layers - 1 ? out : &next;
        if (enc_encode_one(kinds[i], src, srcn, dst, err, errsz) < 0)
            goto out;
        if (i < layers - 1) {
            bytes t = cur;
            cur = next;
            next = t;
            bytes_reset(&next);
            src = (const unsigned char *)cur.p;
            srcn = cur.len;
        }
    }
    rc = 0;
out:
    bytes_free(&cur);
    bytes_free(&next);
    return rc;
}
