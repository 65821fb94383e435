/*
 * tests/unit/test_push_id.c - push ids: their text against base64url as
 * Python's base64 module writes it, their form, their uniqueness, and
 * which ids from elsewhere are taken.
 */
#include "cmocka_all.h"

#include <stdlib.h>
#include <string.h>

#include "../../child/core/push_id.h"

/* Expected texts from Python: base64.urlsafe_b64encode(b).rstrip(b"=")
 * of the 16 bytes prefix (big endian) then counter (big endian). */
static void ids_are_base64url_of_prefix_and_counter(void **state)
{
    struct push_ids g = {0x0001020304050607u, 0x08090a0b0c0d0e0fu};
    char id[PUSH_ID_MAX + 1];

    (void)state;
    assert_int_equal(push_id_make(&g, id), 22);
    assert_string_equal(id, "AAECAwQFBgcICQoLDA0ODw"); /* bytes 0x00 to 0x0f */
    assert_int_equal(push_id_make(&g, id), 22);
    assert_string_equal(id, "AAECAwQFBgcICQoLDA0OEA"); /* the counter moved on */
    g = (struct push_ids){0xffffffffffffffffu, 0xffffffffffffffffu};
    push_id_make(&g, id);
    assert_string_equal(id, "_____________________w");
    assert_int_equal(g.next, 0); /* the counter wraps: 2^64 ids before a repeat */
    g = (struct push_ids){0xfbefbe0000000000u, 0};
    push_id_make(&g, id);
    assert_string_equal(id, "----AAAAAAAAAAAAAAAAAA");
}

static int cmp(const void *a, const void *b)
{
    return strcmp(a, b);
}

/* Drawn ids: well formed, distinct within a worker and between two. */
static void drawn_ids_are_well_formed_and_distinct(void **state)
{
    enum { N = 20000 };
    char(*ids)[PUSH_ID_MAX + 1] = calloc(2 * N, sizeof(*ids));
    struct push_ids a, b;

    (void)state;
    assert_non_null(ids);
    push_ids_init(&a);
    push_ids_init(&b);
    assert_true(a.prefix != b.prefix); /* 64 random bits each */
    for (size_t i = 0; i < N; i++) {
        assert_int_equal(push_id_make(&a, ids[i]), PUSH_ID_LEN);
        assert_int_equal(push_id_make(&b, ids[N + i]), PUSH_ID_LEN);
        assert_int_equal(strlen(ids[i]), PUSH_ID_LEN);
        assert_true(push_id_ok(ids[i], PUSH_ID_LEN));
        assert_true(push_id_ok(ids[N + i], PUSH_ID_LEN));
    }
    qsort(ids, 2 * N, sizeof(*ids), cmp);
    for (size_t i = 1; i < 2 * N; i++)
        assert_string_not_equal(ids[i - 1], ids[i]);
    free(ids);
}

/* What a record from another fcmd may hold: 1 to 64 of [A-Za-z0-9_-]. */
static void ids_from_elsewhere(void **state)
{
    char s[PUSH_ID_MAX + 2];

    (void)state;
    assert_true(push_id_ok("A", 1));
    assert_true(push_id_ok("azAZ09-_", 8));
    memset(s, 'x', sizeof(s));
    assert_true(push_id_ok(s, PUSH_ID_MAX));
    assert_false(push_id_ok(s, PUSH_ID_MAX + 1));
    assert_false(push_id_ok("", 0));
    assert_false(push_id_ok("a.b", 3));
    assert_false(push_id_ok("a b", 3));
    assert_false(push_id_ok("a=", 2));
    assert_false(push_id_ok("a/b", 3));
    assert_false(push_id_ok("a+b", 3));
    assert_false(push_id_ok("a\0b", 3));
    assert_false(push_id_ok("\xc3\xa9", 2));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(ids_are_base64url_of_prefix_and_counter),
        cmocka_unit_test(drawn_ids_are_well_formed_and_distinct),
        cmocka_unit_test(ids_from_elsewhere),
    };
    return cmocka_run_group_tests_name("push_id", tests, NULL, NULL);
}
