/* script.h — LuaJIT hooks.  A script is a Lua file that returns a table of
 * hooks (or a list of such tables), or defines them as global functions,
 * named after mitmproxy's events; each receives the flow as a thin object
 * over the C flow (data stays in C until a script reads it).
 *
 * Every hook runs in a coroutine.  Hooks the pipeline can wait for
 * (script_env_start) may call the functions that wait — mitm.sleep,
 * mitm.http.request — or hold their flow with flow:intercept(); the caller
 * hears when they are done.  Others (script_env_run) run to completion, and
 * a wait there is an error in the script.
 *
 * One script_env per worker thread, each with its own lua_State: script
 * globals are therefore per worker.  With --set workers=N, a counter kept
 * in a global counts only that worker's flows; state that must be shared
 * across workers belongs in a file or an external service.  Scripts run
 * with the standard libraries (io, os included), on purpose: they are the
 * user's own code, as mitmproxy addons are. */
#ifndef MITMLUA_SCRIPT_H
#define MITMLUA_SCRIPT_H

#include <stdbool.h>
#include <stddef.h>

#include "flow.h"

struct event_base;
struct worker;

enum script_hook {
    SCRIPT_HOOK_LOAD,
    SCRIPT_HOOK_CONNECT,
    SCRIPT_HOOK_REQUESTHEADERS,
    SCRIPT_HOOK_REQUEST,
    SCRIPT_HOOK_RESPONSEHEADERS,
    SCRIPT_HOOK_RESPONSE,
    SCRIPT_HOOK_ERROR,
    SCRIPT_HOOK_WEBSOCKET_MESSAGE,
    SCRIPT_HOOK_WEBSOCKET_START, /* after the 101: the connection is a WebSocket */
    SCRIPT_HOOK_WEBSOCKET_END,   /* closed; flow.websocket.close_code is set */
    SCRIPT_HOOK_DONE,
    /* a raw TCP flow (flow.type "tcp", its messages in flow.messages) */
    SCRIPT_HOOK_TCP_START,
    SCRIPT_HOOK_TCP_MESSAGE,     /* flow.messages[#flow.messages] is new */
    SCRIPT_HOOK_TCP_END,
    SCRIPT_HOOK_TCP_ERROR,       /* instead of tcp_end: flow.error says why */
    /* connection and TLS events (script_env_conn_event) */
    SCRIPT_HOOK_CLIENT_CONNECTED,
    SCRIPT_HOOK_CLIENT_DISCONNECTED,
    SCRIPT_HOOK_SERVER_CONNECT,
    SCRIPT_HOOK_SERVER_CONNECTED,
    SCRIPT_HOOK_SERVER_DISCONNECTED,
    SCRIPT_HOOK_TLS_CLIENTHELLO,
    SCRIPT_HOOK_TLS_START_CLIENT,
    SCRIPT_HOOK_TLS_START_SERVER,
    SCRIPT_HOOK_TLS_ESTABLISHED_CLIENT,
    SCRIPT_HOOK_TLS_ESTABLISHED_SERVER,
    SCRIPT_HOOK_TLS_FAILED_CLIENT,
    SCRIPT_HOOK_TLS_FAILED_SERVER,
    /* upstream mode: the CONNECT we send the upstream proxy, as an HTTP
     * flow of its own whose request headers the hook may change
     * (upconnect.c; script_env_run) */
    SCRIPT_HOOK_HTTP_CONNECT_UPSTREAM,
    SCRIPT_HOOK__COUNT
};

typedef struct script_env script_env;
typedef struct script_call script_call;

/* script_env_start: a hook waits; its done callback comes later. */
#define SCRIPT_WAITING 1
typedef void (*script_done_fn)(void *arg, int rc);

/* Compile and run every script in order, each in its own environment
 * (whose __index is _G, so two scripts' hooks never clobber each other),
 * then run their `load` hooks.  NULL with "file:line: message" on error. */
script_env *script_env_new(const char *const *paths, size_t n, char *err, size_t errsz);
/* Any script defines hook h: lets the proxy skip work. */
bool script_env_has_hook(const script_env *e, enum script_hook h);
/* Run hook h of every script in order on f (NULL for load/done).  A hook
 * that raises is logged with file and line; changes it made before the
 * error stay, and the flow goes on.  flow:kill() sets f->killed; later
 * scripts' hooks are then skipped.  Returns -1 when a hook ran past the
 * time limit: it was stopped, logged, f's error says which script and hook,
 * and the caller fails the flow; otherwise 0. */
int script_env_run(script_env *e, enum script_hook h, flow *f);
/* Like script_env_run, but the hooks may wait.  Returns 0 or -1 as
 * script_env_run when every hook finished at once; SCRIPT_WAITING when one
 * waits: then *callp is set, and done(arg, rc) is called from the event
 * loop when the last hook finished (rc as script_env_run's), exactly once,
 * unless script_call_cancel(*callp) came first.  When the env is freed,
 * waiting calls end with rc -1. */
int script_env_start(script_env *e, enum script_hook h, flow *f, script_done_fn done, void *arg,
                     script_call **callp);
/* Abandon a waiting call: its coroutine is dropped, done is not called. */
void script_call_cancel(script_call *c);
/* The event loop that waiting hooks, mitm.timer and hot reload use. */
void script_env_set_loop(script_env *e, struct event_base *base);
/* The worker whose loop, resolver and TLS settings mitm.http.request
 * uses (none: it raises "not available here"). */
void script_env_set_worker(script_env *e, struct worker *w);
/* How flow:resume() (and flow:kill() of a held flow) reach the pipeline. */
void script_env_set_resume(script_env *e, void (*fn)(void *ud, flow *f), void *ud);
/* Reload a script whose file changed, checked about once a second on the
 * loop (mitmdump's behaviour): the new version's load hook runs; a version
 * that fails to compile or run is logged and the previous one stays. */
void script_env_watch(script_env *e);
/* Waiting calls and timers not yet done (tests, shutdown). */
size_t script_env_pending(const script_env *e);
/* What a connection or TLS event tells the hooks, and what they may change.
 * The hooks get mitmproxy's objects as Lua tables: client_connected and
 * client_disconnected the client; the others `data` with data.client,
 * data.server (server_*), data.conn (tls_*: the side concerned, with
 * .error when it failed), data.context ({client, server}), and for
 * tls_clienthello data.client_hello ({sni, alpn_protocols}). */
typedef struct script_conn_event {
    const flow_conn *client;
    const flow_conn *server;        /* NULL when there is none yet */
    const char *error;              /* tls_failed_*: why */
    const char *sni;                /* tls_clienthello */
    const char *const *alpn;        /* ... the protocols offered */
    size_t nalpn;
    /* out: server_connect may set data.server.address = {host, port}
     * (new_host, owned by the caller once set) or data.server.error
     * (refuse, likewise: the connection is not made); tls_clienthello
     * may set data.ignore_connection = true (pass it through untouched) */
    char *new_host;
    uint16_t new_port;
    char *refuse;
    bool ignore_connection;
} script_conn_event;

/* Run the hooks of event h (a connection or TLS event) to completion.
 * Does nothing without such a hook; a hook that raises is logged. */
void script_env_conn_event(script_env *e, enum script_hook h, script_conn_event *ev);

/* Limit the memory the Lua state holds to `mib` MiB (script_memory_limit;
 * 0 = none): an allocation past it fails, and the hook that asked raises
 * "not enough memory"; its flow fails as on script_timeout, and the garbage
 * is collected and given back at once. */
void script_env_set_memory_limit(script_env *e, int mib);
/* Limit each hook to `ms` milliseconds of running Lua (script_timeout;
 * 0 = none): time spent waiting does not count.
 * Turns LuaJIT's compiler off for this state: compiled code cannot be
 * interrupted.  Applies to hooks run after the call (not to loading). */
void script_env_set_timeout(script_env *e, int ms);
/* f is about to be freed: Lua objects that refer to it become inert
 * (using them raises "flow is gone") instead of dangling. */
void script_env_forget(script_env *e, flow *f);
/* Runs the `done` hooks, then frees the state. */
void script_env_free(script_env *e);

const char *script_hook_name(enum script_hook h);

/* What mitm.exit(code) does: the proxy ends the run with that status.
 * Without a handler mitm.exit raises a Lua error. */
void script_env_set_exit(script_env *e, void (*fn)(void *ud, int code), void *ud);

#endif
