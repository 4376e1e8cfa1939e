/* bevio.c — direct writes on plain sockets (see bevio.h). */
#include "bevio.h"

#include <event2/buffer.h>

static bool writes_itself(const bevio *b)
{
    return b->bev && !(bufferevent_get_enabled(b->bev) & EV_WRITE);
}

/* The output is empty: say so (wire: the filter may add records again). */
static void report_drained(bevio *b)
{
    if (b->wire)
        bufferevent_trigger(b->bev, EV_WRITE, 0);
    if (b->drained)
        b->drained(b->bev, b->arg);   /* last: it may free the owner */
}

static void bevio_flush_cb(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    bevio *b = arg;
    struct evbuffer *out = bufferevent_get_output(b->bev);
    if (!writes_itself(b)) {
        /* libevent is writing: after a short write of ours (wire: it has
         * now drained the output and taken EV_WRITE out of epoll), or for
         * an owner that enabled EV_WRITE itself */
        if (b->handed && evbuffer_get_length(out) == 0) {
            b->handed = false;
            bufferevent_disable(b->bev, EV_WRITE);
            report_drained(b);
        }
        return;
    }
    if (evbuffer_get_length(out) == 0)
        return;
    /* a socket bufferevent keeps its output's start frozen so that only
     * its own write callback drains it; we are that callback here */
    evbuffer_unfreeze(out, 1);
    int n = evbuffer_write(out, bufferevent_getfd(b->bev));
    evbuffer_freeze(out, 1);
    if (n < 0 || evbuffer_get_length(out) > 0) {
        /* EAGAIN, a short write or an error: libevent retries the write
         * when the socket is writable and reports what goes wrong */
        b->handed = b->wire;
        bufferevent_enable(b->bev, EV_WRITE);
        return;
    }
    report_drained(b);
}

static void bevio_added_cb(struct evbuffer *buf, const struct evbuffer_cb_info *info, void *arg)
{
    (void)buf;
    bevio *b = arg;
    if (info->n_added && writes_itself(b))
        event_active(b->flush, EV_WRITE, 0);
    else if (b->handed && info->n_deleted && evbuffer_get_length(buf) == 0)
        event_active(b->flush, EV_WRITE, 0);   /* libevent wrote the rest */
}

int bevio_attach(bevio *b, struct event_base *base, struct bufferevent *bev, bufferevent_data_cb drained,
                 void *arg)
{
    b->flush = event_new(base, -1, 0, bevio_flush_cb, b);
    if (!b->flush)
        return -1;
    b->added = evbuffer_add_cb(bufferevent_get_output(bev), bevio_added_cb, b);
    if (!b->added) {
        event_free(b->flush);
        b->flush = NULL;
        return -1;
    }
    b->bev = bev;
    b->drained = drained;
    b->arg = arg;
    b->wire = b->handed = false;
    bufferevent_disable(bev, EV_WRITE);
    if (evbuffer_get_length(bufferevent_get_output(bev)))
        event_active(b->flush, EV_WRITE, 0);
    return 0;
}

int bevio_attach_wire(bevio *b, struct event_base *base, struct bufferevent *bev, bufferevent_data_cb drained,
                      void *arg)
{
    /* first: the filter's pacing holds also when libevent keeps writing */
    bufferevent_setwatermark(bev, EV_WRITE, 0, BEVIO_WIRE_HIGH);
    if (bevio_attach(b, base, bev, drained, arg) < 0)
        return -1;
    b->wire = true;
    return 0;
}

void bevio_resume(bevio *b)
{
    if (b->bev && evbuffer_get_length(bufferevent_get_output(b->bev)) == 0) {
        b->handed = false;   /* wire: libevent has finished; direct from now */
        bufferevent_disable(b->bev, EV_WRITE);
    }
}

size_t bevio_unsent(struct bufferevent *bev)
{
    struct bufferevent *wire = bufferevent_get_underlying(bev);
    return evbuffer_get_length(bufferevent_get_output(bev)) +
           (wire ? evbuffer_get_length(bufferevent_get_output(wire)) : 0);
}

void bevio_detach(bevio *b)
{
    if (!b->bev)
        return;
    evbuffer_remove_cb_entry(bufferevent_get_output(b->bev), b->added);
    event_free(b->flush);   /* also takes it off the active queue */
    bufferevent_enable(b->bev, EV_WRITE);
    b->bev = NULL;
    b->added = NULL;
    b->flush = NULL;
    b->wire = b->handed = false;
}
