/* bevbulk.h — socket bufferevents move data in large pieces.
 *
 * libevent 2.1 reads a socket at most 4 KB at a time (EVBUFFER_MAX_READ),
 * whatever the bufferevent's read limits say: a 1 MB body is some 256
 * readv calls, as many FIONREAD ioctls and loop turns, and a window update
 * to the sender after each small read.  bevbulk watches the bufferevent's
 * input: when a read of libevent's filled its 4 KB (so the socket likely
 * holds more), it reads what the socket has at once, up to the
 * bufferevent's read high-watermark (BEVBULK_MAX without one), before the
 * read callback runs.  It reads only what FIONREAD reports, so it never
 * sees an end of file: an EOF or an error is left to libevent's next read,
 * which reports it as usual.  Nothing is read while reading is disabled.
 *
 * Writes: libevent writes at most 16 KB per loop turn once it does the
 * writing (a slow reader, or a TLS connection's wire); bevbulk raises that
 * to BEVBULK_MAX.
 *
 * Works as well on the socket under a TLS filter.  Its only state is the
 * bufferevent itself: nothing to detach, the callback goes with the input
 * buffer when the bufferevent is freed. */
#ifndef MITMLUA_BEVBULK_H
#define MITMLUA_BEVBULK_H

#include <event2/bufferevent.h>

/* What one wake-up may read past libevent's 4 KB without a watermark, and
 * what libevent may write in one go. */
#define BEVBULK_MAX (256 * 1024)

/* Move bev's data in large pieces from now on.  0, or -1 (out of memory:
 * libevent's 4 KB reads go on, nothing else changes). */
int bevbulk_attach(struct bufferevent *bev);

#endif
