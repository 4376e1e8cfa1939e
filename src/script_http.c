/* script_http.c — mitm.http.request: a hook asks another service (a token
 * endpoint, a feature-flag server) without blocking its worker.  The
 * request goes out through httpc.h, the way the proxy's own upstream
 * requests do (verification as configured, -k applies); the hook's
 * coroutine waits and gets the answer, or nil and a one-line error. */
#include <stdlib.h>
#include <string.h>

#include <lauxlib.h>
#include <lua.h>

#include "encoding.h"
#include "httpc.h"
#include "script_int.h"

typedef struct pending_http {
    script_call *call;
    httpc_req *req;
} pending_http;

/* The call was abandoned (its flow's client left, shutdown). */
static void http_cancel(void *arg)
{
    pending_http *q = arg;
    httpc_cancel(q->req);
    free(q);
}

/* {status_code=, reason=, headers={lower-case name = value, repeated
 * fields joined with ", "}, content= decoded body, raw_content=} */
static void push_result(lua_State *L, const httpc_result *res)
{
    lua_createtable(L, 0, 5);
    lua_pushinteger(L, res->status);
    lua_setfield(L, -2, "status_code");
    lua_pushstring(L, res->reason ? res->reason : "");
    lua_setfield(L, -2, "reason");
    lua_newtable(L);
    for (size_t i = 0; res->headers && i < res->headers->n; i++) {
        const hdr_field *h = &res->headers->v[i];
        luaL_Buffer b;
        luaL_buffinit(L, &b);
        for (size_t k = 0; k < h->name_len; k++)
            luaL_addchar(&b, (char)(h->name[k] >= 'A' && h->name[k] <= 'Z' ? h->name[k] + 32 : h->name[k]));
        luaL_pushresult(&b);
        lua_pushvalue(L, -1);
        lua_rawget(L, -3);
        if (lua_isstring(L, -1)) {
            lua_pushliteral(L, ", ");
            lua_pushlstring(L, h->value, h->value_len);
            lua_concat(L, 3);
        } else {
            lua_pop(L, 1);
            lua_pushlstring(L, h->value, h->value_len);
        }
        lua_rawset(L, -3);
    }
    lua_setfield(L, -2, "headers");
    lua_pushlstring(L, res->body, res->body_len);
    lua_setfield(L, -2, "raw_content");
    const char *ce = res->headers ? hdrs_get(res->headers, "content-encoding", NULL) : NULL;
    bytes out = {0};
    char err[200];
    if (ce && *ce && encoding_decode(ce, res->body, res->body_len, &out, err, sizeof err) == 0)
        lua_pushlstring(L, out.p ? out.p : "", out.len);
    else
        lua_pushlstring(L, res->body, res->body_len); /* identity, or not ours to decode */
    bytes_free(&out);
    lua_setfield(L, -2, "content");
}

static void http_done(void *arg, const httpc_result *res)
{
    pending_http *q = arg;
    script_call *c = q->call;
    free(q);
    lua_State *co = script_call_thread(c);
    if (res->err) {
        lua_pushnil(co);
        lua_pushstring(co, res->err);
        script_call_wake(c, 2);
        return;
    }
    push_result(co, res);
    script_call_wake(c, 1);
}

/* headers: {name = value, ...} or a list of {name, value} pairs */
static void headers_arg(lua_State *L, int idx, hdrs *h)
{
    lua_pushnil(L);
    while (lua_next(L, idx)) {
        size_t nl = 0, vl = 0;
        const char *n, *v;
        if (lua_type(L, -2) == LUA_TNUMBER && lua_istable(L, -1)) {
            lua_rawgeti(L, -1, 1);
            lua_rawgeti(L, -2, 2);
            n = lua_tolstring(L, -2, &nl);
            v = lua_tolstring(L, -1, &vl);
            lua_pop(L, 2);
        } else {
            n = lua_type(L, -2) == LUA_TSTRING ? lua_tolstring(L, -2, &nl) : NULL;
            v = lua_tolstring(L, -1, &vl);
        }
        if (!n || !v) {
            hdrs_free(h);
            luaL_error(L, "mitm.http.request: headers must map names to strings, or list {name, value} pairs");
        }
        if (hdrs_add(h, n, nl, v, vl) < 0) {
            hdrs_free(h);
            luaL_error(L, "out of memory");
        }
        lua_pop(L, 1);
    }
}

static const char *opt_string(lua_State *L, const char *field, size_t *len)
{
    lua_getfield(L, 1, field);
    if (lua_isnil(L, -1)) {
        lua_pop(L, 1);
        return NULL;
    }
    if (lua_type(L, -1) != LUA_TSTRING)
        luaL_error(L, "mitm.http.request: %s must be a string", field);
    const char *s = lua_tolstring(L, -1, len);
    lua_pop(L, 1); /* the table keeps the string alive */
    return s;
}

/* mitm.http.request{method=, url=, headers=, body=, timeout=} ->
 * response table, or nil and an error message */
static int l_request(lua_State *L)
{
    luaL_checktype(L, 1, LUA_TTABLE);
    size_t blen = 0, ulen;
    const char *url = opt_string(L, "url", &ulen);
    const char *method = opt_string(L, "method", NULL);
    const char *body = opt_string(L, "body", &blen);
    if (!url)
        return luaL_error(L, "mitm.http.request: url is required");
    lua_getfield(L, 1, "timeout");
    double timeout = luaL_optnumber(L, -1, 30);
    lua_pop(L, 1);
    script_call *c = script_call_waitable(L, "mitm.http.request");
    script_env *e = script_env_of(L);
    if (!e->worker)
        return luaL_error(L, "mitm.http.request is not available here (only in the proxy's workers)");
    hdrs h = {0};
    lua_getfield(L, 1, "headers");
    if (lua_istable(L, -1))
        headers_arg(L, lua_gettop(L), &h);
    else if (!lua_isnil(L, -1))
        return luaL_error(L, "mitm.http.request: headers must be a table");
    lua_pop(L, 1);
    pending_http *q = malloc(sizeof *q);
    char err[300] = "out of memory";
    if (q) {
        q->call = c;
        q->req = httpc_start(e->worker, method, url, &h, body, blen, timeout, http_done, q, err, sizeof err);
    }
    hdrs_free(&h);
    if (!q || !q->req) {
        free(q);
        lua_pushnil(L);
        lua_pushstring(L, err);
        return 2;
    }
    script_call_wait(c, http_cancel, q);
    return lua_yield(L, 0);
}

void script_add_http_api(lua_State *L)
{
    static const luaL_Reg fns[] = {{"request", l_request}, {NULL, NULL}};
    lua_getglobal(L, "mitm");
    lua_newtable(L);
    luaL_register(L, NULL, fns);
    lua_setfield(L, -2, "http");
    lua_pop(L, 1);
}
