/* ljson.h — JSON text to Lua values and back, for mitm.json.
 *
 * Straight between the text and the Lua stack, with no tree in between.
 * Decoding (RFC 8259): any value at the top level; strings must be UTF-8;
 * \u escapes with surrogate pairs; NUL is allowed in strings; of duplicate
 * names the last wins; objects and arrays become tables, numbers Lua
 * numbers, null `null_value` (mitm.json.null) or nil.  Encoding: compact,
 * object names sorted bytewise; a table with a non-empty array part is an
 * array, any other table an object (names that are neither strings nor
 * numbers are left out); nil and values JSON has no form for are null. */
#ifndef MITMLUA_LJSON_H
#define MITMLUA_LJSON_H

#include <stdbool.h>
#include <stddef.h>

#include <lua.h>

/* Nesting deeper than this is refused both ways (it also stops a table
 * that contains itself). */
#define LJSON_MAX_DEPTH 256

/* Push the value of s[0..n); on bad input push nothing, return -1 and put
 * "invalid JSON at line L column C: what" in err.  With nulls, JSON null is
 * a NULL light userdata (mitm.json.null), so that arrays keep their
 * length; without, nil. */
int ljson_decode(lua_State *L, const char *s, size_t n, bool nulls, char *err, size_t errsz);

/* Push the JSON text of the value at idx; on a value that cannot be
 * encoded push nothing, return -1 and say why in err. */
int ljson_encode(lua_State *L, int idx, char *err, size_t errsz);

#endif
