/* pyfloat.h — Python's repr() of a float, which mitmproxy's output shows
 * (content views, str() of metadata values in ~meta): the shortest digits
 * that read back to the same double, "1e+16", "100.0", "0.0001", "nan". */
#ifndef MITMLUA_PYFLOAT_H
#define MITMLUA_PYFLOAT_H

#include <stddef.h>

void pyfloat_repr(double v, char *buf, size_t n);

#endif
