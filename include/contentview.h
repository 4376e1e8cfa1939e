/* contentview.h — message bodies as mitmproxy's content views show them
 * (mitmdump --flow-detail 3 and 4): JSON indented, forms and query strings
 * as a table, multipart parts, XML/HTML indented, protobuf and gRPC without
 * a schema, msgpack, images (type and size), a hex dump for other binary
 * data, raw text.  Pure: bytes and a content type in, text lines out; no
 * I/O, nothing kept between calls, safe on hostile input. */
#ifndef MITMLUA_CONTENTVIEW_H
#define MITMLUA_CONTENTVIEW_H

#include <stdbool.h>
#include <stddef.h>

typedef struct cv_text {
    char *p;            /* the lines, each ending in '\n', without indent */
    size_t len, cap;
    size_t lines;       /* lines in p */
    size_t max_lines;   /* keep at most this many ((size_t)-1: all) */
    bool cut;           /* there were more */
    bool oom;
    size_t line_start;  /* private: where the line being written began */
} cv_text;

/* Render data as mitmproxy's view `view` does ("auto" chooses as its auto
 * view does; NULL is "auto").  content_type is the Content-Type header's
 * value (NULL: none, as for WebSocket messages); query the request's query
 * string without '?' (NULL for responses), shown when the body is empty.
 * A view that cannot parse the data falls back to "Raw", as mitmproxy's
 * do.  out is reset first (max_lines kept); returns the name of the view
 * that rendered it ("JSON", "Raw", ...; "No content" for nothing). */
const char *contentview_render(const char *view, const char *content_type, const char *query, const char *data,
                               size_t len, cv_text *out);
void cv_text_free(cv_text *t);
/* Is name a view of mitmproxy's that --set dumper_default_contentview may
 * choose: 1 implemented, 0 mitmproxy's but not implemented, -1 unknown. */
int contentview_known(const char *name);

#endif
