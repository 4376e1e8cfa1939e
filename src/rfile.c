/* rfile.c — flows read back with -r go through the pipeline with the hooks
 * alone (no addons, no upstream: the response is the recorded one), one at
 * a time, on an event loop of their own so that hooks may wait. */
#include "rfile.h"

#include <stdio.h>
#include <string.h>

#include <event2/event.h>

#include "flowread.h"
#include "flowrun.h"
#include "script.h"
#include "sink.h"

typedef struct rfile {
    flowrun run;
    bool busy;         /* the flow is still in the pipeline */
} rfile;

static void rfile_next(flowrun *r, enum flowrun_verdict v, int status, const char *msg)
{
    (void)status;
    (void)msg;
    rfile *rf = r->owner;
    flow *f = r->f;
    if (v == FLOWRUN_ANSWERED && !f->killed) {
        /* as recorded: responseheaders, then the response phase */
        flowrun_responseheaders(r);
        flowrun_response(r, false);
        return;
    }
    if (f->killed)
        flowrun_release(r);        /* a killed flow is not recorded */
    else if (f->error)
        flowrun_fail(r, NULL);     /* the error hook, then the sink */
    else
        flowrun_finish(r);
    rf->busy = false;
}

static const flowrun_ops rfile_ops = {rfile_next};

/* A TCP flow read back sees mitmproxy's event sequence: tcp_start, one
 * tcp_message per message (each the last of flow.messages when it runs),
 * then tcp_end or tcp_error.  These hooks cannot wait. */
static void tcp_events(script_env *s, flow *f)
{
    if (!s)
        return;
    size_t n = f->ws_n;
    f->ws_n = 0;
    if (script_env_has_hook(s, SCRIPT_HOOK_TCP_START))
        script_env_run(s, SCRIPT_HOOK_TCP_START, f);
    for (size_t i = 0; i < n && !f->killed; i++) {
        f->ws_n = i + 1;
        if (script_env_has_hook(s, SCRIPT_HOOK_TCP_MESSAGE))
            script_env_run(s, SCRIPT_HOOK_TCP_MESSAGE, f);
    }
    f->ws_n = n;
    enum script_hook last = f->error ? SCRIPT_HOOK_TCP_ERROR : SCRIPT_HOOK_TCP_END;
    if (!f->killed && script_env_has_hook(s, last))
        script_env_run(s, last, f);
}

/* mitm.exit() while reading a file: remember the status; the loop stops. */
static void read_exit(void *ud, int code)
{
    shared *sh = ud;
    int none = -1;
    atomic_compare_exchange_strong(&sh->exit_code, &none, code);
}

static int read_all(shared *sh, flowrun_env *env)
{
    const opts *o = sh->o;
    char err[512];
    flow_reader *r = flow_reader_open(o->rfile, err, sizeof err);
    if (!r) {
        fprintf(stderr, "mitmlua: %s\n", err);
        return 1;
    }
    flow_limits lim = opts_flow_limits(o);
    flow_reader_set_limits(r, &lim);
    rfile rf = {0};
    flowrun_init(&rf.run, env, &rfile_ops, &rf);
    rf.run.hooks_only = true;
    int status = 0;
    while (atomic_load(&sh->exit_code) < 0) {
        flow *f = NULL;
        int rc = flow_reader_next(r, &f, err, sizeof err);
        if (rc == 0)
            break;
        if (rc < 0) {
            /* readers name the file themselves; do not say it twice */
            if (strncmp(err, o->rfile, strlen(o->rfile)) == 0)
                fprintf(stderr, "mitmlua: %s\n", err);
            else
                fprintf(stderr, "mitmlua: %s: %s\n", o->rfile, err);
            status = 1;
            break;
        }
        /* mitmdump: readfile_filter decides which flows are read at all;
         * the hooks never see the others.  One it cannot answer for is read
         * (the sink's filters then say so and fail the run). */
        if (sink_select(sh->sink, f, err, sizeof err) == 0) {
            flow_free(f);
            continue;
        }
        if (f->type == FLOW_TCP) {
            flowrun_begin(&rf.run, f);
            tcp_events(env->scripts, f);
            if (f->killed)
                flowrun_release(&rf.run);   /* as a killed HTTP flow: not recorded */
            else
                flowrun_finish(&rf.run);
            continue;
        }
        rf.busy = true;
        flowrun_begin(&rf.run, f);
        flowrun_request(&rf.run);
        /* a hook that waits: the loop runs until the flow is through */
        while (rf.busy) {
            int lr = event_base_loop(env->base, EVLOOP_ONCE);
            if (lr != 0) { /* 1: nothing left that could resume the flow */
                flowrun_fail(&rf.run, lr < 0 ? "event loop failed" : "held by a script, and nothing resumed it");
                rf.busy = false;
            }
        }
    }
    flow_reader_close(r);
    return status;
}

int rfile_run(shared *sh)
{
    const opts *o = sh->o;
    char err[512];
    struct event_base *base = event_base_new();
    if (!base) {
        fprintf(stderr, "mitmlua: cannot create an event loop\n");
        return 1;
    }
    script_env *scripts = NULL;
    if (o->nscripts) {
        scripts = script_env_new((const char *const *)o->scripts, o->nscripts, err, sizeof err);
        if (!scripts) {
            fprintf(stderr, "mitmlua: %s\n", err);
            event_base_free(base);
            return 1;
        }
        script_env_set_exit(scripts, read_exit, sh);
        script_env_set_timeout(scripts, o->script_timeout);
        script_env_set_memory_limit(scripts, o->script_memory_limit);
    }
    flowrun_env env;
    flowrun_env_init(&env, sh, scripts, base);
    int status = read_all(sh, &env);
    script_env_free(scripts);   /* ends mitm.timer functions still waiting */
    event_base_free(base);
    return status;
}
