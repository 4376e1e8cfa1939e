/* dump_codec.c — the byte-level pieces of the native dump: CRC32C and the
 * tagged record encoding of a flow (protobuf-like: key = tag << 3 | wire
 * type, so a reader skips fields it does not know).  No I/O, no state. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "dump.h"

/* ---- CRC32C ------------------------------------------------------------ */

/* Table for the reflected Castagnoli polynomial 0x82F63B78, generated from
 * the polynomial (RFC 3720 B.4), one byte at a time. */
static const uint32_t crc32c_tab[256] = {
    0x00000000u, 0xf26b8303u, 0xe13b70f7u, 0x1350f3f4u, 0xc79a971fu, 0x35f1141cu,
    0x26a1e7e8u, 0xd4ca64ebu, 0x8ad958cfu, 0x78b2dbccu, 0x6be22838u, 0x9989ab3bu,
    0x4d43cfd0u, 0xbf284cd3u, 0xac78bf27u, 0x5e133c24u, 0x105ec76fu, 0xe235446cu,
    0xf165b798u, 0x030e349bu, 0xd7c45070u, 0x25afd373u, 0x36ff2087u, 0xc494a384u,
    0x9a879fa0u, 0x68ec1ca3u, 0x7bbcef57u, 0x89d76c54u, 0x5d1d08bfu, 0xaf768bbcu,
    0xbc267848u, 0x4e4dfb4bu, 0x20bd8edeu, 0xd2d60dddu, 0xc186fe29u, 0x33ed7d2au,
    0xe72719c1u, 0x154c9ac2u, 0x061c6936u, 0xf477ea35u, 0xaa64d611u, 0x580f5512u,
    0x4b5fa6e6u, 0xb93425e5u, 0x6dfe410eu, 0x9f95c20du, 0x8cc531f9u, 0x7eaeb2fau,
    0x30e349b1u, 0xc288cab2u, 0xd1d83946u, 0x23b3ba45u, 0xf779deaeu, 0x05125dadu,
    0x1642ae59u, 0xe4292d5au, 0xba3a117eu, 0x4851927du, 0x5b016189u, 0xa96ae28au,
    0x7da08661u, 0x8fcb0562u, 0x9c9bf696u, 0x6ef07595u, 0x417b1dbcu, 0xb3109ebfu,
    0xa0406d4bu, 0x522bee48u, 0x86e18aa3u, 0x748a09a0u, 0x67dafa54u, 0x95b17957u,
    0xcba24573u, 0x39c9c670u, 0x2a993584u, 0xd8f2b687u, 0x0c38d26cu, 0xfe53516fu,
    0xed03a29bu, 0x1f682198u, 0x5125dad3u, 0xa34e59d0u, 0xb01eaa24u, 0x42752927u,
    0x96bf4dccu, 0x64d4cecfu, 0x77843d3bu, 0x85efbe38u, 0xdbfc821cu, 0x2997011fu,
    0x3ac7f2ebu, 0xc8ac71e8u, 0x1c661503u, 0xee0d9600u, 0xfd5d65f4u, 0x0f36e6f7u,
    0x61c69362u, 0x93ad1061u, 0x80fde395u, 0x72966096u, 0xa65c047du, 0x5437877eu,
    0x4767748au, 0xb50cf789u, 0xeb1fcbadu, 0x197448aeu, 0x0a24bb5au, 0xf84f3859u,
    0x2c855cb2u, 0xdeeedfb1u, 0xcdbe2c45u, 0x3fd5af46u, 0x7198540du, 0x83f3d70eu,
    0x90a324fau, 0x62c8a7f9u, 0xb602c312u, 0x44694011u, 0x5739b3e5u, 0xa55230e6u,
    0xfb410cc2u, 0x092a8fc1u, 0x1a7a7c35u, 0xe811ff36u, 0x3cdb9bddu, 0xceb018deu,
    0xdde0eb2au, 0x2f8b6829u, 0x82f63b78u, 0x709db87bu, 0x63cd4b8fu, 0x91a6c88cu,
    0x456cac67u, 0xb7072f64u, 0xa457dc90u, 0x563c5f93u, 0x082f63b7u, 0xfa44e0b4u,
    0xe9141340u, 0x1b7f9043u, 0xcfb5f4a8u, 0x3dde77abu, 0x2e8e845fu, 0xdce5075cu,
    0x92a8fc17u, 0x60c37f14u, 0x73938ce0u, 0x81f80fe3u, 0x55326b08u, 0xa759e80bu,
    0xb4091bffu, 0x466298fcu, 0x1871a4d8u, 0xea1a27dbu, 0xf94ad42fu, 0x0b21572cu,
    0xdfeb33c7u, 0x2d80b0c4u, 0x3ed04330u, 0xccbbc033u, 0xa24bb5a6u, 0x502036a5u,
    0x4370c551u, 0xb11b4652u, 0x65d122b9u, 0x97baa1bau, 0x84ea524eu, 0x7681d14du,
    0x2892ed69u, 0xdaf96e6au, 0xc9a99d9eu, 0x3bc21e9du, 0xef087a76u, 0x1d63f975u,
    0x0e330a81u, 0xfc588982u, 0xb21572c9u, 0x407ef1cau, 0x532e023eu, 0xa145813du,
    0x758fe5d6u, 0x87e466d5u, 0x94b49521u, 0x66df1622u, 0x38cc2a06u, 0xcaa7a905u,
    0xd9f75af1u, 0x2b9cd9f2u, 0xff56bd19u, 0x0d3d3e1au, 0x1e6dcdeeu, 0xec064eedu,
    0xc38d26c4u, 0x31e6a5c7u, 0x22b65633u, 0xd0ddd530u, 0x0417b1dbu, 0xf67c32d8u,
    0xe52cc12cu, 0x1747422fu, 0x49547e0bu, 0xbb3ffd08u, 0xa86f0efcu, 0x5a048dffu,
    0x8ecee914u, 0x7ca56a17u, 0x6ff599e3u, 0x9d9e1ae0u, 0xd3d3e1abu, 0x21b862a8u,
    0x32e8915cu, 0xc083125fu, 0x144976b4u, 0xe622f5b7u, 0xf5720643u, 0x07198540u,
    0x590ab964u, 0xab613a67u, 0xb831c993u, 0x4a5a4a90u, 0x9e902e7bu, 0x6cfbad78u,
    0x7fab5e8cu, 0x8dc0dd8fu, 0xe330a81au, 0x115b2b19u, 0x020bd8edu, 0xf0605beeu,
    0x24aa3f05u, 0xd6c1bc06u, 0xc5914ff2u, 0x37faccf1u, 0x69e9f0d5u, 0x9b8273d6u,
    0x88d28022u, 0x7ab90321u, 0xae7367cau, 0x5c18e4c9u, 0x4f48173du, 0xbd23943eu,
    0xf36e6f75u, 0x0105ec76u, 0x12551f82u, 0xe03e9c81u, 0x34f4f86au, 0xc69f7b69u,
    0xd5cf889du, 0x27a40b9eu, 0x79b737bau, 0x8bdcb4b9u, 0x988c474du, 0x6ae7c44eu,
    0xbe2da0a5u, 0x4c4623a6u, 0x5f16d052u, 0xad7d5351u
};

static uint32_t crc32c_sw(uint32_t crc, const unsigned char *p, size_t n)
{
    while (n--)
        crc = crc32c_tab[(crc ^ *p++) & 0xff] ^ (crc >> 8);
    return crc;
}

#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
/* SSE4.2 has a CRC32C instruction: ~10x the table.  Chosen at run time
 * because the build must run on any x86-64. */
__attribute__((target("sse4.2"))) static uint32_t crc32c_hw(uint32_t crc,
                                                            const unsigned char *p,
                                                            size_t n)
{
    uint64_t c = crc;
    while (n && ((uintptr_t)p & 7)) {
        c = __builtin_ia32_crc32qi((uint32_t)c, *p++);
        n--;
    }
    while (n >= 8) {
        uint64_t v;
        memcpy(&v, p, 8);
        c = __builtin_ia32_crc32di(c, v);
        p += 8;
        n -= 8;
    }
    while (n--)
        c = __builtin_ia32_crc32qi((uint32_t)c, *p++);
    return (uint32_t)c;
}
#endif

uint32_t dump_crc32c(uint32_t crc, const void *data, size_t n)
{
    const unsigned char *p = data;
    crc = ~crc;
#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
    if (__builtin_cpu_supports("sse4.2"))
        return ~crc32c_hw(crc, p, n);
#endif
    return ~crc32c_sw(crc, p, n);
}

/* ---- encoding ---------------------------------------------------------- */

enum { WT_VARINT = 0, WT_FIXED64 = 1, WT_BYTES = 2 };

/* Field tags.  Numbers are the format: never reuse or renumber one. */
enum {
    F_ID = 1, F_TYPE = 2, F_CLIENT = 3, F_SERVER = 4, F_REQUEST = 5,
    F_RESPONSE = 6, F_ERROR = 7, F_WSMSG = 8, F_WEBSOCKET = 9,
    F_WSCLOSE = 10, F_METADATA = 11, F_MARKED = 12, F_COMMENT = 13,
    F_REPLAY = 14, F_KILLED = 15, F_CREATED = 16, F_WSBYCLIENT = 17,
    F_WSREASON = 18,
};
enum {
    C_ADDR_HOST = 1, C_ADDR_PORT = 2, C_PEER_HOST = 3, C_PEER_PORT = 4,
    C_SNI = 5, C_ALPN = 6, C_TLS_VERSION = 7, C_CIPHER = 8, C_CERT_SUBJECT = 9,
    C_CERT_ISSUER = 10, C_TLS = 11, C_TS_START = 12, C_TS_TCP = 13,
    C_TS_TLS = 14, C_TS_END = 15,
};
enum {
    R_METHOD = 1, R_SCHEME = 2, R_AUTHORITY = 3, R_HOST = 4, R_PORT = 5,
    R_PATH = 6, R_VERSION = 7, R_HEADER = 8, R_TRAILER = 9, R_CONTENT = 10,
    R_TS_START = 11, R_TS_END = 12, R_STATUS = 13, R_REASON = 14,
};
enum { H_NAME = 1, H_VALUE = 2 };
enum { E_MSG = 1, E_TS = 2 };
enum { W_FROM_CLIENT = 1, W_IS_TEXT = 2, W_DROPPED = 3, W_TS = 4, W_CONTENT = 5 };

/* The writers below reserve room once and write in place: the encoder
 * runs for every recorded flow, on the proxy's thread, and appending piece
 * by piece cost more than all the rest of it. */
static unsigned char *wr_varint(unsigned char *p, uint64_t v)
{
    while (v >= 0x80) {
        *p++ = (unsigned char)(v | 0x80);
        v >>= 7;
    }
    *p++ = (unsigned char)v;
    return p;
}

/* A length-delimited field's key and length, in place (its bytes follow). */
static unsigned char *wr_bytes_head(unsigned char *p, unsigned tag, uint64_t n)
{
    return wr_varint(wr_varint(p, ((uint64_t)tag << 3) | WT_BYTES), n);
}

/* Room for `extra` more bytes; the write position, or NULL. */
static unsigned char *room(bytes *b, size_t extra)
{
    if (extra > SIZE_MAX - b->len - 1 || bytes_reserve(b, b->len + extra) < 0)
        return NULL;
    return (unsigned char *)b->p + b->len;
}

/* The bytes up to p are written. */
static void wrote(bytes *b, unsigned char *p)
{
    b->len = (size_t)(p - (unsigned char *)b->p);
    b->p[b->len] = '\0';
}

static int put_varint(bytes *b, uint64_t v)
{
    unsigned char *p = room(b, 10);
    if (!p)
        return -1;
    wrote(b, wr_varint(p, v));
    return 0;
}

static size_t varint_len(uint64_t v)
{
    size_t n = 1;
    while (v >= 0x80) {
        v >>= 7;
        n++;
    }
    return n;
}

static int put_key(bytes *b, unsigned tag, unsigned wt)
{
    return put_varint(b, ((uint64_t)tag << 3) | wt);
}

static int put_uint(bytes *b, unsigned tag, uint64_t v)
{
    if (v == 0)
        return 0; /* absent = 0: the decoder starts from zeroed structs */
    return put_key(b, tag, WT_VARINT) || put_varint(b, v);
}

static int put_blob(bytes *b, unsigned tag, const void *data, size_t n)
{
    unsigned char *p = n <= SIZE_MAX - 20 ? room(b, 20 + n) : NULL;
    if (!p)
        return -1;
    p = wr_bytes_head(p, tag, n);
    if (n)
        memcpy(p, data, n);
    wrote(b, p + n);
    return 0;
}

/* NULL strings are left out, "" is written: the two differ in flow.h. */
static int put_str(bytes *b, unsigned tag, const char *s)
{
    return s ? put_blob(b, tag, s, strlen(s)) : 0;
}

/* Timestamps are microsecond-resolution doubles (flow_now()).  Most are
 * written as a zigzag varint of microseconds relative to the flow's
 * creation time (2-4 bytes instead of 8 hard-to-compress ones); any value
 * that would not come back bit-identical is written as a raw double. */
static int base_us(double created, int64_t *out)
{
    if (!isfinite(created) || fabs(created) > 1e13)
        return -1;
    *out = llround(created * 1e6);
    return 0;
}

static int put_ts(bytes *b, unsigned tag, double t, int have_base, int64_t base)
{
    if (t == 0 && !signbit(t))
        return 0;
    if (have_base && isfinite(t) && fabs(t) < 1e13) {
        int64_t us = llround(t * 1e6);
        if ((double)us / 1e6 == t) {
            int64_t d = us - base;
            uint64_t zz = ((uint64_t)d << 1) ^ (uint64_t)(d >> 63);
            return put_key(b, tag, WT_VARINT) || put_varint(b, zz);
        }
    }
    uint64_t bits;
    memcpy(&bits, &t, 8);
    unsigned char le[8];
    for (int i = 0; i < 8; i++)
        le[i] = (unsigned char)(bits >> (8 * i));
    return put_key(b, tag, WT_FIXED64) || bytes_append(b, le, 8);
}

/* A nested message is written in place, though its length comes first:
 * the length gets a slot of LEN_SLOT bytes, filled in afterwards as a
 * LEB128 varint padded with continuation bytes (0x80) — valid for this
 * reader and any LEB128 reader, 35 bits, so up to 32 GiB.  Encoding into a
 * scratch buffer and copying it out instead copied every body once per
 * enclosing message. */
#define LEN_SLOT 5

static size_t open_slot(bytes *b)
{
    unsigned char *p = room(b, LEN_SLOT);
    if (!p)
        return 0;
    wrote(b, p + LEN_SLOT);
    return b->len;   /* where the content starts; 0 = out of memory */
}

static int close_slot(bytes *b, size_t start)
{
    uint64_t n = b->len - start;
    if (n >> (7 * LEN_SLOT))
        return -1;
    unsigned char *p = (unsigned char *)b->p + start - LEN_SLOT;
    for (int i = 0; i < LEN_SLOT - 1; i++, n >>= 7)
        p[i] = (unsigned char)((n & 0x7f) | 0x80);
    p[LEN_SLOT - 1] = (unsigned char)n;
    return 0;
}

typedef int (*enc_fn)(bytes *b, const void *obj, int hb, int64_t base);

static int put_msg(bytes *b, unsigned tag, enc_fn fn, const void *obj, int hb, int64_t base)
{
    size_t start;
    if (put_key(b, tag, WT_BYTES) < 0 || !(start = open_slot(b)) || fn(b, obj, hb, base) < 0)
        return -1;
    return close_slot(b, start);
}

static int enc_hdrs(bytes *b, unsigned tag, const hdrs *h)
{
    /* the hottest path of the encoder: each field is a nested message
     * written in place, after one reservation for them all */
    size_t need = 0;
    for (size_t i = 0; i < h->n; i++) {
        size_t nl = h->v[i].name_len, vl = h->v[i].value_len;
        if (nl > SIZE_MAX / 4 || vl > SIZE_MAX / 4 || need > SIZE_MAX / 2)
            return -1;
        need += 2 * 10 + 2 + 2 * 10 + nl + vl;
    }
    unsigned char *p = room(b, need);
    if (!p)
        return -1;
    for (size_t i = 0; i < h->n; i++) {
        const hdr_field *f = &h->v[i];
        size_t inner = 2 + varint_len(f->name_len) + f->name_len +
                       varint_len(f->value_len) + f->value_len;
        p = wr_bytes_head(p, tag, inner);
        p = wr_bytes_head(p, H_NAME, f->name_len);
        memcpy(p, f->name, f->name_len);
        p += f->name_len;
        p = wr_bytes_head(p, H_VALUE, f->value_len);
        memcpy(p, f->value, f->value_len);
        p += f->value_len;
    }
    wrote(b, p);
    return 0;
}

static int enc_conn(bytes *b, const void *obj, int hb, int64_t base)
{
    const flow_conn *c = obj;
    return put_str(b, C_ADDR_HOST, c->address_host) ||
           put_uint(b, C_ADDR_PORT, c->address_port) ||
           put_str(b, C_PEER_HOST, c->peer_host) ||
           put_uint(b, C_PEER_PORT, c->peer_port) || put_str(b, C_SNI, c->sni) ||
           put_str(b, C_ALPN, c->alpn) || put_str(b, C_TLS_VERSION, c->tls_version) ||
           put_str(b, C_CIPHER, c->cipher) ||
           put_str(b, C_CERT_SUBJECT, c->cert_subject) ||
           put_str(b, C_CERT_ISSUER, c->cert_issuer) || put_uint(b, C_TLS, c->tls) ||
           put_ts(b, C_TS_START, c->timestamp_start, hb, base) ||
           put_ts(b, C_TS_TCP, c->timestamp_tcp_setup, hb, base) ||
           put_ts(b, C_TS_TLS, c->timestamp_tls_setup, hb, base) ||
           put_ts(b, C_TS_END, c->timestamp_end, hb, base)
               ? -1 : 0;
}

static int enc_request(bytes *b, const void *obj, int hb, int64_t base)
{
    const flow_request *r = obj;
    return put_str(b, R_METHOD, r->method) || put_str(b, R_SCHEME, r->scheme) ||
           put_str(b, R_AUTHORITY, r->authority) || put_str(b, R_HOST, r->host) ||
           put_uint(b, R_PORT, r->port) || put_str(b, R_PATH, r->path) ||
           put_str(b, R_VERSION, r->http_version) ||
           enc_hdrs(b, R_HEADER, &r->headers) ||
           enc_hdrs(b, R_TRAILER, &r->trailers) ||
           (r->content.len ? put_blob(b, R_CONTENT, r->content.p, r->content.len) : 0) ||
           put_ts(b, R_TS_START, r->timestamp_start, hb, base) ||
           put_ts(b, R_TS_END, r->timestamp_end, hb, base)
               ? -1 : 0;
}

static int enc_response(bytes *b, const void *obj, int hb, int64_t base)
{
    const flow_response *r = obj;
    /* status as zigzag-free uint: negative codes are not HTTP */
    return put_uint(b, R_STATUS, (uint64_t)(uint32_t)r->status_code) ||
           put_str(b, R_REASON, r->reason) ||
           put_str(b, R_VERSION, r->http_version) ||
           enc_hdrs(b, R_HEADER, &r->headers) ||
           enc_hdrs(b, R_TRAILER, &r->trailers) ||
           (r->content.len ? put_blob(b, R_CONTENT, r->content.p, r->content.len) : 0) ||
           put_ts(b, R_TS_START, r->timestamp_start, hb, base) ||
           put_ts(b, R_TS_END, r->timestamp_end, hb, base)
               ? -1 : 0;
}

static int enc_error(bytes *b, const void *obj, int hb, int64_t base)
{
    const flow_error *e = obj;
    return put_str(b, E_MSG, e->msg) || put_ts(b, E_TS, e->timestamp, hb, base) ? -1 : 0;
}

static int enc_ws(bytes *b, const void *obj, int hb, int64_t base)
{
    const flow_ws_message *m = obj;
    return put_uint(b, W_FROM_CLIENT, m->from_client) ||
           put_uint(b, W_IS_TEXT, m->is_text) || put_uint(b, W_DROPPED, m->dropped) ||
           put_ts(b, W_TS, m->timestamp, hb, base) ||
           (m->content.len ? put_blob(b, W_CONTENT, m->content.p, m->content.len) : 0)
               ? -1 : 0;
}

static int enc_flow_body(bytes *b, const flow *f)
{
    int64_t base = 0;
    int hb = base_us(f->timestamp_created, &base) == 0;
    /* created first and always as a raw double: it is the base of the rest */
    uint64_t bits;
    double created = f->timestamp_created;
    memcpy(&bits, &created, 8);
    unsigned char le[8];
    for (int i = 0; i < 8; i++)
        le[i] = (unsigned char)(bits >> (8 * i));
    if (put_key(b, F_CREATED, WT_FIXED64) || bytes_append(b, le, 8) ||
        put_str(b, F_ID, f->id) || put_uint(b, F_TYPE, (uint64_t)f->type) ||
        put_msg(b, F_CLIENT, enc_conn, &f->client, hb, base) ||
        put_msg(b, F_SERVER, enc_conn, &f->server, hb, base))
        return -1;
    if (f->request && put_msg(b, F_REQUEST, enc_request, f->request, hb, base))
        return -1;
    if (f->response && put_msg(b, F_RESPONSE, enc_response, f->response, hb, base))
        return -1;
    if (f->error && put_msg(b, F_ERROR, enc_error, f->error, hb, base))
        return -1;
    for (size_t i = 0; i < f->ws_n; i++)
        if (put_msg(b, F_WSMSG, enc_ws, &f->ws_msgs[i], hb, base))
            return -1;
    return put_uint(b, F_WEBSOCKET, f->websocket) ||
           put_uint(b, F_WSCLOSE, (uint64_t)(uint32_t)f->ws_close_code) ||
           put_uint(b, F_WSBYCLIENT, f->ws_closed_by_client) ||
           put_str(b, F_WSREASON, f->ws_close_reason) ||
           put_str(b, F_METADATA, f->metadata) || put_str(b, F_MARKED, f->marked) ||
           put_str(b, F_COMMENT, f->comment) || put_str(b, F_REPLAY, f->is_replay) ||
           put_uint(b, F_KILLED, f->killed)
               ? -1 : 0;
}

int dump_encode_flow(const flow *f, bytes *out)
{
    /* one allocation in the common case: room for the bodies and a little */
    size_t guess = 1024 + (f->request ? f->request->content.len : 0) + (f->response ? f->response->content.len : 0);
    size_t start;
    if (bytes_reserve(out, out->len + guess) < 0 || put_varint(out, DUMP_REC_FLOW) < 0 || !(start = open_slot(out)) ||
        enc_flow_body(out, f) < 0)
        return -1;
    return close_slot(out, start);
}

/* ---- decoding ---------------------------------------------------------- */

typedef struct span {
    const unsigned char *p, *end;
} span;

typedef struct field {
    unsigned tag, wt;
    uint64_t u;                 /* WT_VARINT and WT_FIXED64 */
    const unsigned char *data;  /* WT_BYTES */
    size_t len;
} field;

static int get_varint(span *s, uint64_t *v)
{
    uint64_t r = 0;
    for (int shift = 0; shift < 64; shift += 7) {
        if (s->p >= s->end)
            return -1;
        unsigned char c = *s->p++;
        r |= (uint64_t)(c & 0x7f) << shift;
        if (!(c & 0x80)) {
            *v = r;
            return 0;
        }
    }
    return -1;
}

/* 1 = a field, 0 = end of message, -1 = malformed */
static int next_field(span *s, field *f)
{
    if (s->p >= s->end)
        return 0;
    uint64_t key;
    if (get_varint(s, &key) < 0 || key >> 32)
        return -1;
    f->tag = (unsigned)(key >> 3);
    f->wt = (unsigned)(key & 7);
    switch (f->wt) {
    case WT_VARINT:
        return get_varint(s, &f->u) < 0 ? -1 : 1;
    case WT_FIXED64:
        if (s->end - s->p < 8)
            return -1;
        f->u = 0;
        for (int i = 0; i < 8; i++)
            f->u |= (uint64_t)s->p[i] << (8 * i);
        s->p += 8;
        return 1;
    case WT_BYTES: {
        uint64_t n;
        if (get_varint(s, &n) < 0 || n > (uint64_t)(s->end - s->p))
            return -1;
        f->data = s->p;
        f->len = (size_t)n;
        s->p += n;
        return 1;
    }
    default:
        return -1; /* an unknown wire type cannot be skipped */
    }
}

typedef struct dctx {
    int have_base;
    int64_t base;
    const flow_limits *lim;
    const hdrs *sized;  /* the block hdr_size is the size of */
    uint64_t hdr_size;
    const char *part;   /* "request", "response": names a limit's message */
    char why[192];      /* set when a limit refused the record */
} dctx;

/* -1 with c->why naming the part of the flow and the limit. */
static int over_limit(dctx *c, const char *msg)
{
    char m[160];
    snprintf(m, sizeof m, "%s", msg);
    snprintf(c->why, sizeof c->why, "%s: %s", c->part, m);
    return -1;
}

static int get_str(const field *f, char **dst)
{
    if (f->wt != WT_BYTES)
        return -1;
    return flow_strnset(dst, (const char *)f->data, f->len);
}

static int get_u(const field *f, uint64_t max, uint64_t *v)
{
    if (f->wt != WT_VARINT || f->u > max)
        return -1;
    *v = f->u;
    return 0;
}

static int get_ts(const field *f, const dctx *c, double *t)
{
    if (f->wt == WT_FIXED64) {
        memcpy(t, &f->u, 8);
        return 0;
    }
    if (f->wt != WT_VARINT || !c->have_base)
        return -1;
    int64_t d = (int64_t)(f->u >> 1) ^ -(int64_t)(f->u & 1);
    *t = (double)(c->base + d) / 1e6;
    return 0;
}

#define U16(dst)                                                               \
    do {                                                                       \
        uint64_t v_;                                                           \
        if (get_u(&fl, 65535, &v_) < 0)                                        \
            return -1;                                                         \
        dst = (uint16_t)v_;                                                    \
    } while (0)
#define BOOL(dst)                                                              \
    do {                                                                       \
        uint64_t v_;                                                           \
        if (get_u(&fl, 1, &v_) < 0)                                            \
            return -1;                                                         \
        dst = v_ != 0;                                                         \
    } while (0)

static int dec_conn(span s, const dctx *c, flow_conn *o)
{
    field fl;
    int rc;
    while ((rc = next_field(&s, &fl)) == 1) {
        int bad = 0;
        switch (fl.tag) {
        case C_ADDR_HOST: bad = get_str(&fl, &o->address_host); break;
        case C_ADDR_PORT: U16(o->address_port); break;
        case C_PEER_HOST: bad = get_str(&fl, &o->peer_host); break;
        case C_PEER_PORT: U16(o->peer_port); break;
        case C_SNI: bad = get_str(&fl, &o->sni); break;
        case C_ALPN: bad = get_str(&fl, &o->alpn); break;
        case C_TLS_VERSION: bad = get_str(&fl, &o->tls_version); break;
        case C_CIPHER: bad = get_str(&fl, &o->cipher); break;
        case C_CERT_SUBJECT: bad = get_str(&fl, &o->cert_subject); break;
        case C_CERT_ISSUER: bad = get_str(&fl, &o->cert_issuer); break;
        case C_TLS: BOOL(o->tls); break;
        case C_TS_START: bad = get_ts(&fl, c, &o->timestamp_start); break;
        case C_TS_TCP: bad = get_ts(&fl, c, &o->timestamp_tcp_setup); break;
        case C_TS_TLS: bad = get_ts(&fl, c, &o->timestamp_tls_setup); break;
        case C_TS_END: bad = get_ts(&fl, c, &o->timestamp_end); break;
        default: break; /* unknown: skipped */
        }
        if (bad)
            return -1;
    }
    return rc;
}

static int dec_hdr(const field *fl, dctx *c, hdrs *h)
{
    if (fl->wt != WT_BYTES)
        return -1;
    span s = {fl->data, fl->data + fl->len};
    field g;
    const unsigned char *name = NULL, *value = NULL;
    size_t nlen = 0, vlen = 0;
    int rc;
    while ((rc = next_field(&s, &g)) == 1) {
        if (g.tag == H_NAME && g.wt == WT_BYTES) {
            name = g.data;
            nlen = g.len;
        } else if (g.tag == H_VALUE && g.wt == WT_BYTES) {
            value = g.data;
            vlen = g.len;
        }
    }
    if (rc < 0)
        return -1;
    char m[160];
    if (c->sized != h || h->n == 0) { /* fields of one block come in a row */
        c->sized = h;
        c->hdr_size = 0;
        for (size_t i = 0; i < h->n; i++)
            c->hdr_size += (uint64_t)h->v[i].name_len + h->v[i].value_len + 4;
    }
    if (flow_limits_hdr(c->lim, h, &c->hdr_size, nlen, vlen, m, sizeof m) < 0)
        return over_limit(c, m);
    return hdrs_add(h, name ? (const char *)name : "", nlen,
                    value ? (const char *)value : "", vlen);
}

static int dec_content(const field *fl, dctx *c, bytes *b)
{
    if (fl->wt != WT_BYTES)
        return -1;
    char m[160];
    if (flow_limits_body(c->lim, fl->len, m, sizeof m) < 0)
        return over_limit(c, m);
    return bytes_set(b, fl->data, fl->len);
}

static int dec_request(span s, dctx *c, flow_request *o)
{
    c->part = "request";
    field fl;
    int rc;
    while ((rc = next_field(&s, &fl)) == 1) {
        int bad = 0;
        switch (fl.tag) {
        case R_METHOD: bad = get_str(&fl, &o->method); break;
        case R_SCHEME: bad = get_str(&fl, &o->scheme); break;
        case R_AUTHORITY: bad = get_str(&fl, &o->authority); break;
        case R_HOST: bad = get_str(&fl, &o->host); break;
        case R_PORT: U16(o->port); break;
        case R_PATH: bad = get_str(&fl, &o->path); break;
        case R_VERSION: bad = get_str(&fl, &o->http_version); break;
        case R_HEADER: bad = dec_hdr(&fl, c, &o->headers); break;
        case R_TRAILER: bad = dec_hdr(&fl, c, &o->trailers); break;
        case R_CONTENT: bad = dec_content(&fl, c, &o->content); break;
        case R_TS_START: bad = get_ts(&fl, c, &o->timestamp_start); break;
        case R_TS_END: bad = get_ts(&fl, c, &o->timestamp_end); break;
        default: break;
        }
        if (bad)
            return -1;
    }
    return rc;
}

static int dec_response(span s, dctx *c, flow_response *o)
{
    c->part = "response";
    field fl;
    int rc;
    while ((rc = next_field(&s, &fl)) == 1) {
        int bad = 0;
        uint64_t v;
        switch (fl.tag) {
        case R_STATUS:
            if (get_u(&fl, 0xffffffffu, &v) < 0)
                return -1;
            o->status_code = (int)(uint32_t)v;
            break;
        case R_REASON: bad = get_str(&fl, &o->reason); break;
        case R_VERSION: bad = get_str(&fl, &o->http_version); break;
        case R_HEADER: bad = dec_hdr(&fl, c, &o->headers); break;
        case R_TRAILER: bad = dec_hdr(&fl, c, &o->trailers); break;
        case R_CONTENT: bad = dec_content(&fl, c, &o->content); break;
        case R_TS_START: bad = get_ts(&fl, c, &o->timestamp_start); break;
        case R_TS_END: bad = get_ts(&fl, c, &o->timestamp_end); break;
        default: break;
        }
        if (bad)
            return -1;
    }
    return rc;
}

static int dec_error(span s, const dctx *c, flow_error *o)
{
    field fl;
    int rc;
    while ((rc = next_field(&s, &fl)) == 1) {
        int bad = 0;
        switch (fl.tag) {
        case E_MSG: bad = get_str(&fl, &o->msg); break;
        case E_TS: bad = get_ts(&fl, c, &o->timestamp); break;
        default: break;
        }
        if (bad)
            return -1;
    }
    return rc;
}

static int dec_ws(span s, dctx *c, flow *f)
{
    char lm[160];
    c->part = "WebSocket";
    if (flow_limits_message(c->lim, f, lm, sizeof lm) < 0)
        return over_limit(c, lm);
    flow_ws_message *m = flow_ws_add(f, false, false, "", 0);
    if (!m)
        return -1;
    m->timestamp = 0;
    field fl;
    int rc;
    while ((rc = next_field(&s, &fl)) == 1) {
        int bad = 0;
        switch (fl.tag) {
        case W_FROM_CLIENT: BOOL(m->from_client); break;
        case W_IS_TEXT: BOOL(m->is_text); break;
        case W_DROPPED: BOOL(m->dropped); break;
        case W_TS: bad = get_ts(&fl, c, &m->timestamp); break;
        case W_CONTENT: bad = dec_content(&fl, c, &m->content); break;
        default: break;
        }
        if (bad)
            return -1;
    }
    return rc;
}

static span sub(const field *fl)
{
    span s = {fl->data, fl->data + fl->len};
    return s;
}

int dump_decode_flow(const void *p, size_t n, const flow_limits *lim, flow **out,
                     char *err, size_t errsz)
{
    flow *f = calloc(1, sizeof *f);
    if (!f) {
        snprintf(err, errsz, "out of memory");
        return -1;
    }
    dctx c = {.lim = lim ? lim : &flow_limits_default};
    span s = {p, (const unsigned char *)p + n};
    field fl;
    int rc;
    const char *what = "malformed record";

    /* The creation time is the base of relative timestamps: find it first,
     * wherever it is, so field order never matters to the decoder. */
    while ((rc = next_field(&s, &fl)) == 1) {
        if (fl.tag == F_CREATED && fl.wt == WT_FIXED64) {
            memcpy(&f->timestamp_created, &fl.u, 8);
            c.have_base = base_us(f->timestamp_created, &c.base) == 0;
        }
    }
    if (rc < 0)
        goto fail;
    s.p = p;
    while ((rc = next_field(&s, &fl)) == 1) {
        int bad = 0;
        uint64_t v;
        switch (fl.tag) {
        case F_ID:
            if (fl.wt != WT_BYTES || fl.len > 36) {
                what = "bad flow id";
                goto fail;
            }
            memcpy(f->id, fl.data, fl.len);
            f->id[fl.len] = 0;
            break;
        case F_TYPE:
            if (get_u(&fl, 1, &v) < 0)
                goto fail;
            f->type = (flow_type)v;
            break;
        case F_CLIENT:
        case F_SERVER:
            if (fl.wt != WT_BYTES)
                goto fail;
            bad = dec_conn(sub(&fl), &c, fl.tag == F_CLIENT ? &f->client : &f->server);
            break;
        case F_REQUEST:
            if (fl.wt != WT_BYTES || f->request || !(f->request = flow_request_new()))
                goto fail;
            bad = dec_request(sub(&fl), &c, f->request);
            break;
        case F_RESPONSE:
            if (fl.wt != WT_BYTES || f->response || !(f->response = flow_response_new()))
                goto fail;
            bad = dec_response(sub(&fl), &c, f->response);
            break;
        case F_ERROR:
            if (fl.wt != WT_BYTES || f->error || !(f->error = calloc(1, sizeof *f->error)))
                goto fail;
            bad = dec_error(sub(&fl), &c, f->error);
            break;
        case F_WSMSG:
            if (fl.wt != WT_BYTES)
                goto fail;
            bad = dec_ws(sub(&fl), &c, f);
            break;
        case F_WEBSOCKET:
            if (get_u(&fl, 1, &v) < 0)
                goto fail;
            f->websocket = v != 0;
            break;
        case F_WSCLOSE:
            if (get_u(&fl, 0xffffffffu, &v) < 0)
                goto fail;
            f->ws_close_code = (int)(uint32_t)v;
            break;
        case F_WSBYCLIENT:
            if (get_u(&fl, 1, &v) < 0)
                goto fail;
            f->ws_closed_by_client = v != 0;
            break;
        case F_WSREASON: bad = get_str(&fl, &f->ws_close_reason); break;
        case F_METADATA: bad = get_str(&fl, &f->metadata); break;
        case F_MARKED: bad = get_str(&fl, &f->marked); break;
        case F_COMMENT: bad = get_str(&fl, &f->comment); break;
        case F_REPLAY: bad = get_str(&fl, &f->is_replay); break;
        case F_KILLED:
            if (get_u(&fl, 1, &v) < 0)
                goto fail;
            f->killed = v != 0;
            break;
        default:
            break; /* a field from a newer writer: skipped */
        }
        if (bad)
            goto fail;
    }
    if (rc < 0)
        goto fail;
    *out = f;
    return 0;
fail:
    if (c.why[0] && f->id[0])
        snprintf(err, errsz, "flow %s: %s", f->id, c.why);
    else
        snprintf(err, errsz, "%s", c.why[0] ? c.why : what);
    flow_free(f);
    return c.why[0] ? -2 : -1;
}
