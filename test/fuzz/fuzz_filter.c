/* fuzz_filter.c — libFuzzer target for the filter language: compile any
 * input as an expression (both case modes), describe it, and match it
 * against a few fixed flows (HTTP with an encoded body, WebSocket, TCP),
 * so the parser, regex compilation and every matcher see hostile input. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "filter.h"
#include "flow.h"

static void hadd(hdrs *h, const char *n, const char *v)
{
    hdrs_add(h, n, strlen(n), v, strlen(v));
}

static flow *make_http(void)
{
    flow *f = flow_new();
    f->request = flow_request_new();
    flow_request *r = f->request;
    flow_strset(&r->method, "POST");
    flow_strset(&r->scheme, "https");
    flow_strset(&r->authority, "");
    flow_strset(&r->host, "example.com");
    r->port = 8443;
    flow_strset(&r->path, "/api?q=1");
    flow_strset(&r->http_version, "HTTP/1.1");
    hadd(&r->headers, "Host", "[::1]:8443");
    hadd(&r->headers, "Content-Type", "application/json");
    bytes_set(&r->content, "{\"a\": 1}", 8);
    flow_strset(&f->client.address_host, "127.0.0.1");
    f->client.address_port = 1234;
    flow_strset(&f->server.address_host, "example.com");
    f->server.address_port = 8443;
    f->response = flow_response_new();
    f->response->status_code = 200;
    hadd(&f->response->headers, "Content-Encoding", "gzip");
    hadd(&f->response->headers, "Content-Type", "image/png");
    /* not valid gzip: exercises the raw fallback */
    bytes_set(&f->response->content, "\x1f\x8b\x08garbage", 11);
    flow_strset(&f->metadata, "{\"k\": [1, 2.5, \"x'y\", null, {\"z\": true}]}");
    flow_strset(&f->marked, ":default:");
    flow_strset(&f->comment, "a\nb");
    flow_strset(&f->is_replay, "request");
    f->websocket = true;
    flow_ws_add(f, true, true, "hello", 5);
    flow_ws_add(f, false, false, "\x00\xff", 2);
    return f;
}

static flow *make_tcp(void)
{
    flow *f = flow_new();
    f->type = FLOW_TCP;
    flow_strset(&f->client.address_host, "::1");
    f->client.address_port = 5;
    flow_ws_add(f, true, false, "PING", 4);
    flow_set_error(f, "reset");
    return f;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static flow *flows[2];
    if (!flows[0]) {
        flows[0] = make_http();
        flows[1] = make_tcp();
    }
    if (size > 4096)
        return 0;
    char *expr = malloc(size + 1);
    if (!expr)
        return 0;
    memcpy(expr, data, size);
    expr[size] = '\0';
    for (unsigned flags = 0; flags <= FILTER_CASE_SENSITIVE; flags += FILTER_CASE_SENSITIVE) {
        char err[256];
        size_t col;
        filter *f = filter_compile_opts(expr, flags, &col, err, sizeof err);
        if (!f) {
            if (strlen(err) == 0 || strchr(err, '\n'))
                abort(); /* every failure has a one-line message */
            continue;
        }
        free(filter_describe(f));
        for (size_t i = 0; i < 2; i++)
            (void)filter_eval(f, flows[i], err, sizeof err);
        filter_free(f);
    }
    free(expr);
    return 0;
}
