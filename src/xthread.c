/* xthread.c — see xthread.h. */
#include "xthread.h"

#include <signal.h>

int xthread_start(pthread_t *t, void *(*fn)(void *), void *arg)
{
    sigset_t all, old;
    sigfillset(&all);
    pthread_sigmask(SIG_SETMASK, &all, &old);
    int rc = pthread_create(t, NULL, fn, arg); /* inherits the mask */
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    return rc;
}
