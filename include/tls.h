/* tls.h — the certificate authority, minted leaf certificates and the
 * client-facing TLS context of an intercepted connection (the upstream
 * side is tlsup.h).  The CA (with its leaf cache) is mutable state all
 * workers share, on purpose: it is internally locked.  SSL_CTXs are configured once and then
 * only used, which OpenSSL allows from any thread. */
#ifndef MITMLUA_TLS_H
#define MITMLUA_TLS_H

#include <stdbool.h>
#include <stddef.h>
#include <openssl/ssl.h>

#include "flow.h"

typedef struct tls_ca tls_ca;

/* ---- the CA ------------------------------------------------------------ */

/* Load <confdir>/mitmlua-ca.pem (PEM private key, then its certificate:
 * mitmproxy's mitmproxy-ca.pem works as is), or create a new CA (RSA-2048,
 * CN=O=mitmlua, 10 years) when there is none.  Creates confdir (0700, like
 * mkdir -p) and writes mitmlua-ca.pem 0600, mitmlua-ca-cert.pem/.cer (PEM)
 * and mitmlua-ca-cert.p12 (certificate only, empty password) 0644, each
 * atomically; certificate files missing next to an existing key file are
 * recreated.  Also generates the leaf key shared by every minted
 * certificate.  NULL with err naming the file on failure. */
tls_ca *tls_ca_load_or_create(const char *confdir, char *err, size_t errsz);
/* The proxy's start-up: tls_ca_load_or_create, and tls_check_ca_file of
 * trusted_ca unless it is NULL, done in a child process, which also makes
 * the leaf key and hands it over in the background.  Any use of OpenSSL's
 * decoders maps about 2 MiB of libcrypto into a process for good; this way
 * a proxy that has not yet seen a TLS connection has none of it, and a bad
 * CA is still an error at start-up.  The CA's objects are made from the
 * child's DER on first use.  Call before starting threads (it forks). */
tls_ca *tls_ca_open(const char *confdir, const char *trusted_ca, char *err, size_t errsz);
void tls_ca_free(tls_ca *ca);   /* after every SSL/SSL_CTX using it is gone */
/* The leaf key made by the next tls_ca_open or tls_ca_load_or_create:
 * ECDSA P-256 (key_type=ecdsa, the default) or RSA of rsa_bits (key_type=
 * rsa, key_size).  Call at start-up, before threads start. */
typedef enum tls_key_type { TLS_KEY_ECDSA, TLS_KEY_RSA } tls_key_type;
void tls_set_leaf_key(tls_key_type type, int rsa_bits);

X509 *tls_ca_cert(tls_ca *ca);           /* borrowed; NULL if it cannot be made */
EVP_PKEY *tls_ca_leaf_key(tls_ca *ca);   /* shared by every leaf; borrowed */
const char *tls_ca_confdir(const tls_ca *ca);
/* Path of <confdir>/mitmlua-ca-cert.pem (the file users install). */
const char *tls_ca_cert_path(const tls_ca *ca);

/* A leaf certificate for `host` (DNS name, IPv4/IPv6 literal, IPv6 may be
 * bracketed; case-insensitive), signed by the CA, from the cache or minted
 * now.  Returns a new reference: X509_free it.  NULL (err set) for a name
 * that cannot go into a certificate. */
X509 *tls_ca_leaf(tls_ca *ca, const char *host, char *err, size_t errsz);
/* The same, with the common name and DNS/IP subject alternative names of
 * `up` (a server's certificate: upstream_cert) added to the SAN; cached
 * per host and upstream certificate.  up NULL: tls_ca_leaf. */
X509 *tls_ca_leaf_up(tls_ca *ca, const char *host, X509 *up, char *err, size_t errsz);
/* Bound the leaf cache (default 1024 entries, minimum 1); evicts at once. */
void tls_ca_set_cache_max(tls_ca *ca, size_t max);
size_t tls_ca_cache_count(tls_ca *ca);

/* ---- client-facing (we are the server) --------------------------------- */

/* TLS 1.2+.  The certificate is picked per connection in the certificate
 * callback: a `certs` entry matching the host (tlsopts.h), else minted for
 * the client's SNI when it sent a usable one, else the fallback
 * host set with tls_set_fallback_host (the CONNECT target or the address the
 * client connected to), else "mitmlua".  The SSL_CTX borrows `ca`. */
SSL_CTX *tls_server_ctx_new(tls_ca *ca, char *err, size_t errsz);
/* upstream_cert, add_upstream_certs_to_client_chain: the certificates the
 * server sent (an eager connection's, its own first), whose names the
 * minted certificate carries too / which follow ours (tlsopts.h decides).
 * Takes references, dropped with the SSL.  Before the handshake.  0 or -1. */
int tls_set_upstream_chain(SSL *ssl, STACK_OF(X509) *chain);
/* Before freeing a client connection's SSL: its session stays in the
 * cache although no close_notify was sent.  OpenSSL keeps TLS 1.0's rule
 * and drops the session of a connection that ends without one, so a
 * client resuming by session ID would get a full handshake every other
 * time; TLS 1.1 and later allow the resumption. */
void tls_keep_session(SSL *ssl);
/* Copies `host` into the SSL (ex_data, freed with the SSL); NULL clears.
 * Call before the handshake.  0 or -1. */
int tls_set_fallback_host(SSL *ssl, const char *host);
/* The protocols this connection may negotiate, ALPN wire format
 * ("\x02h2\x08http/1.1"), in our order of preference; n == 0 means no ALPN
 * at all.  Copied into the SSL.  Without a call: "http/1.1" when the client
 * offers it, else no ALPN.  0, or -1 on malformed input. */
int tls_set_alpn_allowed(SSL *ssl, const unsigned char *wire, size_t n);

/* ---- shared with tlsup.c and tlsopts.c ---------------------------------- */

/* Every PEM certificate in the file (as the upstream context loads it):
 * 0, or -1 with err naming the file and what is wrong. */
int tls_check_ca_file(const char *path, char *err, size_t errsz);
/* Canonical form of a host for certificates and caches: brackets around
 * an IPv6 literal dropped, lowercased, a trailing dot dropped, names
 * limited to the characters a DNS name can carry.  0, or -1 when
 * unusable. */
int tls_host_norm(const char *in, char *out, size_t outsz, bool *is_ip);
/* err = "what: <OpenSSL's first queued error>"; clears the queue. */
void tls_errstr(char *err, size_t errsz, const char *what);

/* Fill TLS facts of a finished handshake into a flow's connection: tls,
 * tls_version, cipher, alpn, sni (the client's SNI on the client side, the
 * one we sent on the server side) and, when server_side, the peer
 * certificate's subject and issuer (RFC 2253, one line). */
void tls_fill_conn_info(SSL *ssl, flow_conn *c, bool server_side);

#endif
