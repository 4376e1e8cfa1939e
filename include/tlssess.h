/* tlssess.h — a bounded cache of TLS client sessions, so that the second
 * connection to a server resumes instead of paying a full handshake (a
 * signature check of its chain, a key exchange, a round trip in TLS 1.2).
 *
 * Keys are opaque strings; tlsup.c builds them from everything that must
 * match for a session to be reused safely (host, port, SNI, the name
 * verified, the client certificate).  One cache belongs to one upstream
 * SSL_CTX, so sessions never cross verification settings.  Workers share
 * it: every call takes its lock. */
#ifndef MITMLUA_TLSSESS_H
#define MITMLUA_TLSSESS_H

#include <stddef.h>
#include <openssl/ssl.h>

typedef struct tlssess tlssess;

/* A cache holding at most `max` sessions (at least 4); NULL when out of
 * memory. */
tlssess *tlssess_new(size_t max);
void tlssess_free(tlssess *c);   /* NULL is fine */
/* Keep a copy of `s` under `key`, replacing what the
 * key held; when the cache is full, the least recently used session of
 * the key's set goes.  0, or -1 (nothing kept) when out of memory. */
int tlssess_put(tlssess *c, const char *key, SSL_SESSION *s);
/* A copy of the session kept under `key`, if that is still resumable
 * (SSL_SESSION_free it), or NULL. */
SSL_SESSION *tlssess_get(tlssess *c, const char *key);
/* Forget what `key` held (a session the server refused to resume). */
void tlssess_drop(tlssess *c, const char *key);
size_t tlssess_count(tlssess *c);

#endif
