/*
 * master/settings.c - one load of fcmd's configuration.
 *
 * The command line is parsed twice: once to find --config (and to report
 * a bad flag before anything else), and once more after the file has been
 * applied, so that flags override the file.
 */
#include "settings.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct settings *settings_load(int argc, char **argv, int validate, char *err, size_t errlen)
{
    struct settings *s = calloc(1, sizeof(*s));
    struct fcmd_options flags;

    if (s == NULL) {
        snprintf(err, errlen, "out of memory");
        return NULL;
    }
    options_defaults(&flags);
    if (options_parse(&flags, argc, argv, err, errlen) != 0)
        goto fail;
    options_defaults(&s->o);
    if (flags.config != NULL && !flags.help && !flags.version &&
        config_load(flags.config, &s->o, &s->strings, err, errlen) != 0)
        goto fail;
    if (options_parse(&s->o, argc, argv, err, errlen) != 0)
        goto fail;
    if (!validate || s->o.help || s->o.version)
        return s;
    if (options_validate(&s->o, err, errlen) != 0)
        goto fail;
    /* --service-account wins over --apikey when both are given. */
    if (s->o.service_account != NULL) {
        if (service_account_load(s->o.service_account, &s->sa, err, errlen) != 0)
            goto fail;
        s->o.sa = &s->sa;
    }
    return s;
fail:
    settings_free(s);
    return NULL;
}

void settings_free(struct settings *s)
{
    if (s == NULL)
        return;
    if (s->o.sa != NULL)
        service_account_free(&s->sa);
    config_strings_free(&s->strings);
    free(s);
}

static int same(const char *a, const char *b)
{
    return (a == NULL && b == NULL) || (a != NULL && b != NULL && strcmp(a, b) == 0);
}

int settings_same_listener(const struct settings *a, const struct settings *b)
{
    if (a->o.unix_path || b->o.unix_path)
        return same(a->o.unix_path, b->o.unix_path) && same(a->o.socket_mode, b->o.socket_mode);
    return a->o.port == b->o.port && same(a->o.host, b->o.host);
}
