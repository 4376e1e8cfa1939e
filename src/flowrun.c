/* flowrun.c — the flow pipeline (see flowrun.h).
 *
 * Each phase is a small state machine: `step` says where to go on, so the
 * same function runs the phase from the start and goes on after a hook
 * that waited (hook() returns false, and hook_done() calls the phase again
 * when the hook is done).  A flow that a hook intercepted is held after
 * that hook, on the env's list, until flow:resume() or flow:kill().  A hook
 * that never waits costs what a direct call cost: no allocation, no event. */
#include "flowrun.h"

#include <stdlib.h>
#include <string.h>

#include "addons.h"
#include "log.h"
#include "onboard.h"
#include "sink.h"
#include "sreplay.h"
#include "ws.h"

enum { PH_NONE, PH_REQUEST, PH_CONNECT, PH_RESPONSE };

static void advance(flowrun *r);

/* ---- holding intercepted flows -------------------------------------------- */

static void unhold(flowrun *r)
{
    if (!r->held_prev)
        return;
    *r->held_prev = r->held_next;
    if (r->held_next)
        r->held_next->held_prev = r->held_prev;
    r->held_next = NULL;
    r->held_prev = NULL;
}

static void wake_cb(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    advance(arg);
}

/* The flow was intercepted by the hook that just ended: wait here. */
static bool hold(flowrun *r)
{
    if (!r->wake && !(r->wake = evtimer_new(r->env->base, wake_cb, r))) {
        log_error("flow %s: cannot hold an intercepted flow (out of memory): it goes on", r->f->id);
        r->f->intercepted = false;
        return false;
    }
    r->held_next = r->env->held;
    if (r->held_next)
        r->held_next->held_prev = &r->held_next;
    r->held_prev = &r->env->held;
    r->env->held = r;
    return true;
}

/* flow:resume() (or flow:kill()) from a script: the held flow goes on from
 * the loop, not from inside the script that resumed it. */
static void env_resume(void *ud, flow *f)
{
    flowrun_env *env = ud;
    for (flowrun *r = env->held; r; r = r->held_next)
        if (r->f == f) {
            unhold(r);
            event_active(r->wake, EV_TIMEOUT, 1);
            return;
        }
}

void flowrun_env_init(flowrun_env *env, shared *sh, script_env *scripts, struct event_base *base)
{
    env->sh = sh;
    env->scripts = scripts;
    env->base = base;
    env->held = NULL;
    if (scripts) {
        script_env_set_loop(scripts, base);
        script_env_set_resume(scripts, env_resume, env);
    }
}

/* ---- running hooks ---------------------------------------------------------- */

static void hook_done(void *arg, int rc)
{
    flowrun *r = arg;
    r->call = NULL;
    r->rc = rc;
    if (r->f->intercepted && hold(r))
        return;
    advance(r);
}

/* Run hook h on the flow: true when it is over (its result in r->rc),
 * false when it waits or holds the flow (the phase goes on later). */
static bool hook(flowrun *r, enum script_hook h)
{
    script_env *e = r->env->scripts;
    r->rc = 0;
    if (!e || !script_env_has_hook(e, h))
        return true;
    int rc = script_env_start(e, h, r->f, hook_done, r, &r->call);
    if (rc == SCRIPT_WAITING)
        return false;
    r->rc = rc;
    return !(r->f->intercepted && hold(r));
}

static const char *hook_error(const flow *f)
{
    return f->error && f->error->msg ? f->error->msg : "script failed";
}

/* End the phase: the owner hears the verdict (and may free everything). */
static void verdict(flowrun *r, enum flowrun_verdict v, int status, const char *msg)
{
    r->phase = PH_NONE;
    if (v == FLOWRUN_FAILED && msg == NULL) {
        char m[300];
        snprintf(m, sizeof m, "%s", hook_error(r->f));
        r->ops->next(r, v, status, m);
        return;
    }
    r->ops->next(r, v, status, msg);
}

/* ---- the phases ---------------------------------------------------------- */

/* After a hook: one past script_timeout fails the flow, a kill ends it.
 * true when that ended the phase. */
static bool hook_ended_phase(flowrun *r)
{
    if (r->rc < 0) {
        verdict(r, FLOWRUN_FAILED, 502, NULL);
        return true;
    }
    if (r->f->killed) {
        verdict(r, FLOWRUN_KILLED, 0, NULL);
        return true;
    }
    return false;
}

static void request_phase(flowrun *r)
{
    flow *f = r->f;
    shared *sh = r->env->sh;
    switch (r->step) {
    case 0:
        r->step = 1;
        if (!r->reqheaders_done) {
            r->reqheaders_done = true;
            if (!hook(r, SCRIPT_HOOK_REQUESTHEADERS))
                return;
        }
        /* fallthrough */
    case 1:
        if (hook_ended_phase(r))
            return;
        if (!r->hooks_only) {
            addons_block(sh->addons, f);
            if (f->killed) {
                verdict(r, FLOWRUN_KILLED, 0, NULL);
                return;
            }
            /* server replay matches the request as the client sent it,
             * before map_remote rewrites it (mitmproxy's addon order) */
            if (sh->sreplay && !f->response && sreplay_request(sh->sreplay, f) == SREPLAY_KILLED) {
                verdict(r, FLOWRUN_KILLED, 0, NULL);
                return;
            }
            if (!f->response)
                addons_request(sh->addons, f); /* C addons before Lua; map_local may answer */
        }
        r->step = 2;
        if (!hook(r, SCRIPT_HOOK_REQUEST))
            return;
        /* fallthrough */
    case 2:
        break;
    }
    if (hook_ended_phase(r))
        return;
    if (f->response || r->hooks_only) {
        verdict(r, f->response ? FLOWRUN_ANSWERED : FLOWRUN_FORWARD, 0, NULL);
        return;
    }
    if (sh->o->onboarding && f->request->host && onboard_is_host(sh->o->onboarding_host, f->request->host) &&
        (!sh->o->onboarding_port || f->request->port == sh->o->onboarding_port)) {
        char err[256] = "mitm.it: no answer";
        flow_response *resp = NULL;
        if (onboard_handle(sh->o->confdir, f->request->path, &resp, err, sizeof err) == 0 && resp) {
            f->response = resp;
            verdict(r, FLOWRUN_ANSWERED, 0, NULL);
            return;
        }
        verdict(r, FLOWRUN_FAILED, 500, err);
        return;
    }
    /* hooks must see plain WebSocket messages: no permessage-deflate (with
     * websocket=false the messages are not read, and the offer stays) */
    if (sh->o->websocket && ws_is_upgrade_request(&f->request->headers))
        ws_strip_extensions(&f->request->headers);
    verdict(r, FLOWRUN_FORWARD, 0, NULL);
}

static void connect_phase(flowrun *r)
{
    if (r->step == 0) {
        r->step = 1;
        if (!hook(r, SCRIPT_HOOK_CONNECT))
            return;
    }
    if (!hook_ended_phase(r))
        verdict(r, FLOWRUN_FORWARD, 0, NULL);
}

static void response_phase(flowrun *r)
{
    flow *f = r->f;
    if (r->step == 0) {
        r->step = 1;
        if (!r->streamed && !r->hooks_only)
            addons_response(r->env->sh->addons, f); /* C addons before Lua */
        if (!hook(r, SCRIPT_HOOK_RESPONSE))
            return;
    }
    if (f->killed) {
        verdict(r, FLOWRUN_KILLED, 0, NULL);
        return;
    }
    if (r->streamed || r->hooks_only) {
        verdict(r, FLOWRUN_DELIVER, 0, NULL);
        return;
    }
    if (r->rc < 0) {
        verdict(r, FLOWRUN_FAILED, 502, NULL);
        return;
    }
    if (!f->response) { /* a response hook cannot take the response away */
        verdict(r, FLOWRUN_FAILED, 502, "response removed by a script");
        return;
    }
    if (!f->response->timestamp_start)   /* made by a script or an addon */
        f->response->timestamp_start = flow_now();
    if (!f->response->timestamp_end)
        f->response->timestamp_end = flow_now();
    verdict(r, FLOWRUN_DELIVER, 0, NULL);
}

static void advance(flowrun *r)
{
    switch (r->phase) {
    case PH_REQUEST:
        request_phase(r);
        return;
    case PH_CONNECT:
        connect_phase(r);
        return;
    case PH_RESPONSE:
        response_phase(r);
        return;
    default:
        return;
    }
}

static void start(flowrun *r, unsigned phase)
{
    r->phase = (unsigned char)phase;
    r->step = 0;
    advance(r);
}

/* ---- the API ---------------------------------------------------------- */

void flowrun_init(flowrun *r, flowrun_env *env, const flowrun_ops *ops, void *owner)
{
    memset(r, 0, sizeof *r);
    r->env = env;
    r->ops = ops;
    r->owner = owner;
}

void flowrun_begin(flowrun *r, flow *f)
{
    r->f = f;
    r->reqheaders_done = false;
    r->phase = PH_NONE;
}

int flowrun_requestheaders(flowrun *r)
{
    r->reqheaders_done = true;
    script_env *e = r->env->scripts;
    if (!e || !script_env_has_hook(e, SCRIPT_HOOK_REQUESTHEADERS))
        return 0;
    return script_env_run(e, SCRIPT_HOOK_REQUESTHEADERS, r->f);
}

int flowrun_responseheaders(flowrun *r)
{
    script_env *e = r->env->scripts;
    int rc = 0;
    if (e && r->f && script_env_has_hook(e, SCRIPT_HOOK_RESPONSEHEADERS))
        rc = script_env_run(e, SCRIPT_HOOK_RESPONSEHEADERS, r->f);
    /* mitmproxy's update_alt_svc runs after the scripts: a reverse proxy's
     * clients must not be sent around it to the server */
    const opts *o = r->env->sh->o;
    if (!r->hooks_only && r->f && r->f->response && o->mode == MODE_REVERSE && !o->keep_alt_svc_header &&
        r->env->listen_port > 0)
        addons_alt_svc(r->f->response, r->env->listen_port);
    return rc;
}

bool flowrun_waiting(const flowrun *r)
{
    return r->call != NULL || r->held_prev != NULL;
}

void flowrun_request(flowrun *r) { start(r, PH_REQUEST); }
void flowrun_connect(flowrun *r) { start(r, PH_CONNECT); }

void flowrun_response(flowrun *r, bool streamed)
{
    r->streamed = streamed;
    start(r, PH_RESPONSE);
}

/* Stop waiting: the hook's coroutine is abandoned, a held flow let go. */
static void stop_waiting(flowrun *r)
{
    if (r->call) {
        script_call_cancel(r->call);
        r->call = NULL;
    }
    unhold(r);
    if (r->wake) {
        event_free(r->wake);
        r->wake = NULL;
    }
    r->phase = PH_NONE;
}

void flowrun_release(flowrun *r)
{
    stop_waiting(r);
    if (!r->f)
        return;
    if (r->env->scripts)
        script_env_forget(r->env->scripts, r->f);
    flow_free(r->f);
    r->f = NULL;
}

/* ---- the end of a flow ----------------------------------------------------
 *
 * The error hook may wait too, but its owner is usually going away (a
 * client that disconnected): the flow then leaves the flowrun for a tail of
 * its own, which records and frees it when the hook is done — or when the
 * worker shuts down, which ends every waiting hook. */

typedef struct tail {
    flowrun_env *env;
    flow *f;
    bool record;
} tail;

static void tail_end(flowrun_env *env, flow *f, bool record)
{
    if (record)
        sink_flow(env->sh->sink, f);
    if (env->scripts)
        script_env_forget(env->scripts, f);
    flow_free(f);
}

static void tail_done(void *arg, int rc)
{
    (void)rc;
    tail *t = arg;
    tail_end(t->env, t->f, t->record);
    free(t);
}

static void end_flow(flowrun *r, bool record)
{
    stop_waiting(r);
    flow *f = r->f;
    if (!f)
        return;
    r->f = NULL;
    script_env *e = r->env->scripts;
    if (e && script_env_has_hook(e, SCRIPT_HOOK_ERROR)) {
        tail *t = malloc(sizeof *t);
        script_call *call;
        if (t) {
            *t = (tail){r->env, f, record};
            if (script_env_start(e, SCRIPT_HOOK_ERROR, f, tail_done, t, &call) == SCRIPT_WAITING)
                return;
            free(t);
        } else {
            script_env_run(e, SCRIPT_HOOK_ERROR, f);
        }
    }
    tail_end(r->env, f, record);
}

void flowrun_fail(flowrun *r, const char *msg)
{
    flow *f = r->f;
    if (!f)
        return;
    if (!f->request || !f->request->method) { /* nothing a user would call a flow */
        flowrun_release(r);
        return;
    }
    if (msg || !f->error)
        flow_set_error(f, msg ? msg : "failed");
    end_flow(r, !(r->hooks_only && f->killed));
}

void flowrun_finish(flowrun *r)
{
    stop_waiting(r);
    flow *f = r->f;
    if (!f)
        return;
    if (!(r->hooks_only && f->killed))
        sink_flow(r->env->sh->sink, f);
    if (r->body_lent && f->response)
        f->response->content = (bytes){0};
    r->body_lent = false;
    flowrun_release(r);
}
