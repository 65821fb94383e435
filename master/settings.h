/*
 * master/settings.h - everything one generation of children runs with:
 * the options (defaults, then the config file, then the command line) and
 * the credentials they name, loaded and checked.
 *
 * The master builds a settings at start and again on every SIGHUP; a
 * generation's children inherit theirs through fork.
 */
#ifndef FCMD_MASTER_SETTINGS_H
#define FCMD_MASTER_SETTINGS_H

#include "config.h"
#include "../common/options.h"
#include "../common/service_account.h"

/* Secrets the master took from its environment at start (FCMD_APIKEY,
 * FCMD_AUTH_TOKEN, FCMD_REDIS_PASSWORD), kept for every reload.  NULL when the variable was not
 * set, "" when it was set empty. */
struct settings_env {
    char *apikey;
    char *auth_token;
    char *redis_password;
    char *webhook_secret;
};

/* What one [app NAME] section loaded: the app's own credentials. */
struct settings_app {
    struct service_account sa; /* when its service_account is set; its o.sa points here */
    char *apikey;              /* read from its apikey_file */
    char *webhook_secret;      /* read from its webhook_secret_file */
    char *auth_token;          /* read from its auth_token_file; its o.auth_token points here */
};

struct settings {
    struct fcmd_options o;
    struct fcmd_app *apps;          /* o.apps points here: o.napps of them */
    struct settings_app *app_creds; /* the same number */
    struct service_account sa; /* when o.service_account is set; o.sa points here */
    struct config_strings strings;
    char *auth_token;               /* read from auth_token_file; o.auth_token points here */
    char *apikey;                   /* read from apikey_file; o.apikey points here */
    char *redis_password;           /* read from redis_password_file; o.redis_password points here */
    char *webhook_secret;           /* read from webhook_secret_file; o.webhook_secret points here */
    const struct settings_env *env; /* what settings_load was given, for the next reload */
};

/* Copies the secret variables out of the environment, then wipes their
 * values where they were (so /proc/PID/environ no longer shows them) and
 * unsets them (so children never see them).  Returns 0, or -1 with a
 * reason in err. */
int settings_env_take(struct settings_env *env, char *err, size_t errlen);

/* Wipes and frees what settings_env_take kept. */
void settings_env_free(struct settings_env *env);

/* Builds settings from argv, then env (which may be NULL).  For each
 * secret a flag wins over the config file, which wins over the
 * environment; a value and its -file form from the same place is an
 * error.  Returns a new settings, or NULL with a one-line reason in err.
 * Flags like --help are only parsed: the caller acts on them before
 * anything is validated (validate 0). */
#define SETTINGS_VALIDATE 1 /* check everything: a bad credential is an error */
#define SETTINGS_RELOAD 2   /* the same, but an app whose credentials cannot be read is kept, marked broken */
struct settings *settings_load(int argc, char **argv, const struct settings_env *env, int validate, char *err,
                               size_t errlen);

void settings_free(struct settings *s);

/* Whether s holds a secret: an upstream credential of the default app or of
 * any [app NAME], the auth token, the listener's TLS key, Redis' password, a
 * password in a URL, or one the environment gave at start.  The master makes
 * itself non-dumpable when it does, at start and on every reload, so that no
 * other process of its user reads them in its memory or in a core dump. */
int settings_holds_secret(const struct settings *s);

struct shm_region;
/* Gives next's apps their rows in the region's app table, keeping the rows
 * of the apps running (which may be NULL).  Returns 0, or -1 with a reason in
 * err when the rows are all taken. */
int settings_assign_apps(struct settings *next, const struct settings *running, struct shm_region *r, char *err,
                         size_t errlen);

/* Whether two settings listen on the same address. */
int settings_same_listener(const struct settings *a, const struct settings *b);

#endif
