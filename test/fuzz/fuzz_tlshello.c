/* fuzz_tlshello — the ClientHello reader on arbitrary bytes: it must never
 * read past them, and whatever it returns is bounded and NUL-terminated. */
#include <stdint.h>
#include <string.h>

#include "tlshello.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    tlshello h;
    char err[128];
    long need = tlshello_record_size(data, size);
    if (tlshello_parse(data, size, &h, err, sizeof err) == 0) {
        if (need <= 0 || (size_t)need > size || strlen(h.sni) >= sizeof h.sni || h.nalpn > TLSHELLO_MAX_ALPN)
            __builtin_trap();
        for (size_t i = 0; i < h.nalpn; i++)
            if (strlen(h.alpn[i]) == 0 || strlen(h.alpn[i]) >= sizeof h.alpn[i])
                __builtin_trap();
    }
    return 0;
}
