/* loadgen — a small HTTP/1.1 keep-alive load generator for the benchmark.
 * wrk and h2load cannot talk through an explicit proxy with CONNECT, so this
 * one can: plain or TLS to the target, directly or through a proxy (http URLs
 * in absolute-form, https URLs through a CONNECT tunnel with TLS inside).
 * One thread, one event loop; prints one line of key=value figures. */
#define _POSIX_C_SOURCE 200809L
#include <errno.h>
#include <getopt.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <arpa/inet.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/bufferevent_ssl.h>
#include <event2/event.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>

/* latency histogram: 10 µs buckets up to 2 s, then one overflow bucket */
#define LG_BUCKET_US 10
#define LG_NBUCKETS 200000

enum lg_state {
    LG_TCP,        /* TCP connect in progress */
    LG_TUNNEL,     /* CONNECT sent, waiting for the proxy's 2xx */
    LG_HANDSHAKE,  /* TLS handshake in progress */
    LG_HEAD,       /* request sent, reading the response head */
    LG_BODY_LEN,   /* reading a Content-Length body */
    LG_CHUNK_SIZE, /* reading a chunk-size line */
    LG_CHUNK_DATA, /* reading chunk data plus its CRLF */
    LG_TRAILER,    /* reading trailer lines up to the empty one */
    LG_BODY_EOF    /* body delimited by the connection's close */
};

typedef struct lg lg;

typedef struct lg_conn {
    lg *g;
    int fd;
    SSL *ssl;
    struct bufferevent *bev;
    enum lg_state st;
    uint64_t remaining; /* bytes left in the body or in the chunk (+2 for CRLF) */
    int close_after;    /* the response said Connection: close */
    int in_response;    /* between sending a request and the end of its response */
    struct timespec t0; /* when the current request was sent */
} lg_conn;

struct lg {
    struct event_base *base;
    SSL_CTX *ctx;
    struct sockaddr_storage addr; /* where TCP goes: the proxy or the target */
    socklen_t addrlen;
    int tls;              /* target URL is https */
    int proxy;            /* going through an explicit proxy */
    int newconn;          /* one request per connection */
    int verify;           /* verify the server's certificate */
    const char *host;     /* target host as written in the URL */
    const char *sni_fmt;  /* SNI pattern, %d = connection number; NULL = URL host */
    char *request;        /* prebuilt request bytes */
    size_t request_len;
    char *connect_req;    /* prebuilt CONNECT request */
    size_t connect_len;
    int nconns;
    uint64_t max_requests; /* 0 = run for the duration */
    double duration;
    double timeout;
    /* counters */
    uint64_t done, non2xx, errors, bytes, connects, started;
    uint64_t conn_seq;
    uint64_t *hist;
    struct timespec t_start, t_last;
    int stopping;
    const char *first_error;
    char errbuf[256];
    lg_conn *conns;
};

static double lg_now_diff(const struct timespec *a, const struct timespec *b)
{
    return (double)(b->tv_sec - a->tv_sec) + (double)(b->tv_nsec - a->tv_nsec) / 1e9;
}

static void lg_note_error(lg *g, const char *what)
{
    g->errors++;
    if (!g->first_error) {
        snprintf(g->errbuf, sizeof g->errbuf, "%s", what);
        g->first_error = g->errbuf;
    }
}

static void lg_conn_start(lg_conn *c);
static void lg_readcb(struct bufferevent *bev, void *arg);
static void lg_eventcb(struct bufferevent *bev, short what, void *arg);

static void lg_conn_close(lg_conn *c)
{
    if (c->bev) {
        bufferevent_free(c->bev);
        c->bev = NULL;
    }
    if (c->ssl) {
        SSL_free(c->ssl);
        c->ssl = NULL;
    }
    if (c->fd >= 0) {
        close(c->fd);
        c->fd = -1;
    }
    c->in_response = 0;
}

/* Too many errors and nothing else happening means the target is down:
 * stop early rather than spin for the whole duration. */
static void lg_conn_fail(lg_conn *c, const char *what)
{
    lg *g = c->g;
    lg_note_error(g, what);
    lg_conn_close(c);
    if (g->errors > 1000 && g->errors > 10 * g->done) {
        g->stopping = 1;
        event_base_loopbreak(g->base);
        return;
    }
    if (!g->stopping)
        lg_conn_start(c);
}

static void lg_send_request(lg_conn *c)
{
    lg *g = c->g;
    if (g->stopping || (g->max_requests && g->started >= g->max_requests)) {
        lg_conn_close(c);
        return;
    }
    g->started++;
    c->st = LG_HEAD;
    c->close_after = 0;
    c->in_response = 1;
    clock_gettime(CLOCK_MONOTONIC, &c->t0);
    bufferevent_write(c->bev, g->request, g->request_len);
}

static void lg_response_done(lg_conn *c)
{
    lg *g = c->g;
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    double us = lg_now_diff(&c->t0, &t) * 1e6;
    size_t b = (size_t)(us / LG_BUCKET_US);
    g->hist[b < LG_NBUCKETS ? b : LG_NBUCKETS]++;
    g->done++;
    g->t_last = t;
    c->in_response = 0;
    if (g->max_requests && g->done >= g->max_requests) {
        g->stopping = 1;
        event_base_loopbreak(g->base);
        return;
    }
    if (c->close_after || g->newconn) {
        lg_conn_close(c);
        if (!g->stopping)
            lg_conn_start(c);
        return;
    }
    lg_send_request(c);
}

/* Values of interest in a response head; case-insensitive names. */
static int lg_parse_head(lg_conn *c, const char *h, size_t n, int *status, int64_t *clen, int *chunked)
{
    *status = 0;
    *clen = -1;
    *chunked = 0;
    if (n < 12 || strncmp(h, "HTTP/1.", 7) != 0)
        return -1;
    *status = atoi(h + 9);
    const char *p = memchr(h, '\n', n);
    const char *end = h + n;
    while (p && p + 1 < end) {
        const char *line = p + 1;
        const char *eol = memchr(line, '\n', (size_t)(end - line));
        if (!eol)
            break;
        size_t len = (size_t)(eol - line);
        if (len >= 15 && strncasecmp(line, "Content-Length:", 15) == 0)
            *clen = strtoll(line + 15, NULL, 10);
        else if (len >= 18 && strncasecmp(line, "Transfer-Encoding:", 18) == 0) {
            for (const char *q = line + 18; q + 7 <= eol; q++)
                if (strncasecmp(q, "chunked", 7) == 0)
                    *chunked = 1;
        } else if (len >= 11 && strncasecmp(line, "Connection:", 11) == 0) {
            for (const char *q = line + 11; q + 5 <= eol; q++)
                if (strncasecmp(q, "close", 5) == 0)
                    c->close_after = 1;
        }
        p = eol;
    }
    return 0;
}

static SSL *lg_new_ssl(lg_conn *c)
{
    lg *g = c->g;
    SSL *ssl = SSL_new(g->ctx);
    if (!ssl)
        return NULL;
    char name[256];
    const char *sni = g->host;
    if (g->sni_fmt) {
        /* each connection its own name, to make a proxy mint a leaf each time */
        const char *pct = strstr(g->sni_fmt, "%d");
        if (pct)
            snprintf(name, sizeof name, "%.*s%llu%s", (int)(pct - g->sni_fmt), g->sni_fmt,
                     (unsigned long long)g->conn_seq, pct + 2);
        else
            snprintf(name, sizeof name, "%s", g->sni_fmt);
        sni = name;
    }
    struct in6_addr tmp;
    int is_ip = inet_pton(AF_INET, sni, &tmp) == 1 || inet_pton(AF_INET6, sni, &tmp) == 1;
    if (!is_ip)
        SSL_set_tlsext_host_name(ssl, sni);
    if (g->verify) {
        X509_VERIFY_PARAM *vp = SSL_get0_param(ssl);
        if (is_ip)
            X509_VERIFY_PARAM_set1_ip_asc(vp, sni);
        else
            X509_VERIFY_PARAM_set1_host(vp, sni, 0);
    }
    return ssl;
}

static int lg_start_tls(lg_conn *c)
{
    lg *g = c->g;
    c->ssl = lg_new_ssl(c);
    if (!c->ssl)
        return -1;
    if (c->bev)
        bufferevent_free(c->bev); /* no CLOSE_ON_FREE: the fd lives on */
    c->bev = bufferevent_openssl_socket_new(g->base, c->fd, c->ssl, BUFFEREVENT_SSL_CONNECTING, BEV_OPT_CLOSE_ON_FREE);
    if (!c->bev)
        return -1; /* fd and ssl are still ours: lg_conn_close frees them */
    /* from here the bufferevent owns both */
    c->ssl = NULL;
    c->fd = -1;
    /* peers that end without close_notify still end a close-delimited body */
    bufferevent_openssl_set_allow_dirty_shutdown(c->bev, 1);
    c->st = LG_HANDSHAKE;
    struct timeval tv = {(time_t)g->timeout, (suseconds_t)((g->timeout - (time_t)g->timeout) * 1e6)};
    bufferevent_set_timeouts(c->bev, &tv, &tv);
    bufferevent_setcb(c->bev, lg_readcb, NULL, lg_eventcb, c);
    bufferevent_enable(c->bev, EV_READ | EV_WRITE);
    return 0;
}

static void lg_connected(lg_conn *c)
{
    lg *g = c->g;
    if (g->proxy && g->tls) {
        c->st = LG_TUNNEL;
        bufferevent_write(c->bev, g->connect_req, g->connect_len);
        return;
    }
    if (g->tls) {
        if (lg_start_tls(c) < 0)
            lg_conn_fail(c, "TLS set-up failed");
        return;
    }
    lg_send_request(c);
}

static void lg_conn_start(lg_conn *c)
{
    lg *g = c->g;
    if (g->stopping || (g->max_requests && g->started >= g->max_requests))
        return;
    g->conn_seq++;
    g->connects++;
    c->fd = socket(g->addr.ss_family, SOCK_STREAM, 0);
    if (c->fd < 0) {
        lg_note_error(g, strerror(errno));
        g->stopping = 1;
        event_base_loopbreak(g->base);
        return;
    }
    evutil_make_socket_nonblocking(c->fd);
    int one = 1;
    setsockopt(c->fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    c->bev = bufferevent_socket_new(g->base, c->fd, 0);
    if (!c->bev) {
        lg_conn_fail(c, "bufferevent_socket_new failed");
        return;
    }
    struct timeval tv = {(time_t)g->timeout, (suseconds_t)((g->timeout - (time_t)g->timeout) * 1e6)};
    bufferevent_set_timeouts(c->bev, &tv, &tv);
    bufferevent_setcb(c->bev, lg_readcb, NULL, lg_eventcb, c);
    bufferevent_enable(c->bev, EV_READ | EV_WRITE);
    c->st = LG_TCP;
    if (bufferevent_socket_connect(c->bev, (struct sockaddr *)&g->addr, (int)g->addrlen) < 0)
        lg_conn_fail(c, "connect failed");
}

/* Consume as much of the input as the current state allows. */
static void lg_readcb(struct bufferevent *bev, void *arg)
{
    lg_conn *c = arg;
    lg *g = c->g;
    struct evbuffer *in = bufferevent_get_input(bev);
    for (;;) {
        size_t avail = evbuffer_get_length(in);
        switch (c->st) {
        case LG_TUNNEL:
        case LG_HEAD: {
            struct evbuffer_ptr e = evbuffer_search(in, "\r\n\r\n", 4, NULL);
            if (e.pos < 0) {
                if (avail > 65536)
                    lg_conn_fail(c, "response head larger than 64 KiB");
                return;
            }
            size_t hl = (size_t)e.pos + 4;
            const char *h = (const char *)evbuffer_pullup(in, (ev_ssize_t)hl);
            int status, chunked;
            int64_t clen;
            if (lg_parse_head(c, h, hl, &status, &clen, &chunked) < 0) {
                lg_conn_fail(c, "malformed response head");
                return;
            }
            evbuffer_drain(in, hl);
            if (c->st == LG_TUNNEL) {
                if (status / 100 != 2) {
                    char m[64];
                    snprintf(m, sizeof m, "CONNECT answered %d", status);
                    lg_conn_fail(c, m);
                    return;
                }
                if (evbuffer_get_length(in) != 0) {
                    lg_conn_fail(c, "bytes after the CONNECT response");
                    return;
                }
                if (lg_start_tls(c) < 0)
                    lg_conn_fail(c, "TLS set-up failed");
                return; /* the old bufferevent is gone */
            }
            if (status / 100 != 2) {
                g->non2xx++;
                if (!g->first_error) {
                    snprintf(g->errbuf, sizeof g->errbuf, "status %d", status);
                    g->first_error = g->errbuf;
                }
            }
            if (chunked) {
                c->st = LG_CHUNK_SIZE;
            } else if (clen >= 0) {
                c->st = LG_BODY_LEN;
                c->remaining = (uint64_t)clen;
            } else if (status == 204 || status == 304 || status / 100 == 1) {
                c->st = LG_BODY_LEN;
                c->remaining = 0;
            } else {
                c->st = LG_BODY_EOF;
                c->close_after = 1;
            }
            break;
        }
        case LG_BODY_LEN: {
            size_t n = avail < c->remaining ? avail : (size_t)c->remaining;
            evbuffer_drain(in, n);
            g->bytes += n;
            c->remaining -= n;
            if (c->remaining > 0)
                return;
            lg_response_done(c);
            if (!c->bev || c->st != LG_HEAD)
                return;
            break;
        }
        case LG_CHUNK_SIZE:
        case LG_TRAILER: {
            size_t ll;
            char *line = evbuffer_readln(in, &ll, EVBUFFER_EOL_CRLF);
            if (!line) {
                if (avail > 4096)
                    lg_conn_fail(c, "chunk line too long");
                return;
            }
            if (c->st == LG_TRAILER) {
                free(line);
                if (ll == 0) {
                    lg_response_done(c);
                    if (!c->bev || c->st != LG_HEAD)
                        return;
                }
                break;
            }
            char *endp;
            unsigned long long sz = strtoull(line, &endp, 16);
            int bad = endp == line;
            free(line);
            if (bad) {
                lg_conn_fail(c, "bad chunk size");
                return;
            }
            if (sz == 0)
                c->st = LG_TRAILER;
            else {
                c->st = LG_CHUNK_DATA;
                c->remaining = sz + 2;
            }
            break;
        }
        case LG_CHUNK_DATA: {
            size_t n = avail < c->remaining ? avail : (size_t)c->remaining;
            evbuffer_drain(in, n);
            g->bytes += n;
            c->remaining -= n;
            if (c->remaining > 0)
                return;
            g->bytes -= 2;
            c->st = LG_CHUNK_SIZE;
            break;
        }
        case LG_BODY_EOF:
            g->bytes += avail;
            evbuffer_drain(in, avail);
            return;
        default:
            if (avail)
                lg_conn_fail(c, "unexpected bytes before the request");
            return;
        }
    }
}

static void lg_eventcb(struct bufferevent *bev, short what, void *arg)
{
    lg_conn *c = arg;
    lg *g = c->g;
    (void)bev;
    if (what & BEV_EVENT_CONNECTED) {
        if (c->st == LG_TCP)
            lg_connected(c);
        else if (c->st == LG_HANDSHAKE)
            lg_send_request(c);
        return;
    }
    if (what & BEV_EVENT_TIMEOUT) {
        lg_conn_fail(c, "timeout");
        return;
    }
    if (c->st == LG_BODY_EOF && (what & BEV_EVENT_EOF)) {
        lg_readcb(c->bev, c);
        c->close_after = 1;
        lg_response_done(c);
        return;
    }
    if ((what & BEV_EVENT_EOF) && !c->in_response) {
        /* the server closed an idle keep-alive connection: just reconnect */
        lg_conn_close(c);
        if (!g->stopping)
            lg_conn_start(c);
        return;
    }
    char m[200];
    unsigned long e = bufferevent_get_openssl_error(bev);
    if (e) {
        char es[160];
        ERR_error_string_n(e, es, sizeof es);
        snprintf(m, sizeof m, "TLS: %s", es);
    } else if (what & BEV_EVENT_EOF)
        snprintf(m, sizeof m, "connection closed mid-response");
    else
        snprintf(m, sizeof m, "socket error: %s", strerror(EVUTIL_SOCKET_ERROR()));
    lg_conn_fail(c, m);
}

static void lg_deadline(evutil_socket_t fd, short what, void *arg)
{
    lg *g = arg;
    (void)fd;
    (void)what;
    g->stopping = 1;
    event_base_loopbreak(g->base);
}

static void lg_usage(FILE *f)
{
    fprintf(f,
            "usage: loadgen [options] URL\n"
            "  URL                 http://HOST:PORT/PATH or https://HOST:PORT/PATH (IP literals)\n"
            "  -x HOST:PORT        explicit proxy (http: absolute-form; https: CONNECT + TLS)\n"
            "  -c N                concurrent connections (10)\n"
            "  -d SECONDS          duration (5)\n"
            "  -n N                stop after N responses (0: duration only)\n"
            "  -N                  new connection for every request (handshake rate)\n"
            "  -H 'Name: value'    extra request header (repeatable)\n"
            "  -S PATTERN          TLS server name, %%d = connection number (default: URL host)\n"
            "  -C FILE             verify the server certificate against CA FILE\n"
            "  -t SECONDS          per-operation timeout (10)\n"
            "Prints: requests= non2xx= errors= connects= seconds= rps= MBps= p50_ms= p99_ms= first_error=\n");
}

static int lg_parse_hostport(const char *s, size_t n, char *host, size_t hostsz, int *port)
{
    /* [v6]:port or host:port */
    const char *colon;
    if (n && s[0] == '[') {
        const char *rb = memchr(s, ']', n);
        if (!rb || rb + 1 >= s + n || rb[1] != ':')
            return -1;
        if ((size_t)(rb - s - 1) >= hostsz)
            return -1;
        memcpy(host, s + 1, (size_t)(rb - s - 1));
        host[rb - s - 1] = 0;
        colon = rb + 1;
    } else {
        colon = NULL;
        for (size_t i = 0; i < n; i++)
            if (s[i] == ':')
                colon = s + i;
        if (!colon || (size_t)(colon - s) >= hostsz)
            return -1;
        memcpy(host, s, (size_t)(colon - s));
        host[colon - s] = 0;
    }
    *port = atoi(colon + 1);
    return *port > 0 && *port < 65536 ? 0 : -1;
}

static int lg_set_addr(lg *g, const char *host, int port)
{
    struct sockaddr_in *a4 = (struct sockaddr_in *)&g->addr;
    struct sockaddr_in6 *a6 = (struct sockaddr_in6 *)&g->addr;
    memset(&g->addr, 0, sizeof g->addr);
    if (inet_pton(AF_INET, host, &a4->sin_addr) == 1) {
        a4->sin_family = AF_INET;
        a4->sin_port = htons((uint16_t)port);
        g->addrlen = sizeof *a4;
        return 0;
    }
    if (inet_pton(AF_INET6, host, &a6->sin6_addr) == 1) {
        a6->sin6_family = AF_INET6;
        a6->sin6_port = htons((uint16_t)port);
        g->addrlen = sizeof *a6;
        return 0;
    }
    return -1;
}

int main(int argc, char **argv)
{
    lg g;
    memset(&g, 0, sizeof g);
    g.nconns = 10;
    g.duration = 5;
    g.timeout = 10;
    const char *proxy = NULL, *cafile = NULL;
    char extra[4096] = "";
    size_t extra_len = 0;
    int opt, duration_set = 0;
    while ((opt = getopt(argc, argv, "x:c:d:n:NH:S:C:t:h")) != -1) {
        switch (opt) {
        case 'x': proxy = optarg; break;
        case 'c': g.nconns = atoi(optarg); break;
        case 'd': g.duration = atof(optarg); duration_set = 1; break;
        case 'n': g.max_requests = strtoull(optarg, NULL, 10); break;
        case 'N': g.newconn = 1; break;
        case 'S': g.sni_fmt = optarg; break;
        case 'C': cafile = optarg; g.verify = 1; break;
        case 't': g.timeout = atof(optarg); break;
        case 'H': {
            size_t l = strlen(optarg);
            if (extra_len + l + 3 > sizeof extra) {
                fprintf(stderr, "loadgen: too many headers\n");
                return 2;
            }
            memcpy(extra + extra_len, optarg, l);
            memcpy(extra + extra_len + l, "\r\n", 3);
            extra_len += l + 2;
            break;
        }
        case 'h': lg_usage(stdout); return 0;
        default: lg_usage(stderr); return 2;
        }
    }
    if (optind != argc - 1 || g.nconns < 1 || g.nconns > 10000 || g.duration <= 0 || g.duration > 3600 ||
        g.timeout <= 0) {
        lg_usage(stderr);
        return 2;
    }
    const char *url = argv[optind];
    size_t skip;
    if (strncmp(url, "http://", 7) == 0)
        skip = 7;
    else if (strncmp(url, "https://", 8) == 0) {
        skip = 8;
        g.tls = 1;
    } else {
        fprintf(stderr, "loadgen: URL must start with http:// or https://\n");
        return 2;
    }
    const char *auth = url + skip;
    const char *slash = strchr(auth, '/');
    const char *path = slash ? slash : "/";
    size_t auth_len = slash ? (size_t)(slash - auth) : strlen(auth);
    char host[256], authority[300];
    int port;
    if (auth_len >= sizeof authority || lg_parse_hostport(auth, auth_len, host, sizeof host, &port) < 0) {
        fprintf(stderr, "loadgen: URL needs HOST:PORT with an IP literal host\n");
        return 2;
    }
    memcpy(authority, auth, auth_len);
    authority[auth_len] = 0;
    g.host = host;
    char phost[256];
    int pport;
    if (proxy) {
        g.proxy = 1;
        if (lg_parse_hostport(proxy, strlen(proxy), phost, sizeof phost, &pport) < 0 || lg_set_addr(&g, phost, pport) < 0) {
            fprintf(stderr, "loadgen: bad proxy address %s (want IP:PORT)\n", proxy);
            return 2;
        }
    } else if (lg_set_addr(&g, host, port) < 0) {
        fprintf(stderr, "loadgen: host must be an IP literal: %s\n", host);
        return 2;
    }

    /* the request, built once; absolute-form only for plain http via a proxy */
    size_t cap = strlen(url) + extra_len + 512;
    g.request = malloc(cap);
    g.connect_req = malloc(600);
    g.hist = calloc(LG_NBUCKETS + 1, sizeof *g.hist);
    g.conns = calloc((size_t)g.nconns, sizeof *g.conns);
    if (!g.request || !g.connect_req || !g.hist || !g.conns) {
        fprintf(stderr, "loadgen: out of memory\n");
        return 1;
    }
    int rl = snprintf(g.request, cap, "GET %s HTTP/1.1\r\nHost: %s\r\nUser-Agent: mitmlua-bench-loadgen\r\n%s%s\r\n",
                      (g.proxy && !g.tls) ? url : path, authority, g.newconn ? "Connection: close\r\n" : "", extra);
    g.request_len = (size_t)rl;
    int cl = snprintf(g.connect_req, 600, "CONNECT %s HTTP/1.1\r\nHost: %s\r\n\r\n", authority, authority);
    g.connect_len = (size_t)cl;

    signal(SIGPIPE, SIG_IGN);
    g.base = event_base_new();
    if (!g.base) {
        fprintf(stderr, "loadgen: event_base_new failed\n");
        return 1;
    }
    if (g.tls) {
        g.ctx = SSL_CTX_new(TLS_client_method());
        if (!g.ctx) {
            fprintf(stderr, "loadgen: SSL_CTX_new failed\n");
            return 1;
        }
        static const unsigned char alpn[] = "\x08http/1.1";
        SSL_CTX_set_alpn_protos(g.ctx, alpn, sizeof alpn - 1);
        /* every connection does a full handshake: no session to resume */
        SSL_CTX_set_session_cache_mode(g.ctx, SSL_SESS_CACHE_OFF);
        SSL_CTX_set_options(g.ctx, SSL_OP_NO_TICKET);
        if (g.verify) {
            if (SSL_CTX_load_verify_locations(g.ctx, cafile, NULL) != 1) {
                fprintf(stderr, "loadgen: cannot load CA file %s\n", cafile);
                return 1;
            }
            SSL_CTX_set_verify(g.ctx, SSL_VERIFY_PEER, NULL);
        } else
            SSL_CTX_set_verify(g.ctx, SSL_VERIFY_NONE, NULL);
    }

    struct timeval dl = {(time_t)g.duration, (suseconds_t)((g.duration - (time_t)g.duration) * 1e6)};
    if (g.max_requests && !duration_set)
        dl.tv_sec = 3600; /* a count run is bounded by the count, and by an hour */
    struct event *deadline = evtimer_new(g.base, lg_deadline, &g);
    evtimer_add(deadline, &dl);
    clock_gettime(CLOCK_MONOTONIC, &g.t_start);
    g.t_last = g.t_start;
    for (int i = 0; i < g.nconns; i++) {
        g.conns[i].g = &g;
        g.conns[i].fd = -1;
        lg_conn_start(&g.conns[i]);
    }
    event_base_dispatch(g.base);
    struct timespec t_end;
    clock_gettime(CLOCK_MONOTONIC, &t_end);
    /* a count run ends with its last response; a timed run at the deadline */
    double secs = lg_now_diff(&g.t_start, g.max_requests && g.done >= g.max_requests ? &g.t_last : &t_end);
    if (secs <= 0)
        secs = 1e-9;

    uint64_t p50 = 0, p99 = 0, acc = 0;
    int have50 = 0;
    for (size_t b = 0; b <= LG_NBUCKETS && g.done; b++) {
        acc += g.hist[b];
        if (!have50 && acc * 2 >= g.done) {
            p50 = b;
            have50 = 1;
        }
        if (acc * 100 >= g.done * 99) {
            p99 = b;
            break;
        }
    }
    printf("requests=%llu non2xx=%llu errors=%llu connects=%llu seconds=%.3f rps=%.1f MBps=%.2f p50_ms=%.3f "
           "p99_ms=%.3f first_error=%s\n", /* last: it may hold spaces */
           (unsigned long long)g.done, (unsigned long long)g.non2xx, (unsigned long long)g.errors,
           (unsigned long long)g.connects, secs, (double)g.done / secs, (double)g.bytes / secs / 1e6,
           (double)(p50 * LG_BUCKET_US + LG_BUCKET_US / 2) / 1000.0,
           (double)(p99 * LG_BUCKET_US + LG_BUCKET_US / 2) / 1000.0,
           g.first_error ? g.first_error : "-");
    for (int i = 0; i < g.nconns; i++)
        lg_conn_close(&g.conns[i]);
    event_free(deadline);
    event_base_free(g.base);
    if (g.ctx)
        SSL_CTX_free(g.ctx);
    free(g.request);
    free(g.connect_req);
    free(g.hist);
    free(g.conns);
    return g.done > 0 ? 0 : 1;
}
