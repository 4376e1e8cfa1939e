/* linger.c — see linger.h. */
#include "linger.h"

#include <stdlib.h>
#include <event2/buffer.h>
#include <event2/event.h>

struct linger_entry {
    struct bufferevent *bev;
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
    bufferevent_free(l->bev);
    free(l);
}

static void linger_write_cb(struct bufferevent *bev, void *arg)
{
    if (evbuffer_get_length(bufferevent_get_output(bev)) == 0)
        linger_end(arg);
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
    if (evbuffer_get_length(bufferevent_get_output(bev)) == 0 || !(l = calloc(1, sizeof *l))) {
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
}

void linger_set_free(linger_set *s)
{
    while (s->head)
        linger_end(s->head);
}
