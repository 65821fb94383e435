/*
 * common/options.c - GoCM-compatible command-line parsing.
 *
 * One table names every option, its kind and where its value goes; the
 * parser walks argv against it.  Adding an option is one table row.
 */
#include "options.h"
#include "apns_key.h"
#include "vapid_key.h"
#include "webpush_allow.h"
#include "redis_url.h"
#include "log.h"

#include <errno.h>
#include <openssl/err.h>
#include <openssl/x509_vfy.h>
#include <fcntl.h>
#include <limits.h>
#include <pwd.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

enum opt_kind { OPT_STRING, OPT_INT, OPT_LONG, OPT_BOOL };

struct opt_def {
    const char *name;
    enum opt_kind kind;
    size_t offset;
    long min, max; /* for numbers */
};

#define STR(field, name)                                                                                               \
    {                                                                                                                  \
        name, OPT_STRING, offsetof(struct fcmd_options, field), 0, 0                                                   \
    }
#define INT(field, name, lo, hi)                                                                                       \
    {                                                                                                                  \
        name, OPT_INT, offsetof(struct fcmd_options, field), lo, hi                                                    \
    }
#define LONG(field, name, lo, hi)                                                                                      \
    {                                                                                                                  \
        name, OPT_LONG, offsetof(struct fcmd_options, field), lo, hi                                                   \
    }
#define BOOL(field, name)                                                                                              \
    {                                                                                                                  \
        name, OPT_BOOL, offsetof(struct fcmd_options, field), 0, 1                                                     \
    }

static const struct opt_def opt_table[] = {
    STR(apikey, "apikey"),
    STR(apikey_file, "apikey-file"),
    STR(service_account, "service-account"),
    STR(host, "host"),
    STR(host, "ipaddress"),
    INT(port, "port", 1, 65535),
    STR(unix_path, "unix"),
    INT(workers, "workers", 1, OPTIONS_MAX_WORKERS),
    STR(config, "config"),
    STR(logto, "logto"),
    STR(pidfile, "pidfile"),
    STR(gcm_url, "gcm-url"),
    STR(fcm_url, "fcm-url"),
    STR(ca_file, "ca-file"),
    INT(retries, "retries", 0, 100),
    STR(spool, "spool"),
    STR(spool_fsync, "spool-fsync"),
    LONG(spool_max_bytes, "spool-max-bytes", 65536, 1L << 50),
    LONG(spool_segment_bytes, "spool-segment-bytes", 4096, 1L << 30),
    LONG(queue_size, "queue-size", 1, 100000000),
    LONG(queue_max_bytes, "queue-max-bytes", 65536, 1L << 50),
    INT(upstream_connections, "upstream-connections", 1, 1024),
    INT(max_inflight, "max-inflight", 1, 100000),
    LONG(rate_limit, "rate-limit", 0, 100000000),
    INT(upstream_idle_timeout, "upstream-idle-timeout", 1, 86400),
    BOOL(http2_prior_knowledge, "http2-prior-knowledge"),
    INT(shutdown_timeout, "shutdown-timeout", 1, 3600),
    STR(log_level, "log-level"),
    STR(user, "user"),
    STR(socket_mode, "socket-mode"),
    BOOL(check_config, "check-config"),
    STR(graphite, "graphite"),
    STR(graphite_prefix, "graphite-prefix"),
    INT(graphite_interval, "graphite-interval", 1, 3600),
    STR(access_log, "access-log"),
    LONG(max_body_bytes, "max-body-bytes", 1024, 64L << 20),
    LONG(max_tokens, "max-tokens", 1, 1000000),
    LONG(max_payload_bytes, "max-payload-bytes", 2, 16L << 20),
    LONG(max_connections, "max-connections", 1, 1000000),
    LONG(max_header_bytes, "max-header-bytes", 1024, 256L << 10),
    INT(client_timeout, "client-timeout", 1, 3600),
    LONG(drain_list_bytes, "drain-list-bytes", 4096, 1L << 32),
    INT(push_status_ttl, "push-status-ttl", 1, 30 * 86400),
    LONG(push_status_max_bytes, "push-status-max-bytes", 1L << 16, 1L << 32),
    INT(idempotency_ttl, "idempotency-ttl", 1, 30 * 86400),
    LONG(idempotency_max_bytes, "idempotency-max-bytes", 1L << 16, 1L << 32),
    STR(auth_token, "auth-token"),
    STR(auth_token_file, "auth-token-file"),
    STR(auth_scopes, "auth-scopes"),
    STR(tls_cert, "tls-cert"),
    STR(tls_key, "tls-key"),
    STR(redis, "redis"),
    STR(redis_password_file, "redis-password-file"),
    STR(redis_ca_file, "redis-ca-file"),
    INT(redis_drain_lease, "redis-drain-lease", 2, 3600),
    STR(apns_key, "apns-key"),
    STR(apns_key_id, "apns-key-id"),
    STR(apns_team_id, "apns-team-id"),
    STR(apns_topic, "apns-topic"),
    STR(apns_url, "apns-url"),
    STR(vapid_key, "vapid-key"),
    STR(vapid_subject, "vapid-subject"),
    BOOL(vapid_public_key, "vapid-public-key"),
    STR(webpush_allow, "webpush-allow"),
    BOOL(redis_queue, "redis-queue"),
    BOOL(redis_local_statuses, "redis-local-statuses"),
    INT(redis_claim_after, "redis-claim-after", 1, 86400),
    LONG(redis_queue_max, "redis-queue-max", 1, 1000000000),
    STR(webhook, "webhook"),
    STR(webhook_secret_file, "webhook-secret-file"),
    STR(webhook_events, "webhook-events"),
    INT(webhook_max_age, "webhook-max-age", 1, 30 * 86400),
    LONG(webhook_queue_bytes, "webhook-queue-bytes", 1L << 16, 1L << 40),
    BOOL(help, "help"),
    BOOL(help, "h"),
    BOOL(version, "version"),
};

/* In parts: C11 promises string literals of 4095 bytes, not more. */
const char *const options_usage[] = {
    "Usage: fcmd [options]   (one dash or two; --opt VALUE or --opt=VALUE)\n"
    "\n"
    "Upstream:\n"
    "  --apikey-file FILE        legacy GCM/FCM server key, the first line of FILE (enables the legacy\n"
    "                            upstream; or set FCMD_APIKEY)\n"
    "  --apikey KEY              the same on the command line, where any local user can read it\n"
    "  --service-account FILE    FCM HTTP v1 service-account JSON\n"
    "  --gcm-url URL             legacy send endpoint [https://fcm.googleapis.com/fcm/send]\n"
    "  --fcm-url URL             v1 base URL [https://fcm.googleapis.com]\n"
    "  --ca-file FILE            extra CA bundle for upstream TLS [system store]\n"
    "  --retries N               retries of a retryable failure [3]\n"
    "  --upstream-connections N  upstream connections per child, at most [16 for HTTP/2, 32 for HTTP/1.1]\n"
    "  --max-inflight N          upstream requests in flight per child, at most [100 per HTTP/2 connection];\n"
    "                            over HTTP/2 the limit starts at 400, grows while messages wait, halves on 429\n"
    "  --rate-limit N            messages a second upstream per instance, or per fleet with --redis [no limit]\n"
    "  --upstream-idle-timeout S close upstream connections after S idle seconds [60]\n"
    "  --http2-prior-knowledge   speak HTTP/2 without Upgrade to http:// URLs\n"
    "APNs (enables POST /apns/send):\n"
    "  --apns-key FILE           the .p8 signing key from Apple's developer account\n"
    "  --apns-key-id ID          its key id (10 characters)\n"
    "  --apns-team-id ID         the team id (10 characters)\n"
    "  --apns-topic BUNDLE_ID    default apns-topic (a request's topic wins)\n"
    "  --apns-url URL            https://api.push.apple.com, or https://api.sandbox.push.apple.com\n"
    "                            [https://api.push.apple.com]\n"
    "Web Push (the key and subject enable POST /webpush/send):\n"
    "  --vapid-key FILE          PEM EC P-256 private key: openssl ecparam -name prime256v1 -genkey -noout\n"
    "  --vapid-subject URI       the contact push services see: mailto:ADDRESS or an https:// URL\n"
    "  --vapid-public-key        print the key's public half (base64url, the applicationServerKey), exit\n"
    "  --webpush-allow HOST,...  push services an endpoint may name (*.domain for its subdomains); an\n"
    "                            internal address only when named literally [fcm.googleapis.com,\n"
    "                            *.push.services.mozilla.com,web.push.apple.com,*.notify.windows.com]\n",
    "Server:\n"
    "  --host ADDR, --ipaddress ADDR   TCP listen address [0.0.0.0]\n"
    "  --port N                  TCP port [5601]\n"
    "  --unix PATH               listen on a UNIX socket instead of TCP\n"
    "  --workers N               child processes [online CPUs]\n"
    "  --queue-size N            pending targets per child before /gcm/send answers 503 [500000]\n"
    "  --queue-max-bytes N       bytes those targets and their payloads may hold per child before 503 [256 MiB]\n"
    "  --socket-mode MODE        permissions of the UNIX socket, octal [umask]\n"
    "  --user NAME               drop to this user after binding (when started as root)\n"
    "  --shutdown-timeout S      how long stopping children may finish their work [30]\n"
    "  --logto FILE              log file [stderr]\n"
    "  --log-level LEVEL         error, warn, info or debug [info]\n"
    "  --access-log FILE         one line per HTTP request (Apache combined format) [off]\n"
    "Limits:\n"
    "  --max-body-bytes N        largest /gcm/send body [1048576]\n"
    "  --max-tokens N            targets per request [10000]\n"
    "  --max-payload-bytes N     largest payload, as JSON text [65536]\n"
    "  --max-connections N       open HTTP connections per child [10000]\n"
    "  --max-header-bytes N      all request headers together [16384]\n"
    "  --client-timeout S        time a client may take to send a request, or stay idle [10]\n"
    "  --drain-list-bytes N      capacity of each drain list; beyond it entries are counted as dropped [8388608]\n"
    "  --push-status-ttl S       GET /push/{id} answers for S seconds after the push is done [3600]\n"
    "  --push-status-max-bytes N memory for the push statuses; the oldest go first beyond it [67108864]\n"
    "  --idempotency-ttl S       an Idempotency-Key names its first push for S seconds [86400]\n"
    "  --idempotency-max-bytes N memory for the keys without --redis; the oldest go first [67108864]\n"
    "Access:\n"
    "  --auth-token-file FILE    clients must send Authorization: Bearer TOKEN, TOKEN the first line\n"
    "                            of FILE (or set FCMD_AUTH_TOKEN) [off]\n"
    "  --auth-token TOKEN        the same on the command line, where any local user can read it\n"
    "  --auth-scopes LIST        which of send,report,metrics need the token [send,report,metrics]\n"
    "  --tls-cert FILE --tls-key FILE   TLS on the listener, HTTP/2 by ALPN [off]\n"
    "Monitoring:\n"
    "  --graphite HOST:PORT      send the counters to carbon's plaintext listener [off]\n"
    "  --graphite-prefix P       prefix of the Graphite names [fcmd]\n"
    "  --graphite-interval S     seconds between sends [10]\n"
    "  --pidfile FILE            write the master's pid here\n"
    "  --config FILE             INI configuration file; flags override it (see conf/fcmd.conf)\n"
    "  --check-config            check the configuration and credentials, print ok or the error\n"
    "  --spool DIR               durable spool directory: accepted pushes survive crashes [off]\n"
    "  --spool-fsync MODE        never, batch or always [batch]\n"
    "  --spool-max-bytes N       bound on the spool; /gcm/send answers 503 beyond it [1 GiB]\n"
    "  --spool-segment-bytes N   size at which a segment file is replaced [16 MiB]\n"
    ,
    "Webhook (outcome events POSTed in batches to the operator's receiver):\n"
    "  --webhook URL             the receiver, http:// or https:// [off]\n"
    "  --webhook-secret-file F   sign each batch with the first line of F (or FCMD_WEBHOOK_SECRET):\n"
    "                            X-Fcmd-Signature: t=UNIX,v1=hex HMAC-SHA256(secret, \"UNIX.BODY\")\n"
    "  --webhook-events LIST     of delivered, invalid, canonical, failed, done, or all\n"
    "                            [invalid,canonical,failed]\n"
    "  --webhook-max-age S       events are retried this long, then dropped and counted [86400]\n"
    "  --webhook-queue-bytes N   memory for the events waiting, for the whole instance [67108864]\n"
    "Fleet:\n"
    "  --redis URL               redis://HOST[:PORT][/DB] (rediss:// for TLS) or unix:///PATH[?db=N]:\n"
    "                            report fleet totals [off]\n"
    "  --redis-password-file F   Redis' password, from the first line of F (or FCMD_REDIS_PASSWORD);\n"
    "                            a password in the URL (redis://:PW@HOST) is readable by every local user\n"
    "  --redis-ca-file FILE      the CAs a rediss:// server's certificate is checked against [system store]\n"
    "  --redis-drain-lease S     seconds a drain answer's entries stay taken without news from their worker [30]\n"
    "  --redis-queue             accepted pushes wait in a Redis stream every instance delivers from [off]\n"
    "  --redis-local-statuses    push statuses stay in each instance, not in Redis (GET /push/{id} is the instance's) [off]\n"
    "  --redis-claim-after S     pushes held by a worker silent this long are taken over [30]\n"
    "  --redis-queue-max N       pushes the stream may hold; /gcm/send answers 503 beyond [1000000]\n"
    "  --version, --help\n"
    "A flag wins over the config file, which wins over FCMD_APIKEY, FCMD_AUTH_TOKEN, FCMD_REDIS_PASSWORD and\n"
    "FCMD_WEBHOOK_SECRET.\n",
    NULL,
};

void options_defaults(struct fcmd_options *o)
{
    long cpus = sysconf(_SC_NPROCESSORS_ONLN);

    memset(o, 0, sizeof(*o));
    o->host = "0.0.0.0";
    o->port = 5601;
    o->workers = cpus < 1 ? 1 : cpus > OPTIONS_MAX_WORKERS ? OPTIONS_MAX_WORKERS : (int)cpus;
    o->gcm_url = "https://fcm.googleapis.com/fcm/send";
    o->fcm_url = "https://fcm.googleapis.com";
    o->apns_url = OPTIONS_APNS_URL;
    o->retries = 3;
    o->queue_size = 500000;
    o->queue_max_bytes = 256L << 20;
    o->shutdown_timeout = 30;
    o->log_level = "info";
    o->graphite_prefix = "fcmd";
    o->graphite_interval = 10;
    o->spool_fsync = "batch";
    o->auth_scopes = "send,report,metrics";
    o->max_body_bytes = 1L << 20;
    o->max_tokens = 10000;
    o->max_payload_bytes = 64L << 10;
    o->max_connections = 10000;
    o->max_header_bytes = 16L << 10;
    o->client_timeout = 10;
    o->upstream_idle_timeout = 60;
    o->drain_list_bytes = 8L << 20;
    o->push_status_ttl = 3600;
    o->push_status_max_bytes = 64L << 20;
    o->idempotency_ttl = 86400;
    o->idempotency_max_bytes = 64L << 20;
    o->redis_drain_lease = 30;
    o->spool_max_bytes = 1L << 30;
    o->spool_segment_bytes = 16L << 20;
    o->redis_claim_after = 30;
    o->redis_queue_max = 1000000;
    o->webhook_events = "invalid,canonical,failed";
    o->webhook_max_age = 86400;
    o->webhook_queue_bytes = 64L << 20;
}

int options_has_webhook(const struct fcmd_options *o)
{
    if (o->webhook != NULL)
        return 1;
    for (size_t i = 0; i < o->napps; i++)
        if (o->apps[i].o.webhook != NULL)
            return 1;
    return 0;
}

int options_webhook_events(const struct fcmd_options *o)
{
    static const struct {
        const char *word;
        int bits;
    } events[] = {{"delivered", WEBHOOK_DELIVERED}, {"invalid", WEBHOOK_INVALID}, {"canonical", WEBHOOK_CANONICAL},
                  {"failed", WEBHOOK_FAILED},       {"done", WEBHOOK_DONE},       {"all", WEBHOOK_ALL}};
    const char *p = o->webhook_events;
    int bits = 0;

    while (*p) {
        size_t n = strcspn(p, ","), i;
        for (i = 0; i < sizeof(events) / sizeof(events[0]); i++)
            if (n == strlen(events[i].word) && strncmp(p, events[i].word, n) == 0)
                break;
        if (i == sizeof(events) / sizeof(events[0]))
            return -1;
        bits |= events[i].bits;
        p += n + (p[n] == ',');
    }
    return bits == 0 ? -1 : bits;
}

int options_auth_scopes(const struct fcmd_options *o)
{
    static const struct {
        const char *word;
        int bit;
    } scopes[] = {{"send", AUTH_SEND}, {"report", AUTH_REPORT}, {"metrics", AUTH_METRICS}};
    const char *p = o->auth_scopes;
    int bits = 0;

    while (*p) {
        size_t n = strcspn(p, ",");
        int found = 0;
        for (size_t i = 0; i < 3; i++)
            if (n == strlen(scopes[i].word) && strncmp(p, scopes[i].word, n) == 0)
                bits |= scopes[i].bit, found = 1;
        if (!found && n > 0)
            return -1;
        p += n + (p[n] == ',');
    }
    return bits;
}

int options_graphite_address(const struct fcmd_options *o, char *host, size_t hostlen, int *port)
{
    const char *colon = o->graphite ? strrchr(o->graphite, ':') : NULL;
    const char *h = o->graphite;
    size_t n;
    char *end;
    long p;

    if (colon == NULL || colon == h)
        return -1;
    n = (size_t)(colon - h);
    if (h[0] == '[' && n >= 2 && h[n - 1] == ']') {
        h++;
        n -= 2;
    }
    p = strtol(colon + 1, &end, 10);
    if (*end != '\0' || p < 1 || p > 65535 || n == 0 || n >= hostlen)
        return -1;
    memcpy(host, h, n);
    host[n] = '\0';
    *port = (int)p;
    return 0;
}

static const struct opt_def *find_opt(const char *name, size_t len)
{
    for (size_t i = 0; i < sizeof(opt_table) / sizeof(opt_table[0]); i++)
        if (strlen(opt_table[i].name) == len && memcmp(opt_table[i].name, name, len) == 0)
            return &opt_table[i];
    return NULL;
}

static int parse_bool(const char *v, int *out)
{
    static const char *const yes[] = {"1", "t", "T", "true", "TRUE", "True", "on", "yes"};
    static const char *const no[] = {"0", "f", "F", "false", "FALSE", "False", "off", "no"};

    for (size_t i = 0; i < sizeof(yes) / sizeof(yes[0]); i++) {
        if (strcmp(v, yes[i]) == 0)
            return *out = 1, 0;
        if (strcmp(v, no[i]) == 0)
            return *out = 0, 0;
    }
    return -1;
}

static int set_value(struct fcmd_options *o, const struct opt_def *d, const char *v, char *err, size_t errlen)
{
    char *base = (char *)o + d->offset;
    char *end;
    long n;

    switch (d->kind) {
    case OPT_STRING:
        if (*v == '\0') {
            snprintf(err, errlen, "option --%s: empty value", d->name);
            return -1;
        }
        *(const char **)base = v;
        return 0;
    case OPT_BOOL:
        if (parse_bool(v, (int *)base) != 0) {
            snprintf(err, errlen, "option --%s: invalid boolean value \"%s\"", d->name, v);
            return -1;
        }
        return 0;
    case OPT_INT:
    case OPT_LONG:
        errno = 0;
        n = strtol(v, &end, 10);
        if (errno != 0 || end == v || *end != '\0' || n < d->min || n > d->max) {
            snprintf(err, errlen, "option --%s: \"%s\" is not a number from %ld to %ld", d->name, v, d->min, d->max);
            return -1;
        }
        if (d->kind == OPT_INT)
            *(int *)base = (int)n;
        else
            *(long *)base = n;
        return 0;
    }
    return -1;
}

int options_set(struct fcmd_options *o, const char *name, const char *value, char *err, size_t errlen)
{
    const struct opt_def *d = find_opt(name, strlen(name));

    if (d == NULL) {
        snprintf(err, errlen, "no option \"%s\"", name);
        return -1;
    }
    return set_value(o, d, value, err, errlen);
}

static const char *const level_names[] = {"error", "warn", "info", "debug"};

int options_log_level(const struct fcmd_options *o)
{
    for (int i = 0; i < 4; i++)
        if (strcmp(o->log_level, level_names[i]) == 0)
            return i;
    return -1;
}

int options_socket_mode(const struct fcmd_options *o)
{
    char *end;
    long mode;

    if (o->socket_mode == NULL)
        return -ENOENT;
    mode = strtol(o->socket_mode, &end, 8);
    return *end == '\0' && end != o->socket_mode && mode >= 0 && mode <= 0777 ? (int)mode : -EINVAL;
}

int options_parse(struct fcmd_options *o, int argc, char **argv, char *err, size_t errlen)
{
    for (int i = 1; i < argc; i++) {
        const char *arg = argv[i], *name, *eq, *value;
        const struct opt_def *d;
        size_t len;

        if (arg[0] != '-' || arg[1] == '\0') {
            snprintf(err, errlen, "unexpected argument \"%s\" (options start with - or --)", arg);
            return -1;
        }
        name = arg + (arg[1] == '-' ? 2 : 1);
        eq = strchr(name, '=');
        len = eq ? (size_t)(eq - name) : strlen(name);
        if ((d = find_opt(name, len)) == NULL) {
            snprintf(err, errlen, "unknown option \"%.*s\" (see --help)", (int)(len + (name - arg)), arg);
            return -1;
        }
        if (eq != NULL) {
            value = eq + 1;
        } else if (d->kind == OPT_BOOL) {
            value = "true";
        } else if (i + 1 < argc) {
            value = argv[++i];
        } else {
            snprintf(err, errlen, "option --%s needs a value", d->name);
            return -1;
        }
        if (set_value(o, d, value, err, errlen) != 0)
            return -1;
    }
    return 0;
}

static int url_ok(const char *u)
{
    return (strncmp(u, "http://", 7) == 0 && u[7] != '\0') || (strncmp(u, "https://", 8) == 0 && u[8] != '\0');
}

/* Whether the access log can be written, without creating it: the workers
 * create it when they start, and --check-config must leave nothing behind.
 * An existing file must open for appending; a missing one needs a directory
 * that can be written and searched. */
static int check_access_log(const char *path, char *err, size_t errlen)
{
    char dir[PATH_MAX];
    const char *slash = strrchr(path, '/');
    int fd = open(path, O_WRONLY | O_APPEND | O_NOCTTY | O_CLOEXEC);

    if (fd >= 0) {
        close(fd);
        return 0;
    }
    if (errno != ENOENT) {
        snprintf(err, errlen, "--access-log: cannot open \"%s\": open() failed: %s", path, strerror(errno));
        return -1;
    }
    if (slash == NULL)
        snprintf(dir, sizeof(dir), ".");
    else if (snprintf(dir, sizeof(dir), "%.*s", slash == path ? 1 : (int)(slash - path), path) >= (int)sizeof(dir)) {
        snprintf(err, errlen, "--access-log: \"%s\" is too long a path", path);
        return -1;
    }
    if (access(dir, W_OK | X_OK) != 0) {
        snprintf(err, errlen, "--access-log: cannot create \"%s\": access() to its directory failed: %s", path,
                 strerror(errno));
        return -1;
    }
    return 0;
}

/* That path is a PEM bundle holding at least one certificate. */
static int ca_bundle_check(const char *flag, const char *path, char *err, size_t errlen)
{
    X509_STORE *st;
    int n;

    if (access(path, R_OK) != 0) {
        snprintf(err, errlen, "%s: cannot read \"%s\": %s", flag, path, strerror(errno));
        return -1;
    }
    if ((st = X509_STORE_new()) == NULL) {
        snprintf(err, errlen, "%s: out of memory", flag);
        return -1;
    }
    n = 0;
    if (X509_STORE_load_file(st, path) == 1) {
        STACK_OF(X509_OBJECT) *objs = X509_STORE_get0_objects(st);
        for (int i = 0; i < sk_X509_OBJECT_num(objs); i++)
            n += X509_OBJECT_get_type(sk_X509_OBJECT_value(objs, i)) == X509_LU_X509; /* not a CRL */
    }
    X509_STORE_free(st);
    ERR_clear_error();
    if (n <= 0) {
        snprintf(err, errlen, "%s: \"%s\" holds no PEM certificate", flag, path);
        return -1;
    }
    return 0;
}

static int validate_redis(const struct fcmd_options *o, char *err, size_t errlen)
{
    struct redis_url u;
    char why[200], url[512];

    if (o->redis_local_statuses && o->redis == NULL) {
        snprintf(err, errlen, "--redis-local-statuses needs --redis URL");
        return -1;
    }
    if (o->redis_queue && o->redis == NULL) {
        snprintf(err, errlen, "--redis-queue needs --redis URL");
        return -1;
    }
    if (o->redis_queue && o->spool != NULL) {
        snprintf(err, errlen, "--spool and --redis-queue: with the queue in Redis there is no local spool; give one");
        return -1;
    }
    if (o->redis != NULL && redis_url_parse(o->redis, &u, why, sizeof(why)) != 0) {
        snprintf(err, errlen, "--redis: \"%s\": %s", log_url_any_at(o->redis, url, sizeof(url)), why);
        return -1;
    }
    if (o->redis_ca_file == NULL)
        return 0;
    if (o->redis == NULL || !u.tls) {
        snprintf(err, errlen, "--redis-ca-file is for a rediss:// URL (TLS)");
        return -1;
    }
    return ca_bundle_check("--redis-ca-file", o->redis_ca_file, err, errlen);
}

/* The ids and URL that go with --apns-key; the key itself is read later,
 * with the other credentials. */
static int validate_apns(const struct fcmd_options *o, char *err, size_t errlen)
{
    char url[512];

    if (o->apns_key == NULL) {
        const char *stray = o->apns_key_id    ? "--apns-key-id"
                            : o->apns_team_id ? "--apns-team-id"
                            : o->apns_topic   ? "--apns-topic"
                                              : NULL;
        if (stray != NULL) {
            snprintf(err, errlen, "%s needs --apns-key FILE", stray);
            return -1;
        }
        return 0;
    }
    if (o->apns_key_id == NULL || o->apns_team_id == NULL) {
        snprintf(err, errlen, "--apns-key needs %s", o->apns_key_id == NULL ? "--apns-key-id ID" : "--apns-team-id ID");
        return -1;
    }
    if (!apns_id_ok(o->apns_key_id)) {
        snprintf(err, errlen, "--apns-key-id: \"%.40s\" is not an APNs key id (10 upper-case letters and digits)",
                 o->apns_key_id);
        return -1;
    }
    if (!apns_id_ok(o->apns_team_id)) {
        snprintf(err, errlen, "--apns-team-id: \"%.40s\" is not a team id (10 upper-case letters and digits)",
                 o->apns_team_id);
        return -1;
    }
    if (o->apns_topic != NULL && !apns_topic_ok(o->apns_topic, strlen(o->apns_topic))) {
        snprintf(err, errlen, "--apns-topic: \"%.80s\" is not " APNS_TOPIC_RULE, o->apns_topic);
        return -1;
    }
    if (!url_ok(o->apns_url)) {
        snprintf(err, errlen, "--apns-url: \"%s\" is not an http:// or https:// URL",
                 log_url(o->apns_url, url, sizeof(url)));
        return -1;
    }
    return 0;
}

/* The subject that goes with --vapid-key; the key itself is read later,
 * with the other credentials. */
static int validate_vapid(const struct fcmd_options *o, char *err, size_t errlen)
{
    if (o->webpush_allow != NULL && webpush_allow_check(o->webpush_allow, err, errlen) != 0)
        return -1;
    if (o->vapid_key == NULL) {
        if (o->vapid_subject != NULL) {
            snprintf(err, errlen, "--vapid-subject needs --vapid-key FILE");
            return -1;
        }
        return 0;
    }
    if (o->vapid_subject == NULL) {
        snprintf(err, errlen, "--vapid-key needs --vapid-subject URI (mailto:ADDRESS or an https:// URL)");
        return -1;
    }
    if (!vapid_subject_ok(o->vapid_subject)) {
        /* Quoted on one line: a control character shows as '?'. */
        char shown[81];
        size_t i;
        for (i = 0; i < sizeof(shown) - 1 && o->vapid_subject[i] != '\0'; i++) {
            unsigned char c = (unsigned char)o->vapid_subject[i];
            shown[i] = c < 0x20 || c == 0x7f ? '?' : (char)c;
        }
        shown[i] = '\0';
        snprintf(err, errlen, "--vapid-subject: \"%s\" is not " VAPID_SUBJECT_RULE, shown);
        return -1;
    }
    return 0;
}

/* The receiver's URL comes from the operator alone; it still goes into a
 * request line, so it has no space or control character. */
static int validate_webhook(const struct fcmd_options *o, char *err, size_t errlen)
{
    char url[512];

    if (options_webhook_events(o) < 0) {
        snprintf(err, errlen, "--webhook-events: \"%.80s\" is not a list of delivered, invalid, canonical, failed, "
                 "done, all", o->webhook_events);
        return -1;
    }
    if (o->webhook == NULL)
        return 0;
    for (const char *p = o->webhook; *p != '\0'; p++) {
        if ((unsigned char)*p <= 0x20 || *p == 0x7f) {
            snprintf(err, errlen, "--webhook: the URL has a space or a control character");
            return -1;
        }
    }
    if (!url_ok(o->webhook) || strlen(o->webhook) > 2048) {
        snprintf(err, errlen, "--webhook: \"%s\" is not an http:// or https:// URL of at most 2048 bytes",
                 log_url(o->webhook, url, sizeof(url)));
        return -1;
    }
    return 0;
}

int options_validate(const struct fcmd_options *o, char *err, size_t errlen)
{
    char url[512];

    if (strcmp(o->spool_fsync, "never") != 0 && strcmp(o->spool_fsync, "batch") != 0 &&
        strcmp(o->spool_fsync, "always") != 0) {
        snprintf(err, errlen, "--spool-fsync: \"%s\" is not one of never, batch, always", o->spool_fsync);
        return -1;
    }
    if (options_log_level(o) < 0) {
        snprintf(err, errlen, "--log-level: \"%s\" is not one of error, warn, info, debug", o->log_level);
        return -1;
    }
    if (options_socket_mode(o) == -EINVAL) {
        snprintf(err, errlen, "--socket-mode: \"%s\" is not an octal mode such as 0660", o->socket_mode);
        return -1;
    }
    if (o->user != NULL && getpwnam(o->user) == NULL) {
        snprintf(err, errlen, "--user: no such user \"%s\"", o->user);
        return -1;
    }
    if (o->graphite != NULL) {
        char host[256];
        int port;
        if (options_graphite_address(o, host, sizeof(host), &port) != 0) {
            snprintf(err, errlen, "--graphite: \"%s\" is not HOST:PORT", o->graphite);
            return -1;
        }
        if (strspn(o->graphite_prefix, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_-.") !=
            strlen(o->graphite_prefix)) {
            snprintf(err, errlen, "--graphite-prefix: \"%s\" may hold only letters, digits and _-.",
                     o->graphite_prefix);
            return -1;
        }
    }
    if (options_auth_scopes(o) < 0) {
        snprintf(err, errlen, "--auth-scopes: \"%s\" is not a list of send, report, metrics", o->auth_scopes);
        return -1;
    }
    if (o->auth_token != NULL && o->auth_token_file != NULL) {
        snprintf(err, errlen, "--auth-token and --auth-token-file: give one");
        return -1;
    }
    if ((o->tls_cert == NULL) != (o->tls_key == NULL)) {
        snprintf(err, errlen, "--tls-cert and --tls-key go together");
        return -1;
    }
    if (o->access_log != NULL && check_access_log(o->access_log, err, errlen) != 0)
        return -1;
    if (o->apikey != NULL && o->apikey_file != NULL) {
        snprintf(err, errlen, "--apikey and --apikey-file: give one");
        return -1;
    }
    /* With [app] sections the default app may have no credentials of its own. */
    if (o->apikey == NULL && o->apikey_file == NULL && o->service_account == NULL && o->apns_key == NULL &&
        o->vapid_key == NULL && o->napps == 0) {
        snprintf(err, errlen,
                 "no upstream credentials: give --service-account FILE, or a legacy key with --apikey-file FILE "
                 "or FCMD_APIKEY, or an APNs key with --apns-key FILE, or a VAPID key with --vapid-key FILE");
        return -1;
    }
    if (!url_ok(o->gcm_url)) {
        snprintf(err, errlen, "--gcm-url: \"%s\" is not an http:// or https:// URL",
                 log_url(o->gcm_url, url, sizeof(url)));
        return -1;
    }
    if (!url_ok(o->fcm_url)) {
        snprintf(err, errlen, "--fcm-url: \"%s\" is not an http:// or https:// URL",
                 log_url(o->fcm_url, url, sizeof(url)));
        return -1;
    }
    if (o->ca_file != NULL && access(o->ca_file, R_OK) != 0) {
        snprintf(err, errlen, "--ca-file: cannot read \"%s\": %s", o->ca_file, strerror(errno));
        return -1;
    }
    if (o->apikey != NULL && (strchr(o->apikey, '\r') != NULL || strchr(o->apikey, '\n') != NULL)) {
        snprintf(err, errlen, "--apikey: the key contains a line break");
        return -1;
    }
    if (validate_apns(o, err, errlen) != 0 || validate_vapid(o, err, errlen) != 0 ||
        validate_webhook(o, err, errlen) != 0)
        return -1;
    return validate_redis(o, err, errlen);
}

int options_app_name_ok(const char *name, size_t n)
{
    if (n == 0 || n > APP_NAME_MAX)
        return 0;
    for (size_t i = 0; i < n; i++) {
        unsigned char ch = (unsigned char)name[i];
        if (!((ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || (ch >= '0' && ch <= '9') || ch == '_' ||
              ch == '.' || ch == '-'))
            return 0;
    }
    return 1;
}

int options_app_find(const struct fcmd_options *o, const char *name, size_t n)
{
    if (name == NULL || (n == 7 && memcmp(name, "default", 7) == 0))
        return APP_DEFAULT;
    for (size_t i = 0; i < o->napps; i++)
        if (strlen(o->apps[i].name) == n && memcmp(o->apps[i].name, name, n) == 0)
            return (int)i + 1;
    return -ENOENT;
}

const char *options_app_name(const struct fcmd_options *o, unsigned i)
{
    return i >= 1 && i <= o->napps ? o->apps[i - 1].name : "";
}
