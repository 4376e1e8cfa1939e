/* wsrelay.c — see wsrelay.h.
 *
 * Side 0 is the client, side 1 the server.  Each side has a parser for the
 * frames it sends; what it sends is written to the other side re-framed
 * (one unfragmented frame per message: hooks may have changed the size, and
 * mitmproxy re-frames the same way), masked towards the server only. */
#include "wsrelay.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <event2/buffer.h>
#include <event2/event.h>

#include "log.h"
#include "relaypace.h"
#include "ws.h"

struct wsrelay {
    relaypace pace;           /* both bufferevents, and which is paused */
    ws_parser *parser[2];
    bool close_seen[2];       /* this side sent a close frame */
    flow *f;
    script_env *scripts;
    wsrelay_done_fn done;
    void *owner;
    bool over;
};

static void read_cb(struct bufferevent *bev, void *arg);

static void run_hook(wsrelay *r, enum script_hook h)
{
    if (r->scripts && script_env_has_hook(r->scripts, h))
        script_env_run(r->scripts, h, r->f);
}
static void event_cb(struct bufferevent *bev, short what, void *arg);

static void set_close(wsrelay *r, int code, const char *reason, size_t rlen, bool by_client)
{
    flow *f = r->f;
    if (f->ws_close_code)
        return; /* the first close tells how the connection ended */
    f->ws_close_code = code;
    f->ws_closed_by_client = by_client;
    if (rlen)
        flow_strnset(&f->ws_close_reason, reason, rlen);
}

/* The relay is over: no more reading, the owner takes over. */
static void finish(wsrelay *r)
{
    if (r->over)
        return;
    r->over = true;
    relaypace_stop(&r->pace);   /* the bufferevents are the owner's again */
    run_hook(r, SCRIPT_HOOK_WEBSOCKET_END);
    r->done(r->owner); /* may free r */
}

/* A protocol error from side s: tell both sides why (1002, 1007, 1009),
 * as an endpoint would, and end. */
static void protocol_error(wsrelay *r, int s)
{
    const char *reason;
    int code = ws_parser_error(r->parser[s], &reason);
    unsigned char payload[125];
    size_t rl = strlen(reason);
    if (rl > sizeof payload - 2)
        rl = sizeof payload - 2;
    payload[0] = (unsigned char)(code >> 8);
    payload[1] = (unsigned char)code;
    memcpy(payload + 2, reason, rl);
    for (int to = 0; to < 2; to++)
        if (!r->close_seen[to])
            ws_write_frame(bufferevent_get_output(r->pace.bev[to]), WS_OP_CLOSE, payload, rl + 2, to == 1);
    set_close(r, code, reason, rl, s == 0);
    char msg[200];
    snprintf(msg, sizeof msg, "WebSocket protocol error from %s: %s", s == 0 ? "client" : "server", reason);
    flow_set_error(r->f, msg);
    finish(r);
}

/* One data message from side s: into the flow, through the hook, onwards.
 * -1 when the relay ended (flow killed, out of memory). */
static int data_message(wsrelay *r, int s, ws_msg *m)
{
    flow *f = r->f;
    flow_ws_message *rec = flow_ws_add(f, s == 0, m->opcode == WS_OP_TEXT, m->data.p, m->data.len);
    bytes_free(&m->data);
    if (!rec) {
        flow_set_error(f, "out of memory recording a WebSocket message");
        finish(r);
        return -1;
    }
    run_hook(r, SCRIPT_HOOK_WEBSOCKET_MESSAGE);
    if (f->killed) {
        set_close(r, 1006, NULL, 0, s == 0);
        finish(r);
        return -1;
    }
    rec = &f->ws_msgs[f->ws_n - 1];
    if (rec->dropped)
        return 0;
    return ws_write_frame(bufferevent_get_output(r->pace.bev[1 - s]), rec->is_text ? WS_OP_TEXT : WS_OP_BINARY,
                          rec->content.p, rec->content.len, s == 0) < 0 ? (finish(r), -1) : 0;
}

/* Everything complete that side s sent.  -1 when the relay ended. */
static int pump(wsrelay *r, int s)
{
    struct evbuffer *in = bufferevent_get_input(r->pace.bev[s]);
    struct evbuffer *out = bufferevent_get_output(r->pace.bev[1 - s]);
    for (;;) {
        if (r->f->killed) { /* by websocket_start */
            set_close(r, 1006, NULL, 0, s == 0);
            finish(r);
            return -1;
        }
        if (r->close_seen[s]) { /* nothing may follow a close frame */
            evbuffer_drain(in, evbuffer_get_length(in));
            return 0;
        }
        ws_msg m = {0};
        enum ws_result res = ws_parser_next(r->parser[s], in, &m);
        if (res == WS_MORE)
            return 0;
        if (res == WS_ERROR) {
            protocol_error(r, s);
            return -1;
        }
        if (m.opcode == WS_OP_TEXT || m.opcode == WS_OP_BINARY) {
            if (data_message(r, s, &m) < 0)
                return -1;
            continue;
        }
        if (m.opcode == WS_OP_CLOSE) {
            int code;
            const char *reason;
            size_t rl;
            ws_parse_close(m.data.p, m.data.len, &code, &reason, &rl); /* validated by the parser */
            set_close(r, code, reason, rl, s == 0);
            r->close_seen[s] = true;
        }
        int rc = ws_write_frame(out, m.opcode, m.data.p, m.data.len, s == 0);
        bytes_free(&m.data);
        /* both closes seen: the handshake is over, whoever hangs up first */
        if (rc < 0 || (r->close_seen[0] && r->close_seen[1])) {
            finish(r);
            return -1;
        }
    }
}

static void read_cb(struct bufferevent *bev, void *arg)
{
    wsrelay *r = arg;
    int s = relaypace_side(&r->pace, bev);
    if (r->over || pump(r, s) < 0)
        return;
    if (relaypace_check(&r->pace, s))
        log_debug("WebSocket: the %s is not reading; pausing the %s", s ? "client" : "server",
                  s ? "server" : "client");
}

/* Side t's output drained below the low mark: read its peer again. */
static void write_cb(struct bufferevent *bev, void *arg)
{
    wsrelay *r = arg;
    if (!r->over)
        relaypace_drained(&r->pace, relaypace_side(&r->pace, bev));
}

static void event_cb(struct bufferevent *bev, short what, void *arg)
{
    wsrelay *r = arg;
    if (r->over || !(what & (BEV_EVENT_EOF | BEV_EVENT_ERROR | BEV_EVENT_TIMEOUT)))
        return;
    int s = relaypace_side(&r->pace, bev);
    if (pump(r, s) < 0) /* what it sent before hanging up */
        return;
    if (!r->close_seen[s]) {
        /* gone without a close frame: 1006, as RFC 6455 §7.1.5 names it */
        set_close(r, 1006, NULL, 0, s == 0);
        if (!r->close_seen[1 - s])
            flow_set_error(r->f, s == 0 ? "WebSocket: client disconnected" : "WebSocket: server disconnected");
    }
    finish(r);
}

wsrelay *wsrelay_start(struct bufferevent *client, struct bufferevent *server, flow *f,
                       script_env *scripts, uint64_t max_message, wsrelay_done_fn done, void *owner)
{
    wsrelay *r = calloc(1, sizeof *r);
    if (!r)
        return NULL;
    r->parser[0] = ws_parser_new(true, max_message);
    r->parser[1] = ws_parser_new(false, max_message);
    if (!r->parser[0] || !r->parser[1]) {
        ws_parser_free(r->parser[0]);
        ws_parser_free(r->parser[1]);
        free(r);
        return NULL;
    }
    r->f = f;
    r->scripts = scripts;
    r->done = done;
    r->owner = owner;
    f->websocket = true;
    relaypace_start(&r->pace, client, server, read_cb, write_cb, event_cb, r);
    run_hook(r, SCRIPT_HOOK_WEBSOCKET_START);
    /* frames that arrived with the handshake (and a kill by the hook) are
     * handled from the event loop, so done() never runs before the owner
     * has the relay */
    for (int s = 0; s < 2; s++)
        if (evbuffer_get_length(bufferevent_get_input(r->pace.bev[s])) || f->killed)
            relaypace_later(&r->pace, s);
    return r;
}

void wsrelay_interrupt(wsrelay *r, const char *why)
{
    if (r->over)
        return;
    r->over = true;
    set_close(r, 1006, NULL, 0, false);
    if (!r->f->error)
        flow_set_error(r->f, why);
    run_hook(r, SCRIPT_HOOK_WEBSOCKET_END);
}

void wsrelay_free(wsrelay *r)
{
    if (!r)
        return;
    ws_parser_free(r->parser[0]);
    ws_parser_free(r->parser[1]);
    free(r);
}
