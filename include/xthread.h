/* xthread.h — helper threads (key generation, the dump writer) that never
 * take the process's signals: SIGINT and SIGTERM must reach the main
 * thread's sigwait, and a helper started before it blocked them would
 * otherwise be a valid target for the default action (terminate). */
#ifndef MITMLUA_XTHREAD_H
#define MITMLUA_XTHREAD_H

#include <pthread.h>

/* pthread_create with every signal blocked in the new thread. */
int xthread_start(pthread_t *t, void *(*fn)(void *), void *arg);

#endif
