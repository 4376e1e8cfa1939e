/* h2.h — HTTP/2 connections (nghttp2): bytes in, complete flow messages out,
 * and flow messages back into frames.  One h2_conn is one connection, either
 * the server side (facing a client: streams become flow_requests) or the
 * client side (facing a server: flow_requests become streams whose answers
 * are flow_responses).  Knows nothing of sockets, Lua or files: the caller
 * moves bytes with h2_conn_feed / h2_conn_flush. */
#ifndef MITMLUA_H2_H
#define MITMLUA_H2_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <event2/buffer.h>

#include "flow.h"

typedef struct h2_limits {
    /* Decoded header list size of one message, counted as RFC 9113 §6.5.2
     * does (name + value + 32 per field).  nghttp2 1.52 only limits the
     * compressed size, so we count.  Server side: a request over the limit
     * is answered 431; client side: the stream is reset. */
    size_t max_header_list;
    size_t max_headers;        /* fields per message */
    uint64_t max_body;         /* bytes per message body, 0 = unlimited */
    uint32_t max_streams;      /* SETTINGS_MAX_CONCURRENT_STREAMS we grant */
    uint32_t window;           /* per-stream receive window (SETTINGS_INITIAL_WINDOW_SIZE) */
} h2_limits;

/* Defaults: 64 KiB header list, 256 fields, no body limit, 100 streams,
 * 1 MiB windows. */
void h2_limits_default(h2_limits *l);

typedef struct h2_events {
    /* Server side: the request on stream `sid` is complete (END_STREAM);
     * the callee owns `r` and answers later with h2_submit_response. */
    void (*on_request)(void *ud, int32_t sid, flow_request *r);
    /* Client side: the final response on stream `sid` is complete; the
     * callee owns `s`.  Interim (1xx) responses are not reported. */
    void (*on_response)(void *ud, int32_t sid, flow_response *s);
    /* A message we refused before the caller saw it.  Server side: a
     * request (431, 413, 400 for a bad :authority), which the module
     * answers itself.  Client side: a response over a limit (status 502),
     * whose stream the module resets (CANCEL), or a malformed one, which
     * nghttp2 resets (PROTOCOL_ERROR).  Only a report, so the
     * caller may log it or fail its flow.  May be NULL. */
    void (*on_refused)(void *ud, int32_t sid, int status, const char *msg);
    /* Every stream that was opened ends here, once: `code` is 0 when it
     * closed normally, else the RST_STREAM / GOAWAY error code.  For a
     * stream whose message was handed over it is the caller's cue to
     * forget the stream id.  May be NULL. */
    void (*on_close)(void *ud, int32_t sid, uint32_t code);

    /* Client side, progressive delivery (each may be NULL; then the
     * response only arrives whole through on_response):
     * on_interim: a 1xx response head on `sid` (103 Early Hints, say);
     * `s` is freed after the call.
     * on_head: the final response head (status, headers, http_version
     * "HTTP/2.0") is complete.  Return 1 to take `s` now: it is the very
     * object on_response hands over later, and the module still adds the
     * body and trailers to it, so the caller keeps it alive until
     * on_response or on_close of `sid` (or frees the connection first).
     * Return 0 to leave it to the module.
     * on_data: body bytes of the final response.  Return 1 to take them:
     * they are not added to the response and their flow-control window
     * is only given back by h2_consume, so a caller that passes bytes on
     * to a slow reader can hold the server back.  Return 0 to let the
     * module keep them in the response (window given back at once).
     * None of these may free the connection: they run inside
     * h2_conn_feed. */
    void (*on_interim)(void *ud, int32_t sid, const flow_response *s);
    int (*on_head)(void *ud, int32_t sid, flow_response *s);
    int (*on_data)(void *ud, int32_t sid, const uint8_t *data, size_t n);
} h2_events;

typedef struct h2_conn h2_conn;

/* RFC 9113 §7 error codes the callers use. */
enum {
    H2_NO_ERROR = 0x0,
    H2_INTERNAL_ERROR = 0x2,
    H2_REFUSED_STREAM = 0x7,
    H2_CANCEL = 0x8,
};

/* `server` true: we face a client (we expect the connection preface).
 * The initial SETTINGS are queued at once: call h2_conn_flush. */
h2_conn *h2_conn_new(bool server, const h2_limits *lim, const h2_events *ev, void *ud);
void h2_conn_free(h2_conn *c);

/* Process received bytes.  0, or -1 when the connection is broken (bad
 * preface, protocol error, flood): h2_conn_error says why, and the
 * GOAWAY that says so to the peer is waiting in h2_conn_flush. */
int h2_conn_feed(h2_conn *c, const void *data, size_t n);
/* Append pending frames to `out` until its length reaches `max` (0 = no
 * bound); DATA frames are produced only as they fit, so a slow reader
 * holds back our output instead of growing our buffers.  0 or -1. */
int h2_conn_flush(h2_conn *c, struct evbuffer *out, size_t max);
/* true while the connection has anything left to read or write; false
 * after GOAWAY both ways with no active stream (the caller may close). */
bool h2_conn_alive(const h2_conn *c);
/* One-line reason for the last failure ("" when none). */
const char *h2_conn_error(const h2_conn *c);
/* Streams currently open. */
size_t h2_conn_streams(const h2_conn *c);

/* Server side: answer stream `sid`.  Connection-specific headers
 * (Connection and what it names, Keep-Alive, Proxy-Connection,
 * Transfer-Encoding, Upgrade) are dropped and names lower-cased; the body
 * and trailers are copied.  0, or -1 when the stream is gone or a field
 * cannot be sent as HTTP/2 (reason in h2_conn_error). */
int h2_submit_response(h2_conn *c, int32_t sid, const flow_response *s);
/* The same, but the body's memory goes to the stream instead of a copy:
 * s->content still points at it, for the caller to read, and the caller
 * must empty s->content (without freeing it) before it frees s.  A large
 * body a slow client does not read is then held once, not twice. */
int h2_submit_response_lent(h2_conn *c, int32_t sid, const flow_response *s);
/* Server side: an interim (1xx) response on stream `sid`, before the
 * final one (103 Early Hints, say).  0, or -1 when the stream is gone. */
int h2_submit_interim(h2_conn *c, int32_t sid, const flow_response *s);
/* Server side, for a body passed on as it arrives (stream_large_bodies):
 * send the head now, then body bytes with h2_stream_write and the end
 * (with trailers, or NULL) with h2_stream_end.  The bytes wait in the
 * stream until the client's flow-control window takes them:
 * h2_stream_pending says how many, so the caller can stop its source
 * while the client is slow.  Each 0, or -1 when the stream is gone. */
int h2_submit_response_head(h2_conn *c, int32_t sid, const flow_response *s);
int h2_stream_write(h2_conn *c, int32_t sid, const void *data, size_t n);
int h2_stream_end(h2_conn *c, int32_t sid, const hdrs *trailers);
size_t h2_stream_pending(const h2_conn *c, int32_t sid);
/* Client side: send a request; Host becomes :authority (else the
 * request's authority, else host[:port]) and, with the connection-specific
 * fields, is not sent as a field.  The new stream id, or -1 (reason in
 * h2_conn_error). */
int32_t h2_submit_request(h2_conn *c, const flow_request *r);
/* Client side: the caller has passed on `n` body bytes it took in
 * on_data; open the stream's and the connection's windows by that much. */
void h2_consume(h2_conn *c, int32_t sid, size_t n);
/* Client side: may another request go out on this connection?  false
 * once either side sent GOAWAY or the connection broke. */
bool h2_conn_can_request(const h2_conn *c);
/* RFC 9113 §7's name of an error code ("REFUSED_STREAM"), or "unknown". */
const char *h2_error_name(uint32_t code);
/* Reset a stream (RST_STREAM with an RFC 9113 error code).  A response
 * lent through on_head is the caller's alone from then on. */
int h2_reset_stream(h2_conn *c, int32_t sid, uint32_t code);
/* Graceful shutdown: GOAWAY with the last stream id; open streams finish. */
int h2_conn_shutdown(h2_conn *c);
/* Queue a PING (keep-alive: the peer's answer is all it takes). */
int h2_ping(h2_conn *c);

/* Does `data` start with the client connection preface ("PRI * HTTP/2.0")?
 * 1 yes, 0 cannot tell yet (a prefix of it), -1 no. */
int h2_preface_match(const void *data, size_t n);

#endif
