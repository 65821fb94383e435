/*
 * tests/unit/test_drainlist.c - shared drain lists: order, exactly-once
 * draining by concurrent processes (some giving their records back),
 * bounded size, and a holder killed in the middle of an append or a drain.
 */
#include "cmocka_all.h"

#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <unistd.h>

#include "../../shm/region.h"

/* Entries the list holds: in, less out. */
static uint64_t held(struct drainlist *l)
{
    uint64_t added, removed;

    drainlist_progress(l, &added, &removed);
    return added - removed;
}

static void collect(struct drainlist *l, char out[][32], size_t *n)
{
    unsigned char *recs;
    const unsigned char *r;
    size_t len, pos = 0, rlen;
    uint64_t count;

    *n = 0;
    assert_int_equal(drainlist_drain(l, DRAINLIST_ALL, &recs, &len, &count), 0);
    while ((r = drainlist_next(recs, len, &pos, &rlen)) != NULL) {
        memcpy(out[*n], r + 1, rlen - 1); /* past the tag */
        out[(*n)++][rlen - 1] = '\0';
    }
    assert_int_equal(*n, count);
    free(recs);
}

static void append_and_drain_once(void **state)
{
    struct shm_region *r = shm_region_create(1024, 1 << 16, 1 << 16);
    char got[8][32];
    size_t n;

    (void)state;
    assert_non_null(r);
    assert_int_equal(drainlist_append(r->notregistered, 0, "a", 1, NULL, 0), 0);
    assert_int_equal(drainlist_append(r->notregistered, 0, "bb", 2, NULL, 0), 0);
    assert_int_equal(drainlist_append(r->canonical, 0, "old\0", 4, "new", 3), 0);
    collect(r->notregistered, got, &n);
    assert_int_equal(n, 2);
    assert_string_equal(got[0], "a");
    assert_string_equal(got[1], "bb");
    collect(r->notregistered, got, &n);
    assert_int_equal(n, 0);
    collect(r->canonical, got, &n);
    assert_int_equal(n, 1);
    assert_memory_equal(got[0], "old\0new", 7);
    shm_region_destroy(r);
}

static void full_list_counts_drops(void **state)
{
    struct shm_region *r = shm_region_create(12, 1 << 16, 1 << 16); /* room for two 3-byte records (and their tags) */
    char got[8][32];
    size_t n;

    (void)state;
    assert_int_equal(drainlist_append(r->notregistered, 0, "abc", 3, NULL, 0), 0);
    assert_int_equal(drainlist_append(r->notregistered, 0, "def", 3, NULL, 0), 0);
    assert_int_equal(drainlist_append(r->notregistered, 0, "ghi", 3, NULL, 0), -1);
    assert_int_equal(drainlist_dropped(r->notregistered), 1);
    collect(r->notregistered, got, &n);
    assert_int_equal(n, 2);
    /* Draining makes room again. */
    assert_int_equal(drainlist_append(r->notregistered, 0, "ghi", 3, NULL, 0), 0);
    shm_region_destroy(r);
}

static void children_share_one_list(void **state)
{
    struct shm_region *r = shm_region_create(1 << 20, 1 << 16, 1 << 16);
    char(*got)[32] = malloc(4000 * 32);
    size_t n;

    (void)state;
    for (int c = 0; c < 4; c++) {
        if (fork() == 0) {
            char tok[16];
            for (int i = 0; i < 1000; i++) {
                int len = snprintf(tok, sizeof(tok), "c%d-%d", c, i);
                drainlist_append(r->notregistered, 0, tok, (size_t)len, NULL, 0);
            }
            _exit(0);
        }
    }
    for (int c = 0; c < 4; c++)
        wait(NULL);
    collect(r->notregistered, got, &n);
    assert_int_equal(n, 4000);
    free(got);
    shm_region_destroy(r);
}

/* Four writers append 2000 records each while three drainers drain the
 * same list over and over, every third time giving what they took back
 * (an answer that did not go out).  Every record comes out exactly once. */
static void concurrent_drains_exactly_once(void **state)
{
    enum { WRITERS = 4, PER_WRITER = 2000, DRAINERS = 3 };
    struct shm_region *r = shm_region_create(1 << 16, 1 << 16, 1 << 16); /* small: writers see it full and retry */
    _Atomic int *writers_left = mmap(NULL, 2 * sizeof(int), PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    _Atomic int *refused = writers_left + 1; /* appends that found the list full (each counted as a drop) */
    static unsigned char seen[WRITERS][PER_WRITER];
    int fds[DRAINERS][2];
    pid_t pids[WRITERS + DRAINERS];

    (void)state;
    assert_non_null(r);
    assert_true(writers_left != MAP_FAILED);
    atomic_store(writers_left, WRITERS);
    atomic_store(refused, 0);
    memset(seen, 0, sizeof(seen));
    for (int w = 0; w < WRITERS; w++) {
        if ((pids[w] = fork()) == 0) {
            char tok[16];
            for (int i = 0; i < PER_WRITER; i++) {
                int len = snprintf(tok, sizeof(tok), "%d-%d", w, i);
                while (drainlist_append(r->notregistered, 0, tok, (size_t)len, NULL, 0) != 0) {
                    atomic_fetch_add(refused, 1);
                    usleep(100); /* full: a drainer makes room */
                }
            }
            atomic_fetch_sub(writers_left, 1);
            _exit(0);
        }
    }
    for (int d = 0; d < DRAINERS; d++) {
        assert_int_equal(pipe(fds[d]), 0);
        if ((pids[WRITERS + d] = fork()) == 0) {
            close(fds[d][0]);
            for (int round = 0;; round++) {
                unsigned char *recs;
                size_t len;
                uint64_t count;
                int last = atomic_load(writers_left) == 0;
                if (drainlist_drain(r->notregistered, DRAINLIST_ALL, &recs, &len, &count) != 0)
                    _exit(2);
                if (recs != NULL && round % 3 == 2 && !last) {
                    drainlist_giveback(r->notregistered, recs, len, count);
                } else if (recs != NULL && write(fds[d][1], recs, len) != (ssize_t)len) {
                    _exit(3);
                }
                free(recs);
                if (last && recs == NULL)
                    _exit(0);
            }
        }
        close(fds[d][1]);
    }
    /* Collect what the drainers took, until every one has finished. */
    size_t total = 0;
    for (int d = 0; d < DRAINERS; d++) {
        unsigned char buf[1 << 16], rec[32];
        size_t have = 0;
        ssize_t n;
        while ((n = read(fds[d][0], buf + have, sizeof(buf) - have)) > 0) {
            size_t pos = 0, rlen, used = 0;
            const unsigned char *p;
            have += (size_t)n;
            while ((p = drainlist_next(buf, have, &pos, &rlen)) != NULL) {
                int w, i;
                memcpy(rec, p + 1, rlen - 1);
                rec[rlen - 1] = '\0';
                assert_int_equal(sscanf((char *)rec, "%d-%d", &w, &i), 2);
                assert_int_equal(seen[w][i]++, 0); /* never twice */
                total++;
                used = pos;
            }
            memmove(buf, buf + used, have - used);
            have -= used;
        }
        close(fds[d][0]);
    }
    for (int i = 0; i < WRITERS + DRAINERS; i++) {
        int st;
        assert_int_equal(waitpid(pids[i], &st, 0), pids[i]);
        assert_true(WIFEXITED(st) && WEXITSTATUS(st) == 0);
    }
    assert_int_equal(total, WRITERS * PER_WRITER); /* and every one once */
    assert_int_equal(drainlist_dropped(r->notregistered), atomic_load(refused)); /* no giveback dropped any */
    munmap(writers_left, 2 * sizeof(int));
    shm_region_destroy(r);
}

static void giveback_keeps_what_fits(void **state)
{
    struct shm_region *r = shm_region_create(12, 1 << 16, 1 << 16); /* room for two 3-byte records (and their tags) */
    unsigned char *recs;
    size_t len;
    uint64_t count;
    char got[8][32];
    size_t n;

    (void)state;
    assert_int_equal(drainlist_append(r->notregistered, 0, "abc", 3, NULL, 0), 0);
    assert_int_equal(drainlist_append(r->notregistered, 0, "def", 3, NULL, 0), 0);
    assert_int_equal(drainlist_drain(r->notregistered, DRAINLIST_ALL, &recs, &len, &count), 0);
    assert_int_equal(count, 2);
    assert_int_equal(drainlist_append(r->notregistered, 0, "ghi", 3, NULL, 0), 0);
    /* Only one of the two fits back: the older one; the other is counted. */
    assert_int_equal(drainlist_giveback(r->notregistered, recs, len, count), 1);
    assert_int_equal(drainlist_dropped(r->notregistered), 1);
    free(recs);
    collect(r->notregistered, got, &n);
    assert_int_equal(n, 2);
    assert_string_equal(got[0], "ghi");
    assert_string_equal(got[1], "abc");
    shm_region_destroy(r);
}

/* A writer killed after writing part of a record, before committing it:
 * the others see the list as it was, and the next append takes the space. */
static void writer_killed_mid_append(void **state)
{
    struct shm_region *r = shm_region_create(1024, 1 << 16, 1 << 16);
    char got[8][32];
    size_t n;
    pid_t pid;

    (void)state;
    assert_int_equal(drainlist_append(r->notregistered, 0, "kept", 4, NULL, 0), 0);
    if ((pid = fork()) == 0) {
        struct drainlist *l = r->notregistered;
        pthread_mutex_lock(&l->lock);
        /* What drainlist_append writes first: a length and some bytes. */
        l->arena[l->used] = 200;
        l->arena[l->used + 1] = 0;
        memset(l->arena + l->used + 2, 'x', 50);
        kill(getpid(), SIGKILL);
    }
    waitpid(pid, NULL, 0);
    collect(r->notregistered, got, &n);
    assert_int_equal(n, 1);
    assert_string_equal(got[0], "kept");
    assert_int_equal(drainlist_append(r->notregistered, 0, "after", 5, NULL, 0), 0);
    collect(r->notregistered, got, &n);
    assert_int_equal(n, 1);
    assert_string_equal(got[0], "after");
    shm_region_destroy(r);
}

/* Killed between the two moves that commit an append (count, then used):
 * the count the next drain reports matches the records it hands out. */
static void writer_killed_between_count_and_length(void **state)
{
    struct shm_region *r = shm_region_create(1024, 1 << 16, 1 << 16);
    char got[8][32];
    size_t n;
    pid_t pid;

    (void)state;
    assert_int_equal(drainlist_append(r->notregistered, 0, "kept", 4, NULL, 0), 0);
    if ((pid = fork()) == 0) {
        struct drainlist *l = r->notregistered;
        pthread_mutex_lock(&l->lock);
        l->arena[l->used] = 4;
        l->arena[l->used + 1] = 0;
        l->arena[l->used + 2] = 0;
        memcpy(l->arena + l->used + 3, "new", 3);
        l->count++;
        kill(getpid(), SIGKILL);
    }
    waitpid(pid, NULL, 0);
    collect(r->notregistered, got, &n); /* asserts the count matches */
    assert_int_equal(n, 1);
    assert_string_equal(got[0], "kept");
    shm_region_destroy(r);
}

/* Killed in a drain after it emptied the bytes and before the count. */
static void drainer_killed_between_length_and_count(void **state)
{
    struct shm_region *r = shm_region_create(1024, 1 << 16, 1 << 16);
    char got[8][32];
    size_t n;
    pid_t pid;

    (void)state;
    assert_int_equal(drainlist_append(r->notregistered, 0, "gone", 4, NULL, 0), 0);
    if ((pid = fork()) == 0) {
        struct drainlist *l = r->notregistered;
        pthread_mutex_lock(&l->lock);
        l->used = 0;
        kill(getpid(), SIGKILL);
    }
    waitpid(pid, NULL, 0);
    assert_int_equal(drainlist_append(r->notregistered, 0, "after", 5, NULL, 0), 0);
    collect(r->notregistered, got, &n);
    assert_int_equal(n, 1);
    assert_string_equal(got[0], "after");
    shm_region_destroy(r);
}

static void dead_holder_does_not_wedge(void **state)
{
    struct shm_region *r = shm_region_create(1024, 1 << 16, 1 << 16);
    char got[8][32];
    size_t n;
    pid_t pid;

    (void)state;
    assert_int_equal(drainlist_append(r->notregistered, 0, "kept", 4, NULL, 0), 0);
    if ((pid = fork()) == 0) {
        pthread_mutex_lock(&r->notregistered->lock);
        kill(getpid(), SIGKILL);
    }
    waitpid(pid, NULL, 0);
    assert_int_equal(drainlist_append(r->notregistered, 0, "after", 5, NULL, 0), 0);
    collect(r->notregistered, got, &n);
    assert_int_equal(n, 2);
    assert_string_equal(got[0], "kept");
    assert_string_equal(got[1], "after");
    shm_region_destroy(r);
}

static void slot_settlement(void **state)
{
    struct shm_region *r = shm_region_create(64, 1 << 16, 1 << 16);
    struct shm_totals t;

    (void)state;
    shm_add(&r->slots[0], SHM_ACCEPTED, 5);
    shm_pending_add(&r->slots[0], 5);
    shm_add(&r->slots[1], SHM_ACCEPTED, 2);
    shm_pending_add(&r->slots[1], 2);
    shm_pending_add(&r->slots[1], -2);
    assert_int_equal(shm_settle_slot(r, 0, SHM_SETTLE_LOST), 5);
    shm_sum(r, &t);
    assert_int_equal(t.counters[SHM_ACCEPTED], 7);
    assert_int_equal(t.counters[SHM_LOST], 5);
    assert_int_equal(t.pending, 0);
    /* With a spool, the same targets are left there, not lost. */
    shm_pending_add(&r->slots[1], 3);
    assert_int_equal(shm_settle_slot(r, 1, SHM_SETTLE_SPOOLED), 3);
    shm_sum(r, &t);
    assert_int_equal(t.counters[SHM_LOST], 5);
    assert_int_equal(t.counters[SHM_LEFT_IN_SPOOL], 3);
    /* With the queue in Redis, neither: another worker counts them. */
    shm_pending_add(&r->slots[2], 4);
    assert_int_equal(shm_settle_slot(r, 2, SHM_SETTLE_QUEUED), 4);
    shm_sum(r, &t);
    assert_int_equal(t.counters[SHM_LOST], 5);
    assert_int_equal(t.counters[SHM_LEFT_IN_SPOOL], 3);
    assert_int_equal(t.pending, 0);
    shm_region_destroy(r);
}

#define reserved(l, max, now, rc, want, seq) reserved_(l, 1, max, now, rc, want, sizeof(want) - 1, seq)
#define reserved_by(o, l, max, now, rc, want, seq) reserved_(l, o, max, now, rc, want, sizeof(want) - 1, seq)

static void reserved_(struct drainlist *l, uint32_t owner, size_t max, uint64_t now, int want_rc, const char *want,
                      size_t want_len, uint64_t *seq)
{
    unsigned char *recs;
    size_t len;
    uint64_t count;

    assert_int_equal(drainlist_reserve(l, owner, max, now, 1000, &recs, &len, &count, seq), want_rc);
    if (want_rc != 0)
        return;
    assert_int_equal(len, want_len);
    if (len > 0)
        assert_memory_equal(recs, want, len);
    free(recs);
}

/* Fleet mode: a batch leaves only once committed, under one number however
 * often it is sent, and a local drain never takes it. */
static void batches_leave_only_when_committed(void **state)
{
    struct shm_region *r = shm_region_create(1024, 1 << 16, 1 << 16);
    struct drainlist *l = r->notregistered;
    char got[8][32];
    size_t n;
    uint64_t seq = 0, again = 0;

    (void)state;
    reserved(l, 10, 0, 0, "", &seq); /* empty: nothing to send */
    for (const char *t = "aa\0bb\0cc\0"; *t; t += 3)
        assert_int_equal(drainlist_append(l, 0, t, 2, NULL, 0), 0);
    reserved(l, 10, 100, 0, "\3\0\0aa\3\0\0bb", &seq);
    assert_int_equal(seq, 1);
    reserved_by(2, l, 10, 500, 1, "", &again);       /* its mover's lease runs: not another's */
    reserved(l, 10, 600, 0, "\3\0\0aa\3\0\0bb", &again); /* its own mover (respawned) sends it again */
    assert_int_equal(again, 1);
    assert_int_equal(drainlist_append(l, 0, "dd", 2, NULL, 0), 0);
    collect(l, got, &n); /* what follows the batch only */
    assert_int_equal(n, 2);
    assert_string_equal(got[0], "cc");
    assert_string_equal(got[1], "dd");
    assert_int_equal(held(l), 2);
    /* The mover went away: the same batch, the same number, for the next. */
    reserved_by(2, l, 64, 1700, 0, "\3\0\0aa\3\0\0bb", &again);
    assert_int_equal(again, 1);
    drainlist_commit(l, 1);
    drainlist_commit(l, 1); /* confirmed twice (both movers sent it): removed once */
    assert_int_equal(held(l), 0);
    assert_int_equal(drainlist_append(l, 0, "ee", 2, NULL, 0), 0);
    assert_int_equal(drainlist_append(l, 0, "ff", 2, NULL, 0), 0);
    reserved(l, 5, 2000, 0, "\3\0\0ee", &seq);
    assert_int_equal(seq, 2);
    drainlist_commit(l, 1); /* a stale confirmation removes nothing */
    assert_int_equal(held(l), 2);
    drainlist_commit(l, 2);
    /* Six records in; "cc" and "dd" drained, three batches' worth moved. */
    uint64_t added, removed;
    drainlist_progress(l, &added, &removed);
    assert_int_equal(added, 6);
    assert_int_equal(removed, 5);
    collect(l, got, &n);
    assert_int_equal(n, 1);
    assert_string_equal(got[0], "ff");
    drainlist_progress(l, &added, &removed);
    assert_int_equal(removed, 6);
    shm_region_destroy(r);
}

/* Committed batches free the arena's front: an append that does not fit
 * at the end moves the records there, in order. */
static void commits_make_room(void **state)
{
    struct shm_region *r = shm_region_create(25, 1 << 16, 1 << 16); /* five 2-byte records */
    struct drainlist *l = r->notregistered;
    char got[8][32];
    size_t n;
    uint64_t seq;

    (void)state;
    for (const char *t = "aa\0bb\0cc\0dd\0ee\0"; *t; t += 3)
        assert_int_equal(drainlist_append(l, 0, t, 2, NULL, 0), 0);
    reserved(l, 20, 0, 0, "\3\0\0aa\3\0\0bb\3\0\0cc\3\0\0dd", &seq);
    drainlist_commit(l, seq);
    assert_int_equal(drainlist_append(l, 0, "ff", 2, NULL, 0), 0);
    assert_int_equal(drainlist_append(l, 0, "gg", 2, NULL, 0), 0);
    assert_int_equal(drainlist_dropped(l), 0);
    collect(l, got, &n);
    assert_int_equal(n, 3);
    assert_string_equal(got[0], "ee");
    assert_string_equal(got[2], "gg");
    shm_region_destroy(r);
}

/* A holder killed in the middle of a compaction: the next locker finishes it. */
static void killed_mid_compaction(void **state)
{
    struct shm_region *r = shm_region_create(25, 1 << 16, 1 << 16);
    struct drainlist *l = r->notregistered;
    char got[8][32];
    size_t n;
    uint64_t seq;
    pid_t pid;

    (void)state;
    for (const char *t = "aa\0bb\0cc\0dd\0ee\0"; *t; t += 3)
        assert_int_equal(drainlist_append(l, 0, t, 2, NULL, 0), 0);
    reserved(l, 15, 0, 0, "\3\0\0aa\3\0\0bb\3\0\0cc", &seq);
    drainlist_commit(l, seq);
    if ((pid = fork()) == 0) {
        pthread_mutex_lock(&l->lock);
        l->compact_len = l->used - l->head;
        l->compacting = 1;
        memcpy(l->arena, l->arena + l->head, 4); /* part of the copy */
        kill(getpid(), SIGKILL);
    }
    waitpid(pid, NULL, 0);
    assert_int_equal(drainlist_append(l, 0, "ff", 2, NULL, 0), 0);
    collect(l, got, &n);
    assert_int_equal(n, 3);
    assert_string_equal(got[0], "dd");
    assert_string_equal(got[1], "ee");
    assert_string_equal(got[2], "ff");
    shm_region_destroy(r);
}

/* One tag's records, drained with others: 1, 2 and 3 records tagged 1, 2 and 3. */
static void collect_tags(struct drainlist *l, uint64_t tags, char out[][32], size_t *n, unsigned *tag_of)
{
    unsigned char *recs;
    const unsigned char *r;
    size_t len, pos = 0, rlen;
    uint64_t count;

    *n = 0;
    assert_int_equal(drainlist_drain(l, tags, &recs, &len, &count), 0);
    while ((r = drainlist_next(recs, len, &pos, &rlen)) != NULL) {
        tag_of[*n] = r[0];
        memcpy(out[*n], r + 1, rlen - 1);
        out[(*n)++][rlen - 1] = '\0';
    }
    assert_int_equal(*n, count);
    free(recs);
}

/* A drain of some tags takes their records alone, each once, and leaves
 * the others where they are, in order, for their own drain or a drain of
 * all; the room the taken ones held comes back once the later ones go. */
static void a_drain_of_one_tag_leaves_the_others(void **state)
{
    struct shm_region *r = shm_region_create(60, 1 << 16, 1 << 16);
    struct drainlist *l = r->notregistered;
    char got[8][32];
    unsigned tags[8];
    uint64_t records, bytes;
    size_t n;

    (void)state;
    assert_int_equal(drainlist_append(l, 1, "a1", 2, NULL, 0), 0);
    assert_int_equal(drainlist_append(l, 2, "b1", 2, NULL, 0), 0);
    assert_int_equal(drainlist_append(l, 1, "a2", 2, NULL, 0), 0);
    assert_int_equal(drainlist_append(l, 3, "c1", 2, NULL, 0), 0);
    assert_int_equal(drainlist_append(l, 2, "b2", 2, NULL, 0), 0);
    collect_tags(l, UINT64_C(1) << 2, got, &n, tags);
    assert_int_equal(n, 2);
    assert_string_equal(got[0], "b1");
    assert_string_equal(got[1], "b2");
    assert_int_equal(tags[0], 2);
    collect_tags(l, UINT64_C(1) << 2, got, &n, tags); /* once */
    assert_int_equal(n, 0);
    drainlist_size(l, &records, &bytes);
    assert_int_equal(records, 3);
    assert_int_equal(bytes, 4 * 5); /* b2 was last: its room is back at once, b1's not yet */
    collect_tags(l, (UINT64_C(1) << 1) | (UINT64_C(1) << 5), got, &n, tags);
    assert_int_equal(n, 2);
    assert_string_equal(got[0], "a1");
    assert_string_equal(got[1], "a2");
    assert_int_equal(held(l), 1);
    collect_tags(l, DRAINLIST_ALL, got, &n, tags); /* all: what is left, the taken skipped */
    assert_int_equal(n, 1);
    assert_string_equal(got[0], "c1");
    assert_int_equal(tags[0], 3);
    drainlist_size(l, &records, &bytes);
    assert_int_equal(records, 0);
    assert_int_equal(bytes, 0);
    shm_region_destroy(r);
}

/* A drainer of one tag killed while it marks its records: the next locker
 * counts what is left, and nothing of the other tags is lost. */
static void killed_while_marking_taken(void **state)
{
    struct shm_region *r = shm_region_create(64, 1 << 16, 1 << 16);
    struct drainlist *l = r->notregistered;
    char got[8][32];
    unsigned tags[8];
    size_t n;
    pid_t pid;

    (void)state;
    assert_int_equal(drainlist_append(l, 1, "a1", 2, NULL, 0), 0);
    assert_int_equal(drainlist_append(l, 2, "b1", 2, NULL, 0), 0);
    assert_int_equal(drainlist_append(l, 1, "a2", 2, NULL, 0), 0);
    if ((pid = fork()) == 0) {
        pthread_mutex_lock(&l->lock);
        l->arena[2] = DRAINLIST_TAKEN; /* a1 marked, a2 not yet */
        kill(getpid(), SIGKILL);
    }
    waitpid(pid, NULL, 0);
    collect_tags(l, DRAINLIST_ALL, got, &n, tags);
    assert_int_equal(n, 2);
    assert_string_equal(got[0], "b1");
    assert_string_equal(got[1], "a2");
    shm_region_destroy(r);
}

/* One tag never drained, another drained over and over with its records
 * before the kept ones: the room of the taken records comes back (they are
 * squeezed out), so the list never drops for room it holds only as taken
 * records, and the kept records stay whole and in order. */
static void taken_room_comes_back_when_one_tag_is_never_drained(void **state)
{
    struct shm_region *r = shm_region_create(60, 1 << 16, 1 << 16); /* ten 3-byte records with their headers */
    struct drainlist *l = r->notregistered;
    char got[16][32], tok[32];
    unsigned tags[16];
    size_t n;

    (void)state;
    for (int round = 0; round < 20; round++) {
        for (int i = 0; i < 3; i++) {
            snprintf(tok, sizeof(tok), "b%d%d", round % 10, i);
            assert_int_equal(drainlist_append(l, 2, tok, 3, NULL, 0), 0);
        }
        if (round < 6) { /* the kept tag: one record after the others, six rounds */
            snprintf(tok, sizeof(tok), "a%02d", round);
            assert_int_equal(drainlist_append(l, 1, tok, 3, NULL, 0), 0);
        }
        collect_tags(l, UINT64_C(1) << 2, got, &n, tags);
        assert_int_equal(n, 3);
    }
    assert_int_equal(drainlist_dropped(l), 0);
    collect_tags(l, UINT64_C(1) << 1, got, &n, tags);
    assert_int_equal(n, 6);
    for (int i = 0; i < 6; i++) {
        snprintf(tok, sizeof(tok), "a%02d", i);
        assert_string_equal(got[i], tok);
    }
    shm_region_destroy(r);
}

/* A holder killed in the middle of a squeeze, at each step it can be in:
 * the next locker finishes it, and the list holds the live records, once
 * each, in order. */
static void killed_mid_squeeze(void **state)
{
    (void)state;
    for (int stop_after = 0; stop_after < 16; stop_after++) {
        struct shm_region *r = shm_region_create(96, 1 << 16, 1 << 16);
        struct drainlist *l = r->notregistered;
        char got[16][32];
        unsigned tags[16];
        size_t n;
        pid_t pid;

        /* A short taken record before a long kept one: it moves in four chunks. */
        assert_int_equal(drainlist_append(l, 2, "t1", 2, NULL, 0), 0);
        assert_int_equal(drainlist_append(l, 1, "kept-longer-1", 13, NULL, 0), 0);
        assert_int_equal(drainlist_append(l, 2, "taken-long-2", 12, NULL, 0), 0);
        assert_int_equal(drainlist_append(l, 1, "k2", 2, NULL, 0), 0);
        assert_int_equal(drainlist_append(l, 1, "k3", 2, NULL, 0), 0);
        collect_tags(l, UINT64_C(1) << 2, got, &n, tags);
        assert_int_equal(n, 2);
        if ((pid = fork()) == 0) {
            /* The squeeze's own steps, by hand, stopped after stop_after chunks or records. */
            pthread_mutex_lock(&l->lock);
            l->sq_end = l->used;
            l->sq_read = l->sq_write = l->head;
            l->sq_len = l->sq_done = 0;
            l->squeezing = 1;
            for (int step = 0; step < stop_after && (l->sq_len != 0 || l->sq_read < l->sq_end); step++) {
                if (l->sq_len == 0) {
                    const unsigned char *p = l->arena + l->sq_read;
                    size_t len = 2 + ((size_t)p[0] | ((size_t)p[1] << 8));
                    if (p[2] == DRAINLIST_TAKEN) {
                        l->sq_read += len;
                        continue;
                    }
                    l->sq_next = l->sq_read + len;
                    l->sq_wnext = l->sq_write + len;
                    l->sq_done = l->sq_read == l->sq_write ? len : 0;
                    l->sq_len = len;
                } else if (l->sq_done < l->sq_len) {
                    size_t chunk = l->sq_len - l->sq_done, gap = l->sq_read - l->sq_write;
                    if (chunk > gap)
                        chunk = gap;
                    memcpy(l->arena + l->sq_write + l->sq_done, l->arena + l->sq_read + l->sq_done, chunk);
                    l->sq_done += chunk;
                } else {
                    l->sq_write = l->sq_wnext; /* half of the end of a record: the next locker redoes it */
                    break;
                }
            }
            kill(getpid(), SIGKILL);
        }
        waitpid(pid, NULL, 0);
        collect_tags(l, DRAINLIST_ALL, got, &n, tags);
        assert_int_equal(n, 3);
        assert_string_equal(got[0], "kept-longer-1");
        assert_string_equal(got[1], "k2");
        assert_string_equal(got[2], "k3");
        shm_region_destroy(r);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(append_and_drain_once),
        cmocka_unit_test(full_list_counts_drops),
        cmocka_unit_test(children_share_one_list),
        cmocka_unit_test(concurrent_drains_exactly_once),
        cmocka_unit_test(giveback_keeps_what_fits),
        cmocka_unit_test(writer_killed_mid_append),
        cmocka_unit_test(writer_killed_between_count_and_length),
        cmocka_unit_test(drainer_killed_between_length_and_count),
        cmocka_unit_test(dead_holder_does_not_wedge),
        cmocka_unit_test(slot_settlement),
        cmocka_unit_test(batches_leave_only_when_committed),
        cmocka_unit_test(commits_make_room),
        cmocka_unit_test(killed_mid_compaction),
        cmocka_unit_test(a_drain_of_one_tag_leaves_the_others),
        cmocka_unit_test(killed_while_marking_taken),
        cmocka_unit_test(taken_room_comes_back_when_one_tag_is_never_drained),
        cmocka_unit_test(killed_mid_squeeze),
    };
    return cmocka_run_group_tests_name("drainlist", tests, NULL, NULL);
}
