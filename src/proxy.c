/* proxy.c — one flow's path through the proxy, on one worker's event loop.
 *
 *   client bytes ─h1 parser─▶ flow.request ─hooks─▶ upstream (or a mock,
 *   or mitm.it) ─h1 parser─▶ flow.response ─hooks─▶ client bytes
 *
 * A client connection handles one exchange at a time: while a request is
 * with the upstream, reading from the client is paused, so pipelined
 * requests wait in the input buffer and are answered in order.  Bodies are
 * kept whole (mitmdump's default) up to body_size_limit, so hooks always see
 * complete messages.
 *
 * Ownership: a cconn owns its flow, its parser and its exchange with the
 * upstream (upstream.c), which owns the server connection.
 * Functions that may free the cconn say so in their name (…_or_close) and
 * are always the last thing their caller does. */
#include "proxy.h"

#include <arpa/inet.h>
#include <ctype.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <unistd.h>

#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/bufferevent_ssl.h>
#include <event2/dns.h>
#include <event2/listener.h>
#include <event2/util.h>
#include <openssl/err.h>

#include "addons.h"
#include "bevio.h"
#include "block.h"
#include "dial.h"
#include "dump.h"
#include "filter.h"
#include "guard.h"
#include "h1.h"
#include "h2.h"
#include "h2proxy.h"
#include "hostmatch.h"
#include "har.h"
#include "log.h"
#include "onboard.h"
#include "origdst.h"
#include "printer.h"
#include "proxyauth.h"
#include "script.h"
#include "socks5.h"
#include "sreplay.h"
#include "tls.h"
#include "upstream.h"
#include "worker.h"
#include "ws.h"
#include "wsrelay.h"

#define BEV_OPTS (BEV_OPT_DEFER_CALLBACKS)
/* What a plain HTTP/1 client may have queued in our input before we stop
 * reading from it (requests pipelined behind the one in flight); the
 * request parser consumes input as it comes otherwise. */
#define CLIENT_INPUT_MAX (256 * 1024)
/* Response bodies from this size on are handed to the client's output by
 * reference, not copied (smaller ones cost less to copy than to track). */
#define LEND_MIN (16 * 1024)

enum cstate {
    C_READ_REQ,        /* reading (or waiting for) a request */
    C_WAIT_UPSTREAM,   /* request sent or being sent; waiting for the response */
    C_WRITING_RESP,    /* response queued; waiting for it to drain */
    C_TUNNEL_SETUP,    /* "200 Connection established" draining */
    C_TUNNEL_PEEK,     /* waiting for the first byte inside the tunnel */
    C_TLS_HANDSHAKE,   /* client-side TLS handshake in progress */
    C_RELAY,           /* protocol switched: bytes copied both ways */
    C_PASSTHROUGH_CONNECT, /* ignore_hosts: connecting to the target, then C_RELAY */
    C_PASSTHROUGH_PROXY,   /* ... in upstream mode: waiting for the upstream proxy's 200 */
    C_SOCKS,           /* --mode socks5: reading the greeting and the request */
    C_DIAL,            /* connection_strategy=eager: trying the tunnel's target */
    C_CLOSING,         /* last bytes draining, then free */
    C_LINGER,          /* written and shut down; discarding input until EOF */
    C_H2,              /* HTTP/2: h2proxy.c has the connection's events */
};

typedef struct cconn {
    worker *w;
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
    char *tunnel_host;
    uint16_t tunnel_port;
    flow *f;
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
    bool authed;            /* proxyauth: a CONNECT passed; its tunnel is ours */
    bool auth_failed;       /* proxyauth: this request is answered 407/401 */
    char *auth_cache;       /* proxyauth: credentials that passed last */
    double head_since;      /* when the current request's first byte came */
    wsrelay *ws;            /* after a WebSocket 101: owns the server side */
    h2proxy *h2;            /* in C_H2 */
} cconn;

static void client_read_cb(struct bufferevent *bev, void *arg);
static void client_write_cb(struct bufferevent *bev, void *arg);
static void client_event_cb(struct bufferevent *bev, short what, void *arg);
static void peer_read_cb(struct bufferevent *bev, void *arg);
static void peer_event_cb(struct bufferevent *bev, short what, void *arg);
static void process_client_or_close(cconn *c);
static void linger_or_close(cconn *c);
static void start_passthrough_or_close(cconn *c);
static void deliver_response_or_close(cconn *c);
static void start_h2_or_close(cconn *c);
static void start_relay(cconn *c);
static void client_wire_drained(struct bufferevent *wire, void *arg);

/* ---- consumers ---------------------------------------------------------- */

void proxy_request_exit(void *shared, int code)
{
    proxy_shared *sh = shared;
    int none = -1;
    atomic_compare_exchange_strong(&sh->exit_code, &none, code);
    kill(getpid(), SIGTERM);
}

static SSL_CTX *make_ctx(const proxy_shared *sh_const, bool server)
{
    proxy_shared *sh = (proxy_shared *)sh_const; /* only the atomics and the lock */
    _Atomic(SSL_CTX *) *slot = server ? &sh->server_ctx : &sh->client_ctx;
    SSL_CTX *c = atomic_load_explicit(slot, memory_order_acquire);
    if (c)
        return c;
    pthread_mutex_lock(&sh->tls_lock);
    if (!(c = atomic_load_explicit(slot, memory_order_relaxed))) {
        char err[512];
        tls_client_opts co = {.insecure = sh->o->ssl_insecure, .extra_ca_file = sh->o->ssl_verify_upstream_trusted_ca};
        c = server ? tls_server_ctx_new(sh->ca, err, sizeof err) : tls_client_ctx_new(&co, err, sizeof err);
        if (c)
            atomic_store_explicit(slot, c, memory_order_release);
        else
            log_error("%s", err);
    }
    pthread_mutex_unlock(&sh->tls_lock);
    return c;
}

SSL_CTX *proxy_server_ctx(const proxy_shared *sh) { return make_ctx(sh, true); }
SSL_CTX *proxy_client_ctx(const proxy_shared *sh) { return make_ctx(sh, false); }

void proxy_flow_finished(const proxy_shared *sh_const, flow *f)
{
    proxy_shared *sh = (proxy_shared *)sh_const; /* only the atomics change */
    atomic_fetch_add(&sh->n_flows, 1);
    if (f->error)
        atomic_fetch_add(&sh->n_errors, 1);
    if (f->request)
        atomic_fetch_add(&sh->bytes_requests, f->request->content.len);
    if (f->response)
        atomic_fetch_add(&sh->bytes_responses, f->response->content.len);
    /* a filter that could not answer (filter_eval -1) fails fail_on and
     * lets the flow through the trailing filter: never a silent "no" */
    char ferr[512];
    int m = sh->fail_on ? filter_eval(sh->fail_on, f, ferr, sizeof ferr) : 0;
    if (m != 0) {
        atomic_fetch_add(&sh->n_failed_on, 1);
        char *url = f->request ? flow_request_url(f->request) : NULL;
        if (m < 0)
            log_error("fail_on: %s; counted as matched: %s %s", ferr, f->request ? f->request->method : "", url ? url : f->id);
        else
            log_warn("fail_on matched: %s %s", f->request ? f->request->method : "", url ? url : f->id);
        free(url);
    }
    if (sh->filter && (m = filter_eval(sh->filter, f, ferr, sizeof ferr)) <= 0) {
        if (m == 0)
            return;
        atomic_fetch_add(&sh->n_filter_errors, 1);
        log_error("%s; flow %s is shown and saved", ferr, f->id);
    }
    if (sh->printer)
        printer_flow(sh->printer, f);
    if (sh->dump && dump_writer_add(sh->dump, f) < 0)
        log_error("could not queue flow %s for the dump file", f->id);
    if (sh->har) {
        char err[256];
        pthread_mutex_lock((pthread_mutex_t *)&sh->har_lock);
        int rc = har_writer_add(sh->har, f, err, sizeof err);
        pthread_mutex_unlock((pthread_mutex_t *)&sh->har_lock);
        if (rc < 0)
            log_error("hardump: %s", err);
    }
}

/* -1 when a hook ran past script_timeout: the flow then fails (its error
 * is set by the script module). */
static int run_hook(cconn *c, enum script_hook h)
{
    if (c->w->scripts && c->f && script_env_has_hook(c->w->scripts, h))
        return script_env_run(c->w->scripts, h, c->f);
    return 0;
}

static void flow_done(cconn *c)
{
    if (!c->f)
        return;
    if (c->w->scripts)
        script_env_forget(c->w->scripts, c->f);
    flow_free(c->f);
    c->f = NULL;
}

/* The flow failed: record the error, tell the scripts, hand it on. */
static void flow_fail(cconn *c, const char *msg)
{
    if (!c->f || !c->f->request || !c->f->request->method)
        return;
    flow_set_error(c->f, msg);
    run_hook(c, SCRIPT_HOOK_ERROR);
    proxy_flow_finished(c->w->sh, c->f);
    flow_done(c);
}

/* ---- connection lifetime ------------------------------------------------ */

static void cconn_free(cconn *c)
{
    if (c->f && c->ws) { /* a WebSocket cut short: still one finished flow */
        wsrelay_interrupt(c->ws, "WebSocket: connection closed by the proxy");
        proxy_flow_finished(c->w->sh, c->f);
    } else if (c->f && c->f->type == FLOW_TCP) {
        /* a passed-through tunnel ends: a connection-level flow */
        c->f->client.timestamp_end = c->f->server.timestamp_end = flow_now();
        if (!c->f->server.timestamp_tcp_setup && !c->f->error)
            flow_set_error(c->f, "client disconnected");
        proxy_flow_finished(c->w->sh, c->f);
    } else if (c->f) {
        flow_fail(c, "client disconnected");
    }
    flow_done(c);
    wsrelay_free(c->ws);
    h2proxy_free(c->h2);
    exch_close(&c->x);
    if (c->peer)
        bufferevent_free(c->peer);
    dial_cancel(c->dial);
    if (c->peek_ev)
        event_free(c->peek_ev);
    bevio_detach(&c->wio);   /* before the bufferevent goes */
    if (c->bev)
        bufferevent_free(c->bev);
    if (c->fd >= 0)   /* bev does not own it: a TLS filter may sit on top */
        evutil_closesocket(c->fd);
    h1_parser_free(c->parser);
    flow_conn_clear(&c->info);
    free(c->tunnel_host);
    free(c->auth_cache);
    if (c->admitted)
        guard_admit_release(&c->w->admit);
    if (c->prev)
        c->prev->next = c->next;
    else
        c->w->conns = c->next;
    if (c->next)
        c->next->prev = c->prev;
    worker *w = c->w;
    free(c);
    if (w->stopping && !w->conns)
        event_base_loopexit(w->base, NULL);
}

/* Bytes queued for the client: in bev's output, and over TLS also the
 * records in the socket's output under the filter. */
static size_t client_unsent(cconn *c)
{
    struct bufferevent *wire = bufferevent_get_underlying(c->bev);
    return evbuffer_get_length(bufferevent_get_output(c->bev)) +
           (wire ? evbuffer_get_length(bufferevent_get_output(wire)) : 0);
}

/* Close once everything queued for the client has been written. */
static void close_after_write(cconn *c)
{
    c->state = C_CLOSING;
    exch_release_unless_reusable(&c->x);
    if (!c->bev) {
        cconn_free(c);
        return;
    }
    if (client_unsent(c) == 0) {
        linger_or_close(c);
        return;
    }
    bufferevent_disable(c->bev, EV_READ);
    struct timeval tv = {c->w->sh->o->read_timeout ? c->w->sh->o->read_timeout : 30, 0};
    bufferevent_set_timeouts(c->bev, NULL, &tv);
    struct bufferevent *wire = bufferevent_get_underlying(c->bev);
    if (wire) {
        /* the filter's own timer runs only while it has bytes; and after
         * HTTP/2 or a relay, bevio comes back to say when the wire drains */
        bufferevent_set_timeouts(wire, NULL, &tv);
        if (!c->wio.bev && bevio_attach_wire(&c->wio, c->w->base, wire, client_wire_drained, c) < 0) {
            cconn_free(c);
            return;
        }
    }
    bufferevent_enable(c->bev, EV_WRITE);
}

/* A response the proxy itself makes (errors): plain text, one line. */
static void send_simple_response(cconn *c, int status, const char *msg, bool close)
{
    struct evbuffer *out = bufferevent_get_output(c->bev);
    size_t n = strlen(msg);
    evbuffer_add_printf(out,
                        "HTTP/1.1 %d %s\r\n"
                        "Server: mitmlua\r\n"
                        "Content-Type: text/plain; charset=utf-8\r\n"
                        "Content-Length: %zu\r\n"
                        "%s\r\n",
                        status, h1_reason(status), n + 1, close ? "Connection: close\r\n" : "");
    evbuffer_add(out, msg, n);
    evbuffer_add(out, "\n", 1);
}

/* The upstream part of the exchange failed: answer the client, fail the flow. */
static void upstream_failed_or_close(cconn *c, int status, const char *msg)
{
    exch_close(&c->x);
    if (c->f && c->f->response) {
        flow_response_free(c->f->response);
        c->f->response = NULL;
    }
    send_simple_response(c, status, msg, true);
    flow_fail(c, msg);
    close_after_write(c);
}

/* A hook ran past script_timeout: the client gets a 502 naming it. */
static void hook_failed_or_close(cconn *c)
{
    char msg[300];
    snprintf(msg, sizeof msg, "%s", c->f && c->f->error && c->f->error->msg ? c->f->error->msg : "script failed");
    upstream_failed_or_close(c, 502, msg);
}

/* Client timeouts: idle_timeout while waiting for a request, read_timeout
 * once one has begun. */
static void set_client_timeout(cconn *c, int seconds)
{
    struct timeval tv = {seconds, 0};
    bufferevent_set_timeouts(c->bev, seconds ? &tv : NULL, NULL);
}

/* The connection stops being HTTP/1 handled here (TLS starts under it, or
 * HTTP/2 or a relay take it over): libevent writes its output again, and
 * its input is no longer bounded by CLIENT_INPUT_MAX (a relay may need a
 * whole frame).  Over TLS, HTTP/1 turns it on again (bevio_attach_wire). */
static void plain_h1_off(cconn *c)
{
    if (!c->wio.bev)
        return;
    bevio_detach(&c->wio);
    bufferevent_setwatermark(c->bev, EV_READ, 0, 0);
}

/* ---- request targets ---------------------------------------------------- */

/* "host:port", "[v6]:port" or "host" → host (unbracketed) and port. */
static int parse_authority(const char *a, size_t n, uint16_t dflt, char **host, uint16_t *port)
{
    const char *hs = a, *he;
    const char *p = NULL;
    if (n && a[0] == '[') {
        const char *rb = memchr(a, ']', n);
        if (!rb)
            return -1;
        hs = a + 1;
        he = rb;
        if (rb + 1 < a + n) {
            if (rb[1] != ':')
                return -1;
            p = rb + 2;
        }
    } else {
        const char *colon = memchr(a, ':', n);
        he = colon ? colon : a + n;
        if (colon)
            p = colon + 1;
    }
    if (he == hs || he - hs > 253)
        return -1;
    for (const char *c = hs; c < he; c++)
        if (!(isalnum((unsigned char)*c) || *c == '-' || *c == '.' || *c == '_' || *c == ':' || *c == '%'))
            return -1;
    unsigned long v = dflt;
    if (p) {
        if (p == a + n)
            return -1;
        v = 0;
        for (const char *c = p; c < a + n; c++) {
            if (!isdigit((unsigned char)*c) || (v = v * 10 + (unsigned)(*c - '0')) > 65535)
                return -1;
        }
        if (v == 0)
            return -1;
    }
    if (flow_strnset(host, hs, (size_t)(he - hs)) < 0)
        return -1;
    for (char *c = *host; *c; c++)
        *c = (char)tolower((unsigned char)*c);
    *port = (uint16_t)v;
    return 0;
}

/* Work out scheme, host, port and path of a request from its target and
 * the connection it came on.  Returns 0, or an HTTP status with *why set. */
static int resolve_target(cconn *c, flow_request *r, const char **why)
{
    const opts *o = c->w->sh->o;
    const char *t = r->path ? r->path : "";
    if (strcmp(r->method, "CONNECT") == 0) {
        if (o->mode == MODE_REVERSE || c->in_tunnel) {
            *why = "CONNECT is not allowed here";
            return 405;
        }
        if (parse_authority(t, strlen(t), 0, &r->host, &r->port) < 0 || r->port == 0) {
            *why = "invalid CONNECT target: expected host:port";
            return 400;
        }
        if (flow_strset(&r->authority, t) < 0 || flow_strset(&r->scheme, "http") < 0 ||
            flow_strset(&r->path, "") < 0)
            return 500;
        return 0;
    }
    if (!strncasecmp(t, "http://", 7) || !strncasecmp(t, "https://", 8)) {
        bool https = tolower((unsigned char)t[4]) == 's';
        const char *a = t + (https ? 8 : 7);
        size_t alen = strcspn(a, "/?#");
        if (parse_authority(a, alen, https ? 443 : 80, &r->host, &r->port) < 0) {
            *why = "invalid host in request URL";
            return 400;
        }
        const char *rest = a + alen;
        char *path = NULL;
        if (*rest == '/') {
            path = strdup(rest);
        } else {
            size_t n = strlen(rest) + 2;
            path = malloc(n);
            if (path)
                snprintf(path, n, "/%s", rest);
        }
        if (!path || flow_strnset(&r->authority, a, alen) < 0 ||
            flow_strset(&r->scheme, https ? "https" : "http") < 0) {
            free(path);
            return 500;
        }
        free(r->path);
        r->path = path;
        if (o->mode == MODE_REVERSE && !c->in_tunnel) {
            /* reverse mode sends everything to its one upstream */
            free(r->host);
            r->host = strdup(o->mode_url.host);
            r->port = o->mode_url.port;
            flow_strset(&r->scheme, o->mode_url.scheme);
        }
        return 0;
    }
    if (t[0] != '/' && strcmp(t, "*") != 0) {
        *why = "invalid request target";
        return 400;
    }
    if (c->in_tunnel) {
        if (flow_strset(&r->host, c->tunnel_host) < 0 ||
            flow_strset(&r->scheme, c->tunnel_tls ? "https" : "http") < 0 ||
            flow_strset(&r->authority, "") < 0)
            return 500;
        r->port = c->tunnel_port;
        return 0;
    }
    if (o->mode == MODE_REVERSE) {
        if (flow_strset(&r->host, o->mode_url.host) < 0 || flow_strset(&r->scheme, o->mode_url.scheme) < 0 ||
            flow_strset(&r->authority, "") < 0)
            return 500;
        r->port = o->mode_url.port;
        if (!o->keep_host_header) {
            /* the same for every request of the run: made once per worker */
            const char *val = c->w->reverse_host;
            if (hdrs_set(&r->headers, "Host", val, strlen(val)) < 0)
                return 500;
        }
        return 0;
    }
    *why = "Invalid HTTP request form (expected: absolute, got: relative)";
    return 400;
}

/* ---- request parsing ---------------------------------------------------- */

/* read_timeout bounds the time between two reads; a slowloris client
 * sending a byte just inside it would hold its connection for ever, so the
 * whole header section must also arrive within read_timeout (as nginx's
 * client_header_timeout).  Checked when bytes arrive: silence is the
 * bufferevent timeout's job. */
static bool head_too_slow(const cconn *c)
{
    int t = c->w->sh->o->read_timeout;
    return t && c->f && !c->f->request->method && flow_now() - c->head_since > t;
}

static void request_timed_out_or_close(cconn *c)
{
    send_simple_response(c, 408, "request timed out", true);
    flow_done(c);
    close_after_write(c);
}

/* --proxyauth: a CONNECT authenticates its whole tunnel; any other request
 * outside a tunnel carries its own credentials (as in mitmproxy).  Passing
 * credentials are removed so that they never reach the server. */
static bool auth_passes(cconn *c, flow_request *r)
{
    const proxyauth *pa = c->w->sh->auth;
    if (!pa || c->authed)
        return true;
    const char *name = proxyauth_header(c->w->sh->o->mode != MODE_REVERSE);
    size_t vl = 0;
    const char *v = hdrs_get(&r->headers, name, &vl);
    if (!proxyauth_check_header(pa, v, vl, &c->auth_cache))
        return false;
    hdrs_remove(&r->headers, name);
    if (strcmp(r->method, "CONNECT") == 0)
        c->authed = true;
    return true;
}

/* No valid credentials: answer 407 (401 in reverse mode), record the flow,
 * close without reading the body. */
static void refuse_auth_or_close(cconn *c)
{
    flow *f = c->f;
    struct evbuffer *out = bufferevent_get_output(c->bev);
    f->request->timestamp_end = flow_now();
    f->response = proxyauth_challenge(c->w->sh->o->mode != MODE_REVERSE);
    if (!f->response || h1_write_response(out, f->response, &f->response->content) < 0) {
        cconn_free(c);
        return;
    }
    proxy_flow_finished(c->w->sh, f);
    flow_done(c);
    c->linger = true;
    close_after_write(c);
}

static int on_request_head(void *ud)
{
    cconn *c = ud;
    flow_request *r = c->f->request;
    const char *why = "bad request";
    int st = resolve_target(c, r, &why);
    if (st) {
        /* report through the parser's error path: status + reason */
        c->target_status = st;
        flow_set_error(c->f, why);
        c->f->request->timestamp_end = flow_now();
        return -1;
    }
    if (!auth_passes(c, r)) {
        c->auth_failed = true;
        return -1;
    }
    if (c->w->sh->o->mode != MODE_UPSTREAM || c->in_tunnel) {
        /* these were meant for us, not for the server */
        hdrs_remove(&r->headers, "Proxy-Connection");
        hdrs_remove(&r->headers, "Proxy-Authorization");
    }
    if (c->w->upstream_auth && !c->in_tunnel && strcmp(r->method, "CONNECT") != 0) {
        /* upstream_auth: our credentials, not the client's (mitmproxy's
         * Authorization in reverse mode, Proxy-Authorization upstream) */
        const char *name = c->w->sh->o->mode == MODE_UPSTREAM ? "Proxy-Authorization"
                         : c->w->sh->o->mode == MODE_REVERSE  ? "Authorization" : NULL;
        if (name && hdrs_set(&r->headers, name, c->w->upstream_auth, strlen(c->w->upstream_auth)) < 0)
            return -1;
    }
    if (hdrs_has_token(&r->headers, "expect", "100-continue")) {
        /* we read the whole body before contacting the server, so we are
         * the ones who must invite it (mitmproxy does the same) */
        hdrs_remove(&r->headers, "Expect");
        evbuffer_add(bufferevent_get_output(c->bev), "HTTP/1.1 100 Continue\r\n\r\n", 25);
    }
    if (strcmp(r->method, "CONNECT") != 0 && run_hook(c, SCRIPT_HOOK_REQUESTHEADERS) < 0) {
        c->target_status = 502;   /* reported with the flow's error */
        return -1;
    }
    return c->f->killed ? -1 : 0;
}

static int on_request_body(void *ud, const char *at, size_t n)
{
    cconn *c = ud;
    return bytes_append(&c->f->request->content, at, n);
}

static void copy_client_info(cconn *c, flow *f)
{
    flow_conn *d = &f->client, *s = &c->info;
    flow_strset(&d->address_host, s->address_host);
    d->address_port = s->address_port;
    flow_strset(&d->sni, s->sni);
    flow_strset(&d->alpn, s->alpn);
    flow_strset(&d->tls_version, s->tls_version);
    flow_strset(&d->cipher, s->cipher);
    d->tls = s->tls;
    d->timestamp_start = s->timestamp_start;
    d->timestamp_tls_setup = s->timestamp_tls_setup;
}

static bool new_flow(cconn *c)
{
    c->f = flow_new();
    if (!c->f || !(c->f->request = flow_request_new())) {
        flow_free(c->f);
        c->f = NULL;
        return false;
    }
    copy_client_info(c, c->f);
    h1_parser_begin_request(c->parser, c->f->request);
    return true;
}

static void client_protocol_error_or_close(cconn *c)
{
    int status = h1_parser_error_status(c->parser);
    const char *why = h1_parser_error(c->parser);
    if (c->target_status && c->f && c->f->error && c->f->error->msg) {
        why = c->f->error->msg;       /* set by on_request_head */
        status = c->target_status;
    }
    if (c->f && c->f->killed) {
        flow_fail(c, "Connection killed.");
        cconn_free(c);
        return;
    }
    char addr[128];
    printer_format_address(c->info.address_host, c->info.address_port, addr, sizeof addr);
    char msg[256];
    snprintf(msg, sizeof msg, "%s", why);
    log_info("%s: HTTP/1 protocol error: %s", addr, msg);
    send_simple_response(c, status, msg, true);
    c->linger = true;
    if (c->f && c->f->request && c->f->request->method && c->f->request->host) {
        flow_fail(c, msg);
    } else {
        flow_done(c);
    }
    close_after_write(c);
}

/* ---- CONNECT and the tunnel --------------------------------------------- */

/* The socket under a TLS client connection has written everything. */
static void client_wire_drained(struct bufferevent *wire, void *arg)
{
    cconn *c = arg;
    (void)wire;
    client_write_cb(c->bev, c);
}

/* TLS runs as a filter over the socket bufferevent (also when the client
 * did not wait for our answer to CONNECT and its hello is already in our
 * input): OpenSSL writes records into the socket's output and bevio writes
 * them out, one writev per loop turn, as on a plain connection. */
static void start_client_tls_or_close(cconn *c)
{
    const proxy_shared *sh = c->w->sh;
    plain_h1_off(c);
    SSL_CTX *ctx = proxy_server_ctx(sh);
    SSL *ssl = ctx ? SSL_new(ctx) : NULL;
    static const unsigned char h2_alpn[] = "\x02h2\x08http/1.1";
    if (!ssl || tls_set_fallback_host(ssl, c->tunnel_host) < 0 ||
        (sh->o->http2 && tls_set_alpn_allowed(ssl, h2_alpn, sizeof h2_alpn - 1) < 0)) {
        SSL_free(ssl);
        cconn_free(c);
        return;
    }
    struct bufferevent *wire = c->bev;
    struct bufferevent *b = bufferevent_openssl_filter_new(c->w->base, wire, ssl, BUFFEREVENT_SSL_ACCEPTING,
                                                           BEV_OPT_CLOSE_ON_FREE | BEV_OPTS);
    if (!b) {
        SSL_free(ssl);
        cconn_free(c);
        return;
    }
    c->bev = b;
    (void)bevio_attach_wire(&c->wio, c->w->base, wire, client_wire_drained, c); /* failing that, libevent writes */
    c->state = C_TLS_HANDSHAKE;
    c->tunnel_tls = true;
    bufferevent_setcb(b, client_read_cb, client_write_cb, client_event_cb, c);
    struct timeval tv = {sh->o->tls_handshake_timeout ? sh->o->tls_handshake_timeout : 10, 0};
    bufferevent_set_timeouts(b, &tv, &tv);
    bufferevent_enable(b, EV_READ | EV_WRITE);
}

static void start_tunnel_plain_or_close(cconn *c)
{
    c->tunnel_tls = false;
    c->in_tunnel = c->w->sh->o->mode != MODE_REVERSE;   /* see reverse_accept_or_close */
    c->state = C_READ_REQ;
    bufferevent_enable(c->bev, EV_READ);
    process_client_or_close(c);
}

static void peek_cb(evutil_socket_t fd, short what, void *arg)
{
    cconn *c = arg;
    unsigned char b;
    if (what & EV_TIMEOUT) {
        cconn_free(c);
        return;
    }
    ssize_t n = recv(fd, &b, 1, MSG_PEEK);
    if (n <= 0) {
        if (n < 0 && (errno == EAGAIN || errno == EINTR)) {
            event_add(c->peek_ev, NULL);
            return;
        }
        cconn_free(c);
        return;
    }
    event_free(c->peek_ev);
    c->peek_ev = NULL;
    if (b == 0x16) /* TLS handshake record */
        start_client_tls_or_close(c);
    else
        start_tunnel_plain_or_close(c);
}

/* The 200 to CONNECT has been written: find out what the client speaks. */
static void tunnel_start_or_close(cconn *c)
{
    struct evbuffer *in = bufferevent_get_input(c->bev);
    if (evbuffer_get_length(in) > 0) {
        /* the client did not wait for our answer: its bytes are already
         * in our buffer, where the TLS filter reads them */
        unsigned char b;
        evbuffer_copyout(in, &b, 1);
        if (b == 0x16)
            start_client_tls_or_close(c);
        else
            start_tunnel_plain_or_close(c);
        return;
    }
    bufferevent_disable(c->bev, EV_READ);
    c->state = C_TUNNEL_PEEK;
    c->peek_ev = event_new(c->w->base, c->fd, EV_READ, peek_cb, c);
    struct timeval tv = {c->w->sh->o->idle_timeout ? c->w->sh->o->idle_timeout : 60, 0};
    if (!c->peek_ev || event_add(c->peek_ev, &tv) < 0)
        cconn_free(c);
}

/* The tunnel is open: say so in the client's protocol. */
static void tunnel_reply_ok(cconn *c)
{
    struct evbuffer *out = bufferevent_get_output(c->bev);
    if (c->tunnel_kind == TUNNEL_CONNECT) {
        evbuffer_add(out, "HTTP/1.1 200 Connection established\r\n\r\n", 39);
    } else if (c->tunnel_kind == TUNNEL_SOCKS5) {
        uint8_t rep[10];
        socks5_reply(SOCKS5_REP_OK, rep);
        evbuffer_add(out, rep, sizeof rep);
    }
}

/* The target cannot be reached: an HTTP error to CONNECT, a SOCKS5 error
 * reply, nothing in transparent mode (the client sees the close).  The
 * caller closes after the write. */
static void tunnel_reply_error(cconn *c, int status, const char *msg)
{
    if (c->tunnel_kind == TUNNEL_CONNECT) {
        send_simple_response(c, status, msg, true);
    } else if (c->tunnel_kind == TUNNEL_SOCKS5) {
        uint8_t rep[10];
        int e = EVUTIL_SOCKET_ERROR();
        socks5_reply(status == 504 ? SOCKS5_REP_TTL_EXPIRED : socks5_rep_for_errno(e), rep);
        evbuffer_add(bufferevent_get_output(c->bev), rep, sizeof rep);
    }
}

/* ignore_hosts / allow_hosts: no interception.  The tunnel's bytes go
 * through untouched (TLS stays end to end) and the connection is recorded
 * as a TCP flow when it ends. */
static void start_passthrough_or_close(cconn *c)
{
    flow *f = c->f;
    plain_h1_off(c);
    f->type = FLOW_TCP;
    flow_request_free(f->request);
    f->request = NULL;
    f->server.timestamp_start = flow_now();
    if (flow_strset(&f->server.address_host, c->tunnel_host) < 0) {
        cconn_free(c);
        return;
    }
    f->server.address_port = c->tunnel_port;
    c->peer = bufferevent_socket_new(c->w->base, -1, BEV_OPT_CLOSE_ON_FREE | BEV_OPTS);
    if (!c->peer) {
        cconn_free(c);
        return;
    }
    c->state = C_PASSTHROUGH_CONNECT;
    bufferevent_setcb(c->peer, peer_read_cb, NULL, peer_event_cb, c);
    struct timeval tv = {c->w->sh->o->connect_timeout, 0};
    bufferevent_set_timeouts(c->peer, &tv, &tv);
    bufferevent_enable(c->peer, EV_READ | EV_WRITE);
    char msg[400];
    const opts *o = c->w->sh->o;
    bool via = o->mode == MODE_UPSTREAM;   /* the tunnel goes through the upstream proxy */
    if (upstream_connect(c->w, c->peer, via ? o->mode_url.host : c->tunnel_host,
                         via ? o->mode_url.port : c->tunnel_port, msg, sizeof msg) < 0) {
        flow_set_error(f, msg);
        tunnel_reply_error(c, 502, msg);
        close_after_write(c);
    }
}

/* ---- tunnels: CONNECT, SOCKS5 and transparent mode ---------------------
 *
 * The three ways in differ only in how the target is learnt and how the
 * client is told the tunnel is open; from then on the same code peeks at
 * the first byte and intercepts TLS or reads HTTP. */

static void tunnel_accepted_or_close(cconn *c)
{
    flow_done(c);
    if (c->tunnel_kind == TUNNEL_TRANSPARENT) {
        tunnel_start_or_close(c);
        return;
    }
    tunnel_reply_ok(c);
    c->state = C_TUNNEL_SETUP;
    bufferevent_disable(c->bev, EV_READ);
}

static void tunnel_dial_cb(void *arg, int err, const char *msg)
{
    cconn *c = arg;
    c->dial = NULL;
    if (!err) {
        tunnel_accepted_or_close(c);
        return;
    }
    char addr[128];
    printer_format_address(c->info.address_host, c->info.address_port, addr, sizeof addr);
    log_info("%s: %s", addr, msg);
    if (c->tunnel_kind == TUNNEL_CONNECT) {
        upstream_failed_or_close(c, 502, msg);   /* the CONNECT flow records the error */
        return;
    }
    if (c->tunnel_kind == TUNNEL_SOCKS5) {
        uint8_t rep[10];
        socks5_reply(socks5_rep_for_errno(err), rep);
        evbuffer_add(bufferevent_get_output(c->bev), rep, sizeof rep);
    }
    close_after_write(c);
}

/* The target is known (c->tunnel_host/port): pass it through, or try it
 * first (eager), or open the tunnel at once (lazy). */
static void tunnel_open_or_close(cconn *c)
{
    worker *w = c->w;
    const char *h = c->tunnel_host;
    uint16_t p = c->tunnel_port;
    if (hostmatch_any(w->ignore_hosts, h, p) ||
        (hostmatch_count(w->allow_hosts) && !hostmatch_any(w->allow_hosts, h, p)) ||
        hostmatch_any_host(w->tcp_hosts, h, p)) {
        if (!c->f) {  /* socks5 / transparent: no CONNECT flow to turn into a TCP flow */
            if (!(c->f = flow_new())) {
                cconn_free(c);
                return;
            }
            copy_client_info(c, c->f);
        }
        start_passthrough_or_close(c);
        return;
    }
    /* in upstream mode the target may be reachable only through the
     * upstream proxy: trying it directly would prove nothing */
    if (strcmp(w->sh->o->connection_strategy, "eager") == 0 && w->sh->o->mode != MODE_UPSTREAM) {
        c->state = C_DIAL;
        bufferevent_disable(c->bev, EV_READ);
        c->dial = dial_start(w->base, w->dns, h, p, w->sh->o->connect_timeout, tunnel_dial_cb, c);
        if (!c->dial)
            cconn_free(c);
        return;
    }
    tunnel_accepted_or_close(c);
}

static void handle_connect_or_close(cconn *c)
{
    flow_request *r = c->f->request;
    if (run_hook(c, SCRIPT_HOOK_CONNECT) < 0) {
        hook_failed_or_close(c);
        return;
    }
    if (c->f->killed) {
        flow_done(c);
        cconn_free(c);
        return;
    }
    free(c->tunnel_host);
    c->tunnel_host = strdup(r->host);
    c->tunnel_port = r->port;
    if (!c->tunnel_host) {
        cconn_free(c);
        return;
    }
    c->tunnel_kind = TUNNEL_CONNECT;
    tunnel_open_or_close(c);
}

static bool set_tunnel_target(cconn *c, enum tunnel_kind kind, const char *host, uint16_t port)
{
    free(c->tunnel_host);
    c->tunnel_host = strdup(host);
    c->tunnel_port = port;
    c->tunnel_kind = kind;
    return c->tunnel_host != NULL;
}

/* --mode socks5: the greeting, username/password when --proxyauth is set
 * (RFC 1929), then the CONNECT request (RFC 1928). */
static void socks_read_or_close(cconn *c)
{
    struct evbuffer *in = bufferevent_get_input(c->bev);
    for (;;) {
        size_t n = evbuffer_get_length(in);
        if (n == 0)
            return;
        size_t take = n < 600 ? n : 600;   /* longer than any SOCKS5 message */
        const uint8_t *p = evbuffer_pullup(in, (ev_ssize_t)take);
        socks5_target t;
        int reply;
        char why[200];
        const char *user = NULL, *pass = NULL;
        size_t ulen = 0, plen = 0;
        int used;
        if (c->socks_step == SOCKS_GREETING)
            used = socks5_parse_greeting(p, take, c->w->sh->auth != NULL, &reply, why, sizeof why);
        else if (c->socks_step == SOCKS_USERPASS)
            used = socks5_parse_userpass(p, take, &user, &ulen, &pass, &plen, why, sizeof why);
        else
            used = socks5_parse_request(p, take, &t, &reply, why, sizeof why);
        if (used > 0 && c->socks_step == SOCKS_USERPASS &&
            !proxyauth_check(c->w->sh->auth, user, ulen, pass, plen)) {
            snprintf(why, sizeof why, "wrong username or password");
            used = -1;
        }
        if (used == 0)
            return;
        if (used < 0) {
            char addr[128];
            printer_format_address(c->info.address_host, c->info.address_port, addr, sizeof addr);
            log_info("%s: SOCKS5 handshake failed: %s", addr, why);
            if (c->socks_step == SOCKS_USERPASS) {
                evbuffer_add(bufferevent_get_output(c->bev), "\x01\x01", 2);   /* RFC 1929: failure */
            } else if (reply >= 0 && c->socks_step == SOCKS_GREETING) {
                uint8_t rep[2] = {0x05, (uint8_t)reply};
                evbuffer_add(bufferevent_get_output(c->bev), rep, 2);
            } else if (reply >= 0) {
                uint8_t rep[10];
                socks5_reply((uint8_t)reply, rep);
                evbuffer_add(bufferevent_get_output(c->bev), rep, sizeof rep);
            }
            c->linger = true;
            close_after_write(c);
            return;
        }
        evbuffer_drain(in, (size_t)used);
        if (c->socks_step == SOCKS_GREETING) {
            uint8_t rep[2] = {0x05, (uint8_t)reply};
            evbuffer_add(bufferevent_get_output(c->bev), rep, 2);
            c->socks_step = reply == SOCKS5_METHOD_USERPASS ? SOCKS_USERPASS : SOCKS_REQUEST;
            continue;
        }
        if (c->socks_step == SOCKS_USERPASS) {
            evbuffer_add(bufferevent_get_output(c->bev), "\x01\x00", 2);   /* RFC 1929: success */
            c->authed = true;   /* the tunnel's requests carry no credentials */
            c->socks_step = SOCKS_REQUEST;
            continue;
        }
        bufferevent_disable(c->bev, EV_READ);
        if (!set_tunnel_target(c, TUNNEL_SOCKS5, t.host, t.port)) {
            cconn_free(c);
            return;
        }
        tunnel_open_or_close(c);
        return;
    }
}

/* Reverse mode takes plain HTTP and TLS on the same port, as mitmproxy's
 * does: the first byte tells (0x16 starts a TLS handshake record).  The
 * client is not in a tunnel either way: its requests go to the reverse
 * target; the target's host names the minted certificate when the client
 * sends no SNI. */
static void reverse_accept_or_close(cconn *c)
{
    c->tunnel_host = strdup(c->w->sh->o->mode_url.host);
    if (!c->tunnel_host) {
        cconn_free(c);
        return;
    }
    c->tunnel_port = c->w->sh->o->mode_url.port;
    tunnel_start_or_close(c);
}

/* A new client in socks5, transparent or reverse mode (regular and
 * upstream clients start with an HTTP request). */
static void mode_accept_or_close(cconn *c)
{
    enum opts_mode m = c->w->sh->o->mode;
    if (m == MODE_SOCKS5) {
        c->state = C_SOCKS;
        return;
    }
    if (m == MODE_REVERSE) {
        reverse_accept_or_close(c);
        return;
    }
    if (m != MODE_TRANSPARENT)
        return;
    char host[INET6_ADDRSTRLEN], err[256];
    uint16_t port;
    if (origdst_get(c->fd, host, sizeof host, &port, err, sizeof err) < 0) {
        char addr[128];
        printer_format_address(c->info.address_host, c->info.address_port, addr, sizeof addr);
        log_warn("%s: transparent mode: %s", addr, err);
        cconn_free(c);
        return;
    }
    bufferevent_disable(c->bev, EV_READ);
    if (!set_tunnel_target(c, TUNNEL_TRANSPARENT, host, port)) {
        cconn_free(c);
        return;
    }
    tunnel_open_or_close(c);
}

/* ---- one request -------------------------------------------------------- */

static void kill_or_close(cconn *c)
{
    flow_fail(c, "Connection killed.");
    cconn_free(c);
}

static void handle_request_or_close(cconn *c)
{
    flow *f = c->f;
    if (strcmp(f->request->method, "CONNECT") == 0) {
        handle_connect_or_close(c);
        return;
    }
    /* server replay (-S), a C addon: it matches the request as the client
     * sent it, before map_remote rewrites it (mitmproxy's addon order) */
    if (c->w->sh->sreplay && sreplay_request(c->w->sh->sreplay, f) == SREPLAY_KILLED) {
        kill_or_close(c);
        return;
    }
    if (!f->response)
        addons_request(c->w->sh->addons, f);   /* C addons before Lua; map_local may answer */
    if (run_hook(c, SCRIPT_HOOK_REQUEST) < 0) {
        hook_failed_or_close(c);
        return;
    }
    if (f->killed) {
        kill_or_close(c);
        return;
    }
    if (f->response) {          /* answered by a script */
        deliver_response_or_close(c);
        return;
    }
    if (f->request->host && onboard_is_host(f->request->host)) {
        char err[256];
        flow_response *resp = NULL;
        if (onboard_handle(c->w->sh->o->confdir, f->request->path, &resp, err, sizeof err) == 0 && resp) {
            f->response = resp;
            deliver_response_or_close(c);
            return;
        }
        upstream_failed_or_close(c, 500, err);
        return;
    }
    /* hooks must see plain WebSocket messages: no permessage-deflate */
    if (ws_is_upgrade_request(&f->request->headers))
        ws_strip_extensions(&f->request->headers);
    c->x.in_tunnel = c->in_tunnel;
    c->x.sni = c->in_tunnel ? c->info.sni : NULL;
    exch_start(&c->x, f);
}

static void h2_close_cb(void *owner)
{
    cconn_free(owner);
}

/* The client speaks HTTP/2 (ALPN h2, or the h2c preface): h2proxy.c runs
 * the connection from here on. */
static void start_h2_or_close(cconn *c)
{
    h2proxy_origin o = {&c->info, c->in_tunnel, c->tunnel_tls, c->tunnel_host, c->tunnel_port};
    plain_h1_off(c);   /* h2proxy paces its own writes */
    if (!(c->h2 = h2proxy_new(c->w, c->bev, &o, h2_close_cb, c))) {
        cconn_free(c);
        return;
    }
    c->state = C_H2;
    bufferevent_enable(c->bev, EV_READ | EV_WRITE);
    if (h2proxy_on_read(c->h2) < 0)
        cconn_free(c);
}

static void process_client_or_close(cconn *c)
{
    struct evbuffer *in = bufferevent_get_input(c->bev);
    while (c->state == C_READ_REQ) {
        if (!c->f) {
            if (evbuffer_get_length(in) == 0)
                return;
            if (c->w->sh->o->http2 && !c->tunnel_tls && (!c->w->sh->auth || c->authed)) {
                /* h2c with prior knowledge (RFC 9113 §3.3); not before
                 * --proxyauth passed: h2 streams carry no credentials check */
                size_t n = evbuffer_get_length(in);
                int m = h2_preface_match(evbuffer_pullup(in, n < 24 ? (ssize_t)n : 24), n < 24 ? n : 24);
                if (m == 0)
                    return;
                if (m == 1) {
                    start_h2_or_close(c);
                    return;
                }
            }
            if (!new_flow(c)) {
                cconn_free(c);
                return;
            }
            set_client_timeout(c, c->w->sh->o->read_timeout);
            c->head_since = flow_now();
        }
        enum h1_status st = h1_parser_feed(c->parser, in);
        if (st == H1_NEED_MORE && head_too_slow(c)) {
            request_timed_out_or_close(c);
            return;
        }
        if (st == H1_NEED_MORE)
            return;
        if (st == H1_ERROR && c->auth_failed) {
            refuse_auth_or_close(c);
            return;
        }
        if (st == H1_ERROR) {
            client_protocol_error_or_close(c);
            return;
        }
        /* A plain connection goes on reading during the exchange (what a
         * pipelining client sends waits in the input, bounded by the read
         * high-watermark): turning reading off and on again would cost
         * two epoll_ctl per request.  The request timeout is over. */
        if (c->wio.bev)
            set_client_timeout(c, 0);
        else
            bufferevent_disable(c->bev, EV_READ);
        c->keep_alive = h1_parser_keep_alive(c->parser);
        c->state = C_WAIT_UPSTREAM;
        handle_request_or_close(c);
        return;
    }
}

/* ---- upstream ----------------------------------------------------------- */

/* How the exchange with the upstream went, for an HTTP/1 client. */

static int h1x_head(exch *x)
{
    return run_hook(x->owner, SCRIPT_HOOK_RESPONSEHEADERS);
}

static void h1x_interim(exch *x, const flow_response *r)
{
    cconn *c = x->owner;
    h1_write_response_head(bufferevent_get_output(c->bev), r);
}

static void h1x_done(exch *x)
{
    cconn *c = x->owner;
    c->upgrade_after_write = x->upgraded;
    deliver_response_or_close(c);
}

static void h1x_failed(exch *x, int status, const char *msg)
{
    cconn *c = x->owner;
    if (c->streaming) {
        /* part of the response is out: an error answer cannot follow it,
         * so the client sees the connection end early */
        flow_fail(c, msg);
        cconn_free(c);
        return;
    }
    upstream_failed_or_close(c, status, msg);
}

/* Above this much unsent response, stop reading the server. */
#define STREAM_HIGH_WATER (1u << 20)

static void h1x_stream_head(exch *x)
{
    cconn *c = x->owner;
    flow_response *resp = c->f->response;
    c->streaming = true;
    c->stream_chunked = h1_is_chunked(&resp->headers);
    if (!resp->http_version)
        resp->http_version = strdup("HTTP/1.1");
    /* a close-delimited body can only end with the connection */
    if (hdrs_has_token(&resp->headers, "connection", "close") ||
        (!c->stream_chunked && !hdrs_get(&resp->headers, "content-length", NULL)))
        c->keep_alive = false;
    /* a client that stops reading must not hold the paused server forever */
    int t = c->w->sh->o->read_timeout;
    struct timeval tv = {t, 0};
    bufferevent_set_timeouts(c->bev, NULL, t ? &tv : NULL);
    h1_write_response_head(bufferevent_get_output(c->bev), resp);
}

static void h1x_stream_data(exch *x, const char *p, size_t n)
{
    cconn *c = x->owner;
    struct evbuffer *out = bufferevent_get_output(c->bev);
    if (c->stream_chunked) {
        evbuffer_add_printf(out, "%zx\r\n", n);
        evbuffer_add(out, p, n);
        evbuffer_add(out, "\r\n", 2);
    } else {
        evbuffer_add(out, p, n);
    }
    if (!c->stream_paused && evbuffer_get_length(out) > STREAM_HIGH_WATER) {
        c->stream_paused = true;
        exch_pause(x, true);
    }
}

static const exch_ops h1_exch_ops = {h1x_head, h1x_interim, h1x_done, h1x_failed, h1x_stream_head,
                                     h1x_stream_data};

/* ---- relaying raw bytes (passthrough, after a protocol switch) ---------- */

/* The upstream proxy's answer to a passthrough tunnel's CONNECT: a 2xx
 * head opens the tunnel, anything else fails it.  Only the status matters;
 * the head is bounded so a babbling proxy cannot grow our buffer. */
static void passthrough_proxy_answer(cconn *c, struct evbuffer *in)
{
    struct evbuffer_ptr end = evbuffer_search(in, "\r\n\r\n", 4, NULL);
    if (end.pos < 0 && evbuffer_get_length(in) < 16384)
        return;
    char line[64] = "";
    evbuffer_copyout(in, line, sizeof line - 1);
    int st = 0;
    char msg[400];
    if (end.pos < 0 || sscanf(line, "HTTP/1.%*1[01] %3d", &st) != 1 || st < 200 || st > 299) {
        snprintf(msg, sizeof msg, "upstream proxy refused CONNECT to %s:%u with status %d", c->tunnel_host,
                 c->tunnel_port, st);
        flow_set_error(c->f, msg);
        bufferevent_free(c->peer);
        c->peer = NULL;
        tunnel_reply_error(c, 502, msg);
        close_after_write(c);
        return;
    }
    evbuffer_drain(in, (size_t)end.pos + 4);
    tunnel_reply_ok(c);
    start_relay(c);
}

static void peer_read_cb(struct bufferevent *bev, void *arg)
{
    cconn *c = arg;
    if (c->state == C_RELAY)
        evbuffer_add_buffer(bufferevent_get_output(c->bev), bufferevent_get_input(bev));
    else if (c->state == C_PASSTHROUGH_PROXY)
        passthrough_proxy_answer(c, bufferevent_get_input(bev));
}

static void start_relay(cconn *c)
{
    plain_h1_off(c);
    c->state = C_RELAY;
    bufferevent_set_timeouts(c->bev, NULL, NULL);
    bufferevent_set_timeouts(c->peer, NULL, NULL);
    bufferevent_setcb(c->peer, peer_read_cb, NULL, peer_event_cb, c);
    /* bytes that came early belong to the new protocol */
    evbuffer_add_buffer(bufferevent_get_output(c->bev), bufferevent_get_input(c->peer));
    evbuffer_add_buffer(bufferevent_get_output(c->peer), bufferevent_get_input(c->bev));
    bufferevent_enable(c->bev, EV_READ | EV_WRITE);
    bufferevent_enable(c->peer, EV_READ | EV_WRITE);
}

static void peer_event_cb(struct bufferevent *bev, short what, void *arg)
{
    cconn *c = arg;
    if (c->state == C_PASSTHROUGH_CONNECT || c->state == C_PASSTHROUGH_PROXY) {
        flow *f = c->f;
        if ((what & BEV_EVENT_CONNECTED) && c->w->sh->o->mode == MODE_UPSTREAM) {
            /* ask the upstream proxy for a tunnel; the target's address is
             * the proxy's to know, so the flow keeps the target's name */
            f->server.timestamp_tcp_setup = flow_now();
            char hb[300];
            const char *h = flow_host_for_url(c->tunnel_host, hb, sizeof hb);
            evbuffer_add_printf(bufferevent_get_output(bev), "CONNECT %s:%u HTTP/1.1\r\nHost: %s:%u\r\n%s\r\n", h,
                                c->tunnel_port, h, c->tunnel_port, c->w->upstream_auth_line);
            c->state = C_PASSTHROUGH_PROXY;
            return;
        }
        if (what & BEV_EVENT_CONNECTED) {
            f->server.timestamp_tcp_setup = flow_now();
            upstream_record_peer(bev, &f->server);
            tunnel_reply_ok(c);
            start_relay(c);
            return;
        }
        char msg[512];
        upstream_error_text(c->w->sh->o, bev, c->tunnel_host, c->tunnel_port, false, false, what, msg, sizeof msg);
        flow_set_error(f, msg);
        bufferevent_free(c->peer);
        c->peer = NULL;
        tunnel_reply_error(c, (what & BEV_EVENT_TIMEOUT) ? 504 : 502, msg);
        close_after_write(c);
        return;
    }
    /* the server ended the relay: pass on what it sent, then close */
    evbuffer_add_buffer(bufferevent_get_output(c->bev), bufferevent_get_input(bev));
    bufferevent_free(c->peer);
    c->peer = NULL;
    close_after_write(c);
}

/* ---- the response to the client ----------------------------------------- */

static bool status_has_no_body(int st)
{
    return (st >= 100 && st < 200) || st == 204 || st == 304;
}

/* The whole response is queued for the client: the flow is finished; the
 * exchange ends once the bytes are out. */
static void response_queued(cconn *c)
{
    flow *f = c->f;
    flow_response *resp = f->response;
    /* a WebSocket flow is finished when the connection closes (wsrelay) */
    if (c->upgrade_after_write && ws_is_upgrade_request(&f->request->headers) &&
        ws_is_upgrade_response(resp->status_code, &resp->headers)) {
        f->websocket = true;
    } else {
        proxy_flow_finished(c->w->sh, f);
        if (c->body_lent)   /* recorded: the output frees the body when written */
            f->response->content = (bytes){0};
        flow_done(c);
    }
    c->body_lent = false;
    c->state = C_WRITING_RESP;
    if (evbuffer_get_length(bufferevent_get_output(c->bev)) == 0)
        client_write_cb(c->bev, c);
    else if (!c->wio.bev)
        bufferevent_enable(c->bev, EV_WRITE);
    /* else bevio writes it before the loop polls again, then calls
     * client_write_cb */
}

static void free_lent(const void *data, size_t len, void *arg)
{
    (void)data;
    (void)len;
    free(arg);
}

/* A streamed response ended: its head and body are out already, so the
 * response hook can only look. */
static void deliver_streamed_or_close(cconn *c)
{
    flow *f = c->f;
    flow_response *resp = f->response;
    run_hook(c, SCRIPT_HOOK_RESPONSE);
    c->streaming = c->stream_paused = false;
    if (f->killed) {
        kill_or_close(c);
        return;
    }
    if (!resp->timestamp_end)
        resp->timestamp_end = flow_now();
    struct evbuffer *out = bufferevent_get_output(c->bev);
    bytes empty = {0};
    if (c->stream_chunked && h1_write_body(out, &empty, true, &resp->trailers) < 0) {
        cconn_free(c);
        return;
    }
    response_queued(c);
}

static void deliver_response_or_close(cconn *c)
{
    flow *f = c->f;
    if (c->streaming) {
        deliver_streamed_or_close(c);
        return;
    }
    addons_response(c->w->sh->addons, f);  /* C addons before Lua */
    if (run_hook(c, SCRIPT_HOOK_RESPONSE) < 0) {
        hook_failed_or_close(c);
        return;
    }
    if (f->killed) {
        kill_or_close(c);
        return;
    }
    flow_response *resp = f->response;
    if (!resp) {  /* a response hook cannot take the response away */
        upstream_failed_or_close(c, 502, "response removed by a script");
        return;
    }
    if (!resp->http_version)
        resp->http_version = strdup("HTTP/1.1");
    if (!resp->timestamp_start)
        resp->timestamp_start = flow_now();
    if (!resp->timestamp_end)
        resp->timestamp_end = flow_now();
    bool head = strcmp(f->request->method, "HEAD") == 0;
    bool no_body = head || status_has_no_body(resp->status_code);
    bool chunked = !no_body && h1_is_chunked(&resp->headers);
    if (!no_body)
        h1_fix_length(&resp->headers, resp->content.len, true);
    if (hdrs_has_token(&resp->headers, "connection", "close"))
        c->keep_alive = false;
    struct evbuffer *out = bufferevent_get_output(c->bev);
    bytes empty = {0};
    /* A large body goes out by reference instead of being copied into the
     * output: the flow reads it until it is recorded (response_queued),
     * then the output owns it. */
    c->body_lent = !no_body && !chunked && resp->content.len >= LEND_MIN && !c->upgrade_after_write;
    bool ok;
    if (c->body_lent)
        ok = h1_write_response_head(out, resp) == 0 &&
             evbuffer_add_reference(out, resp->content.p, resp->content.len, free_lent, resp->content.p) == 0;
    else if (chunked)
        ok = h1_write_response_head(out, resp) == 0 && h1_write_body(out, &resp->content, true, &resp->trailers) == 0;
    else /* a small body leaves with its head: one chain, one TLS record */
        ok = h1_write_response(out, resp, no_body ? &empty : &resp->content) == 0;
    if (!ok) {
        c->body_lent = false;
        cconn_free(c);
        return;
    }
    response_queued(c);
}

/* The WebSocket connection closed: its flow is finished now. */
static void ws_relay_done(void *owner)
{
    cconn *c = owner;
    c->f->client.timestamp_end = c->f->server.timestamp_end = flow_now();
    proxy_flow_finished(c->w->sh, c->f);
    flow_done(c);
    bufferevent_setcb(c->bev, client_read_cb, client_write_cb, client_event_cb, c);
    /* the client may still be sending: closing with its bytes unread would
     * reset the connection and lose the close frame still queued for it */
    c->linger = true;
    close_after_write(c);
}

/* Response written: next request, a protocol switch, or the end. */
static void exchange_done_or_close(cconn *c)
{
    if (c->upgrade_after_write && (c->peer = exch_take_bev(&c->x))) {
        c->upgrade_after_write = false;
        if (c->f && c->f->websocket) {
            c->state = C_RELAY;
            plain_h1_off(c);   /* the relay's callbacks from now on */
            c->ws = wsrelay_start(c->bev, c->peer, c->f, c->w->scripts, c->w->sh->o->body_size_limit,
                                  ws_relay_done, c);
            if (!c->ws) {
                cconn_free(c);
                return;
            }
            c->peer = NULL; /* the relay owns it */
            return;
        }
        start_relay(c);
        return;
    }
    if (c->f && c->f->websocket) { /* switched, but the server is gone */
        flow_fail(c, "WebSocket: server disconnected");
        close_after_write(c);
        return;
    }
    if (!c->keep_alive || c->w->stopping) {
        close_after_write(c);
        return;
    }
    c->state = C_READ_REQ;
    /* The kept upstream connection is idle: bytes it sends now answer no
     * request, and reusing it would hand them to the next one (response
     * splitting), so such a connection is dropped. */
    exch_watch_idle(&c->x);
    set_client_timeout(c, c->w->sh->o->idle_timeout);
    bufferevent_enable(c->bev, EV_READ);
    process_client_or_close(c);
}

/* ---- client callbacks --------------------------------------------------- */

static void client_read_cb(struct bufferevent *bev, void *arg)
{
    cconn *c = arg;
    if (c->state == C_LINGER) {
        struct evbuffer *in = bufferevent_get_input(bev);
        evbuffer_drain(in, evbuffer_get_length(in));
        return;
    }
    if (c->state == C_RELAY) {
        if (c->peer)
            evbuffer_add_buffer(bufferevent_get_output(c->peer), bufferevent_get_input(bev));
        return;
    }
    if (c->state == C_H2) {
        if (h2proxy_on_read(c->h2) < 0)
            cconn_free(c);
        return;
    }
    if (c->state == C_READ_REQ)
        process_client_or_close(c);
    else if (c->state == C_SOCKS)
        socks_read_or_close(c);
}

/* After an error answer the client may still be sending (a huge header,
 * a body we refused).  Closing at once would make the kernel send RST and
 * the client could lose our answer, so shut down our side and discard its
 * input for a short while first (what nginx calls lingering close). */
static void linger_or_close(cconn *c)
{
    /* over TLS too: every record is on the wire by now (client_unsent),
     * so the FIN follows them; the client sees no close_notify */
    struct bufferevent *wire = bufferevent_get_underlying(c->bev);
    if (!c->linger || shutdown(c->fd, SHUT_WR) < 0) {
        cconn_free(c);
        return;
    }
    c->state = C_LINGER;
    evbuffer_drain(bufferevent_get_input(c->bev), evbuffer_get_length(bufferevent_get_input(c->bev)));
    struct timeval tv = {2, 0};
    bufferevent_set_timeouts(c->bev, &tv, NULL);
    if (wire)
        bufferevent_set_timeouts(wire, &tv, NULL);
    bufferevent_enable(c->bev, EV_READ);
}

static void client_write_cb(struct bufferevent *bev, void *arg)
{
    cconn *c = arg;
    if (c->state == C_H2) {
        if (h2proxy_on_write(c->h2) < 0)
            cconn_free(c);
        return;
    }
    if (evbuffer_get_length(bufferevent_get_output(bev)) != 0)
        return;
    /* over TLS, closing waits for the records too (client_wire_drained) */
    if (c->state == C_CLOSING && client_unsent(c) != 0)
        return;
    bevio_resume(&c->wio);
    switch (c->state) {
    case C_WAIT_UPSTREAM:
        if (c->stream_paused) {  /* the slow client caught up */
            c->stream_paused = false;
            exch_pause(&c->x, false);
        }
        return;
    case C_CLOSING:
        linger_or_close(c);
        return;
    case C_WRITING_RESP:
        exchange_done_or_close(c);
        return;
    case C_TUNNEL_SETUP:
        tunnel_start_or_close(c);
        return;
    default:
        return;
    }
}

static void client_event_cb(struct bufferevent *bev, short what, void *arg)
{
    cconn *c = arg;
    if ((what & BEV_EVENT_EOF) && !(what & (BEV_EVENT_ERROR | BEV_EVENT_TIMEOUT)) &&
        (c->state == C_WAIT_UPSTREAM || c->state == C_WRITING_RESP)) {
        /* a client that half-closed after its request (shutdown(SHUT_WR))
         * still gets the answer; then the connection closes.  (Deferred
         * callbacks merge events: an EOF may come with a write error.) */
        c->keep_alive = false;
        return;
    }
    if (what & BEV_EVENT_CONNECTED) {
        if (c->state == C_TLS_HANDSHAKE) {
            SSL *ssl = bufferevent_openssl_get_ssl(bev);
            tls_fill_conn_info(ssl, &c->info, false);
            c->info.timestamp_tls_setup = flow_now();
            c->in_tunnel = c->w->sh->o->mode != MODE_REVERSE;
            c->state = C_READ_REQ;
            set_client_timeout(c, c->w->sh->o->idle_timeout);
            if (c->wio.bev) /* HTTP/1 reads on during exchanges, as plain */
                bufferevent_setwatermark(c->bev, EV_READ, 0, CLIENT_INPUT_MAX);
            if (c->info.alpn && strcmp(c->info.alpn, "h2") == 0)
                start_h2_or_close(c);
            else
                process_client_or_close(c);
        }
        return;
    }
    if (c->state == C_TLS_HANDSHAKE) {
        char addr[128];
        printer_format_address(c->info.address_host, c->info.address_port, addr, sizeof addr);
        unsigned long e = bufferevent_get_openssl_error(bev);
        char es[200] = "connection closed";
        if (e)
            ERR_error_string_n(e, es, sizeof es);
        log_info("%s: client TLS handshake failed for %s: %s (does the client trust the mitmlua CA?)",
                 addr, c->tunnel_host ? c->tunnel_host : "?", es);
        cconn_free(c);
        return;
    }
    if (c->state == C_RELAY) {
        if (c->peer)
            evbuffer_add_buffer(bufferevent_get_output(c->peer), bufferevent_get_input(bev));
        cconn_free(c);
        return;
    }
    if (c->state == C_H2 && (what & BEV_EVENT_TIMEOUT) && !h2proxy_idle(c->h2)) {
        /* idle client, busy streams: the timeout is the upstream's to enforce */
        bufferevent_enable(bev, EV_READ | EV_WRITE);
        return;
    }
    /* EOF mid-request means the client gave up (a request body is never
     * close-delimited, RFC 9112 §6.3): cconn_free fails the flow. */
    if ((what & BEV_EVENT_TIMEOUT) && c->state == C_READ_REQ && c->f &&
        h1_parser_started(c->parser) && c->f->request->method) {
        send_simple_response(c, 408, "request timed out", true);
        flow_fail(c, "client timed out sending the request");
        close_after_write(c);
        return;
    }
    cconn_free(c);
}

/* ---- accepting ---------------------------------------------------------- */

static void accept_cb(struct evconnlistener *lis, evutil_socket_t fd, struct sockaddr *sa, int salen,
                      void *arg)
{
    worker *w = arg;
    if (!guard_admit_try(&w->admit)) {
        evutil_closesocket(fd);   /* max_connections: the client sees a close */
        return;
    }
    cconn *c = calloc(1, sizeof *c);
    if (!c) {
        guard_admit_release(&w->admit);
        evutil_closesocket(fd);
        return;
    }
    c->admitted = true;
    c->w = w;
    c->fd = fd;
    exch_init(&c->x, w, &h1_exch_ops, c);
    c->next = w->conns;
    if (w->conns)
        w->conns->prev = c;
    w->conns = c;
    char ip[INET6_ADDRSTRLEN] = "";
    uint16_t port = 0;
    if (sa->sa_family == AF_INET) {
        struct sockaddr_in *a = (struct sockaddr_in *)sa;
        inet_ntop(AF_INET, &a->sin_addr, ip, sizeof ip);
        port = ntohs(a->sin_port);
    } else if (sa->sa_family == AF_INET6) {
        struct sockaddr_in6 *a = (struct sockaddr_in6 *)sa;
        inet_ntop(AF_INET6, &a->sin6_addr, ip, sizeof ip);
        port = ntohs(a->sin6_port);
    }
    flow_strset(&c->info.address_host, ip);
    c->info.address_port = port;
    c->info.timestamp_start = flow_now();
    const char *blocked = block_client(sa, w->sh->o->block_global, w->sh->o->block_private);
    if (blocked) {
        log_warn("client connection from %s killed by %s option", ip, blocked);
        cconn_free(c);
        return;
    }
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    static const h1_events cev = {on_request_head, on_request_body};
    c->parser = h1_parser_new_request(&w->req_limits, &cev, c);
    c->bev = bufferevent_socket_new(w->base, fd, BEV_OPTS);
    if (!c->parser || !c->bev) {
        cconn_free(c);
        return;
    }
    c->state = C_READ_REQ;
    bufferevent_setcb(c->bev, client_read_cb, client_write_cb, client_event_cb, c);
    set_client_timeout(c, w->sh->o->idle_timeout);
    bufferevent_enable(c->bev, EV_READ | EV_WRITE);
    /* failing that, libevent writes as usual */
    if (bevio_attach(&c->wio, w->base, c->bev, client_write_cb, c) == 0)
        bufferevent_setwatermark(c->bev, EV_READ, 0, CLIENT_INPUT_MAX);
    mode_accept_or_close(c);
}

/* ---- workers ------------------------------------------------------------ */

/* Stop gently: no new connections, idle ones closed now, exchanges in
 * progress may finish (their responses written, their flows recorded) for
 * up to two seconds. */
static void stop_now(void *arg)
{
    worker *w = arg;
    w->stopping = true;
    guard_listener_free(w->guard);
    w->guard = NULL;
    if (w->listener) {
        evconnlistener_free(w->listener);
        w->listener = NULL;
    }
    for (cconn *c = w->conns, *next; c; c = next) {
        next = c->next;
        if ((c->state == C_READ_REQ && !c->f) || c->state == C_TUNNEL_PEEK || c->state == C_LINGER ||
            c->state == C_RELAY || c->state == C_SOCKS || c->state == C_DIAL ||
            (c->state == C_H2 && h2proxy_idle(c->h2)))
            cconn_free(c);
    }
    struct timeval grace = {2, 0};
    event_base_loopexit(w->base, w->conns ? &grace : NULL);
}

/* The eventfd was written: run what other threads asked for. */
static void wake_cb(evutil_socket_t fd, short what, void *arg)
{
    (void)what;
    worker *w = arg;
    uint64_t n;
    if (read(fd, &n, sizeof n) < 0 && errno != EAGAIN)
        log_debug("worker %d: reading its eventfd: %s", w->index, strerror(errno));
    struct worker_call calls[sizeof w->calls / sizeof *w->calls];
    pthread_mutex_lock(&w->calls_lock);
    size_t k = w->ncalls;
    memcpy(calls, w->calls, k * sizeof *calls);
    w->ncalls = 0;
    pthread_mutex_unlock(&w->calls_lock);
    for (size_t i = 0; i < k; i++)
        calls[i].fn(calls[i].arg);
}

int worker_call(worker *w, void (*fn)(void *), void *arg)
{
    if (!w || !w->wake_ev)
        return -1;
    pthread_mutex_lock(&w->calls_lock);
    bool room = w->ncalls < sizeof w->calls / sizeof *w->calls;
    if (room)
        w->calls[w->ncalls++] = (struct worker_call){fn, arg};
    pthread_mutex_unlock(&w->calls_lock);
    uint64_t one = 1;
    if (!room || write(w->wake_fd, &one, sizeof one) != sizeof one)
        return -1;
    return 0;
}

static int resolve_listen(const char *host, int port, struct sockaddr_storage *ss, socklen_t *len,
                          char *err, size_t errsz)
{
    struct evutil_addrinfo hints = {0}, *res = NULL;
    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = SOCK_STREAM;
    hints.ai_flags = EVUTIL_AI_PASSIVE | EVUTIL_AI_ADDRCONFIG;
    char ps[16];
    snprintf(ps, sizeof ps, "%d", port);
    int rc = evutil_getaddrinfo(host, ps, &hints, &res);
    if (rc != 0 || !res) {
        snprintf(err, errsz, "cannot listen on %s: %s", host, evutil_gai_strerror(rc));
        return -1;
    }
    memcpy(ss, res->ai_addr, res->ai_addrlen);
    *len = (socklen_t)res->ai_addrlen;
    evutil_freeaddrinfo(res);
    return 0;
}

worker *worker_new(const proxy_shared *sh, int index, char *err, size_t errsz)
{
    const opts *o = sh->o;
    worker *w = calloc(1, sizeof *w);
    if (!w) {
        snprintf(err, errsz, "out of memory");
        return NULL;
    }
    w->sh = sh;
    w->index = index;
    w->wake_fd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    pthread_mutex_init(&w->calls_lock, NULL);
    w->port = o->listen_port;
    w->req_limits = (h1_limits){.max_head = o->max_header_size, .max_headers = (size_t)o->max_headers,
                                .max_body = o->body_size_limit};
    w->resp_limits = w->req_limits;
    w->admit = (guard_admit){.open = (atomic_int *)&sh->n_clients, .max = o->max_connections};
    /* With the changelist, epoll_ctl calls are batched before each wait,
     * and an interest added and removed in the same round (a bufferevent
     * enabling and disabling reads or writes around one exchange) costs
     * nothing.  Profiles showed 8 epoll_ctl per proxied request without it. */
    struct event_config *cfg = event_config_new();
    if (cfg) {
        event_config_set_flag(cfg, EVENT_BASE_FLAG_EPOLL_USE_CHANGELIST);
        w->base = event_base_new_with_config(cfg);
        event_config_free(cfg);
    }
    if (!w->base)
        w->base = event_base_new();
    if (!w->base) {
        snprintf(err, errsz, "cannot create an event loop");
        goto fail;
    }
    w->dns = evdns_base_new(w->base, EVDNS_BASE_INITIALIZE_NAMESERVERS | EVDNS_BASE_DISABLE_WHEN_INACTIVE);
    if (!w->dns)
        w->dns = evdns_base_new(w->base, EVDNS_BASE_DISABLE_WHEN_INACTIVE);
    if (!w->dns) {
        snprintf(err, errsz, "cannot set up DNS resolution");
        goto fail;
    }
    evdns_base_set_option(w->dns, "timeout:", "3");
    evdns_base_set_option(w->dns, "attempts:", "2");
    evdns_base_set_option(w->dns, "randomize-case:", "0");
    w->ignore_hosts = hostmatch_new(o->ignore_hosts, o->nignore_hosts, "ignore_hosts", err, errsz);
    w->allow_hosts = w->ignore_hosts ? hostmatch_new(o->allow_hosts, o->nallow_hosts, "allow_hosts", err, errsz) : NULL;
    w->tcp_hosts = w->allow_hosts ? hostmatch_new(o->tcp_hosts, o->ntcp_hosts, "tcp_hosts", err, errsz) : NULL;
    if (!w->tcp_hosts)
        goto fail;
    if (o->upstream_auth) {
        w->upstream_auth = dial_basic_auth(o->upstream_auth);
        size_t n = w->upstream_auth ? strlen(w->upstream_auth) + 32 : 0;
        if (n && (w->upstream_auth_line = malloc(n)))
            snprintf(w->upstream_auth_line, n, "Proxy-Authorization: %s\r\n", w->upstream_auth);
    } else {
        w->upstream_auth_line = strdup("");
    }
    if (!w->upstream_auth_line) {
        snprintf(err, errsz, "out of memory");
        goto fail;
    }
    if (o->mode == MODE_REVERSE)
        flow_authority(o->mode_url.scheme, o->mode_url.host, o->mode_url.port, w->reverse_host,
                       sizeof w->reverse_host);
    w->wake_ev = w->wake_fd >= 0 ? event_new(w->base, w->wake_fd, EV_READ | EV_PERSIST, wake_cb, w) : NULL;
    if (!w->wake_ev || event_add(w->wake_ev, NULL) < 0) {
        snprintf(err, errsz, "cannot set up the worker's wake-up event%s%s", w->wake_fd < 0 ? ": " : "",
                 w->wake_fd < 0 ? strerror(errno) : "");
        goto fail;
    }
    if (o->server) {
        struct sockaddr_storage ss;
        socklen_t sl;
        if (resolve_listen(o->listen_host, o->listen_port, &ss, &sl, err, errsz) < 0)
            goto fail;
        unsigned flags = LEV_OPT_CLOSE_ON_FREE | LEV_OPT_REUSEABLE | LEV_OPT_CLOSE_ON_EXEC;
        if (o->workers > 1)
            flags |= LEV_OPT_REUSEABLE_PORT;
        w->listener = evconnlistener_new_bind(w->base, accept_cb, w, flags, 1024, (struct sockaddr *)&ss, (int)sl);
        if (!w->listener) {
            int e = EVUTIL_SOCKET_ERROR();
            snprintf(err, errsz, "cannot listen on %s port %d: %s", o->listen_host, o->listen_port,
                     evutil_socket_error_to_string(e));
            goto fail;
        }
        if (!(w->guard = guard_listener_new(w->base, w->listener, accept_cb, w))) {
            snprintf(err, errsz, "out of memory");
            goto fail;
        }
        struct sockaddr_storage bound;
        socklen_t bl = sizeof bound;
        if (getsockname(evconnlistener_get_fd(w->listener), (struct sockaddr *)&bound, &bl) == 0)
            w->port = ntohs(bound.ss_family == AF_INET6 ? ((struct sockaddr_in6 *)&bound)->sin6_port
                                                         : ((struct sockaddr_in *)&bound)->sin_port);
    }
    if (o->nscripts) {
        w->scripts = script_env_new((const char *const *)o->scripts, o->nscripts, err, errsz);
        if (!w->scripts)
            goto fail;
        script_env_set_timeout(w->scripts, o->script_timeout);
        script_env_set_exit(w->scripts, proxy_request_exit, (void *)sh);
    }
    return w;
fail:
    worker_join_free(w);
    return NULL;
}

int worker_port(const worker *w) { return w->port; }

static void *worker_main(void *arg)
{
    worker *w = arg;
    event_base_dispatch(w->base);
    return NULL;
}

int worker_start(worker *w)
{
    if (pthread_create(&w->thread, NULL, worker_main, w) != 0)
        return -1;
    w->started = true;
    return 0;
}

void worker_stop(worker *w)
{
    if (w && worker_call(w, stop_now, w) < 0)
        log_error("worker %d: cannot ask it to stop", w->index);
}

void worker_join_free(worker *w)
{
    if (!w)
        return;
    if (w->started)
        pthread_join(w->thread, NULL);
    while (w->conns)
        cconn_free(w->conns);
    if (w->scripts)
        script_env_free(w->scripts);
    hostmatch_free(w->ignore_hosts);
    hostmatch_free(w->allow_hosts);
    guard_listener_free(w->guard);
    hostmatch_free(w->tcp_hosts);
    free(w->upstream_auth);
    free(w->upstream_auth_line);
    if (w->listener)
        evconnlistener_free(w->listener);
    if (w->wake_ev)
        event_free(w->wake_ev);
    if (w->wake_fd >= 0)
        close(w->wake_fd);
    pthread_mutex_destroy(&w->calls_lock);
    if (w->dns)
        evdns_base_free(w->dns, 0);
    if (w->base)
        event_base_free(w->base);
    free(w);
}
