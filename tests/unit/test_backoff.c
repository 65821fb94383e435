/*
 * tests/unit/test_backoff.c - retry delays: bounds, growth, cap, Retry-After.
 */
#include "cmocka_all.h"

#include "../../common/backoff.h"

static void full_jitter_bounds(void **state)
{
    uint64_t rng = 42, lo = UINT64_MAX, hi = 0;

    (void)state;
    for (int i = 0; i < 10000; i++) {
        uint64_t d = backoff_delay_ms(2, -1, backoff_random(&rng));
        lo = d < lo ? d : lo;
        hi = d > hi ? d : hi;
    }
    assert_true(hi <= (uint64_t)BACKOFF_BASE_MS << 2);
    /* Full jitter spreads over the whole range. */
    assert_true(lo < BACKOFF_BASE_MS / 2);
    assert_true(hi > ((uint64_t)BACKOFF_BASE_MS << 2) * 9 / 10);
}

static void ceiling_grows_then_caps(void **state)
{
    (void)state;
    assert_int_equal(backoff_delay_ms(0, -1, UINT32_MAX), UINT32_MAX % (BACKOFF_BASE_MS + 1));
    assert_int_equal(backoff_delay_ms(3, -1, 8 * BACKOFF_BASE_MS), 8 * BACKOFF_BASE_MS);
    assert_true(backoff_delay_ms(30, -1, UINT32_MAX) <= BACKOFF_CAP_MS);
    assert_true(backoff_delay_ms(200, -1, UINT32_MAX) <= BACKOFF_CAP_MS);
}

/* The shapes the master's respawns, Graphite and the Redis link use, with
 * the delays their docs give, written out. */
static void the_other_shapes(void **state)
{
    static const struct backoff respawn = {100, 10000, BACKOFF_EXACT};
    static const struct backoff redis = {100, 5000, BACKOFF_HALF};
    static const uint64_t want[] = {100, 200, 400, 800, 1600, 3200, 6400, 10000, 10000};

    (void)state;
    for (unsigned n = 0; n < sizeof(want) / sizeof(want[0]); n++)
        assert_int_equal(backoff_delay(&respawn, n, 12345), want[n]);
    assert_int_equal(backoff_delay(&respawn, 31, 0), 10000);
    assert_int_equal(backoff_delay(&respawn, 4000000000u, 0), 10000);
    /* Half of it fixed, half drawn: [50, 100] at first, [2500, 5000] once capped. */
    assert_int_equal(backoff_delay(&redis, 0, 0), 50);
    assert_int_equal(backoff_delay(&redis, 0, 50), 100);
    assert_int_equal(backoff_delay(&redis, 0, 51), 50);
    assert_int_equal(backoff_delay(&redis, 10, 0), 2500);
    assert_int_equal(backoff_delay(&redis, 10, 2500), 5000);
}

static void retry_after_is_a_floor(void **state)
{
    (void)state;
    assert_int_equal(backoff_delay_ms(0, 5000, 0), 5000);
    assert_int_equal(backoff_delay_ms(0, 5000, 100), 5000);
    assert_int_equal(backoff_delay_ms(10, 0, BACKOFF_CAP_MS), BACKOFF_CAP_MS);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(full_jitter_bounds),
        cmocka_unit_test(ceiling_grows_then_caps),
        cmocka_unit_test(retry_after_is_a_floor),
        cmocka_unit_test(the_other_shapes),
    };
    return cmocka_run_group_tests_name("backoff", tests, NULL, NULL);
}
