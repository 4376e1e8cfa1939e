/* har.h — HTTP Archive (HAR 1.2, what browsers' devtools import and
 * export) out and in.  The writer streams entries (memory stays flat); the
 * reader parses the document with jansson and hands out one flow per entry
 * with the same conventions as the dump reader. */
#ifndef MITMLUA_HAR_H
#define MITMLUA_HAR_H

#include <stddef.h>
#include "flow.h"

typedef struct har_writer har_writer;

/* path "-" = stdout.  Writes the log header at once, entries as added, the
 * closing brackets at close.  Not thread-safe: one owner. */
har_writer *har_writer_open(const char *path, char *err, size_t errsz);
/* Flows without a request (TCP) are skipped (HAR has no form for them);
 * closing warns with their count. */
int har_writer_add(har_writer *w, const flow *f, char *err, size_t errsz);
int har_writer_close(har_writer *w, char *err, size_t errsz);

/* The whole job at once. */
int har_write_file(const char *path, flow **flows, size_t n, char *err, size_t errsz);

/* One HAR entry object as compact JSON text (caller frees), or NULL. */
char *har_entry_json(const flow *f);

typedef struct har_reader har_reader;
/* Reads all of fd (HAR is one JSON document), after the n bytes of `pre`.
 * fd = -1 reads from memory only.  Errors (not JSON, no log.entries) are
 * reported by the first har_reader_next. */
har_reader *har_reader_open_prefixed(int fd, const char *name, const void *pre, size_t n,
                                     char *err, size_t errsz);
har_reader *har_reader_open_fd(int fd, const char *name, char *err, size_t errsz);
/* 1 = *out is a flow, 0 = no more entries, -1 = this entry (or the whole
 * document) is unusable; after an entry error the next call goes on. */
int har_reader_next(har_reader *r, flow **out, char *err, size_t errsz);
void har_reader_close(har_reader *r);
/* Entries over these limits (default flow_limits_default) are refused
 * with an error naming the entry and the limit. */
void har_reader_set_limits(har_reader *r, const flow_limits *lim);

#endif
