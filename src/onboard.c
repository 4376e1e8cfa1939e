/* onboard.c — http://mitm.it/: a static page on trusting the mitmlua CA and
 * downloads of the certificate files.  Request paths select entries in a
 * fixed table; they are never turned into file names, which is what keeps
 * the CA key (mitmlua-ca.pem, same directory) out of reach. */
#include "onboard.h"
#include "log.h"

#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <unistd.h>

/* A CA certificate is a few KB; anything far larger is not one. */
#define ONBOARD_MAX_FILE ((size_t)1 << 20)

static const char onboard_index_html[] =
    "<!DOCTYPE html>\n"
    "<html lang=\"en\">\n"
    "<head>\n"
    "<meta charset=\"utf-8\">\n"
    "<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n"
    "<title>mitmlua: install the CA certificate</title>\n"
    "<style>\n"
    "body{font-family:system-ui,sans-serif;max-width:46em;margin:2em auto;padding:0 1em;"
    "line-height:1.45;color:#222}\n"
    "code,pre{font-family:ui-monospace,monospace;background:#f3f3f3}\n"
    "pre{padding:.6em;overflow-x:auto}\n"
    ".dl a{display:inline-block;margin:0 .6em .6em 0;padding:.4em .9em;border:1px solid #357;"
    "border-radius:4px;text-decoration:none}\n"
    ".warn{border-left:4px solid #c60;padding-left:.8em}\n"
    "</style>\n"
    "</head>\n"
    "<body>\n"
    "<h1>mitmlua</h1>\n"
    "<p>If you can read this page, your traffic goes through <b>mitmlua</b>, an intercepting\n"
    "HTTP(S) proxy scripted in Lua. To let it decrypt HTTPS, the client must trust mitmlua's\n"
    "certificate authority (CA). The CA was created on the proxy's first start in its\n"
    "configuration directory (<code>~/.mitmlua</code> unless <code>--confdir</code> says\n"
    "otherwise); the files below come from there.</p>\n"
    "<p class=\"dl\">\n"
    "<a href=\"/cert/pem\" download>mitmlua-ca-cert.pem</a>\n"
    "<a href=\"/cert/p12\" download>mitmlua-ca-cert.p12</a>\n"
    "<a href=\"/cert/cer\" download>mitmlua-ca-cert.cer</a>\n"
    "</p>\n"
    "<p class=\"warn\">Trust this CA only on machines and browsers you use for testing.\n"
    "Whoever holds its private key (<code>mitmlua-ca.pem</code>, which never leaves the\n"
    "confdir and is not served here) can impersonate any website to you. Remove the\n"
    "certificate when you are done.</p>\n"
    "\n"
    "<h2>Linux (system store)</h2>\n"
    "<p>Debian, Ubuntu:</p>\n"
    "<pre>sudo cp mitmlua-ca-cert.pem /usr/local/share/ca-certificates/mitmlua.crt\n"
    "sudo update-ca-certificates</pre>\n"
    "<p>Fedora, RHEL:</p>\n"
    "<pre>sudo cp mitmlua-ca-cert.pem /etc/pki/ca-trust/source/anchors/mitmlua.pem\n"
    "sudo update-ca-trust</pre>\n"
    "<p>To remove it on Debian/Ubuntu: delete the file and run\n"
    "<code>sudo update-ca-certificates --fresh</code>.</p>\n"
    "\n"
    "<h2>curl</h2>\n"
    "<p>Without touching the system store:</p>\n"
    "<pre>curl --proxy http://127.0.0.1:8080 --cacert ~/.mitmlua/mitmlua-ca-cert.pem https://example.com/</pre>\n"
    "\n"
    "<h2>Firefox</h2>\n"
    "<p>Firefox keeps its own store. Settings &rarr; Privacy &amp; Security &rarr; Certificates\n"
    "&rarr; View Certificates &rarr; Authorities &rarr; Import, choose\n"
    "<code>mitmlua-ca-cert.pem</code> and tick <i>Trust this CA to identify websites</i>.</p>\n"
    "\n"
    "<h2>Chrome and Chromium</h2>\n"
    "<p>On Linux: Settings &rarr; Privacy and security &rarr; Security &rarr; Manage\n"
    "certificates &rarr; Authorities &rarr; Import. Or from a shell (package\n"
    "<code>libnss3-tools</code>):</p>\n"
    "<pre>certutil -d sql:$HOME/.pki/nssdb -A -t C,, -n mitmlua -i mitmlua-ca-cert.pem</pre>\n"
    "<p>On macOS and Windows Chrome uses the system store: follow the steps below.</p>\n"
    "\n"
    "<h2>macOS</h2>\n"
    "<pre>sudo security add-trusted-cert -d -r trustRoot -k /Library/Keychains/System.keychain mitmlua-ca-cert.pem</pre>\n"
    "<p>Or open the file in Keychain Access, then set <i>When using this certificate</i>\n"
    "to <i>Always Trust</i>.</p>\n"
    "\n"
    "<h2>Windows</h2>\n"
    "<p>Open <code>mitmlua-ca-cert.p12</code> (password empty), choose <i>Local Machine</i>\n"
    "and place it in <i>Trusted Root Certification Authorities</i>. Or, as administrator:</p>\n"
    "<pre>certutil -addstore root mitmlua-ca-cert.cer</pre>\n"
    "\n"
    "<h2>Python</h2>\n"
    "<p>requests ignores the system store; the standard library's <code>ssl</code> reads\n"
    "<code>SSL_CERT_FILE</code>. Both variables replace the default bundle:</p>\n"
    "<pre>export REQUESTS_CA_BUNDLE=~/.mitmlua/mitmlua-ca-cert.pem\n"
    "export SSL_CERT_FILE=~/.mitmlua/mitmlua-ca-cert.pem</pre>\n"
    "\n"
    "<h2>Node.js</h2>\n"
    "<p>Adds the CA to Node's built-in list:</p>\n"
    "<pre>export NODE_EXTRA_CA_CERTS=~/.mitmlua/mitmlua-ca-cert.pem</pre>\n"
    "</body>\n"
    "</html>\n";

static const char onboard_404_html[] =
    "<!DOCTYPE html>\n"
    "<html lang=\"en\">\n"
    "<head><meta charset=\"utf-8\"><title>404 Not Found</title></head>\n"
    "<body>\n"
    "<h1>404 Not Found</h1>\n"
    "<p>mitmlua's onboarding app serves <a href=\"/\">its start page</a>,\n"
    "<code>/cert/pem</code>, <code>/cert/p12</code> and <code>/cert/cer</code>.</p>\n"
    "</body>\n"
    "</html>\n";

static const char onboard_500_html[] =
    "<!DOCTYPE html>\n"
    "<html lang=\"en\">\n"
    "<head><meta charset=\"utf-8\"><title>500 Internal Server Error</title></head>\n"
    "<body>\n"
    "<h1>500 Internal Server Error</h1>\n"
    "<p>The CA certificate file could not be read from mitmlua's configuration\n"
    "directory. The proxy's log says why.</p>\n"
    "</body>\n"
    "</html>\n";

typedef struct onboard_cert {
    const char *path;     /* request path, exact */
    const char *file;     /* name in the confdir */
    const char *type;     /* Content-Type */
    int pem;              /* text file: must hold no private key */
} onboard_cert;

/* The only files this module ever opens. */
static const onboard_cert onboard_certs[] = {
    {"/cert/pem", "mitmlua-ca-cert.pem", "application/x-x509-ca-cert", 1},
    {"/cert/p12", "mitmlua-ca-cert.p12", "application/x-pkcs12", 0},
    /* mitmlua's .cer holds the same PEM text as .pem (as mitmproxy's) */
    {"/cert/cer", "mitmlua-ca-cert.cer", "application/x-x509-ca-cert", 1},
};

static void onboard_err(char *err, size_t errsz, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static void onboard_err(char *err, size_t errsz, const char *fmt, ...)
{
    if (!err || !errsz)
        return;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err, errsz, fmt, ap);
    va_end(ap);
}

bool onboard_is_host(const char *app_host, const char *host)
{
    if (!host)
        return false;
    if (!app_host)
        app_host = ONBOARD_HOST;
    size_t n = strlen(host);
    if (n && host[n - 1] == '.')
        n--;
    return n && n == strlen(app_host) && strncasecmp(host, app_host, n) == 0;
}

static int onboard_hdr(flow_response *r, const char *name, const char *value)
{
    return hdrs_add(&r->headers, name, strlen(name), value, strlen(value));
}

/* Fill status, headers and body.  The security headers matter because the
 * page is served on a plain-http origin that the client's user trusts. */
static int onboard_build(flow_response *r, int status, const char *reason,
                         const char *type, const char *filename, const void *body,
                         size_t n)
{
    char len[32];
    snprintf(len, sizeof len, "%zu", n);
    if (flow_strset(&r->reason, reason) < 0 || flow_strset(&r->http_version, "HTTP/1.1") < 0)
        return -1;
    r->status_code = status;
    if (onboard_hdr(r, "Content-Type", type) < 0 || onboard_hdr(r, "Content-Length", len) < 0)
        return -1;
    if (filename) {
        char disp[128];
        snprintf(disp, sizeof disp, "attachment; filename=\"%s\"", filename);
        if (onboard_hdr(r, "Content-Disposition", disp) < 0)
            return -1;
    }
    /* the CA can be regenerated: never let a stale copy be installed */
    if (onboard_hdr(r, "Cache-Control", "no-store") < 0 ||
        onboard_hdr(r, "X-Content-Type-Options", "nosniff") < 0 ||
        onboard_hdr(r, "Content-Security-Policy",
                    "default-src 'none'; style-src 'unsafe-inline'; frame-ancestors 'none'") < 0 ||
        onboard_hdr(r, "Referrer-Policy", "no-referrer") < 0)
        return -1;
    if (bytes_set(&r->content, body, n) < 0)
        return -1;
    r->timestamp_start = r->timestamp_end = flow_now();
    return 0;
}

/* Read a certificate file.  0, -1 when it cannot be served (a 500), -2 on
 * out of memory. */
static int onboard_read(const char *confdir, const onboard_cert *c, bytes *body)
{
    char fn[4096];
    int k = snprintf(fn, sizeof fn, "%s/%s", confdir, c->file);
    if (k < 0 || (size_t)k >= sizeof fn) {
        log_warn("onboarding: confdir path too long");
        return -1;
    }
    /* O_NONBLOCK: a FIFO planted under that name must not hang a worker */
    int fd = open(fn, O_RDONLY | O_CLOEXEC | O_NONBLOCK);
    if (fd < 0) {
        log_warn("onboarding: cannot open %s: %s", fn, strerror(errno));
        return -1;
    }
    int rc = -1;
    const char *why = "read error";
    struct stat st;
    if (fstat(fd, &st) < 0 || !S_ISREG(st.st_mode)) {
        why = "not a regular file";
        goto out;
    }
    if ((size_t)st.st_size > ONBOARD_MAX_FILE) {
        why = "too large for a certificate";
        goto out;
    }
    if (bytes_set(body, "", 0) < 0) {
        rc = -2;
        goto out;
    }
    char buf[8192];
    for (;;) {
        ssize_t got = read(fd, buf, sizeof buf);
        if (got < 0 && errno == EINTR)
            continue;
        if (got < 0)
            goto out;
        if (got == 0)
            break;
        if (body->len + (size_t)got > ONBOARD_MAX_FILE) {
            why = "too large for a certificate";
            goto out;
        }
        if (bytes_append(body, buf, (size_t)got) < 0) {
            rc = -2;
            goto out;
        }
    }
    /* Belt and braces: should the tls module ever write the key into a
     * certificate file (or a user symlink the key there), refuse to hand it
     * to whoever asks. */
    if (c->pem && body->len && memmem(body->p, body->len, "PRIVATE KEY", 11)) {
        why = "holds a private key, refusing to serve it";
        goto out;
    }
    rc = 0;
out:
    close(fd);
    if (rc == -1)
        log_warn("onboarding: cannot serve %s: %s", fn, why);
    if (rc < 0)
        bytes_reset(body);
    return rc;
}

int onboard_handle(const char *confdir, const char *path, flow_response **out,
                   char *err, size_t errsz)
{
    *out = NULL;
    flow_response *r = flow_response_new();
    bytes body = {0};
    if (!r)
        goto oom;

    /* match on the path without query or fragment; no percent-decoding,
     * no normalisation: only the exact table entries mean anything */
    const char *p = path && *path ? path : "/";
    size_t plen = strcspn(p, "?#");
    const onboard_cert *cert = NULL;
    for (size_t i = 0; i < sizeof onboard_certs / sizeof onboard_certs[0]; i++)
        if (strlen(onboard_certs[i].path) == plen &&
            memcmp(onboard_certs[i].path, p, plen) == 0)
            cert = &onboard_certs[i];

    int rc;
    if (plen == 1 && p[0] == '/') {
        rc = onboard_build(r, 200, "OK", "text/html; charset=utf-8", NULL,
                           onboard_index_html, sizeof onboard_index_html - 1);
    } else if (cert) {
        int rr = confdir ? onboard_read(confdir, cert, &body) : -1;
        if (rr == -2)
            goto oom;
        if (rr == 0)
            rc = onboard_build(r, 200, "OK", cert->type, cert->file, body.p, body.len);
        else
            rc = onboard_build(r, 500, "Internal Server Error", "text/html; charset=utf-8",
                               NULL, onboard_500_html, sizeof onboard_500_html - 1);
    } else {
        rc = onboard_build(r, 404, "Not Found", "text/html; charset=utf-8", NULL,
                           onboard_404_html, sizeof onboard_404_html - 1);
    }
    if (rc < 0)
        goto oom;
    bytes_free(&body);
    *out = r;
    return 0;
oom:
    onboard_err(err, errsz, "onboarding: out of memory");
    bytes_free(&body);
    flow_response_free(r);
    return -1;
}
