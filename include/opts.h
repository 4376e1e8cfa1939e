/* opts.h — every option mitmlua has, its command-line flags and its
 * `--set name=value` spelling (mitmproxy's option names where one exists).
 * One table describes each option once; parsing, `--options` and the man
 * page all follow it.  Options are read-only after start-up. */
#ifndef MITMLUA_OPTS_H
#define MITMLUA_OPTS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include "flow.h"

enum opts_mode {
    MODE_REGULAR,   /* explicit proxy: absolute-form requests and CONNECT */
    MODE_REVERSE,   /* reverse:URL — every request goes to URL */
    MODE_UPSTREAM,  /* upstream:URL — forward through another proxy */
    MODE_TRANSPARENT, /* Linux: the target is the socket's original destination */
    MODE_SOCKS5,    /* SOCKS5 (RFC 1928) without authentication, CONNECT only */
};

typedef struct opts_url {
    char *scheme;   /* "http" / "https" */
    char *host;
    uint16_t port;
} opts_url;

typedef struct opts {
    /* network */
    char *listen_host;
    int listen_port;
    char *mode_spec;            /* as given: "regular", "reverse:http://..." */
    enum opts_mode mode;
    opts_url mode_url;
    int workers;
    /* scripts and files */
    char **scripts;
    size_t nscripts;
    char *save_stream_file;
    char *save_format;          /* NULL (by the suffix), "mitmlua" or "mitmproxy" */
    char *rfile;
    bool server;                /* false with -n */
    char **client_replay;
    size_t nclient_replay;
    char **server_replay;
    size_t nserver_replay;
    /* server replay matching (sreplay.c) */
    char **server_replay_ignore_params;
    size_t nserver_replay_ignore_params;
    char **server_replay_ignore_payload_params;
    size_t nserver_replay_ignore_payload_params;
    char **server_replay_use_headers;
    size_t nserver_replay_use_headers;
    bool server_replay_ignore_content;
    bool server_replay_ignore_host;
    bool server_replay_ignore_port;
    bool server_replay_nopop;
    bool server_replay_reuse;       /* current mitmproxy's name for nopop */
    bool server_replay_kill_extra;  /* mitmproxy 8.1.1's spelling of extra=kill */
    bool server_replay_refresh;
    char *server_replay_extra;      /* forward, kill or a status code */
    /* client replay (creplay.c) and the comparison (replaycmp.c) */
    int client_replay_concurrency;
    char *client_replay_compare;    /* NULL, status, headers or body */
    char **client_replay_ignore_headers;
    size_t nclient_replay_ignore_headers;
    char **client_replay_ignore_json_fields;
    size_t nclient_replay_ignore_json_fields;
    char *confdir;
    char *hardump;
    char *report;               /* --set report=FILE: the HTML report */
    uint64_t report_body_limit; /* bodies cut past this in the report */
    /* TLS */
    bool ssl_insecure;
    char *ssl_verify_upstream_trusted_ca;
    char *ssl_verify_upstream_trusted_confdir; /* directory of trusted CAs */
    char *client_certs;         /* file, or directory of HOST.pem, for mTLS upstream */
    char **certs;               /* "[domain=]path": our own certificates (tlsopts.c) */
    size_t ncerts;
    char *tls_version_client_min, *tls_version_client_max; /* mitmproxy's names */
    char *tls_version_server_min, *tls_version_server_max;
    char *ciphers_client;       /* OpenSSL cipher string, or NULL */
    char *ciphers_server;
    char *tls_ecdh_curve_client;  /* the one key-exchange group offered, or NULL */
    char *tls_ecdh_curve_server;
    char *cert_passphrase;      /* decrypts the keys in `certs` files, or NULL */
    bool request_client_cert;   /* send clients a CertificateRequest */
    bool upstream_cert;
    bool add_upstream_certs_to_client_chain;
    int key_size;               /* RSA bits of the minted leaves' key (key_type rsa) */
    char *key_type;             /* "ecdsa" (P-256) or "rsa" */
    /* output */
    int flow_detail;
    char *termlog_verbosity;
    bool showhost;
    char *filter_expr;          /* trailing filter expression, NULL = all */
    /* mitmdump's three filters; the trailing expression sets all of them */
    char *readfile_filter;      /* -r: flows that are read at all (hooks, output) */
    char *save_stream_filter;   /* -w and hardump: flows that are saved */
    char *dumper_filter;        /* console: flows that are printed */
    bool keepserving;           /* keep the proxy up after -r, -C, -S are done */
    bool proxy_debug;           /* mitmproxy's core debug log: debug log level */
    bool onboarding;            /* answer http://mitm.it/ */
    char *onboarding_host;      /* ... under this host name (mitm.it) */
    int onboarding_port;        /* ... on this port only; 0 = any (mitmproxy 9+) */
    char *dumper_default_contentview; /* content view at detail 3, 4 ("auto") */
    char *console_format;       /* "text" (mitmdump's lines) or "jsonl" */
    /* CI */
    char *ready_file;           /* written once the proxy listens */
    char *fail_on;              /* filter: exit 3 when any flow matched */
    bool print_env;             /* --print-env: print exports and exit */
    /* HTTP */
    bool keep_host_header;
    bool keep_alt_svc_header;   /* reverse mode: leave Alt-Svc as the server sent it */
    bool http2;              /* offer h2 to clients (ALPN, h2c prior knowledge) and TLS servers */
    bool rawtcp;             /* non-HTTP bytes in a tunnel: a TCP flow (tunnel.c) */
    bool show_ignored_hosts; /* passed-through tunnels are TCP flows too */
    bool websocket;             /* read WebSocket messages after an Upgrade (else relay bytes) */
    int http2_ping_keepalive;   /* seconds idle before an h2 server connection is PINGed; 0 = never */
    char **ignore_hosts;        /* TLS passthrough for these host:port regexes */
    size_t nignore_hosts;
    char **allow_hosts;         /* intercept only these; pass the rest through */
    size_t nallow_hosts;
    char **tcp_hosts;           /* relay these host:port regexes as raw TCP */
    size_t ntcp_hosts;
    /* connections */
    bool block_global;          /* refuse clients from public addresses */
    bool block_private;         /* refuse clients from private addresses */
    char *upstream_auth;        /* user:pass for the upstream proxy, or NULL */
    bool http_connect_send_host_header; /* upstream mode: Host in our CONNECTs */
    char *connection_strategy;  /* "lazy" or "eager" */
    char *connect_addr;         /* local address of connections to servers, or NULL */
    /* flow-changing addons (addons.c), mitmproxy's syntax */
    char **map_remote;          /* -M "[/filter]/url-regex/replacement" */
    size_t nmap_remote;
    char **map_local;           /* "[/filter]/url-regex/file-or-directory" */
    size_t nmap_local;
    char **modify_headers;      /* -H "[/filter]/name/[@]value" */
    size_t nmodify_headers;
    char **modify_body;         /* -B "[/filter]/regex/[@]replacement" */
    size_t nmodify_body;
    char **block_list;          /* "/filter/status" (444: kill) */
    size_t nblock_list;
    bool anticache;
    bool anticomp;
    char *stickycookie;         /* filter, or NULL */
    char *stickyauth;           /* filter, or NULL */
    /* limits and timeouts */
    uint64_t body_size_limit;   /* 0 = no limit */
    uint64_t stream_large_bodies; /* responses larger than this are streamed; 0 = never */
    bool store_streamed_bodies; /* ... and kept whole all the same */
    uint64_t max_header_size;
    int max_headers;
    int connect_timeout;        /* seconds */
    int read_timeout;           /* seconds: upstream response; client mid-request */
    int idle_timeout;           /* seconds: client connection waiting for a request */
    int tcp_timeout;            /* seconds: a TCP flow with no bytes either way (0: none) */
    int tls_handshake_timeout;  /* seconds: client-side TLS handshake */
    int max_connections;        /* client connections at once; 0 = from RLIMIT_NOFILE */
    int script_timeout;         /* ms a Lua hook may run (default 10000); 0 = no limit */
    int script_memory_limit;    /* MiB a worker's Lua state may hold; 0 = no limit */
    /* access */
    char *proxyauth;            /* user:pass, any or @htpasswd; NULL = open */
} opts;

/* Parse argv into o (after filling defaults).  On a usage error prints one
 * line to stderr and returns 2; returns 1 when the process should exit 0
 * right away (--help, --version, --options printed); 0 to run. */
int opts_parse(opts *o, int argc, char **argv);
/* Apply one "name=value" (the --set syntax).  0, or -1 with err. */
int opts_set(opts *o, const char *assignment, char *err, size_t errsz);
void opts_defaults(opts *o);
void opts_free(opts *o);
/* Print every option with its current value and help (--options). */
void opts_print(const opts *o);
/* Parse "10m", "512k", "1g", "123" into bytes.  0 or -1. */
int opts_parse_size(const char *s, uint64_t *out);
/* Parse "http://host:port" (as used by --mode reverse:/upstream:).  0 or -1. */
int opts_parse_url(const char *s, opts_url *u, char *err, size_t errsz);
void opts_url_free(opts_url *u);
/* What mitmlua does with an option name of mitmproxy's that is not in its
 * own table: OPTS_UI for the console's and web UI's options (a warning),
 * OPTS_UNIMPLEMENTED for one that would change behaviour (accepted only at
 * its default value), OPTS_UNKNOWN for a name mitmproxy does not have. */
enum opts_foreign { OPTS_UNKNOWN, OPTS_UI, OPTS_UNIMPLEMENTED };
enum opts_foreign opts_foreign_kind(const char *name);

#define MITMLUA_VERSION "0.1.0"

/* The limits live traffic is held to (max_headers, max_header_size,
 * body_size_limit), for flows read from files. */
flow_limits opts_flow_limits(const opts *o);

#endif
