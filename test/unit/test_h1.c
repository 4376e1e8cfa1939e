/* Unit tests for the HTTP/1 parser: framing, strictness where leniency
 * smuggles, limits, pipelining, and the serialiser. */
#include "h1.h"
#include "t.h"

typedef struct ctx {
    int heads;
    bytes body;
} ctx;

static int on_head(void *ud) { ((ctx *)ud)->heads++; return 0; }
static int on_body(void *ud, const char *at, size_t n) { return bytes_append(&((ctx *)ud)->body, at, n); }
static const h1_events ev = {on_head, on_body};
static const h1_limits lim = {.max_head = 4096, .max_headers = 20, .max_body = 1 << 20};

/* Parse one request from `raw`; returns the status and leaves r filled. */
static enum h1_status parse_req(const char *raw, size_t n, flow_request *r, ctx *c, int *err_status,
                                size_t *left)
{
    h1_parser *p = h1_parser_new_request(&lim, &ev, c);
    struct evbuffer *in = evbuffer_new();
    evbuffer_add(in, raw, n);
    h1_parser_begin_request(p, r);
    enum h1_status st = h1_parser_feed(p, in);
    if (err_status)
        *err_status = st == H1_ERROR ? h1_parser_error_status(p) : 0;
    if (left)
        *left = evbuffer_get_length(in);
    evbuffer_free(in);
    h1_parser_free(p);
    return st;
}

static int req_status(const char *raw)
{
    flow_request *r = flow_request_new();
    ctx c = {0};
    int es = 0;
    enum h1_status st = parse_req(raw, strlen(raw), r, &c, &es, NULL);
    flow_request_free(r);
    bytes_free(&c.body);
    return st == H1_DONE ? 0 : st == H1_NEED_MORE ? -1 : es;
}

static void simple_get(void)
{
    flow_request *r = flow_request_new();
    ctx c = {0};
    const char *raw = "GET http://example.com/a?b HTTP/1.1\r\nHost: example.com\r\nX-Case: V \r\n\r\n";
    T_CHECK(parse_req(raw, strlen(raw), r, &c, NULL, NULL) == H1_DONE);
    T_STREQ(r->method, "GET");
    T_STREQ(r->path, "http://example.com/a?b");
    T_STREQ(r->http_version, "HTTP/1.1");
    T_CHECK(r->headers.n == 2);
    T_STREQ(r->headers.v[1].name, "X-Case");
    T_STREQ(r->headers.v[1].value, "V");  /* OWS trimmed */
    T_CHECK(c.heads == 1);
    flow_request_free(r);
}

static void chunked_body_and_trailers(void)
{
    flow_request *r = flow_request_new();
    ctx c = {0};
    const char *raw = "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n"
                      "5\r\nhello\r\n6\r\n world\r\n0\r\nX-T: 1\r\n\r\n";
    T_CHECK(parse_req(raw, strlen(raw), r, &c, NULL, NULL) == H1_DONE);
    T_CHECK(c.body.len == 11 && memcmp(c.body.p, "hello world", 11) == 0);
    T_CHECK(r->trailers.n == 1);
    T_STREQ(hdrs_get(&r->trailers, "x-t", NULL), "1");
    flow_request_free(r);
    bytes_free(&c.body);
}

static void pipelined_leaves_rest(void)
{
    flow_request *r = flow_request_new();
    ctx c = {0};
    size_t left = 0;
    const char *raw = "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\n\r\nabcGET / HTTP/1.1\r\nHost: a\r\n\r\n";
    T_CHECK(parse_req(raw, strlen(raw), r, &c, NULL, &left) == H1_DONE);
    T_CHECK(c.body.len == 3);
    T_CHECK(left == strlen("GET / HTTP/1.1\r\nHost: a\r\n\r\n"));
    flow_request_free(r);
    bytes_free(&c.body);
}

static void incremental_bytes(void)
{
    /* one byte at a time must give the same answer as all at once */
    const char *raw = "POST /x HTTP/1.1\r\nHost: a\r\nContent-Length: 4\r\n\r\nbody";
    flow_request *r = flow_request_new();
    ctx c = {0};
    h1_parser *p = h1_parser_new_request(&lim, &ev, &c);
    struct evbuffer *in = evbuffer_new();
    h1_parser_begin_request(p, r);
    enum h1_status st = H1_NEED_MORE;
    for (size_t i = 0; raw[i] && st == H1_NEED_MORE; i++) {
        evbuffer_add(in, raw + i, 1);
        st = h1_parser_feed(p, in);
    }
    T_CHECK(st == H1_DONE);
    T_CHECK(c.body.len == 4);
    T_STREQ(r->path, "/x");
    evbuffer_free(in);
    h1_parser_free(p);
    flow_request_free(r);
    bytes_free(&c.body);
}

static void smuggling_rejected(void)
{
    T_CHECK(req_status("GET / HTTP/1.1\r\nHost: a\r\n Foo: bar\r\n\r\n") == 400);          /* obs-fold */
    T_CHECK(req_status("GET / HTTP/1.1\r\nHost: a\r\nFoo:\rBar: 2\r\n\r\n") == 400);       /* bare CR */
    T_CHECK(req_status("GET / HTTP/1.1\nHost: a\r\n\r\n") == 400);                         /* bare LF */
    T_CHECK(req_status("GET / HTTP/1.1\r\nHost: a\r\n\r\rX") == 400);
    T_CHECK(req_status("GET / HTTP/1.1\r\nHost : a\r\n\r\n") == 400);                      /* space before colon */
    T_CHECK(req_status("GET / HTTP/1.1\r\nHost: a\r\nX: a\x01z\r\n\r\n") == 400);          /* control char */
    T_CHECK(req_status("GET / HTTP/1.1\r\nX: 1\r\n\r\n") == 400);                          /* no Host */
    T_CHECK(req_status("GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n") == 400);            /* two Hosts */
    T_CHECK(req_status("POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n") == 400);
    T_CHECK(req_status("POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\nContent-Length: 4\r\n\r\n") == 400);
    T_CHECK(req_status("POST / HTTP/1.1\r\nHost: a\r\nContent-Length: +3\r\n\r\n") == 400);
    T_CHECK(req_status("POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: gzip, chunked\r\n\r\n") == 501);
    T_CHECK(req_status("POST / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n") == 400);
    /* a trailing tab: chunked to us, not to llhttp 8.1 */
    T_CHECK(req_status("POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\t\r\n\r\n0\r\n\r\n") == 400);
    T_CHECK(req_status("POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked \r\n\r\n0\r\n\r\n") == 0); /* a space llhttp trims */
    T_CHECK(req_status("POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n") == 400);
    T_CHECK(req_status("GET / HTTP/2.0\r\nHost: a\r\n\r\n") == 505);
    T_CHECK(req_status("GET  / HTTP/1.1\r\nHost: a\r\n\r\n") == 400);
    T_CHECK(req_status("G\x01T / HTTP/1.1\r\nHost: a\r\n\r\n") == 400);
    T_CHECK(req_status("GET / HTTP/1.1\r\nHost: a\r\n\r\n") == 0);
    T_CHECK(req_status("GET / HTTP/1.0\r\n\r\n") == 0);                                    /* 1.0 needs no Host */
}

static void limits(void)
{
    char big[6000];
    int n = snprintf(big, sizeof big, "GET / HTTP/1.1\r\nHost: a\r\nX: ");
    memset(big + n, 'a', sizeof big - (size_t)n - 1);
    big[sizeof big - 1] = '\0';
    T_CHECK(req_status(big) == 431);
    char many[2000];
    n = snprintf(many, sizeof many, "GET / HTTP/1.1\r\nHost: a\r\n");
    for (int i = 0; i < 25; i++)
        n += snprintf(many + n, sizeof many - (size_t)n, "X-%d: 1\r\n", i);
    snprintf(many + n, sizeof many - (size_t)n, "\r\n");
    T_CHECK(req_status(many) == 431);
    /* body over max_body */
    h1_limits small = lim;
    small.max_body = 4;
    flow_request *r = flow_request_new();
    ctx c = {0};
    h1_parser *p = h1_parser_new_request(&small, &ev, &c);
    struct evbuffer *in = evbuffer_new();
    evbuffer_add_printf(in, "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 10\r\n\r\n0123456789");
    h1_parser_begin_request(p, r);
    T_CHECK(h1_parser_feed(p, in) == H1_ERROR);
    T_CHECK(h1_parser_error_status(p) == 413);
    evbuffer_free(in);
    h1_parser_free(p);
    flow_request_free(r);
    bytes_free(&c.body);
}

static enum h1_status parse_resp(const char *raw, bool no_body, flow_response *s, ctx *c, bool eof)
{
    h1_parser *p = h1_parser_new_response(&lim, &ev, c);
    struct evbuffer *in = evbuffer_new();
    evbuffer_add(in, raw, strlen(raw));
    h1_parser_begin_response(p, s, no_body);
    enum h1_status st = h1_parser_feed(p, in);
    if (st == H1_NEED_MORE && eof)
        st = h1_parser_eof(p);
    evbuffer_free(in);
    h1_parser_free(p);
    return st;
}

static void responses(void)
{
    flow_response *s = flow_response_new();
    ctx c = {0};
    T_CHECK(parse_resp("HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nhi", false, s, &c, false) == H1_DONE);
    T_CHECK(s->status_code == 200);
    T_STREQ(s->reason, "OK");
    T_CHECK(c.body.len == 2);
    flow_response_free(s);
    bytes_free(&c.body);

    /* "chunked<TAB>": llhttp 8.1 would read it close-delimited; refused */
    s = flow_response_new();
    memset(&c, 0, sizeof c);
    T_CHECK(parse_resp("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\t\r\n\r\n5\r\nHELLO\r\n0\r\n\r\n", false, s,
                       &c, true) == H1_ERROR);
    flow_response_free(s);
    bytes_free(&c.body);

    /* close-delimited */
    s = flow_response_new();
    memset(&c, 0, sizeof c);
    T_CHECK(parse_resp("HTTP/1.1 200 OK\r\n\r\nuntil close", false, s, &c, true) == H1_DONE);
    T_CHECK(c.body.len == 11);
    flow_response_free(s);
    bytes_free(&c.body);

    /* HEAD: Content-Length without a body */
    s = flow_response_new();
    memset(&c, 0, sizeof c);
    T_CHECK(parse_resp("HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n", true, s, &c, false) == H1_DONE);
    T_CHECK(c.body.len == 0);
    flow_response_free(s);

    /* 204 and 304 have no body */
    s = flow_response_new();
    T_CHECK(parse_resp("HTTP/1.1 204 No Content\r\n\r\n", false, s, &c, false) == H1_DONE);
    flow_response_free(s);
    s = flow_response_new();
    T_CHECK(parse_resp("HTTP/1.1 304 Not Modified\r\nContent-Length: 5\r\n\r\n", false, s, &c, false) == H1_DONE);
    flow_response_free(s);

    /* truncated body is an error at EOF */
    s = flow_response_new();
    T_CHECK(parse_resp("HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nabc", false, s, &c, true) == H1_ERROR);
    flow_response_free(s);
    /* bad status lines and smuggling shapes */
    s = flow_response_new();
    T_CHECK(parse_resp("HTTP/1.1 2000 OK\r\n\r\n", false, s, &c, false) == H1_ERROR);
    flow_response_free(s);
    s = flow_response_new();
    T_CHECK(parse_resp("HTTP/1.1 200 OK\r\nContent-Length: 1\r\nTransfer-Encoding: chunked\r\n\r\n", false, s, &c,
                       false) == H1_ERROR);
    flow_response_free(s);
    bytes_free(&c.body);
}

static void serialise(void)
{
    flow_request *r = flow_request_new();
    flow_strset(&r->method, "POST");
    flow_strset(&r->scheme, "http");
    flow_strset(&r->host, "example.com");
    flow_strset(&r->path, "/p");
    flow_strset(&r->http_version, "HTTP/1.1");
    r->port = 8080;
    hdrs_add(&r->headers, "Host", 4, "example.com:8080", 16);
    struct evbuffer *out = evbuffer_new();
    T_CHECK(h1_write_request_head(out, r, false) == 0);
    bytes body = {0};
    bytes_set(&body, "abc", 3);
    T_CHECK(h1_write_body(out, &body, true, NULL) == 0);
    size_t n = evbuffer_get_length(out);
    char *s = (char *)evbuffer_pullup(out, -1);
    const char *want = "POST /p HTTP/1.1\r\nHost: example.com:8080\r\n\r\n3\r\nabc\r\n0\r\n\r\n";
    T_CHECK(n == strlen(want) && memcmp(s, want, n) == 0);
    evbuffer_drain(out, n);
    T_CHECK(h1_write_request_head(out, r, true) == 0);
    s = (char *)evbuffer_pullup(out, -1);
    T_CHECK(strncmp(s, "POST http://example.com:8080/p HTTP/1.1\r\n", 41) == 0);
    evbuffer_free(out);
    bytes_free(&body);
    flow_request_free(r);
    /* the writers refuse framing bytes whatever filled the message */
    r = flow_request_new();
    out = evbuffer_new();
    flow_strset(&r->method, "GET");
    flow_strset(&r->host, "example.com");
    flow_strset(&r->path, "/");
    flow_strset(&r->http_version, "HTTP/1.1\r\nX-Evil: 1");
    T_CHECK(h1_write_request_head(out, r, false) == 0);   /* a bad version becomes HTTP/1.1 */
    T_CHECK(evbuffer_get_length(out) == 18);  /* nothing of the bad version went out */
    s = (char *)evbuffer_pullup(out, -1);
    T_CHECK(strncmp(s, "GET / HTTP/1.1\r\n\r\n", 18) == 0);
    evbuffer_drain(out, evbuffer_get_length(out));
    flow_strset(&r->path, "/a\r\nX-Evil: 1");
    T_CHECK(h1_write_request_head(out, r, false) < 0);
    flow_strset(&r->path, "/");
    flow_strset(&r->method, "G T");
    T_CHECK(h1_write_request_head(out, r, false) < 0);
    flow_strset(&r->method, "GET");
    hdrs_add(&r->headers, "X", 1, "a\0b", 3);
    T_CHECK(h1_write_request_head(out, r, false) < 0);
    flow_request_free(r);
    flow_response *sr = flow_response_new();
    sr->status_code = 200;
    flow_strset(&sr->reason, "OK\r\nX-Evil: 1");
    T_CHECK(h1_write_response_head(out, sr) < 0);
    flow_strset(&sr->reason, "OK");
    hdrs_add(&sr->headers, "X\r\nY", 4, "1", 1);
    T_CHECK(h1_write_response_head(out, sr) < 0);
    flow_response_free(sr);
    evbuffer_free(out);
    T_CHECK(h1_valid_value("a\tb", 3));
    T_CHECK(!h1_valid_value("a\r\nb", 4));
    T_CHECK(!h1_valid_name("a b", 3));
    T_STREQ(h1_reason(502), "Bad Gateway");
}

/* Every byte against RFC 9110's tchar, spelled out here, not as a table. */
static void token_chars(void)
{
    const char *special = "!#$%&'*+-.^_`|~";
    for (int c = 0; c < 256; c++) {
        bool want = (c >= '0' && c <= '9') || (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') ||
                    (c && strchr(special, c) != NULL);
        char s[2] = {'a', (char)c};
        if (h1_valid_name(s, 2) != want) {
            fprintf(stderr, "  byte 0x%02x: %s\n", c, want ? "refused" : "accepted");
            T_CHECK(false);
        }
    }
}

/* h1_write_response: a small body goes out in the head's chain, a large
 * one after it; the bytes are the same either way. */
static void response_with_body(void)
{
    flow_response *sr = flow_response_new();
    sr->status_code = 200;
    flow_strset(&sr->http_version, "HTTP/1.1");
    hdrs_add(&sr->headers, "Content-Length", 14, "5", 1);
    bytes small = {(char *)"hello", 5, 5};
    struct evbuffer *out = evbuffer_new();
    T_CHECK(h1_write_response(out, sr, &small) == 0);
    T_CHECK(evbuffer_peek(out, -1, NULL, NULL, 0) == 1);
    const char *want = "HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello";
    size_t n = evbuffer_get_length(out);
    T_CHECK(n == strlen(want) && memcmp(evbuffer_pullup(out, -1), want, n) == 0);
    evbuffer_drain(out, n);

    static char bigp[H1_COALESCE_MAX];
    memset(bigp, 'b', sizeof bigp);
    bytes big = {bigp, sizeof bigp, sizeof bigp};
    hdrs_set(&sr->headers, "Content-Length", "4096", 4);
    T_CHECK(h1_write_response(out, sr, &big) == 0);
    T_CHECK(evbuffer_peek(out, -1, NULL, NULL, 0) == 2);   /* head, then the body */
    size_t head = strlen("HTTP/1.1 200 OK\r\nContent-Length: 4096\r\n\r\n");
    T_CHECK(evbuffer_get_length(out) == head + sizeof bigp);
    unsigned char *all = evbuffer_pullup(out, -1);
    T_CHECK(memcmp(all, "HTTP/1.1 200 OK\r\n", 17) == 0 && all[head] == 'b' && all[head + sizeof bigp - 1] == 'b');
    evbuffer_drain(out, evbuffer_get_length(out));
    /* a bad head writes nothing, body included */
    flow_strset(&sr->reason, "OK\r\nX-Evil: 1");
    T_CHECK(h1_write_response(out, sr, &small) < 0 && evbuffer_get_length(out) == 0);
    evbuffer_free(out);
    flow_response_free(sr);
}

int main(void)
{
    T_RUN(simple_get);
    T_RUN(chunked_body_and_trailers);
    T_RUN(pipelined_leaves_rest);
    T_RUN(incremental_bytes);
    T_RUN(smuggling_rejected);
    T_RUN(limits);
    T_RUN(responses);
    T_RUN(serialise);
    T_RUN(token_chars);
    T_RUN(response_with_body);
    T_DONE();
}
