/*
 * master/main.c - fcmd's entry point.
 *
 * Everything that can fail because of what the operator typed (flags,
 * credentials, the listen address) is checked here, before any fork, and
 * ends the start with one line on stderr and exit status 2.  Then the
 * master hands over to its supervise loop and never touches a request.
 */
#include "../shm/region.h"
#include "listen.h"
#include "log.h"
#include "options.h"
#include "service_account.h"
#include "supervise.h"

#include <curl/curl.h>
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#define EXIT_USAGE 2
#define DRAIN_LIST_BYTES (8u << 20)

static int write_pidfile(const char *path)
{
    FILE *f = fopen(path, "w");

    if (f == NULL)
        return -1;
    fprintf(f, "%d\n", (int)getpid());
    return fclose(f);
}

static void log_started(const struct fcmd_options *o)
{
    char where[300], upstream[600];

    if (o->unix_path)
        snprintf(where, sizeof(where), "unix:%s", o->unix_path);
    else
        snprintf(where, sizeof(where), "%s port %d", o->host, o->port);
    if (o->sa)
        snprintf(upstream, sizeof(upstream), "FCM v1 upstream %s, project %s", o->fcm_url, o->sa->project_id);
    else
        snprintf(upstream, sizeof(upstream), "legacy upstream %s", o->gcm_url);
    log_info("fcmd %s listening on %s with %d workers, %s", FCMD_VERSION, where, o->workers, upstream);
}

int main(int argc, char **argv)
{
    struct fcmd_options opts;
    struct shm_region *shm;
    struct service_account sa;
    char err[512];
    int fd, rc;

    options_defaults(&opts);
    if (options_parse(&opts, argc, argv, err, sizeof(err)) != 0) {
        fprintf(stderr, "fcmd: %s\n", err);
        return EXIT_USAGE;
    }
    if (opts.help) {
        fputs(options_usage, stdout);
        return 0;
    }
    if (opts.version) {
        printf("fcmd %s (%s)\n", FCMD_VERSION, curl_version());
        return 0;
    }
    if (options_validate(&opts, err, sizeof(err)) != 0) {
        fprintf(stderr, "fcmd: %s\n", err);
        return EXIT_USAGE;
    }
    /* --service-account wins over --apikey when both are given. */
    if (opts.service_account != NULL) {
        if (service_account_load(opts.service_account, &sa, err, sizeof(err)) != 0) {
            fprintf(stderr, "fcmd: %s\n", err);
            return EXIT_USAGE;
        }
        opts.sa = &sa;
    }
    if ((rc = log_open(opts.logto)) != 0) {
        fprintf(stderr, "fcmd: --logto: cannot open \"%s\": %s\n", opts.logto, strerror(-rc));
        return EXIT_USAGE;
    }
    signal(SIGPIPE, SIG_IGN);
    if (curl_global_init(CURL_GLOBAL_ALL) != CURLE_OK) {
        fprintf(stderr, "fcmd: curl_global_init() failed\n");
        return 1;
    }
    if ((fd = listen_open(&opts, err, sizeof(err))) < 0) {
        fprintf(stderr, "fcmd: %s\n", err);
        return EXIT_USAGE;
    }
    if (opts.pidfile != NULL && write_pidfile(opts.pidfile) != 0) {
        fprintf(stderr, "fcmd: --pidfile: cannot write \"%s\": %s\n", opts.pidfile, strerror(errno));
        listen_cleanup(&opts);
        return EXIT_USAGE;
    }
    if ((shm = shm_region_create(DRAIN_LIST_BYTES)) == NULL) {
        fprintf(stderr, "fcmd: mmap() of the shared region failed: %s\n", strerror(errno));
        listen_cleanup(&opts);
        return 1;
    }
    log_started(&opts);

    rc = supervise_run(&opts, fd, shm);

    close(fd);
    listen_cleanup(&opts);
    if (opts.pidfile != NULL)
        unlink(opts.pidfile);
    shm_region_destroy(shm);
    if (opts.sa)
        service_account_free(&sa);
    curl_global_cleanup();
    return rc;
}
