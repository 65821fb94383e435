/*
 * master/config.c - INI configuration with inih.
 *
 * A table maps each [section] key to the command-line option it sets, so
 * a value is checked by exactly the code that checks the flag.  inih tells
 * the line of the first error from the handler's return value; the
 * handler keeps the reason.
 */
#include "config.h"
#include "../common/options.h"

#include <errno.h>
#include <ini.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const struct {
    const char *section, *key, *option;
} config_keys[] = {
    {"server", "host", "host"},
    {"server", "ipaddress", "ipaddress"},
    {"server", "port", "port"},
    {"server", "unix", "unix"},
    {"server", "socket_mode", "socket-mode"},
    {"server", "workers", "workers"},
    {"server", "queue_size", "queue-size"},
    {"server", "queue_max_bytes", "queue-max-bytes"},
    {"server", "user", "user"},
    {"server", "pidfile", "pidfile"},
    {"server", "shutdown_timeout", "shutdown-timeout"},
    {"upstream", "apikey", "apikey"},
    {"upstream", "apikey_file", "apikey-file"},
    {"upstream", "service_account", "service-account"},
    {"upstream", "gcm_url", "gcm-url"},
    {"upstream", "fcm_url", "fcm-url"},
    {"upstream", "ca_file", "ca-file"},
    {"upstream", "connections", "upstream-connections"},
    {"upstream", "max_inflight", "max-inflight"},
    {"upstream", "rate_limit", "rate-limit"},
    {"upstream", "idle_timeout", "upstream-idle-timeout"},
    {"upstream", "http2_prior_knowledge", "http2-prior-knowledge"},
    {"send", "retries", "retries"},
    {"log", "file", "logto"},
    {"log", "level", "log-level"},
    {"log", "access_log", "access-log"},
    {"server", "max_body_bytes", "max-body-bytes"},
    {"server", "max_tokens", "max-tokens"},
    {"server", "max_payload_bytes", "max-payload-bytes"},
    {"server", "max_connections", "max-connections"},
    {"server", "max_header_bytes", "max-header-bytes"},
    {"server", "client_timeout", "client-timeout"},
    {"server", "drain_list_bytes", "drain-list-bytes"},
    {"server", "auth_token", "auth-token"},
    {"server", "auth_token_file", "auth-token-file"},
    {"server", "auth_scopes", "auth-scopes"},
    {"server", "tls_cert", "tls-cert"},
    {"server", "tls_key", "tls-key"},
    {"metrics", "graphite", "graphite"},
    {"metrics", "graphite_prefix", "graphite-prefix"},
    {"metrics", "graphite_interval", "graphite-interval"},
    {"spool", "dir", "spool"},
    {"spool", "fsync", "spool-fsync"},
    {"spool", "max_bytes", "spool-max-bytes"},
    {"spool", "segment_bytes", "spool-segment-bytes"},
    {"redis", "url", "redis"},
    {"redis", "password_file", "redis-password-file"},
    {"redis", "drain_lease", "redis-drain-lease"},
    {"apns", "key", "apns-key"},
    {"apns", "key_id", "apns-key-id"},
    {"apns", "team_id", "apns-team-id"},
    {"apns", "topic", "apns-topic"},
    {"apns", "url", "apns-url"},
    {"redis", "queue", "redis-queue"},
    {"redis", "claim_after", "redis-claim-after"},
    {"redis", "queue_max", "redis-queue-max"},
};

struct load {
    struct fcmd_options *o;
    struct config_strings *owned;
    char *err;
    size_t errlen;
};

static char *keep(struct config_strings *owned, const char *s)
{
    char *copy;

    if (owned->n == owned->cap) {
        size_t cap = owned->cap ? owned->cap * 2 : 16;
        char **v = realloc(owned->v, cap * sizeof(*v));
        if (v == NULL)
            return NULL;
        owned->v = v;
        owned->cap = cap;
    }
    if ((copy = strdup(s)) != NULL)
        owned->v[owned->n++] = copy;
    return copy;
}

static int on_entry(void *user, const char *section, const char *key, const char *value)
{
    struct load *l = user;
    char why[256];
    const char *v;

    for (size_t i = 0; i < sizeof(config_keys) / sizeof(config_keys[0]); i++) {
        if (strcmp(config_keys[i].section, section) != 0 || strcmp(config_keys[i].key, key) != 0)
            continue;
        if ((v = keep(l->owned, value)) == NULL) {
            snprintf(l->err, l->errlen, "out of memory");
            return 0;
        }
        if (options_set(l->o, config_keys[i].option, v, why, sizeof(why)) != 0) {
            /* The option's reason names the flag; say the key instead. */
            const char *colon = strchr(why, ':');
            snprintf(l->err, l->errlen, "[%s] %s:%s", section, key, colon ? colon + 1 : why);
            return 0;
        }
        return 1;
    }
    snprintf(l->err, l->errlen, "unknown key \"%s\" in [%s]", key, section);
    return 0;
}

static void describe(int line, const char *why, const char *path, char *err, size_t errlen)
{
    if (line < 0)
        snprintf(err, errlen, "%s: cannot parse: out of memory", path);
    else if (why[0] == '\0')
        snprintf(err, errlen, "%s:%d: not a \"key = value\" line or a [section]", path, line);
    else
        snprintf(err, errlen, "%s:%d: %s", path, line, why);
}

int config_load(const char *path, struct fcmd_options *o, struct config_strings *owned, char *err, size_t errlen)
{
    char why[300] = "";
    struct load l = {o, owned, why, sizeof(why)};
    FILE *f = fopen(path, "r");
    int line;

    if (f == NULL) {
        snprintf(err, errlen, "--config: cannot read \"%s\": %s", path, strerror(errno));
        return -1;
    }
    line = ini_parse_file(f, on_entry, &l);
    fclose(f);
    if (line == 0)
        return 0;
    describe(line, why, path, err, errlen);
    return -1;
}

int config_parse_string(const char *text, const char *name, struct fcmd_options *o, struct config_strings *owned,
                        char *err, size_t errlen)
{
    char why[300] = "";
    struct load l = {o, owned, why, sizeof(why)};
    int line = ini_parse_string(text, on_entry, &l);

    if (line == 0)
        return 0;
    describe(line, why, name, err, errlen);
    return -1;
}

void config_strings_free(struct config_strings *owned)
{
    for (size_t i = 0; i < owned->n; i++)
        free(owned->v[i]);
    free(owned->v);
    owned->v = NULL;
    owned->n = owned->cap = 0;
}
