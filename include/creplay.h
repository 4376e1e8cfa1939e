/* creplay.h — client replay (-C FILE): the requests of recorded flows are
 * sent again to their servers, as new flows marked is_replay = "request"
 * that go through server replay, the C addons (map_remote points them at
 * staging), the Lua hooks, the printer, -w and the HAR like live ones.  Requests are sent as recorded (method, path, query,
 * headers in order, body still content-encoded).
 *
 * client_replay_concurrency lanes each carry one flow at a time and keep
 * their server connection for the next flow to the same server; with one
 * lane the flows go strictly in order.  With client_replay_compare each
 * response is compared with the recorded one (replaycmp.h) and the
 * differences are reported on stderr. */
#ifndef MITMLUA_CREPLAY_H
#define MITMLUA_CREPLAY_H

#include <stdbool.h>
#include <stddef.h>
#include <stdio.h>

#include "shared.h"
#include "worker.h"

typedef struct creplay creplay;

/* Read every file of sh->o->client_replay and keep the flows the trailing
 * filter (sh->filter) selects and that can be replayed (HTTP, with a
 * request, not WebSocket).  NULL with "FILE: reason" in err when a file is
 * missing or damaged: nothing is replayed then. */
creplay *creplay_new(shared *sh, char *err, size_t errsz);
size_t creplay_count(const creplay *cr);
/* Run the replay on w's event loop (w not running yet, or from its own
 * thread).  done(ud) is called on that thread once every flow finished. */
int creplay_start(creplay *cr, worker *w, void (*done)(void *ud), void *ud);
/* From the main thread, before stopping the worker that runs the replay:
 * close the replay's server connections on the worker's own thread (their
 * bufferevents belong to its loop) and start nothing more.  Waits at most
 * two seconds for the worker. */
void creplay_stop(creplay *cr);
/* After the worker stopped: the summary line ("client replay: N replayed,
 * N differ, N failed") to out; true when the run should fail (compare on,
 * and a response differed or a replay failed or never ran). */
bool creplay_report(const creplay *cr, FILE *out);
/* After the worker stopped and was freed (and creplay_stop was called if
 * it ever ran). */
void creplay_free(creplay *cr);

#endif
