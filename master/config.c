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
    {"server", "push_status_ttl", "push-status-ttl"},
    {"server", "push_status_max_bytes", "push-status-max-bytes"},
    {"server", "idempotency_ttl", "idempotency-ttl"},
    {"server", "idempotency_max_bytes", "idempotency-max-bytes"},
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
    {"redis", "ca_file", "redis-ca-file"},
    {"redis", "drain_lease", "redis-drain-lease"},
    {"apns", "key", "apns-key"},
    {"apns", "key_id", "apns-key-id"},
    {"apns", "team_id", "apns-team-id"},
    {"apns", "topic", "apns-topic"},
    {"apns", "url", "apns-url"},
    {"webpush", "vapid_key", "vapid-key"},
    {"webpush", "vapid_subject", "vapid-subject"},
    {"webpush", "allow", "webpush-allow"},
    {"redis", "queue", "redis-queue"},
    {"redis", "local_statuses", "redis-local-statuses"},
    {"redis", "claim_after", "redis-claim-after"},
    {"redis", "queue_max", "redis-queue-max"},
    {"webhook", "url", "webhook"},
    {"webhook", "secret_file", "webhook-secret-file"},
    {"webhook", "events", "webhook-events"},
    {"webhook", "max_age", "webhook-max-age"},
    {"webhook", "queue_bytes", "webhook-queue-bytes"},
};

/* What an [app NAME] section may hold: its credentials and where they go. */
static const struct {
    const char *key, *option;
} app_keys[] = {
    {"apikey", "apikey"},
    {"apikey_file", "apikey-file"},
    {"service_account", "service-account"},
    {"gcm_url", "gcm-url"},
    {"fcm_url", "fcm-url"},
    {"apns_key", "apns-key"},
    {"apns_key_id", "apns-key-id"},
    {"apns_team_id", "apns-team-id"},
    {"apns_topic", "apns-topic"},
    {"apns_url", "apns-url"},
    {"vapid_key", "vapid-key"},
    {"vapid_subject", "vapid-subject"},
    {"webpush_allow", "webpush-allow"},
    {"webhook", "webhook"},
    {"webhook_secret_file", "webhook-secret-file"},
    {"webhook_events", "webhook-events"},
    {"auth_token", "auth-token"},
    {"auth_token_file", "auth-token-file"},
};

/* inih keeps this many bytes of a section's name (its INI_MAX_SECTION - 1):
 * a section that long may have been cut. */
#define SECTION_KEPT 49

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

/* A key of an [app NAME] section: kept for settings_load, which applies it
 * to the app's own copy of the settings once the flags are in. */
static int on_app_entry(struct load *l, const char *section, const char *key, const char *value)
{
    const char *name = section + 4;
    struct config_strings *owned = l->owned;
    size_t i;

    if (strlen(section) >= SECTION_KEPT) {
        snprintf(l->err, l->errlen, "[%.20s...]: an app's name is at most %d bytes", section, APP_NAME_MAX);
        return 0;
    }
    if (!options_app_name_ok(name, strlen(name)) || strcmp(name, "default") == 0) {
        snprintf(l->err, l->errlen,
                 "[%s]: an app's name is 1 to %d letters, digits, '_', '.' or '-', and not \"default\"", section,
                 APP_NAME_MAX);
        return 0;
    }
    for (i = 0; i < sizeof(app_keys) / sizeof(app_keys[0]); i++)
        if (strcmp(app_keys[i].key, key) == 0)
            break;
    if (i == sizeof(app_keys) / sizeof(app_keys[0])) {
        snprintf(l->err, l->errlen, "unknown key \"%s\" in [%s]", key, section);
        return 0;
    }
    if (owned->napp == owned->appcap) {
        size_t cap = owned->appcap ? owned->appcap * 2 : 8;
        struct config_app_key *v = realloc(owned->app, cap * sizeof(*v));
        if (v == NULL) {
            snprintf(l->err, l->errlen, "out of memory");
            return 0;
        }
        owned->app = v;
        owned->appcap = cap;
    }
    struct config_app_key *k = &owned->app[owned->napp];
    if ((k->app = keep(owned, name)) == NULL || (k->value = keep(owned, value)) == NULL) {
        snprintf(l->err, l->errlen, "out of memory");
        return 0;
    }
    k->option = app_keys[i].option;
    owned->napp++;
    return 1;
}

static int on_entry(void *user, const char *section, const char *key, const char *value)
{
    struct load *l = user;
    char why[256];
    const char *v;

    if (strncmp(section, "app ", 4) == 0)
        return on_app_entry(l, section, key, value);

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

int config_read(FILE *f, const char *name, struct fcmd_options *o, struct config_strings *owned, char *err,
                size_t errlen)
{
    char why[300] = "";
    struct load l = {o, owned, why, sizeof(why)};
    int line = ini_parse_file(f, on_entry, &l);

    if (line == 0)
        return 0;
    describe(line, why, name, err, errlen);
    return -1;
}

int config_load(const char *path, struct fcmd_options *o, struct config_strings *owned, char *err, size_t errlen)
{
    FILE *f = fopen(path, "r");
    int rc;

    if (f == NULL) {
        snprintf(err, errlen, "--config: cannot read \"%s\": %s", path, strerror(errno));
        return -1;
    }
    rc = config_read(f, path, o, owned, err, errlen);
    fclose(f);
    return rc;
}

void config_strings_free(struct config_strings *owned)
{
    for (size_t i = 0; i < owned->n; i++)
        free(owned->v[i]);
    free(owned->v);
    free(owned->app);
    owned->v = NULL;
    owned->n = owned->cap = 0;
    owned->app = NULL;
    owned->napp = owned->appcap = 0;
}
