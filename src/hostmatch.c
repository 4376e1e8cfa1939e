/* hostmatch.c — see hostmatch.h.  mitmproxy searches (re.search, not a
 * full match) "host:port" with IGNORECASE; so do we, with PCRE2's JIT. */
#define PCRE2_CODE_UNIT_WIDTH 8
#include "hostmatch.h"

#include <pcre2.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct hostmatch {
    pcre2_code **re;
    size_t n;
    pcre2_match_data *md;  /* one per matcher: matchers are per worker */
};

hostmatch *hostmatch_new(char *const *patterns, size_t n, const char *option, char *err, size_t errsz)
{
    hostmatch *m = calloc(1, sizeof *m);
    if (!m || (n && !(m->re = calloc(n, sizeof *m->re)))) {
        snprintf(err, errsz, "out of memory");
        free(m);
        return NULL;
    }
    for (size_t i = 0; i < n; i++) {
        int ec;
        PCRE2_SIZE off;
        m->re[i] = pcre2_compile((PCRE2_SPTR)patterns[i], PCRE2_ZERO_TERMINATED, PCRE2_CASELESS, &ec, &off, NULL);
        if (!m->re[i]) {
            PCRE2_UCHAR msg[160];
            pcre2_get_error_message(ec, msg, sizeof msg);
            snprintf(err, errsz, "%s '%s': %s at offset %zu", option, patterns[i], (const char *)msg, (size_t)off);
            m->n = i;
            hostmatch_free(m);
            return NULL;
        }
        pcre2_jit_compile(m->re[i], PCRE2_JIT_COMPLETE); /* falls back to the interpreter */
        m->n = i + 1;
    }
    m->md = pcre2_match_data_create(4, NULL);
    return m;
}

bool hostmatch_any(const hostmatch *m, const char *host, uint16_t port)
{
    if (!m || !m->n)
        return false;
    char hp[300];
    int len = snprintf(hp, sizeof hp, "%s:%u", host, port);
    if (len < 0 || (size_t)len >= sizeof hp)
        return false;
    for (size_t i = 0; i < m->n; i++)
        if (pcre2_match(m->re[i], (PCRE2_SPTR)hp, (size_t)len, 0, 0, m->md, NULL) >= 0)
            return true;
    return false;
}

bool hostmatch_any_host(const hostmatch *m, const char *host, uint16_t port)
{
    if (!m || !m->n)
        return false;
    size_t len = strlen(host);
    for (size_t i = 0; i < m->n; i++)
        if (pcre2_match(m->re[i], (PCRE2_SPTR)host, len, 0, 0, m->md, NULL) >= 0)
            return true;
    return hostmatch_any(m, host, port);
}

size_t hostmatch_count(const hostmatch *m) { return m ? m->n : 0; }

void hostmatch_free(hostmatch *m)
{
    if (!m)
        return;
    for (size_t i = 0; i < m->n; i++)
        pcre2_code_free(m->re[i]);
    free(m->re);
    pcre2_match_data_free(m->md);
    free(m);
}
