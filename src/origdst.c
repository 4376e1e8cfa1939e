/* origdst.c — see origdst.h.  As in mitmproxy, the IPv4 call is chosen by
 * the local address (an IPv4-mapped address on a v6 socket is IPv4 for
 * netfilter), the IPv6 one otherwise. */
#include "origdst.h"

#include <arpa/inet.h>
#include <errno.h>
#include <stdbool.h>
#include <netinet/in.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>

#ifdef __linux__
#include <linux/netfilter_ipv4.h>
#ifndef IP6T_SO_ORIGINAL_DST
#define IP6T_SO_ORIGINAL_DST 80
#endif
#endif

static int sa_to_text(const struct sockaddr_storage *ss, char *host, size_t hostsz, uint16_t *port)
{
    if (ss->ss_family == AF_INET) {
        const struct sockaddr_in *a = (const struct sockaddr_in *)ss;
        *port = ntohs(a->sin_port);
        return inet_ntop(AF_INET, &a->sin_addr, host, (socklen_t)hostsz) ? 0 : -1;
    }
    if (ss->ss_family == AF_INET6) {
        const struct sockaddr_in6 *a = (const struct sockaddr_in6 *)ss;
        *port = ntohs(a->sin6_port);
        return inet_ntop(AF_INET6, &a->sin6_addr, host, (socklen_t)hostsz) ? 0 : -1;
    }
    return -1;
}

int origdst_get(int fd, char *host, size_t hostsz, uint16_t *port, char *err, size_t errsz)
{
#ifdef __linux__
    struct sockaddr_storage local, dst;
    socklen_t ll = sizeof local, dl = sizeof dst;
    memset(&dst, 0, sizeof dst);
    if (getsockname(fd, (struct sockaddr *)&local, &ll) < 0) {
        snprintf(err, errsz, "getsockname: %s", strerror(errno));
        return -1;
    }
    bool v4 = local.ss_family == AF_INET ||
              (local.ss_family == AF_INET6 &&
               IN6_IS_ADDR_V4MAPPED(&((struct sockaddr_in6 *)&local)->sin6_addr));
    int rc = v4 ? getsockopt(fd, SOL_IP, SO_ORIGINAL_DST, &dst, &dl)
                : getsockopt(fd, SOL_IPV6, IP6T_SO_ORIGINAL_DST, &dst, &dl);
    if (rc < 0) {
        snprintf(err, errsz, "no original destination (%s): is the connection redirected by netfilter?",
                 strerror(errno));
        return -1;
    }
    char lh[64];
    uint16_t lp;
    if (sa_to_text(&dst, host, hostsz, port) < 0 || sa_to_text(&local, lh, sizeof lh, &lp) < 0) {
        snprintf(err, errsz, "original destination of an unknown address family");
        return -1;
    }
    const char *lhs = strncmp(lh, "::ffff:", 7) == 0 && strchr(lh, '.') ? lh + 7 : lh;
    if (lp == *port && strcmp(lhs, host) == 0) {
        snprintf(err, errsz, "connection to %s port %u was not redirected (it came straight to the proxy)", host, *port);
        return -1;
    }
    return 0;
#else
    (void)fd; (void)host; (void)hostsz; (void)port;
    snprintf(err, errsz, "transparent mode needs Linux netfilter");
    return -1;
#endif
}
