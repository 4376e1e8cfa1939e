/* Unit tests for the mitm.it onboarding app: the page, the certificate
 * downloads with their headers, 404s, and that the CA key is unreachable
 * whatever the path says. */
#include "onboard.h"
#include "t.h"

#include <stdio.h>
#include <sys/stat.h>
#include <unistd.h>

#define KEY_MARK "KEY-FILE-SECRET"

static char confdir[256];

static void write_file(const char *name, const char *text)
{
    char fn[512];
    snprintf(fn, sizeof fn, "%s/%s", confdir, name);
    FILE *f = fopen(fn, "wb");
    if (!f) {
        perror(fn);
        exit(2);
    }
    fputs(text, f);
    fclose(f);
}

static void remove_file(const char *name)
{
    char fn[512];
    snprintf(fn, sizeof fn, "%s/%s", confdir, name);
    unlink(fn);
}

static const char pem_body[] =
    "-----BEGIN CERTIFICATE-----\nCERT-PEM-BODY\n-----END CERTIFICATE-----\n";
static const char cer_body[] =
    "-----BEGIN CERTIFICATE-----\nCERT-CER-BODY\n-----END CERTIFICATE-----\n";
/* binary, with a NUL inside, as a real PKCS#12 file has */
static const char p12_body[] = "\x30\x82\x00P12-BODY";
#define P12_LEN (sizeof p12_body - 1)

static void setup(void)
{
    snprintf(confdir, sizeof confdir, "/tmp/mitmlua-test-onboard-XXXXXX");
    if (!mkdtemp(confdir)) {
        perror("mkdtemp");
        exit(2);
    }
    write_file("mitmlua-ca.pem", "-----BEGIN PRIVATE KEY-----\n" KEY_MARK
                                 "\n-----END PRIVATE KEY-----\n");
    write_file("mitmlua-ca-cert.pem", pem_body);
    write_file("mitmlua-ca-cert.cer", cer_body);
    char fn[512];
    snprintf(fn, sizeof fn, "%s/mitmlua-ca-cert.p12", confdir);
    FILE *f = fopen(fn, "wb");
    fwrite(p12_body, 1, P12_LEN, f);
    fclose(f);
}

static void teardown(void)
{
    remove_file("mitmlua-ca.pem");
    remove_file("mitmlua-ca-cert.pem");
    remove_file("mitmlua-ca-cert.cer");
    remove_file("mitmlua-ca-cert.p12");
    rmdir(confdir);
}

static flow_response *get(const char *path)
{
    flow_response *r = NULL;
    char err[256] = "";
    if (onboard_handle(confdir, path, &r, err, sizeof err) < 0 || !r) {
        fprintf(stderr, "  onboard_handle(%s): %s\n", path, err);
        return NULL;
    }
    return r;
}

static const char *hdr(flow_response *r, const char *name)
{
    return hdrs_get(&r->headers, name, NULL);
}

/* the headers and body agree, and the key never shows up */
static void check_common(flow_response *r)
{
    char len[32];
    snprintf(len, sizeof len, "%zu", r->content.len);
    T_STREQ(hdr(r, "Content-Length"), len);
    T_CHECK(hdrs_find(&r->headers, "Content-Length", 0) >= 0 &&
            hdrs_find(&r->headers, "Content-Length",
                      (size_t)hdrs_find(&r->headers, "Content-Length", 0) + 1) < 0);
    T_CHECK(hdr(r, "Content-Type") != NULL);
    T_STREQ(r->http_version, "HTTP/1.1");
    T_STREQ(hdr(r, "Cache-Control"), "no-store");
    T_STREQ(hdr(r, "X-Content-Type-Options"), "nosniff");
    T_CHECK(!r->content.p || !memmem(r->content.p, r->content.len, KEY_MARK, strlen(KEY_MARK)));
    T_CHECK(!r->content.p || !memmem(r->content.p, r->content.len, "PRIVATE KEY", 11));
}

static void index_page(void)
{
    const char *paths[] = {"/", "/?utm=1", "", NULL, "/#top"};
    for (size_t i = 0; i < sizeof paths / sizeof paths[0]; i++) {
        flow_response *r = get(paths[i]);
        T_CHECK(r != NULL);
        if (!r)
            continue;
        T_CHECK(r->status_code == 200);
        T_STREQ(r->reason, "OK");
        T_STREQ(hdr(r, "Content-Type"), "text/html; charset=utf-8");
        T_CHECK(hdr(r, "Content-Disposition") == NULL);
        check_common(r);
        const char *b = r->content.p;
        T_CHECK(b && strncmp(b, "<!DOCTYPE html>", 15) == 0);
        T_CHECK(b && strstr(b, "</html>\n") == b + r->content.len - 8);
        /* what the page must teach */
        const char *musts[] = {
            "mitmlua", "href=\"/cert/pem\"", "href=\"/cert/p12\"", "href=\"/cert/cer\"",
            "/usr/local/share/ca-certificates/mitmlua.crt", "update-ca-certificates",
            "--cacert", "Firefox", "Chrom", "macOS", "Windows",
            "REQUESTS_CA_BUNDLE", "SSL_CERT_FILE", "NODE_EXTRA_CA_CERTS",
        };
        for (size_t k = 0; b && k < sizeof musts / sizeof musts[0]; k++)
            if (!strstr(b, musts[k])) {
                fprintf(stderr, "  index page lacks \"%s\"\n", musts[k]);
                t_cur_failed = 1;
            }
        flow_response_free(r);
    }
}

static void check_cert(const char *path, const char *type, const char *file,
                       const void *body, size_t n)
{
    flow_response *r = get(path);
    T_CHECK(r != NULL);
    if (!r)
        return;
    T_CHECK(r->status_code == 200);
    T_STREQ(hdr(r, "Content-Type"), type);
    char disp[128];
    snprintf(disp, sizeof disp, "attachment; filename=\"%s\"", file);
    T_STREQ(hdr(r, "Content-Disposition"), disp);
    T_CHECK(r->content.len == n && memcmp(r->content.p, body, n) == 0);
    check_common(r);
    flow_response_free(r);
}

static void cert_downloads(void)
{
    check_cert("/cert/pem", "application/x-x509-ca-cert", "mitmlua-ca-cert.pem", pem_body,
               strlen(pem_body));
    check_cert("/cert/cer", "application/x-x509-ca-cert", "mitmlua-ca-cert.cer", cer_body,
               strlen(cer_body));
    check_cert("/cert/p12", "application/x-pkcs12", "mitmlua-ca-cert.p12", p12_body, P12_LEN);
    /* a query string does not change what is served */
    check_cert("/cert/pem?x", "application/x-x509-ca-cert", "mitmlua-ca-cert.pem", pem_body,
               strlen(pem_body));
    check_cert("/cert/p12?download=1&x=../../mitmlua-ca.pem", "application/x-pkcs12",
               "mitmlua-ca-cert.p12", p12_body, P12_LEN);
}

static void not_found(void)
{
    const char *paths[] = {
        "/cert/../../mitmlua-ca.pem", "/cert/../mitmlua-ca.pem", "/mitmlua-ca.pem",
        "/cert/key", "/cert/ca", "/cert/pem/", "/cert/PEM", "/cert//pem", "/cert/%70em",
        "/cert/pem%00", "/cert/pem/../../../mitmlua-ca.pem", "//cert/pem", "/cert",
        "/cert/", "/index.html", "/../mitmlua-ca.pem", "/cert/mitmlua-ca.pem",
        "/cert/pem\\..\\..\\mitmlua-ca.pem", "cert/pem", "/cert/pe", "/cert/pemx",
    };
    for (size_t i = 0; i < sizeof paths / sizeof paths[0]; i++) {
        flow_response *r = get(paths[i]);
        T_CHECK(r != NULL);
        if (!r)
            continue;
        if (r->status_code != 404) {
            fprintf(stderr, "  %s: status %d\n", paths[i], r->status_code);
            t_cur_failed = 1;
        }
        T_STREQ(r->reason, "Not Found");
        T_STREQ(hdr(r, "Content-Type"), "text/html; charset=utf-8");
        T_CHECK(r->content.p && strstr(r->content.p, "404 Not Found") != NULL);
        check_common(r);
        flow_response_free(r);
    }
}

static void missing_or_bad_files(void)
{
    /* a certificate the tls module has not written yet: a 500, not a crash */
    remove_file("mitmlua-ca-cert.cer");
    flow_response *r = get("/cert/cer");
    T_CHECK(r && r->status_code == 500);
    if (r) {
        check_common(r);
        flow_response_free(r);
    }
    /* a "certificate" that holds the key (a mistake or a symlink to the
     * key file) is refused */
    char target[512], link[512];
    snprintf(target, sizeof target, "%s/mitmlua-ca.pem", confdir);
    snprintf(link, sizeof link, "%s/mitmlua-ca-cert.cer", confdir);
    T_CHECK(symlink(target, link) == 0);
    r = get("/cert/cer");
    T_CHECK(r && r->status_code == 500);
    if (r) {
        check_common(r);
        flow_response_free(r);
    }
    remove_file("mitmlua-ca-cert.cer");
    /* a directory under the name */
    T_CHECK(mkdir(link, 0700) == 0);
    r = get("/cert/cer");
    T_CHECK(r && r->status_code == 500);
    flow_response_free(r);
    rmdir(link);
    write_file("mitmlua-ca-cert.cer", cer_body);
    /* no confdir at all */
    char err[64];
    r = NULL;
    T_CHECK(onboard_handle(NULL, "/cert/pem", &r, err, sizeof err) == 0);
    T_CHECK(r && r->status_code == 500);
    flow_response_free(r);
}

static void host_match(void)
{
    T_CHECK(onboard_is_host(NULL, "mitm.it"));
    T_CHECK(onboard_is_host(NULL, "MITM.IT"));
    T_CHECK(onboard_is_host(NULL, "mitm.it."));
    T_CHECK(!onboard_is_host(NULL, "mitm.it.evil.com"));
    T_CHECK(!onboard_is_host(NULL, "xmitm.it"));
    T_CHECK(!onboard_is_host(NULL, "mitm.i"));
    T_CHECK(!onboard_is_host(NULL, ""));
    T_CHECK(!onboard_is_host(NULL, NULL));
    T_CHECK(onboard_is_host("certs.test", "CERTS.test."));
    T_CHECK(!onboard_is_host("certs.test", "mitm.it"));
}

int main(void)
{
    setup();
    T_RUN(index_page);
    T_RUN(cert_downloads);
    T_RUN(not_found);
    T_RUN(missing_or_bad_files);
    T_RUN(host_match);
    teardown();
    T_DONE();
}
