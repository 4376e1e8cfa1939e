/* export.c — a flow's request as a curl command line.  Everything is
 * single-quoted (the only character a POSIX shell does not take literally
 * inside '...' is the quote itself, written as '\''); bytes a terminal
 * paste would mangle (control bytes, non-UTF-8) use bash's $'...' form. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "export.h"

static int needs_ansi(const char *s, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        if ((c < 0x20 && c != '\t') || c == 0x7f || c >= 0x80)
            return 1;
    }
    return 0;
}

static int quote(bytes *b, const char *s, size_t n)
{
    if (!needs_ansi(s, n)) {
        if (bytes_append(b, "'", 1) < 0)
            return -1;
        for (size_t i = 0; i < n; i++) {
            if (s[i] == '\'' ? bytes_append(b, "'\\''", 4) < 0 : bytes_append(b, &s[i], 1) < 0)
                return -1;
        }
        return bytes_append(b, "'", 1);
    }
    if (bytes_append(b, "$'", 2) < 0)
        return -1;
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        char t[8];
        int k;
        if (c == '\'' || c == '\\')
            k = snprintf(t, sizeof t, "\\%c", c);
        else if (c >= 0x20 && c < 0x7f)
            k = snprintf(t, sizeof t, "%c", c);
        else
            k = snprintf(t, sizeof t, "\\x%02x", c);
        if (bytes_append(b, t, (size_t)k) < 0)
            return -1;
    }
    return bytes_append(b, "'", 1);
}

static int word(bytes *b, const char *s)
{
    return bytes_append(b, " ", 1) < 0 || bytes_append(b, s, strlen(s)) < 0 ? -1 : 0;
}

/* A body with NUL bytes cannot travel in argv (C strings end at NUL), so
 * it is piped in: printf '%b' with octal escapes, then --data-binary @-. */
static int printf_body(bytes *b, const char *s, size_t n)
{
    if (bytes_append(b, "printf '%b' '", 13) < 0)
        return -1;
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        char t[8];
        int k;
        if (c == '\\')
            k = snprintf(t, sizeof t, "\\\\");
        else if (c == '\'')
            k = snprintf(t, sizeof t, "'\\''");
        else if (c >= 0x20 && c < 0x7f)
            k = snprintf(t, sizeof t, "%c", c);
        else
            k = snprintf(t, sizeof t, "\\0%03o", c);
        if (bytes_append(b, t, (size_t)k) < 0)
            return -1;
    }
    return bytes_append(b, "' | ", 4);
}

char *export_curl(const flow *f)
{
    if (!f || !f->request)
        return NULL;
    const flow_request *q = f->request;
    bytes b = {0};
    char *url = flow_request_url(q);
    int piped = q->content.len && memchr(q->content.p, 0, q->content.len) != NULL;
    if (!url || (piped && printf_body(&b, q->content.p, q->content.len) < 0) ||
        bytes_append(&b, "curl", 4) < 0)
        goto fail;
    const char *m = q->method ? q->method : "GET";
    if (strcmp(m, "GET") != 0 || q->content.len) {
        if (word(&b, "-X") < 0 || bytes_append(&b, " ", 1) < 0 || quote(&b, m, strlen(m)) < 0)
            goto fail;
    }
    if (q->http_version && strcmp(q->http_version, "HTTP/2.0") == 0 && word(&b, "--http2") < 0)
        goto fail;
    for (size_t i = 0; i < q->headers.n; i++) {
        const hdr_field *h = &q->headers.v[i];
        /* curl computes these itself; a stale copy would break the request */
        if (strcasecmp(h->name, "content-length") == 0 || strcasecmp(h->name, "host") == 0 ||
            strcasecmp(h->name, "transfer-encoding") == 0 || h->name[0] == ':')
            continue;
        bytes hv = {0};
        int bad = bytes_append(&hv, h->name, h->name_len) < 0 || bytes_append(&hv, ": ", 2) < 0 ||
                  bytes_append(&hv, h->value, h->value_len) < 0;
        if (h->value_len == 0) /* curl drops "Name:"; "Name;" sends it empty */
            bad = bad || bytes_set(&hv, h->name, h->name_len) < 0 || bytes_append(&hv, ";", 1) < 0;
        if (bad || word(&b, "-H") < 0 || bytes_append(&b, " ", 1) < 0 ||
            quote(&b, hv.p, hv.len) < 0) {
            bytes_free(&hv);
            goto fail;
        }
        bytes_free(&hv);
    }
    /* a Host that differs from the URL's host (virtual hosting) is kept */
    size_t hl;
    const char *host = hdrs_get(&q->headers, "host", &hl);
    if (host && q->host && (hl != strlen(q->host) || strncasecmp(host, q->host, hl) != 0)) {
        bytes hv = {0};
        int bad = bytes_append(&hv, "Host: ", 6) < 0 || bytes_append(&hv, host, hl) < 0;
        char hp[300];
        snprintf(hp, sizeof hp, "%s:%u", q->host, q->port);
        if (hl == strlen(hp) && strncasecmp(host, hp, hl) == 0)
            bad = 2; /* host:port as usual: curl writes the same */
        if (bad == 1 || (bad == 0 && (word(&b, "-H") < 0 || bytes_append(&b, " ", 1) < 0 ||
                                      quote(&b, hv.p, hv.len) < 0))) {
            bytes_free(&hv);
            goto fail;
        }
        bytes_free(&hv);
    }
    if (piped && word(&b, "--data-binary @-") < 0)
        goto fail;
    if (q->content.len && !piped &&
        (word(&b, "--data-binary") < 0 || bytes_append(&b, " ", 1) < 0 ||
         quote(&b, q->content.p, q->content.len) < 0))
        goto fail;
    if (bytes_append(&b, " ", 1) < 0 || quote(&b, url, strlen(url)) < 0)
        goto fail;
    free(url);
    return b.p;
fail:
    free(url);
    bytes_free(&b);
    return NULL;
}
