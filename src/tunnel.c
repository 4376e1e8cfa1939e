/* tunnel.c — the ways into a connection other than a plain HTTP request:
 * CONNECT, SOCKS5 and transparent mode differ only in how the target is
 * learnt and how the client is told the tunnel is open; from then on the
 * same code peeks at the first byte and intercepts TLS or reads HTTP
 * (reverse mode too).  Hosts that must not be intercepted are passed
 * through as raw TCP relays, and a connection whose protocol switched
 * (101 without WebSocket) is relayed the same way. */
#include "bevbulk.h"
#include "client_int.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/bufferevent_ssl.h>
#include <openssl/err.h>

#include "log.h"
#include "origdst.h"
#include "printer.h"
#include "proxyauth.h"
#include "socks5.h"
#include "tls.h"
#include "tlsup.h"
#include "tlshello.h"
#include "tlsopts.h"
#include "upconnect.h"

/* rawtcp: how long a silent client in a tunnel is waited for before its
 * connection is taken for a server-first protocol, and how much of a TCP
 * flow's messages is kept in the flow (tcprelay.h). */
#define TUNNEL_SERVER_FIRST_MS 1000
#define TUNNEL_TCP_KEEP_MAX ((size_t)64 << 20)

static void peer_read_cb(struct bufferevent *bev, void *arg);
static void peer_event_cb(struct bufferevent *bev, short what, void *arg);
static void client_hello_or_tls(cconn *c);
static void start_passthrough_or_close(cconn *c);
static bool rawtcp_applies(const cconn *c);
static void detect_or_close(cconn *c);
static void tcp_start_or_close(cconn *c);
static void passthrough_relay_or_close(cconn *c);

/* TLS runs as a filter over the socket bufferevent (also when the client
 * did not wait for our answer to CONNECT and its hello is already in our
 * input): OpenSSL writes records into the socket's output and bevio writes
 * them out, one writev per loop turn, as on a plain connection. */
static void start_client_tls_or_close(cconn *c);

static void cert_probe_cb(void *arg, int err, const char *msg)
{
    cconn *c = arg;
    c->dial = NULL;
    c->upstream_probed = true;
    start_client_tls_or_close(c);
}

/* upstream_cert, add_upstream_certs_to_client_chain: with
 * connection_strategy=eager the server is contacted before the client's
 * handshake, as in mitmdump, once its ClientHello shows it speaks TLS: a
 * handshake with the target whose verified certificates lend their names
 * to the minted one, or follow it.  True when started. */
static bool start_cert_probe(cconn *c)
{
    const opts *o = c->w->sh->o;
    if (c->upstream_probed || !(o->upstream_cert || o->add_upstream_certs_to_client_chain) ||
        strcmp(o->connection_strategy, "eager") != 0 || o->mode == MODE_UPSTREAM || !c->tunnel_host)
        return false;
    SSL_CTX *cctx = shared_client_ctx(c->w->sh);
    SSL *probe = cctx ? SSL_new(cctx) : NULL;
    char perr[256];
    if (probe && tlsup_prepare(probe, c->tunnel_host, c->tunnel_port, NULL, perr, sizeof perr) < 0) {
        SSL_free(probe);
        probe = NULL;
    }
    if (probe && (c->dial = dial_start(c->w->base, c->w->dns, c->tunnel_host, c->tunnel_port, o->connect_addr,
                                       o->connect_timeout, cert_probe_cb, c))) {
        dial_want_tls(c->dial, probe, &c->upstream_chain);
        bufferevent_disable(c->bev, EV_READ); /* the ClientHello waits */
        c->state = C_DIAL;
        return true;
    }
    SSL_free(probe);
    return false;
}

static void start_client_tls_or_close(cconn *c)
{
    shared *sh = c->w->sh;
    if (start_cert_probe(c))
        return;
    client_plain_off(c);
    SSL_CTX *ctx = shared_server_ctx(sh);
    SSL *ssl = ctx ? SSL_new(ctx) : NULL;
    static const unsigned char h2_alpn[] = "\x02h2\x08http/1.1";
    if (!ssl || tls_set_fallback_host(ssl, c->tunnel_host) < 0 ||
        (c->upstream_chain && tls_set_upstream_chain(ssl, c->upstream_chain) < 0) ||
        /* tcp_hosts: the server side offers no ALPN, so h2 is not offered
         * to the client either (HTTP/1.1 relayed as bytes still works) */
        (sh->o->http2 && !c->tcp_forced && tls_set_alpn_allowed(ssl, h2_alpn, sizeof h2_alpn - 1) < 0)) {
        SSL_free(ssl);
        client_free(c);
        return;
    }
    client_event(c, SCRIPT_HOOK_TLS_START_CLIENT, NULL);
    struct bufferevent *wire = c->bev;
    struct bufferevent *b = bufferevent_openssl_filter_new(c->w->base, wire, ssl, BUFFEREVENT_SSL_ACCEPTING,
                                                           BEV_OPT_CLOSE_ON_FREE | CLIENT_BEV_OPTS);
    if (!b) {
        SSL_free(ssl);
        client_free(c);
        return;
    }
    c->bev = b;
    (void)bevio_attach_wire(&c->wio, c->w->base, wire, client_wire_drained, c); /* failing that, libevent writes */
    c->state = C_TLS_HANDSHAKE;
    c->tunnel_tls = true;
    bufferevent_setcb(b, c->up->read, c->up->write, c->up->event, c);
    struct timeval tv = {sh->o->tls_handshake_timeout ? sh->o->tls_handshake_timeout : 10, 0};
    bufferevent_set_timeouts(b, &tv, &tv);
    bufferevent_enable(b, EV_READ | EV_WRITE);
}

static void start_tunnel_plain_or_close(cconn *c)
{
    c->tunnel_tls = false;
    c->in_tunnel = c->w->sh->o->mode != MODE_REVERSE;   /* see reverse_accept_or_close */
    if (c->tcp_forced) {
        tcp_start_or_close(c);
        return;
    }
    if (rawtcp_applies(c)) {
        detect_or_close(c);
        return;
    }
    c->state = C_READ_REQ;
    bufferevent_enable(c->bev, EV_READ);
    c->up->serve_or_close(c);
}

static void peek_cb(evutil_socket_t fd, short what, void *arg)
{
    cconn *c = arg;
    unsigned char b;
    if (what & EV_TIMEOUT) {
        event_free(c->peek_ev);
        c->peek_ev = NULL;
        if (rawtcp_applies(c))  /* a silent client: the server may speak first */
            tcp_start_or_close(c);
        else
            client_free(c);
        return;
    }
    ssize_t n = recv(fd, &b, 1, MSG_PEEK);
    if (n <= 0) {
        if (n < 0 && (errno == EAGAIN || errno == EINTR)) {
            event_add(c->peek_ev, NULL);
            return;
        }
        client_free(c);
        return;
    }
    event_free(c->peek_ev);
    c->peek_ev = NULL;
    if (b == 0x16) /* TLS handshake record */
        client_hello_or_tls(c);
    else
        start_tunnel_plain_or_close(c);
}

/* The 200 to CONNECT has been written: find out what the client speaks. */
void tunnel_start_or_close(cconn *c)
{
    struct evbuffer *in = bufferevent_get_input(c->bev);
    if (evbuffer_get_length(in) > 0) {
        /* the client did not wait for our answer: its bytes are already
         * in our buffer, where the TLS filter reads them */
        unsigned char b;
        evbuffer_copyout(in, &b, 1);
        if (b == 0x16)
            client_hello_or_tls(c);
        else
            start_tunnel_plain_or_close(c);
        return;
    }
    bufferevent_disable(c->bev, EV_READ);
    c->state = C_TUNNEL_PEEK;
    c->peek_ev = event_new(c->w->base, c->fd, EV_READ, peek_cb, c);
    struct timeval tv = {c->w->sh->o->idle_timeout ? c->w->sh->o->idle_timeout : 60, 0};
    if (rawtcp_applies(c))
        tv = (struct timeval){0, TUNNEL_SERVER_FIRST_MS * 1000};
    if (!c->peek_ev || event_add(c->peek_ev, &tv) < 0)
        client_free(c);
}

/* The tunnel is open: say so in the client's protocol. */
static void tunnel_reply_ok(cconn *c)
{
    if (c->tunnel_replied) /* a tunnel passed through after its ClientHello */
        return;
    c->tunnel_replied = true;
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
        client_send_simple(c, status, msg, true);
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
    flow *f = c->run.f;
    client_plain_off(c);
    f->type = FLOW_TCP;
    flow_request_free(f->request);
    f->request = NULL;
    f->server.timestamp_start = flow_now();
    if (flow_strset(&f->server.address_host, c->tunnel_host) < 0) {
        client_free(c);
        return;
    }
    f->server.address_port = c->tunnel_port;
    c->peer = bufferevent_socket_new(c->w->base, -1, BEV_OPT_CLOSE_ON_FREE | CLIENT_BEV_OPTS);
    if (!c->peer) {
        client_free(c);
        return;
    }
    c->state = C_PASSTHROUGH_CONNECT;
    (void)bevbulk_attach(c->peer);
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
        client_close_after_write(c);
    }
}

static void tunnel_accepted_or_close(cconn *c)
{
    flowrun_release(&c->run);
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
        client_fail_or_close(c, 502, msg);   /* the CONNECT flow records the error */
        return;
    }
    if (c->tunnel_kind == TUNNEL_SOCKS5) {
        uint8_t rep[10];
        socks5_reply(socks5_rep_for_errno(err), rep);
        evbuffer_add(bufferevent_get_output(c->bev), rep, sizeof rep);
    }
    client_close_after_write(c);
}

/* The target is known (c->tunnel_host/port): pass it through, or try it
 * first (eager), or open the tunnel at once (lazy). */
static void tunnel_open_or_close(cconn *c)
{
    worker *w = c->w;
    const char *h = c->tunnel_host;
    uint16_t p = c->tunnel_port;
    /* tcp_hosts, as mitmproxy's: TLS still comes off, then whatever the
     * client sends is a TCP flow (tcp_forced) */
    c->tcp_forced = hostmatch_any_host(w->tcp_hosts, h, p);
    if (hostmatch_any(w->ignore_hosts, h, p) ||
        (hostmatch_count(w->allow_hosts) && !hostmatch_any(w->allow_hosts, h, p))) {
        if (!c->run.f) {  /* socks5 / transparent: no CONNECT flow to turn into a TCP flow */
            flow *f = flow_new();
            if (!f) {
                client_free(c);
                return;
            }
            flowrun_begin(&c->run, f);
            flow_conn_copy(&f->client, &c->info);
        }
        start_passthrough_or_close(c);
        return;
    }
    /* in upstream mode the target may be reachable only through the
     * upstream proxy: trying it directly would prove nothing */
    if (strcmp(w->sh->o->connection_strategy, "eager") == 0 && w->sh->o->mode != MODE_UPSTREAM) {
        c->state = C_DIAL;
        bufferevent_disable(c->bev, EV_READ);
        c->dial = dial_start(w->base, w->dns, h, p, w->sh->o->connect_addr, w->sh->o->connect_timeout,
                             tunnel_dial_cb, c);
        if (!c->dial)
            client_free(c);
        return;
    }
    tunnel_accepted_or_close(c);
}

/* The connect hook let the CONNECT through: open the tunnel. */
void tunnel_connect_or_close(cconn *c)
{
    flow_request *r = c->run.f->request;
    free(c->tunnel_host);
    c->tunnel_host = strdup(r->host);
    c->tunnel_port = r->port;
    if (!c->tunnel_host) {
        client_free(c);
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
void tunnel_socks_read_or_close(cconn *c)
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
            client_close_after_write(c);
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
            client_free(c);
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
        client_free(c);
        return;
    }
    c->tunnel_port = c->w->sh->o->mode_url.port;
    tunnel_start_or_close(c);
}

/* A new client in socks5, transparent or reverse mode (regular and
 * upstream clients start with an HTTP request). */
void tunnel_accept_or_close(cconn *c)
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
        client_free(c);
        return;
    }
    bufferevent_disable(c->bev, EV_READ);
    if (!set_tunnel_target(c, TUNNEL_TRANSPARENT, host, port)) {
        client_free(c);
        return;
    }
    tunnel_open_or_close(c);
}

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
        flow_set_error(c->run.f, msg);
        bufferevent_free(c->peer);
        c->peer = NULL;
        tunnel_reply_error(c, 502, msg);
        client_close_after_write(c);
        return;
    }
    evbuffer_drain(in, (size_t)end.pos + 4);
    tunnel_reply_ok(c);
    passthrough_relay_or_close(c);
}

static void peer_read_cb(struct bufferevent *bev, void *arg)
{
    cconn *c = arg;
    if (c->state == C_RELAY)
        evbuffer_add_buffer(bufferevent_get_output(c->bev), bufferevent_get_input(bev));
    else if (c->state == C_PASSTHROUGH_PROXY)
        passthrough_proxy_answer(c, bufferevent_get_input(bev));
}

void tunnel_start_relay(cconn *c)
{
    client_plain_off(c);
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
        flow *f = c->run.f;
        if ((what & BEV_EVENT_CONNECTED) && c->w->sh->o->mode == MODE_UPSTREAM) {
            /* ask the upstream proxy for a tunnel; the target's address is
             * the proxy's to know, so the flow keeps the target's name */
            f->server.timestamp_tcp_setup = flow_now();
            char why[300];
            if (upconnect_write(c->w, &c->info, c->tunnel_host, c->tunnel_port, bufferevent_get_output(bev), why,
                                sizeof why) == 0) {
                c->state = C_PASSTHROUGH_PROXY;
                return;
            }
            flow_set_error(f, why);
            bufferevent_free(c->peer);
            c->peer = NULL;
            tunnel_reply_error(c, 502, why);
            client_close_after_write(c);
            return;
        }
        if (what & BEV_EVENT_CONNECTED) {
            f->server.timestamp_tcp_setup = flow_now();
            upstream_record_peer(bev, &f->server);
            tunnel_reply_ok(c);
            passthrough_relay_or_close(c);
            return;
        }
        char msg[512];
        upstream_error_text(c->w->sh->o, bev, c->tunnel_host, c->tunnel_port, false, false, what, msg, sizeof msg);
        flow_set_error(f, msg);
        bufferevent_free(c->peer);
        c->peer = NULL;
        tunnel_reply_error(c, (what & BEV_EVENT_TIMEOUT) ? 504 : 502, msg);
        client_close_after_write(c);
        return;
    }
    /* the server ended the relay: pass on what it sent, then close */
    evbuffer_add_buffer(bufferevent_get_output(c->bev), bufferevent_get_input(bev));
    bufferevent_free(c->peer);
    c->peer = NULL;
    client_close_after_write(c);
}

void tunnel_tls_event_or_close(cconn *c, short what)
{
    if (what & BEV_EVENT_CONNECTED) {
        SSL *ssl = bufferevent_openssl_get_ssl(c->bev);
        tls_fill_conn_info(ssl, &c->info, false);
        c->info.timestamp_tls_setup = flow_now();
        c->in_tunnel = c->w->sh->o->mode != MODE_REVERSE;
        c->state = C_READ_REQ;
        client_set_timeout(c, c->w->sh->o->idle_timeout);
        if (c->wio.bev) /* HTTP/1 reads on during exchanges, as plain */
            bufferevent_setwatermark(c->bev, EV_READ, 0, CLIENT_INPUT_MAX);
        client_event(c, SCRIPT_HOOK_TLS_ESTABLISHED_CLIENT, NULL);
        if (c->tcp_forced || (c->info.sni && hostmatch_any_host(c->w->tcp_hosts, c->info.sni, c->tunnel_port)))
            tcp_start_or_close(c);   /* tcp_hosts: the target's name or the SNI */
        else if (c->info.alpn && strcmp(c->info.alpn, "h2") == 0)
            client_start_h2_or_close(c);
        else if (rawtcp_applies(c) && !(c->info.alpn && strcmp(c->info.alpn, "http/1.1") == 0))
            detect_or_close(c);   /* an HTTP ALPN settles it; without one, the bytes tell */
        else
            c->up->serve_or_close(c);
        return;
    }
    char addr[128];
    printer_format_address(c->info.address_host, c->info.address_port, addr, sizeof addr);
    unsigned long e = bufferevent_get_openssl_error(c->bev);
    char es[320] = "connection closed";
    if (e) { /* a version mismatch names tls_version_client_min/max's values */
        ERR_error_string_n(e, es, 200);
        tlsopts_version_hint(bufferevent_openssl_get_ssl(c->bev), ERR_GET_REASON(e), es + strlen(es), 120);
    }
    log_info("%s: client TLS handshake failed for %s: %s (does the client trust the mitmlua CA?)", addr,
             c->tunnel_host ? c->tunnel_host : "?", es);
    char why[400];
    snprintf(why, sizeof why, "client TLS handshake failed: %s", es);
    script_conn_event ev = {.error = why};
    client_event(c, SCRIPT_HOOK_TLS_FAILED_CLIENT, &ev);
    client_free(c);
}

/* ---- tls_clienthello --------------------------------------------------------
 *
 * With a tls_clienthello hook, the ClientHello is read (into the plain
 * socket's input, where the TLS filter will find it) before any TLS is
 * spoken, so that the hook sees its server name and ALPN list and may pass
 * the connection through untouched.  Without one, nothing waits. */

#define HELLO_MAX (5 + 16384)   /* one record: what follows is not read */

static void client_hello_or_tls(cconn *c)
{
    if (!script_env_has_hook(c->w->scripts, SCRIPT_HOOK_TLS_CLIENTHELLO)) {
        start_client_tls_or_close(c);
        return;
    }
    c->state = C_TLS_HELLO;
    struct timeval tv = {c->w->sh->o->tls_handshake_timeout ? c->w->sh->o->tls_handshake_timeout : 10, 0};
    bufferevent_set_timeouts(c->bev, &tv, NULL);
    bufferevent_enable(c->bev, EV_READ);
    tunnel_hello_read_or_close(c);
}

/* ignore_connection: the tunnel's bytes go to its target as they are. */
static void pass_through_or_close(cconn *c)
{
    flow *f = flow_new();
    if (!f || flow_conn_copy(&f->client, &c->info) < 0) {
        flow_free(f);
        client_free(c);
        return;
    }
    flowrun_begin(&c->run, f);
    start_passthrough_or_close(c);
}

void tunnel_hello_read_or_close(cconn *c)
{
    struct evbuffer *in = bufferevent_get_input(c->bev);
    size_t n = evbuffer_get_length(in);
    const uint8_t *p = evbuffer_pullup(in, (ev_ssize_t)(n < 5 ? n : 5));
    long need = tlshello_record_size(p, n);
    if (need == 0 || (need > 0 && (size_t)need > n && n < HELLO_MAX))
        return; /* more to come */
    tlshello h = {0};
    char err[128];
    script_conn_event ev = {0};
    const char *alpn[TLSHELLO_MAX_ALPN];
    if (need > 0 && (size_t)need <= n &&
        tlshello_parse(evbuffer_pullup(in, need), (size_t)need, &h, err, sizeof err) == 0) {
        for (size_t i = 0; i < h.nalpn; i++)
            alpn[i] = h.alpn[i];
        ev.sni = h.sni[0] ? h.sni : NULL;
        ev.alpn = alpn;
        ev.nalpn = h.nalpn;
    }
    /* a hello that cannot be read is the handshake's to refuse */
    bufferevent_disable(c->bev, EV_READ);
    client_event(c, SCRIPT_HOOK_TLS_CLIENTHELLO, &ev);
    if (ev.ignore_connection) {
        pass_through_or_close(c);
        return;
    }
    start_client_tls_or_close(c);
}

/* ---- raw TCP (rawtcp) -------------------------------------------------------
 *
 * In a tunnel, whatever is not HTTP (after TLS was taken off, or without
 * TLS) is relayed as a TCP flow, as mitmdump's rawtcp does: the client's
 * first three bytes decide (an HTTP method is letters), and a client that
 * says nothing for TUNNEL_SERVER_FIRST_MS is taken to wait for the server
 * to speak first (SMTP, IMAP, MySQL) — where mitmdump 8 would wait for it
 * forever.  A slow HTTP client past that wait is relayed as TCP too: it
 * still works, without interception. */

static bool rawtcp_applies(const cconn *c)
{
    return c->w->sh->o->rawtcp && c->w->sh->o->mode != MODE_REVERSE && c->tunnel_host;
}

static void detect_or_close(cconn *c)
{
    c->state = C_TCP_DETECT;
    struct timeval tv = {0, TUNNEL_SERVER_FIRST_MS * 1000};
    bufferevent_set_timeouts(c->bev, &tv, NULL);
    bufferevent_enable(c->bev, EV_READ);
    tunnel_detect_read_or_close(c);
}

void tunnel_detect_read_or_close(cconn *c)
{
    struct evbuffer *in = bufferevent_get_input(c->bev);
    if (evbuffer_get_length(in) < 3)
        return;
    const unsigned char *p = evbuffer_pullup(in, 3);
    bool http = true;
    for (int i = 0; i < 3; i++)
        if (!((p[i] >= 'A' && p[i] <= 'Z') || (p[i] >= 'a' && p[i] <= 'z')))
            http = false;
    if (!http) {
        tcp_start_or_close(c);
        return;
    }
    c->state = C_READ_REQ;
    client_set_timeout(c, c->w->sh->o->idle_timeout);
    c->up->serve_or_close(c);
}

void tunnel_detect_event_or_close(cconn *c, short what)
{
    if ((what & BEV_EVENT_TIMEOUT) && !(what & (BEV_EVENT_EOF | BEV_EVENT_ERROR))) {
        tcp_start_or_close(c);   /* fewer than three bytes, or none: not HTTP */
        return;
    }
    client_free(c);
}

static void tcp_opened(exch *x);
static void tcp_open_failed(exch *x, int status, const char *msg);
static const exch_ops tcp_exch_ops = {.done = tcp_opened, .failed = tcp_open_failed};

/* A TCP flow that could not begin (killed by tcp_start, no server): its
 * error, tcp_error, recorded; the client is closed. */
static void tcp_fail_or_close(cconn *c, const char *msg)
{
    flow *f = c->run.f;
    if (!f->error)
        flow_set_error(f, msg);
    f->client.timestamp_end = f->server.timestamp_end = flow_now();
    if (script_env_has_hook(c->w->scripts, SCRIPT_HOOK_TCP_ERROR))
        script_env_run(c->w->scripts, SCRIPT_HOOK_TCP_ERROR, f);
    flowrun_finish(&c->run);
    client_close_after_write(c);
}

/* The tunnel carries something else than HTTP: a TCP flow begins
 * (tcp_start), then its server connection opens as an exchange's would. */
static void tcp_start_or_close(cconn *c)
{
    flow *f = flow_new();
    if (!f || flow_conn_copy(&f->client, &c->info) < 0 ||
        flow_strset(&f->server.address_host, c->tunnel_host) < 0) {
        flow_free(f);
        client_free(c);
        return;
    }
    f->type = FLOW_TCP;
    f->server.address_port = c->tunnel_port;
    f->server.timestamp_start = flow_now();
    flowrun_begin(&c->run, f);
    client_plain_off(c);
    bufferevent_set_timeouts(c->bev, NULL, NULL);
    bufferevent_disable(c->bev, EV_READ);   /* the relay reads, once it runs */
    c->state = C_TCP_OPEN;
    if (script_env_has_hook(c->w->scripts, SCRIPT_HOOK_TCP_START))
        script_env_run(c->w->scripts, SCRIPT_HOOK_TCP_START, f);
    if (f->killed) {
        tcp_fail_or_close(c, "Connection killed.");
        return;
    }
    exch_close(&c->x);
    exch_init(&c->x, c->w, &tcp_exch_ops, c);
    c->x.sni = c->tunnel_tls ? c->info.sni : NULL;
    exch_open(&c->x, f, c->tunnel_host, c->tunnel_port, c->tunnel_tls);
}

static void tcp_relay_done(void *owner)
{
    cconn *c = owner;
    flowrun_finish(&c->run);
    tcprelay_free(c->tcp);
    c->tcp = NULL;
    if (c->peer) {       /* a passed-through tunnel's (show_ignored_hosts) */
        linger_add(&c->w->lingering, c->peer, 5);
        c->peer = NULL;
    }
    exch_close_after_write(&c->x);   /* the server connection ends with the flow */
    bufferevent_setcb(c->bev, c->up->read, c->up->write, c->up->event, c);
    c->linger = true;    /* the client may still be sending */
    client_close_after_write(c);
}

static void tcp_opened(exch *x)
{
    cconn *c = x->owner;
    struct bufferevent *server = exch_relay_bev(x);
    c->state = C_TCP;
    tcprelay_limits lim = {TUNNEL_TCP_KEEP_MAX, c->w->sh->o->tcp_timeout};
    if (!server || !(c->tcp = tcprelay_start(c->bev, server, c->run.f, c->w->scripts, &lim, tcp_relay_done, c)))
        client_free(c);
}

/* A passed-through tunnel is open.  show_ignored_hosts: a TCP flow of its
 * bytes (still TLS records), with the tcp_* events, as mitmproxy 11 shows
 * it; by default its bytes are copied and no flow is kept, as mitmdump's. */
static void passthrough_relay_or_close(cconn *c)
{
    if (!c->w->sh->o->show_ignored_hosts) {
        tunnel_start_relay(c);
        return;
    }
    client_plain_off(c);
    c->state = C_TCP;
    flow *f = c->run.f;
    if (script_env_has_hook(c->w->scripts, SCRIPT_HOOK_TCP_START))
        script_env_run(c->w->scripts, SCRIPT_HOOK_TCP_START, f);
    if (f->killed) {
        tcp_fail_or_close(c, "Connection killed.");
        return;
    }
    tcprelay_limits lim = {TUNNEL_TCP_KEEP_MAX, c->w->sh->o->tcp_timeout};
    if (!(c->tcp = tcprelay_start(c->bev, c->peer, f, c->w->scripts, &lim, tcp_relay_done, c)))
        client_free(c);
}

static void tcp_open_failed(exch *x, int status, const char *msg)
{
    (void)status;
    tcp_fail_or_close(x->owner, msg);
}
