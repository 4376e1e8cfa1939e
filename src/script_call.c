/* script_call.c — running hooks (see script.h): each in a coroutine, so
 * that it can wait.  A function that waits (mitm.sleep, mitm.http.request)
 * registers an event and yields; the event resumes the coroutine, and when
 * the last hook of the call is done the caller's done callback runs.  A
 * hook that does not wait costs one lua_resume instead of one lua_pcall:
 * finished coroutines and call records are kept for the next call, so the
 * common path allocates nothing.  Also here: script_timeout, and the
 * generations of hooks a call runs (script_int.h). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <malloc.h>
#include <time.h>

#include <event2/event.h>
#include <lauxlib.h>
#include <lua.h>
#include <luajit.h>

#include "log.h"
#include "script_int.h"

/* not a hook: a mitm.timer function */
#define HOOK_TIMER SCRIPT_HOOK__COUNT

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
    int arg_ref;                 /* an event's argument (a table), or LUA_NOREF */
    bool can_wait, waiting;
    bool flow_on_main;
    bool out_of_memory;          /* a hook ran past script_memory_limit */           /* flow_gen left the flow's object on e->L */
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
    return c->h == HOOK_TIMER ? "mitm.timer function" : script_hook_name((enum script_hook)c->h);
}

static const char *call_script(const script_call *c)
{
    if (c->h == HOOK_TIMER || !c->gen || c->i >= c->gen->nsets)
        return "script";
    return c->e->files[c->gen->sets[c->i].file].path;
}

/* ---- generations ---------------------------------------------------------- */

void script_gen_recount(script_gen *g)
{
    memset(g->has, 0, sizeof g->has);
    for (size_t i = 0; i < g->nsets; i++)
        for (int h = 0; h < SCRIPT_HOOK__COUNT; h++)
            if (g->sets[i].hooks[h] != LUA_NOREF)
                g->has[h] = true;
}

void script_gen_free(script_env *e, script_gen *g)
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
        script_gen_free(e, g);
}

/* The flow is freed: the Lua objects derived from it say so, and the
 * generation of scripts its hooks ran with may go.  Here, with the
 * generations, so that the connection code that frees flows (upstream's
 * CONNECT hook, upconnect.c) needs nothing of the script loader. */
void script_env_forget(script_env *e, flow *f)
{
    if (!e || !f)
        return;
    lflow *lf = script_unlink_flow(e->L, f);
    if (lf && lf->gen) {
        script_gen_release(e, lf->gen);
        lf->gen = NULL;
    }
}

/* Append a set to g (the caller made its refs). */
int script_gen_add(script_gen *g, const script_set *s)
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
    c->arg_ref = LUA_NOREF;
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
    e->mem_hit = false;
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

static void report_error(script_call *c, int st)
{
    script_env *e = c->e;
    if (st == LUA_ERRMEM || e->mem_hit) {
        log_error("%s: %s hook stopped: it needed more than script_memory_limit (%zu MiB)", call_script(c),
                  call_what(c), e->mem_limit >> 20);
        if (c->f) {
            char msg[300];
            snprintf(msg, sizeof msg, "script %s: %s hook needed more than script_memory_limit (%zu MiB)",
                     call_script(c), call_what(c), e->mem_limit >> 20);
            flow_set_error(c->f, msg);
        }
        e->mem_hit = false;
        c->rc = -1;
        c->out_of_memory = true;
        return;
    }
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
    if (c->arg_ref != LUA_NOREF) {
        lua_rawgeti(c->co, LUA_REGISTRYINDEX, c->arg_ref);
        nargs = 1;
    } else if (c->flow_on_main) {
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
            report_error(c, st);
            co_drop(c);
            if (c->out_of_memory) {
                /* what the hook built is garbage now that its coroutine is
                 * dropped: collect it and give the pages back, so that one
                 * runaway hook does not keep the memory */
                lua_gc(c->e->L, LUA_GCCOLLECT, 0);
                malloc_trim(0);
            }
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

int script_run_sets(script_env *e, script_gen *g, size_t from, size_t to, enum script_hook h, flow *f,
                    script_done_fn done, void *arg, script_call **callp)
{
    script_call *c = call_new(e);
    if (!c) {
        log_error("%s hook not run: out of memory", script_hook_name(h));
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

bool script_env_has_hook(const script_env *e, enum script_hook h)
{
    return e && e->has[h];
}

int script_env_start(script_env *e, enum script_hook h, flow *f, script_done_fn done, void *arg,
                     script_call **callp)
{
    if (!e || !e->has[h] || e->closing)
        return 0;
    return script_run_sets(e, f ? NULL : e->gen, 0, f ? 0 : e->gen->nsets, h, f, done, arg, callp);
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
}

void script_calls_end(script_env *e)
{
    while (e->pending) {
        script_call *c = e->pending;
        script_done_fn done = c->done;
        void *arg = c->arg;
        call_free(c);
        if (done)
            done(arg, -1);
    }
    free(e->spare);
    e->spare = NULL;
}

void script_run_event(script_env *e, enum script_hook h)
{
    lua_State *L = e->L;
    int ref = luaL_ref(L, LUA_REGISTRYINDEX);
    script_call *c = e->closing ? NULL : call_new(e);
    if (c) {
        c->gen = e->gen;
        e->gen->refs++;
        c->h = (int)h;
        c->end = e->gen->nsets;
        c->arg_ref = ref;
        call_run(c, 0); /* events cannot wait: can_wait is false */
        call_free(c);
    }
    lua_rawgeti(L, LUA_REGISTRYINDEX, ref);
    luaL_unref(L, LUA_REGISTRYINDEX, ref);
}
