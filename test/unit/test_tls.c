/* Unit tests for the TLS module: CA files and their modes, reload and
 * recovery, corrupt CA files, minted leaves checked with OpenSSL's own
 * verifier, the shared LRU cache (also under 4 threads), real in-memory
 * handshakes on both sides (SNI, fallback host, ALPN, upstream verification
 * success and failure), and tls_ca_open's child process. */
#include <dirent.h>
#include <pthread.h>
#include <stdlib.h>
#include <errno.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/pkcs12.h>
#include <openssl/x509v3.h>

#include "opts.h"
#include "tls.h"
#include "tlsopts.h"
#include "tlsup.h"
#include "t.h"

static char base[64];

static void path_of(char *out, size_t n, const char *sub, const char *name)
{
    snprintf(out, n, "%s/%s%s%s", base, sub, name ? "/" : "", name ? name : "");
}

static int mode_of(const char *sub, const char *name)
{
    char p[256];
    struct stat st;
    path_of(p, sizeof p, sub, name);
    return stat(p, &st) == 0 ? (int)(st.st_mode & 0777) : -1;
}

static tls_ca *ca_in(const char *sub)
{
    char p[256], err[512];
    path_of(p, sizeof p, sub, NULL);
    tls_ca *ca = tls_ca_load_or_create(p, err, sizeof err);
    if (!ca)
        fprintf(stderr, "  tls_ca_load_or_create(%s): %s\n", p, err);
    return ca;
}

static void fingerprint(X509 *x, unsigned char out[32])
{
    unsigned n = 32;
    X509_digest(x, EVP_sha256(), out, &n);
}

static int same_cert(X509 *a, X509 *b)
{
    unsigned char fa[32], fb[32];
    fingerprint(a, fa);
    fingerprint(b, fb);
    return memcmp(fa, fb, 32) == 0;
}

static char *slurp(const char *path, size_t *n)
{
    FILE *fp = fopen(path, "rb");
    if (!fp)
        return NULL;
    char *buf = malloc(1 << 16);
    size_t got = fread(buf, 1, (1 << 16) - 1, fp);
    fclose(fp);
    buf[got] = '\0';
    if (n)
        *n = got;
    return buf;
}

static X509 *read_cert(const char *path)
{
    FILE *fp = fopen(path, "r");
    if (!fp)
        return NULL;
    X509 *x = PEM_read_X509(fp, NULL, NULL, NULL);
    fclose(fp);
    return x;
}

/* Chain verification for TLS server use against the CA alone. */
static int verify_leaf(tls_ca *ca, X509 *leaf)
{
    X509_STORE *st = X509_STORE_new();
    X509_STORE_add_cert(st, tls_ca_cert(ca));
    X509_STORE_CTX *ctx = X509_STORE_CTX_new();
    X509_STORE_CTX_init(ctx, st, leaf, NULL);
    X509_STORE_CTX_set_purpose(ctx, X509_PURPOSE_SSL_SERVER);
    int ok = X509_verify_cert(ctx);
    if (ok != 1)
        fprintf(stderr, "  verify: %s\n", X509_verify_cert_error_string(X509_STORE_CTX_get_error(ctx)));
    X509_STORE_CTX_free(ctx);
    X509_STORE_free(st);
    return ok;
}

static int write_pem(const char *path, EVP_PKEY *key, X509 *cert, const EVP_CIPHER *enc)
{
    FILE *fp = fopen(path, "w");
    if (!fp)
        return -1;
    int ok = (!key || PEM_write_PrivateKey(fp, key, enc, enc ? (unsigned char *)"pw" : NULL, enc ? 2 : 0, NULL,
                                           NULL)) &&
             (!cert || PEM_write_X509(fp, cert));
    fclose(fp);
    return ok ? 0 : -1;
}

static int no_dotfiles(const char *sub)
{
    char p[256];
    path_of(p, sizeof p, sub, NULL);
    DIR *d = opendir(p);
    if (!d)
        return 0;
    int clean = 1;
    struct dirent *de;
    while ((de = readdir(d)))
        if (de->d_name[0] == '.' && strcmp(de->d_name, ".") && strcmp(de->d_name, ".."))
            clean = 0;
    closedir(d);
    return clean;
}

/* ---- CA files ----------------------------------------------------------- */

static void ca_files_and_modes(void)
{
    /* a permissive umask must not make the key readable, nor a strict one
     * hide the certificates */
    mode_t old = umask(0);
    tls_ca *ca = ca_in("x/y/conf");
    umask(old);
    T_CHECK(ca != NULL);
    if (!ca)
        return;
    T_CHECK(mode_of("x/y/conf", NULL) == 0700);
    T_CHECK(mode_of("x/y/conf", "mitmlua-ca.pem") == 0600);
    T_CHECK(mode_of("x/y/conf", "mitmlua-ca-cert.pem") == 0644);
    T_CHECK(mode_of("x/y/conf", "mitmlua-ca-cert.cer") == 0644);
    T_CHECK(mode_of("x/y/conf", "mitmlua-ca-cert.p12") == 0644);
    T_CHECK(no_dotfiles("x/y/conf")); /* no temporary files left behind */

    char p[256];
    path_of(p, sizeof p, "x/y/conf", "mitmlua-ca-cert.pem");
    T_STREQ(tls_ca_cert_path(ca), p);
    path_of(p, sizeof p, "x/y/conf", NULL);
    T_STREQ(tls_ca_confdir(ca), p);

    /* the key file: key first, then the certificate */
    path_of(p, sizeof p, "x/y/conf", "mitmlua-ca.pem");
    char *key = slurp(p, NULL);
    T_CHECK(key && strncmp(key, "-----BEGIN PRIVATE KEY-----", 27) == 0);
    T_CHECK(key && strstr(key, "-----BEGIN CERTIFICATE-----") > strstr(key, "END PRIVATE KEY"));
    free(key);

    /* .pem and .cer: the same PEM certificate, which is the CA's */
    size_t n1, n2;
    path_of(p, sizeof p, "x/y/conf", "mitmlua-ca-cert.pem");
    char *pem = slurp(p, &n1);
    X509 *fromfile = read_cert(p);
    path_of(p, sizeof p, "x/y/conf", "mitmlua-ca-cert.cer");
    char *cer = slurp(p, &n2);
    T_CHECK(pem && cer && n1 == n2 && memcmp(pem, cer, n1) == 0);
    T_CHECK(pem && !strstr(pem, "PRIVATE"));
    T_CHECK(fromfile && same_cert(fromfile, tls_ca_cert(ca)));
    free(pem);
    free(cer);
    X509_free(fromfile);

    /* .p12: the certificate, no key, empty password */
    path_of(p, sizeof p, "x/y/conf", "mitmlua-ca-cert.p12");
    FILE *fp = fopen(p, "rb");
    PKCS12 *p12 = fp ? d2i_PKCS12_fp(fp, NULL) : NULL;
    if (fp)
        fclose(fp);
    EVP_PKEY *pk = NULL;
    X509 *pc = NULL;
    STACK_OF(X509) *others = NULL;
    T_CHECK(p12 && PKCS12_parse(p12, "", &pk, &pc, &others) == 1);
    T_CHECK(pk == NULL && pc == NULL); /* no key, so the certificate is an "other" */
    T_CHECK(others && sk_X509_num(others) == 1 && same_cert(sk_X509_value(others, 0), tls_ca_cert(ca)));
    const unsigned char *alias = others && sk_X509_num(others) ? X509_alias_get0(sk_X509_value(others, 0), NULL) : NULL;
    T_STREQ((const char *)alias, "mitmlua"); /* friendlyName */
    EVP_PKEY_free(pk);
    X509_free(pc);
    sk_X509_pop_free(others, X509_free);
    PKCS12_free(p12);

    /* the CA certificate itself */
    X509 *c = tls_ca_cert(ca);
    char cn[64] = "", o[64] = "";
    X509_NAME_get_text_by_NID(X509_get_subject_name(c), NID_commonName, cn, sizeof cn);
    X509_NAME_get_text_by_NID(X509_get_subject_name(c), NID_organizationName, o, sizeof o);
    T_STREQ(cn, "mitmlua");
    T_STREQ(o, "mitmlua");
    T_CHECK(X509_check_ca(c) == 1);
    T_CHECK(X509_check_issued(c, c) == X509_V_OK);
    T_CHECK(X509_verify(c, X509_get0_pubkey(c)) == 1);
    T_CHECK(EVP_PKEY_is_a(X509_get0_pubkey(c), "RSA") && EVP_PKEY_get_bits(X509_get0_pubkey(c)) == 2048);
    int crit = -1;
    BASIC_CONSTRAINTS *bc = X509_get_ext_d2i(c, NID_basic_constraints, &crit, NULL);
    T_CHECK(bc && bc->ca && crit == 1);
    BASIC_CONSTRAINTS_free(bc);
    ASN1_BIT_STRING *ku = X509_get_ext_d2i(c, NID_key_usage, &crit, NULL);
    T_CHECK(ku && crit == 1);
    ASN1_BIT_STRING_free(ku);
    T_CHECK((X509_get_key_usage(c) & (KU_KEY_CERT_SIGN | KU_CRL_SIGN)) == (KU_KEY_CERT_SIGN | KU_CRL_SIGN));
    T_CHECK(X509_get0_subject_key_id(c) != NULL);
    BIGNUM *serial = ASN1_INTEGER_to_BN(X509_get0_serialNumber(c), NULL);
    T_CHECK(serial && BN_num_bits(serial) > 64 && BN_num_bits(serial) <= 128 && !BN_is_negative(serial));
    BN_free(serial);
    int days = 0, secs = 0;
    ASN1_TIME_diff(&days, &secs, X509_get0_notBefore(c), X509_get0_notAfter(c));
    T_CHECK(days >= 3640 && days <= 3660);
    tls_ca_free(ca);
}

static void ca_reload_and_uniqueness(void)
{
    tls_ca *a = ca_in("reload"), *a2 = ca_in("reload"), *b = ca_in("other");
    T_CHECK(a && a2 && b);
    if (a && a2 && b) {
        T_CHECK(same_cert(tls_ca_cert(a), tls_ca_cert(a2))); /* reloaded, not regenerated */
        T_CHECK(!same_cert(tls_ca_cert(a), tls_ca_cert(b))); /* every install its own CA */
        T_CHECK(EVP_PKEY_eq(X509_get0_pubkey(tls_ca_cert(a)), X509_get0_pubkey(tls_ca_cert(b))) != 1);
        T_CHECK(ASN1_INTEGER_cmp(X509_get0_serialNumber(tls_ca_cert(a)), X509_get0_serialNumber(tls_ca_cert(b))));
        /* the leaf key is fresh per load and never the CA key */
        T_CHECK(EVP_PKEY_eq(tls_ca_leaf_key(a), X509_get0_pubkey(tls_ca_cert(a))) != 1);
    }
    tls_ca_free(a);
    tls_ca_free(a2);
    tls_ca_free(b);
}

/* A crash after the key file, or a CA key file copied in from elsewhere
 * (mitmproxy-ca.pem): the certificate files follow the key file. */
static void ca_recovery(void)
{
    tls_ca *a = ca_in("recover");
    tls_ca *foreign = ca_in("foreign");
    T_CHECK(a && foreign);
    if (!a || !foreign)
        goto out;
    char p[256];
    path_of(p, sizeof p, "recover", "mitmlua-ca-cert.p12");
    unlink(p);
    path_of(p, sizeof p, "recover", "mitmlua-ca-cert.cer");
    unlink(p);
    path_of(p, sizeof p, "recover", "mitmlua-ca-cert.pem");
    FILE *fp = fopen(p, "w");
    fputs("half-written", fp);
    fclose(fp);
    tls_ca *again = ca_in("recover");
    T_CHECK(again && same_cert(tls_ca_cert(again), tls_ca_cert(a)));
    T_CHECK(mode_of("recover", "mitmlua-ca-cert.p12") == 0644);
    X509 *x = read_cert(p);
    T_CHECK(x && same_cert(x, tls_ca_cert(a)));
    X509_free(x);
    path_of(p, sizeof p, "recover", "mitmlua-ca-cert.cer");
    x = read_cert(p);
    T_CHECK(x && same_cert(x, tls_ca_cert(a)));
    X509_free(x);
    tls_ca_free(again);

    /* copy the foreign CA's key file over ours */
    char src[256];
    path_of(src, sizeof src, "foreign", "mitmlua-ca.pem");
    path_of(p, sizeof p, "recover", "mitmlua-ca.pem");
    char *data = slurp(src, NULL);
    fp = fopen(p, "w");
    fputs(data, fp);
    fclose(fp);
    free(data);
    again = ca_in("recover");
    T_CHECK(again && same_cert(tls_ca_cert(again), tls_ca_cert(foreign)));
    path_of(p, sizeof p, "recover", "mitmlua-ca-cert.pem");
    x = read_cert(p);
    T_CHECK(x && same_cert(x, tls_ca_cert(foreign)));
    X509_free(x);
    tls_ca_free(again);
out:
    tls_ca_free(a);
    tls_ca_free(foreign);
}

static int load_fails_naming(const char *sub, const char *expect)
{
    char p[256], err[512] = "";
    path_of(p, sizeof p, sub, NULL);
    tls_ca *ca = tls_ca_load_or_create(p, err, sizeof err);
    path_of(p, sizeof p, sub, "mitmlua-ca.pem");
    int ok = ca == NULL && strstr(err, p) != NULL && (!expect || strstr(err, expect));
    if (!ok)
        fprintf(stderr, "  error was: %s\n", err);
    tls_ca_free(ca);
    return ok;
}

static void ca_corrupt(void)
{
    tls_ca *a = ca_in("good1"), *b = ca_in("good2");
    T_CHECK(a && b);
    if (!a || !b)
        goto out;
    char p[256], err[512];
    mkdir(base, 0700);
    path_of(p, sizeof p, "bad", NULL);
    mkdir(p, 0700);
    path_of(p, sizeof p, "bad", "mitmlua-ca.pem");

    FILE *fp = fopen(p, "w");
    fputs("garbage\n", fp);
    fclose(fp);
    T_CHECK(load_fails_naming("bad", "private key"));

    T_CHECK(write_pem(p, tls_ca_leaf_key(a), NULL, NULL) == 0); /* key, no certificate */
    T_CHECK(load_fails_naming("bad", "certificate"));

    EVP_PKEY *akey = NULL;
    char ap[256];
    path_of(ap, sizeof ap, "good1", "mitmlua-ca.pem");
    fp = fopen(ap, "r");
    akey = PEM_read_PrivateKey(fp, NULL, NULL, NULL);
    fclose(fp);
    T_CHECK(akey != NULL);
    T_CHECK(write_pem(p, akey, tls_ca_cert(b), NULL) == 0); /* key of one CA, certificate of another */
    T_CHECK(load_fails_naming("bad", "does not belong"));

    X509 *leaf = tls_ca_leaf(a, "leaf.test", err, sizeof err);
    T_CHECK(write_pem(p, tls_ca_leaf_key(a), leaf, NULL) == 0); /* a leaf is no CA */
    T_CHECK(load_fails_naming("bad", "not a CA"));
    X509_free(leaf);

    /* an encrypted key fails at once instead of prompting on the terminal */
    T_CHECK(write_pem(p, akey, tls_ca_cert(a), EVP_aes_128_cbc()) == 0);
    T_CHECK(load_fails_naming("bad", "private key"));
    EVP_PKEY_free(akey);

    if (geteuid() != 0) { /* root reads anything */
        chmod(p, 0);
        T_CHECK(load_fails_naming("bad", "Permission denied"));
    }

    /* the confdir is a file */
    path_of(p, sizeof p, "afile", NULL);
    fp = fopen(p, "w");
    fclose(fp);
    T_CHECK(tls_ca_load_or_create(p, err, sizeof err) == NULL);
    T_CHECK(strstr(err, p) != NULL);
out:
    tls_ca_free(a);
    tls_ca_free(b);
    ERR_clear_error();
}

/* tls_ca_open: the same CA as tls_ca_load_or_create, prepared by a child
 * process that is reaped; its errors are the same errors. */
static void ca_open(void)
{
    char p[256], err[512] = "";
    path_of(p, sizeof p, "opened", NULL);
    tls_ca *ca = tls_ca_open(p, NULL, err, sizeof err);
    T_CHECK(ca != NULL);
    if (!ca)
        fprintf(stderr, "  tls_ca_open: %s\n", err);
    T_CHECK(mode_of("opened", "mitmlua-ca.pem") == 0600 && mode_of("opened", "mitmlua-ca-cert.p12") == 0644);
    tls_ca *again = ca_in("opened"); /* what the child wrote, loaded here */
    T_CHECK(ca && again && same_cert(tls_ca_cert(ca), tls_ca_cert(again)));
    if (ca) {
        T_CHECK(tls_ca_leaf_key(ca) && EVP_PKEY_eq(tls_ca_leaf_key(ca), X509_get0_pubkey(tls_ca_cert(ca))) != 1);
        X509 *leaf = tls_ca_leaf(ca, "opened.test", err, sizeof err);
        T_CHECK(leaf && verify_leaf(ca, leaf) == 1);
        T_CHECK(leaf && EVP_PKEY_eq(X509_get0_pubkey(leaf), tls_ca_leaf_key(ca)) == 1);
        X509_free(leaf);
    }
    tls_ca_free(again);
    tls_ca_free(ca);
    T_CHECK(waitpid(-1, NULL, WNOHANG) == -1 && errno == ECHILD); /* no child left behind */

    /* freed before the leaf key arrived: the child is waited for, not left */
    ca = tls_ca_open(p, NULL, err, sizeof err);
    T_CHECK(ca != NULL);
    tls_ca_free(ca);
    T_CHECK(waitpid(-1, NULL, WNOHANG) == -1 && errno == ECHILD);

    /* a trusted CA file that cannot be used, and a corrupt CA */
    char bad[256];
    path_of(bad, sizeof bad, "opened", "not-a-ca-file.pem");
    FILE *fp = fopen(bad, "w");
    fputs("no certificate here\n", fp);
    fclose(fp);
    T_CHECK(tls_ca_open(p, bad, err, sizeof err) == NULL && strstr(err, bad) && strstr(err, "no PEM certificate"));
    T_CHECK(waitpid(-1, NULL, WNOHANG) == -1 && errno == ECHILD);
    path_of(bad, sizeof bad, "opened", "mitmlua-ca.pem");
    fp = fopen(bad, "w");
    fputs("garbage\n", fp);
    fclose(fp);
    T_CHECK(tls_ca_open(p, NULL, err, sizeof err) == NULL && strstr(err, bad) && strstr(err, "private key"));
    T_CHECK(waitpid(-1, NULL, WNOHANG) == -1 && errno == ECHILD);
}

/* ---- leaves ------------------------------------------------------------- */

static tls_ca *shared; /* one CA for the leaf and handshake tests */

static int san_count(X509 *x, int type, const char *dns)
{
    GENERAL_NAMES *g = X509_get_ext_d2i(x, NID_subject_alt_name, NULL, NULL);
    int n = 0, total = g ? sk_GENERAL_NAME_num(g) : 0;
    for (int i = 0; i < total; i++) {
        GENERAL_NAME *gn = sk_GENERAL_NAME_value(g, i);
        if (gn->type != type)
            continue;
        if (type == GEN_DNS) {
            const ASN1_IA5STRING *s = gn->d.dNSName;
            if ((size_t)s->length == strlen(dns) && memcmp(s->data, dns, strlen(dns)) == 0)
                n++;
        } else {
            n++;
        }
    }
    GENERAL_NAMES_free(g);
    return total == 1 ? n : -total;
}

static void leaf_props(X509 *x, const char *host, bool ip)
{
    T_CHECK(verify_leaf(shared, x) == 1);
    if (ip) {
        T_CHECK(X509_check_ip_asc(x, host, 0) == 1);
        /* an IP SAN, not a DNS one */
        T_CHECK(X509_check_host(x, host, 0, X509_CHECK_FLAG_NEVER_CHECK_SUBJECT, NULL) != 1);
        T_CHECK(san_count(x, GEN_IPADD, NULL) == 1);
    } else {
        T_CHECK(X509_check_host(x, host, 0, X509_CHECK_FLAG_NEVER_CHECK_SUBJECT, NULL) == 1);
        T_CHECK(san_count(x, GEN_DNS, host) == 1);
    }
    int days = 0, secs = 0;
    ASN1_TIME_diff(&days, &secs, X509_get0_notBefore(x), X509_get0_notAfter(x));
    T_CHECK(days * 86400L + secs <= 200L * 86400 && days >= 190);
    time_t past = time(NULL) - 86400, later = time(NULL) + 190L * 86400;
    T_CHECK(X509_cmp_time(X509_get0_notBefore(x), &past) < 0); /* backdated */
    T_CHECK(X509_cmp_time(X509_get0_notAfter(x), &later) > 0);
    T_CHECK(X509_check_ca(x) == 0);
    T_CHECK(X509_get_extended_key_usage(x) & XKU_SSL_SERVER);
    /* keyEncipherment only where the key can encipher: RSA */
    bool rsa = EVP_PKEY_is_a(X509_get0_pubkey(x), "RSA");
    T_CHECK(X509_get_key_usage(x) & KU_DIGITAL_SIGNATURE);
    T_CHECK(!!(X509_get_key_usage(x) & KU_KEY_ENCIPHERMENT) == rsa);
    const ASN1_OCTET_STRING *aki = X509_get0_authority_key_id(x);
    T_CHECK(aki && ASN1_OCTET_STRING_cmp(aki, X509_get0_subject_key_id(tls_ca_cert(shared))) == 0);
    T_CHECK(X509_check_private_key(x, tls_ca_leaf_key(shared)) == 1);
    T_CHECK(X509_NAME_cmp(X509_get_issuer_name(x), X509_get_subject_name(tls_ca_cert(shared))) == 0);
}

/* key_type: P-256 leaves by default (the proxy's handshakes sign with
 * them), RSA of key_size bits on request; the CA stays RSA-2048. */
static void leaf_key_types(void)
{
    EVP_PKEY *k = tls_ca_leaf_key(shared);
    T_CHECK(k && EVP_PKEY_is_a(k, "EC") && EVP_PKEY_get_bits(k) == 256);
    char curve[32] = "";
    T_CHECK(k && EVP_PKEY_get_group_name(k, curve, sizeof curve, NULL) == 1);
    T_STREQ(curve, "prime256v1");
    tls_set_leaf_key(TLS_KEY_RSA, 3072);
    tls_ca *ca = ca_in("rsa-leaves");
    char err[256];
    X509 *x = ca ? tls_ca_leaf(ca, "rsa.test", err, sizeof err) : NULL; /* waits for the key */
    tls_set_leaf_key(TLS_KEY_ECDSA, 2048);
    T_CHECK(ca != NULL);
    if (!ca)
        return;
    T_CHECK(x && EVP_PKEY_is_a(X509_get0_pubkey(x), "RSA") && EVP_PKEY_get_bits(X509_get0_pubkey(x)) == 3072);
    T_CHECK(x && (X509_get_key_usage(x) & KU_KEY_ENCIPHERMENT));
    T_CHECK(EVP_PKEY_is_a(X509_get0_pubkey(tls_ca_cert(ca)), "RSA"));
    X509_free(x);
    tls_ca_free(ca);
}

static void leaves(void)
{
    char err[256];
    struct {
        const char *host, *canon;
        bool ip;
    } cases[] = {
        {"example.com", "example.com", false},
        {"127.0.0.1", "127.0.0.1", true},
        {"::1", "::1", true},
        {"Mixed.CASE.Test", "mixed.case.test", false},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        X509 *x = tls_ca_leaf(shared, cases[i].host, err, sizeof err);
        T_CHECK(x != NULL);
        if (!x)
            continue;
        leaf_props(x, cases[i].canon, cases[i].ip);
        X509 *y = tls_ca_leaf(shared, cases[i].canon, err, sizeof err);
        T_CHECK(y == x); /* cached, case-insensitively */
        X509_free(y);
        X509_free(x);
    }
    X509 *fq = tls_ca_leaf(shared, "Example.COM.", err, sizeof err), *ex = tls_ca_leaf(shared, "example.com", err, sizeof err);
    T_CHECK(fq && fq == ex); /* the root's trailing dot names the same host */
    X509_free(fq);
    X509_free(ex);
    X509 *v6 = tls_ca_leaf(shared, "::1", err, sizeof err), *br = tls_ca_leaf(shared, "[::1]", err, sizeof err);
    T_CHECK(v6 && v6 == br); /* brackets are URL syntax, not part of the address */
    X509_free(v6);
    X509_free(br);

    /* a name longer than CN allows: CN truncated to 64, SAN whole */
    char longname[160];
    snprintf(longname, sizeof longname, "%s.%s.%s.example", "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa",
             "bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb", "ccccccccccccccccccccccccccccccccc");
    X509 *l = tls_ca_leaf(shared, longname, err, sizeof err);
    T_CHECK(l != NULL);
    if (l) {
        leaf_props(l, longname, false);
        char cn[128] = "";
        T_CHECK(X509_NAME_get_text_by_NID(X509_get_subject_name(l), NID_commonName, cn, sizeof cn) == 64);
        T_CHECK(strncmp(cn, longname, 64) == 0);
        X509_free(l);
    }

    /* names that cannot go into a certificate (SNI is client-controlled) */
    const char *bad[] = {"", "a b", "evil.test,DNS:bank.test", "x\ny", "IP:1.2.3.4", "[]"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        err[0] = '\0';
        X509 *x = tls_ca_leaf(shared, bad[i], err, sizeof err);
        T_CHECK(x == NULL && err[0]);
        X509_free(x);
    }

    X509 *a = tls_ca_leaf(shared, "a.test", err, sizeof err), *b = tls_ca_leaf(shared, "b.test", err, sizeof err);
    T_CHECK(a && b && a != b);
    T_CHECK(a && b && ASN1_INTEGER_cmp(X509_get0_serialNumber(a), X509_get0_serialNumber(b)) != 0);
    T_CHECK(a && X509_check_host(a, "b.test", 0, 0, NULL) != 1);
    X509_free(a);
    X509_free(b);
}

static void cache_lru(void)
{
    char err[256];
    tls_ca_set_cache_max(shared, 2);
    T_CHECK(tls_ca_cache_count(shared) == 2);
    X509 *a = tls_ca_leaf(shared, "lru-a.test", err, sizeof err);
    X509 *b = tls_ca_leaf(shared, "lru-b.test", err, sizeof err);
    X509 *a2 = tls_ca_leaf(shared, "lru-a.test", err, sizeof err); /* a is now the most recent */
    X509 *c = tls_ca_leaf(shared, "lru-c.test", err, sizeof err);  /* evicts b */
    T_CHECK(tls_ca_cache_count(shared) == 2);
    X509 *a3 = tls_ca_leaf(shared, "lru-a.test", err, sizeof err);
    X509 *b2 = tls_ca_leaf(shared, "lru-b.test", err, sizeof err);
    T_CHECK(a == a2 && a == a3);
    T_CHECK(b2 && b2 != b); /* re-minted */
    /* the evicted certificate is still whole for whoever holds it */
    T_CHECK(X509_check_host(b, "lru-b.test", 0, 0, NULL) == 1 && verify_leaf(shared, b) == 1);
    X509_free(a);
    X509_free(a2);
    X509_free(a3);
    X509_free(b);
    X509_free(b2);
    X509_free(c);
    tls_ca_set_cache_max(shared, 1024);
}

/* ---- handshakes --------------------------------------------------------- */

/* Runs a handshake between client c and server s over a BIO pair. */
static int pump(SSL *c, SSL *s)
{
    BIO *bs, *bc;
    if (BIO_new_bio_pair(&bs, 0, &bc, 0) != 1)
        return 0;
    SSL_set_bio(s, bs, bs);
    SSL_set_bio(c, bc, bc);
    SSL_set_accept_state(s);
    SSL_set_connect_state(c);
    int dc = 0, ds = 0, failed = 0;
    for (int i = 0; i < 100 && !(dc && ds) && !failed; i++) {
        SSL *ends[2] = {c, s};
        int *done[2] = {&dc, &ds};
        for (int k = 0; k < 2; k++) {
            if (*done[k])
                continue;
            int r = SSL_do_handshake(ends[k]);
            int e = SSL_get_error(ends[k], r);
            if (r == 1)
                *done[k] = 1;
            else if (e != SSL_ERROR_WANT_READ && e != SSL_ERROR_WANT_WRITE)
                failed = 1;
        }
    }
    return dc && ds && !failed;
}

/* A plain OpenSSL client trusting only the CA. */
static SSL_CTX *trusting_client(tls_ca *ca)
{
    SSL_CTX *cctx = SSL_CTX_new(TLS_client_method());
    X509_STORE_add_cert(SSL_CTX_get_cert_store(cctx), tls_ca_cert(ca));
    SSL_CTX_set_verify(cctx, SSL_VERIFY_PEER, NULL);
    return cctx;
}

typedef struct hs_result {
    int ok;
    bool got_cert_for;   /* the peer certificate matches `expect` */
    int chain_len;
    flow_conn client;    /* filled from the server SSL (client-facing side) */
    flow_conn server;    /* filled from the client SSL (upstream side) */
} hs_result;

static hs_result handshake(const char *sni, const char *fallback, const char *expect, const char *alpn_offer,
                           size_t alpn_n, const unsigned char *allowed, size_t allowed_n, int max_version)
{
    hs_result r = {0};
    char err[256];
    SSL_CTX *sctx = tls_server_ctx_new(shared, err, sizeof err);
    SSL_CTX *cctx = trusting_client(shared);
    if (max_version)
        SSL_CTX_set_max_proto_version(cctx, max_version);
    SSL *s = SSL_new(sctx), *c = SSL_new(cctx);
    if (fallback)
        tls_set_fallback_host(s, fallback);
    if (allowed)
        tls_set_alpn_allowed(s, allowed, allowed_n);
    if (sni)
        SSL_set_tlsext_host_name(c, sni);
    if (alpn_offer)
        SSL_set_alpn_protos(c, (const unsigned char *)alpn_offer, (unsigned)alpn_n);
    SSL_set1_host(c, expect);
    r.ok = pump(c, s) && SSL_get_verify_result(c) == X509_V_OK;
    X509 *peer = SSL_get0_peer_certificate(c);
    r.got_cert_for = peer && (X509_check_host(peer, expect, 0, 0, NULL) == 1 || X509_check_ip_asc(peer, expect, 0) == 1);
    STACK_OF(X509) *chain = SSL_get_peer_cert_chain(c);
    r.chain_len = chain ? sk_X509_num(chain) : 0;
    if (r.ok) {
        tls_fill_conn_info(s, &r.client, false);
        tls_fill_conn_info(c, &r.server, true);
    }
    SSL_free(s);
    SSL_free(c);
    SSL_CTX_free(sctx);
    SSL_CTX_free(cctx);
    ERR_clear_error();
    return r;
}

static void hs_done(hs_result *r)
{
    flow_conn_clear(&r->client);
    flow_conn_clear(&r->server);
}

#define OFFER_BOTH "\x02h2\x08http/1.1"

static void handshakes_client_facing(void)
{
    /* SNI wins over the fallback host */
    hs_result r = handshake("foo.test", "ignored.test", "foo.test", OFFER_BOTH, sizeof OFFER_BOTH - 1, NULL, 0, 0);
    T_CHECK(r.ok && r.got_cert_for);
    T_CHECK(r.chain_len == 2); /* leaf + CA */
    T_CHECK(r.client.tls);
    T_STREQ(r.client.sni, "foo.test");
    T_STREQ(r.client.tls_version, "TLSv1.3");
    T_CHECK(r.client.cipher && r.client.cipher[0]);
    T_STREQ(r.client.alpn, "http/1.1"); /* h2 is not allowed yet */
    T_CHECK(r.client.cert_subject == NULL);
    T_STREQ(r.server.cert_subject, "CN=foo.test");
    T_STREQ(r.server.cert_issuer, "O=mitmlua,CN=mitmlua");
    hs_done(&r);

    /* no SNI: the fallback host (the CONNECT target) */
    r = handshake(NULL, "fallback.test", "fallback.test", NULL, 0, NULL, 0, 0);
    T_CHECK(r.ok && r.got_cert_for);
    T_CHECK(r.client.sni == NULL && r.client.alpn == NULL);
    hs_done(&r);
    r = handshake(NULL, "127.0.0.1", "127.0.0.1", NULL, 0, NULL, 0, 0);
    T_CHECK(r.ok && r.got_cert_for);
    hs_done(&r);

    /* an SNI no certificate may carry: the fallback host instead */
    r = handshake("evil.test,DNS:bank.test", "fallback.test", "fallback.test", NULL, 0, NULL, 0, 0);
    T_CHECK(r.ok && r.got_cert_for);
    hs_done(&r);

    /* neither: a certificate still, for "mitmlua" */
    r = handshake(NULL, NULL, "mitmlua", NULL, 0, NULL, 0, 0);
    T_CHECK(r.ok && r.got_cert_for);

    hs_done(&r);

    /* the client checks the name: a certificate for foo.test is not bar.test's */
    r = handshake("foo.test", NULL, "bar.test", NULL, 0, NULL, 0, 0);
    T_CHECK(!r.ok);
    hs_done(&r);

    /* TLS 1.2 goes through the same certificate callback */
    r = handshake("old.test", NULL, "old.test", "\x08http/1.1", 9, NULL, 0, TLS1_2_VERSION);
    T_CHECK(r.ok && r.got_cert_for);
    T_STREQ(r.client.tls_version, "TLSv1.2");
    T_STREQ(r.client.alpn, "http/1.1");
    T_STREQ(r.client.cipher, r.server.cipher);
    hs_done(&r);
}

static void alpn(void)
{
    /* client offers only h2: no ALPN by default */
    hs_result r = handshake("a.test", NULL, "a.test", "\x02h2", 3, NULL, 0, 0);
    T_CHECK(r.ok && r.client.alpn == NULL && r.server.alpn == NULL);
    hs_done(&r);
    /* allowed list: our order of preference wins */
    static const unsigned char h2_first[] = "\x02h2\x08http/1.1";
    static const char h1_first[] = "\x08http/1.1\x02h2";
    r = handshake("a.test", NULL, "a.test", h1_first, sizeof h1_first - 1, h2_first, sizeof h2_first - 1, 0);
    T_CHECK(r.ok);
    T_STREQ(r.client.alpn, "h2");
    T_STREQ(r.server.alpn, "h2");
    hs_done(&r);
    /* empty allowed list: no ALPN even for http/1.1 */
    r = handshake("a.test", NULL, "a.test", OFFER_BOTH, sizeof OFFER_BOTH - 1, (const unsigned char *)"", 0, 0);
    T_CHECK(r.ok && r.client.alpn == NULL);
    hs_done(&r);
    /* nothing in common: no ALPN, and the handshake still succeeds */
    r = handshake("a.test", NULL, "a.test", "\x08http/1.0", 9, (const unsigned char *)"\x02h2", 3, 0);
    T_CHECK(r.ok && r.client.alpn == NULL);
    hs_done(&r);

    /* malformed wire lists are refused */
    SSL_CTX *ctx = SSL_CTX_new(TLS_server_method());
    SSL *s = SSL_new(ctx);
    T_CHECK(tls_set_alpn_allowed(s, (const unsigned char *)"\x05h2", 3) == -1);
    T_CHECK(tls_set_alpn_allowed(s, (const unsigned char *)"\x00", 1) == -1);
    T_CHECK(tls_set_alpn_allowed(s, (const unsigned char *)"\x02h2", 3) == 0);
    T_CHECK(tls_set_alpn_allowed(s, (const unsigned char *)"\x08http/1.1", 9) == 0); /* replaces */
    T_CHECK(tls_set_fallback_host(s, "x.test") == 0 && tls_set_fallback_host(s, "y.test") == 0);
    T_CHECK(tls_set_fallback_host(s, NULL) == 0);
    T_CHECK(tls_set_fallback_host(s, "z.test") == 0); /* freed with the SSL: ASan checks */
    SSL_free(s);
    SSL_CTX_free(ctx);
}

/* ---- upstream ----------------------------------------------------------- */

typedef struct up_result {
    int ok;
    const char *verr;
    char herr[256];
    flow_conn server, client;
} up_result;

/* Our client context against our own server context (minting from
 * `server_ca`), as the proxy's upstream side would see a server. */
static up_result upstream(tls_ca *server_ca, const tlsup_opts *o, const char *host, const char *sni,
                          const char *fallback, const char *override_sni)
{
    up_result r = {0};
    char err[256];
    SSL_CTX *sctx = tls_server_ctx_new(server_ca, err, sizeof err);
    SSL_CTX *cctx = tlsup_ctx_new(o, err, sizeof err);
    if (!cctx) {
        fprintf(stderr, "  tlsup_ctx_new: %s\n", err);
        SSL_CTX_free(sctx);
        return r;
    }
    SSL *s = SSL_new(sctx), *c = SSL_new(cctx);
    if (fallback)
        tls_set_fallback_host(s, fallback);
    if (tlsup_prepare(c, host, 443, sni, err, sizeof err) < 0)
        fprintf(stderr, "  tls_client_prepare: %s\n", err);
    if (override_sni)
        SSL_set_tlsext_host_name(c, override_sni);
    r.ok = pump(c, s);
    r.verr = tlsup_verify_error(c);
    if (!r.ok)
        tlsup_handshake_error(c, r.herr, sizeof r.herr);
    else {
        tls_fill_conn_info(c, &r.server, true);
        tls_fill_conn_info(s, &r.client, false);
    }
    SSL_free(s);
    SSL_free(c);
    SSL_CTX_free(sctx);
    SSL_CTX_free(cctx);
    ERR_clear_error();
    return r;
}

static void up_done(up_result *r)
{
    flow_conn_clear(&r->server);
    flow_conn_clear(&r->client);
}

/* One handshake of cctx's with sctx towards host:port: 1 resumed, 0 full,
 * -1 failed.  The client reads once after it, as the proxy does, so that a
 * TLS 1.3 server's tickets (sent after its Finished) reach the cache. */
static int resume_round_as(SSL_CTX *cctx, SSL_CTX *sctx, const char *host, uint16_t port, X509 *mine,
                           char *herr, size_t herrsz)
{
    char err[256], buf[16];
    SSL *s = SSL_new(sctx), *c = SSL_new(cctx);
    int rc = -1;
    if (mine) /* as client_certs would, before tlsup_prepare names the session */
        SSL_use_cert_and_key(c, mine, tls_ca_leaf_key(shared), NULL, 1);
    if (tlsup_prepare(c, host, port, NULL, err, sizeof err) == 0 && pump(c, s)) {
        (void)SSL_read(c, buf, sizeof buf); /* nothing to read: processes the tickets */
        rc = SSL_session_reused(c) ? 1 : 0;
    } else {
        tlsup_handshake_error(c, herr, herrsz);
    }
    SSL_free(s);
    SSL_free(c);
    ERR_clear_error();
    return rc;
}

static int resume_round(SSL_CTX *cctx, SSL_CTX *sctx, const char *host, uint16_t port, char *herr, size_t herrsz)
{
    return resume_round_as(cctx, sctx, host, port, NULL, herr, herrsz);
}

/* Resumption towards servers: the second connection to a server resumes,
 * for TLS 1.3 and 1.2; other ports and names do not share sessions; a
 * server that now presents a certificate that does not verify is refused
 * although a session for it is cached (it cannot resume: its ticket keys
 * are not the old server's). */
static void upstream_resumption(void)
{
    char err[256], herr[256] = "";
    tls_ca *untrusted = ca_in("untrusted");
    tlsup_opts o = {.insecure = false, .extra_ca_file = tls_ca_cert_path(shared), .session_cache_max = 16};
    SSL_CTX *cctx = tlsup_ctx_new(&o, err, sizeof err);
    SSL_CTX *sctx = tls_server_ctx_new(shared, err, sizeof err);
    SSL_CTX *bad = untrusted ? tls_server_ctx_new(untrusted, err, sizeof err) : NULL;
    T_CHECK(cctx && sctx && bad);
    if (!cctx || !sctx || !bad)
        goto out;
    T_CHECK(resume_round(cctx, sctx, "foo.test", 443, herr, sizeof herr) == 0);
    T_CHECK(tlsup_session_count(cctx) == 1);
    T_CHECK(resume_round(cctx, sctx, "foo.test", 443, herr, sizeof herr) == 1);
    T_CHECK(resume_round(cctx, sctx, "foo.test", 8443, herr, sizeof herr) == 0); /* another port */
    T_CHECK(resume_round(cctx, sctx, "bar.test", 443, herr, sizeof herr) == 0);  /* another name */
    T_CHECK(tlsup_session_count(cctx) == 3);
    /* the server at foo.test:443 now has a certificate we do not trust */
    T_CHECK(resume_round(cctx, bad, "foo.test", 443, herr, sizeof herr) == -1);
    T_CHECK(strstr(herr, "certificate verify failed") != NULL);
    T_CHECK(resume_round(cctx, sctx, "foo.test", 443, herr, sizeof herr) == 1); /* the real one again */
    /* TLS 1.2: a session ID or ticket, resumed the same way */
    SSL_CTX_set_max_proto_version(sctx, TLS1_2_VERSION);
    T_CHECK(resume_round(cctx, sctx, "old.test", 443, herr, sizeof herr) == 0);
    T_CHECK(resume_round(cctx, sctx, "old.test", 443, herr, sizeof herr) == 1);
    /* again: a TLS 1.2 resumption brings no new session, and the one kept
     * must survive the connection it was offered on ending without
     * close_notify (OpenSSL then marks that connection's session) */
    T_CHECK(resume_round(cctx, sctx, "old.test", 443, herr, sizeof herr) == 1);
    /* a session made with a client certificate is not offered without
     * it, nor with another one, and the other way round */
    X509 *a = tls_ca_leaf(shared, "client-a.test", err, sizeof err), *b = tls_ca_leaf(shared, "client-b.test", err, sizeof err);
    T_CHECK(a && b);
    T_CHECK(resume_round_as(cctx, sctx, "mtls.test", 443, a, herr, sizeof herr) == 0);
    T_CHECK(resume_round_as(cctx, sctx, "mtls.test", 443, NULL, herr, sizeof herr) == 0);
    T_CHECK(resume_round_as(cctx, sctx, "mtls.test", 443, b, herr, sizeof herr) == 0);
    T_CHECK(resume_round_as(cctx, sctx, "mtls.test", 443, a, herr, sizeof herr) == 1);
    T_CHECK(resume_round_as(cctx, sctx, "mtls.test", 443, NULL, herr, sizeof herr) == 1);
    X509_free(a);
    X509_free(b);
    /* no cache asked for: never resumed */
    SSL_CTX_free(cctx);
    o.session_cache_max = 0;
    cctx = tlsup_ctx_new(&o, err, sizeof err);
    T_CHECK(cctx && resume_round(cctx, sctx, "foo.test", 443, herr, sizeof herr) == 0);
    T_CHECK(cctx && resume_round(cctx, sctx, "foo.test", 443, herr, sizeof herr) == 0);
out:
    SSL_CTX_free(cctx);
    SSL_CTX_free(sctx);
    SSL_CTX_free(bad);
    if (untrusted)
        tls_ca_free(untrusted);
}

static void upstream_verification(void)
{
    tls_ca *untrusted = ca_in("untrusted");
    T_CHECK(untrusted != NULL);
    if (!untrusted)
        return;
    tlsup_opts o = {.insecure = false, .extra_ca_file = tls_ca_cert_path(shared)};

    /* trusted through extra_ca_file, name from host, sent as SNI */
    up_result r = upstream(shared, &o, "foo.test", NULL, NULL, NULL);
    T_CHECK(r.ok && r.verr == NULL);
    T_STREQ(r.client.sni, "foo.test");
    T_STREQ(r.server.sni, "foo.test");
    T_STREQ(r.server.alpn, "http/1.1");
    T_STREQ(r.server.cert_subject, "CN=foo.test");
    up_done(&r);

    /* an IP literal: no SNI, the certificate must carry the address */
    r = upstream(shared, &o, "127.0.0.1", NULL, "127.0.0.1", NULL);
    T_CHECK(r.ok && r.verr == NULL);
    T_CHECK(r.client.sni == NULL);
    up_done(&r);
    r = upstream(shared, &o, "[::1]", NULL, "::1", NULL);
    T_CHECK(r.ok && r.verr == NULL);
    up_done(&r);
    /* ... and a certificate for another address fails */
    r = upstream(shared, &o, "127.0.0.1", NULL, "127.0.0.2", NULL);
    T_CHECK(!r.ok && r.verr && strstr(r.verr, "IP address mismatch"));
    up_done(&r);

    /* an IP address with an explicit SNI: the SNI name is what must match */
    r = upstream(shared, &o, "127.0.0.1", "named.test", "127.0.0.1", NULL);
    T_CHECK(r.ok && r.verr == NULL);
    T_STREQ(r.client.sni, "named.test");
    up_done(&r);

    /* the server presents a certificate for another name */
    r = upstream(shared, &o, "foo.test", NULL, NULL, "other.test");
    T_CHECK(!r.ok && r.verr && strstr(r.verr, "hostname mismatch"));
    T_CHECK(strstr(r.herr, "certificate verify failed: hostname mismatch") == r.herr);
    up_done(&r);

    /* signed by a CA nobody trusts: a readable reason */
    r = upstream(untrusted, &o, "foo.test", NULL, NULL, NULL);
    T_CHECK(!r.ok && r.verr != NULL);
    T_STREQ(r.verr, "self-signed certificate in certificate chain"); /* we send the CA too */
    T_CHECK(strstr(r.herr, "certificate verify failed: ") == r.herr);
    up_done(&r);
    /* the system store alone does not trust our CAs either */
    tlsup_opts sys = {.insecure = false, .extra_ca_file = NULL};
    r = upstream(shared, &sys, "foo.test", NULL, NULL, NULL);
    T_CHECK(!r.ok && r.verr != NULL);
    up_done(&r);

    /* -k: anything goes, and nothing is reported */
    tlsup_opts k = {.insecure = true, .extra_ca_file = NULL};
    r = upstream(untrusted, &k, "foo.test", NULL, NULL, "other.test");
    T_CHECK(r.ok && r.verr == NULL);
    T_STREQ(r.server.cert_subject, "CN=other.test");
    up_done(&r);

    /* a server that is not speaking TLS */
    char err[256];
    SSL_CTX *cctx = tlsup_ctx_new(&o, err, sizeof err);
    SSL *c = SSL_new(cctx);
    BIO *rb = BIO_new_mem_buf("HTTP/1.1 400 Bad Request\r\n\r\n", -1), *wb = BIO_new(BIO_s_mem());
    SSL_set_bio(c, rb, wb);
    T_CHECK(tlsup_prepare(c, "foo.test", 443, NULL, err, sizeof err) == 0);
    T_CHECK(SSL_connect(c) != 1);
    char herr[256];
    tlsup_handshake_error(c, herr, sizeof herr);
    T_CHECK(strstr(herr, "wrong version number") != NULL);
    SSL_free(c);
    SSL_CTX_free(cctx);
    tls_ca_free(untrusted);
}

static void client_ctx_errors(void)
{
    char err[512];
    tlsup_opts o = {.insecure = false, .extra_ca_file = "/nonexistent/ca.pem"};
    T_CHECK(tlsup_ctx_new(&o, err, sizeof err) == NULL);
    T_CHECK(strstr(err, "/nonexistent/ca.pem") != NULL);
    char p[256];
    path_of(p, sizeof p, "notapem", NULL);
    FILE *fp = fopen(p, "w");
    fputs("not a certificate\n", fp);
    fclose(fp);
    o.extra_ca_file = p;
    T_CHECK(tlsup_ctx_new(&o, err, sizeof err) == NULL);
    T_CHECK(strstr(err, p) != NULL);
    o.extra_ca_file = NULL;
    SSL_CTX *ctx = tlsup_ctx_new(&o, err, sizeof err);
    T_CHECK(ctx != NULL);
    T_CHECK(ctx && (SSL_CTX_get_verify_mode(ctx) & SSL_VERIFY_PEER));
    SSL_CTX_free(ctx);
    SSL *s = NULL;
    ctx = tlsup_ctx_new(&o, err, sizeof err);
    s = SSL_new(ctx);
    T_CHECK(tlsup_prepare(s, "bad host", 443, NULL, err, sizeof err) == -1);
    SSL_free(s);
    SSL_CTX_free(ctx);
    ERR_clear_error();
}

/* ---- threads ------------------------------------------------------------ */

typedef struct worker {
    int id, failures;
} worker;

static void *mint_worker(void *arg)
{
    worker *w = arg;
    char err[256], host[64];
    for (int i = 0; i < 200; i++) {
        /* overlapping names across threads: races on one host and on
         * eviction both happen */
        snprintf(host, sizeof host, "h%d.t%d.test", (i * 7 + w->id) % 60, i % 3);
        X509 *x = tls_ca_leaf(shared, host, err, sizeof err);
        if (!x || X509_check_host(x, host, 0, 0, NULL) != 1)
            w->failures++;
        if (i % 20 == w->id) { /* and now and then a real handshake */
            hs_result r = handshake(host, NULL, host, NULL, 0, NULL, 0, 0);
            if (!r.ok || !r.got_cert_for)
                w->failures++;
            hs_done(&r);
        }
        X509_free(x);
    }
    ERR_clear_error();
    return NULL;
}

static void concurrency(void)
{
    tls_ca_set_cache_max(shared, 16);
    pthread_t th[4];
    worker w[4];
    for (int i = 0; i < 4; i++) {
        w[i] = (worker){.id = i};
        pthread_create(&th[i], NULL, mint_worker, &w[i]);
    }
    for (int i = 0; i < 4; i++) {
        pthread_join(th[i], NULL);
        T_CHECK(w[i].failures == 0);
    }
    T_CHECK(tls_ca_cache_count(shared) == 16);
    char err[256];
    X509 *a = tls_ca_leaf(shared, "after.test", err, sizeof err), *b = tls_ca_leaf(shared, "after.test", err, sizeof err);
    T_CHECK(a && a == b);
    X509_free(a);
    X509_free(b);
    tls_ca_set_cache_max(shared, 1024);
}

/* ---- the TLS options' values (tlsopts) ---------------------------------- */

static void tlsopts_versions(void)
{
    int v = -1;
    T_CHECK(tlsopts_parse_version("UNBOUNDED", &v) == 0 && v == 0);
    T_CHECK(tlsopts_parse_version("TLS1", &v) == 0 && v == TLS1_VERSION);
    T_CHECK(tlsopts_parse_version("TLS1_1", &v) == 0 && v == TLS1_1_VERSION);
    T_CHECK(tlsopts_parse_version("TLS1_2", &v) == 0 && v == TLS1_2_VERSION);
    T_CHECK(tlsopts_parse_version("TLS1_3", &v) == 0 && v == TLS1_3_VERSION);
    T_CHECK(tlsopts_parse_version("SSL3", &v) == 0 && v == SSL3_VERSION);
    v = 7;
    T_CHECK(tlsopts_parse_version("tls1_2", &v) < 0 && v == 7); /* mitmproxy's names are exact */
    T_CHECK(tlsopts_parse_version("TLS1_4", &v) < 0 && tlsopts_parse_version("", &v) < 0);
    T_CHECK(tlsopts_parse_version(NULL, &v) < 0 && tlsopts_parse_version("TLS1_2 ", &v) < 0);
    T_STREQ(tlsopts_version_name(0), "UNBOUNDED");
    T_STREQ(tlsopts_version_name(TLS1_3_VERSION), "TLS1_3");
    T_STREQ(tlsopts_version_name(TLS1_VERSION), "TLS1");
}

static void tlsopts_cert_specs(void)
{
    const char *d, *p;
    size_t dl;
    T_CHECK(tlsopts_split_cert_spec("a.test=/x/y.pem", &d, &dl, &p) == 0 && dl == 6 && !strncmp(d, "a.test", dl) &&
            !strcmp(p, "/x/y.pem"));
    T_CHECK(tlsopts_split_cert_spec("/x/y.pem", &d, &dl, &p) == 0 && dl == 1 && *d == '*' && !strcmp(p, "/x/y.pem"));
    T_CHECK(tlsopts_split_cert_spec("*.a.test=c.pem", &d, &dl, &p) == 0 && dl == 8 && !strcmp(p, "c.pem"));
    /* only the first '=' splits: a path may hold one */
    T_CHECK(tlsopts_split_cert_spec("a=b=c", &d, &dl, &p) == 0 && dl == 1 && !strcmp(p, "b=c"));
    T_CHECK(tlsopts_split_cert_spec("=c.pem", &d, &dl, &p) < 0);
    T_CHECK(tlsopts_split_cert_spec("a.test=", &d, &dl, &p) < 0);
    T_CHECK(tlsopts_split_cert_spec("", &d, &dl, &p) < 0);
    /* mitmproxy's asterisk forms: any parent domain, "*" for all */
    T_CHECK(tlsopts_name_matches("a.test", "a.test") && tlsopts_name_matches("A.Test", "a.TEST"));
    T_CHECK(tlsopts_name_matches("*.test", "a.test") && tlsopts_name_matches("*.test", "x.a.test"));
    T_CHECK(tlsopts_name_matches("*.a.test", "x.y.a.test") && tlsopts_name_matches("*", "anything"));
    T_CHECK(!tlsopts_name_matches("*.a.test", "a.test") && !tlsopts_name_matches("a.test", "b.a.test"));
    T_CHECK(!tlsopts_name_matches("*.test", "atest") && !tlsopts_name_matches("x*.test", "xa.test"));
    T_CHECK(!tlsopts_name_matches("*.b.test", "ab.test"));
}

static int check_with(const char *a, const char *b, char *err, size_t errsz)
{
    opts o;
    opts_defaults(&o);
    char e2[256];
    int rc = opts_set(&o, a, e2, sizeof e2) < 0 || (b && opts_set(&o, b, e2, sizeof e2) < 0)
                 ? -2
                 : tlsopts_check(&o, err, errsz);
    opts_free(&o);
    return rc;
}

static void tlsopts_option_values(void)
{
    char err[512];
    T_CHECK(check_with("tls_version_client_min=TLS1", "tls_version_client_max=TLS1_3", err, sizeof err) == 0);
    T_CHECK(check_with("tls_version_server_min=UNBOUNDED", "tls_version_server_max=UNBOUNDED", err, sizeof err) == 0);
    T_CHECK(check_with("tls_version_server_min=TLS1_3", NULL, err, sizeof err) == 0); /* max UNBOUNDED */
    T_CHECK(check_with("tls_version_client_min=TLS1_3", "tls_version_client_max=TLS1_2", err, sizeof err) < 0 &&
            strstr(err, "tls_version_client_min 'TLS1_3' is above tls_version_client_max 'TLS1_2'"));
    T_CHECK(check_with("tls_version_server_max=TLS2", NULL, err, sizeof err) < 0 &&
            strstr(err, "tls_version_server_max: 'TLS2'"));
    T_CHECK(check_with("tls_version_client_min=SSL3", NULL, err, sizeof err) < 0 && strstr(err, "no SSL 3.0"));
    T_CHECK(check_with("ciphers_client=ECDHE-RSA-AES128-GCM-SHA256:HIGH", NULL, err, sizeof err) == 0);
    T_CHECK(check_with("ciphers_server=TLS_AES_256_GCM_SHA384", NULL, err, sizeof err) == 0); /* a TLS 1.3 list */
    T_CHECK(check_with("ciphers_server=BOGUS", NULL, err, sizeof err) < 0 &&
            strstr(err, "invalid value for ciphers_server: 'BOGUS'"));
    T_CHECK(check_with("ciphers_client=!ALL", NULL, err, sizeof err) < 0 && strstr(err, "ciphers_client"));
    T_CHECK(check_with("key_size=4096", NULL, err, sizeof err) == 0);
    T_CHECK(check_with("key_size=1023", NULL, err, sizeof err) < 0 && strstr(err, "key_size: 1023"));
    T_CHECK(check_with("key_size=8193", NULL, err, sizeof err) < 0 && strstr(err, "key_size: 8193"));
    T_CHECK(check_with("key_size=-1", NULL, err, sizeof err) == -2); /* not a whole number: opts_set says so */
    T_CHECK(check_with("add_upstream_certs_to_client_chain=true", NULL, err, sizeof err) == 0);
    T_CHECK(check_with("upstream_cert=false", NULL, err, sizeof err) == 0);
    T_CHECK(check_with("client_certs=/nonexistent/x.pem", NULL, err, sizeof err) < 0 &&
            strstr(err, "client_certs: '/nonexistent/x.pem'"));
    T_CHECK(check_with("client_certs=/tmp", NULL, err, sizeof err) == 0); /* a directory of HOST.pem */
    T_CHECK(check_with("ssl_verify_upstream_trusted_confdir=/nonexistent", NULL, err, sizeof err) < 0 &&
            strstr(err, "ssl_verify_upstream_trusted_confdir: '/nonexistent'"));
    T_CHECK(check_with("ssl_verify_upstream_trusted_confdir=/tmp", NULL, err, sizeof err) == 0);

    /* certs and client_certs files: certificate and matching key, in one PEM */
    char dir[256], both[300], certonly[300], mism[300];
    path_of(dir, sizeof dir, "tlsopts", NULL);
    mkdir(dir, 0700);
    snprintf(both, sizeof both, "%s/both.pem", dir);
    snprintf(certonly, sizeof certonly, "%s/cert.pem", dir);
    snprintf(mism, sizeof mism, "%s/mismatch.pem", dir);
    EVP_PKEY *k1 = EVP_RSA_gen(2048), *k2 = EVP_RSA_gen(2048);
    X509 *x = X509_new();
    T_CHECK(k1 && k2 && x);
    X509_set_version(x, X509_VERSION_3);
    ASN1_INTEGER_set(X509_get_serialNumber(x), 1);
    X509_gmtime_adj(X509_getm_notBefore(x), 0);
    X509_gmtime_adj(X509_getm_notAfter(x), 3600);
    X509_NAME_add_entry_by_txt(X509_get_subject_name(x), "CN", MBSTRING_ASC, (const unsigned char *)"own.test", -1,
                               -1, 0);
    X509_set_issuer_name(x, X509_get_subject_name(x));
    X509_set_pubkey(x, k1);
    T_CHECK(X509_sign(x, k1, EVP_sha256()) > 0);
    FILE *f = fopen(both, "w");
    PEM_write_X509(f, x);
    PEM_write_PrivateKey(f, k1, NULL, NULL, 0, NULL, NULL);
    fclose(f);
    f = fopen(certonly, "w");
    PEM_write_X509(f, x);
    fclose(f);
    f = fopen(mism, "w");
    PEM_write_X509(f, x);
    PEM_write_PrivateKey(f, k2, NULL, NULL, 0, NULL, NULL);
    fclose(f);
    char set[400];
    snprintf(set, sizeof set, "certs=*.own.test=%s", both);
    T_CHECK(check_with(set, NULL, err, sizeof err) == 0);
    snprintf(set, sizeof set, "client_certs=%s", both);
    T_CHECK(check_with(set, NULL, err, sizeof err) == 0);
    snprintf(set, sizeof set, "certs=%s", certonly);
    T_CHECK(check_with(set, NULL, err, sizeof err) < 0 && strstr(err, "no (unencrypted) PEM private key"));
    snprintf(set, sizeof set, "client_certs=%s", mism);
    T_CHECK(check_with(set, NULL, err, sizeof err) < 0 && strstr(err, "does not match"));
    snprintf(set, sizeof set, "certs=own.test=%s", dir);
    T_CHECK(check_with(set, NULL, err, sizeof err) < 0 && strstr(err, "certs:"));
    /* the client-facing context picks the entry for matching hosts only */
    opts o;
    opts_defaults(&o);
    snprintf(set, sizeof set, "certs=*.own.test=%s", both);
    T_CHECK(opts_set(&o, set, err, sizeof err) == 0);
    SSL_CTX *ctx = SSL_CTX_new(TLS_server_method());
    T_CHECK(ctx && tlsopts_apply_server(ctx, &o, err, sizeof err) == 0);
    SSL *ssl = ctx ? SSL_new(ctx) : NULL;
    T_CHECK(ssl && tlsopts_use_own_cert(ssl, "b.test") == 0);
    T_CHECK(ssl && tlsopts_use_own_cert(ssl, "a.own.test") == 1 && X509_cmp(SSL_get_certificate(ssl), x) == 0);
    T_CHECK(ssl && tlsopts_use_own_cert(ssl, "own.test") == 1); /* the certificate's CN registers it too */
    SSL_free(ssl);
    SSL_CTX_free(ctx);
    opts_free(&o);
    X509_free(x);
    EVP_PKEY_free(k1);
    EVP_PKEY_free(k2);
}

int main(void)
{
    snprintf(base, sizeof base, "/tmp/mitmlua-tls-XXXXXX");
    if (!mkdtemp(base))
        return 1;
    T_RUN(ca_files_and_modes);
    T_RUN(ca_reload_and_uniqueness);
    T_RUN(ca_recovery);
    T_RUN(ca_corrupt);
    T_RUN(ca_open);
    T_RUN(tlsopts_versions);
    T_RUN(tlsopts_cert_specs);
    T_RUN(tlsopts_option_values);
    /* the leaf, cache, handshake and thread tests use the CA the way the
     * proxy does: prepared by a child, made on first use */
    char p[256], err[512];
    path_of(p, sizeof p, "shared", NULL);
    shared = tls_ca_open(p, NULL, err, sizeof err);
    if (!shared) {
        fprintf(stderr, "tls_ca_open(%s): %s\n", p, err);
        return 1;
    }
    T_RUN(leaves);
    T_RUN(leaf_key_types);
    T_RUN(cache_lru);
    T_RUN(handshakes_client_facing);
    T_RUN(alpn);
    T_RUN(client_ctx_errors);
    T_RUN(upstream_verification);
    T_RUN(upstream_resumption);
    T_RUN(concurrency);
    tls_ca_free(shared);
    char cmd[128];
    snprintf(cmd, sizeof cmd, "rm -rf %s", base);
    if (system(cmd) != 0)
        return 1;
    T_DONE();
}
