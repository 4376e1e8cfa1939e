/* flow.h — the flow model: one request/response exchange and everything
 * known about it.  This is mitmlua's single internal message representation
 * (HAProxy's HTX plays the same role): HTTP/1 and HTTP/2 parsers fill it,
 * hooks, filters, the printer and the dump read it.  It knows nothing of
 * sockets, Lua or files. */
#ifndef MITMLUA_FLOW_H
#define MITMLUA_FLOW_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

/* ---- byte buffers ------------------------------------------------------ */

/* An owned, growable byte string.  `p` is always NUL-terminated when non-NULL
 * (one spare byte past `len`) so text consumers need no copy; binary content
 * may contain NULs, so always honour `len`. */
typedef struct bytes {
    char *p;
    size_t len;
    size_t cap;
} bytes;

int bytes_append(bytes *b, const void *data, size_t n); /* 0 or -1 (ENOMEM) */
/* Room for `need` bytes (and the trailing NUL) in one allocation, when the
 * final size is known up front (a Content-Length): no copies as it grows. */
int bytes_reserve(bytes *b, size_t need);
int bytes_set(bytes *b, const void *data, size_t n);
void bytes_reset(bytes *b); /* len = 0, keeps the allocation */
void bytes_free(bytes *b);

/* ---- header lists ------------------------------------------------------ */

/* Headers in the order and case they were sent.  Lookups ignore case.
 * Fields are changed only through the functions below: where a field's
 * bytes live (hdrs_blk, or an allocation of its own) is flow.c's business. */
typedef struct hdr_field {
    char *name;            /* "name\0value\0" */
    size_t name_len;
    char *value;
    size_t value_len;
    bool own;              /* its own allocation (at `name`), not in a block */
} hdr_field;

struct hdrs_blk;

typedef struct hdrs {
    hdr_field *v;
    size_t n;
    size_t cap;
    struct hdrs_blk *blk;  /* field bytes, newest block first */
    size_t blk_bytes;      /* all blocks' capacity, at most HDRS_BLK_MAX */
} hdrs;

int hdrs_add(hdrs *h, const char *name, size_t nlen, const char *value, size_t vlen);
/* First value of `name` (case-insensitive) or NULL; *vlen set when found. */
const char *hdrs_get(const hdrs *h, const char *name, size_t *vlen);
/* Index of the i-th field (0-based) named `name` at or after `from`, or -1. */
ssize_t hdrs_find(const hdrs *h, const char *name, size_t from);
/* Replace the first `name` and drop the others; append when absent. */
int hdrs_set(hdrs *h, const char *name, const char *value, size_t vlen);
/* Remove every field named `name`; returns how many were removed. */
size_t hdrs_remove(hdrs *h, const char *name);
void hdrs_remove_at(hdrs *h, size_t i);
int hdrs_copy(hdrs *dst, const hdrs *src);
void hdrs_free(hdrs *h);
/* true when a comma-separated header `name` lists `token` (case-insensitive) */
bool hdrs_has_token(const hdrs *h, const char *name, const char *token);
/* The next element of a comma-separated field value (RFC 9110 §5.6.1)
 * from *p up to end, without the whitespace around it: its start, with its
 * length in *len, and *p past it; NULL when none is left. */
const char *hdrs_next_token(const char **p, const char *end, size_t *len);

/* ---- the flow ---------------------------------------------------------- */

typedef struct flow_request {
    char *method;        /* as sent: "GET" */
    char *scheme;        /* "http" / "https" */
    char *authority;     /* the authority as sent (absolute-form, :authority or CONNECT target), may be "" */
    char *host;          /* host the request goes to (no brackets for IPv6) */
    uint16_t port;
    char *path;          /* origin-form path + query, "*" or "" for CONNECT */
    char *http_version;  /* "HTTP/1.1", "HTTP/2.0" */
    hdrs headers;
    hdrs trailers;
    bytes content;       /* raw body: de-chunked, still content-encoded */
    double timestamp_start;
    double timestamp_end;
} flow_request;

typedef struct flow_response {
    int status_code;
    char *reason;
    char *http_version;
    hdrs headers;
    hdrs trailers;
    bytes content;       /* raw body: de-chunked, still content-encoded */
    double timestamp_start;
    double timestamp_end;
} flow_response;

typedef struct flow_error {
    char *msg;
    double timestamp;
} flow_error;

/* One side of the connection a flow travelled on.  For the client side
 * `address` is the peer (the client), `sockname` our listening address; for
 * the server side `address` is the server, `peername` its resolved IP. */
typedef struct flow_conn {
    char *address_host;     /* NULL when not connected */
    uint16_t address_port;
    char *peer_host;        /* server side: resolved IP actually connected to */
    uint16_t peer_port;
    char *sni;
    char *alpn;
    char *tls_version;      /* "TLSv1.3", NULL when plain */
    char *cipher;
    char *cert_subject;     /* server side: summary of the peer certificate */
    char *cert_issuer;
    bool tls;
    double timestamp_start;
    double timestamp_tcp_setup;
    double timestamp_tls_setup;
    double timestamp_end;
} flow_conn;

typedef struct flow_ws_message {
    bool from_client;
    bool is_text;         /* opcode TEXT (1) vs BINARY (2) */
    bool dropped;
    double timestamp;
    bytes content;
} flow_ws_message;

typedef enum flow_type {
    FLOW_HTTP = 0,
    FLOW_TCP = 1,         /* passthrough / raw tunnel, connection-level flow */
} flow_type;

typedef struct flow {
    char id[37];          /* uuid4, text form */
    flow_type type;
    flow_conn client;
    flow_conn server;
    flow_request *request;   /* NULL only for a TCP flow */
    flow_response *response; /* NULL until a response exists */
    flow_error *error;       /* NULL unless the flow failed */
    flow_ws_message *ws_msgs;  /* WebSocket messages, in order */
    size_t ws_n, ws_cap;
    bool websocket;            /* the flow upgraded to WebSocket */
    int ws_close_code;         /* 0 when not closed by a close frame */
    bool ws_closed_by_client;  /* who sent the first close frame (or hung up) */
    char *ws_close_reason;     /* the close frame's reason, NULL = "" */
    char *metadata;          /* JSON object text (scripts' flow.metadata), NULL = {} */
    char *marked;            /* mitmproxy >= 7: "" = not marked, else the marker (":default:") */
    char *comment;           /* NULL = "" */
    char *is_replay;         /* NULL, "request" or "response" */
    bool killed;
    bool intercepted;        /* held by flow:intercept() until flow:resume() */
    double timestamp_created;
} flow;

flow *flow_new(void);                /* fresh id, created timestamp; NULL on ENOMEM */
void flow_free(flow *f);
flow_request *flow_request_new(void);
flow_response *flow_response_new(void);
void flow_request_free(flow_request *r);
void flow_response_free(flow_response *r);
void flow_conn_clear(flow_conn *c);
int flow_set_error(flow *f, const char *msg); /* replaces any earlier error */
flow_ws_message *flow_ws_add(flow *f, bool from_client, bool is_text,
                             const void *data, size_t n);

/* Replace *dst with a copy of src (NULL allowed); 0 or -1 on ENOMEM. */
int flow_strset(char **dst, const char *src);
int flow_strnset(char **dst, const char *src, size_t n);

/* The request's URL as mitmproxy prints it: scheme://host[:port]path, with
 * the port left out when it is the scheme's default.  Caller frees. */
char *flow_request_url(const flow_request *r);
/* Host as written in a URL: IPv6 literals bracketed.  Writes into buf. */
const char *flow_host_for_url(const char *host, char *buf, size_t bufsz);
/* host[:port] as in a Host header or :authority: IPv6 literals bracketed,
 * the port left out when it is 0 or the default (443 for scheme "https",
 * 80 otherwise).  Writes into buf, which it returns. */
const char *flow_authority(const char *scheme, const char *host, unsigned port, char *buf, size_t bufsz);
/* Parse an authority ("host:port", "[v6]:port" or "host", n bytes) into its
 * host (unbracketed, lower-cased, owned by *host) and port (dflt when it
 * has none; 0 only if dflt is 0).  -1 when it is not one. */
int flow_parse_authority(const char *a, size_t n, uint16_t dflt, char **host, uint16_t *port);
/* The client side of a connection as each of its flows records it:
 * address, TLS details, timestamps (d's strings replaced).  -1 on ENOMEM. */
int flow_conn_copy(flow_conn *d, const flow_conn *s);

/* ---- limits on flows read from files ------------------------------------ */

/* A flow read from a file (native dump, mitmproxy flow file, HAR) is held
 * to the limits live traffic is held to, checked as it is decoded, so a
 * small (compressed, or simply dense) file cannot cost gigabytes.  The
 * defaults are the defaults of the options of the same names. */
#define FLOW_DEFAULT_MAX_HEADERS 256
#define FLOW_DEFAULT_MAX_HEADER_SIZE ((uint64_t)64 * 1024)
#define FLOW_DEFAULT_BODY_SIZE_LIMIT ((uint64_t)256 << 20)
/* Live WebSocket flows keep every message; a file's flow keeps at most
 * this many (each costs about 64 bytes even when empty). */
#define FLOW_DEFAULT_MAX_MESSAGES 1000000

typedef struct flow_limits {
    size_t max_headers;         /* fields in one header (or trailer) block */
    uint64_t max_header_size;   /* bytes of one block: "name: value\r\n" each */
    uint64_t max_body;          /* one body or message; 0 = no limit */
    size_t max_messages;        /* WebSocket/TCP messages in one flow */
} flow_limits;

extern const flow_limits flow_limits_default;

/* Room for one more field (nlen + vlen bytes) in h?  *size is the size of
 * h's fields so far (0 for an empty block), kept by the caller so a check
 * costs O(1); it grows on success.  0, or -1 with a line naming the limit
 * ("more than 256 header fields (max_headers)"). */
int flow_limits_hdr(const flow_limits *lim, const hdrs *h, uint64_t *size, size_t nlen,
                    size_t vlen, char *err, size_t errsz);
/* A body or message of n bytes, or a flow's (n+1)th message. */
int flow_limits_body(const flow_limits *lim, uint64_t n, char *err, size_t errsz);
int flow_limits_message(const flow_limits *lim, const flow *f, char *err, size_t errsz);
/* All of a decoded flow: "response: a body of N bytes, more than ...". */
int flow_limits_check(const flow_limits *lim, const flow *f, char *err, size_t errsz);

/* Wall-clock time in seconds since the epoch, microsecond resolution. */
double flow_now(void);

#endif
