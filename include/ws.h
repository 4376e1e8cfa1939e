/* ws.h — RFC 6455 WebSocket frames: a parser that turns the bytes of one
 * direction into complete messages (data messages reassembled from their
 * fragments, control frames handed out as they come, even in the middle of
 * a fragmented message) and a serializer for the other side.  It knows
 * nothing of sockets, flows or Lua.
 *
 * Extensions are not supported: the proxy removes Sec-WebSocket-Extensions
 * from the client's handshake (see ws_strip_extensions), so RSV bits are
 * always a protocol error here and hooks always see plain messages. */
#ifndef MITMLUA_WS_H
#define MITMLUA_WS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <event2/buffer.h>

#include "flow.h"

enum ws_opcode {
    WS_OP_CONT = 0x0,
    WS_OP_TEXT = 0x1,
    WS_OP_BINARY = 0x2,
    WS_OP_CLOSE = 0x8,
    WS_OP_PING = 0x9,
    WS_OP_PONG = 0xA,
};

/* Close codes the parser reports on bad input (RFC 6455 §7.4.1). */
enum ws_close {
    WS_CLOSE_NORMAL = 1000,
    WS_CLOSE_PROTOCOL = 1002,
    WS_CLOSE_INVALID_DATA = 1007,
    WS_CLOSE_TOO_BIG = 1009,
};

enum ws_result {
    WS_ERROR = -1, /* bad input: see ws_parser_error; the parser is finished */
    WS_MORE = 0,   /* no complete message yet: feed more bytes */
    WS_MESSAGE = 1 /* *msg holds a message */
};

typedef struct ws_msg {
    enum ws_opcode opcode; /* TEXT, BINARY, CLOSE, PING or PONG */
    bytes data;            /* payload, unmasked; the caller owns it */
} ws_msg;

typedef struct ws_parser ws_parser;

/* from_client: frames must be masked (client→server) or must not be
 * (server→client).  max_message bounds one reassembled message; 0 = none. */
ws_parser *ws_parser_new(bool from_client, uint64_t max_message);
void ws_parser_free(ws_parser *p);
/* Consume complete frames from `in` until a message is complete (moved into
 * *msg, whose earlier data is overwritten without being freed) or more bytes
 * are needed.  A partial frame stays in `in`. */
enum ws_result ws_parser_next(ws_parser *p, struct evbuffer *in, ws_msg *msg);
/* After WS_ERROR: the close code to send and a one-line reason. */
int ws_parser_error(const ws_parser *p, const char **reason);
/* true while a fragmented message is being reassembled */
bool ws_parser_in_message(const ws_parser *p);

/* One final frame (FIN set).  mask: a fresh random key (client→server).
 * 0, or -1 when out of memory or no random bytes. */
int ws_write_frame(struct evbuffer *out, enum ws_opcode op, const void *data, size_t n, bool mask);

/* A close payload: code + reason; parses one: 0, or -1 when malformed.  A
 * missing code (empty payload) reads as 1005, as RFC 6455 §7.1.5 says. */
bool ws_close_code_valid(int code);
int ws_parse_close(const void *data, size_t n, int *code, const char **reason, size_t *reason_len);

bool ws_utf8_valid(const void *data, size_t n);

/* The handshake: true when the request asks for a WebSocket upgrade. */
bool ws_is_upgrade_request(const hdrs *h);
/* true when a 101 response accepts one */
bool ws_is_upgrade_response(int status, const hdrs *h);
/* Remove the client's extension offers (permessage-deflate and anything
 * else) so that the server answers with plain frames. */
void ws_strip_extensions(hdrs *h);

#endif
