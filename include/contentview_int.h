/* contentview_int.h — shared between contentview.c (text views, choice)
 * and contentview_bin.c (protobuf, gRPC, msgpack, images): the output
 * builder and Python's ways of printing values, which mitmproxy's views
 * show (repr of bytes and str, float repr, padded key tables). */
#ifndef MITMLUA_CONTENTVIEW_INT_H
#define MITMLUA_CONTENTVIEW_INT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "contentview.h"
#include "pyfloat.h"

#define CV_ALL ((size_t)-1)

void cv_put(cv_text *t, const char *s, size_t n);
void cv_puts(cv_text *t, const char *s);
/* as mitmproxy's safe_to_print: control characters become '.' */
void cv_put_safe(cv_text *t, const char *s, size_t n);
/* invalid UTF-8 becomes U+FFFD (Python's decode(..., "replace")) */
void cv_put_lossy(cv_text *t, const char *s, size_t n);
void cv_endl(cv_text *t);
/* Every line of src (a view rendered unlimited) into dst, within its limit. */
void cv_copy_lines(cv_text *dst, const cv_text *src);

/* Python's repr() of bytes (b'..') and of a str given as UTF-8 ('..'). */
void cv_repr_bytes(cv_text *t, const char *s, size_t n);
void cv_repr_str(cv_text *t, const char *s, size_t n);
bool cv_utf8_valid(const char *s, size_t n);
size_t cv_u8len(const char *s, size_t n);

/* mitmproxy's format_pairs: "key:" padded to the longest key (at most 30)
 * plus 2, then the value; values with invalid UTF-8 printed lossily. */
typedef struct cv_pair {
    const char *k, *v;
    size_t kn, vn;
} cv_pair;
void cv_pairs(cv_text *t, const cv_pair *p, size_t n);

/* Views of binary formats (contentview_bin.c); 0, or -1 when the data is
 * not of the format (the caller falls back to Raw).  t is unlimited. */
int cv_protobuf(cv_text *t, const char *data, size_t len);
int cv_grpc(cv_text *t, const char *data, size_t len);
int cv_msgpack(cv_text *t, const char *data, size_t len);
/* Image metadata; *name is "PNG Image", "Unknown Image", ... */
int cv_image(cv_text *t, const char *data, size_t len, const char **name);

#endif
