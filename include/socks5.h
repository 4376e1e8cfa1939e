/* socks5.h — the server side of a SOCKS5 handshake (RFC 1928): the method
 * greeting (no authentication, or username/password of RFC 1929), the CONNECT request with an IPv4,
 * IPv6 or domain-name address, and the replies.  Pure byte parsing: no
 * sockets, so it can be unit-tested and fuzzed on its own. */
#ifndef MITMLUA_SOCKS5_H
#define MITMLUA_SOCKS5_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* Reply codes (RFC 1928 §6). */
enum {
    SOCKS5_REP_OK = 0x00,
    SOCKS5_REP_FAILURE = 0x01,
    SOCKS5_REP_NET_UNREACHABLE = 0x03,
    SOCKS5_REP_HOST_UNREACHABLE = 0x04,
    SOCKS5_REP_CONN_REFUSED = 0x05,
    SOCKS5_REP_TTL_EXPIRED = 0x06,
    SOCKS5_REP_CMD_UNSUPPORTED = 0x07,
    SOCKS5_REP_ATYP_UNSUPPORTED = 0x08,
};

#define SOCKS5_NO_ACCEPTABLE_METHODS 0xFF

/* Where the client wants to go.  host is an IP literal (no brackets) or a
 * domain name of up to 255 bytes, NUL-terminated. */
typedef struct socks5_target {
    char host[256];
    uint16_t port;
    uint8_t atyp;   /* 1 IPv4, 3 domain, 4 IPv6 */
} socks5_target;

/* Each parser returns the number of bytes it consumed (> 0) when the
 * message is complete and acceptable, 0 when more bytes are needed, and -1
 * when the message is refused: then why holds one line saying why and *reply
 * holds the code to send (-1: close without a reply, as for a wrong
 * version, where the peer does not speak SOCKS5 at all). */

/* Authentication methods (RFC 1928 §3). */
#define SOCKS5_METHOD_NONE 0x00
#define SOCKS5_METHOD_USERPASS 0x02

/* The method greeting: VER NMETHODS METHODS...  With want_userpass only
 * username/password (RFC 1929) is accepted, else only "no authentication";
 * on success *reply is the chosen method and the answer is 05 <method>. */
int socks5_parse_greeting(const uint8_t *p, size_t n, bool want_userpass, int *reply, char *why,
                          size_t whysz);

/* The username/password request (RFC 1929): VER=1 ULEN UNAME PLEN PASSWD.
 * On success user/pass point into p (not NUL-terminated).  The answer is
 * 01 00 for accepted credentials, 01 01 (then close) for refused ones. */
int socks5_parse_userpass(const uint8_t *p, size_t n, const char **user, size_t *ulen, const char **pass,
                          size_t *plen, char *why, size_t whysz);

/* The request: VER CMD RSV ATYP DST.ADDR DST.PORT.  Only CONNECT. */
int socks5_parse_request(const uint8_t *p, size_t n, socks5_target *t, int *reply, char *why, size_t whysz);

/* A reply to the request: VER REP RSV ATYP=1 0.0.0.0:0 (10 bytes).  Clients
 * do not use BND.ADDR for CONNECT, and we would rather not reveal ours. */
void socks5_reply(uint8_t rep, uint8_t out[10]);

/* Map a connect() errno to the reply code that tells the client most. */
uint8_t socks5_rep_for_errno(int err);

/* A short human name for a reply code, for logs. */
const char *socks5_rep_name(int rep);

#endif
