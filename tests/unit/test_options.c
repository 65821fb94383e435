/*
 * tests/unit/test_options.c - GoCM-style flags: one dash or two, =value.
 */
#include "cmocka_all.h"

#include <errno.h>
#include <string.h>

#include "../../common/options.h"

static int parse(struct fcmd_options *o, int argc, char **argv, char *err)
{
    options_defaults(o);
    return options_parse(o, argc, argv, err, 256);
}

static void dash_styles(void **state)
{
    char *argv[] = {"fcmd", "-apikey", "K", "--port=6000", "-workers=3", "--ipaddress", "::1", "-retries", "0"};
    struct fcmd_options o;
    char err[256];

    (void)state;
    assert_int_equal(parse(&o, 9, argv, err), 0);
    assert_string_equal(o.apikey, "K");
    assert_int_equal(o.port, 6000);
    assert_int_equal(o.workers, 3);
    assert_string_equal(o.host, "::1");
    assert_int_equal(o.retries, 0);
    assert_int_equal(options_validate(&o, err, sizeof(err)), 0);
}

static void defaults(void **state)
{
    char *argv[] = {"fcmd"};
    struct fcmd_options o;
    char err[256];

    (void)state;
    assert_int_equal(parse(&o, 1, argv, err), 0);
    assert_int_equal(o.port, 5601);
    assert_string_equal(o.host, "0.0.0.0");
    assert_int_equal(o.retries, 3);
    assert_true(o.workers >= 1);
    assert_string_equal(o.gcm_url, "https://fcm.googleapis.com/fcm/send");
    /* No credentials is an error, and it says what to do. */
    assert_int_equal(options_validate(&o, err, sizeof(err)), -1);
    assert_non_null(strstr(err, "--apikey"));
}

static void bad_flags(void **state)
{
    struct fcmd_options o;
    char err[256];
    char *unknown[] = {"fcmd", "--bogus"};
    char *no_value[] = {"fcmd", "--port"};
    char *bad_port[] = {"fcmd", "--port", "70000"};
    char *not_number[] = {"fcmd", "-workers=two"};
    char *stray[] = {"fcmd", "apikey"};
    char *bad_url[] = {"fcmd", "--apikey", "k", "--gcm-url", "ftp://x"};

    (void)state;
    assert_int_equal(parse(&o, 2, unknown, err), -1);
    assert_non_null(strstr(err, "unknown option"));
    assert_int_equal(parse(&o, 2, no_value, err), -1);
    assert_non_null(strstr(err, "needs a value"));
    assert_int_equal(parse(&o, 3, bad_port, err), -1);
    assert_int_equal(parse(&o, 2, not_number, err), -1);
    assert_int_equal(parse(&o, 2, stray, err), -1);
    assert_int_equal(parse(&o, 5, bad_url, err), 0);
    assert_int_equal(options_validate(&o, err, sizeof(err)), -1);
    assert_non_null(strstr(err, "--gcm-url"));
}

static void booleans(void **state)
{
    struct fcmd_options o;
    char err[256];
    char *on[] = {"fcmd", "--http2-prior-knowledge"};
    char *off[] = {"fcmd", "-http2-prior-knowledge=false"};
    char *help[] = {"fcmd", "-help"};

    (void)state;
    assert_int_equal(parse(&o, 2, on, err), 0);
    assert_int_equal(o.http2_prior_knowledge, 1);
    assert_int_equal(parse(&o, 2, off, err), 0);
    assert_int_equal(o.http2_prior_knowledge, 0);
    assert_int_equal(parse(&o, 2, help, err), 0);
    assert_int_equal(o.help, 1);
}

/* Failures are -1 with a reason, or -errno where callers tell causes apart. */
static void error_results(void **state)
{
    struct fcmd_options o;
    char err[256] = "";

    (void)state;
    options_defaults(&o);
    assert_int_equal(options_set(&o, "no-such-option", "1", err, sizeof(err)), -1);
    assert_non_null(strstr(err, "no-such-option"));
    assert_int_equal(options_set(&o, "port", "6001", err, sizeof(err)), 0);
    assert_int_equal(o.port, 6001);
    assert_int_equal(options_socket_mode(&o), -ENOENT);
    o.socket_mode = "0660";
    assert_int_equal(options_socket_mode(&o), 0660);
    o.socket_mode = "0980";
    assert_int_equal(options_socket_mode(&o), -EINVAL);
    o.unix_path = "/tmp/fcmd-test.sock";
    assert_int_equal(options_validate(&o, err, sizeof(err)), -1);
    assert_non_null(strstr(err, "--socket-mode"));
}

static void app_names(void **state)
{
    struct fcmd_app apps[2] = {{.name = "shop"}, {.name = "game-2"}};
    struct fcmd_options o;

    (void)state;
    options_defaults(&o);
    o.apps = apps;
    o.napps = 2;
    assert_true(options_app_name_ok("a.B_c-9", 7));
    assert_false(options_app_name_ok("", 0));
    assert_false(options_app_name_ok("a b", 3));
    assert_false(options_app_name_ok("a\0b", 3));
    assert_false(options_app_name_ok("xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx", 45));
    assert_int_equal(options_app_find(&o, NULL, 0), APP_DEFAULT);
    assert_int_equal(options_app_find(&o, "default", 7), APP_DEFAULT);
    assert_int_equal(options_app_find(&o, "shop", 4), 1);
    assert_int_equal(options_app_find(&o, "game-2", 6), 2);
    assert_int_equal(options_app_find(&o, "sho", 3), -ENOENT);
    assert_int_equal(options_app_find(&o, "shopx", 5), -ENOENT);
    assert_string_equal(options_app_name(&o, 2), "game-2");
    assert_string_equal(options_app_name(&o, 0), "");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(dash_styles), cmocka_unit_test(defaults),      cmocka_unit_test(bad_flags),
        cmocka_unit_test(booleans),    cmocka_unit_test(error_results), cmocka_unit_test(app_names),
    };
    return cmocka_run_group_tests_name("options", tests, NULL, NULL);
}
