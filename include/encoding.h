/* encoding.h — HTTP content-codings (RFC 9110 §8.4): gzip, deflate, br,
 * zstd and identity, decoded and encoded in memory.  Used by the Lua API
 * (content/text), the filter language (~b matches decoded bodies) and the
 * printer.  Pure functions, no global state; safe from any thread. */
#ifndef MITMLUA_ENCODING_H
#define MITMLUA_ENCODING_H

#include <stddef.h>
#include "flow.h"

/* Upper bound on a decoded body: decoding stops with an error past it, so a
 * compression bomb cannot take the process's memory. */
#define ENCODING_MAX_DECODED ((size_t)256 << 20)

/* Decode `in` as described by a Content-Encoding header value (which may
 * list several codings, applied in order, e.g. "gzip, br"; case-insensitive;
 * "identity" and "" are no-ops).  Appends the result to `out`.
 * Returns 0, or -1 with a one-line reason in `err` (unknown coding, corrupt
 * data, over ENCODING_MAX_DECODED); `out` is then left as it was.  The
 * limit bounds each decoding layer; identity copies whatever its size.
 * An empty `in` decodes to empty under any coding (HEAD/204/304 answers).
 * `deflate` accepts both zlib-wrapped and raw deflate, as browsers do;
 * gzip accepts concatenated members, zstd concatenated frames.  `in` must
 * not point into `out` (the buffer may move). */
int encoding_decode(const char *coding, const void *in, size_t n, bytes *out,
                    char *err, size_t errsz);

/* encoding_decode with another ceiling than ENCODING_MAX_DECODED (applied to
 * every layer): for callers with a tighter budget (a preview, fuzzing).
 * A body that decodes past the limit fails; it is not truncated. */
int encoding_decode_limit(const char *coding, const void *in, size_t n, bytes *out,
                          size_t limit, char *err, size_t errsz);

/* Encode `in` with the codings in `coding` (the reverse order of decoding).
 * Appends to `out`.  Returns 0 or -1 with `err`. */
int encoding_encode(const char *coding, const void *in, size_t n, bytes *out,
                    char *err, size_t errsz);

/* true when every coding listed is one this module handles. */
int encoding_supported(const char *coding);

#endif
