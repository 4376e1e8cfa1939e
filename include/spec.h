/* spec.h — mitmproxy's "[/filter]/subject/replacement" option values (the
 * first character is the separator), and the two pieces of Python `re`
 * behaviour those options depend on: byte-string escapes ("\x00", "\n")
 * and re.sub() with a replacement template ("\1", "\g<name>").  Used by
 * map_remote, map_local, modify_headers and modify_body (addons.c).
 * Compiled objects are immutable and may be shared by threads. */
#ifndef MITMLUA_SPEC_H
#define MITMLUA_SPEC_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "filter.h"
#include "flow.h"

/* One parsed option value.  `flt` is NULL when the spec has no filter
 * (it matches every flow).  Offsets are 0-based positions in the option
 * text, for error messages that point at the part that is wrong. */
typedef struct spec {
    filter *flt;
    char *subject;
    size_t subject_at;
    char *replacement;
    size_t replacement_at;
} spec;

/* Split and compile (the filter only).  On error returns -1 with one line
 * in err: "OPTNAME: invalid spec 'TEXT' at column N: why". */
int spec_parse(const char *optname, const char *text, spec *out, char *err, size_t errsz);
void spec_free(spec *s);

/* Python's codecs.escape_decode (mitmproxy's escaped_str_to_bytes):
 * \\ \' \" \a \b \f \n \r \t \v \ooo \xhh and backslash-newline; any other
 * escape stays as written.  -1 with err (and *bad_at set to the offset of
 * the offending backslash) on "\x" without two hex digits or a trailing
 * backslash. */
int spec_unescape(const char *s, size_t n, bytes *out, size_t *bad_at, char *err, size_t errsz);

/* A regex compiled as Python's `re` would (case-sensitive).  `text`
 * patterns are UTF-8 (str in Python); others match bytes. */
enum { SPEC_RX_TEXT = 1u << 0, SPEC_RX_DOTALL = 1u << 1 };
typedef struct spec_regex spec_regex;
spec_regex *spec_regex_compile(const char *pat, size_t n, unsigned flags, size_t *err_at,
                               char *err, size_t errsz);
void spec_regex_free(spec_regex *re);
uint32_t spec_regex_groups(const spec_regex *re);
/* re.search: true when the pattern matches somewhere in s.  When `g1` is
 * non-NULL and the pattern has groups, *g1 / *g1_len receive group 1 (NULL
 * when it did not take part); *end receives the end of the whole match. */
bool spec_regex_search(const spec_regex *re, const char *s, size_t n, const char **g1,
                       size_t *g1_len, size_t *end);

/* A replacement template as re.sub() reads it.  `literal` makes every byte
 * literal (no backslash processing). */
typedef struct spec_template spec_template;
spec_template *spec_template_compile(const spec_regex *re, const char *repl, size_t n, bool literal,
                                     size_t *err_at, char *err, size_t errsz);
void spec_template_free(spec_template *t);

/* re.sub(re, template, s) into out (replaced).  Returns the number of
 * substitutions, or -1 on ENOMEM. */
long spec_sub(const spec_regex *re, const spec_template *t, const char *s, size_t n, bytes *out);

#endif
