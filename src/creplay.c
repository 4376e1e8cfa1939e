/* creplay.c — client replay: recorded requests sent again through the
 * upstream exchange (upstream.h) on one worker's event loop, with the same
 * consumers as live flows, and an optional comparison of each response
 * with the recorded one.
 *
 * A lane is one flow in flight plus the server connection it keeps (the
 * lanes share HTTP/2 server connections, one stream each).  A lane
 * that finishes schedules its next flow through event_base_once rather than
 * starting it from inside the exchange's callback: exch_start may finish
 * synchronously (a name that cannot resolve), and a long run of such
 * failures must not grow the stack. */
#include "creplay.h"

#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <event2/event.h>

#include "flowread.h"
#include "flowrun.h"
#include "log.h"
#include "replaycmp.h"
#include "sink.h"
#include "upstream.h"

typedef struct lane {
    struct creplay *cr;
    exch x;
    flowrun run;        /* the replayed flow in flight (run.f), or none */
    size_t idx;         /* which recorded flow it replays */
} lane;

struct creplay {
    shared *sh;
    worker *w;
    flow **rec;         /* recorded flows, in file order */
    size_t n, cap;
    size_t next;        /* the next recorded flow to start */
    lane *lanes;
    size_t nlanes;
    exch_pool *pool;    /* HTTP/2 server connections the lanes share */
    size_t running;
    bool compare;
    replaycmp_opts cmp;
    void (*done)(void *);
    void *done_ud;
    bool finished;
    bool stopped;       /* the run is being shut down: start nothing more */
    pthread_mutex_t stop_lock;
    pthread_cond_t stop_cond;
    bool stop_done;     /* under stop_lock: the worker closed the exchanges */
    /* results, read by creplay_report after the worker thread ended */
    size_t n_done, n_differ, n_failed;
};

/* ---- loading -------------------------------------------------------------- */

/* Why f cannot be replayed (mitmproxy's ClientPlayback.check), or NULL. */
static const char *cannot_replay(const flow *f)
{
    if (f->type != FLOW_HTTP)
        return "can only replay HTTP flows";
    if (!f->request || !f->request->method || !f->request->host || !f->request->scheme)
        return "flow has no request";
    if (f->websocket)
        return "cannot replay WebSocket flows";
    if (!strcmp(f->request->method, "CONNECT"))
        return "cannot replay a CONNECT request";
    return NULL;
}

static int load_file(creplay *cr, const char *path, char *err, size_t errsz)
{
    char rerr[512];
    flow_reader *r = flow_reader_open(path, rerr, sizeof rerr);
    if (!r) {
        snprintf(err, errsz, "client replay: %s", rerr);
        return -1;
    }
    flow_limits lim = opts_flow_limits(cr->sh->o);
    flow_reader_set_limits(r, &lim);
    int rc = 0;
    for (;;) {
        flow *f = NULL;
        int n = flow_reader_next(r, &f, rerr, sizeof rerr);
        if (n == 0)
            break;
        if (n < 0) {
            snprintf(err, errsz, "client replay: %s: %s", path, rerr);
            rc = -1;
            break;
        }
        const char *why = cannot_replay(f);
        char ferr[512];
        int m = sink_select(cr->sh->sink, f, ferr, sizeof ferr);
        if (m < 0)
            log_error("client replay: %s: not replaying flow %s: %s", path, f->id, ferr);
        if (why || m != 1) {
            if (why)
                log_warn("client replay: %s: skipping flow %s: %s", path, f->id, why);
            flow_free(f);
            continue;
        }
        if (cr->n == cr->cap) {
            size_t nc = cr->cap ? cr->cap * 2 : 16;
            flow **nv = realloc(cr->rec, nc * sizeof *nv);
            if (!nv) {
                flow_free(f);
                snprintf(err, errsz, "client replay: %s: out of memory", path);
                rc = -1;
                break;
            }
            cr->rec = nv;
            cr->cap = nc;
        }
        cr->rec[cr->n++] = f;
    }
    flow_reader_close(r);
    return rc;
}

creplay *creplay_new(shared *sh, char *err, size_t errsz)
{
    const opts *o = sh->o;
    creplay *cr = calloc(1, sizeof *cr);
    if (!cr) {
        snprintf(err, errsz, "out of memory");
        return NULL;
    }
    cr->sh = sh;
    pthread_mutex_init(&cr->stop_lock, NULL);
    pthread_cond_init(&cr->stop_cond, NULL);
    if (o->client_replay_compare) {
        if (replaycmp_parse_mode(o->client_replay_compare, &cr->cmp.mode) < 0) {
            snprintf(err, errsz, "invalid value for client_replay_compare: '%s'", o->client_replay_compare);
            goto fail;
        }
        cr->compare = true;
        cr->cmp.ignore_headers = o->client_replay_ignore_headers;
        cr->cmp.nignore_headers = o->nclient_replay_ignore_headers;
        cr->cmp.ignore_json = o->client_replay_ignore_json_fields;
        cr->cmp.nignore_json = o->nclient_replay_ignore_json_fields;
    }
    for (size_t i = 0; i < o->nclient_replay; i++)
        if (load_file(cr, o->client_replay[i], err, errsz) < 0)
            goto fail;
    return cr;
fail:
    creplay_free(cr);
    return NULL;
}

size_t creplay_count(const creplay *cr)
{
    return cr->n;
}

/* ---- one flow --------------------------------------------------------------- */

static void lane_kick(lane *l);

/* The request exactly as recorded, in a new flow. */
static flow *replay_flow(const flow *src)
{
    flow *f = flow_new();
    flow_request *r = f ? flow_request_new() : NULL;
    const flow_request *s = src->request;
    if (!r)
        goto fail;
    f->request = r;
    r->port = s->port;
    if (flow_strset(&r->method, s->method) < 0 || flow_strset(&r->scheme, s->scheme) < 0 ||
        flow_strset(&r->authority, s->authority ? s->authority : "") < 0 || flow_strset(&r->host, s->host) < 0 ||
        flow_strset(&r->path, s->path ? s->path : "/") < 0 ||
        hdrs_copy(&r->headers, &s->headers) < 0 || hdrs_copy(&r->trailers, &s->trailers) < 0 ||
        bytes_set(&r->content, s->content.p ? s->content.p : "", s->content.len) < 0 ||
        flow_strset(&f->is_replay, "request") < 0)
        goto fail;
    /* the exchange speaks HTTP/1.1; an HTTP/2 recording names its
     * authority in :authority, which HTTP/1.1 carries as Host */
    bool h1 = s->http_version && !strncmp(s->http_version, "HTTP/1", 6);
    if (flow_strset(&r->http_version, h1 ? s->http_version : "HTTP/1.1") < 0)
        goto fail;
    if (!h1 && !hdrs_get(&r->headers, "host", NULL) && s->authority && *s->authority &&
        hdrs_add(&r->headers, "Host", 4, s->authority, strlen(s->authority)) < 0)
        goto fail;
    r->timestamp_start = r->timestamp_end = flow_now();
    return f;
fail:
    flow_free(f);
    return NULL;
}

static void report_flow(creplay *cr, const flow *f, const char *what)
{
    char *url = flow_request_url(f->request);
    fprintf(stderr, "%s %s\n%s", f->request->method, url ? url : "", what);
    free(url);
}

/* The flow is over (answered, failed or killed): the comparison, the
 * consumers, then the lane's next flow.  fail: why it failed, or NULL. */
static void lane_finish(lane *l, const char *fail)
{
    creplay *cr = l->cr;
    flow *f = l->run.f;
    const flow *rec = cr->rec[l->idx];
    if (fail)
        flow_set_error(f, fail);
    cr->n_done++;
    if (f->error || !f->response) {
        cr->n_failed++;
        if (cr->compare) {
            char line[600];
            snprintf(line, sizeof line, "  error: %s\n", f->error && f->error->msg ? f->error->msg : "no response");
            report_flow(cr, f, line);
        }
    } else if (cr->compare && rec->response) {
        bytes diff = {0};
        int rc = replaycmp_compare(&cr->cmp, rec->response, f->response, &diff);
        if (rc != 0) {
            cr->n_differ++;
            bytes indented = {0};
            const char *p = diff.p ? diff.p : "out of memory\n";
            for (const char *eol; *p; p = eol + 1) {
                eol = strchr(p, '\n');
                if (!eol)
                    break;
                bytes_append(&indented, "  ", 2);
                bytes_append(&indented, p, (size_t)(eol - p + 1));
            }
            report_flow(cr, f, indented.p ? indented.p : "");
            bytes_free(&indented);
        }
        bytes_free(&diff);
    }
    if (f->error)
        flowrun_fail(&l->run, NULL);   /* the error hook, then the consumers */
    else
        flowrun_finish(&l->run);
    exch_release_unless_reusable(&l->x);
    lane_kick(l);
}

static int x_head(exch *x)
{
    lane *l = x->owner;
    return flowrun_responseheaders(&l->run);
}

static void x_interim(exch *x, const flow_response *r)
{
    (void)x;
    (void)r;
}

static void x_done(exch *x)
{
    lane *l = x->owner;
    if (x->upgraded)            /* nobody to hand a switched protocol to */
        exch_close(x);
    flowrun_response(&l->run, false);
}

static void x_failed(exch *x, int status, const char *msg)
{
    (void)status;
    lane_finish(x->owner, msg);
}

/* No stream_head: a replayed flow always keeps whole bodies, which the
 * comparison needs anyway. */
static const exch_ops replay_ops = {x_head, x_interim, x_done, x_failed, NULL, NULL};

/* What the pipeline decided for a replayed flow. */
static void lane_next(flowrun *r, enum flowrun_verdict v, int status, const char *msg)
{
    (void)status;
    lane *l = r->owner;
    switch (v) {
    case FLOWRUN_FORWARD:
        exch_start(&l->x, l->run.f);
        return;
    case FLOWRUN_ANSWERED: /* by server replay, map_local or a script */
        flowrun_response(&l->run, false);
        return;
    case FLOWRUN_DELIVER:
        lane_finish(l, NULL);
        return;
    case FLOWRUN_KILLED:
        lane_finish(l, "Connection killed.");
        return;
    case FLOWRUN_FAILED:
        lane_finish(l, msg);
        return;
    }
}

static const flowrun_ops lane_run_ops = {lane_next};

/* Start recorded flow l->idx through the pipeline, as a live request. */
static void lane_start(lane *l)
{
    creplay *cr = l->cr;
    flow *f = replay_flow(cr->rec[l->idx]);
    if (!f) {
        log_error("client replay: out of memory");
        cr->n_done++;
        cr->n_failed++;
        lane_kick(l);
        return;
    }
    flowrun_begin(&l->run, f);
    flowrun_request(&l->run);
}

/* ---- scheduling --------------------------------------------------------------- */

static void all_done(creplay *cr)
{
    if (cr->finished)
        return;
    cr->finished = true;
    for (size_t i = 0; i < cr->nlanes; i++)
        exch_close(&cr->lanes[i].x);
    if (cr->stopped)
        return;
    log_info("client replay: done");
    if (cr->done)
        cr->done(cr->done_ud);
}

static void lane_next_cb(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    lane *l = arg;
    creplay *cr = l->cr;
    if (cr->next < cr->n && !cr->w->stopping && !cr->stopped) {
        l->idx = cr->next++;
        lane_start(l);
        return;
    }
    cr->running--;
    if (cr->running == 0)
        all_done(cr);
}

/* Take the lane's next flow on a fresh turn of the loop. */
static void lane_kick(lane *l)
{
    static const struct timeval now = {0, 0};
    if (event_base_once(l->cr->w->base, -1, EV_TIMEOUT, lane_next_cb, l, &now) < 0) {
        log_error("client replay: cannot schedule the next flow");
        l->cr->running--;
        if (l->cr->running == 0)
            all_done(l->cr);
    }
}

static void nothing_cb(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    all_done(arg);
}

int creplay_start(creplay *cr, worker *w, void (*done)(void *ud), void *ud)
{
    cr->w = w;
    cr->done = done;
    cr->done_ud = ud;
    size_t want = (size_t)(w->sh->o->client_replay_concurrency > 0 ? w->sh->o->client_replay_concurrency : 1);
    cr->nlanes = want < cr->n ? want : cr->n;
    if (cr->nlanes == 0) {
        /* nothing to replay: finish from the loop, like any other end */
        static const struct timeval now = {0, 0};
        return event_base_once(w->base, -1, EV_TIMEOUT, nothing_cb, cr, &now) < 0 ? -1 : 0;
    }
    cr->lanes = calloc(cr->nlanes, sizeof *cr->lanes);
    if (!cr->lanes || !(cr->pool = exch_pool_new()))
        return -1;
    for (size_t i = 0; i < cr->nlanes; i++) {
        cr->lanes[i].cr = cr;
        exch_init(&cr->lanes[i].x, w, &replay_ops, &cr->lanes[i]);
        flowrun_init(&cr->lanes[i].run, &w->run, &lane_run_ops, &cr->lanes[i]);
        exch_share(&cr->lanes[i].x, cr->pool);
    }
    cr->running = cr->nlanes;
    for (size_t i = 0; i < cr->nlanes; i++)
        lane_kick(&cr->lanes[i]);
    return 0;
}

/* On the worker's thread: close every server connection while the loop
 * (which owns their bufferevents) still exists. */
static void stop_cb(void *arg)
{
    creplay *cr = arg;
    cr->stopped = true;
    for (size_t i = 0; i < cr->nlanes; i++) {
        exch_close(&cr->lanes[i].x);
        flowrun_fail(&cr->lanes[i].run, "client replay stopped");
    }
    pthread_mutex_lock(&cr->stop_lock);
    cr->stop_done = true;
    pthread_cond_signal(&cr->stop_cond);
    pthread_mutex_unlock(&cr->stop_lock);
}

void creplay_stop(creplay *cr)
{
    if (!cr || !cr->w)
        return;
    pthread_mutex_lock(&cr->stop_lock);
    if (worker_call(cr->w, stop_cb, cr) == 0) {
        /* bounded: a loop stuck in a script must not hold the shutdown */
        struct timespec until;
        clock_gettime(CLOCK_REALTIME, &until);
        until.tv_sec += 2;
        while (!cr->stop_done && pthread_cond_timedwait(&cr->stop_cond, &cr->stop_lock, &until) == 0)
            ;
    }
    pthread_mutex_unlock(&cr->stop_lock);
}

bool creplay_report(const creplay *cr, FILE *out)
{
    size_t never = cr->n - cr->n_done;
    fprintf(out, "client replay: %zu replayed, %zu differ, %zu failed", cr->n_done, cr->n_differ, cr->n_failed);
    if (never)
        fprintf(out, ", %zu not replayed (interrupted)", never);
    fputs("\n", out);
    return cr->compare && (cr->n_differ || cr->n_failed || never);
}

void creplay_free(creplay *cr)
{
    if (!cr)
        return;
    for (size_t i = 0; i < cr->nlanes; i++)
        flow_free(cr->lanes[i].run.f);  /* a worker that never ran leaves them */
    free(cr->lanes);
    exch_pool_free(cr->pool); /* the lanes let go of their connections before */
    for (size_t i = 0; i < cr->n; i++)
        flow_free(cr->rec[i]);
    free(cr->rec);
    pthread_cond_destroy(&cr->stop_cond);
    pthread_mutex_destroy(&cr->stop_lock);
    free(cr);
}
