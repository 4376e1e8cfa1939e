/* Unit tests for the console printer: mitmdump 8's exact line formats. */
#include "printer.h"
#include "t.h"

static void sizes(void)
{
    char b[32];
    printer_pretty_size(0, b, sizeof b);
    T_STREQ(b, "0b");
    printer_pretty_size(1023, b, sizeof b);
    T_STREQ(b, "1023b");
    printer_pretty_size(1493, b, sizeof b);
    T_STREQ(b, "1.5k");
    printer_pretty_size(8 << 20, b, sizeof b);
    T_STREQ(b, "8.0m");
    printer_pretty_size(200 * 1024, b, sizeof b);
    T_STREQ(b, "200k");
}

static void addresses(void)
{
    char b[64];
    printer_format_address("127.0.0.1", 5000, b, sizeof b);
    T_STREQ(b, "127.0.0.1:5000");
    printer_format_address("::1", 80, b, sizeof b);
    T_STREQ(b, "[::1]:80");
    printer_format_address("::ffff:10.0.0.1", 80, b, sizeof b);
    T_STREQ(b, "10.0.0.1:80");
}

static flow *sample(void)
{
    flow *f = flow_new();
    f->request = flow_request_new();
    flow_strset(&f->client.address_host, "127.0.0.1");
    f->client.address_port = 47778;
    flow_strset(&f->request->method, "GET");
    flow_strset(&f->request->scheme, "http");
    flow_strset(&f->request->host, "127.0.0.1");
    f->request->port = 18081;
    flow_strset(&f->request->path, "/");
    flow_strset(&f->request->http_version, "HTTP/1.1");
    hdrs_add(&f->request->headers, "Host", 4, "127.0.0.1:18081", 15);
    f->response = flow_response_new();
    f->response->status_code = 200;
    flow_strset(&f->response->reason, "OK");
    flow_strset(&f->response->http_version, "HTTP/1.0");
    bytes_set(&f->response->content, "hello\nworld\n", 12);
    return f;
}

static char *render(int detail, const flow *f)
{
    FILE *fp = tmpfile();
    printer *p = printer_new(fp, detail, false);
    printer_flow(p, f);
    printer_free(p);
    long n = ftell(fp);
    rewind(fp);
    char *s = calloc(1, (size_t)n + 1);
    if (fread(s, 1, (size_t)n, fp) != (size_t)n)
        s[0] = '\0';
    fclose(fp);
    return s;
}

static void detail_levels(void)
{
    flow *f = sample();
    char *s = render(1, f);
    /* as mitmdump 8.1.1 printed for the same exchange */
    T_STREQ(s, "127.0.0.1:47778: GET http://127.0.0.1:18081/ HTTP/1.1\n"
               "     << HTTP/1.0 200 OK 12b\n");
    free(s);
    s = render(3, f);
    T_CHECK(strstr(s, "    Host: 127.0.0.1:18081\n") != NULL);
    T_CHECK(strstr(s, "    hello\n    world\n") != NULL);
    free(s);
    s = render(0, f);
    T_STREQ(s, "");
    free(s);
    flow_response_free(f->response);
    f->response = NULL;
    flow_set_error(f, "Connect call failed");
    s = render(1, f);
    T_STREQ(s, "127.0.0.1:47778: GET http://127.0.0.1:18081/\n << Connect call failed\n");
    free(s);
    flow_free(f);
}

static void websocket_lines(void)
{
    flow *f = sample();
    f->response->status_code = 101;
    flow_strset(&f->response->reason, "Switching Protocols");
    bytes_reset(&f->response->content);
    flow_strset(&f->response->http_version, "HTTP/1.1");
    flow_strset(&f->request->path, "/chat");
    flow_strset(&f->server.address_host, "127.0.0.1");
    f->server.address_port = 18081;
    f->websocket = true;
    flow_ws_add(f, true, true, "hi", 2);
    flow_ws_add(f, false, false, "\x00\x01", 2);
    f->ws_close_code = 1000;
    f->ws_closed_by_client = true;
    char *out = render(1, f);
    T_STREQ(out, "127.0.0.1:47778: GET http://127.0.0.1:18081/chat\n"
                 "              << 101 Switching Protocols 0b\n"
                 "127.0.0.1:47778 -> WebSocket text message -> 127.0.0.1:18081/chat\n"
                 "127.0.0.1:47778 <- WebSocket binary message <- 127.0.0.1:18081/chat\n"
                 "WebSocket connection closed by client: 1000 \n");
    free(out);
    f->ws_close_code = 4001;
    flow_strset(&f->ws_close_reason, "bye");
    out = render(1, f);
    T_CHECK(out && strstr(out, "\nError in WebSocket connection to 127.0.0.1:18081: WebSocket Error: "
                               "UNKNOWN_ERROR=4001 (reason: bye)\n"));
    free(out);
    f->ws_close_code = 1009;
    out = render(3, f);
    T_CHECK(out && strstr(out, "WebSocket Error: MESSAGE_TOO_BIG (reason: bye)\n"));
    T_CHECK(out && strstr(out, "-> 127.0.0.1:18081/chat\n\n    hi\n"));
    free(out);
    out = printer_flow_json(f);
    T_CHECK(out && strstr(out, "\"websocket\":{\"messages\":2,\"bytes\":4,\"close_code\":1009,"
                               "\"closed_by_client\":true}"));
    free(out);
    flow_free(f);
}

int main(void)
{
    T_RUN(sizes);
    T_RUN(addresses);
    T_RUN(detail_levels);
    T_RUN(websocket_lines);
    T_DONE();
}
