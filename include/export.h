/* export.h — a flow's request as text to paste elsewhere: a curl command
 * line, quoted for POSIX shells. */
#ifndef MITMLUA_EXPORT_H
#define MITMLUA_EXPORT_H

#include "flow.h"

/* "curl -X POST -H 'name: value' ... --data-binary '...' 'URL'" with
 * --compressed left out (headers are sent as recorded).  Bodies that are
 * not text are written with $'\xNN' quoting.  NULL for a flow without a
 * request or on ENOMEM; caller frees. */
char *export_curl(const flow *f);

#endif
