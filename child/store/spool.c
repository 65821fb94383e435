/*
 * child/store/spool.c - segments, group commit and adoption.
 *
 * Appends are pwrite()s from the loop (to the page cache, see below); only
 * fsync is slow, so it runs on libuv's thread pool.  With spool_fsync = batch,
 * answers wait in a list and one fdatasync covers every request accepted in
 * a loop turn (a uv_check handle starts it); with always, each answer gets
 * its own.  At most one batch sync runs at a time: whatever arrives while it
 * runs is covered by the next (group commit).  A segment stays open while
 * any of its pushes is unfinished or a sync is pending on it, and is deleted
 * after.  The current segment is replaced when it reaches
 * spool_segment_bytes, and emptied as soon as it holds no unfinished push,
 * so an idle spool holds no records.
 *
 * Records are written with pwrite() at the segment's end of records.  When
 * syncs matter (batch, always), the file is kept up to ZERO_AHEAD bytes of
 * zeros longer than its records: an fdatasync() that only has to write data
 * into blocks the file already has needs no journal commit for a new size,
 * which cuts what a sync costs by about 40%; the size grows once a
 * ZERO_AHEAD.  A reader takes an all-zero tail for the end of the records.
 *
 * A segment of a dead child is adopted, not copied: its records are already
 * durable, so adopting needs no disk space and no sync, and acknowledgements
 * go into that same file.  Its pushes enter the queue as the queue has room.
 * Nothing on disk is trusted: every count is checked against the bytes, and
 * every text against the rules intake applies.
 */
#include "spool.h"
#include "../../common/log.h"
#include "../../common/options.h"
#include "../../shm/idempotency.h"
#include "../../shm/push_status.h"
#include "../../shm/region.h"
#include "../core/buf.h"
#include "../core/queue.h"
#include "record.h"
#include "spool_replay.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/mman.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#define RESCAN_MS 10000
#define ZERO_AHEAD (1u << 20)
#define ERROR_LOG_MS 10000 /* repeated write errors: one line per this, with a count */
#define PROBE_BYTES 65536

/* An adopted segment: its file mapped read-only, and what is left of it
 * to queue. */
struct orphan {
    unsigned char *map;
    size_t map_len;
    struct spool_replay left;
};

struct segment {
    struct segment *next;
    struct spool *spool;
    int fd;
    char *path;
    uint64_t bytes;  /* of records */
    uint64_t zeroed; /* the file's length: zeros from bytes to here */
    size_t live;     /* unfinished pushes written here */
    size_t events;   /* webhook events written here and not yet acknowledged */
    unsigned holds;  /* syncs pending or waiting on it */
    int current;     /* receives appends */
    int dir_synced;  /* its name is durable in the directory */
    struct buf acks; /* acknowledgements not yet written: flushed once a loop turn */
    struct orphan *orphan; /* adopted and not all queued yet, else NULL */
};

struct commit {
    uv_work_t work;
    int fd;    /* the segment's */
    int dir;   /* the spool directory's, synced first; -1 if not needed */
    int error; /* of the sync that failed, or 0 */
    int batch; /* the batch policy's single sync in flight */
    struct spool *spool;
    struct segment *seg;
    struct spool_waiter *waiters;
    struct commit *next, **prev; /* in spool->commits */
};

struct spool {
    uv_loop_t *loop;
    const struct fcmd_options *opts;
    struct shm_region *shm;
    struct shm_slot *slot;
    struct queue *queue;
    void (*on_replay)(void *);
    void *arg;
    enum spool_fsync policy;
    int dir_fd; /* the spool directory, for syncing new segments' names */
    struct segment *segments;
    struct segment *cur;
    uint64_t next_id;
    struct spool_waiter *waiting; /* batch: for the next fsync of cur */
    int batch_in_flight;    /* batch: a sync is running; the next waits for it */
    uint64_t bytes;         /* this child's, as published */
    int64_t others;         /* the other children's bytes, as of others_at */
    uint64_t others_at;     /* loop time of that reading; UINT64_MAX for none */
    uv_check_t check;
    uv_timer_t rescan;
    struct buf scratch;
    size_t orphans;         /* adopted segments with pushes still to queue */
    int stopping;           /* no adopting, no feeding */
    int failing;            /* the last write failed */
    struct request_limits limits; /* for checking adopted pushes */
    struct log_limit error_log;
    dev_t skipped_dev[16];  /* files refused once, so they are not logged every scan */
    ino_t skipped_ino[16];
    unsigned nskipped;
    spool_event_fn *on_event; /* with a webhook: takes adopted segments' events */
    void *event_arg;
    struct commit *commits; /* syncs on the thread pool */
    unsigned works;         /* syncs and adoptions on the thread pool */
    int closed;             /* spool_close(): freed once its works are back and its handles closed */
    unsigned closing;       /* handles spool_close() closes that libuv has not closed yet */
};

int spool_fsync_policy(const char *word)
{
    static const char *const words[] = {"never", "batch", "always"};

    for (int i = 0; i < 3; i++)
        if (strcmp(word, words[i]) == 0)
            return i;
    return -1;
}

static void publish(struct spool *s)
{
    uint64_t bytes = 0, n = 0;

    for (struct segment *g = s->segments; g; g = g->next) {
        bytes += g->bytes;
        n++;
    }
    s->bytes = bytes;
    shm_gauge_set(s->slot, SHM_SPOOL_BYTES, (int64_t)bytes);
    shm_gauge_set(s->slot, SHM_SPOOL_SEGMENTS, (int64_t)n);
}

/* Write errors come in floods (a full disk fails every request): the log
 * says so once per ERROR_LOG_MS, with a count. */
static void write_error(struct spool *s, const char *path, const char *why)
{
    s->failing = 1;
    log_limited(&s->error_log, LOG_ERROR, "spool: cannot write %s: %s", path, why);
}

/* Deletes path only while it still names the file open at fd: a name is
 * never trusted to mean the file this child holds. */
static void unlink_same(const char *path, int fd)
{
    struct stat held, named;

    if (fstat(fd, &held) != 0 || lstat(path, &named) != 0) {
        if (errno != ENOENT)
            log_error("spool: stat(%s) failed: %s", path, strerror(errno));
        return;
    }
    if (held.st_dev != named.st_dev || held.st_ino != named.st_ino) {
        log_warn("spool: %s names another file than the one this worker held: left alone", path);
        return;
    }
    if (unlink(path) != 0 && errno != ENOENT)
        log_error("spool: unlink(%s) failed: %s", path, strerror(errno));
}

static void orphan_free(struct orphan *o)
{
    spool_replay_free(&o->left);
    if (o->map != NULL)
        munmap(o->map, o->map_len);
    free(o);
}

/* Closes and deletes a segment nobody needs any more. */
static void release(struct spool *s, struct segment *g)
{
    struct segment **pp;

    if (g->live > 0 || g->events > 0 || g->holds > 0 || g->current || g->orphan != NULL)
        return;
    for (pp = &s->segments; *pp != g; pp = &(*pp)->next)
        ;
    *pp = g->next;
    buf_free(&g->acks);
    unlink_same(g->path, g->fd);
    close(g->fd);
    free(g->path);
    free(g);
    publish(s);
}

/* At exit: closes a segment that holds unfinished pushes, and so unlocks it
 * for the next child or the next start; the file stays. */
static void let_go(struct spool *s, struct segment *g)
{
    struct segment **pp;

    for (pp = &s->segments; *pp != g; pp = &(*pp)->next)
        ;
    *pp = g->next;
    if (g->orphan != NULL)
        orphan_free(g->orphan);
    buf_free(&g->acks);
    close(g->fd);
    free(g->path);
    free(g);
}

/* At exit, once no sync is pending on it: a finished segment goes, the
 * others stay for the next child. */
static void close_segment(struct spool *s, struct segment *g)
{
    g->current = 0;
    if (g->live == 0 && g->events == 0 && g->orphan == NULL)
        release(s, g);
    else
        let_go(s, g);
}

static void spool_free(struct spool *s)
{
    if (!s->closed || s->works > 0 || s->closing > 0)
        return;
    if (s->dir_fd >= 0)
        close(s->dir_fd);
    buf_free(&s->scratch);
    free(s);
}

static struct segment *add_segment(struct spool *s, int fd, char *path, uint64_t bytes)
{
    struct segment *g = calloc(1, sizeof(*g));

    if (g == NULL)
        return NULL;
    g->spool = s;
    g->fd = fd;
    g->path = path;
    g->bytes = bytes;
    g->next = s->segments;
    s->segments = g;
    publish(s);
    return g;
}

/* 128 random bits as hex: a segment's name, unique per process start
 * whatever the process ids are (in a container every start has the same). */
static int random_name(char out[33])
{
    unsigned char r[16];

    if (getrandom(r, sizeof(r), 0) != (ssize_t)sizeof(r))
        return -1;
    for (int i = 0; i < 16; i++)
        snprintf(out + 2 * i, 3, "%02x", r[i]);
    return 0;
}

/* A new segment: created under a temporary name with O_EXCL, locked, then
 * renamed without replacing anything, so a scanning child never takes it
 * for an orphan and no other file is ever overwritten. */
static struct segment *open_segment(struct spool *s)
{
    char name[33], tmp[4200], path[4200];
    int fd;

    if (random_name(name) != 0) {
        write_error(s, s->opts->spool, "getrandom() failed");
        return NULL;
    }
    snprintf(tmp, sizeof(tmp), "%s/%s.tmp", s->opts->spool, name);
    snprintf(path, sizeof(path), "%s/%s.seg", s->opts->spool, name);
    if ((fd = open(tmp, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0640)) < 0) {
        write_error(s, tmp, strerror(errno));
        return NULL;
    }
    if (flock(fd, LOCK_EX | LOCK_NB) != 0 || renameat2(AT_FDCWD, tmp, AT_FDCWD, path, RENAME_NOREPLACE) != 0) {
        write_error(s, path, strerror(errno));
        unlink_same(tmp, fd);
        close(fd);
        return NULL;
    }
    struct segment *g;
    char *p = strdup(path);
    if (p == NULL || (g = add_segment(s, fd, p, 0)) == NULL) {
        free(p);
        unlink_same(path, fd);
        close(fd);
        return NULL;
    }
    g->current = 1;
    return g;
}

static int write_at(int fd, const void *data, size_t n, uint64_t off)
{
    const char *p = data;

    while (n > 0) {
        ssize_t w = pwrite(fd, p, n, (off_t)off);
        if (w < 0 && errno == EINTR)
            continue;
        if (w <= 0)
            return -1;
        p += w;
        n -= (size_t)w;
        off += (uint64_t)w;
    }
    return 0;
}

static const char zeros[65536];

static int write_zeros(int fd, uint64_t from, uint64_t to)
{
    while (from < to) {
        size_t n = to - from < sizeof(zeros) ? (size_t)(to - from) : sizeof(zeros);
        if (write_at(fd, zeros, n, from) != 0)
            return -1;
        from += n;
    }
    return 0;
}

/* Makes the file at least `need` bytes long, in zeros ahead of the records
 * (see the top of this file); page-cache writes, once a ZERO_AHEAD. */
static int zero_ahead(struct spool *s, struct segment *g, uint64_t need)
{
    uint64_t segment = (uint64_t)s->opts->spool_segment_bytes;
    uint64_t to = need + (segment < ZERO_AHEAD ? segment : ZERO_AHEAD);

    if (s->policy == SPOOL_FSYNC_NEVER || need <= g->zeroed)
        return 0;
    if (write_zeros(g->fd, g->zeroed, to) != 0)
        return -1;
    g->zeroed = to;
    return 0;
}

/* Makes every record of g unreadable.  A few records are overwritten with
 * zeros, so the file keeps the zeros it has ahead (truncating would make the
 * next sync write and journal a whole ZERO_AHEAD again: at a few messages a
 * second the spool empties after each one); many are cut off. */
static int clear_records(struct segment *g)
{
    if (g->zeroed > 0 && g->bytes <= ZERO_AHEAD)
        return write_zeros(g->fd, 0, g->bytes);
    if (ftruncate(g->fd, 0) != 0)
        return -1;
    g->zeroed = 0;
    return 0;
}

/* When everything in the current segment is finished, it is emptied rather
 * than replaced, so an idle spool holds no records.  Returns 1 if g is the
 * current segment (which is never released). */
static int empty_current(struct spool *s, struct segment *g)
{
    if (g != s->cur)
        return 0;
    if (g->live == 0 && g->events == 0 && g->holds == 0 && s->waiting == NULL && g->bytes > 0 &&
        clear_records(g) == 0) {
        buf_reset(&g->acks); /* every push in it is finished: its acknowledgements are moot */
        g->bytes = 0;
        publish(s);
    }
    return 1;
}

/* ---- commits ---- */

static void on_check(uv_check_t *h);
static void feed(struct spool *s);

/* On a thread-pool thread.  The first syncs of a new segment sync the
 * directory too, so that its name survives a power loss with its records. */
static void sync_work(uv_work_t *work)
{
    struct commit *c = work->data;

    if (c->dir >= 0 && fsync(c->dir) != 0)
        c->error = errno;
    else if (fdatasync(c->fd) != 0)
        c->error = errno;
}

static void on_synced(uv_work_t *work, int status)
{
    struct commit *c = work->data;
    struct spool *s = c->spool;
    int ok = status == 0 && c->error == 0;

    if ((*c->prev = c->next) != NULL)
        c->next->prev = c->prev;
    s->works--;
    if (s->closed) { /* its waiters were let go at spool_close() */
        if (--c->seg->holds == 0)
            close_segment(s, c->seg);
        free(c);
        spool_free(s);
        return;
    }

    /* Group commit: what arrived while this sync ran goes in the next one. */
    if (c->batch) {
        s->batch_in_flight = 0;
        if (s->waiting != NULL)
            uv_check_start(&s->check, on_check);
    }

    shm_add(s->slot, SHM_SPOOL_SYNCS, 1);
    if (!ok)
        log_error("spool: syncing %s failed: %s", c->seg->path, c->error ? strerror(c->error) : uv_strerror(status));
    else if (c->dir >= 0)
        c->seg->dir_synced = 1;
    while (c->waiters) {
        struct spool_waiter *w = c->waiters;
        c->waiters = w->next;
        w->done(w->arg, ok);
    }
    c->seg->holds--;
    if (!empty_current(s, c->seg))
        release(s, c->seg);
    free(c);
}

static void start_commit(struct spool *s, struct segment *g, struct spool_waiter *waiters, int batch)
{
    struct commit *c = calloc(1, sizeof(*c));

    if (c != NULL) {
        c->work.data = c;
        c->fd = g->fd;
        c->dir = g->dir_synced ? -1 : s->dir_fd;
    }
    if (c == NULL || uv_queue_work(s->loop, &c->work, sync_work, on_synced) != 0) {
        /* Cannot even ask: say so to everybody waiting. */
        while (waiters) {
            struct spool_waiter *w = waiters;
            waiters = w->next;
            w->done(w->arg, 0);
        }
        g->holds--;
        free(c);
        release(s, g);
        return;
    }
    c->batch = batch;
    c->spool = s;
    c->seg = g;
    c->waiters = waiters;
    if ((c->next = s->commits) != NULL)
        c->next->prev = &c->next;
    c->prev = &s->commits;
    s->commits = c;
    s->works++;
    if (batch)
        s->batch_in_flight = 1;
}

/* After the loop handled this turn's requests: one sync for all of them. */
static int append(struct spool *s, struct segment *g, struct buf *b);

static void flush_acks(struct spool *s)
{
    for (struct segment *g = s->segments; g; g = g->next) {
        if (g->acks.len == 0)
            continue;
        append(s, g, &g->acks);
        buf_reset(&g->acks);
    }
}

static void on_check(uv_check_t *h)
{
    struct spool *s = h->data;
    struct spool_waiter *w;

    uv_check_stop(h);
    flush_acks(s);
    feed(s);
    w = s->waiting;
    if (w == NULL || s->cur == NULL || s->batch_in_flight)
        return;
    s->waiting = NULL;
    start_commit(s, s->cur, w, 1);
}

int spool_commit(struct spool *s, struct spool_waiter *w, void (*done)(void *, int), void *arg)
{
    if (s->policy == SPOOL_FSYNC_NEVER || s->cur == NULL)
        return 0;
    w->done = done;
    w->arg = arg;
    if (s->policy == SPOOL_FSYNC_ALWAYS) {
        w->next = NULL;
        s->cur->holds++;
        start_commit(s, s->cur, w, 0);
        return 1;
    }
    if (s->waiting == NULL) {
        s->cur->holds++; /* released by the batch's commit */
        if (!s->batch_in_flight)
            uv_check_start(&s->check, on_check);
    }
    w->next = s->waiting;
    s->waiting = w;
    return 1;
}

/* ---- appends ---- */

static void retire_current(struct spool *s)
{
    struct segment *g = s->cur;

    if (g == NULL)
        return;
    if (s->waiting != NULL) {
        /* The batch belongs to this segment: sync it now. */
        struct spool_waiter *w = s->waiting;
        s->waiting = NULL;
        uv_check_stop(&s->check);
        start_commit(s, g, w, 0);
    }
    g->current = 0;
    s->cur = NULL;
    release(s, g);
}

static int append(struct spool *s, struct segment *g, struct buf *b)
{
    if (b->failed || zero_ahead(s, g, g->bytes + b->len) != 0 || write_at(g->fd, b->data, b->len, g->bytes) != 0) {
        write_error(s, g->path, b->failed ? "out of memory" : strerror(errno));
        return -1;
    }
    g->bytes += b->len;
    s->failing = 0;
    publish(s);
    return 0;
}

int spool_ready(const struct spool *s)
{
    return !s->failing;
}

int spool_has_room(struct spool *s, size_t bytes)
{
    uint64_t now = uv_now(s->loop);

    /* Every slot is its own cache line: read the others at most once a
     * millisecond, not on every request; this child's own bytes are exact. */
    if (now != s->others_at) {
        s->others = 0;
        for (unsigned i = 0; i < SHM_MAX_SLOTS; i++)
            if (&s->shm->slots[i] != s->slot)
                s->others += atomic_load_explicit(&s->shm->slots[i].gauges[SHM_SPOOL_BYTES], memory_order_relaxed);
        s->others_at = now;
    }
    return (uint64_t)(s->others > 0 ? s->others : 0) + s->bytes + bytes <= (uint64_t)s->opts->spool_max_bytes;
}

int spool_append(struct spool *s, const struct send_request *r, struct spool_mark *m)
{
    if (s->cur != NULL && s->cur->bytes >= (uint64_t)s->opts->spool_segment_bytes)
        retire_current(s);
    if (s->cur == NULL && (s->cur = open_segment(s)) == NULL)
        return -1;
    buf_reset(&s->scratch);
    m->id = ++s->next_id;
    m->seg = s->cur;
    record_encode_push(&s->scratch, m->id, r);
    return append(s, s->cur, &s->scratch);
}

void spool_bind(struct spool *s, const struct spool_mark *m, struct push *p)
{
    (void)s;
    p->spool_seg = m->seg;
    p->spool_id = m->id;
    m->seg->live++;
}

static void ack(struct spool *s, struct segment *g, uint64_t id, const uint32_t *indexes, size_t n)
{
    /* Written with the others after this loop turn: a lost acknowledgement
     * only means one more delivery after a crash. */
    record_encode_ack(&g->acks, id, indexes, n);
    if (g->acks.failed)
        buf_free(&g->acks);
    uv_check_start(&s->check, on_check);
}

void spool_ack(struct spool *s, struct push *p, const uint32_t *indexes, size_t n)
{
    if (p->spool_seg != NULL && n > 0)
        ack(s, p->spool_seg, p->spool_id, indexes, n);
}

void spool_forget(struct spool *s, const struct spool_mark *m, size_t ntargets)
{
    uint32_t *idx = malloc((ntargets ? ntargets : 1) * sizeof(*idx));

    /* Without memory for the acknowledgement the record stays; replaying it
     * later delivers a push that was answered 503: at least once. */
    if (idx == NULL || m->seg == NULL) {
        free(idx);
        return;
    }
    for (size_t i = 0; i < ntargets; i++)
        idx[i] = (uint32_t)i;
    ack(s, m->seg, m->id, idx, ntargets);
    free(idx);
}

void spool_push_done(struct spool *s, struct push *p)
{
    struct segment *g = p->spool_seg;

    if (g == NULL)
        return;
    p->spool_seg = NULL;
    g->live--;
    if (s->orphans > 0)
        uv_check_start(&s->check, on_check); /* room for more of an adopted segment */
    if (!empty_current(s, g))
        release(s, g);
}

/* ---- webhook events ---- */

struct segment *spool_event_keep(struct spool *s, const struct push *p, uint64_t at_ms, const char *app,
                                 size_t app_len, const char *id, size_t id_len, const char *text, size_t len)
{
    struct segment *g = p->spool_seg;

    if (g == NULL || id_len == 0 || id_len > RECORD_EVENT_ID_MAX || app_len > APP_NAME_MAX ||
        len > RECORD_EVENT_TEXT_MAX)
        return NULL;
    record_encode_event(&g->acks, at_ms, app, app_len, id, id_len, text, len);
    if (g->acks.failed) {
        buf_free(&g->acks); /* as an acknowledgement lost: the outcome's event is then memory's alone */
        return NULL;
    }
    g->events++;
    uv_check_start(&s->check, on_check);
    return g;
}

void spool_event_done(struct spool *s, struct segment *g, const char *const *ids, const uint8_t *lens, size_t n)
{
    if (g == NULL || n == 0)
        return;
    record_encode_event_ack(&g->acks, ids, lens, n);
    if (g->acks.failed)
        buf_free(&g->acks); /* the events come back after a crash: at least once */
    g->events = g->events > n ? g->events - n : 0;
    uv_check_start(&s->check, on_check);
    if (g->events == 0 && g->live == 0 && !empty_current(s, g))
        release(s, g);
}

void spool_on_events(struct spool *s, spool_event_fn *fn, void *arg)
{
    s->on_event = fn;
    s->event_arg = arg;
}

/* Hands the events an adopted segment holds to the webhook; those it does
 * not take are acknowledged at once. */
static void adopt_events(struct spool *s, struct segment *g, const struct spool_replay *o)
{
    size_t dropped = 0;

    for (size_t i = 0; i < o->nevents; i++) {
        const struct record_event *e = &o->events[i].ev;
        if (s->on_event != NULL &&
            s->on_event(s->event_arg, g, e->at_ms, e->app, e->app_len, e->id, e->id_len, e->text, e->len)) {
            g->events++;
            continue;
        }
        uint8_t len = (uint8_t)e->id_len;
        record_encode_event_ack(&g->acks, &e->id, &len, 1);
        dropped++;
    }
    if (g->acks.failed)
        buf_free(&g->acks);
    if (dropped > 0) {
        log_warn("spool: %s: %zu webhook events for no webhook of this configuration: dropped", g->path, dropped);
        uv_check_start(&s->check, on_check);
    }
    if (o->nevents > 0)
        log_info("spool: %s: %zu webhook events to tell", g->path, o->nevents - dropped);
}

/* ---- adoption ---- */

/* Queues pushes of one adopted segment while the queue has room (an empty
 * queue always takes one, however large).  Returns the targets queued. */

/* The pushes of a segment just adopted keep their Idempotency-Keys, all
 * at once rather than as each is queued: after a restart, a client's retry
 * of any push still in the spool is a duplicate, however long the queue
 * takes to reach it. */
static void remember_keys(struct spool *s, const struct spool_replay *o)
{
    char key[IDEM_LEDGER_KEY_MAX], id[PUSH_ID_MAX + 1];
    uint64_t now = ledger_now_ms(), ttl = (uint64_t)s->opts->idempotency_ttl * 1000;

    for (size_t i = 0; i < o->n; i++) {
        struct record_push p;
        int a;
        if (record_decode_push(&o->v[i].rec, &p) != 0 || p.idem_key == NULL || p.fingerprint == NULL ||
            p.push_id == NULL || (a = options_app_find(s->opts, p.app, p.app_len)) < 0)
            continue;
        memcpy(id, p.push_id, p.push_id_len);
        id[p.push_id_len] = '\0';
        idempotency_restore(s->shm->idempotency, key,
                            idempotency_ledger_key(key, a == APP_DEFAULT ? "" : options_app_name(s->opts, (unsigned)a),
                                                   p.idem_key, p.idem_key_len),
                            p.fingerprint, id, o->v[i].ntargets, now, ttl);
    }
}

static size_t feed_one(struct spool *s, struct segment *g)
{
    struct spool_replay *o = &g->orphan->left;
    size_t queued = 0;
    char err[256];

    while (o->next < o->n) {
        struct spool_replay_push *rp = &o->v[o->next];
        struct send_request r;
        uint32_t *index = NULL;
        struct push *p = NULL;
        int rc = spool_replay_request(rp, &r, &index);
        if (rc == 0) { /* an app this start does not have: its targets fail as not configured */
            int a = options_app_find(s->opts, r.app, r.app_len);
            r.app_index = a < 0 ? APP_NONE : (unsigned)a;
        }
        if (rc == 0 && request_check(&r, &s->limits, err, sizeof(err)) != 0) {
            log_warn("spool: %s: push record at offset %zu skipped: %s", g->path, rp->rec.offset, err);
            shm_pending_add(s->slot, -(int64_t)(rp->ntargets - rp->acked));
            shm_add(s->slot, SHM_FAILURES, rp->ntargets - rp->acked);
            atomic_fetch_add_explicit(&s->slot->failures_by[CAUSE_SPOOL_RECORD], rp->ntargets - rp->acked,
                                      memory_order_relaxed);
        } else if (rc == 0 && !queue_has_room(s->queue, r.ntargets, queue_cost(&r)) && s->queue->pending > 0) {
            request_free(&r);
            free(index);
            break;
        } else if (rc != 0 || (p = queue_accept(s->queue, &r)) == NULL) {
            request_free(&r);
            free(index);
            /* Not a write failure: the spool stays ready; log like one, though. */
            log_limited(&s->error_log, LOG_ERROR, "spool: out of memory queueing a push of %s", g->path);
            break; /* the next push done or rescan tries again */
        } else {
            p->spool_seg = g;
            p->spool_id = rp->id;
            p->status = push_status_track(s->shm->push_status, s->opts, p->id, p->app, p->app_name, (unsigned)p->upstream,
                                          rp->ntargets - rp->acked);
            g->live++;
            queued += r.ntargets;
        }
        request_free(&r);
        free(index);
        free(rp->bits);
        o->next++;
    }
    if (o->next == o->n) {
        orphan_free(g->orphan);
        g->orphan = NULL;
        s->orphans--;
        release(s, g);
    }
    return queued;
}

static void feed(struct spool *s)
{
    size_t queued = 0;

    if (s->stopping)
        return;
    for (struct segment *g = s->segments, *next; g != NULL && s->orphans > 0; g = next) {
        next = g->next; /* feed_one may release g */
        if (g->orphan != NULL)
            queued += feed_one(s, g);
    }
    if (queued > 0)
        s->on_replay(s->arg);
}

/* An adoption in progress: the file is mapped and read on the thread pool
 * (a large or crafted file must not hold up the loop), then taken over on
 * the loop. */
struct adoption {
    uv_work_t work;
    struct spool *spool;
    int fd; /* open and locked */
    char *path;
    size_t size;
    struct orphan *orphan;
    int error; /* errno of what failed on the pool, or 0 */
};

/* On a thread-pool thread: touches nothing but the adoption. */
static void adopt_read(uv_work_t *w)
{
    struct adoption *a = w->data;
    struct orphan *o = calloc(1, sizeof(*o));

    if ((a->orphan = o) == NULL) {
        a->error = ENOMEM;
        return;
    }
    if (a->size > 0 && (o->map = mmap(NULL, a->size, PROT_READ, MAP_PRIVATE, a->fd, 0)) == MAP_FAILED) {
        a->error = errno;
        o->map = NULL;
        return;
    }
    o->map_len = a->size;
    if (spool_replay_read(&o->left, o->map, a->size, a->path) != 0)
        a->error = ENOMEM;
}

static void adopt_done(uv_work_t *w, int status)
{
    struct adoption *a = w->data;
    struct spool *s = a->spool;
    struct orphan *o = a->orphan;
    struct segment *g;

    s->works--;
    if (status != 0 || a->error != 0 || s->stopping || (g = add_segment(s, a->fd, a->path, o->left.records_end)) == NULL) {
        if (!s->stopping)
            log_error("spool: cannot adopt %s now (%s): left for a later scan", a->path,
                      a->error ? strerror(a->error) : status ? uv_strerror(status) : "out of memory");
        if (o != NULL)
            orphan_free(o);
        close(a->fd); /* unlocked: the next scan tries again */
        free(a->path);
        free(a);
        spool_free(s);
        return;
    }
    g->zeroed = a->size; /* whatever follows the records: acknowledgements overwrite it */
    g->dir_synced = 1;
    free(a);
    log_info("spool: adopted %s: %zu targets of %zu pushes to deliver", g->path, o->left.targets, o->left.n);
    adopt_events(s, g, &o->left);
    if (o->left.n == 0) {
        orphan_free(o);
        release(s, g);
        return;
    }
    g->orphan = o;
    s->orphans++;
    remember_keys(s, &o->left);
    shm_pending_add(s->slot, (int64_t)o->left.targets);
    shm_add(s->slot, SHM_REPLAYED, o->left.targets);
    feed(s);
}

/* Takes over the segment of a dead child, open and locked at fd. */
static void adopt(struct spool *s, int fd, char *path, size_t size)
{
    struct adoption *a = calloc(1, sizeof(*a));

    if (a != NULL) {
        *a = (struct adoption){.spool = s, .fd = fd, .path = path, .size = size};
        a->work.data = a;
    }
    if (a == NULL || uv_queue_work(s->loop, &a->work, adopt_read, adopt_done) != 0) {
        log_error("spool: cannot adopt %s now: left for a later scan", path);
        free(a);
        close(fd);
        free(path);
        return;
    }
    s->works++;
}

static int ends_with(const char *s, const char *suffix)
{
    size_t n = strlen(s), k = strlen(suffix);

    return n > k && strcmp(s + n - k, suffix) == 0;
}

/* A file in the spool directory that is not a segment this user could
 * have written is refused, and said so once. */
static void refuse_file(struct spool *s, const char *path, const struct stat *st, const char *why)
{
    for (unsigned i = 0; i < s->nskipped; i++)
        if (s->skipped_dev[i] == st->st_dev && s->skipped_ino[i] == st->st_ino)
            return;
    if (s->nskipped < sizeof(s->skipped_ino) / sizeof(s->skipped_ino[0])) {
        s->skipped_dev[s->nskipped] = st->st_dev;
        s->skipped_ino[s->nskipped++] = st->st_ino;
    }
    log_warn("spool: %s skipped: %s", path, why);
}

/* The largest file a segment can be: the whole spool's bound, one more
 * record (a body, twice over), and the zeros kept ahead. */
static uint64_t max_segment_file(const struct spool *s)
{
    return (uint64_t)s->opts->spool_max_bytes + 2 * (uint64_t)s->opts->max_body_bytes + 2 * ZERO_AHEAD;
}

/* Opens and locks a segment nobody holds; -1 when it is not one. */
static int claim(struct spool *s, const char *path, struct stat *st)
{
    int fd = open(path, O_RDWR | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC);

    if (fd < 0) {
        if (errno == ELOOP && lstat(path, st) == 0)
            refuse_file(s, path, st, "a symbolic link");
        return -1;
    }
    /* Held by a live child (this one included): not an orphan.  Deleted by
     * the child that held it a moment ago: gone. */
    if (flock(fd, LOCK_EX | LOCK_NB) != 0 || fstat(fd, st) != 0 || st->st_nlink == 0) {
        close(fd);
        return -1;
    }
    if (!S_ISREG(st->st_mode) || st->st_nlink != 1 || st->st_uid != geteuid()) {
        refuse_file(s, path, st, "not a regular file of fcmd's user with one name");
        close(fd);
        return -1;
    }
    if ((uint64_t)st->st_size > max_segment_file(s)) {
        refuse_file(s, path, st, "larger than any segment fcmd writes under these settings");
        close(fd);
        return -1;
    }
    return fd;
}

void spool_scan(struct spool *s)
{
    DIR *d;
    struct dirent *e;

    if (s->stopping)
        return;
    if ((d = opendir(s->opts->spool)) == NULL) {
        log_error("spool: cannot read %s: %s", s->opts->spool, strerror(errno));
        return;
    }
    while ((e = readdir(d)) != NULL) {
        char path[4200], *p;
        struct stat st;
        int fd, tmp = ends_with(e->d_name, ".tmp");
        if ((!tmp && !ends_with(e->d_name, ".seg")) || e->d_name[0] == '.')
            continue;
        snprintf(path, sizeof(path), "%s/%s", s->opts->spool, e->d_name);
        /* A young .tmp may be a segment another worker is creating: even a
         * moment's lock on it would fail that worker's rename. */
        if (tmp && (lstat(path, &st) != 0 || st.st_mtime >= time(NULL) - 60))
            continue;
        if ((fd = claim(s, path, &st)) < 0)
            continue;
        if (tmp) {
            unlink_same(path, fd); /* a child died creating it: no record is ever written there */
            close(fd);
            continue;
        }
        if ((p = strdup(path)) == NULL) {
            close(fd);
            continue;
        }
        adopt(s, fd, p, (size_t)st.st_size);
    }
    closedir(d);
}

/* While writes fail, allocating 64 KiB past the current segment's end (or
 * making a new segment) finds out when writes would succeed again, so the
 * worker does not need a request to learn it is ready. */
static void probe(struct spool *s)
{
    struct stat st;
    uint64_t at;
    int rc;

    if (s->cur == NULL && (s->cur = open_segment(s)) == NULL)
        return;
    /* Past every block the file may have (a failed write can leave some
     * allocated): space that is there already proves nothing. */
    if (fstat(s->cur->fd, &st) != 0) {
        write_error(s, s->cur->path, strerror(errno));
        return;
    }
    at = (uint64_t)st.st_size > s->cur->zeroed ? (uint64_t)st.st_size : s->cur->zeroed;
    at = (at + PROBE_BYTES - 1) / PROBE_BYTES * PROBE_BYTES + PROBE_BYTES;
    rc = fallocate(s->cur->fd, 0, (off_t)at, PROBE_BYTES);
    if (rc != 0 && errno == EOPNOTSUPP)
        rc = write_zeros(s->cur->fd, at, at + PROBE_BYTES);
    if (rc != 0) {
        write_error(s, s->cur->path, strerror(errno));
        return;
    }
    s->cur->zeroed = at + PROBE_BYTES; /* a hole up to at reads as zeros */
    s->failing = 0;
    log_info("spool: %s can be written again", s->opts->spool);
}

static void on_rescan(uv_timer_t *t)
{
    struct spool *s = t->data;

    if (s->failing)
        probe(s);
    log_limit_flush(&s->error_log, LOG_ERROR, "spool write errors", 0);
    spool_scan(s);
    feed(s);
}

struct spool *spool_open(uv_loop_t *loop, const struct fcmd_options *o, struct shm_region *shm, struct shm_slot *slot,
                         struct queue *q, const struct request_limits *intake, void (*on_replay)(void *), void *arg)
{
    struct spool *s = calloc(1, sizeof(*s));

    if (s == NULL)
        return NULL;
    s->loop = loop;
    s->opts = o;
    s->shm = shm;
    s->slot = slot;
    s->queue = q;
    s->on_replay = on_replay;
    s->arg = arg;
    s->policy = (enum spool_fsync)spool_fsync_policy(o->spool_fsync);
    s->others_at = UINT64_MAX;
    s->dir_fd = -1;
    s->error_log = (struct log_limit)LOG_LIMIT_INIT(ERROR_LOG_MS);
    shm_gauge_set(slot, SHM_SPOOL_MAX_BYTES, (int64_t)o->spool_max_bytes); /* what spool_bytes is held against */
    /* What a record holds is checked for validity, not size: it was accepted
     * under the limits of its day, which may have been looser than today's;
     * the providers' rules are intake's. */
    s->limits = *intake;
    s->limits.max_body = s->limits.max_tokens = s->limits.max_payload = SIZE_MAX;
    if (s->policy != SPOOL_FSYNC_NEVER && (s->dir_fd = open(o->spool, O_RDONLY | O_DIRECTORY | O_CLOEXEC)) < 0)
        log_warn("spool: cannot open %s to sync it: %s (new segments' names are not synced)", o->spool,
                 strerror(errno));
    uv_check_init(loop, &s->check);
    s->check.data = s;
    uv_timer_init(loop, &s->rescan);
    s->rescan.data = s;
    uv_timer_start(&s->rescan, on_rescan, RESCAN_MS, RESCAN_MS);
    uv_unref((uv_handle_t *)&s->rescan);
    return s;
}

void spool_stop(struct spool *s)
{
    if (s == NULL)
        return;
    s->stopping = 1;
    uv_timer_stop(&s->rescan);
}

/* The worker stops before the sync's outcome is known: see spool_commit(). */
static void let_waiters_go(struct spool_waiter *w)
{
    while (w != NULL) {
        struct spool_waiter *next = w->next;
        w->done(w->arg, -1);
        w = next;
    }
}

static void on_handle_closed(uv_handle_t *h)
{
    struct spool *s = h->data;

    s->closing--;
    spool_free(s);
}

void spool_close(struct spool *s)
{
    if (s == NULL)
        return;
    s->stopping = 1;
    uv_timer_stop(&s->rescan);
    flush_acks(s);
    log_limit_flush(&s->error_log, LOG_ERROR, "spool write errors", 1);
    /* Those waiting for a sync let go of their pushes; a sync not started
     * yet is called off, one running is waited for (the segment and the
     * directory stay open for it). */
    if (s->waiting != NULL) {
        let_waiters_go(s->waiting);
        s->waiting = NULL;
        s->cur->holds--; /* the batch's, taken by spool_commit() */
    }
    for (struct commit *c = s->commits; c != NULL; c = c->next) {
        let_waiters_go(c->waiters);
        c->waiters = NULL;
        uv_cancel((uv_req_t *)&c->work);
    }
    s->cur = NULL;
    s->closed = 1;
    /* Finished segments go; the others stay, unlocked, for the next child. */
    for (struct segment *g = s->segments, *next; g; g = next) {
        next = g->next;
        g->current = 0;
        if (g->holds == 0)
            close_segment(s, g);
    }
    s->closing = 2;
    uv_close((uv_handle_t *)&s->check, on_handle_closed);
    uv_close((uv_handle_t *)&s->rescan, on_handle_closed);
}
