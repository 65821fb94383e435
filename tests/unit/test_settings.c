/*
 * tests/unit/test_settings.c - --auth-token-file: the whole first line, of
 * any length up to 64 KiB, without its line ending; apps' own credentials;
 * which settings hold a secret.
 */
#include "cmocka_all.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "../../master/settings.h"

static char path[] = "/tmp/fcmd-test-token-XXXXXX";

static int make_file(void **state)
{
    int fd = mkstemp(path);

    (void)state;
    if (fd < 0)
        return -1;
    close(fd);
    return 0;
}

static int remove_file(void **state)
{
    (void)state;
    return unlink(path);
}

/* Writes n copies of c, then tail, to the token file. */
static void write_token(size_t n, char c, const char *tail)
{
    FILE *f = fopen(path, "w");

    assert_non_null(f);
    for (size_t i = 0; i < n; i++)
        fputc(c, f);
    fputs(tail, f);
    assert_int_equal(fclose(f), 0);
}

static struct settings *load(char *err, size_t errlen)
{
    /* Headers large enough for the longest token a file may hold. */
    char *argv[] = {"fcmd", "--apikey", "k", "--auth-token-file", path, "--max-header-bytes", "262144"};

    return settings_load(7, argv, NULL, 1, err, errlen);
}

static void whole_first_line(void **state)
{
    char err[600];
    struct settings *s;

    (void)state;
    write_token(5000, 'a', "\nsecond line\n");
    s = load(err, sizeof(err));
    assert_non_null(s);
    assert_int_equal(strlen(s->o.auth_token), 5000);
    assert_int_equal(strspn(s->o.auth_token, "a"), 5000);
    settings_free(s);
}

static void crlf_and_no_line_end(void **state)
{
    char err[600];
    struct settings *s;

    (void)state;
    write_token(3, 'b', "\r\n");
    assert_non_null(s = load(err, sizeof(err)));
    assert_string_equal(s->o.auth_token, "bbb");
    settings_free(s);
    write_token(4, 'c', "");
    assert_non_null(s = load(err, sizeof(err)));
    assert_string_equal(s->o.auth_token, "cccc");
    settings_free(s);
}

static void bounded_at_64_kib(void **state)
{
    char err[600];
    struct settings *s;

    (void)state;
    write_token(65536, 't', "\n");
    assert_non_null(s = load(err, sizeof(err)));
    assert_int_equal(strlen(s->o.auth_token), 65536);
    settings_free(s);
    write_token(65536, 't', "");
    assert_non_null(s = load(err, sizeof(err)));
    settings_free(s);
    write_token(65537, 't', "\n");
    assert_null(load(err, sizeof(err)));
    assert_non_null(strstr(err, "longer than 65536 bytes"));
    assert_null(strstr(err, "ttt"));
}

static void no_token(void **state)
{
    char err[600];

    (void)state;
    write_token(0, 'x', "\nlater\n");
    assert_null(load(err, sizeof(err)));
    assert_non_null(strstr(err, "holds no token"));
    write_token(2, 'x', "\tx\n");
    assert_null(load(err, sizeof(err)));
    assert_non_null(strstr(err, "control character"));
}

/* [app NAME] sections: each app the instance's settings with its own
 * credentials; at a reload, an app whose key cannot be read is kept,
 * marked broken, instead of failing the whole load. */
static void apps_take_their_own_credentials(void **state)
{
    char conf[] = "/tmp/fcmd-test-conf-XXXXXX", err[600];
    char *argv[] = {"fcmd", "--config", conf};
    struct settings *s;
    FILE *f;
    int fd;

    (void)state;
    write_token(3, 'k', "\n"); /* the alpha app's key file */
    assert_true((fd = mkstemp(conf)) >= 0);
    assert_non_null(f = fdopen(fd, "w"));
    fprintf(f, "[upstream]\napikey = dk\ngcm_url = http://127.0.0.1:9/fcm/send\n[send]\nretries = 7\n"
               "[app alpha]\napikey_file = %s\n[app beta]\napikey = bk\ngcm_url = http://127.0.0.1:8/x\n"
               "[app ios]\napns_key = /nonexistent.p8\napns_key_id = ABCDE12345\napns_team_id = TEAM987654\n",
            path);
    assert_int_equal(fclose(f), 0);
    assert_null(settings_load(3, argv, NULL, SETTINGS_VALIDATE, err, sizeof(err)));
    assert_non_null(strstr(err, "[app ios]"));
    assert_non_null(s = settings_load(3, argv, NULL, SETTINGS_RELOAD, err, sizeof(err)));
    assert_int_equal(s->o.napps, 3);
    assert_string_equal(s->o.apikey, "dk");
    assert_string_equal(s->apps[0].name, "alpha");
    assert_string_equal(s->apps[0].o.apikey, "kkk");
    assert_string_equal(s->apps[0].o.gcm_url, "http://127.0.0.1:9/fcm/send"); /* the instance's */
    assert_int_equal(s->apps[0].o.retries, 7);
    assert_string_equal(s->apps[1].o.apikey, "bk");
    assert_string_equal(s->apps[1].o.gcm_url, "http://127.0.0.1:8/x");
    assert_int_equal(s->apps[0].broken, 0);
    assert_int_equal(s->apps[2].broken, 1);
    assert_null(s->apps[2].o.apns_pkey);
    settings_free(s);
    unlink(conf);
}

/* Settings holding nothing: the defaults, and one app with no credential
 * (as a reload keeps an app whose key it could not read). */
static void blank(struct settings *s, struct settings_env *env, struct fcmd_app *app)
{
    memset(s, 0, sizeof(*s));
    memset(env, 0, sizeof(*env));
    memset(app, 0, sizeof(*app));
    options_defaults(&s->o);
    app->o = s->o;
    app->broken = 1;
    s->o.apps = s->apps = app;
    s->o.napps = 1;
    s->env = env;
}

/* Each kind of secret, alone, is one; a URL is one only with a user or a
 * password in it. */
static void every_kind_of_secret_counts(void **state)
{
    struct service_account sa;
    struct settings_env env;
    struct fcmd_app app;
    struct settings s;
    int key; /* stands for an EVP_PKEY or an SSL_CTX: only their presence counts */

    (void)state;
    blank(&s, &env, &app);
    assert_int_equal(settings_holds_secret(&s), 0);
    s.o.redis = "redis://127.0.0.1:6379/0";
    s.o.gcm_url = "http://127.0.0.1:9/fcm/send?to=a@b";
    s.o.fcm_url = "https://fcm.example/v1@x";
    assert_int_equal(settings_holds_secret(&s), 0);
    env.apikey = "";
    assert_int_equal(settings_holds_secret(&s), 0); /* set empty: no secret */

#define ALONE(what)                                                                                                    \
    do {                                                                                                               \
        blank(&s, &env, &app);                                                                                         \
        what;                                                                                                          \
        assert_int_equal(settings_holds_secret(&s), 1);                                                                \
    } while (0)
    ALONE(s.o.apikey = "k");
    ALONE(s.o.sa = &sa);
    ALONE(s.o.apns_pkey = &key);
    ALONE(s.o.vapid_pkey = &key);
    ALONE(s.o.auth_token = "t");
    ALONE(s.o.tls_ctx = &key);
    ALONE(s.o.redis_password = "p");
    ALONE(s.o.redis = "redis://:p@127.0.0.1:6379/0");
    ALONE(s.o.redis = "redis://user:p/w@127.0.0.1");
    ALONE(s.o.gcm_url = "https://u:p@fcm.example/fcm/send");
    ALONE(s.o.fcm_url = "https://u:p@fcm.example");
    ALONE(s.o.apns_url = "https://u@apns.example");
    ALONE(env.apikey = "k");
    ALONE(env.auth_token = "t");
    ALONE(env.redis_password = "p");
    ALONE(app.o.apikey = "k");
    ALONE(app.o.sa = &sa);
    ALONE(app.o.apns_pkey = &key);
    ALONE(app.o.vapid_pkey = &key);
    ALONE(app.o.gcm_url = "http://u:p@127.0.0.1:9/fcm/send");
#undef ALONE
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(whole_first_line),
        cmocka_unit_test(crlf_and_no_line_end),
        cmocka_unit_test(bounded_at_64_kib),
        cmocka_unit_test(no_token),
        cmocka_unit_test(apps_take_their_own_credentials),
        cmocka_unit_test(every_kind_of_secret_counts),
    };
    return cmocka_run_group_tests_name("settings", tests, make_file, remove_file);
}
