/* h2proxy.h — an HTTP/2 client connection on a worker.  Each stream is one
 * flow with its own exchange (upstream.c): hooks run on it as on an
 * HTTP/1 flow, the request goes upstream as HTTP/1.1, the response comes
 * back as a stream of the client's connection.  proxy.c keeps owning the
 * client connection; it hands us its events once ALPN chose h2 (or the
 * client opened with the h2c prior-knowledge preface). */
#ifndef MITMLUA_H2PROXY_H
#define MITMLUA_H2PROXY_H

#include <stdbool.h>
#include <stdint.h>
#include <event2/bufferevent.h>

#include "flow.h"
#include "worker.h"

typedef struct h2proxy h2proxy;

typedef struct h2proxy_origin {
    const flow_conn *client;    /* copied into every flow */
    bool in_tunnel;             /* came through CONNECT: requests go to host:port */
    bool tls;
    const char *host;
    uint16_t port;
} h2proxy_origin;

/* Take over `bev` (still owned by the caller).  `close` is how we ask the
 * owner to free the connection (and us) from an upstream event; it is
 * always the last thing we do.  NULL on ENOMEM. */
h2proxy *h2proxy_new(worker *w, struct bufferevent *bev, const h2proxy_origin *o,
                     void (*close)(void *owner), void *owner);
/* Input arrived / output drained.  0, or -1 when the connection is over
 * (the owner frees it). */
int h2proxy_on_read(h2proxy *p);
int h2proxy_on_write(h2proxy *p);
/* No stream in flight (the worker may close it when stopping). */
bool h2proxy_idle(const h2proxy *p);
/* Fails the flows still in flight ("client disconnected"). */
void h2proxy_free(h2proxy *p);

#endif
