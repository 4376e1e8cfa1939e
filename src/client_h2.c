/* client_h2.c — the HTTP/2 client side of the proxy: h2.c turns the client's
 * bytes into requests, each stream goes through the pipeline (flowrun.h)
 * as an HTTP/1 flow does, and answers come back from it (h2_run_next)
 * to go out as frames.
 *
 * Upstream goes through upstream.c's exchanges, one per stream in flight,
 * as HTTP/1.1 (":authority" becomes Host; h2.c drops the response's
 * connection-specific fields) or HTTP/2 when the server picks it.
 * Exchanges are pooled per client connection, so their kept-alive server
 * connections serve the connection's next streams, and they share an
 * exch_pool: the streams of one client to one HTTP/2 server are streams
 * of one server connection.
 *
 * With stream_large_bodies a large response goes out as it arrives
 * (h2_submit_response_head / h2_stream_write); a stream whose client does
 * not open its window fast enough pauses its server.
 *
 * Lifetime: stream objects live from their complete request until h2.c
 * reports the stream closed; the connection ends when h2.c has nothing
 * more to read or write.  Closing is only ever asked of the owner from a
 * top-level event, as the last thing done. */
#include "client_h2.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <event2/buffer.h>
#include <event2/event.h>

#include "flowrun.h"
#include "h2.h"
#include "log.h"
#include "printer.h"
#include "upstream.h"

/* Output we queue before waiting for the client to read: DATA frames are
 * produced only as this drains, so a slow reader costs at most this. */
#define H2P_OUT_HIGH (256 * 1024)

/* Body bytes one streamed response may hold waiting for the client's
 * flow-control window before its server is paused. */
#define H2P_STREAM_HIGH (1024 * 1024)

/* Response bodies from this size on are lent to the stream, not copied. */
#define H2P_LEND_MIN (16 * 1024)

/* Kept server connections per client connection: as many as its streams
 * have needed at once (an HTTP/1.1 server connection carries one request
 * at a time, so fewer would close and reopen connections on every burst:
 * with 20 streams in flight and 8 kept, a third of the requests paid for
 * a new connection), at least a browser's burst to one origin, and never
 * more than the streams we grant (an idle client holds that many). */
#define H2P_IDLE_MIN 8

typedef struct h2ps h2ps;

/* An exchange slot: busy with one stream, or idle in the pool with its
 * server connection kept (if HTTP allowed). */
typedef struct h2px {
    struct h2px *next;  /* in the idle pool */
    h2ps *s;            /* the stream it serves; NULL when idle */
    exch x;
} h2px;

struct h2ps {
    struct h2ps *prev, *next;
    client_h2 *p;
    int32_t sid;
    flowrun run;        /* the flow in flight (run.f); NULL once answered */
    h2px *px;           /* while the request is upstream */
    bool streaming;     /* stream_large_bodies: the body goes out as it comes */
    bool paused;        /* ... and the server is paused: the client is slow */
};

struct client_h2 {
    worker *w;
    struct bufferevent *bev;
    h2_conn *conn;
    flow_conn client;
    bool in_tunnel, tls;
    char *host;
    uint16_t port;
    h2ps *streams;
    h2px *idle;
    size_t nidle;
    size_t nbusy;       /* slots lent to streams now */
    size_t keep;        /* idle slots kept: the most lent at once (H2P_IDLE_MIN..) */
    exch_pool *pool;    /* HTTP/2 server connections the slots share */
    int depth;          /* inside h2.c: closing must wait */
    bool over;          /* no more input: close once the output is out */
    struct event *flush_ev; /* pump_later's: runs once the current event is done */
    bool flush_pending;
    void (*close)(void *owner);
    void *owner;
};

static void h2ps_free(h2ps *s, const char *why);
static const flowrun_ops h2_run_ops;

/* ---- flows -------------------------------------------------------------- */

static void flow_fail(h2ps *s, const char *msg)
{
    flowrun_fail(&s->run, msg);
}

/* ---- exchange slots ----------------------------------------------------- */

static const exch_ops h2p_exch_ops;

static h2px *slot_get(client_h2 *p, h2ps *s)
{
    h2px *px = p->idle;
    if (px) {
        p->idle = px->next;
        p->nidle--;
    } else if ((px = calloc(1, sizeof *px)) != NULL) {
        exch_init(&px->x, p->w, &h2p_exch_ops, px);
        exch_share(&px->x, p->pool);
    } else {
        return NULL;
    }
    px->next = NULL;
    px->s = s;
    s->px = px;
    if (++p->nbusy > p->keep)
        p->keep = p->nbusy;
    return px;
}

/* The stream is done with its slot: back to the pool with its server
 * connection if that may carry another request, else closed. */
static void slot_put(client_h2 *p, h2ps *s)
{
    h2px *px = s->px;
    if (!px)
        return;
    s->px = NULL;
    px->s = NULL;
    p->nbusy--;
    exch_release_unless_reusable(&px->x);
    if (p->nidle >= p->keep) {
        exch_close(&px->x);
        free(px);
        return;
    }
    exch_watch_idle(&px->x); /* a server speaking out of turn is dropped */
    px->next = p->idle;
    p->idle = px;
    p->nidle++;
}

/* The stream gave up mid-exchange: its server connection is in an
 * unknown state, so it goes. */
static void slot_drop(h2ps *s)
{
    if (!s->px)
        return;
    s->p->nbusy--;
    exch_close(&s->px->x);
    free(s->px);
    s->px = NULL;
}

/* ---- output ------------------------------------------------------------- */

/* Queue what h2.c has for the client.  true when the connection is over. */
static bool pump(client_h2 *p)
{
    struct evbuffer *out = bufferevent_get_output(p->bev);
    if (h2_conn_flush(p->conn, out, H2P_OUT_HIGH) < 0)
        p->over = true;
    if (!h2_conn_alive(p->conn))
        p->over = true;
    return p->over && evbuffer_get_length(out) == 0;
}

/* After an upstream event: flush, and close when nothing is left. */
static void pump_or_close(client_h2 *p)
{
    if (pump(p) && p->depth == 0)
        p->close(p->owner); /* last thing */
}

/* Upstream events come in bursts: one read from a server ends several
 * streams.  Their answers go out together, after the read, in one TLS
 * record where they fit, rather than each in records of its own. */
static void flush_cb(evutil_socket_t fd, short what, void *arg)
{
    client_h2 *p = arg;
    p->flush_pending = false;
    pump_or_close(p);
}

static void pump_later(client_h2 *p)
{
    if (p->flush_pending)
        return;
    p->flush_pending = true;
    event_active(p->flush_ev, EV_TIMEOUT, 0);
}

static void answer_simple(h2ps *s, int status, const char *msg)
{
    flow_response *r = flow_response_new();
    if (!r)
        return;
    char len[24];
    snprintf(len, sizeof len, "%zu", strlen(msg) + 1);
    r->status_code = status;
    if (hdrs_add(&r->headers, "server", 6, "mitmlua", 7) < 0 ||
        hdrs_add(&r->headers, "content-type", 12, "text/plain; charset=utf-8", 25) < 0 ||
        hdrs_add(&r->headers, "content-length", 14, len, strlen(len)) < 0 ||
        bytes_set(&r->content, msg, strlen(msg)) < 0 || bytes_append(&r->content, "\n", 1) < 0 ||
        h2_submit_response(s->p->conn, s->sid, r) < 0)
        h2_reset_stream(s->p->conn, s->sid, 2 /* INTERNAL_ERROR */);
    flow_response_free(r);
}

static void fail_stream(h2ps *s, int status, const char *msg)
{
    slot_drop(s);
    if (s->streaming) {
        /* the head is out: no error answer can follow, the stream ends */
        h2_reset_stream(s->p->conn, s->sid, 2 /* INTERNAL_ERROR */);
        flow_fail(s, msg);
        return;
    }
    if (s->run.f && s->run.f->response) {
        flow_response_free(s->run.f->response);
        s->run.f->response = NULL;
    }
    answer_simple(s, status, msg);
    flow_fail(s, msg);
}

static void kill_stream(h2ps *s)
{
    slot_drop(s);
    h2_reset_stream(s->p->conn, s->sid, 8 /* CANCEL */);
    flow_fail(s, "Connection killed.");
}

/* A streamed response ended (the response hook could only look): head and
 * body are out; the trailers end the stream. */
static void deliver_streamed(h2ps *s)
{
    flow *f = s->run.f;
    if (!f->response->timestamp_end)
        f->response->timestamp_end = flow_now();
    slot_put(s->p, s);
    s->streaming = s->paused = false;
    if (h2_stream_end(s->p->conn, s->sid, &f->response->trailers) < 0) {
        flow_fail(s, h2_conn_error(s->p->conn));
        return;
    }
    flowrun_finish(&s->run);
}

/* The pipeline's response phase let the response through. */
static void deliver(h2ps *s)
{
    flow *f = s->run.f;
    if (s->streaming) {
        deliver_streamed(s);
        return;
    }
    flow_response *r = f->response;
    if (!r->http_version)
        r->http_version = strdup("HTTP/2.0");
    slot_put(s->p, s);
    /* a large body is lent to the stream: recorded from there, then the
     * stream alone holds it until the client has read it */
    bool lend = r->content.len >= H2P_LEND_MIN;
    if ((lend ? h2_submit_response_lent : h2_submit_response)(s->p->conn, s->sid, r) < 0) {
        char msg[200];
        snprintf(msg, sizeof msg, "%s", h2_conn_error(s->p->conn));
        fail_stream(s, 502, msg);
        return;
    }
    s->run.body_lent = lend;
    flowrun_finish(&s->run);
}

/* ---- the exchange upstream ---------------------------------------------- */

static int x_head(exch *x)
{
    h2px *px = x->owner;
    return flowrun_responseheaders(&px->s->run);
}

static void x_interim(exch *x, const flow_response *r)
{
    /* 100 Continue is ours to skip (the whole request body is here
     * already); others, such as 103 Early Hints, go on to the client */
    if (r->status_code == 100)
        return;
    h2ps *s = ((h2px *)x->owner)->s;
    if (h2_submit_interim(s->p->conn, s->sid, r) == 0)
        pump_later(s->p);
}

static void x_done(exch *x)
{
    h2ps *s = ((h2px *)x->owner)->s;
    client_h2 *p = s->p;
    p->depth++;    /* the verdict may come at once: close after it, not in it */
    flowrun_response(&s->run, s->streaming);
    p->depth--;
    pump_later(p);
}

static void x_failed(exch *x, int status, const char *msg)
{
    h2ps *s = ((h2px *)x->owner)->s;
    client_h2 *p = s->p;
    fail_stream(s, status, msg);
    pump_later(p);
}

static void x_stream_head(exch *x)
{
    h2ps *s = ((h2px *)x->owner)->s;
    flow_response *r = s->run.f->response;
    if (!r->http_version)
        r->http_version = strdup("HTTP/2.0");
    s->streaming = true;
    if (h2_submit_response_head(s->p->conn, s->sid, r) < 0)
        h2_reset_stream(s->p->conn, s->sid, 2 /* INTERNAL_ERROR */);
    pump_later(s->p);
}

static void x_stream_data(exch *x, const char *data, size_t n)
{
    h2ps *s = ((h2px *)x->owner)->s;
    client_h2 *p = s->p;
    if (h2_stream_write(p->conn, s->sid, data, n) < 0)
        return; /* the client reset the stream: on_close cleans up */
    pump_later(p);
    if (!s->paused && h2_stream_pending(p->conn, s->sid) > H2P_STREAM_HIGH) {
        s->paused = true;
        exch_pause(x, true);
    }
}

static const exch_ops h2p_exch_ops = {.head = x_head, .interim = x_interim, .done = x_done, .failed = x_failed,
                                      .stream_head = x_stream_head, .stream_data = x_stream_data};

/* The client took some output: streams whose server was paused because the
 * client's window was full may go on. */
static void resume_streams(client_h2 *p)
{
    for (h2ps *s = p->streams; s; s = s->next)
        if (s->paused && s->px && h2_stream_pending(p->conn, s->sid) < H2P_STREAM_HIGH / 4) {
            s->paused = false;
            exch_pause(&s->px->x, false);
        }
}

/* ---- requests ----------------------------------------------------------- */

/* Where the request goes, as client_h1.c decides it for origin-form HTTP/1
 * requests; and the Host header an HTTP/1 server needs.  0 or a status. */
static int resolve_target(client_h2 *p, flow_request *r, const char **why)
{
    const opts *o = p->w->sh->o;
    if (strcmp(r->method, "CONNECT") == 0) {
        *why = "CONNECT over HTTP/2 is not supported";
        return 501;
    }
    if (p->in_tunnel) {
        if (flow_strset(&r->host, p->host) < 0 || flow_strset(&r->scheme, p->tls ? "https" : "http") < 0)
            return 500;
        r->port = p->port;
    } else if (o->mode == MODE_REVERSE) {
        if (flow_strset(&r->host, o->mode_url.host) < 0 || flow_strset(&r->scheme, o->mode_url.scheme) < 0)
            return 500;
        r->port = o->mode_url.port;
        if (!o->keep_host_header) {
            char val[320];
            flow_authority(r->scheme, r->host, r->port, val, sizeof val);
            if (hdrs_set(&r->headers, "host", val, strlen(val)) < 0)
                return 500;
        }
    } else if (!r->host || !*r->host) {
        *why = "request without :authority";
        return 400;
    }
    if (o->mode != MODE_UPSTREAM || p->in_tunnel)
        hdrs_remove(&r->headers, "proxy-authorization"); /* meant for us */
    /* HTTP/1 wants Host first; :authority carries it in HTTP/2 */
    size_t hl;
    if (!hdrs_get(&r->headers, "host", &hl) && r->authority && *r->authority) {
        hdrs h = {0};
        if (hdrs_add(&h, "host", 4, r->authority, strlen(r->authority)) < 0)
            return 500;
        for (size_t i = 0; i < r->headers.n; i++)
            if (hdrs_add(&h, r->headers.v[i].name, r->headers.v[i].name_len, r->headers.v[i].value,
                         r->headers.v[i].value_len) < 0) {
                hdrs_free(&h);
                return 500;
            }
        hdrs_free(&r->headers);
        r->headers = h;
    }
    return 0;
}

static void on_request(void *ud, int32_t sid, flow_request *r)
{
    client_h2 *p = ud;
    h2ps *s = calloc(1, sizeof *s);
    flow *f = s ? flow_new() : NULL;
    if (!f) {
        free(s);
        flow_request_free(r);
        h2_reset_stream(p->conn, sid, 2);
        return;
    }
    s->p = p;
    s->sid = sid;
    flowrun_init(&s->run, &p->w->run, &h2_run_ops, s);
    flowrun_begin(&s->run, f);
    f->request = r;
    s->next = p->streams;
    if (p->streams)
        p->streams->prev = s;
    p->streams = s;
    flow_conn_copy(&f->client, &p->client);

    const char *why = "bad request";
    int st = resolve_target(p, r, &why);
    if (st) {
        answer_simple(s, st, why);
        flow_fail(s, why);
        return;
    }
    flowrun_request(&s->run);
}

/* What the pipeline decided for a stream's flow.  Inside h2.c (a request
 * that came in) the caller flushes; from the loop (a hook that waited) we
 * flush here, and close the connection when that was its last word. */
static void h2_run_next(flowrun *r, enum flowrun_verdict v, int status, const char *msg)
{
    h2ps *s = r->owner;
    client_h2 *p = s->p;
    bool top = p->depth == 0;
    p->depth++;
    switch (v) {
    case FLOWRUN_FORWARD: {
        h2px *px = slot_get(p, s);
        if (!px) {
            fail_stream(s, 500, "out of memory");
            break;
        }
        px->x.in_tunnel = p->in_tunnel;
        px->x.sni = p->in_tunnel ? p->client.sni : NULL;
        exch_start(&px->x, s->run.f); /* may answer at once: depth keeps us open */
        break;
    }
    case FLOWRUN_ANSWERED:
        flowrun_response(&s->run, false);
        break;
    case FLOWRUN_DELIVER:
        deliver(s);
        break;
    case FLOWRUN_KILLED:
        kill_stream(s);
        break;
    case FLOWRUN_FAILED:
        fail_stream(s, status, msg);
        break;
    }
    p->depth--;
    if (top)
        pump_or_close(p);
}

static const flowrun_ops h2_run_ops = {h2_run_next};

static void on_refused(void *ud, int32_t sid, int status, const char *msg)
{
    client_h2 *p = ud;
    char addr[128];
    printer_format_address(p->client.address_host, p->client.address_port, addr, sizeof addr);
    log_info("%s: HTTP/2 stream %d refused (%d): %s", addr, (int)sid, status, msg);
}

static void on_close(void *ud, int32_t sid, uint32_t code)
{
    client_h2 *p = ud;
    for (h2ps *s = p->streams; s; s = s->next)
        if (s->sid == sid) {
            h2ps_free(s, "client reset the stream");
            return;
        }
}

static void h2ps_free(h2ps *s, const char *why)
{
    client_h2 *p = s->p;
    slot_drop(s);
    flow_fail(s, why);
    if (s->prev)
        s->prev->next = s->next;
    else
        p->streams = s->next;
    if (s->next)
        s->next->prev = s->prev;
    free(s);
}

/* ---- the connection ----------------------------------------------------- */

client_h2 *client_h2_new(worker *w, struct bufferevent *bev, const client_h2_origin *o,
                     void (*close)(void *owner), void *owner)
{
    static const h2_events ev = {.on_request = on_request, .on_refused = on_refused, .on_close = on_close};
    client_h2 *p = calloc(1, sizeof *p);
    if (!p)
        return NULL;
    p->w = w;
    p->bev = bev;
    p->close = close;
    p->owner = owner;
    p->in_tunnel = o->in_tunnel;
    p->tls = o->tls;
    p->port = o->port;

    h2_limits lim;
    h2_limits_default(&lim);
    const opts *op = w->sh->o;
    lim.max_body = op->body_size_limit;
    if (op->max_header_size)
        lim.max_header_list = op->max_header_size;
    if (op->max_headers > 0)
        lim.max_headers = (size_t)op->max_headers;
    if (flow_strset(&p->host, o->host) < 0 || flow_conn_copy(&p->client, o->client) < 0 || !(p->conn = h2_conn_new(true, &lim, &ev, p)) ||
        !(p->pool = exch_pool_new()) || !(p->flush_ev = event_new(w->base, -1, 0, flush_cb, p))) {
        client_h2_free(p);
        return NULL;
    }
    p->keep = H2P_IDLE_MIN;
    /* write_cb fires when our queue runs low, to produce more frames */
    bufferevent_setwatermark(bev, EV_WRITE, H2P_OUT_HIGH / 4, 0);
    return p;
}

int client_h2_on_read(client_h2 *p)
{
    struct evbuffer *in = bufferevent_get_input(p->bev);
    size_t n = evbuffer_get_length(in);
    if (n && !p->over) {
        p->depth++;
        int rv = h2_conn_feed(p->conn, evbuffer_pullup(in, (ssize_t)n), n);
        p->depth--;
        if (rv < 0) {
            char addr[128];
            printer_format_address(p->client.address_host, p->client.address_port, addr, sizeof addr);
            log_info("%s: HTTP/2 protocol error: %s", addr, h2_conn_error(p->conn));
            p->over = true;
            bufferevent_disable(p->bev, EV_READ);
        }
    }
    evbuffer_drain(in, n);
    if (pump(p))
        return -1;
    resume_streams(p);   /* a WINDOW_UPDATE may have let paused streams' bytes out */
    return 0;
}

int client_h2_on_write(client_h2 *p)
{
    p->depth++;
    bool over = pump(p);
    if (!over)
        resume_streams(p);
    p->depth--;
    return over ? -1 : 0;
}

bool client_h2_idle(const client_h2 *p)
{
    return p->streams == NULL;
}

void client_h2_free(client_h2 *p)
{
    if (!p)
        return;
    while (p->streams)
        h2ps_free(p->streams, "client disconnected");
    while (p->idle) {
        h2px *px = p->idle;
        p->idle = px->next;
        exch_close(&px->x);
        free(px);
    }
    exch_pool_free(p->pool); /* after every slot let go */
    if (p->flush_ev)
        event_free(p->flush_ev); /* a pending flush goes with it */
    h2_conn_free(p->conn);
    flow_conn_clear(&p->client);
    free(p->host);
    free(p);
}
