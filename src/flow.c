/* flow.c — the flow model's constructors, destructors and small helpers.
 * Everything here is plain memory management; no I/O. */
#include "flow.h"

#include <ctype.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/time.h>
#include <openssl/rand.h>

/* ---- bytes ------------------------------------------------------------- */

int bytes_reserve(bytes *b, size_t need)
{
    if (need + 1 <= b->cap)
        return 0;
    size_t cap = b->cap ? b->cap : 64;
    while (cap < need + 1) {
        if (cap > SIZE_MAX / 2)
            return -1;
        cap *= 2;
    }
    char *p = realloc(b->p, cap);
    if (!p)
        return -1;
    b->p = p;
    b->cap = cap;
    return 0;
}

int bytes_append(bytes *b, const void *data, size_t n)
{
    if (n > SIZE_MAX - b->len - 1 || bytes_reserve(b, b->len + n) < 0)
        return -1;
    if (n)
        memcpy(b->p + b->len, data, n);
    b->len += n;
    b->p[b->len] = '\0';
    return 0;
}

int bytes_set(bytes *b, const void *data, size_t n)
{
    b->len = 0;
    if (bytes_reserve(b, n) < 0)
        return -1;
    return bytes_append(b, data, n);
}

void bytes_reset(bytes *b)
{
    b->len = 0;
    if (b->p)
        b->p[0] = '\0';
}

void bytes_free(bytes *b)
{
    free(b->p);
    b->p = NULL;
    b->len = b->cap = 0;
}

/* ---- hdrs -------------------------------------------------------------- */

static char *dupn(const char *s, size_t n)
{
    char *p = malloc(n + 1);
    if (!p)
        return NULL;
    memcpy(p, s, n);
    p[n] = '\0';
    return p;
}

/* Field bytes ("name\0value\0") are cut from blocks that belong to the
 * list and never move: a parsed header section costs one or two
 * allocations instead of one a field, and freeing it as many.  A removed or
 * replaced field leaves its bytes in the block until the list is freed;
 * past HDRS_BLK_MAX of blocks a field gets an allocation of its own (freed
 * with the field), so a script that sets a header in a loop cannot grow a
 * list without bound. */
struct hdrs_blk {
    struct hdrs_blk *next;
    size_t used, cap;
    char data[];
};

#define HDRS_BLK_FIRST 256          /* a typical request's or response's fields */
#define HDRS_BLK_MAX (64 * 1024)

static char *field_mem(hdrs *h, size_t need, bool *own)
{
    struct hdrs_blk *b = h->blk;
    if (b && b->cap - b->used >= need) {
        char *p = b->data + b->used;
        b->used += need;
        *own = false;
        return p;
    }
    size_t cap = b ? b->cap * 2 : HDRS_BLK_FIRST;
    if (cap < need)
        cap = need;
    if (h->blk_bytes + cap <= HDRS_BLK_MAX) {
        struct hdrs_blk *nb = malloc(sizeof *nb + cap);
        if (nb) {
            nb->next = b;
            nb->used = need;
            nb->cap = cap;
            h->blk = nb;
            h->blk_bytes += cap;
            *own = false;
            return nb->data;
        }
    }
    *own = true;
    return malloc(need);
}

static int field_fill(hdrs *h, hdr_field *f, const char *name, size_t nlen, const char *value, size_t vlen)
{
    bool own;
    char *b = field_mem(h, nlen + vlen + 2, &own);
    if (!b)
        return -1;
    memcpy(b, name, nlen);
    b[nlen] = 0;
    memcpy(b + nlen + 1, value, vlen);
    b[nlen + 1 + vlen] = 0;
    f->name = b;
    f->name_len = nlen;
    f->value = b + nlen + 1;
    f->value_len = vlen;
    f->own = own;
    return 0;
}

static void field_drop(hdr_field *f)
{
    if (f->own)
        free(f->name);
}

int hdrs_add(hdrs *h, const char *name, size_t nlen, const char *value, size_t vlen)
{
    if (h->n == h->cap) {
        size_t cap = h->cap ? h->cap * 2 : 16;
        hdr_field *v = realloc(h->v, cap * sizeof *v);
        if (!v)
            return -1;
        h->v = v;
        h->cap = cap;
    }
    if (field_fill(h, &h->v[h->n], name, nlen, value, vlen) < 0)
        return -1;
    h->n++;
    return 0;
}

static bool name_eq(const hdr_field *f, const char *name, size_t n)
{
    return f->name_len == n && strncasecmp(f->name, name, n) == 0;
}

ssize_t hdrs_find(const hdrs *h, const char *name, size_t from)
{
    size_t n = strlen(name);
    for (size_t i = from; i < h->n; i++)
        if (name_eq(&h->v[i], name, n))
            return (ssize_t)i;
    return -1;
}

const char *hdrs_get(const hdrs *h, const char *name, size_t *vlen)
{
    ssize_t i = hdrs_find(h, name, 0);
    if (i < 0)
        return NULL;
    if (vlen)
        *vlen = h->v[i].value_len;
    return h->v[i].value;
}

void hdrs_remove_at(hdrs *h, size_t i)
{
    field_drop(&h->v[i]);
    memmove(&h->v[i], &h->v[i + 1], (h->n - i - 1) * sizeof h->v[0]);
    h->n--;
}

size_t hdrs_remove(hdrs *h, const char *name)
{
    size_t removed = 0, n = strlen(name);
    for (size_t i = 0; i < h->n;) {
        if (name_eq(&h->v[i], name, n)) {
            hdrs_remove_at(h, i);
            removed++;
        } else {
            i++;
        }
    }
    return removed;
}

int hdrs_set(hdrs *h, const char *name, const char *value, size_t vlen)
{
    size_t n = strlen(name);
    ssize_t i = hdrs_find(h, name, 0);
    if (i < 0)
        return hdrs_add(h, name, n, value, vlen);
    /* the same value again (a Content-Length that was right): keep the
     * field rather than copy it */
    if (h->v[i].value_len != vlen || (vlen && memcmp(h->v[i].value, value, vlen) != 0)) {
        hdr_field nf;
        if (field_fill(h, &nf, h->v[i].name, h->v[i].name_len, value, vlen) < 0)
            return -1;
        field_drop(&h->v[i]);
        h->v[i] = nf;
    }
    for (size_t j = (size_t)i + 1; j < h->n;) {
        if (name_eq(&h->v[j], name, n))
            hdrs_remove_at(h, j);
        else
            j++;
    }
    return 0;
}

int hdrs_copy(hdrs *dst, const hdrs *src)
{
    hdrs out = {0};
    for (size_t i = 0; i < src->n; i++) {
        const hdr_field *f = &src->v[i];
        if (hdrs_add(&out, f->name, f->name_len, f->value, f->value_len) < 0) {
            hdrs_free(&out);
            return -1;
        }
    }
    hdrs_free(dst);
    *dst = out;
    return 0;
}

void hdrs_free(hdrs *h)
{
    for (size_t i = 0; i < h->n; i++)
        field_drop(&h->v[i]);
    free(h->v);
    for (struct hdrs_blk *b = h->blk, *next; b; b = next) {
        next = b->next;
        free(b);
    }
    *h = (hdrs){0};
}

const char *hdrs_next_token(const char **p, const char *end, size_t *len)
{
    const char *s = *p;
    while (s < end && (*s == ' ' || *s == '\t' || *s == ','))
        s++;
    if (s == end) {
        *p = end;
        return NULL;
    }
    const char *e = s;
    while (e < end && *e != ',')
        e++;
    *p = e;
    while (e > s && (e[-1] == ' ' || e[-1] == '\t'))
        e--;
    *len = (size_t)(e - s);
    return s;
}

bool hdrs_has_token(const hdrs *h, const char *name, const char *token)
{
    size_t tlen = strlen(token), n;
    for (ssize_t i = hdrs_find(h, name, 0); i >= 0; i = hdrs_find(h, name, (size_t)i + 1)) {
        const char *p = h->v[i].value, *end = p + h->v[i].value_len;
        for (const char *t; (t = hdrs_next_token(&p, end, &n)) != NULL;)
            if (n == tlen && strncasecmp(t, token, tlen) == 0)
                return true;
    }
    return false;
}

/* ---- flows ------------------------------------------------------------- */

double flow_now(void)
{
    struct timeval tv;
    gettimeofday(&tv, NULL);
    return (double)tv.tv_sec + (double)tv.tv_usec / 1e6;
}

/* Random ids: RAND_bytes costs thousands of instructions per call (locks,
 * DRBG bookkeeping), so each thread draws a block at a time and hands out
 * 16 bytes per id.  The block is per thread, so no lock is needed. */
static __thread unsigned char id_pool[16 * 32];
static __thread size_t id_pool_pos = sizeof id_pool;

static void uuid4(char out[37])
{
    if (id_pool_pos == sizeof id_pool) {
        if (RAND_bytes(id_pool, sizeof id_pool) != 1) {
            /* RAND_bytes failing means the CSPRNG is broken; ids need only
             * be unique, so fall back to time and address entropy. */
            double t = flow_now();
            for (size_t i = 0; i < sizeof id_pool; i += 16) {
                uintptr_t a = (uintptr_t)out + i;
                memcpy(id_pool + i, &t, sizeof t);
                memcpy(id_pool + i + 8, &a, sizeof a < 8 ? sizeof a : 8);
            }
        }
        id_pool_pos = 0;
    }
    unsigned char *r = id_pool + id_pool_pos;
    id_pool_pos += 16;
    r[6] = (unsigned char)((r[6] & 0x0f) | 0x40);
    r[8] = (unsigned char)((r[8] & 0x3f) | 0x80);
    static const char hex[] = "0123456789abcdef";
    char *o = out;
    for (int i = 0; i < 16; i++) {
        if (i == 4 || i == 6 || i == 8 || i == 10)
            *o++ = '-';
        *o++ = hex[r[i] >> 4];
        *o++ = hex[r[i] & 15];
    }
    *o = 0;
}

flow *flow_new(void)
{
    flow *f = calloc(1, sizeof *f);
    if (!f)
        return NULL;
    uuid4(f->id);
    f->timestamp_created = flow_now();
    return f;
}

flow_request *flow_request_new(void)
{
    return calloc(1, sizeof(flow_request));
}

flow_response *flow_response_new(void)
{
    return calloc(1, sizeof(flow_response));
}

void flow_request_free(flow_request *r)
{
    if (!r)
        return;
    free(r->method);
    free(r->scheme);
    free(r->authority);
    free(r->host);
    free(r->path);
    free(r->http_version);
    hdrs_free(&r->headers);
    hdrs_free(&r->trailers);
    bytes_free(&r->content);
    free(r);
}

void flow_response_free(flow_response *r)
{
    if (!r)
        return;
    free(r->reason);
    free(r->http_version);
    hdrs_free(&r->headers);
    hdrs_free(&r->trailers);
    bytes_free(&r->content);
    free(r);
}

void flow_conn_clear(flow_conn *c)
{
    free(c->address_host);
    free(c->peer_host);
    free(c->sni);
    free(c->alpn);
    free(c->tls_version);
    free(c->cipher);
    free(c->cert_subject);
    free(c->cert_issuer);
    memset(c, 0, sizeof *c);
}

void flow_free(flow *f)
{
    if (!f)
        return;
    flow_conn_clear(&f->client);
    flow_conn_clear(&f->server);
    flow_request_free(f->request);
    flow_response_free(f->response);
    if (f->error) {
        free(f->error->msg);
        free(f->error);
    }
    for (size_t i = 0; i < f->ws_n; i++)
        bytes_free(&f->ws_msgs[i].content);
    free(f->ws_msgs);
    free(f->ws_close_reason);
    free(f->metadata);
    free(f->marked);
    free(f->comment);
    free(f->is_replay);
    free(f);
}

int flow_strnset(char **dst, const char *src, size_t n)
{
    char *p = NULL;
    if (src && !(p = dupn(src, n)))
        return -1;
    free(*dst);
    *dst = p;
    return 0;
}

int flow_strset(char **dst, const char *src)
{
    return flow_strnset(dst, src, src ? strlen(src) : 0);
}

int flow_set_error(flow *f, const char *msg)
{
    if (!f->error && !(f->error = calloc(1, sizeof *f->error)))
        return -1;
    f->error->timestamp = flow_now();
    return flow_strset(&f->error->msg, msg);
}

flow_ws_message *flow_ws_add(flow *f, bool from_client, bool is_text,
                             const void *data, size_t n)
{
    if (f->ws_n == f->ws_cap) {
        size_t cap = f->ws_cap ? f->ws_cap * 2 : 8;
        flow_ws_message *v = realloc(f->ws_msgs, cap * sizeof *v);
        if (!v)
            return NULL;
        f->ws_msgs = v;
        f->ws_cap = cap;
    }
    flow_ws_message *m = &f->ws_msgs[f->ws_n];
    memset(m, 0, sizeof *m);
    if (bytes_set(&m->content, data, n) < 0)
        return NULL;
    m->from_client = from_client;
    m->is_text = is_text;
    m->timestamp = flow_now();
    f->ws_n++;
    return m;
}

const char *flow_host_for_url(const char *host, char *buf, size_t bufsz)
{
    if (host && strchr(host, ':')) {
        snprintf(buf, bufsz, "[%s]", host);
        return buf;
    }
    return host ? host : "";
}

const char *flow_authority(const char *scheme, const char *host, unsigned port, char *buf, size_t bufsz)
{
    char hb[300];
    const char *h = flow_host_for_url(host ? host : "", hb, sizeof hb);
    unsigned dflt = scheme && strcmp(scheme, "https") == 0 ? 443 : 80;
    if (port == 0 || port == dflt)
        snprintf(buf, bufsz, "%s", h);
    else
        snprintf(buf, bufsz, "%s:%u", h, port);
    return buf;
}

char *flow_request_url(const flow_request *r)
{
    char hb[300];
    const char *scheme = r->scheme ? r->scheme : "http";
    const char *host = flow_host_for_url(r->host, hb, sizeof hb);
    bool dflt = (strcmp(scheme, "http") == 0 && r->port == 80) ||
                (strcmp(scheme, "https") == 0 && r->port == 443);
    const char *path = r->path ? r->path : "";
    size_t n = strlen(scheme) + strlen(host) + strlen(path) + 16;
    char *u = malloc(n);
    if (!u)
        return NULL;
    if (dflt)
        snprintf(u, n, "%s://%s%s", scheme, host, path);
    else
        snprintf(u, n, "%s://%s:%u%s", scheme, host, r->port, path);
    return u;
}

/* "host:port", "[v6]:port" or "host": host names are case-insensitive, so
 * they are kept in lower case for matching (filters, server replay). */
int flow_parse_authority(const char *a, size_t n, uint16_t dflt, char **host, uint16_t *port)
{
    const char *hs = a, *he;
    const char *p = NULL;
    if (n && a[0] == '[') {
        const char *rb = memchr(a, ']', n);
        if (!rb)
            return -1;
        hs = a + 1;
        he = rb;
        if (rb + 1 < a + n) {
            if (rb[1] != ':')
                return -1;
            p = rb + 2;
        }
    } else {
        const char *colon = memchr(a, ':', n);
        he = colon ? colon : a + n;
        if (colon)
            p = colon + 1;
    }
    if (he == hs || he - hs > 253)
        return -1;
    for (const char *c = hs; c < he; c++)
        if (!(isalnum((unsigned char)*c) || *c == '-' || *c == '.' || *c == '_' || *c == ':' || *c == '%'))
            return -1;
    unsigned long v = dflt;
    if (p) {
        if (p == a + n)
            return -1;
        v = 0;
        for (const char *c = p; c < a + n; c++) {
            if (!isdigit((unsigned char)*c) || (v = v * 10 + (unsigned)(*c - '0')) > 65535)
                return -1;
        }
        if (v == 0)
            return -1;
    }
    if (flow_strnset(host, hs, (size_t)(he - hs)) < 0)
        return -1;
    for (char *c = *host; *c; c++)
        *c = (char)tolower((unsigned char)*c);
    *port = (uint16_t)v;
    return 0;
}

int flow_conn_copy(flow_conn *d, const flow_conn *s)
{
    d->address_port = s->address_port;
    d->tls = s->tls;
    d->timestamp_start = s->timestamp_start;
    d->timestamp_tls_setup = s->timestamp_tls_setup;
    return flow_strset(&d->address_host, s->address_host) < 0 || flow_strset(&d->sni, s->sni) < 0 ||
                   flow_strset(&d->alpn, s->alpn) < 0 || flow_strset(&d->tls_version, s->tls_version) < 0 ||
                   flow_strset(&d->cipher, s->cipher) < 0
               ? -1
               : 0;
}

/* ---- limits on flows read from files ------------------------------------ */

const flow_limits flow_limits_default = {
    .max_headers = FLOW_DEFAULT_MAX_HEADERS,
    .max_header_size = FLOW_DEFAULT_MAX_HEADER_SIZE,
    .max_body = FLOW_DEFAULT_BODY_SIZE_LIMIT,
    .max_messages = FLOW_DEFAULT_MAX_MESSAGES,
};

int flow_limits_hdr(const flow_limits *lim, const hdrs *h, uint64_t *size, size_t nlen,
                    size_t vlen, char *err, size_t errsz)
{
    if (h->n >= lim->max_headers) {
        snprintf(err, errsz, "more than %zu header fields (max_headers)", lim->max_headers);
        return -1;
    }
    uint64_t add = (uint64_t)nlen + vlen + 4;
    if (*size + add > lim->max_header_size) {
        snprintf(err, errsz, "header fields of more than %llu bytes (max_header_size)",
                 (unsigned long long)lim->max_header_size);
        return -1;
    }
    *size += add;
    return 0;
}

int flow_limits_body(const flow_limits *lim, uint64_t n, char *err, size_t errsz)
{
    if (lim->max_body && n > lim->max_body) {
        snprintf(err, errsz, "a body of %llu bytes, more than body_size_limit (%llu)",
                 (unsigned long long)n, (unsigned long long)lim->max_body);
        return -1;
    }
    return 0;
}

int flow_limits_message(const flow_limits *lim, const flow *f, char *err, size_t errsz)
{
    if (f->ws_n >= lim->max_messages) {
        snprintf(err, errsz, "more than %zu messages in one flow", lim->max_messages);
        return -1;
    }
    return 0;
}

static int limits_block(const flow_limits *lim, const hdrs *h, char *err, size_t errsz)
{
    hdrs part = {.v = h->v};
    uint64_t size = 0;
    for (; part.n < h->n; part.n++)
        if (flow_limits_hdr(lim, &part, &size, h->v[part.n].name_len, h->v[part.n].value_len,
                            err, errsz) < 0)
            return -1;
    return 0;
}

static int limits_part(const flow_limits *lim, const hdrs *h, const hdrs *t, const bytes *body,
                       const char *what, char *err, size_t errsz)
{
    char m[160];
    if (limits_block(lim, h, m, sizeof m) < 0 || limits_block(lim, t, m, sizeof m) < 0 ||
        flow_limits_body(lim, body->len, m, sizeof m) < 0) {
        snprintf(err, errsz, "%s: %s", what, m);
        return -1;
    }
    return 0;
}

int flow_limits_check(const flow_limits *lim, const flow *f, char *err, size_t errsz)
{
    if (f->request && limits_part(lim, &f->request->headers, &f->request->trailers,
                                  &f->request->content, "request", err, errsz) < 0)
        return -1;
    if (f->response && limits_part(lim, &f->response->headers, &f->response->trailers,
                                   &f->response->content, "response", err, errsz) < 0)
        return -1;
    char m[160];
    if (f->ws_n > lim->max_messages) {
        snprintf(err, errsz, "more than %zu messages in one flow", lim->max_messages);
        return -1;
    }
    for (size_t i = 0; i < f->ws_n; i++)
        if (flow_limits_body(lim, f->ws_msgs[i].content.len, m, sizeof m) < 0) {
            snprintf(err, errsz, "message %zu: %s", i, m);
            return -1;
        }
    return 0;
}
