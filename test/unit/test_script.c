/* Unit tests for the Lua layer: every accessor on hand-built flows, mocks,
 * kill, metadata, script order, errors with file and line, flows kept past
 * their life, header injection refused. */
#include <time.h>

#include "encoding.h"
#include "script.h"
#include "t.h"

#define S(name) "test/unit/scripts/" name

static flow *make_flow(void)
{
    flow *f = flow_new();
    f->request = flow_request_new();
    flow_request *r = f->request;
    flow_strset(&r->method, "POST");
    flow_strset(&r->scheme, "https");
    flow_strset(&r->host, "example.com");
    r->port = 443;
    flow_strset(&r->path, "/a?b=1");
    flow_strset(&r->http_version, "HTTP/1.1");
    hdrs_add(&r->headers, "Host", 4, "example.com", 11);
    hdrs_add(&r->headers, "Content-Type", 12, "text/plain", 10);
    hdrs_add(&r->headers, "X-Multi", 7, "1", 1);
    hdrs_add(&r->headers, "x-multi", 7, "2", 1);
    hdrs_add(&r->headers, "X-Gone", 6, "bye", 3);
    hdrs_add(&r->headers, "Content-Encoding", 16, "gzip", 4);
    char err[128];
    encoding_encode("gzip", "original body", 13, &r->content, err, sizeof err);
    return f;
}

static script_env *env_of(const char *const *paths, size_t n)
{
    char err[512];
    script_env *e = script_env_new(paths, n, err, sizeof err);
    if (!e)
        fprintf(stderr, "  script_env_new: %s\n", err);
    return e;
}

static void accessors(void)
{
    const char *p[] = {S("basic.lua"), S("second.lua")};
    script_env *e = env_of(p, 2);
    T_CHECK(e != NULL);
    if (!e)
        return;
    T_CHECK(script_env_has_hook(e, SCRIPT_HOOK_REQUEST));
    T_CHECK(!script_env_has_hook(e, SCRIPT_HOOK_ERROR)); /* _G.error is not a hook */
    flow *f = make_flow();
    script_env_run(e, SCRIPT_HOOK_REQUEST, f);
    flow_request *r = f->request;
    T_STREQ(hdrs_get(&r->headers, "x-added", NULL), "yes");
    T_CHECK(hdrs_get(&r->headers, "x-gone", NULL) == NULL);
    T_STREQ(hdrs_get(&r->headers, "x-second-saw", NULL), "yes"); /* order kept */
    T_CHECK(hdrs_find(&r->headers, "x-multi", 2) >= 0);
    /* the body was re-encoded with gzip and Content-Length follows it */
    bytes dec = {0};
    char err[128];
    T_CHECK(encoding_decode("gzip", r->content.p, r->content.len, &dec, err, sizeof err) == 0);
    T_CHECK(dec.len == 12 && memcmp(dec.p, "changed body", 12) == 0);
    bytes_free(&dec);
    size_t cl;
    const char *clv = hdrs_get(&r->headers, "content-length", &cl);
    T_CHECK(clv && (size_t)atoi(clv) == r->content.len);
    T_STREQ(f->metadata, "{\"n\":3,\"seen\":\"request\"}");
    T_STREQ(f->comment, "hello");
    T_STREQ(f->marked, ":default:");

    f->response = flow_response_new();
    f->response->status_code = 200;
    script_env_run(e, SCRIPT_HOOK_RESPONSE, f);
    T_CHECK(f->response->status_code == 201);
    T_CHECK(f->response->content.len == 3);
    T_STREQ(hdrs_get(&f->response->headers, "x-resp", NULL), "1");
    script_env_forget(e, f);
    flow_free(f);
    script_env_free(e);
}

static void mock_and_kill(void)
{
    const char *p[] = {S("mock.lua")};
    script_env *e = env_of(p, 1);
    T_CHECK(e != NULL);
    if (!e)
        return;
    flow *f = make_flow();
    flow_strset(&f->request->path, "/mock");
    script_env_run(e, SCRIPT_HOOK_REQUEST, f);
    T_CHECK(f->response && f->response->status_code == 418);
    T_CHECK(f->response && f->response->content.len == 6);
    T_STREQ(f->response ? f->response->reason : NULL, "I'm a teapot");
    script_env_forget(e, f);
    flow_free(f);
    f = make_flow();
    flow_strset(&f->request->path, "/kill");
    script_env_run(e, SCRIPT_HOOK_REQUEST, f);
    T_CHECK(f->killed);
    T_CHECK(f->response == NULL);
    script_env_forget(e, f);
    flow_free(f);
    script_env_free(e);
}

static void errors_name_file_and_line(void)
{
    char err[512];
    const char *bad[] = {S("syntax.lua")};
    T_CHECK(script_env_new(bad, 1, err, sizeof err) == NULL);
    T_CHECK(strstr(err, "syntax.lua:2:") != NULL);
    const char *missing[] = {S("no-such-file.lua")};
    T_CHECK(script_env_new(missing, 1, err, sizeof err) == NULL);
    T_CHECK(strstr(err, "no-such-file.lua") != NULL);
    /* a hook that raises: logged (see stderr), and the flow goes on */
    const char *p[] = {S("raises.lua"), S("second.lua")};
    script_env *e = env_of(p, 2);
    T_CHECK(e != NULL);
    if (!e)
        return;
    flow *f = make_flow();
    T_CHECK(script_env_run(e, SCRIPT_HOOK_REQUEST, f) == 0);
    T_STREQ(hdrs_get(&f->request->headers, "x-before", NULL), "1");
    T_STREQ(hdrs_get(&f->request->headers, "x-second-saw", NULL), "nothing"); /* next script still ran */
    script_env_forget(e, f);
    flow_free(f);
    script_env_free(e);
}

static void kept_flow_is_inert(void)
{
    const char *p[] = {S("keep.lua")};
    script_env *e = env_of(p, 1);
    T_CHECK(e != NULL);
    if (!e)
        return;
    flow *a = make_flow();
    script_env_run(e, SCRIPT_HOOK_REQUEST, a);
    script_env_forget(e, a);
    flow_free(a); /* the script still holds it in a global */
    flow *b = make_flow();
    script_env_run(e, SCRIPT_HOOK_REQUEST, b);
    const char *v = hdrs_get(&b->request->headers, "x-kept", NULL);
    T_CHECK(v && strstr(v, "flow is gone") != NULL);
    script_env_forget(e, b);
    flow_free(b);
    script_env_free(e);
}

static void objects_and_families(void)
{
    const char *p[] = {S("family.lua")};
    script_env *e = env_of(p, 1);
    T_CHECK(e != NULL);
    if (!e)
        return;
    flow *a = make_flow(), *b = make_flow();
    script_env_run(e, SCRIPT_HOOK_REQUEST, a);
    T_STREQ(hdrs_get(&a->request->headers, "x-same", NULL), "yes");
    a->response = flow_response_new();
    a->response->status_code = 200;
    script_env_run(e, SCRIPT_HOOK_RESPONSE, a);
    b->response = flow_response_new();
    b->response->status_code = 202;
    hdrs_add(&b->response->headers, "X-From-B", 8, "1", 1);
    script_env_run(e, SCRIPT_HOOK_RESPONSE, b);
    /* b's response object stayed b's: a kept the copy's status */
    T_STREQ(hdrs_get(&b->request->headers, "x-mid", NULL), "202/299");
    T_CHECK(b->response->status_code == 204);
    T_STREQ(hdrs_get(&b->response->headers, "x-made", NULL), "1");
    T_STREQ(hdrs_get(&b->response->headers, "x-after-replace", NULL), "1");
    T_CHECK(hdrs_get(&b->response->headers, "x-before", NULL) == NULL);
    /* a adopted the made response; its early header object still writes it */
    T_CHECK(a->response->status_code == 203);
    T_STREQ(hdrs_get(&a->response->headers, "x-before", NULL), "1");
    T_STREQ(hdrs_get(&a->response->headers, "x-after-adopt", NULL), "1");
    T_STREQ(hdrs_get(&a->response->headers, "x-read-again", NULL), "same");
    script_env_forget(e, a);
    flow_free(a);
    script_env_forget(e, b);
    flow_free(b);
    script_env_free(e);
}

static void injection_refused_and_filter(void)
{
    const char *p[] = {S("smuggle.lua"), S("filter.lua")};
    script_env *e = env_of(p, 2);
    T_CHECK(e != NULL);
    if (!e)
        return;
    flow *f = make_flow();
    script_env_run(e, SCRIPT_HOOK_REQUEST, f);
    T_STREQ(hdrs_get(&f->request->headers, "x-smuggle-refused", NULL), "yes");
    T_CHECK(hdrs_get(&f->request->headers, "x-evil", NULL) == NULL);
    T_STREQ(hdrs_get(&f->request->headers, "x-match", NULL), "yes");
    script_env_forget(e, f);
    flow_free(f);
    script_env_free(e);
}

static void injection_every_field(void)
{
    const char *p[] = {S("smuggle2.lua")};
    script_env *e = env_of(p, 1);
    T_CHECK(e != NULL);
    if (!e)
        return;
    flow *f = make_flow();
    script_env_run(e, SCRIPT_HOOK_REQUEST, f);
    T_STREQ(hdrs_get(&f->request->headers, "x-refused", NULL), "14/14");
    T_STREQ(f->request->http_version, "HTTP/1.1");
    T_STREQ(f->request->path, "/a?b=1");
    T_STREQ(f->request->host, "example.com");
    script_env_forget(e, f);
    flow_free(f);
    script_env_free(e);
}

static double elapsed(const struct timespec *t0)
{
    struct timespec t1;
    clock_gettime(CLOCK_MONOTONIC, &t1);
    return (double)(t1.tv_sec - t0->tv_sec) + (double)(t1.tv_nsec - t0->tv_nsec) / 1e9;
}

static void time_limit(void)
{
    const char *p[] = {S("slow.lua")};
    script_env *e = env_of(p, 1);
    T_CHECK(e != NULL);
    if (!e)
        return;
    script_env_set_timeout(e, 100);
    flow *f = make_flow();
    struct timespec t0;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    T_CHECK(script_env_run(e, SCRIPT_HOOK_REQUEST, f) == -1);
    T_CHECK(elapsed(&t0) < 20);   /* stopped, not run forever (bounded generously) */
    T_CHECK(f->error && strstr(f->error->msg, "slow.lua") && strstr(f->error->msg, "request hook"));
    clock_gettime(CLOCK_MONOTONIC, &t0);
    T_CHECK(script_env_run(e, SCRIPT_HOOK_RESPONSE, f) == -1);   /* pcall inside does not help */
    T_CHECK(f->error && strstr(f->error->msg, "response hook"));
    /* a hook that ends in time still runs, and the state is usable after */
    T_CHECK(script_env_run(e, SCRIPT_HOOK_ERROR, f) == 0);
    T_CHECK(hdrs_get(&f->request->headers, "x-error-hook", NULL) != NULL);
    script_env_forget(e, f);
    flow_free(f);
    script_env_free(e);
}

/* One flow through the same hook many times (as a long keep-alive
 * connection's flows go through one state): every run succeeds and leaves
 * exactly one header, whatever ran before; no state piles up in the flow.
 * The speed of this loop is bench/hookbench's business, not a unit test's. */
static void hook_repeats_without_piling_up(void)
{
    const char *p[] = {S("second.lua")};
    script_env *e = env_of(p, 1);
    T_CHECK(e != NULL);
    if (!e)
        return;
    flow *f = make_flow();
    size_t n0 = f->request->headers.n;
    int bad = 0;
    for (int i = 0; i < 20000; i++)
        if (script_env_run(e, SCRIPT_HOOK_REQUEST, f) != 0)
            bad++;
    T_CHECK(bad == 0);
    T_CHECK(f->request->headers.n == n0 + 1);
    size_t vl = 0;
    const char *v = hdrs_get(&f->request->headers, "X-Second-Saw", &vl);
    T_CHECK(v && vl == 7 && memcmp(v, "nothing", 7) == 0);
    T_CHECK(!f->killed && !f->error);
    script_env_forget(e, f);
    flow_free(f);
    script_env_free(e);
}

static void websocket_hooks(void)
{
    const char *p[] = {S("ws.lua")};
    script_env *e = env_of(p, 1);
    T_CHECK(e != NULL);
    if (!e)
        return;
    T_CHECK(script_env_has_hook(e, SCRIPT_HOOK_WEBSOCKET_MESSAGE) &&
            script_env_has_hook(e, SCRIPT_HOOK_WEBSOCKET_START) &&
            script_env_has_hook(e, SCRIPT_HOOK_WEBSOCKET_END));
    flow *f = make_flow();
    f->websocket = true;
    script_env_run(e, SCRIPT_HOOK_WEBSOCKET_START, f);
    T_CHECK(f->metadata && strstr(f->metadata, "ws_started"));
    struct { bool from_client, is_text; const char *in, *out; bool dropped; } cases[] = {
        {true, true, "hello", "HELLO #1 text", false},
        {false, true, "hello", "hello", false},
        {true, false, "\x01bin", "\x01bin+ts", false},
        {true, true, "drop", "drop", true},
        {false, true, "flag", "flag", true},
    };
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        flow_ws_add(f, cases[i].from_client, cases[i].is_text, cases[i].in, strlen(cases[i].in));
        script_env_run(e, SCRIPT_HOOK_WEBSOCKET_MESSAGE, f);
        flow_ws_message *m = &f->ws_msgs[f->ws_n - 1];
        T_STREQ(m->content.p, cases[i].out);
        T_CHECK(m->dropped == cases[i].dropped);
    }
    f->ws_close_code = 1001;
    f->ws_closed_by_client = true;
    flow_strset(&f->ws_close_reason, "going");
    script_env_run(e, SCRIPT_HOOK_WEBSOCKET_END, f);
    T_CHECK(f->metadata && strstr(f->metadata, "1001 true going"));
    script_env_forget(e, f);
    flow_free(f);
    script_env_free(e);
}

int main(void)
{
    T_RUN(accessors);
    T_RUN(mock_and_kill);
    T_RUN(errors_name_file_and_line);
    T_RUN(kept_flow_is_inert);
    T_RUN(objects_and_families);
    T_RUN(injection_refused_and_filter);
    T_RUN(injection_every_field);
    T_RUN(time_limit);
    T_RUN(hook_repeats_without_piling_up);
    T_RUN(websocket_hooks);
    T_DONE();
}
