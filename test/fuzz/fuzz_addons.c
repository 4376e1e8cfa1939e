/* fuzz_addons.c — the parsers of addons.c's inputs on arbitrary bytes: the
 * first byte picks config.yaml text, a "[/filter]/regex/replacement" spec
 * (with its regex and template compiled and applied), or Set-Cookie lines
 * from a server (untrusted) fed to stickycookie.  No crash, leak or hang. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "addons.h"
#include "config.h"
#include "spec.h"

static int cb(void *ud, const char *key, char **vals, size_t n, bool is_list, char *err, size_t errsz)
{
    (void)ud, (void)key, (void)vals, (void)n, (void)is_list, (void)err, (void)errsz;
    return 0;
}

static void fuzz_spec(const char *s)
{
    spec sp;
    char err[512];
    size_t at;
    if (spec_parse("fuzz", s, &sp, err, sizeof err) < 0)
        return;
    bytes subj = {0}, repl = {0}, out = {0};
    if (spec_unescape(sp.subject, strlen(sp.subject), &subj, &at, err, sizeof err) == 0 &&
        spec_unescape(sp.replacement, strlen(sp.replacement), &repl, &at, err, sizeof err) == 0) {
        spec_regex *re = spec_regex_compile(subj.p, subj.len, SPEC_RX_DOTALL, &at, err, sizeof err);
        spec_template *t = re ? spec_template_compile(re, repl.p, repl.len, false, &at, err, sizeof err) : NULL;
        if (t)
            spec_sub(re, t, s, strlen(s), &out);
        spec_template_free(t);
        spec_regex_free(re);
    }
    bytes_free(&subj);
    bytes_free(&repl);
    bytes_free(&out);
    spec_free(&sp);
}

static flow *mkflow(void)
{
    flow *f = flow_new();
    f->request = flow_request_new();
    f->request->method = strdup("GET");
    f->request->scheme = strdup("http");
    f->request->host = strdup("www.a.test");
    f->request->port = 80;
    f->request->path = strdup("/p/q");
    return f;
}

static void fuzz_cookies(const char *s)
{
    static addons *a;
    if (!a) {
        opts o;
        char err[256];
        opts_defaults(&o);
        o.stickycookie = strdup(".");
        a = addons_new(&o, err, sizeof err);
        opts_free(&o);
        if (!a)
            abort();
    }
    flow *f = mkflow();
    f->response = flow_response_new();
    for (const char *p = s; *p;) {
        size_t n = strcspn(p, "\n");
        hdrs_add(&f->response->headers, "Set-Cookie", 10, p, n);
        p += n + (p[n] == '\n');
    }
    addons_response(a, f);
    flow_free(f);
    f = mkflow();
    addons_request(a, f);
    flow_free(f);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1 || size > 65536)
        return 0;
    char *s = malloc(size);
    memcpy(s, data + 1, size - 1);
    s[size - 1] = '\0';
    char err[512];
    switch (data[0] % 3) {
    case 0: config_parse(s, "fuzz.yaml", cb, NULL, err, sizeof err); break;
    case 1: fuzz_spec(s); break;
    default: fuzz_cookies(s); break;
    }
    free(s);
    return 0;
}
