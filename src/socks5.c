/* socks5.c — see socks5.h.  Every length is checked before the byte it
 * covers is read; a domain name must be printable and free of NUL so that
 * it can be used as a C string and a TLS server name without surprises. */
#include "socks5.h"

#include <arpa/inet.h>
#include <errno.h>
#include <stdio.h>
#include <string.h>

#define SOCKS5_VERSION 0x05

int socks5_parse_greeting(const uint8_t *p, size_t n, bool want_userpass, int *reply, char *why,
                          size_t whysz)
{
    *reply = -1;
    if (n < 1)
        return 0;
    if (p[0] != SOCKS5_VERSION) {
        /* "GET " or "CONNECT": an HTTP client pointed at the SOCKS port */
        snprintf(why, whysz, "invalid SOCKS version 0x%02x (%s)", p[0],
                 p[0] >= 'A' && p[0] <= 'Z' ? "probably an HTTP request; this port speaks SOCKS5" : "expected 0x05");
        return -1;
    }
    if (n < 2)
        return 0;
    size_t nm = p[1];
    if (n < 2 + nm)
        return 0;
    uint8_t method = want_userpass ? SOCKS5_METHOD_USERPASS : SOCKS5_METHOD_NONE;
    if (!memchr(p + 2, method, nm)) {
        *reply = SOCKS5_NO_ACCEPTABLE_METHODS;
        snprintf(why, whysz, want_userpass ? "client does not offer SOCKS5 username/password authentication"
                                           : "client does not offer SOCKS5 without authentication");
        return -1;
    }
    *reply = method;
    return (int)(2 + nm);
}

int socks5_parse_userpass(const uint8_t *p, size_t n, const char **user, size_t *ulen, const char **pass,
                          size_t *plen, char *why, size_t whysz)
{
    if (n < 1)
        return 0;
    if (p[0] != 0x01) {
        snprintf(why, whysz, "invalid SOCKS5 username/password version 0x%02x (expected 0x01)", p[0]);
        return -1;
    }
    if (n < 2)
        return 0;
    size_t ul = p[1];
    if (n < 2 + ul + 1)
        return 0;
    size_t pl = p[2 + ul];
    if (n < 3 + ul + pl)
        return 0;
    *user = (const char *)p + 2;
    *ulen = ul;
    *pass = (const char *)p + 3 + ul;
    *plen = pl;
    return (int)(3 + ul + pl);
}

int socks5_parse_request(const uint8_t *p, size_t n, socks5_target *t, int *reply, char *why, size_t whysz)
{
    *reply = -1;
    if (n < 1)
        return 0;
    if (p[0] != SOCKS5_VERSION) {
        snprintf(why, whysz, "invalid SOCKS version 0x%02x in the request (expected 0x05)", p[0]);
        *reply = SOCKS5_REP_FAILURE;
        return -1;
    }
    if (n < 2)
        return 0;
    if (p[1] != 0x01) { /* BIND (2) and UDP ASSOCIATE (3) are not offered */
        snprintf(why, whysz, "unsupported SOCKS5 command 0x%02x (only CONNECT)", p[1]);
        *reply = SOCKS5_REP_CMD_UNSUPPORTED;
        return -1;
    }
    if (n < 4)
        return 0;
    if (p[2] != 0x00) {
        snprintf(why, whysz, "invalid SOCKS5 request: reserved byte is 0x%02x, not 0", p[2]);
        *reply = SOCKS5_REP_FAILURE;
        return -1;
    }
    size_t need;
    switch (p[3]) {
    case 0x01: need = 4 + 4 + 2; break;
    case 0x04: need = 4 + 16 + 2; break;
    case 0x03:
        if (n < 5)
            return 0;
        need = 4 + 1 + (size_t)p[4] + 2;
        break;
    default:
        snprintf(why, whysz, "unsupported SOCKS5 address type 0x%02x", p[3]);
        *reply = SOCKS5_REP_ATYP_UNSUPPORTED;
        return -1;
    }
    if (n < need)
        return 0;
    memset(t, 0, sizeof *t);
    t->atyp = p[3];
    if (p[3] == 0x01) {
        inet_ntop(AF_INET, p + 4, t->host, sizeof t->host);
    } else if (p[3] == 0x04) {
        inet_ntop(AF_INET6, p + 4, t->host, sizeof t->host);
    } else {
        size_t len = p[4];
        if (len == 0) {
            snprintf(why, whysz, "invalid SOCKS5 request: empty domain name");
            *reply = SOCKS5_REP_HOST_UNREACHABLE;
            return -1;
        }
        for (size_t i = 0; i < len; i++) {
            uint8_t ch = p[5 + i];
            if (ch <= 0x20 || ch >= 0x7f || ch == '/' || ch == '@') {
                snprintf(why, whysz, "invalid SOCKS5 request: bad byte in the domain name");
                *reply = SOCKS5_REP_HOST_UNREACHABLE;
                return -1;
            }
            /* names are case-insensitive; the rest of the proxy keeps them lower-case */
            t->host[i] = (char)(ch >= 'A' && ch <= 'Z' ? ch + 32 : ch);
        }
        t->host[len] = '\0';
    }
    t->port = (uint16_t)(p[need - 2] << 8 | p[need - 1]);
    if (t->port == 0) {
        snprintf(why, whysz, "invalid SOCKS5 request: port 0");
        *reply = SOCKS5_REP_HOST_UNREACHABLE;
        return -1;
    }
    *reply = SOCKS5_REP_OK;
    return (int)need;
}

void socks5_reply(uint8_t rep, uint8_t out[10])
{
    static const uint8_t tmpl[10] = {SOCKS5_VERSION, 0, 0, 0x01, 0, 0, 0, 0, 0, 0};
    memcpy(out, tmpl, sizeof tmpl);
    out[1] = rep;
}

uint8_t socks5_rep_for_errno(int err)
{
    switch (err) {
    case ECONNREFUSED: return SOCKS5_REP_CONN_REFUSED;
    case ENETUNREACH: return SOCKS5_REP_NET_UNREACHABLE;
    case ETIMEDOUT: return SOCKS5_REP_TTL_EXPIRED;
    case EHOSTUNREACH:
    default: return SOCKS5_REP_HOST_UNREACHABLE;
    }
}

const char *socks5_rep_name(int rep)
{
    switch (rep) {
    case SOCKS5_REP_OK: return "succeeded";
    case SOCKS5_REP_FAILURE: return "general failure";
    case SOCKS5_REP_NET_UNREACHABLE: return "network unreachable";
    case SOCKS5_REP_HOST_UNREACHABLE: return "host unreachable";
    case SOCKS5_REP_CONN_REFUSED: return "connection refused";
    case SOCKS5_REP_TTL_EXPIRED: return "TTL expired";
    case SOCKS5_REP_CMD_UNSUPPORTED: return "command not supported";
    case SOCKS5_REP_ATYP_UNSUPPORTED: return "address type not supported";
    case SOCKS5_NO_ACCEPTABLE_METHODS: return "no acceptable methods";
    default: return "unknown";
    }
}
