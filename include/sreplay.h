/* sreplay.h — server replay (-S FILE): requests that match a recorded one
 * are answered with the recorded response, without contacting the server.
 *
 * Matching follows mitmproxy's ServerPlayback._hash: scheme, method, path,
 * query parameters (decoded, in order), body, host and port, each of which
 * options can leave out or refine.  Recorded flows are indexed by a SHA-256
 * of that key, so a lookup costs the same with 10 or 100,000 flows.  Only
 * the responses are kept.  One index serves every worker (a mutex guards
 * the queues, which requests consume unless server_replay_nopop). */
#ifndef MITMLUA_SREPLAY_H
#define MITMLUA_SREPLAY_H

#include <stddef.h>

#include "flow.h"
#include "opts.h"

typedef struct sreplay sreplay;

/* What sreplay_request did to the flow. */
enum sreplay_result {
    SREPLAY_FORWARD,    /* no match (or server_replay_extra=forward): go upstream */
    SREPLAY_ANSWERED,   /* f->response set; f->is_replay = "response" */
    SREPLAY_KILLED,     /* no match and server_replay_extra=kill: f->killed set */
};

/* An empty index with the matching options of o (o must outlive it).
 * NULL with err on a bad option value. */
sreplay *sreplay_new(const opts *o, char *err, size_t errsz);
/* Index every HTTP flow of the file that has a response (native dump,
 * mitmproxy flow file or HAR).  -1 with "FILE: reason" in err when the file
 * cannot be read or is damaged anywhere: a partial mock would answer some
 * requests and forward others, which is worse than not starting. */
int sreplay_load_file(sreplay *s, const char *path, char *err, size_t errsz);
/* Index one flow's response (f stays the caller's).  0, or -1 on ENOMEM. */
int sreplay_add(sreplay *s, const flow *f);
/* The responses waiting to be served. */
size_t sreplay_count(sreplay *s);
/* Called in the request event: answer, kill or leave the flow.  Thread-safe. */
enum sreplay_result sreplay_request(sreplay *s, flow *f);
void sreplay_free(sreplay *s);

/* A deep copy of a response; NULL on ENOMEM. */
flow_response *sreplay_response_copy(const flow_response *src);

#endif
