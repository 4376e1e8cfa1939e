/* test_tlshello.c — the ClientHello reader against hellos OpenSSL itself
 * writes (into a memory BIO), and against damaged ones. */
#include <openssl/ssl.h>

#include "t.h"
#include "tlshello.h"

/* The first flight of a client with this SNI (NULL: none) and ALPN list
 * (wire format), as OpenSSL writes it. */
static size_t make_hello(const char *sni, const unsigned char *alpn, unsigned alpn_len, uint8_t *out, size_t cap)
{
    SSL_CTX *ctx = SSL_CTX_new(TLS_client_method());
    SSL *ssl = SSL_new(ctx);
    BIO *rb = BIO_new(BIO_s_mem()), *wb = BIO_new(BIO_s_mem());
    SSL_set_bio(ssl, rb, wb);
    if (sni)
        SSL_set_tlsext_host_name(ssl, sni);
    if (alpn)
        SSL_set_alpn_protos(ssl, alpn, alpn_len);
    SSL_connect(ssl); /* wants to read: the hello is written */
    int n = BIO_read(wb, out, (int)cap);
    SSL_free(ssl);
    SSL_CTX_free(ctx);
    return n > 0 ? (size_t)n : 0;
}

static void openssl_hello(void)
{
    uint8_t buf[4096];
    static const unsigned char alpn[] = "\x02h2\x08http/1.1";
    size_t n = make_hello("api.example.com", alpn, sizeof alpn - 1, buf, sizeof buf);
    T_CHECK(n > 100);
    T_CHECK(tlshello_record_size(buf, n) == (long)n);
    tlshello h;
    char err[128];
    T_CHECK(tlshello_parse(buf, n, &h, err, sizeof err) == 0);
    T_STREQ(h.sni, "api.example.com");
    T_CHECK(h.nalpn == 2);
    T_STREQ(h.alpn[0], "h2");
    T_STREQ(h.alpn[1], "http/1.1");
    n = make_hello(NULL, NULL, 0, buf, sizeof buf);
    T_CHECK(tlshello_parse(buf, n, &h, err, sizeof err) == 0);
    T_STREQ(h.sni, "");
    T_CHECK(h.nalpn == 0);
}

static void damaged_hellos(void)
{
    uint8_t buf[4096];
    size_t n = make_hello("a.example", NULL, 0, buf, sizeof buf);
    tlshello h;
    char err[128];
    T_CHECK(tlshello_record_size(buf, 4) == 0);           /* not enough to know */
    T_CHECK(tlshello_parse(buf, n - 1, &h, err, sizeof err) < 0); /* cut short */
    uint8_t notls[] = "GET / HTTP/1.1\r\n";
    T_CHECK(tlshello_record_size(notls, sizeof notls - 1) == -1);
    /* every truncation of the body, with the record header fixed to match,
     * is refused or read without running past the end (ASan watches) */
    for (size_t cut = 6; cut < n; cut++) {
        uint8_t tmp[4096];
        memcpy(tmp, buf, cut);
        tmp[3] = (uint8_t)((cut - 5) >> 8);
        tmp[4] = (uint8_t)(cut - 5);
        (void)tlshello_parse(tmp, cut, &h, err, sizeof err);
    }
    buf[5] = 2; /* a ServerHello */
    T_CHECK(tlshello_parse(buf, n, &h, err, sizeof err) < 0);
}

int main(void)
{
    T_RUN(openssl_hello);
    T_RUN(damaged_hellos);
    T_DONE();
}
