/* ljson.c — JSON text to Lua values and back (see ljson.h).
 *
 * jansson built a tree first (an allocation for every value and every
 * string) and took about half a millisecond each way for a 12 KB API answer,
 * slower than the Python mitmproxy runs.  Here the decoder pushes values as
 * it reads them and the encoder writes into one growing buffer. */
#include "ljson.h"

#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <lauxlib.h>

/* ---- UTF-8 (RFC 3629) ----------------------------------------------------- */

/* Length of the well-formed sequence at p (not ASCII), or 0: overlong forms,
 * surrogates and code points past U+10FFFF are not UTF-8. */
static size_t utf8_seq(const unsigned char *p, const unsigned char *end)
{
    unsigned c = p[0];
    size_t n;
    uint32_t cp;
    if (c >= 0xC2 && c <= 0xDF) {
        n = 2;
        cp = c & 0x1F;
    } else if (c >= 0xE0 && c <= 0xEF) {
        n = 3;
        cp = c & 0x0F;
    } else if (c >= 0xF0 && c <= 0xF4) {
        n = 4;
        cp = c & 0x07;
    } else {
        return 0;
    }
    if ((size_t)(end - p) < n)
        return 0;
    for (size_t i = 1; i < n; i++) {
        if ((p[i] & 0xC0) != 0x80)
            return 0;
        cp = (cp << 6) | (p[i] & 0x3F);
    }
    if ((n == 3 && (cp < 0x800 || (cp >= 0xD800 && cp <= 0xDFFF))) || (n == 4 && (cp < 0x10000 || cp > 0x10FFFF)))
        return 0;
    return n;
}

/* ---- decoding ---------------------------------------------------------------- */

typedef struct dec {
    lua_State *L;
    const unsigned char *s, *p, *end;
    bool nulls;
    const char *why;          /* set on failure, with p where it happened */
} dec;

static int dec_fail(dec *d, const unsigned char *at, const char *why)
{
    d->p = at;
    d->why = why;
    return -1;
}

static void dec_ws(dec *d)
{
    while (d->p < d->end && (*d->p == ' ' || *d->p == '\t' || *d->p == '\n' || *d->p == '\r'))
        d->p++;
}

/* Consume c when it is next. */
static bool dec_eat(dec *d, unsigned char c)
{
    if (d->p < d->end && *d->p == c) {
        d->p++;
        return true;
    }
    return false;
}

static int hex4(const unsigned char *p, const unsigned char *end, uint32_t *out)
{
    if (end - p < 4)
        return -1;
    uint32_t v = 0;
    for (int i = 0; i < 4; i++) {
        unsigned c = p[i];
        v <<= 4;
        if (c >= '0' && c <= '9')
            v |= c - '0';
        else if ((c | 0x20) >= 'a' && (c | 0x20) <= 'f')
            v |= (c | 0x20) - 'a' + 10;
        else
            return -1;
    }
    *out = v;
    return 0;
}

static void add_utf8(luaL_Buffer *b, uint32_t cp)
{
    char u[4];
    size_t n;
    if (cp < 0x80) {
        u[0] = (char)cp;
        n = 1;
    } else if (cp < 0x800) {
        u[0] = (char)(0xC0 | (cp >> 6));
        u[1] = (char)(0x80 | (cp & 0x3F));
        n = 2;
    } else if (cp < 0x10000) {
        u[0] = (char)(0xE0 | (cp >> 12));
        u[1] = (char)(0x80 | ((cp >> 6) & 0x3F));
        u[2] = (char)(0x80 | (cp & 0x3F));
        n = 3;
    } else {
        u[0] = (char)(0xF0 | (cp >> 18));
        u[1] = (char)(0x80 | ((cp >> 12) & 0x3F));
        u[2] = (char)(0x80 | ((cp >> 6) & 0x3F));
        u[3] = (char)(0x80 | (cp & 0x3F));
        n = 4;
    }
    luaL_addlstring(b, u, n);
}

/* The string whose opening quote is at d->p, pushed. */
static int dec_string(dec *d)
{
    const unsigned char *open = d->p, *p = open + 1, *end = d->end;
    /* most strings have nothing to unescape: one pushlstring */
    const unsigned char *run = p;
    while (p < end && *p != '"' && *p != '\\' && *p >= 0x20 && *p < 0x80)
        p++;
    if (p < end && *p == '"') {
        lua_pushlstring(d->L, (const char *)run, (size_t)(p - run));
        d->p = p + 1;
        return 0;
    }
    luaL_Buffer b;
    luaL_buffinit(d->L, &b);
    luaL_addlstring(&b, (const char *)run, (size_t)(p - run));
    while (p < end) {
        unsigned c = *p;
        if (c == '"') {
            luaL_pushresult(&b);
            d->p = p + 1;
            return 0;
        }
        if (c < 0x20)
            return dec_fail(d, p, "control character in a string");
        if (c >= 0x80) {
            size_t k = utf8_seq(p, end);
            if (!k)
                return dec_fail(d, p, "a string that is not UTF-8");
            luaL_addlstring(&b, (const char *)p, k);
            p += k;
            continue;
        }
        if (c != '\\') {
            luaL_addchar(&b, (char)c);
            p++;
            continue;
        }
        if (p + 1 >= end)
            break;
        static const char plain[] = "\"\\/bfnrt", as[] = "\"\\/\b\f\n\r\t";
        const char *e = p[1] ? strchr(plain, p[1]) : NULL;
        if (e) {
            luaL_addchar(&b, as[e - plain]);
            p += 2;
            continue;
        }
        uint32_t cp, lo;
        if (p[1] != 'u' || hex4(p + 2, end, &cp) < 0)
            return dec_fail(d, p, "invalid escape in a string");
        if (cp >= 0xDC00 && cp <= 0xDFFF)
            return dec_fail(d, p, "a \\u escape of a lone low surrogate");
        if (cp >= 0xD800 && cp <= 0xDBFF) {
            if (end - p < 12 || p[6] != '\\' || p[7] != 'u' || hex4(p + 8, end, &lo) < 0 || lo < 0xDC00 || lo > 0xDFFF)
                return dec_fail(d, p, "a \\u escape of a high surrogate without its low one");
            cp = 0x10000 + ((cp - 0xD800) << 10) + (lo - 0xDC00);
            p += 6;
        }
        add_utf8(&b, cp);
        p += 6;
    }
    return dec_fail(d, open, "a string without its closing quote");
}

static bool digit(const unsigned char *p, const unsigned char *end)
{
    return p < end && *p >= '0' && *p <= '9';
}

static int dec_number(dec *d)
{
    const unsigned char *start = d->p, *p = start, *end = d->end;
    if (p < end && *p == '-')
        p++;
    if (p < end && *p == '0')
        p++;
    else if (digit(p, end))
        while (digit(p, end))
            p++;
    else
        return dec_fail(d, start, "invalid value");
    if (p < end && *p == '.') {
        if (!digit(++p, end))
            return dec_fail(d, p, "a digit expected after the decimal point");
        while (digit(p, end))
            p++;
    }
    if (p < end && (*p == 'e' || *p == 'E')) {
        p++;
        if (p < end && (*p == '+' || *p == '-'))
            p++;
        if (!digit(p, end))
            return dec_fail(d, p, "a digit expected in the exponent");
        while (digit(p, end))
            p++;
    }
    /* strtod wants a terminated string, and the text goes on after the
     * number: copy it (the "C" locale is in force: '.' is the point) */
    size_t n = (size_t)(p - start);
    char small[64];
    if (n < sizeof small) {
        memcpy(small, start, n);
        small[n] = 0;
        lua_pushnumber(d->L, strtod(small, NULL));
    } else {
        lua_pushlstring(d->L, (const char *)start, n);
        double v = strtod(lua_tostring(d->L, -1), NULL);
        lua_pop(d->L, 1);
        lua_pushnumber(d->L, v);
    }
    d->p = p;
    return 0;
}

static int dec_value(dec *d, int depth);

static int dec_array(dec *d, int depth)
{
    d->p++;
    lua_newtable(d->L);
    dec_ws(d);
    if (dec_eat(d, ']'))
        return 0;
    for (int i = 1;; i++) {
        if (dec_value(d, depth + 1) < 0)
            return -1;
        lua_rawseti(d->L, -2, i);
        dec_ws(d);
        if (dec_eat(d, ']'))
            return 0;
        if (!dec_eat(d, ','))
            return dec_fail(d, d->p, "',' or ']' expected");
    }
}

static int dec_object(dec *d, int depth)
{
    d->p++;
    lua_newtable(d->L);
    dec_ws(d);
    if (dec_eat(d, '}'))
        return 0;
    for (;;) {
        dec_ws(d);
        if (d->p >= d->end || *d->p != '"')
            return dec_fail(d, d->p, "a string (a member's name) expected");
        if (dec_string(d) < 0)
            return -1;
        dec_ws(d);
        if (!dec_eat(d, ':'))
            return dec_fail(d, d->p, "':' expected");
        if (dec_value(d, depth + 1) < 0)
            return -1;
        lua_rawset(d->L, -3);
        dec_ws(d);
        if (dec_eat(d, '}'))
            return 0;
        if (!dec_eat(d, ','))
            return dec_fail(d, d->p, "',' or '}' expected");
    }
}

static int dec_literal(dec *d, const char *word)
{
    size_t n = strlen(word);
    if ((size_t)(d->end - d->p) < n || memcmp(d->p, word, n) != 0)
        return dec_fail(d, d->p, "invalid value");
    d->p += n;
    return 0;
}

static int dec_value(dec *d, int depth)
{
    if (depth >= LJSON_MAX_DEPTH)
        return dec_fail(d, d->p, "nested too deeply");
    if (!lua_checkstack(d->L, 4))
        return dec_fail(d, d->p, "out of memory");
    dec_ws(d);
    if (d->p >= d->end)
        return dec_fail(d, d->p, "a value expected");
    switch (*d->p) {
    case '{': return dec_object(d, depth);
    case '[': return dec_array(d, depth);
    case '"': return dec_string(d);
    case 't':
        if (dec_literal(d, "true") < 0)
            return -1;
        lua_pushboolean(d->L, 1);
        return 0;
    case 'f':
        if (dec_literal(d, "false") < 0)
            return -1;
        lua_pushboolean(d->L, 0);
        return 0;
    case 'n':
        if (dec_literal(d, "null") < 0)
            return -1;
        if (d->nulls)
            lua_pushlightuserdata(d->L, NULL);
        else
            lua_pushnil(d->L);
        return 0;
    default: return dec_number(d);
    }
}

int ljson_decode(lua_State *L, const char *s, size_t n, bool nulls, char *err, size_t errsz)
{
    int top = lua_gettop(L);
    dec d = {L, (const unsigned char *)s, (const unsigned char *)s, (const unsigned char *)s + n, nulls, NULL};
    if (dec_value(&d, 0) == 0) {
        dec_ws(&d);
        if (d.p == d.end)
            return 0;
        dec_fail(&d, d.p, "the end of the text expected");
    }
    lua_settop(L, top);
    int line = 1;
    const unsigned char *bol = d.s;
    for (const unsigned char *q = d.s; q < d.p; q++)
        if (*q == '\n') {
            line++;
            bol = q + 1;
        }
    snprintf(err, errsz, "invalid JSON at line %d column %d: %s", line, (int)(d.p - bol) + 1, d.why);
    return -1;
}

/* ---- encoding ---------------------------------------------------------------- */

/* The output grows in C memory, not in a luaL_Buffer: the encoder reads
 * tables on the stack between writes, which a luaL_Buffer does not allow.
 * Nothing between the writes raises a Lua error, so the buffer is always
 * freed by ljson_encode. */
typedef struct enc {
    lua_State *L;
    char *p;
    size_t len, cap;
    const char *why;
} enc;

static int out_grow(enc *e, size_t n)
{
    size_t cap = e->cap ? e->cap * 2 : 256;
    while (cap < e->len + n)
        cap *= 2;
    char *np = realloc(e->p, cap);
    if (!np) {
        e->why = "out of memory";
        return -1;
    }
    e->p = np;
    e->cap = cap;
    return 0;
}

static inline int out(enc *e, const void *d, size_t n)
{
    if (e->len + n > e->cap && out_grow(e, n) < 0)
        return -1;
    memcpy(e->p + e->len, d, n);
    e->len += n;
    return 0;
}

static int enc_string(enc *e, const char *s, size_t n)
{
    static const char hexd[] = "0123456789abcdef";
    const unsigned char *p = (const unsigned char *)s, *end = p + n, *run = p;
    if (out(e, "\"", 1) < 0)
        return -1;
    while (p < end) {
        unsigned c = *p;
        if (c >= 0x20 && c != '"' && c != '\\' && c < 0x80) {
            p++;
            continue;
        }
        if (c >= 0x80) {
            size_t k = utf8_seq(p, end);
            if (!k) {
                e->why = "a string that is not UTF-8 (JSON text is)";
                return -1;
            }
            p += k;
            continue;
        }
        if (out(e, run, (size_t)(p - run)) < 0)
            return -1;
        char esc[6] = {'\\', 0};
        size_t en = 2;
        switch (c) {
        case '"': esc[1] = '"'; break;
        case '\\': esc[1] = '\\'; break;
        case '\b': esc[1] = 'b'; break;
        case '\f': esc[1] = 'f'; break;
        case '\n': esc[1] = 'n'; break;
        case '\r': esc[1] = 'r'; break;
        case '\t': esc[1] = 't'; break;
        default:
            memcpy(esc + 1, "u00", 3);
            esc[4] = hexd[c >> 4];
            esc[5] = hexd[c & 15];
            en = 6;
        }
        if (out(e, esc, en) < 0)
            return -1;
        run = ++p;
    }
    return out(e, run, (size_t)(p - run)) < 0 || out(e, "\"", 1) < 0 ? -1 : 0;
}

/* Whole numbers (up to 2^53, where doubles are exact) as integers; others
 * with 15 significant digits when those read back as the same double (0.1,
 * not 0.10000000000000001), else with 17, which always do.  (Formatting is
 * most of the encoder's time: not a third try at 16.) */
static int fmt_number(double x, char *buf, size_t n)
{
    if (!isfinite(x))
        return -1;
    if (x >= -9007199254740992.0 && x <= 9007199254740992.0 && x == (double)(int64_t)x) {
        /* by hand: snprintf was a third of the encoder's time */
        int64_t v = (int64_t)x;
        uint64_t u = v < 0 ? (uint64_t)-v : (uint64_t)v;
        char tmp[24];
        int k = 0, t = 0;
        do
            tmp[t++] = (char)('0' + u % 10);
        while (u /= 10);
        if (v < 0)
            buf[k++] = '-';
        while (t)
            buf[k++] = tmp[--t];
        buf[k] = 0;
        (void)n;
        return k;
    }
    int k = snprintf(buf, n, "%.15g", x);
    if (strtod(buf, NULL) != x)
        k = snprintf(buf, n, "%.17g", x);
    if (k > 0 && (size_t)k < n - 2 && !strpbrk(buf, ".e")) {
        memcpy(buf + k, ".0", 3);
        k += 2;
    }
    return k;
}

typedef struct member {
    const char *str;      /* a string key's bytes (the anchor table keeps them) */
    size_t len;
    int idx;              /* its key in the anchor table */
    bool is_num;
    char num[32];         /* a number key's text: it moves with the member */
} member;

static const char *member_name(const member *x)
{
    return x->is_num ? x->num : x->str;
}

static int member_cmp(const void *a, const void *b)
{
    const member *x = a, *y = b;
    int c = memcmp(member_name(x), member_name(y), x->len < y->len ? x->len : y->len);
    return c ? c : (x->len > y->len) - (x->len < y->len);
}

static int enc_value(enc *e, int idx, int depth);

static int enc_object(enc *e, int idx, int depth)
{
    lua_State *L = e->L;
    /* the keys, kept in an anchor table while they are sorted */
    size_t n = 0, cap = 0;
    member *m = NULL;
    int rc = -1;
    lua_createtable(L, 8, 0);
    int anchor = lua_gettop(L);
    lua_pushnil(L);
    while (lua_next(L, idx)) {
        lua_pop(L, 1);
        int kt = lua_type(L, -1);
        if (kt != LUA_TSTRING && kt != LUA_TNUMBER)
            continue;
        if (n == cap) {
            cap = cap ? cap * 2 : 16;
            member *nm = realloc(m, cap * sizeof *m);
            if (!nm) {
                lua_pop(L, 1);
                e->why = "out of memory";
                goto done;
            }
            m = nm;
        }
        member *x = &m[n];
        x->idx = (int)++n;
        lua_pushvalue(L, -1);
        lua_rawseti(L, anchor, x->idx);
        x->is_num = kt == LUA_TNUMBER;
        if (x->is_num) {
            /* as Lua writes a number (LUA_NUMBER_FMT) */
            int k = snprintf(x->num, sizeof x->num, "%.14g", lua_tonumber(L, -1));
            x->len = k > 0 ? (size_t)k : 0;
        } else {
            x->str = lua_tolstring(L, -1, &x->len);
        }
    }
    if (n)
        qsort(m, n, sizeof *m, member_cmp);
    if (out(e, "{", 1) < 0)
        goto done;
    for (size_t i = 0; i < n; i++) {
        if ((i && out(e, ",", 1) < 0) || enc_string(e, member_name(&m[i]), m[i].len) < 0 || out(e, ":", 1) < 0)
            goto done;
        lua_rawgeti(L, anchor, m[i].idx);
        lua_rawget(L, idx);
        int vrc = enc_value(e, lua_gettop(L), depth + 1);
        lua_pop(L, 1);
        if (vrc < 0)
            goto done;
    }
    rc = out(e, "}", 1);
done:
    free(m);
    lua_settop(L, anchor - 1);
    return rc;
}

static int enc_value(enc *e, int idx, int depth)
{
    lua_State *L = e->L;
    switch (lua_type(L, idx)) {
    case LUA_TSTRING: {
        size_t n;
        const char *s = lua_tolstring(L, idx, &n);
        return enc_string(e, s, n);
    }
    case LUA_TNUMBER: {
        char buf[40];
        int k = fmt_number(lua_tonumber(L, idx), buf, sizeof buf);
        if (k < 0) {
            e->why = "NaN or an infinity (JSON has no form for them)";
            return -1;
        }
        return out(e, buf, (size_t)k);
    }
    case LUA_TBOOLEAN: return lua_toboolean(L, idx) ? out(e, "true", 4) : out(e, "false", 5);
    case LUA_TTABLE: {
        if (depth >= LJSON_MAX_DEPTH) {
            e->why = "nested too deeply (a table that contains itself?)";
            return -1;
        }
        if (!lua_checkstack(L, 6)) {
            e->why = "out of memory";
            return -1;
        }
        size_t n = lua_objlen(L, idx);
        if (n == 0)
            return enc_object(e, idx, depth);
        if (out(e, "[", 1) < 0)
            return -1;
        for (size_t i = 1; i <= n; i++) {
            if (i > 1 && out(e, ",", 1) < 0)
                return -1;
            lua_rawgeti(L, idx, (int)i);
            int rc = enc_value(e, lua_gettop(L), depth + 1);
            lua_pop(L, 1);
            if (rc < 0)
                return -1;
        }
        return out(e, "]", 1);
    }
    default: return out(e, "null", 4); /* nil, mitm.json.null, and what JSON cannot hold */
    }
}

int ljson_encode(lua_State *L, int idx, char *err, size_t errsz)
{
    if (idx < 0)
        idx = lua_gettop(L) + idx + 1;
    enc e = {L, NULL, 0, 0, NULL};
    int top = lua_gettop(L);
    int rc = enc_value(&e, idx, 0);
    lua_settop(L, top);
    if (rc == 0)
        lua_pushlstring(L, e.p ? e.p : "", e.len);
    else
        snprintf(err, errsz, "%s", e.why ? e.why : "cannot encode this value");
    free(e.p);
    return rc;
}
