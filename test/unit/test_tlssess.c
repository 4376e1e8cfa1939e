/* test_tlssess.c — the upstream session cache: kept and handed back under
 * its key, replaced, dropped, bounded by evicting the least recently used
 * of a set, never handing out an expired session. */
#include <openssl/ssl.h>
#include <time.h>

#include "tlssess.h"
#include "t.h"

static SSL_SESSION *session(long age)
{
    SSL_SESSION *s = SSL_SESSION_new();
    /* a resumable session needs an ID or a ticket: an ID will do */
    static unsigned char id[4];
    id[0]++;
    SSL_SESSION_set1_id(s, id, sizeof id);
    SSL_SESSION_set_protocol_version(s, TLS1_2_VERSION);
    SSL_SESSION_set_time(s, time(NULL) - age);
    SSL_SESSION_set_timeout(s, 300);
    return s;
}

/* The cache keeps copies: the same session is the same ID. */
static int same(SSL_SESSION *x, SSL_SESSION *y)
{
    unsigned xn = 0, yn = 0;
    const unsigned char *xi = x ? SSL_SESSION_get_id(x, &xn) : NULL, *yi = SSL_SESSION_get_id(y, &yn);
    return xi && xn == yn && memcmp(xi, yi, xn) == 0;
}

static void put_get_drop(void)
{
    tlssess *c = tlssess_new(8);
    SSL_SESSION *a = session(0), *b = session(0);
    T_CHECK(tlssess_get(c, "a 443 - -") == NULL);
    T_CHECK(tlssess_put(c, "a 443 - -", a) == 0);
    SSL_SESSION *g = tlssess_get(c, "a 443 - -");
    T_CHECK(same(g, a));
    SSL_SESSION_free(g);
    T_CHECK(tlssess_get(c, "a 444 - -") == NULL);
    T_CHECK(tlssess_put(c, "a 443 - -", b) == 0); /* replaces */
    T_CHECK(tlssess_count(c) == 1);
    g = tlssess_get(c, "a 443 - -");
    T_CHECK(same(g, b));
    SSL_SESSION_free(g);
    tlssess_drop(c, "a 443 - -");
    T_CHECK(tlssess_get(c, "a 443 - -") == NULL && tlssess_count(c) == 0);
    tlssess_drop(c, "never there");
    SSL_SESSION_free(a); /* the cache kept copies */
    SSL_SESSION_free(b);
    tlssess_free(c);
}

static void expired_not_offered(void)
{
    tlssess *c = tlssess_new(4);
    SSL_SESSION *old = session(301);
    T_CHECK(tlssess_put(c, "k", old) == 0);
    T_CHECK(tlssess_get(c, "k") == NULL);
    SSL_SESSION_free(old);
    tlssess_free(c);
}

static void bounded(void)
{
    tlssess *c = tlssess_new(16);
    char key[32];
    for (int i = 0; i < 1000; i++) {
        SSL_SESSION *s = session(0);
        snprintf(key, sizeof key, "host%d 443 - -", i);
        T_CHECK(tlssess_put(c, key, s) == 0);
        SSL_SESSION_free(s);
        /* the one most recently used survives the next insertions into its set */
        SSL_SESSION *g = tlssess_get(c, "host0 443 - -");
        SSL_SESSION_free(g);
        T_CHECK(g != NULL);
    }
    T_CHECK(tlssess_count(c) <= 16);
    tlssess_free(c); /* ASan: every evicted session was freed */
}

int main(void)
{
    T_RUN(put_get_drop);
    T_RUN(expired_not_offered);
    T_RUN(bounded);
    T_DONE();
}
