/* relaypace.h — the two bufferevents of a relay (wsrelay.c, tcprelay.c)
 * and the pace between them: a side whose peer has RELAYPACE_HIGH bytes
 * queued and unsent stops being read until that queue drains below
 * RELAYPACE_LOW, so a slow reader holds back its peer instead of growing
 * our buffers.  The relay keeps the parsing, the hooks and how it ends. */
#ifndef MITMLUA_RELAYPACE_H
#define MITMLUA_RELAYPACE_H

#include <stdbool.h>
#include <event2/bufferevent.h>

#define RELAYPACE_HIGH ((size_t)1 << 20)
#define RELAYPACE_LOW ((size_t)256 << 10)

typedef struct relaypace {
    struct bufferevent *bev[2];   /* 0 the client, 1 the server */
    bool paused[2];               /* not reading side s: its peer's output is full */
} relaypace;

/* Take both bufferevents' callbacks (arg is the relay), timeouts off,
 * reading and writing on; the write callback comes when a side's output
 * drains below the low mark. */
void relaypace_start(relaypace *p, struct bufferevent *client, struct bufferevent *server,
                     bufferevent_data_cb read, bufferevent_data_cb write, bufferevent_event_cb event, void *arg);
/* Which side bev is. */
int relaypace_side(const relaypace *p, const struct bufferevent *bev);
/* Handle side s's input from the event loop (bytes already read, or an
 * end the relay must see before it goes on). */
void relaypace_later(relaypace *p, int s);
/* After side s was read: stop reading it when its peer's output is full.
 * true when it was paused. */
bool relaypace_check(relaypace *p, int s);
/* Side t's output drained below the low mark: read its peer again (and
 * what the peer sent meanwhile, from the event loop). */
void relaypace_drained(relaypace *p, int t);
/* The relay is over: no more reading, the write low mark off. */
void relaypace_stop(relaypace *p);

#endif
