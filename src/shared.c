/* shared.c — building and tearing down what the workers share (shared.h). */
#include "shared.h"

#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

#include "addons.h"
#include "log.h"
#include "proxyauth.h"
#include "sink.h"
#include "sreplay.h"
#include "tls.h"
#include "tlsup.h"
#include "tlsopts.h"

static int load_sreplay(shared *sh, char *err, size_t errsz)
{
    const opts *o = sh->o;
    /* every file is read before the first request, as mitmdump does */
    if (!(sh->sreplay = sreplay_new(o, err, errsz)))
        return -1;
    for (size_t i = 0; i < o->nserver_replay; i++)
        if (sreplay_load_file(sh->sreplay, o->server_replay[i], err, errsz) < 0)
            return -1;
    log_info("server replay: %zu recorded responses loaded", sreplay_count(sh->sreplay));
    return 0;
}

shared *shared_new(const opts *o, int *status, char *err, size_t errsz)
{
    shared *sh = calloc(1, sizeof *sh);
    *status = 1;
    if (!sh) {
        snprintf(err, errsz, "out of memory");
        return NULL;
    }
    sh->o = o;
    atomic_init(&sh->exit_code, -1);
    pthread_mutex_init(&sh->tls_lock, NULL);
    err[0] = '\0';
    if (o->proxyauth && !(sh->auth = proxyauth_new(o->proxyauth, err, errsz))) {
        *status = 2;
        goto fail;
    }
    sh->addons = addons_new(o, err, errsz);
    if (!sh->addons && err[0]) {
        *status = 2;
        goto fail;
    }
    if (!(sh->sink = sink_new(o, status, err, errsz)))
        goto fail;
    *status = 1;
    if (o->server || o->nclient_replay) {
        /* before any thread starts: tls_ca_open forks.  The TLS contexts
         * come with the first TLS connection; a CA or trusted CA file that
         * cannot be used is still an error now */
        tls_set_leaf_key(strcmp(o->key_type, "rsa") == 0 ? TLS_KEY_RSA : TLS_KEY_ECDSA, o->key_size);
        tlsopts_warn(o);
        sh->ca = tls_ca_open(o->confdir, o->ssl_insecure ? NULL : o->ssl_verify_upstream_trusted_ca, err, errsz);
        if (!sh->ca)
            goto fail;
    }
    if (o->nserver_replay && load_sreplay(sh, err, errsz) < 0)
        goto fail;
    if (sink_open(sh->sink, o, err, errsz) < 0)
        goto fail;
    return sh;
fail:
    shared_free(sh);
    return NULL;
}

int shared_free(shared *sh)
{
    if (!sh)
        return 0;
    int rc = sink_close(sh->sink);
    pthread_mutex_destroy(&sh->tls_lock);
    SSL_CTX_free(atomic_load(&sh->server_ctx)); /* NULL is fine */
    SSL_CTX_free(atomic_load(&sh->client_ctx));
    if (sh->ca)
        tls_ca_free(sh->ca);
    sreplay_free(sh->sreplay);
    addons_free(sh->addons);
    proxyauth_free(sh->auth);
    free(sh);
    return rc;
}

/* Upstream sessions kept for resumption: one per server a run talks to,
 * for runs that reach up to a few thousand servers; a session is a few
 * KiB (it holds the server's certificate chain). */
#define SHARED_TLS_SESSIONS 2048

static SSL_CTX *make_ctx(shared *sh, bool server)
{
    _Atomic(SSL_CTX *) *slot = server ? &sh->server_ctx : &sh->client_ctx;
    SSL_CTX *c = atomic_load_explicit(slot, memory_order_acquire);
    if (c)
        return c;
    pthread_mutex_lock(&sh->tls_lock);
    if (!(c = atomic_load_explicit(slot, memory_order_relaxed))) {
        char err[512];
        tlsup_opts co = {.insecure = sh->o->ssl_insecure,
                         .extra_ca_file = sh->o->ssl_verify_upstream_trusted_ca,
                         .session_cache_max = SHARED_TLS_SESSIONS};
        c = server ? tls_server_ctx_new(sh->ca, err, sizeof err) : tlsup_ctx_new(&co, err, sizeof err);
        if (c && (server ? tlsopts_apply_server(c, sh->o, err, sizeof err)
                         : tlsopts_apply_client(c, sh->o, err, sizeof err)) < 0) {
            SSL_CTX_free(c);
            c = NULL;
        }
        if (c)
            atomic_store_explicit(slot, c, memory_order_release);
        else
            log_error("%s", err);
    }
    pthread_mutex_unlock(&sh->tls_lock);
    return c;
}

SSL_CTX *shared_server_ctx(shared *sh) { return make_ctx(sh, true); }
SSL_CTX *shared_client_ctx(shared *sh) { return make_ctx(sh, false); }

void shared_request_exit(void *ud, int code)
{
    shared *sh = ud;
    int none = -1;
    atomic_compare_exchange_strong(&sh->exit_code, &none, code);
    if (sh->stop_on_exit)
        kill(getpid(), SIGTERM);
}
