/* worker.h — one worker thread: its event loop, listener, resolver, Lua
 * state and the flow pipeline's env, shared by the modules that run on its
 * loop (the client sides, the upstream side, client replay).  Only the
 * worker's own thread touches it, but for the queue of worker_call. */
#ifndef MITMLUA_WORKER_H
#define MITMLUA_WORKER_H

#include <pthread.h>
#include <stdbool.h>
#include <event2/dns.h>
#include <event2/event.h>
#include <event2/listener.h>

#include "flowrun.h"
#include "guard.h"
#include "h1.h"
#include "hostmatch.h"
#include "linger.h"
#include "script.h"
#include "shared.h"

struct cconn;

typedef struct worker {
    shared *sh;
    int index;
    int port;
    struct event_base *base;
    struct evdns_base *dns;
    struct evconnlistener *listener;
    script_env *scripts;
    flowrun_env run;         /* the pipeline's per-loop state */
    int wake_fd;             /* eventfd: worker_call's requests */
    struct event *wake_ev;
    pthread_mutex_t calls_lock;
    struct worker_call {
        void (*fn)(void *);
        void *arg;
    } calls[4];
    size_t ncalls;           /* under calls_lock */
    pthread_t thread;
    bool started;
    bool stopping;           /* finishing what is in flight, then exit */
    hostmatch *ignore_hosts; /* per worker: a matcher holds match data */
    hostmatch *allow_hosts;
    hostmatch *tcp_hosts;
    char *upstream_auth;     /* "Basic …" from upstream_auth, or NULL */
    char reverse_host[320];  /* reverse mode: the Host value for the target */
    struct cconn *conns;     /* client connections (client.h) */
    linger_set lingering;    /* server sides finishing their last writes */
    h1_limits req_limits;
    h1_limits resp_limits;
    guard_admit admit;       /* max_connections */
    guard_listener *guard;   /* pauses accepting when out of descriptors */
} worker;

/* Create a worker: its event loop, listener socket (SO_REUSEPORT, so several
 * workers share the port) and Lua state.  NULL with err on failure. */
worker *worker_new(shared *sh, int index, char *err, size_t errsz);
/* The port actually bound (useful with listen_port 0). */
int worker_port(const worker *w);
int worker_start(worker *w);          /* runs the loop in a new thread */
void worker_stop(worker *w);          /* thread-safe: asks the loop to end */
/* From any thread: run fn(arg) on w's thread, soon.  The one way into a
 * running worker from outside: libevent's own locking is off (it would cost
 * a lock and an unlock on every event change of every request), so
 * event_active or event_base_once from another thread are not safe.
 * -1 when it cannot be queued (a handful at a time; they are for shutdown). */
int worker_call(worker *w, void (*fn)(void *), void *arg);
void worker_join_free(worker *w);     /* waits for the thread, frees all */
/* The same, waiting at most `seconds`: -1 when the thread still runs (a
 * script that never returns, with no script_timeout): nothing is freed. */
int worker_join_free_within(worker *w, int seconds);

#endif
