/* filter_eval.c — matching a flow against a compiled filter (filter.c
 * parses and compiles the expression; filter_int.h holds the tree).
 *
 * Evaluation walks the tree per flow; decoded bodies, header blocks and the
 * pretty URL are computed at most once per filter_match call. */
#include "filter_int.h"

#include <arpa/inet.h>
#include <ctype.h>
#include <jansson.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "encoding.h"
#include "pyfloat.h"

/* Weak until src/encoding.c lands on main, so the tree links meanwhile;
 * without it bodies are matched raw. */
#pragma weak encoding_decode

/* ---- evaluation ---------------------------------------------------------- */

typedef struct ectx {
    const flow *fl;
    pcre2_match_context *mctx;  /* PCRE2 only reads it */
    pcre2_match_data *md;
    const fnode *err_node;    /* the first matcher that could not answer */
    int err_code;             /* its PCRE2 error */
    /* [0] request, [1] response */
    bool body_done[2];
    bytes body_dec[2];        /* owned when decoding happened */
    const char *body_p[2];
    size_t body_n[2];
    bool hdr_done[2], hdr_oom[2];
    bytes hdr[2];
    bool url_done, host_done, meta_done;
    char *url, *phost, *meta;
} ectx;

/* Matchers answer YES, NO or ERR: ERR when PCRE2 gave up (match, depth or
 * heap limit, out of memory).  A regex that could not answer must never
 * pass for one that did not match, so ERR travels up the tree; and, or and
 * not combine answers as Kleene's three-valued logic does, so ERR decides
 * the result only when the answer really depends on it. */
enum { NO = 0, YES = 1, ERR = -1 };

static int rx_fail(ectx *c, const fnode *n, int code)
{
    if (!c->err_node) {
        c->err_node = n;
        c->err_code = code;
    }
    return ERR;
}

static int rx(ectx *c, const fnode *n, const char *p, size_t len)
{
    if (!c->md && !(c->md = pcre2_match_data_create(1, NULL)))
        return rx_fail(c, n, PCRE2_ERROR_NOMEMORY);
    if (!p)
        p = "";
    int rc = pcre2_match(n->re, (PCRE2_SPTR)p, len, 0, 0, c->md, c->mctx);
    /* JIT code runs on a small machine stack; the interpreter keeps its
     * backtracking state on the heap, under FILTER_HEAP_LIMIT_KIB. */
    if (rc == PCRE2_ERROR_JIT_STACKLIMIT)
        rc = pcre2_match(n->re, (PCRE2_SPTR)p, len, 0, PCRE2_NO_JIT, c->md, c->mctx);
    if (rc >= 0)
        return YES;
    if (rc == PCRE2_ERROR_NOMATCH)
        return NO;
    return rx_fail(c, n, rc);
}

static int rx_str(ectx *c, const fnode *n, const char *s)
{
    return rx(c, n, s ? s : "", s ? strlen(s) : 0);
}

/* Kleene's or, for matchers tried in turn: YES wins, then ERR. */
#define OR3(acc, expr)                                                         \
    do {                                                                       \
        if ((acc) != YES) {                                                    \
            int or3_r = (expr);                                                \
            if (or3_r == YES || (acc) == NO)                                   \
                (acc) = or3_r;                                                 \
        }                                                                      \
    } while (0)

/* All values of `name`, joined with ", " as mitmproxy's Headers.get does;
 * NULL when absent.  Caller frees. */
static char *hdr_joined(const hdrs *h, const char *name)
{
    bytes b = {0};
    bool any = false;
    for (size_t i = 0; i < h->n; i++) {
        if (strlen(name) != h->v[i].name_len ||
            strncasecmp(h->v[i].name, name, h->v[i].name_len) != 0)
            continue;
        if ((any && bytes_append(&b, ", ", 2) < 0) ||
            bytes_append(&b, h->v[i].value ? h->v[i].value : "", h->v[i].value_len) < 0) {
            bytes_free(&b);
            return NULL;
        }
        any = true;
    }
    if (!any)
        return NULL;
    if (!b.p && bytes_append(&b, "", 0) < 0)
        return NULL;
    return b.p;
}

/* The body mitmproxy's get_content(strict=False) returns: decoded when the
 * Content-Encoding is one coding it knows, the raw bytes otherwise or when
 * decoding fails.  A list such as "gzip, br" is not decoded by mitmproxy
 * either. */
static void body_of(ectx *c, int which, const char **p, size_t *n)
{
    const flow *fl = c->fl;
    const hdrs *h = which ? &fl->response->headers : &fl->request->headers;
    const bytes *raw = which ? &fl->response->content : &fl->request->content;
    if (!c->body_done[which]) {
        c->body_done[which] = true;
        c->body_p[which] = raw->p ? raw->p : "";
        c->body_n[which] = raw->len;
        char *ce = hdr_joined(h, "content-encoding");
        if (ce && raw->len) {
            for (char *q = ce; *q; q++)
                *q = (char)tolower((unsigned char)*q);
            const char *coding = NULL;
            if (!strcmp(ce, "gzip") || !strcmp(ce, "br") || !strcmp(ce, "zstd") ||
                !strcmp(ce, "deflate"))
                coding = ce;
            else if (!strcmp(ce, "deflateraw"))
                coding = "deflate";
            char e[128];
            if (coding && encoding_decode != NULL && encoding_decode(coding, raw->p, raw->len,
                                          &c->body_dec[which], e, sizeof e) == 0) {
                c->body_p[which] = c->body_dec[which].p ? c->body_dec[which].p : "";
                c->body_n[which] = c->body_dec[which].len;
            }
        }
        free(ce);
    }
    *p = c->body_p[which];
    *n = c->body_n[which];
}

/* bytes(Headers): "name: value\r\n" per field, as sent. */
static int head_match(ectx *c, const fnode *n, int which)
{
    const hdrs *h = which ? &c->fl->response->headers : &c->fl->request->headers;
    if (!c->hdr_done[which]) {
        c->hdr_done[which] = true;
        bytes *b = &c->hdr[which];
        for (size_t i = 0; i < h->n; i++) {
            if (bytes_append(b, h->v[i].name, h->v[i].name_len) < 0 ||
                bytes_append(b, ": ", 2) < 0 ||
                bytes_append(b, h->v[i].value ? h->v[i].value : "", h->v[i].value_len) < 0 ||
                bytes_append(b, "\r\n", 2) < 0) {
                c->hdr_oom[which] = true;
                break;
            }
        }
    }
    if (c->hdr_oom[which])
        return rx_fail(c, n, PCRE2_ERROR_NOMEMORY);
    return rx(c, n, c->hdr[which].p, c->hdr[which].len);
}

static int ct_match(ectx *c, const fnode *n, const hdrs *h)
{
    int r = NO;
    for (size_t i = 0; i < h->n && r != YES; i++)
        if (h->v[i].name_len == 12 && strncasecmp(h->v[i].name, "content-type", 12) == 0)
            OR3(r, rx(c, n, h->v[i].value, h->v[i].value_len));
    return r;
}

static bool asset_match(const hdrs *h)
{
    /* mitmproxy's asset regexes, all of the form "prefix" or "prefix.*",
     * searched case-sensitively: a substring test is the same thing. */
    static const char *const types[] = {
        "text/javascript", "application/x-javascript", "application/javascript",
        "text/css", "image/", "font/", "application/font",
    };
    for (size_t i = 0; i < h->n; i++) {
        if (h->v[i].name_len != 12 || strncasecmp(h->v[i].name, "content-type", 12) != 0)
            continue;
        for (size_t t = 0; t < sizeof types / sizeof types[0]; t++)
            if (h->v[i].value && memmem(h->v[i].value, h->v[i].value_len, types[t],
                                        strlen(types[t])))
                return true;
    }
    return false;
}

/* mitmproxy.net.check.is_valid_host, for str input. */
static bool valid_host(const char *h, size_t n)
{
    if (n == 0 || n > 255)
        return false;
    /* labels: "[A-Za-z0-9-_]{1,63}" after dropping one trailing dot;
     * non-ASCII labels are valid once IDNA-encoded (approximated). */
    size_t m = (h[n - 1] == '.') ? n - 1 : n;
    bool labels_ok = m > 0;
    size_t ls = 0;
    for (size_t i = 0; i <= m && labels_ok; i++) {
        if (i == m || h[i] == '.') {
            if (i - ls < 1 || i - ls > 63)
                labels_ok = false;
            ls = i + 1;
            continue;
        }
        unsigned char ch = (unsigned char)h[i];
        if (!(isalnum(ch) || ch == '-' || ch == '_' || ch >= 0x80))
            labels_ok = false;
    }
    if (labels_ok)
        return true;
    char buf[256];
    memcpy(buf, h, n);
    buf[n] = '\0';
    unsigned char addr[16];
    if (inet_pton(AF_INET, buf, addr) == 1)
        return true;
    char *pct = strchr(buf, '%');
    if (pct && pct[1])
        *pct = '\0';
    return inet_pton(AF_INET6, buf, addr) == 1;
}

/* mitmproxy.net.http.url.parse_authority(authority, check=False): host and
 * port (0 = none); on malformed input the whole authority and no port. */
static char *parse_authority(const char *a, unsigned *port)
{
    size_t n = strlen(a);
    *port = 0;
    size_t hs = 0, he = 0;
    bool ok = false;
    const char *colon = strchr(a, ':');
    /* host alternative 1: [^:]+ */
    if (n > 0 && colon != a) {
        size_t k = colon ? (size_t)(colon - a) : n;
        if (k == n) {
            hs = 0, he = n, ok = true;
        } else {
            size_t d = k + 1;
            while (d < n && a[d] >= '0' && a[d] <= '9')
                d++;
            if (d == n && d > k + 1)
                hs = 0, he = k, ok = true;
        }
    }
    /* host alternative 2: \[.+\], greedy */
    if (!ok && n >= 3 && a[0] == '[') {
        for (size_t j = n; j-- > 2;) {
            if (a[j] != ']')
                continue;
            if (memchr(a + 1, '\n', j - 1))
                continue;
            size_t r = j + 1;
            if (r == n) {
                hs = 0, he = j + 1, ok = true;
                break;
            }
            if (a[r] == ':') {
                size_t d = r + 1;
                while (d < n && a[d] >= '0' && a[d] <= '9')
                    d++;
                if (d == n && d > r + 1) {
                    hs = 0, he = j + 1, ok = true;
                    break;
                }
            }
        }
    }
    if (ok) {
        size_t s = hs, e = he;
        if (e - s >= 2 && a[s] == '[' && a[e - 1] == ']')
            s++, e--;
        if (valid_host(a + s, e - s)) {
            unsigned long p = 0;
            bool port_ok = true;
            if (he < n) {
                const char *d = a + he + 1;
                if (strlen(d) > 6)
                    port_ok = false;
                else
                    p = strtoul(d, NULL, 10);
                if (p > 65535)
                    port_ok = false;
            }
            if (port_ok) {
                *port = (unsigned)p;
                return strndup(a + s, e - s);
            }
        }
    }
    return strdup(a);
}

static int default_port(const char *scheme)
{
    if (scheme && !strcmp(scheme, "http"))
        return 80;
    if (scheme && !strcmp(scheme, "https"))
        return 443;
    return 0;
}

/* url.unparse: no brackets around IPv6 hosts, "*" paths dropped. */
static char *unparse(const char *scheme, const char *host, unsigned port, const char *path)
{
    if (!path || !strcmp(path, "*"))
        path = "";
    char *u = NULL;
    int r;
    if (default_port(scheme) == (int)port)
        r = asprintf(&u, "%s://%s%s", scheme, host, path);
    else
        r = asprintf(&u, "%s://%s:%u%s", scheme, host, port, path);
    return r < 0 ? NULL : u;
}

/* Request.host_header: :authority for HTTP/2 and 3, else the Host header. */
static char *host_header(const flow_request *r)
{
    const char *v = r->http_version ? r->http_version : "";
    if ((!strcmp(v, "HTTP/2.0") || !strcmp(v, "HTTP/3")) && r->authority && *r->authority)
        return strdup(r->authority);
    return hdr_joined(&r->headers, "host");
}

static const char *pretty_host(ectx *c)
{
    if (!c->host_done) {
        c->host_done = true;
        const flow_request *r = c->fl->request;
        char *hh = host_header(r);
        if (hh && *hh) {
            unsigned port;
            c->phost = parse_authority(hh, &port);
        } else {
            c->phost = strdup(r->host ? r->host : "");
        }
        free(hh);
    }
    return c->phost;
}

/* Request.pretty_url */
static const char *pretty_url(ectx *c)
{
    if (!c->url_done) {
        c->url_done = true;
        const flow_request *r = c->fl->request;
        const char *scheme = r->scheme ? r->scheme : "http";
        if (r->method && !strcmp(r->method, "CONNECT")) {
            c->url = strdup(r->authority ? r->authority : "");
        } else {
            char *hh = host_header(r);
            if (!hh || !*hh) {
                c->url = unparse(scheme, r->host ? r->host : "", r->port, r->path);
            } else {
                unsigned port;
                char *h = parse_authority(hh, &port);
                if (!port)
                    port = default_port(scheme) ? (unsigned)default_port(scheme) : 443;
                if (h)
                    c->url = unparse(scheme, h, port, r->path);
                free(h);
            }
            free(hh);
        }
    }
    return c->url;
}

char *filter_pretty_url(const flow *fl)
{
    if (!fl->request)
        return NULL;
    ectx c = {.fl = fl};
    const char *u = pretty_url(&c);
    char *r = u ? strdup(u) : NULL;
    free(c.url);
    free(c.phost);
    return r;
}

/* ---- ~meta: Python's str() of each metadata value ------------------------ */

static int py_float(bytes *b, double x)
{
    char buf[64];
    pyfloat_repr(x, buf, sizeof buf);
    return bytes_append(b, buf, strlen(buf));
}

/* Characters str.isprintable() rejects, approximately: C0/C1 controls,
 * separators other than the ASCII space and common format characters. */
static bool py_unprintable(uint32_t cp)
{
    return cp < 0x20 || (cp >= 0x7f && cp <= 0xa0) || cp == 0xad || cp == 0x1680 ||
           (cp >= 0x2000 && cp <= 0x200f) || (cp >= 0x2028 && cp <= 0x202f) ||
           (cp >= 0x205f && cp <= 0x206f) || cp == 0x3000 || cp == 0xfeff ||
           (cp >= 0xfff9 && cp <= 0xfffb);
}

static int py_repr_str(bytes *b, const char *s, size_t n)
{
    char q = (memchr(s, '\'', n) && !memchr(s, '"', n)) ? '"' : '\'';
    if (bytes_append(b, &q, 1) < 0)
        return -1;
    for (size_t i = 0; i < n;) {
        unsigned char ch = (unsigned char)s[i];
        char esc[16];
        int el = 0;
        size_t adv = 1;
        uint32_t cp = ch;
        if (ch >= 0x80) {
            /* decode one UTF-8 sequence (jansson guarantees validity) */
            int len = ch >= 0xf0 ? 4 : ch >= 0xe0 ? 3 : 2;
            if (i + (size_t)len <= n) {
                cp = ch & (0x3f >> (len - 1));
                for (int k = 1; k < len; k++)
                    cp = (cp << 6) | ((unsigned char)s[i + (size_t)k] & 0x3f);
                adv = (size_t)len;
            }
        }
        if (cp == '\\')
            el = snprintf(esc, sizeof esc, "\\\\");
        else if (cp == (uint32_t)q)
            el = snprintf(esc, sizeof esc, "\\%c", q);
        else if (cp == '\t')
            el = snprintf(esc, sizeof esc, "\\t");
        else if (cp == '\n')
            el = snprintf(esc, sizeof esc, "\\n");
        else if (cp == '\r')
            el = snprintf(esc, sizeof esc, "\\r");
        else if (py_unprintable(cp))
            el = cp <= 0xff ? snprintf(esc, sizeof esc, "\\x%02x", cp)
                            : snprintf(esc, sizeof esc, "\\u%04x", cp);
        if (el > 0) {
            if (bytes_append(b, esc, (size_t)el) < 0)
                return -1;
        } else if (bytes_append(b, s + i, adv) < 0) {
            return -1;
        }
        i += adv;
    }
    return bytes_append(b, &q, 1);
}

static int py_value(bytes *b, const json_t *v, bool repr, int depth)
{
    char buf[32];
    if (depth > 64)
        return bytes_append(b, "...", 3);
    switch (json_typeof(v)) {
    case JSON_STRING:
        if (repr)
            return py_repr_str(b, json_string_value(v), json_string_length(v));
        return bytes_append(b, json_string_value(v), json_string_length(v));
    case JSON_INTEGER:
        snprintf(buf, sizeof buf, "%lld", (long long)json_integer_value(v));
        return bytes_append(b, buf, strlen(buf));
    case JSON_REAL:
        return py_float(b, json_real_value(v));
    case JSON_TRUE:
        return bytes_append(b, "True", 4);
    case JSON_FALSE:
        return bytes_append(b, "False", 5);
    case JSON_NULL:
        return bytes_append(b, "None", 4);
    case JSON_ARRAY: {
        if (bytes_append(b, "[", 1) < 0)
            return -1;
        for (size_t i = 0; i < json_array_size(v); i++)
            if ((i && bytes_append(b, ", ", 2) < 0) ||
                py_value(b, json_array_get(v, i), true, depth + 1) < 0)
                return -1;
        return bytes_append(b, "]", 1);
    }
    case JSON_OBJECT: {
        if (bytes_append(b, "{", 1) < 0)
            return -1;
        const char *k;
        json_t *x;
        bool first = true;
        json_object_foreach((json_t *)v, k, x) {
            if ((!first && bytes_append(b, ", ", 2) < 0) ||
                py_repr_str(b, k, strlen(k)) < 0 || bytes_append(b, ": ", 2) < 0 ||
                py_value(b, x, true, depth + 1) < 0)
                return -1;
            first = false;
        }
        return bytes_append(b, "}", 1);
    }
    }
    return 0;
}

/* "\n".join(f"{key}: {value}" for key, value in metadata.items()) */
static const char *meta_text(ectx *c)
{
    if (!c->meta_done) {
        c->meta_done = true;
        bytes b = {0};
        json_t *root = c->fl->metadata ? json_loads(c->fl->metadata, JSON_DECODE_ANY, NULL)
                                       : NULL;
        if (root && json_is_object(root)) {
            const char *k;
            json_t *v;
            bool first = true;
            json_object_foreach(root, k, v) {
                if ((!first && bytes_append(&b, "\n", 1) < 0) ||
                    bytes_append(&b, k, strlen(k)) < 0 || bytes_append(&b, ": ", 2) < 0 ||
                    py_value(&b, v, false, 0) < 0)
                    break;
                first = false;
            }
        }
        json_decref(root);
        if (!b.p)
            bytes_append(&b, "", 0);
        c->meta = b.p;
    }
    return c->meta;
}

/* WebSocket messages (or a TCP flow's messages) in a direction: 0 client,
 * 1 server, -1 both. */
static int msgs_match(ectx *c, const fnode *n, int dir)
{
    const flow *fl = c->fl;
    int r = NO;
    for (size_t i = 0; i < fl->ws_n && r != YES; i++) {
        const flow_ws_message *m = &fl->ws_msgs[i];
        if (dir == 0 && !m->from_client)
            continue;
        if (dir == 1 && m->from_client)
            continue;
        OR3(r, rx(c, n, m->content.p, m->content.len));
    }
    return r;
}

static int eval_node(ectx *c, const fnode *n)
{
    const flow *fl = c->fl;
    bool http = fl->type == FLOW_HTTP && fl->request;
    const char *p;
    size_t len;
    int r = NO;
    switch (n->op) {
    case OP_AND:
        /* Kleene's and: NO wins, then ERR */
        r = YES;
        for (size_t i = 0; i < n->nkids; i++) {
            int k = eval_node(c, n->kids[i]);
            if (k == NO)
                return NO;
            if (k == ERR)
                r = ERR;
        }
        return r;
    case OP_OR:
        for (size_t i = 0; i < n->nkids && r != YES; i++)
            OR3(r, eval_node(c, n->kids[i]));
        return r;
    case OP_NOT:
        r = eval_node(c, n->kids[0]);
        return r == ERR ? ERR : !r;
    case OP_ALL:
        return YES;
    case OP_ERR:
        return fl->error != NULL;
    case OP_MARKED:
        return fl->marked && *fl->marked;
    case OP_HTTP:
        return fl->type == FLOW_HTTP;
    case OP_WEBSOCKET:
        return fl->type == FLOW_HTTP && fl->websocket;
    case OP_TCP:
        return fl->type == FLOW_TCP;
    case OP_UDP:
    case OP_DNS:
        return NO; /* mitmlua has no UDP or DNS flows */
    case OP_REQ:
        return http && !fl->response;
    case OP_RESP:
        return http && fl->response;
    case OP_REPLAY:
        return fl->is_replay != NULL;
    case OP_REPLAYQ:
        return fl->is_replay && !strcmp(fl->is_replay, "request");
    case OP_REPLAYS:
        return fl->is_replay && !strcmp(fl->is_replay, "response");
    case OP_ASSET:
        return http && fl->response && asset_match(&fl->response->headers);
    case OP_CODE:
        return http && fl->response && n->num >= 0 && fl->response->status_code == n->num;
    case OP_CT:
        if (!http)
            return NO;
        r = ct_match(c, n, &fl->request->headers);
        if (fl->response)
            OR3(r, ct_match(c, n, &fl->response->headers));
        return r;
    case OP_CTQ:
        return http ? ct_match(c, n, &fl->request->headers) : NO;
    case OP_CTS:
        return http && fl->response ? ct_match(c, n, &fl->response->headers) : NO;
    case OP_HEAD:
        if (!http)
            return NO;
        r = head_match(c, n, 0);
        if (fl->response)
            OR3(r, head_match(c, n, 1));
        return r;
    case OP_HEADQ:
        return http ? head_match(c, n, 0) : NO;
    case OP_HEADS:
        return http && fl->response ? head_match(c, n, 1) : NO;
    case OP_BODY:
    case OP_BODYQ:
    case OP_BODYS: {
        int dir = n->op == OP_BODY ? -1 : n->op == OP_BODYQ ? 0 : 1;
        if (fl->type == FLOW_TCP)
            return msgs_match(c, n, dir);
        if (!http)
            return NO;
        if (dir <= 0) {
            body_of(c, 0, &p, &len);
            r = rx(c, n, p, len);
        }
        if (dir != 0 && fl->response) {
            body_of(c, 1, &p, &len);
            OR3(r, rx(c, n, p, len));
        }
        OR3(r, msgs_match(c, n, dir));
        return r;
    }
    case OP_METHOD:
        return http ? rx_str(c, n, fl->request->method) : NO;
    case OP_DOMAIN:
        if (!http)
            return NO;
        r = rx_str(c, n, fl->request->host);
        OR3(r, rx_str(c, n, pretty_host(c)));
        return r;
    case OP_URL: {
        if (!http)
            return NO;
        const char *u = pretty_url(c);
        return u ? rx_str(c, n, u) : rx_fail(c, n, PCRE2_ERROR_NOMEMORY);
    }
    case OP_SRC:
    case OP_DST: {
        const flow_conn *cn = n->op == OP_SRC ? &fl->client : &fl->server;
        if (!cn->address_host)
            return NO;
        char buf[320];
        int l = snprintf(buf, sizeof buf, "%s:%u", cn->address_host, cn->address_port);
        return l > 0 && (size_t)l < sizeof buf ? rx(c, n, buf, (size_t)l) : NO;
    }
    case OP_META:
        return rx_str(c, n, meta_text(c));
    case OP_MARKER:
        return rx_str(c, n, fl->marked ? fl->marked : "");
    case OP_COMMENT:
        return rx_str(c, n, fl->comment ? fl->comment : "");
    }
    return NO;
}


int filter_eval(const filter *f, const flow *fl, char *err, size_t errsz)
{
    if (err && errsz)
        err[0] = '\0';
    if (!f || !fl || !f->root)
        return 0;
    ectx c = {.fl = fl, .mctx = f->mctx};
    int r = eval_node(&c, f->root);
    if (r == ERR && err && errsz) {
        const fnode *n = c.err_node;
        PCRE2_UCHAR m[120];
        if (pcre2_get_error_message(c.err_code, m, sizeof m) < 0)
            snprintf((char *)m, sizeof m, "error %d", c.err_code);
        char ex[80];
        filter_excerpt(n->arg ? n->arg : "", n->arg ? n->arglen : 0, ex, sizeof ex);
        snprintf(err, errsz, "filter '%s': ~%s%s \"%s\" could not be evaluated: %s",
                 f->pattern, filter_op_name(n->op), n->cs ? "c" : "", ex, (const char *)m);
    }
    pcre2_match_data_free(c.md);
    for (int i = 0; i < 2; i++) {
        bytes_free(&c.body_dec[i]);
        bytes_free(&c.hdr[i]);
    }
    free(c.url);
    free(c.phost);
    free(c.meta);
    return r;
}
