/* h2_pump.h — for the HTTP/2 round-trip targets: move what one side of a
 * pair of h2.c connections has to send into the other. */
#ifndef MITMLUA_FUZZ_H2_PUMP_H
#define MITMLUA_FUZZ_H2_PUMP_H

#include <event2/buffer.h>

#include "h2.h"

static void pump(h2_conn *from, h2_conn *to, struct evbuffer *b)
{
    h2_conn_flush(from, b, 0);
    size_t n = evbuffer_get_length(b);
    if (n)
        h2_conn_feed(to, evbuffer_pullup(b, -1), n);
    evbuffer_drain(b, n);
}

#endif
