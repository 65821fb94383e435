/*
 * master/settings.c - one load of fcmd's configuration.
 *
 * The command line is parsed twice: once to find --config (and to report
 * a bad flag before anything else), and once more after the file has been
 * applied, so that flags override the file.  The directories fcmd writes
 * are checked for the user the workers will run as, not for the root that
 * may be starting them.
 */
#include "settings.h"
#include "../common/apns_key.h"
#include "../common/vapid_key.h"
#include "../common/log.h"
#include "../common/redis_url.h"
#include "../shm/region.h"

#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <h2o.h>
#include <h2o/http2.h>
#include <limits.h>
#include <openssl/crypto.h>
#include <openssl/ssl.h>
#include <pwd.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <unistd.h>

/* Who the master and workers run as once started. */
struct runas {
    uid_t uid;
    gid_t gid;
    int become; /* this process is root and will switch to uid (--user) */
    char name[64];
};

/* The longest token line --auth-token-file may hold. */
#define TOKEN_FILE_MAX (64 * 1024)

/* Reads the first line of path, of any length up to TOKEN_FILE_MAX, into
 * buf (TOKEN_FILE_MAX + 2 bytes) with read(), so that no stdio buffer keeps
 * a copy of the token.  Returns its length, -1 with errno set, or
 * TOKEN_FILE_MAX + 1 when it is longer. */
static ssize_t read_first_line(const char *path, char *buf)
{
    size_t len = 0, cap = TOKEN_FILE_MAX + 1;
    const char *eol = NULL;
    ssize_t got = 0;
    int fd = open(path, O_RDONLY | O_CLOEXEC), e;

    if (fd < 0)
        return -1;
    while (eol == NULL && len < cap) {
        if ((got = read(fd, buf + len, cap - len)) < 0 && errno == EINTR)
            continue;
        if (got <= 0)
            break;
        eol = memchr(buf + len, '\n', (size_t)got);
        len += (size_t)got;
    }
    e = errno;
    close(fd);
    if (eol == NULL && len < cap && got < 0) {
        errno = e;
        return -1;
    }
    return eol != NULL ? eol - buf : (ssize_t)len;
}

/* Reads a secret from the first line of path (CR/LF stripped) into a new
 * string in *out.  flag names the setting in errors; the secret never
 * appears in them. */
static int load_secret_file(const char *flag, const char *path, const char *what, char **out, char *err, size_t errlen)
{
    char *buf = malloc(TOKEN_FILE_MAX + 2);
    ssize_t n;
    int rc = -1;

    if (buf == NULL) {
        snprintf(err, errlen, "%s: malloc() failed: out of memory", flag);
        return -1;
    }
    if ((n = read_first_line(path, buf)) < 0) {
        snprintf(err, errlen, "%s: cannot read a %s from \"%s\": %s", flag, what, path, strerror(errno));
        goto done;
    }
    if (n > TOKEN_FILE_MAX) {
        snprintf(err, errlen, "%s: the first line of \"%s\" is longer than %d bytes", flag, path, TOKEN_FILE_MAX);
        goto done;
    }
    if (n > 0 && buf[n - 1] == '\r')
        n--;
    buf[n] = '\0';
    for (ssize_t i = 0; i < n; i++) {
        if ((unsigned char)buf[i] < 0x20 || buf[i] == 0x7f) {
            snprintf(err, errlen, "%s: the %s in \"%s\" has a control character", flag, what, path);
            goto done;
        }
    }
    if (n == 0) {
        snprintf(err, errlen, "%s: \"%s\" holds no %s", flag, path, what);
        goto done;
    }
    if ((*out = strdup(buf)) == NULL) {
        snprintf(err, errlen, "%s: strdup() failed: out of memory", flag);
        goto done;
    }
    rc = 0;
done:
    OPENSSL_cleanse(buf, TOKEN_FILE_MAX + 2);
    free(buf);
    return rc;
}

/* A secret from the environment, checked as one from a file would be. */
static int env_secret(const char *name, const char *value, const char *what, char **out, char *err, size_t errlen)
{
    size_t n = strlen(value);

    if (n == 0) {
        snprintf(err, errlen, "%s is set but empty: give the %s, or unset it", name, what);
        return -1;
    }
    if (n > TOKEN_FILE_MAX) {
        snprintf(err, errlen, "%s is longer than %d bytes", name, TOKEN_FILE_MAX);
        return -1;
    }
    for (size_t i = 0; i < n; i++) {
        if ((unsigned char)value[i] < 0x20 || value[i] == 0x7f) {
            snprintf(err, errlen, "the %s in %s has a control character", what, name);
            return -1;
        }
    }
    if ((*out = strdup(value)) == NULL) {
        snprintf(err, errlen, "%s: strdup() failed: out of memory", name);
        return -1;
    }
    return 0;
}

/* A secret from its file flag, else from its environment variable when
 * neither the flags nor the config file gave it; *target then points at the
 * copy the settings own. */
struct secret_source {
    const char *file_flag; /* "--apikey-file" */
    const char *file;      /* its value, or NULL */
    const char *env_name;  /* "FCMD_APIKEY" */
    const char *env_value; /* taken from the environment at start, or NULL */
    const char *what;      /* "key", for messages */
};

static int load_secret(const struct secret_source *src, char **owned, const char **target, char *err, size_t errlen)
{
    if (src->file != NULL) {
        if (load_secret_file(src->file_flag, src->file, src->what, owned, err, errlen) != 0)
            return -1;
    } else if (*target == NULL && src->env_value != NULL) {
        if (env_secret(src->env_name, src->env_value, src->what, owned, err, errlen) != 0)
            return -1;
    } else {
        return 0;
    }
    *target = *owned;
    return 0;
}

/* The legacy key and the clients' token. */
static int load_apikey(struct settings *s, char *err, size_t errlen)
{
    struct secret_source src = {"--apikey-file", s->o.apikey_file, "FCMD_APIKEY",
                                s->env != NULL ? s->env->apikey : NULL, "key"};

    return load_secret(&src, &s->apikey, &s->o.apikey, err, errlen);
}

static int load_token(struct settings *s, char *err, size_t errlen)
{
    struct secret_source src = {"--auth-token-file", s->o.auth_token_file, "FCMD_AUTH_TOKEN",
                                s->env != NULL ? s->env->auth_token : NULL, "token"};

    return load_secret(&src, &s->auth_token, &s->o.auth_token, err, errlen);
}

/* The webhook's signing key: from --webhook-secret-file, else from
 * FCMD_WEBHOOK_SECRET. */
static int load_webhook_secret(struct settings *s, char *err, size_t errlen)
{
    struct secret_source src = {"--webhook-secret-file", s->o.webhook_secret_file, "FCMD_WEBHOOK_SECRET",
                                s->env != NULL ? s->env->webhook_secret : NULL, "secret"};

    return load_secret(&src, &s->webhook_secret, &s->o.webhook_secret, err, errlen);
}

/* Redis' password: from --redis-password-file, else from FCMD_REDIS_PASSWORD.
 * One a worker could not send (longer than its buffer) is refused here, at
 * start, rather than dropped silently in every worker. */
static int load_redis_password(struct settings *s, char *err, size_t errlen)
{
    struct redis_url u;

    if (s->o.redis_password_file != NULL) {
        if (load_secret_file("--redis-password-file", s->o.redis_password_file, "password", &s->redis_password, err,
                             errlen) != 0)
            return -1;
    } else if (s->env != NULL && s->env->redis_password != NULL) {
        if (env_secret("FCMD_REDIS_PASSWORD", s->env->redis_password, "password", &s->redis_password, err, errlen) != 0)
            return -1;
    } else {
        return 0;
    }
    s->o.redis_password = s->redis_password;
    if (strlen(s->redis_password) >= sizeof(u.password)) {
        snprintf(err, errlen, "the Redis password is longer than %zu bytes", sizeof(u.password) - 1);
        return -1;
    }
    if (s->o.redis != NULL && s->o.redis_password_file != NULL && redis_url_parse(s->o.redis, &u, err, errlen) == 0 &&
        u.password[0] != '\0') {
        OPENSSL_cleanse(u.password, sizeof(u.password));
        snprintf(err, errlen, "--redis-password-file and a password in the --redis URL: give one");
        return -1;
    }
    OPENSSL_cleanse(u.password, sizeof(u.password));
    return 0;
}

/* Copies the value of the variable name into *out, wipes every copy of it in
 * the environment block (several entries may carry the name) and unsets it. */
static int env_take_one(const char *name, char **out, char *err, size_t errlen)
{
    size_t len = strlen(name);

    *out = NULL;
    for (char **e = environ; e != NULL && *e != NULL; e++) {
        if (strncmp(*e, name, len) != 0 || (*e)[len] != '=')
            continue;
        if (*out == NULL && (*out = strdup(*e + len + 1)) == NULL) {
            snprintf(err, errlen, "%s: strdup() failed: out of memory", name);
            return -1;
        }
        OPENSSL_cleanse(*e + len + 1, strlen(*e + len + 1));
    }
    if (*out != NULL && unsetenv(name) != 0) {
        snprintf(err, errlen, "%s: unsetenv() failed: %s", name, strerror(errno));
        return -1;
    }
    return 0;
}

int settings_env_take(struct settings_env *env, char *err, size_t errlen)
{
    memset(env, 0, sizeof(*env));
    if (env_take_one("FCMD_APIKEY", &env->apikey, err, errlen) != 0 ||
        env_take_one("FCMD_AUTH_TOKEN", &env->auth_token, err, errlen) != 0 ||
        env_take_one("FCMD_REDIS_PASSWORD", &env->redis_password, err, errlen) != 0 ||
        env_take_one("FCMD_WEBHOOK_SECRET", &env->webhook_secret, err, errlen) != 0) {
        settings_env_free(env);
        return -1;
    }
    return 0;
}

static void free_secret(char *p)
{
    if (p != NULL) {
        OPENSSL_cleanse(p, strlen(p));
        free(p);
    }
}

void settings_env_free(struct settings_env *env)
{
    free_secret(env->apikey);
    free_secret(env->auth_token);
    free_secret(env->redis_password);
    free_secret(env->webhook_secret);
    env->apikey = env->auth_token = env->redis_password = env->webhook_secret = NULL;
}

static void runas_resolve(const struct fcmd_options *o, struct runas *r)
{
    struct passwd *pw = NULL;

    r->uid = geteuid();
    r->gid = getegid();
    /* Only root can switch; anyone else stays who it is (main says so). */
    if (o->user != NULL && r->uid == 0 && (pw = getpwnam(o->user)) != NULL) {
        r->uid = pw->pw_uid;
        r->gid = pw->pw_gid;
    } else {
        pw = getpwuid(r->uid);
    }
    r->become = r->uid != geteuid();
    if (pw != NULL)
        snprintf(r->name, sizeof(r->name), "%s", pw->pw_name);
    else
        snprintf(r->name, sizeof(r->name), "uid %u", (unsigned)r->uid);
}

/* 0 when r's user can create and remove files in dir, else -errno.  When
 * this process will switch users, a forked helper becomes that user and
 * tries it (its exit status is the errno), so groups, ACLs and read-only
 * mounts count as they will for the workers. */
static int runas_try_dir(const struct runas *r, const char *dir)
{
    char path[PATH_MAX];
    int status, fd;
    pid_t pid;

    if (!r->become)
        return access(dir, W_OK | X_OK) == 0 ? 0 : -errno;
    if (snprintf(path, sizeof(path), "%s/.fcmd-write-check-XXXXXX", dir) >= (int)sizeof(path))
        return -ENAMETOOLONG;
    if ((pid = fork()) < 0)
        return -errno;
    if (pid == 0) {
        if (initgroups(r->name, r->gid) != 0 || setgid(r->gid) != 0 || setuid(r->uid) != 0)
            _exit(errno);
        if ((fd = mkstemp(path)) < 0)
            _exit(errno);
        close(fd);
        _exit(unlink(path) == 0 ? 0 : errno);
    }
    while (waitpid(pid, &status, 0) < 0)
        if (errno != EINTR)
            return -errno;
    return WIFEXITED(status) ? -WEXITSTATUS(status) : -EIO;
}

/* 0 when r's user can open path for reading, else -errno: as above, a
 * forked helper becomes that user to try, since the workers read it. */
static int runas_try_read(const struct runas *r, const char *path)
{
    int status, fd;
    pid_t pid;

    if (!r->become)
        return access(path, R_OK) == 0 ? 0 : -errno;
    if ((pid = fork()) < 0)
        return -errno;
    if (pid == 0) {
        if (initgroups(r->name, r->gid) != 0 || setgid(r->gid) != 0 || setuid(r->uid) != 0)
            _exit(errno);
        if ((fd = open(path, O_RDONLY | O_CLOEXEC)) < 0)
            _exit(errno);
        close(fd);
        _exit(0);
    }
    while (waitpid(pid, &status, 0) < 0)
        if (errno != EINTR)
            return -errno;
    return WIFEXITED(status) ? -WEXITSTATUS(status) : -EIO;
}

/* The spool: created for r's user when missing; refused when others could
 * plant files in it (a symbolic link, group- or world-writable, another
 * user's), or when r's user cannot write in it. */
static int check_spool(const struct runas *r, const char *dir, char *err, size_t errlen)
{
    struct stat st;
    int e;

    if (lstat(dir, &st) != 0) {
        if (errno != ENOENT) {
            snprintf(err, errlen, "--spool: cannot use directory \"%s\": lstat() failed: %s", dir, strerror(errno));
            return -1;
        }
        if (mkdir(dir, 0750) != 0 || (r->become && chown(dir, r->uid, r->gid) != 0) || lstat(dir, &st) != 0) {
            snprintf(err, errlen, "--spool: cannot create directory \"%s\" for user %s: %s", dir, r->name,
                     strerror(errno));
            return -1;
        }
    }
    if (S_ISLNK(st.st_mode)) {
        snprintf(err, errlen, "--spool: \"%s\" is a symbolic link; give the directory itself", dir);
        return -1;
    }
    if (!S_ISDIR(st.st_mode)) {
        snprintf(err, errlen, "--spool: \"%s\" is not a directory", dir);
        return -1;
    }
    if (st.st_mode & (S_IWGRP | S_IWOTH)) {
        snprintf(err, errlen, "--spool: \"%s\" is writable by other users (mode %04o); make it 0750", dir,
                 (unsigned)(st.st_mode & 07777));
        return -1;
    }
    if (st.st_uid != r->uid && st.st_uid != 0) {
        snprintf(err, errlen, "--spool: \"%s\" belongs to uid %u, not to %s, who runs the workers", dir,
                 (unsigned)st.st_uid, r->name);
        return -1;
    }
    if ((e = runas_try_dir(r, dir)) != 0) {
        snprintf(err, errlen, "--spool: user %s cannot create files in \"%s\": %s", r->name, dir, strerror(-e));
        return -1;
    }
    return 0;
}

/* The master writes the pid file as r's user and removes it at exit, so
 * that user must be able to create and remove files in its directory. */
static int check_pidfile_dir(const struct runas *r, const char *path, char *err, size_t errlen)
{
    char dir[PATH_MAX];
    const char *slash = strrchr(path, '/');
    int e;

    if (slash == NULL)
        snprintf(dir, sizeof(dir), ".");
    else
        snprintf(dir, sizeof(dir), "%.*s", slash == path ? 1 : (int)(slash - path), path);
    if ((e = runas_try_dir(r, dir)) != 0) {
        snprintf(err, errlen,
                 "--pidfile: user %s cannot create and remove files in \"%s\": %s; "
                 "use a directory it can write, such as /run/fcmd",
                 r->name, dir, strerror(-e));
        return -1;
    }
    return 0;
}

/* The listener's TLS context, with HTTP/2 offered by ALPN. */
static void *tls_context(const struct fcmd_options *o, char *err, size_t errlen)
{
    SSL_CTX *ctx = SSL_CTX_new(TLS_server_method());

    if (ctx == NULL || SSL_CTX_use_certificate_chain_file(ctx, o->tls_cert) != 1 ||
        SSL_CTX_use_PrivateKey_file(ctx, o->tls_key, SSL_FILETYPE_PEM) != 1 || SSL_CTX_check_private_key(ctx) != 1) {
        snprintf(err, errlen, "--tls-cert/--tls-key: cannot use \"%s\" with \"%s\"", o->tls_cert, o->tls_key);
        SSL_CTX_free(ctx);
        return NULL;
    }
    SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION);
    h2o_ssl_register_alpn_protocols(ctx, h2o_http2_alpn_protocols);
    return ctx;
}

/* A token no client could present is refused: one longer than a header may
 * be, or one with spaces at an end (HTTP trims those from a header). */
static int usable_token(const struct fcmd_options *o, char *err, size_t errlen)
{
    size_t n = strlen(o->auth_token);

    /* The rest of a request's headers need room too: 1 KiB of it. */
    if (n + sizeof("authorization: Bearer ") + 1024 > (size_t)o->max_header_bytes) {
        snprintf(err, errlen, "the auth token (%zu bytes) does not fit in --max-header-bytes (%ld)", n,
                 o->max_header_bytes);
        return -1;
    }
    if (n > 0 && (strchr(" \t", o->auth_token[0]) != NULL || strchr(" \t", o->auth_token[n - 1]) != NULL)) {
        snprintf(err, errlen, "the auth token begins or ends with a space, which no HTTP header can carry");
        return -1;
    }
    return 0;
}

/* A secret and its -file form both in the config file is an error; either
 * given as a flag replaces both of the file's. */
static int merge_secret(const char *path, const char *section, const char *key, const char **value, const char **file,
                        const char *flag_value, const char *flag_file, char *err, size_t errlen)
{
    if (*value != NULL && *file != NULL) {
        snprintf(err, errlen, "%s: [%s] %s and %s_file: give one", path, section, key, key);
        return -1;
    }
    if (flag_value != NULL || flag_file != NULL)
        *value = *file = NULL;
    return 0;
}

/* The distinct app names of the file's [app NAME] sections, in order. */
static size_t app_names(const struct config_strings *cs, const char **names, size_t max)
{
    size_t n = 0, j;

    for (size_t i = 0; i < cs->napp; i++) {
        for (j = 0; j < n && strcmp(names[j], cs->app[i].app) != 0; j++)
            ;
        if (j == n) {
            if (n == max)
                return max + 1;
            names[n++] = cs->app[i].app;
        }
    }
    return n;
}

/* Each app starts as a copy of the instance's settings without their
 * credentials (so URLs, limits and the rest are the instance's), then takes
 * its section's keys. */
static int build_apps(struct settings *s, char *err, size_t errlen)
{
    const char *names[APPS_MAX];
    size_t n = app_names(&s->strings, names, APPS_MAX);
    char why[256];

    if (n == 0)
        return 0;
    if (n > APPS_MAX) {
        snprintf(err, errlen, "%s: more than %d [app] sections", s->o.config, APPS_MAX);
        return -1;
    }
    if ((s->apps = calloc(n, sizeof(*s->apps))) == NULL || (s->app_creds = calloc(n, sizeof(*s->app_creds))) == NULL) {
        snprintf(err, errlen, "calloc() failed: out of memory");
        return -1;
    }
    for (size_t i = 0; i < n; i++) {
        struct fcmd_options *o = &s->apps[i].o;
        snprintf(s->apps[i].name, sizeof(s->apps[i].name), "%s", names[i]);
        *o = s->o;
        o->apps = NULL;
        o->napps = 0;
        o->auth_token = o->auth_token_file = NULL; /* an app's token is its own, never the instance's */
        o->apikey = o->apikey_file = o->service_account = NULL;
        o->apns_key = o->apns_key_id = o->apns_team_id = o->apns_topic = NULL;
        o->vapid_key = o->vapid_subject = NULL;
        o->sa = NULL;
        o->apns_pkey = o->vapid_pkey = NULL;
        for (size_t k = 0; k < s->strings.napp; k++) {
            const struct config_app_key *key = &s->strings.app[k];
            if (strcmp(key->app, names[i]) != 0)
                continue;
            if (options_set(o, key->option, key->value, why, sizeof(why)) != 0) {
                snprintf(err, errlen, "%s: [app %s]: %s", s->o.config, names[i], why);
                return -1;
            }
        }
    }
    s->o.apps = s->apps;
    s->o.napps = n;
    return 0;
}

/* Checks app i's settings and reads the credentials they name.  Returns 0,
 * or -1 with a reason in err. */
static int load_app(struct settings *s, size_t i, char *err, size_t errlen)
{
    struct fcmd_app *a = &s->apps[i];
    struct settings_app *cr = &s->app_creds[i];
    char why[512];

    if (options_validate(&a->o, why, sizeof(why)) != 0 ||
        (a->o.apikey_file != NULL &&
         load_secret_file("apikey_file", a->o.apikey_file, "key", &cr->apikey, why, sizeof(why)) != 0)) {
        snprintf(err, errlen, "[app %s]: %s", a->name, why);
        return -1;
    }
    if (cr->apikey != NULL)
        a->o.apikey = cr->apikey;
    /* Its own webhook's key, else the instance's. */
    if (a->o.webhook_secret_file != s->o.webhook_secret_file) {
        if (load_secret_file("webhook_secret_file", a->o.webhook_secret_file, "secret", &cr->webhook_secret, why,
                             sizeof(why)) != 0) {
            snprintf(err, errlen, "[app %s]: %s", a->name, why);
            return -1;
        }
        a->o.webhook_secret = cr->webhook_secret;
    } else if (a->o.webhook != NULL && s->o.webhook_secret != NULL &&
               (s->o.webhook == NULL || strcmp(a->o.webhook, s->o.webhook) != 0)) {
        /* The instance's key would let this app's receiver sign events the
         * instance's receiver (and every other app's) takes for fcmd's. */
        snprintf(err, errlen, "[app %s]: webhook names a receiver of its own: give it a webhook_secret_file of its "
                 "own (the instance's secret is not shared with another receiver)", a->name);
        return -1;
    } else {
        a->o.webhook_secret = s->o.webhook_secret;
    }
    if (a->o.service_account != NULL) {
        if (service_account_load(a->o.service_account, &cr->sa, why, sizeof(why)) != 0) {
            snprintf(err, errlen, "[app %s]: %s", a->name, why);
            return -1;
        }
        a->o.sa = &cr->sa;
    }
    if (a->o.apns_key != NULL && (a->o.apns_pkey = apns_key_load(a->o.apns_key, why, sizeof(why))) == NULL) {
        snprintf(err, errlen, "[app %s]: %s", a->name, why);
        return -1;
    }
    if (a->o.vapid_key != NULL && (a->o.vapid_pkey = vapid_key_load(a->o.vapid_key, why, sizeof(why))) == NULL) {
        snprintf(err, errlen, "[app %s]: %s", a->name, why);
        return -1;
    }
    return 0;
}

/* App i's client token: its auth_token, or the first line of its
 * auth_token_file, checked as the instance's is.  Never in an error. */
static int load_app_token(struct settings *s, size_t i, char *err, size_t errlen)
{
    struct fcmd_app *a = &s->apps[i];
    char why[512];

    if (a->o.auth_token_file != NULL && a->o.auth_token != NULL) {
        snprintf(err, errlen, "%s: [app %s] auth_token and auth_token_file: give one", s->o.config, a->name);
        return -1;
    }
    if (a->o.auth_token_file != NULL) {
        if (load_secret_file("auth_token_file", a->o.auth_token_file, "token", &s->app_creds[i].auth_token, why,
                             sizeof(why)) != 0) {
            snprintf(err, errlen, "[app %s]: %s", a->name, why);
            return -1;
        }
        a->o.auth_token = s->app_creds[i].auth_token;
    }
    if (a->o.auth_token != NULL && a->o.auth_token[0] == '\0') {
        snprintf(err, errlen, "[app %s]: auth_token is empty", a->name);
        return -1;
    }
    if (a->o.auth_token != NULL && usable_token(&a->o, why, sizeof(why)) != 0) {
        snprintf(err, errlen, "[app %s]: %s", a->name, why);
        return -1;
    }
    return 0;
}

/* Every app's client token.  Unlike a credential, a token that cannot be
 * read fails a reload as the instance's token does: the running generation
 * keeps serving with the tokens it has, so no reload ever opens an app.  A
 * token two holders share would make one of them the other: refused. */
static int load_app_tokens(struct settings *s, char *err, size_t errlen)
{
    for (size_t i = 0; i < s->o.napps; i++) {
        const char *t;
        if (load_app_token(s, i, err, errlen) != 0)
            return -1;
        if ((t = s->apps[i].o.auth_token) == NULL)
            continue;
        if (s->o.auth_token != NULL && strcmp(t, s->o.auth_token) == 0) {
            snprintf(err, errlen, "[app %s]: its auth token is the instance's (--auth-token): give it one of its own",
                     s->apps[i].name);
            return -1;
        }
        for (size_t j = 0; j < i; j++) {
            if (s->apps[j].o.auth_token != NULL && strcmp(t, s->apps[j].o.auth_token) == 0) {
                snprintf(err, errlen, "[app %s]: its auth token is [app %s]'s: give each app its own",
                         s->apps[i].name, s->apps[j].name);
                return -1;
            }
        }
    }
    return 0;
}

/* At start every app must load; on a reload an app whose credentials cannot
 * be read is kept but marked broken (its sends are refused with 503, /readyz
 * names it), so
 * one app's bad key does not stop the others from taking the new settings. */
static int load_apps(struct settings *s, int validate, char *err, size_t errlen)
{
    char why[600];

    for (size_t i = 0; i < s->o.napps; i++) {
        if (load_app(s, i, why, sizeof(why)) == 0)
            continue;
        if (validate != SETTINGS_RELOAD) {
            snprintf(err, errlen, "%s", why);
            return -1;
        }
        log_error("reload: %s: the app's pushes are refused (503) until a reload loads its credentials", why);
        s->apps[i].broken = 1;
    }
    return 0;
}

struct settings *settings_load(int argc, char **argv, const struct settings_env *env, int validate, char *err,
                               size_t errlen)
{
    struct settings *s = calloc(1, sizeof(*s));
    struct fcmd_options flags;
    struct runas r;
    int e;

    if (s == NULL) {
        snprintf(err, errlen, "calloc() failed: out of memory");
        return NULL;
    }
    s->env = env;
    options_defaults(&flags);
    if (options_parse(&flags, argc, argv, err, errlen) != 0)
        goto fail;
    options_defaults(&s->o);
    if (flags.config != NULL && !flags.help && !flags.version &&
        (config_load(flags.config, &s->o, &s->strings, err, errlen) != 0 ||
         merge_secret(flags.config, "upstream", "apikey", &s->o.apikey, &s->o.apikey_file, flags.apikey,
                      flags.apikey_file, err, errlen) != 0 ||
         merge_secret(flags.config, "server", "auth_token", &s->o.auth_token, &s->o.auth_token_file, flags.auth_token,
                      flags.auth_token_file, err, errlen) != 0))
        goto fail;
    if (options_parse(&s->o, argc, argv, err, errlen) != 0)
        goto fail;
    if (build_apps(s, err, errlen) != 0)
        goto fail;
    if (!validate || s->o.help || s->o.version)
        return s;
    /* Asks for the key alone: no upstream need be configured. */
    if (s->o.vapid_public_key) {
        if (s->o.vapid_key == NULL) {
            snprintf(err, errlen, "--vapid-public-key needs --vapid-key FILE");
            goto fail;
        }
        if ((s->o.vapid_pkey = vapid_key_load(s->o.vapid_key, err, errlen)) == NULL)
            goto fail;
        return s;
    }
    /* A key only the environment gives counts as credentials, so it is
     * taken before validation; the files are read after it. */
    if (s->o.apikey_file == NULL && load_apikey(s, err, errlen) != 0)
        goto fail;
    if (options_validate(&s->o, err, errlen) != 0)
        goto fail;
    runas_resolve(&s->o, &r);
    if (s->o.spool != NULL && check_spool(&r, s->o.spool, err, errlen) != 0)
        goto fail;
    if (s->o.pidfile != NULL && check_pidfile_dir(&r, s->o.pidfile, err, errlen) != 0)
        goto fail;
    /* The workers read it when they connect, as r's user. */
    if (s->o.redis_ca_file != NULL && (e = runas_try_read(&r, s->o.redis_ca_file)) != 0) {
        snprintf(err, errlen, "--redis-ca-file: \"%s\" cannot be read by user %s, whom the workers run as: %s",
                 s->o.redis_ca_file, r.name, strerror(-e));
        goto fail;
    }
    if (s->o.apikey_file != NULL && load_apikey(s, err, errlen) != 0)
        goto fail;
    if (load_token(s, err, errlen) != 0)
        goto fail;
    if (load_redis_password(s, err, errlen) != 0)
        goto fail;
    if (load_webhook_secret(s, err, errlen) != 0)
        goto fail;
    if (s->o.auth_token != NULL && usable_token(&s->o, err, errlen) != 0)
        goto fail;
    if (s->o.tls_cert != NULL && (s->o.tls_ctx = tls_context(&s->o, err, errlen)) == NULL)
        goto fail;
    /* --service-account wins over --apikey when both are given. */
    if (s->o.service_account != NULL) {
        if (service_account_load(s->o.service_account, &s->sa, err, errlen) != 0)
            goto fail;
        s->o.sa = &s->sa;
    }
    if (s->o.apns_key != NULL && (s->o.apns_pkey = apns_key_load(s->o.apns_key, err, errlen)) == NULL)
        goto fail;
    if (s->o.vapid_key != NULL && (s->o.vapid_pkey = vapid_key_load(s->o.vapid_key, err, errlen)) == NULL)
        goto fail;
    if (load_apps(s, validate, err, errlen) != 0)
        goto fail;
    if (load_app_tokens(s, err, errlen) != 0)
        goto fail;
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
    for (size_t i = 0; s->apps != NULL && s->app_creds != NULL && i < s->o.napps; i++) {
        if (s->apps[i].o.sa != NULL)
            service_account_free(&s->app_creds[i].sa);
        EVP_PKEY_free(s->apps[i].o.apns_pkey);
        EVP_PKEY_free(s->apps[i].o.vapid_pkey);
        free_secret(s->app_creds[i].apikey);
        free_secret(s->app_creds[i].webhook_secret);
        free_secret(s->app_creds[i].auth_token);
    }
    free(s->apps);
    free(s->app_creds);
    SSL_CTX_free(s->o.tls_ctx);
    EVP_PKEY_free(s->o.apns_pkey);
    EVP_PKEY_free(s->o.vapid_pkey);
    free_secret(s->auth_token);
    free_secret(s->apikey);
    free_secret(s->redis_password);
    free_secret(s->webhook_secret);
    config_strings_free(&s->strings);
    free(s);
}

/* Whether a URL carries a user or a password: an '@' before its path, where
 * log_url() finds one. */
static int url_has_userinfo(const char *url)
{
    const char *sep = url != NULL ? strstr(url, "://") : NULL;
    const char *host = sep != NULL ? sep + 3 : url;

    return host != NULL && memchr(host, '@', strcspn(host, "/?#")) != NULL;
}

/* The secrets of one app's options, once loaded: its upstream credentials and
 * the passwords in its URLs. */
static int app_holds_secret(const struct fcmd_options *o)
{
    return o->apikey != NULL || o->auth_token != NULL || o->sa != NULL || o->apns_pkey != NULL || o->vapid_pkey != NULL ||
           o->webhook_secret != NULL || url_has_userinfo(o->webhook) || url_has_userinfo(o->gcm_url) || url_has_userinfo(o->fcm_url) || url_has_userinfo(o->apns_url);
}

static int nonempty(const char *secret)
{
    return secret != NULL && secret[0] != '\0';
}

int settings_holds_secret(const struct settings *s)
{
    const struct settings_env *env = s->env;

    /* redis_url_printable() hides all up to the last '@', wherever it is. */
    if (app_holds_secret(&s->o) || s->o.auth_token != NULL || s->o.tls_ctx != NULL || s->o.redis_password != NULL ||
        (s->o.redis != NULL && strchr(s->o.redis, '@') != NULL))
        return 1;
    /* What the environment gave is kept for every reload, taken or not. */
    if (env != NULL && (nonempty(env->apikey) || nonempty(env->auth_token) || nonempty(env->redis_password) ||
                        nonempty(env->webhook_secret)))
        return 1;
    for (size_t i = 0; i < s->o.napps; i++)
        if (app_holds_secret(&s->apps[i].o))
            return 1;
    return 0;
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

int settings_assign_apps(struct settings *next, const struct settings *running, struct shm_region *r, char *err,
                         size_t errlen)
{
    unsigned rows[APPS_MAX];

    if (next->o.napps == 0)
        return 0;
    if (shm_apps_assign(r, next->apps, next->o.napps, running ? running->apps : NULL, running ? running->o.napps : 0,
                        rows) != 0) {
        snprintf(err, errlen, "more than %d apps between the running configuration and the new one", APPS_MAX);
        return -1;
    }
    for (size_t i = 0; i < next->o.napps; i++)
        next->apps[i].shm = rows[i];
    return 0;
}
