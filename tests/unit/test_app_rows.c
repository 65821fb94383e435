/*
 * tests/unit/test_app_rows.c - the region's app rows: kept by name across
 * generations, new apps in rows never used first, then in rows no running
 * generation holds (their counts start again), and never more than fit.
 */
#include "cmocka_all.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "../../shm/region.h"

static void name_apps(struct fcmd_app *apps, size_t n, const char *prefix, size_t first)
{
    memset(apps, 0, n * sizeof(*apps));
    for (size_t i = 0; i < n; i++)
        snprintf(apps[i].name, sizeof(apps[i].name), "%s%zu", prefix, first + i);
}

static void rows_follow_names(void **state)
{
    struct shm_region *r = shm_region_create(1024, 1 << 16, 1 << 16);
    struct fcmd_app gen1[2], gen2[2];
    unsigned rows1[2], rows2[2];

    (void)state;
    assert_non_null(r);
    name_apps(gen1, 2, "app", 0); /* app0, app1 */
    assert_int_equal(shm_apps_assign(r, gen1, 2, NULL, 0, rows1), 0);
    assert_int_equal(rows1[0], 1);
    assert_int_equal(rows1[1], 2);
    assert_string_equal(r->apps[1].name, "app0");
    shm_app_add(r, &r->slots[0], rows1[1], 0, SHM_UP_SUCCESSES, 5);
    /* app1 removed, app2 added: app0 keeps its row, app2 takes one never used. */
    name_apps(gen2, 2, "app", 0);
    snprintf(gen2[1].name, sizeof(gen2[1].name), "app2");
    assert_int_equal(shm_apps_assign(r, gen2, 2, gen1, 2, rows2), 0);
    assert_int_equal(rows2[0], 1);
    assert_int_equal(rows2[1], 3);
    /* The removed app's row keeps its counts, and its name. */
    assert_int_equal(atomic_load(&r->apps[2].by_upstream[0][SHM_UP_SUCCESSES]), 5);
    assert_int_equal(shm_app_row(r, "app1"), 2);
    /* The totals count too. */
    assert_int_equal(atomic_load(&r->slots[0].by_upstream[0][SHM_UP_SUCCESSES]), 5);
    shm_region_destroy(r);
}

static void full_rows_are_reused_then_refused(void **state)
{
    struct shm_region *r = shm_region_create(1024, 1 << 16, 1 << 16);
    static struct fcmd_app a[APPS_MAX], b[APPS_MAX];
    unsigned rows[APPS_MAX];

    (void)state;
    assert_non_null(r);
    name_apps(a, APPS_MAX, "a", 0);
    assert_int_equal(shm_apps_assign(r, a, APPS_MAX, NULL, 0, rows), 0);
    assert_int_equal(rows[APPS_MAX - 1], APPS_MAX);
    shm_app_add(r, &r->slots[0], rows[5], 1, SHM_UP_ATTEMPTS, 9); /* a5's row */
    /* Every row is used and the running generation holds them all: no room. */
    name_apps(b, 1, "b", 0);
    assert_int_equal(shm_apps_assign(r, b, 1, a, APPS_MAX, rows), -ENOSPC);
    /* Once a5 is gone from the running generation its row is reused, from zero. */
    memmove(&a[5], &a[6], (APPS_MAX - 6) * sizeof(a[0]));
    assert_int_equal(shm_apps_assign(r, b, 1, a, APPS_MAX - 1, rows), 0);
    assert_int_equal(rows[0], 6);
    assert_string_equal(r->apps[6].name, "b0");
    assert_int_equal(atomic_load(&r->apps[6].by_upstream[1][SHM_UP_ATTEMPTS]), 0);
    assert_int_equal(shm_app_row(r, "a5"), -1);
    /* An app outside any row counts only in the totals. */
    shm_app_add(r, &r->slots[1], SHM_APPS, 0, SHM_UP_FAILURES, 2);
    assert_int_equal(atomic_load(&r->slots[1].by_upstream[0][SHM_UP_FAILURES]), 2);
    shm_region_destroy(r);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(rows_follow_names),
        cmocka_unit_test(full_rows_are_reused_then_refused),
    };
    return cmocka_run_group_tests_name("app rows", tests, NULL, NULL);
}
