/* script_int.h — what the parts of the script module share, in layers:
 * script.c (the Lua API over flows), script_call.c (running hooks in
 * coroutines, waiting, script_timeout), script_http.c (mitm.http.request)
 * and script_env.c (the state: loading, reloading, tearing down).  Not for
 * other modules. */
#ifndef MITMLUA_SCRIPT_INT_H
#define MITMLUA_SCRIPT_INT_H

#include <stdbool.h>
#include <sys/types.h>
#include <time.h>

#include <lua.h>

#include "script.h"

struct event_base;

/* The hooks of every script as loaded at one moment: a reload makes a
 * new generation, and flows that started with the old one finish with it
 * (each flow's Lua object holds its generation). */
typedef struct script_set {
    int hooks[SCRIPT_HOOK__COUNT];   /* registry refs, LUA_NOREF when absent */
    size_t file;                     /* index in script_env.files */
} script_set;

typedef struct script_gen {
    int refs;
    script_set *sets;                /* in the order hooks run */
    size_t nsets;
    bool has[SCRIPT_HOOK__COUNT];
} script_gen;

typedef struct script_file {
    char *path;
    struct timespec mtime;           /* as loaded: a newer one is reloaded */
    off_t size;
} script_file;

struct script_env {
    lua_State *L;
    script_file *files;
    size_t n;
    script_gen *gen;         /* the current generation (one ref held here) */
    bool has[SCRIPT_HOOK__COUNT]; /* the current generation has a hook h */
    void (*exit_fn)(void *ud, int code);
    void *exit_ud;
    void (*resume_fn)(void *ud, flow *f);   /* flow:resume(), see flowrun.c */
    void *resume_ud;
    struct event_base *base; /* where waiting hooks wait; NULL: none can */
    struct worker *worker;   /* for mitm.http.request; NULL outside a worker */
    struct event *watch;     /* hot reload: checks the files every second */
    int timeout_ms;          /* script_timeout; 0 = hooks run unbounded */
    size_t mem_used;         /* bytes the Lua state holds (our allocator's count) */
    lua_Alloc base_alloc;    /* LuaJIT's own allocator, which ours calls */
    void *base_alloc_ud;
    size_t mem_limit;        /* script_memory_limit in bytes; 0 = none */
    bool mem_hit;            /* an allocation was refused since the last check */
    struct timespec deadline;
    bool timed_out;          /* the running hook passed its deadline */
    struct script_call *running; /* the call whose coroutine runs now */
    struct script_call *pending; /* calls waiting for an event */
    struct script_call *spare;   /* one finished call kept for the next */
    int idle_co[8];          /* finished coroutines kept for reuse (refs) */
    lua_State *idle_thread[8]; /* ... and the threads they hold */
    int nidle_co;
    bool closing;            /* script_env_free has begun: start no hook */
};

typedef struct lflow {
    flow *f;              /* NULL once forgotten */
    bool meta_loaded;     /* flow.metadata materialised as a Lua table */
    script_gen *gen;      /* the hooks this flow runs with (a ref), or NULL */
} lflow;

extern const char script_env_key;  /* registry[&script_env_key] = the env */

script_env *script_env_of(lua_State *L);
/* The flow's userdata (made once per flow), pushed on L. */
void script_push_flow(lua_State *L, flow *f);
/* A connection as a table with mitmproxy's field names (client: its
 * address is `peername`; server: `address`, and `peername` once resolved). */
void script_push_conn(lua_State *L, const flow_conn *c, bool client);
/* Run hook h of the current generation to completion with the value at
 * the top of L (popped) as its argument; then that value is pushed again
 * for the caller to read what the hooks changed. */
void script_run_event(script_env *e, enum script_hook h);
/* flow.metadata back into f->metadata, when a script read it. */
void script_sync_metadata(lua_State *L, flow *f);
/* The C half of `mitm` and the classes (under lua_cpcall), then
 * lua/mitm.lua on top. */
int script_setup_api(lua_State *L);
int script_load_prelude(lua_State *L, char *err, size_t errsz);
/* mitm.sleep, mitm.timer, mitm.http: the functions that wait, added to the
 * mitm table. */
void script_add_waiting_api(lua_State *L);   /* script_call.c */
void script_add_http_api(lua_State *L);      /* script_http.c */
/* f is about to be freed: its Lua object lets go of it; that object
 * (NULL when it never had one) for the caller to release its generation. */
lflow *script_unlink_flow(lua_State *L, flow *f);
/* The env is being freed: every waiting call ends (its done with -1). */
void script_calls_end(script_env *e);
/* Generations (script_call.c). */
int script_gen_add(script_gen *g, const script_set *s);
void script_gen_recount(script_gen *g);
void script_gen_free(script_env *e, script_gen *g);
/* Run hook h of sets [from, to) of g (g NULL: the flow's own generation,
 * all its sets), as script_env_start does. */
int script_run_sets(script_env *e, script_gen *g, size_t from, size_t to, enum script_hook h, flow *f,
                    script_done_fn done, void *arg, script_call **callp);

/* For the functions that wait: the running call, if L is its coroutine
 * and it may wait (raises otherwise); then script_call_wait before
 * yielding, with what to do if the call is abandoned meanwhile; and
 * script_call_wake, from the event that ends the wait, with nres values
 * pushed on script_call_thread(c) for the coroutine to receive. */
script_call *script_call_waitable(lua_State *L, const char *what);
void script_call_wait(script_call *c, void (*cancel)(void *), void *arg);
lua_State *script_call_thread(const script_call *c);
void script_call_wake(script_call *c, int nres);
void script_gen_release(script_env *e, script_gen *g);   /* script_call.c */

#endif
