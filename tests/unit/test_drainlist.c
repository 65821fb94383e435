/*
 * tests/unit/test_drainlist.c - shared drain lists: order, exactly-once
 * draining across processes, bounded size, and a holder killed mid-lock.
 */
#include "cmocka_all.h"

#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/wait.h>
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
    assert_int_equal(shm_settle_slot(r, 0), 5);
    shm_sum(r, &t);
    assert_int_equal(t.counters[SHM_ACCEPTED], 7);
    assert_int_equal(t.counters[SHM_LOST], 5);
    assert_int_equal(t.pending, 0);
    shm_region_destroy(r);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(append_and_drain_once),   cmocka_unit_test(full_list_counts_drops),
        cmocka_unit_test(children_share_one_list), cmocka_unit_test(dead_holder_does_not_wedge),
        cmocka_unit_test(slot_settlement),
    };
    return cmocka_run_group_tests_name("drainlist", tests, NULL, NULL);
}
