/* test_har.c — HAR 1.2 out (every required field checked with a JSON
 * parser), HAR in, round trips through both, and curl export checked by
 * letting bash parse the command line back into arguments. */
#include <fcntl.h>
#include <jansson.h>
#include <stdint.h>
#include <unistd.h>

#include "export.h"
#include "har.h"
#include "mitmio.h"
#include "t.h"

static flow *fx[16];
static int nfx;

static int load_fixture(void)
{
    const char *root = getenv("MITMLUA_ROOT");
    char path[512], err[256];
    snprintf(path, sizeof path, "%s/test/data/mitmdump-8.1.1.flows", root ? root : ".");
    int fd = open(path, O_RDONLY);
    if (fd < 0)
        return -1;
    mitmio_reader *r = mitmio_reader_open_fd(fd, path, err, sizeof err);
    flow *f;
    while (nfx < 16 && mitmio_reader_next(r, &f, err, sizeof err) == 1)
        fx[nfx++] = f;
    mitmio_reader_close(r);
    close(fd);
    return nfx == 9 ? 0 : -1;
}

static int has(json_t *o, const char *k, int type)
{
    json_t *v = json_object_get(o, k);
    if (!v) {
        fprintf(stderr, "  missing %s\n", k);
        return 0;
    }
    if (type >= 0 && json_typeof(v) != (json_type)type &&
        !(type == JSON_REAL && json_is_integer(v))) {
        fprintf(stderr, "  %s has the wrong type\n", k);
        return 0;
    }
    return 1;
}

static int check_nv_list(json_t *a)
{
    size_t i;
    json_t *e;
    if (!json_is_array(a))
        return 0;
    json_array_foreach(a, i, e) {
        if (!has(e, "name", JSON_STRING) || !has(e, "value", JSON_STRING))
            return 0;
    }
    return 1;
}

static const char *tmpfile_path(void)
{
    static char p[64];
    snprintf(p, sizeof p, "/tmp/test_har.%d.har", (int)getpid());
    return p;
}

static void test_export_required_fields(void)
{
    char err[256];
    const char *p = tmpfile_path();
    T_CHECK(har_write_file(p, fx, (size_t)nfx, err, sizeof err) == 0);
    json_error_t je;
    json_t *root = json_load_file(p, 0, &je);
    T_CHECK(root != NULL);
    if (!root)
        return;
    json_t *log = json_object_get(root, "log");
    T_CHECK(has(log, "version", JSON_STRING) && has(log, "creator", JSON_OBJECT) &&
            has(log, "entries", JSON_ARRAY));
    T_STREQ(json_string_value(json_object_get(log, "version")), "1.2");
    json_t *cr = json_object_get(log, "creator");
    T_CHECK(has(cr, "name", JSON_STRING) && has(cr, "version", JSON_STRING));
    json_t *entries = json_object_get(log, "entries");
    T_CHECK(json_array_size(entries) == (size_t)nfx);
    size_t i;
    json_t *e;
    json_array_foreach(entries, i, e) {
        T_CHECK(has(e, "startedDateTime", JSON_STRING) && has(e, "time", JSON_REAL) &&
                has(e, "request", JSON_OBJECT) && has(e, "response", JSON_OBJECT) &&
                has(e, "cache", JSON_OBJECT) && has(e, "timings", JSON_OBJECT));
        const char *when = json_string_value(json_object_get(e, "startedDateTime"));
        T_CHECK(when && strlen(when) == 24 && when[10] == 'T' && when[23] == 'Z');
        json_t *rq = json_object_get(e, "request"), *rs = json_object_get(e, "response");
        T_CHECK(has(rq, "method", JSON_STRING) && has(rq, "url", JSON_STRING) &&
                has(rq, "httpVersion", JSON_STRING) && has(rq, "headersSize", JSON_INTEGER) &&
                has(rq, "bodySize", JSON_INTEGER));
        T_CHECK(check_nv_list(json_object_get(rq, "headers")) &&
                check_nv_list(json_object_get(rq, "queryString")) &&
                json_is_array(json_object_get(rq, "cookies")));
        T_CHECK(has(rs, "status", JSON_INTEGER) && has(rs, "statusText", JSON_STRING) &&
                has(rs, "httpVersion", JSON_STRING) && has(rs, "redirectURL", JSON_STRING) &&
                has(rs, "headersSize", JSON_INTEGER) && has(rs, "bodySize", JSON_INTEGER) &&
                has(rs, "content", JSON_OBJECT) && json_is_array(json_object_get(rs, "cookies")));
        T_CHECK(check_nv_list(json_object_get(rs, "headers")));
        json_t *c = json_object_get(rs, "content");
        T_CHECK(has(c, "size", JSON_INTEGER) && has(c, "mimeType", JSON_STRING));
        json_t *tm = json_object_get(e, "timings");
        T_CHECK(has(tm, "send", JSON_REAL) && has(tm, "wait", JSON_REAL) && has(tm, "receive", JSON_REAL));
        T_CHECK(json_number_value(json_object_get(tm, "send")) >= 0 &&
                json_number_value(json_object_get(tm, "wait")) >= 0);
    }
    /* specific values */
    json_t *e1 = json_array_get(entries, 1);
    json_t *rq1 = json_object_get(e1, "request");
    T_STREQ(json_string_value(json_object_get(rq1, "url")), "http://127.0.0.1:18931/api/items/7?verbose=1");
    json_t *qs = json_array_get(json_object_get(rq1, "queryString"), 0);
    T_STREQ(json_string_value(json_object_get(qs, "name")), "verbose");
    T_STREQ(json_string_value(json_object_get(qs, "value")), "1");
    T_STREQ(json_string_value(json_object_get(e1, "serverIPAddress")), "127.0.0.1");
    json_t *c1 = json_object_get(json_object_get(e1, "response"), "content");
    T_CHECK(strstr(json_string_value(json_object_get(c1, "text")), "\"item-7\"") != NULL);
    T_STREQ(json_string_value(json_object_get(c1, "mimeType")), "application/json");
    /* binary body: base64 */
    json_t *c4 = json_object_get(json_object_get(json_array_get(entries, 4), "response"), "content");
    T_STREQ(json_string_value(json_object_get(c4, "encoding")), "base64");
    /* POST body */
    json_t *pd = json_object_get(json_object_get(json_array_get(entries, 2), "request"), "postData");
    T_STREQ(json_string_value(json_object_get(pd, "text")), "{\"a\":1,\"b\":[true,null]}");
    /* failed flow: status 0 with the error */
    json_t *rs7 = json_object_get(json_array_get(entries, 7), "response");
    T_CHECK(json_integer_value(json_object_get(rs7, "status")) == 0);
    T_CHECK(strstr(json_string_value(json_object_get(rs7, "_error")), "Connect call failed") != NULL);
    json_decref(root);
}

static void test_roundtrip(void)
{
    char err[256];
    const char *p = tmpfile_path();
    T_CHECK(har_write_file(p, fx, (size_t)nfx, err, sizeof err) == 0);
    int fd = open(p, O_RDONLY);
    har_reader *r = har_reader_open_fd(fd, "rt.har", err, sizeof err);
    flow *g;
    int n = 0, rc;
    while ((rc = har_reader_next(r, &g, err, sizeof err)) == 1) {
        flow *o = fx[n];
        T_STREQ(g->request->method, o->request->method);
        T_STREQ(g->request->scheme, o->request->scheme);
        T_STREQ(g->request->host, o->request->host);
        T_CHECK(g->request->port == o->request->port);
        T_STREQ(g->request->path, o->request->path);
        T_CHECK(g->request->headers.n == o->request->headers.n);
        T_CHECK(g->request->content.len == o->request->content.len &&
                (!g->request->content.len ||
                 !memcmp(g->request->content.p, o->request->content.p, o->request->content.len)));
        T_CHECK(!g->response == !o->response);
        if (g->response && o->response) {
            T_CHECK(g->response->status_code == o->response->status_code);
            T_STREQ(g->response->reason, o->response->reason);
            size_t l1, l2;
            const char *ce = hdrs_get(&o->response->headers, "content-encoding", &l1);
            if (!ce || hdrs_get(&g->response->headers, "content-encoding", &l2)) {
                /* bodies compare when not re-encoded (re-encoding may differ) */
                if (!ce)
                    T_CHECK(g->response->content.len == o->response->content.len &&
                            (!o->response->content.len || !memcmp(g->response->content.p, o->response->content.p,
                                    o->response->content.len)));
            }
        }
        T_CHECK(!g->error == !o->error);
        T_CHECK(g->timestamp_created > 0 && g->timestamp_created - o->request->timestamp_start < 0.002 &&
                g->timestamp_created - o->request->timestamp_start > -0.002);
        n++;
        flow_free(g);
    }
    T_CHECK(rc == 0 && n == nfx);
    har_reader_close(r);
    close(fd);
    unlink(p);
}

static void test_reader_foreign(void)
{
    /* what a browser writes: h2 pseudo-headers, offsets, base64, params */
    const char *doc =
        "{\"log\":{\"version\":\"1.2\",\"creator\":{\"name\":\"x\",\"version\":\"1\"},\"entries\":["
        "{\"startedDateTime\":\"2024-01-02T03:04:05.250+01:00\",\"time\":50,"
        "\"request\":{\"method\":\"POST\",\"url\":\"https://[::1]:8443/f?a=1#frag\",\"httpVersion\":\"h2\","
        "\"headers\":[{\"name\":\":authority\",\"value\":\"x\"},{\"name\":\"Content-Type\",\"value\":\"application/x-www-form-urlencoded\"}],"
        "\"postData\":{\"mimeType\":\"application/x-www-form-urlencoded\",\"params\":[{\"name\":\"a\",\"value\":\"b\"},{\"name\":\"c\",\"value\":\"d\"}]}},"
        "\"response\":{\"status\":200,\"statusText\":\"\",\"httpVersion\":\"h2\",\"headers\":[],"
        "\"content\":{\"size\":3,\"mimeType\":\"x\",\"text\":\"AAEC\",\"encoding\":\"base64\"}},"
        "\"timings\":{\"blocked\":-1,\"dns\":-1,\"connect\":10,\"ssl\":5,\"send\":1,\"wait\":20,\"receive\":2}},"
        "{\"request\":{}},"
        "{\"startedDateTime\":\"2024-01-02T03:04:05Z\",\"request\":{\"method\":\"GET\",\"url\":\"http://h/\"},\"response\":{\"status\":0}}"
        "]}}";
    char err[256];
    har_reader *r = har_reader_open_prefixed(-1, "b.har", doc, strlen(doc), err, sizeof err);
    flow *g;
    T_CHECK(har_reader_next(r, &g, err, sizeof err) == 1);
    if (g) {
        T_STREQ(g->request->host, "::1");
        T_CHECK(g->request->port == 8443);
        T_STREQ(g->request->path, "/f?a=1");
        T_STREQ(g->request->http_version, "HTTP/2.0");
        T_CHECK(g->request->headers.n == 1);
        T_CHECK(g->request->content.len == 7 && !memcmp(g->request->content.p, "a=b&c=d", 7));
        T_CHECK(g->response->content.len == 3 && !memcmp(g->response->content.p, "\0\1\2", 3));
        /* 03:04:05.25 at +01:00 = 02:04:05.25 UTC */
        T_CHECK(g->timestamp_created > 1704161045.24 && g->timestamp_created < 1704161045.26);
        T_CHECK(g->server.tls && g->server.timestamp_tls_setup > g->server.timestamp_tcp_setup);
        T_CHECK(g->response->timestamp_start - g->request->timestamp_end > 0.0199);
        flow_free(g);
    }
    T_CHECK(har_reader_next(r, &g, err, sizeof err) == -1 && strstr(err, "entry 1"));
    T_CHECK(har_reader_next(r, &g, err, sizeof err) == 1 && g->response == NULL && g->error);
    flow_free(g);
    T_CHECK(har_reader_next(r, &g, err, sizeof err) == 0);
    har_reader_close(r);
    r = har_reader_open_prefixed(-1, "bad", "{\"x\":", 5, err, sizeof err);
    T_CHECK(har_reader_next(r, &g, err, sizeof err) == -1 && strstr(err, "not JSON"));
    T_CHECK(har_reader_next(r, &g, err, sizeof err) == 0);
    har_reader_close(r);
}

/* Let bash parse the command: `curl` is a function that prints each
 * argument NUL-terminated, then what arrives on stdin. */
static size_t shell_args(const char *cmd, char *out, size_t cap)
{
    char script[] = "/tmp/test_har_curl.XXXXXX";
    int fd = mkstemp(script);
    FILE *fp = fdopen(fd, "w");
    fprintf(fp, "curl() { printf '%%s\\0' \"$@\"; if [ -p /dev/stdin ]; then cat; fi; }\n%s\n", cmd);
    fclose(fp);
    char run[128];
    snprintf(run, sizeof run, "bash %s < /dev/null", script);
    FILE *pp = popen(run, "r");
    size_t n = fread(out, 1, cap, pp);
    pclose(pp);
    unlink(script);
    return n;
}

static void test_curl(void)
{
    flow *f = flow_new();
    f->request = flow_request_new();
    flow_strset(&f->request->method, "POST");
    flow_strset(&f->request->scheme, "https");
    flow_strset(&f->request->host, "api.example.test");
    f->request->port = 443;
    flow_strset(&f->request->path, "/a b?q='x'&$HOME");
    flow_strset(&f->request->http_version, "HTTP/1.1");
    hdrs_add(&f->request->headers, "Host", 4, "api.example.test", 16);
    hdrs_add(&f->request->headers, "X-Quote", 7, "it's \"q\" $x `y`", 15);
    hdrs_add(&f->request->headers, "Content-Length", 14, "5", 1);
    hdrs_add(&f->request->headers, "X-Empty", 7, "", 0);
    bytes_set(&f->request->content, "a'b\\c", 5);
    char *cmd = export_curl(f);
    T_CHECK(cmd != NULL);
    char out[4096];
    size_t n = shell_args(cmd, out, sizeof out);
    const char want[] = "-X\0POST\0-H\0X-Quote: it's \"q\" $x `y`\0-H\0X-Empty;\0--data-binary\0a'b\\c\0"
                        "https://api.example.test/a b?q='x'&$HOME";
    T_CHECK(n == sizeof want && memcmp(out, want, sizeof want) == 0);
    if (n != sizeof want || memcmp(out, want, sizeof want))
        fprintf(stderr, "  command: %s\n", cmd);
    free(cmd);
    /* binary body with NULs: piped through printf */
    bytes_set(&f->request->content, "\0\1'\\\xff" "z", 6);
    cmd = export_curl(f);
    n = shell_args(cmd, out, sizeof out);
    const char want2[] = "-X\0POST\0-H\0X-Quote: it's \"q\" $x `y`\0-H\0X-Empty;\0--data-binary\0@-\0"
                         "https://api.example.test/a b?q='x'&$HOME\0\0\1'\\\xffz";
    T_CHECK(n == sizeof want2 - 1 && memcmp(out, want2, sizeof want2 - 1) == 0);
    if (n != sizeof want2 - 1)
        fprintf(stderr, "  command: %s (%zu)\n", cmd, n);
    free(cmd);
    /* GET with a control byte in a header: $'...' */
    free(f->request->method);
    f->request->method = strdup("GET");
    bytes_reset(&f->request->content);
    hdrs_free(&f->request->headers);
    hdrs_add(&f->request->headers, "X-Ctl", 5, "a\tb\x01", 4);
    f->request->port = 8443;
    cmd = export_curl(f);
    n = shell_args(cmd, out, sizeof out);
    const char want3[] = "-H\0X-Ctl: a\tb\x01\0https://api.example.test:8443/a b?q='x'&$HOME";
    T_CHECK(n == sizeof want3 && memcmp(out, want3, sizeof want3) == 0);
    free(cmd);
    flow_free(f);
}

int main(void)
{
    if (load_fixture() < 0) {
        printf("not ok 1 - fixture test/data/mitmdump-8.1.1.flows missing (set MITMLUA_ROOT)\n");
        return 1;
    }
    T_RUN(test_export_required_fields);
    T_RUN(test_roundtrip);
    T_RUN(test_reader_foreign);
    T_RUN(test_curl);
    for (int i = 0; i < nfx; i++)
        flow_free(fx[i]);
    T_DONE();
}
