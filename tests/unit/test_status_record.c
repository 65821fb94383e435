/*
 * tests/unit/test_status_record.c - a push's status read back from its hash
 * in Redis: what fcmd writes reads back whole, and anything else (a count
 * that is no number, unknown or malformed fields, errors with a gap) gives no status or leaves the bad part out.
 */
#include "cmocka_all.h"

#include <stdio.h>
#include <string.h>

#include "../../child/fleet/status_record.h"

static const char *const ups[] = {"fcm", "apns", "webpush"};

/* Reads the n C strings of flat (field, value, ...). */
static int read_flat(const char *const *flat, size_t n, struct push_status *s, struct status_record_errors *e)
{
    size_t len[64];

    for (size_t i = 0; i < n; i++)
        len[i] = flat[i] != NULL ? strlen(flat[i]) : 0;
    return status_record_read(flat, len, n, ups, 3, s, e);
}

struct seen {
    char text[512];
};

static void collect(void *arg, const char *token, size_t tl, const char *reason, size_t rl)
{
    struct seen *s = arg;
    size_t n = strlen(s->text);

    snprintf(s->text + n, sizeof(s->text) - n, "%.*s=%.*s;", (int)tl, token, (int)rl, reason);
}

static void what_fcmd_writes_reads_back(void **state)
{
    const char *flat[] = {"targets", "6", "app", "alpha", "upstream", "apns", "delivered", "3", "canonical", "1",
                          "invalid", "2", "failed", "1", "errors", "3", "t0", "a", "r0", "NotRegistered",
                          "t1", "b", "r1", "InvalidRegistration", "t2", "c", "r2", "Unavailable"};
    struct status_record_errors e;
    struct push_status s;
    struct seen seen = {""};

    (void)state;
    assert_int_equal(read_flat(flat, 28, &s, &e), 0);
    assert_int_equal(s.targets, 6);
    assert_int_equal(s.delivered, 3);
    assert_int_equal(s.canonical, 1);
    assert_int_equal(s.invalid, 2);
    assert_int_equal(s.failed, 1);
    assert_int_equal(s.upstream, 1);
    assert_string_equal(s.app, "alpha");
    assert_int_equal(s.errors, 3);
    assert_int_equal(push_status_pending(&s), 0);
    status_record_each_error(&e, s.errors, collect, &seen);
    assert_string_equal(seen.text, "a=NotRegistered;b=InvalidRegistration;c=Unavailable;");
}

static void a_begun_push_is_pending(void **state)
{
    const char *flat[] = {"targets", "2", "app", "", "upstream", "fcm"};
    struct status_record_errors e;
    struct push_status s;

    (void)state;
    assert_int_equal(read_flat(flat, 6, &s, &e), 0);
    assert_int_equal(push_status_pending(&s), 2);
    assert_string_equal(s.app, "");
    assert_int_equal(s.upstream, 0);
}

static void bad_hashes_are_no_status(void **state)
{
    struct status_record_errors e;
    struct push_status s;
    const char *no_targets[] = {"delivered", "1"};
    const char *zero[] = {"targets", "0"};
    const char *not_a_number[] = {"targets", "2x"};
    const char *negative[] = {"targets", "-1"};
    const char *too_big[] = {"targets", "4294967296"};
    const char *canonical_past[] = {"targets", "2", "delivered", "0", "canonical", "1"};
    const char *bad_app[] = {"targets", "1", "app", "a b"};
    const char *nil_value[] = {"targets", NULL};

    (void)state;
    assert_int_equal(read_flat(no_targets, 2, &s, &e), -1);
    assert_int_equal(read_flat(zero, 2, &s, &e), -1);
    assert_int_equal(read_flat(not_a_number, 2, &s, &e), -1);
    assert_int_equal(read_flat(negative, 2, &s, &e), -1);
    assert_int_equal(read_flat(too_big, 2, &s, &e), -1);
    assert_int_equal(read_flat(canonical_past, 6, &s, &e), -1);
    assert_int_equal(read_flat(bad_app, 4, &s, &e), -1);
    assert_int_equal(read_flat(nil_value, 2, &s, &e), -1);
    assert_int_equal(read_flat(no_targets, 0, &s, &e), -1);
}

/* A push delivered twice in part (a replay, a claim) has more outcomes
 * than targets: it reads as done. */
static void more_outcomes_than_targets_is_done(void **state)
{
    const char *flat[] = {"targets", "2", "delivered", "2", "failed", "1"};
    struct status_record_errors e;
    struct push_status s;

    (void)state;
    assert_int_equal(read_flat(flat, 6, &s, &e), 0);
    assert_int_equal(push_status_pending(&s), 0);
}

static void odd_fields_are_left_out(void **state)
{
    /* An unknown upstream, foreign fields, error fields out of range or
     * malformed, an error with no reason and a gap: only t0/r0 count. */
    const char *flat[] = {"targets", "3", "upstream", "pigeon", "colour", "blue", "t0", "x", "r0", "why",
                          "t1", "y", "t3", "z", "r3", "gap", "t100", "big", "r100", "big", "t01", "lead", "r01",
                          "lead", "t", "none", "q0", "other", "dangling"};
    struct status_record_errors e;
    struct push_status s;
    struct seen seen = {""};

    (void)state;
    assert_int_equal(read_flat(flat, 29, &s, &e), 0);
    assert_int_equal(s.upstream, UINT32_MAX);
    assert_int_equal(s.errors, 1);
    status_record_each_error(&e, s.errors, collect, &seen);
    assert_string_equal(seen.text, "x=why;");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(what_fcmd_writes_reads_back),
        cmocka_unit_test(a_begun_push_is_pending),
        cmocka_unit_test(bad_hashes_are_no_status),
        cmocka_unit_test(more_outcomes_than_targets_is_done),
        cmocka_unit_test(odd_fields_are_left_out),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
