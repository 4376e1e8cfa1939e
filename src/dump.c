/* dump.c — the native dump file: a writer thread that compresses queued
 * flow records into one zstd stream cut into CRC32C-checked blocks, and a
 * streaming reader that checks every block before decompressing it and
 * resynchronises on the next zstd frame after damage.  The layout is
 * described in man/mitmlua-dump.5; record encoding lives in dump_codec.c. */
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>
#include <zstd.h>

#include "dump.h"
#include "log.h"
#include "xthread.h"

/* Start of every block: chosen to be unlikely in text and distinct from the
 * file magic; a false hit while resynchronising is rejected by the header
 * CRC. */
static const unsigned char dump_sync[4] = {0xB7, 'M', 'L', 'B'};

/* The writer ends the current zstd frame (and so the reader's resync point
 * moves on) after this many blocks, or bytes of the file, or uncompressed
 * bytes.  Larger frames compress better (context carries over between
 * flows), smaller ones lose less after damage.  The file bytes are what
 * bounds that loss on disk; counting uncompressed bytes alone (4 MiB) cut
 * a frame every four 1 MB bodies, and the first body of each frame, which
 * could not refer back to the last one, cost seven times the others to
 * compress.  The uncompressed bound only caps how many flows a flipped bit
 * can take with it when traffic compresses well. */
#define FRAME_MAX_BLOCKS 256
#define FRAME_MAX_FILE_BYTES ((uint64_t)4 << 20)
#define FRAME_MAX_BYTES ((uint64_t)64 << 20)
/* Compressed bytes per block before it is cut even mid-record. */
#define BLOCK_OUT_MAX ((size_t)1 << 20)
/* The level is chosen per frame, from the size of the records.  Level 1
 * costs half of level 3's CPU on small flows, with files as small, but its
 * 512 KB window does not reach back to the previous flow's body once that
 * is large: the same large body recorded again is compressed all over
 * (level 2 is no better there).  So a frame is level 1 while its records
 * stay under LARGE_RECORD; a large record ends a level-1 frame at once and
 * the next frame is level 3; a frame drops back to level 1 only after a
 * whole level-3 frame without large records. */
#define ZSTD_LEVEL_SMALL 1
#define ZSTD_LEVEL_LARGE 3
#define LARGE_RECORD ((size_t)64 << 10)
/* Group commit: once woken, the writer lets flows gather for this long
 * before it compresses and writes them, unless a lot is queued already.
 * Waking the writer (and flushing zstd) for each flow cost more than the
 * proxy spent on the flow itself; this bounds wake-ups to a few hundred a
 * second and a finished flow's way to write(2) to about 2 ms. */
#define COMMIT_DELAY_NS (2 * 1000 * 1000)
#define COMMIT_EARLY_BYTES ((size_t)1 << 20)

static void put_le32(unsigned char *p, uint32_t v)
{
    p[0] = (unsigned char)v;
    p[1] = (unsigned char)(v >> 8);
    p[2] = (unsigned char)(v >> 16);
    p[3] = (unsigned char)(v >> 24);
}

static uint32_t get_le32(const unsigned char *p)
{
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 |
           (uint32_t)p[3] << 24;
}

static void file_header(unsigned char h[DUMP_FILE_HEADER_LEN])
{
    memcpy(h, DUMP_MAGIC, DUMP_MAGIC_LEN);
    h[8] = DUMP_VERSION_MAJOR & 0xff;
    h[9] = DUMP_VERSION_MAJOR >> 8;
    h[10] = DUMP_VERSION_MINOR & 0xff;
    h[11] = DUMP_VERSION_MINOR >> 8;
    put_le32(h + 12, dump_crc32c(0, h, 12));
}

/* A block header is valid when its own CRC matches and the length is sane. */
static int block_header_ok(const unsigned char *h, uint32_t *len, unsigned *flags)
{
    if (memcmp(h, dump_sync, 4) != 0 || get_le32(h + 16) != dump_crc32c(0, h, 16))
        return 0;
    *len = get_le32(h + 4);
    *flags = h[8];
    return *len <= DUMP_MAX_BLOCK;
}

static int write_all(int fd, const void *p, size_t n)
{
    const char *c = p;
    while (n) {
        ssize_t k = write(fd, c, n);
        if (k < 0) {
            if (errno == EINTR)
                continue;
            return -1;
        }
        c += k;
        n -= (size_t)k;
    }
    return 0;
}

/* ======================================================================== */
/* writer                                                                   */
/* ======================================================================== */

typedef struct qitem {
    struct qitem *next;
    size_t len;
    unsigned char data[];
} qitem;

struct dump_writer {
    int fd, own_fd;
    pthread_t th;
    int th_started;
    pthread_mutex_t mu;
    pthread_cond_t cv_work, cv_space;
    qitem *head, *tail;
    size_t qbytes;
    int closing;
    int failed;             /* sticky: a write failed, errmsg says why */
    char errmsg[300];
    uint64_t lost;          /* flows not saved since (mu) */
    char name[200];         /* the file, for messages */
    dump_writer_stats st;
    /* writer-thread only */
    ZSTD_CCtx *cctx;
    unsigned char *out;     /* DUMP_BLOCK_HEADER_LEN + BLOCK_OUT_MAX */
    size_t outlen;          /* compressed bytes after the header room */
    int newframe;           /* the next block starts a zstd frame */
    int frame_open;
    int level;              /* zstd level of the open (or next) frame */
    int frame_large;        /* the open frame holds a large record */
    int last_frame_large;   /* ... and so did the one before it */
    uint64_t frame_blocks, frame_bytes, frame_file_bytes;
};

static void w_fail(dump_writer *w, const char *what)
{
    pthread_mutex_lock(&w->mu);
    if (!w->failed) {
        w->failed = 1;
        snprintf(w->errmsg, sizeof w->errmsg, "dump %s: %s: %s", w->name, what, strerror(errno));
        /* said once, when it happens; the proxy goes on serving, and
         * dump_writer_close counts the flows that were not saved */
        log_error("%s; flows from now on are not saved (the proxy goes on)", w->errmsg);
    }
    pthread_cond_broadcast(&w->cv_space);
    pthread_mutex_unlock(&w->mu);
}

/* Write the compressed bytes gathered so far as one block. */
static void w_emit(dump_writer *w, int recend)
{
    if (w->outlen == 0)
        return;
    unsigned char *h = w->out;
    memcpy(h, dump_sync, 4);
    put_le32(h + 4, (uint32_t)w->outlen);
    h[8] = (unsigned char)((w->newframe ? DUMP_BLOCK_NEWFRAME : 0) |
                           (recend ? DUMP_BLOCK_RECEND : 0));
    h[9] = h[10] = h[11] = 0;
    put_le32(h + 12, dump_crc32c(0, h + DUMP_BLOCK_HEADER_LEN, w->outlen));
    put_le32(h + 16, dump_crc32c(0, h, 16));
    size_t n = DUMP_BLOCK_HEADER_LEN + w->outlen;
    if (!w->failed && write_all(w->fd, h, n) < 0)
        w_fail(w, "write");
    pthread_mutex_lock(&w->mu);
    w->st.blocks++;
    if (w->newframe)
        w->st.frames++;
    w->st.file_bytes += n;
    pthread_mutex_unlock(&w->mu);
    w->newframe = 0;
    w->frame_blocks++;
    w->frame_file_bytes += n;
    w->outlen = 0;
}

/* Feed in (may be empty) with `mode`; cut blocks whenever the output area
 * fills.  For flush/end, loops until zstd has emitted everything. */
static int w_compress(dump_writer *w, const void *data, size_t n, ZSTD_EndDirective mode)
{
    ZSTD_inBuffer in = {data, n, 0};
    for (;;) {
        ZSTD_outBuffer out = {w->out + DUMP_BLOCK_HEADER_LEN, BLOCK_OUT_MAX, w->outlen};
        size_t rem = ZSTD_compressStream2(w->cctx, &out, &in, mode);
        if (ZSTD_isError(rem)) {
            errno = EIO;
            w_fail(w, ZSTD_getErrorName(rem));
            return -1;
        }
        w->outlen = out.pos;
        w->frame_open = 1;
        if (w->outlen == BLOCK_OUT_MAX)
            w_emit(w, 0);
        if (mode == ZSTD_e_continue ? in.pos == in.size : rem == 0)
            return 0;
    }
}

/* End the open frame: the next block starts a new one (a point where a
 * reader resynchronises), compressed at the level the records ask for. */
static void w_end_frame(dump_writer *w)
{
    if (w->frame_open && !w->failed && w_compress(w, NULL, 0, ZSTD_e_end) == 0)
        w_emit(w, 1);
    w->newframe = 1;
    w->frame_open = 0;
    w->frame_blocks = w->frame_bytes = w->frame_file_bytes = 0;
    w->last_frame_large = w->frame_large;
    w->frame_large = 0;
}

/* Before a batch: a large record in it ends a level-1 frame; a frame that
 * has not started yet takes the level its records and the last frame's
 * ask for.  zstd takes a new level only between frames. */
static void w_pick_level(dump_writer *w, const qitem *list)
{
    int large = 0;
    for (const qitem *q = list; q && !large; q = q->next)
        large = q->len >= LARGE_RECORD;
    if (large && w->frame_open && w->level != ZSTD_LEVEL_LARGE)
        w_end_frame(w);
    w->frame_large |= large;
    if (w->frame_open)
        return;
    int level = large || w->last_frame_large ? ZSTD_LEVEL_LARGE : ZSTD_LEVEL_SMALL;
    if (level != w->level && !ZSTD_isError(ZSTD_CCtx_setParameter(w->cctx, ZSTD_c_compressionLevel, level)))
        w->level = level;
}

/* One batch = every record queued since the last wake-up; it ends with a
 * flush, so everything the batch holds reaches write(2) now. */
static void w_batch(dump_writer *w, qitem *list)
{
    uint64_t raw = 0, nflows = 0;
    w_pick_level(w, list);
    for (qitem *q = list; q; q = q->next) {
        if (!w->failed)
            w_compress(w, q->data, q->len, ZSTD_e_continue);
        raw += q->len;
        nflows++;
    }
    w->frame_bytes += raw;
    if (w->frame_blocks + 1 >= FRAME_MAX_BLOCKS || w->frame_bytes >= FRAME_MAX_BYTES ||
        w->frame_file_bytes + w->outlen >= FRAME_MAX_FILE_BYTES)
        w_end_frame(w);
    else if (!w->failed && w_compress(w, NULL, 0, ZSTD_e_flush) == 0)
        w_emit(w, 1);
    if (w->failed) { /* a batch reaches the disk whole, at its flush, or not */
        pthread_mutex_lock(&w->mu);
        w->lost += nflows;
        pthread_mutex_unlock(&w->mu);
    }
    pthread_mutex_lock(&w->mu);
    w->st.flows += nflows;
    w->st.raw_bytes += raw;
    pthread_mutex_unlock(&w->mu);
}

static void *w_thread(void *arg)
{
    dump_writer *w = arg;
    pthread_mutex_lock(&w->mu);
    for (;;) {
        while (!w->head && !w->closing)
            pthread_cond_wait(&w->cv_work, &w->mu);
        if (!w->head)
            break;
        if (!w->closing && w->qbytes < COMMIT_EARLY_BYTES) {
            /* producers signal only an empty queue, so this sleep is not
             * interrupted flow by flow */
            pthread_mutex_unlock(&w->mu);
            struct timespec ts = {0, COMMIT_DELAY_NS};
            nanosleep(&ts, NULL);
            pthread_mutex_lock(&w->mu);
        }
        qitem *list = w->head;
        w->head = w->tail = NULL;
        size_t taken = 0;
        for (qitem *q = list; q; q = q->next)
            taken += q->len;
        pthread_mutex_unlock(&w->mu);
        w_batch(w, list);
        while (list) {
            qitem *nx = list->next;
            free(list);
            list = nx;
        }
        pthread_mutex_lock(&w->mu);
        /* bytes count against the queue until compressed and written, so
         * backpressure reflects the disk, not just the hand-over */
        w->qbytes -= taken;
        pthread_cond_broadcast(&w->cv_space);
    }
    pthread_mutex_unlock(&w->mu);
    /* close the last frame so the file ends on a complete zstd frame */
    w_end_frame(w);
    return NULL;
}

/* Appending: keep everything up to the end of the last block that is
 * intact and ends on a record boundary (or a file header); cut the rest,
 * which is what a crash in the middle of a write leaves. */
static int w_cut_torn_tail(int fd, const char *path, off_t *keep, char *err, size_t errsz)
{
    struct stat sb;
    if (fstat(fd, &sb) < 0) {
        snprintf(err, errsz, "%s: %s", path, strerror(errno));
        return -1;
    }
    size_t size = (size_t)sb.st_size;
    *keep = 0;
    if (size == 0)
        return 0;
    unsigned char *m = mmap(NULL, size, PROT_READ, MAP_PRIVATE, fd, 0);
    if (m == MAP_FAILED) {
        snprintf(err, errsz, "%s: mmap: %s", path, strerror(errno));
        return -1;
    }
    int rc = -1;
    if (size < DUMP_FILE_HEADER_LEN) {
        /* a torn file header: acceptable only if it is a prefix of ours */
        unsigned char h[DUMP_FILE_HEADER_LEN];
        file_header(h);
        if (memcmp(m, h, size < DUMP_MAGIC_LEN ? size : DUMP_MAGIC_LEN) != 0)
            goto notdump;
        rc = 0;
        goto out;
    }
    if (memcmp(m, DUMP_MAGIC, DUMP_MAGIC_LEN) != 0)
        goto notdump;
    if ((m[8] | m[9] << 8) > DUMP_VERSION_MAJOR) {
        snprintf(err, errsz, "%s: dump format version %u is newer than this mitmlua writes; "
                 "refusing to append", path, (unsigned)(m[8] | m[9] << 8));
        goto out;
    }
    size_t pos = 0, good = 0;
    while (pos + 8 <= size) {
        uint32_t len;
        unsigned flags;
        if (size - pos >= DUMP_FILE_HEADER_LEN && memcmp(m + pos, DUMP_MAGIC, DUMP_MAGIC_LEN) == 0 &&
            get_le32(m + pos + 12) == dump_crc32c(0, m + pos, 12)) {
            pos += DUMP_FILE_HEADER_LEN;
            good = pos;
        } else if (size - pos >= DUMP_BLOCK_HEADER_LEN && block_header_ok(m + pos, &len, &flags) &&
                   size - pos - DUMP_BLOCK_HEADER_LEN >= len &&
                   get_le32(m + pos + 12) == dump_crc32c(0, m + pos + DUMP_BLOCK_HEADER_LEN, len)) {
            pos += DUMP_BLOCK_HEADER_LEN + len;
            if (flags & DUMP_BLOCK_RECEND)
                good = pos;
        } else {
            pos++; /* damage: look for a later intact block */
        }
    }
    *keep = (off_t)good;
    rc = 0;
    goto out;
notdump:
    snprintf(err, errsz, "%s: not a mitmlua dump; refusing to append to it", path);
out:
    munmap(m, size);
    return rc;
}

static dump_writer *w_start(int fd, int own_fd, int write_header, const char *name, char *err,
                            size_t errsz)
{
    dump_writer *w = calloc(1, sizeof *w);
    if (!w) {
        snprintf(err, errsz, "out of memory");
        return NULL;
    }
    w->fd = fd;
    w->own_fd = own_fd;
    w->newframe = 1;
    snprintf(w->name, sizeof w->name, "%s", name);
    pthread_mutex_init(&w->mu, NULL);
    pthread_cond_init(&w->cv_work, NULL);
    pthread_cond_init(&w->cv_space, NULL);
    w->cctx = ZSTD_createCCtx();
    w->out = malloc(DUMP_BLOCK_HEADER_LEN + BLOCK_OUT_MAX);
    if (!w->cctx || !w->out) {
        snprintf(err, errsz, "out of memory");
        goto fail;
    }
    /* our CRC covers integrity; zstd's own checksum would only come at the
     * end of a frame */
    w->level = ZSTD_LEVEL_SMALL;
    ZSTD_CCtx_setParameter(w->cctx, ZSTD_c_compressionLevel, w->level);
    ZSTD_CCtx_setParameter(w->cctx, ZSTD_c_checksumFlag, 0);
    if (write_header) {
        unsigned char h[DUMP_FILE_HEADER_LEN];
        file_header(h);
        if (write_all(fd, h, sizeof h) < 0) {
            snprintf(err, errsz, "dump %s: write: %s", w->name, strerror(errno));
            goto fail;
        }
        w->st.file_bytes += sizeof h;
    }
    if (xthread_start(&w->th, w_thread, w) != 0) {
        snprintf(err, errsz, "dump: cannot start writer thread");
        goto fail;
    }
    w->th_started = 1;
    return w;
fail:
    ZSTD_freeCCtx(w->cctx);
    free(w->out);
    pthread_mutex_destroy(&w->mu);
    pthread_cond_destroy(&w->cv_work);
    pthread_cond_destroy(&w->cv_space);
    free(w);
    return NULL;
}

dump_writer *dump_writer_open_fd(int fd, int own_fd, char *err, size_t errsz)
{
    return w_start(fd, own_fd, 1, "file", err, errsz);
}

dump_writer *dump_writer_open(const char *path, char *err, size_t errsz)
{
    if (strcmp(path, "-") == 0)
        return w_start(STDOUT_FILENO, 0, 1, "<stdout>", err, errsz);
    int append = path[0] == '+';
    const char *file = append ? path + 1 : path;
    /* dumps hold cookies and credentials: private by default */
    int fd = open(file, append ? O_RDWR | O_CREAT | O_CLOEXEC
                               : O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    if (fd < 0) {
        snprintf(err, errsz, "%s: %s", file, strerror(errno));
        return NULL;
    }
    int header = 1;
    if (append) {
        off_t keep;
        if (w_cut_torn_tail(fd, file, &keep, err, errsz) < 0)
            goto fail;
        if (ftruncate(fd, keep) < 0 || lseek(fd, keep, SEEK_SET) < 0) {
            snprintf(err, errsz, "%s: %s", file, strerror(errno));
            goto fail;
        }
        header = keep == 0;
    }
    dump_writer *w = w_start(fd, 1, header, file, err, errsz);
    if (!w)
        goto fail;
    return w;
fail:
    close(fd);
    return NULL;
}

int dump_writer_add(dump_writer *w, const flow *f)
{
    /* the record is encoded right after room for its queue item, so the
     * buffer becomes the item without a copy */
    bytes rec = {0};
    if (bytes_reserve(&rec, offsetof(qitem, data)) < 0) {
        bytes_free(&rec);
        return -1;
    }
    rec.len = offsetof(qitem, data);
    if (dump_encode_flow(f, &rec) < 0) {
        bytes_free(&rec);
        return -1;
    }
    qitem *q = (qitem *)(void *)rec.p;   /* malloc'ed: aligned for any type */
    q->next = NULL;
    q->len = rec.len - offsetof(qitem, data);

    pthread_mutex_lock(&w->mu);
    /* Backpressure instead of loss: wait while the writer is behind, but
     * always admit a flow into an empty queue so a huge one cannot wait
     * forever. */
    while (!w->failed && w->qbytes > 0 && w->qbytes + q->len > DUMP_WRITER_QUEUE_MAX)
        pthread_cond_wait(&w->cv_space, &w->mu);
    if (w->failed || w->closing) {
        w->lost++;
        pthread_mutex_unlock(&w->mu);
        free(q);
        return 1;
    }
    /* the writer sleeps on cv_work only with an empty queue; a late one
     * that is gathering a batch needs no signal until a lot is queued */
    bool wake = !w->head || (w->qbytes < COMMIT_EARLY_BYTES && w->qbytes + q->len >= COMMIT_EARLY_BYTES);
    if (w->tail)
        w->tail->next = q;
    else
        w->head = q;
    w->tail = q;
    w->qbytes += q->len;
    if (wake)
        pthread_cond_signal(&w->cv_work);
    pthread_mutex_unlock(&w->mu);
    return 0;
}

void dump_writer_get_stats(dump_writer *w, dump_writer_stats *st)
{
    pthread_mutex_lock(&w->mu);
    *st = w->st;
    pthread_mutex_unlock(&w->mu);
}

int dump_writer_close(dump_writer *w, char *err, size_t errsz)
{
    if (!w)
        return 0;
    pthread_mutex_lock(&w->mu);
    w->closing = 1;
    pthread_cond_signal(&w->cv_work);
    pthread_mutex_unlock(&w->mu);
    if (w->th_started)
        pthread_join(w->th, NULL);
    int rc = 0;
    if (w->failed) {
        snprintf(err, errsz, "%s; %llu flow%s not saved", w->errmsg, (unsigned long long)w->lost,
                 w->lost == 1 ? "" : "s");
        rc = -1;
    }
    if (w->own_fd && close(w->fd) < 0 && rc == 0) {
        snprintf(err, errsz, "dump: close: %s", strerror(errno));
        rc = -1;
    }
    ZSTD_freeCCtx(w->cctx);
    free(w->out);
    pthread_mutex_destroy(&w->mu);
    pthread_cond_destroy(&w->cv_work);
    pthread_cond_destroy(&w->cv_space);
    free(w);
    return rc;
}

/* ======================================================================== */
/* reader                                                                   */
/* ======================================================================== */

struct dump_reader {
    int fd;
    char *name;
    unsigned char *buf;         /* input window: [start, end) unread */
    size_t cap, start, end;
    uint64_t off;               /* file offset of buf[start] */
    int eof;
    int started;                /* a file header has been seen */
    int in_frame;               /* decoding from a frame start we saw */
    int resync;                 /* after damage: look for a frame start */
    int fatal;                  /* not a dump / newer version: stays an error */
    char fatal_msg[256];
    ZSTD_DCtx *dctx;
    /* the block being decompressed; its payload is buf[start, start+blk_len) */
    int blk_active;
    size_t blk_len, zpos;
    uint64_t blk_off;
    /* decompressed bytes not yet parsed: rec[rpos, rlen) */
    unsigned char *rec;
    size_t rcap, rlen, rpos;
    size_t max_record;
    flow_limits lim;
};

dump_reader *dump_reader_open_prefixed(int fd, const char *name, const void *pre,
                                       size_t n, char *err, size_t errsz)
{
    dump_reader *r = calloc(1, sizeof *r);
    if (!r)
        goto oom;
    r->fd = fd;
    r->eof = fd < 0;
    r->max_record = (size_t)1 << 30;
    r->lim = flow_limits_default;
    r->name = strdup(name ? name : "dump");
    r->dctx = ZSTD_createDCtx();
    r->cap = n > 65536 ? n : 65536;
    r->buf = malloc(r->cap);
    if (!r->name || !r->dctx || !r->buf)
        goto oom;
    if (n)
        memcpy(r->buf, pre, n);
    r->end = n;
    return r;
oom:
    snprintf(err, errsz, "out of memory");
    dump_reader_close(r);
    return NULL;
}

dump_reader *dump_reader_open_fd(int fd, const char *name, char *err, size_t errsz)
{
    return dump_reader_open_prefixed(fd, name, NULL, 0, err, errsz);
}

void dump_reader_set_max_record(dump_reader *r, size_t max)
{
    r->max_record = max;
}

void dump_reader_set_limits(dump_reader *r, const flow_limits *lim)
{
    r->lim = *lim;
}

void dump_reader_close(dump_reader *r)
{
    if (!r)
        return;
    free(r->name);
    free(r->buf);
    free(r->rec);
    ZSTD_freeDCtx(r->dctx);
    free(r);
}

/* Make at least `need` unread bytes available if the input has them;
 * returns how many are available (< need only at end of input). */
static size_t r_fill(dump_reader *r, size_t need, char *err, size_t errsz, int *ioerr)
{
    while (r->end - r->start < need && !r->eof) {
        if (r->start > 0 && r->cap - r->end < need) {
            memmove(r->buf, r->buf + r->start, r->end - r->start);
            r->end -= r->start;
            r->start = 0;
        }
        if (r->cap - r->end < need || r->cap == r->end) {
            size_t nc = r->cap;
            while (nc - r->end < need || nc == r->end)
                nc *= 2;
            unsigned char *nb = realloc(r->buf, nc);
            if (!nb) {
                snprintf(err, errsz, "%s: out of memory", r->name);
                *ioerr = 1;
                return 0;
            }
            r->buf = nb;
            r->cap = nc;
        }
        ssize_t k = read(r->fd, r->buf + r->end, r->cap - r->end);
        if (k < 0) {
            if (errno == EINTR)
                continue;
            snprintf(err, errsz, "%s: read: %s", r->name, strerror(errno));
            *ioerr = 1;
            return 0;
        }
        if (k == 0)
            r->eof = 1;
        r->end += (size_t)k;
    }
    return r->end - r->start;
}

static void r_consume(dump_reader *r, size_t n)
{
    r->start += n;
    r->off += n;
}

/* Report damage at `at` and arrange for the next call to resynchronise. */
__attribute__((format(printf, 5, 6))) static int r_damage(dump_reader *r, uint64_t at,
                                                          char *err, size_t errsz,
                                                          const char *fmt, ...)
{
    char what[200];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(what, sizeof what, fmt, ap);
    va_end(ap);
    snprintf(err, errsz, "%s: offset %llu: %s", r->name, (unsigned long long)at, what);
    r->resync = 1;
    r->in_frame = 0;
    r->blk_active = 0; /* its payload stays in buf and is scanned too */
    r->rlen = r->rpos = 0;
    ZSTD_DCtx_reset(r->dctx, ZSTD_reset_session_only);
    return -1;
}

/* Skip to the next file header or block that starts a zstd frame.
 * 1 = found, 0 = end of input, -1 = read error. */
static int r_resync(dump_reader *r, char *err, size_t errsz)
{
    int ioerr = 0;
    for (;;) {
        size_t avail = r_fill(r, DUMP_BLOCK_HEADER_LEN, err, errsz, &ioerr);
        if (ioerr)
            return -1;
        if (avail < 8) {
            r_consume(r, avail);
            return 0;
        }
        const unsigned char *p = r->buf + r->start;
        uint32_t len;
        unsigned flags;
        if (memcmp(p, DUMP_MAGIC, DUMP_MAGIC_LEN) == 0)
            break;
        if (avail >= DUMP_BLOCK_HEADER_LEN && block_header_ok(p, &len, &flags)) {
            if (flags & DUMP_BLOCK_NEWFRAME)
                break;
            /* an intact block in the middle of a frame: undecodable without
             * what came before, so skip all of it */
            r_consume(r, DUMP_BLOCK_HEADER_LEN);
            while (len) {
                avail = r_fill(r, 1, err, errsz, &ioerr);
                if (ioerr)
                    return -1;
                if (!avail)
                    return 0;
                size_t k = avail < len ? avail : len;
                r_consume(r, k);
                len -= (uint32_t)k;
            }
            continue;
        }
        r_consume(r, 1);
    }
    r->resync = 0;
    return 1;
}

/* 1 = a flow in *out, 0 = need more decompressed data, -1 = damage */
static int r_record(dump_reader *r, flow **out, char *err, size_t errsz)
{
    for (;;) {
        if (r->rpos == r->rlen)
            return 0;
        const unsigned char *p = r->rec + r->rpos, *e = r->rec + r->rlen;
        uint64_t v[2];
        for (int i = 0; i < 2; i++) {
            v[i] = 0;
            int shift = 0;
            for (;;) {
                if (p >= e)
                    return 0;
                unsigned char c = *p++;
                v[i] |= (uint64_t)(c & 0x7f) << shift;
                if (!(c & 0x80))
                    break;
                shift += 7;
                if (shift > 63)
                    return r_damage(r, r->blk_off, err, errsz, "malformed record header");
            }
        }
        if (v[1] > r->max_record)
            return r_damage(r, r->blk_off, err, errsz, "record of %llu bytes exceeds the limit",
                            (unsigned long long)v[1]);
        if ((uint64_t)(e - p) < v[1])
            return 0;
        r->rpos = (size_t)(p - r->rec) + (size_t)v[1];
        if (v[0] != DUMP_REC_FLOW)
            continue; /* a record kind from a newer writer */
        char why[256];
        int rc = dump_decode_flow(p, (size_t)v[1], &r->lim, out, why, sizeof why);
        if (rc == -2) {
            /* intact, only too big: refused, and reading goes on after it */
            snprintf(err, errsz, "%s: offset %llu: flow record refused: %s", r->name,
                     (unsigned long long)r->blk_off, why);
            return -1;
        }
        if (rc < 0)
            return r_damage(r, r->blk_off, err, errsz, "bad flow record in block: %s", why);
        return 1;
    }
}

/* Decompress some more of the active block into rec. */
static int r_inflate(dump_reader *r, char *err, size_t errsz)
{
    if (r->rpos > 0) {
        memmove(r->rec, r->rec + r->rpos, r->rlen - r->rpos);
        r->rlen -= r->rpos;
        r->rpos = 0;
    }
    if (r->rlen > r->max_record + 20)
        return r_damage(r, r->blk_off, err, errsz, "record exceeds the size limit");
    size_t step = ZSTD_DStreamOutSize();
    if (r->rcap - r->rlen < step) {
        size_t nc = r->rcap ? r->rcap : step * 2;
        while (nc - r->rlen < step)
            nc *= 2;
        unsigned char *nb = realloc(r->rec, nc);
        if (!nb) {
            snprintf(err, errsz, "%s: out of memory", r->name);
            return -1;
        }
        r->rec = nb;
        r->rcap = nc;
    }
    ZSTD_inBuffer in = {r->buf + r->start, r->blk_len, r->zpos};
    ZSTD_outBuffer out = {r->rec + r->rlen, step, 0};
    size_t rc = ZSTD_decompressStream(r->dctx, &out, &in);
    if (ZSTD_isError(rc))
        return r_damage(r, r->blk_off, err, errsz, "zstd: %s", ZSTD_getErrorName(rc));
    r->rlen += out.pos;
    r->zpos = in.pos;
    if (in.pos == in.size && out.pos < out.size) {
        r_consume(r, r->blk_len);
        r->blk_active = 0;
    }
    return 0;
}

/* Read what comes next at a block boundary: a file header or a block. */
static int r_unit(dump_reader *r, char *err, size_t errsz)
{
    int ioerr = 0;
    size_t avail = r_fill(r, DUMP_MAGIC_LEN, err, errsz, &ioerr);
    if (ioerr)
        return -1;
    uint64_t at = r->off;
    if (avail == 0) {
        if (r->rlen > r->rpos)
            return r_damage(r, at, err, errsz, "truncated: input ends inside a record");
        return 0;
    }
    const unsigned char *p = r->buf + r->start;
    if (avail >= DUMP_MAGIC_LEN && memcmp(p, DUMP_MAGIC, DUMP_MAGIC_LEN) == 0) {
        avail = r_fill(r, DUMP_FILE_HEADER_LEN, err, errsz, &ioerr);
        if (ioerr)
            return -1;
        p = r->buf + r->start;
        if (avail < DUMP_FILE_HEADER_LEN)
            return r_damage(r, at, err, errsz, "truncated file header");
        if (get_le32(p + 12) != dump_crc32c(0, p, 12)) {
            r_consume(r, 1);
            return r_damage(r, at, err, errsz, "file header checksum mismatch");
        }
        unsigned major = p[8] | p[9] << 8, minor = p[10] | p[11] << 8;
        if (major > DUMP_VERSION_MAJOR) {
            snprintf(r->fatal_msg, sizeof r->fatal_msg,
                     "%s: offset %llu: dump format version %u.%u is newer than this "
                     "mitmlua reads (%u.x); upgrade mitmlua", r->name,
                     (unsigned long long)at, major, minor, DUMP_VERSION_MAJOR);
            r->fatal = 1;
            snprintf(err, errsz, "%s", r->fatal_msg);
            return -1;
        }
        if (r->rlen > r->rpos) {
            r_consume(r, DUMP_FILE_HEADER_LEN);
            return r_damage(r, at, err, errsz, "incomplete record before a file header");
        }
        r_consume(r, DUMP_FILE_HEADER_LEN);
        r->started = 1;
        r->in_frame = 0;
        ZSTD_DCtx_reset(r->dctx, ZSTD_reset_session_only);
        return 2;
    }
    if (!r->started) {
        snprintf(r->fatal_msg, sizeof r->fatal_msg, "%s: %s", r->name,
                 avail < DUMP_MAGIC_LEN && memcmp(p, DUMP_MAGIC, avail) == 0
                     ? "offset 0: truncated file header"
                     : "not a mitmlua dump (bad magic)");
        r->fatal = 1;
        snprintf(err, errsz, "%s", r->fatal_msg);
        return -1;
    }
    if (memcmp(p, dump_sync, avail < 4 ? avail : 4) != 0) {
        r_consume(r, 1);
        return r_damage(r, at, err, errsz, "expected a block marker");
    }
    avail = r_fill(r, DUMP_BLOCK_HEADER_LEN, err, errsz, &ioerr);
    if (ioerr)
        return -1;
    p = r->buf + r->start;
    if (avail < DUMP_BLOCK_HEADER_LEN)
        return r_damage(r, at, err, errsz, "truncated block header");
    uint32_t len;
    unsigned flags;
    if (!block_header_ok(p, &len, &flags)) {
        r_consume(r, 1);
        return r_damage(r, at, err, errsz, "block header checksum mismatch");
    }
    avail = r_fill(r, DUMP_BLOCK_HEADER_LEN + (size_t)len, err, errsz, &ioerr);
    if (ioerr)
        return -1;
    p = r->buf + r->start;
    if (avail < DUMP_BLOCK_HEADER_LEN + (size_t)len) {
        r_consume(r, 1);
        return r_damage(r, at, err, errsz, "truncated block (%zu of %u bytes)",
                        avail - DUMP_BLOCK_HEADER_LEN, len);
    }
    if (get_le32(p + 12) != dump_crc32c(0, p + DUMP_BLOCK_HEADER_LEN, len)) {
        r_consume(r, 1);
        return r_damage(r, at, err, errsz, "block checksum mismatch (%u-byte block)", len);
    }
    r_consume(r, DUMP_BLOCK_HEADER_LEN);
    if (flags & DUMP_BLOCK_NEWFRAME) {
        if (r->rlen > r->rpos)
            return r_damage(r, at, err, errsz, "incomplete record before a new frame");
        ZSTD_DCtx_reset(r->dctx, ZSTD_reset_session_only);
        r->in_frame = 1;
    } else if (!r->in_frame) {
        r_consume(r, len); /* cannot be decoded without its frame's start */
        return 2;
    }
    r->blk_active = 1;
    r->blk_len = len;
    r->zpos = 0;
    r->blk_off = at;
    return 2;
}

int dump_reader_next(dump_reader *r, flow **out, char *err, size_t errsz)
{
    *out = NULL;
    if (r->fatal) {
        snprintf(err, errsz, "%s", r->fatal_msg);
        return -1;
    }
    for (;;) {
        if (r->resync) {
            int rc = r_resync(r, err, errsz);
            if (rc <= 0)
                return rc;
        }
        int rc = r_record(r, out, err, errsz);
        if (rc != 0)
            return rc;
        if (r->blk_active) {
            if (r_inflate(r, err, errsz) < 0)
                return -1;
            continue;
        }
        rc = r_unit(r, err, errsz);
        if (rc <= 0)
            return rc;
    }
}
