/* tls.c — see tls.h.
 *
 * The CA key is RSA-2048, which every client accepts.  Leaves carry one
 * key, made at CA load: P-256 unless key_type=rsa (see leaf_key_gen).  A
 * key per host would cost a key generation per new host for no security
 * gain (the CA key is the secret that matters), which is also what
 * mitmproxy does.
 *
 * Leaves are cached per host in a bounded LRU (hash table + doubly linked
 * list) behind one mutex.  Entries hold X509 references and hand out new
 * ones, so a connection still using an evicted certificate keeps it alive.
 * Minting happens outside the lock so one slow signature never stalls the
 * other workers; two workers racing on the same host keep the first result.
 *
 * Per-connection data (the fallback host, the allowed ALPN list) lives in
 * SSL ex_data slots whose free callback runs in SSL_free, so callers never
 * manage its lifetime.  The two slot indices are process-wide constants,
 * assigned once (pthread_once) and never written again. */
#include "tls.h"

#include <ctype.h>
#include <errno.h>
#include <limits.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <openssl/bn.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/pkcs12.h>
#include <openssl/rand.h>
#include <openssl/rsa.h>
#include <openssl/x509v3.h>

#include "log.h"
#include "tlsopts.h"
#include "xthread.h"

#define TLS_CACHE_DEFAULT 1024
#define TLS_CACHE_BUCKETS 1024 /* power of two */
/* Browsers refuse leaf certificates valid for more than 200 days (CA/B
 * Forum, from March 2026); the backdating (for clients whose clock is
 * behind) counts toward that, so 2 days back + 197 ahead = 199 in total. */
#define TLS_LEAF_BACKDATE_DAYS 2
#define TLS_LEAF_TOTAL_DAYS 199
/* A cached leaf is re-minted after this long so that a proxy running for
 * months never serves one close to its notAfter. */
#define TLS_LEAF_REFRESH_SECS (30L * 24 * 3600)
#define TLS_CA_DAYS 3650

#define F_KEY "mitmlua-ca.pem"
#define F_PEM "mitmlua-ca-cert.pem"
#define F_CER "mitmlua-ca-cert.cer"
#define F_P12 "mitmlua-ca-cert.p12"

typedef struct leaf_entry {
    struct leaf_entry *hnext;       /* hash chain */
    struct leaf_entry *prev, *next; /* LRU list, most recent first */
    X509 *cert;
    time_t minted;
    uint64_t hash;
    char host[];
} leaf_entry;

struct tls_ca {
    /* key, cert, chain and leaf_key are read only after ca_ready(): they
     * come from a background thread, or from a child process's DER */
    EVP_PKEY *key;
    X509 *cert;
    EVP_PKEY *leaf_key;   /* shared by every leaf */
    STACK_OF(X509) *chain; /* just the CA cert: sent after each leaf */
    atomic_bool ready;
    pthread_mutex_t key_lock; /* guards ca_ready's work */
    pthread_t keygen;     /* makes leaf_key, or receives it from the child */
    bool keygen_running;
    unsigned char *der;   /* tls_ca_open: the CA key's DER, then its cert's */
    size_t key_len, cert_len;
    unsigned char *leaf_der; /* tls_ca_open: the leaf key's, from keygen */
    size_t leaf_len;
    pid_t child;          /* tls_ca_open's child until keygen reaps it */
    int child_fd;
    char *confdir;
    char *cert_path;
    uint64_t hash_seed; /* random, so clients cannot aim SNIs at one chain */
    pthread_mutex_t lock; /* guards everything below */
    leaf_entry *buckets[TLS_CACHE_BUCKETS];
    leaf_entry *lru_head, *lru_tail;
    size_t n, max;
};

/* A length-prefixed copy kept in SSL ex_data (NUL-terminated for text). */
typedef struct tls_blob {
    size_t n;
    unsigned char p[];
} tls_blob;

static int ex_fallback_idx = -1, ex_alpn_idx = -1, ex_upcert_idx = -1;
/* key_type, key_size: set once at start-up, before tls_ca_open forks (the
 * child makes the leaf key) and before any thread starts */
static tls_key_type leaf_key_type = TLS_KEY_ECDSA;
static int leaf_key_bits = 2048;
static pthread_once_t ex_once = PTHREAD_ONCE_INIT;

void tls_errstr(char *err, size_t errsz, const char *what)
{
    unsigned long e = ERR_get_error();
    char es[200] = "unknown error";
    if (e)
        ERR_error_string_n(e, es, sizeof es);
    snprintf(err, errsz, "%s: %s", what, es);
    ERR_clear_error();
}

/* ---- per-SSL data ------------------------------------------------------- */

static tls_blob *blob_new(const void *p, size_t n)
{
    tls_blob *b = malloc(sizeof *b + n + 1);
    if (!b)
        return NULL;
    b->n = n;
    if (n)
        memcpy(b->p, p, n);
    b->p[n] = '\0';
    return b;
}

static void ex_free(void *parent, void *ptr, CRYPTO_EX_DATA *ad, int idx, long argl, void *argp)
{
    free(ptr);
}

static void ex_chain_free(void *parent, void *ptr, CRYPTO_EX_DATA *ad, int idx, long argl, void *argp)
{
    sk_X509_pop_free(ptr, X509_free);
}

/* SSL_dup copies ex_data pointers; give the copy its own blob so the two
 * SSLs do not free one allocation twice. */
static int ex_dup(CRYPTO_EX_DATA *to, const CRYPTO_EX_DATA *from, void **from_d, int idx, long argl, void *argp)
{
    tls_blob *b = *from_d;
    if (b && !(*from_d = blob_new(b->p, b->n)))
        return 0;
    return 1;
}

static void ex_init(void)
{
    ex_fallback_idx = SSL_get_ex_new_index(0, NULL, NULL, ex_dup, ex_free);
    ex_alpn_idx = SSL_get_ex_new_index(0, NULL, NULL, ex_dup, ex_free);
    ex_upcert_idx = SSL_get_ex_new_index(0, NULL, NULL, NULL, ex_chain_free);
}

int tls_set_upstream_chain(SSL *ssl, STACK_OF(X509) *chain)
{
    pthread_once(&ex_once, ex_init);
    STACK_OF(X509) *mine = chain ? X509_chain_up_ref(chain) : NULL;
    if (!mine)
        return -1;
    sk_X509_pop_free(SSL_get_ex_data(ssl, ex_upcert_idx), X509_free);
    if (SSL_set_ex_data(ssl, ex_upcert_idx, mine) != 1) {
        SSL_set_ex_data(ssl, ex_upcert_idx, NULL);
        sk_X509_pop_free(mine, X509_free);
        return -1;
    }
    return 0;
}

static int ex_replace(SSL *ssl, int idx, tls_blob *b)
{
    tls_blob *old = SSL_get_ex_data(ssl, idx);
    if (SSL_set_ex_data(ssl, idx, b) != 1) {
        free(b);
        return -1;
    }
    free(old);
    return 0;
}

/* ---- host names --------------------------------------------------------- */

/* Canonical cache/certificate form of a host: brackets around an IPv6
 * literal dropped, lowercased, and for names only the characters a DNS
 * name can carry (the SNI comes from the client; nothing else may reach a
 * certificate).  -1 when unusable. */
int tls_host_norm(const char *in, char *out, size_t outsz, bool *is_ip)
{
    size_t n = strlen(in);
    if (n >= 2 && in[0] == '[' && in[n - 1] == ']') {
        in++;
        n -= 2;
    }
    if (n == 0 || n > 253 || n >= outsz)
        return -1;
    for (size_t i = 0; i < n; i++)
        out[i] = (char)tolower((unsigned char)in[i]);
    out[n] = '\0';
    ASN1_OCTET_STRING *ip = a2i_IPADDRESS(out);
    if (ip) {
        ASN1_OCTET_STRING_free(ip);
        *is_ip = true;
        return 0;
    }
    *is_ip = false;
    if (n > 1 && out[n - 1] == '.') /* "example.com." is example.com */
        out[--n] = '\0';
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)out[i];
        if (!isalnum(c) && c != '-' && c != '.' && c != '_' && c != '*')
            return -1;
    }
    return 0;
}

/* ---- files -------------------------------------------------------------- */

static int mkdir_p(const char *dir, char *err, size_t errsz)
{
    char path[4096];
    if (!*dir || strlen(dir) >= sizeof path) {
        snprintf(err, errsz, "invalid configuration directory \"%s\"", dir);
        return -1;
    }
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
    if (mkdir(path, 0700) == 0) {
        chmod(path, 0700); /* exactly 0700, whatever the umask */
    } else if (errno != EEXIST) {
        snprintf(err, errsz, "cannot create %s: %s", path, strerror(errno));
        return -1;
    }
    struct stat st;
    if (stat(path, &st) < 0 || !S_ISDIR(st.st_mode)) {
        snprintf(err, errsz, "%s is not a directory", path);
        return -1;
    }
    return 0;
}

static void fsync_dir(const char *dir)
{
    int fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd >= 0) {
        fsync(fd);
        close(fd);
    }
}

/* Write `data` to a fresh temporary file in `dir`, created exclusively with
 * `mode` (so a key file is never readable by others, not even for an
 * instant), and flush it to disk.  The name goes to tmp. */
static int write_temp(const char *dir, const char *name, const void *data, size_t n, mode_t mode, char *tmp,
                      size_t tmpsz, char *err, size_t errsz)
{
    int fd = -1;
    for (int attempt = 0; attempt < 8 && fd < 0; attempt++) {
        unsigned char r[6];
        if (RAND_bytes(r, sizeof r) != 1) {
            tls_errstr(err, errsz, "no randomness");
            return -1;
        }
        snprintf(tmp, tmpsz, "%s/.%s.%02x%02x%02x%02x%02x%02x.tmp", dir, name, r[0], r[1], r[2], r[3], r[4],
                 r[5]);
        fd = open(tmp, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, mode);
        if (fd < 0 && errno != EEXIST)
            break;
    }
    if (fd < 0) {
        snprintf(err, errsz, "cannot write %s/%s: %s", dir, name, strerror(errno));
        return -1;
    }
    /* the umask may only have narrowed the mode; make it exactly ours */
    if (fchmod(fd, mode) < 0)
        goto fail;
    const char *p = data;
    size_t left = n;
    while (left) {
        ssize_t w = write(fd, p, left);
        if (w < 0) {
            if (errno == EINTR)
                continue;
            goto fail;
        }
        p += w;
        left -= (size_t)w;
    }
    if (fsync(fd) < 0)
        goto fail;
    if (close(fd) < 0) {
        fd = -1;
        goto fail;
    }
    return 0;
fail:
    snprintf(err, errsz, "cannot write %s/%s: %s", dir, name, strerror(errno));
    if (fd >= 0)
        close(fd);
    unlink(tmp);
    return -1;
}

/* Atomically replace dir/name with `data`. */
static int write_file(const char *dir, const char *name, const void *data, size_t n, mode_t mode, char *err,
                      size_t errsz)
{
    char tmp[4300], dst[4300];
    snprintf(dst, sizeof dst, "%s/%s", dir, name);
    if (write_temp(dir, name, data, n, mode, tmp, sizeof tmp, err, errsz) < 0)
        return -1;
    if (rename(tmp, dst) < 0) {
        snprintf(err, errsz, "cannot write %s: %s", dst, strerror(errno));
        unlink(tmp);
        return -1;
    }
    fsync_dir(dir);
    return 0;
}

/* Atomically create dir/name with `data` unless it exists: link(2) fails
 * on an existing target where rename(2) would clobber it, so two first
 * starts racing end with one CA.  1 when the file already existed. */
static int create_file(const char *dir, const char *name, const void *data, size_t n, mode_t mode, char *err,
                       size_t errsz)
{
    char tmp[4300], dst[4300];
    snprintf(dst, sizeof dst, "%s/%s", dir, name);
    if (write_temp(dir, name, data, n, mode, tmp, sizeof tmp, err, errsz) < 0)
        return -1;
    int rc = 0;
    if (link(tmp, dst) < 0) {
        if (errno == EEXIST) {
            rc = 1;
        } else if (rename(tmp, dst) < 0) { /* file systems without hard links */
            snprintf(err, errsz, "cannot write %s: %s", dst, strerror(errno));
            rc = -1;
        }
    }
    unlink(tmp);
    if (rc == 0)
        fsync_dir(dir);
    return rc;
}

/* The contents of a memory BIO as a NUL-terminated malloc'd string. */
static char *bio_take(BIO *b, size_t *n)
{
    char *data;
    long len = BIO_get_mem_data(b, &data);
    size_t l = len > 0 ? (size_t)len : 0;
    char *copy = malloc(l + 1);
    if (!copy)
        return NULL;
    if (l)
        memcpy(copy, data, l);
    copy[l] = '\0';
    if (n)
        *n = l;
    return copy;
}

/* ---- certificates ------------------------------------------------------- */

static int random_serial(X509 *x)
{
    int ok = 0;
    BIGNUM *bn = BN_new();
    if (!bn)
        return -1;
    do {
        if (BN_rand(bn, 128, BN_RAND_TOP_ANY, BN_RAND_BOTTOM_ANY) != 1)
            goto out;
    } while (BN_is_zero(bn));
    ok = BN_to_ASN1_INTEGER(bn, X509_get_serialNumber(x)) != NULL;
out:
    BN_free(bn);
    return ok ? 0 : -1;
}

/* Extensions with fixed values, written in OpenSSL's config syntax. */
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

/* subjectAltName built from ASN.1 objects, not from config text: a host
 * name containing "," or ":" must never turn into extra entries. */
static int add_san(X509 *x, const char *host, bool is_ip, X509 *up)
{
    int rc = -1;
    GENERAL_NAMES *gens = sk_GENERAL_NAME_new_null();
    GENERAL_NAME *gn = GENERAL_NAME_new();
    if (!gens || !gn)
        goto out;
    if (is_ip) {
        ASN1_OCTET_STRING *ip = a2i_IPADDRESS(host);
        if (!ip)
            goto out;
        GENERAL_NAME_set0_value(gn, GEN_IPADD, ip);
    } else {
        ASN1_IA5STRING *s = ASN1_IA5STRING_new();
        if (!s || !ASN1_STRING_set(s, host, (int)strlen(host))) {
            ASN1_IA5STRING_free(s);
            goto out;
        }
        GENERAL_NAME_set0_value(gn, GEN_DNS, s);
    }
    if (!sk_GENERAL_NAME_push(gens, gn))
        goto out;
    gn = NULL;
    if (up && tlsopts_add_upstream_names(gens, up) < 0) /* upstream_cert */
        goto out;
    if (X509_add1_ext_i2d(x, NID_subject_alt_name, gens, 0, X509V3_ADD_DEFAULT) == 1)
        rc = 0;
out:
    GENERAL_NAME_free(gn);
    GENERAL_NAMES_free(gens);
    return rc;
}

/* The CA is CN=mitmlua,O=mitmlua and leaves are CN=<host> alone, so no
 * leaf (not even one for a host called "mitmlua") has the CA's subject and
 * looks self-issued to a verifier. */
static int set_name(X509_NAME *name, const char *cn, bool with_o)
{
    return X509_NAME_add_entry_by_txt(name, "CN", MBSTRING_UTF8, (const unsigned char *)cn, -1, -1, 0) &&
           (!with_o ||
            X509_NAME_add_entry_by_txt(name, "O", MBSTRING_UTF8, (const unsigned char *)"mitmlua", -1, -1, 0));
}

static X509 *make_ca_cert(EVP_PKEY *key)
{
    time_t now = time(NULL);
    X509 *x = X509_new();
    if (!x)
        return NULL;
    if (!X509_set_version(x, X509_VERSION_3) || random_serial(x) < 0 ||
        !X509_time_adj_ex(X509_getm_notBefore(x), -TLS_LEAF_BACKDATE_DAYS, 0, &now) ||
        !X509_time_adj_ex(X509_getm_notAfter(x), TLS_CA_DAYS, 0, &now) ||
        !set_name(X509_get_subject_name(x), "mitmlua", true) || !X509_set_issuer_name(x, X509_get_subject_name(x)) ||
        !X509_set_pubkey(x, key) || add_ext(x, x, NID_basic_constraints, "critical,CA:TRUE") < 0 ||
        add_ext(x, x, NID_key_usage, "critical,keyCertSign,cRLSign") < 0 ||
        add_ext(x, x, NID_subject_key_identifier, "hash") < 0 || !X509_sign(x, key, EVP_sha256())) {
        X509_free(x);
        return NULL;
    }
    return x;
}

/* The key every leaf carries.  P-256 by default: the server's signature in
 * each client handshake is what a MITM proxy pays most for, and an ECDSA
 * signature costs a tenth of an RSA-2048 one; key_type=rsa is for clients
 * that know no ECDSA. */
static EVP_PKEY *leaf_key_gen(void)
{
    if (leaf_key_type == TLS_KEY_RSA)
        return EVP_RSA_gen((unsigned)leaf_key_bits);
    return EVP_EC_gen("P-256");
}

/* Make the CA's OpenSSL objects from the child's DER (tls_ca_open) and
 * wait for the leaf key, once; every user of key, cert, chain or leaf_key
 * calls this first.  False when something could not be made: minting then
 * fails, with OpenSSL's reason. */
static bool ca_ready(tls_ca *ca)
{
    if (atomic_load_explicit(&ca->ready, memory_order_acquire))
        return ca->key && ca->cert && ca->chain && ca->leaf_key;
    pthread_mutex_lock(&ca->key_lock);
    if (!atomic_load_explicit(&ca->ready, memory_order_relaxed)) {
        if (ca->der) {
            const unsigned char *p = ca->der;
            ca->key = d2i_AutoPrivateKey(NULL, &p, (long)ca->key_len);
            p = ca->der + ca->key_len;
            ca->cert = d2i_X509(NULL, &p, (long)ca->cert_len);
            OPENSSL_cleanse(ca->der, ca->key_len);
            free(ca->der);
            ca->der = NULL;
            if (ca->cert && (ca->chain = sk_X509_new_null()) &&
                !X509_add_cert(ca->chain, ca->cert, X509_ADD_FLAG_UP_REF)) {
                sk_X509_free(ca->chain);
                ca->chain = NULL;
            }
        }
        if (ca->keygen_running) {
            pthread_join(ca->keygen, NULL);
            ca->keygen_running = false;
        }
        if (ca->leaf_der) {
            const unsigned char *p = ca->leaf_der;
            ca->leaf_key = d2i_AutoPrivateKey(NULL, &p, (long)ca->leaf_len);
            OPENSSL_cleanse(ca->leaf_der, ca->leaf_len);
            free(ca->leaf_der);
            ca->leaf_der = NULL;
        }
        if (!ca->leaf_key) /* the child died before sending it */
            ca->leaf_key = leaf_key_gen();
        atomic_store_explicit(&ca->ready, true, memory_order_release);
    }
    pthread_mutex_unlock(&ca->key_lock);
    return ca->key && ca->cert && ca->chain && ca->leaf_key;
}

/* `host` is already normalised (tls_host_norm). */
static X509 *mint_leaf(tls_ca *ca, const char *host, bool is_ip, time_t now, X509 *up)
{
    X509 *x = X509_new();
    if (!x)
        return NULL;
    /* CN is limited to 64 characters (RFC 5280 ub-common-name); the SAN,
     * which is what clients check, carries the whole name */
    char cn[65];
    size_t cl = strlen(host) < 64 ? strlen(host) : 64;
    memcpy(cn, host, cl);
    cn[cl] = '\0';
    if (!X509_set_version(x, X509_VERSION_3) || random_serial(x) < 0 ||
        !X509_time_adj_ex(X509_getm_notBefore(x), -TLS_LEAF_BACKDATE_DAYS, 0, &now) ||
        !X509_time_adj_ex(X509_getm_notAfter(x), TLS_LEAF_TOTAL_DAYS - TLS_LEAF_BACKDATE_DAYS, 0, &now) ||
        !set_name(X509_get_subject_name(x), cn, false) ||
        !X509_set_issuer_name(x, X509_get_subject_name(ca->cert)) || !X509_set_pubkey(x, ca->leaf_key) ||
        add_ext(x, ca->cert, NID_basic_constraints, "critical,CA:FALSE") < 0 ||
        /* keyEncipherment only for RSA (TLS 1.2's RSA key exchange); an
         * EC key cannot encipher, and strict clients refuse the pair */
        add_ext(x, ca->cert, NID_key_usage,
                EVP_PKEY_is_a(ca->leaf_key, "RSA") ? "critical,digitalSignature,keyEncipherment"
                                                    : "critical,digitalSignature") < 0 ||
        add_ext(x, ca->cert, NID_ext_key_usage, "serverAuth") < 0 || add_san(x, host, is_ip, up) < 0 ||
        /* keyid from the CA's SKI; issuer+serial only for an imported CA without one */
        add_ext(x, ca->cert, NID_authority_key_identifier, "keyid,issuer") < 0 ||
        !X509_sign(x, ca->key, EVP_sha256())) {
        X509_free(x);
        return NULL;
    }
    return x;
}

/* ---- the CA files ------------------------------------------------------- */

static char *cert_pem(X509 *cert, size_t *n)
{
    BIO *b = BIO_new(BIO_s_mem());
    char *s = b && PEM_write_bio_X509(b, cert) ? bio_take(b, n) : NULL;
    BIO_free(b);
    return s;
}

/* Certificate only, empty password, unencrypted certificate bag: what
 * mitmproxy writes and what trust-store importers accept. */
static char *cert_p12(X509 *cert, size_t *n)
{
    char *s = NULL;
    BIO *b = BIO_new(BIO_s_mem());
    STACK_OF(X509) *certs = sk_X509_new_null();
    PKCS12 *p12 = NULL;
    /* a copy carrying the alias, which becomes the bag's friendlyName: the
     * name trust-store managers show */
    X509 *named = X509_dup(cert);
    if (!b || !certs || !named || !X509_alias_set1(named, (const unsigned char *)"mitmlua", -1) ||
        !sk_X509_push(certs, named))
        goto out;
    p12 = PKCS12_create("", "mitmlua", NULL, NULL, certs, 0, -1, 0, 0, 0);
    if (p12 && i2d_PKCS12_bio(b, p12))
        s = bio_take(b, n);
out:
    PKCS12_free(p12);
    sk_X509_free(certs);
    X509_free(named);
    BIO_free(b);
    return s;
}

static bool file_equals(const char *path, const char *data, size_t n)
{
    FILE *fp = fopen(path, "rb");
    if (!fp)
        return false;
    bool same = true;
    size_t i = 0;
    int c;
    while ((c = getc(fp)) != EOF && same)
        same = i < n && (char)c == data[i++];
    fclose(fp);
    return same && i == n;
}

/* The public certificate files.  After creating a CA all are written; after
 * loading one, those missing or holding another certificate (a crash after
 * the key file, or a mitmproxy-ca.pem copied in) are rewritten. */
static int write_cert_files(tls_ca *ca, bool all, char *err, size_t errsz)
{
    int rc = -1;
    size_t n, pn;
    char *pem = cert_pem(ca->cert, &n), *p12 = NULL;
    if (!pem) {
        tls_errstr(err, errsz, "cannot encode the CA certificate");
        goto out;
    }
    bool stale = all;
    static const char *const pem_names[] = {F_PEM, F_CER}; /* mitmproxy's .cer is PEM too */
    for (size_t i = 0; i < 2; i++) {
        char path[4300];
        snprintf(path, sizeof path, "%s/%s", ca->confdir, pem_names[i]);
        if (all || !file_equals(path, pem, n)) {
            stale = true;
            if (write_file(ca->confdir, pem_names[i], pem, n, 0644, err, errsz) < 0)
                goto out;
        }
    }
    char path[4300];
    snprintf(path, sizeof path, "%s/%s", ca->confdir, F_P12);
    if (stale || access(path, F_OK) < 0) {
        if (!(p12 = cert_p12(ca->cert, &pn))) {
            tls_errstr(err, errsz, "cannot encode " F_P12);
            goto out;
        }
        if (write_file(ca->confdir, F_P12, p12, pn, 0644, err, errsz) < 0)
            goto out;
    }
    rc = 0;
out:
    free(pem);
    free(p12);
    return rc;
}

/* Never prompt on the terminal for the passphrase of an encrypted key. */
static int no_password(char *buf, int size, int rwflag, void *u)
{
    return -1;
}

static int load_ca(const char *path, EVP_PKEY **key, X509 **cert, char *err, size_t errsz)
{
    *key = NULL;
    *cert = NULL;
    FILE *fp = fopen(path, "r");
    if (!fp) {
        snprintf(err, errsz, "cannot read %s: %s", path, strerror(errno));
        return -1;
    }
    *key = PEM_read_PrivateKey(fp, NULL, no_password, NULL);
    if (*key)
        *cert = PEM_read_X509(fp, NULL, no_password, NULL);
    fclose(fp);
    ERR_clear_error();
    if (!*key)
        snprintf(err, errsz, "%s: no usable private key (expected an unencrypted PEM private key followed by the "
                 "CA certificate)", path);
    else if (!*cert)
        snprintf(err, errsz, "%s: no PEM certificate after the private key", path);
    else if (X509_check_private_key(*cert, *key) != 1)
        snprintf(err, errsz, "%s: the certificate does not belong to the private key", path);
    else if (X509_check_ca(*cert) < 1)
        snprintf(err, errsz, "%s: the certificate is not a CA certificate", path);
    else
        return 0;
    ERR_clear_error();
    EVP_PKEY_free(*key);
    X509_free(*cert);
    *key = NULL;
    *cert = NULL;
    return -1;
}

static int create_ca(tls_ca *ca, const char *path, bool *created, char *err, size_t errsz)
{
    int rc = -1;
    BIO *b = NULL;
    char *data = NULL;
    size_t n;
    if (!(ca->key = EVP_RSA_gen(2048)) || !(ca->cert = make_ca_cert(ca->key))) {
        tls_errstr(err, errsz, "cannot create the CA");
        goto out;
    }
    if (!(b = BIO_new(BIO_s_mem())) || !PEM_write_bio_PrivateKey(b, ca->key, NULL, NULL, 0, NULL, NULL) ||
        !PEM_write_bio_X509(b, ca->cert) || !(data = bio_take(b, &n))) {
        tls_errstr(err, errsz, "cannot encode the CA");
        goto out;
    }
    int c = create_file(ca->confdir, F_KEY, data, n, 0600, err, errsz);
    OPENSSL_cleanse(data, n);
    if (c < 0)
        goto out;
    if (c == 1) { /* another process created one first: use it */
        EVP_PKEY_free(ca->key);
        X509_free(ca->cert);
        ca->key = NULL;
        ca->cert = NULL;
        rc = load_ca(path, &ca->key, &ca->cert, err, errsz);
        goto out;
    }
    *created = true;
    rc = 0;
out:
    free(data);
    BIO_free(b);
    return rc;
}

/* ---- the CA ------------------------------------------------------------- */

static void *keygen_main(void *arg)
{
    tls_ca *ca = arg;
    ca->leaf_key = leaf_key_gen();
    return NULL;
}

/* A CA with its names set and nothing loaded; mkdir -p's the confdir. */
static tls_ca *ca_new(const char *confdir, char *err, size_t errsz)
{
    tls_ca *ca = calloc(1, sizeof *ca);
    if (!ca) {
        snprintf(err, errsz, "out of memory");
        return NULL;
    }
    pthread_mutex_init(&ca->lock, NULL);
    pthread_mutex_init(&ca->key_lock, NULL);
    ca->max = TLS_CACHE_DEFAULT;
    ca->child = -1;
    ca->child_fd = -1;
    size_t dl = strlen(confdir);
    while (dl > 1 && confdir[dl - 1] == '/')
        dl--;
    if (!(ca->confdir = strndup(confdir, dl)) || !(ca->cert_path = malloc(dl + sizeof "/" F_PEM))) {
        snprintf(err, errsz, "out of memory");
        goto fail;
    }
    sprintf(ca->cert_path, "%s/" F_PEM, ca->confdir);
    /* the cache's hash seed: from the kernel, not OpenSSL, whose random
     * generator need not exist before the first TLS connection */
    if (getrandom(&ca->hash_seed, sizeof ca->hash_seed, 0) != (ssize_t)sizeof ca->hash_seed) {
        snprintf(err, errsz, "cannot seed the certificate cache: %s", strerror(errno));
        goto fail;
    }
    if (mkdir_p(confdir, err, errsz) < 0)
        goto fail;
    return ca;
fail:
    tls_ca_free(ca);
    return NULL;
}

tls_ca *tls_ca_load_or_create(const char *confdir, char *err, size_t errsz)
{
    pthread_once(&ex_once, ex_init);
    tls_ca *ca = ca_new(confdir, err, errsz);
    if (!ca)
        return NULL;
    char path[4300];
    snprintf(path, sizeof path, "%s/" F_KEY, ca->confdir);

    bool created = false;
    struct stat st;
    /* others who may write the directory may swap the CA for their own */
    if (stat(ca->confdir, &st) == 0 && (st.st_mode & 022) && !(st.st_mode & S_ISVTX))
        log_warn("%s is writable by other users (mode %04o): they can replace the CA; chmod 700 it",
                 ca->confdir, (unsigned)(st.st_mode & 07777));
    if (lstat(path, &st) == 0 || errno != ENOENT) {
        if (load_ca(path, &ca->key, &ca->cert, err, errsz) < 0)
            goto fail;
        /* As ssh with a private key: a CA key others could read may be
         * in other hands, and every client that trusts this CA trusts
         * them.  Refuse rather than fix the mode: a chmod now would not
         * make the key secret again; the user must decide. */
        if (stat(path, &st) == 0 && (st.st_mode & 077)) {
            snprintf(err, errsz,
                     "%s: the CA's private key is accessible by other users (mode %04o); refusing "
                     "to use it: chmod 600 it (and 700 its directory), or delete the confdir's "
                     "mitmlua-ca* files for a new CA",
                     path, (unsigned)(st.st_mode & 07777));
            goto fail;
        }
        if (X509_cmp_current_time(X509_get0_notAfter(ca->cert)) < 0)
            log_warn("the CA certificate in %s has expired: delete the confdir's mitmlua-ca* files to get a new one",
                     path);
    } else if (create_ca(ca, path, &created, err, errsz) < 0) {
        goto fail;
    }
    char werr[4608]; /* room for a path of PATH_MAX */
    if (write_cert_files(ca, created, werr, sizeof werr) < 0) {
        if (created) {
            snprintf(err, errsz, "%s", werr);
            goto fail;
        }
        log_warn("%s", werr); /* a read-only confdir with a working CA is fine */
    }
    if (!(ca->chain = sk_X509_new_null()) || !X509_add_cert(ca->chain, ca->cert, X509_ADD_FLAG_UP_REF)) {
        snprintf(err, errsz, "out of memory");
        goto fail;
    }
    /* An RSA-2048 key takes 50-300 ms to make: more than everything else at
     * start-up together.  Make it on the side; the first minting waits. */
    if (xthread_start(&ca->keygen, keygen_main, ca) == 0) {
        ca->keygen_running = true;
    } else if (!(ca->leaf_key = leaf_key_gen())) {
        tls_errstr(err, errsz, "cannot create the leaf key");
        goto fail;
    }
    return ca;
fail:
    tls_ca_free(ca);
    return NULL;
}

/* ---- the CA, prepared in a child process -------------------------------- */

/* tls_ca_open's pipe carries two messages: {status, n1, n2} then n1 + n2
 * bytes — the error text (status != 0), or the CA key's and certificate's
 * DER — and later {0, n, 0} with the leaf key's DER. */
typedef struct ca_msg {
    int32_t status;
    uint32_t n1, n2;
} ca_msg;

static bool write_all(int fd, const void *p, size_t n)
{
    for (const char *c = p; n > 0;) {
        ssize_t w = write(fd, c, n);
        if (w < 0 && errno == EINTR)
            continue;
        if (w <= 0)
            return false;
        c += w;
        n -= (size_t)w;
    }
    return true;
}

static bool read_all(int fd, void *p, size_t n)
{
    for (char *c = p; n > 0;) {
        ssize_t r = read(fd, c, n);
        if (r < 0 && errno == EINTR)
            continue;
        if (r <= 0)
            return false;
        c += r;
        n -= (size_t)r;
    }
    return true;
}

static bool send_msg(int fd, int32_t status, const void *p1, size_t n1, const void *p2, size_t n2)
{
    ca_msg m = {status, (uint32_t)n1, (uint32_t)n2};
    return write_all(fd, &m, sizeof m) && write_all(fd, p1, n1) && write_all(fd, p2, n2);
}

/* A read message's payload (malloc'd, with a NUL after it), or NULL. */
static unsigned char *recv_msg(int fd, ca_msg *m)
{
    if (!read_all(fd, m, sizeof *m) || m->n1 > (1u << 20) || m->n2 > (1u << 20))
        return NULL;
    size_t n = (size_t)m->n1 + m->n2;
    unsigned char *p = malloc(n + 1);
    if (p && !read_all(fd, p, n)) {
        free(p);
        return NULL;
    }
    if (p)
        p[n] = '\0';
    return p;
}

/* The child: everything tls_ca_load_or_create and tls_check_ca_file do,
 * then the leaf key.  Its exit status is not read: the pipe says it all. */
static int ca_child(int fd, const char *confdir, const char *trusted_ca)
{
    char err[1024];
    unsigned char *kd = NULL, *cd = NULL, *ld = NULL;
    tls_ca *ca = tls_ca_load_or_create(confdir, err, sizeof err);
    if (!ca || (trusted_ca && tls_check_ca_file(trusted_ca, err, sizeof err) < 0))
        return send_msg(fd, 1, err, strlen(err), NULL, 0) ? 0 : 1;
    int kn = i2d_PrivateKey(ca->key, &kd), cn = i2d_X509(ca->cert, &cd);
    if (kn <= 0 || cn <= 0) {
        tls_errstr(err, sizeof err, "cannot encode the CA");
        return send_msg(fd, 1, err, strlen(err), NULL, 0) ? 0 : 1;
    }
    if (!send_msg(fd, 0, kd, (size_t)kn, cd, (size_t)cn))
        return 1;
    int ln = ca_ready(ca) ? i2d_PrivateKey(ca->leaf_key, &ld) : 0;
    if (ln > 0)
        send_msg(fd, 0, ld, (size_t)ln, NULL, 0);
    return 0; /* the process ends: no need to free */
}

/* The parent's side of keygen: wait for the leaf key's DER, reap the child. */
static void *keyrecv_main(void *arg)
{
    tls_ca *ca = arg;
    ca_msg m;
    unsigned char *p = recv_msg(ca->child_fd, &m);
    if (p && m.status == 0) {
        ca->leaf_der = p;
        ca->leaf_len = m.n1;
    } else {
        free(p);
    }
    close(ca->child_fd);
    ca->child_fd = -1;
    while (waitpid(ca->child, NULL, 0) < 0 && errno == EINTR)
        ;
    return NULL;
}

tls_ca *tls_ca_open(const char *confdir, const char *trusted_ca, char *err, size_t errsz)
{
    int fds[2];
    if (pipe2(fds, O_CLOEXEC) < 0) {
        snprintf(err, errsz, "cannot prepare the CA: pipe: %s", strerror(errno));
        return NULL;
    }
    tls_ca *ca = ca_new(confdir, err, errsz);
    pid_t pid = ca ? fork() : -1;
    if (pid == 0) {
        close(fds[0]);
        _exit(ca_child(fds[1], confdir, trusted_ca));
    }
    close(fds[1]);
    if (pid < 0) {
        close(fds[0]);
        if (ca)
            snprintf(err, errsz, "cannot prepare the CA: fork: %s", strerror(errno));
        tls_ca_free(ca);
        return NULL;
    }
    ca->child = pid;
    ca->child_fd = fds[0];
    ca_msg m;
    unsigned char *p = recv_msg(fds[0], &m);
    if (!p || m.status != 0) {
        if (p)
            snprintf(err, errsz, "%s", (char *)p);
        else
            snprintf(err, errsz, "cannot prepare the CA: the process doing it ended early");
        free(p);
        tls_ca_free(ca);
        return NULL;
    }
    ca->der = p;
    ca->key_len = m.n1;
    ca->cert_len = m.n2;
    if (xthread_start(&ca->keygen, keyrecv_main, ca) == 0)
        ca->keygen_running = true; /* else ca_ready makes the leaf key itself */
    return ca;
}

static void entry_free(leaf_entry *e)
{
    X509_free(e->cert);
    free(e);
}

void tls_ca_free(tls_ca *ca)
{
    if (!ca)
        return;
    for (leaf_entry *e = ca->lru_head, *next; e; e = next) {
        next = e->next;
        entry_free(e);
    }
    /* a key still being made is waited for (at most a few hundred ms):
     * killing the child could race with keyrecv reaping it */
    if (ca->keygen_running)
        pthread_join(ca->keygen, NULL);
    if (ca->child_fd >= 0) { /* no keyrecv thread: reap the child here */
        close(ca->child_fd);
        while (waitpid(ca->child, NULL, 0) < 0 && errno == EINTR)
            ;
    }
    if (ca->der)
        OPENSSL_cleanse(ca->der, ca->key_len);
    free(ca->der);
    if (ca->leaf_der)
        OPENSSL_cleanse(ca->leaf_der, ca->leaf_len);
    free(ca->leaf_der);
    EVP_PKEY_free(ca->key);
    EVP_PKEY_free(ca->leaf_key);
    X509_free(ca->cert);
    sk_X509_pop_free(ca->chain, X509_free);
    free(ca->confdir);
    free(ca->cert_path);
    pthread_mutex_destroy(&ca->lock);
    pthread_mutex_destroy(&ca->key_lock);
    free(ca);
}

X509 *tls_ca_cert(tls_ca *ca) { return ca_ready(ca) ? ca->cert : NULL; }
EVP_PKEY *tls_ca_leaf_key(tls_ca *ca) { return ca_ready(ca) ? ca->leaf_key : NULL; }
const char *tls_ca_confdir(const tls_ca *ca) { return ca->confdir; }
void tls_set_leaf_key(tls_key_type type, int rsa_bits)
{
    leaf_key_type = type;
    leaf_key_bits = rsa_bits;
}
const char *tls_ca_cert_path(const tls_ca *ca) { return ca->cert_path; }

/* ---- the leaf cache (callers hold ca->lock) ----------------------------- */

static uint64_t host_hash(const tls_ca *ca, const char *s)
{
    uint64_t h = 1469598103934665603ULL ^ ca->hash_seed; /* FNV-1a */
    for (; *s; s++) {
        h ^= (unsigned char)*s;
        h *= 1099511628211ULL;
    }
    return h;
}

static leaf_entry *cache_find(tls_ca *ca, const char *host, uint64_t h)
{
    for (leaf_entry *e = ca->buckets[h & (TLS_CACHE_BUCKETS - 1)]; e; e = e->hnext)
        if (e->hash == h && strcmp(e->host, host) == 0)
            return e;
    return NULL;
}

static void lru_unlink(tls_ca *ca, leaf_entry *e)
{
    if (e->prev)
        e->prev->next = e->next;
    else
        ca->lru_head = e->next;
    if (e->next)
        e->next->prev = e->prev;
    else
        ca->lru_tail = e->prev;
    e->prev = e->next = NULL;
}

static void lru_push_front(tls_ca *ca, leaf_entry *e)
{
    e->prev = NULL;
    e->next = ca->lru_head;
    if (ca->lru_head)
        ca->lru_head->prev = e;
    ca->lru_head = e;
    if (!ca->lru_tail)
        ca->lru_tail = e;
}

static void cache_remove(tls_ca *ca, leaf_entry *e)
{
    leaf_entry **pp = &ca->buckets[e->hash & (TLS_CACHE_BUCKETS - 1)];
    while (*pp != e)
        pp = &(*pp)->hnext;
    *pp = e->hnext;
    lru_unlink(ca, e);
    ca->n--;
    entry_free(e); /* drops the cache's reference; users keep theirs */
}

static void cache_trim(tls_ca *ca)
{
    while (ca->n > ca->max && ca->lru_tail)
        cache_remove(ca, ca->lru_tail);
}

static void cache_insert(tls_ca *ca, leaf_entry *e)
{
    leaf_entry **b = &ca->buckets[e->hash & (TLS_CACHE_BUCKETS - 1)];
    e->hnext = *b;
    *b = e;
    lru_push_front(ca, e);
    ca->n++;
    cache_trim(ca);
}

/* A fresh cached certificate with a new reference, or NULL. */
static X509 *cache_get(tls_ca *ca, const char *host, uint64_t h, time_t now)
{
    leaf_entry *e = cache_find(ca, host, h);
    if (!e)
        return NULL;
    if (now - e->minted >= TLS_LEAF_REFRESH_SECS || now < e->minted) {
        cache_remove(ca, e);
        return NULL;
    }
    lru_unlink(ca, e);
    lru_push_front(ca, e);
    X509_up_ref(e->cert);
    return e->cert;
}

void tls_ca_set_cache_max(tls_ca *ca, size_t max)
{
    pthread_mutex_lock(&ca->lock);
    ca->max = max ? max : 1;
    cache_trim(ca);
    pthread_mutex_unlock(&ca->lock);
}

size_t tls_ca_cache_count(tls_ca *ca)
{
    pthread_mutex_lock(&ca->lock);
    size_t n = ca->n;
    pthread_mutex_unlock(&ca->lock);
    return n;
}

X509 *tls_ca_leaf(tls_ca *ca, const char *host_in, char *err, size_t errsz)
{
    return tls_ca_leaf_up(ca, host_in, NULL, err, errsz);
}

X509 *tls_ca_leaf_up(tls_ca *ca, const char *host_in, X509 *up, char *err, size_t errsz)
{
    char host[256 + 66]; /* with upstream names: "host/<upstream certificate's SHA-256>", the cache key */
    bool is_ip;
    if (tls_host_norm(host_in, host, 256, &is_ip) < 0) {
        snprintf(err, errsz, "cannot make a certificate for the host name \"%.80s\"", host_in);
        return NULL;
    }
    if (!ca_ready(ca)) {
        tls_errstr(err, errsz, "cannot load the CA");
        return NULL;
    }
    size_t name_len = strlen(host);
    unsigned char md[32];
    if (up && X509_digest(up, EVP_sha256(), md, NULL) != 1)
        up = NULL;
    if (up) {
        host[name_len] = '/';
        for (int i = 0; i < 32; i++)
            snprintf(host + name_len + 1 + 2 * i, 3, "%02x", md[i]);
    }
    uint64_t h = host_hash(ca, host);
    time_t now = time(NULL);
    pthread_mutex_lock(&ca->lock);
    X509 *x = cache_get(ca, host, h, now);
    pthread_mutex_unlock(&ca->lock);
    if (x)
        return x;

    /* mint outside the lock: signing takes a while and other hosts need not wait */
    char name[256];
    memcpy(name, host, name_len);
    name[name_len] = '\0';
    if (!(x = mint_leaf(ca, name, is_ip, now, up))) {
        tls_errstr(err, errsz, "cannot mint a certificate");
        return NULL;
    }
    size_t hl = strlen(host);
    leaf_entry *e = malloc(sizeof *e + hl + 1);
    if (!e)
        return x; /* usable, just not cached */
    memcpy(e->host, host, hl + 1);
    e->hash = h;
    e->minted = now;
    e->cert = x;

    pthread_mutex_lock(&ca->lock);
    X509 *won = cache_get(ca, host, h, now); /* another worker minted it meanwhile? */
    if (!won) {
        X509_up_ref(x); /* one reference for the cache, one for the caller */
        cache_insert(ca, e);
    }
    pthread_mutex_unlock(&ca->lock);
    if (won) {
        entry_free(e); /* frees our x: everyone shares the first one */
        return won;
    }
    return x;
}

/* ---- client-facing ------------------------------------------------------ */

static int cert_cb(SSL *ssl, void *arg)
{
    tls_ca *ca = arg;
    char norm[256], err[256];
    bool is_ip;
    const char *host = SSL_get_servername(ssl, TLSEXT_NAMETYPE_host_name);
    if (!host || tls_host_norm(host, norm, sizeof norm, &is_ip) < 0) {
        tls_blob *fb = SSL_get_ex_data(ssl, ex_fallback_idx);
        if (host)
            log_debug("tls: ignoring unusable SNI \"%.80s\"", host);
        host = fb ? (const char *)fb->p : "mitmlua";
    }
    int own = tlsopts_use_own_cert(ssl, host);
    if (own != 0)
        return own > 0;
    STACK_OF(X509) *up = SSL_get_ex_data(ssl, ex_upcert_idx);
    X509 *leaf = tls_ca_leaf_up(ca, host, tlsopts_names_from(ssl, up), err, sizeof err);
    if (!leaf) {
        log_warn("tls: %s", err);
        return 0;
    }
    /* override=1: a second callback (HelloRetryRequest) replaces, not adds */
    int ok = SSL_use_cert_and_key(ssl, leaf, ca->leaf_key, ca->chain, 1) == 1 && /* ready: tls_ca_leaf */
             tlsopts_add_upstream_chain(ssl, up) == 0;
    X509_free(leaf);
    return ok ? 1 : 0;
}

static const unsigned char alpn_default[] = "\x08http/1.1";

/* The first of our allowed protocols (in our order) that the client offers;
 * no ALPN when none is. */
static int alpn_select_cb(SSL *ssl, const unsigned char **out, unsigned char *outlen, const unsigned char *in,
                          unsigned int inlen, void *arg)
{
    const unsigned char *allow = alpn_default;
    size_t an = sizeof alpn_default - 1;
    tls_blob *b = SSL_get_ex_data(ssl, ex_alpn_idx);
    if (b) {
        allow = b->p;
        an = b->n;
    }
    for (size_t i = 0; i < an; i += 1 + (size_t)allow[i]) {
        unsigned l = allow[i];
        for (unsigned j = 0; j < inlen;) {
            unsigned m = in[j];
            if (j + 1 + m > inlen)
                break;
            if (m == l && memcmp(in + j + 1, allow + i + 1, l) == 0) {
                *out = in + j + 1;
                *outlen = (unsigned char)m;
                return SSL_TLSEXT_ERR_OK;
            }
            j += 1 + m;
        }
    }
    return SSL_TLSEXT_ERR_NOACK;
}

SSL_CTX *tls_server_ctx_new(tls_ca *ca, char *err, size_t errsz)
{
    pthread_once(&ex_once, ex_init);
    SSL_CTX *ctx = SSL_CTX_new(TLS_server_method());
    if (!ctx) {
        tls_errstr(err, errsz, "cannot create a TLS context");
        return NULL;
    }
    /* TLS 1.2 ciphers: forward-secret AEAD first, then CBC, and plain RSA key
     * exchange last for old clients; nothing anonymous, export, RC4 or 3DES.
     * TLS 1.3 suites keep OpenSSL's defaults. */
    if (SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION) != 1 ||
        SSL_CTX_set_cipher_list(ctx, "ECDHE+AESGCM:ECDHE+CHACHA20:ECDHE+AES:RSA+AESGCM:RSA+AES:!aNULL:!eNULL:"
                                     "!MD5:!DSS:!PSK:!SRP:!3DES:!RC4:!CAMELLIA:!ARIA") != 1) {
        tls_errstr(err, errsz, "cannot configure the TLS context");
        SSL_CTX_free(ctx);
        return NULL;
    }
    SSL_CTX_set_options(ctx, SSL_OP_NO_COMPRESSION | SSL_OP_NO_RENEGOTIATION | SSL_OP_CIPHER_SERVER_PREFERENCE);
    SSL_CTX_set_mode(ctx, SSL_MODE_RELEASE_BUFFERS);
    /* Clients resume with session IDs (OpenSSL's server cache, shared by
     * the workers through the one context) or tickets (its random ticket
     * key, made with the context): a resumed handshake skips the minted
     * certificate and its signature.  The context ID is what both check. */
    SSL_CTX_set_session_id_context(ctx, (const unsigned char *)"mitmlua", 7);
    SSL_CTX_set_cert_cb(ctx, cert_cb, ca);
    SSL_CTX_set_alpn_select_cb(ctx, alpn_select_cb, NULL);
    return ctx;
}

void tls_keep_session(SSL *ssl)
{
    if (ssl && SSL_is_init_finished(ssl))
        SSL_set_shutdown(ssl, SSL_get_shutdown(ssl) | SSL_SENT_SHUTDOWN);
}

int tls_set_fallback_host(SSL *ssl, const char *host)
{
    pthread_once(&ex_once, ex_init);
    tls_blob *b = NULL;
    if (host && !(b = blob_new(host, strlen(host))))
        return -1;
    return ex_replace(ssl, ex_fallback_idx, b);
}

int tls_set_alpn_allowed(SSL *ssl, const unsigned char *wire, size_t n)
{
    pthread_once(&ex_once, ex_init);
    for (size_t i = 0; i < n; i += 1 + (size_t)wire[i])
        if (wire[i] == 0 || i + 1 + wire[i] > n)
            return -1;
    tls_blob *b = blob_new(wire, n);
    return b ? ex_replace(ssl, ex_alpn_idx, b) : -1;
}

/* ---- trusted CA files --------------------------------------------------- */

/* Every PEM certificate in the file; the file is refused when it holds
 * none, as SSL_CTX_load_verify_locations would refuse it. */
int tls_check_ca_file(const char *path, char *err, size_t errsz)
{
    FILE *f = fopen(path, "r");
    if (!f) {
        snprintf(err, errsz, "cannot load trusted CA file %s: %s", path, strerror(errno));
        return -1;
    }
    int n = 0;
    X509 *x;
    while ((x = PEM_read_X509(f, NULL, NULL, NULL))) {
        X509_free(x);
        n++;
    }
    ERR_clear_error();
    fclose(f);
    if (n == 0) {
        snprintf(err, errsz, "cannot load trusted CA file %s: no PEM certificate in it", path);
        return -1;
    }
    return 0;
}

/* One-line RFC 2253 text, keeping UTF-8 as is (only control characters and
 * RFC 2253 specials escaped). */
static char *name_line(const X509_NAME *n)
{
    BIO *b = BIO_new(BIO_s_mem());
    char *s = NULL;
    if (b && X509_NAME_print_ex(b, n, 0, XN_FLAG_RFC2253 & ~ASN1_STRFLGS_ESC_MSB) >= 0)
        s = bio_take(b, NULL);
    BIO_free(b);
    return s;
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
    flow_strset(&c->sni, SSL_get_servername(ssl, TLSEXT_NAMETYPE_host_name));
    if (server_side) {
        X509 *peer = SSL_get1_peer_certificate(ssl);
        free(c->cert_subject);
        free(c->cert_issuer);
        c->cert_subject = peer ? name_line(X509_get_subject_name(peer)) : NULL;
        c->cert_issuer = peer ? name_line(X509_get_issuer_name(peer)) : NULL;
        X509_free(peer);
    }
}
