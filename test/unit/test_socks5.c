/* Unit tests for the SOCKS5 parser and replies, and the client address
 * classes behind block_global / block_private. */
#include "t.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>

#include "block.h"
#include "socks5.h"

#define U8(s) ((const uint8_t *)(s))

static void greeting(void)
{
    int rep;
    char why[200];
    T_CHECK(socks5_parse_greeting(U8(""), 0, false, &rep, why, sizeof why) == 0);
    T_CHECK(socks5_parse_greeting(U8("\x05"), 1, false, &rep, why, sizeof why) == 0);
    T_CHECK(socks5_parse_greeting(U8("\x05\x02\x00"), 3, false, &rep, why, sizeof why) == 0); /* one method short */
    T_CHECK(socks5_parse_greeting(U8("\x05\x01\x00"), 3, false, &rep, why, sizeof why) == 3 && rep == 0);
    T_CHECK(socks5_parse_greeting(U8("\x05\x02\x02\x00\xAA"), 5, false, &rep, why, sizeof why) == 4);
    T_CHECK(socks5_parse_greeting(U8("\x05\x01\x02"), 3, false, &rep, why, sizeof why) == -1 && rep == 0xFF);
    T_CHECK(socks5_parse_greeting(U8("\x05\x00"), 2, false, &rep, why, sizeof why) == -1 && rep == 0xFF);
    T_CHECK(socks5_parse_greeting(U8("\x04\x01"), 2, false, &rep, why, sizeof why) == -1 && rep == -1);
    T_CHECK(strstr(why, "0x04") != NULL);
    T_CHECK(socks5_parse_greeting(U8("GET"), 3, false, &rep, why, sizeof why) == -1 && rep == -1);
    T_CHECK(strstr(why, "HTTP") != NULL);
    /* --proxyauth: only username/password will do */
    T_CHECK(socks5_parse_greeting(U8("\x05\x02\x00\x02"), 4, true, &rep, why, sizeof why) == 4 && rep == 2);
    T_CHECK(socks5_parse_greeting(U8("\x05\x01\x00"), 3, true, &rep, why, sizeof why) == -1 && rep == 0xFF);
    T_CHECK(strstr(why, "username/password") != NULL);
}

static void userpass(void)
{
    const char *u, *p;
    size_t ul, pl;
    char why[200];
    const uint8_t m[] = {1, 3, 'b', 'o', 'b', 4, 's', 'e', 'c', 'r', 0xAA};
    for (size_t n = 0; n < 10; n++)
        T_CHECK(socks5_parse_userpass(m, n, &u, &ul, &p, &pl, why, sizeof why) == 0);
    T_CHECK(socks5_parse_userpass(m, sizeof m, &u, &ul, &p, &pl, why, sizeof why) == 10);
    T_CHECK(ul == 3 && memcmp(u, "bob", 3) == 0 && pl == 4 && memcmp(p, "secr", 4) == 0);
    const uint8_t empty[] = {1, 0, 0};
    T_CHECK(socks5_parse_userpass(empty, sizeof empty, &u, &ul, &p, &pl, why, sizeof why) == 3 && ul == 0 && pl == 0);
    const uint8_t v5[] = {5, 1, 'a', 1, 'b'};
    T_CHECK(socks5_parse_userpass(v5, sizeof v5, &u, &ul, &p, &pl, why, sizeof why) == -1);
    T_CHECK(strstr(why, "0x05") != NULL);
}

static void request_addresses(void)
{
    socks5_target t;
    int rep;
    char why[200];
    const uint8_t v4[] = {5, 1, 0, 1, 127, 0, 0, 1, 0x1f, 0x90};
    for (size_t n = 0; n < sizeof v4; n++)
        T_CHECK(socks5_parse_request(v4, n, &t, &rep, why, sizeof why) == 0);
    T_CHECK(socks5_parse_request(v4, sizeof v4, &t, &rep, why, sizeof why) == 10);
    T_STREQ(t.host, "127.0.0.1");
    T_CHECK(t.port == 8080 && t.atyp == 1);

    uint8_t v6[22] = {5, 1, 0, 4};
    v6[19] = 1;
    v6[20] = 0x01;
    v6[21] = 0xbb;
    T_CHECK(socks5_parse_request(v6, 21, &t, &rep, why, sizeof why) == 0);
    T_CHECK(socks5_parse_request(v6, 22, &t, &rep, why, sizeof why) == 22);
    T_STREQ(t.host, "::1");
    T_CHECK(t.port == 443);

    const uint8_t dn[] = "\x05\x01\x00\x03\x0b" "Example.COM" "\x00\x50" "extra";
    T_CHECK(socks5_parse_request(dn, 17, &t, &rep, why, sizeof why) == 0);
    T_CHECK(socks5_parse_request(dn, sizeof dn - 1, &t, &rep, why, sizeof why) == 18);
    T_STREQ(t.host, "example.com");
    T_CHECK(t.port == 80 && t.atyp == 3);

    /* the longest name: 255 bytes */
    uint8_t big[4 + 1 + 255 + 2] = {5, 1, 0, 3, 255};
    memset(big + 5, 'a', 255);
    big[sizeof big - 1] = 1;
    T_CHECK(socks5_parse_request(big, sizeof big, &t, &rep, why, sizeof why) == (int)sizeof big);
    T_CHECK(strlen(t.host) == 255);
}

static void request_errors(void)
{
    socks5_target t;
    int rep;
    char why[200];
    T_CHECK(socks5_parse_request(U8("\x05\x02\x00\x01"), 4, &t, &rep, why, sizeof why) == -1);
    T_CHECK(rep == SOCKS5_REP_CMD_UNSUPPORTED);
    T_CHECK(socks5_parse_request(U8("\x05\x03"), 2, &t, &rep, why, sizeof why) == -1);
    T_CHECK(rep == SOCKS5_REP_CMD_UNSUPPORTED);
    T_CHECK(socks5_parse_request(U8("\x05\x01\x00\x02"), 4, &t, &rep, why, sizeof why) == -1);
    T_CHECK(rep == SOCKS5_REP_ATYP_UNSUPPORTED);
    T_CHECK(socks5_parse_request(U8("\x05\x01\x01\x01"), 4, &t, &rep, why, sizeof why) == -1);
    T_CHECK(rep == SOCKS5_REP_FAILURE);
    T_CHECK(socks5_parse_request(U8("\x04\x01"), 2, &t, &rep, why, sizeof why) == -1);
    T_CHECK(socks5_parse_request(U8("\x05\x01\x00\x03\x00\x00\x50"), 7, &t, &rep, why, sizeof why) == -1);
    T_CHECK(rep == SOCKS5_REP_HOST_UNREACHABLE && strstr(why, "empty"));
    T_CHECK(socks5_parse_request(U8("\x05\x01\x00\x03\x03" "a\0b" "\x00\x50"), 10, &t, &rep, why, sizeof why) == -1);
    T_CHECK(socks5_parse_request(U8("\x05\x01\x00\x03\x03" "a b" "\x00\x50"), 10, &t, &rep, why, sizeof why) == -1);
    T_CHECK(socks5_parse_request(U8("\x05\x01\x00\x01\x7f\x00\x00\x01\x00\x00"), 10, &t, &rep, why, sizeof why) == -1);
    T_CHECK(strstr(why, "port 0") != NULL);
}

static void replies(void)
{
    uint8_t r[10];
    socks5_reply(SOCKS5_REP_CONN_REFUSED, r);
    T_CHECK(memcmp(r, "\x05\x05\x00\x01\x00\x00\x00\x00\x00\x00", 10) == 0);
    T_CHECK(socks5_rep_for_errno(ECONNREFUSED) == SOCKS5_REP_CONN_REFUSED);
    T_CHECK(socks5_rep_for_errno(ENETUNREACH) == SOCKS5_REP_NET_UNREACHABLE);
    T_CHECK(socks5_rep_for_errno(EHOSTUNREACH) == SOCKS5_REP_HOST_UNREACHABLE);
    T_CHECK(socks5_rep_for_errno(ETIMEDOUT) == SOCKS5_REP_TTL_EXPIRED);
    T_STREQ(socks5_rep_name(SOCKS5_REP_CMD_UNSUPPORTED), "command not supported");
}

static enum block_class cls(const char *ip)
{
    struct sockaddr_storage ss = {0};
    if (strchr(ip, ':')) {
        struct sockaddr_in6 *a = (struct sockaddr_in6 *)&ss;
        a->sin6_family = AF_INET6;
        inet_pton(AF_INET6, ip, &a->sin6_addr);
    } else {
        struct sockaddr_in *a = (struct sockaddr_in *)&ss;
        a->sin_family = AF_INET;
        inet_pton(AF_INET, ip, &a->sin_addr);
    }
    return block_classify((struct sockaddr *)&ss);
}

/* the expectations are Python's ipaddress is_loopback / is_private / is_global */
static void block_classes(void)
{
    T_CHECK(cls("127.0.0.1") == BLOCK_LOOPBACK);
    T_CHECK(cls("127.9.9.9") == BLOCK_LOOPBACK);
    T_CHECK(cls("::1") == BLOCK_LOOPBACK);
    T_CHECK(cls("::ffff:127.0.0.1") == BLOCK_LOOPBACK);
    T_CHECK(cls("10.1.2.3") == BLOCK_PRIVATE);
    T_CHECK(cls("172.16.0.1") == BLOCK_PRIVATE);
    T_CHECK(cls("172.31.255.255") == BLOCK_PRIVATE);
    T_CHECK(cls("172.32.0.1") == BLOCK_GLOBAL);
    T_CHECK(cls("192.168.1.1") == BLOCK_PRIVATE);
    T_CHECK(cls("169.254.1.1") == BLOCK_PRIVATE);
    T_CHECK(cls("192.0.2.2") == BLOCK_PRIVATE);
    T_CHECK(cls("192.0.0.9") == BLOCK_GLOBAL);     /* an exception in the registry */
    T_CHECK(cls("100.64.0.1") == BLOCK_OTHER);     /* shared space: neither */
    T_CHECK(cls("8.8.8.8") == BLOCK_GLOBAL);
    T_CHECK(cls("::ffff:8.8.8.8") == BLOCK_GLOBAL);
    T_CHECK(cls("::ffff:10.0.0.1") == BLOCK_PRIVATE);
    T_CHECK(cls("fd00::2") == BLOCK_PRIVATE);
    T_CHECK(cls("fe80::1") == BLOCK_PRIVATE);
    T_CHECK(cls("2001:db8::1") == BLOCK_PRIVATE);
    T_CHECK(cls("2001:4860:4860::8888") == BLOCK_GLOBAL);
    T_CHECK(cls("2001:20::1") == BLOCK_GLOBAL);    /* exception inside 2001::/23 */
    T_CHECK(cls("2a00:1450::1") == BLOCK_GLOBAL);

    struct sockaddr_in a = {.sin_family = AF_INET};
    inet_pton(AF_INET, "8.8.8.8", &a.sin_addr);
    T_STREQ(block_client((struct sockaddr *)&a, true, false), "block_global");
    T_CHECK(block_client((struct sockaddr *)&a, false, true) == NULL);
    inet_pton(AF_INET, "10.0.0.1", &a.sin_addr);
    T_CHECK(block_client((struct sockaddr *)&a, true, false) == NULL);
    T_STREQ(block_client((struct sockaddr *)&a, false, true), "block_private");
    inet_pton(AF_INET, "127.0.0.1", &a.sin_addr);
    T_CHECK(block_client((struct sockaddr *)&a, true, true) == NULL);
}

int main(void)
{
    T_RUN(greeting);
    T_RUN(userpass);
    T_RUN(request_addresses);
    T_RUN(request_errors);
    T_RUN(replies);
    T_RUN(block_classes);
    T_DONE();
}
