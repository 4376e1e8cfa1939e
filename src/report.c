/* report.c — the HTML report (see report.h).  Each flow becomes one compact
 * JSON record (bodies decoded per Content-Encoding and cut at the limit),
 * escaped as if for a <script type="application/json"> block, and
 * gzip-compressed into a temporary file as they come; at close the
 * template is written with its Content-Security-Policy (hashes of its own
 * script and style), the run's metadata, and the records in base64, which
 * the page inflates with the browser's DecompressionStream.  Compressed,
 * a report of API traffic stays close to the dump's size (as JSON text it
 * was eight times larger); the records are escaped all the same, so that
 * the text the page parses could be embedded as it is. */
#include <errno.h>
#include <jansson.h>
#include <math.h>
#include <openssl/evp.h>
#include <openssl/sha.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <zlib.h>

#include "encoding.h"
#include "opts.h"
#include "jsonval.h"
#include "outfile.h"
#include "report.h"
#include "report_html.h"

/* A body that decodes past this is shown as sent (still encoded). */
#define REPORT_MAX_DECODE ((size_t)16 << 20)
/* report_body_limit=0 (no limit) still stops here: base64 counts in int. */
#define REPORT_MAX_BODY ((size_t)1 << 30)
/* WebSocket messages kept per flow; the page gives the total. */
#define REPORT_MAX_WS 1000

/* ---- escaping ---------------------------------------------------------- */

int report_json_escape(const char *in, size_t n, bytes *out)
{
    size_t i = 0, from = 0;
    while (i < n) {
        unsigned char c = (unsigned char)in[i];
        const char *rep = NULL;
        size_t skip = 1;
        if (c == '<')
            rep = "\\u003c";
        else if (c == '>')
            rep = "\\u003e";
        else if (c == '&')
            rep = "\\u0026";
        else if (c == 0xe2 && i + 2 < n && (unsigned char)in[i + 1] == 0x80 &&
                 ((unsigned char)in[i + 2] == 0xa8 || (unsigned char)in[i + 2] == 0xa9)) {
            rep = (unsigned char)in[i + 2] == 0xa8 ? "\\u2028" : "\\u2029";
            skip = 3;
        }
        if (!rep) {
            i++;
            continue;
        }
        if (bytes_append(out, in + from, i - from) < 0 || bytes_append(out, rep, 6) < 0)
            return -1;
        i += skip;
        from = i;
    }
    return bytes_append(out, in + from, n - from);
}

/* ---- one flow as JSON -------------------------------------------------- */

static void set_str(json_t *o, const char *key, const char *s)
{
    if (s && *s)
        json_object_set_new(o, key, jsonval_str(s));
}

static json_t *headers(const hdrs *h)
{
    json_t *a = json_array();
    for (size_t i = 0; i < h->n; i++)
        json_array_append_new(a, json_pack("[o,o]", jsonval_strn(h->v[i].name, h->v[i].name_len),
                                           jsonval_strn(h->v[i].value, h->v[i].value_len)));
    return a;
}

/* Text when the first `limit` bytes are UTF-8 without NUL (cut on a
 * character boundary), else NULL. */
static json_t *text_prefix(const char *p, size_t n, size_t limit, int *cut)
{
    size_t k = n;
    *cut = 0;
    if (k > limit) {
        k = limit;
        while (k > 0 && ((unsigned char)p[k] & 0xc0) == 0x80)
            k--;
        *cut = 1;
    }
    if (memchr(p, 0, k))
        return NULL;
    return json_stringn(p, k);
}

static int is_image(const char *ct, size_t n)
{
    static const char *const ok[] = {"image/png", "image/jpeg", "image/gif", "image/webp", "image/bmp",
                                     "image/x-icon", "image/vnd.microsoft.icon", "image/avif"};
    for (size_t i = 0; i < sizeof ok / sizeof ok[0]; i++) {
        size_t l = strlen(ok[i]);
        if (n >= l && strncasecmp(ct, ok[i], l) == 0 && (n == l || ct[l] == ';' || ct[l] == ' '))
            return 1;
    }
    return 0;
}

/* {n: size as sent, z: decoded size, ct, ce, t: text | b64: bytes, img,
 * cut}; NULL for an empty body. */
static json_t *body(const hdrs *h, const bytes *raw, size_t limit)
{
    if (!raw->len)
        return NULL;
    json_t *o = json_object();
    json_object_set_new(o, "n", json_integer((json_int_t)raw->len));
    size_t cel = 0, ctl = 0;
    const char *ce = hdrs_get(h, "content-encoding", &cel);
    const char *ct = hdrs_get(h, "content-type", &ctl);
    if (ct)
        json_object_set_new(o, "ct", jsonval_strn(ct, ctl));
    const char *p = raw->p;
    size_t n = raw->len;
    bytes dec = {0};
    if (ce && cel) {
        char coding[128], why[128];
        snprintf(coding, sizeof coding, "%.*s", (int)(cel < 127 ? cel : 127), ce);
        json_object_set_new(o, "ce", jsonval_str(coding));
        if (encoding_decode_limit(coding, p, n, &dec, REPORT_MAX_DECODE, why, sizeof why) == 0) {
            p = dec.p ? dec.p : "";
            n = dec.len;
            json_object_set_new(o, "z", json_integer((json_int_t)n));
        } else {
            json_object_set_new(o, "de", jsonval_str(why));
        }
    }
    int cut = 0;
    json_t *t;
    if (ct && is_image(ct, ctl)) {
        if (n <= limit)
            json_object_set_new(o, "img", jsonval_base64(p, n));
        else
            cut = 1;
    } else if ((t = text_prefix(p, n, limit, &cut))) {
        json_object_set_new(o, "t", t);
    } else {
        cut = n > limit;
        json_object_set_new(o, "b64", jsonval_base64(p, cut ? limit : n));
    }
    if (cut)
        json_object_set_new(o, "cut", json_true());
    bytes_free(&dec);
    return o;
}

/* microseconds from t0, or null when the event did not happen */
static json_t *rel(double t, double t0)
{
    return t > 0 && t0 > 0 ? json_integer((json_int_t)llround((t - t0) * 1e6)) : json_null();
}

static json_t *conn(const flow_conn *c, int server)
{
    json_t *o = json_object();
    if (c->address_host) {
        char a[300];
        snprintf(a, sizeof a, strchr(c->address_host, ':') ? "[%s]:%u" : "%s:%u", c->address_host,
                 c->address_port);
        json_object_set_new(o, "a", jsonval_str(a));
    }
    if (server)
        set_str(o, "ip", c->peer_host);
    if (c->tls)
        json_object_set_new(o, "tls", json_true());
    set_str(o, "sni", c->sni);
    set_str(o, "alpn", c->alpn);
    set_str(o, "v", c->tls_version);
    set_str(o, "c", c->cipher);
    set_str(o, "cs", c->cert_subject);
    set_str(o, "ci", c->cert_issuer);
    return o;
}

static json_t *websocket(const flow *f, double t0, size_t limit)
{
    json_t *o = json_object(), *a = json_array();
    for (size_t i = 0; i < f->ws_n && i < REPORT_MAX_WS; i++) {
        const flow_ws_message *m = &f->ws_msgs[i];
        int cut = 0;
        const char *c = m->content.p ? m->content.p : "";
        json_t *t = m->is_text ? text_prefix(c, m->content.len, limit, &cut) : NULL;
        int text = t != NULL;
        if (!t) {
            cut = m->content.len > limit;
            t = jsonval_base64(c, cut ? limit : m->content.len);
        }
        /* [from client, text (else base64), time, content, size, cut, dropped] */
        json_array_append_new(a, json_pack("[b,b,o,o,I,b,b]", m->from_client, text, rel(m->timestamp, t0), t,
                                           (json_int_t)m->content.len, cut, m->dropped));
    }
    json_object_set_new(o, "m", a);
    json_object_set_new(o, "n", json_integer((json_int_t)f->ws_n));
    if (f->ws_close_code)
        json_object_set_new(o, "cc", json_integer(f->ws_close_code));
    set_str(o, "cr", f->ws_close_reason);
    json_object_set_new(o, "cb", json_boolean(f->ws_closed_by_client));
    return o;
}

static json_t *flow_obj(const flow *f, size_t limit, int fail_on)
{
    const flow_request *q = f->request;
    const flow_response *s = f->response;
    double t0 = f->timestamp_created;
    if (q && q->timestamp_start > 0 && (t0 <= 0 || q->timestamp_start < t0))
        t0 = q->timestamp_start;
    json_t *o = json_object();
    json_object_set_new(o, "i", json_string(f->id));
    json_object_set_new(o, "t0", json_real(t0));
    if (f->type == FLOW_TCP)
        json_object_set_new(o, "ty", json_string("tcp"));
    if (q) {
        char *url = flow_request_url(q);
        json_object_set_new(o, "m", jsonval_str(q->method));
        json_object_set_new(o, "u", jsonval_str(url));
        free(url);
        json_object_set_new(o, "h", jsonval_str(q->host));
        set_str(o, "hv", q->http_version);
        json_object_set_new(o, "q", headers(&q->headers));
        if (q->trailers.n)
            json_object_set_new(o, "qt", headers(&q->trailers));
        json_t *b = body(&q->headers, &q->content, limit);
        if (b)
            json_object_set_new(o, "qb", b);
    } else {
        json_object_set_new(o, "h", jsonval_str(f->server.address_host));
    }
    if (s) {
        json_object_set_new(o, "s", json_integer(s->status_code));
        set_str(o, "r", s->reason);
        set_str(o, "shv", s->http_version);
        json_object_set_new(o, "sh", headers(&s->headers));
        if (s->trailers.n)
            json_object_set_new(o, "st", headers(&s->trailers));
        json_t *b = body(&s->headers, &s->content, limit);
        if (b)
            json_object_set_new(o, "sb", b);
    }
    if (f->error)
        json_object_set_new(o, "e", jsonval_str(f->error->msg ? f->error->msg : "error"));
    const flow_conn *sc = &f->server;
    json_object_set_new(o, "tm", json_pack("[o,o,o,o,o,o,o,o,o]", rel(sc->timestamp_start, t0),
                                           rel(sc->timestamp_tcp_setup, t0), rel(sc->timestamp_tls_setup, t0),
                                           rel(q ? q->timestamp_start : 0, t0), rel(q ? q->timestamp_end : 0, t0),
                                           rel(s ? s->timestamp_start : 0, t0), rel(s ? s->timestamp_end : 0, t0),
                                           rel(f->error ? f->error->timestamp : 0, t0),
                                           rel(sc->timestamp_end > 0 ? sc->timestamp_end : f->client.timestamp_end, t0)));
    json_object_set_new(o, "cl", conn(&f->client, 0));
    json_object_set_new(o, "sv", conn(&f->server, 1));
    if (f->websocket || f->ws_n)
        json_object_set_new(o, "ws", websocket(f, t0, limit));
    if (f->metadata && *f->metadata && strcmp(f->metadata, "{}") != 0) {
        json_t *md = json_loads(f->metadata, JSON_DECODE_ANY, NULL);
        json_object_set_new(o, "md", md ? md : jsonval_str(f->metadata));
    }
    set_str(o, "mk", f->marked);
    set_str(o, "cm", f->comment);
    set_str(o, "rp", f->is_replay);
    if (f->killed)
        json_object_set_new(o, "k", json_true());
    if (fail_on)
        json_object_set_new(o, "fo", json_integer(fail_on > 0 ? 1 : 2));
    return o;
}

char *report_flow_json(const flow *f, size_t body_limit, int fail_on)
{
    json_t *o = flow_obj(f, body_limit ? body_limit : REPORT_DEFAULT_BODY_LIMIT, fail_on);
    char *s = o ? json_dumps(o, JSON_COMPACT | JSON_REAL_PRECISION(17)) : NULL;
    json_decref(o);
    return s;
}

/* ---- the writer -------------------------------------------------------- */

struct report_writer {
    FILE *out;          /* the page */
    FILE *tmp;          /* records so far, gzip of escaped JSON lines */
    z_stream z;
    bool z_init;
    char *path;
    size_t limit;
    size_t n;
    char *filter, *fail_on;
    bool failed;        /* a record could not be written: say so at close */
};

static void writer_free(report_writer *w)
{
    if (w->z_init)
        deflateEnd(&w->z);
    if (w->out && w->out != stdout)
        fclose(w->out);
    if (w->tmp)
        fclose(w->tmp);
    free(w->path);
    free(w->filter);
    free(w->fail_on);
    free(w);
}

report_writer *report_writer_open(const char *path, size_t body_limit, const report_info *info,
                                  char *err, size_t errsz)
{
    report_writer *w = calloc(1, sizeof *w);
    if (!w || !(w->path = strdup(path))) {
        free(w);
        snprintf(err, errsz, "out of memory");
        return NULL;
    }
    w->limit = body_limit && body_limit < REPORT_MAX_BODY ? body_limit : REPORT_MAX_BODY;
    if (info && info->filter)
        w->filter = strdup(info->filter);
    if (info && info->fail_on)
        w->fail_on = strdup(info->fail_on);
    if (!(w->out = outfile_open(path, err, errsz))) {
        writer_free(w);
        return NULL;
    }
    /* unlinked at once: a crash leaves nothing behind */
    if (!(w->tmp = tmpfile())) {
        snprintf(err, errsz, "temporary file for %s: %s", path, strerror(errno));
        writer_free(w);
        return NULL;
    }
    /* windowBits 15 + 16: a gzip stream, what DecompressionStream("gzip") reads */
    if (deflateInit2(&w->z, 6, Z_DEFLATED, 15 + 16, 8, Z_DEFAULT_STRATEGY) != Z_OK) {
        snprintf(err, errsz, "out of memory");
        writer_free(w);
        return NULL;
    }
    w->z_init = true;
    return w;
}

/* n bytes through the compressor into the temporary file; flush =
 * Z_FINISH at the end. */
static int deflate_to(report_writer *w, const void *p, size_t n, int flush)
{
    unsigned char buf[16384];
    w->z.next_in = (unsigned char *)(uintptr_t)p;
    w->z.avail_in = (uInt)n;
    int zr;
    do {
        w->z.next_out = buf;
        w->z.avail_out = sizeof buf;
        zr = deflate(&w->z, flush);
        if (zr == Z_STREAM_ERROR)
            return -1;
        size_t k = sizeof buf - w->z.avail_out;
        if (k && fwrite(buf, 1, k, w->tmp) != k)
            return -1;
    } while (w->z.avail_out == 0 || (flush == Z_FINISH && zr != Z_STREAM_END));
    return 0;
}

int report_writer_add(report_writer *w, const flow *f, int fail_on, char *err, size_t errsz)
{
    char *s = report_flow_json(f, w->limit, fail_on);
    bytes e = {0};
    int rc = -1;
    if (!s || report_json_escape(s, strlen(s), &e) < 0) {
        snprintf(err, errsz, "cannot build the record of flow %s: out of memory", f->id);
        goto out;
    }
    if ((w->n && deflate_to(w, ",\n", 2, Z_NO_FLUSH) < 0) || deflate_to(w, e.p, e.len, Z_NO_FLUSH) < 0) {
        snprintf(err, errsz, "temporary file: %s", strerror(errno));
        w->failed = true;
        goto out;
    }
    w->n++;
    rc = 0;
out:
    free(s);
    bytes_free(&e);
    return rc;
}

/* 'sha256-...' of the text between `open` and `close` in the template,
 * for the CSP; "'none'" when the template lacks it. */
static void csp_hash(const char *tpl, const char *open, const char *close, char *buf, size_t n)
{
    const char *a = strstr(tpl, open), *b;
    snprintf(buf, n, "'none'");
    if (!a || !(b = strstr(a += strlen(open), close)))
        return;
    unsigned char md[SHA256_DIGEST_LENGTH];
    char b64[64];
    SHA256((const unsigned char *)a, (size_t)(b - a), md);
    EVP_EncodeBlock((unsigned char *)b64, md, sizeof md);
    snprintf(buf, n, "'sha256-%s'", b64);
}

static int put_escaped_json(FILE *out, json_t *j)
{
    char *s = json_dumps(j, JSON_COMPACT | JSON_REAL_PRECISION(17));
    bytes e = {0};
    int rc = s && report_json_escape(s, strlen(s), &e) == 0 && fwrite(e.p, 1, e.len, out) == e.len ? 0 : -1;
    free(s);
    bytes_free(&e);
    return rc;
}

/* The compressed records in base64, a line per 48 KiB. */
static int put_records(report_writer *w)
{
    unsigned char in[49152];
    char b64[65540];
    size_t k;
    if (deflate_to(w, "", 0, Z_FINISH) < 0 || fflush(w->tmp) != 0 || fseek(w->tmp, 0, SEEK_SET) != 0)
        return -1;
    while ((k = fread(in, 1, sizeof in, w->tmp)) > 0) {
        int m = EVP_EncodeBlock((unsigned char *)b64, in, (int)k);
        b64[m] = '\n';
        if (fwrite(b64, 1, (size_t)m + 1, w->out) != (size_t)m + 1)
            return -1;
    }
    return ferror(w->tmp) ? -1 : 0;
}

/* The template with its three holes filled. */
static int write_page(report_writer *w)
{
    static const char *const holes[] = {"{{CSP}}", "{{META}}", "{{FLOWS}}"};
    const char *tpl = (const char *)report_html;
    char sh[80], st[80], csp[400];
    csp_hash(tpl, "<script>", "</script>", sh, sizeof sh);
    csp_hash(tpl, "<style>", "</style>", st, sizeof st);
    snprintf(csp, sizeof csp,
             "default-src 'none'; script-src %s; style-src %s; img-src data:; base-uri 'none'; "
             "form-action 'none'",
             sh, st);
    const char *p = tpl;
    for (size_t h = 0; h < 3; h++) {
        const char *q = strstr(p, holes[h]);
        if (!q || fwrite(p, 1, (size_t)(q - p), w->out) != (size_t)(q - p))
            return -1;
        p = q + strlen(holes[h]);
        if (h == 0) {
            fputs(csp, w->out);
        } else if (h == 1) {
            json_t *m = json_pack("{s:s,s:i,s:i,s:f,s:b}", "version", MITMLUA_VERSION, "flows",
                                  (json_int_t)w->n, "body_limit", (json_int_t)w->limit, "created",
                                  flow_now(), "incomplete", w->failed);
            if (m && w->filter)
                json_object_set_new(m, "filter", jsonval_str(w->filter));
            if (m && w->fail_on)
                json_object_set_new(m, "fail_on", jsonval_str(w->fail_on));
            int rc = m ? put_escaped_json(w->out, m) : -1;
            json_decref(m);
            if (rc < 0)
                return -1;
        } else if (put_records(w) < 0) {
            return -1;
        }
    }
    fputs(p, w->out);
    return fflush(w->out) == 0 && !ferror(w->out) ? 0 : -1;
}

int report_writer_close(report_writer *w, char *err, size_t errsz)
{
    if (!w)
        return 0;
    int rc = write_page(w);
    if (rc < 0)
        snprintf(err, errsz, "%s: %s", w->path, errno ? strerror(errno) : "write failed");
    if (w->out && w->out != stdout) {
        if (fclose(w->out) != 0 && rc == 0) {
            snprintf(err, errsz, "%s: %s", w->path, strerror(errno));
            rc = -1;
        }
        w->out = NULL;
    }
    if (rc == 0 && w->failed) {
        snprintf(err, errsz, "%s: some flows are missing (the temporary file could not be written)", w->path);
        rc = -1;
    }
    writer_free(w);
    return rc;
}
