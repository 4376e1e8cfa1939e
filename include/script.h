/* script.h — LuaJIT hooks.  A script is a Lua file defining global
 * functions named after mitmproxy's events; each receives the flow as a thin
 * object over the C flow (data stays in C until a script reads it).
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

enum script_hook {
    SCRIPT_HOOK_LOAD,
    SCRIPT_HOOK_CONNECT,
    SCRIPT_HOOK_REQUESTHEADERS,
    SCRIPT_HOOK_REQUEST,
    SCRIPT_HOOK_RESPONSEHEADERS,
    SCRIPT_HOOK_RESPONSE,
    SCRIPT_HOOK_ERROR,
    SCRIPT_HOOK_WEBSOCKET_MESSAGE,
    SCRIPT_HOOK_DONE,
    SCRIPT_HOOK__COUNT
};

typedef struct script_env script_env;

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
/* Limit each hook run to `ms` milliseconds (script_timeout; 0 = none).
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
