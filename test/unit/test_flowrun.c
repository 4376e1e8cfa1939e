/* Unit tests for the flow pipeline (flowrun.c) in a real environment: the
 * options, the shared context with its sink, a script env on an event loop,
 * and a fake owner that records every verdict.  Hooks that wait (mitm.sleep,
 * mitm.timer, flow:intercept) run on the loop; every loop run is bounded by
 * a safety timer, so a verdict that never comes fails the check instead of
 * hanging the test. */
#include <event2/event.h>
#include <stdbool.h>
#include <unistd.h>

#include "flowrun.h"
#include "opts.h"
#include "script.h"
#include "shared.h"
#include "sink.h"
#include "sreplay.h"
#include "t.h"

#define S(name) "test/unit/scripts/" name

static opts o;
static shared *sh;
static struct event_base *base;
static script_env *se;
static flowrun_env env;      /* with the script */
static flowrun_env env_none; /* without scripts */
static char logpath[64];     /* what the script writes (FLOWRUN_LOG) */

/* ---- the fake owner -------------------------------------------------------- */

typedef struct owner {
    flowrun r;
    int n;                   /* verdicts heard */
    enum flowrun_verdict v;  /* the last one */
    int status;
    char msg[300];
    bool break_loop;         /* a verdict ends the loop run */
} owner;

static bool in_loop;

static void on_next(flowrun *r, enum flowrun_verdict v, int status, const char *msg)
{
    owner *ow = r->owner;
    ow->n++;
    ow->v = v;
    ow->status = status;
    snprintf(ow->msg, sizeof ow->msg, "%s", msg ? msg : "");
    if (ow->break_loop && in_loop)
        event_base_loopbreak(base);
}

static const flowrun_ops ops = {on_next};

static void owner_init(owner *ow, flowrun_env *e)
{
    memset(ow, 0, sizeof *ow);
    flowrun_init(&ow->r, e, &ops, ow);
}

static flow *make_flow(const char *path)
{
    flow *f = flow_new();
    f->request = flow_request_new();
    flow_request *q = f->request;
    flow_strset(&q->method, "GET");
    flow_strset(&q->scheme, "http");
    flow_strset(&q->host, "example.com");
    q->port = 80;
    flow_strset(&q->path, path);
    flow_strset(&q->http_version, "HTTP/1.1");
    hdrs_add(&q->headers, "Host", 4, "example.com", 11);
    q->timestamp_start = flow_now();
    q->timestamp_end = q->timestamp_start;
    return f;
}

/* ---- the loop, bounded ------------------------------------------------------ */

static void safety_cb(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    *(bool *)arg = true;
    event_base_loopbreak(base);
}

/* Run the loop for at most `ms` (or until a verdict breaks it, when the
 * owner asks for that): true when the safety timer ended it. */
static bool run_loop(int ms)
{
    bool expired = false;
    struct event *safety = evtimer_new(base, safety_cb, &expired);
    struct timeval tv = {ms / 1000, (ms % 1000) * 1000};
    evtimer_add(safety, &tv);
    in_loop = true;
    event_base_dispatch(base);
    in_loop = false;
    event_free(safety);
    return expired;
}

/* ---- observations ------------------------------------------------------- */

static unsigned long flows_recorded(void)
{
    char *buf = NULL;
    size_t len = 0;
    FILE *m = open_memstream(&buf, &len);
    unsigned long n = 0;
    if (!m)
        return (unsigned long)-1;
    sink_summary(sh->sink, m);
    fclose(m);
    if (sscanf(buf, "mitmlua: %lu flow", &n) != 1)
        n = (unsigned long)-1;
    free(buf);
    return n;
}

/* How many lines of the script's log are exactly `line`. */
static int log_count(const char *line)
{
    FILE *fp = fopen(logpath, "r");
    if (!fp)
        return 0;
    char buf[512];
    int n = 0;
    while (fgets(buf, sizeof buf, fp)) {
        buf[strcspn(buf, "\n")] = '\0';
        if (strcmp(buf, line) == 0)
            n++;
    }
    fclose(fp);
    return n;
}

/* ---- 1. no scripts -------------------------------------------------------- */

static void no_scripts(void)
{
    owner ow;
    owner_init(&ow, &env_none);
    flowrun_begin(&ow.r, make_flow("/plain"));
    flowrun_request(&ow.r);
    T_CHECK(ow.n == 1 && ow.v == FLOWRUN_FORWARD); /* synchronously */
    T_CHECK(!flowrun_waiting(&ow.r));

    ow.r.f->response = flow_response_new();
    ow.r.f->response->status_code = 200;
    flowrun_response(&ow.r, false);
    T_CHECK(ow.n == 2 && ow.v == FLOWRUN_DELIVER);
    /* a response without timestamps (made, not received) gets them */
    T_CHECK(ow.r.f->response->timestamp_start > 0);
    T_CHECK(ow.r.f->response->timestamp_end >= ow.r.f->response->timestamp_start);

    unsigned long before = flows_recorded();
    flowrun_finish(&ow.r);
    T_CHECK(ow.r.f == NULL);
    T_CHECK(flows_recorded() == before + 1);
    T_CHECK(ow.n == 2);
}

/* ---- 2. a script answers, a script removes the response ------------------ */

static void answer_and_remove(void)
{
    owner ow;
    owner_init(&ow, &env);
    flowrun_begin(&ow.r, make_flow("/answer"));
    flowrun_request(&ow.r);
    T_CHECK(ow.n == 1 && ow.v == FLOWRUN_ANSWERED);
    T_CHECK(ow.r.f->response && ow.r.f->response->status_code == 201);
    flowrun_response(&ow.r, false);
    T_CHECK(ow.n == 2 && ow.v == FLOWRUN_DELIVER);
    flowrun_finish(&ow.r);

    /* flow.response = nil raises in the hook (bad argument): the
     * response stays and is delivered */
    owner_init(&ow, &env);
    flowrun_begin(&ow.r, make_flow("/remove"));
    flowrun_request(&ow.r);
    T_CHECK(ow.n == 1 && ow.v == FLOWRUN_FORWARD);
    ow.r.f->response = flow_response_new();
    ow.r.f->response->status_code = 200;
    flowrun_response(&ow.r, false);
    T_CHECK(log_count("remove refused") == 1);
    T_CHECK(ow.n == 2 && ow.v == FLOWRUN_DELIVER);
    T_CHECK(ow.r.f->response && ow.r.f->response->status_code == 200);
    flowrun_finish(&ow.r);

    /* so the pipeline's own check is met only by a response phase without
     * a response (what a script removing it would leave) */
    owner_init(&ow, &env);
    flowrun_begin(&ow.r, make_flow("/gone"));
    flowrun_request(&ow.r);
    T_CHECK(ow.n == 1 && ow.v == FLOWRUN_FORWARD);
    flowrun_response(&ow.r, false);
    T_CHECK(ow.n == 2 && ow.v == FLOWRUN_FAILED);
    T_CHECK(ow.status == 502);
    T_STREQ(ow.msg, "response removed by a script");
    flowrun_fail(&ow.r, ow.msg);
    T_CHECK(ow.r.f == NULL);
    T_CHECK(log_count("error /gone response removed by a script") == 1);
}

/* ---- 3. flow:kill() in the request hook ------------------------------------ */

static void kill_in_request(void)
{
    owner ow;
    owner_init(&ow, &env);
    unsigned long before = flows_recorded();
    flowrun_begin(&ow.r, make_flow("/kill"));
    flowrun_request(&ow.r);
    T_CHECK(ow.n == 1 && ow.v == FLOWRUN_KILLED);
    T_CHECK(ow.r.f && ow.r.f->killed);
    flowrun_fail(&ow.r, "Connection killed.");
    T_CHECK(ow.r.f == NULL);
    T_CHECK(ow.n == 1);
    T_CHECK(log_count("error /kill Connection killed.") == 1); /* the error hook ran */
    T_CHECK(flows_recorded() == before + 1);                   /* and it was recorded */
}

/* ---- 4. server replay kills a request it has no recording for ------------ */

static void sreplay_kill(void)
{
    char *extra = o.server_replay_extra;
    o.server_replay_extra = strdup("kill");
    char err[256];
    sh->sreplay = sreplay_new(&o, err, sizeof err); /* nothing recorded */
    T_CHECK(sh->sreplay != NULL);
    if (!sh->sreplay) {
        fprintf(stderr, "  sreplay_new: %s\n", err);
    } else {
        owner ow;
        owner_init(&ow, &env);
        unsigned long before = flows_recorded();
        flowrun_begin(&ow.r, make_flow("/unrecorded"));
        flowrun_request(&ow.r);
        T_CHECK(ow.n == 1 && ow.v == FLOWRUN_KILLED);
        T_CHECK(ow.r.f && ow.r.f->killed);
        flowrun_fail(&ow.r, "Connection killed.");
        T_CHECK(log_count("error /unrecorded Connection killed.") == 1);
        T_CHECK(flows_recorded() == before + 1);

        /* -r flows see the hooks only: no server replay */
        owner_init(&ow, &env);
        ow.r.hooks_only = true;
        flowrun_begin(&ow.r, make_flow("/unrecorded-r"));
        flowrun_request(&ow.r);
        T_CHECK(ow.n == 1 && ow.v == FLOWRUN_FORWARD);
        flowrun_release(&ow.r);
        sreplay_free(sh->sreplay);
        sh->sreplay = NULL;
    }
    free(o.server_replay_extra);
    o.server_replay_extra = extra;
}

/* ---- 5. a request hook that sleeps ---------------------------------------- */

static void sleep_in_request(void)
{
    owner ow;
    owner_init(&ow, &env);
    ow.break_loop = true;
    flowrun_begin(&ow.r, make_flow("/sleep"));
    flowrun_request(&ow.r);
    T_CHECK(ow.n == 0); /* no verdict yet */
    T_CHECK(flowrun_waiting(&ow.r));
    T_CHECK(!run_loop(2000)); /* the verdict ended the run, not the safety timer */
    T_CHECK(ow.n == 1 && ow.v == FLOWRUN_FORWARD);
    T_CHECK(!flowrun_waiting(&ow.r));
    T_STREQ(hdrs_get(&ow.r.f->request->headers, "x-slept", NULL), "1");
    ow.break_loop = false;
    run_loop(100); /* exactly once */
    T_CHECK(ow.n == 1);
    flowrun_release(&ow.r);
    T_CHECK(script_env_pending(se) == 0);
}

/* ---- 6. the owner leaves while a hook waits --------------------------------- */

static void owner_leaves(void)
{
    owner ow;
    owner_init(&ow, &env);
    unsigned long before = flows_recorded();
    flowrun_begin(&ow.r, make_flow("/sleep"));
    flowrun_request(&ow.r);
    T_CHECK(ow.n == 0 && flowrun_waiting(&ow.r));
    flowrun_fail(&ow.r, "client disconnected");
    T_CHECK(ow.r.f == NULL);
    T_CHECK(!flowrun_waiting(&ow.r));
    T_CHECK(log_count("error /sleep client disconnected") == 1);
    T_CHECK(flows_recorded() == before + 1);
    run_loop(200); /* well past the sleep: the abandoned hook stays silent */
    T_CHECK(ow.n == 0);
    T_CHECK(script_env_pending(se) == 0);
}

/* ---- 7. flow:intercept() and a timer that resumes or kills ----------------- */

static void intercept_then(const char *path, enum flowrun_verdict want)
{
    owner ow;
    owner_init(&ow, &env);
    ow.break_loop = true;
    flowrun_begin(&ow.r, make_flow(path));
    flowrun_request(&ow.r);
    T_CHECK(ow.n == 0); /* held */
    T_CHECK(flowrun_waiting(&ow.r));
    T_CHECK(env.held == &ow.r);
    T_CHECK(!run_loop(2000));
    T_CHECK(ow.n == 1 && ow.v == want);
    T_CHECK(!flowrun_waiting(&ow.r));
    T_CHECK(env.held == NULL);
    ow.break_loop = false;
    run_loop(100);
    T_CHECK(ow.n == 1);
    if (want == FLOWRUN_KILLED) {
        flowrun_fail(&ow.r, "Connection killed.");
        T_CHECK(log_count("error /intercept-kill Connection killed.") == 1);
    } else {
        flowrun_release(&ow.r);
    }
    T_CHECK(ow.r.f == NULL);
}

static void intercept(void)
{
    intercept_then("/intercept-resume", FLOWRUN_FORWARD);
    intercept_then("/intercept-kill", FLOWRUN_KILLED);
}

/* ---- 8. hooks_only (-r) ------------------------------------------------------ */

static void hooks_only(void)
{
    owner ow;
    owner_init(&ow, &env);
    ow.r.hooks_only = true;
    unsigned long before = flows_recorded();
    flowrun_begin(&ow.r, make_flow("/kill"));
    flowrun_request(&ow.r);
    T_CHECK(ow.n == 1 && ow.v == FLOWRUN_KILLED);
    flowrun_finish(&ow.r);
    T_CHECK(ow.r.f == NULL);
    T_CHECK(flows_recorded() == before); /* a killed flow is not recorded */

    /* a flow that goes on is recorded */
    owner_init(&ow, &env);
    ow.r.hooks_only = true;
    flowrun_begin(&ow.r, make_flow("/ro"));
    flowrun_request(&ow.r);
    T_CHECK(ow.n == 1 && ow.v == FLOWRUN_FORWARD);
    flowrun_finish(&ow.r);
    T_CHECK(flows_recorded() == before + 1);

    /* requestheaders called by the owner first: flowrun_request skips it */
    owner_init(&ow, &env);
    ow.r.hooks_only = true;
    flowrun_begin(&ow.r, make_flow("/headers-once"));
    T_CHECK(flowrun_requestheaders(&ow.r) == 0);
    T_CHECK(log_count("requestheaders /headers-once") == 1);
    flowrun_request(&ow.r);
    T_CHECK(ow.n == 1 && ow.v == FLOWRUN_FORWARD);
    T_CHECK(log_count("requestheaders /headers-once") == 1);
    flowrun_finish(&ow.r);

    /* and without that call, flowrun_request runs it, once */
    owner_init(&ow, &env);
    flowrun_begin(&ow.r, make_flow("/headers-here"));
    flowrun_request(&ow.r);
    T_CHECK(ow.n == 1 && ow.v == FLOWRUN_FORWARD);
    T_CHECK(log_count("requestheaders /headers-here") == 1);
    flowrun_release(&ow.r);
}

/* ---- 9. script_timeout ------------------------------------------------------- */

static void timeout(void)
{
    script_env_set_timeout(se, 50);
    owner ow;
    owner_init(&ow, &env);
    ow.break_loop = true;
    flowrun_begin(&ow.r, make_flow("/spin"));
    flowrun_request(&ow.r);
    if (ow.n == 0)
        run_loop(3000);
    T_CHECK(ow.n == 1 && ow.v == FLOWRUN_FAILED);
    T_CHECK(ow.status == 502);
    T_CHECK(strstr(ow.msg, "script_timeout") != NULL);
    if (ow.r.f)
        flowrun_fail(&ow.r, ow.msg);
    T_CHECK(ow.r.f == NULL);

    /* waiting does not count towards the limit */
    owner_init(&ow, &env);
    ow.break_loop = true;
    flowrun_begin(&ow.r, make_flow("/sleep-long"));
    flowrun_request(&ow.r);
    T_CHECK(ow.n == 0 && flowrun_waiting(&ow.r));
    T_CHECK(!run_loop(3000));
    T_CHECK(ow.n == 1 && ow.v == FLOWRUN_FORWARD);
    T_STREQ(hdrs_get(&ow.r.f->request->headers, "x-sum", NULL), "500500");
    flowrun_release(&ow.r);
    script_env_set_timeout(se, 0);
}

int main(void)
{
    snprintf(logpath, sizeof logpath, "/tmp/test_flowrun.%ld.log", (long)getpid());
    unlink(logpath);
    setenv("FLOWRUN_LOG", logpath, 1);

    opts_defaults(&o);
    o.server = false;
    o.flow_detail = 0;
    int status = 0;
    char err[512];
    sh = shared_new(&o, &status, err, sizeof err);
    if (!sh) {
        fprintf(stderr, "shared_new: %s\n", err);
        return 1;
    }
    base = event_base_new();
    const char *paths[] = {S("flowrun.lua")};
    se = script_env_new(paths, 1, err, sizeof err);
    if (!base || !se) {
        fprintf(stderr, "set-up: %s\n", se ? "event_base_new" : err);
        return 1;
    }
    flowrun_env_init(&env, sh, se, base);
    flowrun_env_init(&env_none, sh, NULL, base);

    T_RUN(no_scripts);
    T_RUN(answer_and_remove);
    T_RUN(kill_in_request);
    T_RUN(sreplay_kill);
    T_RUN(sleep_in_request);
    T_RUN(owner_leaves);
    T_RUN(intercept);
    T_RUN(hooks_only);
    T_RUN(timeout);

    script_env_free(se);
    event_base_free(base);
    shared_free(sh);
    opts_free(&o);
    unlink(logpath);
    T_DONE();
}
