/* jsonval.h — values of a flow as jansson JSON for the HAR and report
 * writers: strings that may hold any bytes, and bodies as base64. */
#ifndef MITMLUA_JSONVAL_H
#define MITMLUA_JSONVAL_H

#include <stddef.h>
#include <jansson.h>

/* n bytes as a JSON string ("" for NULL); bytes that are not UTF-8 are
 * read as Latin-1, as browsers read header bytes. */
json_t *jsonval_strn(const char *s, size_t n);
json_t *jsonval_str(const char *s);
/* n bytes as a base64 JSON string; NULL on ENOMEM. */
json_t *jsonval_base64(const char *p, size_t n);

#endif
