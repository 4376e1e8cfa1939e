/* fuzz_ws.c — the WebSocket frame parser on arbitrary bytes, in both
 * directions, fed in two chunks split at a point the input chooses: no
 * crash, leak or hang; every message respects the size limit; text is
 * valid UTF-8; each message re-serialized and parsed again comes back
 * identical. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "ws.h"

#define FUZZ_LIMIT 65536

static void reparse(const ws_msg *m, bool from_client)
{
    struct evbuffer *b = evbuffer_new();
    if (!b || ws_write_frame(b, m->opcode, m->data.p, m->data.len, from_client) < 0)
        abort();
    ws_parser *p = ws_parser_new(from_client, FUZZ_LIMIT);
    ws_msg m2 = {0};
    if (ws_parser_next(p, b, &m2) != WS_MESSAGE || m2.opcode != m->opcode ||
        m2.data.len != m->data.len || (m2.data.len && memcmp(m2.data.p, m->data.p, m2.data.len)))
        abort();
    bytes_free(&m2.data);
    ws_parser_free(p);
    evbuffer_free(b);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1)
        return 0;
    size_t split = data[0] % (size);
    for (int dir = 0; dir < 2; dir++) {
        ws_parser *p = ws_parser_new(dir == 0, FUZZ_LIMIT);
        struct evbuffer *in = evbuffer_new();
        evbuffer_add(in, data + 1, split);
        for (int part = 0; part < 2; part++) {
            if (part == 1)
                evbuffer_add(in, data + 1 + split, size - 1 - split);
            ws_msg m = {0};
            enum ws_result r;
            while ((r = ws_parser_next(p, in, &m)) == WS_MESSAGE) {
                if (m.data.len > FUZZ_LIMIT)
                    abort();
                if (m.opcode == WS_OP_TEXT && !ws_utf8_valid(m.data.p, m.data.len))
                    abort();
                reparse(&m, dir == 0);
                bytes_free(&m.data);
            }
            if (r == WS_ERROR)
                break;
        }
        evbuffer_free(in);
        ws_parser_free(p);
    }
    return 0;
}
