/* tlsopts.c — see tlsopts.h.
 *
 * What a context needs per connection (the `certs` table, the client_certs
 * directory) hangs off the SSL_CTX in one ex_data slot freed with the
 * context, so tls.c's callbacks and tlsup_prepare reach it without
 * new parameters.  OpenSSL 3 refuses TLS 1.0/1.1 at its default security
 * level (their handshake signatures use SHA-1/MD5); allowing them lowers
 * the level of that one context to 0, which the start-up warning says. */
#include "tlsopts.h"

#include <ctype.h>
#include <dirent.h>
#include <errno.h>
#include <limits.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>

#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/x509v3.h>

#include "log.h"
#include "tls.h"

#define KEY_SIZE_MIN 1024
#define KEY_SIZE_MAX 8192

typedef struct own_cert {
    char **names;   /* the spec's domain, the certificate's CN and DNS SANs */
    size_t nnames;
    X509 *cert;
    EVP_PKEY *key;
    STACK_OF(X509) *chain;
} own_cert;

typedef struct ctx_data {
    own_cert *certs;      /* client-facing: `certs`, in the order given */
    size_t ncerts;
    char *client_cert_dir; /* upstream-facing: client_certs when a directory */
    bool upstream_cert;   /* client-facing: the options of the same names */
    bool add_upstream_chain;
} ctx_data;

static int ex_idx = -1;
static pthread_once_t ex_once = PTHREAD_ONCE_INIT;

/* ---- values ---------------------------------------------------------------- */

static const struct {
    const char *name;
    int version;
} versions[] = {
    {"UNBOUNDED", 0},          {"SSL3", SSL3_VERSION},     {"TLS1", TLS1_VERSION},
    {"TLS1_1", TLS1_1_VERSION}, {"TLS1_2", TLS1_2_VERSION}, {"TLS1_3", TLS1_3_VERSION},
};
#define NVERSIONS (sizeof versions / sizeof versions[0])

int tlsopts_parse_version(const char *name, int *version)
{
    for (size_t i = 0; name && i < NVERSIONS; i++)
        if (strcmp(name, versions[i].name) == 0) {
            *version = versions[i].version;
            return 0;
        }
    return -1;
}

const char *tlsopts_version_name(int version)
{
    for (size_t i = 0; i < NVERSIONS; i++)
        if (versions[i].version == version)
            return versions[i].name;
    return "?";
}

int tlsopts_split_cert_spec(const char *spec, const char **domain, size_t *domain_len, const char **path)
{
    const char *eq = strchr(spec, '=');
    if (eq) {
        *domain = spec;
        *domain_len = (size_t)(eq - spec);
        *path = eq + 1;
    } else {
        *domain = "*";
        *domain_len = 1;
        *path = spec;
    }
    return *domain_len && **path ? 0 : -1;
}

/* 0 for the name itself, k for the k-th "*.parent" form, a large rank for
 * "*", -1 for no match: lower ranks win, as in mitmproxy's lookup order. */
static int match_rank(const char *name, const char *host)
{
    if (strcasecmp(name, host) == 0)
        return 0;
    if (strcmp(name, "*") == 0)
        return INT_MAX;
    if (strncmp(name, "*.", 2) != 0)
        return -1;
    int k = 0;
    for (const char *p = strchr(host, '.'); p; p = strchr(p + 1, '.')) {
        k++;
        if (strcasecmp(name + 1, p) == 0)
            return k;
    }
    return -1;
}

bool tlsopts_name_matches(const char *name, const char *host)
{
    return match_rank(name, host) >= 0;
}

/* ---- loading files ------------------------------------------------------- */

static void own_cert_free(own_cert *c)
{
    for (size_t i = 0; i < c->nnames; i++)
        free(c->names[i]);
    free(c->names);
    X509_free(c->cert);
    EVP_PKEY_free(c->key);
    sk_X509_pop_free(c->chain, X509_free);
    memset(c, 0, sizeof *c);
}

static int add_name(own_cert *c, const char *s, size_t n)
{
    char **v = realloc(c->names, (c->nnames + 1) * sizeof *v);
    if (!v)
        return -1;
    c->names = v;
    if (!(v[c->nnames] = strndup(s, n)))
        return -1;
    c->nnames++;
    return 0;
}

static int add_cert_names(own_cert *c)
{
    char cn[256];
    if (X509_NAME_get_text_by_NID(X509_get_subject_name(c->cert), NID_commonName, cn, sizeof cn) > 0 &&
        add_name(c, cn, strlen(cn)) < 0)
        return -1;
    GENERAL_NAMES *sans = X509_get_ext_d2i(c->cert, NID_subject_alt_name, NULL, NULL);
    int rc = 0;
    for (int i = 0; rc == 0 && i < sk_GENERAL_NAME_num(sans); i++) {
        const GENERAL_NAME *g = sk_GENERAL_NAME_value(sans, i);
        if (g->type == GEN_DNS)
            rc = add_name(c, (const char *)ASN1_STRING_get0_data(g->d.dNSName),
                          (size_t)ASN1_STRING_length(g->d.dNSName));
    }
    GENERAL_NAMES_free(sans);
    ERR_clear_error();
    return rc;
}

/* A PEM file with a certificate, the chain after it and its private key,
 * encrypted with `pass` (NULL: unencrypted).  `what` names the option in
 * messages. */
static int load_pem_bundle(const char *path, const char *what, const char *pass, X509 **cert, EVP_PKEY **key,
                           STACK_OF(X509) **chain, char *err, size_t errsz)
{
    *cert = NULL;
    *key = NULL;
    *chain = NULL;
    FILE *f = fopen(path, "r");
    if (!f) {
        snprintf(err, errsz, "invalid value for %s: cannot read '%s': %s", what, path, strerror(errno));
        return -1;
    }
    *cert = PEM_read_X509(f, NULL, NULL, NULL);
    if (*cert) {
        *chain = sk_X509_new_null();
        for (X509 *x; *chain && (x = PEM_read_X509(f, NULL, NULL, NULL));)
            if (!sk_X509_push(*chain, x))
                X509_free(x);
    }
    ERR_clear_error();
    rewind(f);
    /* a passphrase given as the callback's argument, never asked for */
    *key = PEM_read_PrivateKey(f, NULL, NULL, (void *)(pass ? pass : ""));
    ERR_clear_error();
    fclose(f);
    const char *why = !*cert ? "no PEM certificate in it"
                    : !*key && pass ? "no PEM private key in it that cert_passphrase decrypts"
                    : !*key ? "no (unencrypted) PEM private key in it"
                    : X509_check_private_key(*cert, *key) != 1 ? "its private key does not match its certificate"
                    : NULL;
    ERR_clear_error();
    if (!why && *chain)
        return 0;
    snprintf(err, errsz, "invalid value for %s: '%s': %s", what, path, why ? why : "out of memory");
    X509_free(*cert);
    EVP_PKEY_free(*key);
    sk_X509_pop_free(*chain, X509_free);
    *cert = NULL;
    *key = NULL;
    *chain = NULL;
    return -1;
}

static int load_own_cert(const char *spec, const char *pass, own_cert *c, char *err, size_t errsz)
{
    const char *dom, *path;
    size_t dl;
    memset(c, 0, sizeof *c);
    if (tlsopts_split_cert_spec(spec, &dom, &dl, &path) < 0) {
        snprintf(err, errsz, "invalid value for certs: '%s' (expected [domain=]path)", spec);
        return -1;
    }
    if (load_pem_bundle(path, "certs", pass, &c->cert, &c->key, &c->chain, err, errsz) < 0)
        return -1;
    if (add_name(c, dom, dl) < 0 || add_cert_names(c) < 0) {
        own_cert_free(c);
        snprintf(err, errsz, "out of memory");
        return -1;
    }
    return 0;
}

static void ctx_data_free(void *parent, void *ptr, CRYPTO_EX_DATA *ad, int idx, long argl, void *argp)
{
    (void)parent, (void)ad, (void)idx, (void)argl, (void)argp;
    ctx_data *d = ptr;
    if (!d)
        return;
    for (size_t i = 0; i < d->ncerts; i++)
        own_cert_free(&d->certs[i]);
    free(d->certs);
    free(d->client_cert_dir);
    free(d);
}

static void ex_init(void)
{
    ex_idx = SSL_CTX_get_ex_new_index(0, NULL, NULL, NULL, ctx_data_free);
}

static ctx_data *ctx_data_of(SSL_CTX *ctx, bool create)
{
    pthread_once(&ex_once, ex_init);
    ctx_data *d = SSL_CTX_get_ex_data(ctx, ex_idx);
    if (!d && create && (d = calloc(1, sizeof *d)) && !SSL_CTX_set_ex_data(ctx, ex_idx, d)) {
        free(d);
        d = NULL;
    }
    return d;
}

/* ---- checking the options ------------------------------------------------ */

static int check_versions(const char *side, const char *min_s, const char *max_s, char *err, size_t errsz)
{
    int mn, mx;
    if (tlsopts_parse_version(min_s, &mn) < 0 || tlsopts_parse_version(max_s, &mx) < 0) {
        bool bad_min = tlsopts_parse_version(min_s, &mn) < 0;
        snprintf(err, errsz,
                 "invalid value for tls_version_%s_%s: '%s' (expected UNBOUNDED, TLS1, TLS1_1, TLS1_2 or TLS1_3)",
                 side, bad_min ? "min" : "max", bad_min ? (min_s ? min_s : "") : (max_s ? max_s : ""));
        return -1;
    }
    if (mn == SSL3_VERSION || mx == SSL3_VERSION) {
        snprintf(err, errsz, "invalid value for tls_version_%s_%s: 'SSL3' (this OpenSSL has no SSL 3.0)", side,
                 mn == SSL3_VERSION ? "min" : "max");
        return -1;
    }
    if (mn && mx && mn > mx) {
        snprintf(err, errsz, "invalid values: tls_version_%s_min '%s' is above tls_version_%s_max '%s'", side, min_s,
                 side, max_s);
        return -1;
    }
    return 0;
}

/* An OpenSSL cipher list (TLS 1.2 and below), or failing that a TLS 1.3
 * ciphersuite list: mitmproxy passes the string to set_cipher_list only,
 * which would refuse TLS 1.3 names. */
static int set_ciphers(SSL_CTX *ctx, const char *s)
{
    if (SSL_CTX_set_cipher_list(ctx, s) == 1)
        return 0;
    ERR_clear_error();
    if (strchr(s, '!') == NULL && SSL_CTX_set_ciphersuites(ctx, s) == 1)
        return 0;
    ERR_clear_error();
    return -1;
}

/* tls_ecdh_curve_*: one curve, as mitmproxy's set_tmp_ecdh offers one (a
 * list of OpenSSL's is refused: the option names a curve) */
static int set_curve(SSL_CTX *ctx, const char *name)
{
    if (!*name || strchr(name, ':') || SSL_CTX_set1_groups_list(ctx, name) != 1) {
        ERR_clear_error();
        return -1;
    }
    return 0;
}

static int check_ciphers(const opts *o, char *err, size_t errsz)
{
    if (!o->ciphers_client && !o->ciphers_server && !o->tls_ecdh_curve_client && !o->tls_ecdh_curve_server)
        return 0;
    SSL_CTX *ctx = SSL_CTX_new(TLS_method());
    int rc = 0;
    if (!ctx) {
        snprintf(err, errsz, "cannot create a TLS context to check ciphers");
        return -1;
    }
    const char *names[2] = {"ciphers_client", "ciphers_server"}, *vals[2] = {o->ciphers_client, o->ciphers_server};
    for (int i = 0; i < 2 && rc == 0; i++)
        if (vals[i] && set_ciphers(ctx, vals[i]) < 0) {
            snprintf(err, errsz, "invalid value for %s: '%s' (no cipher OpenSSL knows in it)", names[i], vals[i]);
            rc = -1;
        }
    const char *cnames[2] = {"tls_ecdh_curve_client", "tls_ecdh_curve_server"},
               *curves[2] = {o->tls_ecdh_curve_client, o->tls_ecdh_curve_server};
    for (int i = 0; i < 2 && rc == 0; i++)
        if (curves[i] && set_curve(ctx, curves[i]) < 0) {
            snprintf(err, errsz, "invalid value for %s: '%s' (not a curve OpenSSL knows)", cnames[i], curves[i]);
            rc = -1;
        }
    SSL_CTX_free(ctx);
    return rc;
}

static int check_files(const opts *o, char *err, size_t errsz)
{
    struct stat st;
    for (size_t i = 0; i < o->ncerts; i++) {
        own_cert c;
        if (load_own_cert(o->certs[i], o->cert_passphrase, &c, err, errsz) < 0)
            return -1;
        own_cert_free(&c);
    }
    if (o->client_certs) {
        if (stat(o->client_certs, &st) < 0) {
            snprintf(err, errsz, "invalid value for client_certs: '%s': %s", o->client_certs, strerror(errno));
            return -1;
        }
        if (!S_ISDIR(st.st_mode)) {
            X509 *x;
            EVP_PKEY *k;
            STACK_OF(X509) *ch;
            if (load_pem_bundle(o->client_certs, "client_certs", NULL, &x, &k, &ch, err, errsz) < 0)
                return -1;
            X509_free(x);
            EVP_PKEY_free(k);
            sk_X509_pop_free(ch, X509_free);
        }
    }
    const char *td = o->ssl_verify_upstream_trusted_confdir;
    if (td) {
        int r = stat(td, &st);
        if (r < 0 || !S_ISDIR(st.st_mode)) {
            snprintf(err, errsz, "invalid value for ssl_verify_upstream_trusted_confdir: '%s': %s", td,
                     r < 0 ? strerror(errno) : "not a directory");
            return -1;
        }
    }
    return 0;
}

int tlsopts_check(const opts *o, char *err, size_t errsz)
{
    if (check_versions("client", o->tls_version_client_min, o->tls_version_client_max, err, errsz) < 0 ||
        check_versions("server", o->tls_version_server_min, o->tls_version_server_max, err, errsz) < 0)
        return -1;
    if (o->key_size < KEY_SIZE_MIN || o->key_size > KEY_SIZE_MAX) {
        snprintf(err, errsz, "invalid value for key_size: %d (expected %d to %d RSA bits)", o->key_size,
                 KEY_SIZE_MIN, KEY_SIZE_MAX);
        return -1;
    }
    if (!o->key_type || (strcmp(o->key_type, "ecdsa") != 0 && strcmp(o->key_type, "rsa") != 0)) {
        snprintf(err, errsz, "invalid value for key_type: '%s' (expected ecdsa or rsa)", o->key_type ? o->key_type : "");
        return -1;
    }
    if (check_ciphers(o, err, errsz) < 0 || check_files(o, err, errsz) < 0)
        return -1;
    return 0;
}

static bool below_tls12(const char *min_s)
{
    int v = TLS1_2_VERSION;
    tlsopts_parse_version(min_s, &v);
    return v < TLS1_2_VERSION;
}

void tlsopts_warn(const opts *o)
{
    if (below_tls12(o->tls_version_client_min))
        log_warn("tls_version_client_min=%s: TLS below 1.2 allowed with clients; OpenSSL security level 0 "
                 "for the client-facing context", o->tls_version_client_min);
    if (below_tls12(o->tls_version_server_min))
        log_warn("tls_version_server_min=%s: TLS below 1.2 allowed with servers; OpenSSL security level 0 "
                 "for the upstream-facing context", o->tls_version_server_min);
    bool rsa = o->key_type && strcmp(o->key_type, "rsa") == 0;
    if (!rsa && o->key_size != 2048)
        log_warn("key_size=%d: applies to key_type=rsa only; minted certificates use an ECDSA P-256 key",
                 o->key_size);
    if (rsa && o->key_size < 2048)
        log_warn("key_size=%d: minted certificates use a weak key; OpenSSL security level 1 for the "
                 "client-facing context", o->key_size);
}

/* ---- configuring the contexts -------------------------------------------- */

static int apply_versions(SSL_CTX *ctx, const char *min_s, const char *max_s, char *err, size_t errsz)
{
    int mn = TLS1_2_VERSION, mx = 0;
    tlsopts_parse_version(min_s, &mn);
    tlsopts_parse_version(max_s, &mx);
    if (SSL_CTX_set_min_proto_version(ctx, mn) != 1 || SSL_CTX_set_max_proto_version(ctx, mx) != 1) {
        ERR_clear_error();
        snprintf(err, errsz, "cannot set TLS versions %s to %s", min_s, max_s);
        return -1;
    }
    if (mn < TLS1_2_VERSION)
        SSL_CTX_set_security_level(ctx, 0);
    return 0;
}

/* request_client_cert: whatever certificate the client sends, or none, is
 * taken (mitmproxy's accept-all verify): the point is to ask for one. */
static int accept_any_cert(int ok, X509_STORE_CTX *store)
{
    (void)ok, (void)store;
    return 1;
}

int tlsopts_apply_server(SSL_CTX *ctx, const opts *o, char *err, size_t errsz)
{
    if (o->request_client_cert)
        SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER, accept_any_cert);
    if (apply_versions(ctx, o->tls_version_client_min, o->tls_version_client_max, err, errsz) < 0)
        return -1;
    if (o->key_type && strcmp(o->key_type, "rsa") == 0 && o->key_size < 2048 && SSL_CTX_get_security_level(ctx) > 1)
        SSL_CTX_set_security_level(ctx, 1);
    if (o->ciphers_client && set_ciphers(ctx, o->ciphers_client) < 0) {
        snprintf(err, errsz, "invalid value for ciphers_client: '%s'", o->ciphers_client);
        return -1;
    }
    if (o->tls_ecdh_curve_client && set_curve(ctx, o->tls_ecdh_curve_client) < 0) {
        snprintf(err, errsz, "invalid value for tls_ecdh_curve_client: '%s'", o->tls_ecdh_curve_client);
        return -1;
    }
    if (!o->ncerts && !o->upstream_cert && !o->add_upstream_certs_to_client_chain)
        return 0;
    ctx_data *d = ctx_data_of(ctx, true);
    if (d) {
        d->upstream_cert = o->upstream_cert;
        d->add_upstream_chain = o->add_upstream_certs_to_client_chain;
    }
    if (!d || (o->ncerts && !(d->certs = calloc(o->ncerts, sizeof *d->certs)))) {
        snprintf(err, errsz, "out of memory");
        return -1;
    }
    for (; d->ncerts < o->ncerts; d->ncerts++)
        if (load_own_cert(o->certs[d->ncerts], o->cert_passphrase, &d->certs[d->ncerts], err, errsz) < 0)
            return -1; /* the context's free frees what was loaded */
    return 0;
}

static bool hashed_name(const char *n)
{
    return strspn(n, "0123456789abcdef") == 8 && n[8] == '.' && isdigit((unsigned char)n[9]);
}

/* Every certificate of every plain file in dir, and the hashed lookup
 * (c_rehash) for the names that look hashed: mitmproxy hands the directory
 * to OpenSSL as a CApath, which reads hashed names only; plain files work
 * here too. */
static int load_trusted_dir(SSL_CTX *ctx, const char *dir, char *err, size_t errsz)
{
    DIR *dp = opendir(dir);
    if (!dp) {
        snprintf(err, errsz, "cannot read ssl_verify_upstream_trusted_confdir %s: %s", dir, strerror(errno));
        return -1;
    }
    X509_STORE *st = SSL_CTX_get_cert_store(ctx);
    bool hashed = false;
    for (struct dirent *e; (e = readdir(dp));) {
        if (e->d_name[0] == '.')
            continue;
        if (hashed_name(e->d_name)) {
            hashed = true;
            continue;
        }
        char p[PATH_MAX];
        snprintf(p, sizeof p, "%s/%s", dir, e->d_name);
        FILE *f = fopen(p, "r");
        if (!f)
            continue;
        for (X509 *x; (x = PEM_read_X509(f, NULL, NULL, NULL));) {
            X509_STORE_add_cert(st, x);
            X509_free(x);
        }
        fclose(f);
    }
    closedir(dp);
    ERR_clear_error();
    if (hashed && SSL_CTX_load_verify_dir(ctx, dir) != 1)
        ERR_clear_error();
    return 0;
}

/* An encrypted key in client_certs fails instead of OpenSSL asking for a
 * password on the terminal from inside a worker. */
static int no_password(char *buf, int size, int rwflag, void *u)
{
    (void)buf, (void)size, (void)rwflag, (void)u;
    return 0;
}

int tlsopts_apply_client(SSL_CTX *ctx, const opts *o, char *err, size_t errsz)
{
    SSL_CTX_set_default_passwd_cb(ctx, no_password);
    if (apply_versions(ctx, o->tls_version_server_min, o->tls_version_server_max, err, errsz) < 0)
        return -1;
    if (o->ciphers_server && set_ciphers(ctx, o->ciphers_server) < 0) {
        snprintf(err, errsz, "invalid value for ciphers_server: '%s'", o->ciphers_server);
        return -1;
    }
    if (o->tls_ecdh_curve_server && set_curve(ctx, o->tls_ecdh_curve_server) < 0) {
        snprintf(err, errsz, "invalid value for tls_ecdh_curve_server: '%s'", o->tls_ecdh_curve_server);
        return -1;
    }
    if (!o->ssl_insecure && o->ssl_verify_upstream_trusted_confdir &&
        load_trusted_dir(ctx, o->ssl_verify_upstream_trusted_confdir, err, errsz) < 0)
        return -1;
    if (!o->client_certs)
        return 0;
    struct stat st;
    if (stat(o->client_certs, &st) == 0 && S_ISDIR(st.st_mode)) {
        ctx_data *d = ctx_data_of(ctx, true);
        if (!d || !(d->client_cert_dir = strdup(o->client_certs))) {
            snprintf(err, errsz, "out of memory");
            return -1;
        }
        return 0;
    }
    if (SSL_CTX_use_certificate_chain_file(ctx, o->client_certs) != 1 ||
        SSL_CTX_use_PrivateKey_file(ctx, o->client_certs, SSL_FILETYPE_PEM) != 1) {
        ERR_clear_error();
        snprintf(err, errsz, "cannot load client_certs %s", o->client_certs);
        return -1;
    }
    return 0;
}

/* ---- per connection ------------------------------------------------------ */

int tlsopts_use_own_cert(SSL *ssl, const char *host)
{
    ctx_data *d = ctx_data_of(SSL_get_SSL_CTX(ssl), false);
    if (!d || !d->ncerts)
        return 0;
    const own_cert *best = NULL;
    int best_rank = -1;
    for (size_t i = 0; i < d->ncerts; i++)
        for (size_t j = 0; j < d->certs[i].nnames; j++) {
            int r = match_rank(d->certs[i].names[j], host);
            if (r >= 0 && (best_rank < 0 || r <= best_rank)) { /* ties: the later entry, as mitmproxy's dict */
                best = &d->certs[i];
                best_rank = r;
            }
        }
    if (!best)
        return 0;
    return SSL_use_cert_and_key(ssl, best->cert, best->key, best->chain, 1) == 1 ? 1 : -1;
}

int tlsopts_use_client_cert(SSL *ssl, const char *name, char *err, size_t errsz)
{
    ctx_data *d = ctx_data_of(SSL_get_SSL_CTX(ssl), false);
    if (!d || !d->client_cert_dir || !name || strchr(name, '/') || name[0] == '.')
        return 0;
    char p[PATH_MAX];
    struct stat st;
    snprintf(p, sizeof p, "%s/%s.pem", d->client_cert_dir, name);
    if (stat(p, &st) < 0 || !S_ISREG(st.st_mode))
        return 0; /* none for this server, as in mitmproxy */
    if (SSL_use_certificate_chain_file(ssl, p) != 1 || SSL_use_PrivateKey_file(ssl, p, SSL_FILETYPE_PEM) != 1) {
        unsigned long e = ERR_get_error();
        ERR_clear_error();
        snprintf(err, errsz, "cannot load client certificate %s: %s", p,
                 ERR_reason_error_string(e) ? ERR_reason_error_string(e) : "no certificate and key in it");
        return -1;
    }
    return 0;
}

X509 *tlsopts_names_from(SSL *ssl, STACK_OF(X509) *chain)
{
    ctx_data *d = chain ? ctx_data_of(SSL_get_SSL_CTX(ssl), false) : NULL;
    return d && d->upstream_cert && sk_X509_num(chain) > 0 ? sk_X509_value(chain, 0) : NULL;
}

int tlsopts_add_upstream_chain(SSL *ssl, STACK_OF(X509) *chain)
{
    ctx_data *d = chain ? ctx_data_of(SSL_get_SSL_CTX(ssl), false) : NULL;
    for (int i = 0; d && d->add_upstream_chain && i < sk_X509_num(chain); i++)
        if (SSL_add1_chain_cert(ssl, sk_X509_value(chain, i)) != 1)
            return -1;
    return 0;
}

/* A common name that can be a DNS name (no spaces, not empty). */
static bool dns_like(const char *s)
{
    if (!*s)
        return false;
    for (; *s; s++)
        if (!isalnum((unsigned char)*s) && !strchr(".-_*", *s))
            return false;
    return true;
}

int tlsopts_add_upstream_names(GENERAL_NAMES *gens, X509 *up)
{
    char cn[256];
    if (X509_NAME_get_text_by_NID(X509_get_subject_name(up), NID_commonName, cn, sizeof cn) > 0 && dns_like(cn)) {
        GENERAL_NAME *g = GENERAL_NAME_new();
        ASN1_IA5STRING *s = ASN1_IA5STRING_new();
        if (!g || !s || !ASN1_STRING_set(s, cn, -1)) {
            GENERAL_NAME_free(g);
            ASN1_IA5STRING_free(s);
            return -1;
        }
        GENERAL_NAME_set0_value(g, GEN_DNS, s);
        if (!sk_GENERAL_NAME_push(gens, g)) {
            GENERAL_NAME_free(g);
            return -1;
        }
    }
    ERR_clear_error();
    GENERAL_NAMES *sans = X509_get_ext_d2i(up, NID_subject_alt_name, NULL, NULL);
    int rc = 0;
    for (int i = 0; rc == 0 && i < sk_GENERAL_NAME_num(sans); i++) {
        GENERAL_NAME *g = sk_GENERAL_NAME_value(sans, i);
        if (g->type != GEN_DNS && g->type != GEN_IPADD)
            continue;
        GENERAL_NAME *d = GENERAL_NAME_dup(g);
        if (!d || !sk_GENERAL_NAME_push(gens, d)) {
            GENERAL_NAME_free(d);
            rc = -1;
        }
    }
    GENERAL_NAMES_free(sans);
    ERR_clear_error();
    return rc;
}

void tlsopts_version_hint(SSL *ssl, unsigned long reason, char *out, size_t outsz)
{
    out[0] = '\0';
    switch (reason) {
    case SSL_R_UNSUPPORTED_PROTOCOL:
    case SSL_R_TLSV1_ALERT_PROTOCOL_VERSION:
    case SSL_R_WRONG_VERSION_NUMBER:
    case SSL_R_NO_PROTOCOLS_AVAILABLE:
    case SSL_R_UNSUPPORTED_SSL_VERSION:
    case SSL_R_VERSION_TOO_LOW:
    case SSL_R_VERSION_TOO_HIGH:
        break;
    default:
        return;
    }
    if (!ssl)
        return;
    snprintf(out, outsz, " (tls_version_%s_min/max allow %s to %s)", SSL_is_server(ssl) ? "client" : "server",
             tlsopts_version_name((int)SSL_get_min_proto_version(ssl)),
             tlsopts_version_name((int)SSL_get_max_proto_version(ssl)));
}
