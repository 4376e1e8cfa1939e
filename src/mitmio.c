/* mitmio.c — mitmproxy flow files in.  A flow file is a sequence of
 * tnetstrings ("LEN:DATA" + one type byte), each a dict holding one flow's
 * state (mitmproxy/io/ and the field list of its get_state()).  Values are
 * parsed in place as spans; nothing is copied until it lands in the flow.
 * Version differences are absorbed by reading tolerantly: unknown keys are
 * ignored, missing ones stay at their defaults, text may be bytes or str. */
#include <errno.h>
#include <jansson.h>
#include <openssl/pem.h>
#include <openssl/x509.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "mitmio.h"

/* ---- tnetstring values ------------------------------------------------- */

typedef struct tn {
    char type;          /* , ; # ^ ! ~ ] } or 0 = absent */
    const char *p;      /* payload */
    size_t n;
} tn;

/* Parse one element at p[0..n).  Returns bytes used, 0 on malformed. */
static size_t tn_parse(const char *p, size_t n, tn *out)
{
    size_t i = 0, len = 0;
    while (i < n && p[i] >= '0' && p[i] <= '9') {
        if (i >= 12)
            return 0;
        len = len * 10 + (size_t)(p[i] - '0');
        i++;
    }
    if (i == 0 || i >= n || p[i] != ':')
        return 0;
    i++;
    if (n - i < len + 1)
        return 0;
    out->p = p + i;
    out->n = len;
    out->type = p[i + len];
    /* a switch, not strchr(): this runs for every element of every flow
     * and the call was a third of `-n -r FILE FILTER`'s time */
    switch (out->type) {
    case ',': case ';': case '#': case '^': case '!': case '~': case ']': case '}':
        break;
    default:
        return 0;
    }
    return i + len + 1;
}

static int tn_is_text(const tn *v)
{
    return v->type == ',' || v->type == ';';
}

/* Value of `key` in dict d; type 0 when absent or d is not a dict. */
static tn tn_get(const tn *d, const char *key)
{
    tn k, v, none = {0, NULL, 0};
    if (d->type != '}')
        return none;
    size_t kl = strlen(key), off = 0;
    while (off < d->n) {
        size_t a = tn_parse(d->p + off, d->n - off, &k);
        if (!a)
            return none;
        size_t b = tn_parse(d->p + off + a, d->n - off - a, &v);
        if (!b)
            return none;
        off += a + b;
        if (tn_is_text(&k) && k.n == kl && memcmp(k.p, key, kl) == 0)
            return v;
    }
    return none;
}

/* The next item of list l from byte offset *off (moved past it); 0 at the
 * end.  Walking a list with tn_at would parse it again for every item. */
static int tn_next(const tn *l, size_t *off, tn *out)
{
    if (l->type != ']' || *off >= l->n)
        return 0;
    size_t a = tn_parse(l->p + *off, l->n - *off, out);
    if (!a)
        return 0;
    *off += a;
    return 1;
}

/* i-th item of a list (type 0 when out of range). */
static tn tn_at(const tn *l, size_t idx)
{
    tn v, none = {0, NULL, 0};
    for (size_t off = 0, i = 0; tn_next(l, &off, &v); i++)
        if (i == idx)
            return v;
    return none;
}

/* Structural check of a whole value, so later lookups can trust spans. */
static int tn_valid(const tn *v, int depth)
{
    if (depth > 64)
        return 0;
    if (v->type != ']' && v->type != '}')
        return 1;
    size_t off = 0, k = 0;
    while (off < v->n) {
        tn c;
        size_t a = tn_parse(v->p + off, v->n - off, &c);
        if (!a || !tn_valid(&c, depth + 1))
            return 0;
        off += a;
        k++;
    }
    return v->type == ']' || k % 2 == 0;
}

static int tn_num(const tn *v, double *d)
{
    if (v->type != '#' && v->type != '^')
        return -1;
    char buf[64];
    if (v->n == 0 || v->n >= sizeof buf)
        return -1;
    memcpy(buf, v->p, v->n);
    buf[v->n] = 0;
    char *end;
    *d = strtod(buf, &end);
    return *end ? -1 : 0;
}

static double tn_ts(const tn *v)
{
    double d = 0;
    return tn_num(v, &d) == 0 ? d : 0;
}

static long long tn_int(const tn *v, long long dflt)
{
    double d;
    if (tn_num(v, &d) < 0 || d < -9e15 || d > 9e15)
        return dflt;
    return (long long)d;
}

static int tn_bool(const tn *v)
{
    return v->type == '!' && v->n == 4 && memcmp(v->p, "true", 4) == 0;
}

/* Set *dst from a text value; None/absent leaves NULL. */
static int tn_str(const tn *v, char **dst)
{
    if (!tn_is_text(v))
        return 0;
    return flow_strnset(dst, v->p, v->n);
}

/* ---- JSON of arbitrary values (metadata) ------------------------------- */

static json_t *tn_json(const tn *v, int depth)
{
    if (depth > 32)
        return json_null();
    switch (v->type) {
    case ',':
    case ';':
        return json_stringn(v->p, v->n); /* NULL (-> null) unless UTF-8 */
    case '#': {
        double d;
        return tn_num(v, &d) == 0 ? json_integer((json_int_t)d) : json_null();
    }
    case '^': {
        double d;
        return tn_num(v, &d) == 0 ? json_real(d) : json_null();
    }
    case '!':
        return json_boolean(tn_bool(v));
    case ']': {
        json_t *a = json_array();
        tn c;
        for (size_t off = 0, k; a && off < v->n; off += k) {
            if (!(k = tn_parse(v->p + off, v->n - off, &c)))
                break;
            json_t *j = tn_json(&c, depth + 1);
            json_array_append_new(a, j ? j : json_null());
        }
        return a;
    }
    case '}': {
        json_t *o = json_object();
        tn kk, vv;
        for (size_t off = 0, a, b; o && off < v->n; off += a + b) {
            if (!(a = tn_parse(v->p + off, v->n - off, &kk)) ||
                !(b = tn_parse(v->p + off + a, v->n - off - a, &vv)))
                break;
            char key[256];
            snprintf(key, sizeof key, "%.*s", (int)(kk.n < 255 ? kk.n : 255), kk.p);
            json_t *j = tn_json(&vv, depth + 1);
            json_object_set_new(o, key, j ? j : json_null());
        }
        return o;
    }
    default:
        return json_null();
    }
}

/* ---- flow conversion --------------------------------------------------- */

/* What a conversion is held to, and why it refused. */
typedef struct mconv {
    const flow_limits *lim;
    const char *part;   /* "request", "response", ... */
    char why[192];
} mconv;

static int conv_refuse(mconv *c, const char *msg)
{
    char m[160];
    snprintf(m, sizeof m, "%s", msg);
    snprintf(c->why, sizeof c->why, "%s: %s", c->part, m);
    return -1;
}

static int conv_hdrs(mconv *c, const tn *l, hdrs *h)
{
    if (l->type != ']')
        return 0;
    tn pair;
    uint64_t size = 0;
    for (size_t off = 0; tn_next(l, &off, &pair);) {
        tn k = tn_at(&pair, 0), v = tn_at(&pair, 1);
        if (!tn_is_text(&k) || !tn_is_text(&v))
            return -1;
        char m[160];
        if (flow_limits_hdr(c->lim, h, &size, k.n, v.n, m, sizeof m) < 0)
            return conv_refuse(c, m);
        if (hdrs_add(h, k.p, k.n, v.p, v.n) < 0)
            return -1;
    }
    return 0;
}

static int conv_addr(const tn *a, char **host, uint16_t *port)
{
    tn h = tn_at(a, 0), p = tn_at(a, 1);
    if (!h.type)
        return 0;
    *port = (uint16_t)tn_int(&p, 0);
    return tn_str(&h, host);
}

/* "subject" and "issuer" of the first certificate, RFC 2253 text. */
static void conv_cert(const tn *list, flow_conn *c)
{
    tn pem = tn_at(list, 0);
    if (!tn_is_text(&pem) || pem.n > (1 << 20))
        return;
    BIO *bio = BIO_new_mem_buf(pem.p, (int)pem.n);
    X509 *x = bio ? PEM_read_bio_X509(bio, NULL, NULL, NULL) : NULL;
    if (x) {
        X509_NAME *names[2] = {X509_get_subject_name(x), X509_get_issuer_name(x)};
        char **dst[2] = {&c->cert_subject, &c->cert_issuer};
        for (int i = 0; i < 2; i++) {
            BIO *m = BIO_new(BIO_s_mem());
            if (!m)
                break;
            X509_NAME_print_ex(m, names[i], 0, XN_FLAG_RFC2253);
            char *s;
            long n = BIO_get_mem_data(m, &s);
            flow_strnset(dst[i], s, (size_t)n);
            BIO_free(m);
        }
        X509_free(x);
    }
    BIO_free(bio);
}

static int conv_conn(const tn *d, flow_conn *c, int server)
{
    if (d->type != '}')
        return 0;
    tn v;
    if (conv_addr((v = tn_get(d, "address"), &v), &c->address_host, &c->address_port) < 0)
        return -1;
    if (server) {
        /* ip_address until version 18-ish, peername after */
        v = tn_get(d, "peername");
        if (!v.type || v.type == '~')
            v = tn_get(d, "ip_address");
        if (conv_addr(&v, &c->peer_host, &c->peer_port) < 0)
            return -1;
        c->timestamp_tcp_setup = tn_ts((v = tn_get(d, "timestamp_tcp_setup"), &v));
        conv_cert((v = tn_get(d, "certificate_list"), &v), c);
    }
    if (tn_str((v = tn_get(d, "sni"), &v), &c->sni) < 0)
        return -1;
    v = tn_get(d, "alpn");
    if (tn_is_text(&v) && v.n && flow_strnset(&c->alpn, v.p, v.n) < 0)
        return -1;
    if (tn_str((v = tn_get(d, "tls_version"), &v), &c->tls_version) < 0 ||
        tn_str((v = tn_get(d, "cipher_name"), &v), &c->cipher) < 0)
        return -1;
    v = tn_get(d, "tls_established");
    c->tls = v.type ? tn_bool(&v) : tn_bool((v = tn_get(d, "tls"), &v));
    c->timestamp_start = tn_ts((v = tn_get(d, "timestamp_start"), &v));
    c->timestamp_tls_setup = tn_ts((v = tn_get(d, "timestamp_tls_setup"), &v));
    c->timestamp_end = tn_ts((v = tn_get(d, "timestamp_end"), &v));
    return 0;
}

static int conv_content(mconv *c, const tn *v, bytes *b)
{
    if (!tn_is_text(v) || v->n == 0)
        return 0;
    char m[160];
    if (flow_limits_body(c->lim, v->n, m, sizeof m) < 0)
        return conv_refuse(c, m);
    return bytes_set(b, v->p, v->n);
}

static int conv_request(mconv *c, const tn *d, flow_request *q)
{
    tn v;
    c->part = "request";
    if (tn_str((v = tn_get(d, "method"), &v), &q->method) < 0 ||
        tn_str((v = tn_get(d, "scheme"), &v), &q->scheme) < 0 ||
        tn_str((v = tn_get(d, "authority"), &v), &q->authority) < 0 ||
        tn_str((v = tn_get(d, "host"), &v), &q->host) < 0 ||
        tn_str((v = tn_get(d, "path"), &v), &q->path) < 0 ||
        tn_str((v = tn_get(d, "http_version"), &v), &q->http_version) < 0 ||
        conv_hdrs(c, (v = tn_get(d, "headers"), &v), &q->headers) < 0 ||
        conv_hdrs(c, (v = tn_get(d, "trailers"), &v), &q->trailers) < 0 ||
        conv_content(c, (v = tn_get(d, "content"), &v), &q->content) < 0)
        return -1;
    if (!q->method || !q->host)
        return -1;
    long long port = tn_int((v = tn_get(d, "port"), &v), 0);
    q->port = port > 0 && port < 65536 ? (uint16_t)port : 0;
    q->timestamp_start = tn_ts((v = tn_get(d, "timestamp_start"), &v));
    q->timestamp_end = tn_ts((v = tn_get(d, "timestamp_end"), &v));
    return 0;
}

static int conv_response(mconv *c, const tn *d, flow_response *s)
{
    tn v;
    c->part = "response";
    if (tn_str((v = tn_get(d, "reason"), &v), &s->reason) < 0 ||
        tn_str((v = tn_get(d, "http_version"), &v), &s->http_version) < 0 ||
        conv_hdrs(c, (v = tn_get(d, "headers"), &v), &s->headers) < 0 ||
        conv_hdrs(c, (v = tn_get(d, "trailers"), &v), &s->trailers) < 0 ||
        conv_content(c, (v = tn_get(d, "content"), &v), &s->content) < 0)
        return -1;
    s->status_code = (int)tn_int((v = tn_get(d, "status_code"), &v), 0);
    s->timestamp_start = tn_ts((v = tn_get(d, "timestamp_start"), &v));
    s->timestamp_end = tn_ts((v = tn_get(d, "timestamp_end"), &v));
    return 0;
}

/* WebSocket messages: [opcode, from_client, content, timestamp, dropped
 * (v14+), injected (v15+)]; TCP messages: [from_client, content, timestamp]. */
static int conv_messages(mconv *mc, const tn *l, flow *f, int tcp)
{
    tn m;
    mc->part = tcp ? "TCP" : "WebSocket";
    for (size_t off = 0; tn_next(l, &off, &m);) {
        tn a = tn_at(&m, 0), b = tn_at(&m, 1), c = tn_at(&m, 2), d = tn_at(&m, 3);
        flow_ws_message *w;
        char lm[160];
        if (flow_limits_message(mc->lim, f, lm, sizeof lm) < 0 ||
            flow_limits_body(mc->lim, tcp ? b.n : c.n, lm, sizeof lm) < 0)
            return conv_refuse(mc, lm);
        if (tcp) {
            if (!tn_is_text(&b))
                return -1;
            w = flow_ws_add(f, tn_bool(&a), false, b.p, b.n);
            if (w)
                w->timestamp = tn_ts(&c);
        } else {
            if (!tn_is_text(&c))
                return -1;
            w = flow_ws_add(f, tn_bool(&b), tn_int(&a, 2) == 1, c.p, c.n);
            if (w) {
                w->timestamp = tn_ts(&d);
                tn k = tn_at(&m, 4);
                w->dropped = tn_bool(&k);
            }
        }
        if (!w)
            return -1;
    }
    return 0;
}

/* 1 = converted, 0 = a flow kind with no flow.h form (skip), -1 = bad */
static int conv_flow(mconv *c, const tn *d, flow **out, const char **why)
{
    tn v = tn_get(d, "type");
    int tcp = 0;
    if (tn_is_text(&v) && v.n == 3 && memcmp(v.p, "dns", 3) == 0)
        return 0;
    if (tn_is_text(&v) && v.n == 3 && memcmp(v.p, "tcp", 3) == 0)
        tcp = 1;
    else if (tn_is_text(&v) && v.n == 3 && memcmp(v.p, "udp", 3) == 0)
        tcp = 1;
    else if (!(tn_is_text(&v) && v.n == 4 && memcmp(v.p, "http", 4) == 0)) {
        *why = "not a flow (no known \"type\")";
        return -1;
    }
    flow *f = calloc(1, sizeof *f);
    if (!f) {
        *why = "out of memory";
        return -1;
    }
    *why = "malformed flow";
    f->type = tcp ? FLOW_TCP : FLOW_HTTP;
    v = tn_get(d, "id");
    if (tn_is_text(&v)) {
        size_t n = v.n < 36 ? v.n : 36;
        memcpy(f->id, v.p, n);
        f->id[n] = 0;
    }
    f->timestamp_created = tn_ts((v = tn_get(d, "timestamp_created"), &v));
    if (conv_conn((v = tn_get(d, "client_conn"), &v), &f->client, 0) < 0 ||
        conv_conn((v = tn_get(d, "server_conn"), &v), &f->server, 1) < 0)
        goto fail;
    if (!tcp) {
        v = tn_get(d, "request");
        if (v.type != '}') {
            *why = "http flow without a request";
            goto fail;
        }
        if (!(f->request = flow_request_new()) || conv_request(c, &v, f->request) < 0)
            goto fail;
        v = tn_get(d, "response");
        if (v.type == '}' &&
            (!(f->response = flow_response_new()) || conv_response(c, &v, f->response) < 0))
            goto fail;
        v = tn_get(d, "websocket");
        if (v.type == '}') {
            f->websocket = true;
            tn l = tn_get(&v, "messages");
            if (conv_messages(c, &l, f, 0) < 0)
                goto fail;
            f->ws_close_code = (int)tn_int((l = tn_get(&v, "close_code"), &l), 0);
            f->ws_closed_by_client = tn_bool((l = tn_get(&v, "closed_by_client"), &l));
            l = tn_get(&v, "close_reason");
            if (l.type && l.n && tn_str(&l, &f->ws_close_reason) < 0)
                goto fail;
        }
    } else {
        v = tn_get(d, "messages");
        if (conv_messages(c, &v, f, 1) < 0)
            goto fail;
    }
    if (!f->timestamp_created)
        f->timestamp_created = f->request ? f->request->timestamp_start
                                          : f->client.timestamp_start;
    v = tn_get(d, "error");
    if (v.type == '}') {
        if (!(f->error = calloc(1, sizeof *f->error)))
            goto fail;
        tn m = tn_get(&v, "msg");
        if (tn_str(&m, &f->error->msg) < 0)
            goto fail;
        f->error->timestamp = tn_ts((m = tn_get(&v, "timestamp"), &m));
    }
    v = tn_get(d, "metadata");
    if (v.type == '}' && v.n > 0) {
        json_t *j = tn_json(&v, 0);
        char *s = j ? json_dumps(j, JSON_COMPACT | JSON_ENSURE_ASCII) : NULL;
        json_decref(j);
        if (s) {
            int rc = flow_strset(&f->metadata, s);
            free(s);
            if (rc < 0)
                goto fail;
        }
    }
    v = tn_get(d, "marked");
    if (v.type == '!') /* before mitmproxy 7 marked was a bool */
        flow_strset(&f->marked, tn_bool(&v) ? ":default:" : "");
    else if (tn_str(&v, &f->marked) < 0)
        goto fail;
    if (tn_str((v = tn_get(d, "comment"), &v), &f->comment) < 0 ||
        tn_str((v = tn_get(d, "is_replay"), &v), &f->is_replay) < 0)
        goto fail;
    /* "killed" is not saved by mitmproxy; an error of that kind tells it */
    if (f->error && f->error->msg && strstr(f->error->msg, "Connection killed"))
        f->killed = true;
    *out = f;
    return 1;
fail:
    if (c->why[0]) {
        if (f->id[0]) {
            char m[sizeof c->why];
            snprintf(m, sizeof m, "%s", c->why);
            snprintf(c->why, sizeof c->why, "flow %s: %.140s", f->id, m);
        }
        *why = c->why;
    }
    flow_free(f);
    return -1;
}

/* ---- the reader -------------------------------------------------------- */

struct mitmio_reader {
    int fd;
    char *name;
    char *buf;
    size_t cap, start, end;
    unsigned long long off;
    int eof, dead;
    size_t max_flow;
    flow_limits lim;
};

mitmio_reader *mitmio_reader_open_prefixed(int fd, const char *name, const void *pre,
                                           size_t n, char *err, size_t errsz)
{
    mitmio_reader *r = calloc(1, sizeof *r);
    if (!r)
        goto oom;
    r->fd = fd;
    r->eof = fd < 0;
    r->max_flow = (size_t)1 << 30;
    r->lim = flow_limits_default;
    r->cap = n > 65536 ? n : 65536;
    r->buf = malloc(r->cap);
    r->name = strdup(name ? name : "flows");
    if (!r->buf || !r->name)
        goto oom;
    if (n)
        memcpy(r->buf, pre, n);
    r->end = n;
    return r;
oom:
    snprintf(err, errsz, "out of memory");
    mitmio_reader_close(r);
    return NULL;
}

mitmio_reader *mitmio_reader_open_fd(int fd, const char *name, char *err, size_t errsz)
{
    return mitmio_reader_open_prefixed(fd, name, NULL, 0, err, errsz);
}

void mitmio_reader_set_max_flow(mitmio_reader *r, size_t max)
{
    r->max_flow = max;
}

void mitmio_reader_set_limits(mitmio_reader *r, const flow_limits *lim)
{
    r->lim = *lim;
}

void mitmio_reader_close(mitmio_reader *r)
{
    if (!r)
        return;
    free(r->buf);
    free(r->name);
    free(r);
}

/* Make `need` bytes available unless the input ends first; -1 on error. */
static int m_fill(mitmio_reader *r, size_t need, char *err, size_t errsz)
{
    while (r->end - r->start < need && !r->eof) {
        if (r->start) {
            memmove(r->buf, r->buf + r->start, r->end - r->start);
            r->end -= r->start;
            r->start = 0;
        }
        if (r->cap - r->end < 4096 || r->cap < need) {
            size_t nc = r->cap * 2;
            while (nc < need)
                nc *= 2;
            char *nb = realloc(r->buf, nc);
            if (!nb) {
                snprintf(err, errsz, "%s: out of memory", r->name);
                return -1;
            }
            r->buf = nb;
            r->cap = nc;
        }
        ssize_t k = read(r->fd, r->buf + r->end, r->cap - r->end);
        if (k < 0) {
            if (errno == EINTR)
                continue;
            snprintf(err, errsz, "%s: read: %s", r->name, strerror(errno));
            return -1;
        }
        if (k == 0)
            r->eof = 1;
        r->end += (size_t)k;
    }
    return 0;
}

static int m_dead(mitmio_reader *r, char *err, size_t errsz, const char *what)
{
    snprintf(err, errsz, "%s: offset %llu: %s", r->name, r->off, what);
    r->dead = 1;
    return -1;
}

int mitmio_reader_next(mitmio_reader *r, flow **out, char *err, size_t errsz)
{
    *out = NULL;
    for (;;) {
        if (r->dead)
            return 0;
        if (m_fill(r, 14, err, errsz) < 0)
            return -1;
        size_t avail = r->end - r->start;
        if (avail == 0)
            return 0;
        const char *p = r->buf + r->start;
        size_t i = 0, len = 0;
        while (i < avail && i < 13 && p[i] >= '0' && p[i] <= '9')
            len = len * 10 + (size_t)(p[i++] - '0');
        if (i == 0 || i > 12 || i >= avail || p[i] != ':')
            return m_dead(r, err, errsz, avail < 14 && i == avail
                                              ? "truncated flow"
                                              : "not a tnetstring (bad length prefix)");
        if (len > r->max_flow)
            return m_dead(r, err, errsz, "flow larger than the size limit");
        size_t total = i + 1 + len + 1;
        if (m_fill(r, total, err, errsz) < 0)
            return -1;
        if (r->end - r->start < total) {
            char what[96];
            snprintf(what, sizeof what, "truncated flow (%zu of %zu bytes)",
                     r->end - r->start, total);
            return m_dead(r, err, errsz, what);
        }
        tn top;
        p = r->buf + r->start;
        if (tn_parse(p, total, &top) != total || !tn_valid(&top, 0))
            return m_dead(r, err, errsz, "malformed tnetstring");
        unsigned long long at = r->off;
        r->start += total;
        r->off += total;
        if (top.type != '}') {
            snprintf(err, errsz, "%s: offset %llu: not a flow (top-level value is not a dict)",
                     r->name, at);
            return -1;
        }
        const char *why = NULL;
        mconv c = {.lim = &r->lim, .part = "flow"};
        int rc = conv_flow(&c, &top, out, &why);
        if (rc == 1)
            return 1;
        if (rc < 0) {
            snprintf(err, errsz, "%s: offset %llu: %s", r->name, at, why);
            return -1;
        }
        /* rc == 0: a DNS flow, skipped */
    }
}
