/* worker.h — one worker's private state, shared by the modules that run on
 * its event loop (the HTTP/1 client side in proxy.c, the upstream side in
 * upstream.c, and whatever else drives exchanges there).  Only the worker's
 * own thread touches it, but for the queue of worker_call. */
#ifndef MITMLUA_WORKER_H
#define MITMLUA_WORKER_H

#include <pthread.h>
#include <stdbool.h>
#include <event2/dns.h>
#include <event2/event.h>
#include <event2/listener.h>

#include "guard.h"
#include "h1.h"
#include "hostmatch.h"
#include "proxy.h"
#include "script.h"

struct cconn;

struct worker {
    const proxy_shared *sh;
    int index;
    int port;
    struct event_base *base;
    struct evdns_base *dns;
    struct evconnlistener *listener;
    script_env *scripts;
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
    char *upstream_auth_line; /* the same as a Proxy-Authorization line, or "" */
    char reverse_host[320];  /* reverse mode: the Host value for the target */
    struct cconn *conns;
    h1_limits req_limits;
    h1_limits resp_limits;
    guard_admit admit;       /* max_connections */
    guard_listener *guard;   /* pauses accepting when out of descriptors */
};

#endif
