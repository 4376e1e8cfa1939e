/* worker.c — a worker thread: its event loop with the listener, the
 * resolver and the Lua state, the queue other threads reach it through,
 * and a gentle stop.  What happens on a connection is client.h's. */
#include "worker.h"

#include <errno.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <unistd.h>

#include <event2/util.h>

#include "client.h"
#include "dial.h"
#include "log.h"

static void listener_cb(struct evconnlistener *lis, evutil_socket_t fd, struct sockaddr *sa, int salen, void *arg)
{
    (void)lis;
    (void)salen;
    client_accept(arg, fd, sa);
}

/* Stop gently: no new connections, idle ones closed now, exchanges in
 * progress may finish (their responses written, their flows recorded) for
 * up to two seconds. */
static void stop_now(void *arg)
{
    worker *w = arg;
    w->stopping = true;
    guard_listener_free(w->guard);
    w->guard = NULL;
    if (w->listener) {
        evconnlistener_free(w->listener);
        w->listener = NULL;
    }
    client_close_idle(w);
    struct timeval grace = {2, 0};
    event_base_loopexit(w->base, w->conns ? &grace : NULL);
}

/* The eventfd was written: run what other threads asked for. */
static void wake_cb(evutil_socket_t fd, short what, void *arg)
{
    (void)what;
    worker *w = arg;
    uint64_t n;
    if (read(fd, &n, sizeof n) < 0 && errno != EAGAIN)
        log_debug("worker %d: reading its eventfd: %s", w->index, strerror(errno));
    struct worker_call calls[sizeof w->calls / sizeof *w->calls];
    pthread_mutex_lock(&w->calls_lock);
    size_t k = w->ncalls;
    memcpy(calls, w->calls, k * sizeof *calls);
    w->ncalls = 0;
    pthread_mutex_unlock(&w->calls_lock);
    for (size_t i = 0; i < k; i++)
        calls[i].fn(calls[i].arg);
}

int worker_call(worker *w, void (*fn)(void *), void *arg)
{
    if (!w || !w->wake_ev)
        return -1;
    pthread_mutex_lock(&w->calls_lock);
    bool room = w->ncalls < sizeof w->calls / sizeof *w->calls;
    if (room)
        w->calls[w->ncalls++] = (struct worker_call){fn, arg};
    pthread_mutex_unlock(&w->calls_lock);
    uint64_t one = 1;
    if (!room || write(w->wake_fd, &one, sizeof one) != sizeof one)
        return -1;
    return 0;
}

static int resolve_listen(const char *host, int port, struct sockaddr_storage *ss, socklen_t *len,
                          char *err, size_t errsz)
{
    struct evutil_addrinfo hints = {0}, *res = NULL;
    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = SOCK_STREAM;
    hints.ai_flags = EVUTIL_AI_PASSIVE | EVUTIL_AI_ADDRCONFIG;
    char ps[16];
    snprintf(ps, sizeof ps, "%d", port);
    int rc = evutil_getaddrinfo(host, ps, &hints, &res);
    if (rc != 0 || !res) {
        snprintf(err, errsz, "cannot listen on %s: %s", host, evutil_gai_strerror(rc));
        return -1;
    }
    memcpy(ss, res->ai_addr, res->ai_addrlen);
    *len = (socklen_t)res->ai_addrlen;
    evutil_freeaddrinfo(res);
    return 0;
}

worker *worker_new(shared *sh, int index, char *err, size_t errsz)
{
    const opts *o = sh->o;
    worker *w = calloc(1, sizeof *w);
    if (!w) {
        snprintf(err, errsz, "out of memory");
        return NULL;
    }
    w->sh = sh;
    w->index = index;
    w->wake_fd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    pthread_mutex_init(&w->calls_lock, NULL);
    w->port = o->listen_port;
    w->req_limits = (h1_limits){.max_head = o->max_header_size, .max_headers = (size_t)o->max_headers,
                                .max_body = o->body_size_limit};
    w->resp_limits = w->req_limits;
    w->admit = (guard_admit){.open = &sh->n_clients, .max = o->max_connections};
    /* With the changelist, epoll_ctl calls are batched before each wait,
     * and an interest added and removed in the same round (a bufferevent
     * enabling and disabling reads or writes around one exchange) costs
     * nothing.  Profiles showed 8 epoll_ctl per proxied request without it. */
    struct event_config *cfg = event_config_new();
    if (cfg) {
        event_config_set_flag(cfg, EVENT_BASE_FLAG_EPOLL_USE_CHANGELIST);
        w->base = event_base_new_with_config(cfg);
        event_config_free(cfg);
    }
    if (!w->base)
        w->base = event_base_new();
    if (!w->base) {
        snprintf(err, errsz, "cannot create an event loop");
        goto fail;
    }
    w->dns = evdns_base_new(w->base, EVDNS_BASE_INITIALIZE_NAMESERVERS | EVDNS_BASE_DISABLE_WHEN_INACTIVE);
    if (!w->dns)
        w->dns = evdns_base_new(w->base, EVDNS_BASE_DISABLE_WHEN_INACTIVE);
    if (!w->dns) {
        snprintf(err, errsz, "cannot set up DNS resolution");
        goto fail;
    }
    evdns_base_set_option(w->dns, "timeout:", "3");
    evdns_base_set_option(w->dns, "attempts:", "2");
    evdns_base_set_option(w->dns, "randomize-case:", "0");
    w->ignore_hosts = hostmatch_new(o->ignore_hosts, o->nignore_hosts, "ignore_hosts", err, errsz);
    w->allow_hosts = w->ignore_hosts ? hostmatch_new(o->allow_hosts, o->nallow_hosts, "allow_hosts", err, errsz) : NULL;
    w->tcp_hosts = w->allow_hosts ? hostmatch_new(o->tcp_hosts, o->ntcp_hosts, "tcp_hosts", err, errsz) : NULL;
    if (!w->tcp_hosts)
        goto fail;
    if (o->upstream_auth && !(w->upstream_auth = dial_basic_auth(o->upstream_auth))) {
        snprintf(err, errsz, "out of memory");
        goto fail;
    }
    if (o->mode == MODE_REVERSE)
        flow_authority(o->mode_url.scheme, o->mode_url.host, o->mode_url.port, w->reverse_host,
                       sizeof w->reverse_host);
    w->wake_ev = w->wake_fd >= 0 ? event_new(w->base, w->wake_fd, EV_READ | EV_PERSIST, wake_cb, w) : NULL;
    if (!w->wake_ev || event_add(w->wake_ev, NULL) < 0) {
        snprintf(err, errsz, "cannot set up the worker's wake-up event%s%s", w->wake_fd < 0 ? ": " : "",
                 w->wake_fd < 0 ? strerror(errno) : "");
        goto fail;
    }
    if (o->server) {
        struct sockaddr_storage ss;
        socklen_t sl;
        if (resolve_listen(o->listen_host, o->listen_port, &ss, &sl, err, errsz) < 0)
            goto fail;
        unsigned flags = LEV_OPT_CLOSE_ON_FREE | LEV_OPT_REUSEABLE | LEV_OPT_CLOSE_ON_EXEC;
        if (o->workers > 1)
            flags |= LEV_OPT_REUSEABLE_PORT;
        w->listener = evconnlistener_new_bind(w->base, listener_cb, w, flags, 1024, (struct sockaddr *)&ss, (int)sl);
        if (!w->listener) {
            int e = EVUTIL_SOCKET_ERROR();
            snprintf(err, errsz, "cannot listen on %s port %d: %s", o->listen_host, o->listen_port,
                     evutil_socket_error_to_string(e));
            goto fail;
        }
        if (!(w->guard = guard_listener_new(w->base, w->listener, listener_cb, w))) {
            snprintf(err, errsz, "out of memory");
            goto fail;
        }
        struct sockaddr_storage bound;
        socklen_t bl = sizeof bound;
        if (getsockname(evconnlistener_get_fd(w->listener), (struct sockaddr *)&bound, &bl) == 0)
            w->port = ntohs(bound.ss_family == AF_INET6 ? ((struct sockaddr_in6 *)&bound)->sin6_port
                                                         : ((struct sockaddr_in *)&bound)->sin_port);
    }
    if (o->nscripts) {
        w->scripts = script_env_new((const char *const *)o->scripts, o->nscripts, err, errsz);
        if (!w->scripts)
            goto fail;
        script_env_set_timeout(w->scripts, o->script_timeout);
        script_env_set_memory_limit(w->scripts, o->script_memory_limit);
        script_env_set_exit(w->scripts, shared_request_exit, sh);
        script_env_set_worker(w->scripts, w);
    }
    flowrun_env_init(&w->run, sh, w->scripts, w->base);
    w->run.listen_port = w->port;
    script_env_watch(w->scripts);
    return w;
fail:
    worker_join_free(w);
    return NULL;
}

int worker_port(const worker *w) { return w->port; }

static void *worker_main(void *arg)
{
    worker *w = arg;
    event_base_dispatch(w->base);
    return NULL;
}

int worker_start(worker *w)
{
    if (pthread_create(&w->thread, NULL, worker_main, w) != 0)
        return -1;
    w->started = true;
    return 0;
}

void worker_stop(worker *w)
{
    if (w && worker_call(w, stop_now, w) < 0)
        log_error("worker %d: cannot ask it to stop", w->index);
}

int worker_join_free_within(worker *w, int seconds)
{
    if (w && w->started) {
        struct timespec until;
        clock_gettime(CLOCK_REALTIME, &until);
        until.tv_sec += seconds;
        if (pthread_timedjoin_np(w->thread, NULL, &until) != 0)
            return -1;
        w->started = false;
    }
    worker_join_free(w);
    return 0;
}

void worker_join_free(worker *w)
{
    if (!w)
        return;
    if (w->started)
        pthread_join(w->thread, NULL);
    client_close_all(w);
    linger_set_free(&w->lingering);
    if (w->scripts)
        script_env_free(w->scripts);
    hostmatch_free(w->ignore_hosts);
    hostmatch_free(w->allow_hosts);
    guard_listener_free(w->guard);
    hostmatch_free(w->tcp_hosts);
    free(w->upstream_auth);
    if (w->listener)
        evconnlistener_free(w->listener);
    if (w->wake_ev)
        event_free(w->wake_ev);
    if (w->wake_fd >= 0)
        close(w->wake_fd);
    pthread_mutex_destroy(&w->calls_lock);
    if (w->dns)
        evdns_base_free(w->dns, 0);
    if (w->base)
        event_base_free(w->base);
    free(w);
}
