/*
 * common/options.h - fcmd's settings and the command-line parser.
 *
 * Flags follow Go's `flag` package, as GoCM's users type them: one dash or
 * two, and the value either as the next word or after '='.  The parser only
 * fills the struct and reports the first problem in words; main decides what
 * to do with it.  Strings point into argv, which lives as long as the process.
 */
#ifndef FCMD_COMMON_OPTIONS_H
#define FCMD_COMMON_OPTIONS_H

#include <stddef.h>

struct service_account;
struct fcmd_app;

#define FCMD_VERSION "0.1.0"
#define OPTIONS_MAX_WORKERS 64
#define OPTIONS_APNS_URL "https://api.push.apple.com"

struct fcmd_options {
    const char *apikey;          /* legacy server key; never printed */
    const char *apikey_file;     /* the same, read from a file by the master */
    const char *service_account; /* v1 credentials file */
    const char *host;            /* TCP listen address */
    int port;
    const char *unix_path; /* UNIX socket instead of TCP */
    int workers;
    const char *config;
    const char *logto;
    const char *pidfile;
    const char *gcm_url;
    const char *fcm_url;
    const char *ca_file;
    int retries;
    const char *spool;
    const char *spool_fsync;   /* never, batch or always */
    long spool_max_bytes;      /* all segments together */
    long spool_segment_bytes;  /* a segment is replaced when it reaches this */
    long queue_size;           /* pending targets per child before 503 */
    long queue_max_bytes;      /* bytes those targets and their pushes may hold, per child */
    int upstream_connections;  /* per child; 0 = by URL scheme */
    int max_inflight;          /* upstream requests in flight per child, at most; 0 = 100 per HTTP/2 connection */
    long rate_limit;           /* messages a second upstream, per instance (per fleet with --redis); 0 = none */
    int upstream_idle_timeout; /* seconds without upstream work before a child closes its connections */
    int http2_prior_knowledge; /* h2c without Upgrade on http:// URLs */
    int shutdown_timeout;      /* seconds a stopping child may take to finish its work */
    const char *log_level;     /* error, warn, info or debug */
    const char *user;          /* drop to this user after binding */
    const char *socket_mode;   /* octal permissions of the UNIX socket */
    int check_config;          /* validate, print ok or the error, exit */
    const char *graphite;      /* host:port of carbon's plaintext listener */
    const char *graphite_prefix;
    int graphite_interval;       /* seconds */
    const char *access_log;      /* one line per HTTP request, or NULL */
    const char *auth_token;      /* Bearer token clients must present, or NULL */
    long max_body_bytes;         /* /gcm/send body */
    long max_tokens;             /* targets per request */
    long max_payload_bytes;      /* payload JSON text */
    long max_connections;        /* open HTTP connections per child */
    long max_header_bytes;       /* all request headers together */
    int client_timeout;          /* seconds a client may take to send a request, or stay idle */
    long drain_list_bytes;       /* capacity of each drain list */
    int push_status_ttl;         /* seconds a done push's status is kept */
    long push_status_max_bytes;  /* the statuses' ledger in shared memory */
    int idempotency_ttl;         /* seconds an Idempotency-Key is remembered */
    long idempotency_max_bytes;  /* the keys' ledger in shared memory */
    const char *auth_token_file; /* the same, read from a file by the master */
    const char *auth_scopes;     /* which of send, report, metrics need it */
    const char *tls_cert;        /* TLS on the listener, with HTTP/2 by ALPN */
    const char *tls_key;
    const char *redis;               /* fleet mode: redis:// or unix:// URL; may hold a password, print with log_url */
    const char *redis_password_file; /* Redis' password, read from a file by the master */
    const char *redis_ca_file;       /* rediss://: the CAs its certificate is checked against */
    int redis_drain_lease;           /* seconds a drain's entries stay taken without their worker's renewal */
    const char *apns_key;            /* APNs .p8 signing key file: enables /apns/send */
    const char *apns_key_id;         /* its key id (kid) */
    const char *apns_team_id;        /* the team id (iss) */
    const char *apns_topic;          /* default apns-topic: the app's bundle id */
    const char *apns_url;            /* APNs base URL */
    const char *vapid_key;           /* Web Push's VAPID key file (PEM EC P-256) */
    const char *vapid_subject;       /* the contact it names: mailto: or https: */
    int vapid_public_key;            /* print the VAPID key's public half and exit */
    const char *webpush_allow;       /* push services an endpoint may name (common/webpush_allow.h); NULL: the default */
    int redis_queue;                 /* accepted pushes go to a Redis stream shared by the fleet */
    int redis_local_statuses;        /* push statuses are not written to Redis: each instance keeps its own */
    int redis_claim_after;           /* seconds: pushes of a consumer silent this long are taken over */
    long redis_queue_max;            /* pushes the stream may hold before /gcm/send answers 503 */
    const char *webhook;             /* the receiver of outcome events: an http:// or https:// URL, or NULL */
    const char *webhook_secret_file; /* the key of their signature, read from a file by the master */
    const char *webhook_events;      /* which outcomes it is told of (options_webhook_events) */
    int webhook_max_age;             /* seconds an event is retried before it is dropped */
    long webhook_queue_bytes;        /* events held in memory per instance, without --spool */
    int help;
    int version;
    /* Loaded by the master before the fork; children inherit them. */
    const struct service_account *sa;
    void *tls_ctx;              /* SSL_CTX for the listener, when tls_cert is set */
    const char *redis_password; /* from redis_password_file or FCMD_REDIS_PASSWORD, or NULL */
    void *apns_pkey;            /* EVP_PKEY of apns_key, when set */
    void *vapid_pkey;           /* EVP_PKEY of vapid_key, when set */
    const char *webhook_secret; /* from webhook_secret_file or FCMD_WEBHOOK_SECRET, or NULL */
    /* [app NAME] sections: each app's own settings, in the file's order. */
    const struct fcmd_app *apps;
    size_t napps;
};

/* Apps: a request names one with an "app" field or X-Fcmd-App; without one
 * it is the default app's (the command line, [upstream] and [apns]).  An
 * app's name is 1 to APP_NAME_MAX bytes of letters, digits and "_.-": inih
 * keeps 49 bytes of a section's name, and "[app " takes four of them. */
#define APP_NAME_MAX 44
#define APPS_MAX 63 /* named apps; with the default app, 64 */
#define APP_DEFAULT 0u
#define APP_NONE 0xffu /* a spooled push for an app that no longer exists */

struct fcmd_app {
    char name[APP_NAME_MAX + 1];
    unsigned shm;          /* its row in the region's app table (1..APPS_MAX); 0 is the default app's */
    int broken;            /* a reload could not load its credentials: its sends get 503 */
    struct fcmd_options o; /* the instance's options with the app's own credentials; o.auth_token is
                            * the app's own client token (its auth_token or auth_token_file), or NULL */
};

/* Whether name (n bytes) is a valid app name. */
int options_app_name_ok(const char *name, size_t n);

/* An app's index: 0 for NULL (the default app), 1 + its position in
 * o->apps, or -ENOENT when no app has that name. */
int options_app_find(const struct fcmd_options *o, const char *name, size_t n);

/* The name of app index i ("" for the default app). */
const char *options_app_name(const struct fcmd_options *o, unsigned i);

/* Fills defaults (workers from the online CPU count). */
void options_defaults(struct fcmd_options *o);

/* Sets the option called name (as on the command line, without dashes)
 * from its text.  Returns 0, or -1 with a reason in err (also when there is
 * no such option). */
int options_set(struct fcmd_options *o, const char *name, const char *value, char *err, size_t errlen);

/* The log level the options name (they are validated). */
int options_log_level(const struct fcmd_options *o);

/* The UNIX socket's permission bits; -ENOENT when the options set none,
 * -EINVAL when they are not an octal mode. */
int options_socket_mode(const struct fcmd_options *o);

/* Scopes that --auth-token protects. */
#define AUTH_SEND 1
#define AUTH_REPORT 2
#define AUTH_METRICS 4

/* The scopes of --auth-scopes as AUTH_* bits, or -1 when a word is unknown. */
int options_auth_scopes(const struct fcmd_options *o);

/* The outcomes a webhook is told of: WEBHOOK_* bits. */
#define WEBHOOK_DELIVERED 1
#define WEBHOOK_INVALID 2
#define WEBHOOK_CANONICAL 4
#define WEBHOOK_FAILED 8
#define WEBHOOK_DONE 16
#define WEBHOOK_ALL 31

/* The events of --webhook-events as WEBHOOK_* bits, or -1 when a word is
 * unknown or the list is empty. */
int options_webhook_events(const struct fcmd_options *o);

/* Whether the instance or any of its apps has a webhook. */
int options_has_webhook(const struct fcmd_options *o);

/* Splits --graphite into host and port.  Returns 0, or -1 when it is not
 * HOST:PORT (options_validate says so). */
int options_graphite_address(const struct fcmd_options *o, char *host, size_t hostlen, int *port);

/* Parses argv[1..].  Returns 0, or -1 with a one-line reason in err. */
int options_parse(struct fcmd_options *o, int argc, char **argv, char *err, size_t errlen);

/* Checks the combination (credentials present, URLs well formed...).
 * Returns 0, or -1 with a one-line reason in err. */
int options_validate(const struct fcmd_options *o, char *err, size_t errlen);

/* The --help text, in parts to print one after the other; NULL ends it. */
extern const char *const options_usage[];

#endif
