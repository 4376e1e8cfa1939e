/* Unit tests for the content views: what the differential test cannot
 * compare with mitmdump 8.1.1 (multipart forms, gRPC message numbers, the
 * line limit, fallbacks), and Python's float and repr formats. */
#include <string.h>

#include "contentview.h"
#include "contentview_int.h"
#include "t.h"

static const char *render(const char *view, const char *ct, const char *query, const char *body, size_t n,
                          size_t max_lines, cv_text *t)
{
    *t = (cv_text){.max_lines = max_lines};
    return contentview_render(view, ct, query, body, n, t);
}

static void multipart_parts(void)
{
    static const char body[] = "--XX\r\nContent-Disposition: form-data; name=\"f1\"\r\n\r\nv1\r\n"
                               "--XX\r\nContent-Disposition: form-data; name=\"upload\"; filename=\"a.txt\"\r\n"
                               "Content-Type: text/plain\r\n\r\nhello\r\nworld\r\n--XX--\r\n";
    cv_text t;
    const char *title = render(NULL, "multipart/form-data; boundary=\"XX\"", NULL, body, sizeof body - 1, CV_ALL, &t);
    T_STREQ(title, "Multipart form");
    T_STREQ(t.p, "Form data:\nf1:     v1\nupload: helloworld\n");
    cv_text_free(&t);
    /* no boundary: raw, as mitmproxy's multipart view gives up */
    title = render(NULL, "multipart/form-data", NULL, body, sizeof body - 1, CV_ALL, &t);
    T_STREQ(title, "Raw");
    cv_text_free(&t);
}

static void grpc_numbers_messages(void)
{
    static const char body[] = "\x00\x00\x00\x00\x02\x08\x01\x00\x00\x00\x00\x02\x08\x02";
    cv_text t;
    T_STREQ(render(NULL, "application/grpc", NULL, body, sizeof body - 1, CV_ALL, &t), "gRPC");
    T_STREQ(t.p, "gRPC message 0 (compressed False)\n[uint32]    1  1  \n"
                 "gRPC message 1 (compressed False)\n[uint32]    1  2  \n");
    cv_text_free(&t);
    /* a length past the end: raw */
    T_STREQ(render(NULL, "application/grpc", NULL, "\x00\x00\x00\x00\x09\x08", 6, CV_ALL, &t), "Raw");
    cv_text_free(&t);
}

static void line_limit(void)
{
    char body[400];
    size_t n = 0;
    for (int i = 0; i < 50; i++)
        n += (size_t)snprintf(body + n, sizeof body - n, "%d\n", i);
    cv_text t;
    render(NULL, "text/plain", NULL, body, n, 10, &t);
    T_CHECK(t.lines == 10 && t.cut);
    T_CHECK(strncmp(t.p, "0\n1\n", 4) == 0 && strstr(t.p, "9\n") && !strstr(t.p, "10"));
    cv_text_free(&t);
    render("json", "text/plain", NULL, "[1,2,3]", 7, 3, &t);
    T_CHECK(t.lines == 3 && t.cut);
    T_STREQ(t.p, "[\n    1,\n    2,\n");
    cv_text_free(&t);
}

static void query_and_empty(void)
{
    cv_text t;
    T_STREQ(render(NULL, NULL, "q=a+b&flag&x=%41", "", 0, CV_ALL, &t), "Query");
    T_STREQ(t.p, "q:    a b\nflag: \nx:    A\n");
    cv_text_free(&t);
    T_STREQ(render("json", NULL, NULL, NULL, 0, CV_ALL, &t), "Raw");   /* no buffer: a forced view */
    cv_text_free(&t);
    T_STREQ(render(NULL, NULL, NULL, "", 0, CV_ALL, &t), "No content");
    T_CHECK(t.lines == 0);
    cv_text_free(&t);
}

static void python_formats(void)
{
    char b[64];
    pyfloat_repr(1e16, b, sizeof b);
    T_STREQ(b, "1e+16");
    pyfloat_repr(1e15, b, sizeof b);
    T_STREQ(b, "1000000000000000.0");
    pyfloat_repr(0.0001, b, sizeof b);
    T_STREQ(b, "0.0001");
    pyfloat_repr(1.5e-7, b, sizeof b);
    T_STREQ(b, "1.5e-07");
    pyfloat_repr(-0.0, b, sizeof b);
    T_STREQ(b, "-0.0");
    pyfloat_repr(0.1 + 0.2, b, sizeof b);
    T_STREQ(b, "0.30000000000000004");
    cv_text t = {.max_lines = CV_ALL};
    cv_repr_bytes(&t, "it's \"x\"\n\xff", 10);
    T_STREQ(t.p, "b'it\\'s \"x\"\\n\\xff'");
    cv_text_free(&t);
    t = (cv_text){.max_lines = CV_ALL};
    cv_repr_str(&t, "it's", 4);
    T_STREQ(t.p, "\"it's\"");
    cv_text_free(&t);
}

static void views_by_name(void)
{
    T_CHECK(contentview_known("auto") == 1 && contentview_known("JSON") == 1 && contentview_known("hex") == 1);
    T_CHECK(contentview_known("css") == 0 && contentview_known("javascript") == 0);
    T_CHECK(contentview_known("nonsense") == -1);
}

int main(void)
{
    T_RUN(multipart_parts);
    T_RUN(grpc_numbers_messages);
    T_RUN(line_limit);
    T_RUN(query_and_empty);
    T_RUN(python_formats);
    T_RUN(views_by_name);
    T_DONE();
}
