/* script_events.c — connection and TLS events (client_connected,
 * server_connect, tls_clienthello, ...): the C side describes what happened
 * in a script_conn_event, the hooks get mitmproxy's objects as Lua tables,
 * and what they may change (a server's address, refusing it, passing a
 * connection through) comes back into the event. */
#include <stdlib.h>
#include <string.h>

#include <lauxlib.h>
#include <lua.h>

#include "script_int.h"

static void push_hello(lua_State *L, const script_conn_event *ev)
{
    lua_createtable(L, 0, 2);
    if (ev->sni) {
        lua_pushstring(L, ev->sni);
        lua_setfield(L, -2, "sni");
    }
    lua_createtable(L, (int)ev->nalpn, 0);
    for (size_t i = 0; i < ev->nalpn; i++) {
        lua_pushstring(L, ev->alpn[i]);
        lua_rawseti(L, -2, (int)i + 1);
    }
    lua_setfield(L, -2, "alpn_protocols");
}

/* data = {client=, server=, context={client, server}, conn=, ...} */
static void push_data(lua_State *L, enum script_hook h, const script_conn_event *ev)
{
    lua_newtable(L);
    int data = lua_gettop(L);
    if (ev->client) { /* none for the proxy's own requests (mitm.http) */
        script_push_conn(L, ev->client, true);
        lua_setfield(L, data, "client");
    }
    if (ev->server) {
        script_push_conn(L, ev->server, false);
        lua_setfield(L, data, "server");
    }
    lua_createtable(L, 0, 2);
    lua_getfield(L, data, "client");
    lua_setfield(L, -2, "client");
    lua_getfield(L, data, "server");
    lua_setfield(L, -2, "server");
    lua_setfield(L, data, "context");
    bool server_side = h == SCRIPT_HOOK_TLS_START_SERVER || h == SCRIPT_HOOK_TLS_ESTABLISHED_SERVER ||
                       h == SCRIPT_HOOK_TLS_FAILED_SERVER;
    lua_getfield(L, data, server_side ? "server" : "client");
    if (ev->error) {
        lua_pushstring(L, ev->error);
        lua_setfield(L, -2, "error");
    }
    lua_setfield(L, data, "conn");
    if (h == SCRIPT_HOOK_TLS_CLIENTHELLO) {
        push_hello(L, ev);
        lua_setfield(L, data, "client_hello");
        lua_pushboolean(L, 0);
        lua_setfield(L, data, "ignore_connection");
    }
}

/* What server_connect and tls_clienthello hooks changed. */
static void read_back(lua_State *L, enum script_hook h, script_conn_event *ev)
{
    int data = lua_gettop(L);
    if (h == SCRIPT_HOOK_TLS_CLIENTHELLO) {
        lua_getfield(L, data, "ignore_connection");
        ev->ignore_connection = lua_toboolean(L, -1);
        lua_pop(L, 1);
        return;
    }
    if (h != SCRIPT_HOOK_SERVER_CONNECT)
        return;
    lua_getfield(L, data, "server");
    if (!lua_istable(L, -1)) {
        lua_pop(L, 1);
        return;
    }
    lua_getfield(L, -1, "error");
    if (lua_isstring(L, -1))
        ev->refuse = strdup(lua_tostring(L, -1));
    lua_pop(L, 1);
    lua_getfield(L, -1, "address");
    if (lua_istable(L, -1)) {
        lua_rawgeti(L, -1, 1);
        lua_rawgeti(L, -2, 2);
        lua_Integer port = lua_tointeger(L, -1);
        const char *host = lua_tostring(L, -2);
        bool changed = host && port > 0 && port < 65536 && ev->server &&
                       (!ev->server->address_host || strcmp(host, ev->server->address_host) != 0 ||
                        port != ev->server->address_port);
        if (changed && (ev->new_host = strdup(host)))
            ev->new_port = (uint16_t)port;
        lua_pop(L, 2);
    }
    lua_pop(L, 2);
}

void script_env_conn_event(script_env *e, enum script_hook h, script_conn_event *ev)
{
    if (!e || !e->has[h] || e->closing)
        return;
    lua_State *L = e->L;
    int top = lua_gettop(L);
    if (h == SCRIPT_HOOK_CLIENT_CONNECTED || h == SCRIPT_HOOK_CLIENT_DISCONNECTED)
        script_push_conn(L, ev->client, true);
    else
        push_data(L, h, ev);
    script_run_event(e, h);
    read_back(L, h, ev);
    lua_settop(L, top);
}
