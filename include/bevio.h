/* bevio.h — write a plain socket's output now, not on the next loop turn.
 *
 * libevent writes a bufferevent's output after enabling its write event:
 * for a request/response proxy that is an epoll_ctl pair and one more turn
 * of the event loop for every message, twice per exchange.  A bevio keeps
 * EV_WRITE disabled and, whenever bytes are added to the output, makes an
 * event active that writes them before the loop polls again.  Since that
 * event runs after the callbacks already queued, a head and a body added
 * one after the other still leave in one writev.
 *
 * When the socket takes less than everything (a slow reader, EAGAIN, an
 * error), EV_WRITE is enabled and libevent goes on as usual: it finishes
 * the write, reports errors through the event callback and calls the write
 * callback when the output drains.  A direct write that empties the output
 * calls the `drained` callback at once, as libevent's write callback would.
 * An owner that enables EV_WRITE itself (to wait for a drain before a
 * close, say) simply gets libevent's behaviour while it is enabled.
 *
 * Only for bufferevent_socket_new bufferevents: a TLS bufferevent writes
 * through OpenSSL.  Over TLS, bevio works on the socket bufferevent under
 * a bufferevent_openssl filter (bevio_attach_wire): OpenSSL writes its
 * records into the socket's output at once, and they leave in one writev
 * per loop turn, as on a plain connection. */
#ifndef MITMLUA_BEVIO_H
#define MITMLUA_BEVIO_H

#include <stdbool.h>
#include <event2/bufferevent.h>
#include <event2/event.h>

typedef struct bevio {
    struct bufferevent *bev;     /* NULL when not attached */
    struct evbuffer_cb_entry *added;
    struct event *flush;
    bufferevent_data_cb drained; /* may be NULL; may free the owner */
    void *arg;
    bool wire;                   /* under a TLS filter (bevio_attach_wire) */
    bool handed;                 /* wire: libevent is finishing a short write */
} bevio;

/* What the socket under a TLS filter may hold before OpenSSL stops adding
 * records to it: the filter's output keeps the rest, so an owner watching
 * that output for a slow peer still sees it fill up. */
#define BEVIO_WIRE_HIGH (128 * 1024)

/* Start writing bev's output directly; EV_WRITE is disabled now (any output
 * already queued is flushed this loop turn).  0, or -1 (out of memory:
 * nothing changed, libevent keeps writing as before). */
int bevio_attach(bevio *b, struct event_base *base, struct bufferevent *bev, bufferevent_data_cb drained,
                 void *arg);
/* The same for `bev`, the socket bufferevent under a TLS filter, after
 * the filter is made (making it enables EV_WRITE again).  Its write
 * callback is the filter's, so bevio reports every drain itself: `drained`
 * runs whenever the output empties, after a direct write or after libevent
 * finished a short one, and the filter is told it may add more records
 * (its output is held back at BEVIO_WIRE_HIGH — set even when attaching
 * fails, so the filter is paced the same while libevent writes). */
int bevio_attach_wire(bevio *b, struct event_base *base, struct bufferevent *bev, bufferevent_data_cb drained,
                      void *arg);
/* Call from the owner's write callback: once the output has drained under
 * libevent (after a short direct write, or an owner's own EV_WRITE), go
 * back to direct writes.  No system call: libevent has already taken the
 * drained socket's write event out of epoll. */
void bevio_resume(bevio *b);
/* What bev has not yet written to its socket: its output, and under a
 * TLS filter what the socket below still holds of the records. */
size_t bevio_unsent(struct bufferevent *bev);
/* Hand the output back to libevent (EV_WRITE enabled again), before the
 * bufferevent is freed or given to another owner.  Safe when not attached.
 * Under a filter, the write high-watermark stays: libevent's write callback
 * (the filter's) then paces OpenSSL's records. */
void bevio_detach(bevio *b);

#endif
