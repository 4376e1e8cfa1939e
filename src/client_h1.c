/* client_h1.c — HTTP/1 on a client connection, on one worker's event loop.
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
 * The request goes through the flow pipeline (flowrun.h), whose verdicts
 * come back to h1_run_next; the connection's events are dispatched here,
 * down to tunnel.c and client_h2.c in the states that are theirs. */
#include "bevbulk.h"
#include "client_int.h"

#include <arpa/inet.h>
#include <ctype.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>

#include <event2/buffer.h>
#include <event2/bufferevent.h>

#include "block.h"
#include "guard.h"
#include "h2.h"
#include "log.h"
#include "printer.h"
#include "proxyauth.h"
#include "ws.h"

/* Response bodies from this size on are handed to the client's output by
 * reference, not copied (smaller ones cost less to copy than to track). */
#define LEND_MIN (16 * 1024)

/* ---- client callbacks --------------------------------------------------- */

static void client_read_cb(struct bufferevent *bev, void *arg);
static void client_write_cb(struct bufferevent *bev, void *arg);
static void client_event_cb(struct bufferevent *bev, short what, void *arg);
static void process_client_or_close(cconn *c);
static void deliver_response_or_close(cconn *c);
static void exchange_done_or_close(cconn *c);

static const client_upcalls h1_upcalls = {client_read_cb, client_write_cb, client_event_cb,
                                          process_client_or_close};

/* ---- request targets ---------------------------------------------------- */

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
        if (flow_parse_authority(t, strlen(t), 0, &r->host, &r->port) < 0 || r->port == 0) {
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
        if (flow_parse_authority(a, alen, https ? 443 : 80, &r->host, &r->port) < 0) {
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
        /* RFC 9112 §3.2.2: a proxy replaces Host with the target's
         * authority, so that the server cannot be told another name than
         * the one the request went to (mitmdump forwards the client's) */
        size_t hl;
        const char *h = hdrs_get(&r->headers, "host", &hl);
        bool host_ok = h && hl == alen && strncasecmp(h, a, alen) == 0;
        if (!path || flow_strnset(&r->authority, a, alen) < 0 ||
            flow_strset(&r->scheme, https ? "https" : "http") < 0 ||
            (!host_ok && hdrs_set(&r->headers, "Host", r->authority, alen) < 0)) {
            free(path);
            return 500;
        }
        free(r->path);   /* a and t point into it: not used after this */
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
    return t && c->run.f && !c->run.f->request->method && flow_now() - c->head_since > t;
}

static void request_timed_out_or_close(cconn *c)
{
    client_send_simple(c, 408, "request timed out", true);
    flowrun_release(&c->run);
    client_close_after_write(c);
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
    flow *f = c->run.f;
    struct evbuffer *out = bufferevent_get_output(c->bev);
    f->request->timestamp_end = flow_now();
    f->response = proxyauth_challenge(c->w->sh->o->mode != MODE_REVERSE);
    if (!f->response || h1_write_response(out, f->response, &f->response->content) < 0) {
        client_free(c);
        return;
    }
    flowrun_finish(&c->run);
    c->linger = true;
    client_close_after_write(c);
}

static int on_request_head(void *ud)
{
    cconn *c = ud;
    flow_request *r = c->run.f->request;
    const char *why = "bad request";
    int st = resolve_target(c, r, &why);
    if (st) {
        /* report through the parser's error path: status + reason */
        c->target_status = st;
        flow_set_error(c->run.f, why);
        c->run.f->request->timestamp_end = flow_now();
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
    if (strcmp(r->method, "CONNECT") != 0 && flowrun_requestheaders(&c->run) < 0) {
        c->target_status = 502;   /* reported with the flow's error */
        return -1;
    }
    return c->run.f->killed ? -1 : 0;
}

static int on_request_body(void *ud, const char *at, size_t n)
{
    cconn *c = ud;
    return bytes_append(&c->run.f->request->content, at, n);
}

static bool new_flow(cconn *c)
{
    flow *f = flow_new();
    if (!f || !(f->request = flow_request_new())) {
        flow_free(f);
        return false;
    }
    flowrun_begin(&c->run, f);
    flow_conn_copy(&f->client, &c->info);
    h1_parser_begin_request(c->parser, c->run.f->request);
    return true;
}

static void client_protocol_error_or_close(cconn *c)
{
    int status = h1_parser_error_status(c->parser);
    const char *why = h1_parser_error(c->parser);
    if (c->target_status && c->run.f && c->run.f->error && c->run.f->error->msg) {
        why = c->run.f->error->msg;       /* set by on_request_head */
        status = c->target_status;
    }
    if (c->run.f && c->run.f->killed) {
        flowrun_fail(&c->run, "Connection killed.");
        client_free(c);
        return;
    }
    char addr[128];
    printer_format_address(c->info.address_host, c->info.address_port, addr, sizeof addr);
    char msg[256];
    snprintf(msg, sizeof msg, "%s", why);
    log_info("%s: HTTP/1 protocol error: %s", addr, msg);
    client_send_simple(c, status, msg, true);
    c->linger = true;
    if (c->run.f && c->run.f->request && c->run.f->request->method && c->run.f->request->host) {
        flowrun_fail(&c->run, msg);
    } else {
        flowrun_release(&c->run);
    }
    client_close_after_write(c);
}

/* ---- one request through the pipeline ---------------------------------- */

static void kill_or_close(cconn *c)
{
    flowrun_fail(&c->run, "Connection killed.");
    client_free(c);
}

/* The request is complete: into the pipeline (flowrun.h), whose verdicts
 * come back to h1_run_next. */
static void handle_request_or_close(cconn *c)
{
    if (strcmp(c->run.f->request->method, "CONNECT") == 0)
        flowrun_connect(&c->run);
    else
        flowrun_request(&c->run);
}

static void forward_or_close(cconn *c)
{
    flow *f = c->run.f;
    if (strcmp(f->request->method, "CONNECT") == 0) {
        tunnel_connect_or_close(c);
        return;
    }
    c->x.in_tunnel = c->in_tunnel;
    c->x.sni = c->in_tunnel ? c->info.sni : NULL;
    exch_start(&c->x, f);
}

static void h1_run_next(flowrun *r, enum flowrun_verdict v, int status, const char *msg)
{
    cconn *c = r->owner;
    switch (v) {
    case FLOWRUN_FORWARD:
        forward_or_close(c);
        return;
    case FLOWRUN_ANSWERED:
        flowrun_response(&c->run, false);
        return;
    case FLOWRUN_DELIVER:
        deliver_response_or_close(c);
        return;
    case FLOWRUN_KILLED:
        if (strcmp(c->run.f->request->method, "CONNECT") == 0) {
            flowrun_release(&c->run);   /* a killed CONNECT is not a flow to record */
            client_free(c);
            return;
        }
        kill_or_close(c);
        return;
    case FLOWRUN_FAILED:
        client_fail_or_close(c, status, msg);
        return;
    }
}

static const flowrun_ops h1_run_ops = {h1_run_next};


static void process_client_or_close(cconn *c)
{
    struct evbuffer *in = bufferevent_get_input(c->bev);
    while (c->state == C_READ_REQ) {
        if (!c->run.f) {
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
                    client_start_h2_or_close(c);
                    return;
                }
            }
            if (!new_flow(c)) {
                client_free(c);
                return;
            }
            client_set_timeout(c, c->w->sh->o->read_timeout);
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
            client_set_timeout(c, 0);
        else
            bufferevent_disable(c->bev, EV_READ);
        c->keep_alive = h1_parser_keep_alive(c->parser);
        c->state = C_WAIT_UPSTREAM;
        handle_request_or_close(c);
        return;
    }
}

/* ---- upstream: how the exchange went, for an HTTP/1 client ------------- */

static int h1x_head(exch *x)
{
    cconn *c = x->owner;
    return flowrun_responseheaders(&c->run);
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
    flowrun_response(&c->run, c->streaming);
}

static void h1x_failed(exch *x, int status, const char *msg)
{
    cconn *c = x->owner;
    if (c->streaming) {
        /* part of the response is out: an error answer cannot follow it,
         * so the client sees the connection end early */
        flowrun_fail(&c->run, msg);
        client_free(c);
        return;
    }
    client_fail_or_close(c, status, msg);
}

/* Above this much unsent response, stop reading the server. */
#define STREAM_HIGH_WATER (1u << 20)

static void h1x_stream_head(exch *x)
{
    cconn *c = x->owner;
    flow_response *resp = c->run.f->response;
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


/* ---- the response to the client ----------------------------------------- */

static bool status_has_no_body(int st)
{
    return (st >= 100 && st < 200) || st == 204 || st == 304;
}

/* The whole response is queued for the client: the flow is finished; the
 * exchange ends once the bytes are out. */
static void response_queued(cconn *c)
{
    flow *f = c->run.f;
    flow_response *resp = f->response;
    /* a WebSocket flow is finished when the connection closes (wsrelay);
     * with websocket=false the switched connection is relayed as bytes */
    if (c->upgrade_after_write && c->w->sh->o->websocket && ws_is_upgrade_request(&f->request->headers) &&
        ws_is_upgrade_response(resp->status_code, &resp->headers)) {
        f->websocket = true;
    } else {
        /* a lent body: recorded, then the output frees it when written */
        c->run.body_lent = c->body_lent;
        flowrun_finish(&c->run);
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

/* A streamed response ended (the response hook could only look): its head
 * and body are out already. */
static void deliver_streamed_or_close(cconn *c)
{
    flow_response *resp = c->run.f->response;
    c->streaming = c->stream_paused = false;
    if (!resp->timestamp_end)
        resp->timestamp_end = flow_now();
    struct evbuffer *out = bufferevent_get_output(c->bev);
    bytes empty = {0};
    if (c->stream_chunked && h1_write_body(out, &empty, true, &resp->trailers) < 0) {
        client_free(c);
        return;
    }
    response_queued(c);
}

static void deliver_response_or_close(cconn *c)
{
    flow *f = c->run.f;
    if (c->streaming) {
        deliver_streamed_or_close(c);
        return;
    }
    flow_response *resp = f->response;
    if (!resp->http_version)
        resp->http_version = strdup("HTTP/1.1");
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
        client_free(c);
        return;
    }
    response_queued(c);
}

/* The WebSocket connection closed: its flow is finished now, and the
 * server connection ends with it (after our last frames, a close, were
 * written to it: it lingers on the worker for that). */
static void ws_relay_done(void *owner)
{
    cconn *c = owner;
    c->run.f->client.timestamp_end = c->run.f->server.timestamp_end = flow_now();
    flowrun_finish(&c->run);
    exch_close_after_write(&c->x);
    bufferevent_setcb(c->bev, client_read_cb, client_write_cb, client_event_cb, c);
    /* the client may still be sending: closing with its bytes unread would
     * reset the connection and lose the close frame still queued for it */
    c->linger = true;
    client_close_after_write(c);
}

/* Response written: next request, a protocol switch, or the end. */
static void exchange_done_or_close(cconn *c)
{
    struct bufferevent *srv;
    if (c->upgrade_after_write && c->run.f && c->run.f->websocket && (srv = exch_relay_bev(&c->x))) {
        /* the exchange keeps the server connection, so that the scripts
         * hear it disconnect when the WebSocket ends, not at its 101 */
        c->upgrade_after_write = false;
        c->state = C_RELAY;
        client_plain_off(c);   /* the relay's callbacks from now on */
        c->ws = wsrelay_start(c->bev, srv, c->run.f, c->w->scripts, c->w->sh->o->body_size_limit, ws_relay_done, c);
        if (!c->ws)
            client_free(c);
        return;
    }
    if (c->upgrade_after_write && (c->peer = exch_take_bev(&c->x))) {
        c->upgrade_after_write = false;
        tunnel_start_relay(c);
        return;
    }
    if (c->run.f && c->run.f->websocket) { /* switched, but the server is gone */
        flowrun_fail(&c->run, "WebSocket: server disconnected");
        client_close_after_write(c);
        return;
    }
    if (!c->keep_alive || c->w->stopping) {
        client_close_after_write(c);
        return;
    }
    c->state = C_READ_REQ;
    /* The kept upstream connection is idle: bytes it sends now answer no
     * request, and reusing it would hand them to the next one (response
     * splitting), so such a connection is dropped. */
    exch_watch_idle(&c->x);
    client_set_timeout(c, c->w->sh->o->idle_timeout);
    bufferevent_enable(c->bev, EV_READ);
    process_client_or_close(c);
}

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
        if (client_h2_on_read(c->h2) < 0)
            client_close_after_write(c);   /* a GOAWAY may still be on its way */
        return;
    }
    if (c->state == C_READ_REQ)
        process_client_or_close(c);
    else if (c->state == C_TLS_HELLO)
        tunnel_hello_read_or_close(c);
    else if (c->state == C_SOCKS)
        tunnel_socks_read_or_close(c);
    else if (c->state == C_TCP_DETECT)
        tunnel_detect_read_or_close(c);
}

static void client_write_cb(struct bufferevent *bev, void *arg)
{
    cconn *c = arg;
    if (c->state == C_H2) {
        if (client_h2_on_write(c->h2) < 0)
            client_close_after_write(c);
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
        client_linger_or_close(c);
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
        (c->state == C_WAIT_UPSTREAM || c->state == C_WRITING_RESP) && !flowrun_waiting(&c->run)) {
        /* a client that half-closed after its request (shutdown(SHUT_WR))
         * still gets the answer; then the connection closes.  (Deferred
         * callbacks merge events: an EOF may come with a write error.) */
        c->keep_alive = false;
        return;
    }
    /* An EOF while a hook holds the flow is a client that gave up: the
     * flow ends as an error (client_free) instead of going upstream later
     * for nobody. */
    if (c->state == C_TLS_HANDSHAKE) {
        tunnel_tls_event_or_close(c, what);
        return;
    }
    if (c->state == C_TCP_DETECT) {
        tunnel_detect_event_or_close(c, what);
        return;
    }
    if (what & BEV_EVENT_CONNECTED)
        return;
    if (c->state == C_RELAY) {
        if (c->peer)
            evbuffer_add_buffer(bufferevent_get_output(c->peer), bufferevent_get_input(bev));
        client_free(c);
        return;
    }
    if (c->state == C_H2 && (what & BEV_EVENT_TIMEOUT) && !client_h2_idle(c->h2)) {
        /* idle client, busy streams: the timeout is the upstream's to enforce */
        bufferevent_enable(bev, EV_READ | EV_WRITE);
        return;
    }
    /* EOF mid-request means the client gave up (a request body is never
     * close-delimited, RFC 9112 §6.3): client_free fails the flow. */
    if ((what & BEV_EVENT_TIMEOUT) && c->state == C_READ_REQ && c->run.f &&
        h1_parser_started(c->parser) && c->run.f->request->method) {
        client_send_simple(c, 408, "request timed out", true);
        flowrun_fail(&c->run, "client timed out sending the request");
        client_close_after_write(c);
        return;
    }
    client_free(c);
}

/* ---- accepting ---------------------------------------------------------- */

void client_accept(worker *w, evutil_socket_t fd, struct sockaddr *sa)
{
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
    c->up = &h1_upcalls;
    exch_init(&c->x, w, &h1_exch_ops, c);
    flowrun_init(&c->run, &w->run, &h1_run_ops, c);
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
        client_free(c);
        return;
    }
    if (log_get_level() >= LOG_DEBUG) {
        /* mitmdump's connection lines (it prints them at info) */
        char addr[INET6_ADDRSTRLEN + 16];
        printer_format_address(ip, port, addr, sizeof addr);
        log_debug("%s: client connect", addr);
        c->logged_connect = true;
    }
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    static const h1_events cev = {on_request_head, on_request_body};
    c->parser = h1_parser_new_request(&w->req_limits, &cev, c);
    c->bev = bufferevent_socket_new(w->base, fd, CLIENT_BEV_OPTS);
    if (!c->parser || !c->bev) {
        client_free(c);
        return;
    }
    c->state = C_READ_REQ;
    (void)bevbulk_attach(c->bev);   /* failing that, libevent reads 4 KB at a time */
    bufferevent_setcb(c->bev, client_read_cb, client_write_cb, client_event_cb, c);
    client_set_timeout(c, w->sh->o->idle_timeout);
    bufferevent_enable(c->bev, EV_READ | EV_WRITE);
    /* failing that, libevent writes as usual */
    if (bevio_attach(&c->wio, w->base, c->bev, client_write_cb, c) == 0)
        bufferevent_setwatermark(c->bev, EV_READ, 0, CLIENT_INPUT_MAX);
    c->announced = true;
    client_event(c, SCRIPT_HOOK_CLIENT_CONNECTED, NULL);
    tunnel_accept_or_close(c);
}
