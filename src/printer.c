/* printer.c — see printer.h.  Formats exactly like mitmdump 8's dumper so
 * that people (and their grep patterns) can switch without surprises. */
#include "printer.h"

#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <event2/buffer.h>

#include <jansson.h>

#include "contentview.h"
#include "encoding.h"
#include "h1.h"

struct printer {
    FILE *out;
    int detail;
    bool showhost;
    bool jsonl;
    const char *view;   /* dumper_default_contentview (owned by the options) */
    pthread_mutex_t lock;
};

void printer_set_jsonl(printer *p, bool on)
{
    p->jsonl = on;
}

void printer_set_contentview(printer *p, const char *view)
{
    p->view = view;
}

printer *printer_new(FILE *out, int flow_detail, bool showhost)
{
    printer *p = calloc(1, sizeof *p);
    if (!p)
        return NULL;
    p->out = out;
    p->detail = flow_detail;
    p->showhost = showhost;
    pthread_mutex_init(&p->lock, NULL);
    return p;
}

void printer_free(printer *p)
{
    if (!p)
        return;
    pthread_mutex_destroy(&p->lock);
    free(p);
}

void printer_format_address(const char *host, unsigned port, char *buf, size_t n)
{
    if (!host) {
        snprintf(buf, n, "<no address>");
    } else if (strncmp(host, "::ffff:", 7) == 0 && strchr(host + 7, '.')) {
        snprintf(buf, n, "%s:%u", host + 7, port);
    } else if (strchr(host, ':')) {
        snprintf(buf, n, "[%s]:%u", host, port);
    } else {
        snprintf(buf, n, "%s:%u", host, port);
    }
}

void printer_pretty_size(size_t size, char *buf, size_t n)
{
    if (size < 1024) {
        snprintf(buf, n, "%zub", size);
        return;
    }
    static const char suffix[] = "kmgt";
    double s = (double)size;
    for (int i = 0; i < 4; i++) {
        s /= 1024;
        if (s < 99.95) {
            snprintf(buf, n, "%.1f%c", s, suffix[i]);
            return;
        }
        if (s < 1024 || i == 3) {
            snprintf(buf, n, "%.0f%c", s, suffix[i]);
            return;
        }
    }
}

/* Control characters are shown as "." (mitmproxy's escape_control_characters). */
static void add_escaped(struct evbuffer *b, const char *s, size_t n, bool keep_spacing)
{
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        bool ctl = c < 0x20 || c == 0x7f;
        if (ctl && !(keep_spacing && (c == '\n' || c == '\t' || c == '\r')))
            c = '.';
        evbuffer_add(b, &c, 1);
    }
}

/* Header bytes as Python's repr would show them (\xNN for non-printables). */
static void add_bytes_repr(struct evbuffer *b, const char *s, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c == '\\')
            evbuffer_add(b, "\\\\", 2);
        else if (c >= 0x20 && c < 0x7f)
            evbuffer_add(b, &c, 1);
        else if (c == '\t')
            evbuffer_add(b, "\\t", 2);
        else if (c == '\n')
            evbuffer_add(b, "\\n", 2);
        else if (c == '\r')
            evbuffer_add(b, "\\r", 2);
        else
            evbuffer_add_printf(b, "\\x%02x", c);
    }
}

static void add_headers(struct evbuffer *b, const hdrs *h)
{
    for (size_t i = 0; i < h->n; i++) {
        evbuffer_add(b, "    ", 4);
        add_bytes_repr(b, h->v[i].name, h->v[i].name_len);
        /* mitmdump strips each printed line: no trailing spaces, and an
         * empty value leaves "name:" */
        size_t vl = h->v[i].value_len;
        while (vl && h->v[i].value[vl - 1] == ' ')
            vl--;
        evbuffer_add(b, ": ", vl ? 2 : 1);
        add_bytes_repr(b, h->v[i].value, vl);
        evbuffer_add(b, "\n", 1);
    }
}

/* The body through mitmproxy's content views (contentview.h): the auto
 * view's choice, or dumper_default_contentview; at detail 3 only the first
 * 70 lines, then "(cut off)".  query: a request's query string, which the
 * Query view shows when the body is empty. */
static void add_body(printer *p, struct evbuffer *b, const hdrs *h, const bytes *raw, const char *query)
{
    bytes dec = {0};
    const bytes *body = raw;
    const char *ce = hdrs_get(h, "content-encoding", NULL);
    char err[128];
    if (raw->len && ce && *ce && encoding_decode(ce, raw->p, raw->len, &dec, err, sizeof err) == 0)
        body = &dec;
    size_t ctl = 0;
    const char *ctv = hdrs_get(h, "content-type", &ctl);
    char *ct = ctv ? strndup(ctv, ctl) : NULL;
    cv_text t = {.max_lines = p->detail == 3 ? 70 : (size_t)-1};
    contentview_render(p->view, ct, query, body->p, body->len, &t);
    if (t.lines) {
        evbuffer_add(b, "\n", 1);
        for (const char *s = t.p, *end = t.p + t.len; s < end;) {
            const char *nl = memchr(s, '\n', (size_t)(end - s));
            evbuffer_add(b, "    ", 4);
            evbuffer_add(b, s, (size_t)((nl ? nl : end) - s));
            evbuffer_add(b, "\n", 1);
            s = nl ? nl + 1 : end;
        }
    }
    if (t.cut)
        evbuffer_add(b, "    (cut off)\n", 14);
    if (p->detail >= 2)
        evbuffer_add(b, "\n", 1);
    cv_text_free(&t);
    free(ct);
    bytes_free(&dec);
}

static void add_trailers(struct evbuffer *b, const hdrs *t)
{
    if (!t->n)
        return;
    evbuffer_add(b, "    --- HTTP Trailers\n", 22);
    add_headers(b, t);
}

static bool is_h1(const char *v)
{
    return v && (strcmp(v, "HTTP/1.1") == 0 || strcmp(v, "HTTP/1.0") == 0);
}

static void json_set_str(json_t *o, const char *k, const char *v)
{
    json_object_set_new(o, k, v ? json_string(v) : json_null());
    if (v && !json_object_get(o, k)) /* not UTF-8: keep the key, say so */
        json_object_set_new(o, k, json_string("(not UTF-8)"));
}

char *printer_flow_json(const flow *f)
{
    json_t *o = json_object();
    char buf[160];
    const flow_request *rq = f->request;
    const flow_response *rs = f->response;
    json_set_str(o, "id", f->id);
    json_set_str(o, "type", f->type == FLOW_TCP ? "tcp" : "http");
    double start = rq && rq->timestamp_start ? rq->timestamp_start : f->timestamp_created;
    double end = rs && rs->timestamp_end ? rs->timestamp_end : f->error ? f->error->timestamp : start;
    json_object_set_new(o, "timestamp_start", json_real(start));
    json_object_set_new(o, "timestamp_end", json_real(end));
    json_object_set_new(o, "duration_ms", json_real(end > start ? (end - start) * 1000.0 : 0.0));
    printer_format_address(f->client.address_host, f->client.address_port, buf, sizeof buf);
    json_set_str(o, "client", buf);
    if (f->server.address_host) {
        printer_format_address(f->server.address_host, f->server.address_port, buf, sizeof buf);
        json_set_str(o, "server", buf);
    } else {
        json_object_set_new(o, "server", json_null());
    }
    if (rq) {
        char *url = flow_request_url(rq);
        json_set_str(o, "method", rq->method);
        json_set_str(o, "url", url);
        json_set_str(o, "http_version", rq->http_version);
        json_object_set_new(o, "request_size", json_integer((json_int_t)rq->content.len));
        free(url);
    }
    json_object_set_new(o, "status", rs ? json_integer(rs->status_code) : json_null());
    json_set_str(o, "reason", rs ? rs->reason : NULL);
    /* what the server spoke, which may differ from the client's version */
    json_set_str(o, "response_http_version", rs ? rs->http_version : NULL);
    json_set_str(o, "server_alpn", f->server.alpn && *f->server.alpn ? f->server.alpn : NULL);
    json_object_set_new(o, "response_size", rs ? json_integer((json_int_t)rs->content.len) : json_null());
    json_set_str(o, "error", f->error ? f->error->msg : NULL);
    json_set_str(o, "is_replay", f->is_replay);
    json_object_set_new(o, "tls", json_boolean(f->client.tls));
    json_object_set_new(o, "marked", json_boolean(f->marked && *f->marked));
    json_set_str(o, "comment", f->comment && *f->comment ? f->comment : NULL);
    json_t *meta = f->metadata ? json_loads(f->metadata, 0, NULL) : NULL;
    json_object_set_new(o, "metadata", meta ? meta : json_object());
    if (f->websocket) { /* a summary: the messages themselves are in the dump */
        json_t *ws = json_object();
        size_t nbytes = 0;
        for (size_t i = 0; i < f->ws_n; i++)
            nbytes += f->ws_msgs[i].content.len;
        json_object_set_new(ws, "messages", json_integer((json_int_t)f->ws_n));
        json_object_set_new(ws, "bytes", json_integer((json_int_t)nbytes));
        json_object_set_new(ws, "close_code", f->ws_close_code ? json_integer(f->ws_close_code) : json_null());
        json_object_set_new(ws, "closed_by_client", json_boolean(f->ws_closed_by_client));
        json_object_set_new(o, "websocket", ws);
    }
    char *s = json_dumps(o, JSON_COMPACT | JSON_PRESERVE_ORDER);
    json_decref(o);
    return s;
}

static void print_jsonl(printer *p, const flow *f)
{
    char *s = printer_flow_json(f);
    if (!s)
        return;
    pthread_mutex_lock(&p->lock);
    fputs(s, p->out);
    fputc('\n', p->out);
    fflush(p->out);
    pthread_mutex_unlock(&p->lock);
    free(s);
}

/* wsproto's CloseReason names, which mitmdump prints */
static const char *ws_close_name(int code)
{
    switch (code) {
    case 1000: return "NORMAL_CLOSURE";
    case 1001: return "GOING_AWAY";
    case 1002: return "PROTOCOL_ERROR";
    case 1003: return "UNSUPPORTED_DATA";
    case 1005: return "NO_STATUS_RCVD";
    case 1006: return "ABNORMAL_CLOSURE";
    case 1007: return "INVALID_FRAME_PAYLOAD_DATA";
    case 1008: return "POLICY_VIOLATION";
    case 1009: return "MESSAGE_TOO_BIG";
    case 1010: return "MANDATORY_EXT";
    case 1011: return "INTERNAL_ERROR";
    case 1012: return "SERVICE_RESTART";
    case 1013: return "TRY_AGAIN_LATER";
    case 1014: return "BAD_GATEWAY";
    case 1015: return "TLS_HANDSHAKE_FAILED";
    default: return NULL;
    }
}

/* What mitmdump prints live for a WebSocket connection (one line per
 * message, the content from flow_detail 3, then how it closed); mitmlua
 * prints it with the flow when the connection ends. */
static void add_websocket(printer *p, struct evbuffer *b, const flow *f, const char *client)
{
    char server[128];
    printer_format_address(f->server.address_host, f->server.address_port, server, sizeof server);
    const char *path = f->request->path ? f->request->path : "";
    hdrs none = {0};
    for (size_t i = 0; i < f->ws_n; i++) {
        const flow_ws_message *m = &f->ws_msgs[i];
        const char *dir = m->from_client ? "->" : "<-";
        evbuffer_add_printf(b, "%s %s WebSocket %s message %s %s", client, dir, m->is_text ? "text" : "binary",
                            dir, server);
        add_escaped(b, path, strlen(path), true);
        evbuffer_add(b, "\n", 1);
        if (p->detail >= 3 && m->content.len)
            add_body(p, b, &none, &m->content, NULL);
    }
    int code = f->ws_close_code;
    const char *reason = f->ws_close_reason ? f->ws_close_reason : "";
    if (code == 1000 || code == 1001 || code == 1005) {
        evbuffer_add_printf(b, "WebSocket connection closed by %s: %d ", f->ws_closed_by_client ? "client" : "server",
                            code);
        add_escaped(b, reason, strlen(reason), true);
        evbuffer_add(b, "\n", 1);
        return;
    }
    const char *name = ws_close_name(code);
    evbuffer_add_printf(b, "Error in WebSocket connection to %s: WebSocket Error: ", server);
    if (name)
        evbuffer_add_printf(b, "%s", name);
    else
        evbuffer_add_printf(b, "UNKNOWN_ERROR=%d", code);
    if (*reason) {
        evbuffer_add(b, " (reason: ", 10);
        add_escaped(b, reason, strlen(reason), true);
        evbuffer_add(b, ")", 1);
    }
    evbuffer_add(b, "\n", 1);
}

/* What mitmdump prints live for a raw TCP flow (one line per message, the
 * content from flow_detail 3, an error); mitmlua prints it with the flow
 * when the connection ends. */
static void add_tcp(printer *p, struct evbuffer *b, const flow *f)
{
    char client[128], server[128];
    printer_format_address(f->client.address_host, f->client.address_port, client, sizeof client);
    printer_format_address(f->server.address_host, f->server.address_port, server, sizeof server);
    hdrs none = {0};
    for (size_t i = 0; i < f->ws_n; i++) {
        const flow_ws_message *m = &f->ws_msgs[i];
        const char *dir = m->from_client ? "->" : "<-";
        evbuffer_add_printf(b, "%s %s tcp %s %s\n", client, dir, dir, server);
        if (p->detail >= 3 && m->content.len)
            add_body(p, b, &none, &m->content, NULL);
    }
    if (f->error && f->error->msg) {
        evbuffer_add_printf(b, "Error in TCP connection to %s: ", server);
        add_escaped(b, f->error->msg, strlen(f->error->msg), true);
        evbuffer_add(b, "\n", 1);
    }
}

static void print_out(printer *p, struct evbuffer *b)
{
    size_t len = evbuffer_get_length(b);
    const char *data = (const char *)evbuffer_pullup(b, -1);
    pthread_mutex_lock(&p->lock);
    fwrite(data, 1, len, p->out);
    fflush(p->out);
    pthread_mutex_unlock(&p->lock);
}

void printer_flow(printer *p, const flow *f)
{
    if (!p || p->detail == 0)
        return;
    if (p->jsonl) {
        print_jsonl(p, f);
        return;
    }
    if (f->type == FLOW_TCP && (f->ws_n || f->error)) {
        struct evbuffer *b = evbuffer_new();
        if (!b)
            return;
        add_tcp(p, b, f);
        print_out(p, b);
        evbuffer_free(b);
        return;
    }
    if (!f->request) /* mitmdump shows nothing for passed-through connections */
        return;
    struct evbuffer *b = evbuffer_new();
    if (!b)
        return;
    const flow_request *rq = f->request;
    const flow_response *rs = f->response;
    char client[128];
    printer_format_address(f->client.address_host, f->client.address_port, client, sizeof client);
    bool replay_req = f->is_replay && strcmp(f->is_replay, "request") == 0;
    /* request line */
    const char *rqv = rq->http_version ? rq->http_version : "HTTP/1.1";
    const char *rsv = rs && rs->http_version ? rs->http_version : "HTTP/1.1";
    char *url = NULL;
    if (p->showhost) {
        size_t hl;
        const char *hh = hdrs_get(&rq->headers, "host", &hl);
        if (hh) {
            flow_request tmp = *rq;
            char host[300];
            snprintf(host, sizeof host, "%.*s", (int)hl, hh);
            char *colon = strrchr(host, ':');
            if (colon && !strchr(colon, ']') && host[0] != '[')
                *colon = '\0';
            if (host[0] == '[') {
                memmove(host, host + 1, strlen(host));
                char *rb = strchr(host, ']');
                if (rb)
                    *rb = '\0';
            }
            tmp.host = host;
            url = flow_request_url(&tmp);
        }
    }
    if (!url)
        url = flow_request_url(rq);
    evbuffer_add_printf(b, "%s: ", replay_req ? "[replay]" : client);
    add_escaped(b, rq->method, strlen(rq->method), true);
    evbuffer_add(b, " ", 1);
    add_escaped(b, url ? url : "", url ? strlen(url) : 0, true);
    if (!is_h1(rqv) || strcmp(rqv, rsv) != 0)
        evbuffer_add_printf(b, " %s", rqv);
    evbuffer_add(b, "\n", 1);
    free(url);
    if (p->detail >= 2)
        add_headers(b, &rq->headers);
    if (p->detail >= 3) {
        const char *q = rq->path ? strchr(rq->path, '?') : NULL;
        add_body(p, b, &rq->headers, &rq->content, q ? q + 1 : NULL);
    }
    if (p->detail >= 2)
        add_trailers(b, &rq->trailers);
    /* response line */
    if (rs) {
        bool replay_resp = f->is_replay && strcmp(f->is_replay, "response") == 0;
        const char *replay = replay_resp ? "[replay]" : "";
        char ver[32] = "";
        if (!is_h1(rsv) || strcmp(rqv, rsv) != 0)
            snprintf(ver, sizeof ver, "%s ", rsv);
        char size[32];
        printer_pretty_size(rs->content.len, size, sizeof size);
        int pad = 0;
        if (p->detail == 1) {
            pad = (int)strlen(client) - (int)(2 + strlen(ver) + strlen(replay));
            if (pad < 0)
                pad = 0;
        }
        evbuffer_add_printf(b, "%s%*s << %s%d ", replay, pad, "", ver, rs->status_code);
        /* HTTP/2 has no reason phrase: mitmdump prints the status's text */
        const char *reason = rs->reason && *rs->reason ? rs->reason : h1_reason(rs->status_code);
        add_escaped(b, reason, strlen(reason), true);
        evbuffer_add_printf(b, " %s\n", size);
        if (p->detail >= 2)
            add_headers(b, &rs->headers);
        if (p->detail >= 3)
            add_body(p, b, &rs->headers, &rs->content, NULL);
        if (p->detail >= 2)
            add_trailers(b, &rs->trailers);
    }
    if (f->websocket)
        add_websocket(p, b, f, client);
    else if (f->error && f->error->msg) {
        evbuffer_add(b, " << ", 4);
        add_escaped(b, f->error->msg, strlen(f->error->msg), true);
        evbuffer_add(b, "\n", 1);
    }
    print_out(p, b);
    evbuffer_free(b);
}
