/* script_run.c — Lua states, loading scripts, and running hooks (see
 * script.h); the Lua API over flows is script.c's.
 *
 * Every hook runs in a coroutine, so that it can wait: a function that
 * waits (mitm.sleep, mitm.http.request) registers an event and yields; the
 * event resumes the coroutine, and when the last hook of the call is done
 * the caller's done callback runs.  A hook that does not wait costs one
 * lua_resume instead of one lua_pcall: finished coroutines and call records
 * are kept for the next call, so the common path allocates nothing.
 *
 * Scripts are loaded into generations (script_int.h): a reload makes a new
 * one, and a flow keeps the one its first hook ran with. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

#include <event2/event.h>
#include <lauxlib.h>
#include <lua.h>
#include <luajit.h>
#include <lualib.h>

#include "log.h"
#include "script_int.h"

/* not a hook: a mitm.timer function */
#define HOOK_TIMER SCRIPT_HOOK__COUNT

static const char *const hook_names[SCRIPT_HOOK__COUNT] = {
    "load", "connect", "requestheaders", "request", "responseheaders",
    "response", "error", "websocket_message", "websocket_start",
    "websocket_end", "done",
};

const char *script_hook_name(enum script_hook h) { return hook_names[h]; }

struct script_call {
    script_env *e;
    script_call *next, **prevp;  /* on e->pending while waiting */
    script_gen *gen;             /* a ref, for hooks; NULL for a timer */
    int h;                       /* enum script_hook, or HOOK_TIMER */
    flow *f;
    lflow *lf;
    size_t i, end;               /* the sets still to run */
    lua_State *co;               /* the running hook's coroutine, or NULL */
    int co_ref;
    int fn_ref;                  /* a timer's function */
    bool can_wait, waiting;
    bool flow_on_main;           /* flow_gen left the flow's object on e->L */
    int nres;                    /* values pushed on co for its resume */
    int rc;
    long long used_ns;           /* Lua running time, for script_timeout */
    struct event *ev;            /* mitm.sleep / mitm.timer */
    void (*cancel)(void *);      /* what else it waits for (script_call_wait) */
    void *cancel_arg;
    script_done_fn done;
    void *arg;
};

static const char *call_what(const script_call *c)
{
    return c->h == HOOK_TIMER ? "mitm.timer function" : hook_names[c->h];
}

static const char *call_script(const script_call *c)
{
    if (c->h == HOOK_TIMER || !c->gen || c->i >= c->gen->nsets)
        return "script";
    return c->e->files[c->gen->sets[c->i].file].path;
}

/* ---- generations ---------------------------------------------------------- */

static void gen_recount(script_gen *g)
{
    memset(g->has, 0, sizeof g->has);
    for (size_t i = 0; i < g->nsets; i++)
        for (int h = 0; h < SCRIPT_HOOK__COUNT; h++)
            if (g->sets[i].hooks[h] != LUA_NOREF)
                g->has[h] = true;
}

static void gen_free(script_env *e, script_gen *g)
{
    for (size_t i = 0; i < g->nsets; i++)
        for (int h = 0; h < SCRIPT_HOOK__COUNT; h++)
            luaL_unref(e->L, LUA_REGISTRYINDEX, g->sets[i].hooks[h]);
    free(g->sets);
    free(g);
}

void script_gen_release(script_env *e, script_gen *g)
{
    if (g && --g->refs == 0)
        gen_free(e, g);
}

/* Append a set to g (the caller made its refs). */
static int gen_add(script_gen *g, const script_set *s)
{
    script_set *nv = realloc(g->sets, (g->nsets + 1) * sizeof *nv);
    if (!nv)
        return -1;
    g->sets = nv;
    g->sets[g->nsets++] = *s;
    return 0;
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
 * interrupted; the limit takes effect when it returns.  The clock runs only
 * while the hook's coroutine runs: waiting is free. */
#define TIMEOUT_CHECK_EVERY 1000

static long long now_ns(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (long long)t.tv_sec * 1000000000LL + t.tv_nsec;
}

static void timeout_hook(lua_State *L, lua_Debug *ar)
{
    (void)ar;
    script_env *e = script_env_of(L);
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

static void timeout_arm(script_env *e, long long used_ns)
{
    long long left = (long long)e->timeout_ms * 1000000LL - used_ns;
    long long at = now_ns() + (left > 0 ? left : 0);
    e->deadline.tv_sec = (time_t)(at / 1000000000LL);
    e->deadline.tv_nsec = (long)(at % 1000000000LL);
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

/* ---- coroutines and call records ------------------------------------------- */

static void co_get(script_call *c)
{
    script_env *e = c->e;
    lua_State *L = e->L;
    if (e->nidle_co > 0) {
        e->nidle_co--;
        c->co_ref = e->idle_co[e->nidle_co];
        c->co = e->idle_thread[e->nidle_co];
        return;
    }
    c->co = lua_newthread(L);
    c->co_ref = luaL_ref(L, LUA_REGISTRYINDEX);
}

/* The hook returned: its coroutine can run the next one. */
static void co_put(script_call *c)
{
    script_env *e = c->e;
    lua_settop(c->co, 0);
    if (e->nidle_co < (int)(sizeof e->idle_co / sizeof *e->idle_co)) {
        e->idle_thread[e->nidle_co] = c->co;
        e->idle_co[e->nidle_co++] = c->co_ref;
    } else
        luaL_unref(e->L, LUA_REGISTRYINDEX, c->co_ref);
    c->co = NULL;
}

/* Failed or abandoned: a dead (or suspended) coroutine is not reused. */
static void co_drop(script_call *c)
{
    if (!c->co)
        return;
    luaL_unref(c->e->L, LUA_REGISTRYINDEX, c->co_ref);
    c->co = NULL;
}

static script_call *call_new(script_env *e)
{
    script_call *c = e->spare;
    if (c)
        e->spare = NULL;
    else if (!(c = malloc(sizeof *c)))
        return NULL;
    memset(c, 0, sizeof *c);
    c->e = e;
    c->fn_ref = LUA_NOREF;
    return c;
}

static void pending_add(script_call *c)
{
    script_env *e = c->e;
    c->next = e->pending;
    if (c->next)
        c->next->prevp = &c->next;
    c->prevp = &e->pending;
    e->pending = c;
}

static void pending_remove(script_call *c)
{
    if (!c->prevp)
        return;
    *c->prevp = c->next;
    if (c->next)
        c->next->prevp = c->prevp;
    c->next = NULL;
    c->prevp = NULL;
}

static void call_free(script_call *c)
{
    script_env *e = c->e;
    pending_remove(c);
    if (c->ev)
        event_free(c->ev);
    if (c->cancel)
        c->cancel(c->cancel_arg);
    co_drop(c);
    luaL_unref(e->L, LUA_REGISTRYINDEX, c->fn_ref);
    script_gen_release(e, c->gen);
    if (!e->spare)
        e->spare = c;
    else
        free(c);
}

/* ---- running ------------------------------------------------------------ */

static int resume(script_call *c, int nargs)
{
    script_env *e = c->e;
    script_call *outer = e->running;
    long long t0 = 0;
    e->running = c;
    if (e->timeout_ms) {
        timeout_arm(e, c->used_ns);
        t0 = now_ns();
    }
    int st = lua_resume(c->co, nargs);
    if (e->timeout_ms) {
        lua_sethook(e->L, NULL, 0, 0);
        c->used_ns += now_ns() - t0;
    }
    e->running = outer;
    return st;
}

static void report_error(script_call *c)
{
    script_env *e = c->e;
    if (e->timed_out) {
        /* the flow fails; later scripts' hooks do not run for it */
        log_error("%s: %s hook stopped: it ran longer than script_timeout (%d ms)", call_script(c), call_what(c),
                  e->timeout_ms);
        if (c->f) {
            char msg[300];
            snprintf(msg, sizeof msg, "script %s: %s hook ran longer than script_timeout (%d ms)", call_script(c),
                     call_what(c), e->timeout_ms);
            flow_set_error(c->f, msg);
        }
        e->timed_out = false;
        c->rc = -1;
        return;
    }
    const char *msg = lua_tostring(c->co, -1);
    log_error("%s: error in %s%s: %s", call_script(c), call_what(c), c->h == HOOK_TIMER ? "" : " hook",
              msg ? msg : "(error object is not a string)");
    if (log_get_level() >= LOG_DEBUG) {
        luaL_traceback(e->L, c->co, msg, 0);
        log_debug("%s", lua_tostring(e->L, -1));
        lua_pop(e->L, 1);
    }
}

/* A flow's hooks come from the generation its first hook saw (a reload
 * does not change a flow in flight): found through its Lua object, which
 * holds a ref.  Known at the first hook of the call, so that finding it
 * costs nothing more than pushing the flow, which that hook needs anyway. */
static bool flow_gen(script_call *c)
{
    script_env *e = c->e;
    lua_State *L = e->L;
    script_push_flow(L, c->f);  /* left on L for start_next to move */
    c->lf = lua_touserdata(L, -1);
    c->flow_on_main = true;
    if (!c->lf->gen) {
        c->lf->gen = e->gen;
        e->gen->refs++;
    }
    c->gen = c->lf->gen;
    c->gen->refs++;
    c->end = c->gen->nsets;
    return true;
}

/* Start the next hook of the call on a coroutine: false when none is left. */
static bool start_next(script_call *c, int *st)
{
    int ref = LUA_NOREF;
    if (c->h == HOOK_TIMER) {
        if (c->i > 0)
            return false;
        ref = c->fn_ref;
    } else {
        if (!c->gen && !flow_gen(c))
            return false;
        while (c->i < c->end && (ref = c->gen->sets[c->i].hooks[c->h]) == LUA_NOREF)
            c->i++;
        /* a killed flow sees no more hooks, but its error hook (as
         * mitmproxy: "Connection killed." is an error) */
        if (c->i >= c->end || (c->f && c->f->killed && c->h != SCRIPT_HOOK_ERROR)) {
            if (c->flow_on_main)
                lua_pop(c->e->L, 1);
            c->flow_on_main = false;
            return false;
        }
    }
    co_get(c);
    lua_rawgeti(c->co, LUA_REGISTRYINDEX, ref);
    int nargs = 0;
    if (c->flow_on_main) {
        lua_xmove(c->e->L, c->co, 1);
        c->flow_on_main = false;
        nargs = 1;
    } else if (c->f) {
        script_push_flow(c->co, c->f);
        nargs = 1;
    }
    *st = resume(c, nargs);
    return true;
}

/* Run the call's hooks from where it stands: SCRIPT_WAITING, or its
 * result once every hook is done. */
static int call_run(script_call *c, int nres)
{
    for (;;) {
        int st;
        if (c->co) {
            st = resume(c, nres);
            nres = 0;
        } else if (!start_next(c, &st)) {
            break;
        }
        if (st == LUA_YIELD && c->waiting)
            return SCRIPT_WAITING;
        if (st == LUA_YIELD) {
            log_error("%s: %s%s yielded without waiting for anything (coroutine.yield?): stopped", call_script(c),
                      call_what(c), c->h == HOOK_TIMER ? "" : " hook");
            co_drop(c);
        } else if (st != 0) {
            report_error(c);
            co_drop(c);
            if (c->rc < 0)
                break;
        } else {
            co_put(c);
        }
        c->i++;
    }
    if (c->lf && c->lf->f && c->lf->meta_loaded)
        script_sync_metadata(c->e->L, c->f);
    return c->rc;
}

/* An event a waiting hook asked for came: run on. */
static void call_continue(script_call *c)
{
    pending_remove(c);
    c->waiting = false;
    int rc = call_run(c, c->nres);
    if (rc == SCRIPT_WAITING) {
        pending_add(c);
        return;
    }
    script_done_fn done = c->done;
    void *arg = c->arg;
    call_free(c);
    if (done)
        done(arg, rc);
}

static int run_sets(script_env *e, script_gen *g, size_t from, size_t to, enum script_hook h, flow *f,
                    script_done_fn done, void *arg, script_call **callp)
{
    script_call *c = call_new(e);
    if (!c) {
        log_error("%s hook not run: out of memory", hook_names[h]);
        return 0;
    }
    if ((c->gen = g))   /* else the flow's own, at its first hook */
        g->refs++;
    c->h = (int)h;
    c->f = f;
    c->i = from;
    c->end = to;
    c->can_wait = done != NULL && e->base != NULL;
    c->done = done;
    c->arg = arg;
    int rc = call_run(c, 0);
    if (rc == SCRIPT_WAITING) {
        pending_add(c);
        if (callp)
            *callp = c;
        return rc;
    }
    call_free(c);
    return rc;
}

int script_env_start(script_env *e, enum script_hook h, flow *f, script_done_fn done, void *arg,
                     script_call **callp)
{
    if (!e || !e->has[h] || e->closing)
        return 0;
    return run_sets(e, f ? NULL : e->gen, 0, f ? 0 : e->gen->nsets, h, f, done, arg, callp);
}

int script_env_run(script_env *e, enum script_hook h, flow *f)
{
    return script_env_start(e, h, f, NULL, NULL, NULL);
}

void script_call_cancel(script_call *c)
{
    if (c)
        call_free(c);
}

size_t script_env_pending(const script_env *e)
{
    size_t n = 0;
    for (const script_call *c = e ? e->pending : NULL; c; c = c->next)
        n++;
    return n;
}

/* ---- functions that wait ---------------------------------------------------- */

/* The call whose coroutine L is, if it may wait; raises otherwise. */
script_call *script_call_waitable(lua_State *L, const char *what)
{
    script_env *e = script_env_of(L);
    script_call *c = e ? e->running : NULL;
    if (!c || c->co != L)
        luaL_error(L, "%s: only a hook (or a mitm.timer function) itself can wait, not a coroutine it made", what);
    if (!c->can_wait)
        luaL_error(L, "%s: the %s hook cannot wait (request, response, connect, error hooks and mitm.timer "
                      "functions can)", what, call_what(c));
    return c;
}

void script_call_wait(script_call *c, void (*cancel)(void *), void *arg)
{
    c->waiting = true;
    c->nres = 0;
    c->cancel = cancel;
    c->cancel_arg = arg;
}

lua_State *script_call_thread(const script_call *c)
{
    return c->co;
}

void script_call_wake(script_call *c, int nres)
{
    c->cancel = NULL;
    c->nres = nres;
    call_continue(c);
}

static void wake_cb(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    script_call *c = arg;
    event_free(c->ev);
    c->ev = NULL;
    call_continue(c);
}

static struct timeval seconds_tv(lua_State *L, int idx, const char *what)
{
    double s = luaL_checknumber(L, idx);
    if (!(s >= 0 && s <= 31536000))
        luaL_error(L, "%s: seconds must be between 0 and one year", what);
    struct timeval tv = {(time_t)s, (suseconds_t)((s - (double)(time_t)s) * 1e6)};
    return tv;
}

/* mitm.sleep(seconds): this hook waits; other flows go on. */
static int l_sleep(lua_State *L)
{
    struct timeval tv = seconds_tv(L, 1, "mitm.sleep");
    script_call *c = script_call_waitable(L, "mitm.sleep");
    if (!(c->ev = evtimer_new(c->e->base, wake_cb, c)) || evtimer_add(c->ev, &tv) < 0)
        return luaL_error(L, "mitm.sleep: cannot set a timer");
    c->waiting = true;
    c->nres = 0;
    return lua_yield(L, 0);
}

/* mitm.timer(seconds, fn): run fn later, in a coroutine of its own (it may
 * wait, resume or kill held flows).  Not tied to any flow. */
static int l_timer(lua_State *L)
{
    struct timeval tv = seconds_tv(L, 1, "mitm.timer");
    luaL_checktype(L, 2, LUA_TFUNCTION);
    script_env *e = script_env_of(L);
    if (!e || !e->base || e->closing)
        return luaL_error(L, "mitm.timer is not available here");
    script_call *c = call_new(e);
    if (!c)
        return luaL_error(L, "out of memory");
    c->h = HOOK_TIMER;
    c->can_wait = true;
    lua_pushvalue(L, 2);
    c->fn_ref = luaL_ref(L, LUA_REGISTRYINDEX);
    if (!(c->ev = evtimer_new(e->base, wake_cb, c)) || evtimer_add(c->ev, &tv) < 0) {
        call_free(c);
        return luaL_error(L, "mitm.timer: cannot set a timer");
    }
    pending_add(c);
    return 0;
}

void script_add_waiting_api(lua_State *L)
{
    static const luaL_Reg fns[] = {{"sleep", l_sleep}, {"timer", l_timer}, {NULL, NULL}};
    lua_getglobal(L, "mitm");
    luaL_register(L, NULL, fns);
    lua_pop(L, 1);
    script_add_http_api(L);
}

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
static bool set_from(lua_State *L, int idx, bool raw, size_t file, script_set *s)
{
    bool any = false;
    s->file = file;
    for (int h = 0; h < SCRIPT_HOOK__COUNT; h++) {
        s->hooks[h] = LUA_NOREF;
        if (raw) {
            lua_pushstring(L, hook_names[h]);
            lua_rawget(L, idx);
        } else {
            lua_getfield(L, idx, hook_names[h]);
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
        if (set_from(L, env, true, file, &s) && gen_add(g, &s) < 0)
            goto oom;
        return 0;
    }
    /* module form: a table of hooks, or a list of them */
    if (set_from(L, idx, false, file, &s)) {
        if (gen_add(g, &s) < 0)
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
        if (any && gen_add(g, &s) < 0)
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
    luaL_openlibs(L);
    if (lua_cpcall(L, script_setup_api, NULL) != 0) {
        snprintf(err, errsz, "out of memory");
        goto fail;
    }
    if (script_load_prelude(L, err, errsz) < 0)
        goto fail;
    script_add_waiting_api(L);
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
    gen_recount(e->gen);
    memcpy(e->has, e->gen->has, sizeof e->has);
    if (e->has[SCRIPT_HOOK_LOAD])
        script_env_run(e, SCRIPT_HOOK_LOAD, NULL);
    return e;
fail:
    if (e && e->gen)
        gen_free(e, e->gen);
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
                gen_free(e, ng);
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
        if (gen_add(ng, &s) < 0) {
            set_unref(L, &s);
            log_error("%s: not reloaded: out of memory", e->files[file].path);
            gen_free(e, ng);
            return;
        }
    }
    gen_recount(ng);
    e->gen = ng;
    memcpy(e->has, ng->has, sizeof e->has);
    script_gen_release(e, og);
    log_info("%s: reloaded", e->files[file].path);
    run_sets(e, ng, first, last, SCRIPT_HOOK_LOAD, NULL, NULL, NULL, NULL);
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

bool script_env_has_hook(const script_env *e, enum script_hook h)
{
    return e && e->has[h];
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
    while (e->pending) {
        script_call *c = e->pending;
        script_done_fn done = c->done;
        void *arg = c->arg;
        call_free(c);
        if (done)
            done(arg, -1);
    }
    if (e->watch)
        event_free(e->watch);
    script_gen_release(e, e->gen);
    lua_close(e->L);
    free(e->spare);
    env_free_files(e);
    free(e);
}
