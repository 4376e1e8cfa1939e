/* relaypace.c — see relaypace.h. */
#include "relaypace.h"

#include <event2/buffer.h>
#include <event2/event.h>

void relaypace_start(relaypace *p, struct bufferevent *client, struct bufferevent *server,
                     bufferevent_data_cb read, bufferevent_data_cb write, bufferevent_event_cb event, void *arg)
{
    p->bev[0] = client;
    p->bev[1] = server;
    p->paused[0] = p->paused[1] = false;
    for (int s = 0; s < 2; s++) {
        bufferevent_set_timeouts(p->bev[s], NULL, NULL);
        bufferevent_setcb(p->bev[s], read, write, event, arg);
        bufferevent_setwatermark(p->bev[s], EV_READ, 0, 0);
        bufferevent_setwatermark(p->bev[s], EV_WRITE, RELAYPACE_LOW, 0);
        bufferevent_enable(p->bev[s], EV_READ | EV_WRITE);
    }
}

int relaypace_side(const relaypace *p, const struct bufferevent *bev)
{
    return bev == p->bev[0] ? 0 : 1;
}

void relaypace_later(relaypace *p, int s)
{
    bufferevent_trigger(p->bev[s], EV_READ, BEV_TRIG_IGNORE_WATERMARKS | BEV_TRIG_DEFER_CALLBACKS);
}

bool relaypace_check(relaypace *p, int s)
{
    if (evbuffer_get_length(bufferevent_get_output(p->bev[1 - s])) <= RELAYPACE_HIGH)
        return false;
    p->paused[s] = true;
    bufferevent_disable(p->bev[s], EV_READ);
    return true;
}

void relaypace_drained(relaypace *p, int t)
{
    if (!p->paused[1 - t])
        return;
    p->paused[1 - t] = false;
    bufferevent_enable(p->bev[1 - t], EV_READ);
    relaypace_later(p, 1 - t);
}

void relaypace_stop(relaypace *p)
{
    for (int s = 0; s < 2; s++) {
        bufferevent_disable(p->bev[s], EV_READ);
        bufferevent_setwatermark(p->bev[s], EV_WRITE, 0, 0);
    }
}
