/* dial.c — see dial.h. */
#include "dial.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <unistd.h>

#include <event2/bufferevent.h>
#include <event2/bufferevent_ssl.h>
#include <event2/dns.h>
#include <event2/event.h>
#include <event2/util.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/ssl.h>

#include "bevbulk.h"

struct dial {
    struct bufferevent *bev;
    struct event_base *base;
    SSL *ssl;                /* dial_want_tls: the handshake after connecting */
    STACK_OF(X509) **peer;   /* where the server's certificates go */
    bool in_tls;
    struct event *fail_ev;   /* reports a failure found before connecting */
    dial_cb cb;
    void *arg;
    char host[256];
    uint16_t port;
    int timeout_s;
    int err;
    char msg[512];
};

static void dial_free(dial *d)
{
    if (d->bev)
        bufferevent_free(d->bev);
    if (!d->in_tls)
        SSL_free(d->ssl); /* else the TLS bufferevent owned it */
    if (d->fail_ev)
        event_free(d->fail_ev);
    free(d);
}

static void dial_done(dial *d, int err)
{
    dial_cb cb = d->cb;
    void *arg = d->arg;
    char msg[sizeof d->msg];
    snprintf(msg, sizeof msg, "%s", d->msg);
    dial_free(d);
    cb(arg, err, msg);
}

static void fail_cb(evutil_socket_t fd, short what, void *arg)
{
    dial *d = arg;
    dial_done(d, d->err);
}

/* The TCP connection succeeded already: whatever the handshake does, the
 * target is reachable; only a verified certificate is handed over. */
static void tls_event_cb(struct bufferevent *bev, short what, void *arg)
{
    dial *d = arg;
    if ((what & BEV_EVENT_CONNECTED) && SSL_get_verify_result(d->ssl) == X509_V_OK)
        *d->peer = X509_chain_up_ref(SSL_get_peer_cert_chain(d->ssl));
    else
        ERR_clear_error();
    d->msg[0] = '\0';
    dial_done(d, 0);
}

static bool start_tls(dial *d)
{
    struct bufferevent *tb = bufferevent_openssl_filter_new(d->base, d->bev, d->ssl, BUFFEREVENT_SSL_CONNECTING,
                                                            BEV_OPT_CLOSE_ON_FREE | BEV_OPT_DEFER_CALLBACKS);
    if (!tb)
        return false;
    d->in_tls = true;
    d->bev = tb;
    bufferevent_setcb(tb, NULL, NULL, tls_event_cb, d);
    struct timeval tv = {d->timeout_s, 0};
    bufferevent_set_timeouts(tb, &tv, &tv);
    bufferevent_enable(tb, EV_READ | EV_WRITE);
    return true;
}

static void event_cb(struct bufferevent *bev, short what, void *arg)
{
    dial *d = arg;
    if (what & BEV_EVENT_CONNECTED) {
        if (d->ssl && start_tls(d))
            return;
        d->msg[0] = '\0';
        dial_done(d, 0);
        return;
    }
    int dns_err = bufferevent_socket_get_dns_error(bev);
    if (dns_err) {
        snprintf(d->msg, sizeof d->msg, "Cannot connect to %s:%u: DNS resolution failed: %s", d->host, d->port,
                 evutil_gai_strerror(dns_err));
        dial_done(d, EHOSTUNREACH);
        return;
    }
    if (what & BEV_EVENT_TIMEOUT) {
        snprintf(d->msg, sizeof d->msg, "Cannot connect to %s:%u: timed out after %ds", d->host, d->port,
                 d->timeout_s);
        dial_done(d, ETIMEDOUT);
        return;
    }
    int e = EVUTIL_SOCKET_ERROR();
    if (!e)
        e = ECONNRESET;
    snprintf(d->msg, sizeof d->msg, "Cannot connect to %s:%u: %s", d->host, d->port,
             evutil_socket_error_to_string(e));
    dial_done(d, e);
}

/* Report a failure from the loop, never from inside dial_start: the
 * caller is not ready for its callback yet. */
static dial *fail_later(dial *d, struct event_base *base, int err)
{
    d->err = err;
    d->fail_ev = event_new(base, -1, 0, fail_cb, d);
    if (!d->fail_ev) {
        dial_free(d);
        return NULL;
    }
    event_active(d->fail_ev, EV_TIMEOUT, 0);
    return d;
}

dial *dial_start(struct event_base *base, struct evdns_base *dns, const char *host, uint16_t port,
                 const char *source, int timeout_s, dial_cb cb, void *arg)
{
    dial *d = calloc(1, sizeof *d);
    if (!d)
        return NULL;
    d->cb = cb;
    d->arg = arg;
    d->base = base;
    d->port = port;
    d->timeout_s = timeout_s ? timeout_s : 10;
    snprintf(d->host, sizeof d->host, "%s", host);
    const char *conn_host = host;
    size_t hl = strlen(host);
    if (hl > 10 && strcasecmp(host + hl - 10, ".localhost") == 0)
        conn_host = "127.0.0.1";
    if (hl >= 8 && strcasecmp(host + hl - 8, ".invalid") == 0) {
        snprintf(d->msg, sizeof d->msg, "Cannot connect to %s:%u: DNS resolution failed: name does not exist",
                 host, port);
        return fail_later(d, base, EHOSTUNREACH);
    }
    d->bev = bufferevent_socket_new(base, -1, BEV_OPT_CLOSE_ON_FREE | BEV_OPT_DEFER_CALLBACKS);
    if (!d->bev) {
        free(d);
        return NULL;
    }
    (void)bevbulk_attach(d->bev);
    bufferevent_setcb(d->bev, NULL, NULL, event_cb, d);
    struct timeval tv = {d->timeout_s, 0};
    bufferevent_set_timeouts(d->bev, &tv, &tv);
    bufferevent_enable(d->bev, EV_READ | EV_WRITE);
    int family = AF_UNSPEC;
    char why[200];
    if (source && dial_bind_source(d->bev, source, &family, why, sizeof why) < 0) {
        bufferevent_free(d->bev);
        d->bev = NULL;
        snprintf(d->msg, sizeof d->msg, "Cannot connect to %s:%u: %s", host, port, why);
        return fail_later(d, base, EADDRNOTAVAIL);
    }
    if (bufferevent_socket_connect_hostname(d->bev, dns, family, conn_host, port) < 0) {
        int e = EVUTIL_SOCKET_ERROR();
        bufferevent_free(d->bev); /* no callback of it may run now */
        d->bev = NULL;
        snprintf(d->msg, sizeof d->msg, "Cannot connect to %s:%u: %s", host, port,
                 e ? evutil_socket_error_to_string(e) : "cannot start the connection");
        return fail_later(d, base, e ? e : EHOSTUNREACH);
    }
    return d;
}

void dial_want_tls(dial *d, SSL *ssl, STACK_OF(X509) **peer)
{
    SSL_free(d->ssl);
    d->ssl = ssl;
    d->peer = peer;
    SSL_set_connect_state(ssl);
}

void dial_cancel(dial *d)
{
    if (d)
        dial_free(d);
}

char *dial_basic_auth(const char *userpass)
{
    size_t n = strlen(userpass);
    size_t enc = 4 * ((n + 2) / 3);
    char *out = malloc(6 + enc + 1);
    if (!out)
        return NULL;
    memcpy(out, "Basic ", 6);
    EVP_EncodeBlock((unsigned char *)out + 6, (const unsigned char *)userpass, (int)n);
    return out;
}

int dial_source_parse(const char *addr, struct sockaddr_storage *ss, socklen_t *len)
{
    char buf[64];
    size_t n = strlen(addr);
    if (n >= 2 && addr[0] == '[' && addr[n - 1] == ']' && n - 2 < sizeof buf) {
        memcpy(buf, addr + 1, n - 2);
        buf[n - 2] = '\0';
        addr = buf;
    }
    memset(ss, 0, sizeof *ss);
    struct sockaddr_in *v4 = (struct sockaddr_in *)ss;
    struct sockaddr_in6 *v6 = (struct sockaddr_in6 *)ss;
    if (inet_pton(AF_INET, addr, &v4->sin_addr) == 1) {
        v4->sin_family = AF_INET;
        *len = sizeof *v4;
        return 0;
    }
    if (inet_pton(AF_INET6, addr, &v6->sin6_addr) == 1) {
        v6->sin6_family = AF_INET6;
        *len = sizeof *v6;
        return 0;
    }
    return -1;
}

int dial_bind_source(struct bufferevent *bev, const char *addr, int *family, char *err, size_t errsz)
{
    struct sockaddr_storage ss;
    socklen_t len;
    if (dial_source_parse(addr, &ss, &len) < 0) {
        snprintf(err, errsz, "invalid connect_addr '%s'", addr);
        return -1;
    }
    evutil_socket_t fd = socket(ss.ss_family, SOCK_STREAM, 0);
    if (fd < 0 || evutil_make_socket_nonblocking(fd) < 0 || evutil_make_socket_closeonexec(fd) < 0 ||
        bind(fd, (struct sockaddr *)&ss, len) < 0 || bufferevent_setfd(bev, fd) < 0) {
        snprintf(err, errsz, "cannot connect from connect_addr %s: %s", addr, strerror(errno));
        if (fd >= 0)
            close(fd);
        return -1;
    }
    *family = ss.ss_family;
    return 0;
}
