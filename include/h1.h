/* h1.h — HTTP/1.x messages: a strict incremental parser (llhttp for framing,
 * our own byte-level check of every header section, because Debian's llhttp
 * 8.1 accepts obs-fold, bare CR and bare LF) and the serialiser that turns a
 * flow message back into bytes.  Knows nothing of sockets, Lua or files. */
#ifndef MITMLUA_H1_H
#define MITMLUA_H1_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <event2/buffer.h>

#include "flow.h"

typedef struct h1_limits {
    size_t max_head;        /* bytes in the start line + header section */
    size_t max_headers;     /* header fields */
    uint64_t max_body;      /* 0 = unlimited */
} h1_limits;

typedef struct h1_events {
    /* The head is complete and valid; the message's head fields are filled.
     * Return 0 to go on, -1 to stop (the parser then reports H1_ERROR). */
    int (*on_head)(void *ud);
    /* De-chunked body bytes. */
    int (*on_body)(void *ud, const char *at, size_t n);
} h1_events;

enum h1_status {
    H1_NEED_MORE = 0,  /* all input consumed, message not complete */
    H1_DONE = 1,       /* one message complete; unparsed bytes stay in the buffer */
    H1_ERROR = -1,     /* see h1_parser_error() / h1_parser_error_status() */
};

typedef struct h1_parser h1_parser;

h1_parser *h1_parser_new_request(const h1_limits *lim, const h1_events *ev, void *ud);
h1_parser *h1_parser_new_response(const h1_limits *lim, const h1_events *ev, void *ud);
void h1_parser_free(h1_parser *p);

/* Start the next message, filled into `r` (request parser) or `s` (response
 * parser); the parser does not own it.  For a response, `no_body` says the
 * request was HEAD (or a CONNECT answered 2xx), so no body follows. */
void h1_parser_begin_request(h1_parser *p, flow_request *r);
void h1_parser_begin_response(h1_parser *p, flow_response *s, bool no_body);

/* Parse from `in`, draining what was consumed. */
enum h1_status h1_parser_feed(h1_parser *p, struct evbuffer *in);
/* The peer closed: completes a close-delimited body.  H1_DONE, or H1_ERROR
 * when the message was cut short. */
enum h1_status h1_parser_eof(h1_parser *p);

/* After H1_DONE: may the connection carry another message? */
bool h1_parser_keep_alive(const h1_parser *p);
/* After H1_DONE: the message asked for a protocol switch (CONNECT, Upgrade,
 * or a 101 response); bytes after it are not HTTP/1. */
bool h1_parser_upgrade(const h1_parser *p);
/* The message's body was chunked / close-delimited (for re-serialising). */
bool h1_parser_chunked(const h1_parser *p);
bool h1_parser_started(const h1_parser *p);  /* any byte of a message seen */
/* After H1_ERROR: a one-line reason and the status to answer a request with
 * (400, 413, 431, 501, 505). */
const char *h1_parser_error(const h1_parser *p);
int h1_parser_error_status(const h1_parser *p);

/* ---- serialising ------------------------------------------------------- */

/* Request head.  `absolute` writes the absolute-form target (to an upstream
 * proxy); otherwise origin-form. */
int h1_write_request_head(struct evbuffer *out, const flow_request *r, bool absolute);
int h1_write_response_head(struct evbuffer *out, const flow_response *s);
/* Head and raw body together: in one evbuffer call when the two come to at
 * most H1_COALESCE_MAX bytes (one chain; over TLS one record, not two),
 * else as h1_write_response_head and h1_write_body. */
#define H1_COALESCE_MAX 4096
int h1_write_response(struct evbuffer *out, const flow_response *s, const bytes *body);
/* Body: chunked (one chunk, terminator, trailers) or raw. */
int h1_write_body(struct evbuffer *out, const bytes *body, bool chunked, const hdrs *trailers);

/* The message's Transfer-Encoding includes chunked. */
bool h1_is_chunked(const hdrs *h);
/* Make Content-Length describe a body of `len` bytes (a hook may have
 * changed it), unless the message is chunked.  Without `always`, a message
 * with no Content-Length and no body is left alone.  0 or -1 (ENOMEM). */
int h1_fix_length(hdrs *h, size_t len, bool always);

/* Validate a header name / value that came from somewhere other than the
 * parser (a script, a dump file) before it is written as HTTP/1. */
bool h1_valid_name(const char *s, size_t n);
bool h1_valid_value(const char *s, size_t n);

/* Reason phrase for a status code ("Bad Gateway"), "" when unknown. */
const char *h1_reason(int status);

#endif
