/* har.c — HAR 1.2 (http://www.softwareishard.com/blog/har-12-spec/) out
 * and in, with jansson.  Out: one entry per flow, streamed; bodies are
 * decoded per Content-Encoding as the spec's content.text wants (through
 * the encoding module when it is linked in), text as UTF-8, anything else
 * base64.  In: the reverse; timestamps are rebuilt from startedDateTime and
 * the timings. */
#include <errno.h>
#include <jansson.h>
#include <math.h>
#include <openssl/evp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "encoding.h"
#include "har.h"
#include "jsonval.h"
#include "log.h"
#include "outfile.h"

/* The encoding module is developed in parallel; a weak reference lets HAR
 * work (bodies then stay as sent, base64) in a build that lacks it. */
extern int encoding_decode(const char *coding, const void *in, size_t n, bytes *out,
                           char *err, size_t errsz) __attribute__((weak));
extern int encoding_encode(const char *coding, const void *in, size_t n, bytes *out,
                           char *err, size_t errsz) __attribute__((weak));

/* ---- helpers ----------------------------------------------------------- */

static void iso8601(double t, char *buf, size_t n)
{
    /* a timestamp read from a file may be anything (NaN, 1e68): converting
     * one outside time_t's range is undefined; outside years 1970-9999
     * the epoch stands in */
    if (!(t >= 0.0 && t < 253402300800.0))
        t = 0.0;
    time_t s = (time_t)floor(t);
    int ms = (int)((t - (double)s) * 1000.0);
    if (ms > 999)
        ms = 999;
    struct tm tm;
    gmtime_r(&s, &tm);
    char b[40];
    strftime(b, sizeof b, "%Y-%m-%dT%H:%M:%S", &tm);
    snprintf(buf, n, "%s.%03dZ", b, ms);
}

static double parse_iso8601(const char *s)
{
    struct tm tm = {0};
    int y, mo, d, h, mi;
    double sec;
    int used = 0;
    if (!s || sscanf(s, "%d-%d-%dT%d:%d:%lf%n", &y, &mo, &d, &h, &mi, &sec, &used) < 6)
        return 0;
    tm.tm_year = y - 1900;
    tm.tm_mon = mo - 1;
    tm.tm_mday = d;
    tm.tm_hour = h;
    tm.tm_min = mi;
    double t = (double)timegm(&tm) + sec;
    const char *z = s + used;
    if ((*z == '+' || *z == '-') && strlen(z) >= 5) {
        int zh = atoi(z + 1), zm = atoi(z + 4);
        double off = zh * 3600.0 + zm * 60.0;
        t += *z == '+' ? -off : off;
    }
    return t;
}

static int valid_utf8(const char *s, size_t n)
{
    json_t *j = json_stringn(s, n);
    json_decref(j);
    return j != NULL;
}

static json_t *har_headers(const hdrs *h)
{
    json_t *a = json_array();
    for (size_t i = 0; i < h->n; i++)
        json_array_append_new(a, json_pack("{s:o,s:o}", "name", jsonval_strn(h->v[i].name, h->v[i].name_len),
                                           "value", jsonval_strn(h->v[i].value, h->v[i].value_len)));
    return a;
}

static size_t headers_size(const hdrs *h)
{
    size_t n = 2;
    for (size_t i = 0; i < h->n; i++)
        n += h->v[i].name_len + 2 + h->v[i].value_len + 2;
    return n;
}

static int hexval(int c)
{
    return c >= '0' && c <= '9' ? c - '0' : c >= 'a' && c <= 'f' ? c - 'a' + 10
           : c >= 'A' && c <= 'F' ? c - 'A' + 10 : -1;
}

static json_t *pct_decoded(const char *s, size_t n)
{
    bytes b = {0};
    for (size_t i = 0; i < n; i++) {
        char c = s[i];
        if (c == '+')
            c = ' ';
        else if (c == '%' && i + 2 < n + 0 && hexval(s[i + 1]) >= 0 && hexval(s[i + 2]) >= 0) {
            c = (char)(hexval(s[i + 1]) * 16 + hexval(s[i + 2]));
            i += 2;
        }
        bytes_append(&b, &c, 1);
    }
    json_t *j = jsonval_strn(b.p ? b.p : "", b.len);
    bytes_free(&b);
    return j;
}

/* name=value pairs split on `sep` (query strings, Cookie headers) */
static json_t *pairs(const char *s, size_t n, char sep, int decode)
{
    json_t *a = json_array();
    size_t i = 0;
    while (i < n) {
        size_t j = i;
        while (j < n && s[j] != sep)
            j++;
        size_t k = i;
        while (k < j && s[k] == ' ')
            k++;
        if (j > k) {
            const char *eq = memchr(s + k, '=', j - k);
            size_t nl = eq ? (size_t)(eq - (s + k)) : j - k;
            const char *v = eq ? eq + 1 : s + j;
            size_t vl = eq ? (size_t)(s + j - v) : 0;
            json_array_append_new(a, json_pack("{s:o,s:o}", "name",
                                               decode ? pct_decoded(s + k, nl) : jsonval_strn(s + k, nl),
                                               "value", decode ? pct_decoded(v, vl) : jsonval_strn(v, vl)));
        }
        i = j + 1;
    }
    return a;
}

static json_t *set_cookies(const hdrs *h)
{
    json_t *a = json_array();
    for (ssize_t i = hdrs_find(h, "set-cookie", 0); i >= 0; i = hdrs_find(h, "set-cookie", (size_t)i + 1)) {
        json_t *attrs = pairs(h->v[i].value, h->v[i].value_len, ';', 0);
        json_t *first = json_array_get(attrs, 0);
        if (first) {
            json_t *c = json_deep_copy(first);
            size_t k;
            json_t *at;
            json_array_foreach(attrs, k, at) {
                if (k == 0)
                    continue;
                const char *nm = json_string_value(json_object_get(at, "name"));
                json_t *val = json_object_get(at, "value");
                if (!nm)
                    continue;
                if (!strcasecmp(nm, "path"))
                    json_object_set(c, "path", val);
                else if (!strcasecmp(nm, "domain"))
                    json_object_set(c, "domain", val);
                else if (!strcasecmp(nm, "expires"))
                    json_object_set(c, "expires", val);
                else if (!strcasecmp(nm, "httponly"))
                    json_object_set_new(c, "httpOnly", json_true());
                else if (!strcasecmp(nm, "secure"))
                    json_object_set_new(c, "secure", json_true());
            }
            json_array_append_new(a, c);
        }
        json_decref(attrs);
    }
    return a;
}

/* content.text is the decoded body: decode per Content-Encoding first. */
static json_t *har_content(const hdrs *h, const bytes *raw, int with_size, size_t *size_out)
{
    size_t cl;
    const char *ce = hdrs_get(h, "content-encoding", &cl);
    bytes dec = {0};
    const char *p = raw->p ? raw->p : "";
    size_t n = raw->len;
    int decoded = 0;
    if (ce && cl && encoding_decode) {
        char coding[128], err[128];
        snprintf(coding, sizeof coding, "%.*s", (int)(cl < 127 ? cl : 127), ce);
        if (encoding_decode(coding, p, n, &dec, err, sizeof err) == 0) {
            p = dec.p ? dec.p : "";
            n = dec.len;
            decoded = 1;
        }
    }
    size_t tl;
    const char *ct = hdrs_get(h, "content-type", &tl);
    json_t *c = json_object();
    if (with_size)
        json_object_set_new(c, "size", json_integer((json_int_t)n));
    json_object_set_new(c, "mimeType", ct ? jsonval_strn(ct, tl) : json_string(""));
    if (n && !memchr(p, 0, n) && valid_utf8(p, n)) {
        json_object_set_new(c, "text", json_stringn(p, n));
    } else if (n) {
        json_object_set_new(c, "text", jsonval_base64(p, n));
        json_object_set_new(c, "encoding", json_string("base64"));
    } else {
        json_object_set_new(c, "text", json_string(""));
    }
    if (with_size && decoded && n >= raw->len)
        json_object_set_new(c, "compression", json_integer((json_int_t)(n - raw->len)));
    if (ce && cl && !decoded)
        /* not decodable here: say so, so an importer keeps the header right */
        json_object_set_new(c, "_mitmlua_still_encoded", json_true());
    *size_out = n;
    bytes_free(&dec);
    return c;
}

static double ms(double a, double b)
{
    return a > 0 && b > 0 && b >= a ? (b - a) * 1000.0 : -1;
}

static json_t *entry(const flow *f)
{
    const flow_request *q = f->request;
    const flow_response *s = f->response;
    char when[64];
    double start = q->timestamp_start > 0 ? q->timestamp_start : f->timestamp_created;
    iso8601(start, when, sizeof when);
    char *url = flow_request_url(q);
    if (!url)
        return NULL;
    const char *qm = q->path ? strchr(q->path, '?') : NULL;
    size_t cookie_len;
    const char *cookie = hdrs_get(&q->headers, "cookie", &cookie_len);

    json_t *req = json_pack("{s:o,s:o,s:o,s:o,s:o,s:o,s:i,s:i}", "method", jsonval_str(q->method ? q->method : "GET"),
                            "url", jsonval_str(url), "httpVersion", jsonval_str(q->http_version ? q->http_version : "HTTP/1.1"),
                            "cookies", cookie ? pairs(cookie, cookie_len, ';', 0) : json_array(),
                            "headers", har_headers(&q->headers),
                            "queryString", qm ? pairs(qm + 1, strlen(qm + 1), '&', 1) : json_array(),
                            "headersSize", (json_int_t)headers_size(&q->headers),
                            "bodySize", (json_int_t)q->content.len);
    free(url);
    if (q->content.len) {
        size_t n;
        json_t *pd = har_content(&q->headers, &q->content, 0, &n);
        json_t *params = json_array();
        size_t tl;
        const char *ct = hdrs_get(&q->headers, "content-type", &tl);
        if (ct && tl >= 33 && strncasecmp(ct, "application/x-www-form-urlencoded", 33) == 0) {
            json_decref(params);
            params = pairs(q->content.p, q->content.len, '&', 1);
        }
        json_object_set_new(pd, "params", params);
        json_object_set_new(req, "postData", pd);
    }

    json_t *resp;
    if (s) {
        size_t n, ll;
        json_t *content = har_content(&s->headers, &s->content, 1, &n);
        const char *loc = hdrs_get(&s->headers, "location", &ll);
        resp = json_pack("{s:i,s:o,s:o,s:o,s:o,s:o,s:o,s:i,s:i}", "status", (json_int_t)s->status_code,
                         "statusText", jsonval_str(s->reason ? s->reason : ""),
                         "httpVersion", jsonval_str(s->http_version ? s->http_version : "HTTP/1.1"),
                         "cookies", set_cookies(&s->headers), "headers", har_headers(&s->headers),
                         "content", content, "redirectURL", loc ? jsonval_strn(loc, ll) : json_string(""),
                         "headersSize", (json_int_t)headers_size(&s->headers),
                         "bodySize", (json_int_t)s->content.len);
    } else {
        /* HAR requires a response; browsers write status 0 for failures */
        resp = json_pack("{s:i,s:s,s:s,s:[],s:[],s:{s:i,s:s},s:s,s:i,s:i}", "status", 0,
                         "statusText", "", "httpVersion", "", "cookies", "headers", "content",
                         "size", 0, "mimeType", "x-unknown", "redirectURL", "", "headersSize", -1,
                         "bodySize", -1);
        if (f->error && f->error->msg)
            json_object_set_new(resp, "_error", jsonval_str(f->error->msg));
    }

    const flow_conn *sc = &f->server;
    double connect = ms(sc->timestamp_start, sc->timestamp_tcp_setup);
    double ssl = ms(sc->timestamp_tcp_setup, sc->timestamp_tls_setup);
    double send = ms(q->timestamp_start, q->timestamp_end);
    double wait = s ? ms(q->timestamp_end, s->timestamp_start) : -1;
    double receive = s ? ms(s->timestamp_start, s->timestamp_end) : -1;
    /* connect includes ssl in HAR 1.2 */
    if (connect >= 0 && ssl >= 0)
        connect += ssl;
    json_t *timings = json_pack("{s:f,s:f,s:f,s:f,s:f,s:f,s:f}", "blocked", -1.0, "dns", -1.0,
                                "connect", connect, "ssl", ssl, "send", send < 0 ? 0 : send,
                                "wait", wait < 0 ? 0 : wait, "receive", receive < 0 ? 0 : receive);
    double total = (send < 0 ? 0 : send) + (wait < 0 ? 0 : wait) + (receive < 0 ? 0 : receive) +
                   (connect < 0 ? 0 : connect);
    json_t *e = json_pack("{s:s,s:f,s:o,s:o,s:{},s:o}", "startedDateTime", when, "time", total,
                          "request", req, "response", resp, "cache", "timings", timings);
    if (e && sc->peer_host)
        json_object_set_new(e, "serverIPAddress", jsonval_str(sc->peer_host));
    if (e && f->comment && *f->comment)
        json_object_set_new(e, "comment", jsonval_str(f->comment));
    return e;
}

char *har_entry_json(const flow *f)
{
    if (!f || !f->request)
        return NULL;
    json_t *e = entry(f);
    char *s = e ? json_dumps(e, JSON_COMPACT) : NULL;
    json_decref(e);
    return s;
}

/* ---- writer ------------------------------------------------------------ */

struct har_writer {
    FILE *fp;
    int own;
    size_t n;
    size_t skipped;   /* TCP flows: HAR has no form for them */
};

har_writer *har_writer_open(const char *path, char *err, size_t errsz)
{
    har_writer *w = calloc(1, sizeof *w);
    if (!w) {
        snprintf(err, errsz, "out of memory");
        return NULL;
    }
    if (!(w->fp = outfile_open(path, err, errsz))) {
        free(w);
        return NULL;
    }
    w->own = w->fp != stdout;
    fputs("{\"log\":{\"version\":\"1.2\",\"creator\":{\"name\":\"mitmlua\",\"version\":\"0.1\"},"
          "\"pages\":[],\"entries\":[", w->fp);
    return w;
}

int har_writer_add(har_writer *w, const flow *f, char *err, size_t errsz)
{
    if (!f->request) {
        w->skipped++;
        return 0;
    }
    char *s = har_entry_json(f);
    if (!s) {
        snprintf(err, errsz, "har: cannot build the entry of flow %s", f->id);
        return -1;
    }
    fprintf(w->fp, "%s\n%s", w->n ? "," : "", s);
    free(s);
    w->n++;
    return 0;
}

int har_writer_close(har_writer *w, char *err, size_t errsz)
{
    if (!w)
        return 0;
    fputs("]}}\n", w->fp);
    if (w->skipped)   /* said, not silently left out */
        log_warn("HAR: %zu TCP flow%s not written (HAR has no form for them)", w->skipped,
                 w->skipped == 1 ? "" : "s");
    int rc = fflush(w->fp) == 0 && !ferror(w->fp) ? 0 : -1;
    if (rc < 0)
        snprintf(err, errsz, "har: write: %s", strerror(errno));
    if (w->own && fclose(w->fp) != 0 && rc == 0) {
        snprintf(err, errsz, "har: close: %s", strerror(errno));
        rc = -1;
    }
    free(w);
    return rc;
}

int har_write_file(const char *path, flow **flows, size_t n, char *err, size_t errsz)
{
    har_writer *w = har_writer_open(path, err, errsz);
    if (!w)
        return -1;
    for (size_t i = 0; i < n; i++) {
        if (har_writer_add(w, flows[i], err, errsz) < 0) {
            char e2[64];
            har_writer_close(w, e2, sizeof e2);
            return -1;
        }
    }
    return har_writer_close(w, err, errsz);
}

/* ---- reader ------------------------------------------------------------ */

struct har_reader {
    char *name;
    json_t *root;
    json_t *entries;
    size_t next;
    char doc_err[256]; /* set when the document itself is unusable */
    flow_limits lim;
    int doc_err_told;
};

har_reader *har_reader_open_prefixed(int fd, const char *name, const void *pre, size_t n,
                                     char *err, size_t errsz)
{
    har_reader *r = calloc(1, sizeof *r);
    bytes all = {0};
    if (!r || !(r->name = strdup(name ? name : "har")))
        goto oom;
    r->lim = flow_limits_default;
    if (n && bytes_append(&all, pre, n) < 0)
        goto oom;
    while (fd >= 0) {
        char buf[65536];
        ssize_t k = read(fd, buf, sizeof buf);
        if (k < 0 && errno == EINTR)
            continue;
        if (k < 0) {
            snprintf(err, errsz, "%s: read: %s", r->name, strerror(errno));
            goto fail;
        }
        if (k == 0)
            break;
        if (bytes_append(&all, buf, (size_t)k) < 0)
            goto oom;
    }
    json_error_t je;
    r->root = json_loadb(all.p ? all.p : "", all.len, JSON_ALLOW_NUL, &je);
    if (!r->root)
        snprintf(r->doc_err, sizeof r->doc_err, "%s: offset %d (line %d): not JSON: %s", r->name,
                 je.position, je.line, je.text);
    else if (!json_is_array(r->entries = json_object_get(json_object_get(r->root, "log"), "entries")))
        snprintf(r->doc_err, sizeof r->doc_err, "%s: not a HAR file (no log.entries array)", r->name);
    bytes_free(&all);
    return r;
oom:
    snprintf(err, errsz, "out of memory");
fail:
    bytes_free(&all);
    har_reader_close(r);
    return NULL;
}

har_reader *har_reader_open_fd(int fd, const char *name, char *err, size_t errsz)
{
    return har_reader_open_prefixed(fd, name, NULL, 0, err, errsz);
}

void har_reader_set_limits(har_reader *r, const flow_limits *lim)
{
    r->lim = *lim;
}

void har_reader_close(har_reader *r)
{
    if (!r)
        return;
    json_decref(r->root);
    free(r->name);
    free(r);
}

static const char *sget(json_t *o, const char *k)
{
    return json_string_value(json_object_get(o, k));
}

static double nget(json_t *o, const char *k)
{
    json_t *v = json_object_get(o, k);
    double d = json_is_number(v) ? json_number_value(v) : -1;
    return d > 0 && isfinite(d) ? d : 0;
}

static int in_headers(json_t *a, hdrs *h, const flow_limits *lim, char *why, size_t whysz)
{
    size_t i;
    json_t *e;
    uint64_t size = 0;
    json_array_foreach(a, i, e) {
        json_t *nj = json_object_get(e, "name"), *vj = json_object_get(e, "value");
        if (!json_is_string(nj))
            return -1;
        const char *nm = json_string_value(nj);
        if (nm[0] == ':') /* HTTP/2 pseudo-headers that Chrome lists */
            continue;
        if (flow_limits_hdr(lim, h, &size, json_string_length(nj),
                            json_is_string(vj) ? json_string_length(vj) : 0, why, whysz) < 0)
            return -1;
        if (hdrs_add(h, nm, json_string_length(nj), json_is_string(vj) ? json_string_value(vj) : "",
                     json_is_string(vj) ? json_string_length(vj) : 0) < 0)
            return -1;
    }
    return 0;
}

static char *norm_version(const char *v)
{
    if (!v || !*v)
        return strdup("HTTP/1.1");
    if (!strcasecmp(v, "h2") || !strcasecmp(v, "http/2") || !strcasecmp(v, "http/2.0"))
        return strdup("HTTP/2.0");
    if (!strcasecmp(v, "h3") || !strcasecmp(v, "http/3") || !strcasecmp(v, "http/3.0"))
        return strdup("HTTP/3");
    if (!strncasecmp(v, "http/", 5)) {
        char *s = strdup(v);
        if (s)
            memcpy(s, "HTTP", 4);
        return s;
    }
    return strdup(v);
}

/* content.text (+ encoding: base64) into b */
static int in_body(json_t *c, bytes *b)
{
    json_t *t = json_object_get(c, "text");
    if (!json_is_string(t))
        return 0;
    const char *enc = sget(c, "encoding");
    if (enc && !strcasecmp(enc, "base64")) {
        size_t n = json_string_length(t);
        if (n > INT32_MAX)
            return -1;
        unsigned char *out = malloc(n / 4 * 3 + 4);
        if (!out)
            return -1;
        int k = EVP_DecodeBlock(out, (const unsigned char *)json_string_value(t), (int)n);
        if (k < 0) {
            free(out);
            return -1;
        }
        /* EVP_DecodeBlock counts padding as data */
        const char *s = json_string_value(t);
        while (n && (s[n - 1] == '\n' || s[n - 1] == '\r'))
            n--;
        if (n && s[n - 1] == '=' && k > 0)
            k--;
        if (n > 1 && s[n - 2] == '=' && k > 0)
            k--;
        int rc = bytes_set(b, out, (size_t)k);
        free(out);
        return rc;
    }
    return bytes_set(b, json_string_value(t), json_string_length(t));
}

static int parse_url(const char *url, flow_request *q)
{
    const char *p = strstr(url, "://");
    if (!p)
        return -1;
    if (flow_strnset(&q->scheme, url, (size_t)(p - url)) < 0)
        return -1;
    for (char *c = q->scheme; *c; c++)
        *c = (char)(*c >= 'A' && *c <= 'Z' ? *c + 32 : *c);
    p += 3;
    const char *pe = p + strcspn(p, "/?#");
    const char *at = memchr(p, '@', (size_t)(pe - p));
    if (at)
        p = at + 1;
    const char *hs = p, *he, *colon;
    if (*p == '[') {
        he = memchr(p, ']', (size_t)(pe - p));
        if (!he)
            return -1;
        hs = p + 1;
        colon = he + 1 < pe && he[1] == ':' ? he + 1 : NULL;
    } else {
        colon = memchr(p, ':', (size_t)(pe - p));
        he = colon ? colon : pe;
    }
    if (he == hs || flow_strnset(&q->host, hs, (size_t)(he - hs)) < 0)
        return -1;
    long port = strcmp(q->scheme, "https") == 0 || strcmp(q->scheme, "wss") == 0 ? 443 : 80;
    if (colon && colon + 1 < pe) {
        char *end;
        port = strtol(colon + 1, &end, 10);
        if (end != pe || port <= 0 || port > 65535)
            return -1;
    }
    q->port = (uint16_t)port;
    size_t pl = strcspn(pe, "#");
    return flow_strnset(&q->path, *pe ? pe : "/", *pe ? pl : 1) < 0 ? -1 : 0;
}

static int entry_flow(json_t *e, const flow_limits *lim, flow **out, const char **why,
                      char *whybuf, size_t whysz)
{
    char lm[160] = "";
    flow *f = flow_new();
    if (!f) {
        *why = "out of memory";
        return -1;
    }
    *why = "malformed entry";
    json_t *rq = json_object_get(e, "request"), *rs = json_object_get(e, "response");
    json_t *tm = json_object_get(e, "timings");
    const char *url = sget(rq, "url");
    if (!json_is_object(rq) || !url) {
        *why = "entry without request.url";
        goto fail;
    }
    flow_request *q = f->request = flow_request_new();
    if (!q || parse_url(url, q) < 0) {
        *why = "bad request.url";
        goto fail;
    }
    if (flow_strset(&q->method, sget(rq, "method") ? sget(rq, "method") : "GET") < 0 ||
        !(q->http_version = norm_version(sget(rq, "httpVersion"))) ||
        flow_strset(&q->authority, "") < 0)
        goto fail;
    if (in_headers(json_object_get(rq, "headers"), &q->headers, lim, lm, sizeof lm) < 0) {
        if (lm[0])
            snprintf(whybuf, whysz, "request: %s", lm), *why = whybuf;
        goto fail;
    }
    json_t *pd = json_object_get(rq, "postData");
    if (json_is_object(pd)) {
        if (in_body(pd, &q->content) < 0)
            goto fail;
        json_t *params = json_object_get(pd, "params");
        if (!q->content.len && json_array_size(params)) {
            size_t i;
            json_t *pp;
            json_array_foreach(params, i, pp) {
                const char *n = sget(pp, "name"), *v = sget(pp, "value");
                if (i)
                    bytes_append(&q->content, "&", 1);
                bytes_append(&q->content, n ? n : "", n ? strlen(n) : 0);
                bytes_append(&q->content, "=", 1);
                bytes_append(&q->content, v ? v : "", v ? strlen(v) : 0);
            }
        }
    }
    double t0 = parse_iso8601(sget(e, "startedDateTime"));
    double blocked = nget(tm, "blocked"), dns = nget(tm, "dns"), connect = nget(tm, "connect");
    double ssl = nget(tm, "ssl"), send = nget(tm, "send"), wait = nget(tm, "wait");
    double receive = nget(tm, "receive");
    f->timestamp_created = t0;
    double ts = t0 + (blocked + dns) / 1000;
    if (connect > 0) {
        f->server.timestamp_start = ts;
        f->server.timestamp_tcp_setup = ts + (connect - ssl) / 1000;
        if (ssl > 0)
            f->server.timestamp_tls_setup = ts + connect / 1000;
    }
    q->timestamp_start = ts + connect / 1000;
    q->timestamp_end = q->timestamp_start + send / 1000;
    if (flow_strset(&f->server.address_host, q->host) < 0 ||
        flow_strset(&f->server.peer_host, sget(e, "serverIPAddress")) < 0)
        goto fail;
    f->server.address_port = q->port;
    if (f->server.peer_host)
        f->server.peer_port = q->port;
    f->server.tls = f->client.tls = strcmp(q->scheme, "https") == 0 || strcmp(q->scheme, "wss") == 0;
    f->client.timestamp_start = t0;

    json_t *st = json_object_get(rs, "status");
    if (json_is_object(rs) && json_is_integer(st) && json_integer_value(st) > 0) {
        flow_response *s = f->response = flow_response_new();
        if (!s)
            goto fail;
        s->status_code = (int)json_integer_value(st);
        if (flow_strset(&s->reason, sget(rs, "statusText") ? sget(rs, "statusText") : "") < 0 ||
            !(s->http_version = norm_version(sget(rs, "httpVersion"))))
            goto fail;
        if (in_headers(json_object_get(rs, "headers"), &s->headers, lim, lm, sizeof lm) < 0) {
            if (lm[0])
                snprintf(whybuf, whysz, "response: %s", lm), *why = whybuf;
            goto fail;
        }
        json_t *c = json_object_get(rs, "content");
        bytes body = {0};
        if (in_body(c, &body) < 0) {
            bytes_free(&body);
            goto fail;
        }
        /* the text is decoded; the flow holds bytes as sent: re-encode, or
         * drop a Content-Encoding we cannot apply */
        size_t cl;
        const char *ce = hdrs_get(&s->headers, "content-encoding", &cl);
        int done = 0;
        if (ce && body.len && !json_is_true(json_object_get(c, "_mitmlua_still_encoded"))) {
            char coding[128], err[128];
            snprintf(coding, sizeof coding, "%.*s", (int)(cl < 127 ? cl : 127), ce);
            if (encoding_encode && encoding_encode(coding, body.p, body.len, &s->content, err, sizeof err) == 0)
                done = 1;
            else
                hdrs_remove(&s->headers, "content-encoding");
        }
        if (!done && bytes_set(&s->content, body.p ? body.p : "", body.len) < 0) {
            bytes_free(&body);
            goto fail;
        }
        bytes_free(&body);
        s->timestamp_start = q->timestamp_end + wait / 1000;
        s->timestamp_end = s->timestamp_start + receive / 1000;
    } else {
        const char *msg = sget(rs, "_error");
        if (flow_set_error(f, msg ? msg : "no response") < 0)
            goto fail;
        f->error->timestamp = q->timestamp_end;
    }
    if (flow_strset(&f->comment, sget(e, "comment")) < 0)
        goto fail;
    if (flow_limits_check(lim, f, whybuf, whysz) < 0) {
        *why = whybuf;
        goto fail;
    }
    *out = f;
    return 0;
fail:
    flow_free(f);
    return -1;
}

int har_reader_next(har_reader *r, flow **out, char *err, size_t errsz)
{
    *out = NULL;
    if (r->doc_err[0]) {
        if (r->doc_err_told)
            return 0;
        r->doc_err_told = 1;
        snprintf(err, errsz, "%s", r->doc_err);
        return -1;
    }
    if (r->next >= json_array_size(r->entries))
        return 0;
    size_t i = r->next++;
    const char *why;
    char whybuf[200];
    if (entry_flow(json_array_get(r->entries, i), &r->lim, out, &why, whybuf, sizeof whybuf) < 0) {
        snprintf(err, errsz, "%s: entry %zu: %s", r->name, i, why);
        return -1;
    }
    return 1;
}
