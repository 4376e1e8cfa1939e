/* pyfloat.c — see pyfloat.h. */
#include "pyfloat.h"

#include <ctype.h>
#include <math.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* The shortest %e that reads back to v gives repr's digits; Python then
 * writes them positionally for exponents -4..15 and as d.ddde+XX outside. */
void pyfloat_repr(double v, char *buf, size_t n)
{
    if (isnan(v)) {
        snprintf(buf, n, "nan");
        return;
    }
    if (isinf(v)) {
        snprintf(buf, n, v < 0 ? "-inf" : "inf");
        return;
    }
    char e[40];
    int p;
    for (p = 1; p <= 17; p++) {
        snprintf(e, sizeof e, "%.*e", p - 1, v);
        if (strtod(e, NULL) == v)
            break;
    }
    /* e: [-]d[.ddd]e[+-]XX: the digits and the decimal exponent */
    char digits[24];
    size_t nd = 0;
    const char *c = e;
    bool neg = *c == '-';
    if (neg)
        c++;
    for (; *c && *c != 'e'; c++)
        if (isdigit((unsigned char)*c) && nd < sizeof digits - 1)
            digits[nd++] = *c;
    digits[nd] = '\0';
    int exp = atoi(c + 1);
    while (nd > 1 && digits[nd - 1] == '0')
        digits[--nd] = '\0';
    char out[64];
    size_t o = 0;
    if (neg)
        out[o++] = '-';
    if (exp >= -4 && exp < 16) {
        if (exp < 0) {
            o += (size_t)snprintf(out + o, sizeof out - o, "0.");
            for (int i = -1; i > exp; i--)
                out[o++] = '0';
            o += (size_t)snprintf(out + o, sizeof out - o, "%s", digits);
        } else {
            for (int i = 0; i <= exp; i++)
                out[o++] = i < (int)nd ? digits[i] : '0';
            out[o++] = '.';
            if ((int)nd > exp + 1)
                o += (size_t)snprintf(out + o, sizeof out - o, "%s", digits + exp + 1);
            else
                out[o++] = '0';
        }
        out[o] = '\0';
    } else {
        out[o++] = digits[0];
        if (nd > 1)
            o += (size_t)snprintf(out + o, sizeof out - o, ".%s", digits + 1);
        snprintf(out + o, sizeof out - o, "e%c%02d", exp < 0 ? '-' : '+', exp < 0 ? -exp : exp);
    }
    snprintf(buf, n, "%s", out);
}
