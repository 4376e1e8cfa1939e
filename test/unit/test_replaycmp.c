/* Unit tests for the replay comparison: each mode and what it includes,
 * the headers that never count, ignored headers and JSON paths (with *),
 * decoded bodies (gzip vs identity is no difference), JSON compared by
 * structure (key order, 1 vs 1.0), byte bodies, and the line limit. */
#include "replaycmp.h"
#include "encoding.h"
#include "t.h"

static flow_response *resp(int status, const char *const *hv, const char *body)
{
    flow_response *r = flow_response_new();
    r->status_code = status;
    for (size_t i = 0; hv && hv[i]; i += 2)
        hdrs_add(&r->headers, hv[i], strlen(hv[i]), hv[i + 1], strlen(hv[i + 1]));
    if (body)
        bytes_set(&r->content, body, strlen(body));
    return r;
}

/* Compare; returns the verdict and leaves the diff text in *out (caller frees). */
static int cmp(replaycmp_mode mode, const flow_response *a, const flow_response *b, char *const *ih, size_t nih,
               char *const *ij, size_t nij, bytes *out)
{
    replaycmp_opts o = {.mode = mode, .ignore_headers = ih, .nignore_headers = nih,
                        .ignore_json = ij, .nignore_json = nij};
    bytes_reset(out);
    int rc = replaycmp_compare(&o, a, b, out);
    if (!out->p)
        bytes_set(out, "", 0);
    return rc;
}

static void modes_include_each_other(void)
{
    const char *h1[] = {"Content-Type", "text/plain", NULL};
    const char *h2[] = {"Content-Type", "text/html", NULL};
    flow_response *a = resp(200, h1, "one"), *b = resp(200, h2, "two");
    bytes d = {0};
    T_CHECK(cmp(REPLAYCMP_STATUS, a, b, NULL, 0, NULL, 0, &d) == 0);
    T_CHECK(d.len == 0);
    T_CHECK(cmp(REPLAYCMP_HEADERS, a, b, NULL, 0, NULL, 0, &d) == 1);
    T_STREQ(d.p, "header content-type: 'text/plain' -> 'text/html'\n");
    T_CHECK(cmp(REPLAYCMP_BODY, a, b, NULL, 0, NULL, 0, &d) == 1);
    T_CHECK(strstr(d.p, "header content-type") != NULL);
    T_CHECK(strstr(d.p, "body: 3 bytes -> 3 bytes, first difference at byte 0: 'one' -> 'two'") != NULL);
    b->status_code = 500;
    T_CHECK(cmp(REPLAYCMP_STATUS, a, b, NULL, 0, NULL, 0, &d) == 1);
    T_STREQ(d.p, "status: 200 -> 500\n");
    flow_response_free(a);
    flow_response_free(b);
    bytes_free(&d);
}

static void volatile_and_ignored_headers(void)
{
    const char *h1[] = {"Date", "Mon, 01 Jan 2024 00:00:00 GMT", "Content-Length", "3", "X-Req", "1",
                        "Set-Cookie", "s=1", "Server", "a", NULL};
    const char *h2[] = {"date", "Tue, 02 Jan 2024 00:00:00 GMT", "Transfer-Encoding", "chunked", "X-Req", "2",
                        "Set-Cookie", "s=2", "Server", "a", NULL};
    flow_response *a = resp(200, h1, "abc"), *b = resp(200, h2, "abc");
    bytes d = {0};
    T_CHECK(cmp(REPLAYCMP_BODY, a, b, NULL, 0, NULL, 0, &d) == 1);
    T_STREQ(d.p, "header x-req: '1' -> '2'\n");
    char *ign[] = {"X-REQ"};
    T_CHECK(cmp(REPLAYCMP_BODY, a, b, ign, 1, NULL, 0, &d) == 0);
    flow_response_free(a);
    flow_response_free(b);
    bytes_free(&d);
}

static void missing_added_and_repeated_headers(void)
{
    const char *h1[] = {"X-Old", "1", "Vary", "a", "vary", "b", NULL};
    const char *h2[] = {"Vary", "a", "X-New", "2", "VARY", "c", NULL};
    flow_response *a = resp(200, h1, NULL), *b = resp(200, h2, NULL);
    bytes d = {0};
    T_CHECK(cmp(REPLAYCMP_HEADERS, a, b, NULL, 0, NULL, 0, &d) == 1);
    T_STREQ(d.p, "header x-old: '1' -> (missing)\n"
                 "header vary: 'a, b' -> 'a, c'\n"
                 "header x-new: (missing) -> '2'\n");
    /* the same fields in another case and order of names is no difference */
    const char *h3[] = {"vary", "a", "X-OLD", "1", "Vary", "b", NULL};
    flow_response *c = resp(200, h3, NULL);
    T_CHECK(cmp(REPLAYCMP_HEADERS, a, c, NULL, 0, NULL, 0, &d) == 0);
    flow_response_free(a);
    flow_response_free(b);
    flow_response_free(c);
    bytes_free(&d);
}

static void bodies_are_compared_decoded(void)
{
    const char *plain = "{\"a\": 1}";
    bytes gz = {0};
    char err[128];
    T_CHECK(encoding_encode("gzip", plain, strlen(plain), &gz, err, sizeof err) == 0);
    const char *hg[] = {"Content-Encoding", "gzip", NULL};
    flow_response *a = resp(200, hg, NULL), *b = resp(200, NULL, plain);
    bytes_set(&a->content, gz.p, gz.len);
    bytes d = {0};
    /* the header differs, the decoded body does not */
    T_CHECK(cmp(REPLAYCMP_BODY, a, b, NULL, 0, NULL, 0, &d) == 1);
    T_STREQ(d.p, "header content-encoding: 'gzip' -> (missing)\n");
    char *ign[] = {"content-encoding"};
    T_CHECK(cmp(REPLAYCMP_BODY, a, b, ign, 1, NULL, 0, &d) == 0);
    /* a body that claims gzip but is not: compared as sent */
    bytes_set(&a->content, "{\"a\": 2}", 8);
    T_CHECK(cmp(REPLAYCMP_BODY, a, b, ign, 1, NULL, 0, &d) == 1);
    T_STREQ(d.p, "body: a: 2 -> 1\n");
    flow_response_free(a);
    flow_response_free(b);
    bytes_free(&gz);
    bytes_free(&d);
}

static void json_structure_and_ignored_paths(void)
{
    flow_response *a = resp(200, NULL,
        "{\"id\": 7, \"updated_at\": \"2024-01-01\", \"items\": [{\"id\": 1, \"name\": \"x\"},"
        " {\"id\": 2, \"name\": \"y\"}], \"n\": 1}");
    flow_response *b = resp(200, NULL,
        "{\"n\": 1.0, \"items\": [{\"name\": \"x\", \"id\": 10}, {\"name\": \"z\", \"id\": 20}],"
        " \"updated_at\": \"2024-02-02\", \"id\": 7}");
    bytes d = {0};
    T_CHECK(cmp(REPLAYCMP_BODY, a, b, NULL, 0, NULL, 0, &d) == 1);
    T_STREQ(d.p, "body: updated_at: \"2024-01-01\" -> \"2024-02-02\"\n"
                 "body: items.0.id: 1 -> 10\n"
                 "body: items.1.id: 2 -> 20\n"
                 "body: items.1.name: \"y\" -> \"z\"\n");
    char *ij[] = {"updated_at", "items.*.id"};
    T_CHECK(cmp(REPLAYCMP_BODY, a, b, NULL, 0, ij, 2, &d) == 1);
    T_STREQ(d.p, "body: items.1.name: \"y\" -> \"z\"\n");
    char *ij2[] = {"updated_at", "items.*.id", "items.1"};
    T_CHECK(cmp(REPLAYCMP_BODY, a, b, NULL, 0, ij2, 3, &d) == 0);
    /* a pattern names a whole path: "items" alone does not match items.0.id */
    char *ij3[] = {"updated_at", "id"};
    T_CHECK(cmp(REPLAYCMP_BODY, a, b, NULL, 0, ij3, 2, &d) == 1);
    T_CHECK(strstr(d.p, "items.0.id") != NULL);
    flow_response_free(a);
    flow_response_free(b);
    bytes_free(&d);
}

static void json_added_removed_and_types(void)
{
    flow_response *a = resp(200, NULL, "{\"a\": [1, 2], \"gone\": true, \"t\": \"1\"}");
    flow_response *b = resp(200, NULL, "{\"a\": [1, 2, 3], \"t\": 1, \"new\": null}");
    bytes d = {0};
    T_CHECK(cmp(REPLAYCMP_BODY, a, b, NULL, 0, NULL, 0, &d) == 1);
    T_STREQ(d.p, "body: a.2: (missing) -> 3\n"
                 "body: gone: true -> (missing)\n"
                 "body: t: \"1\" -> 1\n"
                 "body: new: (missing) -> null\n");
    /* JSON on one side only: a byte comparison */
    flow_response *c = resp(200, NULL, "<html>");
    T_CHECK(cmp(REPLAYCMP_BODY, a, c, NULL, 0, NULL, 0, &d) == 1);
    T_CHECK(strstr(d.p, "body: 37 bytes -> 6 bytes, first difference at byte 0: ") == d.p);
    flow_response_free(a);
    flow_response_free(b);
    flow_response_free(c);
    bytes_free(&d);
}

static void long_diffs_are_cut(void)
{
    char ja[2000] = "[", jb[2000] = "[";
    for (int i = 0; i < 20; i++) {
        snprintf(ja + strlen(ja), 50, "%s%d", i ? "," : "", i);
        snprintf(jb + strlen(jb), 50, "%s%d", i ? "," : "", i + 100);
    }
    strcat(ja, "]");
    strcat(jb, "]");
    flow_response *a = resp(200, NULL, ja), *b = resp(200, NULL, jb);
    bytes d = {0};
    T_CHECK(cmp(REPLAYCMP_BODY, a, b, NULL, 0, NULL, 0, &d) == 1);
    size_t lines = 0;
    for (size_t i = 0; i < d.len; i++)
        lines += d.p[i] == '\n';
    T_CHECK(lines == 9);
    T_CHECK(strstr(d.p, "... 12 more differences\n") != NULL);
    /* long values are shortened, bytes escaped */
    char big[300];
    memset(big, 'a', sizeof big - 1);
    big[sizeof big - 1] = '\0';
    flow_response *c = resp(200, NULL, big), *e = resp(200, NULL, "a\001");
    T_CHECK(cmp(REPLAYCMP_BODY, c, e, NULL, 0, NULL, 0, &d) == 1);
    T_CHECK(strstr(d.p, "...'") != NULL && strstr(d.p, "'a\\x01'") != NULL && d.len < 300);
    flow_response_free(a);
    flow_response_free(b);
    flow_response_free(c);
    flow_response_free(e);
    bytes_free(&d);
}

static void parse_mode(void)
{
    replaycmp_mode m;
    T_CHECK(replaycmp_parse_mode("status", &m) == 0 && m == REPLAYCMP_STATUS);
    T_CHECK(replaycmp_parse_mode("headers", &m) == 0 && m == REPLAYCMP_HEADERS);
    T_CHECK(replaycmp_parse_mode("body", &m) == 0 && m == REPLAYCMP_BODY);
    T_CHECK(replaycmp_parse_mode("Body", &m) < 0);
    T_CHECK(replaycmp_parse_mode(NULL, &m) < 0);
}

int main(void)
{
    T_RUN(modes_include_each_other);
    T_RUN(volatile_and_ignored_headers);
    T_RUN(missing_added_and_repeated_headers);
    T_RUN(bodies_are_compared_decoded);
    T_RUN(json_structure_and_ignored_paths);
    T_RUN(json_added_removed_and_types);
    T_RUN(long_diffs_are_cut);
    T_RUN(parse_mode);
    T_DONE();
}
