/*
 * common/redis_url.c - parsing of the --redis URL.
 *
 * The one idea: everything is checked here, once, so the master can refuse a
 * bad URL at start and a worker can trust the struct; user and password are
 * percent-decoded (a password may hold '@' or '/'), nothing else is.
 */
#include "redis_url.h"
#include "percent.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* A decimal number from min to max filling s[0..n) exactly, or -1. */
static long number(const char *s, size_t n, long min, long max)
{
    long v = 0;

    if (n == 0 || n > 9)
        return -1;
    for (size_t i = 0; i < n; i++) {
        if (s[i] < '0' || s[i] > '9')
            return -1;
        v = v * 10 + (s[i] - '0');
    }
    return v < min || v > max ? -1 : v;
}

#define FAIL(...) return snprintf(err, errlen, __VA_ARGS__), -1

/* "[user]:password" before the '@'. */
static int parse_userinfo(const char *s, size_t n, struct redis_url *u, char *err, size_t errlen)
{
    const char *colon = memchr(s, ':', n);

    if (colon == NULL)
        FAIL("give the password as :PASSWORD@ (a user alone is not enough)");
    if (percent_decode(s, (size_t)(colon - s), u->user, sizeof(u->user), PERCENT_NO_NUL) < 0)
        FAIL("the user is too long or has a bad %%-escape");
    if (percent_decode(colon + 1, n - (size_t)(colon + 1 - s), u->password, sizeof(u->password), PERCENT_NO_NUL) < 0)
        FAIL("the password is too long or has a bad %%-escape");
    return 0;
}

/* "host[:port]" or "[v6][:port]". */
static int parse_hostport(const char *s, size_t n, struct redis_url *u, char *err, size_t errlen)
{
    const char *host = s, *rest;
    size_t hlen;

    if (n > 0 && s[0] == '[') {
        const char *close = memchr(s, ']', n);
        if (close == NULL)
            FAIL("an IPv6 address needs its closing ']'");
        host = s + 1;
        hlen = (size_t)(close - host);
        rest = close + 1;
    } else {
        const char *colon = memchr(s, ':', n);
        hlen = colon ? (size_t)(colon - s) : n;
        rest = s + hlen;
    }
    if (hlen == 0)
        FAIL("no host");
    if (hlen >= sizeof(u->host))
        FAIL("the host is too long");
    if (memchr(host, '%', hlen) != NULL || memchr(host, '@', hlen) != NULL)
        FAIL("the host has a character a host name cannot have");
    memcpy(u->host, host, hlen);
    u->host[hlen] = '\0';
    if (rest == s + n)
        return 0;
    if (*rest != ':' || (u->port = (int)number(rest + 1, (size_t)(s + n - rest - 1), 1, 65535)) < 0)
        FAIL("the port is not a number from 1 to 65535");
    return 0;
}

static int parse_tcp(const char *s, struct redis_url *u, char *err, size_t errlen)
{
    size_t auth_end = strcspn(s, "/?#");
    const char *at = memrchr(s, '@', auth_end);
    const char *hp = at ? at + 1 : s;
    size_t hplen = (size_t)(s + auth_end - hp);
    const char *tail = s + auth_end;

    if (at != NULL && parse_userinfo(s, (size_t)(at - s), u, err, errlen) != 0)
        return -1;
    if (parse_hostport(hp, hplen, u, err, errlen) != 0)
        return -1;
    if (*tail == '\0' || strcmp(tail, "/") == 0)
        return 0;
    if (*tail != '/' || (u->db = (int)number(tail + 1, strlen(tail + 1), 0, REDIS_URL_MAX_DB)) < 0)
        FAIL("the database (after the host) is not a number from 0 to %d", REDIS_URL_MAX_DB);
    return 0;
}

static int parse_unix(const char *s, struct redis_url *u, char *err, size_t errlen)
{
    size_t plen = strcspn(s, "?#");

    if (s[0] != '/')
        FAIL("a unix URL names an absolute path: unix:///path/redis.sock");
    if (plen >= sizeof(u->path))
        FAIL("the socket path is longer than %zu bytes", sizeof(u->path) - 1);
    memcpy(u->path, s, plen);
    u->path[plen] = '\0';
    if (s[plen] == '\0')
        return 0;
    if (strncmp(s + plen, "?db=", 4) != 0 ||
        (u->db = (int)number(s + plen + 4, strlen(s + plen + 4), 0, REDIS_URL_MAX_DB)) < 0)
        FAIL("after the path only ?db=N may follow (N from 0 to %d)", REDIS_URL_MAX_DB);
    return 0;
}

int redis_url_parse(const char *url, struct redis_url *out, char *err, size_t errlen)
{
    memset(out, 0, sizeof(*out));
    out->port = REDIS_URL_DEFAULT_PORT;
    if (strncmp(url, "redis://", 8) == 0)
        return parse_tcp(url + 8, out, err, errlen);
    if (strncmp(url, "rediss://", 9) == 0) {
        out->tls = 1;
        return parse_tcp(url + 9, out, err, errlen);
    }
    if (strncmp(url, "unix://", 7) == 0) {
        out->is_unix = 1;
        return parse_unix(url + 7, out, err, errlen);
    }
    FAIL("not a redis://, rediss:// or unix:// URL");
}
