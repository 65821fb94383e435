/*
 * common/redis_url.h - the --redis URL, split into what a connection needs.
 *
 * redis://[[user]:password@]host[:port][/db], the same as rediss:// for TLS,
 * or unix:///path[?db=N].  The
 * parser only fills the caller's struct and says in words what is wrong;
 * its messages never quote the password.  Such a URL is printed only
 * through log_url_any_at() (common/log.h).
 */
#ifndef FCMD_COMMON_REDIS_URL_H
#define FCMD_COMMON_REDIS_URL_H

#include <stddef.h>

#define REDIS_URL_DEFAULT_PORT 6379
#define REDIS_URL_MAX_DB 1000000

struct redis_url {
    int is_unix;
    int tls;            /* rediss://: TLS, the server's certificate checked */
    char host[256];     /* TCP: a name or an address, without IPv6 brackets */
    char path[108];     /* UNIX: the socket's path (sun_path's size) */
    int port;           /* TCP: 6379 unless given */
    int db;             /* SELECT this database when not 0 */
    char user[128];     /* Redis 6 ACL user, empty for the default user */
    char password[512]; /* empty when the URL has none; percent-decoded */
};

/* Parses url into out.  Returns 0, or -1 with a one-line reason in err. */
int redis_url_parse(const char *url, struct redis_url *out, char *err, size_t errlen);

#endif
