/* linger.h — bufferevents that outlive their owner until their output has
 * been written: a WebSocket relay's last close frame to the server, say.
 *
 * A lingering bufferevent is freed when its output drains, on an error or
 * EOF, or after its write timeout; whatever still lingers when the set is
 * freed (the worker ends) is freed then, so nothing outlives the event
 * loop it runs on. */
#ifndef MITMLUA_LINGER_H
#define MITMLUA_LINGER_H

#include <event2/bufferevent.h>

struct linger_entry;

typedef struct linger_set {
    struct linger_entry *head;
} linger_set;

/* Takes bev: its read side off, its callbacks replaced; freed after its
 * output is written or `seconds` pass.  Freed at once when it has nothing
 * to write (or when memory for the bookkeeping is short). */
void linger_add(linger_set *s, struct bufferevent *bev, int seconds);
/* Frees every bufferevent still lingering. */
void linger_set_free(linger_set *s);

#endif
