/* replaycmp.h — compare a replayed response with the recorded one and say
 * how they differ in a few human lines (client_replay_compare).
 *
 * Three levels, each including the ones before: status; headers (names and
 * values, except those that change on every response or only describe the
 * transport: Date, Expires, Last-Modified, Age, Set-Cookie, Server-Timing,
 * Content-Length, Transfer-Encoding, Connection, Keep-Alive, and whatever
 * the caller adds); body (decoded per Content-Encoding, so gzip against
 * identity is no difference; compared structurally when both sides are
 * JSON, leaving out the dotted paths the caller names, `*` matching any one
 * key or index).  Pure functions; safe from any thread. */
#ifndef MITMLUA_REPLAYCMP_H
#define MITMLUA_REPLAYCMP_H

#include <stddef.h>

#include "flow.h"

typedef enum replaycmp_mode {
    REPLAYCMP_STATUS = 1,
    REPLAYCMP_HEADERS = 2,
    REPLAYCMP_BODY = 3,
} replaycmp_mode;

typedef struct replaycmp_opts {
    replaycmp_mode mode;
    char *const *ignore_headers;     /* case-insensitive names */
    size_t nignore_headers;
    char *const *ignore_json;        /* dotted paths: "data.updated_at", "items.*.id" */
    size_t nignore_json;
    size_t max_lines;                /* lines of diff at most (0 = 8) */
} replaycmp_opts;

/* "status", "headers" or "body".  0, or -1 when s is none of them. */
int replaycmp_parse_mode(const char *s, replaycmp_mode *out);

/* 0 when the responses agree at o->mode, 1 when they differ: then `diff`
 * holds one line per difference ("status: 200 -> 500", "header x-a: 'b'
 * -> 'c'", "body: items.2.name: \"x\" -> \"y\""), newline-terminated,
 * at most max_lines plus a "... N more" line.  -1 on ENOMEM. */
int replaycmp_compare(const replaycmp_opts *o, const flow_response *recorded, const flow_response *replayed,
                      bytes *diff);

#endif
