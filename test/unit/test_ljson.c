/* Unit tests for ljson: decoding into Lua values (escapes, UTF-8, numbers,
 * null, errors with line and column, depth), encoding back (sorted names,
 * escapes, numbers that read back the same, values JSON cannot hold). */
#include <lauxlib.h>
#include <lua.h>
#include <lualib.h>

#include "ljson.h"
#include "t.h"

static int l_decode(lua_State *L)
{
    size_t n;
    const char *s = luaL_checklstring(L, 1, &n);
    char err[160];
    if (ljson_decode(L, s, n, true, err, sizeof err) < 0)
        return luaL_error(L, "%s", err);
    return 1;
}

static int l_encode(lua_State *L)
{
    char err[160];
    if (ljson_encode(L, 1, err, sizeof err) < 0)
        return luaL_error(L, "%s", err);
    return 1;
}

static lua_State *state(void)
{
    lua_State *L = luaL_newstate();
    luaL_openlibs(L);
    lua_register(L, "decode", l_decode);
    lua_register(L, "encode", l_encode);
    lua_pushlightuserdata(L, NULL);
    lua_setglobal(L, "null");
    return L;
}

/* Run a chunk that returns one string; compare it with want. */
static void expect(lua_State *L, const char *chunk, const char *want, size_t wantlen)
{
    if (luaL_dostring(L, chunk) != 0) {
        fprintf(stderr, "  %s\n  -> error: %s\n", chunk, lua_tostring(L, -1));
        T_CHECK(false);
    } else {
        size_t n;
        const char *got = lua_tolstring(L, -1, &n);
        if (!got || n != wantlen || memcmp(got, want, n) != 0) {
            fprintf(stderr, "  %s\n  -> got [%.*s], want [%.*s]\n", chunk, (int)n, got ? got : "", (int)wantlen,
                    want);
            T_CHECK(false);
        }
    }
    lua_settop(L, 0);
}

#define EXPECT(L, chunk, want) expect(L, chunk, want, sizeof(want) - 1)

static void round_trips(void)
{
    lua_State *L = state();
    EXPECT(L, "return encode(decode(' {\"e\":1.5, \"a\":[1,null,3],\"b\":{\"c\":\"d\"},\"t\":true,\"f\":false} '))",
           "{\"a\":[1,null,3],\"b\":{\"c\":\"d\"},\"e\":1.5,\"f\":false,\"t\":true}");
    EXPECT(L, "local t = decode('[1,null,3]') return #t .. tostring(t[2] == null)", "3true");
    EXPECT(L, "return encode(decode('\"x\"')) .. encode(decode('17')) .. encode(decode('null'))", "\"x\"17null");
    EXPECT(L, "return encode(decode('{\"a\":1,\"a\":2}'))", "{\"a\":2}");          /* the last wins */
    EXPECT(L, "return encode({}) .. encode(decode('[]')) .. encode(decode('{}'))", "{}{}{}");
    EXPECT(L, "return encode({b = 1, a = {x = true}, [10] = 'ten'})", "{\"10\":\"ten\",\"a\":{\"x\":true},\"b\":1}");
    EXPECT(L, "return encode({print, nil, 2})", "[null,null,2]");
    lua_close(L);
}

static void strings(void)
{
    lua_State *L = state();
    /* every escape, a two-byte and a four-byte character (surrogate pair) */
    EXPECT(L, "return decode([[\"q\\\"b\\\\s\\/b\\bf\\fn\\nr\\rt\\t\\u00e9\\ud83d\\ude00\"]])",
           "q\"b\\s/b\bf\fn\nr\rt\t\xc3\xa9\xf0\x9f\x98\x80");
    EXPECT(L, "return #decode('\"a\\\\u0000b\"')", "3");
    EXPECT(L, "return encode('a\\0b\\1\"\\\\/\\n\\t\\127\\195\\169')",
           "\"a\\u0000b\\u0001\\\"\\\\/\\n\\t\x7f\xc3\xa9\"");
    EXPECT(L, "return decode('\"\\195\\169t\\195\\169\"')", "\xc3\xa9t\xc3\xa9");
    lua_close(L);
}

static void numbers(void)
{
    lua_State *L = state();
    EXPECT(L, "return encode(decode('[0,-0,1e3,-1.25e-2,0.1,1E2,2.5E+1,12345678901234567890]'))",
           "[0,0,1000,-0.0125,0.1,100,25,1.2345678901234567e+19]");
    EXPECT(L, "return encode({1/3, 2^53, -2^53, 1e300})",
           "[0.33333333333333331,9007199254740992,-9007199254740992,1e+300]");
    EXPECT(L, "return tostring(decode(encode(1/3)) == 1/3)", "true");
    lua_close(L);
}

/* The message must name what is wrong and where. */
static void errors(void)
{
    static const struct {
        const char *text, *want;
    } bad[] = {
        {"{\"x\": ", "line 1 column 7: a value expected"},
        {"[1,2", "line 1 column 5: ',' or ']' expected"},
        {"\"abc", "line 1 column 1: a string without its closing quote"},
        {"{\"a\" 1}", "line 1 column 6: ':' expected"},
        {"{1:2}", "line 1 column 2: a string (a member's name) expected"},
        {"[01]", "line 1 column 3: ',' or ']' expected"},
        {"tru", "line 1 column 1: invalid value"},
        {"-", "line 1 column 1: invalid value"},
        {"1.", "line 1 column 3: a digit expected after the decimal point"},
        {"1e", "line 1 column 3: a digit expected in the exponent"},
        {"\"\\x\"", "line 1 column 2: invalid escape in a string"},
        {"\"\\ud800\"", "line 1 column 2: a \\u escape of a high surrogate without its low one"},
        {"\"\\udc00\"", "line 1 column 2: a \\u escape of a lone low surrogate"},
        {"\"\xff\"", "line 1 column 2: a string that is not UTF-8"},
        {"\"\xed\xa0\x80\"", "line 1 column 2: a string that is not UTF-8"},   /* an encoded surrogate */
        {"\"\xc0\xaf\"", "line 1 column 2: a string that is not UTF-8"},       /* overlong */
        {"\"a\x01\"", "line 1 column 3: control character in a string"},
        {"1 2", "line 1 column 3: the end of the text expected"},
        {"", "line 1 column 1: a value expected"},
        {"[\n1,\n?]", "line 3 column 1: invalid value"},
    };
    lua_State *L = state();
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        char err[160] = "";
        int top = lua_gettop(L);
        T_CHECK(ljson_decode(L, bad[i].text, strlen(bad[i].text), true, err, sizeof err) == -1);
        T_CHECK(lua_gettop(L) == top);
        char want[200];
        snprintf(want, sizeof want, "invalid JSON at %s", bad[i].want);
        if (strcmp(err, want) != 0) {
            fprintf(stderr, "  [%s]: got \"%s\", want \"%s\"\n", bad[i].text, err, want);
            T_CHECK(false);
        }
    }
    lua_close(L);
}

static void limits(void)
{
    lua_State *L = state();
    char deep[2 * LJSON_MAX_DEPTH + 10];
    size_t n = LJSON_MAX_DEPTH + 2;
    memset(deep, '[', n);
    memset(deep + n, ']', n);
    char err[160];
    T_CHECK(ljson_decode(L, deep, 2 * n, true, err, sizeof err) == -1 && strstr(err, "nested too deeply"));
    T_CHECK(ljson_decode(L, deep + 4, 2 * n - 8, true, err, sizeof err) == 0); /* at the limit: fine */
    lua_settop(L, 0);
    /* a table that contains itself, NaN, bytes that are not UTF-8 */
    static const struct {
        const char *chunk, *want;
    } bad[] = {
        {"local t = {} t.t = t return t", "nested too deeply"},
        {"return {x = 0/0}", "NaN or an infinity"},
        {"return {1/0}", "NaN or an infinity"},
        {"return '\\255'", "not UTF-8"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        T_CHECK(luaL_dostring(L, bad[i].chunk) == 0);
        int top = lua_gettop(L);
        T_CHECK(ljson_encode(L, -1, err, sizeof err) == -1);
        T_CHECK(lua_gettop(L) == top);
        if (!strstr(err, bad[i].want)) {
            fprintf(stderr, "  %s: got \"%s\", want \"%s\"\n", bad[i].chunk, err, bad[i].want);
            T_CHECK(false);
        }
        lua_settop(L, 0);
    }
    lua_close(L);
}

int main(void)
{
    T_RUN(round_trips);
    T_RUN(strings);
    T_RUN(numbers);
    T_RUN(errors);
    T_RUN(limits);
    T_DONE();
}
