/* client.h — client connections on a worker: accepting them, and closing
 * them when the worker stops.  What a connection speaks (HTTP/1, HTTP/2, a
 * tunnel) is decided behind this interface. */
#ifndef MITMLUA_CLIENT_H
#define MITMLUA_CLIENT_H

#include <event2/util.h>

struct worker;
struct sockaddr;

/* A new connection from the listener (fd is ours from now on). */
void client_accept(struct worker *w, evutil_socket_t fd, struct sockaddr *sa);
/* The worker stops: close the connections that are idle (no exchange in
 * flight); the others finish within the worker's grace period. */
void client_close_idle(struct worker *w);
/* Close every connection now (their flows fail). */
void client_close_all(struct worker *w);

#endif
