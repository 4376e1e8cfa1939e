/* tcprelay.h — a raw TCP flow once its server connection is open: what
 * each side sends is recorded in the flow as a message per read, shown to
 * the tcp_message hook (which may change or drop it) and passed on.  One
 * side's EOF half-closes the other over plain TCP, as mitmproxy does; the
 * relay ends when both sides have closed, or on an error, with tcp_end or
 * tcp_error.  The owner keeps both bufferevents and the flow; the relay
 * sets its callbacks on both while it runs. */
#ifndef MITMLUA_TCPRELAY_H
#define MITMLUA_TCPRELAY_H

#include <stddef.h>
#include <event2/bufferevent.h>

#include "flow.h"
#include "script.h"

typedef struct tcprelay tcprelay;

/* Called once when the relay is over (its last action: the owner may free
 * the relay from inside).  The flow's error is set when it ended badly.
 * The client's output may still hold bytes to flush; the owner sets its
 * own callbacks on both bufferevents again. */
typedef void (*tcprelay_done_fn)(void *owner);

typedef struct tcprelay_limits {
    size_t keep_max;   /* message contents kept in the flow, in all; later
                        * messages are relayed and shown to the hook, and
                        * kept without their content */
    int idle_s;        /* tcp_timeout: nothing either way for this long ends
                        * the relay (tcp_end); 0: never */
} tcprelay_limits;

/* Starts relaying; bytes already read on either side are handled from the
 * event loop, so done() never runs from inside this call.  scripts may be
 * NULL.  NULL on ENOMEM. */
tcprelay *tcprelay_start(struct bufferevent *client, struct bufferevent *server, flow *f, script_env *scripts,
                         const tcprelay_limits *lim, tcprelay_done_fn done, void *owner);
/* The owner ends the relay before it is over (the proxy shuts down): the
 * flow's error names `why` and tcp_error runs; done() is not called.
 * No-op once over. */
void tcprelay_interrupt(tcprelay *r, const char *why);
void tcprelay_free(tcprelay *r);

#endif
