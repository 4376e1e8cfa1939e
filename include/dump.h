/* dump.h — mitmlua's native flow dump (see man/mitmlua-dump.5): a file
 * header, then CRC32C-checked blocks that carry one zstd stream of tagged
 * flow records.  The writer serialises on the caller's thread and compresses
 * and writes on its own thread; the reader is streaming (pipes work),
 * reports damage with a byte offset and can resynchronise after it. */
#ifndef MITMLUA_DUMP_H
#define MITMLUA_DUMP_H

#include <stddef.h>
#include <stdint.h>
#include "flow.h"

/* Format constants, documented in mitmlua-dump(5). */
#define DUMP_MAGIC "MITMLUA" /* 8 bytes with its NUL */
#define DUMP_MAGIC_LEN 8
#define DUMP_VERSION_MAJOR 1
#define DUMP_VERSION_MINOR 0
#define DUMP_FILE_HEADER_LEN 16
#define DUMP_BLOCK_HEADER_LEN 20
#define DUMP_BLOCK_NEWFRAME 0x01u  /* payload starts a new zstd frame */
#define DUMP_BLOCK_RECEND 0x02u    /* decompressed data ends on a record boundary */
#define DUMP_MAX_BLOCK ((uint32_t)64 << 20)
#define DUMP_REC_FLOW 1u

/* ---- writer ------------------------------------------------------------ */

typedef struct dump_writer dump_writer;

/* path: "FILE" truncates, "+FILE" appends (first cutting off any torn tail
 * a crash left), "-" = stdout.  Starts the writer thread. */
dump_writer *dump_writer_open(const char *path, char *err, size_t errsz);
/* Same on an open descriptor (not closed by dump_writer_close unless
 * own_fd); writes a file header first. */
dump_writer *dump_writer_open_fd(int fd, int own_fd, char *err, size_t errsz);

/* Thread-safe.  Serialises f on the calling thread (no compression, no
 * disk) and queues it for the writer thread, which writes it out within
 * milliseconds.  Flows are never dropped: when more than
 * DUMP_WRITER_QUEUE_MAX bytes are queued (the disk cannot keep up) the
 * caller waits until the writer has drained below it.  Returns 0; 1 when
 * the flow is not saved because a write failed earlier (disk full...):
 * the writer said so once, when it happened, and counts such flows for
 * dump_writer_close; -1 on ENOMEM. */
#define DUMP_WRITER_QUEUE_MAX ((size_t)64 << 20)
int dump_writer_add(dump_writer *w, const flow *f);

/* Counters, for tests and the benchmark. */
typedef struct dump_writer_stats {
    uint64_t flows, blocks, frames;
    uint64_t raw_bytes;     /* serialised records */
    uint64_t file_bytes;    /* written by this writer, headers included */
} dump_writer_stats;
void dump_writer_get_stats(dump_writer *w, dump_writer_stats *st);

/* Flush everything, end the zstd frame, join the thread, close, free.
 * 0, or -1 with err (a write failure at any time is reported here, with
 * the number of flows not saved: "dump FILE: write: No space left on
 * device; 12 flows not saved"). */
int dump_writer_close(dump_writer *w, char *err, size_t errsz);

/* ---- reader ------------------------------------------------------------ */

typedef struct dump_reader dump_reader;

/* Reads from fd (not closed by dump_reader_close).  `name` is used in
 * messages. */
dump_reader *dump_reader_open_fd(int fd, const char *name, char *err, size_t errsz);
/* Same, with `pre` (n bytes already read from fd, e.g. by format
 * detection) taken as the start of the input; fd may be -1 to read from
 * memory only. */
dump_reader *dump_reader_open_prefixed(int fd, const char *name, const void *pre,
                                       size_t n, char *err, size_t errsz);
/* Records larger than this are reported as damage (default 1 GiB). */
void dump_reader_set_max_record(dump_reader *r, size_t max);
/* A record whose flow passes these (default: flow_limits_default) is
 * refused, an error naming its offset, flow and the limit. */
void dump_reader_set_limits(dump_reader *r, const flow_limits *lim);

/* 1 = *out is a flow (caller flow_free), 0 = clean end of input, -1 =
 * damage or error: err says where (byte offset) and what.  After -1 the
 * caller may call again: the reader skips to the next point where a zstd
 * frame starts and goes on returning good flows (or 0 at the end); an
 * unsupported newer format version stays an error. */
int dump_reader_next(dump_reader *r, flow **out, char *err, size_t errsz);
void dump_reader_close(dump_reader *r);

/* ---- building blocks, shared with other modules and tests -------------- */

/* CRC32C (Castagnoli), RFC 3720 B.4: crc = dump_crc32c(0, p, n); chainable. */
uint32_t dump_crc32c(uint32_t crc, const void *p, size_t n);
/* One flow record (kind + length + tagged fields) appended to out. */
int dump_encode_flow(const flow *f, bytes *out);
/* Decode the fields of one flow record body, held to lim (NULL: the
 * defaults).  0, -1 with err when malformed, -2 with err when well formed
 * but over a limit. */
int dump_decode_flow(const void *p, size_t n, const flow_limits *lim, flow **out,
                     char *err, size_t errsz);

#endif
