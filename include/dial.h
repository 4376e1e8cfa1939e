/* dial.h — connection_strategy=eager: find out whether a tunnel's target
 * can be reached before the client is told the tunnel is open (HTTP 200 to
 * CONNECT, SOCKS5 success).  The test connection is closed once it has
 * succeeded; the tunnel's requests open their own, as in lazy mode.  Also
 * the small helpers of connections to servers (connect_addr, Basic auth). */
#ifndef MITMLUA_DIAL_H
#define MITMLUA_DIAL_H

#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>

struct bufferevent;
struct event_base;
struct evdns_base;
struct ssl_st;
struct stack_st_X509;
typedef struct dial dial;

/* Called once: err 0 when the target accepted a TCP connection, else an
 * errno-style code (ETIMEDOUT, ECONNREFUSED, EHOSTUNREACH for DNS…) with
 * msg a line saying what failed.  The dial is freed after the callback. */
typedef void (*dial_cb)(void *arg, int err, const char *msg);

/* source: connect_addr, the local address to connect from, or NULL.
 * NULL when out of memory.  A name ending in .localhost is loopback and
 * one ending in .invalid never resolves (RFC 6761), without asking DNS. */
dial *dial_start(struct event_base *base, struct evdns_base *dns, const char *host, uint16_t port,
                 const char *source, int timeout_s, dial_cb cb, void *arg);
/* upstream_cert: once connected, also do a TLS handshake with ssl (the
 * dial owns it from now on) and, when the server's certificate verified,
 * store the certificates it sent in *peer (the caller frees them) before the
 * callback, which reports success once the TCP connection succeeded,
 * whatever the handshake did.  The connection then closes.  Call right
 * after dial_start. */
void dial_want_tls(dial *d, struct ssl_st *ssl, struct stack_st_X509 **peer);
/* Abandon a dial in progress (its callback is not called). */
void dial_cancel(dial *d);

/* connect_addr: the local IP address (IPv4, IPv6 with or without
 * brackets) connections to servers are made from.  0 with *ss and *len
 * (port 0), or -1 when it is not one. */
int dial_source_parse(const char *addr, struct sockaddr_storage *ss, socklen_t *len);
/* Give bev (not yet connected) a socket bound to that address, and set
 * *family to its family, for the name to be resolved in.  -1 with err. */
int dial_bind_source(struct bufferevent *bev, const char *addr, int *family, char *err, size_t errsz);

/* "Basic base64(user:pass)" for Proxy-Authorization / Authorization;
 * caller frees; NULL when out of memory. */
char *dial_basic_auth(const char *userpass);

#endif
