/* tcprelay.c — see tcprelay.h.
 *
 * Side 0 is the client, side 1 the server.  A message is what one read
 * brought: TCP has no message boundaries, and mitmproxy records the same
 * way (one message per chunk it received). */
#include "tcprelay.h"

#include <errno.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <event2/buffer.h>
#include <event2/bufferevent_ssl.h>
#include <event2/event.h>

#include "log.h"
#include "relaypace.h"

struct tcprelay {
    relaypace pace;       /* both bufferevents, and which is paused */
    flow *f;
    script_env *scripts;
    size_t keep_max, kept;
    int idle_s;
    struct event *idle;   /* tcp_timeout; re-armed lazily: active stamps the last bytes */
    double active;
    bool eof[2];          /* side s has sent everything it will send */
    bool shut_pending[2]; /* shut down writing to side s once its output drained */
    bool end_pending;     /* end once the server's output drained (TLS: no half-close) */
    bool over;
    tcprelay_done_fn done;
    void *owner;
};

static bool is_tls(struct bufferevent *bev)
{
    return bufferevent_openssl_get_ssl(bev) != NULL;
}

static void run_hook(tcprelay *r, enum script_hook h)
{
    if (r->scripts && script_env_has_hook(r->scripts, h))
        script_env_run(r->scripts, h, r->f);
}

/* The relay is over: tcp_end, or tcp_error with err; the owner takes over. */
static void finish(tcprelay *r, const char *err)
{
    if (r->over)
        return;
    r->over = true;
    if (r->idle)
        event_del(r->idle);
    relaypace_stop(&r->pace);
    flow *f = r->f;
    f->client.timestamp_end = f->server.timestamp_end = flow_now();
    if (err && !f->error)
        flow_set_error(f, err);
    run_hook(r, f->error ? SCRIPT_HOOK_TCP_ERROR : SCRIPT_HOOK_TCP_END);
    r->done(r->owner); /* may free r */
}

/* Everything side s sent so far: one message, through the hook, onwards.
 * -1 when the relay ended. */
static int pump(tcprelay *r, int s)
{
    struct evbuffer *in = bufferevent_get_input(r->pace.bev[s]);
    size_t n = evbuffer_get_length(in);
    if (n == 0)
        return 0;
    r->active = flow_now();
    flow *f = r->f;
    flow_ws_message *m = flow_ws_add(f, s == 0, false, evbuffer_pullup(in, (ev_ssize_t)n), n);
    evbuffer_drain(in, n);
    if (!m) {
        finish(r, "out of memory recording a TCP message");
        return -1;
    }
    run_hook(r, SCRIPT_HOOK_TCP_MESSAGE);
    if (f->killed) {
        finish(r, "Connection killed.");
        return -1;
    }
    m = &f->ws_msgs[f->ws_n - 1];   /* the hook may have grown the array */
    if (!m->dropped && m->content.len &&
        evbuffer_add(bufferevent_get_output(r->pace.bev[1 - s]), m->content.p, m->content.len) < 0) {
        finish(r, "out of memory relaying a TCP message");
        return -1;
    }
    r->kept += m->content.len;
    if (r->kept > r->keep_max) {
        if (r->kept - m->content.len <= r->keep_max)
            log_debug("TCP flow %s: more than %zu bytes; later messages are kept without content", f->id,
                      r->keep_max);
        bytes_free(&m->content);
    }
    return 0;
}

static void shut_write(tcprelay *r, int t)
{
    r->shut_pending[t] = false;
    if (shutdown(bufferevent_getfd(r->pace.bev[t]), SHUT_WR) < 0)
        log_debug("TCP flow %s: half-close: %s", r->f->id, strerror(errno));
}

static void read_cb(struct bufferevent *bev, void *arg)
{
    tcprelay *r = arg;
    int s = relaypace_side(&r->pace, bev);
    if (r->over || pump(r, s) < 0)
        return;
    relaypace_check(&r->pace, s);
}

/* Side t's output drained (below the low mark, or empty). */
static void write_cb(struct bufferevent *bev, void *arg)
{
    tcprelay *r = arg;
    int t = relaypace_side(&r->pace, bev);
    if (r->over)
        return;
    bool empty = evbuffer_get_length(bufferevent_get_output(bev)) == 0;
    if (empty && r->shut_pending[t])
        shut_write(r, t);
    if (empty && r->end_pending && t == 1) {
        finish(r, NULL);
        return;
    }
    relaypace_drained(&r->pace, t);
}

static void event_cb(struct bufferevent *bev, short what, void *arg)
{
    tcprelay *r = arg;
    if (r->over || !(what & (BEV_EVENT_EOF | BEV_EVENT_ERROR | BEV_EVENT_TIMEOUT)))
        return;
    int s = relaypace_side(&r->pace, bev), t = 1 - s;
    if (pump(r, s) < 0) /* what it sent before it closed */
        return;
    if (what & (BEV_EVENT_ERROR | BEV_EVENT_TIMEOUT)) {
        char msg[300];
        int e = EVUTIL_SOCKET_ERROR();
        snprintf(msg, sizeof msg, "%s connection: %s", s == 0 ? "client" : "server",
                 (what & BEV_EVENT_TIMEOUT) ? "timed out" : e ? evutil_socket_error_to_string(e) : "closed");
        finish(r, msg);
        return;
    }
    r->eof[s] = true;
    r->pace.paused[s] = false;   /* a side that ended is never read again */
    bufferevent_disable(bev, EV_READ);
    if (r->eof[t]) {
        finish(r, NULL);
        return;
    }
    if (is_tls(r->pace.bev[t])) {
        /* no half-close over TLS here: the owner flushes the client's
         * output when it closes; the server's is flushed first */
        if (t == 1 && evbuffer_get_length(bufferevent_get_output(r->pace.bev[1])) > 0)
            r->end_pending = true;
        else
            finish(r, NULL);
        return;
    }
    /* the peer hears the EOF after what was sent before it */
    if (evbuffer_get_length(bufferevent_get_output(r->pace.bev[t])) == 0)
        shut_write(r, t);
    else
        r->shut_pending[t] = true;
}

/* The timer is not re-armed per message (an event_add per read costs more
 * than the timer saves): when it fires it looks at the last bytes' time
 * and waits again for what is left, so a relay ends idle_s (to the second)
 * after its last bytes. */
static void idle_cb(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    tcprelay *r = arg;
    if (r->over)
        return;
    double quiet = flow_now() - r->active;
    if (quiet < r->idle_s) {
        struct timeval tv = {r->idle_s - (int)quiet, 0};
        event_add(r->idle, &tv);
        return;
    }
    log_info("TCP flow %s: closing after %d s without a byte either way (tcp_timeout)", r->f->id, r->idle_s);
    finish(r, NULL);
}

tcprelay *tcprelay_start(struct bufferevent *client, struct bufferevent *server, flow *f, script_env *scripts,
                         const tcprelay_limits *lim, tcprelay_done_fn done, void *owner)
{
    tcprelay *r = calloc(1, sizeof *r);
    if (!r)
        return NULL;
    r->idle_s = lim->idle_s;
    r->active = flow_now();
    if (r->idle_s > 0) {
        struct timeval tv = {r->idle_s, 0};
        if (!(r->idle = evtimer_new(bufferevent_get_base(client), idle_cb, r)) || event_add(r->idle, &tv) < 0) {
            if (r->idle)
                event_free(r->idle);
            free(r);
            return NULL;
        }
    }
    r->f = f;
    r->scripts = scripts;
    r->keep_max = lim->keep_max;
    r->done = done;
    r->owner = owner;
    relaypace_start(&r->pace, client, server, read_cb, write_cb, event_cb, r);
    for (int s = 0; s < 2; s++) {
        /* a TLS peer that closes without close_notify has still ended
         * its stream: an EOF, as over plain TCP, not an error */
        if (is_tls(r->pace.bev[s]))
            bufferevent_openssl_set_allow_dirty_shutdown(r->pace.bev[s], 1);
        /* bytes that came before the relay (the ones that told us this is
         * not HTTP, a server's greeting) go through from the event loop */
        if (evbuffer_get_length(bufferevent_get_input(r->pace.bev[s])))
            relaypace_later(&r->pace, s);
    }
    return r;
}

void tcprelay_interrupt(tcprelay *r, const char *why)
{
    if (r->over)
        return;
    r->over = true;
    flow *f = r->f;
    f->client.timestamp_end = f->server.timestamp_end = flow_now();
    if (!f->error)
        flow_set_error(f, why);
    run_hook(r, SCRIPT_HOOK_TCP_ERROR);
}

void tcprelay_free(tcprelay *r)
{
    if (!r)
        return;
    if (r->idle)
        event_free(r->idle);
    free(r);
}
