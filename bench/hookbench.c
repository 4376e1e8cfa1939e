/* hookbench.c — Lua hook calls per second with and without script_timeout
 * (the JIT is off when a limit is set), on one flow, in one thread; then
 * flows per second the way the proxy runs them: a new flow each time, its
 * request and response hooks, then the flow forgotten and freed:
 *   make build/hookbench && build/hookbench bench/hooks/heavy.lua 3 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "flow.h"
#include "script.h"

static double now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static script_env *load(const char *path)
{
    char err[256];
    const char *paths[] = {path};
    script_env *e = script_env_new(paths, 1, err, sizeof err);
    if (!e) {
        fprintf(stderr, "%s\n", err);
        exit(1);
    }
    return e;
}

/* A GET with a 1 KB 200 response, as the bench's load sends. */
static flow *new_flow(void)
{
    flow *f = flow_new();
    f->request = flow_request_new();
    flow_strset(&f->request->method, "GET");
    flow_strset(&f->request->path, "/index.html?q=1");
    flow_strset(&f->request->host, "example.com");
    flow_strset(&f->request->scheme, "http");
    f->request->port = 80;
    hdrs_add(&f->request->headers, "Host", 4, "example.com", 11);
    hdrs_add(&f->request->headers, "User-Agent", 10, "bench", 5);
    f->response = flow_response_new();
    f->response->status_code = 200;
    hdrs_add(&f->response->headers, "Content-Type", 12, "text/plain", 10);
    hdrs_add(&f->response->headers, "Content-Length", 14, "1024", 4);
    return f;
}

static double run(const char *path, int timeout_ms, double secs)
{
    script_env *e = load(path);
    script_env_set_timeout(e, timeout_ms);
    flow *f = new_flow();
    long n = 0;
    double t0 = now(), t;
    do {
        for (int i = 0; i < 1000; i++)
            script_env_run(e, SCRIPT_HOOK_REQUEST, f);
        n += 1000;
        t = now();
    } while (t - t0 < secs);
    script_env_forget(e, f);
    flow_free(f);
    script_env_free(e);
    return (double)n / (t - t0);
}

/* limit > 0: exactly that many flows (for callgrind), else secs of them */
__attribute__((noinline)) static double run_flows(const char *path, double secs, long limit)
{
    script_env *e = load(path);
    long n = 0;
    double t0 = now(), t;
    do {
        for (int i = 0; i < (limit > 0 ? limit : 1000); i++) {
            flow *f = new_flow();
            script_env_run(e, SCRIPT_HOOK_REQUEST, f);
            script_env_run(e, SCRIPT_HOOK_RESPONSE, f);
            script_env_forget(e, f);
            flow_free(f);
        }
        n += limit > 0 ? limit : 1000;
        t = now();
    } while (limit <= 0 && t - t0 < secs);
    script_env_free(e);
    return (double)n / (t - t0);
}

int main(int argc, char **argv)
{
    if (argc < 2) {
        fprintf(stderr, "usage: hookbench SCRIPT.lua [seconds]\n");
        return 2;
    }
    double secs = argc > 2 ? atof(argv[2]) : 2.0;
    const char *fl = getenv("HOOKBENCH_FLOWS"); /* only the flows part, that many: callgrind's Ir per flow */
    if (fl) {
        long n = atol(fl);
        double t = run_flows(argv[1], 0, n > 0 ? n : 1);
        printf("%s: %ld flows in %.3f s\n", argv[1], n > 0 ? n : 1, (double)(n > 0 ? n : 1) / t);
        return 0;
    }
    double off = run(argv[1], 0, secs);
    double on = run(argv[1], 1000, secs);
    printf("%s: %.0f hook calls/s without script_timeout, %.0f with (JIT off): %.0f%% of the speed\n", argv[1], off,
           on, 100.0 * on / off);
    double flows = run_flows(argv[1], secs, 0);
    printf("%s: %.0f flows/s with a new flow each time (request and response hooks): %.2f us a flow\n", argv[1],
           flows, 1e6 / flows);
    return 0;
}
