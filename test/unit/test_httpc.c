/* test_httpc.c — httpc against a small HTTP/1.1 server on 127.0.0.1 that
 * runs on the same event loop (plain and TLS, its leaf signed by a CA made
 * for the test), with a hand-built worker as the proxy would have one. */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/bufferevent_ssl.h>
#include <event2/dns.h>
#include <event2/event.h>
#include <event2/listener.h>
#include <openssl/err.h>
#include <openssl/ssl.h>

#include "flow.h"
#include "h2.h"
#include "httpc.h"
#include "log.h"
#include "opts.h"
#include "shared.h"
#include "t.h"
#include "tls.h"
#include "worker.h"

static struct event_base *base;
static struct evdns_base *dns;

/* ---- the test server ------------------------------------------------------ */

typedef struct sconn {
    struct bufferevent *bev;
    struct sconn *next, *prev;
    bool closing;            /* freed once its output drained */
    h2_conn *h2;             /* an HTTP/2 server's session, or NULL */
} sconn;

typedef struct server {
    struct evconnlistener *l;
    SSL_CTX *tls;            /* NULL: plain */
    bool h2;                 /* TLS: ALPN h2 only, answered by h2.c */
    int port;
    sconn *conns;
    int accepted;
} server;

static void sconn_free(server *s, sconn *c)
{
    if (c->prev)
        c->prev->next = c->next;
    else
        s->conns = c->next;
    if (c->next)
        c->next->prev = c->prev;
    bufferevent_free(c->bev);
    h2_conn_free(c->h2);
    free(c);
}

/* The server's connections carry a pointer to the server in the bev's
 * context; keep it simple with one pair of callbacks and a lookup. */
typedef struct sxctx {
    server *s;
    sconn *c;
} sxctx;

static void s_write_cb(struct bufferevent *bev, void *arg)
{
    (void)bev;
    sxctx *x = arg;
    if (x->c->closing) {
        sconn_free(x->s, x->c);
        free(x);
    }
}

static void s_reply(sxctx *x, const char *method, const char *path, const char *host, const char *body, size_t blen)
{
    struct evbuffer *out = bufferevent_get_output(x->c->bev);
    if (!strcmp(path, "/hello")) {
        evbuffer_add_printf(out, "HTTP/1.1 200 OK\r\nContent-Length: 11\r\nX-Test: yes\r\n\r\nhello world");
    } else if (!strcmp(path, "/echo")) {
        evbuffer_add_printf(out, "HTTP/1.1 201 Created\r\nX-Method: %s\r\nX-Host: %s\r\nContent-Length: %zu\r\n\r\n",
                            method, host, blen);
        evbuffer_add(out, body, blen);
    } else if (!strcmp(path, "/chunked")) {
        evbuffer_add_printf(out, "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
                                 "5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n");
    } else if (!strcmp(path, "/close")) {
        evbuffer_add_printf(out, "HTTP/1.1 200 OK\r\nConnection: close\r\n\r\nuntil the end");
        x->c->closing = true;
    } else if (!strcmp(path, "/big")) {
        evbuffer_add_printf(out, "HTTP/1.1 200 OK\r\nContent-Length: 3000\r\n\r\n");
        char buf[3000];
        memset(buf, 'x', sizeof buf);
        evbuffer_add(out, buf, sizeof buf);
    } else if (!strncmp(path, "http://", 7)) {
        /* as an upstream proxy: the absolute-form target, and credentials */
        evbuffer_add_printf(out, "HTTP/1.1 200 OK\r\nX-Host: %s\r\nContent-Length: %zu\r\n\r\n%s", host,
                            strlen(path), path);
    } else if (!strcmp(path, "/never")) {
        /* no answer */
    } else {
        evbuffer_add_printf(out, "HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n");
    }
}

/* HTTP/2: a complete request is answered at once, except /never. */
static void s_h2_request(void *ud, int32_t sid, flow_request *r)
{
    sxctx *x = ud;
    if (strcmp(r->path, "/never") != 0) {
        flow_response *s = flow_response_new();
        s->status_code = 200;
        hdrs_add(&s->headers, "x-method", 8, r->method, strlen(r->method));
        bytes_append(&s->content, "h2 ", 3);
        bytes_append(&s->content, r->path, strlen(r->path));
        bytes_append(&s->content, " ", 1);
        bytes_append(&s->content, r->content.p ? r->content.p : "", r->content.len);
        h2_submit_response(x->c->h2, sid, s);
        flow_response_free(s);
    }
    flow_request_free(r);
}

static void s_h2_read(sxctx *x, struct evbuffer *in)
{
    size_t n = evbuffer_get_length(in);
    int rc = h2_conn_feed(x->c->h2, evbuffer_pullup(in, (ssize_t)n), n);
    evbuffer_drain(in, n);
    h2_conn_flush(x->c->h2, bufferevent_get_output(x->c->bev), 0);
    if (rc < 0)
        fprintf(stderr, "  test h2 server: %s\n", h2_conn_error(x->c->h2));
}

/* One request per connection is all the client sends: read the head, then
 * Content-Length bytes of body. */
static void s_read_cb(struct bufferevent *bev, void *arg)
{
    sxctx *x = arg;
    struct evbuffer *in = bufferevent_get_input(bev);
    if (x->c->h2) {
        s_h2_read(x, in);
        return;
    }
    struct evbuffer_ptr end = evbuffer_search(in, "\r\n\r\n", 4, NULL);
    if (end.pos < 0)
        return;
    size_t hlen = (size_t)end.pos + 4;
    char *head = malloc(hlen + 1);
    evbuffer_copyout(in, head, hlen);
    head[hlen] = '\0';
    size_t clen = 0;
    char *cl = strcasestr(head, "\r\ncontent-length:");
    if (cl)
        clen = strtoul(cl + 17, NULL, 10);
    if (evbuffer_get_length(in) < hlen + clen) {
        free(head);
        return;
    }
    char method[16] = "", path[256] = "", host[256] = "";
    sscanf(head, "%15s %255s", method, path);
    char *h = strcasestr(head, "\r\nhost:");
    if (h)
        sscanf(h + 7, " %255[^\r]", host);
    if ((h = strcasestr(head, "\r\nproxy-authorization:")) != NULL) /* reported as X-Host */
        sscanf(h + 22, " %255[^\r]", host);
    evbuffer_drain(in, hlen);
    char *body = malloc(clen + 1);
    evbuffer_remove(in, body, clen);
    s_reply(x, method, path, host, body, clen);
    free(body);
    free(head);
}

static void s_event_cb(struct bufferevent *bev, short what, void *arg)
{
    (void)bev;
    sxctx *x = arg;
    if (what & (BEV_EVENT_EOF | BEV_EVENT_ERROR)) {
        sconn_free(x->s, x->c);
        free(x);
    }
}

static void s_accept(struct evconnlistener *l, evutil_socket_t fd, struct sockaddr *sa, int salen, void *arg)
{
    (void)l;
    (void)sa;
    (void)salen;
    server *s = arg;
    sconn *c = calloc(1, sizeof *c);
    sxctx *x = calloc(1, sizeof *x);
    x->s = s;
    x->c = c;
    if (s->tls) {
        SSL *ssl = SSL_new(s->tls);
        tls_set_fallback_host(ssl, "127.0.0.1"); /* the client sends no SNI for an IP */
        if (s->h2) {
            static const h2_events ev = {.on_request = s_h2_request};
            h2_limits lim;
            h2_limits_default(&lim);
            tls_set_alpn_allowed(ssl, (const unsigned char *)"\x02h2", 3);
            c->h2 = h2_conn_new(true, &lim, &ev, x);
        }
        c->bev = bufferevent_openssl_socket_new(base, fd, ssl, BUFFEREVENT_SSL_ACCEPTING, BEV_OPT_CLOSE_ON_FREE);
    } else {
        c->bev = bufferevent_socket_new(base, fd, BEV_OPT_CLOSE_ON_FREE);
    }
    c->next = s->conns;
    if (s->conns)
        s->conns->prev = c;
    s->conns = c;
    s->accepted++;
    bufferevent_setcb(c->bev, s_read_cb, s_write_cb, s_event_cb, x);
    bufferevent_enable(c->bev, EV_READ | EV_WRITE);
    if (c->h2)
        h2_conn_flush(c->h2, bufferevent_get_output(c->bev), 0); /* our SETTINGS */
}

static int srv_start(server *s, SSL_CTX *tls, bool v6)
{
    memset(s, 0, sizeof *s);
    s->tls = tls;
    struct sockaddr_storage ss;
    socklen_t sl;
    memset(&ss, 0, sizeof ss);
    if (v6) {
        struct sockaddr_in6 *a = (struct sockaddr_in6 *)&ss;
        a->sin6_family = AF_INET6;
        a->sin6_addr = in6addr_loopback;
        sl = sizeof *a;
    } else {
        struct sockaddr_in *a = (struct sockaddr_in *)&ss;
        a->sin_family = AF_INET;
        a->sin_addr.s_addr = htonl(INADDR_LOOPBACK);
        sl = sizeof *a;
    }
    s->l = evconnlistener_new_bind(base, s_accept, s, LEV_OPT_CLOSE_ON_FREE | LEV_OPT_REUSEABLE, 16,
                                   (struct sockaddr *)&ss, (int)sl);
    if (!s->l)
        return -1;
    sl = sizeof ss;
    getsockname(evconnlistener_get_fd(s->l), (struct sockaddr *)&ss, &sl);
    s->port = ntohs(v6 ? ((struct sockaddr_in6 *)&ss)->sin6_port : ((struct sockaddr_in *)&ss)->sin_port);
    return 0;
}

static void srv_stop(server *s)
{
    while (s->conns) {
        sxctx *x = NULL;
        bufferevent_getcb(s->conns->bev, NULL, NULL, NULL, (void **)&x);
        sconn_free(s, s->conns);
        free(x);
    }
    if (s->l)
        evconnlistener_free(s->l);
    s->l = NULL;
}

/* ---- the client side -------------------------------------------------------- */

typedef struct shared_w {
    opts o;
    shared sh;
    worker w;
} shared_w;

static void sw_init(shared_w *s, bool insecure, const char *trusted_ca)
{
    memset(s, 0, sizeof *s);
    opts_defaults(&s->o);
    s->o.ssl_insecure = insecure;
    if (trusted_ca)
        s->o.ssl_verify_upstream_trusted_ca = strdup(trusted_ca);
    s->sh.o = &s->o;
    pthread_mutex_init(&s->sh.tls_lock, NULL);
    s->w.sh = &s->sh;
    s->w.base = base;
    s->w.dns = dns;
    s->w.resp_limits = (h1_limits){.max_head = s->o.max_header_size, .max_headers = (size_t)s->o.max_headers,
                                   .max_body = s->o.body_size_limit};
}

static void sw_free(shared_w *s)
{
    SSL_CTX *c = atomic_load(&s->sh.client_ctx);
    if (c)
        SSL_CTX_free(c);
    pthread_mutex_destroy(&s->sh.tls_lock);
    opts_free(&s->o);
}

typedef struct got {
    int calls;
    int status;
    char reason[64];
    char *body;
    size_t body_len;
    char err[512];
    char hdr_test[64], hdr_method[64], hdr_host[128];
    double at;
} got;

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void copy_hdr(char *dst, size_t n, const hdrs *h, const char *name)
{
    size_t vl;
    const char *v = h ? hdrs_get(h, name, &vl) : NULL;
    snprintf(dst, n, "%.*s", v ? (int)vl : 0, v ? v : "");
}

static void on_done(void *arg, const httpc_result *res)
{
    got *g = arg;
    g->calls++;
    g->at = now_s();
    g->status = res->status;
    snprintf(g->reason, sizeof g->reason, "%s", res->reason ? res->reason : "");
    snprintf(g->err, sizeof g->err, "%s", res->err ? res->err : "");
    free(g->body);
    g->body = malloc(res->body_len + 1);
    memcpy(g->body, res->body, res->body_len);
    g->body[res->body_len] = '\0';
    g->body_len = res->body_len;
    copy_hdr(g->hdr_test, sizeof g->hdr_test, res->headers, "x-test");
    copy_hdr(g->hdr_method, sizeof g->hdr_method, res->headers, "x-method");
    copy_hdr(g->hdr_host, sizeof g->hdr_host, res->headers, "x-host");
}

/* Run the loop until g got its answer, or `limit` seconds. */
static void run_until(got *g, double limit)
{
    double end = now_s() + limit;
    while ((!g || !g->calls) && now_s() < end) {
        struct timeval tv = {0, 20000};
        event_base_loopexit(base, &tv);
        event_base_dispatch(base);
    }
}

static void got_clear(got *g)
{
    free(g->body);
    memset(g, 0, sizeof *g);
}

/* One request, answered (or failed) within 5 s. */
static bool fetch(worker *w, const char *method, const char *url, const hdrs *h, const char *body, double timeout_s,
                  got *g)
{
    got_clear(g);
    char err[256] = "";
    httpc_req *r = httpc_start(w, method, url, h, body, body ? strlen(body) : 0, timeout_s, on_done, g, err,
                               sizeof err);
    if (!r) {
        fprintf(stderr, "  httpc_start(%s): %s\n", url, err);
        return false;
    }
    T_CHECK(g->calls == 0); /* never from inside httpc_start */
    run_until(g, 5);
    if (g->calls != 1)
        fprintf(stderr, "  %s: %d callbacks\n", url, g->calls);
    if (g->err[0])
        fprintf(stderr, "  %s: err %s\n", url, g->err);
    return g->calls == 1;
}

static server plain;
static shared_w def;
static got g;

static char *url_of(char *buf, size_t n, const char *scheme, const char *host, int port, const char *path)
{
    snprintf(buf, n, "%s://%s:%d%s", scheme, host, port, path);
    return buf;
}

/* ---- tests ------------------------------------------------------------------ */

static void get_200_with_body(void)
{
    char u[256];
    T_CHECK(fetch(&def.w, NULL, url_of(u, sizeof u, "http", "127.0.0.1", plain.port, "/hello"), NULL, NULL, 5, &g));
    T_CHECK(g.status == 200);
    T_STREQ(g.reason, "OK");
    T_STREQ(g.body, "hello world");
    T_CHECK(g.body_len == 11);
    T_STREQ(g.hdr_test, "yes");
    T_STREQ(g.err, "");
    /* 404 is an answer, not an error */
    T_CHECK(fetch(&def.w, "GET", url_of(u, sizeof u, "http", "127.0.0.1", plain.port, "/nothing"), NULL, NULL, 5, &g));
    T_CHECK(g.status == 404);
    T_CHECK(g.body_len == 0 && g.body && g.body[0] == '\0');
}

/* Requests run side by side: ten answered ones complete while one whose
 * server never answers is still waiting. */
static void concurrent(void)
{
    char u[256], err[256];
    got slow = {0}, fast[10];
    memset(fast, 0, sizeof fast);
    httpc_req *r = httpc_start(&def.w, NULL, url_of(u, sizeof u, "http", "127.0.0.1", plain.port, "/never"), NULL,
                               NULL, 0, 3, on_done, &slow, err, sizeof err);
    T_CHECK(r != NULL);
    url_of(u, sizeof u, "http", "127.0.0.1", plain.port, "/hello");
    for (int i = 0; i < 10; i++)
        T_CHECK(httpc_start(&def.w, i % 2 ? "HEAD" : "GET", u, NULL, NULL, 0, 3, on_done, &fast[i], err,
                            sizeof err) != NULL);
    double end = now_s() + 2;
    int n = 0;
    while (n < 10 && now_s() < end) {
        run_until(NULL, 0.02);
        n = 0;
        for (int i = 0; i < 10; i++)
            n += fast[i].calls;
    }
    T_CHECK(n == 10);
    for (int i = 0; i < 10; i++) {
        T_CHECK(fast[i].status == 200);
        T_CHECK(fast[i].body_len == (i % 2 ? 0u : 11u)); /* HEAD: no body */
        got_clear(&fast[i]);
    }
    T_CHECK(slow.calls == 0);
    httpc_cancel(r);
    run_until(NULL, 0.05);
    T_CHECK(plain.conns == NULL);
}

static void post_echoes_body_and_host(void)
{
    char u[256], host[64];
    hdrs h = {0};
    hdrs_add(&h, "X-Any", 5, "1", 1);
    T_CHECK(fetch(&def.w, "POST", url_of(u, sizeof u, "http", "127.0.0.1", plain.port, "/echo"), &h,
                  "name=value&x=1", 5, &g));
    T_CHECK(g.status == 201);
    T_STREQ(g.reason, "Created");
    T_STREQ(g.body, "name=value&x=1");
    T_STREQ(g.hdr_method, "POST");
    snprintf(host, sizeof host, "127.0.0.1:%d", plain.port);
    T_STREQ(g.hdr_host, host);
    /* a Host the caller set is kept; a POST without a body says length 0 */
    hdrs_set(&h, "Host", "example.test", 12);
    T_CHECK(fetch(&def.w, "POST", url_of(u, sizeof u, "http", "127.0.0.1", plain.port, "/echo"), &h, NULL, 5, &g));
    T_CHECK(g.status == 201);
    T_STREQ(g.hdr_host, "example.test");
    T_CHECK(g.body_len == 0);
    hdrs_free(&h);
    /* a name under .localhost is loopback, with no DNS */
    T_CHECK(fetch(&def.w, "PUT", url_of(u, sizeof u, "http", "api.localhost", plain.port, "/echo"), NULL, "x", 5, &g));
    T_CHECK(g.status == 201);
    T_STREQ(g.hdr_method, "PUT");
    snprintf(host, sizeof host, "api.localhost:%d", plain.port);
    T_STREQ(g.hdr_host, host);
}

static void chunked_and_close_delimited(void)
{
    char u[256];
    T_CHECK(fetch(&def.w, NULL, url_of(u, sizeof u, "http", "127.0.0.1", plain.port, "/chunked"), NULL, NULL, 5, &g));
    T_CHECK(g.status == 200);
    T_STREQ(g.body, "hello world");
    T_CHECK(fetch(&def.w, NULL, url_of(u, sizeof u, "http", "127.0.0.1", plain.port, "/close"), NULL, NULL, 5, &g));
    T_CHECK(g.status == 200);
    T_STREQ(g.body, "until the end");
}

static void ipv6_literal(void)
{
    server s6;
    if (srv_start(&s6, NULL, true) < 0) {
        fprintf(stderr, "  # no IPv6 loopback here: skipped\n");
        return;
    }
    char u[256], host[64];
    snprintf(u, sizeof u, "http://[::1]:%d/echo", s6.port);
    T_CHECK(fetch(&def.w, NULL, u, NULL, NULL, 5, &g));
    T_CHECK(g.status == 201);
    snprintf(host, sizeof host, "[::1]:%d", s6.port);
    T_STREQ(g.hdr_host, host);
    srv_stop(&s6);
}

static void body_size_limit(void)
{
    char u[256];
    def.w.resp_limits.max_body = 1000;
    T_CHECK(fetch(&def.w, NULL, url_of(u, sizeof u, "http", "127.0.0.1", plain.port, "/big"), NULL, NULL, 5, &g));
    T_CHECK(g.status == 0);
    T_CHECK(strstr(g.err, "body_size_limit") != NULL);
    def.w.resp_limits.max_body = def.o.body_size_limit;
    T_CHECK(fetch(&def.w, NULL, url_of(u, sizeof u, "http", "127.0.0.1", plain.port, "/big"), NULL, NULL, 5, &g));
    T_CHECK(g.status == 200 && g.body_len == 3000);
}

static void connection_refused(void)
{
    /* a port nobody listens on: bound, then closed */
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t sl = sizeof a;
    bind(fd, (struct sockaddr *)&a, sizeof a);
    getsockname(fd, (struct sockaddr *)&a, &sl);
    int port = ntohs(a.sin_port);
    close(fd);
    char u[256];
    T_CHECK(fetch(&def.w, NULL, url_of(u, sizeof u, "http", "127.0.0.1", port, "/"), NULL, NULL, 5, &g));
    T_CHECK(g.status == 0);
    T_CHECK(strcasestr(g.err, "refused") != NULL);
    /* .invalid never resolves, and says so */
    T_CHECK(fetch(&def.w, NULL, "http://nothing.invalid/", NULL, NULL, 5, &g));
    T_CHECK(strstr(g.err, "DNS resolution failed") != NULL);
}

static void timeout_whole_exchange(void)
{
    char u[256];
    double t0 = now_s();
    T_CHECK(fetch(&def.w, NULL, url_of(u, sizeof u, "http", "127.0.0.1", plain.port, "/never"), NULL, NULL, 0.3, &g));
    T_STREQ(g.err, "timeout");
    T_CHECK(g.status == 0);
    double took = g.at - t0;
    T_CHECK(took >= 0.25 && took < 2.0);
    /* the server sees the connection go */
    run_until(NULL, 0.1);
    T_CHECK(plain.conns == NULL);
}

static void cancel_before_completion(void)
{
    char u[256], err[256];
    got_clear(&g);
    /* right after start: the exchange has not even begun */
    httpc_req *r = httpc_start(&def.w, NULL, url_of(u, sizeof u, "http", "127.0.0.1", plain.port, "/hello"), NULL,
                               NULL, 0, 1, on_done, &g, err, sizeof err);
    T_CHECK(r != NULL);
    httpc_cancel(r);
    /* while connected and waiting for an answer */
    int acc = plain.accepted;
    r = httpc_start(&def.w, "POST", url_of(u, sizeof u, "http", "127.0.0.1", plain.port, "/never"), NULL, "abc", 3,
                    1, on_done, &g, err, sizeof err);
    T_CHECK(r != NULL);
    double end = now_s() + 2;
    while (plain.accepted == acc && now_s() < end)
        run_until(NULL, 0.02);
    T_CHECK(plain.accepted == acc + 1);
    run_until(NULL, 0.05);
    httpc_cancel(r);
    /* past both timeouts: no callback ever */
    run_until(NULL, 1.2);
    T_CHECK(g.calls == 0);
    T_CHECK(plain.conns == NULL); /* the server saw the close */
    /* in the TLS handshake (a plain server that never answers it) */
    acc = plain.accepted;
    r = httpc_start(&def.w, NULL, url_of(u, sizeof u, "https", "127.0.0.1", plain.port, "/"), NULL, NULL, 0, 1,
                    on_done, &g, err, sizeof err);
    T_CHECK(r != NULL);
    end = now_s() + 2;
    while (plain.accepted == acc && now_s() < end)
        run_until(NULL, 0.02);
    T_CHECK(plain.accepted == acc + 1);
    httpc_cancel(r);
    run_until(NULL, 0.05);
    T_CHECK(g.calls == 0);
    httpc_cancel(NULL);
}

static void bad_arguments(void)
{
    char err[256];
    static const char *bad[] = {"ftp://x/", "example.com/", "http://", "http://host:99999/", "http://a b/",
                                "http://h/a b", "http://user@h/", NULL};
    for (const char **u = bad; *u; u++) {
        err[0] = '\0';
        httpc_req *r = httpc_start(&def.w, NULL, *u, NULL, NULL, 0, 1, on_done, &g, err, sizeof err);
        if (r) {
            fprintf(stderr, "  accepted %s\n", *u);
            httpc_cancel(r);
        }
        T_CHECK(r == NULL);
        T_CHECK(!strncmp(err, "bad URL '", 9) && !strchr(err, '\n'));
    }
    T_CHECK(httpc_start(&def.w, NULL, NULL, NULL, NULL, 0, 1, on_done, &g, err, sizeof err) == NULL);
    T_CHECK(httpc_start(&def.w, "GE T", "http://h/", NULL, NULL, 0, 1, on_done, &g, err, sizeof err) == NULL);
    T_CHECK(strstr(err, "method") != NULL);
    T_CHECK(httpc_start(&def.w, "CONNECT", "http://h/", NULL, NULL, 0, 1, on_done, &g, err, sizeof err) == NULL);
    hdrs h = {0};
    hdrs_add(&h, "X-Bad", 5, "a\r\nb", 4);
    T_CHECK(httpc_start(&def.w, NULL, "http://h/", &h, NULL, 0, 1, on_done, &g, err, sizeof err) == NULL);
    T_CHECK(strstr(err, "X-Bad") != NULL);
    hdrs_free(&h);
}

/* upstream mode: an http URL goes to the upstream proxy in absolute form,
 * with upstream_auth as Proxy-Authorization */
static void upstream_mode_http(void)
{
    shared_w up;
    sw_init(&up, false, NULL);
    up.o.mode = MODE_UPSTREAM;
    up.o.mode_url.scheme = strdup("http");
    up.o.mode_url.host = strdup("127.0.0.1");
    up.o.mode_url.port = (uint16_t)plain.port;
    up.w.upstream_auth = (char *)"Basic dTpw";
    T_CHECK(fetch(&up.w, NULL, "http://origin.test:8081/a?b=1", NULL, NULL, 5, &g));
    T_CHECK(g.status == 200);
    T_STREQ(g.body, "http://origin.test:8081/a?b=1");
    T_STREQ(g.hdr_host, "Basic dTpw");
    sw_free(&up);
}

static char confdir[] = "/tmp/test_httpc.XXXXXX";

static void https_verification(void)
{
    char err[512], u[256];
    if (!mkdtemp(confdir)) {
        T_CHECK(0);
        return;
    }
    tls_ca *ca = tls_ca_load_or_create(confdir, err, sizeof err);
    T_CHECK(ca != NULL);
    if (!ca)
        return;
    SSL_CTX *server_ctx = tls_server_ctx_new(ca, err, sizeof err);
    T_CHECK(server_ctx != NULL);
    server ts;
    T_CHECK(srv_start(&ts, server_ctx, false) == 0);
    url_of(u, sizeof u, "https", "127.0.0.1", ts.port, "/hello");

    /* verified against the system store: our CA is not in it */
    T_CHECK(fetch(&def.w, NULL, u, NULL, NULL, 5, &g));
    T_CHECK(g.status == 0);
    T_CHECK(strstr(g.err, "certificate verification failed") != NULL);

    /* -k: not verified */
    shared_w k;
    sw_init(&k, true, NULL);
    T_CHECK(fetch(&k.w, NULL, u, NULL, NULL, 5, &g));
    T_CHECK(g.status == 200);
    T_STREQ(g.body, "hello world");
    T_STREQ(g.err, "");
    url_of(u, sizeof u, "https", "127.0.0.1", ts.port, "/echo");
    T_CHECK(fetch(&k.w, "POST", u, NULL, "over tls", 5, &g));
    T_CHECK(g.status == 201);
    T_STREQ(g.body, "over tls");
    sw_free(&k);

    /* ssl_verify_upstream_trusted_ca: verified, and the certificate is for
     * the URL's host (an IP here) */
    shared_w t;
    sw_init(&t, false, tls_ca_cert_path(ca));
    url_of(u, sizeof u, "https", "127.0.0.1", ts.port, "/chunked");
    T_CHECK(fetch(&t.w, NULL, u, NULL, NULL, 5, &g));
    T_CHECK(g.status == 200);
    T_STREQ(g.body, "hello world");
    sw_free(&t);

    /* a server that picks h2 (option http2, on by default) is spoken to
     * over HTTP/2, the same to the caller */
    server hs;
    T_CHECK(srv_start(&hs, server_ctx, false) == 0);
    hs.h2 = true;
    sw_init(&k, true, NULL);
    url_of(u, sizeof u, "https", "127.0.0.1", hs.port, "/over/h2?x=1");
    T_CHECK(fetch(&k.w, "POST", u, NULL, "data", 5, &g));
    T_CHECK(g.status == 200);
    T_STREQ(g.body, "h2 /over/h2?x=1 data");
    T_STREQ(g.hdr_method, "POST");
    url_of(u, sizeof u, "https", "127.0.0.1", hs.port, "/never");
    T_CHECK(fetch(&k.w, NULL, u, NULL, NULL, 0.3, &g));
    T_STREQ(g.err, "timeout");
    got_clear(&g);
    httpc_req *r = httpc_start(&k.w, NULL, u, NULL, NULL, 0, 1, on_done, &g, err, sizeof err);
    T_CHECK(r != NULL);
    run_until(NULL, 0.1);
    httpc_cancel(r);
    run_until(NULL, 0.05);
    T_CHECK(g.calls == 0);
    T_CHECK(hs.conns == NULL);
    sw_free(&k);
    srv_stop(&hs);

    run_until(NULL, 0.05);
    srv_stop(&ts);
    SSL_CTX_free(server_ctx);
    tls_ca_free(ca);
    char cmd[300];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", confdir);
    if (system(cmd) != 0)
        fprintf(stderr, "  could not remove %s\n", confdir);
}

int main(void)
{
    log_set_level(LOG_ERROR);
    base = event_base_new();
    dns = evdns_base_new(base, 0);
    if (!base || !dns || srv_start(&plain, NULL, false) < 0) {
        fprintf(stderr, "cannot set up the loop or the server\n");
        return 1;
    }
    sw_init(&def, false, NULL);
    T_RUN(get_200_with_body);
    T_RUN(post_echoes_body_and_host);
    T_RUN(concurrent);
    T_RUN(chunked_and_close_delimited);
    T_RUN(ipv6_literal);
    T_RUN(body_size_limit);
    T_RUN(connection_refused);
    T_RUN(timeout_whole_exchange);
    T_RUN(cancel_before_completion);
    T_RUN(bad_arguments);
    T_RUN(upstream_mode_http);
    T_RUN(https_verification);
    got_clear(&g);
    sw_free(&def);
    srv_stop(&plain);
    evdns_base_free(dns, 0);
    event_base_free(base);
    T_DONE();
}
