/* addons.c — mitmdump's everyday flow-changing options (anticache, anticomp,
 * block_list, map_remote, map_local, modify_body, modify_headers, stickyauth,
 * stickycookie) with mitmproxy 8's semantics, run before the Lua hooks.
 * Everything compiled here is read-only once workers run; the sticky
 * state is the one shared, locked part. */
#include "addons.h"

#include <ctype.h>
#include <errno.h>
#include <jansson.h>
#include <limits.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <time.h>

#include "encoding.h"
#include "filter.h"
#include "h1.h"
#include "log.h"
#include "spec.h"

/* ---- compiled options --------------------------------------------------- */

typedef struct url_rule {       /* map_remote */
    spec sp;
    spec_regex *re;
    spec_template *tpl;
} url_rule;

typedef struct local_rule {     /* map_local */
    spec sp;
    spec_regex *re;
    char *root;                 /* realpath of the file or directory */
    bool is_file;
} local_rule;

typedef struct header_rule {    /* modify_headers */
    spec sp;
    bytes name;
    bytes value;                /* unless from_file */
    char *file;                 /* "@path": read at each use, as mitmproxy */
} header_rule;

typedef struct block_rule {     /* block_list */
    filter *flt;
    int status;                 /* ADDONS_NO_RESPONSE: kill, answer nothing */
} block_rule;

/* mitmproxy's NO_RESPONSE: block_list's status that closes the connection */
#define ADDONS_NO_RESPONSE 444

typedef struct body_rule {      /* modify_body */
    spec sp;
    spec_regex *re;
    spec_template *tpl;         /* unless from file */
    char *file;
} body_rule;

/* Sticky cookies, grouped by origin (domain, port, path) in insertion
 * order, as mitmproxy's dict of dicts iterates them. */
typedef struct jar_cookie {
    char *name, *value;
} jar_cookie;

typedef struct jar_origin {
    char *domain, *path;
    uint16_t port;
    jar_cookie *c;
    size_t n;
} jar_origin;

typedef struct auth_entry {
    char *host, *value;
} auth_entry;

struct addons {
    bool anticache, anticomp, keep_host_header;
    url_rule *remote;
    size_t nremote;
    local_rule *local;
    size_t nlocal;
    header_rule *headers;
    size_t nheaders;
    body_rule *body;
    size_t nbody;
    block_rule *block;
    size_t nblock;
    filter *stickycookie, *stickyauth;
    /* shared by every worker: mitmproxy has one jar per process */
    pthread_mutex_t lock;
    jar_origin *jar;
    size_t njar;
    auth_entry *auth;
    size_t nauth;
};

static char *home_expand(const char *p)
{
    const char *home = getenv("HOME");
    if (p[0] == '~' && (p[1] == '/' || !p[1]) && home) {
        size_t n = strlen(home) + strlen(p);
        char *r = malloc(n);
        if (r)
            snprintf(r, n, "%s%s", home, p + 1);
        return r;
    }
    return strdup(p);
}

static int read_file(const char *path, bytes *out, char *err, size_t errsz)
{
    char *full = home_expand(path);
    FILE *fp = full ? fopen(full, "rb") : NULL;
    if (!fp) {
        snprintf(err, errsz, "cannot read %s: %s", path, full ? strerror(errno) : "out of memory");
        free(full);
        return -1;
    }
    free(full);
    bytes_reset(out);
    bytes_append(out, "", 0);
    char buf[65536];
    size_t n;
    while ((n = fread(buf, 1, sizeof buf, fp)) > 0)
        if (bytes_append(out, buf, n) < 0) {
            fclose(fp);
            snprintf(err, errsz, "out of memory");
            return -1;
        }
    bool bad = ferror(fp);
    fclose(fp);
    if (bad) {
        snprintf(err, errsz, "cannot read %s", path);
        return -1;
    }
    return 0;
}

/* err for a problem in part of a spec, pointing at its column */
static void spec_err(char *err, size_t errsz, const char *opt, const char *text, size_t at, const char *why)
{
    snprintf(err, errsz, "%s: invalid spec '%s' at column %zu: %s", opt, text, at + 1, why);
}

static int compile_remote(url_rule *r, const char *text, char *err, size_t errsz)
{
    char why[300];
    size_t at;
    if (spec_parse("map_remote", text, &r->sp, err, errsz) < 0)
        return -1;
    r->re = spec_regex_compile(r->sp.subject, strlen(r->sp.subject), SPEC_RX_TEXT, &at, why, sizeof why);
    if (!r->re) {
        spec_err(err, errsz, "map_remote", text, r->sp.subject_at + at, why);
        return -1;
    }
    r->tpl = spec_template_compile(r->re, r->sp.replacement, strlen(r->sp.replacement), false, &at, why,
                                   sizeof why);
    if (!r->tpl) {
        spec_err(err, errsz, "map_remote", text, r->sp.replacement_at + at, why);
        return -1;
    }
    return 0;
}

static int compile_local(local_rule *r, const char *text, char *err, size_t errsz)
{
    char why[300];
    size_t at;
    if (spec_parse("map_local", text, &r->sp, err, errsz) < 0)
        return -1;
    r->re = spec_regex_compile(r->sp.subject, strlen(r->sp.subject), SPEC_RX_TEXT, &at, why, sizeof why);
    if (!r->re) {
        spec_err(err, errsz, "map_local", text, r->sp.subject_at + at, why);
        return -1;
    }
    char *p = home_expand(r->sp.replacement);
    r->root = p ? realpath(p, NULL) : NULL;
    struct stat st;
    if (!r->root || stat(r->root, &st) < 0) {
        snprintf(why, sizeof why, "invalid file path %s (%s)", r->sp.replacement,
                 p ? strerror(errno) : "out of memory");
        free(p);
        spec_err(err, errsz, "map_local", text, r->sp.replacement_at, why);
        return -1;
    }
    free(p);
    r->is_file = S_ISREG(st.st_mode);
    return 0;
}

/* modify_headers and modify_body share the parsing of their replacement:
 * "@path" names a file (checked now, read at each use), anything else is
 * an escaped byte string. */
static int compile_replacement(const char *opt, const char *text, spec *sp, char **file, bytes *value,
                               char *err, size_t errsz)
{
    char why[300];
    size_t at = 0;
    if (sp->replacement[0] == '@') {
        bytes tmp = {0};
        if (read_file(sp->replacement + 1, &tmp, why, sizeof why) < 0) {
            spec_err(err, errsz, opt, text, sp->replacement_at, why);
            return -1;
        }
        bytes_free(&tmp);
        if (!(*file = strdup(sp->replacement + 1))) {
            snprintf(err, errsz, "out of memory");
            return -1;
        }
        return 0;
    }
    if (spec_unescape(sp->replacement, strlen(sp->replacement), value, &at, why, sizeof why) < 0) {
        spec_err(err, errsz, opt, text, sp->replacement_at + at, why);
        return -1;
    }
    return 0;
}

static int compile_header(header_rule *r, const char *text, char *err, size_t errsz)
{
    char why[300];
    size_t at = 0;
    if (spec_parse("modify_headers", text, &r->sp, err, errsz) < 0)
        return -1;
    if (spec_unescape(r->sp.subject, strlen(r->sp.subject), &r->name, &at, why, sizeof why) < 0) {
        spec_err(err, errsz, "modify_headers", text, r->sp.subject_at + at, why);
        return -1;
    }
    if (r->name.len == 0) {
        spec_err(err, errsz, "modify_headers", text, r->sp.subject_at, "empty header name");
        return -1;
    }
    return compile_replacement("modify_headers", text, &r->sp, &r->file, &r->value, err, errsz);
}

static int compile_body(body_rule *r, const char *text, char *err, size_t errsz)
{
    char why[300];
    size_t at = 0;
    bytes subj = {0}, repl = {0};
    int rc = -1;
    if (spec_parse("modify_body", text, &r->sp, err, errsz) < 0)
        return -1;
    if (spec_unescape(r->sp.subject, strlen(r->sp.subject), &subj, &at, why, sizeof why) < 0) {
        spec_err(err, errsz, "modify_body", text, r->sp.subject_at + at, why);
        goto out;
    }
    /* mitmproxy matches bytes with re.DOTALL */
    r->re = spec_regex_compile(subj.p, subj.len, SPEC_RX_DOTALL, &at, why, sizeof why);
    if (!r->re) {
        spec_err(err, errsz, "modify_body", text, r->sp.subject_at + at, why);
        goto out;
    }
    if (compile_replacement("modify_body", text, &r->sp, &r->file, &repl, err, errsz) < 0)
        goto out;
    if (!r->file) {
        r->tpl = spec_template_compile(r->re, repl.p, repl.len, false, &at, why, sizeof why);
        if (!r->tpl) {
            spec_err(err, errsz, "modify_body", text, r->sp.replacement_at, why);
            goto out;
        }
    }
    rc = 0;
out:
    bytes_free(&subj);
    bytes_free(&repl);
    return rc;
}

static filter *compile_filter(const char *opt, const char *expr, char *err, size_t errsz)
{
    char ferr[400];
    filter *f = filter_compile(expr, ferr, sizeof ferr);
    if (!f)
        snprintf(err, errsz, "%s: invalid filter '%s': %s", opt, expr, ferr);
    return f;
}

/* block_list: "/flow-filter/status-code", any separator character, exactly
 * two parts (mitmproxy's parse_spec). */
static int compile_block(block_rule *r, const char *text, char *err, size_t errsz)
{
    const char *rem = text[0] ? text + 1 : text, *sep = text[0] ? strchr(rem, text[0]) : NULL;
    if (!sep || strchr(sep + 1, text[0])) {
        snprintf(err, errsz, "block_list: invalid spec '%s': expected /flow-filter/status-code", text);
        return -1;
    }
    char *end;
    long st = strtol(sep + 1, &end, 10);
    if (!isdigit((unsigned char)sep[1]) || *end || st < 100 || st > 999) {
        snprintf(err, errsz, "block_list: invalid spec '%s': invalid HTTP status code: %s", text, sep + 1);
        return -1;
    }
    r->status = (int)st;
    char *expr = strndup(rem, (size_t)(sep - rem));
    if (!expr) {
        snprintf(err, errsz, "out of memory");
        return -1;
    }
    char ferr[400];
    if (!(r->flt = filter_compile(expr, ferr, sizeof ferr)))
        snprintf(err, errsz, "block_list: invalid spec '%s': invalid filter '%s': %s", text, expr, ferr);
    free(expr);
    return r->flt ? 0 : -1;
}

#define COMPILE_LIST(field, nfield, src, nsrc, fn)                  \
    do {                                                            \
        if (nsrc) {                                                 \
            a->field = calloc(nsrc, sizeof *a->field);              \
            if (!a->field)                                          \
                goto nomem;                                         \
            for (size_t i_ = 0; i_ < nsrc; i_++) {                  \
                a->nfield = i_ + 1;                                 \
                if (fn(&a->field[i_], src[i_], err, errsz) < 0)     \
                    goto fail;                                      \
            }                                                       \
        }                                                           \
    } while (0)

addons *addons_new(const opts *o, char *err, size_t errsz)
{
    err[0] = '\0';
    if (!o->anticache && !o->anticomp && !o->nmap_remote && !o->nmap_local && !o->nmodify_headers &&
        !o->nmodify_body && !o->stickycookie && !o->stickyauth && !o->nblock_list)
        return NULL;
    addons *a = calloc(1, sizeof *a);
    if (!a)
        goto nomem;
    pthread_mutex_init(&a->lock, NULL);
    a->anticache = o->anticache;
    a->anticomp = o->anticomp;
    a->keep_host_header = o->keep_host_header;
    COMPILE_LIST(remote, nremote, o->map_remote, o->nmap_remote, compile_remote);
    COMPILE_LIST(local, nlocal, o->map_local, o->nmap_local, compile_local);
    COMPILE_LIST(headers, nheaders, o->modify_headers, o->nmodify_headers, compile_header);
    COMPILE_LIST(body, nbody, o->modify_body, o->nmodify_body, compile_body);
    COMPILE_LIST(block, nblock, o->block_list, o->nblock_list, compile_block);
    if (o->stickycookie && !(a->stickycookie = compile_filter("stickycookie", o->stickycookie, err, errsz)))
        goto fail;
    if (o->stickyauth && !(a->stickyauth = compile_filter("stickyauth", o->stickyauth, err, errsz)))
        goto fail;
    return a;
nomem:
    snprintf(err, errsz, "out of memory");
fail:
    addons_free(a);
    return NULL;
}

void addons_free(addons *a)
{
    if (!a)
        return;
    for (size_t i = 0; i < a->nremote; i++) {
        spec_free(&a->remote[i].sp);
        spec_regex_free(a->remote[i].re);
        spec_template_free(a->remote[i].tpl);
    }
    for (size_t i = 0; i < a->nlocal; i++) {
        spec_free(&a->local[i].sp);
        spec_regex_free(a->local[i].re);
        free(a->local[i].root);
    }
    for (size_t i = 0; i < a->nheaders; i++) {
        spec_free(&a->headers[i].sp);
        bytes_free(&a->headers[i].name);
        bytes_free(&a->headers[i].value);
        free(a->headers[i].file);
    }
    for (size_t i = 0; i < a->nbody; i++) {
        spec_free(&a->body[i].sp);
        spec_regex_free(a->body[i].re);
        spec_template_free(a->body[i].tpl);
        free(a->body[i].file);
    }
    for (size_t i = 0; i < a->nblock; i++)
        filter_free(a->block[i].flt);
    free(a->block);
    free(a->remote);
    free(a->local);
    free(a->headers);
    free(a->body);
    filter_free(a->stickycookie);
    filter_free(a->stickyauth);
    for (size_t i = 0; i < a->njar; i++) {
        for (size_t j = 0; j < a->jar[i].n; j++) {
            free(a->jar[i].c[j].name);
            free(a->jar[i].c[j].value);
        }
        free(a->jar[i].c);
        free(a->jar[i].domain);
        free(a->jar[i].path);
    }
    free(a->jar);
    for (size_t i = 0; i < a->nauth; i++) {
        free(a->auth[i].host);
        free(a->auth[i].value);
    }
    free(a->auth);
    pthread_mutex_destroy(&a->lock);
    free(a);
}

/* A flow filter that could not answer is not applied, and says so. */
static bool addon_filter(const filter *flt, const char *what, const flow *f)
{
    char err[512];
    int m = filter_eval(flt, f, err, sizeof err);
    if (m < 0)
        log_error("%s: %s; not applied to flow %s", what, err, f->id);
    return m == 1;
}

static bool spec_matches(const spec *sp, const flow *f)
{
    return !sp->flt || addon_filter(sp->flt, "option filter", f);
}

/* ---- map_remote ----------------------------------------------------------- */

/* request.url = new_url: scheme, host, port and path from an absolute URL;
 * the Host header (and the authority, when the request had one) follow
 * unless keep_host_header.  -1 when the URL is not one we can send to. */
static int set_url(const addons *a, flow_request *r, const char *url)
{
    const char *p = strstr(url, "://");
    if (!p)
        return -1;
    size_t slen = (size_t)(p - url);
    bool https;
    if (slen == 4 && !strncasecmp(url, "http", 4))
        https = false;
    else if (slen == 5 && !strncasecmp(url, "https", 5))
        https = true;
    else
        return -1;
    const char *auth = p + 3;
    size_t alen = strcspn(auth, "/?#");
    const char *host = auth, *hend;
    size_t hlen;
    if (*auth == '[') {
        hend = memchr(auth, ']', alen);
        if (!hend)
            return -1;
        host = auth + 1;
        hlen = (size_t)(hend - host);
        hend++;
    } else {
        hend = memchr(auth, ':', alen);
        if (!hend)
            hend = auth + alen;
        hlen = (size_t)(hend - host);
    }
    if (hlen == 0)
        return -1;
    long port = https ? 443 : 80;
    if (hend < auth + alen) {
        if (*hend != ':')
            return -1;
        char *end;
        port = strtol(hend + 1, &end, 10);
        if (end != auth + alen || end == hend + 1 || port < 1 || port > 65535)
            return -1;
    }
    const char *rest = auth + alen;
    char *path;
    if (*rest == '/') {
        path = strdup(rest);
    } else {
        size_t n = strlen(rest) + 2;
        if ((path = malloc(n)))
            snprintf(path, n, "/%s", rest);
    }
    if (!path || flow_strnset(&r->host, host, hlen) < 0 || flow_strset(&r->scheme, https ? "https" : "http") < 0) {
        free(path);
        return -1;
    }
    free(r->path);
    r->path = path;
    r->port = (uint16_t)port;
    char val[320];
    flow_authority(r->scheme, r->host, (unsigned)port, val, sizeof val);
    if (r->authority && *r->authority)
        flow_strset(&r->authority, val);
    if (!a->keep_host_header && hdrs_get(&r->headers, "host", NULL))
        hdrs_set(&r->headers, "Host", val, strlen(val));
    return 0;
}

static void map_remote(addons *a, flow *f)
{
    for (size_t i = 0; i < a->nremote; i++) {
        url_rule *u = &a->remote[i];
        if (!spec_matches(&u->sp, f))
            continue;
        char *url = filter_pretty_url(f);
        bytes out = {0};
        long n = url ? spec_sub(u->re, u->tpl, url, strlen(url), &out) : -1;
        /* setting the URL also rewrites Host: only when the URL changed */
        if (n > 0 && strcmp(out.p, url) != 0 && set_url(a, f->request, out.p) < 0)
            log_warn("map_remote: cannot send to '%s' (expected http(s)://host[:port]/path); request unchanged",
                     out.p);
        free(url);
        bytes_free(&out);
    }
}

/* ---- map_local ------------------------------------------------------------ */

static const char *guess_type(const char *path)
{
    static const char *const types[][2] = {
        {"html", "text/html"}, {"htm", "text/html"}, {"css", "text/css"},
        {"js", "application/javascript"}, {"mjs", "application/javascript"},
        {"json", "application/json"}, {"txt", "text/plain"}, {"xml", "application/xml"},
        {"svg", "image/svg+xml"}, {"png", "image/png"}, {"jpg", "image/jpeg"},
        {"jpeg", "image/jpeg"}, {"gif", "image/gif"}, {"ico", "image/vnd.microsoft.icon"},
        {"webp", "image/webp"}, {"pdf", "application/pdf"}, {"wasm", "application/wasm"},
        {"woff", "font/woff"}, {"woff2", "font/woff2"}, {"csv", "text/csv"},
        {"mp4", "video/mp4"}, {"zip", "application/zip"}, {"gz", "application/gzip"},
    };
    const char *slash = strrchr(path, '/');
    const char *dot = strrchr(slash ? slash : path, '.');
    if (!dot)
        return NULL;
    for (size_t i = 0; i < sizeof types / sizeof types[0]; i++)
        if (!strcasecmp(dot + 1, types[i][0]))
            return types[i][1];
    return NULL;
}

static int unhex(int c)
{
    if (isdigit(c))
        return c - '0';
    c = tolower(c);
    return c >= 'a' && c <= 'f' ? c - 'a' + 10 : -1;
}

static char *percent_decode(const char *s, size_t n, size_t *outlen)
{
    char *out = malloc(n + 1), *o = out;
    if (!out)
        return NULL;
    for (size_t i = 0; i < n; i++) {
        int h, l;
        if (s[i] == '%' && i + 2 < n && (h = unhex((unsigned char)s[i + 1])) >= 0 &&
            (l = unhex((unsigned char)s[i + 2])) >= 0) {
            *o++ = (char)(h * 16 + l);
            i += 2;
        } else {
            *o++ = s[i];
        }
    }
    *o = '\0';
    *outlen = (size_t)(o - out);
    return out;
}

/* werkzeug's safe_join, plus what it leaves out: the joined path must stay
 * under the root once symlinks are resolved.  NULL when it would escape. */
static char *safe_join(const char *root, const char *rel)
{
    if (rel[0] == '/' || strchr(rel, '\\'))
        return NULL;
    for (const char *p = rel; *p;) {
        size_t n = strcspn(p, "/");
        if (n == 2 && p[0] == '.' && p[1] == '.')
            return NULL;
        p += n;
        while (*p == '/')
            p++;
    }
    size_t n = strlen(root) + strlen(rel) + 2;
    char *j = malloc(n);
    if (j)
        snprintf(j, n, "%s/%s", root, rel);
    return j;
}

/* the candidate is a regular file inside root (symlinks resolved) */
static bool is_file_under(const char *root, const char *cand)
{
    char *real = realpath(cand, NULL);
    struct stat st;
    size_t rl = strlen(root);
    bool ok = real && stat(real, &st) == 0 && S_ISREG(st.st_mode) && strncmp(real, root, rl) == 0 &&
              (real[rl] == '/' || (rl == 1 && root[0] == '/'));
    free(real);
    return ok;
}

typedef struct strv {
    char **v;
    size_t n;
} strv;

static void strv_push(strv *s, char *p)
{
    if (!p)
        return;
    char **nv = realloc(s->v, (s->n + 1) * sizeof *nv);
    if (!nv) {
        free(p);
        return;
    }
    s->v = nv;
    s->v[s->n++] = p;
}

static void strv_free(strv *s)
{
    for (size_t i = 0; i < s->n; i++)
        free(s->v[i]);
    free(s->v);
    s->v = NULL;
    s->n = 0;
}

/* mitmproxy's file_candidates: the part of the URL that names the file is
 * group 1, or what follows the match (without query and slashes).  -1 with
 * *why when the name is refused: "..", an absolute name, a backslash, an
 * encoded slash or backslash, a NUL (which would cut the name short:
 * "ok.txt%00.png" must not serve ok.txt).  A refused name is answered
 * without contacting the server. */
static int file_candidates(const local_rule *r, const char *url, strv *out, const char **why)
{
    const char *g1, *suffix;
    size_t g1_len, end, slen;
    if (!spec_regex_search(r->re, url, strlen(url), &g1, &g1_len, &end))
        return 0;
    if (spec_regex_groups(r->re) > 0) {
        suffix = g1;
        slen = g1 ? g1_len : 0;
    } else {
        suffix = url + end;
        slen = strcspn(suffix, "?");
        while (slen && *suffix == '/')
            suffix++, slen--;
        while (slen && suffix[slen - 1] == '/')
            slen--;
    }
    if (!suffix || slen == 0) {
        size_t n = strlen(r->root) + 12;
        char *p = malloc(n);
        if (p)
            snprintf(p, n, "%s/index.html", r->root);
        strv_push(out, p);
        return 0;
    }
    for (size_t i = 0; i + 2 < slen; i++)
        if (suffix[i] == '%' && (!strncasecmp(suffix + i, "%2f", 3) || !strncasecmp(suffix + i, "%5c", 3))) {
            *why = "an encoded slash or backslash";
            return -1;
        }
    size_t dlen;
    char *dec = percent_decode(suffix, slen, &dlen);
    if (!dec)
        return 0;
    if (memchr(dec, '\0', dlen) || memchr(suffix, '\0', slen)) {
        free(dec);
        *why = "a NUL byte";
        return -1;
    }
    char *esc = strdup(dec);
    if (!esc) {
        free(dec);
        return 0;
    }
    for (char *c = esc; *c; c++)
        if (!isalnum((unsigned char)*c) && !strchr("-_.=(),/", *c))
            *c = '_';
    const char *bases[2] = {dec, strcmp(dec, esc) ? esc : NULL};
    strv tmp = {0};
    bool unsafe = false;
    for (int b = 0; b < 2 && bases[b]; b++) {
        size_t n = strlen(bases[b]) + 12;
        char *idx = malloc(n);
        if (idx)
            snprintf(idx, n, "%s/index.html", bases[b]);
        const char *rels[2] = {bases[b], idx};
        for (int k = 0; k < 2; k++) {
            char *j = rels[k] ? safe_join(r->root, rels[k]) : NULL;
            if (!j)
                unsafe = true;
            strv_push(&tmp, j);
        }
        free(idx);
    }
    free(dec);
    free(esc);
    if (unsafe) {   /* one unsafe candidate voids them all, as mitmproxy */
        strv_free(&tmp);
        *why = "\"..\", an absolute name or a backslash";
        return -1;
    }
    for (size_t i = 0; i < tmp.n; i++)
        strv_push(out, tmp.v[i]);
    free(tmp.v);
    return 0;
}

static flow_response *make_response(int status, const char *reason)
{
    flow_response *resp = flow_response_new();
    if (!resp)
        return NULL;
    resp->status_code = status;
    resp->reason = strdup(reason);
    resp->http_version = strdup("HTTP/1.1");
    resp->timestamp_start = resp->timestamp_end = flow_now();
    char server[64];
    snprintf(server, sizeof server, "mitmlua %s", MITMLUA_VERSION);
    hdrs_add(&resp->headers, "Server", 6, server, strlen(server));
    bytes_append(&resp->content, "", 0);
    return resp;
}

static bool map_local(addons *a, flow *f)
{
    char *url = filter_pretty_url(f);
    if (!url)
        return false;
    strv all = {0};
    bool answered = false;
    for (size_t i = 0; i < a->nlocal && !answered; i++) {
        local_rule *r = &a->local[i];
        if (!spec_matches(&r->sp, f) || !spec_regex_search(r->re, url, strlen(url), NULL, NULL, NULL))
            continue;
        strv cands = {0};
        const char *why = NULL;
        if (r->is_file)
            strv_push(&cands, strdup(r->root));
        else if (file_candidates(r, url, &cands, &why) < 0) {
            /* mitmproxy sends such a request on to the server; the name
             * was meant for the local directory, so it stops here */
            log_warn("map_local: refused %s: the name has %s", url, why);
            if ((f->response = make_response(404, "Not Found")))
                hdrs_add(&f->response->headers, "content-length", 14, "0", 1);
            answered = f->response != NULL;
            strv_free(&cands);
            break;
        }
        for (size_t k = 0; k < cands.n && !answered; k++) {
            if (!r->is_file && !is_file_under(r->root, cands.v[k]))
                continue;
            bytes body = {0};
            char err[300];
            if (read_file(cands.v[k], &body, err, sizeof err) < 0) {
                log_warn("map_local: could not read file: %s", err);
                bytes_free(&body);
                break;   /* on to the next rule, as mitmproxy */
            }
            flow_response *resp = make_response(200, "OK");
            if (!resp) {
                bytes_free(&body);
                break;
            }
            const char *ct = guess_type(cands.v[k]);
            if (ct)
                hdrs_add(&resp->headers, "Content-Type", 12, ct, strlen(ct));
            bytes_free(&resp->content);
            resp->content = body;
            char cl[32];
            int cn = snprintf(cl, sizeof cl, "%zu", body.len);
            hdrs_add(&resp->headers, "content-length", 14, cl, (size_t)cn);
            f->response = resp;
            answered = true;
        }
        for (size_t k = 0; k < cands.n && !answered; k++)
            strv_push(&all, strdup(cands.v[k]));
        strv_free(&cands);
    }
    if (!answered && all.n) {
        f->response = make_response(404, "Not Found");
        if (f->response)
            hdrs_add(&f->response->headers, "content-length", 14, "0", 1);
        size_t len = 1;
        for (size_t i = 0; i < all.n; i++)
            len += strlen(all.v[i]) + 2;
        char *list = malloc(len);
        if (list) {
            list[0] = '\0';
            for (size_t i = 0; i < all.n; i++) {
                if (i)
                    strcat(list, ", ");
                strcat(list, all.v[i]);
            }
            log_info("None of the local file candidates exist: %s", list);
            free(list);
        }
        answered = f->response != NULL;
    }
    strv_free(&all);
    free(url);
    return answered;
}

/* ---- modify_body / modify_headers ------------------------------------------ */

/* re.sub over the decoded body; re-encoded and Content-Length kept true, as
 * mitmproxy's Message.content setter does. */
static void body_sub(body_rule *r, hdrs *h, bytes *raw)
{
    const char *ce = hdrs_get(h, "content-encoding", NULL);
    bytes dec = {0}, out = {0}, enc = {0}, repl = {0};
    spec_template *ftpl = NULL;
    char err[300];
    const bytes *src = raw;
    if (ce && *ce) {
        if (encoding_decode(ce, raw->p ? raw->p : "", raw->len, &dec, err, sizeof err) < 0) {
            log_warn("modify_body: cannot decode body (%s): unchanged", err);
            goto out;
        }
        src = &dec;
    }
    const spec_template *tpl = r->tpl;
    if (r->file) {
        /* read at each use, like mitmproxy; inserted as it is (mitmproxy
         * would read backslashes in it as a template: a file of JSON with
         * "\n" in it would then fail or change) */
        size_t at;
        if (read_file(r->file, &repl, err, sizeof err) < 0) {
            log_warn("modify_body: could not read replacement file: %s", err);
            goto out;
        }
        if (!(ftpl = spec_template_compile(r->re, repl.p, repl.len, true, &at, err, sizeof err)))
            goto out;
        tpl = ftpl;
    }
    long n = spec_sub(r->re, tpl, src->p ? src->p : "", src->len, &out);
    if (n <= 0)
        goto out;
    if (ce && *ce) {
        if (encoding_encode(ce, out.p, out.len, &enc, err, sizeof err) < 0) {
            log_warn("modify_body: cannot encode body (%s): unchanged", err);
            goto out;
        }
        bytes_free(raw);
        *raw = enc;
        enc = (bytes){0};
    } else {
        bytes_free(raw);
        *raw = out;
        out = (bytes){0};
    }
    if (!hdrs_has_token(h, "transfer-encoding", "chunked")) {
        char v[32];
        int vl = snprintf(v, sizeof v, "%zu", raw->len);
        hdrs_set(h, "Content-Length", v, (size_t)vl);
    }
out:
    spec_template_free(ftpl);
    bytes_free(&dec);
    bytes_free(&out);
    bytes_free(&enc);
    bytes_free(&repl);
}

static void modify_body(addons *a, flow *f)
{
    for (size_t i = 0; i < a->nbody; i++) {
        body_rule *r = &a->body[i];
        if (!spec_matches(&r->sp, f))
            continue;
        if (f->response)
            body_sub(r, &f->response->headers, &f->response->content);
        else
            body_sub(r, &f->request->headers, &f->request->content);
    }
}

/* Every filter is checked against the unmodified flow first; then matching
 * names are removed, then the non-empty values added (mitmproxy's order). */
static void modify_headers(addons *a, flow *f, hdrs *h)
{
    bool stack_m[32];
    bool *m = a->nheaders <= 32 ? stack_m : malloc(a->nheaders);
    if (!m)
        return;
    for (size_t i = 0; i < a->nheaders; i++)
        m[i] = spec_matches(&a->headers[i].sp, f);
    for (size_t i = 0; i < a->nheaders; i++)
        if (m[i])
            hdrs_remove(h, a->headers[i].name.p);
    for (size_t i = 0; i < a->nheaders; i++) {
        header_rule *r = &a->headers[i];
        if (!m[i])
            continue;
        bytes fv = {0};
        const bytes *v = &r->value;
        if (r->file) {
            char err[300];
            if (read_file(r->file, &fv, err, sizeof err) < 0) {
                log_warn("modify_headers: could not read replacement file: %s", err);
                bytes_free(&fv);
                continue;
            }
            v = &fv;
        }
        if (v->len)
            hdrs_add(h, r->name.p, r->name.len, v->p, v->len);
        bytes_free(&fv);
    }
    if (m != stack_m)
        free(m);
}

/* ---- stickyauth / stickycookie ---------------------------------------------- */

static void stickyauth(addons *a, flow *f)
{
    flow_request *r = f->request;
    const char *host = r->host ? r->host : "";
    size_t vlen;
    const char *v = hdrs_get(&r->headers, "authorization", &vlen);
    pthread_mutex_lock(&a->lock);
    size_t i;
    for (i = 0; i < a->nauth; i++)
        if (!strcmp(a->auth[i].host, host))
            break;
    if (v) {
        char *nv = strndup(v, vlen);
        if (nv && i < a->nauth) {
            free(a->auth[i].value);
            a->auth[i].value = nv;
        } else if (nv) {
            auth_entry *na = realloc(a->auth, (a->nauth + 1) * sizeof *na);
            char *nh = strdup(host);
            if (na && nh) {
                a->auth = na;
                a->auth[a->nauth++] = (auth_entry){nh, nv};
            } else {
                if (na)
                    a->auth = na;
                free(nh);
                free(nv);
            }
        }
    } else if (i < a->nauth && addon_filter(a->stickyauth, "stickyauth", f)) {
        hdrs_set(&r->headers, "authorization", a->auth[i].value, strlen(a->auth[i].value));
    }
    pthread_mutex_unlock(&a->lock);
}

/* http.cookiejar.domain_match, except that B must be a suffix of A (the
 * standard library only checks that B occurs in A after the start). */
static bool is_hdn(const char *s)
{
    size_t n = strlen(s);
    if (!n || s[0] == '.' || s[n - 1] == '.')
        return false;
    const char *dot = strrchr(s, '.');
    if (dot && dot[1]) {  /* "\.\d+$": an IP address */
        bool digits = true;
        for (const char *c = dot + 1; *c; c++)
            digits = digits && isdigit((unsigned char)*c);
        if (digits)
            return false;
    }
    return true;
}

static bool domain_match1(const char *A, const char *B)
{
    if (!strcasecmp(A, B))
        return true;
    if (!is_hdn(A) || B[0] != '.' || !is_hdn(B + 1))
        return false;
    size_t la = strlen(A), lb = strlen(B);
    return la > lb && !strcasecmp(A + la - lb, B);
}

static bool domain_match(const char *a, const char *b)
{
    if (domain_match1(a, b))
        return true;
    char *s = strdup(b);
    if (!s)
        return false;
    char *p = s;
    while (*p == '.')
        p++;
    size_t n = strlen(p);
    while (n && p[n - 1] == '.')
        p[--n] = '\0';
    bool r = domain_match1(a, p);
    free(s);
    return r;
}

static int month_of(const char *s)
{
    static const char *m[] = {"jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec"};
    for (int i = 0; i < 12; i++)
        if (!strncasecmp(s, m[i], 3))
            return i;
    return -1;
}

/* An HTTP date in any of the usual spellings ("Wed, 21 Oct 2015 07:28:00
 * GMT", "Wed, 21-Oct-15 ...").  -1 when it is not one. */
static long long parse_http_date(const char *s)
{
    struct tm tm = {0};
    int day = -1, mon = -1, year = -1, hh = -1, mm = 0, ss = 0;
    char buf[128];
    snprintf(buf, sizeof buf, "%s", s);
    for (char *tok = strtok(buf, " ,-"); tok; tok = strtok(NULL, " ,-")) {
        if (strchr(tok, ':') && hh < 0) {
            sscanf(tok, "%d:%d:%d", &hh, &mm, &ss);
        } else if (isdigit((unsigned char)tok[0])) {
            int v = atoi(tok);
            if (day < 0 && strlen(tok) <= 2 && mon < 0)
                day = v;
            else if (year < 0)
                year = v < 70 ? v + 2000 : v < 100 ? v + 1900 : v;
            else if (day < 0)
                day = v;
        } else if (mon < 0 && month_of(tok) >= 0 && strlen(tok) >= 3) {
            mon = month_of(tok);
        }
    }
    if (day < 1 || mon < 0 || year < 0)
        return -1;
    tm.tm_year = year - 1900;
    tm.tm_mon = mon;
    tm.tm_mday = day;
    tm.tm_hour = hh < 0 ? 0 : hh;
    tm.tm_min = mm;
    tm.tm_sec = ss;
    return (long long)timegm(&tm);
}

static jar_origin *jar_find(addons *a, const char *domain, uint16_t port, const char *path, bool create)
{
    for (size_t i = 0; i < a->njar; i++)
        if (a->jar[i].port == port && !strcmp(a->jar[i].domain, domain) && !strcmp(a->jar[i].path, path))
            return &a->jar[i];
    if (!create)
        return NULL;
    jar_origin *nj = realloc(a->jar, (a->njar + 1) * sizeof *nj);
    if (!nj)
        return NULL;
    a->jar = nj;
    jar_origin *o = &a->jar[a->njar];
    *o = (jar_origin){.domain = strdup(domain), .path = strdup(path), .port = port};
    if (!o->domain || !o->path) {
        free(o->domain);
        free(o->path);
        return NULL;
    }
    a->njar++;
    return o;
}

static void jar_remove_origin(addons *a, jar_origin *o)
{
    size_t i = (size_t)(o - a->jar);
    free(o->domain);
    free(o->path);
    free(o->c);
    memmove(&a->jar[i], &a->jar[i + 1], (a->njar - i - 1) * sizeof *a->jar);
    a->njar--;
}

static char *trim_dup(const char *s, size_t n)
{
    while (n && isspace((unsigned char)*s))
        s++, n--;
    while (n && isspace((unsigned char)s[n - 1]))
        n--;
    return strndup(s, n);
}

/* One Set-Cookie value: "name=value; Attr=x; ...". */
static void stickycookie_learn(addons *a, flow *f, const char *line, size_t len)
{
    char *v = strndup(line, len);
    if (!v)
        return;
    char *name = NULL, *value = NULL, *domain = NULL, *path = NULL, *expires = NULL, *maxage = NULL;
    char *save = NULL;
    bool first = true;
    for (char *part = strtok_r(v, ";", &save); part; part = strtok_r(NULL, ";", &save), first = false) {
        char *eq = strchr(part, '=');
        char *k = trim_dup(part, eq ? (size_t)(eq - part) : strlen(part));
        char *val = eq ? trim_dup(eq + 1, strlen(eq + 1)) : strdup("");
        if (!k || !val) {
            free(k);
            free(val);
            continue;
        }
        char **slot = NULL;
        if (first) {
            name = k, value = val;
            continue;
        }
        if (!strcasecmp(k, "domain"))
            slot = &domain;
        else if (!strcasecmp(k, "path"))
            slot = &path;
        else if (!strcasecmp(k, "expires"))
            slot = &expires;
        else if (!strcasecmp(k, "max-age"))
            slot = &maxage;
        free(k);
        if (slot) {
            free(*slot);
            *slot = val;
        } else {
            free(val);
        }
    }
    const char *host = f->request->host ? f->request->host : "";
    const char *dom = domain ? domain : host;
    if (name && *name && domain_match(host, dom)) {
        bool expired = false;
        long long now = (long long)time(NULL);
        if (expires && parse_http_date(expires) >= 0)
            expired = parse_http_date(expires) <= now;
        else if (maxage)
            expired = atoll(maxage) <= 0;
        jar_origin *o = jar_find(a, dom, f->request->port, path ? path : "/", !expired);
        if (o) {
            size_t k;
            for (k = 0; k < o->n; k++)
                if (!strcmp(o->c[k].name, name))
                    break;
            if (expired) {
                if (k < o->n) {
                    free(o->c[k].name);
                    free(o->c[k].value);
                    memmove(&o->c[k], &o->c[k + 1], (o->n - k - 1) * sizeof *o->c);
                    o->n--;
                }
                if (o->n == 0)
                    jar_remove_origin(a, o);
            } else if (k < o->n) {
                free(o->c[k].value);
                o->c[k].value = value;
                value = NULL;
            } else {
                jar_cookie *nc = realloc(o->c, (o->n + 1) * sizeof *nc);
                if (nc) {
                    o->c = nc;
                    o->c[o->n++] = (jar_cookie){name, value};
                    name = value = NULL;
                }
            }
        }
    }
    free(name);
    free(value);
    free(domain);
    free(path);
    free(expires);
    free(maxage);
    free(v);
}

static void stickycookie_response(addons *a, flow *f)
{
    hdrs *h = &f->response->headers;
    pthread_mutex_lock(&a->lock);
    for (ssize_t i = hdrs_find(h, "set-cookie", 0); i >= 0; i = hdrs_find(h, "set-cookie", (size_t)i + 1))
        stickycookie_learn(a, f, h->v[i].value, h->v[i].value_len);
    pthread_mutex_unlock(&a->lock);
}

static void mark_metadata(flow *f, const char *key)
{
    json_t *m = f->metadata ? json_loads(f->metadata, 0, NULL) : NULL;
    if (!json_is_object(m)) {
        json_decref(m);
        m = json_object();
    }
    json_object_set_new(m, key, json_true());
    char *s = json_dumps(m, JSON_COMPACT);
    if (s) {
        flow_strset(&f->metadata, s);
        free(s);
    }
    json_decref(m);
}

static void stickycookie_request(addons *a, flow *f)
{
    if (!addon_filter(a->stickycookie, "stickycookie", f))
        return;
    flow_request *r = f->request;
    const char *host = r->host ? r->host : "";
    const char *path = r->path ? r->path : "";
    bytes hv = {0};
    pthread_mutex_lock(&a->lock);
    for (size_t i = 0; i < a->njar; i++) {
        jar_origin *o = &a->jar[i];
        if (!domain_match(host, o->domain) || o->port != r->port || strncmp(path, o->path, strlen(o->path)))
            continue;
        for (size_t k = 0; k < o->n; k++) {
            if (hv.len)
                bytes_append(&hv, "; ", 2);
            bytes_append(&hv, o->c[k].name, strlen(o->c[k].name));
            bytes_append(&hv, "=", 1);
            bytes_append(&hv, o->c[k].value, strlen(o->c[k].value));
        }
    }
    pthread_mutex_unlock(&a->lock);
    if (hv.len) {
        mark_metadata(f, "stickycookie");
        hdrs_set(&r->headers, "cookie", hv.p, hv.len);
    }
    bytes_free(&hv);
}

/* ---- entry points ------------------------------------------------------------ */

void addons_block(addons *a, flow *f)
{
    if (!a || !f->request || f->response || f->error)
        return;
    /* every rule that matches applies, as mitmproxy's loop does: a later
     * status replaces an earlier one; any 444 kills */
    for (size_t i = 0; i < a->nblock; i++) {
        block_rule *r = &a->block[i];
        if (!addon_filter(r->flt, "block_list", f))
            continue;
        mark_metadata(f, "blocklisted");
        if (r->status == ADDONS_NO_RESPONSE) {
            f->killed = true;
            continue;
        }
        flow_response_free(f->response);
        f->response = make_response(r->status, h1_reason(r->status));
    }
}

bool addons_request(addons *a, flow *f)
{
    if (!a || !f->request)
        return false;
    flow_request *r = f->request;
    if (a->anticache) {
        hdrs_remove(&r->headers, "if-modified-since");
        hdrs_remove(&r->headers, "if-none-match");
    }
    if (a->anticomp)
        hdrs_set(&r->headers, "accept-encoding", "identity", 8);
    bool answered = false;
    if (!f->response && !f->error) {
        map_remote(a, f);
        answered = a->nlocal && map_local(a, f);
    }
    if (!f->response && !f->error) {
        modify_body(a, f);
        modify_headers(a, f, &r->headers);
    }
    if (a->stickyauth)
        stickyauth(a, f);
    if (a->stickycookie)
        stickycookie_request(a, f);
    return answered;
}

static bool alt_svc_host_char(char c)
{
    return isalnum((unsigned char)c) || c == '.' || c == '-';
}

/* re.sub(r"([a-zA-Z0-9.-]*:\d{1,5})", ":PORT", v): a match is a run of
 * host characters ending in ':' and 1 to 5 digits; a run that does not end
 * so cannot hold a match either, so it is copied whole. */
static void alt_svc_rewrite(const char *v, size_t n, int port, bytes *out)
{
    char p[16];
    int plen = snprintf(p, sizeof p, ":%d", port);
    size_t i = 0;
    while (i < n) {
        size_t j = i;
        while (j < n && alt_svc_host_char(v[j]))
            j++;
        if (j + 1 < n && v[j] == ':' && isdigit((unsigned char)v[j + 1])) {
            size_t k = j + 1;
            while (k < n && k < j + 6 && isdigit((unsigned char)v[k]))
                k++;
            bytes_append(out, p, (size_t)plen);
            i = k;
            continue;
        }
        size_t upto = j < n ? j + 1 : n;
        bytes_append(out, v + i, upto - i);
        i = upto;
    }
}

void addons_alt_svc(flow_response *resp, int port)
{
    hdrs *h = &resp->headers;
    bytes joined = {0}, out = {0};
    for (ssize_t i = hdrs_find(h, "alt-svc", 0); i >= 0; i = hdrs_find(h, "alt-svc", (size_t)i + 1)) {
        if (joined.len)
            bytes_append(&joined, ", ", 2);
        bytes_append(&joined, h->v[i].value, h->v[i].value_len);
    }
    if (hdrs_find(h, "alt-svc", 0) >= 0) {
        alt_svc_rewrite(joined.p ? joined.p : "", joined.len, port, &out);
        hdrs_set(h, "alt-svc", out.p ? out.p : "", out.len);
    }
    bytes_free(&joined);
    bytes_free(&out);
}

void addons_response(addons *a, flow *f)
{
    if (!a || !f->response || f->error)
        return;
    modify_body(a, f);
    modify_headers(a, f, &f->response->headers);
    if (a->stickycookie)
        stickycookie_response(a, f);
}
