/* tlssess.c — see tlssess.h.
 *
 * A set-associative table rather than a hash table with an LRU list: the
 * bound is the table's size, a lookup touches one set of four slots, and
 * eviction is "the least recently used of those four", which is all a
 * session cache needs (a miss costs one full handshake, nothing more).
 * The hash is seeded so that a client choosing host names cannot aim them
 * all at one set and keep evicting the sessions of another host. */
#include "tlssess.h"

#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <time.h>

#define TLSSESS_WAYS 4

typedef struct slot {
    char *key;          /* NULL: free */
    SSL_SESSION *s;
    uint64_t hash;
    uint64_t used;      /* the cache's clock when last put or got */
} slot;

struct tlssess {
    pthread_mutex_t lock;
    slot *slots;        /* nsets * TLSSESS_WAYS */
    size_t nsets;       /* a power of two */
    size_t n;
    uint64_t clock, seed;
};

tlssess *tlssess_new(size_t max)
{
    tlssess *c = calloc(1, sizeof *c);
    if (!c)
        return NULL;
    c->nsets = 1;
    while (c->nsets * TLSSESS_WAYS < max)
        c->nsets <<= 1;
    if (!(c->slots = calloc(c->nsets * TLSSESS_WAYS, sizeof *c->slots))) {
        free(c);
        return NULL;
    }
    /* a fixed seed is only weaker, not wrong: no failure for it */
    if (getrandom(&c->seed, sizeof c->seed, GRND_NONBLOCK) != (ssize_t)sizeof c->seed)
        c->seed = (uint64_t)(uintptr_t)c;
    pthread_mutex_init(&c->lock, NULL);
    return c;
}

static void slot_clear(slot *s)
{
    free(s->key);
    SSL_SESSION_free(s->s);
    memset(s, 0, sizeof *s);
}

void tlssess_free(tlssess *c)
{
    if (!c)
        return;
    for (size_t i = 0; i < c->nsets * TLSSESS_WAYS; i++)
        slot_clear(&c->slots[i]);
    free(c->slots);
    pthread_mutex_destroy(&c->lock);
    free(c);
}

static uint64_t key_hash(const tlssess *c, const char *key)
{
    uint64_t h = 1469598103934665603ull ^ c->seed; /* FNV-1a */
    for (const unsigned char *p = (const unsigned char *)key; *p; p++)
        h = (h ^ *p) * 1099511628211ull;
    return h ^ (h >> 29);
}

static slot *set_of(tlssess *c, uint64_t h)
{
    return &c->slots[(h & (c->nsets - 1)) * TLSSESS_WAYS];
}

/* The slot holding key in its set, or NULL.  Under the lock. */
static slot *find(tlssess *c, const char *key, uint64_t h)
{
    slot *set = set_of(c, h);
    for (int i = 0; i < TLSSESS_WAYS; i++)
        if (set[i].key && set[i].hash == h && strcmp(set[i].key, key) == 0)
            return &set[i];
    return NULL;
}

int tlssess_put(tlssess *c, const char *key, SSL_SESSION *s)
{
    /* A copy, not a reference: OpenSSL marks the session it gave us
     * unresumable when its connection ends without close_notify (the rule
     * of TLS 1.0, dropped since 1.1), and servers often just close. */
    char *k = strdup(key);
    if (!k || !(s = SSL_SESSION_dup(s))) {
        free(k);
        return -1;
    }
    uint64_t h = key_hash(c, key);
    pthread_mutex_lock(&c->lock);
    slot *dst = find(c, key, h);
    if (!dst) { /* a free way, else the least recently used one */
        slot *set = set_of(c, h);
        dst = &set[0];
        for (int i = 0; i < TLSSESS_WAYS && dst->key; i++)
            if (!set[i].key || set[i].used < dst->used)
                dst = &set[i];
        if (!dst->key)
            c->n++;
    }
    slot old = *dst;
    *dst = (slot){.key = k, .s = s, .hash = h, .used = ++c->clock};
    pthread_mutex_unlock(&c->lock);
    /* freed outside the lock: a session's free walks its certificates */
    free(old.key);
    SSL_SESSION_free(old.s);
    return 0;
}

SSL_SESSION *tlssess_get(tlssess *c, const char *key)
{
    uint64_t h = key_hash(c, key);
    SSL_SESSION *s = NULL;
    pthread_mutex_lock(&c->lock);
    slot *e = find(c, key, h);
    /* an expired session would only be refused by the server: a round trip lost */
    if (e && SSL_SESSION_is_resumable(e->s) && time(NULL) < SSL_SESSION_get_time(e->s) + SSL_SESSION_get_timeout(e->s)) {
        e->used = ++c->clock;
        s = e->s;
        SSL_SESSION_up_ref(s);
    }
    pthread_mutex_unlock(&c->lock);
    /* A copy again: the connection it is offered on marks the session it
     * holds unresumable if it ends without close_notify (see put), and
     * the kept one must stay good for the next connection. */
    SSL_SESSION *copy = s ? SSL_SESSION_dup(s) : NULL;
    SSL_SESSION_free(s);
    return copy;
}

void tlssess_drop(tlssess *c, const char *key)
{
    uint64_t h = key_hash(c, key);
    slot old = {0};
    pthread_mutex_lock(&c->lock);
    slot *e = find(c, key, h);
    if (e) {
        old = *e;
        memset(e, 0, sizeof *e);
        c->n--;
    }
    pthread_mutex_unlock(&c->lock);
    slot_clear(&old);
}

size_t tlssess_count(tlssess *c)
{
    pthread_mutex_lock(&c->lock);
    size_t n = c->n;
    pthread_mutex_unlock(&c->lock);
    return n;
}
