/* h1.c — strict HTTP/1.x parsing and serialising.
 *
 * Parsing happens in two steps.  First the head (start line + header
 * section) is collected and checked byte by byte by our own scanner: CR only
 * directly before LF, no bare LF, no obs-fold, no whitespace before a colon,
 * no control characters in values, bounded size and field count.  Only a head
 * that passes is handed to llhttp, which then also frames the body (content
 * length, chunked, close-delimited).  The double check is deliberate: Debian's
 * llhttp 8.1 is lenient in exactly the places request smuggling lives. */
#include "h1.h"

#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "llhttp.h"

enum h1_phase { PH_HEAD, PH_BODY, PH_DONE, PH_ERROR };

struct h1_parser {
    llhttp_t ll;
    llhttp_settings_t settings;
    bool is_request;
    h1_limits lim;
    h1_events ev;
    void *ud;
    enum h1_phase phase;
    flow_request *req;
    flow_response *resp;
    bool no_body;
    bool in_trailers;
    bool keep_alive;
    bool upgrade;
    bool chunked;
    bool started;
    bool have_start;       /* start line checked */
    size_t scanned;        /* head bytes already checked */
    size_t nfields;
    uint64_t body_len;
    bytes name, value;     /* header field being collected from llhttp */
    bytes url;             /* request target / reason being collected */
    int err_status;
    char err[160];
};

/* ---- character classes (RFC 9110 §5.6.2) -------------------------------- */

/* tchar = "!" / "#" / "$" / "%" / "&" / "'" / "*" / "+" / "-" / "." /
 *         "^" / "_" / "`" / "|" / "~" / DIGIT / ALPHA
 * A table: every field name of every message goes through this, twice. */
#define T4(a, b, c, d) a, b, c, d
#define T16(a, b, c, d) T4 a, T4 b, T4 c, T4 d
static const bool tchar[256] = {
    T16((0, 0, 0, 0), (0, 0, 0, 0), (0, 0, 0, 0), (0, 0, 0, 0)),  /* 0x00 */
    T16((0, 0, 0, 0), (0, 0, 0, 0), (0, 0, 0, 0), (0, 0, 0, 0)),  /* 0x10 */
    T16((0, 1, 0, 1), (1, 1, 1, 1), (0, 0, 1, 1), (0, 1, 1, 0)),  /*  !"#$%&'()*+,-./ */
    T16((1, 1, 1, 1), (1, 1, 1, 1), (1, 1, 0, 0), (0, 0, 0, 0)),  /* 0-9 :;<=>? */
    T16((0, 1, 1, 1), (1, 1, 1, 1), (1, 1, 1, 1), (1, 1, 1, 1)),  /* @A-O */
    T16((1, 1, 1, 1), (1, 1, 1, 1), (1, 1, 1, 0), (0, 0, 1, 1)),  /* P-Z [\]^_ */
    T16((1, 1, 1, 1), (1, 1, 1, 1), (1, 1, 1, 1), (1, 1, 1, 1)),  /* `a-o */
    T16((1, 1, 1, 1), (1, 1, 1, 1), (1, 1, 1, 0), (1, 0, 1, 0)),  /* p-z {|}~ DEL */
};
#undef T16
#undef T4

bool h1_valid_name(const char *s, size_t n)
{
    if (n == 0)
        return false;
    for (size_t i = 0; i < n; i++)
        if (!tchar[(unsigned char)s[i]])
            return false;
    return true;
}

bool h1_valid_value(const char *s, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        if ((c < 0x20 && c != '\t') || c == 0x7f)
            return false;
    }
    return true;
}

static int fail(h1_parser *p, int status, const char *fmt, const char *arg)
{
    p->phase = PH_ERROR;
    p->err_status = status;
    snprintf(p->err, sizeof p->err, fmt, arg ? arg : "");
    return -1;
}

/* ---- llhttp callbacks --------------------------------------------------- */

static h1_parser *P(llhttp_t *ll) { return ll->data; }

static int cb_message_begin(llhttp_t *ll)
{
    P(ll)->started = true;
    return 0;
}

static int cb_url(llhttp_t *ll, const char *at, size_t n)
{
    return bytes_append(&P(ll)->url, at, n);
}

static int cb_status(llhttp_t *ll, const char *at, size_t n)
{
    return bytes_append(&P(ll)->url, at, n);
}

static int cb_hname(llhttp_t *ll, const char *at, size_t n)
{
    return bytes_append(&P(ll)->name, at, n);
}

static int cb_hvalue(llhttp_t *ll, const char *at, size_t n)
{
    return bytes_append(&P(ll)->value, at, n);
}

static int cb_hvalue_done(llhttp_t *ll)
{
    h1_parser *p = P(ll);
    hdrs *h;
    if (p->is_request)
        h = p->in_trailers ? &p->req->trailers : &p->req->headers;
    else
        h = p->in_trailers ? &p->resp->trailers : &p->resp->headers;
    /* OWS around the value is not part of it (RFC 9110 §5.5) */
    const char *v = p->value.p ? p->value.p : "";
    size_t vl = p->value.len;
    while (vl && (v[vl - 1] == ' ' || v[vl - 1] == '\t'))
        vl--;
    while (vl && (*v == ' ' || *v == '\t')) {
        v++;
        vl--;
    }
    if (p->in_trailers) {
        if (!h1_valid_name(p->name.p ? p->name.p : "", p->name.len) || !h1_valid_value(v, vl) ||
            ++p->nfields > p->lim.max_headers) {
            fail(p, 400, "invalid trailer section%s", NULL);
            return -1;
        }
    }
    int rc = hdrs_add(h, p->name.p ? p->name.p : "", p->name.len, v, vl);
    bytes_reset(&p->name);
    bytes_reset(&p->value);
    return rc;
}

static int count_field(const hdrs *h, const char *name)
{
    int n = 0;
    for (ssize_t i = hdrs_find(h, name, 0); i >= 0; i = hdrs_find(h, name, (size_t)i + 1))
        n++;
    return n;
}

static bool all_digits(const char *s, size_t n)
{
    if (n == 0 || n > 18)
        return false;
    for (size_t i = 0; i < n; i++)
        if (!isdigit((unsigned char)s[i]))
            return false;
    return true;
}

/* Framing rules that smuggling attacks probe (RFC 9112 §6). */
static int check_framing(h1_parser *p, const hdrs *h, int major, int minor)
{
    int ncl = count_field(h, "content-length");
    int nte = count_field(h, "transfer-encoding");
    int bad = p->is_request ? 400 : 502;
    if (ncl > 1)
        return fail(p, bad, "multiple Content-Length headers%s", NULL);
    if (ncl == 1) {
        size_t vl;
        const char *v = hdrs_get(h, "content-length", &vl);
        if (!all_digits(v, vl))
            return fail(p, bad, "invalid Content-Length '%.40s'", v);
    }
    if (nte) {
        if (ncl)
            return fail(p, bad, "both Content-Length and Transfer-Encoding%s", NULL);
        if (major == 1 && minor == 0)
            return fail(p, bad, "Transfer-Encoding in an HTTP/1.0 message%s", NULL);
        if (nte > 1)
            return fail(p, bad, "multiple Transfer-Encoding headers%s", NULL);
        size_t vl;
        const char *v = hdrs_get(h, "transfer-encoding", &vl);
        if (vl != 7 || strncasecmp(v, "chunked", 7) != 0)
            return fail(p, p->is_request ? 501 : 502, "unsupported Transfer-Encoding '%.40s'", v);
    }
    return 0;
}

static char *http_version_str(int major, int minor)
{
    if (major == 1 && (minor == 1 || minor == 0))   /* nearly always: no formatting */
        return strdup(minor ? "HTTP/1.1" : "HTTP/1.0");
    char buf[16];
    snprintf(buf, sizeof buf, "HTTP/%d.%d", major, minor);
    return strdup(buf);
}

static int cb_headers_complete(llhttp_t *ll)
{
    h1_parser *p = P(ll);
    int major = ll->http_major, minor = ll->http_minor;
    if (major != 1 || minor > 1) {
        fail(p, 505, "unsupported HTTP version%s", NULL);
        return -1;
    }
    if (p->is_request) {
        flow_request *r = p->req;
        const char *m = llhttp_method_name((llhttp_method_t)ll->method);
        if (flow_strset(&r->method, m) < 0 ||
            flow_strnset(&r->path, p->url.p ? p->url.p : "", p->url.len) < 0 ||
            !(r->http_version = http_version_str(major, minor)))
            return -1;
        if (check_framing(p, &r->headers, major, minor) < 0)
            return -1;
        int nhost = count_field(&r->headers, "host");
        if (nhost > 1 || (nhost == 0 && minor == 1)) {
            fail(p, 400, nhost ? "multiple Host headers%s" : "missing Host header%s", NULL);
            return -1;
        }
    } else {
        flow_response *s = p->resp;
        s->status_code = ll->status_code;
        if (flow_strnset(&s->reason, p->url.p ? p->url.p : "", p->url.len) < 0 ||
            !(s->http_version = http_version_str(major, minor)))
            return -1;
        if (check_framing(p, &s->headers, major, minor) < 0)
            return -1;
    }
    p->chunked = (ll->flags & F_CHUNKED) != 0;
    /* check_framing read "chunked" with its trailing whitespace trimmed
     * ("chunked<TAB>" is chunked: RFC 9110 §5.5); llhttp 8.1 does not trim
     * it, and would read the body to the connection's end: the client
     * then got the chunk framing as content.  Refuse what the two read
     * differently. */
    if (!p->chunked && count_field(p->is_request ? &p->req->headers : &p->resp->headers,
                                   "transfer-encoding")) {
        fail(p, p->is_request ? 400 : 502, "Transfer-Encoding the parser does not read as chunked%s", NULL);
        return -1;
    }
    if (p->is_request && p->lim.max_body && !p->chunked && (ll->flags & F_CONTENT_LENGTH) &&
        ll->content_length > p->lim.max_body) {
        /* refuse at once rather than after reading up to the limit */
        fail(p, 413, "Content-Length larger than body_size_limit%s", NULL);
        return -1;
    }
    p->in_trailers = true;
    p->phase = PH_BODY;
    if (p->ev.on_head && p->ev.on_head(p->ud) < 0) {
        if (p->phase != PH_ERROR)
            fail(p, 400, "message refused%s", NULL);
        return -1;
    }
    if (!p->is_request) {
        int st = p->resp->status_code;
        /* RFC 9112 §6.3: these never have a body, whatever the headers say */
        if (p->no_body || st == 204 || st == 304 || (st >= 100 && st < 200 && st != 101))
            return 1;
    }
    return 0;
}

static int cb_body(llhttp_t *ll, const char *at, size_t n)
{
    h1_parser *p = P(ll);
    p->body_len += n;
    if (p->lim.max_body && p->body_len > p->lim.max_body) {
        fail(p, p->is_request ? 413 : 502, "body larger than body_size_limit%s", NULL);
        return -1;
    }
    if (p->ev.on_body && p->ev.on_body(p->ud, at, n) < 0) {
        if (p->phase != PH_ERROR)
            fail(p, 400, "body refused%s", NULL);
        return -1;
    }
    return 0;
}

static int cb_message_complete(llhttp_t *ll)
{
    h1_parser *p = P(ll);
    p->keep_alive = llhttp_should_keep_alive(ll) != 0;
    p->upgrade = ll->upgrade != 0;
    p->phase = PH_DONE;
    double now = flow_now();
    if (p->is_request)
        p->req->timestamp_end = now;
    else
        p->resp->timestamp_end = now;
    return HPE_PAUSED;
}

static h1_parser *parser_new(bool is_request, const h1_limits *lim, const h1_events *ev, void *ud)
{
    h1_parser *p = calloc(1, sizeof *p);
    if (!p)
        return NULL;
    p->is_request = is_request;
    p->lim = *lim;
    if (!p->lim.max_head)
        p->lim.max_head = 64 * 1024;
    if (!p->lim.max_headers)
        p->lim.max_headers = 256;
    p->ev = *ev;
    p->ud = ud;
    llhttp_settings_init(&p->settings);
    p->settings.on_message_begin = cb_message_begin;
    p->settings.on_url = cb_url;
    p->settings.on_status = cb_status;
    p->settings.on_header_field = cb_hname;
    p->settings.on_header_value = cb_hvalue;
    p->settings.on_header_value_complete = cb_hvalue_done;
    p->settings.on_headers_complete = cb_headers_complete;
    p->settings.on_body = cb_body;
    p->settings.on_message_complete = cb_message_complete;
    p->phase = PH_DONE;
    return p;
}

h1_parser *h1_parser_new_request(const h1_limits *lim, const h1_events *ev, void *ud)
{
    return parser_new(true, lim, ev, ud);
}

h1_parser *h1_parser_new_response(const h1_limits *lim, const h1_events *ev, void *ud)
{
    return parser_new(false, lim, ev, ud);
}

void h1_parser_free(h1_parser *p)
{
    if (!p)
        return;
    bytes_free(&p->name);
    bytes_free(&p->value);
    bytes_free(&p->url);
    free(p);
}

static void begin(h1_parser *p)
{
    llhttp_init(&p->ll, p->is_request ? HTTP_REQUEST : HTTP_RESPONSE, &p->settings);
    p->ll.data = p;
    p->phase = PH_HEAD;
    p->in_trailers = p->keep_alive = p->upgrade = p->chunked = p->started = p->have_start = false;
    p->scanned = 0;
    p->nfields = 0;
    p->body_len = 0;
    p->err_status = 0;
    p->err[0] = '\0';
    bytes_reset(&p->name);
    bytes_reset(&p->value);
    bytes_reset(&p->url);
}

void h1_parser_begin_request(h1_parser *p, flow_request *r)
{
    begin(p);
    p->req = r;
}

void h1_parser_begin_response(h1_parser *p, flow_response *s, bool no_body)
{
    begin(p);
    p->resp = s;
    p->no_body = no_body;
}

/* ---- the head scanner --------------------------------------------------- */

static int check_start_line(h1_parser *p, const char *s, size_t n)
{
    if (p->is_request) {
        /* method SP request-target SP HTTP-version: exactly two single spaces */
        const char *sp1 = memchr(s, ' ', n);
        if (!sp1 || sp1 == s || !h1_valid_name(s, (size_t)(sp1 - s)))
            return fail(p, 400, "invalid request line%s", NULL);
        const char *t = sp1 + 1, *end = s + n;
        const char *sp2 = memchr(t, ' ', (size_t)(end - t));
        if (!sp2 || sp2 == t)
            return fail(p, 400, "invalid request line%s", NULL);
        for (const char *c = t; c < sp2; c++)
            if ((unsigned char)*c <= 0x20 || *c == 0x7f)
                return fail(p, 400, "invalid character in request target%s", NULL);
        size_t vl = (size_t)(end - sp2 - 1);
        if (vl != 8 || memcmp(sp2 + 1, "HTTP/1.", 7) != 0 || !isdigit((unsigned char)sp2[8]))
            return fail(p, vl == 8 && memcmp(sp2 + 1, "HTTP/", 5) == 0 ? 505 : 400,
                        "invalid HTTP version in request line%s", NULL);
        return 0;
    }
    /* HTTP-version SP 3DIGIT [SP reason] */
    if (n < 12 || memcmp(s, "HTTP/1.", 7) != 0 || !isdigit((unsigned char)s[7]) || s[8] != ' ' ||
        !isdigit((unsigned char)s[9]) || !isdigit((unsigned char)s[10]) ||
        !isdigit((unsigned char)s[11]) || (n > 12 && s[12] != ' '))
        return fail(p, 502, "invalid status line%s", NULL);
    for (size_t i = 12; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        if ((c < 0x20 && c != '\t') || c == 0x7f)
            return fail(p, 502, "invalid character in reason phrase%s", NULL);
    }
    return 0;
}

static int check_field_line(h1_parser *p, const char *s, size_t n)
{
    int bad = p->is_request ? 400 : 502;
    if (s[0] == ' ' || s[0] == '\t')
        return fail(p, bad, "obsolete line folding in header section%s", NULL);
    const char *colon = memchr(s, ':', n);
    if (!colon)
        return fail(p, bad, "header line without colon%s", NULL);
    if (!h1_valid_name(s, (size_t)(colon - s)))
        return fail(p, bad, colon > s && (colon[-1] == ' ' || colon[-1] == '\t')
                                ? "whitespace before colon in header%s"
                                : "invalid header name%s", NULL);
    if (!h1_valid_value(colon + 1, n - (size_t)(colon + 1 - s)))
        return fail(p, bad, "invalid character in header value%s", NULL);
    if (++p->nfields > p->lim.max_headers)
        return fail(p, p->is_request ? 431 : 502, "too many header fields%s", NULL);
    return 0;
}

/* Check complete lines of the head that have arrived.  Returns the head's
 * total length once its end is seen, 0 when more is needed, -1 on error. */
static ssize_t scan_head(h1_parser *p, const char *buf, size_t len)
{
    size_t pos = p->scanned;
    /* tolerate (and skip) empty lines before a request line, as RFC 9112 §2.2 allows */
    while (pos < len) {
        const char *lf = memchr(buf + pos, '\n', len - pos);
        if (!lf) {
            const char *cr = memchr(buf + pos, '\r', len - pos);
            if (cr && cr + 1 < buf + len)
                return fail(p, p->is_request ? 400 : 502, "bare CR in header section%s", NULL);
            break;
        }
        size_t eol = (size_t)(lf - buf);
        if (eol == pos || buf[eol - 1] != '\r')
            return fail(p, p->is_request ? 400 : 502, "bare LF in header section%s", NULL);
        const char *line = buf + pos;
        size_t n = eol - 1 - pos;
        if (memchr(line, '\r', n))
            return fail(p, p->is_request ? 400 : 502, "bare CR in header section%s", NULL);
        if (!p->have_start) {
            if (n == 0 && p->is_request && pos < 8) {
                pos = eol + 1; /* leading empty line */
                p->scanned = pos;
                continue;
            }
            if (n == 0)
                return fail(p, p->is_request ? 400 : 502, "empty start line%s", NULL);
            if (check_start_line(p, line, n) < 0)
                return -1;
            p->have_start = true;
        } else if (n == 0) {
            return (ssize_t)(eol + 1);
        } else if (check_field_line(p, line, n) < 0) {
            return -1;
        }
        pos = eol + 1;
        p->scanned = pos;
    }
    if (len >= p->lim.max_head)
        return fail(p, p->is_request ? 431 : 502, "header section larger than max_header_size%s", NULL);
    return 0;
}

/* Feed llhttp from `buf`; returns bytes consumed or -1.  Sets the phase. */
static ssize_t ll_exec(h1_parser *p, const char *buf, size_t n)
{
    llhttp_errno_t e = llhttp_execute(&p->ll, buf, n);
    if (e == HPE_OK)
        return (ssize_t)n;
    if (e == HPE_PAUSED || e == HPE_PAUSED_UPGRADE) {
        if (e == HPE_PAUSED_UPGRADE) {
            p->upgrade = true;
            p->phase = PH_DONE;
            p->keep_alive = false;
        }
        const char *pos = llhttp_get_error_pos(&p->ll);
        return pos ? (ssize_t)(pos - buf) : (ssize_t)n;
    }
    if (p->phase != PH_ERROR) {
        const char *why = llhttp_get_error_reason(&p->ll);
        /* a well-formed method llhttp does not know (our own scan has
         * checked the request line's syntax): RFC 9110 §9.1 says 501 */
        int st = !p->is_request ? 502 : e == HPE_INVALID_METHOD ? 501 : 400;
        fail(p, st, "malformed message: %s", why);
    }
    return -1;
}

enum h1_status h1_parser_feed(h1_parser *p, struct evbuffer *in)
{
    if (p->phase == PH_ERROR)
        return H1_ERROR;
    if (p->phase == PH_DONE)
        return H1_DONE;
    if (p->phase == PH_HEAD) {
        size_t len = evbuffer_get_length(in);
        if (len == 0)
            return H1_NEED_MORE;
        size_t want = len < p->lim.max_head ? len : p->lim.max_head;
        const char *buf = (const char *)evbuffer_pullup(in, (ssize_t)want);
        if (!buf)
            return fail(p, 500, "out of memory%s", NULL), H1_ERROR;
        ssize_t hl = scan_head(p, buf, want);
        if (hl < 0)
            return H1_ERROR;
        if (hl == 0)
            return H1_NEED_MORE;
        double now = flow_now();
        if (p->is_request)
            p->req->timestamp_start = now;
        else
            p->resp->timestamp_start = now;
        ssize_t used = ll_exec(p, buf, (size_t)hl);
        if (used < 0)
            return H1_ERROR;
        evbuffer_drain(in, (size_t)used);
        if (p->phase == PH_HEAD)  /* llhttp disagrees that the head ended */
            return fail(p, p->is_request ? 400 : 502, "malformed header section%s", NULL), H1_ERROR;
        if (p->phase == PH_DONE)
            return H1_DONE;
    }
    /* body: hand llhttp the buffered chunks without copying them */
    while (p->phase == PH_BODY && evbuffer_get_length(in)) {
        struct evbuffer_iovec v[8];
        int nv = evbuffer_peek(in, -1, NULL, v, 8);
        if (nv > 8)
            nv = 8;
        size_t total = 0;
        for (int i = 0; i < nv && p->phase == PH_BODY; i++) {
            ssize_t used = ll_exec(p, v[i].iov_base, v[i].iov_len);
            if (used < 0)
                return H1_ERROR;
            total += (size_t)used;
            if ((size_t)used < v[i].iov_len)
                break;
        }
        evbuffer_drain(in, total);
    }
    if (p->phase == PH_ERROR)
        return H1_ERROR;
    return p->phase == PH_DONE ? H1_DONE : H1_NEED_MORE;
}

enum h1_status h1_parser_eof(h1_parser *p)
{
    if (p->phase == PH_DONE)
        return H1_DONE;
    if (p->phase == PH_BODY && llhttp_message_needs_eof(&p->ll)) {
        llhttp_errno_t e = llhttp_finish(&p->ll);
        if ((e == HPE_OK || e == HPE_PAUSED) && p->phase == PH_DONE) {
            p->keep_alive = false;
            return H1_DONE;
        }
    }
    if (p->phase != PH_ERROR)
        fail(p, p->is_request ? 400 : 502,
             p->phase == PH_BODY ? "connection closed before the body was complete%s"
                                 : "connection closed before the header section was complete%s", NULL);
    return H1_ERROR;
}

bool h1_parser_keep_alive(const h1_parser *p) { return p->keep_alive; }
bool h1_parser_upgrade(const h1_parser *p) { return p->upgrade; }
bool h1_parser_chunked(const h1_parser *p) { return p->chunked; }
bool h1_parser_started(const h1_parser *p) { return p->started || p->scanned > 0; }
const char *h1_parser_error(const h1_parser *p) { return p->err; }
int h1_parser_error_status(const h1_parser *p) { return p->err_status ? p->err_status : 400; }

/* ---- serialising -------------------------------------------------------- */

/* The writers refuse what would change the framing of the bytes they write
 * (CR, LF, NUL and other controls, spaces in a request target, a bogus
 * version).  The parser and the Lua API already check what they let in;
 * this is the last line for anything else that fills a message (a dump file
 * being replayed, a future code path). */
static const char *safe_version(const char *v)
{
    return v && (strcmp(v, "HTTP/1.0") == 0 || strcmp(v, "HTTP/1.1") == 0) ? v : "HTTP/1.1";
}

static bool safe_target(const char *s)
{
    for (; *s; s++)
        if ((unsigned char)*s <= 0x20 || *s == 0x7f)
            return false;
    return true;
}

/* A head is written with one evbuffer call: adding it piece by piece costs
 * a callback round and a chain check per piece, which showed as the
 * largest share of the serialiser in profiles. */
typedef struct headbuf {
    char *p;
    size_t len, cap;
    char stack[H1_COALESCE_MAX];
} headbuf;

/* Room for n more bytes at h->p + h->len. */
static int hb_room(headbuf *h, size_t n)
{
    if (h->len + n <= h->cap)
        return 0;
    size_t cap = h->cap * 2 > h->len + n ? h->cap * 2 : h->len + n;
    char *np = h->p == h->stack ? malloc(cap) : realloc(h->p, cap);
    if (!np)
        return -1;
    if (h->p == h->stack)
        memcpy(np, h->stack, h->len);
    h->p = np;
    h->cap = cap;
    return 0;
}

static int hb_add(headbuf *h, const void *d, size_t n)
{
    if (hb_room(h, n) < 0)
        return -1;
    memcpy(h->p + h->len, d, n);
    h->len += n;
    return 0;
}

static int hb_str(headbuf *h, const char *s)
{
    return hb_add(h, s, strlen(s));
}

static void hb_init(headbuf *h)
{
    h->p = h->stack;
    h->len = 0;
    h->cap = sizeof h->stack;
}

/* Header fields and the blank line, then everything to `out`; then
 * `tail` (NULL: none), in the same call when it fits H1_COALESCE_MAX. */
static int hb_finish_tail(headbuf *h, const hdrs *fields, const bytes *tail, struct evbuffer *out)
{
    int rc = 0;
    for (size_t i = 0; fields && i < fields->n; i++) {
        const hdr_field *f = &fields->v[i];
        /* checked here, not only where fields come in: scripts and addons
         * change them on the way */
        if (!h1_valid_name(f->name, f->name_len) || !h1_valid_value(f->value, f->value_len) ||
            hb_room(h, f->name_len + f->value_len + 4) < 0) {
            rc = -1;
            break;
        }
        char *o = h->p + h->len;
        memcpy(o, f->name, f->name_len);
        o += f->name_len;
        *o++ = ':';
        *o++ = ' ';
        memcpy(o, f->value, f->value_len);
        o += f->value_len;
        *o++ = '\r';
        *o++ = '\n';
        h->len = (size_t)(o - h->p);
    }
    if (rc == 0)
        rc = hb_add(h, "\r\n", 2);
    bool apart = tail && tail->len && h->len + tail->len > H1_COALESCE_MAX;
    if (rc == 0 && tail && tail->len && !apart)
        rc = hb_add(h, tail->p, tail->len);
    if (rc == 0)
        rc = evbuffer_add(out, h->p, h->len);
    if (rc == 0 && apart)
        rc = evbuffer_add(out, tail->p, tail->len);
    if (h->p != h->stack)
        free(h->p);
    return rc < 0 ? -1 : 0;
}

static int hb_finish(headbuf *h, const hdrs *fields, struct evbuffer *out)
{
    return hb_finish_tail(h, fields, NULL, out);
}

int h1_write_request_head(struct evbuffer *out, const flow_request *r, bool absolute)
{
    const char *ver = safe_version(r->http_version);
    if (!r->method || !h1_valid_name(r->method, strlen(r->method)) || (r->host && !safe_target(r->host)) ||
        (r->path && !safe_target(r->path)))
        return -1;
    headbuf h;
    hb_init(&h);
    int rc;
    if (strcmp(r->method, "CONNECT") == 0) {
        char hb[300], port[8];
        snprintf(port, sizeof port, ":%u", r->port);
        rc = hb_str(&h, "CONNECT ") | hb_str(&h, flow_host_for_url(r->host, hb, sizeof hb)) | hb_str(&h, port);
    } else if (absolute) {
        char *url = flow_request_url(r);
        if (!url)
            return -1;
        rc = hb_str(&h, r->method) | hb_add(&h, " ", 1) | hb_str(&h, url);
        free(url);
    } else {
        rc = hb_str(&h, r->method) | hb_add(&h, " ", 1) | hb_str(&h, r->path && *r->path ? r->path : "/");
    }
    rc |= hb_add(&h, " ", 1) | hb_str(&h, ver) | hb_add(&h, "\r\n", 2);
    if (rc < 0) {
        if (h.p != h.stack)
            free(h.p);
        return -1;
    }
    return hb_finish(&h, &r->headers, out);
}

int h1_write_response_head(struct evbuffer *out, const flow_response *s)
{
    return h1_write_response(out, s, NULL);
}

int h1_write_response(struct evbuffer *out, const flow_response *s, const bytes *body)
{
    const char *ver = safe_version(s->http_version);
    const char *reason = s->reason && *s->reason ? s->reason : h1_reason(s->status_code);
    if (!h1_valid_value(reason, strlen(reason)) || s->status_code < 100 || s->status_code > 999)
        return -1;
    headbuf h;
    hb_init(&h);
    char status[8];
    int st = s->status_code;
    status[0] = ' ';
    status[1] = (char)('0' + st / 100);
    status[2] = (char)('0' + st / 10 % 10);
    status[3] = (char)('0' + st % 10);
    status[4] = ' ';
    if ((hb_str(&h, ver) | hb_add(&h, status, 5) | hb_str(&h, reason) | hb_add(&h, "\r\n", 2)) < 0) {
        if (h.p != h.stack)
            free(h.p);
        return -1;
    }
    return hb_finish_tail(&h, &s->headers, body, out);
}

int h1_write_body(struct evbuffer *out, const bytes *body, bool chunked, const hdrs *trailers)
{
    if (!chunked)
        return body->len ? evbuffer_add(out, body->p, body->len) : 0;
    if (body->len && (evbuffer_add_printf(out, "%zx\r\n", body->len) < 0 ||
                      evbuffer_add(out, body->p, body->len) < 0 || evbuffer_add(out, "\r\n", 2) < 0))
        return -1;
    headbuf h;
    hb_init(&h);
    if (hb_add(&h, "0\r\n", 3) < 0)
        return -1;
    return hb_finish(&h, trailers, out);
}

const char *h1_reason(int status)
{
    switch (status) {
    case 100: return "Continue";
    case 101: return "Switching Protocols";
    case 200: return "OK";
    case 201: return "Created";
    case 202: return "Accepted";
    case 204: return "No Content";
    case 206: return "Partial Content";
    case 301: return "Moved Permanently";
    case 302: return "Found";
    case 303: return "See Other";
    case 304: return "Not Modified";
    case 307: return "Temporary Redirect";
    case 308: return "Permanent Redirect";
    case 400: return "Bad Request";
    case 401: return "Unauthorized";
    case 403: return "Forbidden";
    case 404: return "Not Found";
    case 405: return "Method Not Allowed";
    case 407: return "Proxy Authentication Required";
    case 408: return "Request Timeout";
    case 409: return "Conflict";
    case 410: return "Gone";
    case 413: return "Content Too Large";
    case 414: return "URI Too Long";
    case 415: return "Unsupported Media Type";
    case 418: return "I'm a teapot";
    case 429: return "Too Many Requests";
    case 431: return "Request Header Fields Too Large";
    case 500: return "Internal Server Error";
    case 501: return "Not Implemented";
    case 502: return "Bad Gateway";
    case 503: return "Service Unavailable";
    case 504: return "Gateway Timeout";
    case 505: return "HTTP Version Not Supported";
    default: return "";
    }
}

bool h1_is_chunked(const hdrs *h)
{
    return hdrs_has_token(h, "transfer-encoding", "chunked");
}

int h1_fix_length(hdrs *h, size_t len, bool always)
{
    if (h1_is_chunked(h))
        return 0;
    if (!always && !hdrs_get(h, "content-length", NULL) && len == 0)
        return 0;
    /* decimal digits, right to left (this runs for every message) */
    char v[24];
    char *e = v + sizeof v, *d = e;
    do {
        *--d = (char)('0' + len % 10);
        len /= 10;
    } while (len);
    return hdrs_set(h, "Content-Length", d, (size_t)(e - d));
}
