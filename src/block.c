/* block.c — see block.h.  The tables are Python 3.11's ipaddress
 * _private_networks (and their exceptions); an address that is neither
 * private nor in 100.64.0.0/10 (shared address space: neither) is global. */
#include "block.h"

#include <netinet/in.h>
#include <stdint.h>
#include <string.h>

typedef struct net4 { uint32_t addr; int bits; } net4;
typedef struct net6 { uint8_t addr[16]; int bits; } net6;

#define V4(a, b, c, d) ((uint32_t)(a) << 24 | (uint32_t)(b) << 16 | (uint32_t)(c) << 8 | (uint32_t)(d))

static const net4 private4[] = {
    {V4(0, 0, 0, 0), 8},      {V4(10, 0, 0, 0), 8},       {V4(127, 0, 0, 0), 8},
    {V4(169, 254, 0, 0), 16}, {V4(172, 16, 0, 0), 12},    {V4(192, 0, 0, 0), 24},
    {V4(192, 0, 0, 170), 31}, {V4(192, 0, 2, 0), 24},     {V4(192, 168, 0, 0), 16},
    {V4(198, 18, 0, 0), 15},  {V4(198, 51, 100, 0), 24},  {V4(203, 0, 113, 0), 24},
    {V4(240, 0, 0, 0), 4},    {V4(255, 255, 255, 255), 32},
};
static const net4 private4_except[] = {{V4(192, 0, 0, 9), 32}, {V4(192, 0, 0, 10), 32}};

static const net6 private6[] = {
    {{0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1}, 128},   /* ::1 */
    {{0}, 128},                                                /* :: */
    {{0x00, 0x64, 0xff, 0x9b, 0x00, 0x01}, 48},                /* 64:ff9b:1::/48 */
    {{0x01, 0x00}, 64},                                        /* 100::/64 */
    {{0x20, 0x01, 0x00, 0x00}, 23},                            /* 2001::/23 */
    {{0x20, 0x01, 0x0d, 0xb8}, 32},                            /* 2001:db8::/32 */
    {{0x20, 0x02}, 16},                                        /* 2002::/16 */
    {{0xfc}, 7},                                               /* fc00::/7 */
    {{0xfe, 0x80}, 10},                                        /* fe80::/10 */
};
static const net6 private6_except[] = {
    {{0x20, 0x01, 0x00, 0x01, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1}, 128},
    {{0x20, 0x01, 0x00, 0x01, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 2}, 128},
    {{0x20, 0x01, 0x00, 0x03}, 32},
    {{0x20, 0x01, 0x00, 0x04, 0x01, 0x12}, 48},
    {{0x20, 0x01, 0x00, 0x20}, 28},
    {{0x20, 0x01, 0x00, 0x30}, 28},
};

static bool in4(uint32_t a, const net4 *n)
{
    uint32_t mask = n->bits ? ~(uint32_t)0 << (32 - n->bits) : 0;
    return (a & mask) == (n->addr & mask);
}

static bool in6(const uint8_t *a, const net6 *n)
{
    int full = n->bits / 8, rest = n->bits % 8;
    if (memcmp(a, n->addr, (size_t)full) != 0)
        return false;
    if (!rest)
        return true;
    uint8_t mask = (uint8_t)(0xff << (8 - rest));
    return (a[full] & mask) == (n->addr[full] & mask);
}

#define ANY(fn, addr, tbl) any_##fn(addr, tbl, sizeof tbl / sizeof tbl[0])
static bool any_in4(uint32_t a, const net4 *t, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (in4(a, &t[i]))
            return true;
    return false;
}
static bool any_in6(const uint8_t *a, const net6 *t, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (in6(a, &t[i]))
            return true;
    return false;
}

static enum block_class classify4(uint32_t a)
{
    if ((a >> 24) == 127)
        return BLOCK_LOOPBACK;
    if (ANY(in4, a, private4) && !ANY(in4, a, private4_except))
        return BLOCK_PRIVATE;
    if ((a & 0xffc00000u) == V4(100, 64, 0, 0)) /* shared address space (CGNAT) */
        return BLOCK_OTHER;
    return BLOCK_GLOBAL;
}

enum block_class block_classify(const struct sockaddr *sa)
{
    if (sa->sa_family == AF_INET) {
        const struct sockaddr_in *s4 = (const struct sockaddr_in *)sa;
        return classify4(ntohl(s4->sin_addr.s_addr));
    }
    if (sa->sa_family == AF_INET6) {
        const uint8_t *a = ((const struct sockaddr_in6 *)sa)->sin6_addr.s6_addr;
        static const uint8_t mapped[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};
        if (memcmp(a, mapped, 12) == 0)
            return classify4(V4(a[12], a[13], a[14], a[15]));
        static const uint8_t lo[16] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1};
        if (memcmp(a, lo, 16) == 0)
            return BLOCK_LOOPBACK;
        if (ANY(in6, a, private6) && !ANY(in6, a, private6_except))
            return BLOCK_PRIVATE;
        return BLOCK_GLOBAL;
    }
    return BLOCK_LOOPBACK; /* a Unix socket is local */
}

const char *block_client(const struct sockaddr *sa, bool block_global, bool block_private)
{
    switch (block_classify(sa)) {
    case BLOCK_PRIVATE: return block_private ? "block_private" : NULL;
    case BLOCK_GLOBAL: return block_global ? "block_global" : NULL;
    default: return NULL;
    }
}
