/* fuzz_proxyauth.c — libFuzzer target for the Basic credentials parser: any
 * bytes as a (Proxy-)Authorization value, against a single user, "any",
 * and with the per-connection cache. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "proxyauth.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static proxyauth *single, *any;
    char err[256];
    if (!single) {
        single = proxyauth_new("u:p", err, sizeof err);
        any = proxyauth_new("any", err, sizeof err);
        if (!single || !any)
            abort();
    }
    char *v = malloc(size + 1);
    if (!v)
        return 0;
    memcpy(v, data, size);
    v[size] = '\0';
    char *cache = NULL;
    proxyauth_check_header(single, v, size, &cache);
    proxyauth_check_header(single, v, size, &cache);
    proxyauth_check_header(any, v, size, NULL);
    free(cache);
    free(v);
    return 0;
}
