/* upstream.c — one request's trip to its server and back (see upstream.h).
 *
 *   exch_start ─▶ reuse or connect (TCP │ TCP+CONNECT via upstream proxy)
 *              ─▶ TLS (verified) ─▶ request bytes ─h1 parser─▶ response
 *              ─▶ ops->done │ ops->failed
 *
 * A kept connection is idle between exchanges: it stays in epoll for
 * reading, and any byte or event on it then simply closes it.  A keep-alive connection that the
 * server closed just as it was reused is retried once on a new one. */
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

#include "bevio.h"
#include "h1.h"
#include "log.h"
#include "tls.h"

#define BEV_OPTS (BEV_OPT_DEFER_CALLBACKS)
/* A response body is allocated whole from its Content-Length up to this
 * size (larger ones grow as they come: the length is the server's word). */
#define RESERVE_MAX ((uint64_t)64 << 20)

enum uphase {
    U_TCP,             /* connecting (plain TCP, or TCP + TLS in one step) */
    U_PROXY_CONNECT,   /* waiting for the upstream proxy's answer to CONNECT */
    U_TLS,             /* TLS handshake over the proxy tunnel */
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
    bool reusable;
    bool got_bytes;          /* any byte of the current response seen */
    unsigned requests;       /* exchanges sent on this connection */
    flow_conn info;          /* copied into each flow that uses it */
};

static void up_read_cb(struct bufferevent *bev, void *arg);
static void up_event_cb(struct bufferevent *bev, short what, void *arg);
static void connect_or_fail(exch *x);

static void upstream_free(upstream *u)
{
    if (!u)
        return;
    bevio_detach(&u->wio);
    if (u->bev)
        bufferevent_free(u->bev);
    flow_response_free(u->connect_resp);
    h1_parser_free(u->parser);
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
}

void exch_pause(exch *x, bool pause)
{
    if (!x->up || !x->up->bev)
        return;
    if (pause)
        bufferevent_disable(x->up->bev, EV_READ);
    else
        bufferevent_enable(x->up->bev, EV_READ);
}

void exch_watch_idle(exch *x)
{
    upstream *u = x->up;
    if (!u || !u->bev || x->f)
        return;
    if (evbuffer_get_length(bufferevent_get_input(u->bev))) {
        exch_close(x);
        return;
    }
    bufferevent_enable(u->bev, EV_READ);  /* up_read_cb's idle branch drops it */
}

void exch_close(exch *x)
{
    upstream_free(x->up);
    x->up = NULL;
}

void exch_release_unless_reusable(exch *x)
{
    if (x->up && !x->up->reusable)
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
        const char *v = ssl ? tls_verify_error(ssl) : NULL;
        if (v) {
            snprintf(buf, n, "upstream certificate verification failed for %s: %s", host, v);
            return buf;
        }
        unsigned long e = bufferevent_get_openssl_error(bev);
        if (e) {
            char es[200];
            ERR_error_string_n(e, es, sizeof es);
            snprintf(buf, n, "TLS handshake with %s:%u failed: %s", h, port, es);
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
    if (bufferevent_socket_connect_hostname(bev, w->dns, AF_UNSPEC, host, port) < 0) {
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

static void send_request(exch *x)
{
    upstream *u = x->up;
    flow *f = x->f;
    flow_request *r = f->request;
    const opts *o = x->w->sh->o;
    fill_server_info(x);
    u->requests++;
    u->got_bytes = false;
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
 * was buffered of the body, and nothing more is kept. */
static void start_stream(exch *x)
{
    flow_response *r = x->f->response;
    x->streaming = true;
    x->ops->stream_head(x);
    if (r->content.len)
        x->ops->stream_data(x, r->content.p, r->content.len);
    bytes_free(&r->content);
}

static bool stream_wanted(const exch *x, uint64_t size)
{
    uint64_t limit = x->w->sh->o->stream_large_bodies;
    return limit && x->ops->stream_head && size > limit;
}

static int on_response_head(void *ud)
{
    exch *x = ud;
    if (x->up && x->up->phase == U_PROXY_CONNECT)
        return 0;  /* the upstream proxy's answer to our CONNECT, not the flow's */
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

static int on_response_body(void *ud, const char *at, size_t n)
{
    exch *x = ud;
    if (x->up && x->up->phase == U_PROXY_CONNECT)
        return -1; /* a 2xx to CONNECT has no body; anything else is refused */
    if (x->streaming) {
        x->ops->stream_data(x, at, n);
        return 0;
    }
    bytes *b = &x->f->response->content;
    if (bytes_append(b, at, n) < 0)
        return -1;
    if (stream_wanted(x, b->len))  /* chunked or close-delimited: known late */
        start_stream(x);
    return 0;
}

/* ---- connecting ---------------------------------------------------------- */

/* Wrap the connection in TLS toward the target. */
static SSL *new_ssl(exch *x, char *err, size_t errsz)
{
    SSL *ssl = SSL_new(x->w->sh->client_ctx);
    if (!ssl) {
        snprintf(err, errsz, "out of memory");
        return NULL;
    }
    if (tls_client_prepare(ssl, x->up->host, x->sni, err, errsz) < 0) {
        SSL_free(ssl);
        return NULL;
    }
    return ssl;
}

static void on_connected(exch *x)
{
    upstream *u = x->up;
    double now = flow_now();
    if (u->phase == U_TCP) {
        upstream_record_peer(u->bev, &u->info);
        u->info.timestamp_tcp_setup = now;
        if (u->via_proxy) {
            /* ask the upstream proxy for a tunnel to the real target */
            char hb[300];
            const char *h = flow_host_for_url(u->host, hb, sizeof hb);
            evbuffer_add_printf(bufferevent_get_output(u->bev), "CONNECT %s:%u HTTP/1.1\r\nHost: %s:%u\r\n%s\r\n",
                                h, u->port, h, u->port, x->w->upstream_auth_line);
            u->phase = U_PROXY_CONNECT;
            u->connect_resp = flow_response_new();
            h1_parser_begin_response(u->parser, u->connect_resp, true);
            return;
        }
    }
    u->phase = U_READY;
    u->connected = true;
    if (u->tls) {
        SSL *ssl = bufferevent_openssl_get_ssl(u->bev);
        tls_fill_conn_info(ssl, &u->info, true);
        u->info.timestamp_tls_setup = now;
    }
    send_request(x);
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
        finish_failed(x, 502, msg);
        return;
    }
    if (!u->tls) {
        on_connected(x);
        return;
    }
    char err[256];
    SSL *ssl = new_ssl(x, err, sizeof err);
    if (!ssl) {
        finish_failed(x, 502, err);
        return;
    }
    struct bufferevent *b = bufferevent_openssl_filter_new(x->w->base, u->bev, ssl, BUFFEREVENT_SSL_CONNECTING,
                                                           BEV_OPT_CLOSE_ON_FREE | BEV_OPTS);
    if (!b) {
        SSL_free(ssl);
        finish_failed(x, 500, "out of memory");
        return;
    }
    bufferevent_openssl_set_allow_dirty_shutdown(b, 1);
    u->bev = b;
    u->plain = false;
    u->phase = U_TLS;
    bufferevent_setcb(b, up_read_cb, NULL, up_event_cb, x);
    struct timeval tv = {x->w->sh->o->connect_timeout, 0};
    bufferevent_set_timeouts(b, &tv, &tv);
    bufferevent_enable(b, EV_READ | EV_WRITE);
}

void exch_start(exch *x, flow *f)
{
    x->f = f;
    x->upgraded = false;
    x->streaming = false;
    x->head_failed = false;
    connect_or_fail(x);
}

static void connect_or_fail(exch *x)
{
    worker *w = x->w;
    const opts *o = w->sh->o;
    flow_request *r = x->f->request;
    /* where the request goes (target) and where the TCP connection goes */
    const char *host = r->host, *conn_host = r->host;
    uint16_t port = r->port, conn_port = r->port;
    bool tls = strcmp(r->scheme, "https") == 0, conn_tls = tls;
    bool via_proxy = false;
    if (o->mode == MODE_UPSTREAM) {
        conn_host = o->mode_url.host;
        conn_port = o->mode_url.port;
        if (x->in_tunnel) {
            via_proxy = true;
            conn_tls = false;
        } else {
            host = conn_host;
            port = conn_port;
            tls = conn_tls = strcmp(o->mode_url.scheme, "https") == 0;
        }
    }
    upstream *u = x->up;
    if (u && u->reusable && u->port == port && u->tls == tls && strcmp(u->host, host) == 0) {
        send_request(x);
        return;
    }
    exch_close(x);
    x->up = u = calloc(1, sizeof *u);
    static const h1_events ev = {on_response_head, on_response_body};
    if (!u || !(u->host = strdup(host)) || !(u->parser = h1_parser_new_response(&w->resp_limits, &ev, x))) {
        finish_failed(x, 500, "out of memory");
        return;
    }
    u->port = port;
    u->tls = tls;
    u->via_proxy = via_proxy;
    u->phase = U_TCP;
    u->info.timestamp_start = flow_now();
    flow_strset(&u->info.address_host, host);
    u->info.address_port = port;
    if (conn_tls) {
        char err[256];
        SSL *ssl = new_ssl(x, err, sizeof err);
        if (!ssl) {
            finish_failed(x, 502, err);
            return;
        }
        u->bev = bufferevent_openssl_socket_new(w->base, -1, ssl, BUFFEREVENT_SSL_CONNECTING,
                                                BEV_OPT_CLOSE_ON_FREE | BEV_OPTS);
        if (!u->bev)
            SSL_free(ssl);
        else
            bufferevent_openssl_set_allow_dirty_shutdown(u->bev, 1);
    } else {
        u->bev = bufferevent_socket_new(w->base, -1, BEV_OPT_CLOSE_ON_FREE | BEV_OPTS);
        u->plain = true;
    }
    if (!u->bev) {
        finish_failed(x, 500, "out of memory");
        return;
    }
    bufferevent_setcb(u->bev, up_read_cb, NULL, up_event_cb, x);
    struct timeval tv = {o->connect_timeout, 0};
    bufferevent_set_timeouts(u->bev, o->connect_timeout ? &tv : NULL, o->connect_timeout ? &tv : NULL);
    bufferevent_enable(u->bev, EV_READ | EV_WRITE);
    char msg[400];
    if (upstream_connect(w, u->bev, conn_host, conn_port, msg, sizeof msg) < 0)
        finish_failed(x, 502, msg);
}

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
            finish_failed(x, 502, msg);
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
    exch *x = arg;
    if (!x->f) {
        /* bytes on an idle connection: the server is confused; drop it */
        exch_close(x);
        return;
    }
    feed_or_finish(x);
}

static void up_event_cb(struct bufferevent *bev, short what, void *arg)
{
    exch *x = arg;
    upstream *u = x->up;
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
    finish_failed(x, (what & BEV_EVENT_TIMEOUT) ? 504 : 502, msg);
}
