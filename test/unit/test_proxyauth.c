/* Unit tests for proxyauth: specs, htpasswd files, Basic headers. */
#include "proxyauth.h"
#include "t.h"

#include <crypt.h>
#include <openssl/evp.h>
#include <openssl/sha.h>
#include <unistd.h>


static const char *write_file(const char *text)
{
    static char path[64];
    snprintf(path, sizeof path, "%s", "/tmp/mitmlua-pa-XXXXXX");
    int fd = mkstemp(path);
    if (fd < 0)
        return NULL;
    if (write(fd, text, strlen(text)) < 0) {
        close(fd);
        return NULL;
    }
    close(fd);
    return path;
}

static bool hdr(const proxyauth *pa, const char *user_pass, char **cache)
{
    unsigned char b64[256];
    int n = EVP_EncodeBlock(b64, (const unsigned char *)user_pass, (int)strlen(user_pass));
    char v[300];
    snprintf(v, sizeof v, "Basic %.*s", n, b64);
    return proxyauth_check_header(pa, v, strlen(v), cache);
}

static void single_user(void)
{
    char err[256];
    proxyauth *pa = proxyauth_new("alice:s3cret:x", err, sizeof err);
    T_CHECK(pa != NULL);
    T_CHECK(proxyauth_check(pa, "alice", 5, "s3cret:x", 8));
    T_CHECK(!proxyauth_check(pa, "alice", 5, "s3cret", 6));
    T_CHECK(!proxyauth_check(pa, "alic", 4, "s3cret:x", 8));
    T_CHECK(!proxyauth_check(pa, "", 0, "", 0));
    T_CHECK(hdr(pa, "alice:s3cret:x", NULL));
    T_CHECK(!hdr(pa, "alice:wrong", NULL));
    proxyauth_free(pa);
    T_CHECK(proxyauth_new("nocolon", err, sizeof err) == NULL);
    T_CHECK(strstr(err, "user:pass") != NULL);
    T_CHECK(proxyauth_new(":pass", err, sizeof err) == NULL);
}

static void any_user(void)
{
    char err[256];
    proxyauth *pa = proxyauth_new("any", err, sizeof err);
    T_CHECK(pa != NULL);
    T_CHECK(hdr(pa, "who:ever", NULL));
    /* credentials must still be sent, and well formed */
    T_CHECK(!proxyauth_check_header(pa, "", 0, NULL));
    T_CHECK(!proxyauth_check_header(pa, "Basic", 5, NULL));
    T_CHECK(!hdr(pa, "nocolon", NULL));
    proxyauth_free(pa);
}

static void headers(void)
{
    char err[256];
    proxyauth *pa = proxyauth_new("u:p", err, sizeof err);
    /* base64("u:p") = dTpw */
    T_CHECK(proxyauth_check_header(pa, "Basic dTpw", 10, NULL));
    T_CHECK(proxyauth_check_header(pa, "basic   dTpw  ", 14, NULL));
    T_CHECK(!proxyauth_check_header(pa, "Bearer dTpw", 11, NULL));
    T_CHECK(!proxyauth_check_header(pa, "BasicdTpw", 9, NULL));
    T_CHECK(!proxyauth_check_header(pa, "Basic dT!w", 10, NULL));
    T_CHECK(!proxyauth_check_header(pa, "Basic d", 7, NULL));
    char *cache = NULL;
    T_CHECK(!proxyauth_check_header(pa, "Basic eDp5", 10, &cache));
    T_CHECK(cache == NULL);   /* failures are not remembered */
    T_CHECK(proxyauth_check_header(pa, "Basic dTpw", 10, &cache));
    T_STREQ(cache, "Basic dTpw");
    T_CHECK(proxyauth_check_header(pa, "Basic dTpw", 10, &cache));
    T_CHECK(!proxyauth_check_header(pa, "Basic dTpx", 10, &cache));
    free(cache);
    proxyauth_free(pa);
}

static void htpasswd(void)
{
    char err[256];
    /* {SHA} of "pw1" */
    unsigned char d[SHA_DIGEST_LENGTH];
    SHA1((const unsigned char *)"pw1", 3, d);
    unsigned char b64[64];
    EVP_EncodeBlock(b64, d, sizeof d);
    struct crypt_data cd = {0};
    char salt[CRYPT_GENSALT_OUTPUT_SIZE];
    T_CHECK(crypt_gensalt_rn("$2b$", 4, NULL, 0, salt, sizeof salt) != NULL);
    char bc[CRYPT_OUTPUT_SIZE];
    snprintf(bc, sizeof bc, "%s", crypt_r("pw2", salt, &cd));
    T_CHECK(strncmp(bc, "$2b$", 4) == 0);
    char y[CRYPT_OUTPUT_SIZE];
    snprintf(y, sizeof y, "%s", bc);
    y[2] = 'y';                               /* what `htpasswd -B` writes */
    char six[CRYPT_OUTPUT_SIZE];
    T_CHECK(crypt_gensalt_rn("$6$", 0, NULL, 0, salt, sizeof salt) != NULL);
    snprintf(six, sizeof six, "%s", crypt_r("pw4", salt, &cd));
    char text[2048];
    snprintf(text, sizeof text, "# users\n\nsha:{SHA}%s\nbc:%s\r\nbcy:%s\nsix:%s\n", b64, bc, y, six);
    const char *path = write_file(text);
    char spec[80];
    snprintf(spec, sizeof spec, "@%s", path);
    proxyauth *pa = proxyauth_new(spec, err, sizeof err);
    T_CHECK(pa != NULL);
    if (!pa)
        fprintf(stderr, "  %s\n", err);
    if (pa) {
        T_CHECK(proxyauth_check(pa, "sha", 3, "pw1", 3));
        T_CHECK(!proxyauth_check(pa, "sha", 3, "pw2", 3));
        T_CHECK(proxyauth_check(pa, "bc", 2, "pw2", 3));
        T_CHECK(!proxyauth_check(pa, "bc", 2, "pw1", 3));
        T_CHECK(proxyauth_check(pa, "bcy", 3, "pw2", 3));
        T_CHECK(proxyauth_check(pa, "six", 3, "pw4", 3));
        T_CHECK(!proxyauth_check(pa, "six", 3, "pw4\0x", 5));
        T_CHECK(!proxyauth_check(pa, "nobody", 6, "pw1", 3));
        T_CHECK(hdr(pa, "bc:pw2", NULL));
    }
    proxyauth_free(pa);
    unlink(path);
}

static void bad_files(void)
{
    char err[256];
    T_CHECK(proxyauth_new("@/nonexistent/htpasswd", err, sizeof err) == NULL);
    T_CHECK(strstr(err, "/nonexistent/htpasswd") != NULL);
    const char *cases[][2] = {
        {"u:$apr1$abc$def\n", "apr1"},
        {"u:plaintext\n", "line 1"},
        {"ok:{SHA}AAAA\n", "{SHA}"},
        {"\n# only comments\n", "no users"},
        {"nocolon\n", "user:hash"},
        {"u:$2y$05$short\n", "malformed"},
        {"u:$2y$31$abcdefghijklmnopqrstuuABCDEFGHIJKLMNOPQRSTUVWXYZ01234\n", "too costly"},
        {"u:$6$rounds=999999999$salt$hash\n", "too costly"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        const char *path = write_file(cases[i][0]);
        char spec[80];
        snprintf(spec, sizeof spec, "@%s", path);
        err[0] = '\0';
        T_CHECK(proxyauth_new(spec, err, sizeof err) == NULL);
        if (!strstr(err, cases[i][1]))
            fprintf(stderr, "  case %zu: '%s' lacks '%s'\n", i, err, cases[i][1]);
        T_CHECK(strstr(err, cases[i][1]) != NULL);
        unlink(path);
    }
}

int main(void)
{
    T_RUN(single_user);
    T_RUN(any_user);
    T_RUN(headers);
    T_RUN(htpasswd);
    T_RUN(bad_files);
    T_DONE();
}
