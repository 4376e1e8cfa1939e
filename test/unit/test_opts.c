/* Unit tests for options: --set, sizes, URLs, modes, the command line. */
#include "opts.h"
#include "t.h"

static void sizes(void)
{
    uint64_t v;
    T_CHECK(opts_parse_size("123", &v) == 0 && v == 123);
    T_CHECK(opts_parse_size("10k", &v) == 0 && v == 10240);
    T_CHECK(opts_parse_size("3m", &v) == 0 && v == 3u << 20);
    T_CHECK(opts_parse_size("1g", &v) == 0 && v == 1u << 30);
    T_CHECK(opts_parse_size("2kb", &v) == 0 && v == 2048);
    T_CHECK(opts_parse_size("", &v) < 0);
    T_CHECK(opts_parse_size("-1", &v) < 0);
    T_CHECK(opts_parse_size("12x", &v) < 0);
    T_CHECK(opts_parse_size("99999999999999999999", &v) < 0);
}

static void urls(void)
{
    opts_url u;
    char err[256];
    T_CHECK(opts_parse_url("https://example.com", &u, err, sizeof err) == 0);
    T_STREQ(u.scheme, "https");
    T_STREQ(u.host, "example.com");
    T_CHECK(u.port == 443);
    opts_url_free(&u);
    T_CHECK(opts_parse_url("http://[::1]:8080/", &u, err, sizeof err) == 0);
    T_STREQ(u.host, "::1");
    T_CHECK(u.port == 8080);
    opts_url_free(&u);
    T_CHECK(opts_parse_url("ftp://x", &u, err, sizeof err) < 0);
    T_CHECK(opts_parse_url("http://x:0", &u, err, sizeof err) < 0);
    T_CHECK(opts_parse_url("http://x:99999", &u, err, sizeof err) < 0);
    T_CHECK(opts_parse_url("http://x/path", &u, err, sizeof err) < 0); /* refused, not dropped */
    T_CHECK(strstr(err, "http://x/path") != NULL);
}

static void set_values(void)
{
    opts o;
    char err[256];
    opts_defaults(&o);
    T_STREQ(o.listen_host, "127.0.0.1");        /* safe default */
    T_CHECK(o.listen_port == 8080);
    T_CHECK(opts_set(&o, "listen_port=9000", err, sizeof err) == 0 && o.listen_port == 9000);
    T_CHECK(opts_set(&o, "ssl_insecure", err, sizeof err) == 0 && o.ssl_insecure);
    T_CHECK(opts_set(&o, "body_size_limit=1m", err, sizeof err) == 0 && o.body_size_limit == 1u << 20);
    T_CHECK(opts_set(&o, "mode=reverse:http://127.0.0.1:81", err, sizeof err) == 0);
    T_CHECK(o.mode == MODE_REVERSE && o.mode_url.port == 81);
    T_CHECK(opts_set(&o, "scripts=a.lua", err, sizeof err) == 0);
    T_CHECK(opts_set(&o, "scripts=b.lua", err, sizeof err) == 0);
    T_CHECK(o.nscripts == 2);
    T_STREQ(o.scripts[1], "b.lua");
    T_CHECK(opts_set(&o, "nosuch=1", err, sizeof err) < 0);
    T_CHECK(strstr(err, "nosuch") != NULL);
    T_CHECK(opts_set(&o, "read_timeout=soon", err, sizeof err) < 0);
    T_CHECK(strstr(err, "soon") != NULL);
    T_CHECK(opts_set(&o, "mode=sideways", err, sizeof err) < 0);
    T_CHECK(o.mode == MODE_REVERSE); /* a failed set changes nothing */
    opts_free(&o);
}

static void command_line(void)
{
    opts o;
    opts_defaults(&o);
    char *argv[] = {"mitmlua", "-p", "0", "-s", "x.lua", "-q", "--set", "workers=2", "-k", "~m", "GET", NULL};
    T_CHECK(opts_parse(&o, 11, argv) == 0);
    T_CHECK(o.listen_port == 0 && o.nscripts == 1 && o.flow_detail == 0 && o.workers == 2 && o.ssl_insecure);
    T_STREQ(o.filter_expr, "~m GET");
    T_CHECK(o.confdir != NULL);
    opts_free(&o);
    opts_defaults(&o);
    char *bad[] = {"mitmlua", "--flow-detail", "9", NULL};
    T_CHECK(opts_parse(&o, 3, bad) == 2);
    opts_free(&o);
}

int main(void)
{
    T_RUN(sizes);
    T_RUN(urls);
    T_RUN(set_values);
    T_RUN(command_line);
    T_DONE();
}
