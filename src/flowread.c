/* flowread.c — format detection by content.  The first bytes are read
 * (never sought back: stdin may be a pipe) and handed to the chosen reader
 * as the start of its input.
 *   "MITMLUA\0"            native dump
 *   digits then ':'        a tnetstring: mitmproxy flow file
 *   '{' (after BOM/space)  JSON: HAR */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "dump.h"
#include "flowread.h"
#include "har.h"
#include "mitmio.h"

struct flow_reader {
    flowread_format fmt;
    int fd, own_fd;
    dump_reader *dump;
    mitmio_reader *mitm;
    har_reader *har;
};

#define PEEK 64

flow_reader *flow_reader_open_fd(int fd, const char *name, char *err, size_t errsz)
{
    unsigned char pre[PEEK];
    size_t n = 0;
    /* read until enough to decide (a pipe may deliver one byte at a time) */
    while (n < PEEK) {
        ssize_t k = read(fd, pre + n, PEEK - n);
        if (k < 0 && errno == EINTR)
            continue;
        if (k < 0) {
            snprintf(err, errsz, "%s: %s", name, strerror(errno));
            return NULL;
        }
        if (k == 0)
            break;
        n += (size_t)k;
        size_t digits = 0;
        while (digits < n && pre[digits] >= '0' && pre[digits] <= '9')
            digits++;
        /* a tnetstring length prefix may run past the magic's 8 bytes */
        if (n >= DUMP_MAGIC_LEN && (digits < n || digits > 12))
            break;
    }
    flow_reader *r = calloc(1, sizeof *r);
    if (!r) {
        snprintf(err, errsz, "out of memory");
        return NULL;
    }
    r->fd = fd;
    size_t i = 0;
    if (n >= 3 && pre[0] == 0xef && pre[1] == 0xbb && pre[2] == 0xbf)
        i = 3; /* UTF-8 BOM, as some HAR exporters write */
    while (i < n && strchr(" \t\r\n", pre[i]))
        i++;
    size_t d = 0;
    while (d < n && d < 13 && pre[d] >= '0' && pre[d] <= '9')
        d++;
    if (n == 0 || (n <= DUMP_MAGIC_LEN && memcmp(pre, DUMP_MAGIC, n) == 0) ||
        (n >= DUMP_MAGIC_LEN && memcmp(pre, DUMP_MAGIC, DUMP_MAGIC_LEN) == 0)) {
        r->fmt = FLOWREAD_DUMP;
        r->dump = dump_reader_open_prefixed(fd, name, pre, n, err, errsz);
    } else if (d > 0 && d < n && pre[d] == ':') {
        r->fmt = FLOWREAD_MITMPROXY;
        r->mitm = mitmio_reader_open_prefixed(fd, name, pre, n, err, errsz);
    } else if (i < n && pre[i] == '{') {
        r->fmt = FLOWREAD_HAR;
        r->har = har_reader_open_prefixed(fd, name, pre, n, err, errsz);
    } else {
        snprintf(err, errsz, "%s: not a flow file (neither a mitmlua dump, a mitmproxy flow file nor HAR)",
                 name);
        free(r);
        return NULL;
    }
    if (!r->dump && !r->mitm && !r->har) {
        free(r);
        return NULL;
    }
    return r;
}

flow_reader *flow_reader_open(const char *path, char *err, size_t errsz)
{
    if (strcmp(path, "-") == 0)
        return flow_reader_open_fd(STDIN_FILENO, "<stdin>", err, errsz);
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        snprintf(err, errsz, "%s: %s", path, strerror(errno));
        return NULL;
    }
    flow_reader *r = flow_reader_open_fd(fd, path, err, errsz);
    if (!r) {
        close(fd);
        return NULL;
    }
    r->own_fd = 1;
    return r;
}

void flow_reader_set_limits(flow_reader *r, const flow_limits *lim)
{
    if (r->dump)
        dump_reader_set_limits(r->dump, lim);
    if (r->mitm)
        mitmio_reader_set_limits(r->mitm, lim);
    if (r->har)
        har_reader_set_limits(r->har, lim);
}

flowread_format flow_reader_format(const flow_reader *r)
{
    return r->fmt;
}

int flow_reader_next(flow_reader *r, flow **out, char *err, size_t errsz)
{
    switch (r->fmt) {
    case FLOWREAD_DUMP:
        return dump_reader_next(r->dump, out, err, errsz);
    case FLOWREAD_MITMPROXY:
        return mitmio_reader_next(r->mitm, out, err, errsz);
    case FLOWREAD_HAR:
        return har_reader_next(r->har, out, err, errsz);
    }
    return -1;
}

void flow_reader_close(flow_reader *r)
{
    if (!r)
        return;
    dump_reader_close(r->dump);
    mitmio_reader_close(r->mitm);
    har_reader_close(r->har);
    if (r->own_fd)
        close(r->fd);
    free(r);
}
