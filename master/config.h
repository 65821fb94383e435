/*
 * master/config.h - the INI configuration file (see conf/fcmd.conf).
 *
 * Every command-line option has a key in a section; loading a file sets
 * the options it names, and the command line is applied afterwards so it
 * wins.  An unknown section or key, or a bad value, is an error that names
 * the file, the line and the key.
 */
#ifndef FCMD_MASTER_CONFIG_H
#define FCMD_MASTER_CONFIG_H

#include <stddef.h>
#include <stdio.h>

struct fcmd_options;

/* One key of an [app NAME] section: the option it sets in that app's copy
 * of the settings (master/settings.c applies them after the flags). */
struct config_app_key {
    const char *app;    /* the section's NAME, a checked app name */
    const char *option; /* the command-line option the key stands for */
    const char *value;
};

/* Strings the file gave, owned here because the options only point at them,
 * and the keys of its [app NAME] sections in the file's order. */
struct config_strings {
    char **v;
    size_t n, cap;
    struct config_app_key *app;
    size_t napp, appcap;
};

/* Applies the file at path to o.  Returns 0, or -1 with "path:line: ..." in err. */
int config_load(const char *path, struct fcmd_options *o, struct config_strings *owned, char *err, size_t errlen);

/* The same for an open file; name is used in errors. */
int config_read(FILE *f, const char *name, struct fcmd_options *o, struct config_strings *owned, char *err,
                size_t errlen);

void config_strings_free(struct config_strings *owned);

#endif
