/*
 * child/spool.c - segments, group commit and replay.
 *
 * Appends are plain write()s from the loop (to the page cache); only fsync
 * is slow, so it runs on libuv's thread pool.  With spool_fsync = batch,
 * answers wait in a list and one fdatasync covers every request accepted in
 * a loop turn (a uv_check handle starts it); with always, each answer gets
 * its own.  At most one batch sync runs at a time: whatever arrives while it
 * runs is covered by the next (group commit).  A segment stays open while any of its pushes is unfinished or a
 * sync is pending on it, and is deleted after.  The current segment is
 * replaced when it reaches spool_segment_bytes, and emptied as soon as it
 * holds no unfinished push, so an idle spool holds no records.
 *
 * Records are written with pwrite() at the segment's end of records.  When
 * syncs matter (batch, always), the file is kept up to ZERO_AHEAD bytes of
 * zeros longer than its records: an fdatasync() that only has to write data
 * into blocks the file already has needs no journal commit for a new size,
 * which cuts what a sync costs by about 40%; the size grows once a
 * ZERO_AHEAD.  A reader takes an all-zero tail for the end of the records.
 */
#include "spool.h"
#include "../master/log.h"
#include "../master/options.h"
#include "../shm/region.h"
#include "buf.h"
#include "queue.h"
#include "spool_record.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#define RESCAN_MS 10000
#define MAX_REPLAY_BYTES (1ull << 30)
#define ZERO_AHEAD (1u << 20)

struct segment {
    struct segment *next;
    struct spool *spool;
    int fd;
    char *path;
    uint64_t bytes;  /* of records */
    uint64_t zeroed; /* the file's length: zeros from bytes to here */
    size_t live;     /* unfinished pushes written here */
    unsigned holds;  /* syncs pending or waiting on it */
    int current;     /* receives appends */
    int dir_synced;  /* its name is durable in the directory */
    struct buf acks; /* acknowledgements not yet written: flushed once a loop turn */
};

struct waiter {
    struct waiter *next;
    void (*done)(void *, int);
    void *arg;
};

struct commit {
    uv_work_t work;
    int fd;    /* the segment's */
    int dir;   /* the spool directory's, synced first; -1 if not needed */
    int error; /* of the sync that failed, or 0 */
    int batch; /* the batch policy's single sync in flight */
    struct spool *spool;
    struct segment *seg;
    struct waiter *waiters;
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
    unsigned seq;
    struct waiter *waiting; /* batch: for the next fsync of cur */
    int batch_in_flight;    /* batch: a sync is running; the next waits for it */
    uint64_t bytes;         /* this child's, as published */
    int64_t others;         /* the other children's bytes, as of others_at */
    uint64_t others_at;     /* loop time of that reading; UINT64_MAX for none */
    uv_check_t check;
    uv_timer_t rescan;
    struct buf scratch;
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

/* Closes and deletes a segment nobody needs any more. */
static void release(struct spool *s, struct segment *g)
{
    struct segment **pp;

    if (g->live > 0 || g->holds > 0 || g->current)
        return;
    for (pp = &s->segments; *pp != g; pp = &(*pp)->next)
        ;
    *pp = g->next;
    buf_free(&g->acks);
    if (unlink(g->path) != 0 && errno != ENOENT)
        log_error("spool: unlink(%s) failed: %s", g->path, strerror(errno));
    close(g->fd);
    free(g->path);
    free(g);
    publish(s);
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

/* A new segment: created under a temporary name, locked, then renamed, so a
 * scanning child never takes it for an orphan. */
static struct segment *open_segment(struct spool *s)
{
    char tmp[4200], path[4200];
    int fd = -1;

    for (int tries = 0; tries < 1000 && fd < 0; tries++) {
        snprintf(tmp, sizeof(tmp), "%s/%d-%u.tmp", s->opts->spool, (int)getpid(), s->seq++);
        fd = open(tmp, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0640);
        if (fd < 0 && errno != EEXIST)
            break;
    }
    if (fd < 0) {
        log_error("spool: cannot create a segment in %s: %s", s->opts->spool, strerror(errno));
        return NULL;
    }
    snprintf(path, sizeof(path), "%.*s.seg", (int)(strlen(tmp) - 4), tmp);
    if (flock(fd, LOCK_EX | LOCK_NB) != 0 || rename(tmp, path) != 0) {
        log_error("spool: cannot take %s: %s", tmp, strerror(errno));
        close(fd);
        unlink(tmp);
        return NULL;
    }
    struct segment *g;
    char *p = strdup(path);
    if (p == NULL || (g = add_segment(s, fd, p, 0)) == NULL) {
        free(p);
        close(fd);
        unlink(path);
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
    if (g->live == 0 && g->holds == 0 && s->waiting == NULL && g->bytes > 0 && clear_records(g) == 0) {
        buf_reset(&g->acks); /* every push in it is finished: its acknowledgements are moot */
        g->bytes = 0;
        publish(s);
    }
    return 1;
}

/* ---- commits ---- */

static void on_check(uv_check_t *h);

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
        struct waiter *w = c->waiters;
        c->waiters = w->next;
        w->done(w->arg, ok);
        free(w);
    }
    c->seg->holds--;
    if (!empty_current(s, c->seg))
        release(s, c->seg);
    free(c);
}

static void start_commit(struct spool *s, struct segment *g, struct waiter *waiters, int batch)
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
            struct waiter *w = waiters;
            waiters = w->next;
            w->done(w->arg, 0);
            free(w);
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
    struct waiter *w;

    uv_check_stop(h);
    flush_acks(s);
    w = s->waiting;
    if (w == NULL || s->cur == NULL || s->batch_in_flight)
        return;
    s->waiting = NULL;
    start_commit(s, s->cur, w, 1);
}

int spool_commit(struct spool *s, void (*done)(void *, int), void *arg)
{
    struct waiter *w;

    if (s->policy == SPOOL_FSYNC_NEVER || s->cur == NULL)
        return 0;
    if ((w = malloc(sizeof(*w))) == NULL)
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
        struct waiter *w = s->waiting;
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
        log_error("spool: write to %s failed: %s", g->path, b->failed ? "out of memory" : strerror(errno));
        return -1;
    }
    g->bytes += b->len;
    publish(s);
    return 0;
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
    spool_encode_push(&s->scratch, m->id, r);
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
    spool_encode_ack(&g->acks, id, indexes, n);
    if (g->acks.failed)
        buf_free(&g->acks);
    uv_check_start(&s->check, on_check);
}

void spool_ack(struct spool *s, struct push *p, const uint32_t *indexes, size_t n)
{
    if (p->spool_seg != NULL && n > 0)
        ack(s, p->spool_seg, p->spool_id, indexes, n);
}

void spool_ack_all(struct spool *s, const struct spool_mark *m, size_t ntargets)
{
    uint32_t *idx = malloc(ntargets * sizeof(*idx));

    if (idx == NULL)
        return;
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
    if (!empty_current(s, g))
        release(s, g);
}

/* ---- replay ---- */

struct rpush {
    struct spool_rec rec;
    uint64_t id;
    uint32_t ntargets;
    unsigned char *acked; /* bitmap */
};

static struct rpush *find(struct rpush *v, size_t n, uint64_t id)
{
    size_t lo = 0, hi = n;

    while (lo < hi) {
        size_t mid = (lo + hi) / 2;
        if (v[mid].id == id)
            return &v[mid];
        if (v[mid].id < id)
            lo = mid + 1;
        else
            hi = mid;
    }
    return NULL;
}

/* Re-spools and queues the unacknowledged targets of one push. */
static size_t requeue(struct spool *s, struct rpush *rp)
{
    struct spool_push p;
    struct send_request r;
    struct spool_mark m;
    struct push *pushed;
    size_t pos = 0, n = 0;
    const char *name;
    size_t len;
    uint32_t index;
    char *o;

    if (spool_decode_push(&rp->rec, &p) != 0)
        return 0;
    memset(&r, 0, sizeof(r));
    r.kind = p.kind;
    r.msg = p.msg;
    r.targets = calloc(p.ntargets ? p.ntargets : 1, sizeof(*r.targets));
    r.storage = o = malloc(p.targets_len + p.ntargets + 1);
    if (r.targets == NULL || o == NULL) {
        request_free(&r);
        return 0;
    }
    while (spool_push_target(&p, &pos, &index, &name, &len) == 0) {
        if (index < rp->ntargets && (rp->acked[index / 8] & (1u << (index % 8))))
            continue;
        memcpy(o, name, len);
        o[len] = '\0';
        r.targets[r.ntargets++] = o;
        o += len + 1;
    }
    if (r.ntargets > 0 && spool_append(s, &r, &m) == 0) {
        if ((pushed = queue_accept(s->queue, &r)) != NULL) {
            spool_bind(s, &m, pushed);
            shm_pending_add(s->slot, (int64_t)r.ntargets);
            shm_add(s->slot, SHM_REPLAYED, r.ntargets);
            n = r.ntargets;
        } else {
            spool_ack_all(s, &m, r.ntargets);
            log_error("spool: out of memory replaying %zu targets", r.ntargets);
        }
    }
    request_free(&r);
    return n;
}

static void orphan_durable(void *arg, int ok)
{
    struct segment *g = arg;

    (void)ok;
    g->holds--;
    release(g->spool, g);
}

static unsigned char *read_file(int fd, size_t size)
{
    unsigned char *data = malloc(size ? size : 1);
    size_t got = 0;

    while (data && got < size) {
        ssize_t n = pread(fd, data + got, size - got, (off_t)got);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            break;
        got += (size_t)n;
    }
    return data;
}

static void replay(struct spool *s, int fd, char *path, size_t size)
{
    struct spool_reader rd;
    struct spool_rec rec;
    struct rpush *v = NULL;
    size_t nv = 0, cap = 0, bad, corrupt = 0, targets = 0, pushes = 0;
    unsigned char *data = read_file(fd, size);
    struct segment *g;
    enum spool_read st;

    if (data == NULL || (g = add_segment(s, fd, path, size)) == NULL) {
        log_error("spool: out of memory replaying %s", path);
        free(data);
        close(fd);
        free(path);
        return;
    }
    g->dir_synced = 1; /* it was there before */
    rd = (struct spool_reader){data, size, 0};
    while ((st = spool_next(&rd, &rec, &bad)) != SPOOL_END) {
        if (st == SPOOL_TORN) {
            log_warn("spool: %s: record cut short at offset %zu: the rest is ignored", path, bad);
            break;
        }
        if (st == SPOOL_CORRUPT) {
            log_warn("spool: %s: corrupt record at offset %zu skipped", path, bad);
            corrupt++;
            continue;
        }
        if (rec.type == SPOOL_PUSH && rec.len >= 9) {
            struct spool_push p;
            if (spool_decode_push(&rec, &p) != 0)
                continue;
            if (nv == cap) {
                struct rpush *nvv = realloc(v, (cap = cap ? cap * 2 : 64) * sizeof(*v));
                if (nvv == NULL)
                    break;
                v = nvv;
            }
            v[nv] = (struct rpush){rec, p.id, p.ntargets, calloc((p.ntargets + 7) / 8 + 1, 1)};
            if (v[nv].acked != NULL)
                nv++;
        } else if (rec.type == SPOOL_ACK) {
            uint64_t id;
            uint32_t n;
            const unsigned char *idx;
            struct rpush *rp;
            if (spool_decode_ack(&rec, &id, &n, &idx) != 0 || (rp = find(v, nv, id)) == NULL)
                continue;
            for (uint32_t i = 0; i < n; i++) {
                uint32_t k = spool_u32(idx + 4 * i);
                if (k < rp->ntargets)
                    rp->acked[k / 8] |= (unsigned char)(1u << (k % 8));
            }
        }
    }
    for (size_t i = 0; i < nv; i++) {
        size_t n = requeue(s, &v[i]);
        targets += n;
        pushes += n > 0;
        free(v[i].acked);
    }
    free(v);
    free(data);
    log_info("spool: replayed %zu targets of %zu pushes from %s (%zu corrupt records skipped)", targets, pushes, path,
             corrupt);
    /* The old segment goes once its re-spooled copy is as durable as the policy asks. */
    g->holds++;
    if (spool_commit(s, orphan_durable, g) == 0)
        g->holds--;
    release(s, g);
    if (targets > 0)
        s->on_replay(s->arg);
}

static int ends_with(const char *s, const char *suffix)
{
    size_t n = strlen(s), k = strlen(suffix);

    return n >= k && strcmp(s + n - k, suffix) == 0;
}

void spool_scan(struct spool *s)
{
    DIR *d = opendir(s->opts->spool);
    struct dirent *e;

    if (d == NULL) {
        log_error("spool: cannot read %s: %s", s->opts->spool, strerror(errno));
        return;
    }
    while ((e = readdir(d)) != NULL) {
        char path[4200];
        struct stat st;
        int fd, tmp = ends_with(e->d_name, ".tmp");
        if (!tmp && !ends_with(e->d_name, ".seg"))
            continue;
        snprintf(path, sizeof(path), "%s/%s", s->opts->spool, e->d_name);
        if ((fd = open(path, O_RDWR | O_APPEND | O_CLOEXEC)) < 0)
            continue;
        /* Held by a live child (this one included): not an orphan. */
        if (flock(fd, LOCK_EX | LOCK_NB) != 0 || fstat(fd, &st) != 0 || st.st_nlink == 0) {
            close(fd);
            continue;
        }
        if (tmp) {
            /* A child died creating it (no record is ever written there); a
             * young one may still be being created. */
            if (st.st_mtime < time(NULL) - 60)
                unlink(path);
            close(fd);
            continue;
        }
        if ((uint64_t)st.st_size > MAX_REPLAY_BYTES)
            log_error("spool: %s is larger than 1 GiB: only its start is replayed", path);
        char *p = strdup(path);
        if (p == NULL) {
            close(fd);
            continue;
        }
        replay(s, fd, p, (size_t)((uint64_t)st.st_size > MAX_REPLAY_BYTES ? MAX_REPLAY_BYTES : (uint64_t)st.st_size));
    }
    closedir(d);
}

static void on_rescan(uv_timer_t *t)
{
    spool_scan(t->data);
}

struct spool *spool_open(uv_loop_t *loop, const struct fcmd_options *o, struct shm_region *shm, struct shm_slot *slot,
                         struct queue *q, void (*on_replay)(void *), void *arg)
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

void spool_close(struct spool *s)
{
    if (s == NULL)
        return;
    flush_acks(s);
    if (s->dir_fd >= 0)
        close(s->dir_fd);
    if (s->cur != NULL) {
        s->cur->current = 0;
        s->cur = NULL;
    }
    /* Finished segments go; the others stay, unlocked, for the next child. */
    for (struct segment *g = s->segments, *next; g; g = next) {
        next = g->next;
        g->holds = 0;
        if (g->live == 0)
            release(s, g);
    }
}
