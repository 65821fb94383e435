/*
 * child/upstream/webpush/webpush_request.c - the /webpush/send body.
 *
 * Parsing a subscription only takes its texts apart (endpoint, p256dh,
 * auth); the request's check then judges every target once, the costly
 * part (is the point on the curve?) included, for a request and for a
 * record read back from the spool or Redis alike.
 */
#include "webpush_request.h"
#include "../../../common/json.h"
#include "vapid.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>

#define ERR(...) (snprintf(err, errlen, __VA_ARGS__), -EINVAL)

static const char *const urgencies[] = {"very-low", "low", "normal", "high"};

static int check_field(enum request_opt o, const char *s, size_t n, char *err, size_t errlen);

static const struct request_field field_list[] = {
    {"ttl", ROPT_WEBPUSH_TTL, 1}, /* a number, or its digits as a string */
    {"urgency", ROPT_WEBPUSH_URGENCY, 0},
    {"topic", ROPT_WEBPUSH_TOPIC, 0},
};
static const struct request_fields fields = {field_list, sizeof(field_list) / sizeof(field_list[0]), check_field};

static int b64url_char(unsigned char c)
{
    return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-' || c == '_';
}

int webpush_endpoint_check(const char *s, size_t n, char *err, size_t errlen)
{
    char origin[VAPID_ORIGIN_MAX + 1];

    if (n == 0)
        return ERR("is empty");
    if (n > WEBPUSH_ENDPOINT_MAX)
        return ERR("is longer than %d bytes", WEBPUSH_ENDPOINT_MAX);
    for (size_t i = 0; i < n; i++)
        if ((unsigned char)s[i] <= 0x20 || (unsigned char)s[i] >= 0x7f)
            return ERR("contains a space, a control character or a byte that is not ASCII");
    if (n < 8 || strncasecmp(s, "https://", 8) != 0)
        return ERR("is not an https:// URL");
    if (vapid_origin(s, n, origin, sizeof(origin)) < 0)
        return ERR("has no valid host (or holds user information, or a bad port)");
    return 0;
}

const char *webpush_endpoint_host(const char *s, size_t n, size_t *len)
{
    size_t start = 8, end = start;

    if (end < n && s[end] == '[') {
        while (end < n && s[end] != ']')
            end++;
        end += end < n;
    } else {
        while (end < n && s[end] != ':' && s[end] != '/' && s[end] != '?' && s[end] != '#')
            end++;
    }
    *len = end - start;
    return s + start;
}

int webpush_target_split(const char *name, size_t n, struct webpush_target *t)
{
    const char *sp1 = memchr(name, ' ', n), *sp2;

    if (sp1 == NULL || (sp2 = memchr(sp1 + 1, ' ', n - (size_t)(sp1 + 1 - name))) == NULL ||
        memchr(sp2 + 1, ' ', n - (size_t)(sp2 + 1 - name)) != NULL)
        return -EINVAL;
    t->endpoint = name;
    t->endpoint_len = (size_t)(sp1 - name);
    t->p256dh = sp1 + 1;
    t->p256dh_len = (size_t)(sp2 - sp1 - 1);
    t->auth = sp2 + 1;
    t->auth_len = n - (size_t)(sp2 + 1 - name);
    return 0;
}

/* A key's base64url text, unescaped to out without its padding. */
static long key_text(const struct json_doc *d, int v, const char *what, size_t idx, char *out, char *err, size_t errlen)
{
    long n;

    if (v < 0 || d->tok[v].type != JSMN_STRING || (n = json_unescape(d, v, out)) < 0)
        return ERR("subscription %zu: keys.%s must be a string", idx + 1, what);
    while (n > 0 && out[n - 1] == '=')
        n--;
    if (n == 0)
        return ERR("subscription %zu: keys.%s is empty", idx + 1, what);
    for (long i = 0; i < n; i++)
        if (!b64url_char((unsigned char)out[i]))
            return ERR("subscription %zu: keys.%s is not base64url", idx + 1, what);
    return n;
}

/* One subscription, {"endpoint": ..., "keys": {"p256dh": ..., "auth": ...}}
 * (other members, such as expirationTime, are the browser's and ignored),
 * into "ENDPOINT P256DH AUTH" at out.  Every part is shorter than its JSON
 * text, so the name fits json_toklen(d, v) bytes. */
static long subscription(const struct json_doc *d, int v, size_t idx, char *out, char *err, size_t errlen)
{
    char why[160];
    int ep, keys, p, a;
    long n, m;

    if (d->tok[v].type != JSMN_OBJECT)
        return ERR("subscription %zu must be a JSON object (PushSubscription.toJSON())", idx + 1);
    ep = json_find(d, v, "endpoint");
    keys = json_find(d, v, "keys");
    if (ep < 0 || d->tok[ep].type != JSMN_STRING || (n = json_unescape(d, ep, out)) < 0)
        return ERR("subscription %zu has no \"endpoint\" string", idx + 1);
    if (webpush_endpoint_check(out, (size_t)n, why, sizeof(why)) != 0)
        return ERR("subscription %zu: endpoint %s", idx + 1, why);
    if (keys < 0 || d->tok[keys].type != JSMN_OBJECT)
        return ERR("subscription %zu has no \"keys\" object", idx + 1);
    p = json_find(d, keys, "p256dh");
    a = json_find(d, keys, "auth");
    out[n++] = ' ';
    if ((m = key_text(d, p, "p256dh", idx, out + n, err, errlen)) < 0)
        return m;
    n += m;
    out[n++] = ' ';
    if ((m = key_text(d, a, "auth", idx, out + n, err, errlen)) < 0)
        return m;
    n += m;
    out[n] = '\0';
    return n;
}

static int all_digits(const char *s, size_t n)
{
    if (n == 0 || n > 10)
        return 0;
    for (size_t i = 0; i < n; i++)
        if (s[i] < '0' || s[i] > '9')
            return 0;
    return 1;
}

static int check_field(enum request_opt o, const char *s, size_t n, char *err, size_t errlen)
{
    switch (o) {
    case ROPT_WEBPUSH_TTL: {
        unsigned long long v = 0;
        if (!all_digits(s, n))
            return ERR("\"ttl\" must be a whole number of seconds from 0 to %d", WEBPUSH_TTL_MAX);
        for (size_t i = 0; i < n; i++)
            v = v * 10 + (unsigned)(s[i] - '0');
        return v <= WEBPUSH_TTL_MAX ? 0
                                    : ERR("\"ttl\" must be a whole number of seconds from 0 to %d", WEBPUSH_TTL_MAX);
    }
    case ROPT_WEBPUSH_URGENCY:
        for (size_t i = 0; i < sizeof(urgencies) / sizeof(urgencies[0]); i++)
            if (strlen(urgencies[i]) == n && memcmp(urgencies[i], s, n) == 0)
                return 0;
        return ERR("\"urgency\" must be one of very-low, low, normal, high");
    case ROPT_WEBPUSH_TOPIC:
        if (n == 0 || n > WEBPUSH_TOPIC_MAX)
            return ERR("\"topic\" must be 1 to %d base64url characters", WEBPUSH_TOPIC_MAX);
        for (size_t i = 0; i < n; i++)
            if (!b64url_char((unsigned char)s[i]))
                return ERR("\"topic\" must be 1 to %d base64url characters", WEBPUSH_TOPIC_MAX);
        return 0;
    default: return ERR("not a Web Push field");
    }
}

static int form_field(const char *key, const char *val, size_t n, struct message *m, char *err, size_t errlen)
{
    return request_fields_form(&fields, key, val, n, m, err, errlen);
}

static int json_member(const struct json_doc *d, int key, struct message *m, char **out, char *err, size_t errlen)
{
    return request_fields_json(&fields, d, key, m, out, err, errlen);
}

/* One target, as intake made it or as a store gave it back. */
static int check_target(const char *name, size_t idx, char *err, size_t errlen)
{
    struct webpush_target t;
    struct ece_keys k;
    char why[200];

    if (webpush_target_split(name, strlen(name), &t) != 0)
        return ERR("subscription %zu is not an endpoint and two keys", idx + 1);
    if (webpush_endpoint_check(t.endpoint, t.endpoint_len, why, sizeof(why)) != 0)
        return ERR("subscription %zu: endpoint %s", idx + 1, why);
    if (ece_keys_parse(t.p256dh, t.p256dh_len, t.auth, t.auth_len, &k, why, sizeof(why)) != 0)
        return ERR("subscription %zu: %s", idx + 1, why);
    return 0;
}

static int check_request(const struct send_request *r, char *err, size_t errlen)
{
    const struct message *m = &r->msg;
    int rc;

    if (r->kind != TARGET_TOKEN)
        return ERR("Web Push sends to subscriptions only");
    for (int o = 0; o < ROPT_FCM_COUNT; o++)
        if (m->opt[o] != NULL)
            return ERR("\"%s\" is an FCM field; /webpush/send does not take it", request_opt_names[o]);
    if ((rc = request_fields_check(&fields, m, err, errlen)) != 0)
        return rc;
    for (int o = ROPT_WEBPUSH_TOPIC + 1; o < ROPT_COUNT; o++)
        if (m->opt[o] != NULL)
            return ERR("a Web Push request with an option fcmd does not know");
    if (m->payload == NULL)
        return ERR("payload is missing");
    if (m->payload_len > ECE_MAX_PLAINTEXT)
        return ERR("payload is %zu bytes, over the %d that fit one aes128gcm record of 4096 bytes", m->payload_len,
                   ECE_MAX_PLAINTEXT);
    if (memchr(m->payload, '\0', m->payload_len) != NULL)
        return ERR("payload contains a NUL character");
    if (!json_valid_utf8(m->payload, m->payload_len))
        return ERR("payload is not valid UTF-8");
    for (size_t i = 0; i < r->ntargets; i++)
        if ((rc = check_target(r->targets[i], i, err, errlen)) != 0)
            return rc;
    return 0;
}

const struct request_rules webpush_request_rules = {
    .form_field = form_field,
    .json_member = json_member,
    .check = check_request,
    .targets_json = "subscriptions",
    .targets_form = "subscription",
    .targets_what = "subscriptions",
    .target = subscription,
    .any_payload = 1,
};
