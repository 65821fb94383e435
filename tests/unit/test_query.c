/*
 * tests/unit/test_query.c - the one query parser: parameters in any order,
 * empty pieces, percent-decoding of names and values, and what it refuses
 * (a parameter the endpoint does not take, one given twice, a broken escape
 * or %00), with a reason naming the parameter in printable ASCII.
 */
#include "cmocka_all.h"

#include <errno.h>
#include <string.h>

#include "../../child/http/query.h"

static const char *const report[] = {"scope", "app", NULL};

static int check(const char *q, const char *const *names, char *err)
{
    err[0] = '\0';
    return query_check(q, strlen(q), names, err, 256);
}

static long get(const char *q, const char *name, char *out, size_t outlen)
{
    return query_get(q, strlen(q), name, out, outlen);
}

static void takes_what_the_endpoint_declares(void **state)
{
    static const char *const fine[] = {"",
                                       "app=alpha",
                                       "scope=local&app=alpha",
                                       "app=alpha&scope=local",
                                       "&&app=alpha&",
                                       "%61pp=alpha",
                                       "app=al%70ha+x",
                                       "app",
                                       "app=",
                                       "scope=a=b"};
    char err[256];

    (void)state;
    for (size_t i = 0; i < sizeof(fine) / sizeof(fine[0]); i++)
        assert_int_equal(check(fine[i], report, err), 0);
    assert_int_equal(check("", NULL, err), 0);
    assert_int_equal(check("&", NULL, err), 0);
}

static void refuses_with_the_parameters_name(void **state)
{
    static const struct {
        const char *q, *const *names, *needle;
    } bad[] = {
        {"x=1&app=alpha", report, "unknown query parameter \"x\": this endpoint takes scope, app"},
        {"app=alpha&x", report, "\"x\""},
        {"x=1", NULL, "unknown query parameter \"x\": this endpoint takes none"},
        {"app=a&app=b", report, "\"app\" is given twice"},
        {"app=a&%61pp=a", report, "\"app\" is given twice"},
        {"app=al%zzpha", report, "\"app\" has a value that is not percent-encoded"},
        {"app=a%00", report, "\"app\" has a value"},
        {"app=a%4", report, "\"app\" has a value"},
        {"ap%zz=1", report, "\"ap%zz\" is not percent-encoded"},
        {"a%00p=1", report, "\"a%00p\" is not percent-encoded"},
        {"=1", report, "unknown query parameter \"\""},
        {"%22%0a%ff=1", report, "unknown query parameter \"\?\?\?\""},
        {"scope=local&x%3Dy=1", report, "\"x=y\""},
    };
    char err[256], longname[200];

    (void)state;
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        assert_int_equal(check(bad[i].q, bad[i].names, err), -EINVAL);
        if (strstr(err, bad[i].needle) == NULL)
            fail_msg("%s: \"%s\" does not say %s", bad[i].q, err, bad[i].needle);
    }
    /* A name too long for any endpoint is shown cut, and still refused. */
    memset(longname, 'n', sizeof(longname));
    memcpy(longname + sizeof(longname) - 3, "=1", 3);
    assert_int_equal(check(longname, report, err), -EINVAL);
    assert_non_null(strstr(err, "\"nnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnn...\""));
}

static void reads_values_by_name(void **state)
{
    char out[16];

    (void)state;
    assert_int_equal(get("scope=local&app=alpha", "app", out, sizeof(out)), 5);
    assert_string_equal(out, "alpha");
    assert_int_equal(get("app=alpha&scope=local", "scope", out, sizeof(out)), 5);
    assert_string_equal(out, "local");
    assert_int_equal(get("%61pp=al%70ha+b", "app", out, sizeof(out)), 7);
    assert_string_equal(out, "alpha b");
    assert_int_equal(get("app", "app", out, sizeof(out)), 0);
    assert_string_equal(out, "");
    assert_int_equal(get("app=", "app", out, sizeof(out)), 0);
    assert_int_equal(get("apps=x&ap=y", "app", out, sizeof(out)), -ENOENT);
    assert_int_equal(get("", "app", out, sizeof(out)), -ENOENT);
    assert_int_equal(get("app=%zz", "app", out, sizeof(out)), -EINVAL);
    assert_int_equal(get("app=0123456789abcdef", "app", out, sizeof(out)), -ENOSPC);
}

static void numbers(void **state)
{
    unsigned long v = 7;

    (void)state;
    assert_int_equal(query_uint("0", 1, 30, &v), 0);
    assert_int_equal(v, 0);
    assert_int_equal(query_uint("30", 2, 30, &v), 0);
    assert_int_equal(v, 30);
    assert_int_equal(query_uint("31", 2, 30, &v), -EINVAL);
    assert_int_equal(query_uint("", 0, 30, &v), -EINVAL);
    assert_int_equal(query_uint("-1", 2, 30, &v), -EINVAL);
    assert_int_equal(query_uint("1 ", 2, 30, &v), -EINVAL);
    assert_int_equal(query_uint("99999999999999999999", 20, 30, &v), -EINVAL);
    assert_int_equal(v, 30);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(takes_what_the_endpoint_declares),
        cmocka_unit_test(refuses_with_the_parameters_name),
        cmocka_unit_test(reads_values_by_name),
        cmocka_unit_test(numbers),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
