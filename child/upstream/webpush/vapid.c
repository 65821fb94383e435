/*
 * child/upstream/webpush/vapid.c - VAPID tokens, their cache, and the
 * origin they are for.
 *
 * The cache is a small array searched from the start: a worker talks to a
 * handful of push services, and VAPID_CACHE bounds it however many origins
 * the requests name.
 */
#include "vapid.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "../../../common/vapid_key.h"
#include "../jwt.h"

struct vapid_token {
    char *origin; /* NULL: a free slot */
    char *header; /* "vapid t=..., k=..." */
    time_t exp;
    unsigned long used; /* v->uses when it was last handed out */
};

struct vapid {
    EVP_PKEY *key;
    char *subject;
    char public_key[P256_POINT_B64_LEN + 1];
    struct vapid_token tokens[VAPID_CACHE];
    unsigned long uses, signs;
};

static int host_char(unsigned char c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '-' || c == '.' ||
           c == '_';
}

int vapid_origin(const char *url, size_t n, char *out, size_t cap)
{
    size_t scheme, i, host, hostlen, end;
    unsigned long port = 0;
    unsigned default_port;
    int len;

    if (n >= 8 && strncasecmp(url, "https://", 8) == 0)
        scheme = 8, default_port = 443;
    else if (n >= 7 && strncasecmp(url, "http://", 7) == 0)
        scheme = 7, default_port = 80;
    else
        return -EINVAL;
    /* The authority runs to the path, the query or the fragment. */
    for (end = scheme; end < n && url[end] != '/' && url[end] != '?' && url[end] != '#'; end++)
        ;
    host = scheme;
    if (host < end && url[host] == '[') {
        for (i = host + 1; i < end && url[i] != ']'; i++)
            if (!((url[i] >= '0' && url[i] <= '9') || (url[i] >= 'a' && url[i] <= 'f') ||
                  (url[i] >= 'A' && url[i] <= 'F') || url[i] == ':' || url[i] == '.'))
                return -EINVAL;
        if (i == end || i == host + 1)
            return -EINVAL;
        hostlen = i + 1 - host;
    } else {
        for (i = host; i < end && host_char((unsigned char)url[i]); i++)
            ;
        hostlen = i - host;
    }
    if (hostlen == 0)
        return -EINVAL;
    i = host + hostlen;
    if (i < end) {
        /* Only a port may follow the host: ':' and 1 to 5 digits. */
        if (url[i] != ':' || i + 1 == end || end - i - 1 > 5)
            return -EINVAL;
        for (i++; i < end; i++) {
            if (url[i] < '0' || url[i] > '9')
                return -EINVAL;
            port = port * 10 + (unsigned long)(url[i] - '0');
        }
        if (port == 0 || port > 65535)
            return -EINVAL;
    }
    if (port == default_port)
        port = 0;
    len = snprintf(out, cap, "%s%.*s", default_port == 443 ? "https://" : "http://", (int)hostlen, url + host);
    if (len > 0 && (size_t)len < cap && port != 0)
        len += snprintf(out + len, cap - (size_t)len, ":%lu", port);
    if (len < 0 || (size_t)len >= cap)
        return -EMSGSIZE;
    for (char *p = out; *p; p++)
        if (*p >= 'A' && *p <= 'Z')
            *p = (char)(*p - 'A' + 'a');
    return len;
}

int vapid_token_sign(EVP_PKEY *key, const char *aud, const char *subject, time_t exp, struct buf *out)
{
    static const struct jwt_header h = {.alg = JWT_ES256, .typ = "JWT", .kid = NULL};
    struct buf claims = BUF_INIT;
    int rc = -1;

    buf_adds(&claims, "{\"aud\":");
    buf_add_json_string(&claims, aud, strlen(aud));
    buf_addf(&claims, ",\"exp\":%lld,\"sub\":", (long long)exp);
    buf_add_json_string(&claims, subject, strlen(subject));
    buf_adds(&claims, "}");
    if (!claims.failed)
        rc = jwt_sign(key, &h, claims.data, claims.len, out);
    buf_free(&claims);
    return rc;
}

struct vapid *vapid_create(EVP_PKEY *key, const char *subject)
{
    struct vapid *v = calloc(1, sizeof(*v));

    if (v == NULL)
        return NULL;
    if (p256_point_b64url(key, v->public_key) != 0 || (v->subject = strdup(subject)) == NULL ||
        EVP_PKEY_up_ref(key) != 1) {
        free(v->subject);
        free(v);
        return NULL;
    }
    v->key = key;
    return v;
}

static void drop(struct vapid_token *t)
{
    free(t->origin);
    free(t->header);
    memset(t, 0, sizeof(*t));
}

void vapid_free(struct vapid *v)
{
    if (v == NULL)
        return;
    for (size_t i = 0; i < VAPID_CACHE; i++)
        drop(&v->tokens[i]);
    EVP_PKEY_free(v->key);
    free(v->subject);
    free(v);
}

/* Makes t the token for origin, expiring VAPID_TTL_S after now. */
static int make(struct vapid *v, struct vapid_token *t, const char *origin, time_t now)
{
    struct buf b = BUF_INIT;
    char *name = t->origin != NULL && strcmp(t->origin, origin) == 0 ? t->origin : strdup(origin);

    buf_adds(&b, "vapid t=");
    if (name == NULL || vapid_token_sign(v->key, origin, v->subject, now + VAPID_TTL_S, &b) != 0) {
        if (name != t->origin)
            free(name);
        buf_free(&b);
        return -1;
    }
    buf_addf(&b, ", k=%s", v->public_key);
    buf_add(&b, "", 1);
    if (b.failed) {
        if (name != t->origin)
            free(name);
        buf_free(&b);
        return -1;
    }
    if (name != t->origin)
        free(t->origin);
    free(t->header);
    t->origin = name;
    t->header = b.data;
    t->exp = now + VAPID_TTL_S;
    v->signs++;
    return 0;
}

const char *vapid_authorization(struct vapid *v, const char *origin, time_t now)
{
    struct vapid_token *t = NULL, *lru = &v->tokens[0];

    for (size_t i = 0; i < VAPID_CACHE; i++) {
        struct vapid_token *c = &v->tokens[i];
        if (c->origin != NULL && strcmp(c->origin, origin) == 0) {
            t = c;
            break;
        }
        /* A free slot first, else the least recently used. */
        if (lru->origin != NULL && (c->origin == NULL || c->used < lru->used))
            lru = c;
    }
    /* Renewed before its last hour, and also when the clock went back
     * (a token made "in the future" may outlive the 24-hour limit). */
    if (t == NULL || t->exp - now < VAPID_RENEW_S || t->exp - now > VAPID_TTL_S) {
        if (t == NULL) {
            t = lru;
            drop(t);
        }
        if (make(v, t, origin, now) != 0)
            return NULL;
    }
    t->used = ++v->uses;
    return t->header;
}

size_t vapid_cached(const struct vapid *v)
{
    size_t n = 0;

    for (size_t i = 0; i < VAPID_CACHE; i++)
        n += v->tokens[i].origin != NULL;
    return n;
}

unsigned long vapid_signed(const struct vapid *v)
{
    return v->signs;
}
