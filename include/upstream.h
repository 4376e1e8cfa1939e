/* upstream.h — one request's trip to its server and back.
 *
 * An exchange (exch) takes a flow whose request is complete, connects to
 * where it must go (directly, through an upstream proxy's CONNECT, with TLS
 * verified as configured), sends the request as HTTP/1.1 — or as a stream
 * of an HTTP/2 connection when the option http2 is on and a TLS server
 * picks h2 in ALPN (never for an Upgrade request) — reads the response
 * into the flow, and keeps the server connection for the next exchange of
 * the same owner when HTTP allows.  Owners see the same callbacks either
 * way; f->server.alpn says which protocol was spoken.  Exchanges that
 * share an exch_pool (an HTTP/2 client's streams) also share its HTTP/2
 * server connections, one stream each.  The owner — an HTTP/1
 * client connection, an HTTP/2 stream, client replay — never sees the
 * server's sockets: it hears how the exchange went through exch_ops.
 *
 * Every callback may free the owner (and the exch embedded in it), or
 * close any other exchange: the upstream code touches that exch no more
 * after the call, and a connection shared with others stays held (freed
 * later if let go meanwhile) until it has gone through its other
 * exchanges. */
#ifndef MITMLUA_UPSTREAM_H
#define MITMLUA_UPSTREAM_H

#include <stdbool.h>
#include <stdint.h>
#include <event2/bufferevent.h>

#include "flow.h"
#include "opts.h"
#include "worker.h"

typedef struct upstream upstream;   /* one server connection */
typedef struct exch exch;
/* HTTP/2 server connections that a group of exchanges (the streams of one
 * HTTP/2 client connection) share: each exchange is a stream of its own. */
typedef struct exch_pool exch_pool;

typedef struct exch_ops {
    /* The response head is parsed (status, headers): the owner runs the
     * responseheaders hook here.  Not called for interim responses.  -1
     * (a hook ran past script_timeout, the flow's error says so) fails
     * the exchange with 502. */
    int (*head)(exch *x);
    /* An interim response (1xx other than 101); freed after the call. */
    void (*interim)(exch *x, const flow_response *r);
    /* The response is complete in the flow.  x->upgraded says whether the
     * server switched protocols (101 to an Upgrade). */
    void (*done)(exch *x);
    /* The exchange failed: the status to answer with (500, 502, 504) and
     * a one-line reason.  The server connection is gone. */
    void (*failed)(exch *x, int status, const char *msg);
    /* stream_large_bodies: the response body is too large to keep, so it
     * is passed on as it arrives and the flow keeps none of it.
     * stream_head: the head is final, send it now; stream_data: body bytes
     * (de-chunked) to send.  Neither may free the owner.  An owner that
     * leaves stream_head NULL always gets whole bodies. */
    void (*stream_head)(exch *x);
    void (*stream_data)(exch *x, const char *p, size_t n);
} exch_ops;

struct exch {
    worker *w;
    const exch_ops *ops;
    void *owner;
    flow *f;             /* the flow in flight; NULL between exchanges */
    upstream *up;        /* the server connection, kept between exchanges */
    const char *sni;     /* the client's SNI to send on (owner's string), or NULL */
    bool in_tunnel;      /* request came through a tunnel: in upstream mode,
                          * ask the upstream proxy for a tunnel too */
    bool retried;        /* this flow already retried a stale connection */
    bool upgraded;       /* set before done(): the server switched protocols */
    bool streaming;      /* this response's body is being streamed */
    bool head_failed;    /* ops->head refused the response */
    bool opening;        /* exch_open: a connection for a raw relay, no request */
    const char *open_host; /* ... to this target (the owner's string) */
    uint16_t open_port;
    bool open_tls;
    exch_pool *pool;     /* see exch_share; NULL: the connection is ours alone */

    /* upstream.c's own: the users of one connection, and this exchange's
     * stream on it when it is HTTP/2 */
    exch *up_next, *up_prev;
    int32_t sid;         /* -1: no stream in flight */
    bool h2_done;        /* the stream's response is complete */
    bool h2_closed;      /* it ended early, with h2_code */
    bool h2_got;         /* something of its response came */
    bool paused;         /* the owner cannot take body bytes now */
    uint32_t h2_code;
    size_t owed;         /* bytes taken while paused: window not yet reopened */
    char h2_fail[160];   /* why h2.c refused the response, or "" */
    const upstream *avoid; /* a retry: not on the connection that refused it
                            * (compared only: it may be gone) */
};

void exch_init(exch *x, worker *w, const exch_ops *ops, void *owner);
/* Send f's request (f->request complete; f->response NULL or a response
 * to fill).  Ends in exactly one call of ops->done or ops->failed, possibly
 * before exch_start returns. */
void exch_start(exch *x, flow *f);
/* A connection to host:port (TLS when tls, with x->sni) for a raw TCP
 * relay, opened as an exchange's would be: the server_connect hook, the
 * upstream proxy's tunnel in upstream mode, TLS verified as configured,
 * the server events.  Ends in exactly one call of ops->done (f->server
 * filled in; exch_relay_bev gives the connection) or ops->failed. */
void exch_open(exch *x, flow *f, const char *host, uint16_t port, bool tls);
/* After exch_open's done: the server connection's bufferevent, for the
 * owner to set its own callbacks on.  The exch still owns it: exch_close
 * frees it (and tells the scripts the server disconnected). */
struct bufferevent *exch_relay_bev(exch *x);
/* A relay over it ended: close the server connection once what was
 * relayed to it has been written (it lingers on the worker for that; over
 * TLS that includes the socket under the filter), else at once. */
void exch_close_after_write(exch *x);
/* Stop or restart reading the response (a streaming owner whose client
 * is slower than the server).  Over HTTP/2 the stream's flow-control
 * window stays shut instead, so the connection's other streams go on. */
void exch_pause(exch *x, bool pause);
/* Between exchanges: a kept server connection that has sent (or sends
 * from now on) bytes nobody asked for is dropped instead of reused. */
void exch_watch_idle(exch *x);
/* Close the server connection unless it may carry another exchange. */
void exch_release_unless_reusable(exch *x);
/* Close the server connection (on a shared HTTP/2 connection: reset this
 * exchange's stream and let go of the connection); the flow in flight (if
 * any) is left alone. */
void exch_close(exch *x);
/* Let x use (and add to) pool's HTTP/2 connections.  A pool is freed after
 * every exchange that uses it was closed. */
exch_pool *exch_pool_new(void);
void exch_pool_free(exch_pool *p);
void exch_share(exch *x, exch_pool *p);
/* After an upgrade: hand the server connection to the owner's relay.  The
 * owner frees the bufferevent; the exch no longer has a connection. */
struct bufferevent *exch_take_bev(exch *x);

/* ---- helpers for the owner's raw connections (passthrough tunnels) ---- */

/* The peer address of a connected socket into info->peer_host/peer_port,
 * and TCP_NODELAY on it. */
void upstream_record_peer(struct bufferevent *bev, flow_conn *info);
/* A one-line reason for a failed connection to host:port. */
const char *upstream_error_text(const opts *o, struct bufferevent *bev, const char *host, uint16_t port,
                                bool connected, bool tls, short what, char *buf, size_t n);
/* Connect bev to host:port with the worker's resolver, minding RFC 6761's
 * special names (.localhost is loopback, .invalid never resolves).
 * 0, or -1 with a reason in err. */
int upstream_connect(worker *w, struct bufferevent *bev, const char *host, uint16_t port, char *err,
                     size_t errsz);

#endif
