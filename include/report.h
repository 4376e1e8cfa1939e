/* report.h — one self-contained HTML page of a recording (--set
 * report=FILE), for a person opening a CI job's artifacts: a summary, a
 * waterfall, a table per host and every flow, searchable, with its details.
 * Flows are streamed as escaped JSON lines to an unlinked temporary file
 * while the run goes on (memory stays flat whatever the number of flows);
 * the page is assembled at close around the template in report/. */
#ifndef MITMLUA_REPORT_H
#define MITMLUA_REPORT_H

#include <stddef.h>
#include "flow.h"

/* Largest body (decoded) kept in the page; longer ones are cut, and the
 * page says so with their size (--set report_body_limit). */
#define REPORT_DEFAULT_BODY_LIMIT ((size_t)32 * 1024)

typedef struct report_writer report_writer;

/* What the page says about how it was made; any field may be NULL. */
typedef struct report_info {
    const char *filter;     /* the trailing filter expression */
    const char *fail_on;    /* --set fail_on */
} report_info;

/* Opens (truncates) path at once, so a run that cannot write it fails at
 * start.  body_limit 0 = no limit (REPORT_DEFAULT_BODY_LIMIT is the
 * option's default).  NULL with a line in
 * err.  Not thread-safe: one owner at a time. */
report_writer *report_writer_open(const char *path, size_t body_limit, const report_info *info,
                                  char *err, size_t errsz);
/* fail_on: 0 did not match, 1 matched, -1 could not answer (marked too). */
int report_writer_add(report_writer *w, const flow *f, int fail_on, char *err, size_t errsz);
/* Writes the page and frees w (also on error). */
int report_writer_close(report_writer *w, char *err, size_t errsz);

/* One flow as the page's compact JSON record, not yet escaped; body_limit
 * 0 = REPORT_DEFAULT_BODY_LIMIT.  Caller frees; NULL on ENOMEM. */
char *report_flow_json(const flow *f, size_t body_limit, int fail_on);
/* Appends JSON text to out with '<', '>', '&', U+2028 and U+2029 written
 * as \uXXXX: the result can sit inside <script type="application/json">
 * (no "</script>", no "<!--") and is still the same JSON.  Only valid
 * where those characters can occur, inside strings: true of all JSON
 * text.  0 or -1 (ENOMEM). */
int report_json_escape(const char *in, size_t n, bytes *out);

#endif
