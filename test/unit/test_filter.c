/* test_filter.c — the filter language: the parse tree for precedence,
 * quoting and pyparsing's corners, error messages with columns, limits,
 * and every operator matched against hand-built flows. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <zlib.h>

#include "filter.h"
#include "flow.h"
#include "t.h"

/* ---- helpers ------------------------------------------------------------- */

static char *desc(const char *expr)
{
    static char out[4096];
    char err[256];
    filter *f = filter_compile_opts(expr, 0, NULL, err, sizeof err);
    if (!f) {
        snprintf(out, sizeof out, "ERR %s", err);
        return out;
    }
    char *d = filter_describe(f);
    snprintf(out, sizeof out, "%s", d ? d : "(null)");
    free(d);
    filter_free(f);
    return out;
}

static int match_flags(const char *expr, const flow *fl, unsigned flags)
{
    char err[256];
    filter *f = filter_compile_opts(expr, flags, NULL, err, sizeof err);
    if (!f) {
        fprintf(stderr, "  compile failed: %s: %s\n", expr, err);
        return -2;
    }
    int r = filter_eval(f, fl, err, sizeof err);
    filter_free(f);
    return r;
}

static int m(const char *expr, const flow *fl)
{
    return match_flags(expr, fl, 0);
}

static void hadd(hdrs *h, const char *n, const char *v)
{
    hdrs_add(h, n, strlen(n), v, strlen(v));
}

static void gzip_bytes(const char *in, bytes *out)
{
    z_stream zs = {0};
    unsigned char buf[4096];
    deflateInit2(&zs, 6, Z_DEFLATED, 16 + MAX_WBITS, 8, Z_DEFAULT_STRATEGY);
    zs.next_in = (unsigned char *)in;
    zs.avail_in = (unsigned)strlen(in);
    zs.next_out = buf;
    zs.avail_out = sizeof buf;
    deflate(&zs, Z_FINISH);
    bytes_set(out, buf, sizeof buf - zs.avail_out);
    deflateEnd(&zs);
}

/* GET http://example.com/path?x=1 from 127.0.0.1:5000 to example.com:80,
 * with a gzip-encoded HTML response when `with_response`. */
static flow *http_flow(bool with_response)
{
    flow *f = flow_new();
    f->type = FLOW_HTTP;
    f->request = flow_request_new();
    flow_request *r = f->request;
    flow_strset(&r->method, "GET");
    flow_strset(&r->scheme, "http");
    flow_strset(&r->authority, "");
    flow_strset(&r->host, "example.com");
    r->port = 80;
    flow_strset(&r->path, "/path?x=1");
    flow_strset(&r->http_version, "HTTP/1.1");
    hadd(&r->headers, "Host", "example.com");
    hadd(&r->headers, "User-Agent", "curl/7.88");
    flow_strset(&f->client.address_host, "127.0.0.1");
    f->client.address_port = 5000;
    flow_strset(&f->server.address_host, "example.com");
    f->server.address_port = 80;
    if (with_response) {
        f->response = flow_response_new();
        f->response->status_code = 200;
        flow_strset(&f->response->reason, "OK");
        flow_strset(&f->response->http_version, "HTTP/1.1");
        hadd(&f->response->headers, "Content-Type", "text/html; charset=utf-8");
        hadd(&f->response->headers, "Content-Encoding", "gzip");
        gzip_bytes("<html>Hello Secret World</html>", &f->response->content);
    }
    return f;
}

/* ---- parser -------------------------------------------------------------- */

static void test_precedence(void)
{
    T_STREQ(desc("a | b & c"), "|(~u \"a\", &(~u \"b\", ~u \"c\"))");
    T_STREQ(desc("a & b | c"), "|(&(~u \"a\", ~u \"b\"), ~u \"c\")");
    T_STREQ(desc("!a & b"), "&(!(~u \"a\"), ~u \"b\")");
    T_STREQ(desc("!(a | b) & !c"), "&(!(|(~u \"a\", ~u \"b\")), !(~u \"c\"))");
    T_STREQ(desc("!!~q"), "!(!(~q))");
    /* juxtaposition is "&" with the lowest precedence, top level only */
    T_STREQ(desc("a | b c"), "&(|(~u \"a\", ~u \"b\"), ~u \"c\")");
    T_STREQ(desc("~q !~s"), "&(~q, !(~s))");
    T_STREQ(desc("((((a))))"), "~u \"a\"");
    T_STREQ(desc("( ~q )"), "~q");
    T_STREQ(desc("~t json | ~ts html & !~c 200"),
            "|(~t \"json\", &(~ts \"html\", !(~c 200)))");
    T_STREQ(desc("a | b | c"), "|(~u \"a\", ~u \"b\", ~u \"c\")");
}

static void test_pyparsing_corners(void)
{
    /* operators end at whitespace: "&" "|" "!" glued to words are regex text */
    T_STREQ(desc("a|b c"), "&(~u \"a|b\", ~u \"c\")");
    T_STREQ(desc("~c 200x"), "&(~c 200, ~u \"x\")");
    /* a dangling operator is read back as a bare word */
    T_STREQ(desc("a &"), "&(~u \"a\", ~u \"&\")");
    T_STREQ(desc("a & & b"), "&(&(~u \"a\", ~u \"&\"), ~u \"b\")");
    T_STREQ(desc("a | & b"), "&(|(~u \"a\", ~u \"&\"), ~u \"b\")");
    T_STREQ(desc("!"), "~u \"!\"");
    T_STREQ(desc("!!"), "!(~u \"!\")");
    T_STREQ(desc("a\"b\""), "&(~u \"a\", ~u \"b\")");
    /* ~replay vs ~replayq: whole-word operator names */
    T_STREQ(desc("~replayq"), "~replayq");
    T_STREQ(desc("~replay"), "~replay");
    T_STREQ(desc("~a ~e ~http ~marked ~q ~s ~tcp ~udp ~dns ~websocket ~all ~replays"),
            "&(~a, ~e, ~http, ~marked, ~q, ~s, ~tcp, ~udp, ~dns, ~websocket, ~all, ~replays)");
    T_STREQ(desc("~src 127 ~dst 1 ~meta x ~marker y ~comment z"),
            "&(~src \"127\", ~dst \"1\", ~meta \"x\", ~marker \"y\", ~comment \"z\")");
    T_STREQ(desc("~bqc x ~uc A"), "&(~bqc \"x\", ~uc \"A\")");
    T_STREQ(desc("~uc A"), "~uc \"A\"");
}

static void test_quoting(void)
{
    T_STREQ(desc("\"a b\" 'c d'"), "&(~u \"a b\", ~u \"c d\")");
    /* backslash escapes: \X is X, so a regex escape needs two backslashes */
    T_STREQ(desc("~u \"a\\.b\""), "~u \"a.b\"");
    T_STREQ(desc("~u \"a\\\\.b\""), "~u \"a\\\\.b\"");
    T_STREQ(desc("~b \"\\d\""), "~b \"d\"");
    T_STREQ(desc("~u 'a\\'b'"), "~u \"a'b\"");
    T_STREQ(desc("~u \"x\\ty\""), "~u \"x\\x09y\"");
    T_STREQ(desc("~comment \"multi\\nline\""), "~comment \"multi\\x0aline\"");
    /* unquoted words keep their backslashes */
    T_STREQ(desc("~b \\d+"), "~b \"\\\\d+\"");
    T_STREQ(desc("~u ''"), "~u \"\"");
    T_STREQ(desc("~d é+"), "~d \"é+\"");
}

static void test_errors(void)
{
    T_STREQ(desc("~c abc"), "ERR ~c abc: expected a number at column 4");
    T_STREQ(desc("~c -1"), "ERR ~c -1: expected a number at column 4");
    T_STREQ(desc("~zz"), "ERR unknown operator ~zz at column 1");
    T_STREQ(desc("~q ~zz"), "ERR unknown operator ~zz at column 4");
    T_STREQ(desc("(a b)"), "ERR missing ) at column 4");
    T_STREQ(desc("(a"), "ERR missing ) at column 3");
    T_STREQ(desc("a)"), "ERR unexpected ) at column 2");
    T_STREQ(desc("(~q)"), "ERR ~q: expected whitespace after the operator at column 4");
    T_STREQ(desc("~q&~s"), "ERR ~q: expected whitespace after the operator at column 3");
    T_STREQ(desc("~c200"), "ERR ~c: expected whitespace after the operator at column 3");
    T_STREQ(desc("~h"), "ERR ~h: expected a regex at column 3");
    T_STREQ(desc("~u a~b"), "ERR ~b: expected a regex at column 7");
    T_STREQ(desc("\"abc"), "ERR unterminated quoted string at column 1");
    T_STREQ(desc(""), "ERR empty filter expression");
    T_STREQ(desc("   "), "ERR empty filter expression");
    /* regex errors: PCRE2's reason, the column inside the pattern */
    T_STREQ(desc("~b \"x[\""), "ERR ~b \"x[: missing terminating ] for character class at column 7");
    T_STREQ(desc("~q ~u a+++"), "ERR ~u a+++: quantifier does not follow a repeatable item at column 10");
    /* columns count characters, not bytes */
    T_STREQ(desc("é ~zz"), "ERR unknown operator ~zz at column 3");

    size_t col = 99;
    char err[128];
    T_CHECK(filter_compile_opts("~q ~c x", 0, &col, err, sizeof err) == NULL);
    T_CHECK(col == 7);
    T_CHECK(filter_compile(NULL, err, sizeof err) == NULL);
    /* a tiny error buffer is never overrun and stays terminated */
    char small[8];
    T_CHECK(filter_compile("~zz", small, sizeof small) == NULL);
    T_CHECK(strlen(small) == 7);
}

static void test_limits(void)
{
    size_t n = 100000;
    char *s = malloc(2 * n + 2);
    /* nesting one past the limit fails with a clear message */
    for (int deep = FILTER_MAX_DEPTH; deep <= FILTER_MAX_DEPTH + 1; deep++) {
        size_t k = 0;
        for (int i = 0; i < deep; i++)
            s[k++] = '(';
        s[k++] = 'a';
        for (int i = 0; i < deep; i++)
            s[k++] = ')';
        s[k] = '\0';
        char *d = desc(s);
        if (deep == FILTER_MAX_DEPTH)
            T_STREQ(d, "~u \"a\"");
        else
            T_CHECK(strstr(d, "ERR expression nested too deeply") == d);
    }
    memset(s, '!', n);
    s[n] = 'a';
    s[n + 1] = '\0';
    T_CHECK(strstr(desc(s), "nested too deeply") != NULL);
    memset(s, '(', n);
    s[n] = '\0';
    T_CHECK(strstr(desc(s), "nested too deeply") != NULL);
    /* a long flat chain is not nesting */
    size_t k = 0;
    for (int i = 0; i < 5000; i++) {
        memcpy(s + k, "~q & ", 5);
        k += 5;
    }
    memcpy(s + k, "~s", 3);
    filter *f = filter_compile(s, NULL, 0);
    T_CHECK(f != NULL);
    flow *fl = http_flow(false);
    T_CHECK(filter_eval(f, fl, NULL, 0) == 0);
    flow_free(fl);
    filter_free(f);
    free(s);
}

/* ---- matching ------------------------------------------------------------ */

static void test_http_basic(void)
{
    flow *q = http_flow(false), *s = http_flow(true);
    T_CHECK(m("~q", q) == 1 && m("~q", s) == 0);
    T_CHECK(m("~s", q) == 0 && m("~s", s) == 1);
    T_CHECK(m("~http", s) == 1 && m("~tcp", s) == 0);
    T_CHECK(m("~udp", s) == 0 && m("~dns", s) == 0);
    T_CHECK(m("~all", q) == 1 && m("!~all", q) == 0);
    T_CHECK(m("~c 200", s) == 1 && m("~c 404", s) == 0 && m("~c 200", q) == 0);
    T_CHECK(m("~c 0200", s) == 1);
    T_CHECK(m("~c 99999999999999999999", s) == 0);
    T_CHECK(m("~m GET", s) == 1 && m("~m get", s) == 1 && m("~m POST", s) == 0);
    T_CHECK(m("~mc get", s) == 0 && m("~mc GET", s) == 1);
    T_CHECK(m("~e", s) == 0);
    flow_set_error(s, "connection reset");
    T_CHECK(m("~e", s) == 1);
    T_CHECK(m("~q | ~s", q) == 1 && m("~q & ~s", q) == 0);
    flow_free(q);
    flow_free(s);
}

static void test_url_domain(void)
{
    flow *f = http_flow(true);
    T_CHECK(m("example.com/path", f) == 1);
    T_CHECK(m("~u ^http://example\\.com/path\\?x=1$", f) == 1);
    T_CHECK(m("EXAMPLE", f) == 1);                            /* case-insensitive */
    T_CHECK(match_flags("EXAMPLE", f, FILTER_CASE_SENSITIVE) == 0);
    T_CHECK(m("~uc EXAMPLE", f) == 0);
    T_CHECK(m("~u :80", f) == 0);                             /* default port left out */
    T_CHECK(m("~d ^example\\.com$", f) == 1 && m("~d other", f) == 0);

    /* the Host header wins for pretty_url, and ~d sees both names */
    hdrs_set(&f->request->headers, "Host", "virtual.test:8080", 17);
    T_CHECK(m("~u ^http://virtual\\.test:8080/path", f) == 1);
    T_CHECK(m("~u example", f) == 0);
    T_CHECK(m("~d ^virtual\\.test$", f) == 1 && m("~d ^example\\.com$", f) == 1);
    /* a malformed Host header is used as a whole */
    hdrs_set(&f->request->headers, "Host", "bad host:x", 10);
    T_CHECK(m("~u \"^http://bad host:x/path\"", f) == 1);

    /* no Host header: request host, IPv6 unbracketed as mitmproxy prints it */
    hdrs_remove(&f->request->headers, "Host");
    flow_strset(&f->request->host, "::1");
    f->request->port = 8080;
    T_CHECK(m("~u \"^http://::1:8080/path\"", f) == 1);

    /* HTTP/2 takes :authority */
    flow_strset(&f->request->http_version, "HTTP/2.0");
    flow_strset(&f->request->authority, "h2.test");
    T_CHECK(m("~u ^http://h2\\.test/path", f) == 1);
    T_CHECK(m("~d h2.test", f) == 1);

    /* CONNECT: the authority */
    flow_strset(&f->request->method, "CONNECT");
    flow_strset(&f->request->authority, "tunnel.test:443");
    T_CHECK(m("~u ^tunnel\\.test:443$", f) == 1);
    flow_free(f);
}

static void test_headers(void)
{
    flow *f = http_flow(true);
    T_CHECK(m("~h \"User-Agent: curl\"", f) == 1);
    T_CHECK(m("~h \"user-agent: curl\"", f) == 1);
    T_CHECK(match_flags("~h \"user-agent: curl\"", f, FILTER_CASE_SENSITIVE) == 0);
    T_CHECK(match_flags("~h \"User-Agent: curl\"", f, FILTER_CASE_SENSITIVE) == 1);
    /* lines end in \r\n and the regex is MULTILINE: "$" needs the \r */
    T_CHECK(m("~hq \"^Host: example.com\\r$\"", f) == 1);
    T_CHECK(m("~hq \"^Host: example.com$\"", f) == 0);
    T_CHECK(m("~hq Content-Type", f) == 0 && m("~hs Content-Type", f) == 1);
    T_CHECK(m("~h Content-Type", f) == 1 && m("~hs User-Agent", f) == 0);
    T_CHECK(m("~t html", f) == 1 && m("~ts html", f) == 1 && m("~tq html", f) == 0);
    T_CHECK(m("~t json", f) == 0);
    T_CHECK(m("~a", f) == 0);
    hdrs_set(&f->response->headers, "Content-Type", "image/png", 9);
    T_CHECK(m("~a", f) == 1);
    hdrs_set(&f->response->headers, "Content-Type", "application/font-woff", 21);
    T_CHECK(m("~a", f) == 1);
    hdrs_set(&f->response->headers, "Content-Type", "IMAGE/PNG", 9);
    T_CHECK(m("~a", f) == 0); /* mitmproxy's asset list is case-sensitive */
    hadd(&f->request->headers, "content-type", "application/json");
    T_CHECK(m("~tq json", f) == 1 && m("~t json", f) == 1);
    flow_free(f);
}

static void test_bodies(void)
{
    flow *f = http_flow(true);
    /* the response is gzip-encoded: ~b sees the decoded text */
    T_CHECK(m("~bs Secret", f) == 1);
    T_CHECK(m("~b \"hello secret\"", f) == 1);
    T_CHECK(m("~bq Secret", f) == 0);
    T_CHECK(m("~bsc secret", f) == 0);
    /* an empty body is searched too (current mitmproxy) */
    T_CHECK(m("~bq ^$", f) == 1);
    bytes_set(&f->request->content, "line1\nline2", 11);
    T_CHECK(m("~bq \"line1.line2\"", f) == 1); /* DOTALL */
    T_CHECK(m("~bq ^$", f) == 0);
    /* undecodable content: matched raw */
    bytes_set(&f->response->content, "not gzip at all", 15);
    T_CHECK(m("~bs \"not gzip\"", f) == 1);
    /* codings mitmproxy does not decode as one ("gzip, br") stay raw */
    hdrs_set(&f->response->headers, "Content-Encoding", "gzip, br", 8);
    gzip_bytes("zipped", &f->response->content);
    T_CHECK(m("~bs zipped", f) == 0);
    hdrs_set(&f->response->headers, "Content-Encoding", "GZIP", 4);
    T_CHECK(m("~bs zipped", f) == 1);
    /* binary bodies: bytes semantics */
    bytes_set(&f->request->content, "a\0b\xff", 4);
    T_CHECK(m("~bq \"a\\x00b\"", f) == 0); /* "\x00" unquoted by the parser to "x00" */
    T_CHECK(m("~bq a\\x00b\\xff", f) == 1);
    flow_free(f);
}

static void test_websocket_tcp(void)
{
    flow *f = http_flow(true);
    f->response->status_code = 101;
    T_CHECK(m("~websocket", f) == 0);
    f->websocket = true;
    flow_ws_add(f, true, true, "client says hi", 14);
    flow_ws_add(f, false, false, "server\x01" "binary", 13);
    T_CHECK(m("~websocket", f) == 1);
    T_CHECK(m("~b \"says hi\"", f) == 1 && m("~bq \"says hi\"", f) == 1 &&
            m("~bs \"says hi\"", f) == 0);
    T_CHECK(m("~bs server.binary", f) == 1 && m("~bq server", f) == 0);
    flow_free(f);

    flow *t = flow_new();
    t->type = FLOW_TCP;
    flow_strset(&t->client.address_host, "::1");
    t->client.address_port = 40000;
    flow_ws_add(t, true, false, "PING", 4);
    flow_ws_add(t, false, false, "PONG", 4);
    T_CHECK(m("~tcp", t) == 1 && m("~http", t) == 0 && m("~websocket", t) == 0);
    T_CHECK(m("~q", t) == 0 && m("~s", t) == 0 && m("~u .", t) == 0 && m("~c 200", t) == 0);
    T_CHECK(m("~h .", t) == 0 && m("~d .", t) == 0 && m("~m .", t) == 0 && m("~t .", t) == 0);
    T_CHECK(m("~b ping", t) == 1 && m("~bq ping", t) == 1 && m("~bs ping", t) == 0);
    T_CHECK(m("~bs pong", t) == 1);
    T_CHECK(m("~src ^::1:40000$", t) == 1);
    T_CHECK(m("~dst .", t) == 0); /* no server address */
    T_CHECK(m("~all", t) == 1);
    flow_free(t);
}

static void test_flow_attributes(void)
{
    flow *f = http_flow(true);
    T_CHECK(m("~src ^127\\.0\\.0\\.1:5000$", f) == 1);
    T_CHECK(m("~dst ^example\\.com:80$", f) == 1);
    T_CHECK(m("~marked", f) == 0 && m("~marker .", f) == 0 && m("~marker ^$", f) == 1);
    flow_strset(&f->marked, ":default:");
    T_CHECK(m("~marked", f) == 1 && m("~marker default", f) == 1);
    flow_strset(&f->marked, "");
    T_CHECK(m("~marked", f) == 0);
    T_CHECK(m("~comment .", f) == 0);
    flow_strset(&f->comment, "first line\nSecond line");
    T_CHECK(m("~comment ^second", f) == 1); /* MULTILINE, case-insensitive */
    T_CHECK(m("~commentc ^second", f) == 0);
    T_CHECK(m("~replay", f) == 0);
    flow_strset(&f->is_replay, "request");
    T_CHECK(m("~replay", f) == 1 && m("~replayq", f) == 1 && m("~replays", f) == 0);
    flow_strset(&f->is_replay, "response");
    T_CHECK(m("~replayq", f) == 0 && m("~replays", f) == 1);

    /* ~meta matches "key: str(value)" lines, values in Python's notation */
    T_CHECK(m("~meta .", f) == 0);
    flow_strset(&f->metadata,
                "{\"user\": \"alice\", \"n\": 3, \"ok\": true, \"none\": null, "
                "\"f\": 1.5, \"big\": 1e20, \"d\": {\"k\": [1, \"it's\", false]}}");
    T_CHECK(m("~meta ^user:.alice$", f) == 1);
    T_CHECK(m("~meta ^n:.3$", f) == 1);
    T_CHECK(m("~meta ^ok:.True$", f) == 1);
    T_CHECK(m("~meta ^none:.None$", f) == 1);
    T_CHECK(m("~meta ^f:.1\\.5$", f) == 1);
    T_CHECK(m("~meta ^big:.1e\\+20$", f) == 1);
    T_CHECK(m("~meta \"^d: \\\\{'k': \\\\[1, \\\"it's\\\", False\\\\]\\\\}$\"", f) == 1);
    flow_strset(&f->metadata, "not json");
    T_CHECK(m("~meta .", f) == 0);
    flow_free(f);
}

static void test_logic(void)
{
    flow *f = http_flow(true);
    T_CHECK(m("~s & ~c 200 & example", f) == 1);
    T_CHECK(m("~s ~c 200 example", f) == 1);
    T_CHECK(m("~s ~c 404 | example", f) == 1);
    T_CHECK(m("!(~c 404 | ~q )", f) == 1);
    T_CHECK(m("!~s | ~c 404", f) == 0);
    T_CHECK(m("~q | ~c 404 ~s", f) == 0);
    filter *flt = filter_compile("~c 200", NULL, 0);
    T_STREQ(filter_pattern(flt), "~c 200");
    T_CHECK(filter_eval(flt, NULL, NULL, 0) == 0 && filter_eval(NULL, f, NULL, 0) == 0);
    filter_free(flt);
    filter_free(NULL);
    flow_free(f);
}

/* A regex that gives up (here: catastrophic backtracking past the match
 * limit) never passes for "no match": the answer is -1 with a line naming
 * the expression, and and/or/not decide around it only where they can. */
static void test_regex_gives_up(void)
{
    flow *f = http_flow(true);
    char path[200] = "/";
    memset(path + 1, 'x', 60);
    path[61] = '\0';
    flow_strset(&f->request->path, path);
    char body[400];
    memset(body, 'a', 300);
    memcpy(body + 300, "secret", 7);
    bytes_free(&f->request->content);
    bytes_append(&f->request->content, body, strlen(body));
    char err[512];
    filter *flt = filter_compile("~u \"x$|(x+x+)+y\"", err, sizeof err);
    T_CHECK(flt != NULL);
    T_CHECK(filter_eval(flt, f, err, sizeof err) == -1);
    T_CHECK(strstr(err, "~u \"x$|(x+x+)+y\"") != NULL);
    T_CHECK(strstr(err, "limit") != NULL);
    T_CHECK(strchr(err, '\n') == NULL);
    filter_free(flt);
    T_CHECK(m("~u \"x$\"", f) == 1);
    /* the fail_on: a body with "secret" in it */
    T_CHECK(m("~bq \"(a+)+c|secret\"", f) == -1);
    /* Kleene: a definite answer elsewhere decides */
    T_CHECK(m("~s | ~bq \"(a+)+c\"", f) == 1);
    T_CHECK(m("~bq \"(a+)+c\" | ~u x", f) == 1);
    T_CHECK(m("~bq \"(a+)+c\" & ~c 404", f) == 0);
    T_CHECK(m("~bq \"(a+)+c\" & ~s", f) == -1);
    T_CHECK(m("!~bq \"(a+)+c\"", f) == -1);
    T_CHECK(m("~bq \"(a+)+c\" | ~c 404", f) == -1);
    /* the same regex on a short subject answers */
    T_CHECK(m("~bs \"(a+)+c\"", f) == 0);
    flow_free(f);
}

int main(void)
{
    T_RUN(test_regex_gives_up);
    T_RUN(test_precedence);
    T_RUN(test_pyparsing_corners);
    T_RUN(test_quoting);
    T_RUN(test_errors);
    T_RUN(test_limits);
    T_RUN(test_http_basic);
    T_RUN(test_url_domain);
    T_RUN(test_headers);
    T_RUN(test_bodies);
    T_RUN(test_websocket_tcp);
    T_RUN(test_flow_attributes);
    T_RUN(test_logic);
    T_DONE();
}
