/* fuzz_socks5.c — the SOCKS5 greeting and request parsers on arbitrary
 * bytes, fed the way the proxy feeds them: the greeting first, then the
 * request from what follows, at every split of the input; and the
 * username/password message (RFC 1929) on the whole input. */
#include <stdint.h>
#include <string.h>

#include "socks5.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char why[200];
    int rep;
    socks5_target t;
    for (size_t cut = 0; cut <= size && cut < 16; cut++) {
        int g = socks5_parse_greeting(data, cut, cut & 1, &rep, why, sizeof why);
        if (g <= 0)
            continue;
        int r = socks5_parse_request(data + g, size - (size_t)g, &t, &rep, why, sizeof why);
        if (r > 0 && (strlen(t.host) == 0 || t.port == 0 || (size_t)r > size - (size_t)g))
            __builtin_trap();
    }
    const char *u, *p;
    size_t ul, pl;
    int a = socks5_parse_userpass(data, size, &u, &ul, &p, &pl, why, sizeof why);
    if (a > 0 && ((size_t)a > size || u + ul > (const char *)data + size || p + pl > (const char *)data + size))
        __builtin_trap();
    int r = socks5_parse_request(data, size, &t, &rep, why, sizeof why);
    if (r > 0 && strlen(t.host) >= sizeof t.host)
        __builtin_trap();
    return 0;
}
