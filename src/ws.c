/* ws.c — RFC 6455 frame parsing and serializing (see ws.h). */
#include "ws.h"

#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <openssl/rand.h>

struct ws_parser {
    bool from_client;
    uint64_t max_message;
    bool in_message;          /* a fragmented data message is open */
    enum ws_opcode msg_op;    /* its opcode (TEXT or BINARY) */
    bytes msg;                /* its fragments so far */
    int err_code;
    const char *err_reason;
};

ws_parser *ws_parser_new(bool from_client, uint64_t max_message)
{
    ws_parser *p = calloc(1, sizeof *p);
    if (!p)
        return NULL;
    p->from_client = from_client;
    p->max_message = max_message;
    return p;
}

void ws_parser_free(ws_parser *p)
{
    if (!p)
        return;
    bytes_free(&p->msg);
    free(p);
}

int ws_parser_error(const ws_parser *p, const char **reason)
{
    if (reason)
        *reason = p->err_reason ? p->err_reason : "";
    return p->err_code;
}

bool ws_parser_in_message(const ws_parser *p)
{
    return p->in_message;
}

static enum ws_result fail(ws_parser *p, int code, const char *reason)
{
    p->err_code = code;
    p->err_reason = reason;
    bytes_free(&p->msg);
    p->in_message = false;
    return WS_ERROR;
}

/* UTF-8 as RFC 3629 defines it: no overlongs, no surrogates, ≤ U+10FFFF. */
bool ws_utf8_valid(const void *data, size_t n)
{
    const unsigned char *s = data;
    size_t i = 0;
    while (i < n) {
        unsigned char c = s[i];
        if (c < 0x80) {
            i++;
            continue;
        }
        size_t len;
        unsigned char lo = 0x80, hi = 0xBF; /* bounds of the second byte */
        if (c >= 0xC2 && c <= 0xDF) len = 2;
        else if (c == 0xE0) { len = 3; lo = 0xA0; }
        else if (c >= 0xE1 && c <= 0xEC) len = 3;
        else if (c == 0xED) { len = 3; hi = 0x9F; }
        else if (c >= 0xEE && c <= 0xEF) len = 3;
        else if (c == 0xF0) { len = 4; lo = 0x90; }
        else if (c >= 0xF1 && c <= 0xF3) len = 4;
        else if (c == 0xF4) { len = 4; hi = 0x8F; }
        else return false;
        if (n - i < len)
            return false;
        if (s[i + 1] < lo || s[i + 1] > hi)
            return false;
        for (size_t k = 2; k < len; k++)
            if ((s[i + k] & 0xC0) != 0x80)
                return false;
        i += len;
    }
    return true;
}

bool ws_close_code_valid(int code)
{
    if (code >= 3000 && code <= 4999)
        return true;
    switch (code) {
    case 1000: case 1001: case 1002: case 1003: case 1007: case 1008:
    case 1009: case 1010: case 1011: case 1012: case 1013: case 1014:
        return true;
    default:
        return false; /* 1004-1006 and 1015 must never be sent */
    }
}

int ws_parse_close(const void *data, size_t n, int *code, const char **reason, size_t *reason_len)
{
    const unsigned char *s = data;
    *reason = "";
    *reason_len = 0;
    if (n == 0) {
        *code = 1005;
        return 0;
    }
    if (n == 1)
        return -1;
    *code = (s[0] << 8) | s[1];
    if (!ws_close_code_valid(*code) || !ws_utf8_valid(s + 2, n - 2))
        return -1;
    *reason = (const char *)s + 2;
    *reason_len = n - 2;
    return 0;
}

static void unmask(unsigned char *p, size_t n, const unsigned char key[4])
{
    for (size_t i = 0; i < n; i++)
        p[i] ^= key[i & 3];
}

enum ws_result ws_parser_next(ws_parser *p, struct evbuffer *in, ws_msg *msg)
{
    if (p->err_code)
        return WS_ERROR;
    for (;;) {
        size_t avail = evbuffer_get_length(in);
        unsigned char h[14];
        if (avail < 2)
            return WS_MORE;
        evbuffer_copyout(in, h, avail < sizeof h ? avail : sizeof h);
        bool fin = h[0] & 0x80;
        int op = h[0] & 0x0F;
        bool masked = h[1] & 0x80;
        uint64_t len = h[1] & 0x7F;
        size_t hlen = 2;
        if (h[0] & 0x70)
            return fail(p, WS_CLOSE_PROTOCOL, "reserved bits set (no extension was negotiated)");
        if (op != WS_OP_CONT && op != WS_OP_TEXT && op != WS_OP_BINARY &&
            op != WS_OP_CLOSE && op != WS_OP_PING && op != WS_OP_PONG)
            return fail(p, WS_CLOSE_PROTOCOL, "unknown opcode");
        if (masked != p->from_client)
            return fail(p, WS_CLOSE_PROTOCOL, p->from_client ? "client frame not masked"
                                                             : "server frame masked");
        bool control = op & 0x8;
        if (control && (!fin || len > 125))
            return fail(p, WS_CLOSE_PROTOCOL, "fragmented or oversized control frame");
        if (len == 126) {
            if (avail < 4)
                return WS_MORE;
            len = ((uint64_t)h[2] << 8) | h[3];
            hlen = 4;
        } else if (len == 127) {
            if (avail < 10)
                return WS_MORE;
            len = 0;
            for (int i = 0; i < 8; i++)
                len = (len << 8) | h[2 + i];
            if (len >> 63)
                return fail(p, WS_CLOSE_PROTOCOL, "frame length has its top bit set");
            hlen = 10;
        }
        unsigned char key[4] = {0};
        if (masked) {
            if (avail < hlen + 4)
                return WS_MORE;
            memcpy(key, h + hlen, 4);
            hlen += 4;
        }
        if (!control) {
            if (op == WS_OP_CONT && !p->in_message)
                return fail(p, WS_CLOSE_PROTOCOL, "continuation frame without a message");
            if (op != WS_OP_CONT && p->in_message)
                return fail(p, WS_CLOSE_PROTOCOL, "new message inside a fragmented one");
            uint64_t sofar = op == WS_OP_CONT ? p->msg.len : 0;
            if (p->max_message && len > p->max_message - sofar)
                return fail(p, WS_CLOSE_TOO_BIG, "message larger than body_size_limit");
        }
        if ((uint64_t)avail - hlen < len)
            return WS_MORE; /* wait for the whole frame: its size is bounded above */
        evbuffer_drain(in, hlen);

        if (control) {
            bytes b = {0};
            unsigned char buf[125];
            evbuffer_remove(in, buf, (size_t)len);
            unmask(buf, (size_t)len, key);
            if (bytes_set(&b, buf, (size_t)len) < 0)
                return fail(p, WS_CLOSE_PROTOCOL, "out of memory");
            if (op == WS_OP_CLOSE) {
                int code;
                const char *r;
                size_t rl;
                if (ws_parse_close(b.p, b.len, &code, &r, &rl) < 0) {
                    bytes_free(&b);
                    return fail(p, WS_CLOSE_PROTOCOL, "invalid close frame");
                }
            }
            msg->opcode = op;
            msg->data = b;
            return WS_MESSAGE;
        }

        if (op != WS_OP_CONT) {
            p->in_message = true;
            p->msg_op = op;
            bytes_reset(&p->msg);
        }
        size_t at = p->msg.len;
        if (bytes_append(&p->msg, len ? evbuffer_pullup(in, (ssize_t)len) : NULL, (size_t)len) < 0)
            return fail(p, WS_CLOSE_TOO_BIG, "out of memory");
        evbuffer_drain(in, (size_t)len);
        unmask((unsigned char *)p->msg.p + at, (size_t)len, key);
        if (!fin)
            continue;
        p->in_message = false;
        if (p->msg_op == WS_OP_TEXT && !ws_utf8_valid(p->msg.p, p->msg.len))
            return fail(p, WS_CLOSE_INVALID_DATA, "text message is not valid UTF-8");
        msg->opcode = p->msg_op;
        msg->data = p->msg;
        memset(&p->msg, 0, sizeof p->msg);
        if (!msg->data.p && bytes_set(&msg->data, "", 0) < 0)
            return fail(p, WS_CLOSE_TOO_BIG, "out of memory");
        return WS_MESSAGE;
    }
}

int ws_write_frame(struct evbuffer *out, enum ws_opcode op, const void *data, size_t n, bool mask)
{
    unsigned char h[14];
    size_t hl = 2;
    h[0] = 0x80 | (unsigned char)op;
    if (n < 126) {
        h[1] = (unsigned char)n;
    } else if (n <= 0xFFFF) {
        h[1] = 126;
        h[2] = (unsigned char)(n >> 8);
        h[3] = (unsigned char)n;
        hl = 4;
    } else {
        h[1] = 127;
        for (int i = 0; i < 8; i++)
            h[2 + i] = (unsigned char)((uint64_t)n >> (56 - 8 * i));
        hl = 10;
    }
    if (!mask)
        return (evbuffer_add(out, h, hl) < 0 || (n && evbuffer_add(out, data, n) < 0)) ? -1 : 0;
    unsigned char key[4];
    if (RAND_bytes(key, sizeof key) != 1)
        return -1;
    h[1] |= 0x80;
    memcpy(h + hl, key, 4);
    hl += 4;
    unsigned char *buf = malloc(n ? n : 1);
    if (!buf)
        return -1;
    if (n)
        memcpy(buf, data, n);
    unmask(buf, n, key);
    int rc = (evbuffer_add(out, h, hl) < 0 || (n && evbuffer_add(out, buf, n) < 0)) ? -1 : 0;
    free(buf);
    return rc;
}

bool ws_is_upgrade_request(const hdrs *h)
{
    return hdrs_has_token(h, "connection", "upgrade") && hdrs_has_token(h, "upgrade", "websocket");
}

bool ws_is_upgrade_response(int status, const hdrs *h)
{
    return status == 101 && hdrs_has_token(h, "upgrade", "websocket");
}

void ws_strip_extensions(hdrs *h)
{
    hdrs_remove(h, "sec-websocket-extensions");
}
