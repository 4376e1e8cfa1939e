/* sink.h — where finished flows go: the console printer (dumper_filter),
 * the dump writer (-w) and the HAR writer (hardump) (save_stream_filter);
 * fail_on looks at every flow, filtered or not.  One sink per run, shared by every worker
 * (each consumer is thread-safe or locked here), and the run's totals that
 * the exit status and the summary line are made from. */
#ifndef MITMLUA_SINK_H
#define MITMLUA_SINK_H

#include <stdbool.h>
#include <stdio.h>

#include "flow.h"
#include "opts.h"

typedef struct sink sink;

/* Compile the filters and make the printer.  NULL with a one-line message
 * in err and the exit status in *status (2 for a bad filter or fail_on
 * expression: a usage error). */
sink *sink_new(const opts *o, int *status, char *err, size_t errsz);
/* Open the files the options ask for (-w, hardump): last of all start-up
 * steps, so that a run that cannot start leaves an existing file alone.
 * -1 with a one-line message in err. */
int sink_open(sink *s, const opts *o, char *err, size_t errsz);
/* A finished flow (answered, failed or killed): count it, check fail_on,
 * and hand it to the consumers the trailing filter lets it reach. */
void sink_flow(sink *s, const flow *f);
/* Does readfile_filter (the trailing filter's part for flows read from
 * files) select f: 1 yes (also without a filter), 0 no, -1 it could not
 * answer (a regex gave up; err says which).  -r uses it to choose which
 * flows are read, client replay which recorded flows to send. */
int sink_select(const sink *s, const flow *f, char *err, size_t errsz);
/* The trailing filter could not answer for some flow (shown and saved
 * anyway): the run's exit status says so. */
bool sink_filter_errors(const sink *s);
/* The "N flows, N errors, ..." line of a server run, to out. */
void sink_summary(const sink *s, FILE *out);
/* fail_on matched at least one flow. */
bool sink_failed_on(const sink *s);
/* Flush and close the outputs, free everything.  0, or -1 after printing
 * what went wrong (the dump or HAR file is incomplete). */
int sink_close(sink *s);

#endif
