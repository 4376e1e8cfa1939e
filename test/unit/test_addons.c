/* test_addons.c — the spec parser ("[/filter]/subject/replacement"), Python
 * escapes and re.sub templates, config.yaml, and the addons on flows made
 * in memory (map_remote, modify_headers, modify_body, anticache, anticomp,
 * stickyauth, stickycookie).  Expected values come from Python 3 / mitmproxy. */
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "addons.h"
#include "config.h"
#include "opts.h"
#include "spec.h"
#include "t.h"

static void test_spec_split(void)
{
    spec s;
    char err[512];
    T_CHECK(spec_parse("map_remote", "|a|b", &s, err, sizeof err) == 0);
    T_CHECK(s.flt == NULL);
    T_STREQ(s.subject, "a");
    T_STREQ(s.replacement, "b");
    T_CHECK(s.subject_at == 1 && s.replacement_at == 3);
    spec_free(&s);
    /* three parts: the first is a filter; a fourth separator belongs to the replacement */
    T_CHECK(spec_parse("map_remote", "|~q|a|b|c", &s, err, sizeof err) == 0);
    T_CHECK(s.flt != NULL);
    T_STREQ(s.subject, "a");
    T_STREQ(s.replacement, "b|c");
    spec_free(&s);
    /* any separator, including a multi-byte one */
    T_CHECK(spec_parse("modify_body", ":x:y", &s, err, sizeof err) == 0);
    T_STREQ(s.subject, "x");
    spec_free(&s);
    T_CHECK(spec_parse("modify_body", "\xc2\xa7x\xc2\xa7y/z", &s, err, sizeof err) == 0);
    T_STREQ(s.subject, "x");
    T_STREQ(s.replacement, "y/z");
    spec_free(&s);
    /* empty replacement is allowed (modify_headers removes the header) */
    T_CHECK(spec_parse("modify_headers", "/X-Foo/", &s, err, sizeof err) == 0);
    T_STREQ(s.replacement, "");
    spec_free(&s);
}

static void test_spec_errors(void)
{
    spec s;
    char err[512];
    T_CHECK(spec_parse("map_remote", "|only", &s, err, sizeof err) < 0);
    T_CHECK(strstr(err, "map_remote: invalid spec '|only' at column 6") != NULL);
    T_CHECK(strstr(err, "2 or 3 parts") != NULL);
    T_CHECK(spec_parse("map_remote", "", &s, err, sizeof err) < 0);
    T_CHECK(strstr(err, "map_remote") != NULL);
    /* a bad filter: the column points into the whole spec */
    T_CHECK(spec_parse("modify_headers", "|~c abc|X|y", &s, err, sizeof err) < 0);
    T_CHECK(strstr(err, "modify_headers: invalid spec '|~c abc|X|y' at column 5") != NULL);
    T_CHECK(strstr(err, "number") != NULL);
}

static void test_unescape(void)
{
    bytes b = {0};
    size_t at = 0;
    char err[256];
    T_CHECK(spec_unescape("a\\x41\\n\\q\\101", 13, &b, &at, err, sizeof err) == 0);
    T_CHECK(b.len == 6 && memcmp(b.p, "aA\n\\qA", 6) == 0);
    T_CHECK(spec_unescape("ab\\x4", 5, &b, &at, err, sizeof err) < 0 && at == 2);
    T_CHECK(spec_unescape("ab\\", 3, &b, &at, err, sizeof err) < 0 && at == 2);
    T_CHECK(spec_unescape("\\x00z", 5, &b, &at, err, sizeof err) == 0 && b.len == 2 && b.p[0] == 0);
    bytes_free(&b);
}

static char *sub(const char *pat, unsigned fl, const char *repl, const char *s)
{
    size_t at;
    char err[256];
    spec_regex *re = spec_regex_compile(pat, strlen(pat), fl, &at, err, sizeof err);
    if (!re)
        return NULL;
    spec_template *t = spec_template_compile(re, repl, strlen(repl), false, &at, err, sizeof err);
    bytes out = {0};
    char *r = NULL;
    if (t && spec_sub(re, t, s, strlen(s), &out) >= 0)
        r = strdup(out.p);
    bytes_free(&out);
    spec_template_free(t);
    spec_regex_free(re);
    return r;
}

#define SUB_EQ(pat, fl, repl, s, want)             \
    do {                                           \
        char *got_ = sub(pat, fl, repl, s);        \
        T_STREQ(got_, want);                       \
        free(got_);                                \
    } while (0)

static void test_resub(void)
{
    /* expected values: Python 3's re.sub */
    SUB_EQ("x*", 0, "-", "abxd", "-a-b--d-");
    SUB_EQ("", 0, "-", "ab", "-a-b-");
    SUB_EQ("(?P<w>o+)", 0, "[\\g<w>\\1]", "foo boo", "f[oooo] b[oooo]");
    SUB_EQ("(a)|b", 0, "<\\1>", "ab", "<a><>");
    SUB_EQ("a.c", SPEC_RX_DOTALL, "X", "a\nc", "X");
    SUB_EQ("a.c", 0, "X", "a\nc", "a\nc");
    SUB_EQ("o", 0, "\\n\\t", "o", "\n\t");
    SUB_EQ("o", 0, "\\.", "o", "\\.");
    SUB_EQ("^http://a\\.test(:\\d+)?/", SPEC_RX_TEXT, "https://b.test:8443/", "http://a.test:80/x?y",
           "https://b.test:8443/x?y");
    SUB_EQ("end\\Z", 0, "E", "the end", "the E");

    size_t at;
    char err[256];
    spec_regex *re = spec_regex_compile("(a)", 3, 0, &at, err, sizeof err);
    T_CHECK(re && spec_regex_groups(re) == 1);
    T_CHECK(spec_template_compile(re, "\\2", 2, false, &at, err, sizeof err) == NULL);
    T_CHECK(strstr(err, "invalid group reference 2") != NULL && at == 0);
    T_CHECK(spec_template_compile(re, "ab\\q", 4, false, &at, err, sizeof err) == NULL);
    T_CHECK(strstr(err, "bad escape") != NULL && at == 2);
    T_CHECK(spec_template_compile(re, "\\g<nope>", 8, false, &at, err, sizeof err) == NULL);
    spec_template *lit = spec_template_compile(re, "\\1", 2, true, &at, err, sizeof err);
    bytes out = {0};
    T_CHECK(lit && spec_sub(re, lit, "xa", 2, &out) == 1);
    T_STREQ(out.p, "x\\1");
    bytes_free(&out);
    spec_template_free(lit);
    spec_regex_free(re);
    T_CHECK(spec_regex_compile("(a", 2, 0, &at, err, sizeof err) == NULL);
    T_CHECK(strstr(err, "invalid regular expression") != NULL && at == 2);
}

/* ---- config.yaml ---- */

typedef struct cfg_seen {
    char buf[2048];
} cfg_seen;

static int cfg_cb(void *ud, const char *key, char **vals, size_t n, bool is_list, char *err, size_t errsz)
{
    cfg_seen *s = ud;
    size_t l = strlen(s->buf);
    snprintf(s->buf + l, sizeof s->buf - l, "%s%s=", l ? ";" : "", key);
    if (is_list)
        strncat(s->buf, "[", sizeof s->buf - strlen(s->buf) - 1);
    for (size_t i = 0; i < n; i++) {
        if (i)
            strncat(s->buf, ",", sizeof s->buf - strlen(s->buf) - 1);
        strncat(s->buf, vals[i], sizeof s->buf - strlen(s->buf) - 1);
    }
    if (is_list)
        strncat(s->buf, "]", sizeof s->buf - strlen(s->buf) - 1);
    if (!n && !is_list)
        strncat(s->buf, "null", sizeof s->buf - strlen(s->buf) - 1);
    if (!strcmp(key, "boom")) {
        snprintf(err, errsz, "boom is not an option");
        return -1;
    }
    return 0;
}

static void test_config(void)
{
    cfg_seen s = {{0}};
    char err[512];
    /* a flow list must be closed */
    const char *text = "modify_headers: [\"/X-A/1\", '/X-B/it''s', plain # c\n";
    T_CHECK(config_parse(text, "config.yaml", cfg_cb, &s, err, sizeof err) < 0);
    T_CHECK(strncmp(err, "config.yaml:2:1: YAML: ", 23) == 0);

    memset(&s, 0, sizeof s);
    text = "---\n"
           "listen_port: 8081   # a comment\n"
           "\n"
           "anticomp: &yes true\n"
           "map_remote:\n"
           "- '|example.com|test.com'\n"
           "- \"|a|b \\u00e9 \\\"q\\\"\"\n"
           "modify_headers: [\"/X-A/1\", '/X-B/it''s', plain]\n"
           "stickycookie: ~\n"
           "scripts: []\n"
           "empty:\n"
           "anticache: *yes\n"
           "modify_body:\n"
           "  - &rule /~q/a/b\n"
           "  - *rule\n"
           "folded: >-\n"
           "  one\n"
           "  two\n"
           "literal: |\n"
           "  line 1\n"
           "  line 2\n"
           "multi: \"a\n"
           "  b\"\n"
           "quoted_null: 'null'\n";
    T_CHECK(config_parse(text, "config.yaml", cfg_cb, &s, err, sizeof err) == 0);
    T_STREQ(s.buf, "listen_port=8081;anticomp=true;map_remote=[|example.com|test.com,|a|b \xc3\xa9 \"q\"];"
                   "modify_headers=[/X-A/1,/X-B/it's,plain];stickycookie=null;scripts=[];empty=null;"
                   "anticache=true;modify_body=[/~q/a/b,/~q/a/b];folded=one two;literal=line 1\nline 2\n;"
                   "multi=a b;quoted_null=null");
    /* an empty file and a comment-only file set nothing */
    memset(&s, 0, sizeof s);
    T_CHECK(config_parse("", "config.yaml", cfg_cb, &s, err, sizeof err) == 0);
    T_CHECK(config_parse("# nothing\n", "config.yaml", cfg_cb, &s, err, sizeof err) == 0);
    T_STREQ(s.buf, "");

    struct {
        const char *text, *want;
    } bad[] = {
        {"a: 1\n  b: 2\n", "config.yaml:2:4: YAML: mapping values are not allowed"},
        {"a: 1\nnot a pair\n", "config.yaml:3:1: YAML: could not find expected ':'"},
        {"a:\n  b: 1\n", "config.yaml:2:3: a: expected a value or a list, not a mapping"},
        {"- x\n", "config.yaml:1:1: expected 'option: value' lines, not a list"},
        {"a: 'open\n", "config.yaml:2:1: YAML: found unexpected end of stream"},
        {"a: 1\na: 2\n", "config.yaml:2:1: duplicate key 'a'"},
        {"a: 1\nboom: 2\n", "config.yaml:2:1: boom is not an option"},
        {"a: \"\\q\"\n", "config.yaml:1:5: YAML: found unknown escape character"},
        {"a: [[1]]\n", "config.yaml:1:5: a list item must be a single value, not a list"},
        {"a: *nowhere\n", "config.yaml:1:4: unknown alias *nowhere"},
        {"a: 1\n---\nb: 2\n", "config.yaml:2:1: more than one YAML document"},
        {"just text\n", "config.yaml:1:1: expected 'option: value' lines"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        memset(&s, 0, sizeof s);
        err[0] = '\0';
        T_CHECK(config_parse(bad[i].text, "config.yaml", cfg_cb, &s, err, sizeof err) < 0);
        if (strncmp(err, bad[i].want, strlen(bad[i].want)) != 0)
            fprintf(stderr, "  config case %zu: got '%s'\n", i, err);
        T_CHECK(strncmp(err, bad[i].want, strlen(bad[i].want)) == 0);
    }
}

/* ---- addons on in-memory flows ---- */

static flow *mkflow(const char *host, uint16_t port, const char *path)
{
    flow *f = flow_new();
    f->request = flow_request_new();
    f->request->method = strdup("GET");
    f->request->scheme = strdup("http");
    f->request->host = strdup(host);
    f->request->port = port;
    f->request->path = strdup(path);
    f->request->http_version = strdup("HTTP/1.1");
    f->request->authority = strdup("");
    char hv[300];
    snprintf(hv, sizeof hv, "%s:%u", host, port);
    hdrs_add(&f->request->headers, "Host", 4, hv, strlen(hv));
    return f;
}

static char *strlist[8];

static addons *mk(opts *o)
{
    char err[512];
    addons *a = addons_new(o, err, sizeof err);
    if (!a)
        fprintf(stderr, "  addons_new: %s\n", err);
    return a;
}

static void test_map_remote(void)
{
    opts o;
    opts_defaults(&o);
    strlist[0] = "|~d a.test|//a\\.test:8080/(.*)|//b.test:9090/v2/\\1";
    strlist[1] = "|nomatch|zzz";
    o.map_remote = strlist;
    o.nmap_remote = 2;
    addons *a = mk(&o);
    T_CHECK(a != NULL);
    flow *f = mkflow("a.test", 8080, "/x?q=1");
    T_CHECK(!addons_request(a, f));
    T_STREQ(f->request->host, "b.test");
    T_CHECK(f->request->port == 9090);
    T_STREQ(f->request->path, "/v2/x?q=1");
    T_STREQ(hdrs_get(&f->request->headers, "host", NULL), "b.test:9090");
    flow_free(f);
    /* the URL matched is mitmproxy's pretty_url: host from the Host header */
    f = mkflow("10.0.0.1", 8080, "/z");
    hdrs_set(&f->request->headers, "Host", "a.test:8080", 11);
    addons_request(a, f);
    T_STREQ(f->request->host, "b.test");
    T_STREQ(f->request->path, "/v2/z");
    flow_free(f);
    /* the filter does not match: nothing changes */
    f = mkflow("c.test", 8080, "/x");
    addons_request(a, f);
    T_STREQ(f->request->host, "c.test");
    flow_free(f);
    addons_free(a);

    /* to https on the default port: scheme follows, Host without port;
     * keep_host_header leaves Host alone */
    strlist[0] = "|http://a.test:8080/|https://b.test/";
    o.nmap_remote = 1;
    a = mk(&o);
    f = mkflow("a.test", 8080, "/y");
    addons_request(a, f);
    T_STREQ(f->request->scheme, "https");
    T_CHECK(f->request->port == 443);
    T_STREQ(hdrs_get(&f->request->headers, "host", NULL), "b.test");
    flow_free(f);
    addons_free(a);
    o.keep_host_header = true;
    a = mk(&o);
    f = mkflow("a.test", 8080, "/y");
    addons_request(a, f);
    T_STREQ(f->request->host, "b.test");
    T_STREQ(hdrs_get(&f->request->headers, "host", NULL), "a.test:8080");
    flow_free(f);
    addons_free(a);
    o.map_remote = NULL;
    o.nmap_remote = 0;
    opts_free(&o);
}

static void test_new_errors(void)
{
    opts o;
    opts_defaults(&o);
    char err[512];
    strlist[0] = "|x(|y";
    o.map_remote = strlist;
    o.nmap_remote = 1;
    T_CHECK(addons_new(&o, err, sizeof err) == NULL);
    T_CHECK(strstr(err, "map_remote: invalid spec '|x(|y' at column 4: invalid regular expression") != NULL);
    o.nmap_remote = 0;
    strlist[0] = "|x|/nonexistent/dir/for/sure";
    o.map_local = strlist;
    o.nmap_local = 1;
    T_CHECK(addons_new(&o, err, sizeof err) == NULL);
    T_CHECK(strstr(err, "map_local: invalid spec '|x|/nonexistent/dir/for/sure' at column 4: invalid file path") !=
            NULL);
    o.nmap_local = 0;
    /* "/X/@/nonexistent/file" would split into filter "X", name "@": use another separator */
    strlist[0] = "|X|@/nonexistent/file";
    o.modify_headers = strlist;
    o.nmodify_headers = 1;
    T_CHECK(addons_new(&o, err, sizeof err) == NULL);
    T_CHECK(strstr(err, "modify_headers: invalid spec '|X|@/nonexistent/file' at column 4: cannot read") != NULL);
    o.nmodify_headers = 0;
    strlist[0] = "/a/\\\\2";  /* "\\2" unescapes to the template "\2" ("\2" alone is byte 2) */
    o.modify_body = strlist;
    o.nmodify_body = 1;
    T_CHECK(addons_new(&o, err, sizeof err) == NULL);
    T_CHECK(strstr(err, "invalid group reference") != NULL);
    o.nmodify_body = 0;
    o.stickycookie = strdup("~c x");
    T_CHECK(addons_new(&o, err, sizeof err) == NULL);
    T_CHECK(strstr(err, "stickycookie: invalid filter '~c x'") != NULL);
    free(o.stickycookie);
    o.stickycookie = NULL;
    /* nothing set: no object and no error */
    T_CHECK(addons_new(&o, err, sizeof err) == NULL && err[0] == '\0');
    o.map_remote = o.map_local = o.modify_headers = o.modify_body = NULL;
    o.nmap_remote = o.nmap_local = o.nmodify_headers = o.nmodify_body = 0;
    opts_free(&o);
}

static void test_modify(void)
{
    opts o;
    opts_defaults(&o);
    char *hl[] = {"|~q|X-Req|1", "|~s|X-Resp|2", "/Accept/", "/X-Multi/a", "/X-Multi/b"};
    char *bl[] = {"|~q|foo|bar", "|~s|(\\w+)@x|\\\\1 at x"};
    o.modify_headers = hl;
    o.nmodify_headers = 5;
    o.modify_body = bl;
    o.nmodify_body = 2;
    o.anticache = true;
    o.anticomp = true;
    addons *a = mk(&o);
    flow *f = mkflow("a.test", 80, "/");
    hdrs_add(&f->request->headers, "Accept", 6, "*/*", 3);
    hdrs_add(&f->request->headers, "If-None-Match", 13, "\"e\"", 3);
    hdrs_add(&f->request->headers, "Accept-Encoding", 15, "gzip", 4);
    bytes_set(&f->request->content, "foo foo", 7);
    addons_request(a, f);
    hdrs *h = &f->request->headers;
    T_STREQ(hdrs_get(h, "x-req", NULL), "1");
    T_CHECK(hdrs_get(h, "x-resp", NULL) == NULL);
    T_CHECK(hdrs_get(h, "accept", NULL) == NULL);
    T_CHECK(hdrs_get(h, "if-none-match", NULL) == NULL);
    T_STREQ(hdrs_get(h, "accept-encoding", NULL), "identity");
    ssize_t i1 = hdrs_find(h, "x-multi", 0);
    T_CHECK(i1 >= 0 && hdrs_find(h, "x-multi", (size_t)i1 + 1) > i1);
    T_STREQ(f->request->content.p, "bar bar");
    T_STREQ(hdrs_get(h, "content-length", NULL), "7");
    f->response = flow_response_new();
    f->response->status_code = 200;
    bytes_set(&f->response->content, "mail me@x", 9);
    addons_response(a, f);
    T_STREQ(f->response->content.p, "mail me at x");
    T_STREQ(hdrs_get(&f->response->headers, "x-resp", NULL), "2");
    T_CHECK(hdrs_get(&f->response->headers, "x-req", NULL) == NULL);
    flow_free(f);
    addons_free(a);
    o.modify_headers = o.modify_body = NULL;
    o.nmodify_headers = o.nmodify_body = 0;
    opts_free(&o);
}

static void test_sticky(void)
{
    opts o;
    opts_defaults(&o);
    o.stickycookie = strdup("~d a.test");
    o.stickyauth = strdup(".");
    addons *a = mk(&o);
    flow *f = mkflow("a.test", 80, "/login");
    hdrs_add(&f->request->headers, "Authorization", 13, "Basic eA==", 10);
    addons_request(a, f);
    f->response = flow_response_new();
    f->response->status_code = 200;
    const char *sc1 = "sid=abc; Path=/; HttpOnly", *sc2 = "lang=en", *sc3 = "old=1; Max-Age=0";
    hdrs_add(&f->response->headers, "Set-Cookie", 10, sc1, strlen(sc1));
    hdrs_add(&f->response->headers, "Set-Cookie", 10, sc2, strlen(sc2));
    hdrs_add(&f->response->headers, "Set-Cookie", 10, sc3, strlen(sc3));
    addons_response(a, f);
    flow_free(f);

    f = mkflow("a.test", 80, "/next");
    addons_request(a, f);
    T_STREQ(hdrs_get(&f->request->headers, "cookie", NULL), "sid=abc; lang=en");
    T_STREQ(hdrs_get(&f->request->headers, "authorization", NULL), "Basic eA==");
    T_CHECK(f->metadata && strstr(f->metadata, "\"stickycookie\":true"));
    flow_free(f);
    /* another port or host: no cookie (the auth is per host) */
    f = mkflow("a.test", 81, "/next");
    addons_request(a, f);
    T_CHECK(hdrs_get(&f->request->headers, "cookie", NULL) == NULL);
    flow_free(f);
    f = mkflow("b.test", 80, "/next");
    addons_request(a, f);
    T_CHECK(hdrs_get(&f->request->headers, "cookie", NULL) == NULL);
    T_CHECK(hdrs_get(&f->request->headers, "authorization", NULL) == NULL);
    flow_free(f);
    /* an expired Set-Cookie removes it */
    f = mkflow("a.test", 80, "/logout");
    f->response = flow_response_new();
    const char *ex = "sid=; Expires=Thu, 01 Jan 1970 00:00:00 GMT";
    hdrs_add(&f->response->headers, "Set-Cookie", 10, ex, strlen(ex));
    addons_response(a, f);
    flow_free(f);
    f = mkflow("a.test", 80, "/again");
    addons_request(a, f);
    T_STREQ(hdrs_get(&f->request->headers, "cookie", NULL), "lang=en");
    flow_free(f);
    addons_free(a);
    opts_free(&o);
}

/* Expected values from Python: re.sub(r"([a-zA-Z0-9.-]*:\d{1,5})", ":8080", v) */
static void test_alt_svc(void)
{
    static const char *const cases[][2] = {
        {"h3=\":443\"; ma=2592000,h3-29=\":443\"", "h3=\":8080\"; ma=2592000,h3-29=\":8080\""},
        {"h2=\"alt.example.com:8443\"", "h2=\":8080\""},
        {"clear", "clear"},
        {"h3=\"a:123456\"", "h3=\":80806\""},
        {"x=\"[::1]:443\"", "x=\"[::8080]:8080\""},
        {"a:b:1", "a::8080"},
        {":", ":"},
        {"h3=\":\"", "h3=\":\""},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        flow_response *r = flow_response_new();
        T_CHECK(hdrs_add(&r->headers, "Alt-Svc", 7, cases[i][0], strlen(cases[i][0])) == 0);
        addons_alt_svc(r, 8080);
        T_STREQ(hdrs_get(&r->headers, "alt-svc", NULL), cases[i][1]);
        flow_response_free(r);
    }
    /* several fields become one, joined as mitmproxy's headers[...] reads them */
    flow_response *r = flow_response_new();
    hdrs_add(&r->headers, "Alt-Svc", 7, "h3=\":443\"", 9);
    hdrs_add(&r->headers, "alt-svc", 7, "clear", 5);
    addons_alt_svc(r, 1);
    T_STREQ(hdrs_get(&r->headers, "alt-svc", NULL), "h3=\":1\", clear");
    T_CHECK(hdrs_find(&r->headers, "alt-svc", 1) < 0);
    flow_response_free(r);
}

int main(void)
{
    T_RUN(test_spec_split);
    T_RUN(test_spec_errors);
    T_RUN(test_unescape);
    T_RUN(test_resub);
    T_RUN(test_config);
    T_RUN(test_map_remote);
    T_RUN(test_new_errors);
    T_RUN(test_modify);
    T_RUN(test_sticky);
    T_RUN(test_alt_svc);
    T_DONE();
}
