/* hookbench.c — Lua hook calls per second with and without script_timeout
 * (the JIT is off when a limit is set), on one flow, in one thread:
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

static double run(const char *path, int timeout_ms, double secs)
{
    char err[256];
    const char *paths[] = {path};
    script_env *e = script_env_new(paths, 1, err, sizeof err);
    if (!e) {
        fprintf(stderr, "%s\n", err);
        exit(1);
    }
    script_env_set_timeout(e, timeout_ms);
    flow *f = flow_new();
    f->request = flow_request_new();
    flow_strset(&f->request->method, "GET");
    flow_strset(&f->request->path, "/index.html?q=1");
    flow_strset(&f->request->host, "example.com");
    flow_strset(&f->request->scheme, "http");
    f->request->port = 80;
    hdrs_add(&f->request->headers, "Host", 4, "example.com", 11);
    hdrs_add(&f->request->headers, "User-Agent", 10, "bench", 5);
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

int main(int argc, char **argv)
{
    if (argc < 2) {
        fprintf(stderr, "usage: hookbench SCRIPT.lua [seconds]\n");
        return 2;
    }
    double secs = argc > 2 ? atof(argv[2]) : 2.0;
    double off = run(argv[1], 0, secs);
    double on = run(argv[1], 1000, secs);
    printf("%s: %.0f hook calls/s without script_timeout, %.0f with (JIT off): %.0f%% of the speed\n", argv[1], off,
           on, 100.0 * on / off);
    return 0;
}
