/* fuzz_ljson.c — mitm.json's decoder on arbitrary bytes; what it accepts is
 * encoded again, and that text must decode to something that encodes to
 * the same text (a fixed point after one round). */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <lauxlib.h>
#include <lualib.h>

#include "ljson.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    lua_State *L = luaL_newstate();
    if (!L)
        return 0;
    char err[160];
    if (ljson_decode(L, (const char *)data, size, true, err, sizeof err) == 0 &&
        ljson_encode(L, -1, err, sizeof err) == 0) {
        size_t n1;
        const char *t1 = lua_tolstring(L, -1, &n1);
        if (ljson_decode(L, t1, n1, true, err, sizeof err) != 0)
            abort();  /* the encoder wrote text its own decoder refuses */
        if (ljson_encode(L, -1, err, sizeof err) != 0)
            abort();
        size_t n2;
        const char *t2 = lua_tolstring(L, -1, &n2);
        if (n1 != n2 || memcmp(t1, t2, n1) != 0)
            abort();  /* not stable after one round */
    }
    lua_close(L);
    return 0;
}
