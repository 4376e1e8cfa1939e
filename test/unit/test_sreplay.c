/* Unit tests for the server replay index: what the match key includes and
 * what each option leaves out, query and form decoding, multipart fields,
 * the order responses are served in (pop, nopop), what happens to
 * unmatched requests, and refreshed dates. */
#include "sreplay.h"
#include "t.h"

static flow *mkflow(const char *method, const char *scheme, const char *host, uint16_t port, const char *path,
                    const char *const *hv, const char *body, int status, const char *rbody)
{
    flow *f = flow_new();
    f->request = flow_request_new();
    flow_request *r = f->request;
    flow_strset(&r->method, method);
    flow_strset(&r->scheme, scheme);
    flow_strset(&r->host, host);
    flow_strset(&r->path, path);
    flow_strset(&r->http_version, "HTTP/1.1");
    r->port = port;
    for (size_t i = 0; hv && hv[i]; i += 2)
        hdrs_add(&r->headers, hv[i], strlen(hv[i]), hv[i + 1], strlen(hv[i + 1]));
    if (body)
        bytes_set(&r->content, body, strlen(body));
    if (status) {
        f->response = flow_response_new();
        f->response->status_code = status;
        flow_strset(&f->response->reason, "OK");
        bytes_set(&f->response->content, rbody, strlen(rbody));
    }
    return f;
}

static flow *get(const char *path) { return mkflow("GET", "http", "a.test", 80, path, NULL, NULL, 0, NULL); }

/* Ask the index about f; returns the served body ("" when none) in a
 * static buffer, and the result in *res. */
static const char *ask(sreplay *s, flow *f, enum sreplay_result *res)
{
    static char buf[256];
    enum sreplay_result r = sreplay_request(s, f);
    if (res)
        *res = r;
    buf[0] = '\0';
    if (f->response && f->response->content.p)
        snprintf(buf, sizeof buf, "%s", f->response->content.p);
    flow_free(f);
    return buf;
}

static sreplay *index_of(opts *o, flow **fl, size_t n)
{
    char err[256];
    sreplay *s = sreplay_new(o, err, sizeof err);
    for (size_t i = 0; s && i < n; i++) {
        T_CHECK(sreplay_add(s, fl[i]) == 0);
        flow_free(fl[i]);
    }
    return s;
}

static void key_parts_and_pop_order(void)
{
    opts o;
    opts_defaults(&o);
    flow *fl[] = {
        mkflow("GET", "http", "a.test", 80, "/x?a=1&b=2", NULL, NULL, 200, "first"),
        mkflow("GET", "http", "a.test", 80, "/x?a=1&b=2", NULL, NULL, 200, "second"),
        mkflow("POST", "http", "a.test", 80, "/x?a=1&b=2", NULL, "body", 201, "post"),
        mkflow("GET", "http", "a.test", 80, "/noresp", NULL, NULL, 0, NULL),
    };
    sreplay *s = index_of(&o, fl, 4);
    T_CHECK(sreplay_count(s) == 3);
    enum sreplay_result res;
    /* other scheme, host, port, method, body or parameter order: no match */
    T_STREQ(ask(s, mkflow("GET", "https", "a.test", 80, "/x?a=1&b=2", NULL, NULL, 0, NULL), &res), "");
    T_CHECK(res == SREPLAY_FORWARD);
    T_STREQ(ask(s, mkflow("GET", "http", "b.test", 80, "/x?a=1&b=2", NULL, NULL, 0, NULL), NULL), "");
    T_STREQ(ask(s, mkflow("GET", "http", "a.test", 81, "/x?a=1&b=2", NULL, NULL, 0, NULL), NULL), "");
    T_STREQ(ask(s, mkflow("POST", "http", "a.test", 80, "/x?a=1&b=2", NULL, "other", 0, NULL), NULL), "");
    T_STREQ(ask(s, get("/x?b=2&a=1"), NULL), "");
    T_STREQ(ask(s, get("/noresp"), NULL), "");
    /* hosts ignore case; query parameters compare decoded */
    T_STREQ(ask(s, mkflow("GET", "http", "A.Test", 80, "/x?a=%31&b=2", NULL, NULL, 0, NULL), &res), "first");
    T_CHECK(res == SREPLAY_ANSWERED);
    flow *f = get("/x?a=1&b=2");
    T_CHECK(sreplay_request(s, f) == SREPLAY_ANSWERED);
    T_STREQ(f->is_replay, "response");
    T_STREQ(f->response->content.p, "second");
    flow_free(f);
    T_STREQ(ask(s, get("/x?a=1&b=2"), &res), "");
    T_CHECK(res == SREPLAY_FORWARD);
    T_STREQ(ask(s, mkflow("POST", "http", "a.test", 80, "/x?a=1&b=2", NULL, "body", 0, NULL), NULL), "post");
    T_CHECK(sreplay_count(s) == 0);
    sreplay_free(s);
    opts_free(&o);
}

static void nopop_and_extra(void)
{
    opts o;
    opts_defaults(&o);
    o.server_replay_nopop = true;
    free(o.server_replay_extra);
    o.server_replay_extra = strdup("404");
    flow *fl[] = {mkflow("GET", "http", "a.test", 80, "/", NULL, NULL, 200, "one"),
                  mkflow("GET", "http", "a.test", 80, "/", NULL, NULL, 200, "two")};
    sreplay *s = index_of(&o, fl, 2);
    for (int i = 0; i < 3; i++)
        T_STREQ(ask(s, get("/"), NULL), "one");
    flow *f = get("/missing");
    T_CHECK(sreplay_request(s, f) == SREPLAY_ANSWERED);
    T_CHECK(f->response && f->response->status_code == 404 && f->response->content.len == 0);
    T_CHECK(f->is_replay == NULL);
    flow_free(f);
    sreplay_free(s);
    free(o.server_replay_extra);
    o.server_replay_extra = strdup("kill");
    char err[256];
    s = sreplay_new(&o, err, sizeof err);
    f = get("/");
    T_CHECK(sreplay_request(s, f) == SREPLAY_KILLED && f->killed);
    flow_free(f);
    sreplay_free(s);
    free(o.server_replay_extra);
    o.server_replay_extra = strdup("nonsense");
    T_CHECK(sreplay_new(&o, err, sizeof err) == NULL);
    T_CHECK(strstr(err, "server_replay_extra") != NULL);
    opts_free(&o);
}

static void ignore_options(void)
{
    opts o;
    opts_defaults(&o);
    o.server_replay_nopop = true;
    static char *params[] = {"ts"}, *payload[] = {"nonce"}, *hdr[] = {"X-User"};
    const char *form[] = {"Content-Type", "application/x-www-form-urlencoded", NULL};
    const char *mp[] = {"Content-Type", "multipart/form-data; boundary=XyZ", NULL};
    const char *alice[] = {"X-User", "alice", "x-user", "admin", NULL};
    const char *alice1[] = {"X-User", "alice", NULL};
    const char *mpa = "--XyZ\r\nContent-Disposition: form-data; name=\"a\"\r\n\r\n1\r\n"
                      "--XyZ\r\nContent-Disposition: form-data; name=\"nonce\"\r\n\r\n77\r\n--XyZ--\r\n";
    const char *mpb = "--XyZ\r\nContent-Disposition: form-data; name=\"a\"\r\n\r\n1\r\n"
                      "--XyZ\r\nContent-Disposition: form-data; name=\"nonce\"\r\n\r\n88\r\n--XyZ--\r\n";
    o.server_replay_ignore_params = params;
    o.nserver_replay_ignore_params = 1;
    o.server_replay_ignore_payload_params = payload;
    o.nserver_replay_ignore_payload_params = 1;
    o.server_replay_use_headers = hdr;
    o.nserver_replay_use_headers = 1;
    flow *fl[] = {
        mkflow("GET", "http", "a.test", 80, "/q?x=1&ts=5", NULL, NULL, 200, "q"),
        mkflow("POST", "http", "a.test", 80, "/f", form, "a=1&nonce=5", 200, "f"),
        mkflow("POST", "http", "a.test", 80, "/m", mp, mpa, 200, "m"),
        mkflow("GET", "http", "a.test", 80, "/h", alice, NULL, 200, "h"),
    };
    sreplay *s = index_of(&o, fl, 4);
    T_STREQ(ask(s, get("/q?x=1&ts=6"), NULL), "q");
    T_STREQ(ask(s, get("/q?x=1"), NULL), "q");
    T_STREQ(ask(s, get("/q?x=2&ts=5"), NULL), "");
    T_STREQ(ask(s, mkflow("POST", "http", "a.test", 80, "/f", form, "a=1&nonce=9", 0, NULL), NULL), "f");
    T_STREQ(ask(s, mkflow("POST", "http", "a.test", 80, "/f", form, "a=2&nonce=5", 0, NULL), NULL), "");
    T_STREQ(ask(s, mkflow("POST", "http", "a.test", 80, "/m", mp, mpb, 0, NULL), NULL), "m");
    /* every value of a used header counts */
    T_STREQ(ask(s, mkflow("GET", "http", "a.test", 80, "/h", alice, NULL, 0, NULL), NULL), "h");
    T_STREQ(ask(s, mkflow("GET", "http", "a.test", 80, "/h", alice1, NULL, 0, NULL), NULL), "");
    T_STREQ(ask(s, get("/h"), NULL), "");
    sreplay_free(s);
    /* ignore host, port and content */
    o.nserver_replay_ignore_params = o.nserver_replay_ignore_payload_params = o.nserver_replay_use_headers = 0;
    o.server_replay_ignore_params = o.server_replay_ignore_payload_params = o.server_replay_use_headers = NULL;
    o.server_replay_ignore_host = o.server_replay_ignore_port = o.server_replay_ignore_content = true;
    flow *fl2[] = {mkflow("PUT", "http", "a.test", 80, "/p", NULL, "x", 200, "p")};
    s = index_of(&o, fl2, 1);
    T_STREQ(ask(s, mkflow("PUT", "http", "other.test", 8080, "/p", NULL, "y", 0, NULL), NULL), "p");
    T_STREQ(ask(s, mkflow("PUT", "https", "a.test", 80, "/p", NULL, "x", 0, NULL), NULL), "");
    sreplay_free(s);
    opts_free(&o);
}

static void refresh_dates(void)
{
    opts o;
    opts_defaults(&o);
    flow *f = get("/");
    f->response = flow_response_new();
    f->response->status_code = 200;
    f->response->timestamp_start = flow_now() - 3600;
    const char *d = "Mon, 01 Jan 2024 00:00:00 GMT";
    hdrs_add(&f->response->headers, "Date", 4, d, strlen(d));
    hdrs_add(&f->response->headers, "Expires", 7, "0", 1);
    flow *fl[] = {f};
    sreplay *s = index_of(&o, fl, 1);
    flow *q = get("/");
    T_CHECK(sreplay_request(s, q) == SREPLAY_ANSWERED);
    T_STREQ(hdrs_get(&q->response->headers, "date", NULL), "Mon, 01 Jan 2024 01:00:00 GMT");
    T_STREQ(hdrs_get(&q->response->headers, "expires", NULL), "0");  /* not a date: as recorded */
    flow_free(q);
    sreplay_free(s);
    opts_free(&o);
}

int main(void)
{
    T_RUN(key_parts_and_pop_order);
    T_RUN(nopop_and_extra);
    T_RUN(ignore_options);
    T_RUN(refresh_dates);
    T_DONE();
}
