/* tlshello.h — reading a TLS ClientHello (RFC 8446 §4.1.2) from the first
 * record a client sends: the server name and the ALPN protocols it offers,
 * so that the tls_clienthello event can decide before any TLS is spoken.
 * A pure codec: bytes in, fields out. */
#ifndef MITMLUA_TLSHELLO_H
#define MITMLUA_TLSHELLO_H

#include <stddef.h>
#include <stdint.h>

#define TLSHELLO_MAX_ALPN 16

typedef struct tlshello {
    char sni[256];                       /* "" when none */
    char alpn[TLSHELLO_MAX_ALPN][64];    /* the first TLSHELLO_MAX_ALPN offered */
    size_t nalpn;
} tlshello;

/* How many bytes the first record needs in all (header included), from its
 * first 5 bytes: 0 when n < 5, -1 when it is not a handshake record. */
long tlshello_record_size(const uint8_t *p, size_t n);
/* Parse the ClientHello in the record at p (n bytes, the whole record).
 * 0, or -1 with a one-line reason when it is not one. */
int tlshello_parse(const uint8_t *p, size_t n, tlshello *out, char *err, size_t errsz);

#endif
