/*
 * master/main.c - fcmd's entry point.
 *
 * Everything that can fail because of what the operator typed (flags, the
 * config file, credentials, the listen address) is checked here, before
 * any fork, and ends the start with one line on stderr and exit status 2.
 * Then the master drops privileges if asked and hands over to its
 * supervise loop; it never touches a request.
 */
#include "../shm/region.h"
#include "listen.h"
#include "../common/log.h"
#include "../common/options.h"
#include "../common/vapid_key.h"
#include "settings.h"
#include "supervise.h"

#include <curl/curl.h>
#include <errno.h>
#include <grp.h>
#include <pwd.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/prctl.h>
#include <unistd.h>

#define EXIT_USAGE 2

/* What an app (or the default app) sends with, for the start line. */
static void describe_upstreams(const struct fcmd_options *o, char *upstream, size_t ulen, char *apns, size_t alen)
{
    char url[512];

    apns[0] = '\0';
    if (o->sa)
        snprintf(upstream, ulen, "FCM v1 upstream %s, project %s", log_url(o->fcm_url, url, sizeof(url)),
                 o->sa->project_id);
    else if (o->apikey)
        snprintf(upstream, ulen, "legacy upstream %s", log_url(o->gcm_url, url, sizeof(url)));
    else
        snprintf(upstream, ulen, "no FCM upstream");
    if (o->apns_pkey)
        snprintf(apns, alen, ", APNs upstream %s (key id %s, team %s)", log_url(o->apns_url, url, sizeof(url)),
                 o->apns_key_id, o->apns_team_id);
    if (o->vapid_pkey) {
        size_t n = strlen(apns);
        snprintf(apns + n, alen - n, ", Web Push upstream (to the push services --webpush-allow lists)");
    }
}

static void log_started(const struct fcmd_options *o)
{
    char where[300], upstream[600], apns[600];

    if (o->unix_path)
        snprintf(where, sizeof(where), "unix:%s", o->unix_path);
    else
        snprintf(where, sizeof(where), "%s port %d", o->host, o->port);
    describe_upstreams(o, upstream, sizeof(upstream), apns, sizeof(apns));
    log_info("fcmd %s listening on %s with %d workers, %s%s", FCMD_VERSION, where, o->workers, upstream, apns);
    for (size_t i = 0; i < o->napps; i++) {
        describe_upstreams(&o->apps[i].o, upstream, sizeof(upstream), apns, sizeof(apns));
        log_info("app %s: %s%s", o->apps[i].name, upstream, apns);
    }
}

/* The master binds and reads credentials as root, then master and children
 * run as user. */
static int drop_privileges(const char *user, char *err, size_t errlen)
{
    struct passwd *pw = getpwnam(user);

    if (pw == NULL) {
        snprintf(err, errlen, "--user: no such user \"%s\"", user);
        return -1;
    }
    if (getuid() == pw->pw_uid && geteuid() == pw->pw_uid)
        return 0;
    if (initgroups(pw->pw_name, pw->pw_gid) != 0 || setgid(pw->pw_gid) != 0 || setuid(pw->pw_uid) != 0) {
        snprintf(err, errlen, "--user: cannot become \"%s\": %s", user, strerror(errno));
        return -1;
    }
    return 0;
}

int main(int argc, char **argv)
{
    struct settings_env env;
    struct settings *s;
    struct shm_region *shm;
    char err[600];
    int fd, rc;

    /* Before anything else, so no child and no later reader of
     * /proc/PID/environ sees the secrets the environment carried. */
    if (settings_env_take(&env, err, sizeof(err)) != 0) {
        fprintf(stderr, "fcmd: %s\n", err);
        return EXIT_USAGE;
    }
    /* Also what --check-config reports: the first problem, or "ok" below. */
    if ((s = settings_load(argc, argv, &env, 1, err, sizeof(err))) == NULL) {
        fprintf(stderr, "fcmd: %s\n", err);
        settings_env_free(&env);
        return EXIT_USAGE;
    }
    if (s->o.help || s->o.version) {
        if (s->o.help)
            for (const char *const *part = options_usage; *part != NULL; part++)
                fputs(*part, stdout);
        else
            printf("fcmd %s (%s)\n", FCMD_VERSION, curl_version());
        settings_free(s);
        settings_env_free(&env);
        return 0;
    }
    /* Who may read this process's memory may read the keys in it; the
     * children inherit the setting through fork. */
    if (settings_holds_secret(s))
        prctl(PR_SET_DUMPABLE, 0);
    /* The key's public half, for the site's applicationServerKey. */
    if (s->o.vapid_public_key) {
        char pub[P256_POINT_B64_LEN + 1];
        rc = p256_point_b64url(s->o.vapid_pkey, pub);
        if (rc == 0)
            puts(pub);
        else
            fprintf(stderr, "fcmd: --vapid-key: \"%s\": its public key cannot be read\n", s->o.vapid_key);
        settings_free(s);
        settings_env_free(&env);
        return rc == 0 ? 0 : EXIT_USAGE;
    }
    if (s->o.check_config) {
        puts("ok");
        settings_free(s);
        settings_env_free(&env);
        return 0;
    }
    if ((rc = log_open(s->o.logto)) != 0) {
        fprintf(stderr, "fcmd: --logto: cannot open \"%s\": %s\n", s->o.logto, strerror(-rc));
        settings_free(s);
        settings_env_free(&env);
        return EXIT_USAGE;
    }
    log_set_level((enum log_level)options_log_level(&s->o));
    signal(SIGPIPE, SIG_IGN);
    if (curl_global_init(CURL_GLOBAL_ALL) != CURLE_OK) {
        snprintf(err, sizeof(err), "curl_global_init() failed");
        rc = 1;
        goto fail;
    }
    if ((fd = listen_open(&s->o, err, sizeof(err))) < 0) {
        rc = EXIT_USAGE;
        goto fail;
    }
    rc = EXIT_USAGE;
    if (s->o.user != NULL && drop_privileges(s->o.user, err, sizeof(err)) != 0)
        goto fail_listen;
    /* A change of user sets it to fs.suid_dumpable, which may be 1. */
    if (s->o.user != NULL && settings_holds_secret(s))
        prctl(PR_SET_DUMPABLE, 0);
    /* Written as the user the master runs as from now on, so that it can
     * remove the file at exit. */
    if (s->o.pidfile != NULL && supervise_write_pidfile(s->o.pidfile, err, sizeof(err)) != 0)
        goto fail_listen;
    if ((shm = shm_region_create((size_t)s->o.drain_list_bytes, (size_t)s->o.push_status_max_bytes,
                                   (size_t)s->o.idempotency_max_bytes)) == NULL) {
        snprintf(err, sizeof(err), "mmap() of the shared region failed: %s", strerror(errno));
        rc = 1;
        goto fail_pidfile;
    }
    /* At most APPS_MAX apps, so there is a row for each. */
    settings_assign_apps(s, NULL, shm, err, sizeof(err));
    log_started(&s->o);
    rc = supervise_run(argc, argv, s, fd, shm);
    shm_region_destroy(shm);
    curl_global_cleanup();
    settings_env_free(&env);
    return rc;

fail_pidfile:
    if (s->o.pidfile != NULL)
        unlink(s->o.pidfile);
fail_listen:
    close(fd);
    listen_cleanup(&s->o);
fail:
    fprintf(stderr, "fcmd: %s\n", err);
    settings_free(s);
    settings_env_free(&env);
    curl_global_cleanup();
    return rc;
}
