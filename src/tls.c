/* tls.c — see tls.h.
 *
 * One RSA-2048 key signs every leaf: generating a key per host would cost
 * milliseconds per new host for no security gain (the CA key is the secret
 * that matters), which is also what mitmproxy does.  Leaves are cached per
 * host in a small LRU guarded by one mutex; entries are X509 references, so
 * a connection still using an evicted certificate keeps it alive. */
#include "tls.h"

#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/pkcs12.h>
#include <openssl/rand.h>
#include <openssl/rsa.h>
#include <openssl/x509v3.h>

#define TLS_CACHE_SIZE 1024
/* Browsers refuse leaf certificates valid for more than 200 days (CA/B
 * Forum, from March 2026); the backdating counts toward that. */
#define TLS_LEAF_BACKDATE_DAYS 2
#define TLS_LEAF_TOTAL_DAYS 199

typedef struct leaf_entry {
    char *host;
    X509 *cert;
    unsigned long long used;
} leaf_entry;

struct tls_ca {
    EVP_PKEY *key;
    X509 *cert;
    EVP_PKEY *leaf_key;
    pthread_mutex_t lock;
    leaf_entry cache[TLS_CACHE_SIZE];
    size_t ncache;
    unsigned long long tick;
};

static int ex_fallback_idx = -1;
static pthread_once_t ex_once = PTHREAD_ONCE_INIT;

static void ssl_errstr(char *err, size_t errsz, const char *what)
{
    unsigned long e = ERR_get_error();
    char es[200] = "unknown error";
    if (e)
        ERR_error_string_n(e, es, sizeof es);
    snprintf(err, errsz, "%s: %s", what, es);
    ERR_clear_error();
}

/* ---- files -------------------------------------------------------------- */

static int mkdir_p(const char *dir, char *err, size_t errsz)
{
    char path[4096];
    snprintf(path, sizeof path, "%s", dir);
    for (char *p = path + 1; *p; p++) {
        if (*p != '/')
            continue;
        *p = '\0';
        if (mkdir(path, 0700) < 0 && errno != EEXIST) {
            snprintf(err, errsz, "cannot create %s: %s", path, strerror(errno));
            return -1;
        }
        *p = '/';
    }
    if (mkdir(path, 0700) < 0 && errno != EEXIST) {
        snprintf(err, errsz, "cannot create %s: %s", path, strerror(errno));
        return -1;
    }
    return 0;
}

/* Write `data` to dir/name atomically (temp file + rename), with `mode`
 * from the moment the file exists. */
static int write_file(const char *dir, const char *name, const void *data, size_t n, mode_t mode, char *err,
                      size_t errsz)
{
    char tmp[4200], dst[4200];
    snprintf(dst, sizeof dst, "%s/%s", dir, name);
    snprintf(tmp, sizeof tmp, "%s/.%s.tmp%ld", dir, name, (long)getpid());
    int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, mode);
    if (fd < 0) {
        snprintf(err, errsz, "cannot write %s: %s", dst, strerror(errno));
        return -1;
    }
    fchmod(fd, mode); /* the umask must not widen or narrow what we chose */
    const char *p = data;
    size_t left = n;
    while (left) {
        ssize_t w = write(fd, p, left);
        if (w < 0) {
            if (errno == EINTR)
                continue;
            snprintf(err, errsz, "cannot write %s: %s", dst, strerror(errno));
            close(fd);
            unlink(tmp);
            return -1;
        }
        p += w;
        left -= (size_t)w;
    }
    if (fsync(fd) < 0 || close(fd) < 0 || rename(tmp, dst) < 0) {
        snprintf(err, errsz, "cannot write %s: %s", dst, strerror(errno));
        unlink(tmp);
        return -1;
    }
    return 0;
}

static char *bio_take(BIO *b, size_t *n)
{
    char *data;
    long len = BIO_get_mem_data(b, &data);
    char *copy = malloc(len > 0 ? (size_t)len : 1);
    if (copy && len > 0)
        memcpy(copy, data, (size_t)len);
    *n = len > 0 ? (size_t)len : 0;
    return copy;
}

/* ---- certificates ------------------------------------------------------- */

static EVP_PKEY *new_rsa_key(void)
{
    return EVP_RSA_gen(2048);
}

static int random_serial(X509 *x)
{
    unsigned char buf[16];
    if (RAND_bytes(buf, sizeof buf) != 1)
        return -1;
    buf[0] &= 0x7f; /* positive */
    BIGNUM *bn = BN_bin2bn(buf, sizeof buf, NULL);
    int ok = bn && BN_to_ASN1_INTEGER(bn, X509_get_serialNumber(x)) != NULL;
    BN_free(bn);
    return ok ? 0 : -1;
}

static int add_ext(X509 *cert, X509 *issuer, int nid, const char *value)
{
    X509V3_CTX ctx;
    X509V3_set_ctx_nodb(&ctx);
    X509V3_set_ctx(&ctx, issuer, cert, NULL, NULL, 0);
    X509_EXTENSION *ex = X509V3_EXT_conf_nid(NULL, &ctx, nid, value);
    if (!ex)
        return -1;
    int ok = X509_add_ext(cert, ex, -1);
    X509_EXTENSION_free(ex);
    return ok ? 0 : -1;
}

static X509 *make_ca_cert(EVP_PKEY *key)
{
    X509 *x = X509_new();
    if (!x)
        return NULL;
    X509_NAME *name = X509_get_subject_name(x);
    if (!X509_set_version(x, 2) || random_serial(x) < 0 ||
        !X509_gmtime_adj(X509_getm_notBefore(x), -2L * 24 * 3600) ||
        !X509_gmtime_adj(X509_getm_notAfter(x), 10L * 365 * 24 * 3600) ||
        !X509_NAME_add_entry_by_txt(name, "CN", MBSTRING_ASC, (const unsigned char *)"mitmlua", -1, -1, 0) ||
        !X509_NAME_add_entry_by_txt(name, "O", MBSTRING_ASC, (const unsigned char *)"mitmlua", -1, -1, 0) ||
        !X509_set_issuer_name(x, name) || !X509_set_pubkey(x, key) ||
        add_ext(x, x, NID_basic_constraints, "critical,CA:TRUE") < 0 ||
        add_ext(x, x, NID_key_usage, "critical,keyCertSign,cRLSign") < 0 ||
        add_ext(x, x, NID_subject_key_identifier, "hash") < 0 || !X509_sign(x, key, EVP_sha256())) {
        X509_free(x);
        return NULL;
    }
    return x;
}

static bool is_ip_literal(const char *host)
{
    unsigned char buf[16];
    ASN1_OCTET_STRING *ip = a2i_IPADDRESS(host);
    (void)buf;
    if (!ip)
        return false;
    ASN1_OCTET_STRING_free(ip);
    return true;
}

static X509 *mint_leaf(tls_ca *ca, const char *host)
{
    X509 *x = X509_new();
    if (!x)
        return NULL;
    char cn[65];
    size_t cl = strlen(host) < 64 ? strlen(host) : 64; /* CN is limited to 64; SAN carries the whole name */
    memcpy(cn, host, cl);
    cn[cl] = '\0';
    char san[600];
    snprintf(san, sizeof san, "%s:%s", is_ip_literal(host) ? "IP" : "DNS", host);
    X509_NAME *name = X509_get_subject_name(x);
    if (!X509_set_version(x, 2) || random_serial(x) < 0 ||
        !X509_gmtime_adj(X509_getm_notBefore(x), -(long)TLS_LEAF_BACKDATE_DAYS * 24 * 3600) ||
        !X509_gmtime_adj(X509_getm_notAfter(x),
                         (long)(TLS_LEAF_TOTAL_DAYS - TLS_LEAF_BACKDATE_DAYS) * 24 * 3600) ||
        !X509_NAME_add_entry_by_txt(name, "CN", MBSTRING_UTF8, (const unsigned char *)cn, -1, -1, 0) ||
        !X509_NAME_add_entry_by_txt(name, "O", MBSTRING_ASC, (const unsigned char *)"mitmlua", -1, -1, 0) ||
        !X509_set_issuer_name(x, X509_get_subject_name(ca->cert)) || !X509_set_pubkey(x, ca->leaf_key) ||
        add_ext(x, ca->cert, NID_basic_constraints, "critical,CA:FALSE") < 0 ||
        add_ext(x, ca->cert, NID_key_usage, "critical,digitalSignature,keyEncipherment") < 0 ||
        add_ext(x, ca->cert, NID_ext_key_usage, "serverAuth") < 0 ||
        add_ext(x, ca->cert, NID_subject_alt_name, san) < 0 ||
        add_ext(x, ca->cert, NID_authority_key_identifier, "keyid:always") < 0 ||
        !X509_sign(x, ca->key, EVP_sha256())) {
        X509_free(x);
        return NULL;
    }
    return x;
}

/* ---- the CA ------------------------------------------------------------- */

static int write_ca_files(const char *dir, EVP_PKEY *key, X509 *cert, char *err, size_t errsz)
{
    int rc = -1;
    BIO *b = BIO_new(BIO_s_mem());
    char *data = NULL;
    size_t n;
    PKCS12 *p12 = NULL;
    if (!b || !PEM_write_bio_PrivateKey(b, key, NULL, NULL, 0, NULL, NULL) || !PEM_write_bio_X509(b, cert)) {
        ssl_errstr(err, errsz, "cannot encode the CA");
        goto out;
    }
    data = bio_take(b, &n);
    if (!data || write_file(dir, "mitmlua-ca.pem", data, n, 0600, err, errsz) < 0)
        goto out;
    free(data);
    data = NULL;
    BIO_reset(b);
    if (!PEM_write_bio_X509(b, cert)) {
        ssl_errstr(err, errsz, "cannot encode the CA certificate");
        goto out;
    }
    data = bio_take(b, &n);
    /* mitmproxy's .cer is the same PEM text; Windows and Android accept it */
    if (!data || write_file(dir, "mitmlua-ca-cert.pem", data, n, 0644, err, errsz) < 0 ||
        write_file(dir, "mitmlua-ca-cert.cer", data, n, 0644, err, errsz) < 0)
        goto out;
    free(data);
    data = NULL;
    BIO_reset(b);
    STACK_OF(X509) *certs = sk_X509_new_null();
    if (certs)
        sk_X509_push(certs, cert);
    /* certificate only, no key, empty password: for import into trust stores */
    p12 = PKCS12_create("", "mitmlua", NULL, NULL, certs, 0, 0, 0, 0, 0);
    sk_X509_free(certs);
    if (!p12 || !i2d_PKCS12_bio(b, p12)) {
        ssl_errstr(err, errsz, "cannot encode mitmlua-ca-cert.p12");
        goto out;
    }
    data = bio_take(b, &n);
    if (!data || write_file(dir, "mitmlua-ca-cert.p12", data, n, 0644, err, errsz) < 0)
        goto out;
    rc = 0;
out:
    free(data);
    PKCS12_free(p12);
    BIO_free(b);
    return rc;
}

static int load_ca(const char *path, EVP_PKEY **key, X509 **cert, char *err, size_t errsz)
{
    FILE *fp = fopen(path, "r");
    if (!fp) {
        snprintf(err, errsz, "cannot read %s: %s", path, strerror(errno));
        return -1;
    }
    *key = PEM_read_PrivateKey(fp, NULL, NULL, NULL);
    *cert = *key ? PEM_read_X509(fp, NULL, NULL, NULL) : NULL;
    fclose(fp);
    if (!*key || !*cert || X509_check_private_key(*cert, *key) != 1) {
        EVP_PKEY_free(*key);
        X509_free(*cert);
        *key = NULL;
        *cert = NULL;
        ERR_clear_error();
        snprintf(err, errsz, "%s is not a valid CA file (expected a PEM private key followed by its certificate)",
                 path);
        return -1;
    }
    return 0;
}

static void ex_init(void)
{
    ex_fallback_idx = SSL_get_ex_new_index(0, NULL, NULL, NULL, NULL);
}

tls_ca *tls_ca_load_or_create(const char *confdir, char *err, size_t errsz)
{
    pthread_once(&ex_once, ex_init);
    tls_ca *ca = calloc(1, sizeof *ca);
    if (!ca) {
        snprintf(err, errsz, "out of memory");
        return NULL;
    }
    pthread_mutex_init(&ca->lock, NULL);
    if (mkdir_p(confdir, err, errsz) < 0)
        goto fail;
    char path[4200];
    snprintf(path, sizeof path, "%s/mitmlua-ca.pem", confdir);
    if (access(path, F_OK) == 0) {
        if (load_ca(path, &ca->key, &ca->cert, err, errsz) < 0)
            goto fail;
        struct stat st;
        if (stat(path, &st) == 0 && (st.st_mode & 077))
            fprintf(stderr, "[warn] %s is readable by others (mode %03o); it holds the CA's private key\n", path,
                    (unsigned)(st.st_mode & 0777));
    } else {
        if (!(ca->key = new_rsa_key()) || !(ca->cert = make_ca_cert(ca->key))) {
            ssl_errstr(err, errsz, "cannot create the CA");
            goto fail;
        }
        if (write_ca_files(confdir, ca->key, ca->cert, err, errsz) < 0)
            goto fail;
    }
    if (!(ca->leaf_key = new_rsa_key())) {
        ssl_errstr(err, errsz, "cannot create the leaf key");
        goto fail;
    }
    return ca;
fail:
    tls_ca_free(ca);
    return NULL;
}

void tls_ca_free(tls_ca *ca)
{
    if (!ca)
        return;
    for (size_t i = 0; i < ca->ncache; i++) {
        free(ca->cache[i].host);
        X509_free(ca->cache[i].cert);
    }
    EVP_PKEY_free(ca->key);
    EVP_PKEY_free(ca->leaf_key);
    X509_free(ca->cert);
    pthread_mutex_destroy(&ca->lock);
    free(ca);
}

EVP_PKEY *tls_ca_leaf_key(tls_ca *ca) { return ca->leaf_key; }
X509 *tls_ca_cert(tls_ca *ca) { return ca->cert; }

X509 *tls_ca_leaf(tls_ca *ca, const char *host_in, char *err, size_t errsz)
{
    char host[256];
    size_t n = strlen(host_in);
    if (n == 0 || n >= sizeof host) {
        snprintf(err, errsz, "invalid host name for a certificate");
        return NULL;
    }
    for (size_t i = 0; i <= n; i++)
        host[i] = (char)tolower((unsigned char)host_in[i]);
    pthread_mutex_lock(&ca->lock);
    for (size_t i = 0; i < ca->ncache; i++) {
        if (strcmp(ca->cache[i].host, host) == 0) {
            ca->cache[i].used = ++ca->tick;
            X509 *x = ca->cache[i].cert;
            X509_up_ref(x);
            pthread_mutex_unlock(&ca->lock);
            return x;
        }
    }
    pthread_mutex_unlock(&ca->lock);
    /* mint outside the lock: signing takes a while and other hosts need not wait */
    X509 *x = mint_leaf(ca, host);
    if (!x) {
        ssl_errstr(err, errsz, "cannot mint a certificate");
        return NULL;
    }
    pthread_mutex_lock(&ca->lock);
    size_t slot = ca->ncache;
    if (slot == TLS_CACHE_SIZE) {
        slot = 0;
        for (size_t i = 1; i < ca->ncache; i++)
            if (ca->cache[i].used < ca->cache[slot].used)
                slot = i;
        free(ca->cache[slot].host);
        X509_free(ca->cache[slot].cert);
    } else {
        ca->ncache++;
    }
    ca->cache[slot].host = strdup(host);
    ca->cache[slot].cert = x;
    ca->cache[slot].used = ++ca->tick;
    X509_up_ref(x);
    pthread_mutex_unlock(&ca->lock);
    return x;
}

/* ---- client-facing ------------------------------------------------------ */

static int cert_cb(SSL *ssl, void *arg)
{
    tls_ca *ca = arg;
    const char *host = SSL_get_servername(ssl, TLSEXT_NAMETYPE_host_name);
    if (!host || !*host)
        host = SSL_get_ex_data(ssl, ex_fallback_idx);
    if (!host || !*host)
        host = "mitmlua";
    char err[256];
    X509 *leaf = tls_ca_leaf(ca, host, err, sizeof err);
    if (!leaf)
        return 0;
    int ok = SSL_use_certificate(ssl, leaf) == 1 && SSL_use_PrivateKey(ssl, ca->leaf_key) == 1 &&
             SSL_add1_chain_cert(ssl, ca->cert) == 1;
    X509_free(leaf);
    return ok ? 1 : 0;
}

static int alpn_select_cb(SSL *ssl, const unsigned char **out, unsigned char *outlen, const unsigned char *in,
                          unsigned int inlen, void *arg)
{
    /* HTTP/1.1 only for now: pick it when offered, otherwise no ALPN */
    for (unsigned i = 0; i + 1 <= inlen;) {
        unsigned l = in[i];
        if (i + 1 + l > inlen)
            break;
        if (l == 8 && memcmp(in + i + 1, "http/1.1", 8) == 0) {
            *out = in + i + 1;
            *outlen = (unsigned char)l;
            return SSL_TLSEXT_ERR_OK;
        }
        i += 1 + l;
    }
    return SSL_TLSEXT_ERR_NOACK;
}

SSL_CTX *tls_server_ctx_new(tls_ca *ca, char *err, size_t errsz)
{
    pthread_once(&ex_once, ex_init);
    SSL_CTX *ctx = SSL_CTX_new(TLS_server_method());
    if (!ctx) {
        ssl_errstr(err, errsz, "cannot create a TLS context");
        return NULL;
    }
    SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION);
    SSL_CTX_set_options(ctx, SSL_OP_NO_COMPRESSION | SSL_OP_NO_RENEGOTIATION | SSL_OP_CIPHER_SERVER_PREFERENCE);
    SSL_CTX_set_mode(ctx, SSL_MODE_RELEASE_BUFFERS);
    SSL_CTX_set_session_id_context(ctx, (const unsigned char *)"mitmlua", 7);
    SSL_CTX_set_cert_cb(ctx, cert_cb, ca);
    SSL_CTX_set_alpn_select_cb(ctx, alpn_select_cb, NULL);
    return ctx;
}

int tls_set_fallback_host(SSL *ssl, const char *host)
{
    pthread_once(&ex_once, ex_init);
    /* the string belongs to the connection, which outlives the handshake */
    return SSL_set_ex_data(ssl, ex_fallback_idx, (void *)host) == 1 ? 0 : -1;
}

/* ---- upstream-facing ---------------------------------------------------- */

SSL_CTX *tls_client_ctx_new(const tls_client_opts *o, char *err, size_t errsz)
{
    SSL_CTX *ctx = SSL_CTX_new(TLS_client_method());
    if (!ctx) {
        ssl_errstr(err, errsz, "cannot create a TLS context");
        return NULL;
    }
    SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION);
    SSL_CTX_set_options(ctx, SSL_OP_NO_COMPRESSION | SSL_OP_NO_RENEGOTIATION);
    SSL_CTX_set_mode(ctx, SSL_MODE_RELEASE_BUFFERS);
    if (!o->insecure) {
        if (SSL_CTX_set_default_verify_paths(ctx) != 1)
            ERR_clear_error(); /* no system store is not fatal with an extra CA */
        if (o->extra_ca_file && SSL_CTX_load_verify_locations(ctx, o->extra_ca_file, NULL) != 1) {
            ERR_clear_error();
            snprintf(err, errsz, "cannot load trusted CA file %s (ssl_verify_upstream_trusted_ca)",
                     o->extra_ca_file);
            SSL_CTX_free(ctx);
            return NULL;
        }
        SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER, NULL);
    } else {
        SSL_CTX_set_verify(ctx, SSL_VERIFY_NONE, NULL);
    }
    static const unsigned char alpn[] = "\x08http/1.1";
    SSL_CTX_set_alpn_protos(ctx, alpn, sizeof alpn - 1);
    return ctx;
}

int tls_client_prepare(SSL *ssl, const char *host, const char *sni, char *err, size_t errsz)
{
    bool ip = is_ip_literal(host);
    const char *name = sni && *sni ? sni : (ip ? NULL : host);
    if (name && !is_ip_literal(name) && SSL_set_tlsext_host_name(ssl, name) != 1) {
        ssl_errstr(err, errsz, "cannot set SNI");
        return -1;
    }
    if (SSL_get_verify_mode(ssl) & SSL_VERIFY_PEER) {
        X509_VERIFY_PARAM *vp = SSL_get0_param(ssl);
        int ok = ip ? X509_VERIFY_PARAM_set1_ip_asc(vp, host) : X509_VERIFY_PARAM_set1_host(vp, host, 0);
        if (ok != 1) {
            ssl_errstr(err, errsz, "cannot set the name to verify");
            return -1;
        }
    }
    return 0;
}

const char *tls_verify_error(SSL *ssl)
{
    long r = SSL_get_verify_result(ssl);
    if (r == X509_V_OK || !(SSL_get_verify_mode(ssl) & SSL_VERIFY_PEER))
        return NULL;
    return X509_verify_cert_error_string(r);
}

static char *name_line(X509_NAME *n)
{
    BIO *b = BIO_new(BIO_s_mem());
    if (!b)
        return NULL;
    X509_NAME_print_ex(b, n, 0, XN_FLAG_RFC2253);
    size_t len;
    char *s = bio_take(b, &len);
    BIO_free(b);
    if (!s)
        return NULL;
    char *t = realloc(s, len + 1);
    if (!t) {
        free(s);
        return NULL;
    }
    t[len] = '\0';
    return t;
}

void tls_fill_conn_info(SSL *ssl, flow_conn *c, bool server_side)
{
    if (!ssl)
        return;
    c->tls = true;
    flow_strset(&c->tls_version, SSL_get_version(ssl));
    flow_strset(&c->cipher, SSL_get_cipher_name(ssl));
    const unsigned char *alpn = NULL;
    unsigned alen = 0;
    SSL_get0_alpn_selected(ssl, &alpn, &alen);
    flow_strnset(&c->alpn, alen ? (const char *)alpn : NULL, alen);
    const char *sni = SSL_get_servername(ssl, TLSEXT_NAMETYPE_host_name);
    flow_strset(&c->sni, sni);
    if (server_side) {
        X509 *peer = SSL_get1_peer_certificate(ssl);
        if (peer) {
            free(c->cert_subject);
            free(c->cert_issuer);
            c->cert_subject = name_line(X509_get_subject_name(peer));
            c->cert_issuer = name_line(X509_get_issuer_name(peer));
            X509_free(peer);
        }
    }
}
