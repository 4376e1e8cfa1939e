/* client_int.h — a client connection, as the three files that run it share
 * it: client.c (its lifetime and what every protocol on it needs), tunnel.c
 * (CONNECT, SOCKS5, transparent and reverse mode's TLS-or-plain start,
 * passthrough and raw relays) and client_h1.c (HTTP/1 on it, and the
 * dispatch of its events).  They form layers: client.c knows neither of the
 * others, tunnel.c reaches HTTP/1 only through the connection's upcalls.
 * Not for other modules: client.h is the interface.
 *
 * Ownership: a cconn owns its flow (in run), its parser and its exchange
 * with the upstream (upstream.c), which owns the server connection.
 * Functions that may free the cconn say so in their name (…_or_close) and
 * are always the last thing their caller does. */
#ifndef MITMLUA_CLIENT_INT_H
#define MITMLUA_CLIENT_INT_H

#include <stdbool.h>
#include <stdint.h>
#include <event2/bufferevent.h>
#include <event2/event.h>

#include "bevio.h"
#include "client.h"
#include "client_h2.h"
#include "dial.h"
#include "flowrun.h"
#include "tcprelay.h"
#include "h1.h"
#include "upstream.h"
#include "worker.h"
#include "wsrelay.h"

#define CLIENT_BEV_OPTS (BEV_OPT_DEFER_CALLBACKS)
/* What a plain HTTP/1 client may have queued in our input before we stop
 * reading from it (requests pipelined behind the one in flight); the
 * request parser consumes input as it comes otherwise. */
#define CLIENT_INPUT_MAX (256 * 1024)

enum cstate {
    C_READ_REQ,        /* reading (or waiting for) a request */
    C_WAIT_UPSTREAM,   /* in the pipeline or upstream; waiting for the response */
    C_WRITING_RESP,    /* response queued; waiting for it to drain */
    C_TUNNEL_SETUP,    /* "200 Connection established" draining */
    C_TUNNEL_PEEK,     /* waiting for the first byte inside the tunnel */
    C_TLS_HELLO,       /* reading the ClientHello for the tls_clienthello event */
    C_TLS_HANDSHAKE,   /* client-side TLS handshake in progress */
    C_RELAY,           /* protocol switched: bytes copied both ways */
    C_PASSTHROUGH_CONNECT, /* ignore_hosts: connecting to the target, then C_RELAY */
    C_PASSTHROUGH_PROXY,   /* ... in upstream mode: waiting for the upstream proxy's 200 */
    C_SOCKS,           /* --mode socks5: reading the greeting and the request */
    C_DIAL,            /* connection_strategy=eager: trying the tunnel's target */
    C_CLOSING,         /* last bytes draining, then free */
    C_LINGER,          /* written and shut down; discarding input until EOF */
    C_H2,              /* HTTP/2: client_h2.c has the connection's events */
    C_TCP_DETECT,      /* rawtcp: reading the tunnel's first bytes: HTTP or not? */
    C_TCP_OPEN,        /* a raw TCP flow: its server connection is opening */
    C_TCP,             /* ... and relayed (tcprelay.c has both sides' events) */
};

struct cconn;

/* How the lower layers reach the protocol that runs the connection. */
typedef struct client_upcalls {
    bufferevent_data_cb read, write;   /* the client bufferevent's callbacks */
    bufferevent_event_cb event;
    void (*serve_or_close)(struct cconn *c);  /* read requests now (a tunnel opened) */
} client_upcalls;

typedef struct cconn {
    worker *w;
    const client_upcalls *up;
    struct cconn *prev, *next;
    evutil_socket_t fd;
    struct bufferevent *bev;
    bevio wio;              /* plain HTTP/1: bev's output written directly */
    struct event *peek_ev;
    h1_parser *parser;
    flow_conn info;         /* client side, copied into each flow */
    bool in_tunnel;
    bool tunnel_tls;
    enum tunnel_kind { TUNNEL_CONNECT, TUNNEL_SOCKS5, TUNNEL_TRANSPARENT } tunnel_kind;
    enum socks_step { SOCKS_GREETING, SOCKS_USERPASS, SOCKS_REQUEST } socks_step;
    dial *dial;             /* eager: the target being tried, or NULL */
    struct stack_st_X509 *upstream_chain; /* eager + upstream_cert: the server's certificates, or NULL */
    bool upstream_probed;   /* ... and the handshake that looks for it is done */
    char *tunnel_host;
    uint16_t tunnel_port;
    flowrun run;            /* the flow in flight (run.f) and its trip through the pipeline */
    enum cstate state;
    bool keep_alive;
    bool upgrade_after_write;
    bool linger;            /* close gently: the client may still be sending */
    bool streaming;         /* the response body is being passed on as it comes */
    bool body_lent;         /* the response body's memory belongs to bev's output */
    bool stream_chunked;    /* ... re-chunked for the client */
    bool stream_paused;     /* ... and the server is paused: the client is slow */
    int target_status;      /* why resolve_target refused the request, or 0 */
    exch x;                 /* the request's trip upstream; keeps the server connection */
    struct bufferevent *peer; /* the server side of a relay (passthrough, after a 101) */
    bool admitted;          /* counted against max_connections */
    bool announced;         /* client_connected ran: client_disconnected will */
    bool tunnel_replied;    /* the client was told its tunnel is open */
    bool logged_connect;    /* -v printed "client connect": say when it goes */
    bool authed;            /* proxyauth: a CONNECT passed; its tunnel is ours */
    bool auth_failed;       /* proxyauth: this request is answered 407/401 */
    char *auth_cache;       /* proxyauth: credentials that passed last */
    double head_since;      /* when the current request's first byte came */
    wsrelay *ws;            /* after a WebSocket 101: owns the server side */
    client_h2 *h2;          /* in C_H2 */
    tcprelay *tcp;          /* in C_TCP */
    bool tcp_forced;        /* tcp_hosts matched: a TCP flow whatever is sent */
} cconn;

/* ---- client.c ---- */

/* A new connection on w's list (fd ours, counted against max_connections
 * by the caller); NULL on ENOMEM (fd closed). */
cconn *client_new(worker *w, evutil_socket_t fd, const client_upcalls *up);
/* Free everything; a flow in flight ends (a failure: "client disconnected"). */
void client_free(cconn *c);
/* Bytes queued for the client, TLS records under a filter included. */
size_t client_unsent(cconn *c);
/* Close once everything queued for the client has been written. */
void client_close_after_write(cconn *c);
/* After an error answer: shut down our side, drain the client's input for
 * a while, then free (nginx's lingering close). */
void client_linger_or_close(cconn *c);
/* An answer of the proxy's own: plain text, one line. */
void client_send_simple(cconn *c, int status, const char *msg, bool close);
/* The exchange failed: answer status/msg, fail the flow, close after. */
void client_fail_or_close(cconn *c, int status, const char *msg);
/* idle_timeout or read_timeout on the client's reads (0: none). */
void client_set_timeout(cconn *c, int seconds);
/* No longer plain HTTP/1 here: libevent writes the output again. */
void client_plain_off(cconn *c);
/* The socket under a TLS client connection has written everything. */
void client_wire_drained(struct bufferevent *wire, void *arg);
/* The client speaks HTTP/2: client_h2.c runs the connection from here on. */
void client_start_h2_or_close(cconn *c);
/* A connection or TLS event of this client for the scripts (ev may be
 * NULL: nothing but the client to tell). */
void client_event(cconn *c, enum script_hook h, script_conn_event *ev);

/* ---- tunnel.c ---- */

/* A new client in socks5, transparent or reverse mode (regular and
 * upstream clients start with an HTTP request). */
void tunnel_accept_or_close(cconn *c);
/* The connect hook let a CONNECT through: open its tunnel. */
void tunnel_connect_or_close(cconn *c);
/* --mode socks5: input from the client before its tunnel opened. */
void tunnel_socks_read_or_close(cconn *c);
/* The 200 to CONNECT has been written: find out what the client speaks. */
void tunnel_start_or_close(cconn *c);
/* C_TLS_HELLO: more of the ClientHello arrived. */
void tunnel_hello_read_or_close(cconn *c);
/* The client finished or failed its TLS handshake (bufferevent event). */
void tunnel_tls_event_or_close(cconn *c, short what);
/* Copy bytes both ways between the client and c->peer from now on. */
void tunnel_start_relay(cconn *c);
/* C_TCP_DETECT: more of the tunnel's first bytes arrived. */
void tunnel_detect_read_or_close(cconn *c);
/* C_TCP_DETECT: the client went quiet (a server-first protocol), or away. */
void tunnel_detect_event_or_close(cconn *c, short what);

#endif
