/* mitmout.h — mitmproxy's flow format out: each flow as the tnetstring
 * dict of mitmproxy 8.1.1's get_state() (flow format version 17), which
 * mitmproxy, mitmdump and mitmweb 8 and later read (later versions migrate
 * it).  `-w FILE.mitm` or `--set save_format=mitmproxy` choose it. */
#ifndef MITMLUA_MITMOUT_H
#define MITMLUA_MITMOUT_H

#include <stdbool.h>
#include "flow.h"

#define MITMOUT_VERSION 17

/* Append f's encoding to out.  0, or -1 (out of memory; out may hold part
 * of it: the caller drops it). */
int mitmout_encode(const flow *f, bytes *out);

typedef struct mitmout_writer mitmout_writer;

/* path as -w takes it: "+FILE" appends, "-" is standard output.  NULL with
 * a one-line message in err. */
mitmout_writer *mitmout_open(const char *path, char *err, size_t errsz);
/* Thread-safe; each flow is written and flushed at once.  -1 after a write
 * error (reported again, with the reason, by mitmout_close). */
int mitmout_add(mitmout_writer *w, const flow *f);
/* 0, or -1 with err when any write failed. */
int mitmout_close(mitmout_writer *w, char *err, size_t errsz);
/* Does this -w path name mitmproxy's format when save_format is unset
 * (a ".mitm" suffix)? */
bool mitmout_path_wants(const char *path);

#endif
