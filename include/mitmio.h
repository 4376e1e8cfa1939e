/* mitmio.h — reads mitmproxy's flow files (the tnetstring stream that
 * `mitmdump -w` writes; flow format versions of mitmproxy 7 to 11) into
 * flow.h flows.  Streaming, so pipes work.  mitmout.h writes the format. */
#ifndef MITMLUA_MITMIO_H
#define MITMLUA_MITMIO_H

#include <stddef.h>
#include "flow.h"

typedef struct mitmio_reader mitmio_reader;

/* fd is not closed by mitmio_reader_close; name is used in messages. */
mitmio_reader *mitmio_reader_open_fd(int fd, const char *name, char *err, size_t errsz);
/* Same, with n bytes already read from fd (format detection) taken as the
 * start of the input; fd = -1 reads from memory only. */
mitmio_reader *mitmio_reader_open_prefixed(int fd, const char *name, const void *pre,
                                           size_t n, char *err, size_t errsz);
/* Flows larger than this are refused (default 1 GiB). */
void mitmio_reader_set_max_flow(mitmio_reader *r, size_t max);
/* Flows over these limits (default flow_limits_default) are refused with
 * an error naming the flow and the limit; reading goes on after them. */
void mitmio_reader_set_limits(mitmio_reader *r, const flow_limits *lim);

/* 1 = *out is a flow (caller flow_free), 0 = end of input, -1 = error with
 * the byte offset in err.  After a flow that is well-formed tnetstring but
 * not a usable flow, the next call goes on with the next one; after damage
 * to the tnetstring framing itself (which has no sync marker) the next call
 * returns 0.  DNS flows (mitmproxy >= 9) have no flow.h form and are
 * skipped.  TCP flows become FLOW_TCP with their messages in ws_msgs. */
int mitmio_reader_next(mitmio_reader *r, flow **out, char *err, size_t errsz);
void mitmio_reader_close(mitmio_reader *r);

#endif
