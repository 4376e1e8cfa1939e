/* Unit tests for the WebSocket frame parser and serializer: round trips,
 * reassembly with interleaved control frames, byte-at-a-time input, and
 * every validation rule that turns bad input into a close code. */
#include "ws.h"
#include "t.h"

/* A frame by hand: fin, opcode, payload, masked with key 0x01020304. */
static void frame(struct evbuffer *b, bool fin, int op, const char *data, size_t n, bool mask, int rsv)
{
    unsigned char h[14];
    size_t hl = 2;
    h[0] = (unsigned char)((fin ? 0x80 : 0) | (rsv << 4) | op);
    if (n < 126) {
        h[1] = (unsigned char)n;
    } else if (n <= 0xFFFF) {
        h[1] = 126; h[2] = (unsigned char)(n >> 8); h[3] = (unsigned char)n; hl = 4;
    } else {
        h[1] = 127;
        for (int i = 0; i < 8; i++)
            h[2 + i] = (unsigned char)((uint64_t)n >> (56 - 8 * i));
        hl = 10;
    }
    unsigned char key[4] = {1, 2, 3, 4};
    if (mask) {
        h[1] |= 0x80;
        memcpy(h + hl, key, 4);
        hl += 4;
    }
    evbuffer_add(b, h, hl);
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)data[i] ^ (mask ? key[i & 3] : 0);
        evbuffer_add(b, &c, 1);
    }
}

/* Feed `in` to a fresh parser; the first result and message. */
static enum ws_result parse1(struct evbuffer *in, bool from_client, uint64_t max, ws_msg *m, int *code)
{
    ws_parser *p = ws_parser_new(from_client, max);
    enum ws_result r = ws_parser_next(p, in, m);
    if (code)
        *code = r == WS_ERROR ? ws_parser_error(p, NULL) : 0;
    ws_parser_free(p);
    return r;
}

static void roundtrip(void)
{
    size_t sizes[] = {0, 5, 125, 126, 65535, 65536, 200000};
    for (int masked = 0; masked < 2; masked++) {
        for (size_t i = 0; i < sizeof sizes / sizeof *sizes; i++) {
            size_t n = sizes[i];
            char *d = malloc(n + 1);
            for (size_t k = 0; k < n; k++)
                d[k] = (char)('a' + k % 26);
            struct evbuffer *b = evbuffer_new();
            T_CHECK(ws_write_frame(b, WS_OP_BINARY, d, n, masked) == 0);
            ws_msg m = {0};
            T_CHECK(parse1(b, masked, 0, &m, NULL) == WS_MESSAGE);
            T_CHECK(m.opcode == WS_OP_BINARY);
            T_CHECK(m.data.len == n && (n == 0 || memcmp(m.data.p, d, n) == 0));
            T_CHECK(evbuffer_get_length(b) == 0);
            bytes_free(&m.data);
            evbuffer_free(b);
            free(d);
        }
    }
}

static void fragments_with_control_between(void)
{
    struct evbuffer *b = evbuffer_new();
    frame(b, false, WS_OP_TEXT, "Hel", 3, true, 0);
    frame(b, true, WS_OP_PING, "p!", 2, true, 0);
    frame(b, false, WS_OP_CONT, "lo ", 3, true, 0);
    frame(b, true, WS_OP_CONT, "w\xc3\xb6rld", 6, true, 0);
    ws_parser *p = ws_parser_new(true, 0);
    ws_msg m = {0};
    T_CHECK(ws_parser_next(p, b, &m) == WS_MESSAGE);
    T_CHECK(m.opcode == WS_OP_PING && m.data.len == 2 && !memcmp(m.data.p, "p!", 2));
    T_CHECK(ws_parser_in_message(p));
    bytes_free(&m.data);
    T_CHECK(ws_parser_next(p, b, &m) == WS_MESSAGE);
    T_CHECK(m.opcode == WS_OP_TEXT);
    T_STREQ(m.data.p, "Hello w\xc3\xb6rld");
    bytes_free(&m.data);
    T_CHECK(ws_parser_next(p, b, &m) == WS_MORE);
    ws_parser_free(p);
    evbuffer_free(b);
}

static void byte_at_a_time(void)
{
    struct evbuffer *all = evbuffer_new(), *in = evbuffer_new();
    frame(all, false, WS_OP_BINARY, "abc", 3, true, 0);
    char big[300];
    memset(big, 'x', sizeof big);
    frame(all, true, WS_OP_CONT, big, sizeof big, true, 0);
    frame(all, true, WS_OP_CLOSE, "\x03\xe8" "bye", 5, true, 0);
    ws_parser *p = ws_parser_new(true, 0);
    ws_msg m = {0};
    int got = 0;
    unsigned char c;
    while (evbuffer_remove(all, &c, 1) == 1) {
        evbuffer_add(in, &c, 1);
        enum ws_result r;
        while ((r = ws_parser_next(p, in, &m)) == WS_MESSAGE) {
            if (got == 0)
                T_CHECK(m.opcode == WS_OP_BINARY && m.data.len == 303 && m.data.p[3] == 'x');
            else
                T_CHECK(m.opcode == WS_OP_CLOSE && m.data.len == 5);
            got++;
            bytes_free(&m.data);
        }
        T_CHECK(r == WS_MORE);
    }
    T_CHECK(got == 2);
    ws_parser_free(p);
    evbuffer_free(all);
    evbuffer_free(in);
}

/* Each case: one bad frame sequence and the close code it must produce. */
static void validation(void)
{
    struct { const char *name; int code; bool from_client; } cases[] = {
        {"unmasked client frame", 1002, true},
        {"masked server frame", 1002, false},
        {"rsv bit", 1002, true},
        {"unknown opcode", 1002, true},
        {"long control", 1002, true},
        {"fragmented control", 1002, true},
        {"orphan continuation", 1002, true},
        {"message inside message", 1002, true},
        {"bad utf8", 1007, true},
        {"surrogate utf8", 1007, true},
        {"overlong utf8", 1007, true},
        {"too big one frame", 1009, true},
        {"too big fragments", 1009, true},
        {"close 1 byte", 1002, true},
        {"close code 1005", 1002, true},
        {"close code 999", 1002, true},
        {"close reason not utf8", 1002, true},
        {"64-bit length top bit", 1002, true},
    };
    char big[130];
    memset(big, 'x', sizeof big);
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        struct evbuffer *b = evbuffer_new();
        switch (i) {
        case 0: frame(b, true, WS_OP_TEXT, "a", 1, false, 0); break;
        case 1: frame(b, true, WS_OP_TEXT, "a", 1, true, 0); break;
        case 2: frame(b, true, WS_OP_TEXT, "a", 1, true, 4); break;
        case 3: frame(b, true, 3, "a", 1, true, 0); break;
        case 4: frame(b, true, WS_OP_PING, big, 126, true, 0); break;
        case 5: frame(b, false, WS_OP_PING, "a", 1, true, 0); break;
        case 6: frame(b, true, WS_OP_CONT, "a", 1, true, 0); break;
        case 7: frame(b, false, WS_OP_TEXT, "a", 1, true, 0); frame(b, true, WS_OP_TEXT, "b", 1, true, 0); break;
        case 8: frame(b, true, WS_OP_TEXT, "\xff", 1, true, 0); break;
        case 9: frame(b, true, WS_OP_TEXT, "\xed\xa0\x80", 3, true, 0); break;
        case 10: frame(b, true, WS_OP_TEXT, "\xc0\xaf", 2, true, 0); break;
        case 11: frame(b, true, WS_OP_BINARY, big, 101, true, 0); break;
        case 12: frame(b, false, WS_OP_BINARY, big, 60, true, 0); frame(b, true, WS_OP_CONT, big, 60, true, 0); break;
        case 13: frame(b, true, WS_OP_CLOSE, "\x03", 1, true, 0); break;
        case 14: frame(b, true, WS_OP_CLOSE, "\x03\xed", 2, true, 0); break;
        case 15: frame(b, true, WS_OP_CLOSE, "\x03\xe7", 2, true, 0); break;
        case 16: frame(b, true, WS_OP_CLOSE, "\x03\xe8\xff", 3, true, 0); break;
        case 17: evbuffer_add(b, "\x82\xff\x80\0\0\0\0\0\0\0", 10); break;
        }
        ws_msg m = {0};
        int code = 0;
        enum ws_result r = parse1(b, cases[i].from_client, 100, &m, &code);
        if (r != WS_ERROR || code != cases[i].code)
            fprintf(stderr, "  case '%s': result %d code %d\n", cases[i].name, r, code);
        T_CHECK(r == WS_ERROR && code == cases[i].code);
        if (r == WS_MESSAGE)
            bytes_free(&m.data);
        evbuffer_free(b);
    }
}

/* A frame that announces a huge length is refused from its header alone,
 * before any of its payload is buffered. */
static void huge_length_refused_early(void)
{
    struct evbuffer *b = evbuffer_new();
    evbuffer_add(b, "\x82\xff\x00\x00\x00\x01\x00\x00\x00\x00" "abcd", 14);
    ws_msg m = {0};
    int code = 0;
    T_CHECK(parse1(b, true, 1 << 20, &m, &code) == WS_ERROR && code == 1009);
    evbuffer_free(b);
}

static void close_payloads(void)
{
    int code;
    const char *r;
    size_t rl;
    T_CHECK(ws_parse_close("", 0, &code, &r, &rl) == 0 && code == 1005);
    T_CHECK(ws_parse_close("\x0f\xa0" "why", 5, &code, &r, &rl) == 0 && code == 4000 && rl == 3 &&
            !memcmp(r, "why", 3));
    T_CHECK(ws_close_code_valid(1000) && ws_close_code_valid(3000) && !ws_close_code_valid(1006) &&
            !ws_close_code_valid(5000) && !ws_close_code_valid(1015));
}

static void handshake_headers(void)
{
    hdrs h = {0};
    hdrs_add(&h, "Connection", 10, "keep-alive, Upgrade", 19);
    hdrs_add(&h, "Upgrade", 7, "websocket", 9);
    hdrs_add(&h, "Sec-WebSocket-Extensions", 24, "permessage-deflate; client_max_window_bits", 42);
    T_CHECK(ws_is_upgrade_request(&h));
    ws_strip_extensions(&h);
    T_CHECK(hdrs_get(&h, "sec-websocket-extensions", NULL) == NULL);
    T_CHECK(ws_is_upgrade_response(101, &h) && !ws_is_upgrade_response(200, &h));
    hdrs_free(&h);
    hdrs_add(&h, "Upgrade", 7, "h2c", 3);
    T_CHECK(!ws_is_upgrade_request(&h) && !ws_is_upgrade_response(101, &h));
    hdrs_free(&h);
}

int main(void)
{
    T_RUN(roundtrip);
    T_RUN(fragments_with_control_between);
    T_RUN(byte_at_a_time);
    T_RUN(validation);
    T_RUN(huge_length_refused_early);
    T_RUN(close_payloads);
    T_RUN(handshake_headers);
    T_DONE();
}
