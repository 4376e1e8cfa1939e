/* Unit tests for bevio: direct writes on a plain socket bufferevent, over a
 * socketpair.  What is added goes out within the same loop turn, without
 * the write event; a write the socket cannot take whole falls back to
 * libevent, which finishes it; the drained callback runs once per drain.
 * Under a TLS filter (bevio_attach_wire), whose write callback is not the
 * owner's, bevio itself reports the drain after libevent's part too. */
#include "t.h"

#include <sys/socket.h>
#include <unistd.h>

#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/event.h>

#include "bevio.h"

typedef struct rig {
    struct event_base *base;
    struct bufferevent *bev;
    int peer;   /* the other end, read by the test */
    bevio b;
    int drained;
    int drained_direct;   /* ... by bevio's own write (EV_WRITE still off) */
} rig;

static void on_drained(struct bufferevent *bev, void *arg)
{
    (void)bev;
    rig *r = arg;
    r->drained++;
    if (!(bufferevent_get_enabled(r->bev) & EV_WRITE))
        r->drained_direct++;
    bevio_resume(&r->b);   /* as an owner's write callback does */
}

static int rig_open(rig *r)
{
    memset(r, 0, sizeof *r);
    int sv[2];
    if (socketpair(AF_UNIX, SOCK_STREAM, 0, sv) < 0)
        return -1;
    evutil_make_socket_nonblocking(sv[0]);
    evutil_make_socket_nonblocking(sv[1]);
    r->peer = sv[1];
    r->base = event_base_new();
    r->bev = bufferevent_socket_new(r->base, sv[0], BEV_OPT_CLOSE_ON_FREE);
    bufferevent_setcb(r->bev, NULL, on_drained, NULL, r);
    bufferevent_enable(r->bev, EV_READ | EV_WRITE);
    return bevio_attach(&r->b, r->base, r->bev, on_drained, r);
}

static void rig_close(rig *r)
{
    bevio_detach(&r->b);
    bufferevent_free(r->bev);
    close(r->peer);
    event_base_free(r->base);
}

/* Read what the peer has now: into buf when given, else thrown away. */
static size_t drain_peer(rig *r, char *buf, size_t cap)
{
    static char scratch[65536];
    size_t got = 0;
    for (;;) {
        ssize_t n = buf ? read(r->peer, buf + got, cap - got) : read(r->peer, scratch, sizeof scratch);
        if (n <= 0)
            return got;
        got += (size_t)n;
    }
}

static void writes_within_the_turn(void)
{
    rig r;
    T_CHECK(rig_open(&r) == 0);
    T_CHECK(!(bufferevent_get_enabled(r.bev) & EV_WRITE));
    struct evbuffer *out = bufferevent_get_output(r.bev);
    evbuffer_add(out, "HTTP/1.1 200 OK\r\n", 17);
    evbuffer_add(out, "\r\nbody", 6);
    /* the flush event writes both pieces at once, itself */
    event_base_loop(r.base, EVLOOP_NONBLOCK);
    char buf[64] = {0};
    T_CHECK(drain_peer(&r, buf, sizeof buf) == 23);
    T_STREQ(buf, "HTTP/1.1 200 OK\r\n\r\nbody");
    T_CHECK(r.drained == 1 && r.drained_direct == 1);
    T_CHECK(evbuffer_get_length(out) == 0);
    T_CHECK(!(bufferevent_get_enabled(r.bev) & EV_WRITE));
    /* nothing added: nothing runs */
    event_base_loop(r.base, EVLOOP_NONBLOCK);
    T_CHECK(r.drained == 1);
    rig_close(&r);
}

static void short_write_falls_back_to_libevent(void)
{
    rig r;
    T_CHECK(rig_open(&r) == 0);
    int small = 4096;
    setsockopt(bufferevent_getfd(r.bev), SOL_SOCKET, SO_SNDBUF, &small, sizeof small);
    struct evbuffer *out = bufferevent_get_output(r.bev);
    static char big[1 << 20];
    memset(big, 'x', sizeof big);
    evbuffer_add(out, big, sizeof big);
    event_base_loop(r.base, EVLOOP_NONBLOCK);
    /* the socket took part of it: libevent has the rest, EV_WRITE is on */
    T_CHECK(evbuffer_get_length(out) > 0);
    T_CHECK(bufferevent_get_enabled(r.bev) & EV_WRITE);
    T_CHECK(r.drained == 0);
    size_t total = 0;
    for (int i = 0; i < 10000 && total < sizeof big; i++) {
        total += drain_peer(&r, NULL, 0);
        event_base_loop(r.base, EVLOOP_NONBLOCK);
    }
    total += drain_peer(&r, NULL, 0);
    T_CHECK(total == sizeof big);
    T_CHECK(r.drained == 1 && r.drained_direct == 0);   /* libevent finished it */
    /* drained: direct writes again */
    T_CHECK(!(bufferevent_get_enabled(r.bev) & EV_WRITE));
    evbuffer_add(out, "more", 4);
    event_base_loop(r.base, EVLOOP_NONBLOCK);
    char buf[8] = {0};
    T_CHECK(drain_peer(&r, buf, sizeof buf) == 4);
    T_CHECK(r.drained == 2 && r.drained_direct == 1);
    rig_close(&r);
}

static void detach_hands_back_to_libevent(void)
{
    rig r;
    T_CHECK(rig_open(&r) == 0);
    bevio_detach(&r.b);
    T_CHECK(bufferevent_get_enabled(r.bev) & EV_WRITE);
    evbuffer_add(bufferevent_get_output(r.bev), "abc", 3);
    /* libevent's own write event: needs the poll, then writes */
    event_base_loop(r.base, EVLOOP_NONBLOCK);
    event_base_loop(r.base, EVLOOP_NONBLOCK);
    char buf[8] = {0};
    T_CHECK(drain_peer(&r, buf, sizeof buf) == 3);
    T_STREQ(buf, "abc");
    bevio_detach(&r.b);   /* twice is fine */
    rig_close(&r);
}

/* the filter's write callback, in the wire rig: it is told to go on */
static int filter_told;
static void on_filter_write(struct bufferevent *bev, void *arg)
{
    (void)bev;
    (void)arg;
    filter_told++;
}

static void on_wire_drained(struct bufferevent *bev, void *arg)
{
    (void)bev;
    rig *r = arg;
    r->drained++;
    if (!(bufferevent_get_enabled(r->bev) & EV_WRITE))
        r->drained_direct++;
}

static void wire_reports_every_drain(void)
{
    rig r;
    T_CHECK(rig_open(&r) == 0);
    bevio_detach(&r.b);
    /* as under a bufferevent_openssl filter: the bufferevent's callbacks
     * are the filter's, the owner hears only through bevio */
    bufferevent_setcb(r.bev, NULL, on_filter_write, NULL, NULL);
    T_CHECK(bevio_attach_wire(&r.b, r.base, r.bev, on_wire_drained, &r) == 0);
    size_t lo = 1, hi = 0;
    bufferevent_getwatermark(r.bev, EV_WRITE, &lo, &hi);
    T_CHECK(lo == 0 && hi == BEVIO_WIRE_HIGH);
    struct evbuffer *out = bufferevent_get_output(r.bev);
    filter_told = 0;
    evbuffer_add(out, "record", 6);
    for (int i = 0; i < 3; i++)
        event_base_loop(r.base, EVLOOP_NONBLOCK);
    char buf[8] = {0};
    T_CHECK(drain_peer(&r, buf, sizeof buf) == 6);
    T_CHECK(r.drained == 1 && r.drained_direct == 1 && filter_told == 1);

    int small = 4096;
    setsockopt(bufferevent_getfd(r.bev), SOL_SOCKET, SO_SNDBUF, &small, sizeof small);
    static char big[1 << 20];
    memset(big, 'y', sizeof big);
    evbuffer_add(out, big, sizeof big);
    event_base_loop(r.base, EVLOOP_NONBLOCK);
    T_CHECK(evbuffer_get_length(out) > 0 && (bufferevent_get_enabled(r.bev) & EV_WRITE));
    T_CHECK(r.drained == 1);
    size_t total = 0;
    for (int i = 0; i < 10000 && (total < sizeof big || r.drained < 2); i++) {
        total += drain_peer(&r, NULL, 0);
        event_base_loop(r.base, EVLOOP_NONBLOCK);
    }
    T_CHECK(total == sizeof big);
    /* libevent wrote the rest; bevio said so, and writes directly again */
    T_CHECK(r.drained == 2 && r.drained_direct == 2);
    T_CHECK(!(bufferevent_get_enabled(r.bev) & EV_WRITE));
    T_CHECK(filter_told >= 2);
    rig_close(&r);
}

int main(void)
{
    T_RUN(writes_within_the_turn);
    T_RUN(short_write_falls_back_to_libevent);
    T_RUN(detach_hands_back_to_libevent);
    T_RUN(wire_reports_every_drain);
    T_DONE();
}
