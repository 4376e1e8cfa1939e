/* tls.h — the certificate authority, minted leaf certificates and the TLS
 * contexts for both sides of an intercepted connection.  The CA (with its
 * leaf cache) is the one piece of mutable state all workers share, on
 * purpose: it is internally locked.  SSL_CTXs are configured once and then
 * only used, which OpenSSL allows from any thread. */
#ifndef MITMLUA_TLS_H
#define MITMLUA_TLS_H

#include <stdbool.h>
#include <stddef.h>
#include <openssl/ssl.h>

#include "flow.h"

typedef struct tls_ca tls_ca;

/* Load <confdir>/mitmlua-ca.pem, or create the CA and all its files when
 * there is none: the directory 0700, mitmlua-ca.pem (key + certificate)
 * 0600, mitmlua-ca-cert.pem/.cer/.p12 0644.  NULL with err naming the file
 * on failure. */
tls_ca *tls_ca_load_or_create(const char *confdir, char *err, size_t errsz);
void tls_ca_free(tls_ca *ca);

/* A leaf certificate for `host` (DNS name or IP literal), signed by the CA,
 * from the cache or minted now.  Returns a new reference (X509_free it). */
X509 *tls_ca_leaf(tls_ca *ca, const char *host, char *err, size_t errsz);
EVP_PKEY *tls_ca_leaf_key(tls_ca *ca);   /* shared by every leaf; borrowed */
X509 *tls_ca_cert(tls_ca *ca);           /* borrowed */

/* Client-facing context: picks the certificate per connection from the
 * client's SNI, or the host set with tls_set_fallback_host (the CONNECT
 * target) when the client sends none. */
SSL_CTX *tls_server_ctx_new(tls_ca *ca, char *err, size_t errsz);
int tls_set_fallback_host(SSL *ssl, const char *host);

typedef struct tls_client_opts {
    bool insecure;              /* -k: do not verify */
    const char *extra_ca_file;  /* ssl_verify_upstream_trusted_ca */
} tls_client_opts;

/* Upstream-facing context: verifies against the system store (plus
 * extra_ca_file) unless insecure. */
SSL_CTX *tls_client_ctx_new(const tls_client_opts *o, char *err, size_t errsz);
/* Per connection: SNI (never for IP literals; `sni` wins when given) and
 * the name or address the certificate must match. */
int tls_client_prepare(SSL *ssl, const char *host, const char *sni, char *err, size_t errsz);
/* Why verification failed, or NULL when it did not. */
const char *tls_verify_error(SSL *ssl);

/* Fill TLS facts of a finished handshake into a flow's connection. */
void tls_fill_conn_info(SSL *ssl, flow_conn *c, bool server_side);

#endif
