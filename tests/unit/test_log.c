/*
 * tests/unit/test_log.c - the logger keeps its own copy of the path it was
 * given, a failed open leaves the previous log in place, and URLs are
 * printed without their user and password.
 */
#include "cmocka_all.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "../../common/log.h"

static char dir[] = "/tmp/fcmd-test-log-XXXXXX";

static int make_dir(void **state)
{
    (void)state;
    return mkdtemp(dir) == NULL ? -1 : 0;
}

static int remove_dir(void **state)
{
    char path[256];

    (void)state;
    log_open(NULL);
    snprintf(path, sizeof(path), "%s/a.log", dir);
    unlink(path);
    snprintf(path, sizeof(path), "%s/b.log", dir);
    unlink(path);
    return rmdir(dir);
}

/* Whether the file at path holds needle. */
static int holds(const char *path, const char *needle)
{
    char text[8192];
    FILE *f = fopen(path, "r");
    size_t n;

    if (f == NULL)
        return 0;
    n = fread(text, 1, sizeof(text) - 1, f);
    fclose(f);
    text[n] = '\0';
    return strstr(text, needle) != NULL;
}

/* The caller's string may be freed (a reload frees the settings that named
 * the log); a later reopen still goes to the path it named. */
static void keeps_its_own_path(void **state)
{
    char path[256], *given;

    (void)state;
    snprintf(path, sizeof(path), "%s/a.log", dir);
    given = strdup(path);
    assert_non_null(given);
    assert_int_equal(log_open(given), 0);
    memset(given, 'x', strlen(given));
    free(given);
    assert_string_equal(log_path(), path);
    assert_int_equal(unlink(path), 0); /* as logrotate moves it away */
    assert_int_equal(log_reopen(), 0);
    log_info("after the reopen");
    assert_true(holds(path, "after the reopen"));
}

static void failed_open_keeps_the_previous_log(void **state)
{
    char path[256], bad[300];

    (void)state;
    snprintf(path, sizeof(path), "%s/b.log", dir);
    snprintf(bad, sizeof(bad), "%s/missing/c.log", dir);
    assert_int_equal(log_open(path), 0);
    assert_int_equal(log_open(bad), -ENOENT);
    assert_string_equal(log_path(), path);
    log_info("still here");
    assert_true(holds(path, "still here"));
}

static void stderr_has_no_path(void **state)
{
    (void)state;
    assert_int_equal(log_open(NULL), 0);
    assert_null(log_path());
    assert_int_equal(log_reopen(), 0);
}

static void url_without_credentials(void **state)
{
    static const char *const cases[][2] = {
        {"https://user:pass@fcm.example/v1", "https://***@fcm.example/v1"},
        {"http://key@127.0.0.1:8080/fcm/send?x=a@b", "http://***@127.0.0.1:8080/fcm/send?x=a@b"},
        {"https://u:p@ss@host", "https://***@host"},
        {"https://fcm.googleapis.com/fcm/send", "https://fcm.googleapis.com/fcm/send"},
        {"https://host/path@not-userinfo", "https://host/path@not-userinfo"},
        {"user:pass@host/x", "***@host/x"},
        {"", ""},
    };
    char out[128];

    (void)state;
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++)
        assert_string_equal(log_url(cases[i][0], out, sizeof(out)), cases[i][1]);
    /* Cut short rather than overflow. */
    assert_string_equal(log_url("https://u:p@abcdefgh", out, 12), "https://***");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(keeps_its_own_path),
        cmocka_unit_test(failed_open_keeps_the_previous_log),
        cmocka_unit_test(stderr_has_no_path),
        cmocka_unit_test(url_without_credentials),
    };
    return cmocka_run_group_tests_name("log", tests, make_dir, remove_dir);
}
