/* guard.h — process-level protections around the listener: how many client
 * connections may be open at once (from RLIMIT_NOFILE), admission of each
 * accepted socket against that bound, a listener that pauses instead of
 * spinning when accept() runs out of file descriptors, and whether a listen
 * address is reachable from other machines. */
#ifndef MITMLUA_GUARD_H
#define MITMLUA_GUARD_H

#include <stdatomic.h>
#include <stdbool.h>
#include <event2/event.h>
#include <event2/listener.h>

/* Raise the soft RLIMIT_NOFILE to the hard limit and derive a connection
 * bound from it: each client connection may hold two descriptors (client and
 * upstream), and some are kept in reserve for files, DNS and the listener.
 * At most 10000, at least 16. */
int guard_default_max_connections(void);

/* true when every address `host` resolves to is a loopback address. */
bool guard_host_is_loopback(const char *host);

/* Admission: one per worker, counting into a counter all workers share. */
typedef struct guard_admit {
    atomic_int *open;         /* shared: client connections open now */
    int max;
    unsigned long refused;    /* refused in the current burst */
    double burst_logged_at;   /* one log line per burst */
} guard_admit;

/* May one more client connection be kept?  When not, the caller closes the
 * socket at once; one log line is printed per burst of refusals. */
bool guard_admit_try(guard_admit *a);
void guard_admit_release(guard_admit *a);

/* Take over `lis`'s callbacks (accepted sockets still go to cb(arg)) and
 * add an error callback: when accept() fails for lack of file
 * descriptors or memory, stop accepting for a moment (the pending
 * connections wait in the kernel's backlog) instead of looping on the error,
 * then resume.  Returns an object freed with guard_listener_free (before the
 * listener), or NULL. */
typedef struct guard_listener guard_listener;
guard_listener *guard_listener_new(struct event_base *base, struct evconnlistener *lis, evconnlistener_cb cb,
                                   void *arg);
void guard_listener_free(guard_listener *g);

#endif
