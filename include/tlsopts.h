/* tlsopts.h — mitmdump's TLS options applied to our two TLS contexts:
 * TLS versions and ciphers per side, our own certificates for chosen
 * domains (certs), client certificates towards servers (client_certs), an
 * extra directory of trusted CAs (ssl_verify_upstream_trusted_confdir).
 * Option values are checked once at start-up (tlsopts_check); the
 * contexts are configured once when they are made; per connection only
 * lookups happen, read-only, from any worker. */
#ifndef MITMLUA_TLSOPTS_H
#define MITMLUA_TLSOPTS_H

#include <stdbool.h>
#include <stddef.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>

#include "opts.h"

/* mitmproxy's version names: UNBOUNDED (0), SSL3, TLS1, TLS1_1, TLS1_2,
 * TLS1_3, as OpenSSL's version numbers.  0, or -1 for any other name. */
int tlsopts_parse_version(const char *name, int *version);
/* The mitmproxy name of an OpenSSL version number ("UNBOUNDED" for 0). */
const char *tlsopts_version_name(int version);
/* A `certs` entry "[domain=]path": the domain ("*" when none is given)
 * and the path, both pointing into spec.  0, or -1 when empty. */
int tlsopts_split_cert_spec(const char *spec, const char **domain, size_t *domain_len, const char **path);
/* Does `host` pick a `certs` entry registered under `name`?  mitmproxy's
 * rule: the name itself, "*.<any parent domain>" (so *.com covers
 * a.b.com), or "*" for every host.  Case-insensitive. */
bool tlsopts_name_matches(const char *name, const char *host);

/* Every TLS option's value (versions, min <= max, ciphers that OpenSSL
 * knows, key_size, the files of certs and client_certs, the trusted
 * directory): 0, or -1 with one line naming the option and the value. */
int tlsopts_check(const opts *o, char *err, size_t errsz);
/* Log the one-line warnings the options deserve (TLS below 1.2 allowed,
 * a weak key_size, upstream_cert's limits).  Once, at start-up. */
void tlsopts_warn(const opts *o);

/* Configure the client-facing context (versions, ciphers_client, certs,
 * security level) and the upstream-facing one (versions, ciphers_server,
 * client_certs, ssl_verify_upstream_trusted_confdir).  0, or -1 with err. */
int tlsopts_apply_server(SSL_CTX *ctx, const opts *o, char *err, size_t errsz);
int tlsopts_apply_client(SSL_CTX *ctx, const opts *o, char *err, size_t errsz);

/* Client-facing, from the certificate callback: when a `certs` entry
 * matches host, install its certificate, key and chain on ssl and return
 * 1; 0 when none matches (mint one), -1 on failure. */
int tlsopts_use_own_cert(SSL *ssl, const char *host);
/* Upstream-facing, before the handshake: the client certificate for
 * `name` (the SNI we send, else the server's address): client_certs' file,
 * or <dir>/<name>.pem when it is a directory and that file exists.
 * 0 (also when there is none), -1 with err when it cannot be loaded. */
int tlsopts_use_client_cert(SSL *ssl, const char *name, char *err, size_t errsz);
/* From the certificate callback, with the certificates an eager
 * connection's server sent (NULL: none): the one whose names go into the
 * minted certificate, when upstream_cert is on, else NULL; and
 * add_upstream_certs_to_client_chain: append them all after our chain
 * (mitmdump sends the server's own certificate too).  0 or -1. */
X509 *tlsopts_names_from(SSL *ssl, STACK_OF(X509) *chain);
int tlsopts_add_upstream_chain(SSL *ssl, STACK_OF(X509) *chain);
/* upstream_cert: append the common name (when it looks like a DNS name)
 * and the DNS and IP subject alternative names of `up` to gens.  0 or -1. */
int tlsopts_add_upstream_names(GENERAL_NAMES *gens, X509 *up);
/* After a failed handshake whose reason was about protocol versions:
 * " (tls_version_server_min/max allow TLS1_3 to TLS1_3)" for the side ssl
 * is on; "" otherwise. */
void tlsopts_version_hint(SSL *ssl, unsigned long reason, char *out, size_t outsz);

#endif
