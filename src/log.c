/* log.c — see log.h.  The level is written once before threads start and
 * only read afterwards, so it needs no lock. */
#include "log.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

static enum log_level log_level = LOG_INFO;

void log_set_level(enum log_level lvl) { log_level = lvl; }
enum log_level log_get_level(void) { return log_level; }

void log_msg(enum log_level lvl, const char *fmt, ...)
{
    if (lvl > log_level)
        return;
    static const char *const names[] = {"error", "warn", "info", "debug"};
    char line[2048];
    int n = snprintf(line, sizeof line, "[%s] ", names[lvl]);
    va_list ap;
    va_start(ap, fmt);
    int m = vsnprintf(line + n, sizeof line - (size_t)n - 1, fmt, ap);
    va_end(ap);
    size_t len = (size_t)n + (m < 0 ? 0 : (size_t)m);
    if (len > sizeof line - 2)
        len = sizeof line - 2;
    line[len++] = '\n';
    /* one write per line keeps lines from different workers whole */
    ssize_t w = write(STDERR_FILENO, line, len);
    (void)w;
}
