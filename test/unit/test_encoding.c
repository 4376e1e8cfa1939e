/* Unit tests for content-codings: round trips, stacking, bytes made by real
 * tools, corrupt and truncated input, unknown codings, and compression
 * bombs that must stop at the decode limit. */
#include "encoding.h"
#include "t.h"

#include <stdint.h>

#include <brotli/encode.h>
#include <zlib.h>
#include <zstd.h>

/* "Hello from Python's gzip module!\n", compressed by Python 3.11
 * (gzip.compress(mtime=0), zlib.compress, zlib raw wbits=-15,
 * brotli.compress, zstandard) and by the gzip(1) and zstd(1) tools. */
static const char hello[] = "Hello from Python's gzip module!\n";
static const unsigned char py_gzip[] = {
    0x1f, 0x8b, 0x08, 0x00, 0x00, 0x00, 0x00, 0x00, 0x02, 0x03, 0xf3, 0x48,
    0xcd, 0xc9, 0xc9, 0x57, 0x48, 0x2b, 0xca, 0xcf, 0x55, 0x08, 0xa8, 0x2c,
    0xc9, 0xc8, 0xcf, 0x53, 0x2f, 0x56, 0x48, 0xaf, 0xca, 0x2c, 0x50, 0xc8,
    0xcd, 0x4f, 0x29, 0xcd, 0x49, 0x55, 0xe4, 0x02, 0x00, 0x45, 0x68, 0x54,
    0xcd, 0x21, 0x00, 0x00, 0x00,
};
static const unsigned char py_zlib[] = {
    0x78, 0x9c, 0xf3, 0x48, 0xcd, 0xc9, 0xc9, 0x57, 0x48, 0x2b, 0xca, 0xcf,
    0x55, 0x08, 0xa8, 0x2c, 0xc9, 0xc8, 0xcf, 0x53, 0x2f, 0x56, 0x48, 0xaf,
    0xca, 0x2c, 0x50, 0xc8, 0xcd, 0x4f, 0x29, 0xcd, 0x49, 0x55, 0xe4, 0x02,
    0x00, 0xcc, 0xee, 0x0b, 0xb0,
};
static const unsigned char py_raw_deflate[] = {
    0xf3, 0x48, 0xcd, 0xc9, 0xc9, 0x57, 0x48, 0x2b, 0xca, 0xcf, 0x55, 0x08,
    0xa8, 0x2c, 0xc9, 0xc8, 0xcf, 0x53, 0x2f, 0x56, 0x48, 0xaf, 0xca, 0x2c,
    0x50, 0xc8, 0xcd, 0x4f, 0x29, 0xcd, 0x49, 0x55, 0xe4, 0x02, 0x00,
};
static const unsigned char py_brotli[] = {
    0x1b, 0x20, 0x00, 0xf8, 0xe5, 0x1b, 0xfb, 0xce, 0x62, 0x59, 0xd7, 0x74,
    0x1e, 0x0e, 0x8a, 0x43, 0x2a, 0x22, 0x09, 0x43, 0x45, 0x04, 0x4a, 0xa4,
    0xba, 0x46, 0x6f, 0xbd, 0x92, 0x07, 0xed, 0xa3, 0x51, 0x04,
};
static const unsigned char py_zstd[] = {
    0x28, 0xb5, 0x2f, 0xfd, 0x20, 0x21, 0x09, 0x01, 0x00, 0x48, 0x65, 0x6c,
    0x6c, 0x6f, 0x20, 0x66, 0x72, 0x6f, 0x6d, 0x20, 0x50, 0x79, 0x74, 0x68,
    0x6f, 0x6e, 0x27, 0x73, 0x20, 0x67, 0x7a, 0x69, 0x70, 0x20, 0x6d, 0x6f,
    0x64, 0x75, 0x6c, 0x65, 0x21, 0x0a,
};
/* zstd(1) adds a checksum and leaves the content size out */
static const unsigned char cli_zstd[] = {
    0x28, 0xb5, 0x2f, 0xfd, 0x04, 0x58, 0x09, 0x01, 0x00, 0x48, 0x65, 0x6c,
    0x6c, 0x6f, 0x20, 0x66, 0x72, 0x6f, 0x6d, 0x20, 0x50, 0x79, 0x74, 0x68,
    0x6f, 0x6e, 0x27, 0x73, 0x20, 0x67, 0x7a, 0x69, 0x70, 0x20, 0x6d, 0x6f,
    0x64, 0x75, 0x6c, 0x65, 0x21, 0x0a, 0x51, 0xe3, 0x5e, 0xc5,
};
/* brotli.compress(gzip.compress(b"stacked: gzip first, then br\n")), i.e.
 * what a server sends with "Content-Encoding: gzip, br" */
static const char stacked_msg[] = "stacked: gzip first, then br\n";
static const unsigned char py_gzip_br[] = {
    0x0b, 0x18, 0x80, 0x1f, 0x8b, 0x08, 0x00, 0x00, 0x00, 0x00, 0x00, 0x02,
    0x03, 0x2b, 0x2e, 0x49, 0x4c, 0xce, 0x4e, 0x4d, 0xb1, 0x52, 0x48, 0xaf,
    0xca, 0x2c, 0x50, 0x48, 0xcb, 0x2c, 0x2a, 0x2e, 0xd1, 0x51, 0x28, 0xc9,
    0x48, 0xcd, 0x53, 0x48, 0x2a, 0xe2, 0x02, 0x00, 0xe3, 0x8f, 0x5a, 0x0e,
    0x1d, 0x00, 0x00, 0x00, 0x03,
};

static const char *const codings[] = {"gzip", "deflate", "br", "zstd"};
#define NCODINGS (sizeof codings / sizeof codings[0])

/* decode and compare with the expected text; returns 1 when equal */
static int decodes_to(const char *coding, const void *in, size_t n, const void *want,
                      size_t wn)
{
    bytes out = {0};
    char err[256] = "";
    int rc = encoding_decode(coding, in, n, &out, err, sizeof err);
    int ok = rc == 0 && out.len == wn && (wn == 0 || memcmp(out.p, want, wn) == 0);
    if (!ok)
        fprintf(stderr, "  decode %s: rc=%d len=%zu err=%s\n", coding, rc, out.len, err);
    bytes_free(&out);
    return ok;
}

static void real_tool_bytes(void)
{
    size_t hn = strlen(hello);
    T_CHECK(decodes_to("gzip", py_gzip, sizeof py_gzip, hello, hn));
    T_CHECK(decodes_to("x-gzip", py_gzip, sizeof py_gzip, hello, hn));
    T_CHECK(decodes_to("deflate", py_zlib, sizeof py_zlib, hello, hn));
    T_CHECK(decodes_to("deflate", py_raw_deflate, sizeof py_raw_deflate, hello, hn));
    T_CHECK(decodes_to("br", py_brotli, sizeof py_brotli, hello, hn));
    T_CHECK(decodes_to("zstd", py_zstd, sizeof py_zstd, hello, hn));
    T_CHECK(decodes_to("zstd", cli_zstd, sizeof cli_zstd, hello, hn));
    T_CHECK(decodes_to("gzip, br", py_gzip_br, sizeof py_gzip_br, stacked_msg,
                       strlen(stacked_msg)));
    /* the wrong order must not decode */
    T_CHECK(!decodes_to("br, gzip", py_gzip_br, sizeof py_gzip_br, stacked_msg,
                        strlen(stacked_msg)));
}

/* deterministic pseudo-random bytes (xorshift64) */
static void fill_random(unsigned char *p, size_t n, uint64_t seed)
{
    uint64_t x = seed | 1;
    for (size_t i = 0; i < n; i++) {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        p[i] = (unsigned char)x;
    }
}

static void fill_text(unsigned char *p, size_t n)
{
    static const char words[] = "<li class=\"item\">mitmlua flow %zu</li>\n";
    size_t off = 0, i = 0;
    while (off < n) {
        char line[64];
        int k = snprintf(line, sizeof line, words, i++);
        size_t c = (size_t)k < n - off ? (size_t)k : n - off;
        memcpy(p + off, line, c);
        off += c;
    }
}

static int round_trip(const char *coding, const unsigned char *data, size_t n,
                      size_t *enc_len)
{
    bytes enc = {0}, dec = {0};
    char err[256] = "";
    int ok = 0;
    if (encoding_encode(coding, data, n, &enc, err, sizeof err) < 0) {
        fprintf(stderr, "  encode %s (%zu): %s\n", coding, n, err);
        goto out;
    }
    if (encoding_decode(coding, enc.p, enc.len, &dec, err, sizeof err) < 0) {
        fprintf(stderr, "  decode %s (%zu): %s\n", coding, n, err);
        goto out;
    }
    ok = dec.len == n && (n == 0 || memcmp(dec.p, data, n) == 0);
    /* bytes promises a NUL after the content */
    ok = ok && (dec.p == NULL || dec.p[dec.len] == '\0');
    if (enc_len)
        *enc_len = enc.len;
out:
    bytes_free(&enc);
    bytes_free(&dec);
    return ok;
}

static void round_trips(void)
{
    size_t big = (size_t)1 << 20;
    unsigned char *rnd = malloc(big), *txt = malloc(big);
    T_CHECK(rnd && txt);
    if (!rnd || !txt)
        goto out;
    fill_random(rnd, big, 42);
    fill_text(txt, big);
    for (size_t i = 0; i < NCODINGS; i++) {
        size_t el = 0;
        T_CHECK(round_trip(codings[i], (const unsigned char *)"", 0, &el));
        T_CHECK(el > 0); /* an empty body still gets a valid stream */
        T_CHECK(round_trip(codings[i], (const unsigned char *)"a", 1, NULL));
        T_CHECK(round_trip(codings[i], rnd, big, NULL));
        T_CHECK(round_trip(codings[i], txt, big, &el));
        T_CHECK(el < big / 10); /* repetitive text really was compressed */
    }
    T_CHECK(round_trip("identity", txt, big, NULL));
    T_CHECK(round_trip("", txt, 100, NULL));
    T_CHECK(round_trip(NULL, txt, 100, NULL));
out:
    free(rnd);
    free(txt);
}

static void names_and_lists(void)
{
    size_t hn = strlen(hello);
    /* case-insensitive, optional whitespace, empty list elements */
    T_CHECK(decodes_to("GZIP", py_gzip, sizeof py_gzip, hello, hn));
    T_CHECK(decodes_to(" Br\t", py_brotli, sizeof py_brotli, hello, hn));
    T_CHECK(decodes_to("identity, zstd", py_zstd, sizeof py_zstd, hello, hn));
    T_CHECK(decodes_to(", ,ZsTd, IDENTITY", py_zstd, sizeof py_zstd, hello, hn));
    T_CHECK(decodes_to("identity", hello, hn, hello, hn));
    T_CHECK(encoding_supported("gzip, deflate, br, zstd, identity, x-gzip"));
    T_CHECK(encoding_supported(""));
    T_CHECK(encoding_supported(NULL));
    T_CHECK(!encoding_supported("compress"));
    T_CHECK(!encoding_supported("gzip, sdch"));
    T_CHECK(!encoding_supported("gzipx"));
    T_CHECK(!encoding_supported("gzip;q=1"));

    /* output is appended, not replaced */
    bytes out = {0};
    char err[256];
    bytes_set(&out, "X", 1);
    T_CHECK(encoding_decode("gzip", py_gzip, sizeof py_gzip, &out, err, sizeof err) == 0);
    T_CHECK(out.len == 1 + hn && out.p[0] == 'X' && memcmp(out.p + 1, hello, hn) == 0);
    bytes_free(&out);
}

static void stacked(void)
{
    const char *lists[] = {"gzip, br", "br, gzip", "deflate,zstd", "zstd, gzip, br, deflate"};
    unsigned char txt[5000];
    fill_text(txt, sizeof txt);
    for (size_t i = 0; i < sizeof lists / sizeof lists[0]; i++)
        T_CHECK(round_trip(lists[i], txt, sizeof txt, NULL));

    /* "gzip, br" means gzip was applied first: undoing br alone must leave
     * a gzip stream */
    bytes enc = {0}, mid = {0};
    char err[256];
    T_CHECK(encoding_encode("gzip, br", txt, sizeof txt, &enc, err, sizeof err) == 0);
    T_CHECK(encoding_decode("br", enc.p, enc.len, &mid, err, sizeof err) == 0);
    T_CHECK(mid.len > 2 && (unsigned char)mid.p[0] == 0x1f &&
            (unsigned char)mid.p[1] == 0x8b);
    T_CHECK(decodes_to("gzip", mid.p, mid.len, txt, sizeof txt));
    bytes_free(&enc);
    bytes_free(&mid);

    /* a nine-layer list is refused before any work */
    bytes out = {0};
    err[0] = '\0';
    T_CHECK(encoding_decode("gzip,gzip,gzip,gzip,gzip,gzip,gzip,gzip,gzip", py_gzip,
                            sizeof py_gzip, &out, err, sizeof err) < 0);
    T_CHECK(strstr(err, "too many") != NULL);
    T_CHECK(out.len == 0);
    bytes_free(&out);
}

static void unknown_coding(void)
{
    bytes out = {0};
    char err[256] = "";
    T_CHECK(encoding_decode("compress", "abc", 3, &out, err, sizeof err) < 0);
    T_STREQ(err, "unsupported content-coding \"compress\"");
    err[0] = '\0';
    T_CHECK(encoding_decode("gzip, Foo-Bar ", py_gzip, sizeof py_gzip, &out, err,
                            sizeof err) < 0);
    T_STREQ(err, "unsupported content-coding \"Foo-Bar\"");
    err[0] = '\0';
    T_CHECK(encoding_encode("br, x-custom", "abc", 3, &out, err, sizeof err) < 0);
    T_STREQ(err, "unsupported content-coding \"x-custom\"");
    /* control bytes from the wire are not echoed */
    err[0] = '\0';
    T_CHECK(encoding_decode("a\x1b[31mb", "abc", 3, &out, err, sizeof err) < 0);
    T_CHECK(strchr(err, '\x1b') == NULL);
    T_CHECK(out.len == 0);
    bytes_free(&out);
}

/* Every way a body can be broken: the call fails, says which coding and
 * why in one line, and leaves `out` as it was. */
static void expect_fail(const char *coding, const void *in, size_t n, const char *needle)
{
    bytes out = {0};
    char err[256] = "";
    bytes_set(&out, "keep", 4);
    int rc = encoding_decode(coding, in, n, &out, err, sizeof err);
    T_CHECK(rc < 0);
    T_CHECK(out.len == 4 && memcmp(out.p, "keep", 5) == 0);
    T_CHECK(strchr(err, '\n') == NULL);
    if (rc == 0 || !strstr(err, needle)) {
        fprintf(stderr, "  %s: got \"%s\", wanted \"%s\"\n", coding, err, needle);
        t_cur_failed = 1;
    }
    bytes_free(&out);
}

static void corrupt_input(void)
{
    unsigned char buf[256];
    unsigned char txt[4000];
    fill_text(txt, sizeof txt);

    expect_fail("gzip", "hello world", 11, "gzip: corrupt data");
    expect_fail("br", "hello world", 11, "br: ");
    expect_fail("zstd", "hello world", 11, "zstd: corrupt data");
    expect_fail("deflate", "\xff\xff\xff\xff", 4, "deflate: corrupt data");

    /* truncated streams of each coding */
    for (size_t i = 0; i < NCODINGS; i++) {
        bytes enc = {0};
        char err[256];
        T_CHECK(encoding_encode(codings[i], txt, sizeof txt, &enc, err, sizeof err) == 0);
        char want[64];
        snprintf(want, sizeof want, "%s: truncated", codings[i]);
        expect_fail(codings[i], enc.p, enc.len - 3, want);
        expect_fail(codings[i], enc.p, enc.len / 2, want);
        /* trailing garbage after a complete stream */
        bytes_append(&enc, "JUNK", 4);
        expect_fail(codings[i], enc.p, enc.len, codings[i]);
        bytes_free(&enc);
    }

    /* a flipped bit inside gzip data: the CRC or the block structure catches it */
    memcpy(buf, py_gzip, sizeof py_gzip);
    buf[20] ^= 0x10;
    expect_fail("gzip", buf, sizeof py_gzip, "gzip: corrupt data");
    memcpy(buf, py_zlib, sizeof py_zlib);
    buf[sizeof py_zlib - 1] ^= 0x01; /* adler32 */
    expect_fail("deflate", buf, sizeof py_zlib, "deflate: corrupt data");
    memcpy(buf, py_zstd, sizeof py_zstd);
    buf[4] = 0xff; /* frame header descriptor with reserved bit */
    expect_fail("zstd", buf, sizeof py_zstd, "zstd:");
    /* a stacked list fails at the layer that is broken */
    expect_fail("gzip, br", py_brotli, sizeof py_brotli, "gzip: corrupt data");
}

static void gzip_members(void)
{
    /* RFC 1952: several members concatenated are one body; zero padding
     * after the last one is tolerated, anything else is not */
    unsigned char two[2 * sizeof py_gzip + 8];
    memcpy(two, py_gzip, sizeof py_gzip);
    memcpy(two + sizeof py_gzip, py_gzip, sizeof py_gzip);
    memset(two + 2 * sizeof py_gzip, 0, 8);
    char want[2 * sizeof hello];
    snprintf(want, sizeof want, "%s%s", hello, hello);
    T_CHECK(decodes_to("gzip", two, 2 * sizeof py_gzip, want, strlen(want)));
    T_CHECK(decodes_to("gzip", two, sizeof two, want, strlen(want)));
    two[sizeof two - 1] = 'x';
    expect_fail("gzip", two, sizeof two, "gzip:");

    /* concatenated zstd frames are one body too */
    unsigned char zz[2 * sizeof py_zstd];
    memcpy(zz, py_zstd, sizeof py_zstd);
    memcpy(zz + sizeof py_zstd, py_zstd, sizeof py_zstd);
    T_CHECK(decodes_to("zstd", zz, sizeof zz, want, strlen(want)));
}

static void empty_bodies(void)
{
    /* HEAD / 204 / 304 answers often carry Content-Encoding with no body */
    for (size_t i = 0; i < NCODINGS; i++)
        T_CHECK(decodes_to(codings[i], "", 0, "", 0));
    T_CHECK(decodes_to("gzip, br", "", 0, "", 0));
}

/* ---- bombs ------------------------------------------------------------ */

static int zeros_gzip(size_t total, bytes *out)
{
    static unsigned char zero[1 << 16];
    unsigned char obuf[1 << 16];
    z_stream zs;
    memset(&zs, 0, sizeof zs);
    if (deflateInit2(&zs, 1, Z_DEFLATED, 16 + MAX_WBITS, 8, Z_DEFAULT_STRATEGY) != Z_OK)
        return -1;
    size_t left = total;
    int zr;
    do {
        size_t c = left < sizeof zero ? left : sizeof zero;
        zs.next_in = zero;
        zs.avail_in = (uInt)c;
        left -= c;
        do {
            zs.next_out = obuf;
            zs.avail_out = sizeof obuf;
            zr = deflate(&zs, left ? Z_NO_FLUSH : Z_FINISH);
            bytes_append(out, obuf, sizeof obuf - zs.avail_out);
        } while (zs.avail_out == 0);
    } while (left);
    deflateEnd(&zs);
    return zr == Z_STREAM_END ? 0 : -1;
}

static int zeros_zstd(size_t total, bytes *out)
{
    static unsigned char zero[1 << 16];
    unsigned char obuf[1 << 16];
    ZSTD_CCtx *cc = ZSTD_createCCtx();
    if (!cc)
        return -1;
    ZSTD_CCtx_setParameter(cc, ZSTD_c_compressionLevel, 1);
    size_t left = total, r;
    do {
        size_t c = left < sizeof zero ? left : sizeof zero;
        ZSTD_inBuffer ib = {zero, c, 0};
        left -= c;
        ZSTD_EndDirective end = left ? ZSTD_e_continue : ZSTD_e_end;
        do {
            ZSTD_outBuffer ob = {obuf, sizeof obuf, 0};
            r = ZSTD_compressStream2(cc, &ob, &ib, end);
            bytes_append(out, obuf, ob.pos);
        } while (!ZSTD_isError(r) && (end == ZSTD_e_end ? r != 0 : ib.pos < ib.size));
    } while (left && !ZSTD_isError(r));
    ZSTD_freeCCtx(cc);
    return ZSTD_isError(r) ? -1 : 0;
}

static int zeros_br(size_t total, bytes *out)
{
    static unsigned char zero[1 << 16];
    unsigned char obuf[1 << 16];
    BrotliEncoderState *st = BrotliEncoderCreateInstance(NULL, NULL, NULL);
    if (!st)
        return -1;
    BrotliEncoderSetParameter(st, BROTLI_PARAM_QUALITY, 1);
    size_t left = total;
    int ok = 1;
    do {
        size_t c = left < sizeof zero ? left : sizeof zero;
        const uint8_t *nin = zero;
        size_t ain = c;
        left -= c;
        BrotliEncoderOperation op = left ? BROTLI_OPERATION_PROCESS : BROTLI_OPERATION_FINISH;
        do {
            uint8_t *nout = obuf;
            size_t aout = sizeof obuf;
            ok = BrotliEncoderCompressStream(st, op, &ain, &nin, &aout, &nout, NULL);
            bytes_append(out, obuf, sizeof obuf - aout);
        } while (ok && (ain || BrotliEncoderHasMoreOutput(st) ||
                        (op == BROTLI_OPERATION_FINISH && !BrotliEncoderIsFinished(st))));
    } while (left && ok);
    BrotliEncoderDestroyInstance(st);
    return ok ? 0 : -1;
}

/* `total` bytes of zeros squeezed into a small body must fail to decode at
 * `limit` (0 = encoding_decode's default), cleanly and without the output
 * buffer ever growing past the limit. */
static void bomb_one(const char *coding, int (*make)(size_t, bytes *), size_t total,
                     size_t limit)
{
    bytes bomb = {0}, out = {0};
    char err[256] = "";
    T_CHECK(make(total, &bomb) == 0);
    T_CHECK(bomb.len < total / 100);
    int rc = limit ? encoding_decode_limit(coding, bomb.p, bomb.len, &out, limit, err,
                                           sizeof err)
                   : encoding_decode(coding, bomb.p, bomb.len, &out, err, sizeof err);
    size_t lim = limit ? limit : ENCODING_MAX_DECODED;
    char want[64];
    snprintf(want, sizeof want, "exceeds the %zu MiB limit", lim >> 20);
    T_CHECK(rc < 0);
    T_CHECK(strstr(err, want) != NULL);
    T_CHECK(strncmp(err, coding, strlen(coding)) == 0);
    T_CHECK(out.len == 0);
    /* the buffer never grew past the limit (+1 probe byte, +1 NUL) */
    T_CHECK(out.cap <= lim + 2);
    if (rc == 0 || !strstr(err, want))
        fprintf(stderr, "  %s bomb: rc=%d err=%s\n", coding, rc, err);
    bytes_free(&out);

    /* the same bomb inside a second layer stops as well (a smaller limit
     * keeps the test fast: the code path is the same) */
    bytes outer = {0};
    T_CHECK(encoding_encode("br", bomb.p, bomb.len, &outer, err, sizeof err) == 0);
    char list[32];
    snprintf(list, sizeof list, "%s, br", coding);
    T_CHECK(encoding_decode_limit(list, outer.p, outer.len, &out, (size_t)8 << 20, err,
                                  sizeof err) < 0);
    T_CHECK(strstr(err, "exceeds the 8 MiB limit") != NULL);
    T_CHECK(strncmp(err, coding, strlen(coding)) == 0);
    T_CHECK(out.cap <= ((size_t)8 << 20) + 2);
    bytes_free(&outer);
    bytes_free(&out);
    bytes_free(&bomb);
}

static void bombs(void)
{
    /* the real default limit for the two most common codings; brotli's
     * decoder is the same loop, checked at a smaller scale for speed */
    bomb_one("gzip", zeros_gzip, (size_t)300 << 20, 0);
    bomb_one("zstd", zeros_zstd, (size_t)300 << 20, 0);
    bomb_one("br", zeros_br, (size_t)64 << 20, (size_t)32 << 20);
}

static void limit_boundary(void)
{
    /* exactly `limit` bytes decode; one more fails, for every coding */
    unsigned char txt[10000];
    fill_text(txt, sizeof txt);
    for (size_t i = 0; i < NCODINGS; i++) {
        bytes enc = {0}, out = {0};
        char err[256] = "";
        T_CHECK(encoding_encode(codings[i], txt, sizeof txt, &enc, err, sizeof err) == 0);
        T_CHECK(encoding_decode_limit(codings[i], enc.p, enc.len, &out, sizeof txt, err,
                                      sizeof err) == 0);
        T_CHECK(out.len == sizeof txt && memcmp(out.p, txt, sizeof txt) == 0);
        bytes_reset(&out);
        T_CHECK(encoding_decode_limit(codings[i], enc.p, enc.len, &out, sizeof txt - 1,
                                      err, sizeof err) < 0);
        T_CHECK(strstr(err, "exceeds the 9999 byte limit") != NULL);
        T_CHECK(out.len == 0);
        bytes_free(&enc);
        bytes_free(&out);
    }
    /* identity is a copy, not a decoding: no limit */
    bytes out = {0};
    char err[64];
    T_CHECK(encoding_decode_limit("identity", txt, sizeof txt, &out, 10, err, sizeof err) == 0);
    T_CHECK(out.len == sizeof txt);
    bytes_free(&out);
}

static void zstd_window(void)
{
    /* a frame that asks for a 32 MiB window is refused (RFC 9659 allows
     * 8 MiB), even though its content is tiny */
    ZSTD_CCtx *cc = ZSTD_createCCtx();
    T_CHECK(cc != NULL);
    if (!cc)
        return;
    ZSTD_CCtx_setParameter(cc, ZSTD_c_windowLog, 25);
    unsigned char obuf[256];
    size_t total = 0;
    ZSTD_inBuffer ib = {hello, strlen(hello), 0};
    ZSTD_outBuffer ob = {obuf, sizeof obuf, 0};
    /* streaming without a pledged size keeps the declared window */
    size_t r = ZSTD_compressStream2(cc, &ob, &ib, ZSTD_e_continue);
    ZSTD_inBuffer none = {NULL, 0, 0};
    if (!ZSTD_isError(r))
        r = ZSTD_compressStream2(cc, &ob, &none, ZSTD_e_end);
    T_CHECK(!ZSTD_isError(r) && r == 0);
    total = ob.pos;
    ZSTD_freeCCtx(cc);
    expect_fail("zstd", obuf, total, "window larger than 8 MiB");
}

int main(void)
{
    T_RUN(real_tool_bytes);
    T_RUN(round_trips);
    T_RUN(names_and_lists);
    T_RUN(stacked);
    T_RUN(unknown_coding);
    T_RUN(corrupt_input);
    T_RUN(gzip_members);
    T_RUN(empty_bodies);
    T_RUN(limit_boundary);
    T_RUN(zstd_window);
    T_RUN(bombs);
    T_DONE();
}
