/* outfile.h — the file a writer of recordings (HAR, report) writes to:
 * "-" is standard output, anything else a new file only its owner can
 * read (recordings hold credentials and cookies). */
#ifndef MITMLUA_OUTFILE_H
#define MITMLUA_OUTFILE_H

#include <stdio.h>

/* Open path for writing (truncated, mode 0600), or stdout for "-".
 * NULL with "path: reason" in err. */
FILE *outfile_open(const char *path, char *err, size_t errsz);

#endif
