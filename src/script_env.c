/* script_env.c — a worker's Lua state: the API set up in it, scripts
 * loaded into generations of hooks (script_int.h), reloaded when their file
 * changes (a flow keeps the generation its first hook saw), and torn down
 * with whatever still waits.  Running the hooks is script_call.c's. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include <event2/event.h>
#include <lauxlib.h>
#include <lua.h>
#include <lualib.h>

#include "log.h"
#include "script_int.h"

/* ---- loading -------------------------------------------------------------- */

static int traceback_handler(lua_State *L)
{
    /* keep the "file:line: message" first line as the error; the stack
     * goes to debug output only */
    if (log_get_level() >= LOG_DEBUG) {
        luaL_traceback(L, L, lua_tostring(L, 1), 1);
        log_debug("%s", lua_tostring(L, -1));
        lua_pop(L, 1);
    }
    return 1;
}

/* The hooks of the table at idx as a set (raw: a script's environment falls
 * back to _G, where `load` and `error` are Lua's own functions, not hooks).
 * false when it has none. */
static void get_hook(lua_State *L, int idx, bool raw, const char *name)
{
    if (raw) {
        lua_pushstring(L, name);
        lua_rawget(L, idx);
    } else {
        lua_getfield(L, idx, name);
    }
}

static bool set_from(lua_State *L, int idx, bool raw, size_t file, script_set *s)
{
    bool any = false;
    s->file = file;
    for (int h = 0; h < SCRIPT_HOOK__COUNT; h++) {
        s->hooks[h] = LUA_NOREF;
        get_hook(L, idx, raw, script_hook_name(h));
        if (h == SCRIPT_HOOK_CONNECT && !lua_isfunction(L, -1)) {
            lua_pop(L, 1); /* mitmproxy 7+'s name for it */
            get_hook(L, idx, raw, "http_connect");
        }
        if (lua_isfunction(L, -1)) {
            s->hooks[h] = luaL_ref(L, LUA_REGISTRYINDEX);
            any = true;
        } else {
            lua_pop(L, 1);
        }
    }
    return any;
}

static void set_unref(lua_State *L, script_set *s)
{
    for (int h = 0; h < SCRIPT_HOOK__COUNT; h++)
        luaL_unref(L, LUA_REGISTRYINDEX, s->hooks[h]);
}

/* What the chunk returned (at idx) or left in its environment (env) as
 * hook sets, appended to g. */
static int collect_sets(lua_State *L, int idx, int env, size_t file, script_gen *g, char *err, size_t errsz)
{
    const char *path = script_env_of(L)->files[file].path;
    script_set s;
    if (!lua_istable(L, idx)) {
        if (set_from(L, env, true, file, &s) && script_gen_add(g, &s) < 0)
            goto oom;
        return 0;
    }
    /* module form: a table of hooks, or a list of them */
    if (set_from(L, idx, false, file, &s)) {
        if (script_gen_add(g, &s) < 0)
            goto oom;
        return 0;
    }
    size_t n = lua_objlen(L, idx);
    for (size_t k = 1; k <= n; k++) {
        lua_rawgeti(L, idx, (int)k);
        if (!lua_istable(L, -1)) {
            snprintf(err, errsz, "%s: element %zu of the returned list is not a table of hooks", path, k);
            return -1;
        }
        bool any = set_from(L, lua_gettop(L), false, file, &s);
        lua_pop(L, 1);
        if (any && script_gen_add(g, &s) < 0)
            goto oom;
    }
    if (n == 0)
        log_warn("%s: the returned table defines no hook", path);
    return 0;
oom:
    set_unref(L, &s);
    snprintf(err, errsz, "out of memory");
    return -1;
}

/* Compile the file and run it in an environment of its own (whose __index
 * is _G, so two scripts' globals never clobber each other); its hook sets
 * go to g.  On failure nothing is added and err says "file:line: why". */
static int load_file(script_env *e, size_t file, script_gen *g, char *err, size_t errsz)
{
    lua_State *L = e->L;
    const char *path = e->files[file].path;
    int top = lua_gettop(L);
    size_t before = g->nsets;
    /* source only: LuaJIT does not verify bytecode, and a damaged or
     * hostile precompiled chunk can crash the process */
    if (luaL_loadfilex(L, path, "t") != 0) {
        const char *msg = lua_tostring(L, -1);
        /* "cannot open x.lua" from Lua already names the file */
        if (msg && strstr(msg, "wrong mode"))
            snprintf(err, errsz, "%s: a precompiled (bytecode) chunk; scripts must be Lua source", path);
        else
            snprintf(err, errsz, "%s", msg ? msg : "cannot load script");
        goto fail;
    }
    lua_newtable(L); /* env = setmetatable({}, {__index = _G}) */
    lua_newtable(L);
    lua_pushvalue(L, LUA_GLOBALSINDEX);
    lua_setfield(L, -2, "__index");
    lua_setmetatable(L, -2);
    lua_pushvalue(L, -1);
    lua_setfenv(L, -3);
    int env = lua_gettop(L);
    lua_pushcfunction(L, traceback_handler);
    lua_pushvalue(L, env - 1);
    if (lua_pcall(L, 0, 1, env + 1) != 0) {
        snprintf(err, errsz, "%s", lua_tostring(L, -1) ? lua_tostring(L, -1) : "error loading script");
        goto fail;
    }
    if (collect_sets(L, lua_gettop(L), env, file, g, err, errsz) < 0)
        goto fail;
    lua_settop(L, top);
    return 0;
fail:
    while (g->nsets > before)
        set_unref(L, &g->sets[--g->nsets]);
    lua_settop(L, top);
    return -1;
}

static void file_stat(script_file *sf)
{
    struct stat st;
    if (stat(sf->path, &st) == 0) {
        sf->mtime = st.st_mtim;
        sf->size = st.st_size;
    }
}

static void env_free_files(script_env *e)
{
    for (size_t i = 0; i < e->n; i++)
        free(e->files[i].path);
    free(e->files);
}

/* ---- limits a script cannot lift ------------------------------------------
 *
 * Every allocation of the state goes through lua_alloc, which counts what
 * the state holds and refuses growth past script_memory_limit.  And the two
 * functions that could undo script_timeout are wrapped from the start, so
 * that a reference a script took at load time is the wrapper:
 * debug.sethook (the limit is a count hook) and jit.on (compiled code does
 * not call hooks). */

static int lua_panic(lua_State *L)
{
    log_error("Lua: unprotected error: %s", lua_tostring(L, -1) ? lua_tostring(L, -1) : "?");
    return 0; /* LuaJIT aborts the process */
}

/* LuaJIT's own allocator does the work (it is faster for Lua's many small
 * objects than malloc: a hook that builds strings ran 19% slower on glibc's);
 * this only counts and refuses. */
static void *lua_alloc(void *ud, void *ptr, size_t osize, size_t nsize)
{
    script_env *e = ud;
    if (nsize > osize && e->mem_limit && e->mem_used + (nsize - osize) > e->mem_limit) {
        e->mem_hit = true;
        return NULL;
    }
    void *p = e->base_alloc(e->base_alloc_ud, ptr, osize, nsize);
    if (p || nsize == 0) {
        size_t gone = osize < e->mem_used ? osize : e->mem_used;
        e->mem_used = e->mem_used - gone + nsize;
    }
    return p;
}

static int guarded(lua_State *L, const char *what)
{
    script_env *e = script_env_of(L);
    if (e && e->timeout_ms)
        return luaL_error(L, "%s is not available with script_timeout set: the limit depends on it", what);
    lua_pushvalue(L, lua_upvalueindex(1));
    lua_insert(L, 1);
    lua_call(L, lua_gettop(L) - 1, LUA_MULTRET);
    return lua_gettop(L);
}

static int guarded_sethook(lua_State *L) { return guarded(L, "debug.sethook"); }
static int guarded_jit_on(lua_State *L) { return guarded(L, "jit.on"); }

/* lib[name] = a closure of wrapper over the original */
static void wrap(lua_State *L, const char *lib, const char *name, lua_CFunction wrapper)
{
    lua_getglobal(L, lib);
    if (!lua_istable(L, -1)) {
        lua_pop(L, 1);
        return;
    }
    lua_getfield(L, -1, name);
    lua_pushcclosure(L, wrapper, 1);
    lua_setfield(L, -2, name);
    lua_pop(L, 1);
}

void script_env_set_memory_limit(script_env *e, int mib)
{
    if (e)
        e->mem_limit = mib > 0 ? (size_t)mib << 20 : 0;
}

script_env *script_env_new(const char *const *paths, size_t n, char *err, size_t errsz)
{
    script_env *e = calloc(1, sizeof *e);
    if (!e || !(e->L = luaL_newstate()) || !(e->files = calloc(n ? n : 1, sizeof *e->files)) ||
        !(e->gen = calloc(1, sizeof *e->gen))) {
        snprintf(err, errsz, "out of memory");
        goto fail;
    }
    e->gen->refs = 1;
    lua_State *L = e->L;
    lua_atpanic(L, lua_panic);
    /* count from here on: what the new state holds already is its base */
    e->base_alloc = lua_getallocf(L, &e->base_alloc_ud);
    e->mem_used = (size_t)lua_gc(L, LUA_GCCOUNT, 0) * 1024 + (size_t)lua_gc(L, LUA_GCCOUNTB, 0);
    lua_setallocf(L, lua_alloc, e);
    luaL_openlibs(L);
    wrap(L, "debug", "sethook", guarded_sethook);
    wrap(L, "jit", "on", guarded_jit_on);
    if (lua_cpcall(L, script_setup_api, NULL) != 0) {
        snprintf(err, errsz, "out of memory");
        goto fail;
    }
    if (script_load_prelude(L, err, errsz) < 0)
        goto fail;
    script_add_waiting_api(L);
    script_add_http_api(L);
    lua_pushlightuserdata(L, (void *)&script_env_key);
    lua_pushlightuserdata(L, e);
    lua_rawset(L, LUA_REGISTRYINDEX);
    for (size_t i = 0; i < n; i++) {
        if (!(e->files[i].path = strdup(paths[i]))) {
            snprintf(err, errsz, "out of memory");
            goto fail;
        }
        e->n = i + 1;
        file_stat(&e->files[i]);
        if (load_file(e, i, e->gen, err, errsz) < 0)
            goto fail;
    }
    script_gen_recount(e->gen);
    memcpy(e->has, e->gen->has, sizeof e->has);
    if (e->has[SCRIPT_HOOK_LOAD])
        script_env_run(e, SCRIPT_HOOK_LOAD, NULL);
    return e;
fail:
    if (e && e->gen)
        script_gen_free(e, e->gen);
    if (e && e->L)
        lua_close(e->L);
    if (e) {
        env_free_files(e);
        free(e);
    }
    return NULL;
}

/* ---- hot reload ------------------------------------------------------------ */

/* A new generation: file's sets from a fresh load, the others' as they are. */
static void reload_file(script_env *e, size_t file)
{
    lua_State *L = e->L;
    char err[512];
    script_gen *ng = calloc(1, sizeof *ng);
    script_gen *og = e->gen;
    if (!ng) {
        log_error("%s: not reloaded: out of memory", e->files[file].path);
        return;
    }
    ng->refs = 1;
    size_t first = SIZE_MAX, last = 0;
    bool loaded = false;
    for (size_t i = 0; i <= og->nsets; i++) {
        bool past = i == og->nsets || og->sets[i].file > file;
        if (past && !loaded) {
            first = ng->nsets;
            if (load_file(e, file, ng, err, sizeof err) < 0) {
                log_error("reloading %s failed, the previous version stays: %s", e->files[file].path, err);
                script_gen_free(e, ng);
                return;
            }
            last = ng->nsets;
            loaded = true;
        }
        if (i == og->nsets)
            break;
        if (og->sets[i].file == file)
            continue;
        script_set s = og->sets[i];
        for (int h = 0; h < SCRIPT_HOOK__COUNT; h++)
            if (s.hooks[h] != LUA_NOREF) {
                lua_rawgeti(L, LUA_REGISTRYINDEX, s.hooks[h]);
                s.hooks[h] = luaL_ref(L, LUA_REGISTRYINDEX);
            }
        if (script_gen_add(ng, &s) < 0) {
            set_unref(L, &s);
            log_error("%s: not reloaded: out of memory", e->files[file].path);
            script_gen_free(e, ng);
            return;
        }
    }
    script_gen_recount(ng);
    e->gen = ng;
    memcpy(e->has, ng->has, sizeof e->has);
    script_gen_release(e, og);
    log_info("%s: reloaded", e->files[file].path);
    script_run_sets(e, ng, first, last, SCRIPT_HOOK_LOAD, NULL, NULL, NULL, NULL);
}

static void watch_cb(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    script_env *e = arg;
    for (size_t i = 0; i < e->n; i++) {
        script_file *sf = &e->files[i];
        struct stat st;
        if (stat(sf->path, &st) != 0)
            continue; /* being replaced: look again next time */
        if (st.st_mtim.tv_sec == sf->mtime.tv_sec && st.st_mtim.tv_nsec == sf->mtime.tv_nsec &&
            st.st_size == sf->size)
            continue;
        sf->mtime = st.st_mtim;
        sf->size = st.st_size;
        reload_file(e, i);
    }
}

void script_env_watch(script_env *e)
{
    if (!e || !e->base || e->watch || e->n == 0)
        return;
    static const struct timeval every = {1, 0};
    if (!(e->watch = event_new(e->base, -1, EV_PERSIST, watch_cb, e)) || event_add(e->watch, &every) < 0)
        log_warn("scripts will not be reloaded when they change: cannot set a timer");
}

/* ---- the rest of the env ------------------------------------------------ */

void script_env_set_loop(script_env *e, struct event_base *base)
{
    if (e)
        e->base = base;
}

void script_env_set_worker(script_env *e, struct worker *w)
{
    if (e)
        e->worker = w;
}

void script_env_set_resume(script_env *e, void (*fn)(void *ud, flow *f), void *ud)
{
    if (!e)
        return;
    e->resume_fn = fn;
    e->resume_ud = ud;
}

void script_env_set_exit(script_env *e, void (*fn)(void *ud, int code), void *ud)
{
    if (!e)
        return;
    e->exit_fn = fn;
    e->exit_ud = ud;
}

void script_env_free(script_env *e)
{
    if (!e)
        return;
    if (e->has[SCRIPT_HOOK_DONE])
        script_env_run(e, SCRIPT_HOOK_DONE, NULL);
    /* what still waits ends now; its owners hear so (a flow's error hook
     * that waited still records its flow) */
    e->closing = true;
    script_calls_end(e);
    if (e->watch)
        event_free(e->watch);
    script_gen_release(e, e->gen);
    lua_close(e->L);
    env_free_files(e);
    free(e);
}

