/* main.c — start-up and shutdown: options, the shared context (shared.h),
 * reading flows with -r (rfile.h), the worker threads and client replay.
 * Exit status: 0 success, 1 a runtime failure (bad script, unreadable or
 * damaged file, cannot listen, the filter expression could not be evaluated
 * for a flow, the dump file could not be written), 2 a usage error (bad option or filter),
 * 3 fail_on matched (or could not be evaluated), 4 client_replay_compare found a difference or a
 * failed replay; a script's mitm.exit(code) wins over 3 and 4. */
#include <errno.h>
#include <malloc.h>
#include <pthread.h>
#include <stdatomic.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "creplay.h"
#include "guard.h"
#include "hostmatch.h"
#include "log.h"
#include "opts.h"
#include "rfile.h"
#include "shared.h"
#include "sink.h"
#include "sreplay.h"
#include "worker.h"
#include "tls.h"

static enum log_level level_from(const char *s)
{
    if (!s || !strcmp(s, "info"))
        return LOG_INFO;
    if (!strcmp(s, "error"))
        return LOG_ERROR;
    if (!strcmp(s, "warn"))
        return LOG_WARN;
    return LOG_DEBUG;
}

/* HOST:PORT into ready_file, atomically: a CI job polls for the file and
 * may read it the moment it appears. */
static int write_ready_file(const opts *o, char *err, size_t errsz)
{
    char tmp[4200];
    snprintf(tmp, sizeof tmp, "%s.tmp%ld", o->ready_file, (long)getpid());
    FILE *fp = fopen(tmp, "w");
    bool v6 = strchr(o->listen_host, ':') != NULL;
    if (!fp || fprintf(fp, "%s%s%s:%d\n", v6 ? "[" : "", o->listen_host, v6 ? "]" : "", o->listen_port) < 0 ||
        fclose(fp) != 0 || rename(tmp, o->ready_file) < 0) {
        snprintf(err, errsz, "cannot write ready_file %s: %s", o->ready_file, strerror(errno));
        unlink(tmp);
        return -1;
    }
    return 0;
}

/* Large bodies (a 1 MB response, recorded) are buffered, encoded into a
 * dump record and freed, by two threads, hundreds of times a second.
 * glibc's adaptive limits hand such blocks back to the kernel at once
 * (munmap, or trimming the heap's top) and fault every page in again for
 * the next body: a third of the proxy's CPU for 1 MB responses with -w.
 * Fixed limits keep blocks of up to 16 MiB in the heap and up to 32 MiB
 * of free space at a heap's top for reuse: 1 MB hook + -w went from 0.56
 * to 0.72 of nginx's rate; nothing changes for small flows. */
static void tune_malloc(void)
{
    mallopt(M_MMAP_THRESHOLD, 16 << 20);
    mallopt(M_TRIM_THRESHOLD, 32 << 20);
}

/* --print-env: what a shell (or a CI step) needs to send its tools through
 * the proxy and trust its CA.  eval "$(mitmlua --print-env)". */
static int print_env(const opts *o)
{
    char err[512];
    if (o->listen_port == 0) {
        fprintf(stderr, "mitmlua: --print-env needs a fixed --listen-port (use ready_file with port 0)\n");
        return 2;
    }
    tls_ca *ca = tls_ca_load_or_create(o->confdir, err, sizeof err);
    if (!ca) {
        fprintf(stderr, "mitmlua: %s\n", err);
        return 1;
    }
    char ca_path[4200];
    snprintf(ca_path, sizeof ca_path, "%s/mitmlua-ca-cert.pem", o->confdir);
    tls_ca_free(ca);
    bool v6 = strchr(o->listen_host, ':') != NULL;
    char url[300];
    snprintf(url, sizeof url, "http://%s%s%s:%d", v6 ? "[" : "", o->listen_host, v6 ? "]" : "", o->listen_port);
    static const char *const proxy_vars[] = {"HTTP_PROXY", "HTTPS_PROXY", "http_proxy", "https_proxy"};
    static const char *const ca_vars[] = {"SSL_CERT_FILE", "REQUESTS_CA_BUNDLE", "CURL_CA_BUNDLE",
                                          "NODE_EXTRA_CA_CERTS", "MITMLUA_CA_CERT"};
    for (size_t i = 0; i < sizeof proxy_vars / sizeof *proxy_vars; i++)
        printf("export %s='%s'\n", proxy_vars[i], url);
    for (size_t i = 0; i < sizeof ca_vars / sizeof *ca_vars; i++) {
        printf("export %s='", ca_vars[i]);
        for (const char *c = ca_path; *c; c++)
            if (*c == '\'')
                fputs("'\\''", stdout);
            else
                putchar(*c);
        printf("'\n");
    }
    return 0;
}

/* -n -C: the replay is the whole run; its end stops the process the way
 * a signal does (sigwait in run_server). */
static void replay_finished(void *ud)
{
    (void)ud;
    kill(getpid(), SIGTERM);
}

/* -C beside -S: the replay's end alone does not end the run */
static atomic_bool creplay_done;

static void replay_mark_done(void *ud)
{
    (void)ud;
    atomic_store(&creplay_done, true);
}

/* mitmdump's keepserving addon, for -S: the run ends once every recorded
 * response was served (and -C is done), checked ten times a second; a
 * moment more lets the last answer reach its client. */
static int wait_for_stop(const opts *o, shared *sh, creplay *cr, const sigset_t *set)
{
    int sig = 0;
    if (o->keepserving || !o->nserver_replay || !sh->sreplay) {
        while (sigwait(set, &sig) != 0)
            ;
        return sig;
    }
    for (;;) {
        struct timespec tick = {0, 100 * 1000 * 1000};
        if ((sig = sigtimedwait(set, NULL, &tick)) > 0)
            return sig;
        if ((!cr || atomic_load(&creplay_done)) && sreplay_count(sh->sreplay) == 0) {
            struct timespec grace = {0, 500 * 1000 * 1000};
            sig = sigtimedwait(set, NULL, &grace);
            log_debug("server replay: every recorded response was served");
            return sig > 0 ? sig : 0;
        }
    }
}

/* Seconds the workers get to stop after SIGTERM/SIGINT: the two of their
 * grace period, and some. */
#define STOP_WAIT 5

static int run_server(const opts *o, shared *sh, creplay *cr, bool *stuck)
{
    char err[512];
    int status = 0;
    worker **ws = calloc((size_t)o->workers, sizeof *ws);
    opts *mo = (opts *)o; /* workers after the first bind the port the first got */
    int nstarted = 0;
    if (!ws)
        return 1;
    /* Block the stop signals in every thread; the main thread waits for
     * them with sigwait, so no handler runs inside an event loop. */
    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, SIGINT);
    sigaddset(&set, SIGTERM);
    pthread_sigmask(SIG_BLOCK, &set, NULL);

    for (int i = 0; i < o->workers; i++) {
        ws[i] = worker_new(sh, i, err, sizeof err);
        if (!ws[i])
            goto fail;
        if (i == 0)
            mo->listen_port = worker_port(ws[0]);
    }
    /* client replay runs on the first worker's loop, beside live traffic */
    bool replay_ends_run = !o->server || (!o->keepserving && !o->nserver_replay);
    void (*replay_done)(void *) = replay_ends_run ? replay_finished : o->keepserving ? NULL : replay_mark_done;
    if (cr && creplay_start(cr, ws[0], replay_done, NULL) < 0) {
        snprintf(err, sizeof err, "cannot start client replay");
        goto fail;
    }
    for (int i = 0; i < o->workers; i++) {
        if (worker_start(ws[i]) < 0) {
            snprintf(err, sizeof err, "cannot start worker thread");
            goto fail;
        }
        nstarted++;
    }
    bool v6 = strchr(o->listen_host, ':') != NULL;
    if (o->server && log_get_level() >= LOG_INFO)
        fprintf(stderr, "HTTP(S) proxy listening at %s%s%s:%d.\n", v6 ? "[" : "", o->listen_host, v6 ? "]" : "",
                o->listen_port);
    if (o->server && o->ready_file && write_ready_file(o, err, sizeof err) < 0)
        goto fail;
    int sig = wait_for_stop(o, sh, cr, &set);
    log_debug("signal %d: shutting down", sig);
    goto out;
fail:
    fprintf(stderr, "mitmlua: %s\n", err);
    status = 1;
out:
    if (cr && nstarted > 0)
        creplay_stop(cr);   /* its connections live on worker 0's loop */
    for (int i = 0; i < o->workers; i++)
        worker_stop(ws ? ws[i] : NULL);
    /* a worker stuck in a script (no script_timeout, or a loop the limit
     * cannot see) must not keep the process alive after a signal: it is
     * left behind, and main flushes the outputs and leaves at once */
    for (int i = 0; i < o->workers; i++)
        if (worker_join_free_within(ws[i], STOP_WAIT) < 0) {
            fprintf(stderr, "mitmlua: worker %d did not stop within %d s (a script that never returns?); "
                            "leaving without it\n", i, STOP_WAIT);
            *stuck = true;
            status = 1;
        }
    (void)nstarted;
    free(ws);
    return status;
}

int main(int argc, char **argv)
{
    opts o;
    shared *sh = NULL;
    char err[512];
    int status = 0;
    creplay *cr = NULL;
    bool replay_failed = false;
    bool stuck = false;

    signal(SIGPIPE, SIG_IGN);
    tune_malloc();
    /* No evthread_use_pthreads(): each event loop belongs to one thread,
     * and other threads reach a worker only through worker_call. */
    opts_defaults(&o);
    int rc = opts_parse(&o, argc, argv);
    if (rc != 0) {
        opts_free(&o);
        return rc == 1 ? 0 : rc;
    }
    log_set_level(level_from(o.termlog_verbosity));
    /* mitmdump (its keepserving addon): -r, -C and -S end the run once they
     * are done, unless keepserving (-C and -S: run_server) */
    if (o.rfile && !o.keepserving && !o.nclient_replay && !o.nserver_replay)
        o.server = false;
    if (o.print_env) {
        status = print_env(&o);
        opts_free(&o);
        return status;
    }
    if (o.nignore_hosts || o.nallow_hosts) {
        /* patterns are compiled per worker; check them once here so that a
         * bad one is a usage error before anything starts */
        hostmatch *hm = hostmatch_new(o.nignore_hosts ? o.ignore_hosts : o.allow_hosts,
                                      o.nignore_hosts ? o.nignore_hosts : o.nallow_hosts,
                                      o.nignore_hosts ? "ignore_hosts" : "allow_hosts", err, sizeof err);
        hostmatch *hm2 = hm && o.nignore_hosts && o.nallow_hosts
                             ? hostmatch_new(o.allow_hosts, o.nallow_hosts, "allow_hosts", err, sizeof err)
                             : hm;
        bool ok = hm && hm2;
        if (hm2 != hm)
            hostmatch_free(hm2);
        hostmatch_free(hm);
        if (!ok || (o.mode == MODE_UPSTREAM && strcmp(o.mode_url.scheme, "http") != 0)) {
            fprintf(stderr, "mitmlua: %s\n", ok ? "ignore_hosts/allow_hosts in upstream mode need an http:// upstream proxy" : err);
            opts_free(&o);
            return 2;
        }
    }
    if (o.proxyauth && o.mode == MODE_TRANSPARENT) {
        /* transparent clients cannot send credentials (mitmproxy refuses too) */
        fprintf(stderr, "mitmlua: proxyauth is not supported in transparent mode\n");
        opts_free(&o);
        return 2;
    }
    if (o.ntcp_hosts) {
        /* checked once here, like ignore_hosts, so a bad pattern is a usage error */
        hostmatch *hm = hostmatch_new(o.tcp_hosts, o.ntcp_hosts, "tcp_hosts", err, sizeof err);
        hostmatch_free(hm);
        if (!hm || o.mode == MODE_UPSTREAM || o.mode == MODE_REVERSE) {
            fprintf(stderr, "mitmlua: %s\n", hm ? "tcp_hosts needs regular, socks5 or transparent mode" : err);
            opts_free(&o);
            return 2;
        }
    }
    /* raises the descriptor limit too, so call it whatever the option says */
    int max_conns = guard_default_max_connections();
    if (o.max_connections == 0)
        o.max_connections = max_conns;
    if (o.server && !o.proxyauth && !guard_host_is_loopback(o.listen_host))
        fprintf(stderr, "mitmlua: warning: listening on %s, which other machines may reach, without proxyauth: "
                        "anyone who can connect can use this proxy (--set proxyauth=USER:PASS)\n",
                o.listen_host && *o.listen_host ? o.listen_host : "all interfaces");
    sh = shared_new(&o, &status, err, sizeof err);
    if (!sh) {
        fprintf(stderr, "mitmlua: %s\n", err);
        opts_free(&o);
        return status;
    }
    status = 0;
    sh->stop_on_exit = o.server || o.nclient_replay;
    if (o.nclient_replay) {
        cr = creplay_new(sh, err, sizeof err);
        if (!cr) {
            fprintf(stderr, "mitmlua: %s\n", err);
            status = 1;
            goto out;
        }
    }
    if (o.rfile)
        status = rfile_run(sh);
    if ((o.server || cr) && status == 0 && atomic_load(&sh->exit_code) < 0) {
        status = run_server(&o, sh, cr, &stuck);
        if (status == 0 && o.server && log_get_level() >= LOG_INFO)
            sink_summary(sh->sink, stderr);
        if (cr && (o.client_replay_compare || log_get_level() >= LOG_INFO))
            replay_failed = creplay_report(cr, stderr);
    }

out:
    if (stuck) {
        /* a worker still runs: flush what it shares, free nothing it uses */
        if (sink_close(sh->sink) < 0 && status == 0)
            status = 1;
        fflush(NULL);
        _exit(status ? status : 1);
    }
    creplay_free(cr);
    int exit_code = atomic_load(&sh->exit_code);
    bool failed_on = sink_failed_on(sh->sink);
    bool filter_errors = sink_filter_errors(sh->sink);
    if (shared_free(sh) < 0)   /* flushes the dump: its failure fails the run */
        status = 1;
    /* a run that worked reports the CI verdict: mitm.exit(), then fail_on */
    if (status == 0 && exit_code >= 0)
        status = exit_code;
    else if (status == 0 && filter_errors)
        status = 1;
    else if (status == 0 && failed_on)
        status = 3;
    else if (status == 0 && replay_failed)
        status = 4;
    opts_free(&o);
    return status;
}
