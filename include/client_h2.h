/* client_h2.h — an HTTP/2 client connection on a worker.  Each stream is one
 * flow that goes through the pipeline (flowrun.h) as an HTTP/1 flow does,
 * with its own exchange upstream (upstream.c); the response comes back as a
 * stream of the client's connection.  client.c keeps owning the client
 * connection; it hands us its events once ALPN chose h2 (or the client
 * opened with the h2c prior-knowledge preface). */
#ifndef MITMLUA_CLIENT_H2_H
#define MITMLUA_CLIENT_H2_H

#include <stdbool.h>
#include <stdint.h>
#include <event2/bufferevent.h>

#include "flow.h"
#include "worker.h"

typedef struct client_h2 client_h2;

typedef struct client_h2_origin {
    const flow_conn *client;    /* copied into every flow */
    bool in_tunnel;             /* came through CONNECT: requests go to host:port */
    bool tls;
    const char *host;
    uint16_t port;
} client_h2_origin;

/* Take over `bev` (still owned by the caller).  `close` is how we ask the
 * owner to free the connection (and us) from an upstream event; it is
 * always the last thing we do.  NULL on ENOMEM. */
client_h2 *client_h2_new(worker *w, struct bufferevent *bev, const client_h2_origin *o,
                     void (*close)(void *owner), void *owner);
/* Input arrived / output drained.  0, or -1 when the connection is over
 * (the owner frees it). */
int client_h2_on_read(client_h2 *p);
int client_h2_on_write(client_h2 *p);
/* No stream in flight (the worker may close it when stopping). */
bool client_h2_idle(const client_h2 *p);
/* Fails the flows still in flight ("client disconnected"). */
void client_h2_free(client_h2 *p);

#endif
