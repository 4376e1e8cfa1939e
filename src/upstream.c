/* upstream.c — one request's trip to its server and back (see upstream.h).
 *
 *   exch_start ─▶ reuse or connect (TCP │ TCP+CONNECT via upstream proxy)
 *              ─▶ TLS (verified; ALPN h2,http/1.1 or http/1.1)
 *              ─▶ HTTP/1.1: request bytes ─h1 parser─▶ response
 *                 HTTP/2:   a stream on an h2.c client session ─▶ response
 *              ─▶ ops->done │ ops->failed
 *
 * A kept connection is idle between exchanges and goes on reading: for
 * HTTP/1.1 any byte or event then simply closes it (and leaving the read
 * event in epoll saves a system call per exchange); for HTTP/2, PING,
 * SETTINGS and GOAWAY are its business, and it is dropped after GOAWAY or
 * an error.  A kept connection that the server closed just as it was
 * reused is retried once on a new one, and so is a stream the server
 * refused (REFUSED_STREAM, or past a GOAWAY's last stream).  Exchanges of
 * one pool (an HTTP/2 client's streams) share HTTP/2 connections, one
 * stream each: see the HTTP/2 section. */
#include "upstream.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>

#include <event2/buffer.h>
#include <event2/bufferevent_ssl.h>
#include <event2/dns.h>
#include <event2/util.h>
#include <openssl/err.h>

#include "bevbulk.h"
#include "bevio.h"
#include "dial.h"
#include "h1.h"
#include "h2.h"
#include "linger.h"
#include "log.h"
#include "printer.h"
#include "script.h"
#include "tls.h"
#include "tlsup.h"
#include "tlsopts.h"
#include "upconnect.h"

#define BEV_OPTS (BEV_OPT_DEFER_CALLBACKS)
/* A response body is allocated whole from its Content-Length up to this
 * size (larger ones grow as they come: the length is the server's word). */
#define RESERVE_MAX ((uint64_t)64 << 20)
/* HTTP/2: frames queued towards the server at most, beyond what the
 * socket took (the rest waits in nghttp2 and the request's copy). */
#define H2_OUT_HIGH (256u * 1024)

enum uphase {
    U_TCP,             /* connecting TCP */
    U_PROXY_CONNECT,   /* waiting for the upstream proxy's answer to CONNECT */
    U_TLS,             /* TLS handshake (over the upstream proxy's tunnel, if any) */
    U_READY,           /* requests may be sent */
};

struct upstream {
    struct bufferevent *bev;
    bool plain;              /* bev is a plain socket (no TLS filter) */
    bevio wio;               /* plain: requests written directly */
    enum uphase phase;
    bool via_proxy;          /* upstream mode: tunnel through the proxy */
    flow_response *connect_resp;
    h1_parser *parser;
    char *host;
    uint16_t port;
    bool tls;
    bool connected;
    bool announced;          /* server_connected ran: server_disconnected will */
    bool reusable;
    bool got_bytes;          /* any byte of the current response seen */
    unsigned requests;       /* exchanges sent on this connection */
    flow_conn info;          /* copied into each flow that uses it */
    worker *w;
    exch *users;             /* the exchanges holding it (x->up): one, or a pool's */
    int busy;                /* owners' callbacks running: freeing waits */
    bool dead;               /* ... and it was let go meanwhile */
    /* HTTP/2, when the server chose it in ALPN */
    bool offer_h2;           /* ALPN offered h2 */
    h2_conn *h2;
    bool broken;             /* the connection failed: no new stream */
    char *sni;               /* the SNI it was opened with (a pool matches it) */
    char *log_line;          /* -v: "CLIENT: server ... ADDR" once connected */
    exch_pool *pool;         /* the pool that may share it, or NULL */
    struct event *ping_ev;   /* http2_ping_keepalive's timer */
    double last_active;      /* HTTP/2: when a frame last went either way */
    upstream *pool_prev, *pool_next;
};

struct exch_pool {
    upstream *conns;         /* HTTP/2 connections its exchanges may share */
};

static void up_read_cb(struct bufferevent *bev, void *arg);
static void up_write_cb(struct bufferevent *bev, void *arg);
static void up_event_cb(struct bufferevent *bev, short what, void *arg);
static void connect_or_fail(exch *x);

static void pool_unlink(upstream *u);
static void pool_link(exch_pool *p, upstream *u);

/* A connection or TLS event of this server connection for the scripts
 * (flow: the one it was opened for, or NULL). */
static void server_event(upstream *u, const flow *f, enum script_hook h, const char *error)
{
    script_env *e = u->w ? u->w->scripts : NULL;
    if (!script_env_has_hook(e, h))
        return;
    script_conn_event ev = {.client = f ? &f->client : NULL, .server = &u->info, .error = error};
    script_env_conn_event(e, h, &ev);
}

static void upstream_free(upstream *u)
{
    if (!u)
        return;
    if (u->announced) {
        u->info.timestamp_end = flow_now();
        server_event(u, NULL, SCRIPT_HOOK_SERVER_DISCONNECTED, NULL);
    }
    bevio_detach(&u->wio);
    if (u->ping_ev)
        event_free(u->ping_ev);
    if (u->bev)
        bufferevent_free(u->bev);
    flow_response_free(u->connect_resp);
    h1_parser_free(u->parser);
    h2_conn_free(u->h2);
    pool_unlink(u);
    if (u->log_line)
        log_debug("%s", u->log_line);
    free(u->log_line);
    free(u->sni);
    free(u->host);
    flow_conn_clear(&u->info);
    free(u);
}

void exch_init(exch *x, worker *w, const exch_ops *ops, void *owner)
{
    memset(x, 0, sizeof *x);
    x->w = w;
    x->ops = ops;
    x->owner = owner;
    x->sid = -1;
}

static void h2_pause(exch *x, bool pause);

void exch_pause(exch *x, bool pause)
{
    if (!x->up || !x->up->bev)
        return;
    if (x->up->h2) {
        h2_pause(x, pause);
        return;
    }
    if (pause)
        bufferevent_disable(x->up->bev, EV_READ);
    else
        bufferevent_enable(x->up->bev, EV_READ);
}

void exch_watch_idle(exch *x)
{
    upstream *u = x->up;
    if (!u || !u->bev || x->f || u->h2) /* HTTP/2 reads all along */
        return;
    if (evbuffer_get_length(bufferevent_get_input(u->bev))) {
        exch_close(x);
        return;
    }
    bufferevent_enable(u->bev, EV_READ);  /* up_read_cb's idle branch drops it */
}

static void attach(exch *x, upstream *u)
{
    x->up = u;
    x->up_prev = NULL;
    x->up_next = u->users;
    if (u->users)
        u->users->up_prev = x;
    u->users = x;
}

static void detach(exch *x)
{
    upstream *u = x->up;
    if (x->up_prev)
        x->up_prev->up_next = x->up_next;
    else
        u->users = x->up_next;
    if (x->up_next)
        x->up_next->up_prev = x->up_prev;
    x->up_next = x->up_prev = NULL;
    x->up = NULL;
}

static void h2_give_up_stream(exch *x);
static bool h2_usable(const upstream *u);

void exch_close(exch *x)
{
    upstream *u = x->up;
    if (!u)
        return;
    if (u->h2)
        h2_give_up_stream(x); /* the pool's other streams go on */
    detach(x);
    if (u->users)
        return;
    if (u->busy)
        u->dead = true; /* freed when the callbacks return */
    else
        upstream_free(u);
}

void exch_release_unless_reusable(exch *x)
{
    if (x->up && !(x->up->h2 ? h2_usable(x->up) : x->up->reusable))
        exch_close(x);
}

void exch_close_after_write(exch *x)
{
    struct bufferevent *srv = exch_relay_bev(x);
    if (srv && bevio_unsent(srv) > 0)
        linger_add(&x->w->lingering, exch_take_bev(x), 5);
    else
        exch_close(x);
}

struct bufferevent *exch_take_bev(exch *x)
{
    if (!x->up)
        return NULL;
    bevio_detach(&x->up->wio);   /* the new owner's writes are libevent's */
    struct bufferevent *b = x->up->bev;
    x->up->bev = NULL;
    exch_close(x);
    return b;
}

/* The end of an exchange: the flow goes back to its owner. */
static void finish_done(exch *x)
{
    x->f = NULL;
    x->retried = false;
    x->avoid = NULL;
    x->ops->done(x);
}

static void finish_failed(exch *x, int status, const char *msg)
{
    log_debug("upstream failure: %s", msg);
    exch_close(x);
    if (x->f && x->f->response) {
        flow_response_free(x->f->response);
        x->f->response = NULL;
    }
    x->f = NULL;
    x->retried = false;
    x->avoid = NULL;
    x->ops->failed(x, status, msg);
}

/* ---- helpers ------------------------------------------------------------- */

void upstream_record_peer(struct bufferevent *bev, flow_conn *info)
{
    evutil_socket_t fd = bufferevent_getfd(bev);
    struct sockaddr_storage ss;
    socklen_t sl = sizeof ss;
    if (fd < 0 || getpeername(fd, (struct sockaddr *)&ss, &sl) != 0)
        return;
    char ip[INET6_ADDRSTRLEN] = "";
    uint16_t port = 0;
    if (ss.ss_family == AF_INET) {
        struct sockaddr_in *a = (struct sockaddr_in *)&ss;
        inet_ntop(AF_INET, &a->sin_addr, ip, sizeof ip);
        port = ntohs(a->sin_port);
    } else if (ss.ss_family == AF_INET6) {
        struct sockaddr_in6 *a = (struct sockaddr_in6 *)&ss;
        inet_ntop(AF_INET6, &a->sin6_addr, ip, sizeof ip);
        port = ntohs(a->sin6_port);
    }
    flow_strset(&info->peer_host, ip);
    info->peer_port = port;
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
}

const char *upstream_error_text(const opts *o, struct bufferevent *bev, const char *host, uint16_t port,
                                bool connected, bool tls, short what, char *buf, size_t n)
{
    int dns_err = bufferevent_socket_get_dns_error(bev);
    char hb[300];
    const char *h = flow_host_for_url(host, hb, sizeof hb);
    if (dns_err) {
        snprintf(buf, n, "DNS resolution failed for %s: %s", host, evutil_gai_strerror(dns_err));
        return buf;
    }
    if (what & BEV_EVENT_TIMEOUT) {
        if (!connected)
            snprintf(buf, n, "timed out connecting to %s:%u after %ds", h, port, o->connect_timeout);
        else
            snprintf(buf, n, "no response from %s:%u within read_timeout (%ds)", h, port, o->read_timeout);
        return buf;
    }
    if (tls && !connected) {
        SSL *ssl = bufferevent_openssl_get_ssl(bev);
        const char *v = ssl ? tlsup_verify_error(ssl) : NULL;
        if (v) {
            snprintf(buf, n, "upstream certificate verification failed for %s: %s", host, v);
            return buf;
        }
        unsigned long e = bufferevent_get_openssl_error(bev);
        if (e) {
            char es[200];
            char hint[120];
            ERR_error_string_n(e, es, sizeof es);
            tlsopts_version_hint(ssl, ERR_GET_REASON(e), hint, sizeof hint);
            snprintf(buf, n, "TLS handshake with %s:%u failed: %s%s", h, port, es, hint);
            return buf;
        }
    }
    int err = EVUTIL_SOCKET_ERROR();
    if (!connected) {
        snprintf(buf, n, "error connecting to %s:%u: %s", h, port,
                 err ? evutil_socket_error_to_string(err) : "connection closed");
    } else if (what & BEV_EVENT_EOF) {
        snprintf(buf, n, "server %s:%u closed the connection before a complete response", h, port);
    } else {
        snprintf(buf, n, "connection to %s:%u failed: %s", h, port,
                 err ? evutil_socket_error_to_string(err) : "reset");
    }
    return buf;
}

int upstream_connect(worker *w, struct bufferevent *bev, const char *host, uint16_t port, char *err,
                     size_t errsz)
{
    /* RFC 6761: .invalid never resolves; say so without asking DNS */
    size_t hl = strlen(host);
    if (hl >= 8 && strcasecmp(host + hl - 8, ".invalid") == 0) {
        snprintf(err, errsz, "DNS resolution failed for %s: name does not exist", host);
        return -1;
    }
    /* RFC 6761 §6.3: names under .localhost are loopback, without DNS */
    if (hl > 10 && strcasecmp(host + hl - 10, ".localhost") == 0)
        host = "127.0.0.1";
    int family = AF_UNSPEC;
    if (w->sh->o->connect_addr && dial_bind_source(bev, w->sh->o->connect_addr, &family, err, errsz) < 0)
        return -1;
    if (bufferevent_socket_connect_hostname(bev, w->dns, family, host, port) < 0) {
        upstream_error_text(w->sh->o, bev, host, port, false, false, BEV_EVENT_ERROR, err, errsz);
        return -1;
    }
    return 0;
}

/* ---- the request --------------------------------------------------------- */

static void fill_server_info(exch *x)
{
    flow_conn *d = &x->f->server, *i = &x->up->info;
    flow_strset(&d->address_host, i->address_host);
    d->address_port = i->address_port;
    flow_strset(&d->peer_host, i->peer_host);
    d->peer_port = i->peer_port;
    flow_strset(&d->sni, i->sni);
    flow_strset(&d->alpn, i->alpn);
    flow_strset(&d->tls_version, i->tls_version);
    flow_strset(&d->cipher, i->cipher);
    flow_strset(&d->cert_subject, i->cert_subject);
    flow_strset(&d->cert_issuer, i->cert_issuer);
    d->tls = i->tls;
    d->timestamp_start = i->timestamp_start;
    d->timestamp_tcp_setup = i->timestamp_tcp_setup;
    d->timestamp_tls_setup = i->timestamp_tls_setup;
}

static void send_request_h2(exch *x);

static void send_request(exch *x)
{
    upstream *u = x->up;
    flow *f = x->f;
    flow_request *r = f->request;
    const opts *o = x->w->sh->o;
    fill_server_info(x);
    if (x->opening) {   /* exch_open: the connection is all that was asked */
        bufferevent_set_timeouts(u->bev, NULL, NULL);
        finish_done(x);
        return;
    }
    u->requests++;
    u->got_bytes = false;
    if (u->h2) {
        send_request_h2(x);
        return;
    }
    struct evbuffer *out = bufferevent_get_output(u->bev);
    bool chunked = h1_is_chunked(&r->headers);
    if (h1_fix_length(&r->headers, r->content.len, false) < 0 ||
        h1_write_request_head(out, r, o->mode == MODE_UPSTREAM && !x->in_tunnel) < 0 ||
        h1_write_body(out, &r->content, chunked, &r->trailers) < 0) {
        finish_failed(x, 500, "out of memory");
        return;
    }
    if (!f->response && !(f->response = flow_response_new())) {
        finish_failed(x, 500, "out of memory");
        return;
    }
    h1_parser_begin_response(u->parser, f->response, strcmp(r->method, "HEAD") == 0);
    struct timeval tv = {o->read_timeout, 0};
    bufferevent_set_timeouts(u->bev, o->read_timeout ? &tv : NULL, o->read_timeout ? &tv : NULL);
    /* Connected now (the write event is no longer needed to see that):
     * a plain connection writes its requests directly (bevio.h). */
    if (u->plain && !u->wio.bev)
        (void)bevio_attach(&u->wio, x->w->base, u->bev, NULL, NULL);
    bufferevent_enable(u->bev, u->wio.bev ? EV_READ : EV_READ | EV_WRITE);
}

/* Switch this response to streaming: the head goes out now, with what
 * was buffered of the body, and nothing more is kept — unless
 * store_streamed_bodies, which keeps the whole body for the hooks and the
 * recording (stream_kept), whatever its size. */
static void start_stream(exch *x)
{
    flow_response *r = x->f->response;
    x->streaming = true;
    x->ops->stream_head(x);
    if (r->content.len)
        x->ops->stream_data(x, r->content.p, r->content.len);
    if (!x->w->sh->o->store_streamed_bodies)
        bytes_free(&r->content);
}

/* Bytes of a streamed body: passed on, and kept with store_streamed_bodies.
 * -1 when out of memory. */
static int stream_kept(exch *x, const char *p, size_t n)
{
    x->ops->stream_data(x, p, n);
    if (x->w->sh->o->store_streamed_bodies && x->f && x->f->response)
        return bytes_append(&x->f->response->content, p, n);
    return 0;
}

static bool stream_wanted(const exch *x, uint64_t size)
{
    uint64_t limit = x->w->sh->o->stream_large_bodies;
    return limit && x->ops->stream_head && size > limit;
}

static int on_response_head(exch *x)
{
    flow_response *r = x->f->response;
    if ((r->status_code >= 200 || r->status_code == 101) && x->ops->head && x->ops->head(x) < 0) {
        x->head_failed = true;
        return -1;
    }
    if (r->status_code >= 200 && strcmp(x->f->request->method, "HEAD") != 0 && r->status_code != 204 &&
        r->status_code != 304) {
        /* the parser has checked that a Content-Length is one number */
        const char *cl = hdrs_get(&r->headers, "content-length", NULL);
        uint64_t len = cl && !h1_is_chunked(&r->headers) ? strtoull(cl, NULL, 10) : 0;
        if (len && stream_wanted(x, len))
            start_stream(x);
        else if (len && len <= RESERVE_MAX && bytes_reserve(&r->content, (size_t)len) < 0)
            return -1;
    }
    return 0;
}

/* The HTTP/1 parser's callbacks: `ud` is the connection, whose one user
 * is the exchange (an HTTP/1.1 connection has one). */
static int h1_on_head(void *ud)
{
    upstream *u = ud;
    if (u->phase == U_PROXY_CONNECT)
        return 0;  /* the upstream proxy's answer to our CONNECT, not the flow's */
    return on_response_head(u->users);
}

static int h1_on_body(void *ud, const char *at, size_t n)
{
    upstream *u = ud;
    if (u->phase == U_PROXY_CONNECT)
        return -1; /* a 2xx to CONNECT has no body; anything else is refused */
    exch *x = u->users;
    if (x->streaming)
        return stream_kept(x, at, n);
    bytes *b = &x->f->response->content;
    if (bytes_append(b, at, n) < 0)
        return -1;
    if (stream_wanted(x, b->len))  /* chunked or close-delimited: known late */
        start_stream(x);
    return 0;
}

/* ---- connecting ---------------------------------------------------------- */

/* Wrap the connection in TLS toward the target.  The context offers
 * http/1.1 alone; h2 is offered per connection, where we can speak it. */
static SSL *new_ssl(exch *x, char *err, size_t errsz)
{
    static const unsigned char h2_alpn[] = "\x02h2\x08http/1.1";
    SSL_CTX *ctx = shared_client_ctx(x->w->sh);
    SSL *ssl = ctx ? SSL_new(ctx) : NULL;
    if (!ssl) {
        snprintf(err, errsz, "out of memory");
        return NULL;
    }
    if (tlsup_prepare(ssl, x->up->host, x->up->port, x->sni, err, errsz) < 0) {
        SSL_free(ssl);
        return NULL;
    }
    /* a raw relay's protocol is not HTTP: offer none (NULL clears the list) */
    if (x->opening && SSL_set_alpn_protos(ssl, NULL, 0) != 0) {
        snprintf(err, errsz, "cannot clear ALPN");
        SSL_free(ssl);
        return NULL;
    }
    if (x->up->offer_h2 && SSL_set_alpn_protos(ssl, h2_alpn, sizeof h2_alpn - 1) != 0) {
        snprintf(err, errsz, "cannot offer h2 in ALPN");
        SSL_free(ssl);
        return NULL;
    }
    return ssl;
}

static int h2_begin(exch *x);
static void h2_keepalive_start(upstream *u);
static upstream *pool_find(const exch *x, const char *host, uint16_t port, bool tls, bool via_proxy);

static void upstream_hold(upstream *u);
static void upstream_unhold(upstream *u);

/* The connection failed before it was ready: every exchange waiting for
 * it fails (the one that opened it, and those of its pool that chose to
 * wait for it rather than open their own). */
static void fail_users(upstream *u, int status, const char *msg)
{
    upstream_hold(u);
    while (!u->dead && u->users)
        finish_failed(u->users, status, msg);
    upstream_unhold(u);
}

/* The connection is ready: over HTTP/2 every waiting exchange gets its
 * stream; an HTTP/1.1 connection serves one, the others find their own. */
static void dispatch_connected(upstream *u)
{
    upstream_hold(u);
    if (u->h2) {
        for (exch *x; !u->dead && (x = u->users);) {
            while (x && !(x->f && x->sid < 0))
                x = x->up_next;
            if (!x)
                break;
            send_request(x);
        }
    } else {
        pool_unlink(u);
        exch *keep = u->users;
        send_request(keep);
        for (exch *x; !u->dead && (x = u->users);) {
            while (x && x == keep) /* a pointer compared: keep may be gone */
                x = x->up_next;
            if (!x)
                break;
            exch_close(x); /* no stream: only lets go */
            connect_or_fail(x);
        }
    }
    upstream_unhold(u);
}

/* mitmdump's lines: "CLIENT: server connect HOST:PORT (IP:PORT)", the
 * address in parentheses when it is not the host itself; the disconnect
 * line is kept for upstream_free. */
static void log_server_connect(upstream *u, const flow *f)
{
    char cl[300], addr[700], ip[300], line[1100];
    printer_format_address(f ? f->client.address_host : NULL, f ? f->client.address_port : 0, cl, sizeof cl);
    printer_format_address(u->host, u->port, addr, sizeof addr);
    if (u->info.peer_host && strcmp(u->info.peer_host, u->host) != 0) {
        printer_format_address(u->info.peer_host, u->info.peer_port, ip, sizeof ip);
        size_t l = strlen(addr);
        snprintf(addr + l, sizeof addr - l, " (%s)", ip);
    }
    log_debug("%s: server connect %s", cl, addr);
    snprintf(line, sizeof line, "%s: server disconnect %s", cl, addr);
    free(u->log_line);
    u->log_line = strdup(line);
}

static void start_tls(exch *x);
static void up_wire_drained(struct bufferevent *wire, void *arg);

static void on_connected(exch *x)
{
    upstream *u = x->up;
    double now = flow_now();
    if (u->phase == U_TCP) {
        upstream_record_peer(u->bev, &u->info);
        u->info.timestamp_tcp_setup = now;
        u->announced = true;
        server_event(u, x->f, SCRIPT_HOOK_SERVER_CONNECTED, NULL);
        if (u->via_proxy) {
            /* ask the upstream proxy for a tunnel to the real target */
            char err[300];
            if (upconnect_write(x->w, x->f ? &x->f->client : NULL, u->host, u->port, bufferevent_get_output(u->bev),
                                err, sizeof err) < 0) {
                fail_users(u, 502, err);
                return;
            }
            u->phase = U_PROXY_CONNECT;
            u->connect_resp = flow_response_new();
            h1_parser_begin_response(u->parser, u->connect_resp, true);
            return;
        }
        if (u->tls) {
            start_tls(x);
            return;
        }
    }
    u->phase = U_READY;
    u->connected = true;
    if (log_get_level() >= LOG_DEBUG)
        log_server_connect(u, x->f);
    if (u->tls) {
        SSL *ssl = bufferevent_openssl_get_ssl(u->bev);
        tls_fill_conn_info(ssl, &u->info, true);
        u->info.timestamp_tls_setup = now;
        if (SSL_session_reused(ssl) && log_get_level() >= LOG_DEBUG) /* tests look for it */
            log_debug("server TLS session resumed: %s:%u", u->host, (unsigned)u->port);
        /* the handshake ran inside libevent: both events now, in order */
        server_event(u, x->f, SCRIPT_HOOK_TLS_START_SERVER, NULL);
        server_event(u, x->f, SCRIPT_HOOK_TLS_ESTABLISHED_SERVER, NULL);
        if (u->info.alpn && strcmp(u->info.alpn, "h2") == 0 && h2_begin(x) < 0) {
            fail_users(u, 500, "out of memory");
            return;
        }
        if (u->h2)
            h2_keepalive_start(u);
    }
    dispatch_connected(u);
}

/* The upstream proxy answered our CONNECT. */
static void on_proxy_connect_done(exch *x)
{
    upstream *u = x->up;
    int st = u->connect_resp->status_code;
    flow_response_free(u->connect_resp);
    u->connect_resp = NULL;
    if (st < 200 || st > 299) {
        char msg[300];
        snprintf(msg, sizeof msg, "upstream proxy refused CONNECT to %s:%u with status %d", u->host, u->port, st);
        fail_users(u, 502, msg);
        return;
    }
    if (!u->tls) {
        on_connected(x);
        return;
    }
    start_tls(x);
}

/* TCP is up (through the upstream proxy's tunnel, if any): TLS starts
 * over it as a filter, so that the socket underneath is read in large
 * pieces (bevbulk.h) and OpenSSL takes its records from memory, not with
 * two reads of the socket for each. */
static void start_tls(exch *x)
{
    upstream *u = x->up;
    struct bufferevent *wire = u->bev;
    char err[256];
    SSL *ssl = new_ssl(x, err, sizeof err);
    if (!ssl) {
        fail_users(u, 502, err);
        return;
    }
    struct bufferevent *b = bufferevent_openssl_filter_new(x->w->base, u->bev, ssl, BUFFEREVENT_SSL_CONNECTING,
                                                           BEV_OPT_CLOSE_ON_FREE | BEV_OPTS);
    if (!b) {
        SSL_free(ssl);
        fail_users(u, 500, "out of memory");
        return;
    }
    bufferevent_openssl_set_allow_dirty_shutdown(b, 1);
    u->bev = b;
    u->plain = false;
    u->phase = U_TLS;
    /* OpenSSL's records leave the socket directly (bevio.h); failing
     * that, libevent writes them */
    if (!u->wio.bev)
        (void)bevio_attach_wire(&u->wio, x->w->base, wire, up_wire_drained, u);
    bufferevent_setcb(b, up_read_cb, up_write_cb, up_event_cb, u);
    struct timeval tv = {x->w->sh->o->connect_timeout, 0};
    bufferevent_set_timeouts(b, &tv, &tv);
    bufferevent_enable(b, EV_READ | EV_WRITE);
}

void exch_start(exch *x, flow *f)
{
    x->opening = false;
    x->f = f;
    x->upgraded = false;
    x->streaming = false;
    x->head_failed = false;
    connect_or_fail(x);
}

void exch_open(exch *x, flow *f, const char *host, uint16_t port, bool tls)
{
    exch_close(x);
    x->opening = true;
    x->open_host = host;
    x->open_port = port;
    x->open_tls = tls;
    x->in_tunnel = true;   /* in upstream mode: through the proxy's tunnel */
    x->f = f;
    x->upgraded = false;
    x->streaming = false;
    x->head_failed = false;
    connect_or_fail(x);
}

struct bufferevent *exch_relay_bev(exch *x)
{
    if (!x->up)
        return NULL;
    bevio_detach(&x->up->wio);   /* the relay's writes are libevent's */
    x->up->reusable = false;
    return x->up->bev;
}

static void connect_or_fail(exch *x)
{
    worker *w = x->w;
    const opts *o = w->sh->o;
    flow_request *r = x->f->request;
    /* where the request goes (target) and where the TCP connection goes */
    const char *host = x->opening ? x->open_host : r->host, *conn_host = host;
    uint16_t port = x->opening ? x->open_port : r->port, conn_port = port;
    bool tls = x->opening ? x->open_tls : strcmp(r->scheme, "https") == 0;
    bool via_proxy = false;
    if (o->mode == MODE_UPSTREAM) {
        conn_host = o->mode_url.host;
        conn_port = o->mode_url.port;
        if (x->in_tunnel) {
            via_proxy = true;
        } else {
            host = conn_host;
            port = conn_port;
            tls = strcmp(o->mode_url.scheme, "https") == 0;
        }
    }
    /* HTTP/2 only to the origin itself (not to an upstream proxy that
     * forwards absolute-form requests), and never for an Upgrade request:
     * HTTP/2 has no protocol switch (RFC 9113 §8.6), so a WebSocket
     * handshake needs an HTTP/1.1 connection. */
    bool upgrade = x->opening || hdrs_get(&r->headers, "upgrade", NULL) != NULL;
    bool offer_h2 = o->http2 && tls && (via_proxy || o->mode != MODE_UPSTREAM) && !upgrade;
    upstream *u = x->up;
    if (u && u->port == port && u->tls == tls && strcmp(u->host, host) == 0 &&
        (u->h2 ? !upgrade && h2_usable(u) : u->reusable)) {
        send_request(x);
        return;
    }
    exch_close(x);
    /* a stream on a connection the pool has (for a retry, another one
     * than the connection that refused it) */
    if (offer_h2 && (u = pool_find(x, host, port, tls, via_proxy)) != NULL) {
        attach(x, u);
        if (u->phase == U_READY)
            send_request(x);
        return; /* else dispatch_connected sends it */
    }
    /* server_connect: a hook may send the connection elsewhere or refuse it
     * (not through an upstream proxy: there the proxy picks the address) */
    char moved[256] = "";
    if (script_env_has_hook(w->scripts, SCRIPT_HOOK_SERVER_CONNECT)) {
        flow_conn to = {.address_host = (char *)host, .address_port = port, .sni = (char *)x->sni, .tls = tls};
        script_conn_event ev = {.client = &x->f->client, .server = &to};
        script_env_conn_event(w->scripts, SCRIPT_HOOK_SERVER_CONNECT, &ev);
        if (ev.refuse) {
            char msg[300];
            snprintf(msg, sizeof msg, "server connection refused by a script: %s", ev.refuse);
            free(ev.refuse);
            free(ev.new_host);
            finish_failed(x, 502, msg);
            return;
        }
        if (ev.new_host && o->mode != MODE_UPSTREAM && strlen(ev.new_host) < sizeof moved) {
            snprintf(moved, sizeof moved, "%s", ev.new_host);
            conn_host = moved;
            conn_port = ev.new_port;
        }
        free(ev.new_host);
    }
    if ((u = calloc(1, sizeof *u)) != NULL)
        attach(x, u);
    static const h1_events ev = {h1_on_head, h1_on_body};
    if (!u || !(u->host = strdup(host)) || !(u->parser = h1_parser_new_response(&w->resp_limits, &ev, u)) ||
        (x->sni && !(u->sni = strdup(x->sni)))) {
        finish_failed(x, 500, "out of memory");
        return;
    }
    u->w = w;
    u->port = port;
    u->tls = tls;
    u->via_proxy = via_proxy;
    u->offer_h2 = offer_h2;
    u->phase = U_TCP;
    if (offer_h2 && x->pool) /* the pool's next streams wait for it */
        pool_link(x->pool, u);
    u->info.timestamp_start = flow_now();
    flow_strset(&u->info.address_host, *moved ? moved : host);
    u->info.address_port = *moved ? conn_port : port;
    /* TCP first, whatever comes over it (on_connected starts TLS) */
    u->bev = bufferevent_socket_new(w->base, -1, BEV_OPT_CLOSE_ON_FREE | BEV_OPTS);
    if (!u->bev) {
        finish_failed(x, 500, "out of memory");
        return;
    }
    u->plain = true;
    (void)bevbulk_attach(u->bev);   /* failing that, libevent reads 4 KB at a time */
    bufferevent_setcb(u->bev, up_read_cb, up_write_cb, up_event_cb, u);
    struct timeval tv = {o->connect_timeout, 0};
    bufferevent_set_timeouts(u->bev, o->connect_timeout ? &tv : NULL, o->connect_timeout ? &tv : NULL);
    bufferevent_enable(u->bev, EV_READ | EV_WRITE);
    char msg[400];
    if (upstream_connect(w, u->bev, conn_host, conn_port, msg, sizeof msg) < 0)
        finish_failed(x, 502, msg);
}

/* ---- HTTP/2 -------------------------------------------------------------- */

/* An HTTP/2 connection carries one stream per exchange in flight; the
 * exchanges of one pool (an HTTP/2 client's streams) share it, any other
 * exchange has its connection to itself, as with HTTP/1.1.
 *
 * The h2.c callbacks run inside h2_conn_feed, where the session must not
 * be freed or written: the ones that only pass things on to an owner
 * (head, interim, streamed body) do so at once, as the HTTP/1 parser's do;
 * the end of an exchange, good or bad, is noted in the exchange and acted
 * on by h2_settle once the bytes are fed.  Owners' done/failed callbacks
 * may close any exchange of the pool, or all of them: the connection is
 * held (busy) meanwhile and freed after, if it was let go. */

exch_pool *exch_pool_new(void)
{
    return calloc(1, sizeof(exch_pool));
}

static void pool_unlink(upstream *u)
{
    exch_pool *p = u->pool;
    if (!p)
        return;
    if (u->pool_prev)
        u->pool_prev->pool_next = u->pool_next;
    else
        p->conns = u->pool_next;
    if (u->pool_next)
        u->pool_next->pool_prev = u->pool_prev;
    u->pool = NULL;
    u->pool_prev = u->pool_next = NULL;
}

void exch_pool_free(exch_pool *p)
{
    if (!p)
        return;
    while (p->conns)
        pool_unlink(p->conns);
    free(p);
}

void exch_share(exch *x, exch_pool *p)
{
    x->pool = p;
}

static void pool_link(exch_pool *p, upstream *u)
{
    u->pool = p;
    u->pool_prev = NULL;
    u->pool_next = p->conns;
    if (p->conns)
        p->conns->pool_prev = u;
    p->conns = u;
}

/* May another stream go out on u? */
static bool h2_usable(const upstream *u)
{
    return u->h2 && u->phase == U_READY && !u->broken && !u->dead && h2_conn_can_request(u->h2);
}

static bool same_sni(const char *a, const char *b)
{
    return a == b || (a && b && strcmp(a, b) == 0);
}

/* A pool connection to host:port as x would open it: an HTTP/2 one with
 * room for one more stream (nghttp2 queues past the server's limit; we
 * stop short of the common 100), else one still connecting that offered
 * h2, to wait for (a burst of streams then opens one connection). */
static upstream *pool_find(const exch *x, const char *host, uint16_t port, bool tls, bool via_proxy)
{
    upstream *connecting = NULL;
    for (upstream *u = x->pool ? x->pool->conns : NULL; u; u = u->pool_next) {
        if (u == x->avoid || u->port != port || u->tls != tls || u->via_proxy != via_proxy ||
            strcmp(u->host, host) != 0 || !same_sni(u->sni, x->sni) || u->broken || u->dead)
            continue;
        if (h2_usable(u) && h2_conn_streams(u->h2) < 100)
            return u;
        if (u->phase != U_READY && !connecting)
            connecting = u;
    }
    return connecting;
}

static exch *stream_user(upstream *u, int32_t sid)
{
    for (exch *x = u->users; x; x = x->up_next)
        if (x->f && x->sid == sid)
            return x;
    return NULL;
}

static void h2_on_interim(void *ud, int32_t sid, const flow_response *s)
{
    exch *x = stream_user(ud, sid);
    if (!x)
        return;
    x->h2_got = true;
    if (x->ops->interim)
        x->ops->interim(x, s);
}

static int h2_on_head(void *ud, int32_t sid, flow_response *s)
{
    upstream *u = ud;
    exch *x = stream_user(u, sid);
    if (!x)
        return 0;
    x->h2_got = true;
    flow_response_free(x->f->response);
    x->f->response = s; /* h2.c goes on adding the body and trailers */
    if (on_response_head(x) < 0)
        h2_reset_stream(u->h2, sid, H2_CANCEL); /* h2.c forgets s: ours to free */
    return 1;
}

static int h2_on_data(void *ud, int32_t sid, const uint8_t *data, size_t n)
{
    upstream *u = ud;
    exch *x = stream_user(u, sid);
    if (!x || x->head_failed)
        return 0;
    if (!x->streaming && stream_wanted(x, x->f->response->content.len + n))
        start_stream(x);
    if (!x->streaming)
        return 0; /* into the flow: h2.c reopens the window itself */
    if (stream_kept(x, (const char *)data, n) < 0)
        log_error("store_streamed_bodies: out of memory: the body kept of %s is cut", x->f->request->host);
    /* the owner took the bytes; if that filled its client's buffer it
     * paused us, and the server's window stays shut until it resumes */
    if (x->paused)
        x->owed += n;
    else
        h2_consume(u->h2, sid, n);
    return 1;
}

static void h2_on_response(void *ud, int32_t sid, flow_response *s)
{
    exch *x = stream_user(ud, sid);
    if (!x) {
        flow_response_free(s);
        return;
    }
    if (x->f->response != s) { /* on_head always comes first; to be safe */
        flow_response_free(x->f->response);
        x->f->response = s;
    }
    x->h2_done = true;
}

static void h2_on_refused(void *ud, int32_t sid, int status, const char *msg)
{
    (void)status;
    exch *x = stream_user(ud, sid);
    if (x)
        snprintf(x->h2_fail, sizeof x->h2_fail, "%s", msg);
}

static void h2_on_close(void *ud, int32_t sid, uint32_t code)
{
    exch *x = stream_user(ud, sid);
    if (!x)
        return;
    x->h2_closed = true;
    x->h2_code = code;
}

static void h2_on_request(void *ud, int32_t sid, flow_request *r)
{
    (void)ud;
    (void)sid;
    flow_request_free(r); /* server side only: never called here */
}

/* The server chose h2: an HTTP/2 client session on x's connection, which
 * x's pool may share from now on. */
static int h2_begin(exch *x)
{
    static const h2_events ev = {
        .on_request = h2_on_request, .on_response = h2_on_response, .on_refused = h2_on_refused,
        .on_close = h2_on_close, .on_interim = h2_on_interim, .on_head = h2_on_head, .on_data = h2_on_data,
    };
    upstream *u = x->up;
    const h1_limits *rl = &x->w->resp_limits;
    h2_limits lim;
    h2_limits_default(&lim);
    lim.max_body = rl->max_body;
    if (rl->max_headers)
        lim.max_headers = rl->max_headers;
    if (rl->max_head > lim.max_header_list)
        lim.max_header_list = rl->max_head;
    return (u->h2 = h2_conn_new(false, &lim, &ev, u)) ? 0 : -1;
}

/* Queue what the session has for the server.  0 or -1. */
static int h2_pump(upstream *u)
{
    u->last_active = flow_now();
    return h2_conn_flush(u->h2, bufferevent_get_output(u->bev), H2_OUT_HIGH);
}

/* http2_ping_keepalive (mitmproxy's): a connection idle that long gets a
 * PING, so that a server or a middlebox that drops idle connections keeps
 * it for the exchanges to come; checked again when it would next be due. */
static void h2_keepalive_cb(evutil_socket_t fd, short what, void *arg)
{
    (void)fd, (void)what;
    upstream *u = arg;
    int every = u->w->sh->o->http2_ping_keepalive;
    double idle = flow_now() - u->last_active;
    if (idle + 1 > every && !u->broken && h2_ping(u->h2) == 0) {
        log_debug("send HTTP/2 keep-alive PING to %s:%u", u->host, u->port);
        h2_pump(u);
        idle = 0;
    }
    struct timeval tv = {every - (int)idle > 1 ? every - (int)idle : 1, 0};
    event_add(u->ping_ev, &tv);
}

static void h2_keepalive_start(upstream *u)
{
    int every = u->w->sh->o->http2_ping_keepalive;
    u->last_active = flow_now();
    if (every <= 0 || !(u->ping_ev = event_new(u->w->base, -1, 0, h2_keepalive_cb, u)))
        return;
    struct timeval tv = {every, 0};
    event_add(u->ping_ev, &tv);
}

/* read_timeout runs while some stream waits for a server that may send:
 * not between exchanges, nor while every owner in flight is paused (the
 * server is held back by its window then, not silent). */
static void h2_timeouts(upstream *u)
{
    bool waiting = false;
    for (exch *x = u->users; x && !waiting; x = x->up_next)
        waiting = x->f && x->sid >= 0 && !x->paused;
    int t = waiting ? u->w->sh->o->read_timeout : 0;
    struct timeval tv = {t, 0};
    bufferevent_set_timeouts(u->bev, t ? &tv : NULL, t ? &tv : NULL);
}

static void send_request_h2(exch *x)
{
    upstream *u = x->up;
    flow_request *r = x->f->request;
    x->h2_done = x->h2_closed = x->h2_got = x->paused = false;
    x->h2_code = 0;
    x->h2_fail[0] = '\0';
    x->owed = 0;
    /* the response comes from h2.c, lent at its head */
    flow_response_free(x->f->response);
    x->f->response = NULL;
    if (h1_fix_length(&r->headers, r->content.len, false) < 0) {
        finish_failed(x, 500, "out of memory");
        return;
    }
    int32_t sid = h2_submit_request(u->h2, r);
    if (sid < 0) {
        char msg[300];
        snprintf(msg, sizeof msg, "cannot send the request over HTTP/2: %s", h2_conn_error(u->h2));
        finish_failed(x, 502, msg);
        return;
    }
    x->sid = sid;
    if (h2_pump(u) < 0) {
        finish_failed(x, 500, "out of memory");
        return;
    }
    h2_timeouts(u);
    bufferevent_enable(u->bev, EV_READ | EV_WRITE);
}

static void h2_pause(exch *x, bool pause)
{
    upstream *u = x->up;
    if (x->paused == pause)
        return;
    x->paused = pause;
    if (!x->f)
        return;
    if (!pause && x->owed && x->sid >= 0) {
        h2_consume(u->h2, x->sid, x->owed);
        x->owed = 0;
        h2_pump(u); /* a failure shows on the next read */
    }
    h2_timeouts(u);
}

/* x's stream is over (or x gives up on it): forget it, reopening the
 * window for bytes taken while paused. */
static void h2_forget_stream(exch *x)
{
    upstream *u = x->up;
    if (x->owed && x->sid >= 0)
        h2_consume(u->h2, x->sid, x->owed);
    x->owed = 0;
    x->paused = false;
    x->sid = -1;
}

/* x lets go of its connection mid-exchange: a stream still open is reset
 * (the connection may go on serving the pool's other streams). */
static void h2_give_up_stream(exch *x)
{
    upstream *u = x->up;
    int32_t sid = x->sid;
    h2_forget_stream(x);
    /* h2.c skips a stream that is closed or reset already, and forgets a
     * response it lent us: the caller frees that next */
    if (sid >= 0 && !x->h2_done && u->phase == U_READY) {
        h2_reset_stream(u->h2, sid, H2_CANCEL);
        if (!u->broken)
            h2_pump(u);
    }
}

static void h2_response_complete(exch *x)
{
    h2_forget_stream(x);
    h2_pump(x->up);
    x->upgraded = false;
    finish_done(x);
}

/* Once, on another connection (of the pool, else a new one, where the
 * other retries of a burst join it): a stream the server refused before
 * working on it (RFC 9113 §8.7), or one on a reused connection that ended
 * before any of its answer came. */
static bool h2_maybe_retry(exch *x, bool refused)
{
    upstream *u = x->up;
    if (x->retried || (!refused && (x->h2_got || u->requests <= 1)))
        return false;
    x->retried = true;
    x->avoid = u;
    h2_forget_stream(x); /* the stream is gone: nothing to reset */
    exch_close(x);
    flow_response_free(x->f->response);
    x->f->response = NULL;
    connect_or_fail(x);
    return true;
}

static bool h2_pending(const exch *x)
{
    return x->f && x->sid >= 0 && (x->head_failed || x->h2_done || x->h2_fail[0] || x->h2_closed);
}

/* x's stream ended: pass the result on. */
static void h2_settle_one(exch *x)
{
    upstream *u = x->up;
    char msg[400], hb[300];
    const char *h = flow_host_for_url(u->host, hb, sizeof hb);
    if (x->head_failed) {
        snprintf(msg, sizeof msg, "%s", x->f->error && x->f->error->msg ? x->f->error->msg : "script failed");
        finish_failed(x, 502, msg);
    } else if (x->h2_done) {
        h2_response_complete(x);
    } else if (x->h2_fail[0]) {
        snprintf(msg, sizeof msg, "invalid response from server %s:%u: %s", h, u->port, x->h2_fail);
        finish_failed(x, 502, msg);
    } else if (x->h2_code != H2_REFUSED_STREAM || !h2_maybe_retry(x, true)) {
        snprintf(msg, sizeof msg, "server %s:%u reset the HTTP/2 stream (%s)", h, u->port,
                 h2_error_name(x->h2_code));
        finish_failed(x, 502, msg);
    }
}

/* The connection is over: every exchange in flight fails with `status`
 * and `msg` (or retries), the idle ones let go. */
static void h2_fail_all(upstream *u, int status, const char *msg, bool may_retry)
{
    u->broken = true;
    for (;;) {
        exch *x = u->users;
        while (x && !(x->f && x->sid >= 0))
            x = x->up_next;
        if (!x || u->dead)
            break;
        if (may_retry && h2_maybe_retry(x, false))
            continue;
        h2_forget_stream(x);
        finish_failed(x, status, msg);
    }
    while (!u->dead && u->users)
        exch_close(u->users);
}

static bool h2_in_flight(const upstream *u)
{
    for (const exch *x = u->users; x; x = x->up_next)
        if (x->f && x->sid >= 0)
            return true;
    return false;
}

/* Act on what the last bytes (fed with result `rc`) did.  The caller
 * holds u (busy). */
static void h2_settle(upstream *u, int rc)
{
    if (rc == 0 && h2_pump(u) < 0)
        rc = -1;
    for (exch *x; !u->dead && (x = u->users);) {
        while (x && !h2_pending(x))
            x = x->up_next;
        if (!x)
            break;
        h2_settle_one(x);
    }
    if (u->dead)
        return;
    if (rc < 0) {
        char msg[400], hb[300];
        snprintf(msg, sizeof msg, "HTTP/2 error with server %s:%u: %s", flow_host_for_url(u->host, hb, sizeof hb),
                 u->port, h2_conn_error(u->h2));
        h2_fail_all(u, 502, msg, false);
        return;
    }
    if (!h2_conn_can_request(u->h2) && !h2_in_flight(u)) {
        while (!u->dead && u->users) /* GOAWAY: done once its streams are */
            exch_close(u->users);
        return;
    }
    h2_timeouts(u);
}

static void upstream_hold(upstream *u)
{
    u->busy++;
}

static void upstream_unhold(upstream *u)
{
    if (--u->busy == 0 && u->dead)
        upstream_free(u);
}

/* Feed what the server sent to the session, then act on it. */
static void h2_read(upstream *u)
{
    struct evbuffer *in = bufferevent_get_input(u->bev);
    int rc = 0;
    u->last_active = flow_now();
    upstream_hold(u);
    while (rc == 0 && evbuffer_get_length(in)) {
        size_t n = evbuffer_get_contiguous_space(in);
        rc = h2_conn_feed(u->h2, evbuffer_pullup(in, (ssize_t)n), n);
        evbuffer_drain(in, n);
    }
    h2_settle(u, rc);
    upstream_unhold(u);
}

/* The connection ended, failed or timed out. */
static void h2_conn_event(upstream *u, short what)
{
    upstream_hold(u);
    if (what & (BEV_EVENT_EOF | BEV_EVENT_ERROR))
        h2_read(u); /* what came before the end may finish exchanges */
    if (!u->dead) {
        char msg[512];
        upstream_error_text(u->w->sh->o, u->bev, u->host, u->port, true, u->tls, what, msg, sizeof msg);
        h2_fail_all(u, (what & BEV_EVENT_TIMEOUT) ? 504 : 502, msg, !(what & BEV_EVENT_TIMEOUT));
    }
    upstream_unhold(u);
}

static void up_write_cb(struct bufferevent *bev, void *arg)
{
    (void)bev;
    upstream *u = arg;
    /* the socket took our frames: more DATA may go (a big upload) */
    if (u->h2 && u->phase == U_READY) {
        upstream_hold(u);
        h2_settle(u, 0);
        upstream_unhold(u);
    }
}

/* The socket under TLS has written everything: as the filter's own write
 * callback would say (bevio_attach_wire). */
static void up_wire_drained(struct bufferevent *wire, void *arg)
{
    (void)wire;
    upstream *u = arg;
    up_write_cb(u->bev, u);
}

/* ---- HTTP/1.1 ------------------------------------------------------------ */

/* A keep-alive connection the server closed just as we reused it: try a
 * fresh connection once, as browsers do, before calling it an error. */
static bool maybe_retry(exch *x)
{
    upstream *u = x->up;
    if (!u || u->requests <= 1 || u->got_bytes || x->retried)
        return false;
    x->retried = true;
    exch_close(x);
    if (x->f->response) {
        flow_response_free(x->f->response);
        x->f->response = NULL;
    }
    connect_or_fail(x);
    return true;
}

static void response_complete(exch *x)
{
    upstream *u = x->up;
    flow_response *resp = x->f->response;
    bool upgrade = h1_parser_upgrade(u->parser);
    u->reusable = h1_parser_keep_alive(u->parser) && !upgrade;
    /* A kept connection goes on reading: a byte or an EOF while it is idle
     * closes it at once (up_read_cb, up_event_cb), and leaving the read
     * event in epoll saves a system call per exchange. */
    if (!u->reusable)
        bufferevent_disable(u->bev, EV_READ);
    bufferevent_set_timeouts(u->bev, NULL, NULL);
    x->upgraded = resp->status_code == 101 && upgrade;
    finish_done(x);
}

/* Parse what the server sent.  true when the exchange ended (a callback
 * ran, so x may be gone); false when more bytes are needed. */
static bool feed_or_finish(exch *x)
{
    upstream *u = x->up;
    struct evbuffer *in = bufferevent_get_input(u->bev);
    if (u->phase == U_PROXY_CONNECT) {
        enum h1_status st = h1_parser_feed(u->parser, in);
        if (st == H1_NEED_MORE)
            return false;
        if (st == H1_ERROR) {
            char msg[300];
            snprintf(msg, sizeof msg, "invalid answer from upstream proxy: %s", h1_parser_error(u->parser));
            fail_users(u, 502, msg);
            return true;
        }
        on_proxy_connect_done(x);
        return true;  /* not the end, but x may be gone */
    }
    if (evbuffer_get_length(in))
        u->got_bytes = true;
    for (;;) {
        enum h1_status st = h1_parser_feed(u->parser, in);
        if (st == H1_NEED_MORE)
            return false;
        if (st == H1_ERROR && x->head_failed) {
            char msg[300]; /* a copy: the owner replaces the flow's error with it */
            snprintf(msg, sizeof msg, "%s", x->f->error && x->f->error->msg ? x->f->error->msg : "script failed");
            finish_failed(x, 502, msg);
            return true;
        }
        if (st == H1_ERROR) {
            char msg[300];
            snprintf(msg, sizeof msg, "invalid response from server: %s", h1_parser_error(u->parser));
            finish_failed(x, 502, msg);
            return true;
        }
        flow_response *resp = x->f->response;
        if (resp->status_code >= 100 && resp->status_code < 200 && resp->status_code != 101) {
            /* interim response: pass it on, then wait for the final one */
            if (x->ops->interim)
                x->ops->interim(x, resp);
            flow_response_free(resp);
            x->f->response = flow_response_new();
            if (!x->f->response) {
                finish_failed(x, 500, "out of memory");
                return true;
            }
            h1_parser_begin_response(u->parser, x->f->response, strcmp(x->f->request->method, "HEAD") == 0);
            continue;
        }
        response_complete(x);
        return true;
    }
}

static void up_read_cb(struct bufferevent *bev, void *arg)
{
    (void)bev;
    upstream *u = arg;
    if (u->h2 && u->phase == U_READY) {
        h2_read(u);
        return;
    }
    exch *x = u->users; /* an HTTP/1.1 connection has one */
    if (!x->f) {
        /* bytes on an idle connection: the server is confused; drop it */
        exch_close(x);
        return;
    }
    feed_or_finish(x);
}

static void up_event_cb(struct bufferevent *bev, short what, void *arg)
{
    upstream *u = arg;
    if (u->h2 && u->phase == U_READY) {
        h2_conn_event(u, what);
        return;
    }
    /* connecting: one of the exchanges waiting for it; then the one */
    exch *x = u->users;
    if (what & BEV_EVENT_CONNECTED) {
        if (x->f)
            on_connected(x);
        return;
    }
    if (!x->f) {
        /* an idle kept connection went away: forget it */
        exch_close(x);
        return;
    }
    if ((what & (BEV_EVENT_EOF | BEV_EVENT_ERROR)) && u->connected) {
        /* the response may be close-delimited; over TLS, many servers end
         * it without close_notify, which OpenSSL 3 reports as an error */
        if (feed_or_finish(x))
            return;
        if (h1_parser_eof(u->parser) == H1_DONE) {
            response_complete(x);
            return;
        }
    }
    if (u->connected && !(what & BEV_EVENT_TIMEOUT) && maybe_retry(x))
        return;
    char msg[512];
    upstream_error_text(x->w->sh->o, u->bev, u->host, u->port, u->connected, u->tls, what, msg, sizeof msg);
    if (u->tls && !u->connected &&
        (!strncmp(msg, "upstream certificate", 20) || !strncmp(msg, "TLS handshake", 13))) {
        /* TCP got through, TLS did not: the events say so before the error */
        if (!u->announced) {
            u->announced = true;
            server_event(u, x->f, SCRIPT_HOOK_SERVER_CONNECTED, NULL);
        }
        server_event(u, x->f, SCRIPT_HOOK_TLS_START_SERVER, NULL);
        server_event(u, x->f, SCRIPT_HOOK_TLS_FAILED_SERVER, msg);
    }
    fail_users(u, (what & BEV_EVENT_TIMEOUT) ? 504 : 502, msg);
}
