/*
 * tests/unit/test_redis_url.c - the --redis URL: every accepted form, the
 * refusals, and that no refusal quotes the password.
 */
#include "cmocka_all.h"

#include "../../common/log.h"
#include "../../common/redis_url.h"

#include <string.h>

static struct redis_url u;
static char err[256];

static int parse(const char *url)
{
    err[0] = '\0';
    return redis_url_parse(url, &u, err, sizeof(err));
}

static void plain_host(void **state)
{
    (void)state;
    assert_int_equal(parse("redis://localhost"), 0);
    assert_false(u.is_unix);
    assert_string_equal(u.host, "localhost");
    assert_int_equal(u.port, 6379);
    assert_int_equal(u.db, 0);
    assert_string_equal(u.password, "");
    assert_int_equal(parse("redis://10.0.0.5:6380/"), 0);
    assert_string_equal(u.host, "10.0.0.5");
    assert_int_equal(u.port, 6380);
}

static void password_port_db(void **state)
{
    (void)state;
    assert_int_equal(parse("redis://:s3cret@redis.example:7000/3"), 0);
    assert_string_equal(u.host, "redis.example");
    assert_int_equal(u.port, 7000);
    assert_int_equal(u.db, 3);
    assert_string_equal(u.user, "");
    assert_string_equal(u.password, "s3cret");
    /* An ACL user, and a password that needs escapes. */
    assert_int_equal(parse("redis://fcmd:p%40ss%2Fw%3Ard@h/15"), 0);
    assert_string_equal(u.user, "fcmd");
    assert_string_equal(u.password, "p@ss/w:rd");
    assert_int_equal(u.db, 15);
    /* The last '@' before the path ends the password. */
    assert_int_equal(parse("redis://:a@b@h"), 0);
    assert_string_equal(u.password, "a@b");
    assert_string_equal(u.host, "h");
}

static void ipv6(void **state)
{
    (void)state;
    assert_int_equal(parse("redis://[::1]:6390/2"), 0);
    assert_string_equal(u.host, "::1");
    assert_int_equal(u.port, 6390);
    assert_int_equal(u.db, 2);
    assert_int_equal(parse("redis://[::1]"), 0);
    assert_int_equal(u.port, 6379);
    assert_int_equal(parse("redis://[::1:6390"), -1);
}

static void tls(void **state)
{
    (void)state;
    assert_int_equal(parse("rediss://fcmd:pw@cache.example:6380/2"), 0);
    assert_true(u.tls);
    assert_false(u.is_unix);
    assert_string_equal(u.host, "cache.example");
    assert_int_equal(u.port, 6380);
    assert_int_equal(u.db, 2);
    assert_string_equal(u.user, "fcmd");
    assert_string_equal(u.password, "pw");
    assert_int_equal(parse("rediss://[::1]"), 0);
    assert_true(u.tls);
    assert_int_equal(u.port, 6379);
    assert_int_equal(parse("redis://h"), 0);
    assert_false(u.tls);
    assert_int_equal(parse("rediss://"), -1);
    assert_int_equal(parse("redisss://h"), -1);
    assert_int_equal(parse("unixs:///tmp/s"), -1);
}

static void unix_socket(void **state)
{
    (void)state;
    assert_int_equal(parse("unix:///run/redis/redis.sock"), 0);
    assert_true(u.is_unix);
    assert_string_equal(u.path, "/run/redis/redis.sock");
    assert_int_equal(u.db, 0);
    assert_int_equal(parse("unix:///tmp/r.sock?db=4"), 0);
    assert_int_equal(u.db, 4);
    assert_int_equal(parse("unix://relative.sock"), -1);
    assert_int_equal(parse("unix:///tmp/r.sock?x=1"), -1);
    char longpath[200] = "unix:///";
    memset(longpath + 8, 'a', 150);
    longpath[158] = '\0';
    assert_int_equal(parse(longpath), -1);
}

static void refused(void **state)
{
    static const char *const bad[] = {
        "",
        "localhost:6379",
        "http://localhost",
        "redis://",
        "redis://:pw@",
        "redis://host:0",
        "redis://host:65536",
        "redis://host:63x",
        "redis://host:",
        "redis://host/abc",
        "redis://host/-1",
        "redis://host/1/2",
        "redis://host/99999999",
        "redis://user@host",
        "redis://:bad%2@host",
        "redis://:nul%00@host",
        "redis://ho%41st",
    };

    (void)state;
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        assert_int_equal(parse(bad[i]), -1);
        assert_true(err[0] != '\0');
    }
}

static void reasons_never_show_the_password(void **state)
{
    static const char *const bad[] = {
        "redis://:hunter2@host:99999",
        "redis://:hunter2@host/x",
        "redis://u:hunter2%zz@host",
        "redis://:hunter2@[::1",
    };

    (void)state;
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        assert_int_equal(parse(bad[i]), -1);
        assert_null(strstr(err, "hunter2"));
    }
}

static void printable(void **state)
{
    char out[128];

    (void)state;
    assert_string_equal(log_url_any_at("redis://h:1/2", out, sizeof(out)), "redis://h:1/2");
    assert_string_equal(log_url_any_at("redis://:pw@h:1/2", out, sizeof(out)), "redis://***@h:1/2");
    assert_string_equal(log_url_any_at("redis://:p/w@h", out, sizeof(out)), "redis://***@h");
    assert_string_equal(log_url_any_at("unix:///tmp/s", out, sizeof(out)), "unix:///tmp/s");
    assert_string_equal(log_url_any_at("rediss://u:pw@h:1", out, sizeof(out)), "rediss://***@h:1");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(plain_host), cmocka_unit_test(password_port_db),
        cmocka_unit_test(ipv6),       cmocka_unit_test(unix_socket),
        cmocka_unit_test(refused),    cmocka_unit_test(reasons_never_show_the_password),
        cmocka_unit_test(printable),  cmocka_unit_test(tls),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
