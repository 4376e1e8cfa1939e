/* config.h — the confdir's config.yaml in mitmproxy's format, read with
 * libyaml: a mapping of option names to a scalar, null or a list of
 * scalars, in any YAML spelling (comments, quoted and multi-line strings,
 * flow or block lists, anchors and aliases).  Nested mappings and lists of
 * lists are refused with their line and column, never guessed.  The
 * parser knows nothing of options: it hands each key to a callback. */
#ifndef MITMLUA_CONFIG_H
#define MITMLUA_CONFIG_H

#include <stdbool.h>
#include <stddef.h>

/* One top-level key.  `vals` are the item strings of a list (is_list), or
 * one scalar (nvals 1), or nothing for null (nvals 0, is_list false).
 * Return 0, or -1 with a message in err (the line is added by the caller). */
typedef int (*config_cb)(void *ud, const char *key, char **vals, size_t nvals, bool is_list, char *err,
                         size_t errsz);

/* Parse text; errors read "NAME:LINE:COLUMN: why".  0 or -1. */
int config_parse(const char *text, const char *name, config_cb cb, void *ud, char *err, size_t errsz);

/* Read and parse a file.  A missing file is not an error (returns 0, as
 * mitmproxy ignores a missing config.yaml); `name` labels messages. */
int config_load(const char *path, const char *name, config_cb cb, void *ud, char *err, size_t errsz);

#endif
