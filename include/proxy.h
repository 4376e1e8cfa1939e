/* proxy.h — the proxy core: client connections, upstream connections and
 * the path of one flow through them (parse → hooks → upstream → hooks →
 * client), for regular (explicit, with CONNECT), reverse and upstream modes.
 * Each worker thread owns an event_base and a Lua state; everything in
 * proxy_shared is read-only after start-up or thread-safe by design. */
#ifndef MITMLUA_PROXY_H
#define MITMLUA_PROXY_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <openssl/ssl.h>
#include <event2/event.h>

#include "flow.h"
#include "opts.h"

struct tls_ca;
struct filter;
struct dump_writer;
struct printer;
struct script_env;
struct har_writer;
struct addons;
struct proxyauth;
struct sreplay;

/* What every worker shares.  Read-only once workers run, except the parts
 * that are thread-safe on purpose: the CA's certificate cache, the dump
 * writer's queue and the printer. */
typedef struct proxy_shared {
    const opts *o;
    struct tls_ca *ca;
    /* The TLS contexts are made on first use (proxy_server_ctx,
     * proxy_client_ctx): OpenSSL 3 spends about 4 MiB and a few ms on
     * them, which a proxy that never sees TLS need not pay. */
    _Atomic(SSL_CTX *) server_ctx;  /* client-facing: minted certificates */
    _Atomic(SSL_CTX *) client_ctx;  /* upstream-facing: verification */
    pthread_mutex_t tls_lock;       /* makes them, once */
    struct filter *filter;        /* trailing filter expression, or NULL */
    struct dump_writer *dump;     /* -w, or NULL */
    struct printer *printer;      /* console, or NULL when quiet */
    struct har_writer *har;       /* --set hardump=FILE, or NULL */
    pthread_mutex_t har_lock;     /* the HAR writer has one owner at a time */
    struct filter *fail_on;       /* --set fail_on=FILTER, or NULL */
    struct addons *addons;        /* map_remote, modify_headers, ...; NULL when none is set */
    struct proxyauth *auth;       /* --proxyauth, or NULL (read-only) */
    atomic_int n_clients;         /* client connections open, all workers */
    struct sreplay *sreplay;      /* -S: recorded responses (locks itself), or NULL */
    /* Run totals, shared on purpose: the exit status and the summary
     * printed at shutdown are about every worker's flows. */
    atomic_ulong n_flows, n_errors, n_failed_on;
    atomic_ulong n_filter_errors; /* the trailing filter could not answer */
    atomic_ullong bytes_requests, bytes_responses;
    atomic_int exit_code;         /* from mitm.exit(); -1 when none */
} proxy_shared;

/* The shared TLS contexts, made by the first caller (any worker); NULL
 * when that failed (logged; the caller fails its connection). */
SSL_CTX *proxy_server_ctx(const proxy_shared *sh);
SSL_CTX *proxy_client_ctx(const proxy_shared *sh);

/* mitm.exit(code) from a script: remember the code and stop the run the way
 * SIGTERM does (a clean shutdown that flushes the dump). */
void proxy_request_exit(void *shared, int code);

typedef struct worker worker;

/* Create a worker: its event loop, listener socket (SO_REUSEPORT, so several
 * workers share the port) and Lua state.  NULL with err on failure. */
worker *worker_new(const proxy_shared *sh, int index, char *err, size_t errsz);
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

/* Hand a flow that is finished (response sent, or failed) to the consumers
 * after the hooks: printer and dump writer, each behind the filter. */
void proxy_flow_finished(const proxy_shared *sh, flow *f);

#endif
