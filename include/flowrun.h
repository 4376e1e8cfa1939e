/* flowrun.h — the one path every flow takes between the protocol code and
 * the sink, whatever brought it: the HTTP/1 and HTTP/2 client sides,
 * client replay, and flows read back with -r.
 *
 *   request phase:  requestheaders hook → server replay → C addons →
 *                   request hook → mitm.it → FORWARD | ANSWERED | KILLED | FAILED
 *   connect phase:  the connect hook of a CONNECT request → FORWARD | KILLED | FAILED
 *   response phase: C addons → response hook → DELIVER | KILLED | FAILED
 *   end:            error hook when the flow failed → sink → freed
 *
 * The protocol code (the owner) turns bytes into a flow, hands it here and
 * hears the outcome of each phase through flowrun_ops.next; it never runs
 * hooks or addons itself.  A phase may end before the call that started it
 * returns, or later from the event loop: a Lua hook may wait (mitm.sleep,
 * mitm.http.request, flow:intercept()), and the phase goes on when it is
 * done.  The owner embeds a flowrun, like an exch; flowrun_fail and
 * flowrun_cancel are safe whatever the phase is doing. */
#ifndef MITMLUA_FLOWRUN_H
#define MITMLUA_FLOWRUN_H

#include <stdbool.h>
#include <event2/event.h>

#include "flow.h"
#include "script.h"
#include "shared.h"

/* One per event loop: what the flows run on it share. */
typedef struct flowrun_env {
    shared *sh;
    script_env *scripts;          /* NULL without -s */
    struct event_base *base;
    struct flowrun *held;         /* flows intercepted, waiting for flow:resume() */
    int listen_port;              /* the proxy's port (reverse mode's Alt-Svc), 0: none */
} flowrun_env;

enum flowrun_verdict {
    FLOWRUN_FORWARD,   /* request: send it upstream; connect: open the tunnel */
    FLOWRUN_ANSWERED,  /* request: f->response is set (a script, server replay,
                        * map_local, mitm.it): run the response phase */
    FLOWRUN_DELIVER,   /* response: send f->response to the client */
    FLOWRUN_KILLED,    /* flow:kill() or server replay: end without an answer,
                        * then flowrun_fail(r, "Connection killed.") */
    FLOWRUN_FAILED,    /* answer with status and msg, then flowrun_fail(r, msg) */
};

typedef struct flowrun flowrun;

typedef struct flowrun_ops {
    /* A phase ended.  May free the owner (and the flowrun in it). */
    void (*next)(flowrun *r, enum flowrun_verdict v, int status, const char *msg);
} flowrun_ops;

struct flowrun {
    flowrun_env *env;
    const flowrun_ops *ops;
    void *owner;
    flow *f;                 /* the flow in the pipeline, owned here; NULL between flows */
    bool hooks_only;         /* -r: recorded flows see the hooks, not the addons */
    bool body_lent;          /* the response body belongs to the client's output:
                              * flowrun_finish lets go of it after recording */
    /* flowrun.c's own */
    bool reqheaders_done;
    bool streamed;
    unsigned char phase, step;
    int rc;                  /* the last hook's result */
    script_call *call;       /* a hook that waits, or NULL */
    struct event *wake;      /* flow:resume() of a held flow */
    struct flowrun *held_next, **held_prev;
};

/* Set up env for a loop; a script env gets the loop and flow:resume(). */
void flowrun_env_init(flowrun_env *env, shared *sh, script_env *scripts, struct event_base *base);

/* A hook of the flow waits, or a script holds it. */
bool flowrun_waiting(const flowrun *r);

void flowrun_init(flowrun *r, flowrun_env *env, const flowrun_ops *ops, void *owner);
/* Take f into the pipeline (any previous flow must be finished). */
void flowrun_begin(flowrun *r, flow *f);
/* The requestheaders hook alone, now, for an owner that must know before
 * it reads the body (HTTP/1): 0, or -1 when the hook failed (the flow's
 * error says why).  This hook cannot wait; flowrun_request skips it then. */
int flowrun_requestheaders(flowrun *r);
/* The responseheaders hook, now (the exchange is reading the body): 0 or
 * -1 as above.  It cannot wait. */
int flowrun_responseheaders(flowrun *r);
void flowrun_request(flowrun *r);
void flowrun_connect(flowrun *r);
/* streamed: head and body have gone to the client already, so the hook
 * can only look (no addons, no failure, only kill). */
void flowrun_response(flowrun *r, bool streamed);
/* The flow failed: set its error (msg NULL: keep the one it has), run the
 * error hook, record it, free it.  Stops whatever the flow waited for. */
void flowrun_fail(flowrun *r, const char *msg);
/* The flow is over as it is (answered, a WebSocket or TCP flow that
 * closed): record it and free it. */
void flowrun_finish(flowrun *r);
/* Free the flow without recording it (a CONNECT that opened its tunnel, a
 * request that never completed). */
void flowrun_release(flowrun *r);

#endif
