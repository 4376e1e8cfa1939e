/* wsrelay.h — a WebSocket connection after its 101: frames from each side
 * are parsed (ws.h), every data message is recorded into the flow, shown to
 * the `websocket_message` hook and forwarded (or dropped), control frames
 * pass through, and the relay ends on the close handshake or when either
 * side goes away.  It takes the callbacks of both bufferevents while it
 * runs; the owner keeps them and the flow. */
#ifndef MITMLUA_WSRELAY_H
#define MITMLUA_WSRELAY_H

#include <stdint.h>
#include <event2/bufferevent.h>

#include "flow.h"
#include "script.h"

typedef struct wsrelay wsrelay;

/* Called once when the relay is over (its last action: the owner may free
 * the relay from inside).  The flow's close code, reason and error are
 * filled in; the client's output may still hold bytes to flush.  The owner
 * sets its own callbacks on the client bufferevent again. */
typedef void (*wsrelay_done_fn)(void *owner);

/* Starts relaying (bytes already read on either side are parsed from the
 * event loop, so done() never runs from inside this call).
 * scripts may be NULL.  NULL on ENOMEM: nothing was taken then. */
wsrelay *wsrelay_start(struct bufferevent *client, struct bufferevent *server, flow *f,
                       script_env *scripts, uint64_t max_message, wsrelay_done_fn done, void *owner);
/* The owner ends the relay before it is over (the proxy shuts down): the
 * flow is marked as ended abnormally (1006, an error naming `why`) and
 * websocket_end runs; done() is not called.  No-op once over. */
void wsrelay_interrupt(wsrelay *r, const char *why);
/* Frees the relay; never the bufferevents, which stay the owner's (done()
 * is where it lets go of the server's, or lets it finish writing). */
void wsrelay_free(wsrelay *r);

#endif
