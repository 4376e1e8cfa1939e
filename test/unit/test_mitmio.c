/* test_mitmio.c — reading a real flow file written by Debian's mitmdump
 * 8.1.1 (test/data/mitmdump-8.1.1.flows, made by make-mitm-fixture.sh):
 * HTTP, HTTPS, gzip and binary bodies, errors and a WebSocket; truncation
 * at every byte; a pipe; damaged framing. */
#include <fcntl.h>
#include <math.h>
#include <pthread.h>
#include <unistd.h>

#include "mitmio.h"
#include "t.h"

static char *fixture;
static size_t fixture_len;

static int load_fixture(void)
{
    const char *root = getenv("MITMLUA_ROOT");
    char path[512];
    snprintf(path, sizeof path, "%s/test/data/mitmdump-8.1.1.flows", root ? root : ".");
    FILE *fp = fopen(path, "rb");
    if (!fp)
        return -1;
    fixture = malloc(1 << 20);
    fixture_len = fread(fixture, 1, 1 << 20, fp);
    fclose(fp);
    return 0;
}

static int read_all(mitmio_reader *r, flow **v, int max, int *errors)
{
    int n = 0, rc;
    char err[256];
    flow *f;
    *errors = 0;
    for (int calls = 0; calls < 100; calls++) {
        rc = mitmio_reader_next(r, &f, err, sizeof err);
        if (rc == 0)
            break;
        if (rc < 0) {
            (*errors)++;
            continue;
        }
        if (n < max)
            v[n++] = f;
        else
            flow_free(f);
    }
    return n;
}

static const char *hget(const hdrs *h, const char *name)
{
    static char buf[256];
    size_t n;
    const char *v = hdrs_get(h, name, &n);
    if (!v)
        return NULL;
    snprintf(buf, sizeof buf, "%.*s", (int)n, v);
    return buf;
}

static void test_fixture_fields(void)
{
    char err[256];
    mitmio_reader *r = mitmio_reader_open_prefixed(-1, "fixture", fixture, fixture_len, err, sizeof err);
    flow *v[16];
    int errors;
    int n = read_all(r, v, 16, &errors);
    mitmio_reader_close(r);
    T_CHECK(n == 9 && errors == 0);
    if (n != 9)
        return;
    /* 0: a request straight to the proxy, killed by mitmproxy */
    T_STREQ(v[0]->id, "6d1b60d5-1f2a-4846-a7d2-ca7787effcdc");
    T_CHECK(v[0]->response == NULL && v[0]->error && strstr(v[0]->error->msg, "destination unknown"));
    T_CHECK(fabs(v[0]->timestamp_created - 1795590097.8320105) < 1e-6);
    T_CHECK(fabs(v[0]->request->timestamp_start - 1795590097.8318172) < 1e-6);
    /* 1: plain HTTP GET with an odd-case header */
    flow *f = v[1];
    T_STREQ(f->request->method, "GET");
    T_STREQ(f->request->scheme, "http");
    T_STREQ(f->request->host, "127.0.0.1");
    T_CHECK(f->request->port == 18931);
    T_STREQ(f->request->path, "/api/items/7?verbose=1");
    T_STREQ(f->request->http_version, "HTTP/1.1");
    T_STREQ(f->request->authority, "");
    int found = 0;
    for (size_t i = 0; i < f->request->headers.n; i++)
        found |= strcmp(f->request->headers.v[i].name, "X-Odd-CASE") == 0 &&
                 strcmp(f->request->headers.v[i].value, "yes") == 0;
    T_CHECK(found);
    T_STREQ(f->request->headers.v[0].name, "Host");
    T_CHECK(f->response && f->response->status_code == 200);
    T_STREQ(f->response->reason, "OK");
    T_STREQ(hget(&f->response->headers, "content-type"), "application/json");
    T_CHECK(f->response->content.len > 20 && f->response->content.p[0] == '{' &&
            strstr(f->response->content.p, "\"item-7\""));
    T_STREQ(f->client.address_host, "127.0.0.1");
    T_CHECK(f->client.address_port == 57416);
    T_STREQ(f->server.address_host, "127.0.0.1");
    T_CHECK(f->server.address_port == 18931 && f->server.peer_port == 18931);
    T_CHECK(!f->client.tls && !f->server.tls && f->server.timestamp_tcp_setup > 1.7e9);
    T_CHECK(f->request->timestamp_start <= f->request->timestamp_end &&
            f->request->timestamp_end <= f->response->timestamp_end);
    T_CHECK(f->metadata == NULL && f->marked && !*f->marked && f->is_replay == NULL);
    /* 2: POST body */
    T_CHECK(v[2]->request->content.len == 23 &&
            memcmp(v[2]->request->content.p, "{\"a\":1,\"b\":[true,null]}", 23) == 0);
    T_CHECK(v[2]->response->status_code == 201);
    /* 3: gzip kept raw as on the wire */
    T_STREQ(hget(&v[3]->response->headers, "Content-Encoding"), "gzip");
    T_CHECK(v[3]->response->content.len > 2 && (unsigned char)v[3]->response->content.p[0] == 0x1f &&
            (unsigned char)v[3]->response->content.p[1] == 0x8b);
    /* 4: binary body */
    T_CHECK(v[4]->response->content.len == 2048);
    /* 5, 6: HTTPS */
    f = v[6];
    T_STREQ(f->request->scheme, "https");
    T_STREQ(f->request->host, "localhost");
    T_CHECK(f->client.tls && f->server.tls);
    T_STREQ(f->client.sni, "localhost");
    T_STREQ(f->client.tls_version, "TLSv1.3");
    T_STREQ(f->server.cipher, "TLS_AES_256_GCM_SHA384");
    T_STREQ(f->server.cert_subject, "CN=localhost");
    T_STREQ(f->server.cert_issuer, "CN=localhost");
    T_STREQ(f->server.peer_host, "127.0.0.1");
    T_CHECK(f->client.alpn == NULL); /* b"" = nothing negotiated */
    T_CHECK(f->server.timestamp_tls_setup > f->server.timestamp_tcp_setup);
    T_CHECK(f->request->content.len == 12);
    /* 7: connection refused */
    T_CHECK(v[7]->response == NULL && v[7]->error &&
            strstr(v[7]->error->msg, "Connect call failed") && v[7]->error->timestamp > 1.7e9);
    T_CHECK(!v[7]->killed && v[0]->killed);
    /* 8: WebSocket */
    f = v[8];
    T_CHECK(f->websocket && f->ws_close_code == 1000 && f->response->status_code == 101);
    T_CHECK(f->ws_n == 4);
    if (f->ws_n == 4) {
        T_CHECK(f->ws_msgs[0].from_client && f->ws_msgs[0].is_text &&
                f->ws_msgs[0].content.len == 8 && memcmp(f->ws_msgs[0].content.p, "hello ws", 8) == 0);
        T_CHECK(!f->ws_msgs[1].from_client);
        T_CHECK(!f->ws_msgs[2].is_text && f->ws_msgs[2].content.len == 6 &&
                memcmp(f->ws_msgs[2].content.p, "\0\1\2bin", 6) == 0);
        T_CHECK(f->ws_msgs[3].timestamp >= f->ws_msgs[0].timestamp);
    }
    for (int i = 0; i < n; i++)
        flow_free(v[i]);
}

static void test_truncation(void)
{
    char err[256];
    /* flow boundaries, from a full read */
    mitmio_reader *r = mitmio_reader_open_prefixed(-1, "f", fixture, fixture_len, err, sizeof err);
    int bad = 0;
    mitmio_reader_close(r);
    size_t ends[9], pos = 0;
    for (int i = 0; i < 9; i++) {
        size_t len = strtoul(fixture + pos, NULL, 10);
        pos += (size_t)(strchr(fixture + pos, ':') - (fixture + pos)) + 1 + len + 1;
        ends[i] = pos;
    }
    T_CHECK(pos == fixture_len);
    for (size_t cut = 0; cut <= fixture_len; cut++) {
        r = mitmio_reader_open_prefixed(-1, "cut", fixture, cut, err, sizeof err);
        flow *v[10];
        int errors;
        int n = read_all(r, v, 10, &errors);
        int expect = 0;
        for (int i = 0; i < 9; i++)
            expect += ends[i] <= cut;
        int boundary = cut == 0;
        for (int i = 0; i < 9; i++)
            boundary |= ends[i] == cut;
        if (n != expect || errors != !boundary) {
            fprintf(stderr, "  cut %zu: %d flows (want %d), %d errors\n", cut, n, expect, errors);
            bad = 1;
        }
        for (int i = 0; i < n; i++)
            flow_free(v[i]);
        mitmio_reader_close(r);
        if (bad)
            break;
    }
    T_CHECK(!bad);
}

static void test_damage(void)
{
    char err[256];
    flow *f;
    /* a valid tnetstring that is not a flow, then a real flow: -1, then go on */
    size_t first = strtoul(fixture, NULL, 10);
    size_t firstlen = (size_t)(strchr(fixture, ':') - fixture) + 1 + first + 1;
    char *buf = malloc(fixture_len + 64);
    int k = sprintf(buf, "5:hello,12:3:abc,3:def,}");
    memcpy(buf + k, fixture, firstlen);
    mitmio_reader *r = mitmio_reader_open_prefixed(-1, "d", buf, (size_t)k + firstlen, err, sizeof err);
    T_CHECK(mitmio_reader_next(r, &f, err, sizeof err) == -1 && strstr(err, "offset 0"));
    T_CHECK(mitmio_reader_next(r, &f, err, sizeof err) == -1 && strstr(err, "offset 8"));
    T_CHECK(mitmio_reader_next(r, &f, err, sizeof err) == 1 && f->request);
    flow_free(f);
    T_CHECK(mitmio_reader_next(r, &f, err, sizeof err) == 0);
    mitmio_reader_close(r);
    /* framing damage: reported, then the end */
    r = mitmio_reader_open_prefixed(-1, "d", "xyz", 3, err, sizeof err);
    T_CHECK(mitmio_reader_next(r, &f, err, sizeof err) == -1 && strstr(err, "tnetstring"));
    T_CHECK(mitmio_reader_next(r, &f, err, sizeof err) == 0);
    mitmio_reader_close(r);
    /* random byte flips never crash and never yield more flows than exist */
    unsigned s = 12345;
    for (int t = 0; t < 2000; t++) {
        memcpy(buf, fixture, fixture_len);
        for (int j = 0; j < 3; j++) {
            s = s * 1103515245u + 12345u;
            buf[(s >> 8) % fixture_len] ^= (char)(1 + (s & 0x7f));
        }
        r = mitmio_reader_open_prefixed(-1, "flip", buf, fixture_len, err, sizeof err);
        flow *v[12];
        int errors;
        int n = read_all(r, v, 12, &errors);
        T_CHECK(n <= 9);
        for (int i = 0; i < n; i++)
            flow_free(v[i]);
        mitmio_reader_close(r);
    }
    free(buf);
}

static void *feeder(void *arg)
{
    int fd = *(int *)arg;
    for (size_t off = 0; off < fixture_len; off += 777) {
        size_t n = fixture_len - off < 777 ? fixture_len - off : 777;
        if (write(fd, fixture + off, n) < 0)
            break;
    }
    close(fd);
    return NULL;
}

static void test_pipe(void)
{
    int p[2];
    T_CHECK(pipe(p) == 0);
    pthread_t th;
    pthread_create(&th, NULL, feeder, &p[1]);
    char err[256];
    mitmio_reader *r = mitmio_reader_open_fd(p[0], "pipe", err, sizeof err);
    flow *v[10];
    int errors;
    int n = read_all(r, v, 10, &errors);
    T_CHECK(n == 9 && errors == 0);
    for (int i = 0; i < n; i++)
        flow_free(v[i]);
    mitmio_reader_close(r);
    pthread_join(th, NULL);
    close(p[0]);
}

int main(void)
{
    if (load_fixture() < 0) {
        printf("not ok 1 - fixture test/data/mitmdump-8.1.1.flows missing (set MITMLUA_ROOT)\n");
        return 1;
    }
    T_RUN(test_fixture_fields);
    T_RUN(test_truncation);
    T_RUN(test_damage);
    T_RUN(test_pipe);
    free(fixture);
    T_DONE();
}
