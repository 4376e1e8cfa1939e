/* script_conn.c — a connection (flow_conn) as the Lua table mitmproxy's
 * Client and Server objects are: for flow.client_conn / flow.server_conn
 * (script.c) and the connection events (script_events.c). */
#include <lua.h>

#include "script_int.h"

void script_push_conn(lua_State *L, const flow_conn *c, bool client)
{
    lua_newtable(L);
    /* a client's address is where it connects from: mitmproxy's peername
     * (its older name, address, too) */
    if (c->address_host) {
        lua_newtable(L);
        lua_pushstring(L, c->address_host);
        lua_rawseti(L, -2, 1);
        lua_pushinteger(L, c->address_port);
        lua_rawseti(L, -2, 2);
        if (client) {
            lua_pushvalue(L, -1);
            lua_setfield(L, -3, "peername");
        }
        lua_setfield(L, -2, "address");
    }
    if (c->peer_host && !client) {
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
    if (c->cert_subject || c->cert_issuer) { /* the peer's certificate, as the dump keeps it */
        lua_createtable(L, 1, 0);
        lua_createtable(L, 0, 2);
        lua_pushstring(L, c->cert_subject ? c->cert_subject : "");
        lua_setfield(L, -2, "subject");
        lua_pushstring(L, c->cert_issuer ? c->cert_issuer : "");
        lua_setfield(L, -2, "issuer");
        lua_rawseti(L, -2, 1);
        lua_setfield(L, -2, "certificate_list");
    }
    lua_pushboolean(L, c->tls);
    lua_setfield(L, -2, "tls_established");
#define TSF(name, field)                  \
    if (c->field) {                       \
        lua_pushnumber(L, c->field);      \
        lua_setfield(L, -2, name);        \
    }
    TSF("timestamp_start", timestamp_start);
    TSF("timestamp_tcp_setup", timestamp_tcp_setup);
    TSF("timestamp_tls_setup", timestamp_tls_setup);
    TSF("timestamp_end", timestamp_end);
#undef TSF
}
