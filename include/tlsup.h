/* tlsup.h — the upstream-facing TLS context (we are the client): which
 * servers we trust, the name each server's certificate must carry, and
 * resumption of earlier sessions with the same server (tlssess.h).  The
 * context is configured once and then only used, from any worker. */
#ifndef MITMLUA_TLSUP_H
#define MITMLUA_TLSUP_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <openssl/ssl.h>

typedef struct tlsup_opts {
    bool insecure;              /* -k: do not verify */
    const char *extra_ca_file;  /* ssl_verify_upstream_trusted_ca; NULL = none */
    size_t session_cache_max;   /* sessions kept for resumption; 0 = none */
} tlsup_opts;

/* TLS 1.2+, ALPN "http/1.1"; verifies against the system store plus
 * extra_ca_file unless insecure; keeps the sessions servers give us, at
 * most session_cache_max, for tlsup_prepare to offer again.  NULL with err
 * naming the file when extra_ca_file cannot be loaded. */
SSL_CTX *tlsup_ctx_new(const tlsup_opts *o, char *err, size_t errsz);
/* Per connection to host:port, before the handshake: SNI = `sni`, or
 * `host` when sni is NULL and host is a name (never an IP literal); the
 * certificate must match the SNI name if one is sent, else `host` (DNS
 * name or IP address; subject CN is never used, as in browsers); the
 * client certificate (client_certs).  Offers the session of an earlier
 * connection made with the same host, port, SNI, name to verify and client
 * certificate, if one is kept; a session the server resumes was verified
 * when it was made.  0 or -1. */
int tlsup_prepare(SSL *ssl, const char *host, uint16_t port, const char *sni, char *err, size_t errsz);
/* The number of sessions the context keeps (for tests). */
size_t tlsup_session_count(SSL_CTX *ctx);
/* Why certificate verification failed ("certificate has expired",
 * "hostname mismatch", ...), or NULL when it did not (or was off). */
const char *tlsup_verify_error(SSL *ssl);
/* One line for a failed handshake: the verification reason when there is
 * one, else OpenSSL's first queued error (which it clears). */
void tlsup_handshake_error(SSL *ssl, char *err, size_t errsz);

#endif
