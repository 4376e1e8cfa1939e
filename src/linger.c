/* linger.c — see linger.h. */
#include "linger.h"

#include <stdlib.h>
#include <event2/buffer.h>
#include <event2/event.h>

#include "bevio.h"

struct linger_entry {
    struct bufferevent *bev;
    bevio wio;   /* under a TLS filter: says when the socket has written all */
    linger_set *set;
    struct linger_entry *prev, *next;
};

static void linger_end(struct linger_entry *l)
{
    if (l->prev)
        l->prev->next = l->next;
    else
        l->set->head = l->next;
    if (l->next)
        l->next->prev = l->prev;
    bevio_detach(&l->wio);
    bufferevent_free(l->bev);
    free(l);
}

/* The filter's output drained (its records are in the socket's output
 * now), or the socket's did: done once both are empty. */
static void linger_write_cb(struct bufferevent *bev, void *arg)
{
    (void)bev;
    struct linger_entry *l = arg;
    if (bevio_unsent(l->bev) == 0)
        linger_end(l);
}

static void linger_event_cb(struct bufferevent *bev, short what, void *arg)
{
    (void)bev;
    (void)what;
    linger_end(arg);
}

void linger_add(linger_set *s, struct bufferevent *bev, int seconds)
{
    struct linger_entry *l;
    if (bevio_unsent(bev) == 0 || !(l = calloc(1, sizeof *l))) {
        bufferevent_free(bev);
        return;
    }
    l->bev = bev;
    l->set = s;
    l->next = s->head;
    if (s->head)
        s->head->prev = l;
    s->head = l;
    struct timeval tv = {seconds, 0};
    bufferevent_disable(bev, EV_READ);
    bufferevent_setcb(bev, NULL, linger_write_cb, linger_event_cb, l);
    bufferevent_setwatermark(bev, EV_WRITE, 0, 0);
    bufferevent_set_timeouts(bev, NULL, &tv);
    bufferevent_enable(bev, EV_WRITE);
    /* a TLS filter's output drains into the socket below, which writes
     * later: wait for that too (failing that, the timeout ends it) */
    struct bufferevent *wire = bufferevent_get_underlying(bev);
    if (wire) {
        bufferevent_set_timeouts(wire, NULL, &tv);
        (void)bevio_attach_wire(&l->wio, bufferevent_get_base(bev), wire, linger_write_cb, l);
    }
}

void linger_set_free(linger_set *s)
{
    while (s->head)
        linger_end(s->head);
}
