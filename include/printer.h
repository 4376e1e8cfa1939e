/* printer.h — the console view of flows, in mitmdump's format: one line per
 * request and one per response at flow_detail 1, headers from 2, bodies
 * from 3 (cut after 70 lines), everything at 4.  Thread-safe: each flow is
 * formatted into a buffer and written with one call. */
#ifndef MITMLUA_PRINTER_H
#define MITMLUA_PRINTER_H

#include <stdbool.h>
#include <stdio.h>
#include "flow.h"

typedef struct printer printer;

printer *printer_new(FILE *out, int flow_detail, bool showhost);
/* One JSON object per flow and line instead of mitmdump's lines (for jq and
 * log collectors): id, timestamps, duration, client, server, method, url,
 * status, sizes, error, replay, marked, comment, metadata. */
void printer_set_jsonl(printer *p, bool on);
/* The content view for bodies at detail 3 and 4 (mitmproxy's name, e.g.
 * "json", "hex"; NULL or "auto": as mitmproxy's auto view chooses).  The
 * string must outlive the printer. */
void printer_set_contentview(printer *p, const char *view);
/* The JSON object printed in jsonl mode, without the newline.  Caller frees. */
char *printer_flow_json(const flow *f);
void printer_free(printer *p);
/* Print a finished flow (response or error). */
void printer_flow(printer *p, const flow *f);
/* "127.0.0.1:5000", "[::1]:5000", IPv4-mapped IPv6 shown as IPv4. */
void printer_format_address(const char *host, unsigned port, char *buf, size_t n);
/* mitmproxy's human.pretty_size: "0b", "1023b", "1.3k", "120k", "5.0m". */
void printer_pretty_size(size_t size, char *buf, size_t n);

#endif
