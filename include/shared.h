/* shared.h — what every worker of a run shares: the options, the CA and the
 * TLS contexts, the C addons, server replay's recordings, proxy
 * authentication and the sink.  main.c builds it with shared_new and tears
 * it down with shared_free; in between it is read-only, except the parts
 * that are thread-safe on purpose (the CA's certificate cache, the lazily
 * made TLS contexts, the sink, the counters below). */
#ifndef MITMLUA_SHARED_H
#define MITMLUA_SHARED_H

#include <pthread.h>
#include <stdatomic.h>
#include <openssl/ssl.h>

#include "opts.h"

struct tls_ca;
struct sink;
struct addons;
struct proxyauth;
struct sreplay;

typedef struct shared {
    const opts *o;
    struct tls_ca *ca;            /* NULL when neither serving nor replaying */
    /* The TLS contexts are made on first use (shared_server_ctx,
     * shared_client_ctx): OpenSSL 3 spends about 4 MiB and a few ms on
     * them, which a proxy that never sees TLS need not pay. */
    _Atomic(SSL_CTX *) server_ctx;  /* client-facing: minted certificates */
    _Atomic(SSL_CTX *) client_ctx;  /* upstream-facing: verification */
    pthread_mutex_t tls_lock;       /* makes them, once */
    struct sink *sink;              /* the consumers of finished flows */
    struct addons *addons;          /* map_remote, modify_headers, ...; NULL when none is set */
    struct proxyauth *auth;         /* --proxyauth, or NULL */
    struct sreplay *sreplay;        /* -S: recorded responses (locks itself), or NULL */
    atomic_int n_clients;           /* client connections open, all workers */
    atomic_int exit_code;           /* from mitm.exit(); -1 when none */
    bool stop_on_exit;              /* mitm.exit() raises SIGTERM (a server run) */
} shared;

/* Build everything the options ask for.  NULL with a one-line message in
 * err and the exit status in *status (2: a usage error such as a bad
 * filter, 1: a file or the CA cannot be used). */
shared *shared_new(const opts *o, int *status, char *err, size_t errsz);
/* Close the sink (flushing the dump) and free everything: 0, or -1 when an
 * output could not be completed (already reported on stderr). */
int shared_free(shared *sh);

/* The TLS contexts, made by the first caller (any worker); NULL when that
 * failed (logged; the caller fails its connection). */
SSL_CTX *shared_server_ctx(shared *sh);
SSL_CTX *shared_client_ctx(shared *sh);

/* mitm.exit(code) from a script: remember the first code; in a server run
 * also stop the run the way SIGTERM does (a clean shutdown that flushes
 * the dump).  `ud` is the shared context. */
void shared_request_exit(void *ud, int code);

#endif
