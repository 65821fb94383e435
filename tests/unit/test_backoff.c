/*
 * tests/unit/test_backoff.c - retry delays as docs/ARCHITECTURE.md ("Retries")
 * and common/backoff.h describe them: a uniform pick in
 * [0, min(60 s, 500 ms * 2^attempt)] (full jitter), never less than the
 * upstream's Retry-After.
 *
 * The expected ceilings are written out, not computed with the formula under
 * test.  The random values come from the test's own generator (splitmix64),
 * seeded with constants, so every run makes the same draws; the jitter
 * checks hold for any uniform mapping of a 32-bit value onto the range, not
 * only for the one the code uses.
 */
#include "cmocka_all.h"

#include <limits.h>

#include "../../common/backoff.h"

/* splitmix64 (Steele, Lea and Flood), the upper half of each output: the
 * test's deterministic random source, independent of backoff_random(). */
static uint32_t draw(uint64_t *s)
{
    uint64_t z = (*s += 0x9e3779b97f4a7c15u);

    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9u;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebu;
    return (uint32_t)((z ^ (z >> 31)) >> 32);
}

/* Enough draws that a uniform pick in [0, 60000] shows both of its ends:
 * the chance that one end is never drawn is below e^-30. */
#define DRAWS 1900000

struct spread {
    uint64_t lo, hi;
};

static struct spread spread_of(unsigned attempt, int64_t retry_after_ms, uint64_t seed, int draws)
{
    struct spread s = {UINT64_MAX, 0};

    for (int i = 0; i < draws; i++) {
        uint64_t d = backoff_delay_ms(attempt, retry_after_ms, draw(&seed));
        s.lo = d < s.lo ? d : s.lo;
        s.hi = d > s.hi ? d : s.hi;
    }
    return s;
}

/* Each step's range, from the documented 500 ms doubling and 60 s cap:
 * never past its ceiling, and reaching both 0 and the ceiling itself. */
static void each_step_spans_zero_to_its_ceiling(void **state)
{
    static const struct {
        unsigned attempt;
        uint64_t ceiling_ms;
    } steps[] = {
        {0, 500},    {1, 1000},   {2, 2000},   {3, 4000},   {4, 8000},     {5, 16000},
        {6, 32000},  {7, 60000},  {8, 60000},  {9, 60000},  {20, 60000},   {31, 60000},
        {32, 60000}, {63, 60000}, {64, 60000}, {65, 60000}, {1000, 60000}, {UINT_MAX, 60000},
    };

    (void)state;
    for (size_t i = 0; i < sizeof(steps) / sizeof(steps[0]); i++) {
        struct spread s = spread_of(steps[i].attempt, -1, 0x5eed0000u + i, DRAWS);
        assert_int_equal(s.lo, 0);
        assert_int_equal(s.hi, steps[i].ceiling_ms);
    }
}

/* Full jitter: the picks spread evenly over [0, ceiling], not bunched near
 * the top (as "equal jitter" would) nor near the bottom.  Ten bins over
 * [0, 4000] each get a tenth of 400000 draws, within 3% (six standard
 * deviations). */
static void full_jitter_is_uniform_over_the_range(void **state)
{
    enum { N = 400000, BINS = 10 };
    uint64_t seed = 42, sum = 0;
    unsigned bins[BINS] = {0};

    (void)state;
    for (int i = 0; i < N; i++) {
        uint64_t d = backoff_delay_ms(3, -1, draw(&seed));
        assert_true(d <= 4000);
        bins[d * BINS / 4001]++;
        sum += d;
    }
    for (int b = 0; b < BINS; b++) {
        assert_in_range(bins[b], N / BINS * 97 / 100, N / BINS * 103 / 100);
    }
    assert_in_range(sum / N, 1980, 2020); /* the mean, 2000 */
}

/* Retry-After is a floor: picks below it become it, picks above it stay. */
static void retry_after_is_a_floor(void **state)
{
    enum { N = 400000 };
    uint64_t seed = 7;
    unsigned at_floor = 0;
    struct spread s;

    (void)state;
    /* Above the ceiling (500 ms at attempt 0), or above the 60 s cap: always it. */
    s = spread_of(0, 5000, 1, 100000);
    assert_int_equal(s.lo, 5000);
    assert_int_equal(s.hi, 5000);
    s = spread_of(30, 3600000, 2, 100000);
    assert_int_equal(s.lo, 3600000);
    assert_int_equal(s.hi, 3600000);
    /* Inside the range [0, 4000] of attempt 3: [1000, 4000], and the picks
     * below 1000, a quarter of them, all become 1000. */
    s = spread_of(3, 1000, 3, DRAWS);
    assert_int_equal(s.lo, 1000);
    assert_int_equal(s.hi, 4000);
    for (int i = 0; i < N; i++)
        at_floor += backoff_delay_ms(3, 1000, draw(&seed)) == 1000;
    assert_in_range(at_floor, N / 4 * 96 / 100, N / 4 * 104 / 100);
    /* A Retry-After of 0 asks for nothing more than the back-off; -1 is none. */
    s = spread_of(2, 0, 4, DRAWS);
    assert_int_equal(s.lo, 0);
    assert_int_equal(s.hi, 2000);
}

/* The random value is the caller's: the same value gives the same delay. */
static void the_delay_is_a_function_of_its_arguments(void **state)
{
    uint64_t seed = 99;

    (void)state;
    for (int i = 0; i < 1000; i++) {
        uint32_t rnd = draw(&seed);
        unsigned attempt = (unsigned)i % 12;
        assert_int_equal(backoff_delay_ms(attempt, -1, rnd), backoff_delay_ms(attempt, -1, rnd));
        assert_int_equal(backoff_delay_ms(attempt, 700, rnd), backoff_delay_ms(attempt, 700, rnd));
    }
}

/* backoff_random(), the callers' source: a seed gives one sequence, the
 * state never reaches 0 (where xorshift would stay), and its values spread
 * a step's delays over the whole range as the test's own source does. */
static void the_generator_is_a_usable_jitter_source(void **state)
{
    uint64_t a = 0x0123456789abcdefu, b = a, lo = UINT64_MAX, hi = 0;

    (void)state;
    for (int i = 0; i < 1000; i++)
        assert_int_equal(backoff_random(&a), backoff_random(&b));
    for (int i = 0; i < DRAWS; i++) {
        uint64_t d = backoff_delay_ms(1, -1, backoff_random(&a));
        assert_true(a != 0);
        lo = d < lo ? d : lo;
        hi = d > hi ? d : hi;
    }
    assert_int_equal(lo, 0);
    assert_int_equal(hi, 1000);
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

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(each_step_spans_zero_to_its_ceiling),
        cmocka_unit_test(full_jitter_is_uniform_over_the_range),
        cmocka_unit_test(retry_after_is_a_floor),
        cmocka_unit_test(the_delay_is_a_function_of_its_arguments),
        cmocka_unit_test(the_generator_is_a_usable_jitter_source),
        cmocka_unit_test(the_other_shapes),
    };
    return cmocka_run_group_tests_name("backoff", tests, NULL, NULL);
}
