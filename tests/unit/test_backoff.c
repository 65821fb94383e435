/*
 * tests/unit/test_backoff.c - retry delays: bounds, growth, cap, Retry-After.
 */
#include "cmocka_all.h"

#include "../../child/core/backoff.h"

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
    };
    return cmocka_run_group_tests_name("backoff", tests, NULL, NULL);
}
