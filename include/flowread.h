/* flowread.h — one reader for every flow file mitmlua accepts: the native
 * dump, mitmproxy's flow files and HAR, told apart by their first bytes
 * (no seeking, so `-` = stdin and pipes work). */
#ifndef MITMLUA_FLOWREAD_H
#define MITMLUA_FLOWREAD_H

#include <stddef.h>
#include "flow.h"

typedef enum flowread_format {
    FLOWREAD_DUMP,
    FLOWREAD_MITMPROXY,
    FLOWREAD_HAR,
} flowread_format;

typedef struct flow_reader flow_reader;

/* path "-" = stdin.  NULL with err when the file cannot be opened or is
 * none of the formats. An empty input is a native dump with no flows. */
flow_reader *flow_reader_open(const char *path, char *err, size_t errsz);
/* Same on an open descriptor (not closed by flow_reader_close). */
flow_reader *flow_reader_open_fd(int fd, const char *name, char *err, size_t errsz);
flowread_format flow_reader_format(const flow_reader *r);
/* Every flow is held to lim (default: flow_limits_default, the defaults
 * of max_headers, max_header_size and body_size_limit): one over a limit
 * is refused, -1 from flow_reader_next with an error naming it. */
void flow_reader_set_limits(flow_reader *r, const flow_limits *lim);
/* The conventions of dump_reader_next: 1 = flow, 0 = end, -1 = damage with
 * where and what in err; calling again after -1 goes on where the format
 * allows it. */
int flow_reader_next(flow_reader *r, flow **out, char *err, size_t errsz);
void flow_reader_close(flow_reader *r);

#endif
