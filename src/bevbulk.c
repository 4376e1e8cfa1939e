/* bevbulk.c — large reads and writes on socket bufferevents (see bevbulk.h). */
#include "bevbulk.h"

#include <sys/ioctl.h>
#include <sys/uio.h>

#include <event2/buffer.h>
#include <event2/event.h>

/* libevent 2.1's largest single read (buffer.c's EVBUFFER_MAX_READ): a
 * read that added less emptied the socket. */
#define LIBEVENT_READ_MAX 4096

/* Runs inside libevent's read, after each addition to the input (ours
 * too: our commit calls it again, and it returns at once since the socket
 * is then empty or the buffer full — recursion one level deep). */
static void bevbulk_added_cb(struct evbuffer *in, const struct evbuffer_cb_info *info, void *arg)
{
    struct bufferevent *bev = arg;
    if (info->n_added < LIBEVENT_READ_MAX || !(bufferevent_get_enabled(bev) & EV_READ))
        return;
    size_t high = 0;
    bufferevent_getwatermark(bev, EV_READ, NULL, &high);
    size_t limit = high && high < BEVBULK_MAX ? high : BEVBULK_MAX;
    size_t len = evbuffer_get_length(in);
    int avail = 0;
    evutil_socket_t fd = bufferevent_getfd(bev);
    if (len >= limit || fd < 0 || ioctl(fd, FIONREAD, &avail) < 0 || avail <= 0)
        return;
    size_t want = (size_t)avail < limit - len ? (size_t)avail : limit - len;
    struct evbuffer_iovec v[2];
    int nv = evbuffer_reserve_space(in, (ev_ssize_t)want, v, 2);
    if (nv <= 0)
        return;   /* the input's end is frozen: not inside libevent's read */
    struct iovec iov[2];
    size_t room = want;
    for (int i = 0; i < nv; i++) {
        iov[i].iov_base = v[i].iov_base;
        iov[i].iov_len = v[i].iov_len < room ? v[i].iov_len : room;
        room -= iov[i].iov_len;
    }
    ssize_t got = readv(fd, iov, nv);
    if (got <= 0) {
        evbuffer_commit_space(in, v, 0);   /* left to libevent's next read */
        return;
    }
    int used = 0;
    for (size_t left = (size_t)got; used < nv && left; used++) {
        v[used].iov_len = iov[used].iov_len < left ? iov[used].iov_len : left;
        left -= v[used].iov_len;
    }
    evbuffer_commit_space(in, v, used);
}

int bevbulk_attach(struct bufferevent *bev)
{
    bufferevent_set_max_single_write(bev, BEVBULK_MAX);
    return evbuffer_add_cb(bufferevent_get_input(bev), bevbulk_added_cb, bev) ? 0 : -1;
}
