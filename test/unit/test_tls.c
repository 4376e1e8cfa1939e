/* Unit tests for the CA and minted leaf certificates. */
#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>
#include <openssl/x509v3.h>

#include "tls.h"
#include "t.h"

static char dir[64];

static int mode_of(const char *name)
{
    char p[200];
    struct stat st;
    snprintf(p, sizeof p, "%s/%s", dir, name);
    return stat(p, &st) == 0 ? (int)(st.st_mode & 0777) : -1;
}

static int verify(tls_ca *ca, X509 *leaf)
{
    X509_STORE *st = X509_STORE_new();
    X509_STORE_add_cert(st, tls_ca_cert(ca));
    X509_STORE_CTX *ctx = X509_STORE_CTX_new();
    X509_STORE_CTX_init(ctx, st, leaf, NULL);
    int ok = X509_verify_cert(ctx);
    X509_STORE_CTX_free(ctx);
    X509_STORE_free(st);
    return ok;
}

static void ca_files_and_modes(void)
{
    char err[256];
    char sub[128];
    snprintf(sub, sizeof sub, "%s/conf", dir);
    tls_ca *ca = tls_ca_load_or_create(sub, err, sizeof err);
    T_CHECK(ca != NULL);
    snprintf(dir + strlen(dir), sizeof dir - strlen(dir), "/conf");
    T_CHECK(mode_of("") == 0700);
    T_CHECK(mode_of("mitmlua-ca.pem") == 0600);
    T_CHECK(mode_of("mitmlua-ca-cert.pem") == 0644);
    T_CHECK(mode_of("mitmlua-ca-cert.cer") == 0644);
    T_CHECK(mode_of("mitmlua-ca-cert.p12") == 0644);
    unsigned char a[32], b[32];
    unsigned n;
    X509_digest(tls_ca_cert(ca), EVP_sha256(), a, &n);
    tls_ca *again = tls_ca_load_or_create(sub, err, sizeof err);
    T_CHECK(again != NULL);
    X509_digest(tls_ca_cert(again), EVP_sha256(), b, &n);
    T_CHECK(memcmp(a, b, 32) == 0); /* reloaded, not regenerated */
    tls_ca_free(again);
    tls_ca_free(ca);
    /* a corrupt key file is named in the error */
    char p[200];
    snprintf(p, sizeof p, "%s/mitmlua-ca.pem", dir);
    FILE *fp = fopen(p, "w");
    fputs("garbage\n", fp);
    fclose(fp);
    T_CHECK(tls_ca_load_or_create(sub, err, sizeof err) == NULL);
    T_CHECK(strstr(err, "mitmlua-ca.pem") != NULL);
}

static void leaves(void)
{
    char err[256], sub[128];
    snprintf(sub, sizeof sub, "%s/leaves", dir);
    tls_ca *ca = tls_ca_load_or_create(sub, err, sizeof err);
    T_CHECK(ca != NULL);
    const char *hosts[] = {"example.com", "127.0.0.1", "::1", "Mixed.Case.Test"};
    for (size_t i = 0; i < 4; i++) {
        X509 *x = tls_ca_leaf(ca, hosts[i], err, sizeof err);
        T_CHECK(x != NULL);
        T_CHECK(verify(ca, x) == 1);
        if (i == 0 || i == 3)
            T_CHECK(X509_check_host(x, hosts[i], 0, 0, NULL) == 1);
        else
            T_CHECK(X509_check_ip_asc(x, hosts[i], 0) == 1);
        int days = 0, secs = 0;
        ASN1_TIME_diff(&days, &secs, X509_get0_notBefore(x), X509_get0_notAfter(x));
        T_CHECK(days <= 200 && days >= 190);
        X509 *y = tls_ca_leaf(ca, hosts[i], err, sizeof err);
        T_CHECK(y == x); /* cached */
        X509_free(y);
        X509_free(x);
    }
    X509 *a = tls_ca_leaf(ca, "a.test", err, sizeof err), *b = tls_ca_leaf(ca, "b.test", err, sizeof err);
    T_CHECK(a && b && a != b);
    T_CHECK(X509_check_host(a, "b.test", 0, 0, NULL) != 1);
    X509_free(a);
    X509_free(b);
    tls_ca_free(ca);
}

static void client_ctx_errors(void)
{
    char err[256];
    tls_client_opts o = {.insecure = false, .extra_ca_file = "/nonexistent/ca.pem"};
    T_CHECK(tls_client_ctx_new(&o, err, sizeof err) == NULL);
    T_CHECK(strstr(err, "/nonexistent/ca.pem") != NULL);
    o.extra_ca_file = NULL;
    SSL_CTX *ctx = tls_client_ctx_new(&o, err, sizeof err);
    T_CHECK(ctx != NULL);
    SSL_CTX_free(ctx);
}

/* A real handshake in memory: the client verifies the minted certificate
 * against the CA, with SNI and (falling back to the CONNECT host) without. */
static int handshake(tls_ca *ca, const char *sni, const char *fallback, const char *expect)
{
    char err[256];
    SSL_CTX *sctx = tls_server_ctx_new(ca, err, sizeof err);
    SSL_CTX *cctx = SSL_CTX_new(TLS_client_method());
    X509_STORE_add_cert(SSL_CTX_get_cert_store(cctx), tls_ca_cert(ca));
    SSL_CTX_set_verify(cctx, SSL_VERIFY_PEER, NULL);
    SSL *s = SSL_new(sctx), *c = SSL_new(cctx);
    tls_set_fallback_host(s, fallback);
    if (sni)
        SSL_set_tlsext_host_name(c, sni);
    SSL_set1_host(c, expect);
    BIO *bs, *bc;
    BIO_new_bio_pair(&bs, 0, &bc, 0);
    SSL_set_bio(s, bs, bs);
    SSL_set_bio(c, bc, bc);
    SSL_set_accept_state(s);
    SSL_set_connect_state(c);
    int done_s = 0, done_c = 0;
    for (int i = 0; i < 50 && !(done_s && done_c); i++) {
        if (!done_c)
            done_c = SSL_do_handshake(c) == 1;
        if (!done_s)
            done_s = SSL_do_handshake(s) == 1;
    }
    int ok = done_s && done_c && SSL_get_verify_result(c) == X509_V_OK;
    SSL_free(s);
    SSL_free(c);
    SSL_CTX_free(sctx);
    SSL_CTX_free(cctx);
    return ok;
}

static void handshakes(void)
{
    char err[256], sub[128];
    snprintf(sub, sizeof sub, "%s/hs", dir);
    tls_ca *ca = tls_ca_load_or_create(sub, err, sizeof err);
    T_CHECK(handshake(ca, "foo.test", "ignored.test", "foo.test"));
    T_CHECK(handshake(ca, NULL, "fallback.test", "fallback.test"));
    T_CHECK(!handshake(ca, "foo.test", "x", "other.test")); /* name mismatch is caught */
    tls_ca_free(ca);
}

int main(void)
{
    snprintf(dir, sizeof dir, "/tmp/mitmlua-tls-XXXXXX");
    if (!mkdtemp(dir))
        return 1;
    char base[64];
    snprintf(base, sizeof base, "%s", dir);
    T_RUN(leaves);
    T_RUN(client_ctx_errors);
    T_RUN(handshakes);
    T_RUN(ca_files_and_modes);
    char cmd[128];
    snprintf(cmd, sizeof cmd, "rm -rf %s", base);
    if (system(cmd) != 0)
        return 1;
    T_DONE();
}
