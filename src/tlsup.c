/* tlsup.c — see tlsup.h.
 *
 * Session resumption: OpenSSL's own client cache is keyed by nothing we
 * control, so the context keeps none (SSL_SESS_CACHE_NO_INTERNAL_STORE)
 * and hands each new session to new_session_cb, which files it in the
 * context's tlssess under the key tlsup_prepare gave the connection.  The
 * key holds everything a resumed session must agree with: the name the
 * certificate was verified against, the port, the SNI, the client
 * certificate.  The cache belongs to the context, and a context has one
 * set of verification settings, so sessions never cross them.  A session
 * is offered, never trusted: a server that changed its certificate (or
 * restarted with new ticket keys) refuses it, and the full handshake
 * verifies the new certificate as any other.
 *
 * A session is kept for reuse by several connections, not taken once:
 * RFC 8446 advises single use against tracking by passive observers,
 * which is no concern between a proxy and the servers it reaches, while
 * parallel connections to one server (HTTP/1.1 clients open several) are
 * exactly where resumption pays. */
#include "tlsup.h"

#include <dirent.h>
#include <limits.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/x509v3.h>

#include "tls.h"
#include "tlsopts.h"
#include "tlssess.h"

static int ex_cache_idx = -1, ex_key_idx = -1;
static pthread_once_t ex_once = PTHREAD_ONCE_INIT;

static void ex_cache_free(void *parent, void *ptr, CRYPTO_EX_DATA *ad, int idx, long argl, void *argp)
{
    tlssess_free(ptr);
}

static void ex_key_free(void *parent, void *ptr, CRYPTO_EX_DATA *ad, int idx, long argl, void *argp)
{
    free(ptr);
}

static void ex_init(void)
{
    ex_cache_idx = SSL_CTX_get_ex_new_index(0, NULL, NULL, NULL, ex_cache_free);
    ex_key_idx = SSL_get_ex_new_index(0, NULL, NULL, NULL, ex_key_free);
}

/* ---- trust -------------------------------------------------------------- */

/* Does dir hold OpenSSL's hashed names (c_rehash / update-ca-certificates)? */
static bool has_hashed_certs(const char *dir)
{
    DIR *d = dir ? opendir(dir) : NULL;
    if (!d)
        return false;
    bool found = false;
    for (struct dirent *e; !found && (e = readdir(d));) {
        const char *n = e->d_name;
        size_t hex = strspn(n, "0123456789abcdef");
        found = hex == 8 && n[8] == '.' && n[9] >= '0' && n[9] <= '9';
    }
    closedir(d);
    return found;
}

/* Two paths name the same file (symbolic links resolved). */
static bool same_file(const char *a, const char *b)
{
    char ra[PATH_MAX], rb[PATH_MAX];
    return realpath(a, ra) && realpath(b, rb) && strcmp(ra, rb) == 0;
}

/* The system's trusted CAs.  Loading the bundle file parses every
 * certificate in it (about 60 ms, most of start-up); the hashed directory
 * is read lazily, one CA per lookup.  update-ca-certificates writes the
 * same CAs to both, so use the directory when it is there, unless
 * SSL_CERT_FILE names some other bundle. */
static int load_system_store(SSL_CTX *ctx)
{
    const char *file = getenv(X509_get_default_cert_file_env());
    const char *dir = getenv(X509_get_default_cert_dir_env());
    if (!dir)
        dir = X509_get_default_cert_dir();
    if ((!file || same_file(file, X509_get_default_cert_file())
        ) && has_hashed_certs(dir))
        return SSL_CTX_load_verify_dir(ctx, dir);
    return SSL_CTX_set_default_verify_paths(ctx);
}

/* ---- sessions ----------------------------------------------------------- */

/* OpenSSL's word that the server gave us a session (TLS 1.3: a ticket,
 * after the handshake).  Kept only when the certificate verified (or
 * verification is off): 0 tells OpenSSL we took no reference of its. */
static int new_session_cb(SSL *ssl, SSL_SESSION *s)
{
    tlssess *c = SSL_CTX_get_ex_data(SSL_get_SSL_CTX(ssl), ex_cache_idx);
    const char *key = SSL_get_ex_data(ssl, ex_key_idx);
    bool verified = !(SSL_get_verify_mode(ssl) & SSL_VERIFY_PEER) || SSL_get_verify_result(ssl) == X509_V_OK;
    if (c && key && verified)
        (void)tlssess_put(c, key, s); /* out of memory: the next handshake is a full one */
    return 0;
}

static int cache_attach(SSL_CTX *ctx, size_t max)
{
    pthread_once(&ex_once, ex_init);
    if (max == 0)
        return 0;
    tlssess *c = tlssess_new(max);
    if (!c || !SSL_CTX_set_ex_data(ctx, ex_cache_idx, c)) {
        tlssess_free(c);
        return -1;
    }
    SSL_CTX_set_session_cache_mode(ctx, SSL_SESS_CACHE_CLIENT | SSL_SESS_CACHE_NO_INTERNAL_STORE);
    SSL_CTX_sess_set_new_cb(ctx, new_session_cb);
    return 0;
}

size_t tlsup_session_count(SSL_CTX *ctx)
{
    pthread_once(&ex_once, ex_init);
    tlssess *c = SSL_CTX_get_ex_data(ctx, ex_cache_idx);
    return c ? tlssess_count(c) : 0;
}

/* Name the connection's sessions (see the file's comment) and offer the
 * one kept under that name.  Failing to is no error: the handshake is a
 * full one. */
static void offer_session(SSL *ssl, const char *want, uint16_t port, const char *sni)
{
    tlssess *c = SSL_CTX_get_ex_data(SSL_get_SSL_CTX(ssl), ex_cache_idx);
    if (!c)
        return;
    char cert[2 * EVP_MAX_MD_SIZE + 1] = "-";
    unsigned char md[EVP_MAX_MD_SIZE];
    unsigned mdn = 0;
    X509 *mine = SSL_get_certificate(ssl); /* client_certs */
    if (mine && X509_digest(mine, EVP_sha256(), md, &mdn) == 1)
        for (unsigned i = 0; i < mdn; i++)
            snprintf(cert + 2 * i, 3, "%02x", md[i]);
    size_t n = strlen(want) + strlen(sni ? sni : "") + strlen(cert) + 16;
    char *key = malloc(n);
    if (!key)
        return;
    snprintf(key, n, "%s %u %s %s", want, (unsigned)port, sni ? sni : "-", cert);
    if (!SSL_set_ex_data(ssl, ex_key_idx, key)) {
        free(key);
        return;
    }
    SSL_SESSION *s = tlssess_get(c, key);
    if (s && SSL_set_session(ssl, s) != 1)
        ERR_clear_error();
    SSL_SESSION_free(s);
}

SSL_CTX *tlsup_ctx_new(const tlsup_opts *o, char *err, size_t errsz)
{
    SSL_CTX *ctx = SSL_CTX_new(TLS_client_method());
    if (!ctx) {
        tls_errstr(err, errsz, "cannot create a TLS context");
        return NULL;
    }
    static const unsigned char alpn[] = "\x08http/1.1";
    if (SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION) != 1 ||
        SSL_CTX_set_alpn_protos(ctx, alpn, sizeof alpn - 1) != 0) {
        tls_errstr(err, errsz, "cannot configure the TLS context");
        goto fail;
    }
    SSL_CTX_set_options(ctx, SSL_OP_NO_COMPRESSION | SSL_OP_NO_RENEGOTIATION);
    SSL_CTX_set_mode(ctx, SSL_MODE_RELEASE_BUFFERS);
    if (cache_attach(ctx, o->session_cache_max) < 0) {
        snprintf(err, errsz, "out of memory");
        goto fail;
    }
    if (o->insecure) {
        SSL_CTX_set_verify(ctx, SSL_VERIFY_NONE, NULL);
        return ctx;
    }
    if (load_system_store(ctx) != 1)
        ERR_clear_error(); /* no system store: verification will say so per connection */
    if (o->extra_ca_file && SSL_CTX_load_verify_locations(ctx, o->extra_ca_file, NULL) != 1) {
        ERR_clear_error();
        snprintf(err, errsz, "cannot load trusted CA file %s: %s", o->extra_ca_file,
                 access(o->extra_ca_file, R_OK) < 0 ? strerror(errno) : "no PEM certificate in it");
        goto fail;
    }
    SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER, NULL);
    /* as browsers do: names match the SAN only, wildcards only whole labels */
    X509_VERIFY_PARAM_set_hostflags(SSL_CTX_get0_param(ctx),
                                    X509_CHECK_FLAG_NEVER_CHECK_SUBJECT | X509_CHECK_FLAG_NO_PARTIAL_WILDCARDS);
    return ctx;
fail:
    SSL_CTX_free(ctx);
    return NULL;
}

int tlsup_prepare(SSL *ssl, const char *host, uint16_t port, const char *sni, char *err, size_t errsz)
{
    char h[256], s[256];
    bool host_ip, sni_ip = false;
    if (!host || tls_host_norm(host, h, sizeof h, &host_ip) < 0) {
        snprintf(err, errsz, "invalid server host name \"%.80s\"", host ? host : "");
        return -1;
    }
    if (sni && tls_host_norm(sni, s, sizeof s, &sni_ip) < 0) {
        snprintf(err, errsz, "invalid SNI \"%.80s\"", sni);
        return -1;
    }
    /* SNI carries names only (RFC 6066 section 3) */
    const char *send = sni ? (sni_ip ? NULL : s) : (host_ip ? NULL : h);
    if (send && SSL_set_tlsext_host_name(ssl, send) != 1) {
        tls_errstr(err, errsz, "cannot set SNI");
        return -1;
    }
    /* the certificate must match the name we asked for, else the address */
    const char *want = send ? send : (sni_ip ? s : h);
    bool want_ip = send ? false : (sni_ip ? true : host_ip);
    if (tlsopts_use_client_cert(ssl, want, err, errsz) < 0)
        return -1;
    offer_session(ssl, want, port, send);
    if (!(SSL_get_verify_mode(ssl) & SSL_VERIFY_PEER))
        return 0;
    int ok = want_ip ? X509_VERIFY_PARAM_set1_ip_asc(SSL_get0_param(ssl), want) : SSL_set1_host(ssl, want);
    if (ok != 1) {
        tls_errstr(err, errsz, "cannot set the name to verify");
        return -1;
    }
    return 0;
}

const char *tlsup_verify_error(SSL *ssl)
{
    long r = SSL_get_verify_result(ssl);
    if (r == X509_V_OK || !(SSL_get_verify_mode(ssl) & SSL_VERIFY_PEER))
        return NULL;
    return X509_verify_cert_error_string(r);
}

void tlsup_handshake_error(SSL *ssl, char *err, size_t errsz)
{
    const char *v = ssl ? tlsup_verify_error(ssl) : NULL;
    unsigned long e = ERR_get_error();
    if (v) {
        snprintf(err, errsz, "certificate verify failed: %s", v);
    } else if (e) {
        const char *r = ERR_reason_error_string(e);
        if (r)
            snprintf(err, errsz, "%s", r);
        else
            ERR_error_string_n(e, err, errsz);
    } else {
        snprintf(err, errsz, "connection closed during the TLS handshake");
    }
    ERR_clear_error();
}
