/* test_report.c — the HTML report: the escaping that keeps recorded bytes
 * inside the page's data blocks, one flow's record (bodies decoded, cut on
 * a character boundary, binary and images in base64), and a whole page
 * (three script blocks, a CSP that hashes the page's own script, records
 * that inflate to the flows written). */
#include <jansson.h>
#include <openssl/evp.h>
#include <openssl/sha.h>
#include <unistd.h>
#include <zlib.h>

#include "encoding.h"
#include "report.h"
#include "t.h"

static const char EVIL[] = "</script><script>alert(1)</script><!--<script>";

static void test_escape(void)
{
    /* every character that could end the block or start a comment or a
     * line break in old JavaScript, among plain text */
    const char in[] = "{\"a\":\"</script>&<!--\xe2\x80\xa8x\xe2\x80\xa9\xe2\x80\xa7\"}";
    bytes out = {0};
    T_CHECK(report_json_escape(in, sizeof in - 1, &out) == 0);
    T_STREQ(out.p, "{\"a\":\"\\u003c/script\\u003e\\u0026\\u003c!--\\u2028x\\u2029\xe2\x80\xa7\"}");
    /* still the same JSON */
    json_t *a = json_loads(in, 0, NULL), *b = json_loads(out.p, 0, NULL);
    T_CHECK(a && b && json_equal(a, b));
    json_decref(a);
    json_decref(b);
    /* nothing to escape: the same bytes */
    bytes_reset(&out);
    T_CHECK(report_json_escape("[1,\"x\"]", 7, &out) == 0);
    T_STREQ(out.p, "[1,\"x\"]");
    /* an empty input, and one ending inside a 3-byte sequence */
    bytes_reset(&out);
    T_CHECK(report_json_escape("", 0, &out) == 0 && out.len == 0);
    T_CHECK(report_json_escape("\"\xe2\x80", 3, &out) == 0 && out.len == 3);
    bytes_free(&out);
}

static flow *make_flow(void)
{
    flow *f = flow_new();
    flow_request *q = flow_request_new();
    flow_response *s = flow_response_new();
    f->request = q;
    f->response = s;
    flow_strset(&q->method, "GET");
    flow_strset(&q->scheme, "http");
    flow_strset(&q->host, "example.test");
    q->port = 80;
    flow_strset(&q->path, "/x?q=</script><script>alert(3)</script>");
    flow_strset(&q->http_version, "HTTP/1.1");
    hdrs_add(&q->headers, "X-Evil", 6, EVIL, strlen(EVIL));
    q->timestamp_start = f->timestamp_created + 0.001;
    q->timestamp_end = f->timestamp_created + 0.002;
    s->status_code = 200;
    flow_strset(&s->reason, "OK");
    hdrs_add(&s->headers, "Content-Type", 12, "text/html", 9);
    bytes_set(&s->content, EVIL, strlen(EVIL));
    s->timestamp_start = f->timestamp_created + 0.010;
    s->timestamp_end = f->timestamp_created + 0.020;
    return f;
}

static json_t *record(const flow *f, size_t limit, int fail_on)
{
    char *s = report_flow_json(f, limit, fail_on);
    json_t *j = s ? json_loads(s, 0, NULL) : NULL;
    free(s);
    return j;
}

static void test_flow_record(void)
{
    flow *f = make_flow();
    json_t *j = record(f, 0, 1);
    T_CHECK(j != NULL);
    T_STREQ(json_string_value(json_object_get(j, "m")), "GET");
    T_STREQ(json_string_value(json_object_get(j, "u")), "http://example.test/x?q=</script><script>alert(3)</script>");
    T_CHECK(json_integer_value(json_object_get(j, "s")) == 200);
    T_CHECK(json_integer_value(json_object_get(j, "fo")) == 1);
    json_t *h = json_array_get(json_object_get(j, "q"), 0);
    T_STREQ(json_string_value(json_array_get(h, 1)), EVIL);
    json_t *sb = json_object_get(j, "sb");
    T_STREQ(json_string_value(json_object_get(sb, "t")), EVIL);   /* HTML is text */
    T_CHECK(json_integer_value(json_object_get(sb, "n")) == (json_int_t)strlen(EVIL));
    /* timings: microseconds after the flow began */
    json_t *tm = json_object_get(j, "tm");
    T_CHECK(json_integer_value(json_array_get(tm, 3)) == 1000 && json_integer_value(json_array_get(tm, 6)) == 20000);
    T_CHECK(json_is_null(json_array_get(tm, 0)));
    json_decref(j);

    /* cut at the limit on a character boundary: "é" is 2 bytes */
    bytes_set(&f->response->content, "ab\xc3\xa9\xc3\xa9", 6);
    j = record(f, 3, 0);
    sb = json_object_get(j, "sb");
    T_STREQ(json_string_value(json_object_get(sb, "t")), "ab");
    T_CHECK(json_is_true(json_object_get(sb, "cut")) && json_integer_value(json_object_get(sb, "n")) == 6);
    T_CHECK(json_object_get(j, "fo") == NULL);
    json_decref(j);

    /* binary in base64, cut too */
    bytes_set(&f->response->content, "\x00\x01\x02\x03\xff", 5);
    j = record(f, 4, 0);
    sb = json_object_get(j, "sb");
    T_STREQ(json_string_value(json_object_get(sb, "b64")), "AAECAw==");
    T_CHECK(json_is_true(json_object_get(sb, "cut")));
    json_decref(j);

    /* an image whole, or nothing when over the limit */
    hdrs_set(&f->response->headers, "Content-Type", "image/png", 9);
    j = record(f, 100, 0);
    T_STREQ(json_string_value(json_object_get(json_object_get(j, "sb"), "img")), "AAECA/8=");
    json_decref(j);
    j = record(f, 2, 0);
    sb = json_object_get(j, "sb");
    T_CHECK(!json_object_get(sb, "img") && json_is_true(json_object_get(sb, "cut")));
    json_decref(j);

    /* gzip decoded, with both sizes */
    bytes z = {0};
    const char doc[] = "{\"ok\":true}";
    char err[128];
    T_CHECK(encoding_encode("gzip", doc, sizeof doc - 1, &z, err, sizeof err) == 0);
    hdrs_set(&f->response->headers, "Content-Type", "application/json", 16);
    hdrs_set(&f->response->headers, "Content-Encoding", "gzip", 4);
    bytes_set(&f->response->content, z.p, z.len);
    j = record(f, 0, 0);
    sb = json_object_get(j, "sb");
    T_STREQ(json_string_value(json_object_get(sb, "t")), doc);
    T_CHECK(json_integer_value(json_object_get(sb, "z")) == (json_int_t)(sizeof doc - 1) &&
            json_integer_value(json_object_get(sb, "n")) == (json_int_t)z.len);
    json_decref(j);
    bytes_free(&z);

    /* an error, metadata, a WebSocket message */
    flow_set_error(f, "connection reset");
    flow_strset(&f->metadata, "{\"k\":[1,2]}");
    flow_ws_add(f, true, true, "hi", 2);
    f->websocket = true;
    j = record(f, 0, 0);
    T_STREQ(json_string_value(json_object_get(j, "e")), "connection reset");
    T_CHECK(json_integer_value(json_array_get(json_object_get(json_object_get(j, "md"), "k"), 1)) == 2);
    json_t *m = json_array_get(json_object_get(json_object_get(j, "ws"), "m"), 0);
    T_CHECK(json_is_true(json_array_get(m, 0)) && json_is_true(json_array_get(m, 1)));
    T_STREQ(json_string_value(json_array_get(m, 3)), "hi");
    json_decref(j);
    flow_free(f);
}

static char *slurp(const char *path)
{
    FILE *fp = fopen(path, "rb");
    if (!fp)
        return NULL;
    bytes b = {0};
    char buf[8192];
    size_t k;
    while ((k = fread(buf, 1, sizeof buf, fp)) > 0)
        bytes_append(&b, buf, k);
    fclose(fp);
    return b.p;
}

/* text between `open` and `close` after *from, moved past it; caller frees */
static char *between(const char **from, const char *open, const char *close)
{
    const char *a = strstr(*from, open), *b;
    if (!a || !(b = strstr(a += strlen(open), close)))
        return NULL;
    *from = b + strlen(close);
    return strndup(a, (size_t)(b - a));
}

static void test_page(void)
{
    char path[] = "/tmp/test_report_XXXXXX";
    int fd = mkstemp(path);
    T_CHECK(fd >= 0);
    close(fd);
    char err[256];
    report_info info = {"~d example.test", "~c 500"};
    report_writer *w = report_writer_open(path, 0, &info, err, sizeof err);
    T_CHECK(w != NULL);
    flow *f = make_flow();
    for (int i = 0; i < 3; i++)
        T_CHECK(report_writer_add(w, f, i == 2, err, sizeof err) == 0);
    flow_free(f);
    T_CHECK(report_writer_close(w, err, sizeof err) == 0);
    char *html = slurp(path);
    unlink(path);
    T_CHECK(html != NULL);
    if (!html)
        return;
    /* the page's own blocks only; nothing recorded in the clear */
    int n = 0;
    for (const char *p = html; (p = strstr(p, "</script>")); p++)
        n++;
    T_CHECK(n == 3);
    T_CHECK(!strstr(html, "alert("));
    /* the CSP names the hash of the one script that runs */
    const char *p = html;
    char *csp = between(&p, "Content-Security-Policy\" content=\"", "\"");
    p = strstr(html, "id=\"mitmlua-flows\"");
    char *script = p ? between(&p, "<script>", "</script>") : NULL;
    T_CHECK(csp && script);
    if (csp && script) {
        unsigned char md[SHA256_DIGEST_LENGTH];
        char b64[64], want[128];
        SHA256((const unsigned char *)script, strlen(script), md);
        EVP_EncodeBlock((unsigned char *)b64, md, sizeof md);
        snprintf(want, sizeof want, "script-src 'sha256-%s';", b64);
        T_CHECK(strstr(csp, want) != NULL);
        T_CHECK(strstr(csp, "default-src 'none'") && !strstr(csp, "unsafe"));
    }
    /* the metadata block is JSON; the records inflate to 3 flows */
    p = html;
    char *meta = between(&p, "id=\"mitmlua-meta\">", "</script>");
    json_t *mj = meta ? json_loads(meta, 0, NULL) : NULL;
    T_CHECK(mj && json_integer_value(json_object_get(mj, "flows")) == 3);
    T_STREQ(json_string_value(json_object_get(mj, "fail_on")), "~c 500");
    json_decref(mj);
    char *data = between(&p, "data-encoding=\"gzip base64\">", "</script>");
    T_CHECK(data != NULL);
    if (data) {
        bytes bin = {0}, txt = {0};
        unsigned char out[4096];
        for (char *line = strtok(data, "\n"); line; line = strtok(NULL, "\n")) {
            unsigned char dec[70000];
            int k = EVP_DecodeBlock(dec, (const unsigned char *)line, (int)strlen(line));
            size_t pad = strlen(line) >= 2 ? (line[strlen(line) - 1] == '=') + (line[strlen(line) - 2] == '=') : 0;
            if (k > 0)
                bytes_append(&bin, dec, (size_t)k - pad);
        }
        z_stream z = {0};
        T_CHECK(inflateInit2(&z, 15 + 16) == Z_OK);
        z.next_in = (unsigned char *)bin.p;
        z.avail_in = (uInt)bin.len;
        int zr;
        do {
            z.next_out = out;
            z.avail_out = sizeof out;
            zr = inflate(&z, Z_NO_FLUSH);
            bytes_append(&txt, out, sizeof out - z.avail_out);
        } while (zr == Z_OK);
        T_CHECK(zr == Z_STREAM_END);
        inflateEnd(&z);
        T_CHECK(txt.p && !memchr(txt.p, '<', txt.len));
        bytes arr = {0};
        bytes_append(&arr, "[", 1);
        bytes_append(&arr, txt.p, txt.len);
        bytes_append(&arr, "]", 1);
        json_t *a = json_loads(arr.p, 0, NULL);
        T_CHECK(json_array_size(a) == 3);
        T_STREQ(json_string_value(json_object_get(json_array_get(a, 2), "m")), "GET");
        T_CHECK(json_integer_value(json_object_get(json_array_get(a, 2), "fo")) == 1);
        json_decref(a);
        bytes_free(&arr);
        bytes_free(&bin);
        bytes_free(&txt);
    }
    free(csp);
    free(script);
    free(meta);
    free(data);
    free(html);
}

static void test_open_fails_clearly(void)
{
    char err[256];
    T_CHECK(report_writer_open("/nonexistent-dir/r.html", 0, NULL, err, sizeof err) == NULL);
    T_CHECK(strstr(err, "/nonexistent-dir/r.html") && strstr(err, "No such file"));
    T_CHECK(report_writer_close(NULL, err, sizeof err) == 0);
}

int main(void)
{
    T_RUN(test_escape);
    T_RUN(test_flow_record);
    T_RUN(test_page);
    T_RUN(test_open_fails_clearly);
    T_DONE();
}
