/* proxyauth.c — HTTP Basic credentials against "user:pass", "any" or an
 * htpasswd file.
 *
 * Every comparison of secret material goes through CRYPTO_memcmp on values
 * of equal length: the single user's name and password are compared as
 * SHA-256 digests (so their lengths do not leak either), {SHA} entries as
 * SHA-1 digests, crypt(3) entries as the re-hashed strings.  Hashes are
 * checked when the file is read, so a typo in the file is an error at start,
 * not a silent "nobody can log in". */
#include "proxyauth.h"

#include <crypt.h>
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <openssl/crypto.h>
#include <openssl/sha.h>

enum pa_kind { PA_ANY, PA_SINGLE, PA_FILE };
enum pa_hash { PH_SHA1, PH_CRYPT };

typedef struct pa_entry {
    char *user;
    enum pa_hash hash;
    unsigned char sha1[SHA_DIGEST_LENGTH];
    char *crypted;               /* PH_CRYPT: the whole "$2y$..." string */
} pa_entry;

struct proxyauth {
    enum pa_kind kind;
    unsigned char user_digest[SHA256_DIGEST_LENGTH];  /* PA_SINGLE */
    unsigned char pass_digest[SHA256_DIGEST_LENGTH];
    pa_entry *entries;           /* PA_FILE */
    size_t n;
};

/* ---- base64 (RFC 4648, padding optional) -------------------------------- */

static int b64_val(unsigned char c)
{
    if (c >= 'A' && c <= 'Z')
        return c - 'A';
    if (c >= 'a' && c <= 'z')
        return c - 'a' + 26;
    if (c >= '0' && c <= '9')
        return c - '0' + 52;
    if (c == '+')
        return 62;
    if (c == '/')
        return 63;
    return -1;
}

/* Decode into out (at least n*3/4 bytes).  Returns the length or -1. */
static long b64_decode(const char *s, size_t n, unsigned char *out)
{
    while (n && s[n - 1] == '=')
        n--;
    if (n % 4 == 1)
        return -1;
    uint32_t acc = 0;
    int bits = 0;
    long o = 0;
    for (size_t i = 0; i < n; i++) {
        int v = b64_val((unsigned char)s[i]);
        if (v < 0)
            return -1;
        acc = (acc << 6) | (uint32_t)v;
        bits += 6;
        if (bits >= 8) {
            bits -= 8;
            out[o++] = (unsigned char)(acc >> bits);
        }
    }
    return o;
}

/* ---- building ----------------------------------------------------------- */

void proxyauth_free(proxyauth *pa)
{
    if (!pa)
        return;
    for (size_t i = 0; i < pa->n; i++) {
        free(pa->entries[i].user);
        if (pa->entries[i].crypted) {
            OPENSSL_cleanse(pa->entries[i].crypted, strlen(pa->entries[i].crypted));
            free(pa->entries[i].crypted);
        }
    }
    free(pa->entries);
    OPENSSL_cleanse(pa, sizeof *pa);
    free(pa);
}

/* crypt_r fails with a string starting with '*' (libxcrypt) or NULL. */
static bool crypt_setting_ok(const char *hash)
{
    struct crypt_data *cd = calloc(1, sizeof *cd);
    if (!cd)
        return false;
    const char *r = crypt_r("probe", hash, cd);
    bool ok = r && r[0] != '*' && strlen(r) == strlen(hash);
    free(cd);
    return ok;
}

/* A check runs on the worker's event loop: bound its cost.  bcrypt cost 12
 * is about a quarter of a second here; 16 is four seconds. */
#define PA_MAX_BCRYPT_COST 14
#define PA_MAX_SHA_ROUNDS 1000000

static bool cost_bounded(const char *h)
{
    if (h[0] == '$' && h[1] == '2' && h[2] && h[3] == '$') {
        if (strlen(h) != 60 || h[4] < '0' || h[4] > '9' || h[5] < '0' || h[5] > '9' || h[6] != '$')
            return true;    /* malformed: the probe rejects it with its own message */
        return (h[4] - '0') * 10 + (h[5] - '0') <= PA_MAX_BCRYPT_COST;
    }
    if (h[0] == '$' && (h[1] == '5' || h[1] == '6') && h[2] == '$' && strncmp(h + 3, "rounds=", 7) == 0)
        return strtoul(h + 10, NULL, 10) <= PA_MAX_SHA_ROUNDS && strspn(h + 10, "0123456789") <= 7;
    return true;
}

static int parse_entry(pa_entry *e, const char *line, const char *path, int lineno, char *err, size_t errsz)
{
    const char *colon = strchr(line, ':');
    if (!colon || colon == line) {
        snprintf(err, errsz, "proxyauth: %s line %d: expected user:hash", path, lineno);
        return -1;
    }
    const char *h = colon + 1;
    if (!(e->user = strndup(line, (size_t)(colon - line)))) {
        snprintf(err, errsz, "out of memory");
        return -1;
    }
    if (strncmp(h, "{SHA}", 5) == 0) {
        unsigned char buf[64];
        size_t hl = strlen(h + 5);
        if (hl > 40 || b64_decode(h + 5, hl, buf) != SHA_DIGEST_LENGTH) {
            snprintf(err, errsz, "proxyauth: %s line %d: {SHA} hash is not base64 of 20 bytes", path, lineno);
            return -1;
        }
        e->hash = PH_SHA1;
        memcpy(e->sha1, buf, sizeof e->sha1);
        return 0;
    }
    if (strncmp(h, "$apr1$", 6) == 0) {
        snprintf(err, errsz,
                 "proxyauth: %s line %d: apr1 (Apache MD5) hashes are not supported; use bcrypt (htpasswd -B)",
                 path, lineno);
        return -1;
    }
    if (!cost_bounded(h)) {
        snprintf(err, errsz,
                 "proxyauth: %s line %d: the hash for user '%s' is too costly (bcrypt cost above %d or more than "
                 "%d rounds): each check would stall the proxy",
                 path, lineno, e->user, PA_MAX_BCRYPT_COST, PA_MAX_SHA_ROUNDS);
        return -1;
    }
    if (h[0] != '$' || !crypt_setting_ok(h)) {
        snprintf(err, errsz,
                 "proxyauth: %s line %d: unsupported or malformed hash for user '%s' "
                 "(supported: bcrypt $2y$, {SHA}, $5$, $6$)",
                 path, lineno, e->user);
        return -1;
    }
    e->hash = PH_CRYPT;
    if (!(e->crypted = strdup(h))) {
        snprintf(err, errsz, "out of memory");
        return -1;
    }
    return 0;
}

static int load_file(proxyauth *pa, const char *path, char *err, size_t errsz)
{
    FILE *fp = fopen(path, "r");
    if (!fp) {
        snprintf(err, errsz, "proxyauth: cannot open htpasswd file %s: %s", path, strerror(errno));
        return -1;
    }
    char *line = NULL;
    size_t cap = 0;
    ssize_t len;
    int lineno = 0, rc = 0;
    while ((len = getline(&line, &cap, fp)) >= 0) {
        lineno++;
        while (len && (line[len - 1] == '\n' || line[len - 1] == '\r'))
            line[--len] = '\0';
        if (len == 0 || line[0] == '#')
            continue;
        if (memchr(line, '\0', (size_t)len)) {
            snprintf(err, errsz, "proxyauth: %s line %d: NUL byte", path, lineno);
            rc = -1;
            break;
        }
        pa_entry *nv = realloc(pa->entries, (pa->n + 1) * sizeof *nv);
        if (!nv) {
            snprintf(err, errsz, "out of memory");
            rc = -1;
            break;
        }
        pa->entries = nv;
        memset(&nv[pa->n], 0, sizeof nv[pa->n]);
        pa->n++;   /* counted now so that proxyauth_free frees a half-built entry */
        if (parse_entry(&nv[pa->n - 1], line, path, lineno, err, errsz) < 0) {
            rc = -1;
            break;
        }
    }
    if (rc == 0 && ferror(fp)) {
        snprintf(err, errsz, "proxyauth: cannot read %s: %s", path, strerror(errno));
        rc = -1;
    }
    if (rc == 0 && pa->n == 0) {
        snprintf(err, errsz, "proxyauth: %s holds no users", path);
        rc = -1;
    }
    if (line) {
        OPENSSL_cleanse(line, cap);
        free(line);
    }
    fclose(fp);
    return rc;
}

proxyauth *proxyauth_new(const char *spec, char *err, size_t errsz)
{
    proxyauth *pa = calloc(1, sizeof *pa);
    if (!pa) {
        snprintf(err, errsz, "out of memory");
        return NULL;
    }
    if (strcmp(spec, "any") == 0) {
        pa->kind = PA_ANY;
    } else if (spec[0] == '@') {
        pa->kind = PA_FILE;
        if (load_file(pa, spec + 1, err, errsz) < 0)
            goto fail;
    } else {
        const char *colon = strchr(spec, ':');
        if (!colon || colon == spec) {
            snprintf(err, errsz,
                     "invalid value for proxyauth: expected user:pass, any or @HTPASSWD_FILE");
            goto fail;
        }
        pa->kind = PA_SINGLE;
        SHA256((const unsigned char *)spec, (size_t)(colon - spec), pa->user_digest);
        SHA256((const unsigned char *)colon + 1, strlen(colon + 1), pa->pass_digest);
    }
    return pa;
fail:
    proxyauth_free(pa);
    return NULL;
}

/* ---- checking ----------------------------------------------------------- */

static bool check_entry(const pa_entry *e, const char *pass, size_t plen)
{
    if (e->hash == PH_SHA1) {
        unsigned char d[SHA_DIGEST_LENGTH];
        SHA1((const unsigned char *)pass, plen, d);
        return CRYPTO_memcmp(d, e->sha1, sizeof d) == 0;
    }
    if (memchr(pass, '\0', plen))
        return false;       /* crypt(3) would see a shorter password */
    char *p = strndup(pass, plen);
    struct crypt_data *cd = calloc(1, sizeof *cd);
    bool ok = false;
    if (p && cd) {
        const char *r = crypt_r(p, e->crypted, cd);
        size_t n = strlen(e->crypted);
        ok = r && strlen(r) == n && CRYPTO_memcmp(r, e->crypted, n) == 0;
    }
    if (p) {
        OPENSSL_cleanse(p, plen);
        free(p);
    }
    if (cd) {
        OPENSSL_cleanse(cd, sizeof *cd);
        free(cd);
    }
    return ok;
}

bool proxyauth_check(const proxyauth *pa, const char *user, size_t ulen, const char *pass, size_t plen)
{
    switch (pa->kind) {
    case PA_ANY:
        return true;
    case PA_SINGLE: {
        unsigned char u[SHA256_DIGEST_LENGTH], p[SHA256_DIGEST_LENGTH];
        SHA256((const unsigned char *)user, ulen, u);
        SHA256((const unsigned char *)pass, plen, p);
        /* both compared, always: no early exit on a wrong user name */
        int du = CRYPTO_memcmp(u, pa->user_digest, sizeof u);
        int dp = CRYPTO_memcmp(p, pa->pass_digest, sizeof p);
        return (du | dp) == 0;
    }
    case PA_FILE:
        for (size_t i = 0; i < pa->n; i++) {
            const pa_entry *e = &pa->entries[i];
            if (strlen(e->user) == ulen && memcmp(e->user, user, ulen) == 0)
                return check_entry(e, pass, plen);
        }
        return false;
    }
    return false;
}

bool proxyauth_check_header(const proxyauth *pa, const char *value, size_t vlen, char **cache)
{
    if (!value)
        return false;
    if (cache && *cache && strlen(*cache) == vlen && CRYPTO_memcmp(*cache, value, vlen) == 0)
        return true;
    /* "Basic" 1*SP token68 [*SP] */
    if (vlen < 6 || strncasecmp(value, "basic", 5) != 0 || (value[5] != ' ' && value[5] != '\t'))
        return false;
    const char *t = value + 5, *end = value + vlen;
    while (t < end && (*t == ' ' || *t == '\t'))
        t++;
    while (end > t && (end[-1] == ' ' || end[-1] == '\t'))
        end--;
    size_t tl = (size_t)(end - t);
    if (tl == 0 || tl > 4096)
        return false;
    unsigned char *dec = malloc(tl);
    if (!dec)
        return false;
    long dl = b64_decode(t, tl, dec);
    bool ok = false;
    const unsigned char *colon = dl > 0 ? memchr(dec, ':', (size_t)dl) : NULL;
    if (colon) {
        size_t ulen = (size_t)(colon - dec);
        ok = proxyauth_check(pa, (const char *)dec, ulen, (const char *)colon + 1, (size_t)dl - ulen - 1);
    }
    OPENSSL_cleanse(dec, tl);
    free(dec);
    if (ok && cache) {
        char *v = strndup(value, vlen);
        if (v) {
            free(*cache);
            *cache = v;
        }
    }
    return ok;
}

/* ---- the challenge ------------------------------------------------------ */

const char *proxyauth_header(bool as_proxy)
{
    return as_proxy ? "Proxy-Authorization" : "Authorization";
}

flow_response *proxyauth_challenge(bool as_proxy)
{
    flow_response *r = flow_response_new();
    if (!r)
        return NULL;
    int st = as_proxy ? 407 : 401;
    const char *reason = as_proxy ? "Proxy Authentication Required" : "Unauthorized";
    char body[256];
    int bl = snprintf(body, sizeof body,
                      "<html><head><title>%d %s</title></head><body><h1>%d %s</h1></body></html>", st, reason,
                      st, reason);
    static const char challenge[] = "Basic realm=\"" PROXYAUTH_REALM "\"";
    const char *hname = as_proxy ? "Proxy-Authenticate" : "WWW-Authenticate";
    char clen[24];
    snprintf(clen, sizeof clen, "%d", bl);
    r->status_code = st;
    r->timestamp_start = r->timestamp_end = flow_now();
    if (!(r->reason = strdup(reason)) || !(r->http_version = strdup("HTTP/1.1")) ||
        hdrs_add(&r->headers, "Server", 6, "mitmlua", 7) < 0 ||
        hdrs_add(&r->headers, hname, strlen(hname), challenge, sizeof challenge - 1) < 0 ||
        hdrs_add(&r->headers, "Content-Type", 12, "text/html", 9) < 0 ||
        hdrs_add(&r->headers, "Content-Length", 14, clen, strlen(clen)) < 0 ||
        hdrs_add(&r->headers, "Connection", 10, "close", 5) < 0 || bytes_set(&r->content, body, (size_t)bl) < 0) {
        flow_response_free(r);
        return NULL;
    }
    return r;
}
