/* test_dump.c — the native dump: field-by-field round trips, truncation at
 * every byte, bit flips, appending after a torn tail, pipes, concurrent
 * writers, kill -9 during recording, version and magic checks, the zstd
 * level following the size of the records. */
#include <fcntl.h>
#include <math.h>
#include <pthread.h>
#include <signal.h>
#include <stdint.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "dump.h"
#include "flowread.h"
#include "har.h"
#include "t.h"

static char tmpdir[64];

static const char *tpath(const char *name)
{
    static char p[4][128];
    static int k;
    k = (k + 1) % 4;
    snprintf(p[k], sizeof p[k], "%s/%s", tmpdir, name);
    return p[k];
}

static uint64_t rng_state = 0x9e3779b97f4a7c15ull;
static uint64_t rnd(void)
{
    rng_state ^= rng_state << 13;
    rng_state ^= rng_state >> 7;
    rng_state ^= rng_state << 17;
    return rng_state;
}

/* A flow with every field set, varied by i. */
static flow *make_flow(int i, size_t body)
{
    flow *f = flow_new();
    char buf[256];
    f->type = FLOW_HTTP;
    f->timestamp_created = 1700000000.123456 + i;
    flow_strset(&f->client.address_host, "127.0.0.1");
    f->client.address_port = (uint16_t)(40000 + i);
    flow_strset(&f->client.sni, "api.example.test");
    flow_strset(&f->client.alpn, "h2");
    flow_strset(&f->client.tls_version, "TLSv1.3");
    flow_strset(&f->client.cipher, "TLS_AES_128_GCM_SHA256");
    f->client.tls = true;
    f->client.timestamp_start = f->timestamp_created - 0.5;
    f->client.timestamp_tls_setup = f->timestamp_created - 0.25;
    flow_strset(&f->server.address_host, "api.example.test");
    f->server.address_port = 443;
    flow_strset(&f->server.peer_host, "::1");
    f->server.peer_port = 443;
    flow_strset(&f->server.cert_subject, "CN=api.example.test");
    flow_strset(&f->server.cert_issuer, "CN=Test CA");
    f->server.tls = true;
    f->server.timestamp_start = f->timestamp_created + 0.001;
    f->server.timestamp_tcp_setup = f->timestamp_created + 0.002;
    f->server.timestamp_tls_setup = 1.0 / 3.0; /* not microsecond-exact */
    f->server.timestamp_end = f->timestamp_created + 9;

    flow_request *q = f->request = flow_request_new();
    flow_strset(&q->method, i % 2 ? "POST" : "GET");
    flow_strset(&q->scheme, "https");
    flow_strset(&q->authority, "");
    flow_strset(&q->host, "api.example.test");
    q->port = 443;
    snprintf(buf, sizeof buf, "/v1/items/%d?x=%d", i, i * 7);
    flow_strset(&q->path, buf);
    flow_strset(&q->http_version, "HTTP/2.0");
    hdrs_add(&q->headers, "x-ODD-Case", 10, "v", 1);
    hdrs_add(&q->headers, "Accept", 6, "application/json", 16);
    hdrs_add(&q->headers, "X-Empty", 7, "", 0);
    hdrs_add(&q->headers, "x-odd-case", 10, "second", 6);
    hdrs_add(&q->trailers, "grpc-status", 11, "0", 1);
    for (size_t k = 0; k < body; k++) {
        char c = (char)(k % 3 == 0 ? 0 : (int)(rnd() & 0xff));
        bytes_append(&q->content, &c, 1);
    }
    q->timestamp_start = f->timestamp_created + 0.003;
    q->timestamp_end = f->timestamp_created + 0.004;

    flow_response *s = f->response = flow_response_new();
    s->status_code = 200 + i % 3;
    flow_strset(&s->reason, "OK");
    flow_strset(&s->http_version, "HTTP/2.0");
    hdrs_add(&s->headers, "content-type", 12, "application/json", 16);
    snprintf(buf, sizeof buf, "{\"id\":%d,\"name\":\"item %d\",\"tags\":[\"a\",\"b\"]}", i, i);
    bytes_set(&s->content, buf, strlen(buf));
    s->timestamp_start = f->timestamp_created + 0.005;
    s->timestamp_end = f->timestamp_created + 0.006;
    if (i % 5 == 3) {
        flow_set_error(f, "connection reset by peer");
        f->error->timestamp = f->timestamp_created + 1;
    }
    if (i % 7 == 1) {
        f->websocket = true;
        f->ws_close_code = 1000;
        flow_ws_message *m = flow_ws_add(f, true, true, "hello", 5);
        m->timestamp = f->timestamp_created + 2;
        m = flow_ws_add(f, false, false, "\0\1\2", 3);
        m->dropped = true;
        m->timestamp = f->timestamp_created + 3;
    }
    flow_strset(&f->metadata, "{\"k\":[1,2]}");
    flow_strset(&f->marked, i % 2 ? ":default:" : "");
    if (i % 3 == 0)
        flow_strset(&f->comment, "a comment");
    if (i % 4 == 2)
        flow_strset(&f->is_replay, "request");
    f->killed = i % 6 == 5;
    return f;
}

#define CMP(cond)                                                              \
    do {                                                                       \
        if (!(cond)) {                                                         \
            fprintf(stderr, "  flow mismatch: %s\n", #cond);                   \
            return 0;                                                          \
        }                                                                      \
    } while (0)

static int streq0(const char *a, const char *b)
{
    return (!a && !b) || (a && b && strcmp(a, b) == 0);
}

static int ts_eq(double a, double b)
{
    return memcmp(&a, &b, sizeof a) == 0;
}

static int hdrs_eq(const hdrs *a, const hdrs *b)
{
    CMP(a->n == b->n);
    for (size_t i = 0; i < a->n; i++) {
        CMP(a->v[i].name_len == b->v[i].name_len && a->v[i].value_len == b->v[i].value_len);
        CMP(memcmp(a->v[i].name, b->v[i].name, a->v[i].name_len) == 0);
        CMP(memcmp(a->v[i].value, b->v[i].value, a->v[i].value_len) == 0);
    }
    return 1;
}

static int bytes_eq(const bytes *a, const bytes *b)
{
    return a->len == b->len && (a->len == 0 || memcmp(a->p, b->p, a->len) == 0);
}

static int conn_eq(const flow_conn *a, const flow_conn *b)
{
    CMP(streq0(a->address_host, b->address_host) && a->address_port == b->address_port);
    CMP(streq0(a->peer_host, b->peer_host) && a->peer_port == b->peer_port);
    CMP(streq0(a->sni, b->sni) && streq0(a->alpn, b->alpn));
    CMP(streq0(a->tls_version, b->tls_version) && streq0(a->cipher, b->cipher));
    CMP(streq0(a->cert_subject, b->cert_subject) && streq0(a->cert_issuer, b->cert_issuer));
    CMP(a->tls == b->tls);
    CMP(ts_eq(a->timestamp_start, b->timestamp_start));
    CMP(ts_eq(a->timestamp_tcp_setup, b->timestamp_tcp_setup));
    CMP(ts_eq(a->timestamp_tls_setup, b->timestamp_tls_setup));
    CMP(ts_eq(a->timestamp_end, b->timestamp_end));
    return 1;
}

static int flow_eq(const flow *a, const flow *b)
{
    CMP(strcmp(a->id, b->id) == 0 && a->type == b->type);
    CMP(ts_eq(a->timestamp_created, b->timestamp_created));
    CMP(conn_eq(&a->client, &b->client) && conn_eq(&a->server, &b->server));
    CMP(!a->request == !b->request);
    if (a->request) {
        const flow_request *x = a->request, *y = b->request;
        CMP(streq0(x->method, y->method) && streq0(x->scheme, y->scheme));
        CMP(streq0(x->authority, y->authority) && streq0(x->host, y->host));
        CMP(x->port == y->port && streq0(x->path, y->path));
        CMP(streq0(x->http_version, y->http_version));
        CMP(hdrs_eq(&x->headers, &y->headers) && hdrs_eq(&x->trailers, &y->trailers));
        CMP(bytes_eq(&x->content, &y->content));
        CMP(ts_eq(x->timestamp_start, y->timestamp_start) && ts_eq(x->timestamp_end, y->timestamp_end));
    }
    CMP(!a->response == !b->response);
    if (a->response) {
        const flow_response *x = a->response, *y = b->response;
        CMP(x->status_code == y->status_code && streq0(x->reason, y->reason));
        CMP(streq0(x->http_version, y->http_version));
        CMP(hdrs_eq(&x->headers, &y->headers) && hdrs_eq(&x->trailers, &y->trailers));
        CMP(bytes_eq(&x->content, &y->content));
        CMP(ts_eq(x->timestamp_start, y->timestamp_start) && ts_eq(x->timestamp_end, y->timestamp_end));
    }
    CMP(!a->error == !b->error);
    if (a->error)
        CMP(streq0(a->error->msg, b->error->msg) && ts_eq(a->error->timestamp, b->error->timestamp));
    CMP(a->ws_n == b->ws_n && a->websocket == b->websocket && a->ws_close_code == b->ws_close_code);
    for (size_t i = 0; i < a->ws_n; i++) {
        const flow_ws_message *x = &a->ws_msgs[i], *y = &b->ws_msgs[i];
        CMP(x->from_client == y->from_client && x->is_text == y->is_text && x->dropped == y->dropped);
        CMP(ts_eq(x->timestamp, y->timestamp) && bytes_eq(&x->content, &y->content));
    }
    CMP(streq0(a->metadata, b->metadata) && streq0(a->marked, b->marked));
    CMP(streq0(a->comment, b->comment) && streq0(a->is_replay, b->is_replay));
    CMP(a->killed == b->killed);
    return 1;
}

/* Until the writer thread has compressed and written n flows in all;
 * 0 if it has not within 5 s. */
static int wait_written(dump_writer *w, uint64_t n)
{
    dump_writer_stats st;
    for (int k = 0; k < 5000; k++) {
        dump_writer_get_stats(w, &st);
        if (st.flows >= n)
            return 1;
        usleep(1000);
    }
    return 0;
}

/* Add and wait until the writer thread has written it (so each flow gets
 * its own block). */
static void add_sync(dump_writer *w, const flow *f)
{
    dump_writer_stats st0;
    dump_writer_get_stats(w, &st0);
    T_CHECK(dump_writer_add(w, f) == 0);
    if (!wait_written(w, st0.flows + 1))
        T_CHECK(!"writer did not write within 5 s");
}

static void *read_file(const char *path, size_t *n)
{
    FILE *fp = fopen(path, "rb");
    if (!fp)
        return NULL;
    fseek(fp, 0, SEEK_END);
    long sz = ftell(fp);
    fseek(fp, 0, SEEK_SET);
    void *p = malloc((size_t)sz + 1);
    *n = fread(p, 1, (size_t)sz, fp);
    fclose(fp);
    return p;
}

static void write_file(const char *path, const void *p, size_t n)
{
    FILE *fp = fopen(path, "wb");
    fwrite(p, 1, n, fp);
    fclose(fp);
}

/* ---------------------------------------------------------------------- */

static void test_roundtrip(void)
{
    char err[256];
    enum { N = 20 };
    flow *orig[N];
    dump_writer *w = dump_writer_open(tpath("rt.mitmlua"), err, sizeof err);
    T_CHECK(w != NULL);
    if (!w)
        return;
    for (int i = 0; i < N; i++) {
        orig[i] = make_flow(i, (size_t)(i * 37));
        T_CHECK(dump_writer_add(w, orig[i]) == 0);
    }
    /* a bare flow: NULL strings and no request stay NULL, "" stays "" */
    flow *bare = calloc(1, sizeof *bare);
    strcpy(bare->id, "bare");
    bare->type = FLOW_TCP;
    flow_strset(&bare->comment, "");
    T_CHECK(dump_writer_add(w, bare) == 0);
    T_CHECK(dump_writer_close(w, err, sizeof err) == 0);

    int fd = open(tpath("rt.mitmlua"), O_RDONLY);
    dump_reader *r = dump_reader_open_fd(fd, "rt", err, sizeof err);
    flow *g;
    for (int i = 0; i < N; i++) {
        T_CHECK(dump_reader_next(r, &g, err, sizeof err) == 1);
        T_CHECK(g && flow_eq(orig[i], g));
        flow_free(g);
        flow_free(orig[i]);
    }
    T_CHECK(dump_reader_next(r, &g, err, sizeof err) == 1);
    T_CHECK(g && flow_eq(bare, g) && g->request == NULL && g->comment && !*g->comment &&
            g->metadata == NULL && g->type == FLOW_TCP);
    flow_free(g);
    flow_free(bare);
    T_CHECK(dump_reader_next(r, &g, err, sizeof err) == 0);
    T_CHECK(dump_reader_next(r, &g, err, sizeof err) == 0);
    dump_reader_close(r);
    close(fd);
}

static void test_unknown_fields_skipped(void)
{
    flow *f = make_flow(3, 10);
    bytes rec = {0};
    T_CHECK(dump_encode_flow(f, &rec) == 0);
    /* record = kind varint, length varint, body: rebuild the body with
     * fields from a "future" writer appended and prepended */
    size_t p = 1, len = 0;
    for (int shift = 0;; shift += 7) {
        unsigned char c = (unsigned char)rec.p[p++];
        len |= (size_t)(c & 0x7f) << shift;
        if (!(c & 0x80))
            break;
    }
    bytes body = {0};
    /* keys: tag 99 bytes (794), tag 100 varint (800), tag 101 fixed64 (809) */
    const unsigned char future1[] = {0x9a, 0x06, 3, 'x', 'y', 'z'};
    const unsigned char future2[] = {0xa0, 0x06, 0x85, 0x01, 0xa9, 0x06, 1, 2, 3, 4, 5, 6, 7, 8};
    bytes_append(&body, future1, sizeof future1);
    bytes_append(&body, rec.p + p, len);
    bytes_append(&body, future2, sizeof future2);
    flow *g = NULL;
    char err[128];
    T_CHECK(dump_decode_flow(body.p, body.len, NULL, &g, err, sizeof err) == 0);
    T_CHECK(g && flow_eq(f, g));
    flow_free(g);
    /* an unknown wire type cannot be skipped: rejected, not misread */
    unsigned char bad[] = {(5 << 3) | 6, 0};
    T_CHECK(dump_decode_flow(bad, sizeof bad, NULL, &g, err, sizeof err) == -1);
    bytes_free(&body);
    bytes_free(&rec);
    flow_free(f);
}

/* A record is held to the live limits while it is decoded: -2 (refused,
 * not damage) with the part and the limit named, and the defaults are the
 * options' defaults. */
static void test_decode_limits(void)
{
    flow *f = flow_new();
    f->type = FLOW_HTTP;
    f->request = flow_request_new();
    flow_strset(&f->request->method, "GET");
    flow_strset(&f->request->host, "example.com");
    flow_strset(&f->request->path, "/");
    for (int i = 0; i < 300; i++)
        hdrs_add(&f->request->headers, "X-A", 3, "v", 1);
    bytes rec = {0};
    T_CHECK(dump_encode_flow(f, &rec) == 0);
    /* skip kind and length (varints) to the record body */
    size_t p = 0;
    for (int k = 0; k < 2; k++)
        while (rec.p[p++] & 0x80)
            ;
    flow *g = NULL;
    char err[256];
    T_CHECK(dump_decode_flow(rec.p + p, rec.len - p, NULL, &g, err, sizeof err) == -2);
    T_CHECK(g == NULL);
    T_CHECK(strstr(err, f->id) && strstr(err, "request: more than 256 header fields (max_headers)"));
    flow_limits lim = flow_limits_default;
    lim.max_headers = 300;
    T_CHECK(dump_decode_flow(rec.p + p, rec.len - p, &lim, &g, err, sizeof err) == 0);
    T_CHECK(g && g->request->headers.n == 300);
    flow_free(g);
    g = NULL;
    lim.max_header_size = 300 * 8 - 1;   /* "X-A: v\r\n" is 8 bytes */
    T_CHECK(dump_decode_flow(rec.p + p, rec.len - p, &lim, &g, err, sizeof err) == -2);
    T_CHECK(strstr(err, "max_header_size") != NULL);
    lim = flow_limits_default;
    lim.max_headers = 300;
    lim.max_body = 3;
    bytes_append(&f->request->content, "body", 4);
    bytes_reset(&rec);
    T_CHECK(dump_encode_flow(f, &rec) == 0);
    T_CHECK(dump_decode_flow(rec.p + p, rec.len - p, &lim, &g, err, sizeof err) == -2);
    T_CHECK(strstr(err, "body_size_limit") != NULL);
    T_CHECK(flow_limits_default.max_headers == 256 && flow_limits_default.max_header_size == 65536 &&
            flow_limits_default.max_body == (uint64_t)256 << 20);
    bytes_free(&rec);
    flow_free(f);
}

/* Small file, one block per flow; cut at every byte. */
static void test_truncation_every_byte(void)
{
    char err[256];
    enum { N = 6 };
    flow *orig[N];
    size_t ends[N];
    dump_writer *w = dump_writer_open(tpath("tr.mitmlua"), err, sizeof err);
    for (int i = 0; i < N; i++) {
        orig[i] = make_flow(i, 50);
        add_sync(w, orig[i]);
        dump_writer_stats st;
        dump_writer_get_stats(w, &st);
        ends[i] = (size_t)st.file_bytes;
    }
    T_CHECK(dump_writer_close(w, err, sizeof err) == 0);
    size_t n;
    unsigned char *data = read_file(tpath("tr.mitmlua"), &n);
    T_CHECK(n >= ends[N - 1]);
    int bad = 0;
    for (size_t cut = 0; cut <= n && !bad; cut++) {
        dump_reader *r = dump_reader_open_prefixed(-1, "cut", data, cut, err, sizeof err);
        size_t expect = 0;
        for (int i = 0; i < N; i++)
            if (ends[i] <= cut)
                expect++;
        size_t got = 0;
        int rc, errors = 0, calls = 0;
        flow *g;
        while ((rc = dump_reader_next(r, &g, err, sizeof err)) != 0 && calls++ < 100) {
            if (rc < 0) {
                errors++;
                if (cut < 16) /* not even a header: fatal, stop */
                    break;
                continue;
            }
            if (errors || got >= N || !flow_eq(orig[got], g))
                bad = 1; /* nothing may come after the damage in a cut file */
            got++;
            flow_free(g);
        }
        int boundary = cut == 0 || cut == 16 || cut == n;
        for (int i = 0; i < N; i++)
            boundary |= cut == ends[i];
        if (got != expect || calls >= 100 || (!boundary && !errors)) {
            fprintf(stderr, "  cut %zu: got %zu expected %zu errors %d\n", cut, got, expect, errors);
            bad = 1;
        }
        dump_reader_close(r);
    }
    T_CHECK(!bad);
    for (int i = 0; i < N; i++)
        flow_free(orig[i]);
    free(data);
}

/* Three files concatenated (three zstd frames), bits flipped at random:
 * every flow returned must be one of the originals, and the flip reported. */
static void test_bit_flips(void)
{
    char err[256];
    enum { PER = 8, FILES = 3, N = PER * FILES };
    flow *orig[N];
    bytes all = {0};
    for (int k = 0; k < FILES; k++) {
        dump_writer *w = dump_writer_open(tpath("bf.mitmlua"), err, sizeof err);
        for (int i = 0; i < PER; i++) {
            orig[k * PER + i] = make_flow(k * PER + i, 20);
            add_sync(w, orig[k * PER + i]);
        }
        dump_writer_close(w, err, sizeof err);
        size_t n;
        unsigned char *d = read_file(tpath("bf.mitmlua"), &n);
        bytes_append(&all, d, n);
        free(d);
    }
    /* concatenated files read as one */
    dump_reader *r = dump_reader_open_prefixed(-1, "cat", all.p, all.len, err, sizeof err);
    flow *g;
    int got = 0;
    while (dump_reader_next(r, &g, err, sizeof err) == 1) {
        T_CHECK(got < N && flow_eq(orig[got], g));
        got++;
        flow_free(g);
    }
    T_CHECK(got == N);
    dump_reader_close(r);

    int wrong = 0, undetected = 0, recovered = 0;
    unsigned char *copy = malloc(all.len);
    for (int trial = 0; trial < 3000; trial++) {
        memcpy(copy, all.p, all.len);
        size_t pos = (size_t)(rnd() % all.len);
        copy[pos] ^= (unsigned char)(1u << (rnd() % 8));
        r = dump_reader_open_prefixed(-1, "flip", copy, all.len, err, sizeof err);
        int rc, errors = 0, n = 0, last = -1;
        for (int calls = 0; calls < 200; calls++) {
            rc = dump_reader_next(r, &g, err, sizeof err);
            if (rc == 0)
                break;
            if (rc < 0) {
                errors++;
                if (strstr(err, "bad magic") || strstr(err, "newer"))
                    break;
                continue;
            }
            int match = -1;
            for (int i = last + 1; i < N; i++)
                if (strcmp(orig[i]->id, g->id) == 0)
                    match = i;
            if (match < 0 || !flow_eq(orig[match], g))
                wrong++;
            else
                last = match;
            n++;
            flow_free(g);
        }
        if (!errors)
            undetected++;
        if (errors && last == N - 1 && pos < all.len * 2 / 3)
            recovered++;
        dump_reader_close(r);
    }
    T_CHECK(wrong == 0);
    T_CHECK(undetected == 0);
    T_CHECK(recovered > 0); /* resynchronised and read on past the damage */
    if (wrong || undetected)
        fprintf(stderr, "  wrong %d undetected %d\n", wrong, undetected);
    free(copy);
    bytes_free(&all);
    for (int i = 0; i < N; i++)
        flow_free(orig[i]);
}

static void test_append_after_torn_tail(void)
{
    char err[256];
    const char *p = tpath("ap.mitmlua");
    flow *orig[6];
    for (int i = 0; i < 6; i++)
        orig[i] = make_flow(i, 100);
    dump_writer *w = dump_writer_open(p, err, sizeof err);
    dump_writer_stats st;
    for (int i = 0; i < 3; i++) {
        add_sync(w, orig[i]);
        if (i == 1)
            dump_writer_get_stats(w, &st);
    }
    T_CHECK(dump_writer_close(w, err, sizeof err) == 0);
    /* tear flow 2's block, as a crash in write(2) would */
    T_CHECK(truncate(p, (off_t)st.file_bytes + 30) == 0);
    char plus[160];
    snprintf(plus, sizeof plus, "+%s", p);
    w = dump_writer_open(plus, err, sizeof err);
    T_CHECK(w != NULL);
    for (int i = 3; i < 5; i++)
        add_sync(w, orig[i]);
    T_CHECK(dump_writer_close(w, err, sizeof err) == 0);
    /* appending to an intact file keeps everything */
    w = dump_writer_open(plus, err, sizeof err);
    add_sync(w, orig[5]);
    T_CHECK(dump_writer_close(w, err, sizeof err) == 0);

    int fd = open(p, O_RDONLY);
    dump_reader *r = dump_reader_open_fd(fd, "ap", err, sizeof err);
    const int want[] = {0, 1, 3, 4, 5};
    flow *g;
    for (int k = 0; k < 5; k++) {
        int rc = dump_reader_next(r, &g, err, sizeof err);
        T_CHECK(rc == 1 && flow_eq(orig[want[k]], g));
        if (rc != 1)
            fprintf(stderr, "  %s\n", err);
        flow_free(g);
    }
    T_CHECK(dump_reader_next(r, &g, err, sizeof err) == 0);
    dump_reader_close(r);
    close(fd);
    /* refusing to append to something that is not a dump */
    write_file(tpath("notdump.txt"), "hello world\n", 12);
    snprintf(plus, sizeof plus, "+%s", tpath("notdump.txt"));
    T_CHECK(dump_writer_open(plus, err, sizeof err) == NULL && strstr(err, "not a mitmlua dump"));
    for (int i = 0; i < 6; i++)
        flow_free(orig[i]);
}

typedef struct pipe_arg {
    int fd;
    int n;
} pipe_arg;

static void *pipe_writer(void *arg)
{
    pipe_arg *a = arg;
    char err[128];
    dump_writer *w = dump_writer_open_fd(a->fd, 1, err, sizeof err);
    for (int i = 0; i < a->n; i++) {
        flow *f = make_flow(i, 3000);
        dump_writer_add(w, f);
        flow_free(f);
    }
    dump_writer_close(w, err, sizeof err);
    return NULL;
}

static void test_pipe(void)
{
    int pfd[2];
    T_CHECK(pipe(pfd) == 0);
    pipe_arg a = {pfd[1], 300};
    pthread_t th;
    pthread_create(&th, NULL, pipe_writer, &a);
    char err[256];
    dump_reader *r = dump_reader_open_fd(pfd[0], "pipe", err, sizeof err);
    flow *g;
    int n = 0, rc;
    while ((rc = dump_reader_next(r, &g, err, sizeof err)) == 1) {
        char want[64];
        snprintf(want, sizeof want, "/v1/items/%d?x=%d", n, n * 7);
        T_STREQ(g->request->path, want);
        T_CHECK(g->request->content.len == 3000);
        n++;
        flow_free(g);
    }
    T_CHECK(rc == 0 && n == 300);
    pthread_join(th, NULL);
    dump_reader_close(r);
    close(pfd[0]);
}

typedef struct conc_arg {
    dump_writer *w;
    int base;
} conc_arg;

static void *conc_thread(void *arg)
{
    conc_arg *a = arg;
    for (int i = 0; i < 500; i++) {
        flow *f = make_flow(a->base + i, (size_t)(i % 50));
        snprintf(f->id, sizeof f->id, "t%d", a->base + i);
        dump_writer_add(a->w, f);
        flow_free(f);
    }
    return NULL;
}

static void test_concurrent_writers(void)
{
    char err[256];
    dump_writer *w = dump_writer_open(tpath("cc.mitmlua"), err, sizeof err);
    pthread_t th[4];
    conc_arg a[4];
    for (int k = 0; k < 4; k++) {
        a[k].w = w;
        a[k].base = k * 500;
        pthread_create(&th[k], NULL, conc_thread, &a[k]);
    }
    for (int k = 0; k < 4; k++)
        pthread_join(th[k], NULL);
    T_CHECK(dump_writer_close(w, err, sizeof err) == 0);
    int fd = open(tpath("cc.mitmlua"), O_RDONLY);
    dump_reader *r = dump_reader_open_fd(fd, "cc", err, sizeof err);
    static char seen[2000];
    memset(seen, 0, sizeof seen);
    int n = 0, rc, last[4] = {-1, -1, -1, -1}, order_ok = 1;
    flow *g;
    while ((rc = dump_reader_next(r, &g, err, sizeof err)) == 1) {
        int id = atoi(g->id + 1);
        if (id >= 0 && id < 2000) {
            seen[id]++;
            if (id <= last[id / 500])
                order_ok = 0; /* one thread's flows stay in its order */
            last[id / 500] = id;
        }
        n++;
        flow_free(g);
    }
    T_CHECK(rc == 0 && n == 2000 && order_ok);
    for (int i = 0; i < 2000; i++)
        T_CHECK(seen[i] == 1);
    dump_reader_close(r);
    close(fd);
}

static void test_10k_flows(void)
{
    char err[256];
    struct timespec t0, t1, t2;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    dump_writer *w = dump_writer_open(tpath("10k.mitmlua"), err, sizeof err);
    flow *f = make_flow(1, 200);
    for (int i = 0; i < 10000; i++) {
        snprintf(f->id, sizeof f->id, "%d", i);
        f->request->port = (uint16_t)i;
        T_CHECK(dump_writer_add(w, f) == 0);
    }
    dump_writer_stats st;
    T_CHECK(dump_writer_close(w, err, sizeof err) == 0);
    clock_gettime(CLOCK_MONOTONIC, &t1);
    int fd = open(tpath("10k.mitmlua"), O_RDONLY);
    dump_reader *r = dump_reader_open_fd(fd, "10k", err, sizeof err);
    flow *g;
    int n = 0, rc;
    while ((rc = dump_reader_next(r, &g, err, sizeof err)) == 1) {
        char want[24];
        snprintf(want, sizeof want, "%d", n);
        if (strcmp(g->id, want) != 0 || g->request->port != (uint16_t)n)
            T_CHECK(!"wrong flow order");
        n++;
        flow_free(g);
    }
    clock_gettime(CLOCK_MONOTONIC, &t2);
    T_CHECK(rc == 0 && n == 10000);
    struct stat sb;
    stat(tpath("10k.mitmlua"), &sb);
    (void)st;
    fprintf(stderr, "  10k flows: write %.0f ms, read %.0f ms, %lld bytes\n",
            (t1.tv_sec - t0.tv_sec) * 1e3 + (t1.tv_nsec - t0.tv_nsec) / 1e6,
            (t2.tv_sec - t1.tv_sec) * 1e3 + (t2.tv_nsec - t1.tv_nsec) / 1e6,
            (long long)sb.st_size);
    dump_reader_close(r);
    close(fd);
    flow_free(f);
}

/* The zstd window of each frame of the dump in m[0..size), in order, from
 * the frame header's Window_Descriptor (RFC 8878, 3.1.1.1.2; 0 for a
 * single-segment frame, which has none).  Frames are written without a
 * known size, so the window shows the level: 512 KB at level 1, 2 MB at
 * level 3. */
static int frame_windows(const unsigned char *m, size_t size, unsigned long long *win, int max)
{
    int n = 0;
    for (size_t pos = DUMP_FILE_HEADER_LEN; pos + DUMP_BLOCK_HEADER_LEN <= size && n < max;) {
        size_t len = (size_t)m[pos + 4] | (size_t)m[pos + 5] << 8 | (size_t)m[pos + 6] << 16 |
                     (size_t)m[pos + 7] << 24;
        const unsigned char *z = m + pos + DUMP_BLOCK_HEADER_LEN;
        if ((m[pos + 8] & DUMP_BLOCK_NEWFRAME) && len >= 6) {
            unsigned wd = z[5], exp = wd >> 3, mant = wd & 7;
            unsigned long long base = 1ull << (10 + exp);
            win[n++] = (z[4] & 0x20) ? 0 : base + base / 8 * mant;
        }
        pos += DUMP_BLOCK_HEADER_LEN + len;
    }
    return n;
}

/* Small records are compressed at the fast level; a large one ends that
 * frame, and the next (level 3) reaches back far enough that the same
 * 1 MB body recorded again costs next to nothing. */
static void test_level_follows_record_size(void)
{
    char err[256];
    const char *path = tpath("levels.mitmlua");
    dump_writer *w = dump_writer_open(path, err, sizeof err);
    T_CHECK(w != NULL);
    if (!w)
        return;
    for (int i = 0; i < 300; i++) {
        flow *f = make_flow(i, 1000);
        T_CHECK(dump_writer_add(w, f) == 0);
        flow_free(f);
    }
    T_CHECK(wait_written(w, 300));
    dump_writer_stats st;
    dump_writer_get_stats(w, &st);
    uint64_t small = st.file_bytes;
    flow *big = make_flow(1, (size_t)1 << 20); /* two thirds random bytes */
    add_sync(w, big);
    dump_writer_get_stats(w, &st);
    uint64_t one = st.file_bytes;
    T_CHECK(dump_writer_add(w, big) == 0);
    T_CHECK(dump_writer_close(w, err, sizeof err) == 0);
    flow_free(big);
    size_t two;
    unsigned char *data = read_file(path, &two);
    fprintf(stderr, "  300 small flows %llu B, a 1 MB body %llu B, the same again %llu B\n",
            (unsigned long long)small, (unsigned long long)(one - small), (unsigned long long)(two - one));
    T_CHECK(one - small > 600000);
    T_CHECK((two - one) * 20 < one - small);

    unsigned long long win[16];
    int n = frame_windows(data, two, win, 16);
    free(data);
    T_CHECK(n == 2);
    T_CHECK(n >= 1 && win[0] <= (512u << 10));
    T_CHECK(n >= 2 && win[n - 1] >= (2u << 20));

    int fd = open(path, O_RDONLY);
    dump_reader *r = dump_reader_open_fd(fd, "levels", err, sizeof err);
    flow *g;
    int flows = 0, rc;
    while ((rc = dump_reader_next(r, &g, err, sizeof err)) == 1) {
        flows++;
        flow_free(g);
    }
    T_CHECK(rc == 0 && flows == 302);
    dump_reader_close(r);
    close(fd);
}

static void test_version_and_magic(void)
{
    char err[256];
    unsigned char h[16];
    memcpy(h, "MITMLUA", 8);
    h[8] = 2, h[9] = 0, h[10] = 0, h[11] = 0;
    uint32_t c = dump_crc32c(0, h, 12);
    h[12] = (unsigned char)c, h[13] = (unsigned char)(c >> 8), h[14] = (unsigned char)(c >> 16),
    h[15] = (unsigned char)(c >> 24);
    dump_reader *r = dump_reader_open_prefixed(-1, "v2", h, 16, err, sizeof err);
    flow *g;
    T_CHECK(dump_reader_next(r, &g, err, sizeof err) == -1);
    T_CHECK(strstr(err, "version 2.0 is newer") != NULL);
    T_CHECK(dump_reader_next(r, &g, err, sizeof err) == -1); /* stays an error */
    dump_reader_close(r);
    r = dump_reader_open_prefixed(-1, "junk", "GET / HTTP/1.1\r\n", 16, err, sizeof err);
    T_CHECK(dump_reader_next(r, &g, err, sizeof err) == -1 && strstr(err, "not a mitmlua dump"));
    dump_reader_close(r);
    r = dump_reader_open_prefixed(-1, "empty", "", 0, err, sizeof err);
    T_CHECK(dump_reader_next(r, &g, err, sizeof err) == 0);
    dump_reader_close(r);
    /* CRC32C check value (RFC 3720 B.4 / the usual "123456789" vector) */
    T_CHECK(dump_crc32c(0, "123456789", 9) == 0xE3069283u);
    T_CHECK(dump_crc32c(dump_crc32c(0, "1234", 4), "56789", 5) == 0xE3069283u);
}

/* A child records flows and reports each one the writer has written; it is
 * killed with SIGKILL mid-stream.  Every reported flow must be in the file. */
static void test_kill9(void)
{
    const char *p = tpath("k9.mitmlua");
    int pfd[2];
    T_CHECK(pipe(pfd) == 0);
    pid_t pid = fork();
    if (pid == 0) {
        close(pfd[0]);
        char err[128];
        dump_writer *w = dump_writer_open(p, err, sizeof err);
        for (int i = 0;; i++) {
            flow *f = make_flow(i, 500);
            dump_writer_stats st0, st;
            dump_writer_get_stats(w, &st0);
            dump_writer_add(w, f);
            flow_free(f);
            do {
                usleep(200);
                dump_writer_get_stats(w, &st);
            } while (st.flows == st0.flows);
            if (write(pfd[1], &i, sizeof i) != sizeof i)
                _exit(1);
        }
    }
    close(pfd[1]);
    int last = -1, v;
    while (last < 40 && read(pfd[0], &v, sizeof v) == sizeof v)
        last = v;
    kill(pid, SIGKILL);
    waitpid(pid, NULL, 0);
    close(pfd[0]);
    char err[256];
    int fd = open(p, O_RDONLY);
    dump_reader *r = dump_reader_open_fd(fd, "k9", err, sizeof err);
    flow *g;
    int n = 0, rc;
    while ((rc = dump_reader_next(r, &g, err, sizeof err)) == 1) {
        flow *o = make_flow(n, 0);
        T_STREQ(g->request->path, o->request->path);
        flow_free(o);
        n++;
        flow_free(g);
    }
    /* the child reported 41 flows written before it was killed (last is
     * -1 when it reported none, and n > -1 would pass for an empty file) */
    T_CHECK(last >= 40);
    T_CHECK(n > last);
    dump_reader_close(r);
    close(fd);
}

typedef struct slow_arg {
    int fd;
    const char *data;
    size_t n;
} slow_arg;

/* Feeds a pipe one byte at a time at first, as a slow producer would. */
static void *slow_feeder(void *arg)
{
    slow_arg *a = arg;
    for (size_t off = 0; off < a->n;) {
        size_t k = off < 20 ? 1 : a->n - off;
        if (write(a->fd, a->data + off, k) < 0)
            break;
        off += k;
        if (off < 20)
            usleep(1000);
    }
    close(a->fd);
    return NULL;
}

static int count_flows(flow_reader *r, int *errors)
{
    char err[256];
    flow *g;
    int n = 0, rc;
    *errors = 0;
    for (int calls = 0; calls < 1000 && (rc = flow_reader_next(r, &g, err, sizeof err)) != 0; calls++) {
        if (rc < 0) {
            (*errors)++;
            continue;
        }
        n++;
        flow_free(g);
    }
    return n;
}

/* flowread: every format detected by content, from files and from pipes. */
static void test_flowread_detection(void)
{
    char err[256];
    const char *root = getenv("MITMLUA_ROOT");
    char mitm[512];
    snprintf(mitm, sizeof mitm, "%s/test/data/mitmdump-8.1.1.flows", root ? root : ".");
    flow *fl[5];
    dump_writer *w = dump_writer_open(tpath("fr.mitmlua"), err, sizeof err);
    for (int i = 0; i < 5; i++) {
        fl[i] = make_flow(i, 10);
        dump_writer_add(w, fl[i]);
    }
    dump_writer_close(w, err, sizeof err);
    T_CHECK(har_write_file(tpath("fr.har"), fl, 5, err, sizeof err) == 0);
    for (int i = 0; i < 5; i++)
        flow_free(fl[i]);
    write_file(tpath("empty"), "", 0);
    struct {
        const char *path;
        flowread_format fmt;
        int n;
    } cases[] = {{tpath("fr.mitmlua"), FLOWREAD_DUMP, 5}, {tpath("fr.har"), FLOWREAD_HAR, 5},
                 {mitm, FLOWREAD_MITMPROXY, 9}, {tpath("empty"), FLOWREAD_DUMP, 0}};
    for (size_t c = 0; c < sizeof cases / sizeof cases[0]; c++) {
        flow_reader *r = flow_reader_open(cases[c].path, err, sizeof err);
        T_CHECK(r != NULL);
        if (!r) {
            fprintf(stderr, "  %s\n", err);
            continue;
        }
        int errors;
        T_CHECK(flow_reader_format(r) == cases[c].fmt);
        T_CHECK(count_flows(r, &errors) == cases[c].n && errors == 0);
        flow_reader_close(r);
        /* the same through a pipe that trickles */
        size_t n;
        char *data = read_file(cases[c].path, &n);
        int p[2];
        T_CHECK(pipe(p) == 0);
        slow_arg a = {p[1], data, n};
        pthread_t th;
        pthread_create(&th, NULL, slow_feeder, &a);
        r = flow_reader_open_fd(p[0], "pipe", err, sizeof err);
        T_CHECK(r && flow_reader_format(r) == cases[c].fmt);
        if (r) {
            T_CHECK(count_flows(r, &errors) == cases[c].n && errors == 0);
            flow_reader_close(r);
        }
        pthread_join(th, NULL);
        close(p[0]);
        free(data);
    }
    write_file(tpath("junk"), "GET / HTTP/1.1\r\n", 16);
    T_CHECK(flow_reader_open(tpath("junk"), err, sizeof err) == NULL && strstr(err, "not a flow file"));
    T_CHECK(flow_reader_open(tpath("nonexistent"), err, sizeof err) == NULL && strstr(err, "No such file"));
}

int main(void)
{
    snprintf(tmpdir, sizeof tmpdir, "/tmp/test_dump.XXXXXX");
    if (!mkdtemp(tmpdir))
        return 1;
    T_RUN(test_roundtrip);
    T_RUN(test_unknown_fields_skipped);
    T_RUN(test_version_and_magic);
    T_RUN(test_truncation_every_byte);
    T_RUN(test_bit_flips);
    T_RUN(test_append_after_torn_tail);
    T_RUN(test_pipe);
    T_RUN(test_concurrent_writers);
    T_RUN(test_10k_flows);
    T_RUN(test_level_follows_record_size);
    T_RUN(test_kill9);
    T_RUN(test_flowread_detection);
    T_RUN(test_decode_limits);
    char cmd[128];
    snprintf(cmd, sizeof cmd, "rm -rf %s", tmpdir);
    if (system(cmd) != 0)
        return 1;
    T_DONE();
}
