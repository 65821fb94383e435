/*
 * tests/unit/test_drainlist.c - shared drain lists: order, exactly-once
 * draining by concurrent processes (some giving their records back),
 * bounded size, and a writer killed in the middle of an append.
 */
#include "cmocka_all.h"

#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <poll.h>
#include <unistd.h>

#include "../../shm/region.h"

static void collect(struct drainlist *l, char out[][32], size_t *n)
{
    unsigned char *recs;
    const unsigned char *r;
    size_t len, pos = 0, rlen;
    uint64_t count;

    *n = 0;
    assert_int_equal(drainlist_drain(l, &recs, &len, &count), 0);
    while ((r = drainlist_next(recs, len, &pos, &rlen)) != NULL) {
        memcpy(out[*n], r, rlen);
        out[(*n)++][rlen] = '\0';
    }
    assert_int_equal(*n, count);
    free(recs);
}

static void append_and_drain_once(void **state)
{
    struct shm_region *r = shm_region_create(1024);
    char got[8][32];
    size_t n;

    (void)state;
    assert_non_null(r);
    assert_int_equal(drainlist_append(r->notregistered, "a", 1, NULL, 0), 0);
    assert_int_equal(drainlist_append(r->notregistered, "bb", 2, NULL, 0), 0);
    assert_int_equal(drainlist_append(r->canonical, "old\0", 4, "new", 3), 0);
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
    struct shm_region *r = shm_region_create(10); /* room for two 3-byte records */
    char got[8][32];
    size_t n;

    (void)state;
    assert_int_equal(drainlist_append(r->notregistered, "abc", 3, NULL, 0), 0);
    assert_int_equal(drainlist_append(r->notregistered, "def", 3, NULL, 0), 0);
    assert_int_equal(drainlist_append(r->notregistered, "ghi", 3, NULL, 0), -1);
    assert_int_equal(drainlist_dropped(r->notregistered), 1);
    collect(r->notregistered, got, &n);
    assert_int_equal(n, 2);
    /* Draining makes room again. */
    assert_int_equal(drainlist_append(r->notregistered, "ghi", 3, NULL, 0), 0);
    shm_region_destroy(r);
}

static void children_share_one_list(void **state)
{
    struct shm_region *r = shm_region_create(1 << 20);
    char(*got)[32] = malloc(4000 * 32);
    size_t n;

    (void)state;
    for (int c = 0; c < 4; c++) {
        if (fork() == 0) {
            char tok[16];
            for (int i = 0; i < 1000; i++) {
                int len = snprintf(tok, sizeof(tok), "c%d-%d", c, i);
                drainlist_append(r->notregistered, tok, (size_t)len, NULL, 0);
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
    struct shm_region *r = shm_region_create(1 << 16); /* small: writers see it full and retry */
    _Atomic int *writers_left = mmap(NULL, sizeof(int), PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    static unsigned char seen[WRITERS][PER_WRITER];
    int fds[DRAINERS][2];
    pid_t pids[WRITERS + DRAINERS];

    (void)state;
    assert_non_null(r);
    assert_true(writers_left != MAP_FAILED);
    atomic_store(writers_left, WRITERS);
    memset(seen, 0, sizeof(seen));
    for (int w = 0; w < WRITERS; w++) {
        if ((pids[w] = fork()) == 0) {
            char tok[16];
            for (int i = 0; i < PER_WRITER; i++) {
                int len = snprintf(tok, sizeof(tok), "%d-%d", w, i);
                while (drainlist_append(r->notregistered, tok, (size_t)len, NULL, 0) != 0)
                    usleep(100); /* full: a drainer makes room */
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
                if (drainlist_drain(r->notregistered, &recs, &len, &count) != 0)
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
                memcpy(rec, p, rlen);
                rec[rlen] = '\0';
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
    assert_int_equal(drainlist_dropped(r->notregistered), 0);
    munmap(writers_left, sizeof(int));
    shm_region_destroy(r);
}

static void giveback_keeps_what_fits(void **state)
{
    struct shm_region *r = shm_region_create(10); /* room for two 3-byte records */
    unsigned char *recs;
    size_t len;
    uint64_t count;
    char got[8][32];
    size_t n;

    (void)state;
    assert_int_equal(drainlist_append(r->notregistered, "abc", 3, NULL, 0), 0);
    assert_int_equal(drainlist_append(r->notregistered, "def", 3, NULL, 0), 0);
    assert_int_equal(drainlist_drain(r->notregistered, &recs, &len, &count), 0);
    assert_int_equal(count, 2);
    assert_int_equal(drainlist_append(r->notregistered, "ghi", 3, NULL, 0), 0);
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
    struct shm_region *r = shm_region_create(1024);
    char got[8][32];
    size_t n;
    pid_t pid;

    (void)state;
    assert_int_equal(drainlist_append(r->notregistered, "kept", 4, NULL, 0), 0);
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
    assert_int_equal(drainlist_append(r->notregistered, "after", 5, NULL, 0), 0);
    collect(r->notregistered, got, &n);
    assert_int_equal(n, 1);
    assert_string_equal(got[0], "after");
    shm_region_destroy(r);
}

static void dead_holder_does_not_wedge(void **state)
{
    struct shm_region *r = shm_region_create(1024);
    char got[8][32];
    size_t n;
    pid_t pid;

    (void)state;
    assert_int_equal(drainlist_append(r->notregistered, "kept", 4, NULL, 0), 0);
    if ((pid = fork()) == 0) {
        pthread_mutex_lock(&r->notregistered->lock);
        kill(getpid(), SIGKILL);
    }
    waitpid(pid, NULL, 0);
    assert_int_equal(drainlist_append(r->notregistered, "after", 5, NULL, 0), 0);
    collect(r->notregistered, got, &n);
    assert_int_equal(n, 2);
    assert_string_equal(got[0], "kept");
    assert_string_equal(got[1], "after");
    shm_region_destroy(r);
}

static void slot_settlement(void **state)
{
    struct shm_region *r = shm_region_create(64);
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

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(append_and_drain_once),   cmocka_unit_test(full_list_counts_drops),
        cmocka_unit_test(children_share_one_list), cmocka_unit_test(concurrent_drains_exactly_once),
        cmocka_unit_test(giveback_keeps_what_fits), cmocka_unit_test(writer_killed_mid_append),
        cmocka_unit_test(dead_holder_does_not_wedge), cmocka_unit_test(slot_settlement),
    };
    return cmocka_run_group_tests_name("drainlist", tests, NULL, NULL);
}
