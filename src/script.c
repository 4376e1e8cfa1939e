/* script.c — the Lua API over flows (see script.h).
 *
 * Every Lua object is a small userdata that points at a C object through
 * the flow it belongs to: a request is "the request of flow X", headers are
 * "the headers of the request of flow X".  Nothing is copied until a script
 * reads it, and when the flow is freed (script_env_forget) one pointer is
 * cleared and every object derived from it raises "flow is gone" instead of
 * touching freed memory.  Parent objects are kept alive through the
 * userdata environment table (Lua 5.1's uservalue). */
#include "script.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include <jansson.h>
#include <lauxlib.h>
#include <lua.h>
#include <luajit.h>
#include <lualib.h>

#include "encoding.h"
#include "export.h"
#include "filter.h"
#include "h1.h"
#include "log.h"
#include "opts.h"

#define MT_FLOW "mitmlua.flow"
#define MT_REQ "mitmlua.request"
#define MT_RESP "mitmlua.response"
#define MT_HDRS "mitmlua.headers"
#define MT_WSMSG "mitmlua.wsmsg"
#define MT_FILTER "mitmlua.filter"

struct script_env {
    lua_State *L;
    size_t n;
    char **names;
    int (*hooks)[SCRIPT_HOOK__COUNT]; /* registry refs, LUA_NOREF when absent */
    bool has[SCRIPT_HOOK__COUNT];
    void (*exit_fn)(void *ud, int code);
    void *exit_ud;
    int timeout_ms;          /* script_timeout; 0 = hooks run unbounded */
    struct timespec deadline;
    bool timed_out;          /* the running hook passed its deadline */
};

static const char ENV_KEY = 'E';

static const char *const hook_names[SCRIPT_HOOK__COUNT] = {
    "load", "connect", "requestheaders", "request", "responseheaders",
    "response", "error", "websocket_message", "done",
};

const char *script_hook_name(enum script_hook h) { return hook_names[h]; }

/* ---- object model ------------------------------------------------------- */

typedef struct lflow {
    flow *f;              /* NULL once forgotten */
    bool meta_loaded;     /* flow.metadata materialised as a Lua table */
} lflow;

enum part { P_REQ, P_RESP };

typedef struct lmsg {    /* a request or a response */
    enum part part;
    lflow *lf;            /* owning flow, or NULL for a standalone response */
    flow_response *own;   /* mitm.response(): owned until assigned to a flow */
} lmsg;

typedef struct lhdrs {
    lmsg *msg;
    bool trailers;
} lhdrs;

typedef struct lwsmsg {
    lflow *lf;
    size_t idx;
} lwsmsg;

static flow *flow_of(lua_State *L, lflow *lf)
{
    if (!lf || !lf->f)
        luaL_error(L, "flow is gone (it finished; keep data, not flows, between hooks)");
    return lf->f;
}

static flow_request *req_of(lua_State *L, lmsg *m)
{
    flow *f = flow_of(L, m->lf);
    if (!f->request)
        luaL_error(L, "flow has no request");
    return f->request;
}

static flow_response *resp_of(lua_State *L, lmsg *m)
{
    if (m->own)
        return m->own;
    flow *f = flow_of(L, m->lf);
    if (!f->response)
        luaL_error(L, "flow has no response");
    return f->response;
}

static hdrs *hdrs_of(lua_State *L, lhdrs *h)
{
    if (h->msg->part == P_REQ) {
        flow_request *r = req_of(L, h->msg);
        return h->trailers ? &r->trailers : &r->headers;
    }
    flow_response *r = resp_of(L, h->msg);
    return h->trailers ? &r->trailers : &r->headers;
}

/* userdata environment: a table that keeps parents alive and caches children */
static void new_env(lua_State *L, int idx)
{
    lua_newtable(L);
    lua_setfenv(L, idx < 0 ? idx - 1 : idx);
}

/* push env[key] of the userdata at idx */
static void env_get(lua_State *L, int idx, const char *key)
{
    lua_getfenv(L, idx);
    lua_getfield(L, -1, key);
    lua_remove(L, -2);
}

/* env[key] = value on top (popped) */
static void env_set(lua_State *L, int idx, const char *key)
{
    int abs = idx < 0 ? lua_gettop(L) + idx + 1 : idx;
    lua_getfenv(L, abs);
    lua_insert(L, -2);
    lua_setfield(L, -2, key);
    lua_pop(L, 1);
}

/* ---- the registry of live flows ---------------------------------------- */

static const char FLOWS_KEY = 'F';

/* The flow's userdata, created once per flow and reused by every hook. */
static void push_flow(lua_State *L, flow *f)
{
    lua_pushlightuserdata(L, (void *)&FLOWS_KEY);
    lua_rawget(L, LUA_REGISTRYINDEX);
    lua_pushlightuserdata(L, f);
    lua_rawget(L, -2);
    if (!lua_isnil(L, -1)) {
        lua_remove(L, -2);
        return;
    }
    lua_pop(L, 1);
    lflow *lf = lua_newuserdata(L, sizeof *lf);
    lf->f = f;
    lf->meta_loaded = false;
    luaL_getmetatable(L, MT_FLOW);
    lua_setmetatable(L, -2);
    new_env(L, -1);
    lua_pushlightuserdata(L, f);
    lua_pushvalue(L, -2);
    lua_rawset(L, -4);
    lua_remove(L, -2);
}

/* ---- helpers ------------------------------------------------------------ */

static void check_header(lua_State *L, const char *name, size_t nl, const char *value, size_t vl)
{
    if (!h1_valid_name(name, nl))
        luaL_error(L, "invalid header name '%s'", name);
    if (!h1_valid_value(value, vl))
        luaL_error(L, "invalid header value for '%s' (CR, LF, NUL and control characters are not allowed)", name);
}

static void push_bytes(lua_State *L, const bytes *b)
{
    lua_pushlstring(L, b->p ? b->p : "", b->len);
}

static void push_decoded(lua_State *L, const hdrs *h, const bytes *raw)
{
    const char *ce = hdrs_get(h, "content-encoding", NULL);
    if (!ce || !*ce) {
        push_bytes(L, raw);
        return;
    }
    bytes out = {0};
    char err[256];
    if (encoding_decode(ce, raw->p ? raw->p : "", raw->len, &out, err, sizeof err) < 0) {
        bytes_free(&out);
        luaL_error(L, "cannot decode body: %s", err);
    }
    push_bytes(L, &out);
    bytes_free(&out);
}

/* Set the decoded body: re-encode with the message's Content-Encoding and
 * keep Content-Length true (mitmproxy's Message.content setter). */
static void set_decoded(lua_State *L, hdrs *h, bytes *raw, int idx)
{
    size_t n;
    const char *s = luaL_checklstring(L, idx, &n);
    const char *ce = hdrs_get(h, "content-encoding", NULL);
    bytes out = {0};
    char err[256];
    if (ce && *ce) {
        if (encoding_encode(ce, s, n, &out, err, sizeof err) < 0) {
            bytes_free(&out);
            luaL_error(L, "cannot encode body: %s", err);
        }
    } else if (bytes_set(&out, s, n) < 0) {
        luaL_error(L, "out of memory");
    }
    bytes_free(raw);
    *raw = out;
    if (!hdrs_has_token(h, "transfer-encoding", "chunked")) {
        char v[32];
        int vl = snprintf(v, sizeof v, "%zu", raw->len);
        hdrs_set(h, "Content-Length", v, (size_t)vl);
    }
}

static void set_raw(lua_State *L, hdrs *h, bytes *raw, int idx)
{
    size_t n;
    const char *s = luaL_checklstring(L, idx, &n);
    if (bytes_set(raw, s, n) < 0)
        luaL_error(L, "out of memory");
    if (!hdrs_has_token(h, "transfer-encoding", "chunked")) {
        char v[32];
        int vl = snprintf(v, sizeof v, "%zu", raw->len);
        hdrs_set(h, "Content-Length", v, (size_t)vl);
    }
}

static void set_str(lua_State *L, char **dst, int idx)
{
    const char *s = luaL_checkstring(L, idx);
    if (flow_strset(dst, s) < 0)
        luaL_error(L, "out of memory");
}

static void push_headers(lua_State *L, int msg_idx, lmsg *m, bool trailers)
{
    const char *key = trailers ? "trailers" : "headers";
    env_get(L, msg_idx, key);
    if (!lua_isnil(L, -1))
        return;
    lua_pop(L, 1);
    lhdrs *h = lua_newuserdata(L, sizeof *h);
    h->msg = m;
    h->trailers = trailers;
    luaL_getmetatable(L, MT_HDRS);
    lua_setmetatable(L, -2);
    new_env(L, -1);
    lua_pushvalue(L, msg_idx);
    env_set(L, -2, "parent");
    lua_pushvalue(L, -1);
    env_set(L, msg_idx, key);
}

/* Replace all headers from a Lua table: {name=value} (sorted by name, since
 * Lua tables have no order) or {{name, value}, ...} (kept in order). */
static void headers_from_table(lua_State *L, int idx, hdrs *out)
{
    hdrs h = {0};
    size_t alen = lua_objlen(L, idx);
    if (alen > 0) {
        for (size_t i = 1; i <= alen; i++) {
            lua_rawgeti(L, idx, (int)i);
            if (!lua_istable(L, -1)) {
                hdrs_free(&h);
                luaL_error(L, "headers: element %d is not a {name, value} pair", (int)i);
            }
            lua_rawgeti(L, -1, 1);
            lua_rawgeti(L, -2, 2);
            size_t nl, vl;
            const char *n = lua_tolstring(L, -2, &nl), *v = lua_tolstring(L, -1, &vl);
            if (!n || !v) {
                hdrs_free(&h);
                luaL_error(L, "headers: element %d is not a {name, value} pair", (int)i);
            }
            check_header(L, n, nl, v, vl);
            hdrs_add(&h, n, nl, v, vl);
            lua_pop(L, 3);
        }
    } else {
        /* collect, sort by name for a stable order */
        lua_newtable(L);
        int keys = lua_gettop(L);
        int nk = 0;
        lua_pushnil(L);
        while (lua_next(L, idx)) {
            lua_pop(L, 1);
            if (lua_type(L, -1) == LUA_TSTRING) {
                lua_pushvalue(L, -1);
                lua_rawseti(L, keys, ++nk);
            }
        }
        lua_getglobal(L, "table");
        lua_getfield(L, -1, "sort");
        lua_pushvalue(L, keys);
        lua_call(L, 1, 0);
        lua_pop(L, 1);
        for (int i = 1; i <= nk; i++) {
            lua_rawgeti(L, keys, i);
            lua_pushvalue(L, -1);
            lua_gettable(L, idx);
            size_t nl, vl;
            const char *n = lua_tolstring(L, -2, &nl), *v = lua_tolstring(L, -1, &vl);
            if (!v) {
                hdrs_free(&h);
                luaL_error(L, "headers: value of '%s' is not a string", n);
            }
            check_header(L, n, nl, v, vl);
            hdrs_add(&h, n, nl, v, vl);
            lua_pop(L, 2);
        }
        lua_pop(L, 1);
    }
    hdrs_free(out);
    *out = h;
}

/* ---- headers ------------------------------------------------------------ */

/* mitmproxy joins repeated fields with ", " when read by name */
static int push_joined(lua_State *L, const hdrs *h, const char *name)
{
    luaL_Buffer b;
    int found = 0;
    luaL_buffinit(L, &b);
    for (ssize_t i = hdrs_find(h, name, 0); i >= 0; i = hdrs_find(h, name, (size_t)i + 1)) {
        if (found++)
            luaL_addlstring(&b, ", ", 2);
        luaL_addlstring(&b, h->v[i].value, h->v[i].value_len);
    }
    luaL_pushresult(&b);
    if (!found) {
        lua_pop(L, 1);
        lua_pushnil(L);
    }
    return 1;
}

static int hdrs_m_get_all(lua_State *L)
{
    hdrs *h = hdrs_of(L, luaL_checkudata(L, 1, MT_HDRS));
    const char *name = luaL_checkstring(L, 2);
    lua_newtable(L);
    int n = 0;
    for (ssize_t i = hdrs_find(h, name, 0); i >= 0; i = hdrs_find(h, name, (size_t)i + 1)) {
        lua_pushlstring(L, h->v[i].value, h->v[i].value_len);
        lua_rawseti(L, -2, ++n);
    }
    return 1;
}

static int hdrs_m_get(lua_State *L)
{
    hdrs *h = hdrs_of(L, luaL_checkudata(L, 1, MT_HDRS));
    push_joined(L, h, luaL_checkstring(L, 2));
    if (lua_isnil(L, -1) && lua_gettop(L) >= 4)
        lua_pushvalue(L, 3);
    return 1;
}

static int hdrs_m_add(lua_State *L)
{
    hdrs *h = hdrs_of(L, luaL_checkudata(L, 1, MT_HDRS));
    size_t nl, vl;
    const char *n = luaL_checklstring(L, 2, &nl);
    const char *v = luaL_checklstring(L, 3, &vl);
    check_header(L, n, nl, v, vl);
    if (hdrs_add(h, n, nl, v, vl) < 0)
        return luaL_error(L, "out of memory");
    return 0;
}

static int hdrs_m_remove(lua_State *L)
{
    hdrs *h = hdrs_of(L, luaL_checkudata(L, 1, MT_HDRS));
    lua_pushinteger(L, (lua_Integer)hdrs_remove(h, luaL_checkstring(L, 2)));
    return 1;
}

static int hdrs_items_iter(lua_State *L)
{
    hdrs *h = hdrs_of(L, luaL_checkudata(L, lua_upvalueindex(1), MT_HDRS));
    lua_Integer i = lua_tointeger(L, lua_upvalueindex(2));
    if ((size_t)i >= h->n)
        return 0;
    lua_pushinteger(L, i + 1);
    lua_replace(L, lua_upvalueindex(2));
    lua_pushlstring(L, h->v[i].name, h->v[i].name_len);
    lua_pushlstring(L, h->v[i].value, h->v[i].value_len);
    return 2;
}

/* for name, value in flow.request.headers:items() do ... end — in order */
static int hdrs_m_items(lua_State *L)
{
    luaL_checkudata(L, 1, MT_HDRS);
    lua_pushvalue(L, 1);
    lua_pushinteger(L, 0);
    lua_pushcclosure(L, hdrs_items_iter, 2);
    return 1;
}

static const luaL_Reg hdrs_methods[] = {
    {"get_all", hdrs_m_get_all}, {"get", hdrs_m_get}, {"add", hdrs_m_add},
    {"remove", hdrs_m_remove},   {"items", hdrs_m_items}, {NULL, NULL},
};

static int hdrs_index(lua_State *L)
{
    lhdrs *lh = luaL_checkudata(L, 1, MT_HDRS);
    const char *k = luaL_checkstring(L, 2);
    for (const luaL_Reg *r = hdrs_methods; r->name; r++)
        if (strcmp(k, r->name) == 0) {
            lua_pushcfunction(L, r->func);
            return 1;
        }
    return push_joined(L, hdrs_of(L, lh), k);
}

static int hdrs_newindex(lua_State *L)
{
    hdrs *h = hdrs_of(L, luaL_checkudata(L, 1, MT_HDRS));
    size_t nl, vl;
    const char *n = luaL_checklstring(L, 2, &nl);
    if (lua_isnil(L, 3)) {
        hdrs_remove(h, n);
        return 0;
    }
    const char *v = luaL_checklstring(L, 3, &vl);
    check_header(L, n, nl, v, vl);
    if (hdrs_find(h, n, 0) < 0) {
        if (hdrs_add(h, n, nl, v, vl) < 0)
            return luaL_error(L, "out of memory");
    } else if (hdrs_set(h, n, v, vl) < 0) {
        return luaL_error(L, "out of memory");
    }
    return 0;
}

static int hdrs_len(lua_State *L)
{
    lua_pushinteger(L, (lua_Integer)hdrs_of(L, luaL_checkudata(L, 1, MT_HDRS))->n);
    return 1;
}

/* ---- fields every message has (request and response alike) -------------- */

typedef struct msg_view {
    hdrs *headers;
    bytes *content;
    char **http_version;
    double ts_start, ts_end;
} msg_view;

static msg_view view_of(lua_State *L, lmsg *m)
{
    if (m->part == P_REQ) {
        flow_request *r = req_of(L, m);
        return (msg_view){&r->headers, &r->content, &r->http_version, r->timestamp_start, r->timestamp_end};
    }
    flow_response *r = resp_of(L, m);
    return (msg_view){&r->headers, &r->content, &r->http_version, r->timestamp_start, r->timestamp_end};
}

/* Push field k when it is one of the common ones; 0 when it is not. */
static int msg_index_common(lua_State *L, lmsg *m, const char *k)
{
    msg_view v = view_of(L, m);
    if (!strcmp(k, "http_version")) lua_pushstring(L, *v.http_version ? *v.http_version : "HTTP/1.1");
    else if (!strcmp(k, "headers")) push_headers(L, 1, m, false);
    else if (!strcmp(k, "trailers")) push_headers(L, 1, m, true);
    else if (!strcmp(k, "raw_content")) push_bytes(L, v.content);
    else if (!strcmp(k, "content") || !strcmp(k, "text")) push_decoded(L, v.headers, v.content);
    else if (!strcmp(k, "timestamp_start")) lua_pushnumber(L, v.ts_start);
    else if (!strcmp(k, "timestamp_end")) lua_pushnumber(L, v.ts_end);
    else return 0;
    return 1;
}

/* Set field k when it is one of the common ones; 0 when it is not. */
static int msg_newindex_common(lua_State *L, lmsg *m, const char *k)
{
    msg_view v = view_of(L, m);
    if (!strcmp(k, "http_version")) {
        /* written into the start line: only versions that exist */
        const char *hv = luaL_checkstring(L, 3);
        if (strcmp(hv, "HTTP/1.0") && strcmp(hv, "HTTP/1.1") && strcmp(hv, "HTTP/2.0") && strcmp(hv, "HTTP/3"))
            return luaL_error(L, "invalid http_version '%s' (HTTP/1.0, HTTP/1.1, HTTP/2.0 or HTTP/3)", hv);
        set_str(L, v.http_version, 3);
    } else if (!strcmp(k, "content") || !strcmp(k, "text")) {
        set_decoded(L, v.headers, v.content, 3);
    } else if (!strcmp(k, "raw_content")) {
        set_raw(L, v.headers, v.content, 3);
    } else if (!strcmp(k, "headers")) {
        luaL_checktype(L, 3, LUA_TTABLE);
        headers_from_table(L, 3, v.headers);
    } else {
        return 0;
    }
    return 1;
}

/* ---- request ------------------------------------------------------------ */

static void push_url(lua_State *L, const flow_request *r)
{
    char *u = flow_request_url(r);
    if (!u)
        luaL_error(L, "out of memory");
    lua_pushstring(L, u);
    free(u);
}

static int req_index(lua_State *L)
{
    lmsg *m = luaL_checkudata(L, 1, MT_REQ);
    const char *k = luaL_checkstring(L, 2);
    flow_request *r = req_of(L, m);
    if (!strcmp(k, "method")) lua_pushstring(L, r->method ? r->method : "");
    else if (!strcmp(k, "scheme")) lua_pushstring(L, r->scheme ? r->scheme : "");
    else if (!strcmp(k, "host")) lua_pushstring(L, r->host ? r->host : "");
    else if (!strcmp(k, "port")) lua_pushinteger(L, r->port);
    else if (!strcmp(k, "path")) lua_pushstring(L, r->path ? r->path : "");
    else if (!strcmp(k, "authority")) lua_pushstring(L, r->authority ? r->authority : "");
    else if (!strcmp(k, "url")) push_url(L, r);
    else if (!strcmp(k, "pretty_url")) push_url(L, r);
    else if (!strcmp(k, "pretty_host")) {
        size_t n;
        const char *h = hdrs_get(&r->headers, "host", &n);
        if (h)
            lua_pushlstring(L, h, strcspn(h, ":") < n && h[0] != '[' ? strcspn(h, ":") : n);
        else
            lua_pushstring(L, r->host ? r->host : "");
    }
    else if (!msg_index_common(L, m, k)) lua_pushnil(L);
    return 1;
}

static void set_host_header(flow_request *r)
{
    if (!hdrs_get(&r->headers, "host", NULL))
        return;
    char hb[300], v[320];
    const char *h = flow_host_for_url(r->host, hb, sizeof hb);
    bool dflt = r->port == (r->scheme && !strcmp(r->scheme, "https") ? 443 : 80);
    if (dflt)
        snprintf(v, sizeof v, "%s", h);
    else
        snprintf(v, sizeof v, "%s:%u", h, r->port);
    hdrs_set(&r->headers, "Host", v, strlen(v));
}

static void set_url(lua_State *L, flow_request *r, const char *u)
{
    opts_url pu;
    char err[256];
    const char *rest = strstr(u, "://");
    if (!rest)
        luaL_error(L, "invalid URL '%s'", u);
    rest += 3;
    size_t alen = strcspn(rest, "/?#");
    char *base = malloc((size_t)(rest - u) + alen + 1);
    memcpy(base, u, (size_t)(rest - u) + alen);
    base[(size_t)(rest - u) + alen] = '\0';
    int rc = opts_parse_url(base, &pu, err, sizeof err);
    free(base);
    if (rc < 0)
        luaL_error(L, "%s", err);
    const char *path = rest + alen;
    for (const char *c = path; *c; c++)
        if ((unsigned char)*c <= 0x20 || *c == 0x7f) {
            opts_url_free(&pu);
            luaL_error(L, "invalid character in URL '%s'", u);
        }
    flow_strset(&r->scheme, pu.scheme);
    flow_strset(&r->host, pu.host);
    r->port = pu.port;
    if (*path == '/')
        flow_strset(&r->path, path);
    else {
        char *p = malloc(strlen(path) + 2);
        sprintf(p, "/%s", path);
        free(r->path);
        r->path = p;
    }
    opts_url_free(&pu);
    set_host_header(r);
}

static int req_newindex(lua_State *L)
{
    lmsg *m = luaL_checkudata(L, 1, MT_REQ);
    const char *k = luaL_checkstring(L, 2);
    flow_request *r = req_of(L, m);
    if (!strcmp(k, "method")) {
        size_t n;
        const char *v = luaL_checklstring(L, 3, &n);
        if (!h1_valid_name(v, n))
            return luaL_error(L, "invalid method '%s'", v);
        set_str(L, &r->method, 3);
    } else if (!strcmp(k, "scheme")) {
        const char *v = luaL_checkstring(L, 3);
        if (strcmp(v, "http") && strcmp(v, "https"))
            return luaL_error(L, "scheme must be http or https");
        set_str(L, &r->scheme, 3);
    } else if (!strcmp(k, "host")) {
        size_t n;
        const char *v = luaL_checklstring(L, 3, &n);
        if (!n || !h1_valid_value(v, n) || strpbrk(v, " \t/?#@\\"))
            return luaL_error(L, "invalid host '%s'", v);
        set_str(L, &r->host, 3);
        set_host_header(r);
    } else if (!strcmp(k, "port")) {
        lua_Integer p = luaL_checkinteger(L, 3);
        if (p < 1 || p > 65535)
            return luaL_error(L, "invalid port %d", (int)p);
        r->port = (uint16_t)p;
        set_host_header(r);
    } else if (!strcmp(k, "path")) {
        size_t n;
        const char *v = luaL_checklstring(L, 3, &n);
        for (size_t i = 0; i < n; i++)
            if ((unsigned char)v[i] <= 0x20 || v[i] == 0x7f)
                return luaL_error(L, "invalid character in path");
        set_str(L, &r->path, 3);
    } else if (!strcmp(k, "url")) {
        set_url(L, r, luaL_checkstring(L, 3));
    } else if (!msg_newindex_common(L, m, k)) {
        return luaL_error(L, "request has no writable field '%s'", k);
    }
    return 0;
}

/* ---- response ----------------------------------------------------------- */

static int resp_index(lua_State *L)
{
    lmsg *m = luaL_checkudata(L, 1, MT_RESP);
    const char *k = luaL_checkstring(L, 2);
    flow_response *r = resp_of(L, m);
    if (!strcmp(k, "status_code")) lua_pushinteger(L, r->status_code);
    else if (!strcmp(k, "reason")) lua_pushstring(L, r->reason ? r->reason : "");
    else if (!msg_index_common(L, m, k)) lua_pushnil(L);
    return 1;
}

static int resp_newindex(lua_State *L)
{
    lmsg *m = luaL_checkudata(L, 1, MT_RESP);
    const char *k = luaL_checkstring(L, 2);
    flow_response *r = resp_of(L, m);
    if (!strcmp(k, "status_code")) {
        lua_Integer s = luaL_checkinteger(L, 3);
        if (s < 100 || s > 999)
            return luaL_error(L, "invalid status code %d", (int)s);
        r->status_code = (int)s;
    } else if (!strcmp(k, "reason")) {
        size_t n;
        const char *v = luaL_checklstring(L, 3, &n);
        if (!h1_valid_value(v, n))
            return luaL_error(L, "invalid character in reason");
        set_str(L, &r->reason, 3);
    } else if (!msg_newindex_common(L, m, k)) {
        return luaL_error(L, "response has no writable field '%s'", k);
    }
    return 0;
}

static int resp_gc(lua_State *L)
{
    lmsg *m = luaL_checkudata(L, 1, MT_RESP);
    flow_response_free(m->own);
    m->own = NULL;
    return 0;
}

static lmsg *new_msg(lua_State *L, enum part part, lflow *lf, int flow_idx)
{
    lmsg *m = lua_newuserdata(L, sizeof *m);
    m->part = part;
    m->lf = lf;
    m->own = NULL;
    luaL_getmetatable(L, part == P_REQ ? MT_REQ : MT_RESP);
    lua_setmetatable(L, -2);
    new_env(L, -1);
    if (flow_idx) {
        lua_pushvalue(L, flow_idx);
        env_set(L, -2, "flow");
    }
    return m;
}

/* ---- WebSocket messages ------------------------------------------------- */

static flow_ws_message *wsmsg_of(lua_State *L, lwsmsg *w)
{
    flow *f = flow_of(L, w->lf);
    if (w->idx >= f->ws_n)
        luaL_error(L, "WebSocket message is gone");
    return &f->ws_msgs[w->idx];
}

static int wsmsg_drop(lua_State *L)
{
    wsmsg_of(L, luaL_checkudata(L, 1, MT_WSMSG))->dropped = true;
    return 0;
}

static int wsmsg_index(lua_State *L)
{
    flow_ws_message *m = wsmsg_of(L, luaL_checkudata(L, 1, MT_WSMSG));
    const char *k = luaL_checkstring(L, 2);
    if (!strcmp(k, "content") || !strcmp(k, "text")) push_bytes(L, &m->content);
    else if (!strcmp(k, "from_client")) lua_pushboolean(L, m->from_client);
    else if (!strcmp(k, "is_text")) lua_pushboolean(L, m->is_text);
    else if (!strcmp(k, "type")) lua_pushstring(L, m->is_text ? "text" : "binary");
    else if (!strcmp(k, "timestamp")) lua_pushnumber(L, m->timestamp);
    else if (!strcmp(k, "dropped")) lua_pushboolean(L, m->dropped);
    else if (!strcmp(k, "drop")) lua_pushcfunction(L, wsmsg_drop);
    else lua_pushnil(L);
    return 1;
}

static int wsmsg_newindex(lua_State *L)
{
    flow_ws_message *m = wsmsg_of(L, luaL_checkudata(L, 1, MT_WSMSG));
    const char *k = luaL_checkstring(L, 2);
    if (!strcmp(k, "content") || !strcmp(k, "text")) {
        size_t n;
        const char *s = luaL_checklstring(L, 3, &n);
        if (bytes_set(&m->content, s, n) < 0)
            return luaL_error(L, "out of memory");
        return 0;
    }
    return luaL_error(L, "WebSocket message has no writable field '%s'", k);
}

static void push_websocket(lua_State *L, int flow_idx, lflow *lf)
{
    flow *f = lf->f;
    lua_newtable(L);
    lua_newtable(L);
    for (size_t i = 0; i < f->ws_n; i++) {
        lwsmsg *w = lua_newuserdata(L, sizeof *w);
        w->lf = lf;
        w->idx = i;
        luaL_getmetatable(L, MT_WSMSG);
        lua_setmetatable(L, -2);
        new_env(L, -1);
        lua_pushvalue(L, flow_idx);
        env_set(L, -2, "flow");
        lua_rawseti(L, -2, (int)i + 1);
    }
    lua_setfield(L, -2, "messages");
    if (f->ws_close_code) {
        lua_pushinteger(L, f->ws_close_code);
        lua_setfield(L, -2, "close_code");
    }
}

/* ---- metadata (JSON in C, a table in Lua) -------------------------------- */

static void push_json(lua_State *L, json_t *j, int depth)
{
    if (depth > 64) {
        lua_pushnil(L);
        return;
    }
    switch (json_typeof(j)) {
    case JSON_OBJECT: {
        lua_newtable(L);
        const char *k;
        json_t *v;
        json_object_foreach(j, k, v) {
            push_json(L, v, depth + 1);
            lua_setfield(L, -2, k);
        }
        break;
    }
    case JSON_ARRAY: {
        lua_newtable(L);
        size_t i;
        json_t *v;
        json_array_foreach(j, i, v) {
            push_json(L, v, depth + 1);
            lua_rawseti(L, -2, (int)i + 1);
        }
        break;
    }
    case JSON_STRING: lua_pushlstring(L, json_string_value(j), json_string_length(j)); break;
    case JSON_INTEGER: lua_pushnumber(L, (lua_Number)json_integer_value(j)); break;
    case JSON_REAL: lua_pushnumber(L, json_real_value(j)); break;
    case JSON_TRUE: lua_pushboolean(L, 1); break;
    case JSON_FALSE: lua_pushboolean(L, 0); break;
    default: lua_pushnil(L); break;
    }
}

static json_t *to_json(lua_State *L, int idx, int depth)
{
    if (idx < 0)
        idx = lua_gettop(L) + idx + 1;
    switch (lua_type(L, idx)) {
    case LUA_TSTRING: {
        size_t n;
        const char *s = lua_tolstring(L, idx, &n);
        return json_stringn_nocheck(s, n);
    }
    case LUA_TNUMBER: {
        lua_Number x = lua_tonumber(L, idx);
        if (x == (lua_Number)(json_int_t)x)
            return json_integer((json_int_t)x);
        return json_real(x);
    }
    case LUA_TBOOLEAN: return json_boolean(lua_toboolean(L, idx));
    case LUA_TTABLE: {
        if (depth > 64)
            return json_null();
        size_t n = lua_objlen(L, idx);
        if (n > 0) {
            json_t *a = json_array();
            for (size_t i = 1; i <= n; i++) {
                lua_rawgeti(L, idx, (int)i);
                json_array_append_new(a, to_json(L, -1, depth + 1));
                lua_pop(L, 1);
            }
            return a;
        }
        json_t *o = json_object();
        lua_pushnil(L);
        while (lua_next(L, idx)) {
            lua_pushvalue(L, -2);
            const char *k = lua_tostring(L, -1);
            if (k)
                json_object_set_new(o, k, to_json(L, -2, depth + 1));
            lua_pop(L, 2);
        }
        return o;
    }
    default: return json_null();
    }
}

static void push_metadata(lua_State *L, int flow_idx, lflow *lf)
{
    env_get(L, flow_idx, "metadata");
    if (!lua_isnil(L, -1))
        return;
    lua_pop(L, 1);
    json_t *j = lf->f->metadata ? json_loads(lf->f->metadata, 0, NULL) : NULL;
    if (j && json_is_object(j))
        push_json(L, j, 0);
    else
        lua_newtable(L);
    json_decref(j);
    lf->meta_loaded = true;
    lua_pushvalue(L, -1);
    env_set(L, flow_idx, "metadata");
}

/* After a hook: a metadata table a script looked at goes back into C. */
static void sync_metadata(lua_State *L, flow *f)
{
    push_flow(L, f);
    lflow *lf = lua_touserdata(L, -1);
    if (lf->meta_loaded) {
        env_get(L, -1, "metadata");
        if (lua_istable(L, -1)) {
            json_t *j = to_json(L, -1, 0);
            char *s = json_dumps(j, JSON_COMPACT | JSON_SORT_KEYS);
            json_decref(j);
            if (s) {
                free(f->metadata);
                f->metadata = s;
            }
        }
        lua_pop(L, 1);
    }
    lua_pop(L, 1);
}

/* ---- flow --------------------------------------------------------------- */

static int flow_kill(lua_State *L)
{
    flow_of(L, luaL_checkudata(L, 1, MT_FLOW))->killed = true;
    return 0;
}

static void push_conn(lua_State *L, const flow_conn *c)
{
    lua_newtable(L);
    if (c->address_host) {
        lua_newtable(L);
        lua_pushstring(L, c->address_host);
        lua_rawseti(L, -2, 1);
        lua_pushinteger(L, c->address_port);
        lua_rawseti(L, -2, 2);
        lua_setfield(L, -2, "address");
    }
    if (c->peer_host) {
        lua_newtable(L);
        lua_pushstring(L, c->peer_host);
        lua_rawseti(L, -2, 1);
        lua_pushinteger(L, c->peer_port);
        lua_rawseti(L, -2, 2);
        lua_setfield(L, -2, "peername");
    }
#define STRF(name, field)                 \
    if (c->field) {                       \
        lua_pushstring(L, c->field);      \
        lua_setfield(L, -2, name);        \
    }
    STRF("sni", sni);
    STRF("alpn", alpn);
    STRF("tls_version", tls_version);
    STRF("cipher", cipher);
#undef STRF
    lua_pushboolean(L, c->tls);
    lua_setfield(L, -2, "tls_established");
    lua_pushnumber(L, c->timestamp_start);
    lua_setfield(L, -2, "timestamp_start");
}

static int flow_index(lua_State *L)
{
    lflow *lf = luaL_checkudata(L, 1, MT_FLOW);
    const char *k = luaL_checkstring(L, 2);
    flow *f = flow_of(L, lf);
    if (!strcmp(k, "id")) {
        lua_pushstring(L, f->id);
    } else if (!strcmp(k, "request")) {
        if (!f->request) {
            lua_pushnil(L);
            return 1;
        }
        env_get(L, 1, "request");
        if (lua_isnil(L, -1)) {
            lua_pop(L, 1);
            new_msg(L, P_REQ, lf, 1);
            lua_pushvalue(L, -1);
            env_set(L, 1, "request");
        }
    } else if (!strcmp(k, "response")) {
        if (!f->response) {
            lua_pushnil(L);
            return 1;
        }
        env_get(L, 1, "response");
        if (lua_isnil(L, -1)) {
            lua_pop(L, 1);
            new_msg(L, P_RESP, lf, 1);
            lua_pushvalue(L, -1);
            env_set(L, 1, "response");
        }
    } else if (!strcmp(k, "error")) {
        if (!f->error) {
            lua_pushnil(L);
            return 1;
        }
        lua_newtable(L);
        lua_pushstring(L, f->error->msg ? f->error->msg : "");
        lua_setfield(L, -2, "msg");
        lua_pushnumber(L, f->error->timestamp);
        lua_setfield(L, -2, "timestamp");
    } else if (!strcmp(k, "websocket")) {
        if (!f->websocket)
            lua_pushnil(L);
        else
            push_websocket(L, 1, lf);
    } else if (!strcmp(k, "metadata")) {
        push_metadata(L, 1, lf);
    } else if (!strcmp(k, "marked")) {
        if (f->marked && *f->marked)
            lua_pushstring(L, f->marked);
        else
            lua_pushboolean(L, 0);
    } else if (!strcmp(k, "comment")) {
        lua_pushstring(L, f->comment ? f->comment : "");
    } else if (!strcmp(k, "is_replay")) {
        if (f->is_replay)
            lua_pushstring(L, f->is_replay);
        else
            lua_pushnil(L);
    } else if (!strcmp(k, "killed")) {
        lua_pushboolean(L, f->killed);
    } else if (!strcmp(k, "kill")) {
        lua_pushcfunction(L, flow_kill);
    } else if (!strcmp(k, "client_conn")) {
        push_conn(L, &f->client);
    } else if (!strcmp(k, "server_conn")) {
        push_conn(L, &f->server);
    } else if (!strcmp(k, "timestamp_created")) {
        lua_pushnumber(L, f->timestamp_created);
    } else {
        lua_pushnil(L);
    }
    return 1;
}

static int flow_newindex(lua_State *L)
{
    lflow *lf = luaL_checkudata(L, 1, MT_FLOW);
    const char *k = luaL_checkstring(L, 2);
    flow *f = flow_of(L, lf);
    if (!strcmp(k, "response")) {
        lmsg *m = luaL_checkudata(L, 3, MT_RESP);
        flow_response *r;
        if (m->own) {
            r = m->own;               /* mitm.response(): the flow takes it */
            m->own = NULL;
        } else {
            r = flow_response_new();  /* another flow's response: copy */
            flow_response *src = resp_of(L, m);
            if (!r)
                return luaL_error(L, "out of memory");
            r->status_code = src->status_code;
            flow_strset(&r->reason, src->reason);
            flow_strset(&r->http_version, src->http_version);
            hdrs_copy(&r->headers, &src->headers);
            hdrs_copy(&r->trailers, &src->trailers);
            bytes_set(&r->content, src->content.p, src->content.len);
        }
        if (r == f->response)
            return 0;
        flow_response_free(f->response);
        f->response = r;
        if (!r->timestamp_start)
            r->timestamp_start = r->timestamp_end = flow_now();
        m->lf = lf;
        lua_pushvalue(L, 3);
        env_set(L, 1, "response");
        lua_pushvalue(L, 1);
        env_set(L, 3, "flow");
    } else if (!strcmp(k, "marked")) {
        if (lua_type(L, 3) == LUA_TSTRING)
            set_str(L, &f->marked, 3);
        else
            flow_strset(&f->marked, lua_toboolean(L, 3) ? ":default:" : "");
    } else if (!strcmp(k, "comment")) {
        set_str(L, &f->comment, 3);
    } else if (!strcmp(k, "metadata")) {
        luaL_checktype(L, 3, LUA_TTABLE);
        lua_pushvalue(L, 3);
        env_set(L, 1, "metadata");
        lf->meta_loaded = true;
    } else {
        return luaL_error(L, "flow has no writable field '%s'", k);
    }
    return 0;
}

/* ---- the mitm table ----------------------------------------------------- */

static int mitm_response(lua_State *L)
{
    lua_Integer status = luaL_optinteger(L, 1, 200);
    if (status < 100 || status > 999)
        return luaL_error(L, "invalid status code %d", (int)status);
    lmsg *m = new_msg(L, P_RESP, NULL, 0);
    int ud = lua_gettop(L);
    flow_response *r = flow_response_new();
    if (!r)
        return luaL_error(L, "out of memory");
    m->own = r;
    r->status_code = (int)status;
    flow_strset(&r->reason, h1_reason((int)status));
    flow_strset(&r->http_version, "HTTP/1.1");
    if (lua_istable(L, 2))
        headers_from_table(L, 2, &r->headers);
    else if (!lua_isnoneornil(L, 2))
        return luaL_error(L, "mitm.response: headers must be a table");
    if (!lua_isnoneornil(L, 3)) {
        size_t n;
        const char *b = luaL_checklstring(L, 3, &n);
        bytes_set(&r->content, b, n);
    }
    char v[32];
    int vl = snprintf(v, sizeof v, "%zu", r->content.len);
    if (!hdrs_get(&r->headers, "content-length", NULL) && !hdrs_has_token(&r->headers, "transfer-encoding", "chunked"))
        hdrs_add(&r->headers, "content-length", 14, v, (size_t)vl);
    lua_pushvalue(L, ud);
    return 1;
}

/* mitm.export_curl(flow) -> a shell-quoted curl command for the request */
static int mitm_export_curl(lua_State *L)
{
    lflow *lf = luaL_checkudata(L, 1, MT_FLOW);
    char *s = export_curl(flow_of(L, lf));
    if (!s)
        return luaL_error(L, "cannot export this flow as curl");
    lua_pushstring(L, s);
    free(s);
    return 1;
}

/* mitm.exit(code): end the run with this exit status (a CI job's verdict) */
static int mitm_exit(lua_State *L)
{
    lua_Integer code = luaL_optinteger(L, 1, 0);
    if (code < 0 || code > 255)
        return luaL_error(L, "mitm.exit: status must be 0..255");
    lua_pushlightuserdata(L, (void *)&ENV_KEY);
    lua_rawget(L, LUA_REGISTRYINDEX);
    script_env *e = lua_touserdata(L, -1);
    if (!e || !e->exit_fn)
        return luaL_error(L, "mitm.exit is not available here");
    e->exit_fn(e->exit_ud, (int)code);
    return 0;
}

static int filter_call(lua_State *L)
{
    filter **fp = luaL_checkudata(L, 1, MT_FILTER);
    lflow *lf = luaL_checkudata(L, 2, MT_FLOW);
    lua_pushboolean(L, *fp && filter_match(*fp, flow_of(L, lf)));
    return 1;
}

static int filter_gc(lua_State *L)
{
    filter **fp = luaL_checkudata(L, 1, MT_FILTER);
    filter_free(*fp);
    *fp = NULL;
    return 0;
}

static int mitm_filter(lua_State *L)
{
    const char *expr = luaL_checkstring(L, 1);
    filter **fp = lua_newuserdata(L, sizeof *fp);
    *fp = NULL;
    luaL_getmetatable(L, MT_FILTER);
    lua_setmetatable(L, -2);
    char err[256];
    *fp = filter_compile(expr, err, sizeof err);
    if (!*fp)
        return luaL_error(L, "invalid filter expression: %s", err);
    return 1;
}

static int do_log(lua_State *L, enum log_level lvl)
{
    lua_Debug ar;
    char where[300] = "script";
    if (lua_getstack(L, 1, &ar) && lua_getinfo(L, "Sl", &ar) && ar.currentline > 0)
        snprintf(where, sizeof where, "%s:%d", ar.short_src, ar.currentline);
    int n = lua_gettop(L);
    luaL_Buffer b;
    luaL_buffinit(L, &b);
    for (int i = 1; i <= n; i++) {
        lua_getglobal(L, "tostring");
        lua_pushvalue(L, i);
        lua_call(L, 1, 1);
        if (i > 1)
            luaL_addchar(&b, ' ');
        luaL_addvalue(&b);
    }
    luaL_pushresult(&b);
    log_msg(lvl, "%s: %s", where, lua_tostring(L, -1));
    return 0;
}

static int log_info_l(lua_State *L) { return do_log(L, LOG_INFO); }
static int log_warn_l(lua_State *L) { return do_log(L, LOG_WARN); }
static int log_error_l(lua_State *L) { return do_log(L, LOG_ERROR); }
static int log_debug_l(lua_State *L) { return do_log(L, LOG_DEBUG); }

/* One metatable per kind of object, each a list of metamethods. */
static void new_class(lua_State *L, const char *name, const luaL_Reg *meta)
{
    luaL_newmetatable(L, name);
    luaL_register(L, NULL, meta);
    lua_pop(L, 1);
}

static void setup_metatables(lua_State *L)
{
    static const luaL_Reg flow_meta[] = {{"__index", flow_index}, {"__newindex", flow_newindex}, {NULL, NULL}};
    static const luaL_Reg req_meta[] = {{"__index", req_index}, {"__newindex", req_newindex}, {NULL, NULL}};
    static const luaL_Reg resp_meta[] = {
        {"__index", resp_index}, {"__newindex", resp_newindex}, {"__gc", resp_gc}, {NULL, NULL}};
    static const luaL_Reg hdrs_meta[] = {
        {"__index", hdrs_index}, {"__newindex", hdrs_newindex}, {"__len", hdrs_len}, {NULL, NULL}};
    static const luaL_Reg wsmsg_meta[] = {{"__index", wsmsg_index}, {"__newindex", wsmsg_newindex}, {NULL, NULL}};
    static const luaL_Reg filter_meta[] = {{"__call", filter_call}, {"__gc", filter_gc}, {NULL, NULL}};
    new_class(L, MT_FLOW, flow_meta);
    new_class(L, MT_REQ, req_meta);
    new_class(L, MT_RESP, resp_meta);
    new_class(L, MT_HDRS, hdrs_meta);
    new_class(L, MT_WSMSG, wsmsg_meta);
    new_class(L, MT_FILTER, filter_meta);

    /* the flow registry: a strong reference for as long as the C flow
     * lives, so caches (objects, metadata) survive from hook to hook;
     * script_env_forget drops it */
    lua_pushlightuserdata(L, (void *)&FLOWS_KEY);
    lua_newtable(L);
    lua_rawset(L, LUA_REGISTRYINDEX);

    lua_newtable(L);
    lua_pushcfunction(L, mitm_response);
    lua_setfield(L, -2, "response");
    lua_pushcfunction(L, mitm_filter);
    lua_setfield(L, -2, "filter");
    lua_pushcfunction(L, mitm_export_curl);
    lua_setfield(L, -2, "export_curl");
    lua_pushcfunction(L, mitm_exit);
    lua_setfield(L, -2, "exit");
    lua_pushstring(L, MITMLUA_VERSION);
    lua_setfield(L, -2, "version");
    lua_newtable(L);
    lua_pushcfunction(L, log_info_l);
    lua_setfield(L, -2, "info");
    lua_pushcfunction(L, log_warn_l);
    lua_setfield(L, -2, "warn");
    lua_pushcfunction(L, log_error_l);
    lua_setfield(L, -2, "error");
    lua_pushcfunction(L, log_debug_l);
    lua_setfield(L, -2, "debug");
    lua_setfield(L, -2, "log");
    lua_setglobal(L, "mitm");
}

/* ---- running ------------------------------------------------------------ */

static int traceback_handler(lua_State *L)
{
    /* keep the "file:line: message" first line as the error; the stack
     * goes to debug output only */
    if (log_get_level() >= LOG_DEBUG) {
        lua_getglobal(L, "debug");
        lua_getfield(L, -1, "traceback");
        lua_pushvalue(L, 1);
        lua_pushinteger(L, 2);
        lua_call(L, 2, 1);
        log_debug("%s", lua_tostring(L, -1));
        lua_pop(L, 2);
    }
    return 1;
}

/* ---- the time limit -----------------------------------------------------
 *
 * A count hook checks the clock every TIMEOUT_CHECK_EVERY VM instructions
 * and raises an error once the hook's deadline has passed.  LuaJIT does not
 * call hooks from compiled traces, so with a limit the JIT is off for this
 * state.  Once the deadline has passed the hook fires on every instruction,
 * so a script that catches the error with its own pcall() cannot keep
 * running: the next instruction outside that pcall raises again.  Time spent
 * inside one C function (a huge string.rep, a slow pattern match) cannot be
 * interrupted; the limit takes effect when it returns. */
#define TIMEOUT_CHECK_EVERY 1000

static script_env *env_of(lua_State *L)
{
    lua_pushlightuserdata(L, (void *)&ENV_KEY);
    lua_rawget(L, LUA_REGISTRYINDEX);
    script_env *e = lua_touserdata(L, -1);
    lua_pop(L, 1);
    return e;
}

static void timeout_hook(lua_State *L, lua_Debug *ar)
{
    (void)ar;
    script_env *e = env_of(L);
    if (!e->timed_out) {
        struct timespec now;
        clock_gettime(CLOCK_MONOTONIC, &now);
        if (now.tv_sec < e->deadline.tv_sec ||
            (now.tv_sec == e->deadline.tv_sec && now.tv_nsec < e->deadline.tv_nsec))
            return;
        e->timed_out = true;
        lua_sethook(L, timeout_hook, LUA_MASKCOUNT, 1);
    }
    luaL_error(L, "hook ran longer than script_timeout (%d ms)", e->timeout_ms);
}

static void timeout_arm(script_env *e)
{
    clock_gettime(CLOCK_MONOTONIC, &e->deadline);
    long ns = e->deadline.tv_nsec + (long)(e->timeout_ms % 1000) * 1000000L;
    e->deadline.tv_sec += e->timeout_ms / 1000 + ns / 1000000000L;
    e->deadline.tv_nsec = ns % 1000000000L;
    e->timed_out = false;
    lua_sethook(e->L, timeout_hook, LUA_MASKCOUNT, TIMEOUT_CHECK_EVERY);
}

void script_env_set_timeout(script_env *e, int ms)
{
    if (!e || ms <= 0)
        return;
    e->timeout_ms = ms;
    /* drop what the load phase compiled, and compile nothing more */
    luaJIT_setmode(e->L, 0, LUAJIT_MODE_ENGINE | LUAJIT_MODE_FLUSH);
    luaJIT_setmode(e->L, 0, LUAJIT_MODE_ENGINE | LUAJIT_MODE_OFF);
}

script_env *script_env_new(const char *const *paths, size_t n, char *err, size_t errsz)
{
    script_env *e = calloc(1, sizeof *e);
    if (!e || !(e->L = luaL_newstate()) || !(e->names = calloc(n, sizeof *e->names)) ||
        !(e->hooks = calloc(n ? n : 1, sizeof *e->hooks))) {
        snprintf(err, errsz, "out of memory");
        goto fail;
    }
    lua_State *L = e->L;
    luaL_openlibs(L);
    setup_metatables(L);
    lua_pushlightuserdata(L, (void *)&ENV_KEY);
    lua_pushlightuserdata(L, e);
    lua_rawset(L, LUA_REGISTRYINDEX);
    e->n = n;
    for (size_t i = 0; i < n; i++) {
        for (int h = 0; h < SCRIPT_HOOK__COUNT; h++)
            e->hooks[i][h] = LUA_NOREF;
        e->names[i] = strdup(paths[i]);
        /* source only: LuaJIT does not verify bytecode, and a damaged or
         * hostile precompiled chunk can crash the process */
        if (luaL_loadfilex(L, paths[i], "t") != 0) {
            const char *msg = lua_tostring(L, -1);
            /* "cannot open x.lua" from Lua already names the file */
            if (msg && strstr(msg, "wrong mode"))
                snprintf(err, errsz, "%s: a precompiled (bytecode) chunk; scripts must be Lua source", paths[i]);
            else
                snprintf(err, errsz, "%s", msg ? msg : "cannot load script");
            goto fail;
        }
        /* env = setmetatable({}, {__index = _G}) */
        lua_newtable(L);
        lua_newtable(L);
        lua_pushvalue(L, LUA_GLOBALSINDEX);
        lua_setfield(L, -2, "__index");
        lua_setmetatable(L, -2);
        lua_pushvalue(L, -1);
        lua_setfenv(L, -3);
        int env = lua_gettop(L);
        lua_pushcfunction(L, traceback_handler);
        lua_pushvalue(L, env - 1);
        if (lua_pcall(L, 0, 0, -2) != 0) {
            snprintf(err, errsz, "%s", lua_tostring(L, -1));
            goto fail;
        }
        lua_pop(L, 1); /* handler */
        for (int h = 0; h < SCRIPT_HOOK__COUNT; h++) {
            /* raw: the env falls back to _G, where load and error are
             * Lua's own functions, not hooks */
            lua_pushstring(L, hook_names[h]);
            lua_rawget(L, env);
            if (lua_isfunction(L, -1)) {
                e->hooks[i][h] = luaL_ref(L, LUA_REGISTRYINDEX);
                e->has[h] = true;
            } else {
                lua_pop(L, 1);
            }
        }
        lua_settop(L, 0);
    }
    if (e->has[SCRIPT_HOOK_LOAD])
        script_env_run(e, SCRIPT_HOOK_LOAD, NULL);
    return e;
fail:
    if (e && e->L) {
        lua_close(e->L);
        e->L = NULL;
    }
    if (e) {
        for (size_t i = 0; i < n && e->names; i++)
            free(e->names[i]);
        free(e->names);
        free(e->hooks);
        free(e);
    }
    return NULL;
}

void script_env_set_exit(script_env *e, void (*fn)(void *ud, int code), void *ud)
{
    if (!e)
        return;
    e->exit_fn = fn;
    e->exit_ud = ud;
}

bool script_env_has_hook(const script_env *e, enum script_hook h)
{
    return e && e->has[h];
}

int script_env_run(script_env *e, enum script_hook h, flow *f)
{
    if (!e || !e->has[h])
        return 0;
    lua_State *L = e->L;
    int top = lua_gettop(L);
    int ret = 0;
    for (size_t i = 0; i < e->n; i++) {
        if (e->hooks[i][h] == LUA_NOREF)
            continue;
        if (f && f->killed)
            break;
        lua_pushcfunction(L, traceback_handler);
        lua_rawgeti(L, LUA_REGISTRYINDEX, e->hooks[i][h]);
        int nargs = 0;
        if (f) {
            push_flow(L, f);
            nargs = 1;
        }
        if (e->timeout_ms)
            timeout_arm(e);
        int rc = lua_pcall(L, nargs, 0, top + 1);
        if (e->timeout_ms)
            lua_sethook(L, NULL, 0, 0);
        if (rc != 0 && e->timed_out) {
            /* the flow fails; later scripts' hooks do not run for it */
            log_error("%s: %s hook stopped: it ran longer than script_timeout (%d ms)", e->names[i],
                      hook_names[h], e->timeout_ms);
            if (f) {
                char msg[300];
                snprintf(msg, sizeof msg, "script %s: %s hook ran longer than script_timeout (%d ms)",
                         e->names[i], hook_names[h], e->timeout_ms);
                flow_set_error(f, msg);
            }
            e->timed_out = false;
            ret = -1;
            lua_settop(L, top);
            break;
        }
        if (rc != 0) {
            const char *msg = lua_tostring(L, -1);
            log_error("%s: error in %s hook: %s", e->names[i], hook_names[h], msg ? msg : "(error object is not a string)");
        }
        lua_settop(L, top);
    }
    if (f)
        sync_metadata(L, f);
    lua_settop(L, top);
    return ret;
}

void script_env_forget(script_env *e, flow *f)
{
    if (!e || !f)
        return;
    lua_State *L = e->L;
    lua_pushlightuserdata(L, (void *)&FLOWS_KEY);
    lua_rawget(L, LUA_REGISTRYINDEX);
    lua_pushlightuserdata(L, f);
    lua_rawget(L, -2);
    if (!lua_isnil(L, -1)) {
        lflow *lf = lua_touserdata(L, -1);
        lf->f = NULL;
        lua_pop(L, 1);
        lua_pushlightuserdata(L, f);
        lua_pushnil(L);
        lua_rawset(L, -3);
    } else {
        lua_pop(L, 1);
    }
    lua_pop(L, 1);
}

void script_env_free(script_env *e)
{
    if (!e)
        return;
    if (e->has[SCRIPT_HOOK_DONE])
        script_env_run(e, SCRIPT_HOOK_DONE, NULL);
    lua_close(e->L);
    for (size_t i = 0; i < e->n; i++)
        free(e->names[i]);
    free(e->names);
    free(e->hooks);
    free(e);
}
