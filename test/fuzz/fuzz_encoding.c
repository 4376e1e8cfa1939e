/* fuzz_encoding.c — every content-coding decoder on arbitrary bytes (no
 * crash, leak or hang; a failure leaves the output untouched), and every
 * coding's encode → decode round trip on the same bytes (must be exact). */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "encoding.h"

/* small enough to keep iterations fast; the limit logic is the same code
 * at any size */
#define FUZZ_LIMIT ((size_t)4 << 20)

static const char *const fuzz_codings[] = {
    "gzip", "deflate", "br", "zstd", "identity", "gzip, br", "zstd, deflate",
};

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char err[256];
    for (size_t i = 0; i < sizeof fuzz_codings / sizeof fuzz_codings[0]; i++) {
        bytes out = {0};
        bytes_set(&out, "pre", 3);
        int rc = encoding_decode_limit(fuzz_codings[i], data, size, &out, FUZZ_LIMIT, err,
                                       sizeof err);
        if (out.len < 3 || memcmp(out.p, "pre", 3) != 0)
            abort(); /* earlier content must survive */
        if (rc < 0 && out.len != 3)
            abort(); /* a failure must roll back */
        if (rc == 0 && out.len - 3 > FUZZ_LIMIT)
            abort();
        if (out.p[out.len] != '\0')
            abort();
        bytes_free(&out);
    }

    /* round trips on small inputs only: the encoders are the slow part */
    if (size <= 4096) {
        for (size_t i = 0; i < sizeof fuzz_codings / sizeof fuzz_codings[0]; i++) {
            bytes enc = {0}, dec = {0};
            if (encoding_encode(fuzz_codings[i], data, size, &enc, err, sizeof err) < 0)
                abort();
            if (encoding_decode(fuzz_codings[i], enc.p, enc.len, &dec, err, sizeof err) < 0)
                abort();
            if (dec.len != size || (size && memcmp(dec.p, data, size) != 0))
                abort();
            bytes_free(&enc);
            bytes_free(&dec);
        }
    }

    /* the coding list parser on the input as a header value */
    if (size < 256) {
        char hv[256];
        memcpy(hv, data, size);
        hv[size] = '\0';
        bytes out = {0};
        int sup = encoding_supported(hv);
        int rc = encoding_decode(hv, "", 0, &out, err, sizeof err);
        if ((rc == 0) != (sup != 0))
            abort();
        bytes_free(&out);
    }
    return 0;
}
