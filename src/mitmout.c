/* mitmout.c — flows out in mitmproxy's flow format (see mitmout.h).  A
 * tnetstring is "LEN:DATA" and a type byte; a container's length comes
 * before its items, so each container is built in a buffer of its own and
 * then wrapped.  Every key mitmproxy 8.1.1's from_state() reads is written:
 * it refuses a flow with one missing. */
#include "mitmout.h"

#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <openssl/rand.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* ---- tnetstring values --------------------------------------------------- */

static int tn_raw(bytes *o, const void *p, size_t n, char type)
{
    char head[32];
    int hl = snprintf(head, sizeof head, "%zu:", n);
    return bytes_append(o, head, (size_t)hl) || bytes_append(o, p, n) || bytes_append(o, &type, 1) ? -1 : 0;
}

static int tn_bytes(bytes *o, const char *p, size_t n)
{
    return tn_raw(o, p ? p : "", p ? n : 0, ',');
}

static int tn_none(bytes *o)
{
    return tn_raw(o, "", 0, '~');
}

/* a str, or None for NULL */
static int tn_str(bytes *o, const char *s)
{
    return s ? tn_raw(o, s, strlen(s), ';') : tn_none(o);
}

static int tn_int(bytes *o, long long v)
{
    char b[32];
    return tn_raw(o, b, (size_t)snprintf(b, sizeof b, "%lld", v), '#');
}

static int tn_float(bytes *o, double v)
{
    char b[40];
    int n = snprintf(b, sizeof b, "%.17g", v);
    if (!strpbrk(b, ".eni"))   /* Python's float() reads "5" too; keep it a float to the eye */
        n = snprintf(b, sizeof b, "%.1f", v);
    return tn_raw(o, b, (size_t)n, '^');
}

/* a timestamp, None when never set */
static int tn_ts(bytes *o, double v)
{
    return v > 0 ? tn_float(o, v) : tn_none(o);
}

static int tn_bool(bytes *o, bool v)
{
    return v ? tn_raw(o, "true", 4, '!') : tn_raw(o, "false", 5, '!');
}

/* the finished container c into o; c is freed */
static int tn_wrap(bytes *o, bytes *c, char type)
{
    int rc = tn_raw(o, c->p, c->len, type);
    bytes_free(c);
    return rc;
}

static int tn_key(bytes *o, const char *k)
{
    return tn_raw(o, k, strlen(k), ';');
}

static int tn_addr(bytes *o, const char *host, unsigned port)
{
    if (!host)
        return tn_none(o);
    bytes l = {0};
    int rc = tn_str(&l, host) | tn_int(&l, port);
    return tn_wrap(o, &l, ']') | rc;
}

static int tn_empty_list(bytes *o)
{
    return tn_raw(o, "", 0, ']');
}

static int tn_headers(bytes *o, const hdrs *h)
{
    bytes l = {0};
    int rc = 0;
    for (size_t i = 0; i < h->n && !rc; i++) {
        bytes pair = {0};
        rc = tn_bytes(&pair, h->v[i].name, h->v[i].name_len) | tn_bytes(&pair, h->v[i].value, h->v[i].value_len);
        rc |= tn_wrap(&l, &pair, ']');
    }
    return tn_wrap(o, &l, ']') | rc;
}

/* flow.metadata is JSON text: its values as Python's */
static int tn_json(bytes *o, const json_t *v, int depth)
{
    if (depth > 64)
        return tn_none(o);
    switch (json_typeof(v)) {
    case JSON_OBJECT: {
        bytes d = {0};
        const char *k;
        json_t *x;
        int rc = 0;
        json_object_foreach((json_t *)v, k, x)
            rc |= tn_key(&d, k) | tn_json(&d, x, depth + 1);
        return tn_wrap(o, &d, '}') | rc;
    }
    case JSON_ARRAY: {
        bytes l = {0};
        size_t i;
        json_t *x;
        int rc = 0;
        json_array_foreach(v, i, x)
            rc |= tn_json(&l, x, depth + 1);
        return tn_wrap(o, &l, ']') | rc;
    }
    case JSON_STRING: return tn_raw(o, json_string_value(v), json_string_length(v), ';');
    case JSON_INTEGER: return tn_int(o, (long long)json_integer_value(v));
    case JSON_REAL: return tn_float(o, json_real_value(v));
    case JSON_TRUE: return tn_bool(o, true);
    case JSON_FALSE: return tn_bool(o, false);
    default: return tn_none(o);
    }
}

/* ---- the flow's parts ---------------------------------------------------- */

static void uuid4(char out[37])
{
    unsigned char r[16];
    if (RAND_bytes(r, sizeof r) != 1)
        memset(r, 0x5a, sizeof r);
    r[6] = (unsigned char)((r[6] & 0x0f) | 0x40);
    r[8] = (unsigned char)((r[8] & 0x3f) | 0x80);
    snprintf(out, 37, "%02x%02x%02x%02x-%02x%02x-%02x%02x-%02x%02x-%02x%02x%02x%02x%02x%02x", r[0], r[1], r[2],
             r[3], r[4], r[5], r[6], r[7], r[8], r[9], r[10], r[11], r[12], r[13], r[14], r[15]);
}

/* what client and server connections share */
static int conn_common(bytes *d, const flow_conn *c)
{
    char id[37];
    uuid4(id);
    int rc = tn_key(d, "id") | tn_str(d, id);
    rc |= tn_key(d, "address") | tn_addr(d, c->address_host, c->address_port);
    rc |= tn_key(d, "state") | tn_int(d, 0);
    rc |= tn_key(d, "timestamp_start") | tn_ts(d, c->timestamp_start);
    rc |= tn_key(d, "timestamp_end") | tn_ts(d, c->timestamp_end);
    rc |= tn_key(d, "timestamp_tls_setup") | tn_ts(d, c->timestamp_tls_setup);
    rc |= tn_key(d, "error") | tn_none(d);
    rc |= tn_key(d, "tls") | tn_bool(d, c->tls);
    rc |= tn_key(d, "certificate_list") | tn_empty_list(d);
    rc |= tn_key(d, "alpn");
    rc |= c->alpn ? tn_bytes(d, c->alpn, strlen(c->alpn)) : tn_none(d);
    rc |= tn_key(d, "alpn_offers") | tn_empty_list(d);
    rc |= tn_key(d, "cipher_name") | tn_str(d, c->cipher);
    rc |= tn_key(d, "cipher_list") | tn_empty_list(d);
    rc |= tn_key(d, "tls_version") | tn_str(d, c->tls_version);
    rc |= tn_key(d, "sni") | tn_str(d, c->sni);
    rc |= tn_key(d, "tls_established") | tn_bool(d, c->tls && c->tls_version);
    return rc;
}

static int client_conn(bytes *o, const flow_conn *c)
{
    bytes d = {0};
    flow_conn cc = *c;
    if (!cc.address_host)
        cc.address_host = "";   /* mitmproxy's client always has a peer */
    int rc = conn_common(&d, &cc);
    rc |= tn_key(&d, "sockname") | tn_addr(&d, "", 0);
    rc |= tn_key(&d, "tls_extensions") | tn_empty_list(&d);
    rc |= tn_key(&d, "mitmcert") | tn_none(&d);
    return tn_wrap(o, &d, '}') | rc;
}

static int server_conn(bytes *o, const flow_conn *c)
{
    bytes d = {0};
    int rc = conn_common(&d, c);
    rc |= tn_key(&d, "ip_address") | tn_addr(&d, c->peer_host, c->peer_port);
    rc |= tn_key(&d, "source_address") | tn_none(&d);
    rc |= tn_key(&d, "timestamp_tcp_setup") | tn_ts(&d, c->timestamp_tcp_setup);
    rc |= tn_key(&d, "via") | tn_none(&d);
    rc |= tn_key(&d, "via2") | tn_none(&d);
    return tn_wrap(o, &d, '}') | rc;
}

static int tn_cstr_bytes(bytes *o, const char *s)
{
    return tn_bytes(o, s ? s : "", s ? strlen(s) : 0);
}

static int request(bytes *o, const flow_request *q)
{
    bytes d = {0};
    int rc = tn_key(&d, "host") | tn_str(&d, q->host ? q->host : "");
    rc |= tn_key(&d, "port") | tn_int(&d, q->port);
    rc |= tn_key(&d, "method") | tn_cstr_bytes(&d, q->method);
    rc |= tn_key(&d, "scheme") | tn_cstr_bytes(&d, q->scheme ? q->scheme : "http");
    rc |= tn_key(&d, "authority") | tn_cstr_bytes(&d, q->authority);
    rc |= tn_key(&d, "path") | tn_cstr_bytes(&d, q->path);
    rc |= tn_key(&d, "http_version") | tn_cstr_bytes(&d, q->http_version ? q->http_version : "HTTP/1.1");
    rc |= tn_key(&d, "headers") | tn_headers(&d, &q->headers);
    rc |= tn_key(&d, "content") | tn_bytes(&d, q->content.p, q->content.len);
    rc |= tn_key(&d, "trailers");
    rc |= q->trailers.n ? tn_headers(&d, &q->trailers) : tn_none(&d);
    rc |= tn_key(&d, "timestamp_start") | tn_float(&d, q->timestamp_start);
    rc |= tn_key(&d, "timestamp_end") | tn_ts(&d, q->timestamp_end);
    return tn_wrap(o, &d, '}') | rc;
}

static int response(bytes *o, const flow_response *s)
{
    bytes d = {0};
    int rc = tn_key(&d, "status_code") | tn_int(&d, s->status_code);
    rc |= tn_key(&d, "reason") | tn_cstr_bytes(&d, s->reason);
    rc |= tn_key(&d, "http_version") | tn_cstr_bytes(&d, s->http_version ? s->http_version : "HTTP/1.1");
    rc |= tn_key(&d, "headers") | tn_headers(&d, &s->headers);
    rc |= tn_key(&d, "content") | tn_bytes(&d, s->content.p, s->content.len);
    rc |= tn_key(&d, "trailers");
    rc |= s->trailers.n ? tn_headers(&d, &s->trailers) : tn_none(&d);
    rc |= tn_key(&d, "timestamp_start") | tn_float(&d, s->timestamp_start);
    rc |= tn_key(&d, "timestamp_end") | tn_ts(&d, s->timestamp_end);
    return tn_wrap(o, &d, '}') | rc;
}

/* WebSocket messages (type, from_client, content, timestamp, dropped,
 * injected) or TCP ones (from_client, content, timestamp) */
static int messages(bytes *o, const flow *f, bool tcp)
{
    bytes l = {0};
    int rc = 0;
    for (size_t i = 0; i < f->ws_n; i++) {
        const flow_ws_message *m = &f->ws_msgs[i];
        bytes t = {0};
        if (!tcp)
            rc |= tn_int(&t, m->is_text ? 1 : 2);
        rc |= tn_bool(&t, m->from_client) | tn_bytes(&t, m->content.p, m->content.len) | tn_float(&t, m->timestamp);
        if (!tcp)
            rc |= tn_bool(&t, m->dropped) | tn_bool(&t, false);
        rc |= tn_wrap(&l, &t, ']');
    }
    return tn_wrap(o, &l, ']') | rc;
}

static int websocket(bytes *o, const flow *f)
{
    if (!f->websocket)
        return tn_none(o);
    bytes d = {0};
    int rc = tn_key(&d, "messages") | messages(&d, f, false);
    rc |= tn_key(&d, "closed_by_client") | tn_bool(&d, f->ws_closed_by_client);
    rc |= tn_key(&d, "close_code");
    rc |= f->ws_close_code ? tn_int(&d, f->ws_close_code) : tn_none(&d);
    rc |= tn_key(&d, "close_reason") | tn_str(&d, f->ws_close_code ? (f->ws_close_reason ? f->ws_close_reason : "") : NULL);
    rc |= tn_key(&d, "timestamp_end") | tn_ts(&d, f->server.timestamp_end);
    return tn_wrap(o, &d, '}') | rc;
}

static int metadata(bytes *o, const char *text)
{
    json_t *j = text ? json_loads(text, JSON_DECODE_ANY, NULL) : NULL;
    int rc;
    if (j && json_is_object(j)) {
        rc = tn_json(o, j, 0);
    } else {
        bytes d = {0};
        rc = tn_wrap(o, &d, '}');
    }
    json_decref(j);
    return rc;
}

int mitmout_encode(const flow *f, bytes *out)
{
    bytes d = {0};
    bool tcp = f->type == FLOW_TCP;
    int rc = tn_key(&d, "version") | tn_int(&d, MITMOUT_VERSION);
    rc |= tn_key(&d, "type") | tn_str(&d, tcp ? "tcp" : "http");
    rc |= tn_key(&d, "id") | tn_str(&d, f->id);
    rc |= tn_key(&d, "error");
    if (f->error) {
        bytes e = {0};
        rc |= tn_key(&e, "msg") | tn_str(&e, f->error->msg ? f->error->msg : "");
        rc |= tn_key(&e, "timestamp") | tn_float(&e, f->error->timestamp);
        rc |= tn_wrap(&d, &e, '}');
    } else {
        rc |= tn_none(&d);
    }
    rc |= tn_key(&d, "client_conn") | client_conn(&d, &f->client);
    rc |= tn_key(&d, "server_conn") | server_conn(&d, &f->server);
    rc |= tn_key(&d, "intercepted") | tn_bool(&d, false);
    rc |= tn_key(&d, "is_replay") | tn_str(&d, f->is_replay);
    rc |= tn_key(&d, "marked") | tn_str(&d, f->marked ? f->marked : "");
    rc |= tn_key(&d, "comment") | tn_str(&d, f->comment ? f->comment : "");
    rc |= tn_key(&d, "metadata") | metadata(&d, f->metadata);
    rc |= tn_key(&d, "timestamp_created") | tn_float(&d, f->timestamp_created);
    if (tcp) {
        rc |= tn_key(&d, "messages") | messages(&d, f, true);
    } else {
        rc |= tn_key(&d, "request");
        rc |= f->request ? request(&d, f->request) : tn_none(&d);
        rc |= tn_key(&d, "response");
        rc |= f->response ? response(&d, f->response) : tn_none(&d);
        rc |= tn_key(&d, "websocket") | websocket(&d, f);
    }
    return tn_wrap(out, &d, '}') | rc ? -1 : 0;
}

/* ---- the writer ---------------------------------------------------------- */

struct mitmout_writer {
    int fd;
    bool own;
    pthread_mutex_t lock;
    int err;            /* first errno of a failed write, 0 */
    char *name;
};

bool mitmout_path_wants(const char *path)
{
    size_t n = path ? strlen(path) : 0;
    return n > 5 && strcmp(path + n - 5, ".mitm") == 0;
}

mitmout_writer *mitmout_open(const char *path, char *err, size_t errsz)
{
    bool append = path[0] == '+';
    const char *p = append ? path + 1 : path;
    int fd = strcmp(p, "-") == 0 ? STDOUT_FILENO
                                 : open(p, O_WRONLY | O_CREAT | O_CLOEXEC | (append ? O_APPEND : O_TRUNC), 0644);
    if (fd < 0) {
        snprintf(err, errsz, "cannot open %s: %s", p, strerror(errno));
        return NULL;
    }
    mitmout_writer *w = calloc(1, sizeof *w);
    if (!w || !(w->name = strdup(p))) {
        if (fd != STDOUT_FILENO)
            close(fd);
        free(w);
        snprintf(err, errsz, "out of memory");
        return NULL;
    }
    w->fd = fd;
    w->own = fd != STDOUT_FILENO;
    pthread_mutex_init(&w->lock, NULL);
    return w;
}

int mitmout_add(mitmout_writer *w, const flow *f)
{
    bytes b = {0};
    if (mitmout_encode(f, &b) < 0) {
        bytes_free(&b);
        return -1;
    }
    pthread_mutex_lock(&w->lock);
    for (size_t off = 0; off < b.len && !w->err;) {
        ssize_t n = write(w->fd, b.p + off, b.len - off);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            w->err = n < 0 ? errno : EIO;
        else
            off += (size_t)n;
    }
    int rc = w->err ? -1 : 0;
    pthread_mutex_unlock(&w->lock);
    bytes_free(&b);
    return rc;
}

int mitmout_close(mitmout_writer *w, char *err, size_t errsz)
{
    if (!w)
        return 0;
    int e = w->err;
    if (w->own && close(w->fd) < 0 && !e)
        e = errno;
    if (e)
        snprintf(err, errsz, "%s: %s: the mitmproxy flow file is incomplete", w->name, strerror(e));
    pthread_mutex_destroy(&w->lock);
    free(w->name);
    free(w);
    return e ? -1 : 0;
}
