/* sink.c — the consumers of finished flows (see sink.h). */
#include "sink.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

#include "dump.h"
#include "filter.h"
#include "har.h"
#include "log.h"
#include "mitmout.h"
#include "printer.h"
#include "report.h"

struct sink {
    /* mitmdump's three filters (the trailing expression sets all three), or NULL */
    filter *readfile;           /* flows read from files: -r, -C */
    filter *save;               /* -w, hardump */
    filter *dumper;             /* the console */
    filter *fail_on;            /* --set fail_on=FILTER, or NULL */
    printer *printer;           /* console, or NULL when quiet */
    dump_writer *dump;          /* -w, or NULL */
    mitmout_writer *mitm;       /* -w in mitmproxy's format, or NULL */
    har_writer *har;            /* --set hardump=FILE, or NULL */
    pthread_mutex_t har_lock;   /* the HAR writer has one owner at a time */
    report_writer *report;      /* --set report=FILE, or NULL */
    pthread_mutex_t report_lock;
    /* Run totals, shared on purpose: the exit status and the summary are
     * about every worker's flows. */
    atomic_ulong n_flows, n_errors, n_failed_on;
    atomic_ulong n_filter_errors;   /* the trailing filter could not answer */
    atomic_ullong bytes_requests, bytes_responses;
};

sink *sink_new(const opts *o, int *status, char *err, size_t errsz)
{
    sink *s = calloc(1, sizeof *s);
    char why[512];
    *status = 1;
    if (!s) {
        snprintf(err, errsz, "out of memory");
        return NULL;
    }
    pthread_mutex_init(&s->har_lock, NULL);
    pthread_mutex_init(&s->report_lock, NULL);
    if (o->fail_on && !(s->fail_on = filter_compile(o->fail_on, why, sizeof why))) {
        snprintf(err, errsz, "invalid fail_on expression: %s", why);
        *status = 2;
        goto fail;
    }
    struct { const char *expr, *name; filter **out; } fs[] = {
        {o->readfile_filter, "readfile_filter", &s->readfile},
        {o->save_stream_filter, "save_stream_filter", &s->save},
        {o->dumper_filter, "dumper_filter", &s->dumper},
    };
    for (size_t i = 0; i < sizeof fs / sizeof fs[0]; i++) {
        if (fs[i].expr && !(*fs[i].out = filter_compile(fs[i].expr, why, sizeof why))) {
            if (o->filter_expr && !strcmp(fs[i].expr, o->filter_expr))
                snprintf(err, errsz, "invalid filter expression: %s", why);
            else
                snprintf(err, errsz, "invalid %s expression: %s", fs[i].name, why);
            *status = 2;
            goto fail;
        }
    }
    bool dump_to_stdout = o->save_stream_file && strcmp(o->save_stream_file, "-") == 0;
    if (o->flow_detail > 0 && (s->printer = printer_new(dump_to_stdout ? stderr : stdout, o->flow_detail,
                                                        o->showhost)))
    {
        printer_set_jsonl(s->printer, strcmp(o->console_format, "jsonl") == 0);
        printer_set_contentview(s->printer, o->dumper_default_contentview);
    }
    return s;
fail:
    sink_close(s);
    return NULL;
}

int sink_open(sink *s, const opts *o, char *err, size_t errsz)
{
    char why[512];
    bool mitm = o->save_format ? !strcmp(o->save_format, "mitmproxy") : mitmout_path_wants(o->save_stream_file);
    if (o->save_stream_file && mitm && !(s->mitm = mitmout_open(o->save_stream_file, err, errsz)))
        return -1;
    if (o->save_stream_file && !mitm && !(s->dump = dump_writer_open(o->save_stream_file, err, errsz)))
        return -1;
    if (o->hardump && !(s->har = har_writer_open(o->hardump, why, sizeof why))) {
        snprintf(err, errsz, "hardump: %s", why);
        return -1;
    }
    report_info ri = {o->filter_expr, o->fail_on};
    if (o->report && !(s->report = report_writer_open(o->report, (size_t)o->report_body_limit, &ri, why,
                                                      sizeof why))) {
        snprintf(err, errsz, "report: %s", why);
        return -1;
    }
    return 0;
}

/* Does filter fl (NULL: every flow) let f through?  One that cannot answer
 * lets it through and says so: never a silent "no". */
static bool sink_pass(sink *s, filter *fl, const flow *f, const char *what)
{
    char ferr[512];
    int m = fl ? filter_eval(fl, f, ferr, sizeof ferr) : 1;
    if (m < 0) {
        atomic_fetch_add(&s->n_filter_errors, 1);
        log_error("%s; flow %s is %s", ferr, f->id, what);
    }
    return m != 0;
}

void sink_flow(sink *s, const flow *f)
{
    atomic_fetch_add(&s->n_flows, 1);
    if (f->error)
        atomic_fetch_add(&s->n_errors, 1);
    if (f->request)
        atomic_fetch_add(&s->bytes_requests, f->request->content.len);
    if (f->response)
        atomic_fetch_add(&s->bytes_responses, f->response->content.len);
    /* a filter that could not answer (filter_eval -1) fails fail_on and
     * lets the flow through the trailing filter: never a silent "no" */
    char ferr[512];
    int m = s->fail_on ? filter_eval(s->fail_on, f, ferr, sizeof ferr) : 0;
    int failed_on = m;
    if (m != 0) {
        atomic_fetch_add(&s->n_failed_on, 1);
        char *url = f->request ? flow_request_url(f->request) : NULL;
        if (m < 0)
            log_error("fail_on: %s; counted as matched: %s %s", ferr, f->request ? f->request->method : "",
                      url ? url : f->id);
        else
            log_warn("fail_on matched: %s %s", f->request ? f->request->method : "", url ? url : f->id);
        free(url);
    }
    bool show = s->printer && sink_pass(s, s->dumper, f, "shown");
    bool save = (s->dump || s->mitm || s->har) && sink_pass(s, s->save, f, "saved");
    if (show)
        printer_flow(s->printer, f);
    if (save && s->dump && dump_writer_add(s->dump, f) < 0)
        log_error("could not queue flow %s for the dump file", f->id);
    if (save && s->mitm && mitmout_add(s->mitm, f) < 0)
        log_error("could not write flow %s to the mitmproxy flow file", f->id);
    if (save && s->har) {
        char err[256];
        pthread_mutex_lock(&s->har_lock);
        int rc = har_writer_add(s->har, f, err, sizeof err);
        pthread_mutex_unlock(&s->har_lock);
        if (rc < 0)
            log_error("hardump: %s", err);
    }
    if (s->report) {
        char err[256];
        pthread_mutex_lock(&s->report_lock);
        int rc = report_writer_add(s->report, f, failed_on, err, sizeof err);
        pthread_mutex_unlock(&s->report_lock);
        if (rc < 0)
            log_error("report: %s", err);
    }
}

int sink_select(const sink *s, const flow *f, char *err, size_t errsz)
{
    return s->readfile ? filter_eval(s->readfile, f, err, errsz) : 1;
}

bool sink_filter_errors(const sink *s)
{
    return atomic_load(&s->n_filter_errors) > 0;
}

void sink_summary(const sink *s, FILE *out)
{
    char in[32], outb[32];
    printer_pretty_size((size_t)atomic_load(&s->bytes_requests), in, sizeof in);
    printer_pretty_size((size_t)atomic_load(&s->bytes_responses), outb, sizeof outb);
    unsigned long n = atomic_load(&s->n_flows), e = atomic_load(&s->n_errors);
    fprintf(out, "mitmlua: %lu flow%s, %lu error%s, %s of request bodies, %s of response bodies", n,
            n == 1 ? "" : "s", e, e == 1 ? "" : "s", in, outb);
    if (s->fail_on)
        fprintf(out, ", %lu matched fail_on", atomic_load(&s->n_failed_on));
    fputs(".\n", out);
}

bool sink_failed_on(const sink *s)
{
    return atomic_load(&s->n_failed_on) > 0;
}

int sink_close(sink *s)
{
    if (!s)
        return 0;
    char err[512];
    int rc = 0;
    if (s->dump && dump_writer_close(s->dump, err, sizeof err) < 0) {
        fprintf(stderr, "mitmlua: %s\n", err);
        rc = -1;
    }
    if (s->mitm && mitmout_close(s->mitm, err, sizeof err) < 0) {
        fprintf(stderr, "mitmlua: %s\n", err);
        rc = -1;
    }
    if (s->har && har_writer_close(s->har, err, sizeof err) < 0) {
        fprintf(stderr, "mitmlua: hardump: %s\n", err);
        rc = -1;
    }
    if (s->report && report_writer_close(s->report, err, sizeof err) < 0) {
        fprintf(stderr, "mitmlua: report: %s\n", err);
        rc = -1;
    }
    printer_free(s->printer);
    filter_free(s->readfile);
    filter_free(s->save);
    filter_free(s->dumper);
    filter_free(s->fail_on);
    pthread_mutex_destroy(&s->har_lock);
    pthread_mutex_destroy(&s->report_lock);
    free(s);
    return rc;
}
