/* main.c — start-up and shutdown: options, the CA, the consumers (printer,
 * dump writer, filter), reading flows with -r, and the worker threads.
 * Exit status: 0 success, 1 a runtime failure (bad script, unreadable or
 * damaged file, cannot listen, the filter expression could not be evaluated
 * for a flow, the dump file could not be written), 2 a usage error (bad option or filter),
 * 3 fail_on matched (or could not be evaluated), 4 client_replay_compare found a difference or a
 * failed replay; a script's mitm.exit(code) wins over 3 and 4. */
#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <openssl/ssl.h>

#include "addons.h"
#include "creplay.h"
#include "dump.h"
#include "filter.h"
#include "flowread.h"
#include "guard.h"
#include "har.h"
#include "hostmatch.h"
#include "log.h"
#include "opts.h"
#include "printer.h"
#include "proxy.h"
#include "proxyauth.h"
#include "script.h"
#include "sreplay.h"
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

/* mitm.exit() while reading a file: remember the status; the loop stops. */
static void read_exit(void *ud, int code)
{
    proxy_shared *sh = ud;
    int none = -1;
    atomic_compare_exchange_strong(&sh->exit_code, &none, code);
}

/* Run hooks over flows from a file, as if they had just happened (mitmdump
 * does the same), then hand them to the printer and the dump writer. */
static int read_flows(const opts *o, proxy_shared *sh)
{
    char err[512];
    script_env *scripts = NULL;
    if (o->nscripts) {
        scripts = script_env_new((const char *const *)o->scripts, o->nscripts, err, sizeof err);
        if (!scripts) {
            fprintf(stderr, "mitmlua: %s\n", err);
            return 1;
        }
        script_env_set_exit(scripts, read_exit, sh);
    }
    flow_reader *r = flow_reader_open(o->rfile, err, sizeof err);
    if (!r) {
        fprintf(stderr, "mitmlua: %s\n", err);
        script_env_free(scripts);
        return 1;
    }
    flow_limits lim = opts_flow_limits(o);
    flow_reader_set_limits(r, &lim);
    int status = 0;
    while (atomic_load(&sh->exit_code) < 0) {
        flow *f = NULL;
        int rc = flow_reader_next(r, &f, err, sizeof err);
        if (rc == 0)
            break;
        if (rc < 0) {
            /* readers name the file themselves; do not say it twice */
            if (strncmp(err, o->rfile, strlen(o->rfile)) == 0)
                fprintf(stderr, "mitmlua: %s\n", err);
            else
                fprintf(stderr, "mitmlua: %s: %s\n", o->rfile, err);
            status = 1;
            break;
        }
        if (scripts) {
            static const enum script_hook seq[] = {SCRIPT_HOOK_REQUESTHEADERS, SCRIPT_HOOK_REQUEST,
                                                   SCRIPT_HOOK_RESPONSEHEADERS, SCRIPT_HOOK_RESPONSE};
            for (size_t i = 0; i < sizeof seq / sizeof seq[0] && !f->killed; i++) {
                if (i >= 2 && !f->response)
                    break;
                if (script_env_has_hook(scripts, seq[i]))
                    script_env_run(scripts, seq[i], f);
            }
            if (f->error && script_env_has_hook(scripts, SCRIPT_HOOK_ERROR))
                script_env_run(scripts, SCRIPT_HOOK_ERROR, f);
            script_env_forget(scripts, f);
        }
        if (!f->killed)
            proxy_flow_finished(sh, f);
        flow_free(f);
    }
    flow_reader_close(r);
    script_env_free(scripts);
    return status;
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

static void print_summary(const proxy_shared *sh)
{
    char in[32], out[32];
    printer_pretty_size((size_t)atomic_load(&sh->bytes_requests), in, sizeof in);
    printer_pretty_size((size_t)atomic_load(&sh->bytes_responses), out, sizeof out);
    unsigned long n = atomic_load(&sh->n_flows), e = atomic_load(&sh->n_errors);
    fprintf(stderr, "mitmlua: %lu flow%s, %lu error%s, %s of request bodies, %s of response bodies",
            n, n == 1 ? "" : "s", e, e == 1 ? "" : "s", in, out);
    if (sh->fail_on)
        fprintf(stderr, ", %lu matched fail_on", atomic_load(&sh->n_failed_on));
    fputs(".\n", stderr);
}

/* -n -C: the replay is the whole run; its end stops the process the way
 * a signal does (sigwait in run_server). */
static void replay_finished(void *ud)
{
    (void)ud;
    kill(getpid(), SIGTERM);
}

static int run_server(const opts *o, proxy_shared *sh, creplay *cr)
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
    if (cr && creplay_start(cr, ws[0], o->server ? NULL : replay_finished, NULL) < 0) {
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
    int sig = 0;
    while (sigwait(&set, &sig) != 0)
        ;
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
    for (int i = 0; i < o->workers; i++)
        worker_join_free(ws[i]);
    (void)nstarted;
    free(ws);
    return status;
}

int main(int argc, char **argv)
{
    opts o;
    proxy_shared sh = {0};
    pthread_mutex_init(&sh.har_lock, NULL);
    pthread_mutex_init(&sh.tls_lock, NULL);
    char err[512];
    int status = 0;
    creplay *cr = NULL;
    bool replay_failed = false;

    signal(SIGPIPE, SIG_IGN);
    /* No evthread_use_pthreads(): each event loop belongs to one thread,
     * and other threads reach a worker only through worker_call. */
    opts_defaults(&o);
    int rc = opts_parse(&o, argc, argv);
    if (rc != 0) {
        opts_free(&o);
        return rc == 1 ? 0 : rc;
    }
    log_set_level(level_from(o.termlog_verbosity));
    sh.o = &o;
    atomic_init(&sh.exit_code, -1);
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
    if (o.proxyauth) {
        sh.auth = proxyauth_new(o.proxyauth, err, sizeof err);
        if (!sh.auth) {
            fprintf(stderr, "mitmlua: %s\n", err);
            opts_free(&o);
            return 2;
        }
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
    if (o.fail_on) {
        sh.fail_on = filter_compile(o.fail_on, err, sizeof err);
        if (!sh.fail_on) {
            fprintf(stderr, "mitmlua: invalid fail_on expression: %s\n", err);
            opts_free(&o);
            return 2;
        }
    }

    sh.addons = addons_new(&o, err, sizeof err);
    if (!sh.addons && err[0]) {
        fprintf(stderr, "mitmlua: %s\n", err);
        filter_free(sh.fail_on);
        opts_free(&o);
        return 2;
    }

    if (o.filter_expr) {
        sh.filter = filter_compile(o.filter_expr, err, sizeof err);
        if (!sh.filter) {
            fprintf(stderr, "mitmlua: invalid filter expression: %s\n", err);
            addons_free(sh.addons);
            filter_free(sh.fail_on);
            opts_free(&o);
            return 2;
        }
    }
    if (o.server || o.nclient_replay) {
        /* before any thread starts: tls_ca_open forks.  The TLS contexts
         * come with the first TLS connection (proxy.h); a CA or trusted CA
         * file that cannot be used is still an error now */
        sh.ca = tls_ca_open(o.confdir, o.ssl_insecure ? NULL : o.ssl_verify_upstream_trusted_ca, err, sizeof err);
        if (!sh.ca) {
            fprintf(stderr, "mitmlua: %s\n", err);
            status = 1;
            goto out;
        }
    }
    bool dump_to_stdout = o.save_stream_file && strcmp(o.save_stream_file, "-") == 0;
    if (o.flow_detail > 0) {
        sh.printer = printer_new(dump_to_stdout ? stderr : stdout, o.flow_detail, o.showhost);
        if (sh.printer)
            printer_set_jsonl(sh.printer, strcmp(o.console_format, "jsonl") == 0);
    }
    if (o.save_stream_file) {
        sh.dump = dump_writer_open(o.save_stream_file, err, sizeof err);
        if (!sh.dump) {
            fprintf(stderr, "mitmlua: %s\n", err);
            status = 1;
            goto out;
        }
    }
    if (o.hardump) {
        sh.har = har_writer_open(o.hardump, err, sizeof err);
        if (!sh.har) {
            fprintf(stderr, "mitmlua: hardump: %s\n", err);
            status = 1;
            goto out;
        }
    }
    if (o.nserver_replay) {
        /* every file is read before the first request, as mitmdump does */
        sh.sreplay = sreplay_new(&o, err, sizeof err);
        for (size_t i = 0; sh.sreplay && i < o.nserver_replay; i++)
            if (sreplay_load_file(sh.sreplay, o.server_replay[i], err, sizeof err) < 0) {
                sreplay_free(sh.sreplay);
                sh.sreplay = NULL;
            }
        if (!sh.sreplay) {
            fprintf(stderr, "mitmlua: %s\n", err);
            status = 1;
            goto out;
        }
        log_info("server replay: %zu recorded responses loaded", sreplay_count(sh.sreplay));
    }
    if (o.nclient_replay) {
        cr = creplay_new(&sh, err, sizeof err);
        if (!cr) {
            fprintf(stderr, "mitmlua: %s\n", err);
            status = 1;
            goto out;
        }
    }
    if (o.rfile)
        status = read_flows(&o, &sh);
    if ((o.server || cr) && status == 0 && atomic_load(&sh.exit_code) < 0) {
        status = run_server(&o, &sh, cr);
        if (status == 0 && o.server && log_get_level() >= LOG_INFO)
            print_summary(&sh);
        if (cr && (o.client_replay_compare || log_get_level() >= LOG_INFO))
            replay_failed = creplay_report(cr, stderr);
    }

out:
    if (sh.dump && dump_writer_close(sh.dump, err, sizeof err) < 0) {
        fprintf(stderr, "mitmlua: %s\n", err);
        status = 1;
    }
    if (sh.har && har_writer_close(sh.har, err, sizeof err) < 0) {
        fprintf(stderr, "mitmlua: hardump: %s\n", err);
        status = 1;
    }
    pthread_mutex_destroy(&sh.har_lock);
    pthread_mutex_destroy(&sh.tls_lock);
    SSL_CTX_free(atomic_load(&sh.server_ctx));   /* NULL is fine */
    SSL_CTX_free(atomic_load(&sh.client_ctx));
    if (sh.ca)
        tls_ca_free(sh.ca);
    creplay_free(cr);
    filter_free(sh.filter);
    sreplay_free(sh.sreplay);
    /* a run that worked reports the CI verdict: mitm.exit(), then fail_on */
    if (status == 0 && atomic_load(&sh.exit_code) >= 0)
        status = atomic_load(&sh.exit_code);
    else if (status == 0 && atomic_load(&sh.n_filter_errors) > 0)
        status = 1;
    else if (status == 0 && atomic_load(&sh.n_failed_on) > 0)
        status = 3;
    else if (status == 0 && replay_failed)
        status = 4;
    filter_free(sh.fail_on);
    addons_free(sh.addons);
    proxyauth_free(sh.auth);
    printer_free(sh.printer);
    opts_free(&o);
    return status;
}
