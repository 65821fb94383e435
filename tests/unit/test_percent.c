/*
 * tests/unit/test_percent.c - the one percent-decoder: escapes of either
 * case, '+' in forms only, broken escapes, %00, and a buffer too small.
 */
#include "cmocka_all.h"

#include <errno.h>
#include <string.h>

#include "../../common/percent.h"

static long dec(const char *s, char *out, size_t outlen, unsigned flags)
{
    return percent_decode(s, strlen(s), out, outlen, flags);
}

static void decodes(void **state)
{
    char out[64];

    (void)state;
    assert_int_equal(dec("a%41%62+c", out, sizeof(out), 0), 5);
    assert_string_equal(out, "aAb+c");
    assert_int_equal(dec("a%41%62+c", out, sizeof(out), PERCENT_PLUS), 5);
    assert_string_equal(out, "aAb c");
    assert_int_equal(dec("%7b%7D", out, sizeof(out), 0), 2);
    assert_string_equal(out, "{}");
    assert_int_equal(dec("", out, sizeof(out), 0), 0);
    assert_string_equal(out, "");
    /* %00 decodes to a NUL byte inside the length, unless refused. */
    assert_int_equal(dec("x%00y", out, sizeof(out), 0), 3);
    assert_memory_equal(out, "x\0y", 4);
    assert_int_equal(dec("x%00y", out, sizeof(out), PERCENT_NO_NUL), -EINVAL);
}

static void refuses(void **state)
{
    static const char *const broken[] = {"%", "%4", "a%4", "%G1", "%1g", "%%41", "ab%"};
    char out[8];

    (void)state;
    for (size_t i = 0; i < sizeof(broken) / sizeof(broken[0]); i++)
        assert_int_equal(dec(broken[i], out, sizeof(out), PERCENT_PLUS), -EINVAL);
    /* The NUL needs its byte too. */
    assert_int_equal(dec("abcd", out, 4, 0), -ENOSPC);
    assert_int_equal(dec("abcd", out, 5, 0), 4);
    assert_int_equal(dec("%41%41%41%41", out, 5, 0), 4);
    assert_int_equal(dec("", out, 0, 0), -ENOSPC);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(decodes),
        cmocka_unit_test(refuses),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
