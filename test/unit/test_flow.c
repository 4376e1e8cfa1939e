/* Unit tests for the flow model: header lists and URL building. */
#include "flow.h"
#include "t.h"

static void hdrs_case_insensitive(void)
{
    hdrs h = {0};
    T_CHECK(hdrs_add(&h, "Content-Type", 12, "text/html", 9) == 0);
    T_CHECK(hdrs_add(&h, "X-A", 3, "1", 1) == 0);
    T_CHECK(hdrs_add(&h, "x-a", 3, "2", 1) == 0);
    size_t n;
    T_STREQ(hdrs_get(&h, "content-type", &n), "text/html");
    T_CHECK(n == 9);
    T_CHECK(hdrs_find(&h, "X-A", 2) == 2);
    T_CHECK(hdrs_set(&h, "x-A", "3", 1) == 0);
    T_CHECK(h.n == 2);
    T_STREQ(h.v[1].name, "X-A");   /* original case kept */
    T_STREQ(h.v[1].value, "3");
    T_CHECK(hdrs_remove(&h, "CONTENT-TYPE") == 1);
    T_CHECK(h.n == 1);
    T_CHECK(hdrs_get(&h, "content-type", NULL) == NULL);
    hdrs_free(&h);
}

/* Many fields (several blocks), values replaced far past the blocks'
 * limit (fields of their own from then on), removals and a copy: every
 * value reads back right, and nothing leaks (the ASan run checks). */
static void hdrs_storage(void)
{
    hdrs h = {0};
    char name[32], value[64];
    for (int i = 0; i < 300; i++) {
        int nl = snprintf(name, sizeof name, "X-Field-%d", i);
        int vl = snprintf(value, sizeof value, "value %d %s", i, i % 7 ? "" : "with a longer tail to fill blocks");
        T_CHECK(hdrs_add(&h, name, (size_t)nl, value, (size_t)vl) == 0);
    }
    for (int i = 0; i < 5000; i++) {
        int vl = snprintf(value, sizeof value, "round %d of replacing one field's value", i);
        T_CHECK(hdrs_set(&h, "x-field-7", value, (size_t)vl) == 0);
    }
    T_STREQ(hdrs_get(&h, "X-Field-7", NULL), "round 4999 of replacing one field's value");
    T_CHECK(hdrs_remove(&h, "x-field-0") == 1);
    hdrs c = {0};
    T_CHECK(hdrs_copy(&c, &h) == 0);
    hdrs_free(&h);
    T_CHECK(c.n == 299);
    for (int i = 1; i < 300; i++) {
        snprintf(name, sizeof name, "x-field-%d", i);
        size_t vl;
        const char *v = hdrs_get(&c, name, &vl);
        if (i == 7) {
            T_STREQ(v, "round 4999 of replacing one field's value");
            continue;
        }
        snprintf(value, sizeof value, "value %d %s", i, i % 7 ? "" : "with a longer tail to fill blocks");
        T_STREQ(v, value);
        T_CHECK(v && vl == strlen(value));
    }
    hdrs_free(&c);
    T_CHECK(c.n == 0 && c.v == NULL);
}

static void hdrs_tokens(void)
{
    hdrs h = {0};
    hdrs_add(&h, "Connection", 10, "keep-alive, Upgrade", 19);
    T_CHECK(hdrs_has_token(&h, "connection", "upgrade"));
    T_CHECK(hdrs_has_token(&h, "connection", "KEEP-ALIVE"));
    T_CHECK(!hdrs_has_token(&h, "connection", "close"));
    hdrs_free(&h);
}

static void request_url(void)
{
    flow_request *r = flow_request_new();
    flow_strset(&r->scheme, "https");
    flow_strset(&r->host, "example.com");
    flow_strset(&r->path, "/a?b=c");
    r->port = 443;
    char *u = flow_request_url(r);
    T_STREQ(u, "https://example.com/a?b=c");
    free(u);
    r->port = 8443;
    flow_strset(&r->host, "::1");
    u = flow_request_url(r);
    T_STREQ(u, "https://[::1]:8443/a?b=c");
    free(u);
    flow_request_free(r);
}

static void flow_ids_unique(void)
{
    flow *a = flow_new(), *b = flow_new();
    T_CHECK(strlen(a->id) == 36);
    T_CHECK(strcmp(a->id, b->id) != 0);
    T_CHECK(a->id[14] == '4');
    T_CHECK(flow_set_error(a, "boom") == 0);
    T_STREQ(a->error->msg, "boom");
    T_CHECK(flow_ws_add(a, true, true, "hi", 2) != NULL);
    T_CHECK(a->ws_n == 1 && a->ws_msgs[0].content.len == 2);
    flow_free(a);
    flow_free(b);
}

static void bytes_basic(void)
{
    bytes b = {0};
    T_CHECK(bytes_append(&b, "ab", 2) == 0);
    T_CHECK(bytes_append(&b, "\0c", 2) == 0);
    T_CHECK(b.len == 4 && b.p[4] == '\0' && b.p[3] == 'c');
    bytes_free(&b);
}

static void authority(void)
{
    char b[320];
    T_STREQ(flow_authority("https", "example.com", 443, b, sizeof b), "example.com");
    T_STREQ(flow_authority("https", "example.com", 80, b, sizeof b), "example.com:80");
    T_STREQ(flow_authority("http", "example.com", 80, b, sizeof b), "example.com");
    T_STREQ(flow_authority(NULL, "example.com", 8080, b, sizeof b), "example.com:8080");
    T_STREQ(flow_authority("http", "::1", 8080, b, sizeof b), "[::1]:8080");
    T_STREQ(flow_authority("https", "::1", 0, b, sizeof b), "[::1]");
}

int main(void)
{
    T_RUN(hdrs_case_insensitive);
    T_RUN(hdrs_tokens);
    T_RUN(hdrs_storage);
    T_RUN(request_url);
    T_RUN(authority);
    T_RUN(flow_ids_unique);
    T_RUN(bytes_basic);
    T_DONE();
}
