/* client.c — a client connection's lifetime, and what every protocol
 * spoken on it needs: answers of the proxy's own, closing after the last
 * byte (gently, when the client may still be sending), timeouts, the hand
 * over to HTTP/2 (client_int.h). */
#include "client_int.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/bufferevent_ssl.h>

#include "guard.h"
#include "log.h"
#include "printer.h"
#include "tls.h"

void client_free(cconn *c)
{
    if (c->run.f && c->ws) { /* a WebSocket cut short: still one finished flow */
        wsrelay_interrupt(c->ws, "WebSocket: connection closed by the proxy");
        flowrun_finish(&c->run);
    } else if (c->run.f && c->tcp) { /* so is a raw TCP flow */
        tcprelay_interrupt(c->tcp, "connection closed by the proxy");
        flowrun_finish(&c->run);
    } else if (c->run.f && c->run.f->type == FLOW_TCP) {
        /* a passed-through tunnel ends, or a TCP flow that was opening */
        c->run.f->client.timestamp_end = c->run.f->server.timestamp_end = flow_now();
        if (!c->run.f->server.timestamp_tcp_setup && !c->run.f->error)
            flow_set_error(c->run.f, "client disconnected");
        if (c->state == C_TCP_OPEN || c->w->sh->o->show_ignored_hosts)
            flowrun_finish(&c->run);
        else
            flowrun_release(&c->run);   /* mitmproxy keeps no flow of an ignored connection */
    } else if (c->run.f) {
        flowrun_fail(&c->run, "client disconnected");
    }
    flowrun_release(&c->run);
    if (c->logged_connect) {
        char addr[300];
        printer_format_address(c->info.address_host, c->info.address_port, addr, sizeof addr);
        log_debug("%s: client disconnect", addr);
    }
    if (c->announced) {
        c->info.timestamp_end = flow_now();
        client_event(c, SCRIPT_HOOK_CLIENT_DISCONNECTED, NULL);
    }
    wsrelay_free(c->ws);
    tcprelay_free(c->tcp);
    client_h2_free(c->h2);
    exch_close(&c->x);
    if (c->peer)
        bufferevent_free(c->peer);
    dial_cancel(c->dial);
    sk_X509_pop_free(c->upstream_chain, X509_free);
    if (c->peek_ev)
        event_free(c->peek_ev);
    bevio_detach(&c->wio);   /* before the bufferevent goes */
    if (c->bev && c->tunnel_tls)
        tls_keep_session(bufferevent_openssl_get_ssl(c->bev));
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
size_t client_unsent(cconn *c)
{
    return bevio_unsent(c->bev);
}

/* Close once everything queued for the client has been written. */
void client_close_after_write(cconn *c)
{
    c->state = C_CLOSING;
    exch_release_unless_reusable(&c->x);
    if (!c->bev) {
        client_free(c);
        return;
    }
    if (client_unsent(c) == 0) {
        client_linger_or_close(c);
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
            client_free(c);
            return;
        }
    }
    bufferevent_enable(c->bev, EV_WRITE);
}

/* A response the proxy itself makes (errors): plain text, one line. */
void client_send_simple(cconn *c, int status, const char *msg, bool close)
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
void client_fail_or_close(cconn *c, int status, const char *msg)
{
    exch_close(&c->x);
    if (c->run.f && c->run.f->response) {
        flow_response_free(c->run.f->response);
        c->run.f->response = NULL;
    }
    client_send_simple(c, status, msg, true);
    flowrun_fail(&c->run, msg);
    client_close_after_write(c);
}

/* Client timeouts: idle_timeout while waiting for a request, read_timeout
 * once one has begun. */
void client_set_timeout(cconn *c, int seconds)
{
    struct timeval tv = {seconds, 0};
    bufferevent_set_timeouts(c->bev, seconds ? &tv : NULL, NULL);
}

/* The connection stops being HTTP/1 handled here (TLS starts under it, or
 * HTTP/2 or a relay take it over): libevent writes its output again, and
 * its input is no longer bounded by CLIENT_INPUT_MAX (a relay may need a
 * whole frame).  Over TLS, HTTP/1 turns it on again (bevio_attach_wire). */
void client_plain_off(cconn *c)
{
    if (!c->wio.bev)
        return;
    bevio_detach(&c->wio);
    bufferevent_setwatermark(c->bev, EV_READ, 0, 0);
}

/* The socket under a TLS client connection has written everything. */
void client_wire_drained(struct bufferevent *wire, void *arg)
{
    cconn *c = arg;
    (void)wire;
    c->up->write(c->bev, c);
}

/* After an error answer the client may still be sending (a huge header,
 * a body we refused).  Closing at once would make the kernel send RST and
 * the client could lose our answer, so shut down our side and discard its
 * input for a short while first (what nginx calls lingering close). */
void client_linger_or_close(cconn *c)
{
    /* over TLS too: every record is on the wire by now (client_unsent),
     * so the FIN follows them; the client sees no close_notify */
    struct bufferevent *wire = bufferevent_get_underlying(c->bev);
    if (!c->linger || shutdown(c->fd, SHUT_WR) < 0) {
        client_free(c);
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


/* HTTP/2 has said its last word: over TLS its records (a GOAWAY) may still
 * be in the socket's output under the filter, so close after they left. */
static void h2_close_cb(void *owner)
{
    client_close_after_write(owner);
}

/* The client speaks HTTP/2 (ALPN h2, or the h2c preface): client_h2.c runs
 * the connection from here on. */
void client_start_h2_or_close(cconn *c)
{
    client_h2_origin o = {&c->info, c->in_tunnel, c->tunnel_tls, c->tunnel_host, c->tunnel_port};
    client_plain_off(c);   /* client_h2 paces its own writes */
    if (!(c->h2 = client_h2_new(c->w, c->bev, &o, h2_close_cb, c))) {
        client_free(c);
        return;
    }
    c->state = C_H2;
    bufferevent_enable(c->bev, EV_READ | EV_WRITE);
    if (client_h2_on_read(c->h2) < 0)
        client_close_after_write(c);
}

void client_event(cconn *c, enum script_hook h, script_conn_event *ev)
{
    if (!script_env_has_hook(c->w->scripts, h))
        return;
    script_conn_event none = {0};
    if (!ev)
        ev = &none;
    ev->client = &c->info;
    script_env_conn_event(c->w->scripts, h, ev);
}

/* ---- the worker stops ----------------------------------------------------- */

void client_close_idle(worker *w)
{
    for (cconn *c = w->conns, *next; c; c = next) {
        next = c->next;
        if ((c->state == C_READ_REQ && !c->run.f) || c->state == C_TUNNEL_PEEK || c->state == C_TLS_HELLO ||
            c->state == C_LINGER ||
            c->state == C_RELAY || c->state == C_SOCKS || c->state == C_DIAL || c->state == C_TCP_DETECT ||
            c->state == C_TCP_OPEN || c->state == C_TCP ||
            (c->state == C_H2 && client_h2_idle(c->h2)))
            client_free(c);
    }
}

void client_close_all(worker *w)
{
    while (w->conns)
        client_free(w->conns);
}
