/* rfile.h — -r FILE: recorded flows through the hooks and into the sink,
 * as if they had just happened (mitmdump does the same). */
#ifndef MITMLUA_RFILE_H
#define MITMLUA_RFILE_H

#include "shared.h"

/* Read sh->o->rfile to its end (or until mitm.exit()).  0, or 1 after
 * printing why the file or a script could not be used. */
int rfile_run(shared *sh);

#endif
