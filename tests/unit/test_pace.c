/*
 * tests/unit/test_pace.c - upstream concurrency (AIMD) and the rate bucket.
 */
#include "cmocka_all.h"

#include "../../child/upstream/pace.h"

/* Finishes n requests, all saturated or none, none throttled. */
static void finish(struct pace *p, size_t n, int saturated)
{
    for (size_t i = 0; i < n; i++)
        pace_finished(p, 0, saturated);
}

static void start_is_clamped(void **state)
{
    struct pace p;

    (void)state;
    pace_init(&p, 10, 5, 100);
    assert_int_equal(p.limit, 10);
    pace_init(&p, 10, 500, 100);
    assert_int_equal(p.limit, 100);
    pace_init(&p, 0, 0, 0);
    assert_int_equal(p.limit, 1);
    assert_int_equal(p.ceiling, 1);
    /* The ceiling (--max-inflight) wins over the floor. */
    pace_init(&p, 8, 1, 4);
    assert_int_equal(p.limit, 4);
    assert_int_equal(p.floor, 4);
    pace_finished(&p, 1, 1);
    assert_int_equal(p.limit, 4);
}

static void grows_a_step_per_saturated_window_up_to_the_ceiling(void **state)
{
    struct pace p;

    (void)state;
    pace_init(&p, 1, 400, 1600);
    assert_int_equal(p.step, 100);
    finish(&p, 399, 1);
    assert_int_equal(p.limit, 400); /* not a whole window yet */
    assert_true(pace_finished(&p, 0, 1));
    assert_int_equal(p.limit, 500);
    finish(&p, 500, 1);
    assert_int_equal(p.limit, 600);
    for (int i = 0; i < 100; i++)
        finish(&p, p.limit, 1);
    assert_int_equal(p.limit, 1600);
}

static void does_not_grow_unless_saturated(void **state)
{
    struct pace p;

    (void)state;
    pace_init(&p, 1, 100, 1000);
    for (int i = 0; i < 10; i++)
        finish(&p, 100, 0);
    assert_int_equal(p.limit, 100);
    /* A window half saturated does not grow it either. */
    finish(&p, 50, 1);
    finish(&p, 50, 0);
    assert_int_equal(p.limit, 100);
}

static void halves_once_a_window_on_throttling(void **state)
{
    struct pace p;

    (void)state;
    pace_init(&p, 10, 400, 1600);
    assert_true(pace_finished(&p, 1, 1));
    assert_int_equal(p.limit, 200);
    /* The rest of what was in flight comes back refused: no more halving
     * until a window (the new limit) of finishes has passed. */
    for (int i = 0; i < 199; i++)
        assert_false(pace_finished(&p, 1, 1));
    assert_int_equal(p.limit, 200);
    /* ...nor growth in the window of the cut. */
    pace_init(&p, 10, 400, 1600);
    pace_finished(&p, 1, 1);
    finish(&p, 200, 1);
    assert_int_equal(p.limit, 200);
    finish(&p, 200, 1);
    assert_int_equal(p.limit, 300); /* a clean saturated window grows it again */
    /* Sustained refusals halve down to the floor and stop there. */
    for (int i = 0; i < 20; i++) {
        pace_finished(&p, 1, 1);
        for (size_t k = p.limit; k > 0; k--)
            pace_finished(&p, 1, 1);
    }
    assert_int_equal(p.limit, 10);
}

static void no_rate_allows_everything(void **state)
{
    struct pace p;

    (void)state;
    pace_init(&p, 1, 1, 1);
    assert_int_equal(pace_messages(&p, 0), SIZE_MAX);
    assert_int_equal(pace_wait_ms(&p, 0), 0);
    pace_set_rate(&p, 0.0 / 0.0, 0); /* NaN is no rate */
    assert_int_equal(pace_messages(&p, 0), SIZE_MAX);
}

static void rate_is_never_exceeded(void **state)
{
    struct pace p;
    uint64_t now = 1000000, sent = 0, window_start, in_window;

    (void)state;
    pace_init(&p, 1, 1, 1);
    pace_set_rate(&p, 50, now);
    assert_int_equal(pace_messages(&p, now), 0); /* the bucket starts empty */
    /* A greedy sender over ten seconds, polling every millisecond. */
    window_start = now;
    in_window = 0;
    for (uint64_t t = now; t < now + 10000; t++) {
        size_t n = pace_messages(&p, t);
        if (t - window_start >= 1000) {
            assert_true(in_window <= 50 + 5);
            window_start = t;
            in_window = 0;
        }
        pace_spend(&p, n);
        sent += n;
        in_window += n;
    }
    assert_true(sent >= 495 && sent <= 500);
}

static void wait_says_when_the_next_message_may_go(void **state)
{
    struct pace p;

    (void)state;
    pace_init(&p, 1, 1, 1);
    pace_set_rate(&p, 4, 0); /* one message each 250 ms */
    assert_true(pace_wait_ms(&p, 0) >= 250 && pace_wait_ms(&p, 0) <= 251);
    assert_int_equal(pace_messages(&p, 250), 1);
    pace_spend(&p, 1);
    assert_true(pace_wait_ms(&p, 260) >= 240 && pace_wait_ms(&p, 260) <= 241);
    /* Idle for long: the bucket holds at most one message at this rate. */
    assert_int_equal(pace_messages(&p, 60000), 1);
}

static void a_lower_rate_drops_what_the_bucket_held(void **state)
{
    struct pace p;

    (void)state;
    pace_init(&p, 1, 1, 1);
    pace_set_rate(&p, 1000, 0);
    assert_int_equal(pace_messages(&p, 5000), 100);
    pace_set_rate(&p, 100, 5000);
    assert_int_equal(pace_messages(&p, 5000), 10);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(start_is_clamped),
        cmocka_unit_test(grows_a_step_per_saturated_window_up_to_the_ceiling),
        cmocka_unit_test(does_not_grow_unless_saturated),
        cmocka_unit_test(halves_once_a_window_on_throttling),
        cmocka_unit_test(no_rate_allows_everything),
        cmocka_unit_test(rate_is_never_exceeded),
        cmocka_unit_test(wait_says_when_the_next_message_may_go),
        cmocka_unit_test(a_lower_rate_drops_what_the_bucket_held),
    };
    return cmocka_run_group_tests_name("pace", tests, NULL, NULL);
}
