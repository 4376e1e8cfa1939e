/* opts.c — option table, --set parsing and the command line.
 * The table below is the single description of every option: `--set`,
 * `--options` and the flags all read it, so they cannot drift apart. */
#include "opts.h"

#include "config.h"
#include "dial.h"
#include "tlsopts.h"
#include "contentview.h"

#include <ctype.h>
#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <limits.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#define OPTS_LISTEN_PORT_DEFAULT 8080

enum opt_type { OT_STR, OT_INT, OT_BOOL, OT_SIZE, OT_STRLIST, OT_MODE };

typedef struct opt_desc {
    const char *name;
    enum opt_type type;
    size_t off;       /* offset of the field in struct opts */
    size_t count_off; /* OT_STRLIST: offset of the size_t count */
    const char *help;
} opt_desc;

#define F(field) offsetof(opts, field)
static const opt_desc opt_table[] = {
    {"listen_host", OT_STR, F(listen_host), 0, "Address to listen on (default 127.0.0.1; mitmdump listens on all interfaces)."},
    {"listen_port", OT_INT, F(listen_port), 0, "Port to listen on."},
    {"mode", OT_MODE, F(mode_spec), 0, "regular, reverse:URL, upstream:URL, socks5 or transparent (Linux)."},
    {"workers", OT_INT, F(workers), 0, "Worker threads, each with its own event loop and Lua state."},
    {"scripts", OT_STRLIST, F(scripts), F(nscripts), "Lua scripts to run, in order."},
    {"save_stream_file", OT_STR, F(save_stream_file), 0, "Stream flows to FILE (+FILE appends, - is stdout)."},
    {"save_format", OT_STR, F(save_format), 0, "Format of -w: mitmlua (the native dump) or mitmproxy (mitmproxy 8's flow file, which mitmproxy and mitmweb open); unset: mitmproxy for a name ending in .mitm, else mitmlua."},
    {"rfile", OT_STR, F(rfile), 0, "Read flows from FILE (- is stdin)."},
    {"server", OT_BOOL, F(server), 0, "Start a proxy server (false with -n)."},
    {"client_replay", OT_STRLIST, F(client_replay), F(nclient_replay), "Replay client requests from a saved file."},
    {"server_replay", OT_STRLIST, F(server_replay), F(nserver_replay), "Replay server responses from a saved file."},
    {"server_replay_ignore_params", OT_STRLIST, F(server_replay_ignore_params), F(nserver_replay_ignore_params), "Server replay: query parameter to leave out of matching (repeatable)."},
    {"server_replay_ignore_payload_params", OT_STRLIST, F(server_replay_ignore_payload_params), F(nserver_replay_ignore_payload_params), "Server replay: urlencoded or multipart form field to leave out of matching (repeatable)."},
    {"server_replay_use_headers", OT_STRLIST, F(server_replay_use_headers), F(nserver_replay_use_headers), "Server replay: request header that must match too (repeatable)."},
    {"server_replay_ignore_content", OT_BOOL, F(server_replay_ignore_content), 0, "Server replay: ignore the request body when matching."},
    {"server_replay_ignore_host", OT_BOOL, F(server_replay_ignore_host), 0, "Server replay: ignore the destination host when matching."},
    {"server_replay_ignore_port", OT_BOOL, F(server_replay_ignore_port), 0, "Server replay: ignore the destination port when matching."},
    {"server_replay_nopop", OT_BOOL, F(server_replay_nopop), 0, "Server replay: serve a response again and again instead of each once, in order."},
    {"server_replay_reuse", OT_BOOL, F(server_replay_reuse), 0, "Same as server_replay_nopop (current mitmproxy's name)."},
    {"server_replay_refresh", OT_BOOL, F(server_replay_refresh), 0, "Server replay: shift Date, Expires and Last-Modified by the time since recording."},
    {"server_replay_extra", OT_STR, F(server_replay_extra), 0, "Server replay, requests with no recorded answer: forward, kill, or a status (204, 400, 404, 500...) to answer with."},
    {"server_replay_kill_extra", OT_BOOL, F(server_replay_kill_extra), 0, "Same as server_replay_extra=kill (mitmproxy 8's name)."},
    {"client_replay_concurrency", OT_INT, F(client_replay_concurrency), 0, "Client replay: requests in flight at once (1 = strictly in order)."},
    {"client_replay_compare", OT_STR, F(client_replay_compare), 0, "Client replay: compare each response with the recorded one: status, headers (and status) or body (and both); differences are printed on stderr and make the exit status 4."},
    {"client_replay_ignore_headers", OT_STRLIST, F(client_replay_ignore_headers), F(nclient_replay_ignore_headers), "Client replay compare: response header to leave out, besides Date, Expires, Last-Modified, Age, Set-Cookie and the framing headers (repeatable)."},
    {"client_replay_ignore_json_fields", OT_STRLIST, F(client_replay_ignore_json_fields), F(nclient_replay_ignore_json_fields), "Client replay compare: dotted path of a JSON body field to leave out, e.g. data.updated_at; * matches any key or index (repeatable)."},
    {"confdir", OT_STR, F(confdir), 0, "Location of the CA and configuration files."},
    {"hardump", OT_STR, F(hardump), 0, "Write a HAR 1.2 file of the flows on exit."},
    {"report", OT_STR, F(report), 0, "Write one self-contained HTML page of the flows on exit (summary, waterfall, hosts, every flow)."},
    {"report_body_limit", OT_SIZE, F(report_body_limit), 0, "Report: bodies longer than this (decoded, e.g. 64k) are cut, with their size shown. 0 = no limit."},
    {"ssl_insecure", OT_BOOL, F(ssl_insecure), 0, "Do not verify upstream server certificates."},
    {"ssl_verify_upstream_trusted_ca", OT_STR, F(ssl_verify_upstream_trusted_ca), 0, "PEM file of extra CAs trusted for upstream verification."},
    {"ssl_verify_upstream_trusted_confdir", OT_STR, F(ssl_verify_upstream_trusted_confdir), 0, "Directory of trusted CA certificates for upstream verification: PEM files, hashed (c_rehash) names or not; added to the system store."},
    {"client_certs", OT_STR, F(client_certs), 0, "Client certificate for upstream servers (mTLS): a PEM file with certificate and key, or a directory of HOST.pem files (HOST = the SNI we send, else the server address)."},
    {"certs", OT_STRLIST, F(certs), F(ncerts), "Our own certificate for matching domains instead of a minted one: \"[domain=]path\", a PEM file with the certificate, its chain and its key; domain may be *.example.com or * (the default) (repeatable)."},
    {"tls_version_client_min", OT_STR, F(tls_version_client_min), 0, "Lowest TLS version with clients: UNBOUNDED, TLS1, TLS1_1, TLS1_2 or TLS1_3."},
    {"tls_version_client_max", OT_STR, F(tls_version_client_max), 0, "Highest TLS version with clients: UNBOUNDED, TLS1, TLS1_1, TLS1_2 or TLS1_3."},
    {"tls_version_server_min", OT_STR, F(tls_version_server_min), 0, "Lowest TLS version with servers: UNBOUNDED, TLS1, TLS1_1, TLS1_2 or TLS1_3."},
    {"tls_version_server_max", OT_STR, F(tls_version_server_max), 0, "Highest TLS version with servers: UNBOUNDED, TLS1, TLS1_1, TLS1_2 or TLS1_3."},
    {"ciphers_client", OT_STR, F(ciphers_client), 0, "Ciphers offered to clients, OpenSSL syntax (a TLS 1.3 suite list works too)."},
    {"ciphers_server", OT_STR, F(ciphers_server), 0, "Ciphers offered to servers, OpenSSL syntax (a TLS 1.3 suite list works too)."},
    {"tls_ecdh_curve_client", OT_STR, F(tls_ecdh_curve_client), 0, "The one elliptic curve for the ECDHE key exchange with clients, e.g. secp384r1 or prime256v1 (OpenSSL's names); unset: OpenSSL's defaults."},
    {"tls_ecdh_curve_server", OT_STR, F(tls_ecdh_curve_server), 0, "The one elliptic curve for the ECDHE key exchange with servers, as tls_ecdh_curve_client."},
    {"cert_passphrase", OT_STR, F(cert_passphrase), 0, "Passphrase of the encrypted private keys in the certs files (config.yaml keeps it out of the process list)."},
    {"request_client_cert", OT_BOOL, F(request_client_cert), 0, "Ask clients for a TLS client certificate (CertificateRequest); any certificate, or none, is accepted."},
    {"upstream_cert", OT_BOOL, F(upstream_cert), 0, "With connection_strategy=eager: add the server certificate's CN and SANs to the minted certificate (the eager connection does a TLS handshake). Lazy: no effect (see the man page)."},
    {"add_upstream_certs_to_client_chain", OT_BOOL, F(add_upstream_certs_to_client_chain), 0, "With connection_strategy=eager: send the server's certificates after ours. Lazy: no effect (see the man page)."},
    {"key_type", OT_STR, F(key_type), 0, "Key of the minted certificates: ecdsa (P-256, the default: cheaper handshakes) or rsa (key_size bits, for clients without ECDSA)."},
    {"key_size", OT_INT, F(key_size), 0, "RSA bits of the minted certificates' key with key_type=rsa (1024 to 8192)."},
    {"flow_detail", OT_INT, F(flow_detail), 0, "Console detail: 0 quiet .. 4 everything."},
    {"termlog_verbosity", OT_STR, F(termlog_verbosity), 0, "Log level: error, warn, info, debug."},
    {"console_format", OT_STR, F(console_format), 0, "Console output: text (mitmdump's lines) or jsonl (one JSON object per flow)."},
    {"ready_file", OT_STR, F(ready_file), 0, "Write HOST:PORT to this file once the proxy listens (for CI jobs to wait on)."},
    {"fail_on", OT_STR, F(fail_on), 0, "Filter expression: exit with status 3 if any flow matched it."},
    {"showhost", OT_BOOL, F(showhost), 0, "Use the Host header to build URLs for display."},
    {"ignore_hosts", OT_STRLIST, F(ignore_hosts), F(nignore_hosts), "Regex on host:port of CONNECT targets not to intercept: their bytes are passed through (repeatable)."},
    {"allow_hosts", OT_STRLIST, F(allow_hosts), F(nallow_hosts), "Regex on host:port: intercept only matching CONNECT targets, pass the rest through (repeatable)."},
    {"tcp_hosts", OT_STRLIST, F(tcp_hosts), F(ntcp_hosts), "Regex on host or host:port of tunnel targets (CONNECT, socks5, transparent) to relay as raw TCP, recorded as TCP flows (repeatable)."},
    {"block_global", OT_BOOL, F(block_global), 0, "Refuse connections from public IP addresses (loopback is always allowed)."},
    {"block_private", OT_BOOL, F(block_private), 0, "Refuse connections from private IP addresses (loopback is always allowed)."},
    {"upstream_auth", OT_STR, F(upstream_auth), 0, "user:pass sent as Proxy-Authorization: Basic to the upstream proxy (upstream mode, plain requests and CONNECT) or as Authorization (reverse mode)."},
    {"http_connect_send_host_header", OT_BOOL, F(http_connect_send_host_header), 0, "Upstream mode: send a Host header with the CONNECT requests mitmlua sends to the upstream proxy (as mitmproxy 11+; mitmproxy 8 sent none)."},
    {"connect_addr", OT_STR, F(connect_addr), 0, "Local IP address to connect to servers (and the upstream proxy) from; the server's name is then resolved in that address's family."},
    {"connection_strategy", OT_STR, F(connection_strategy), 0, "lazy: connect to a tunnel's target when the first request needs it; eager: connect before answering CONNECT/SOCKS5 and refuse (502, SOCKS error) when it cannot be reached."},
    {"http2", OT_BOOL, F(http2), 0, "Speak HTTP/2: with clients (h2 in ALPN, h2c prior knowledge) and with TLS servers that pick h2 in ALPN."},
    {"rawtcp", OT_BOOL, F(rawtcp), 0, "Relay what is not HTTP inside a tunnel as a TCP flow (else it is refused as a bad request)."},
    {"websocket", OT_BOOL, F(websocket), 0, "Read WebSocket connections message by message (websocket hooks, the flow's messages); false relays them as bytes after the 101."},
    {"http2_ping_keepalive", OT_INT, F(http2_ping_keepalive), 0, "Send a PING on an HTTP/2 connection to a server idle for this many seconds, so that it stays open (default 58). 0 = never."},
    {"keep_host_header", OT_BOOL, F(keep_host_header), 0, "Reverse mode: keep the client's Host header."},
    {"keep_alt_svc_header", OT_BOOL, F(keep_alt_svc_header), 0, "Reverse mode: keep Alt-Svc headers as the server sent them (by default each host:port in them becomes the proxy's port, so that clients do not bypass the proxy)."},
    {"map_remote", OT_STRLIST, F(map_remote), F(nmap_remote), "Map remote resources to another remote URL: \"[/flow-filter]/url-regex/replacement\", any separator character (-M, repeatable)."},
    {"map_local", OT_STRLIST, F(map_local), F(nmap_local), "Map remote resources to a local file or directory: \"[/flow-filter]/url-regex/file-or-directory-path\" (repeatable)."},
    {"modify_headers", OT_STRLIST, F(modify_headers), F(nmodify_headers), "Set headers: \"[/flow-filter]/header-name/[@]header-value\"; @ reads the value from a file; an empty value removes the header (-H, repeatable)."},
    {"modify_body", OT_STRLIST, F(modify_body), F(nmodify_body), "Replace in bodies: \"[/flow-filter]/regex/[@]replacement\"; @ reads the replacement from a file (-B, repeatable)."},
    {"block_list", OT_STRLIST, F(block_list), F(nblock_list), "Answer matching requests with an empty response of this status, or kill them with 444: \"/flow-filter/status-code\", any separator character (repeatable)."},
    {"anticache", OT_BOOL, F(anticache), 0, "Strip out request headers that might cause the server to return 304-not-modified."},
    {"anticomp", OT_BOOL, F(anticomp), 0, "Try to convince servers to send us un-compressed data."},
    {"stickycookie", OT_STR, F(stickycookie), 0, "Set sticky cookie filter. Matched against requests."},
    {"stickyauth", OT_STR, F(stickyauth), 0, "Set sticky auth filter. Matched against requests."},
    {"body_size_limit", OT_SIZE, F(body_size_limit), 0, "Largest body kept in memory (e.g. 64m); larger ones are refused with 413/502. 0 = no limit."},
    {"stream_large_bodies", OT_SIZE, F(stream_large_bodies), 0, "Response bodies larger than this (e.g. 5m) are passed on as they arrive instead of kept: hooks and the dump see the head only. 0 = keep every body."},
    {"store_streamed_bodies", OT_BOOL, F(store_streamed_bodies), 0, "Keep the bodies of streamed responses (stream_large_bodies) too, for the response hook and the recordings, whatever their size."},
    {"max_header_size", OT_SIZE, F(max_header_size), 0, "Largest request or response header block; larger ones get 431 (request) or 502."},
    {"max_headers", OT_INT, F(max_headers), 0, "Most header fields in one message."},
    {"connect_timeout", OT_INT, F(connect_timeout), 0, "Seconds to connect (and handshake) to an upstream before 504."},
    {"read_timeout", OT_INT, F(read_timeout), 0, "Seconds an upstream may stay silent before 504; a client between bytes of a request, and for a whole header section, before 408."},
    {"idle_timeout", OT_INT, F(idle_timeout), 0, "Seconds a client connection may wait for its next request (keep-alive) before it is closed."},
    {"show_ignored_hosts", OT_BOOL, F(show_ignored_hosts), 0, "Record connections passed through by ignore_hosts/allow_hosts/tls_clienthello as TCP flows of their (encrypted) bytes, with the tcp_* events; by default they are relayed and no flow is kept."},
    {"tcp_timeout", OT_INT, F(tcp_timeout), 0, "Seconds a raw TCP flow may carry nothing either way before both its connections are closed (0: never)."},
    {"tls_handshake_timeout", OT_INT, F(tls_handshake_timeout), 0, "Seconds a client has to finish its TLS handshake."},
    {"max_connections", OT_INT, F(max_connections), 0, "Client connections at once; more are accepted and closed at once. 0 = the file descriptor limit allows (at most 10000)."},
    {"script_memory_limit", OT_INT, F(script_memory_limit), 0, "MiB of memory the Lua state of one worker may hold (default 1024); a hook that needs more fails its flow with 502. 0 = no limit."},
    {"script_timeout", OT_INT, F(script_timeout), 0, "Milliseconds of Lua one hook may run before it is stopped and its flow fails (default 10000); a limit turns LuaJIT's compiler off. 0 = no limit (and the compiler on)."},
    {"proxyauth", OT_STR, F(proxyauth), 0, "Require proxy authentication: user:pass, any, or @FILE (htpasswd: bcrypt, {SHA}, $5$, $6$)."},
    {"keepserving", OT_BOOL, F(keepserving), 0, "Continue serving after client replay, server replay or file read (-r, -C, -S without -n end the run when they are done otherwise)."},
    {"readfile_filter", OT_STR, F(readfile_filter), 0, "Read only matching flows with -r: the others reach neither the hooks nor any output."},
    {"save_stream_filter", OT_STR, F(save_stream_filter), 0, "Filter which flows are written to -w and hardump."},
    {"dumper_filter", OT_STR, F(dumper_filter), 0, "Limit which flows are printed on the console."},
    {"proxy_debug", OT_BOOL, F(proxy_debug), 0, "Debug log of the proxy core (the same as termlog_verbosity=debug)."},
    {"dumper_default_contentview", OT_STR, F(dumper_default_contentview), 0, "Content view for bodies at flow_detail 3 and 4: auto (as mitmproxy's auto view chooses), raw, hex, json, xml/html, url-encoded, multipart form, image, query, protocol buffer, msgpack, grpc/protocol buffer."},
    {"onboarding", OT_BOOL, F(onboarding), 0, "Answer http://mitm.it/ with the onboarding page (CA certificates to download)."},
    {"onboarding_host", OT_STR, F(onboarding_host), 0, "Host name the onboarding page is served under (default mitm.it)."},
    {"onboarding_port", OT_INT, F(onboarding_port), 0, "Serve the onboarding page for requests to this port only (mitmproxy 8's option, whose default was 80); 0 = any port (the default, as mitmproxy 9+)."},
};
#undef F
#define OPT_TABLE_N (sizeof opt_table / sizeof opt_table[0])

void opts_defaults(opts *o)
{
    memset(o, 0, sizeof *o);
    o->listen_host = strdup("127.0.0.1");
    o->listen_port = OPTS_LISTEN_PORT_DEFAULT;
    o->mode_spec = strdup("regular");
    o->mode = MODE_REGULAR;
    o->workers = 1;
    o->server = true;
    o->http2 = true;
    o->rawtcp = true;
    o->flow_detail = 1;
    o->termlog_verbosity = strdup("info");
    o->console_format = strdup("text");
    o->body_size_limit = FLOW_DEFAULT_BODY_SIZE_LIMIT;
    o->report_body_limit = 32 * 1024;   /* REPORT_DEFAULT_BODY_LIMIT */
    o->max_header_size = FLOW_DEFAULT_MAX_HEADER_SIZE;
    o->max_headers = FLOW_DEFAULT_MAX_HEADERS;
    o->connect_timeout = 10;
    o->read_timeout = 60;
    o->server_replay_refresh = true;
    o->server_replay_extra = strdup("forward");
    o->client_replay_concurrency = 1;
    o->idle_timeout = 60;
    o->tcp_timeout = 600;
    o->tls_handshake_timeout = 10;
    o->max_connections = 0;
    o->script_timeout = 10000;   /* safe by default; 0 gives the JIT back */
    o->script_memory_limit = 1024;
    o->block_global = true;
    o->connection_strategy = strdup("lazy");
    o->tls_version_client_min = strdup("TLS1_2");
    o->tls_version_client_max = strdup("UNBOUNDED");
    o->tls_version_server_min = strdup("TLS1_2");
    o->tls_version_server_max = strdup("UNBOUNDED");
    o->upstream_cert = true;
    o->key_size = 2048;
    o->key_type = strdup("ecdsa");
    o->onboarding = true;
    o->onboarding_host = strdup("mitm.it");
    o->http_connect_send_host_header = true;
    o->http2_ping_keepalive = 58;
    o->websocket = true;
    o->dumper_default_contentview = strdup("auto");
}

/* ---- mitmproxy's options that mitmlua does not have ----------------------
 * A config.yaml or a command line written for mitmdump names them.  Those of
 * the console and web UIs mean nothing headless: a warning.  Any other would
 * change what the proxy does, so it is accepted only at mitmproxy's default
 * (a config.yaml that spells the defaults out still works) and is an error
 * otherwise: never silently ignored. */
typedef struct foreign_desc {
    const char *name;
    bool ui;
    char type;        /* 'b' bool, 'i' int, 's' string, 'l' list */
    const char *dflt; /* 's': NULL = None */
} foreign_desc;

static const foreign_desc foreign_table[] = {
    /* mitmdump 8.1.1 --options */
    {"command_history", true, 'b', "true"},
    {"content_view_lines_cutoff", true, 'i', "512"},   /* the console's; mitmdump cuts at 70 lines */
    {"dns_listen_host", false, 's', NULL},
    {"dns_listen_port", false, 'i', "53"},
    {"dns_mode", false, 's', "regular"},
    {"dns_server", false, 'b', "false"},
    {"export_preserve_original_ip", true, 'b', "false"},
    {"normalize_outbound_headers", false, 'b', "true"},
    {"validate_inbound_headers", false, 'b', "true"},
    /* mitmproxy 9-12 (test/data/mitmproxy-options-11-12.tsv has 11/12's names) */
    {"http3", false, 'b', "true"},
    {"strip_ech", false, 'b', "true"},
    {"udp_hosts", false, 'l', NULL},
    {"protobuf_definitions", false, 's', NULL},
    {"dns_name_servers", false, 'l', NULL},
    {"dns_use_hosts_file", false, 'b', "true"},
    {"intercept", true, 's', NULL},
    {"intercept_active", true, 'b', "false"},
    {"view_filter", true, 's', NULL},
    {"view_order", true, 's', "time"},
    {"view_order_reversed", true, 'b', "false"},
};
#define FOREIGN_N (sizeof foreign_table / sizeof foreign_table[0])

static const foreign_desc *foreign_find(const char *name, size_t n)
{
    for (size_t i = 0; i < FOREIGN_N; i++)
        if (strlen(foreign_table[i].name) == n && strncmp(foreign_table[i].name, name, n) == 0)
            return &foreign_table[i];
    return NULL;
}

/* the console's console_* and mitmweb's web_* options, whatever the version */
static bool foreign_is_ui_prefix(const char *name, size_t n)
{
    return (n > 8 && strncmp(name, "console_", 8) == 0) || (n > 4 && strncmp(name, "web_", 4) == 0);
}

enum opts_foreign opts_foreign_kind(const char *name)
{
    size_t n = strlen(name);
    const foreign_desc *fd = foreign_find(name, n);
    if (fd)
        return fd->ui ? OPTS_UI : OPTS_UNIMPLEMENTED;
    return foreign_is_ui_prefix(name, n) ? OPTS_UI : OPTS_UNKNOWN;
}

static void strlist_free(char **v, size_t n)
{
    for (size_t i = 0; i < n; i++)
        free(v[i]);
    free(v);
}

void opts_url_free(opts_url *u)
{
    free(u->scheme);
    free(u->host);
    memset(u, 0, sizeof *u);
}

void opts_free(opts *o)
{
    for (size_t i = 0; i < OPT_TABLE_N; i++) {
        const opt_desc *d = &opt_table[i];
        char *base = (char *)o;
        if (d->type == OT_STR || d->type == OT_MODE) {
            free(*(char **)(base + d->off));
        } else if (d->type == OT_STRLIST) {
            strlist_free(*(char ***)(base + d->off), *(size_t *)(base + d->count_off));
        }
    }
    free(o->filter_expr);
    opts_url_free(&o->mode_url);
    memset(o, 0, sizeof *o);
}

int opts_parse_size(const char *s, uint64_t *out)
{
    char *end;
    errno = 0;
    if (!isdigit((unsigned char)*s))
        return -1;
    unsigned long long v = strtoull(s, &end, 10);
    if (errno)
        return -1;
    uint64_t mul = 1;
    switch (tolower((unsigned char)*end)) {
    case '\0': break;
    case 'b': mul = 1; break;
    case 'k': mul = 1024; break;
    case 'm': mul = 1024 * 1024; break;
    case 'g': mul = (uint64_t)1024 * 1024 * 1024; break;
    default: return -1;
    }
    if (*end && end[1] && !(tolower((unsigned char)end[1]) == 'b' && !end[2]))
        return -1;
    if (v > UINT64_MAX / mul)
        return -1;
    *out = v * mul;
    return 0;
}

static int parse_bool(const char *s, bool *out)
{
    if (!strcasecmp(s, "true") || !strcmp(s, "1") || !strcasecmp(s, "yes") || !strcasecmp(s, "on"))
        *out = true;
    else if (!strcasecmp(s, "false") || !strcmp(s, "0") || !strcasecmp(s, "no") || !strcasecmp(s, "off"))
        *out = false;
    else
        return -1;
    return 0;
}

int opts_parse_url(const char *s, opts_url *u, char *err, size_t errsz)
{
    memset(u, 0, sizeof *u);
    const char *p = strstr(s, "://");
    if (!p) {
        snprintf(err, errsz, "invalid URL '%s': expected scheme://host[:port]", s);
        return -1;
    }
    size_t slen = (size_t)(p - s);
    if (!((slen == 4 && !strncasecmp(s, "http", 4)) || (slen == 5 && !strncasecmp(s, "https", 5)))) {
        snprintf(err, errsz, "invalid URL '%s': scheme must be http or https", s);
        return -1;
    }
    u->scheme = strndup(s, slen);
    for (char *c = u->scheme; *c; c++)
        *c = (char)tolower((unsigned char)*c);
    const char *h = p + 3, *hend;
    const char *portp = NULL;
    if (*h == '[') {
        hend = strchr(h, ']');
        if (!hend)
            goto bad;
        u->host = strndup(h + 1, (size_t)(hend - h - 1));
        hend++;
    } else {
        hend = h + strcspn(h, ":/");
        u->host = strndup(h, (size_t)(hend - h));
    }
    if (!u->host || !*u->host)
        goto bad;
    u->port = strcmp(u->scheme, "https") == 0 ? 443 : 80;
    if (*hend == ':') {
        portp = hend + 1;
        char *end;
        long port = strtol(portp, &end, 10);
        if (end == portp || port < 1 || port > 65535 || (*end && *end != '/'))
            goto bad;
        u->port = (uint16_t)port;
        hend = end;
    }
    if (*hend && strcmp(hend, "/") != 0)
        goto bad;  /* a path prefix is not supported: say so rather than drop it */
    return 0;
bad:
    snprintf(err, errsz, "invalid URL '%s': expected scheme://host[:port]", s);
    opts_url_free(u);
    return -1;
}

static int set_mode(opts *o, const char *v, char *err, size_t errsz)
{
    opts_url u = {0};
    enum opts_mode m;
    if (strcmp(v, "regular") == 0) {
        m = MODE_REGULAR;
    } else if (strcmp(v, "socks5") == 0) {
        m = MODE_SOCKS5;
    } else if (strcmp(v, "transparent") == 0) {
        m = MODE_TRANSPARENT;
    } else if (strncmp(v, "reverse:", 8) == 0 || strncmp(v, "upstream:", 9) == 0) {
        m = v[0] == 'r' ? MODE_REVERSE : MODE_UPSTREAM;
        char uerr[256];
        if (opts_parse_url(strchr(v, ':') + 1, &u, uerr, sizeof uerr) < 0) {
            snprintf(err, errsz, "invalid mode '%s': %s", v, uerr);
            return -1;
        }
    } else {
        snprintf(err, errsz, "invalid mode '%s': expected regular, reverse:URL, upstream:URL, socks5 or transparent", v);
        return -1;
    }
    opts_url_free(&o->mode_url);
    o->mode_url = u;
    o->mode = m;
    free(o->mode_spec);
    o->mode_spec = strdup(v);
    return 0;
}

static const opt_desc *opt_find(const char *name, size_t n)
{
    for (size_t i = 0; i < OPT_TABLE_N; i++)
        if (strlen(opt_table[i].name) == n && strncmp(opt_table[i].name, name, n) == 0)
            return &opt_table[i];
    return NULL;
}

static int opt_apply(opts *o, const opt_desc *d, const char *v, char *err, size_t errsz)
{
    char *base = (char *)o;
    switch (d->type) {
    case OT_STR: {
        char **p = (char **)(base + d->off);
        free(*p);
        *p = *v ? strdup(v) : NULL;
        return 0;
    }
    case OT_INT: {
        char *end;
        errno = 0;
        long x = strtol(v, &end, 10);
        if (errno || end == v || *end || x < 0 || x > INT_MAX) {
            snprintf(err, errsz, "invalid value for %s: '%s' is not a non-negative whole number", d->name, v);
            return -1;
        }
        *(int *)(base + d->off) = (int)x;
        return 0;
    }
    case OT_BOOL:
        if (parse_bool(v, (bool *)(base + d->off)) < 0) {
            snprintf(err, errsz, "invalid value for %s: '%s' (expected true or false)", d->name, v);
            return -1;
        }
        return 0;
    case OT_SIZE:
        if (opts_parse_size(v, (uint64_t *)(base + d->off)) < 0) {
            snprintf(err, errsz, "invalid value for %s: '%s' (expected a size such as 512k or 10m)", d->name, v);
            return -1;
        }
        return 0;
    case OT_STRLIST: {
        char ***lp = (char ***)(base + d->off);
        size_t *np = (size_t *)(base + d->count_off);
        char **nv = realloc(*lp, (*np + 1) * sizeof *nv);
        if (!nv || !(nv[*np] = strdup(v))) {
            if (nv)
                *lp = nv;
            snprintf(err, errsz, "out of memory");
            return -1;
        }
        *lp = nv;
        (*np)++;
        return 0;
    }
    case OT_MODE:
        return set_mode(o, v, err, errsz);
    }
    return -1;
}

/* mitmproxy's None: a string unset, a list emptied, a size limit off
 * (body_size_limit, stream_large_bodies: 0), listen_port 8080.  -1 for an
 * option that has no None. */
static int opt_set_none(opts *o, const opt_desc *d)
{
    char *base = (char *)o;
    switch (d->type) {
    case OT_STR: {
        char **p = (char **)(base + d->off);
        free(*p);
        *p = NULL;
        return 0;
    }
    case OT_STRLIST: {
        char ***lp = (char ***)(base + d->off);
        size_t *np = (size_t *)(base + d->count_off);
        strlist_free(*lp, *np);
        *lp = NULL;
        *np = 0;
        return 0;
    }
    case OT_SIZE:
        if (strcmp(d->name, "body_size_limit") != 0 && strcmp(d->name, "stream_large_bodies") != 0)
            return -1;
        *(uint64_t *)(base + d->off) = 0;
        return 0;
    case OT_INT:
        /* mitmproxy 11+: None is the mode's default port */
        if (strcmp(d->name, "listen_port") != 0)
            return -1;
        *(int *)(base + d->off) = OPTS_LISTEN_PORT_DEFAULT;
        return 0;
    default:
        return -1;
    }
}

/* Is vals (nvals = 0: the value left out) mitmproxy's default for fd? */
static bool foreign_is_default(const foreign_desc *fd, char *const *vals, size_t nvals)
{
    const char *v = nvals ? vals[0] : NULL;
    switch (fd->type) {
    case 'b': {
        bool a, b;
        return parse_bool(v ? v : "true", &a) == 0 && parse_bool(fd->dflt, &b) == 0 && a == b;
    }
    case 'i': {
        char *end;
        long x = v ? strtol(v, &end, 10) : -1;
        return v && end != v && !*end && x == strtol(fd->dflt, NULL, 10);
    }
    case 's':
        if (!fd->dflt)
            return !v || !*v || !strcmp(v, "null");
        return v && strcmp(v, fd->dflt) == 0;
    default:
        return nvals == 0;
    }
}

/* A name not in opt_table: 0 accepted (a UI option warns), -1 with err (an
 * option mitmlua lacks, at a value other than its default), 1 unknown. */
static int foreign_apply(const char *name, size_t n, char *const *vals, size_t nvals, char *err, size_t errsz)
{
    const foreign_desc *fd = foreign_find(name, n);
    if ((fd && fd->ui) || (!fd && foreign_is_ui_prefix(name, n))) {
        fprintf(stderr, "mitmlua: warning: %.*s is an option of mitmproxy's console or web UI; ignored\n", (int)n,
                name);
        return 0;
    }
    if (!fd)
        return 1;
    if (foreign_is_default(fd, vals, nvals))
        return 0;
    if (fd->type == 'l')
        snprintf(err, errsz, "option %s is not implemented by mitmlua (only an empty list is accepted)", fd->name);
    else
        snprintf(err, errsz, "option %s is not implemented by mitmlua (only mitmproxy's default, %s, is accepted)",
                 fd->name, fd->dflt ? fd->dflt : "none");
    return -1;
}

int opts_set(opts *o, const char *assignment, char *err, size_t errsz)
{
    const char *eq = strchr(assignment, '=');
    size_t n = eq ? (size_t)(eq - assignment) : strlen(assignment);
    const opt_desc *d = opt_find(assignment, n);
    if (!d) {
        char *v = eq ? (char *)eq + 1 : NULL;
        int rc = foreign_apply(assignment, n, &v, eq ? 1 : 0, err, errsz);
        if (rc <= 0)
            return rc;
        snprintf(err, errsz, "unknown option '%.*s' in --set %s (see --options)", (int)n, assignment, assignment);
        return -1;
    }
    char *base = (char *)o;
    if (!eq) {
        /* mitmproxy: "--set name" sets a boolean to true, a string to None
         * and empties a list */
        if (d->type == OT_BOOL)
            return opt_apply(o, d, "true", err, errsz);
        if (opt_set_none(o, d) == 0)
            return 0;
        snprintf(err, errsz, "--set %s: expected %s=VALUE", assignment, d->name);
        return -1;
    }
    if (d->type == OT_BOOL && strcmp(eq + 1, "toggle") == 0) {
        bool *b = (bool *)(base + d->off);
        *b = !*b;
        return 0;
    }
    return opt_apply(o, d, eq + 1, err, errsz);
}

void opts_print(const opts *o)
{
    const char *base = (const char *)o;
    for (size_t i = 0; i < OPT_TABLE_N; i++) {
        const opt_desc *d = &opt_table[i];
        printf("%s: ", d->name);
        switch (d->type) {
        case OT_STR:
        case OT_MODE: {
            const char *s = *(char *const *)(base + d->off);
            printf("%s", s ? s : "");
            break;
        }
        case OT_INT: printf("%d", *(const int *)(base + d->off)); break;
        case OT_BOOL: printf("%s", *(const bool *)(base + d->off) ? "true" : "false"); break;
        case OT_SIZE: printf("%" PRIu64, *(const uint64_t *)(base + d->off)); break;
        case OT_STRLIST: {
            char *const *v = *(char **const *)(base + d->off);
            size_t n = *(const size_t *)(base + d->count_off);
            printf("[");
            for (size_t j = 0; j < n; j++)
                printf("%s%s", j ? ", " : "", v[j]);
            printf("]");
            break;
        }
        }
        printf("\n    %s\n", d->help);
    }
}

/* Values of the replay options and connect_addr that a string or int cannot
 * constrain. */
static int opts_check_values(const opts *o, char *err, size_t errsz)
{
    const char *x = o->server_replay_extra ? o->server_replay_extra : "forward";
    if (strcmp(x, "forward") != 0 && strcmp(x, "kill") != 0) {
        char *end;
        long st = strtol(x, &end, 10);
        if (end == x || *end || st < 200 || st > 599) {
            snprintf(err, errsz, "invalid value for server_replay_extra: '%s' (expected forward, kill or a status 200-599)", x);
            return -1;
        }
    }
    struct sockaddr_storage ss;
    socklen_t sslen;
    if (o->onboarding_port > 65535) {
        snprintf(err, errsz, "invalid value for onboarding_port: %d (expected 0 to 65535)", o->onboarding_port);
        return -1;
    }
    if (o->connect_addr && dial_source_parse(o->connect_addr, &ss, &sslen) < 0) {
        snprintf(err, errsz, "invalid value for connect_addr: '%s' (expected an IPv4 or IPv6 address)", o->connect_addr);
        return -1;
    }
    const char *c = o->client_replay_compare;
    if (c && strcmp(c, "status") != 0 && strcmp(c, "headers") != 0 && strcmp(c, "body") != 0) {
        snprintf(err, errsz, "invalid value for client_replay_compare: '%s' (expected status, headers or body)", c);
        return -1;
    }
    if (o->client_replay_concurrency < 1 || o->client_replay_concurrency > 1000) {
        snprintf(err, errsz, "invalid value for client_replay_concurrency: %d (expected 1 to 1000)",
                 o->client_replay_concurrency);
        return -1;
    }
    return 0;
}

/* ---- config.yaml --------------------------------------------------------- */

typedef struct config_ud {
    opts *o;
    const bool *cli;
    /* Per list option: how many leading items came from a config file (a
     * later file replaces them, the command line's items stay behind). */
    size_t *from_file;
} config_ud;

static int config_apply(void *ud, const char *key, char **vals, size_t nvals, bool is_list, char *err,
                        size_t errsz)
{
    config_ud *cu = ud;
    const opt_desc *d = opt_find(key, strlen(key));
    if (!d) {
        int rc = foreign_apply(key, strlen(key), vals, nvals, err, errsz);
        if (rc <= 0)
            return rc;
        snprintf(err, errsz, "unknown option '%s' (see --options)", key);
        return -1;
    }
    char *base = (char *)cu->o;
    if (d->type == OT_STRLIST) {
        if (!is_list && nvals) {
            snprintf(err, errsz, "%s: expected a list ('- item' lines or [a, b])", key);
            return -1;
        }
        /* mitmproxy appends command-line lists to the file's (OptManager
         * .merge): the file's items come first, then the command line's */
        size_t idx = (size_t)(d - opt_table);
        char ***lp = (char ***)(base + d->off);
        size_t *np = (size_t *)(base + d->count_off);
        char **old = *lp;
        size_t old_n = *np, skip = cu->from_file[idx];
        *lp = NULL;
        *np = 0;
        int rc = 0;
        for (size_t i = 0; i < nvals && rc == 0; i++)
            rc = opt_apply(cu->o, d, vals[i], err, errsz);
        cu->from_file[idx] = *np;
        if (cu->cli[idx])   /* the command line's items, after the earlier file's */
            for (size_t i = skip; i < old_n && rc == 0; i++)
                rc = opt_apply(cu->o, d, old[i], err, errsz);
        strlist_free(old, old_n);
        return rc;
    }
    if (cu->cli[d - opt_table])
        return 0;
    /* mitmproxy 11+ writes mode as a list of modes; mitmlua runs one */
    if (is_list && d->type == OT_MODE && nvals == 1)
        return opt_apply(cu->o, d, vals[0], err, errsz);
    if (is_list) {
        snprintf(err, errsz, "%s: expected a single value, not a list", key);
        return -1;
    }
    if (!nvals) {
        if (opt_set_none(cu->o, d) == 0)
            return 0;
        snprintf(err, errsz, "%s: expected a value", key);
        return -1;
    }
    return opt_apply(cu->o, d, vals[0], err, errsz);
}

static void usage(FILE *out)
{
    fprintf(out,
        "usage: mitmlua [options] [filter-expression]\n"
        "\n"
        "An intercepting HTTP(S) proxy scripted in Lua, with mitmdump's flags.\n"
        "\n"
        "  -p, --listen-port PORT      port to listen on (8080)\n"
        "      --listen-host HOST      address to listen on (127.0.0.1)\n"
        "  -m, --mode MODE             regular, reverse:URL, upstream:URL, socks5,\n"
        "                              transparent\n"
        "  -s, --scripts FILE          run a Lua script (repeatable, in order)\n"
        "  -w, --save-stream-file FILE stream flows to FILE (+FILE appends, - stdout;\n"
        "                              FILE.mitm: mitmproxy's flow format)\n"
        "  -r, --rfile FILE            read flows from FILE (- is stdin), then exit\n"
        "                              unless --keepserving\n"
        "  -n, --no-server             do not start a proxy server\n"
        "  -C, --client-replay FILE    replay client requests from FILE\n"
        "  -S, --server-replay FILE    replay server responses from FILE\n"
        "  -k, --ssl-insecure          do not verify upstream certificates\n"
        "  -M, --map-remote PATTERN    map URLs to others: [/filter]/url-regex/replacement\n"
        "      --map-local PATTERN     answer from local files: [/filter]/url-regex/path\n"
        "  -H, --modify-headers PATTERN set headers: [/filter]/name/[@]value\n"
        "  -B, --modify-body PATTERN   replace in bodies: [/filter]/regex/[@]replacement\n"
        "      --[no-]anticache        strip If-Modified-Since and If-None-Match\n"
        "      --[no-]anticomp         ask servers for uncompressed responses\n"
        "      --[no-]showhost         use the Host header to build URLs for display\n"
        "      --[no-]http2            speak HTTP/2 (on by default)\n"
        "      --[no-]server           start a proxy server (on by default; -n)\n"
        "      --[no-]ssl-insecure     (-k)\n"
        "      --[no-]keepserving      keep serving after -r, -C or -S are done\n"
        "      --[no-]server-replay-kill-extra, --[no-]server-replay-nopop,\n"
        "      --[no-]server-replay-refresh\n"
        "                              server replay options (see --options)\n"
        "      --ignore-hosts REGEX    pass these CONNECT targets through (repeatable)\n"
        "      --allow-hosts REGEX     intercept only these (repeatable)\n"
        "      --tcp-hosts REGEX       relay these as raw TCP (repeatable)\n"
        "      --upstream-auth USER:PASS  credentials for upstream/reverse mode\n"
        "      --proxyauth SPEC        require proxy authentication: user:pass, any, @htpasswd\n"
        "      --certs [DOMAIN=]PATH   our own certificate instead of a minted one\n"
        "      --cert-passphrase PASS  decrypts the keys of --certs files\n"
        "      --key-size BITS         RSA bits of minted certificates (2048)\n"
        "      --[no-]rawtcp           relay what is not HTTP in a tunnel as a TCP flow (on)\n"
        "      --stickycookie FILTER   replay cookies set by servers to matching requests\n"
        "      --stickyauth FILTER     replay Authorization headers to matching requests\n"
        "      --confdir DIR           CA and config directory (~/.mitmlua)\n"
        "      --set NAME=VALUE        set any option (see --options); CONFDIR/config.yaml\n"
        "                              sets options too (the command line wins)\n"
        "  -q, --quiet                 no console output\n"
        "  -v, --verbose               debug log with connection lines; flow detail 2\n"
        "      --flow-detail N         0..4, as mitmdump\n"
        "      --options               print all options and exit\n"
        "      --commands              (mitmdump's; mitmlua has no commands)\n"
        "      --print-env             print shell exports (proxy, CA bundle) and exit\n"
        "      --version               print the version and exit\n"
        "  -h, --help                  this help\n"
        "\n"
        "Exit status: 0 success, 1 runtime failure, 2 usage error,\n"
        "3 a flow matched --set fail_on, 4 client_replay_compare found a difference\n"
        "or a failed replay, or the code a script gave mitm.exit().\n");
}

/* Long flags that stand for one option: with a value (val NULL: the
 * argument) or a fixed one (the --X/--no-X pairs of mitmdump's booleans).
 * Every flag goes through opts_set, so a flag and --set cannot differ. */
typedef struct flag_desc {
    const char *flag;
    const char *opt;
    const char *val;
    char shortopt;
} flag_desc;

static const flag_desc flag_table[] = {
    {"listen-port", "listen_port", NULL, 'p'},
    {"listen-host", "listen_host", NULL, 0},
    {"mode", "mode", NULL, 'm'},
    {"scripts", "scripts", NULL, 's'},
    {"save-stream-file", "save_stream_file", NULL, 'w'},
    {"rfile", "rfile", NULL, 'r'},
    {"server", "server", "true", 0},
    {"no-server", "server", "false", 'n'},
    {"client-replay", "client_replay", NULL, 'C'},
    {"server-replay", "server_replay", NULL, 'S'},
    {"ssl-insecure", "ssl_insecure", "true", 'k'},
    {"no-ssl-insecure", "ssl_insecure", "false", 0},
    {"confdir", "confdir", NULL, 0},
    {"flow-detail", "flow_detail", NULL, 0},
    {"map-remote", "map_remote", NULL, 'M'},
    {"map-local", "map_local", NULL, 0},
    {"modify-headers", "modify_headers", NULL, 'H'},
    {"modify-body", "modify_body", NULL, 'B'},
    {"anticache", "anticache", "true", 0},
    {"no-anticache", "anticache", "false", 0},
    {"anticomp", "anticomp", "true", 0},
    {"no-anticomp", "anticomp", "false", 0},
    {"showhost", "showhost", "true", 0},
    {"no-showhost", "showhost", "false", 0},
    {"stickycookie", "stickycookie", NULL, 0},
    {"stickyauth", "stickyauth", NULL, 0},
    {"ignore-hosts", "ignore_hosts", NULL, 0},
    {"allow-hosts", "allow_hosts", NULL, 0},
    {"tcp-hosts", "tcp_hosts", NULL, 0},
    {"upstream-auth", "upstream_auth", NULL, 0},
    {"proxyauth", "proxyauth", NULL, 0},
    {"rawtcp", "rawtcp", "true", 0},
    {"no-rawtcp", "rawtcp", "false", 0},
    {"http2", "http2", "true", 0},
    {"no-http2", "http2", "false", 0},
    {"certs", "certs", NULL, 0},
    {"cert-passphrase", "cert_passphrase", NULL, 0},
    {"key-size", "key_size", NULL, 0},
    {"server-replay-kill-extra", "server_replay_kill_extra", "true", 0},
    {"no-server-replay-kill-extra", "server_replay_kill_extra", "false", 0},
    {"server-replay-nopop", "server_replay_nopop", "true", 0},
    {"no-server-replay-nopop", "server_replay_nopop", "false", 0},
    {"server-replay-refresh", "server_replay_refresh", "true", 0},
    {"no-server-replay-refresh", "server_replay_refresh", "false", 0},
    {"keepserving", "keepserving", "true", 0},
    {"no-keepserving", "keepserving", "false", 0},
};
#define FLAG_N (sizeof flag_table / sizeof flag_table[0])

enum { O_SET = 256, O_VERSION, O_OPTIONS, O_COMMANDS, O_PRINT_ENV, O_FLAG = 1000 };

static void mark_cli(bool *cli, const char *name)
{
    const opt_desc *d = opt_find(name, strcspn(name, "="));
    if (d)
        cli[d - opt_table] = true;
}

/* One flag of flag_table, through opts_set. */
static int apply_flag(opts *o, const flag_desc *fd, const char *arg, bool *cli)
{
    char err[512];
    const char *v = fd->val ? fd->val : arg;
    size_t n = strlen(fd->opt) + strlen(v) + 2;
    char *assign = malloc(n);
    if (!assign)
        return 2;
    snprintf(assign, n, "%s=%s", fd->opt, v);
    int rc = opts_set(o, assign, err, sizeof err);
    free(assign);
    if (rc < 0) {
        fprintf(stderr, "mitmlua: %s\n", err);
        return 2;
    }
    mark_cli(cli, fd->opt);
    return 0;
}

static struct option *make_longopts(void)
{
    static const struct option fixed[] = {
        {"set", required_argument, NULL, O_SET},
        {"quiet", no_argument, NULL, 'q'},
        {"verbose", no_argument, NULL, 'v'},
        {"version", no_argument, NULL, O_VERSION},
        {"options", no_argument, NULL, O_OPTIONS},
        {"commands", no_argument, NULL, O_COMMANDS},
        {"print-env", no_argument, NULL, O_PRINT_ENV},
        {"help", no_argument, NULL, 'h'},
    };
    size_t nf = sizeof fixed / sizeof fixed[0];
    struct option *lo = calloc(nf + FLAG_N + 1, sizeof *lo);
    if (!lo)
        return NULL;
    memcpy(lo, fixed, sizeof fixed);
    for (size_t i = 0; i < FLAG_N; i++)
        lo[nf + i] = (struct option){flag_table[i].flag, flag_table[i].val ? no_argument : required_argument, NULL,
                                     O_FLAG + (int)i};
    return lo;
}

static const flag_desc *flag_by_short(int c)
{
    for (size_t i = 0; i < FLAG_N; i++)
        if (flag_table[i].shortopt == c)
            return &flag_table[i];
    return NULL;
}

static int parse_argv(opts *o, int argc, char **argv, bool *cli, bool *print_options, bool *verbose)
{
    char err[512];
    struct option *longopts = make_longopts();
    int c, rc = 0;
    if (!longopts)
        return 2;
    opterr = 0;
    optind = 1;
    while (rc == 0 && (c = getopt_long(argc, argv, "p:m:s:w:r:nC:S:kqvhM:H:B:", longopts, NULL)) != -1) {
        const flag_desc *fd = c >= O_FLAG ? &flag_table[c - O_FLAG] : flag_by_short(c);
        if (fd) {
            rc = apply_flag(o, fd, optarg, cli);
            continue;
        }
        switch (c) {
        case 'q':
            o->flow_detail = 0;
            free(o->termlog_verbosity);
            o->termlog_verbosity = strdup("error");
            mark_cli(cli, "flow_detail");
            mark_cli(cli, "termlog_verbosity");
            break;
        case 'v':
            free(o->termlog_verbosity);
            o->termlog_verbosity = strdup("debug");
            mark_cli(cli, "termlog_verbosity");
            *verbose = true;
            break;
        case O_SET:
            if (opts_set(o, optarg, err, sizeof err) < 0) {
                fprintf(stderr, "mitmlua: %s\n", err);
                rc = 2;
            } else {
                mark_cli(cli, optarg);
            }
            break;
        case O_VERSION: printf("mitmlua %s\n", MITMLUA_VERSION); rc = 1; break;
        case O_OPTIONS: *print_options = true; break;
        case O_COMMANDS:
            printf("mitmlua has no commands: mitmproxy's commands drive its console and web UI.\n");
            rc = 1;
            break;
        case O_PRINT_ENV: o->print_env = true; break;
        case 'h': usage(stdout); rc = 1; break;
        case ':':
            fprintf(stderr, "mitmlua: option %s needs a value (see --help)\n", argv[optind - 1]);
            rc = 2;
            break;
        default:
            fprintf(stderr, "mitmlua: unknown option '%s' (see --help)\n", argv[optind - 1]);
            rc = 2;
            break;
        }
    }
    free(longopts);
    return rc;
}

int opts_parse(opts *o, int argc, char **argv)
{
    char err[512];
    bool print_options = false;
    bool cli[OPT_TABLE_N] = {false};  /* set on the command line: config.yaml must not override */
    bool verbose = false;
    int rc = parse_argv(o, argc, argv, cli, &print_options, &verbose);
    if (rc != 0)
        return rc;
    /* mitmdump's -v is flow_detail 2 too (there even over --flow-detail;
     * here an explicit --flow-detail wins) */
    if (verbose && !cli[opt_find("flow_detail", 11) - opt_table]) {
        o->flow_detail = 2;
        mark_cli(cli, "flow_detail");
    }
    if (!o->confdir) {
        const char *home = getenv("HOME");
        size_t n = strlen(home ? home : ".") + 16;
        o->confdir = malloc(n);
        snprintf(o->confdir, n, "%s/.mitmlua", home ? home : ".");
    }
    /* CONFDIR/config.yaml, then config.yml (which wins, as in mitmproxy),
     * fill in what the command line left unset */
    size_t from_file[OPT_TABLE_N] = {0};
    config_ud cu = {o, cli, from_file};
    for (int i = 0; i < 2; i++) {
        char cpath[4200];
        snprintf(cpath, sizeof cpath, "%s/config.%s", o->confdir, i == 0 ? "yaml" : "yml");
        if (config_load(cpath, cpath, config_apply, &cu, err, sizeof err) < 0) {
            fprintf(stderr, "mitmlua: %s\n", err);
            return 2;
        }
    }
    if (o->flow_detail > 4) {
        fprintf(stderr, "mitmlua: invalid value for flow_detail: %d (expected 0 to 4)\n", o->flow_detail);
        return 2;
    }
    if (o->listen_port > 65535) {
        fprintf(stderr, "mitmlua: invalid listen_port %d (expected 0 to 65535)\n", o->listen_port);
        return 2;
    }
    if (strcmp(o->console_format ? o->console_format : "", "text") != 0 &&
        strcmp(o->console_format ? o->console_format : "", "jsonl") != 0) {
        fprintf(stderr, "mitmlua: invalid value for console_format: '%s' (expected text or jsonl)\n",
                o->console_format ? o->console_format : "");
        return 2;
    }
    if (strcmp(o->connection_strategy ? o->connection_strategy : "", "lazy") != 0 &&
        strcmp(o->connection_strategy ? o->connection_strategy : "", "eager") != 0) {
        fprintf(stderr, "mitmlua: invalid value for connection_strategy: '%s' (expected eager or lazy)\n",
                o->connection_strategy ? o->connection_strategy : "");
        return 2;
    }
    if (o->upstream_auth && (!strchr(o->upstream_auth, ':') || o->upstream_auth[0] == ':')) {
        fprintf(stderr, "mitmlua: invalid value for upstream_auth: '%s' (expected user:password)\n", o->upstream_auth);
        return 2;
    }
    if (o->workers < 1 || o->workers > 256) {
        fprintf(stderr, "mitmlua: invalid value for workers: %d (expected 1 to 256)\n", o->workers);
        return 2;
    }
    if (tlsopts_check(o, err, sizeof err) < 0) {
        fprintf(stderr, "mitmlua: %s\n", err);
        return 2;
    }
    if (o->save_format && strcmp(o->save_format, "mitmlua") != 0 && strcmp(o->save_format, "mitmproxy") != 0) {
        fprintf(stderr, "mitmlua: invalid value for save_format: '%s' (expected mitmlua or mitmproxy)\n",
                o->save_format);
        return 2;
    }
    int cvk = contentview_known(o->dumper_default_contentview);
    if (cvk < 1) {
        fprintf(stderr, cvk == 0 ? "mitmlua: content view '%s' is not implemented by mitmlua (dumper_default_contentview)\n"
                                 : "mitmlua: invalid value for dumper_default_contentview: '%s' (see --options)\n",
                o->dumper_default_contentview);
        return 2;
    }
    if (opts_check_values(o, err, sizeof err) < 0) {
        fprintf(stderr, "mitmlua: %s\n", err);
        return 2;
    }
    /* like mitmdump, the remaining words form one filter expression */
    if (optind < argc) {
        size_t len = 0;
        for (int i = optind; i < argc; i++)
            len += strlen(argv[i]) + 1;
        o->filter_expr = malloc(len);
        o->filter_expr[0] = '\0';
        for (int i = optind; i < argc; i++) {
            if (i > optind)
                strcat(o->filter_expr, " ");
            strcat(o->filter_expr, argv[i]);
        }
    }
    /* mitmdump: the trailing expression sets all three filters (over --set) */
    if (o->filter_expr) {
        char **fs[] = {&o->readfile_filter, &o->save_stream_filter, &o->dumper_filter};
        for (size_t i = 0; i < sizeof fs / sizeof fs[0]; i++) {
            free(*fs[i]);
            *fs[i] = strdup(o->filter_expr);
        }
    }
    if (o->proxy_debug) {
        free(o->termlog_verbosity);
        o->termlog_verbosity = strdup("debug");
    }
    if (print_options) {
        opts_print(o);
        return 1;
    }
    return 0;
}

flow_limits opts_flow_limits(const opts *o)
{
    flow_limits l = flow_limits_default;
    l.max_headers = o->max_headers > 0 ? (size_t)o->max_headers : l.max_headers;
    l.max_header_size = o->max_header_size;
    l.max_body = o->body_size_limit;
    return l;
}
