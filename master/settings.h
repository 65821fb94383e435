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
#include "options.h"
#include "service_account.h"

struct settings {
    struct fcmd_options o;
    struct service_account sa; /* when o.service_account is set; o.sa points here */
    struct config_strings strings;
    char *auth_token; /* read from auth_token_file; o.auth_token points here */
};

/* Builds settings from argv.  Returns a new settings, or NULL with a
 * one-line reason in err.  Flags like --help are only parsed: the caller
 * acts on them before anything is validated. */
struct settings *settings_load(int argc, char **argv, int validate, char *err, size_t errlen);

void settings_free(struct settings *s);

/* Whether two settings listen on the same address. */
int settings_same_listener(const struct settings *a, const struct settings *b);

#endif
