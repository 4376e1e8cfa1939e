/* sreplay.c — server replay: an index of recorded responses keyed by a
 * loose hash of their requests (mitmproxy's ServerPlayback), consulted in
 * the request event of every worker.
 *
 * The key is built as a byte string of length-prefixed fields (so that
 * "ab"+"c" and "a"+"bc" differ) and hashed with SHA-256; the table holds
 * only the digest and a queue of responses per key.  Requests consume a
 * key's responses in recording order, as mitmproxy pops them; with
 * server_replay_nopop the first one is served every time. */
#include "sreplay.h"

#include <ctype.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include <openssl/sha.h>

#include "flowread.h"
#include "h1.h"
#include "log.h"

typedef struct sr_entry {
    unsigned char digest[SHA256_DIGEST_LENGTH];
    flow_response **v;      /* responses in recording order */
    size_t n, cap, head;    /* v[head..n) are still to be served */
    struct sr_entry *next;  /* bucket chain */
} sr_entry;

struct sreplay {
    const opts *o;
    pthread_mutex_t lock;   /* workers share the queues */
    sr_entry **buckets;
    size_t nbuckets;        /* a power of two */
    size_t nkeys;
    size_t nwaiting;        /* responses not yet served */
    bool nopop;
    int extra_status;       /* 0 = forward, -1 = kill, else answer with it */
};

/* ---- copying responses --------------------------------------------------- */

flow_response *sreplay_response_copy(const flow_response *src)
{
    flow_response *r = flow_response_new();
    if (!r)
        return NULL;
    r->status_code = src->status_code;
    if (flow_strset(&r->reason, src->reason) < 0 || flow_strset(&r->http_version, src->http_version) < 0 ||
        hdrs_copy(&r->headers, &src->headers) < 0 || hdrs_copy(&r->trailers, &src->trailers) < 0 ||
        bytes_set(&r->content, src->content.p ? src->content.p : "", src->content.len) < 0) {
        flow_response_free(r);
        return NULL;
    }
    r->timestamp_start = src->timestamp_start;
    r->timestamp_end = src->timestamp_end;
    return r;
}

/* ---- the match key -------------------------------------------------------- */

static int key_add(bytes *k, char tag, const void *p, size_t n)
{
    uint64_t len = n;
    if (bytes_append(k, &tag, 1) < 0 || bytes_append(k, &len, sizeof len) < 0)
        return -1;
    return n ? bytes_append(k, p, n) : 0;
}

static int hexval(int c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    c = tolower(c);
    return c >= 'a' && c <= 'f' ? c - 'a' + 10 : -1;
}

/* Percent- and plus-decoding, as Python's parse_qsl: a broken escape stays
 * as it is. */
static int url_unquote(const char *s, size_t n, bytes *out)
{
    bytes_reset(out);
    for (size_t i = 0; i < n; i++) {
        char c = s[i];
        if (c == '+') {
            c = ' ';
        } else if (c == '%' && i + 2 < n) {
            int hi = hexval((unsigned char)s[i + 1]);
            int lo = hexval((unsigned char)s[i + 2]);
            if (hi >= 0 && lo >= 0) {
                c = (char)(hi * 16 + lo);
                i += 2;
            }
        }
        if (bytes_append(out, &c, 1) < 0)
            return -1;
    }
    return 0;
}

static bool name_listed(const char *name, size_t n, char *const *list, size_t nlist)
{
    for (size_t i = 0; i < nlist; i++)
        if (strlen(list[i]) == n && memcmp(list[i], name, n) == 0)
            return true;
    return false;
}

/* "a=1&b=&c" as decoded (name, value) pairs in order, leaving out ignored
 * names; blank values kept (keep_blank_values=True), empty fields skipped. */
static int key_add_form(bytes *k, char tag, const char *s, size_t n, char *const *ignore, size_t nignore)
{
    bytes name = {0}, value = {0};
    int rc = 0;
    size_t i = 0;
    while (i < n && rc == 0) {
        size_t j = i;
        while (j < n && s[j] != '&')
            j++;
        if (j > i) {
            const char *eq = memchr(s + i, '=', j - i);
            size_t nl = eq ? (size_t)(eq - (s + i)) : j - i;
            if (url_unquote(s + i, nl, &name) < 0 ||
                url_unquote(eq ? eq + 1 : s + j, eq ? (size_t)(s + j - eq - 1) : 0, &value) < 0)
                rc = -1;
            else if (!name_listed(name.p ? name.p : "", name.len, ignore, nignore) &&
                     (key_add(k, tag, name.p, name.len) < 0 || key_add(k, tag, value.p, value.len) < 0))
                rc = -1;
        }
        i = j + 1;
    }
    bytes_free(&name);
    bytes_free(&value);
    return rc;
}

/* A parameter of a header value: boundary=... or name="..." (quotes
 * optional).  Returns a pointer into v and its length, or NULL. */
static const char *header_param(const char *v, size_t vlen, const char *param, size_t *outlen)
{
    size_t pl = strlen(param);
    for (size_t i = 0; i + pl + 1 <= vlen; i++) {
        if ((i == 0 || v[i - 1] == ';' || v[i - 1] == ' ' || v[i - 1] == '\t') &&
            strncasecmp(v + i, param, pl) == 0 && v[i + pl] == '=') {
            const char *p = v + i + pl + 1, *end = v + vlen;
            if (p < end && *p == '"') {
                const char *q = memchr(p + 1, '"', (size_t)(end - p - 1));
                if (!q)
                    return NULL;
                *outlen = (size_t)(q - p - 1);
                return p + 1;
            }
            const char *q = p;
            while (q < end && *q != ';' && *q != ' ' && *q != '\t')
                q++;
            *outlen = (size_t)(q - p);
            return p;
        }
    }
    return NULL;
}

/* multipart/form-data: (field name, part body) pairs in order, leaving out
 * ignored names.  Returns 1 when the body parsed as multipart, 0 when not
 * (the caller then keys on the raw body), -1 on ENOMEM. */
static int key_add_multipart(bytes *k, const bytes *body, const char *ctype, size_t clen, char *const *ignore,
                             size_t nignore)
{
    size_t blen;
    const char *b = header_param(ctype, clen, "boundary", &blen);
    if (!b || !blen || blen > 200 || !body->len)
        return 0;
    char delim[256];
    int dl = snprintf(delim, sizeof delim, "--%.*s", (int)blen, b);
    const char *p = body->p, *end = body->p + body->len;
    p = memmem(p, (size_t)(end - p), delim, (size_t)dl);
    if (!p)
        return 0;
    for (;;) {
        p += dl;
        if (end - p >= 2 && p[0] == '-' && p[1] == '-')
            return 1;                   /* the closing delimiter */
        const char *hend = memmem(p, (size_t)(end - p), "\r\n\r\n", 4);
        if (!hend)
            return 1;
        const char *next = memmem(hend + 4, (size_t)(end - hend - 4), delim, (size_t)dl);
        if (!next)
            return 1;
        const char *data = hend + 4, *dend = next;
        if (dend - data >= 2 && dend[-2] == '\r' && dend[-1] == '\n')
            dend -= 2;
        size_t nl = 0;
        const char *disp = NULL;
        for (const char *line = p; line < hend;) {
            const char *eol = memmem(line, (size_t)(hend + 2 - line), "\r\n", 2);
            if (!eol)
                break;
            if ((size_t)(eol - line) > 20 && strncasecmp(line, "content-disposition:", 20) == 0)
                disp = header_param(line + 20, (size_t)(eol - line - 20), "name", &nl);
            line = eol + 2;
        }
        if (disp && !name_listed(disp, nl, ignore, nignore) &&
            (key_add(k, 'm', disp, nl) < 0 || key_add(k, 'm', data, (size_t)(dend - data)) < 0))
            return -1;
        p = next;
    }
}

static int key_add_content(const sreplay *s, bytes *k, const flow_request *r)
{
    const opts *o = s->o;
    if (o->server_replay_ignore_content)
        return 0;
    if (o->nserver_replay_ignore_payload_params) {
        size_t clen = 0;
        const char *ct = hdrs_get(&r->headers, "content-type", &clen);
        if (ct && clen >= 19 && strncasecmp(ct, "multipart/form-data", 19) == 0) {
            int rc = key_add_multipart(k, &r->content, ct, clen, o->server_replay_ignore_payload_params,
                                       o->nserver_replay_ignore_payload_params);
            if (rc != 0)
                return rc < 0 ? -1 : 0;
        } else if (ct && clen >= 33 && strncasecmp(ct, "application/x-www-form-urlencoded", 33) == 0) {
            return key_add_form(k, 'f', r->content.p ? r->content.p : "", r->content.len,
                                o->server_replay_ignore_payload_params, o->nserver_replay_ignore_payload_params);
        }
    }
    return key_add(k, 'b', r->content.p, r->content.len);
}

/* The digest of a request's match key; 0 or -1 on ENOMEM. */
static int request_digest(const sreplay *s, const flow_request *r, unsigned char out[SHA256_DIGEST_LENGTH])
{
    const opts *o = s->o;
    bytes k = {0};
    const char *path = r->path ? r->path : "";
    const char *q = strchr(path, '?');
    size_t plen = q ? (size_t)(q - path) : strlen(path);
    int rc = -1;
    if (key_add(&k, 's', r->scheme, r->scheme ? strlen(r->scheme) : 0) < 0 ||
        key_add(&k, 'M', r->method, r->method ? strlen(r->method) : 0) < 0 || key_add(&k, 'p', path, plen) < 0 ||
        key_add_content(s, &k, r) < 0)
        goto out;
    if (!o->server_replay_ignore_host) {
        /* hosts are case-insensitive: a recording of Example.com answers example.com */
        size_t hl = r->host ? strlen(r->host) : 0;
        char *h = malloc(hl + 1);
        if (!h)
            goto out;
        for (size_t i = 0; i < hl; i++)
            h[i] = (char)tolower((unsigned char)r->host[i]);
        int hr = key_add(&k, 'h', h, hl);
        free(h);
        if (hr < 0)
            goto out;
    }
    if (!o->server_replay_ignore_port && key_add(&k, 'P', &r->port, sizeof r->port) < 0)
        goto out;
    if (q && key_add_form(&k, 'q', q + 1, strlen(q + 1), o->server_replay_ignore_params,
                          o->nserver_replay_ignore_params) < 0)
        goto out;
    for (size_t i = 0; i < o->nserver_replay_use_headers; i++) {
        /* every value of the header, joined as mitmproxy's headers.get does */
        const char *name = o->server_replay_use_headers[i];
        if (key_add(&k, 'H', name, strlen(name)) < 0)
            goto out;
        ssize_t at = hdrs_find(&r->headers, name, 0);
        if (at < 0 && key_add(&k, 'n', NULL, 0) < 0)
            goto out;
        for (; at >= 0; at = hdrs_find(&r->headers, name, (size_t)at + 1)) {
            const hdr_field *hf = &r->headers.v[at];
            if (key_add(&k, 'v', hf->value, hf->value_len) < 0)
                goto out;
        }
    }
    SHA256((const unsigned char *)(k.p ? k.p : ""), k.len, out);
    rc = 0;
out:
    bytes_free(&k);
    return rc;
}

/* ---- the table ------------------------------------------------------------ */

static size_t bucket_of(const unsigned char *d, size_t nbuckets)
{
    uint64_t h;
    memcpy(&h, d, sizeof h);
    return (size_t)(h & (nbuckets - 1));
}

static sr_entry *entry_find(const sreplay *s, const unsigned char *d)
{
    for (sr_entry *e = s->buckets[bucket_of(d, s->nbuckets)]; e; e = e->next)
        if (memcmp(e->digest, d, SHA256_DIGEST_LENGTH) == 0)
            return e;
    return NULL;
}

static int table_grow(sreplay *s)
{
    size_t nb = s->nbuckets * 2;
    sr_entry **b = calloc(nb, sizeof *b);
    if (!b)
        return -1;
    for (size_t i = 0; i < s->nbuckets; i++) {
        sr_entry *e = s->buckets[i];
        while (e) {
            sr_entry *next = e->next;
            size_t j = bucket_of(e->digest, nb);
            e->next = b[j];
            b[j] = e;
            e = next;
        }
    }
    free(s->buckets);
    s->buckets = b;
    s->nbuckets = nb;
    return 0;
}

sreplay *sreplay_new(const opts *o, char *err, size_t errsz)
{
    sreplay *s = calloc(1, sizeof *s);
    if (!s || !(s->buckets = calloc(64, sizeof *s->buckets))) {
        free(s);
        snprintf(err, errsz, "out of memory");
        return NULL;
    }
    s->nbuckets = 64;
    s->o = o;
    s->nopop = o->server_replay_nopop || o->server_replay_reuse;
    const char *x = o->server_replay_extra ? o->server_replay_extra : "forward";
    if (o->server_replay_kill_extra || strcmp(x, "kill") == 0)
        s->extra_status = -1;
    else if (strcmp(x, "forward") != 0) {
        char *end;
        long st = strtol(x, &end, 10);
        if (end == x || *end || st < 200 || st > 599) {
            snprintf(err, errsz, "invalid value for server_replay_extra: '%s' (expected forward, kill or a status)", x);
            free(s->buckets);
            free(s);
            return NULL;
        }
        s->extra_status = (int)st;
    }
    pthread_mutex_init(&s->lock, NULL);
    return s;
}

/* A flow's response may be served: HTTP, complete, not a WebSocket (a 101
 * cannot be answered without its server).  Flows without a response are
 * skipped, as mitmproxy skips them when it pops. */
static bool servable(const flow *f)
{
    return f->type == FLOW_HTTP && f->request && f->response && !f->websocket;
}

/* Queue `owned` (which the index takes, even on failure) under r's key. */
static int add_owned(sreplay *s, const flow_request *r, flow_response *owned)
{
    unsigned char d[SHA256_DIGEST_LENGTH];
    if (request_digest(s, r, d) < 0)
        goto fail;
    sr_entry *e = entry_find(s, d);
    if (!e) {
        if (s->nkeys >= s->nbuckets && table_grow(s) < 0)
            goto fail;
        if (!(e = calloc(1, sizeof *e)))
            goto fail;
        memcpy(e->digest, d, sizeof d);
        size_t b = bucket_of(d, s->nbuckets);
        e->next = s->buckets[b];
        s->buckets[b] = e;
        s->nkeys++;
    }
    if (e->n == e->cap) {
        size_t nc = e->cap ? e->cap * 2 : 1;
        flow_response **nv = realloc(e->v, nc * sizeof *nv);
        if (!nv)
            goto fail;
        e->v = nv;
        e->cap = nc;
    }
    e->v[e->n++] = owned;
    s->nwaiting++;
    return 0;
fail:
    flow_response_free(owned);
    return -1;
}

int sreplay_add(sreplay *s, const flow *f)
{
    if (!servable(f))
        return 0;
    flow_response *copy = sreplay_response_copy(f->response);
    return copy ? add_owned(s, f->request, copy) : -1;
}

int sreplay_load_file(sreplay *s, const char *path, char *err, size_t errsz)
{
    char rerr[512];
    flow_reader *r = flow_reader_open(path, rerr, sizeof rerr);
    if (!r) {
        snprintf(err, errsz, "server replay: %s", rerr);
        return -1;
    }
    flow_limits lim = opts_flow_limits(s->o);
    flow_reader_set_limits(r, &lim);
    int rc = 0;
    for (;;) {
        flow *f = NULL;
        int n = flow_reader_next(r, &f, rerr, sizeof rerr);
        if (n == 0)
            break;
        if (n < 0) {
            snprintf(err, errsz, "server replay: %s: %s", path, rerr);
            rc = -1;
            break;
        }
        int ar = 0;
        if (servable(f)) {     /* the index takes the response: no copy */
            ar = add_owned(s, f->request, f->response);
            f->response = NULL;
        }
        flow_free(f);
        if (ar < 0) {
            snprintf(err, errsz, "server replay: %s: out of memory", path);
            rc = -1;
            break;
        }
    }
    flow_reader_close(r);
    return rc;
}

size_t sreplay_count(sreplay *s)
{
    pthread_mutex_lock(&s->lock);
    size_t n = s->nwaiting;
    pthread_mutex_unlock(&s->lock);
    return n;
}

/* ---- serving --------------------------------------------------------------- */

/* Move an HTTP date by delta seconds, as mitmproxy's Response.refresh does:
 * a date that was an hour in the past at recording is an hour in the past
 * now.  Values that do not parse stay as they are. */
static void refresh_date(hdrs *h, const char *name, time_t delta)
{
    ssize_t i = hdrs_find(h, name, 0);
    if (i < 0)
        return;
    hdr_field *hf = &h->v[i];
    struct tm tm = {0};
    char *end = strptime(hf->value, "%a, %d %b %Y %H:%M:%S GMT", &tm);
    if (!end || *end)
        return;
    time_t t = timegm(&tm) + delta;
    char buf[64];
    struct tm out;
    if (!gmtime_r(&t, &out) || !strftime(buf, sizeof buf, "%a, %d %b %Y %H:%M:%S GMT", &out))
        return;
    hdrs_set(h, name, buf, strlen(buf));
}

static void refresh(flow_response *r)
{
    double now = flow_now();
    if (r->timestamp_start > 0) {
        time_t delta = (time_t)(now - r->timestamp_start);
        refresh_date(&r->headers, "date", delta);
        refresh_date(&r->headers, "expires", delta);
        refresh_date(&r->headers, "last-modified", delta);
    }
}

/* The next response for key d, a copy the flow will own, or NULL. */
static flow_response *take(sreplay *s, const unsigned char *d, bool *oom)
{
    flow_response *r = NULL;
    pthread_mutex_lock(&s->lock);
    sr_entry *e = entry_find(s, d);
    if (e && e->head < e->n) {
        if (s->nopop) {
            r = sreplay_response_copy(e->v[e->head]);
            *oom = !r;
        } else {
            r = e->v[e->head];
            e->v[e->head++] = NULL;
            s->nwaiting--;
        }
    }
    pthread_mutex_unlock(&s->lock);
    return r;
}

enum sreplay_result sreplay_request(sreplay *s, flow *f)
{
    unsigned char d[SHA256_DIGEST_LENGTH];
    bool oom = false;
    flow_response *r = NULL;
    if (!f->request || request_digest(s, f->request, d) < 0 || (!(r = take(s, d, &oom)) && oom)) {
        log_error("server replay: out of memory");
        return SREPLAY_FORWARD;
    }
    if (r) {
        if (s->o->server_replay_refresh)
            refresh(r);
        r->timestamp_start = r->timestamp_end = flow_now();
        flow_response_free(f->response);
        f->response = r;
        flow_strset(&f->is_replay, "response");
        return SREPLAY_ANSWERED;
    }
    /* Unlike mitmproxy, the policy for unmatched requests holds even after
     * every recorded response was served: with extra=kill nothing reaches
     * the network, however many requests come. */
    if (s->extra_status == 0)
        return SREPLAY_FORWARD;
    char *url = flow_request_url(f->request);
    if (s->extra_status < 0) {
        log_warn("server replay: killed a request with no recorded response: %s %s", f->request->method,
                 url ? url : "");
        free(url);
        f->killed = true;
        return SREPLAY_KILLED;
    }
    log_info("server replay: no recorded response for %s %s: answering %d", f->request->method, url ? url : "",
             s->extra_status);
    free(url);
    flow_response *mk = flow_response_new();
    if (!mk)
        return SREPLAY_FORWARD;
    mk->status_code = s->extra_status;
    const char *reason = h1_reason(s->extra_status);
    flow_strset(&mk->reason, reason ? reason : "");
    flow_strset(&mk->http_version, "HTTP/1.1");
    hdrs_add(&mk->headers, "content-length", 14, "0", 1);
    mk->timestamp_start = mk->timestamp_end = flow_now();
    flow_response_free(f->response);
    f->response = mk;
    return SREPLAY_ANSWERED;
}

void sreplay_free(sreplay *s)
{
    if (!s)
        return;
    for (size_t i = 0; i < s->nbuckets; i++) {
        sr_entry *e = s->buckets[i];
        while (e) {
            sr_entry *next = e->next;
            for (size_t j = 0; j < e->n; j++)
                flow_response_free(e->v[j]);
            free(e->v);
            free(e);
            e = next;
        }
    }
    free(s->buckets);
    pthread_mutex_destroy(&s->lock);
    free(s);
}
