/* guard.c — connection bounds and listener back-off.
 *
 * Running out of file descriptors must never crash the proxy or make it
 * spin: libevent's listener reports EMFILE through its error callback on
 * every loop iteration while the backlog is non-empty, so the callback
 * disables the listener and a timer re-enables it.  The connection bound is
 * kept below the descriptor limit so that, in normal operation, accepted
 * clients can still open their upstream connection. */
#include "guard.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netdb.h>
#include <netinet/in.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <time.h>

#include "log.h"

#define GUARD_RESERVE_FDS 64
#define GUARD_MAX_DEFAULT 10000

int guard_default_max_connections(void)
{
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) < 0)
        return 1000;
    if (rl.rlim_cur < rl.rlim_max) {
        struct rlimit want = rl;
        want.rlim_cur = rl.rlim_max == RLIM_INFINITY ? 65536 : rl.rlim_max;
        if (setrlimit(RLIMIT_NOFILE, &want) == 0)
            rl = want;
    }
    rlim_t cur = rl.rlim_cur == RLIM_INFINITY ? 65536 : rl.rlim_cur;
    long n = cur > GUARD_RESERVE_FDS ? (long)(cur - GUARD_RESERVE_FDS) / 2 : 0;
    if (n > GUARD_MAX_DEFAULT)
        n = GUARD_MAX_DEFAULT;
    if (n < 16)
        n = 16;
    return (int)n;
}

bool guard_host_is_loopback(const char *host)
{
    if (!host || !*host)
        return false;           /* "" means every interface */
    struct addrinfo hints = {0}, *res = NULL;
    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = SOCK_STREAM;
    hints.ai_flags = AI_PASSIVE;
    if (getaddrinfo(host, NULL, &hints, &res) != 0 || !res)
        return false;
    bool all = true;
    for (struct addrinfo *a = res; a; a = a->ai_next) {
        if (a->ai_family == AF_INET) {
            const struct sockaddr_in *s = (const struct sockaddr_in *)a->ai_addr;
            if ((ntohl(s->sin_addr.s_addr) >> 24) != 127)
                all = false;
        } else if (a->ai_family == AF_INET6) {
            const struct sockaddr_in6 *s = (const struct sockaddr_in6 *)a->ai_addr;
            if (!IN6_IS_ADDR_LOOPBACK(&s->sin6_addr))
                all = false;
        } else {
            all = false;
        }
    }
    freeaddrinfo(res);
    return all;
}

static double now_mono(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

bool guard_admit_try(guard_admit *a)
{
    int n = atomic_fetch_add(a->open, 1);
    if (a->max <= 0 || n < a->max) {
        if (a->refused) {
            log_info("max_connections: accepting again (%lu connection%s refused)", a->refused,
                     a->refused == 1 ? " was" : "s were");
            a->refused = 0;
        }
        return true;
    }
    atomic_fetch_sub(a->open, 1);
    double t = now_mono();
    /* a burst: the first refusal, or the first after a quiet ten seconds */
    if (a->refused == 0 || t - a->burst_logged_at > 10) {
        log_warn("max_connections (%d) reached: refusing new client connections", a->max);
        a->burst_logged_at = t;
    }
    a->refused++;
    return false;
}

void guard_admit_release(guard_admit *a)
{
    atomic_fetch_sub(a->open, 1);
}

struct guard_listener {
    struct evconnlistener *lis;
    struct event *resume;
    unsigned long pauses;
    evconnlistener_cb accept_cb;  /* the owner's, called with its argument */
    void *accept_arg;
};

static void accept_tramp(struct evconnlistener *lis, evutil_socket_t fd, struct sockaddr *sa, int salen, void *arg)
{
    guard_listener *g = arg;
    g->accept_cb(lis, fd, sa, salen, g->accept_arg);
}

static void resume_cb(evutil_socket_t fd, short what, void *arg)
{
    guard_listener *g = arg;
    evconnlistener_enable(g->lis);
}

static void accept_error_cb(struct evconnlistener *lis, void *arg)
{
    guard_listener *g = arg;
    int e = EVUTIL_SOCKET_ERROR();
    if (e == EMFILE || e == ENFILE || e == ENOBUFS || e == ENOMEM) {
        /* the pending connection stays in the backlog; try again shortly,
         * by when some connections will have closed */
        if (g->pauses++ % 100 == 0)
            log_warn("accept: %s: pausing new connections for 100 ms", evutil_socket_error_to_string(e));
        evconnlistener_disable(lis);
        struct timeval tv = {0, 100 * 1000};
        event_add(g->resume, &tv);
        return;
    }
    /* ECONNABORTED and the like concern one connection only */
    log_debug("accept: %s", evutil_socket_error_to_string(e));
}

guard_listener *guard_listener_new(struct event_base *base, struct evconnlistener *lis, evconnlistener_cb cb,
                                   void *arg)
{
    guard_listener *g = calloc(1, sizeof *g);
    if (!g)
        return NULL;
    g->lis = lis;
    g->accept_cb = cb;
    g->accept_arg = arg;
    g->resume = evtimer_new(base, resume_cb, g);
    if (!g->resume) {
        free(g);
        return NULL;
    }
    /* both callbacks get the listener's one argument: make it ours */
    evconnlistener_set_cb(lis, accept_tramp, g);
    evconnlistener_set_error_cb(lis, accept_error_cb);
    return g;
}

void guard_listener_free(guard_listener *g)
{
    if (!g)
        return;
    event_free(g->resume);
    free(g);
}
