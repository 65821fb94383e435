/*
 * child/core/request.c - /gcm/send body parsing.
 *
 * Both formats decode into one owned storage block sized from the body, so
 * a request costs two allocations whatever its token count, and every
 * validation rule lives in one place (check_target, check_payload) that
 * both formats share.
 */
#include "request.h"
#include "../../common/json.h"
#include "../../common/percent.h"
#include "../../common/options.h"

#include <ctype.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

const char *const request_opt_names[ROPT_FCM_COUNT] = {
    "notification", "android", "apns", "webpush", "fcm_options", "collapse_key", "priority", "time_to_live",
};

#define ERR(...) (snprintf(err, errlen, __VA_ARGS__), -EINVAL)

/* The "app" field, in either format: a name, given once. */
static int set_app(struct send_request *r, const char *name, size_t n, char *err, size_t errlen)
{
    if (r->app != NULL)
        return ERR("app is given twice");
    if (!options_app_name_ok(name, n))
        return ERR("app must be 1 to %d letters, digits, '_', '.' or '-'", APP_NAME_MAX);
    r->app = name;
    r->app_len = n;
    return 0;
}

/* One parse: the request being filled, what it may hold, where decoded
 * text goes, and the one capacity of its targets array. */
struct parse {
    struct send_request *r;
    const struct request_rules *rules; /* the provider's, or NULL for FCM's body */
    const struct request_limits *lim;
    size_t cap;
    char *out;
};

/* Adds a target, counting it against the limit whatever part of the body
 * it came from. */
static int add_target(struct parse *ps, char *s, char *err, size_t errlen)
{
    struct send_request *r = ps->r;

    if (r->ntargets >= ps->lim->max_tokens)
        return ERR("too many tokens (at most %zu)", ps->lim->max_tokens);
    if (r->ntargets == ps->cap) {
        size_t ncap = ps->cap ? ps->cap * 2 : 16;
        char **t = realloc(r->targets, ncap * sizeof(*t));
        if (t == NULL)
            return snprintf(err, errlen, "out of memory"), -ENOMEM;
        r->targets = t;
        ps->cap = ncap;
    }
    r->targets[r->ntargets++] = s;
    return 0;
}

static int check_target(const char *what, size_t idx, const char *s, size_t n, char *err, size_t errlen)
{
    if (n == 0)
        return ERR("%s %zu is empty", what, idx + 1);
    if (n > REQUEST_MAX_TOKEN_LEN)
        return ERR("%s %zu is longer than %d bytes", what, idx + 1, REQUEST_MAX_TOKEN_LEN);
    for (size_t i = 0; i < n; i++)
        if ((unsigned char)s[i] < 0x20 || s[i] == 0x7f)
            return ERR("%s %zu contains a control character", what, idx + 1);
    if (!json_valid_utf8(s, n))
        return ERR("%s %zu is not valid UTF-8", what, idx + 1);
    return 0;
}

/* The reason json_parse gave (rc, its result), for the caller. */
static int json_error(const struct json_doc *d, int rc, const char *what, char *err, size_t errlen)
{
    if (rc == -ENOMEM)
        return snprintf(err, errlen, "out of memory"), -ENOMEM;
    if (d->error == NULL)
        return ERR("%s is not valid JSON", what);
    return ERR("%s is not valid JSON: %s at byte %zu", what, d->error, d->error_at);
}

static int check_payload(const char *p, size_t n, const struct request_limits *lim, char *err, size_t errlen)
{
    struct json_doc d;
    int rc, is_object;

    if (n == 0)
        return ERR("payload is empty");
    if (n > lim->max_payload)
        return ERR("payload is larger than %zu bytes", lim->max_payload);
    if ((rc = json_parse(&d, p, n)) != 0)
        return json_error(&d, rc, "payload", err, errlen);
    is_object = d.tok[0].type == JSMN_OBJECT;
    json_free(&d);
    return is_object ? 0 : ERR("payload must be a JSON object");
}

/* What a request's targets are called: tokens, or the provider's word. */
static const char *targets_what(const struct request_rules *rules)
{
    return rules != NULL && rules->targets_what != NULL ? rules->targets_what : "tokens";
}

/* One of a provider's own targets, the JSON value v of d: its name goes to
 * out, which moves past it. */
static int provider_target(const struct json_doc *d, int v, struct parse *ps, char **out, char *err, size_t errlen)
{
    long n;
    int rc;

    if (ps->r->ntargets >= ps->lim->max_tokens)
        return ERR("too many %s (at most %zu)", targets_what(ps->rules), ps->lim->max_tokens);
    if ((n = ps->rules->target(d, v, ps->r->ntargets, *out, err, errlen)) < 0)
        return (int)n;
    if ((rc = add_target(ps, *out, err, errlen)) != 0)
        return rc;
    *out += n + 1;
    return 0;
}

/* A form field that holds one of a provider's targets as JSON text.  Its
 * name is shorter than that text, so it takes the text's place. */
static int form_target(struct parse *ps, const char *key, char *val, size_t n, char *err, size_t errlen)
{
    struct json_doc d;
    char *name, *out;
    int rc;

    if (strcmp(key, ps->rules->targets_form) != 0)
        return ERR("this endpoint takes \"%s\" fields, not \"%s\"", ps->rules->targets_form, key);
    if ((rc = json_parse(&d, val, n)) != 0)
        return json_error(&d, rc, ps->rules->targets_form, err, errlen);
    if ((name = out = malloc(n + 1)) == NULL) {
        json_free(&d);
        return snprintf(err, errlen, "out of memory"), -ENOMEM;
    }
    rc = provider_target(&d, 0, ps, &out, err, errlen);
    json_free(&d);
    if (rc == 0) {
        memcpy(val, name, (size_t)(out - name));
        ps->r->targets[ps->r->ntargets - 1] = val;
    }
    free(name);
    return rc;
}

static int json_provider_targets(const struct json_doc *d, int arr, struct parse *ps, char *err, size_t errlen)
{
    const char *field = ps->rules->targets_json;
    int rc;

    if (d->tok[arr].type != JSMN_ARRAY)
        return ERR("\"%s\" must be an array", field);
    if ((size_t)d->tok[arr].size > ps->lim->max_tokens)
        return ERR("too many %s (at most %zu)", targets_what(ps->rules), ps->lim->max_tokens);
    for (int i = arr + 1, k = 0; k < d->tok[arr].size; k++, i = json_skip(d, i))
        if ((rc = provider_target(d, i, ps, &ps->out, err, errlen)) != 0)
            return rc;
    return 0;
}

/* ---- application/x-www-form-urlencoded ---- */

static int parse_form(const char *body, size_t len, struct parse *ps, char *err, size_t errlen)
{
    struct send_request *r = ps->r;
    size_t pos = 0;
    char *out;
    int rc;

    /* Decoded text is never longer than the body; each field adds one NUL. */
    if ((r->storage = out = malloc(2 * len + 2)) == NULL)
        return snprintf(err, errlen, "out of memory"), -ENOMEM;
    while (pos < len) {
        const char *field = body + pos, *amp = memchr(field, '&', len - pos), *eq;
        size_t flen = amp ? (size_t)(amp - field) : len - pos, kn;
        long klen, vlen;
        char *key, *val;

        pos += flen + 1;
        if (flen == 0)
            continue;
        eq = memchr(field, '=', flen);
        kn = eq ? (size_t)(eq - field) : flen;
        key = out;
        /* Decoded text is never longer than its source: n + 1 bytes fit it. */
        if ((klen = percent_decode(field, kn, key, kn + 1, PERCENT_PLUS)) < 0)
            return ERR("malformed percent-encoding in form field");
        val = key + klen + 1;
        vlen = 0;
        if (eq && (vlen = percent_decode(eq + 1, flen - kn - 1, val, flen - kn, PERCENT_PLUS)) < 0)
            return ERR("malformed percent-encoding in form field \"%s\"", key);
        if (!eq)
            *val = '\0';
        out = val + vlen + 1;
        if (ps->rules != NULL && ps->rules->targets_form != NULL &&
            (strcmp(key, ps->rules->targets_form) == 0 || strcmp(key, "tokens") == 0)) {
            if ((rc = form_target(ps, key, val, (size_t)vlen, err, errlen)) != 0)
                return rc;
        } else if (strcmp(key, "tokens") == 0) {
            if ((rc = check_target("token", r->ntargets, val, (size_t)vlen, err, errlen)) != 0 ||
                (rc = add_target(ps, val, err, errlen)) != 0)
                return rc;
        } else if (strcmp(key, "payload") == 0) {
            /* Two payloads: which one the sender meant is anybody's guess. */
            if (r->msg.payload != NULL)
                return ERR("payload is given twice");
            r->msg.payload = val;
            r->msg.payload_len = (size_t)vlen;
        } else if (strcmp(key, "app") == 0) {
            if ((rc = set_app(r, val, (size_t)vlen, err, errlen)) != 0)
                return rc;
        } else if (ps->rules != NULL &&
                   (rc = ps->rules->form_field(key, val, (size_t)vlen, &r->msg, err, errlen)) != 0) {
            return rc;
        }
    }
    if (r->ntargets == 0)
        return ERR("no %s", targets_what(ps->rules));
    if (r->msg.payload == NULL)
        return ERR("payload is missing");
    if (!(ps->rules != NULL && ps->rules->any_payload) &&
        (rc = check_payload(r->msg.payload, r->msg.payload_len, ps->lim, err, errlen)) != 0)
        return rc;
    return ps->rules != NULL ? ps->rules->check(r, err, errlen) : 0;
}

/* ---- application/json ---- */

static int json_tokens(const struct json_doc *d, int arr, struct parse *ps, char *err, size_t errlen)
{
    int rc;

    if (d->tok[arr].type != JSMN_ARRAY)
        return ERR("\"tokens\" must be an array of strings");
    if ((size_t)d->tok[arr].size > ps->lim->max_tokens)
        return ERR("too many tokens (at most %zu)", ps->lim->max_tokens);
    for (int i = arr + 1, k = 0; k < d->tok[arr].size; k++, i++) {
        long n;
        if (d->tok[i].type != JSMN_STRING)
            return ERR("\"tokens\" must be an array of strings");
        if ((n = json_unescape(d, i, ps->out)) < 0)
            return ERR("token %d is not a valid JSON string", k + 1);
        if ((rc = check_target("token", (size_t)k, ps->out, (size_t)n, err, errlen)) != 0 ||
            (rc = add_target(ps, ps->out, err, errlen)) != 0)
            return rc;
        ps->out += n + 1;
    }
    return 0;
}

static int topic_ok(const char *s)
{
    for (; *s; s++)
        if (!isalnum((unsigned char)*s) && !strchr("-_.~%", *s))
            return 0;
    return 1;
}

static int json_single_target(const struct json_doc *d, int v, enum target_kind kind, struct parse *ps, char *err,
                              size_t errlen)
{
    const char *what = kind == TARGET_TOPIC ? "topic" : "condition";
    char *s = ps->out;
    long n;
    int rc;

    if (d->tok[v].type != JSMN_STRING || (n = json_unescape(d, v, s)) < 0)
        return ERR("\"%s\" must be a string", what);
    if (kind == TARGET_TOPIC && strncmp(s, "/topics/", 8) == 0) {
        memmove(s, s + 8, (size_t)n - 7);
        n -= 8;
    }
    if ((rc = check_target(what, 0, s, (size_t)n, err, errlen)) != 0)
        return rc;
    if (kind == TARGET_TOPIC && !topic_ok(s))
        return ERR("topic may contain only letters, digits and -_.~%%");
    if ((rc = add_target(ps, s, err, errlen)) != 0)
        return rc;
    ps->r->kind = kind;
    ps->out += n + 1;
    return 0;
}

/* Whether the token is a whole number from 0 to max. */
static int whole_number(const struct json_doc *d, int v, unsigned long max)
{
    const char *s = json_tokptr(d, v);
    size_t n = json_toklen(d, v);
    unsigned long x = 0;

    if (d->tok[v].type != JSMN_PRIMITIVE || n == 0 || n > 10)
        return 0;
    for (size_t i = 0; i < n; i++) {
        if (s[i] < '0' || s[i] > '9')
            return 0;
        x = x * 10 + (unsigned long)(s[i] - '0');
    }
    return x <= max;
}

static int check_option(const struct json_doc *d, int v, enum request_opt o, char *err, size_t errlen)
{
    const char *name = request_opt_names[o];

    switch (o) {
    case ROPT_COLLAPSE_KEY: return d->tok[v].type == JSMN_STRING ? 0 : ERR("\"%s\" must be a string", name);
    case ROPT_PRIORITY:
        if (json_is(d, v, "high") || json_is(d, v, "normal"))
            return 0;
        return ERR("\"priority\" must be \"high\" or \"normal\"");
    case ROPT_TIME_TO_LIVE:
        if (!whole_number(d, v, 2419200))
            return ERR("\"time_to_live\" must be a whole number of seconds from 0 to 2419200");
        return 0;
    default: return d->tok[v].type == JSMN_OBJECT ? 0 : ERR("\"%s\" must be a JSON object", name);
    }
}

static int json_member(const struct json_doc *d, int key, struct parse *ps, char *err, size_t errlen)
{
    struct send_request *r = ps->r;
    int v = key + 1;

    if (ps->rules != NULL && ps->rules->targets_json != NULL) {
        if (json_is(d, key, ps->rules->targets_json))
            return json_provider_targets(d, v, ps, err, errlen);
        if (json_is(d, key, "tokens"))
            return ERR("this endpoint takes \"%s\", not \"tokens\"", ps->rules->targets_json);
    }
    if (json_is(d, key, "tokens"))
        return json_tokens(d, v, ps, err, errlen);
    if (json_is(d, key, "app")) {
        long n;
        if (d->tok[v].type != JSMN_STRING || (n = json_unescape(d, v, ps->out)) < 0)
            return ERR("\"app\" must be a string");
        int rc = set_app(r, ps->out, (size_t)n, err, errlen);
        ps->out += n + 1;
        return rc;
    }
    if (ps->rules != NULL && ps->rules->any_payload && json_is(d, key, "payload") && d->tok[v].type == JSMN_STRING) {
        long n = json_unescape(d, v, ps->out);
        if (n < 0)
            return ERR("payload is not a valid JSON string");
        r->msg.payload = ps->out;
        r->msg.payload_len = (size_t)n;
        ps->out += n + 1;
        return 0;
    }
    if (ps->rules != NULL && !json_is(d, key, "payload")) {
        int rc = ps->rules->json_member(d, key, &r->msg, &ps->out, err, errlen);
        if (rc != -ENOENT)
            return rc;
        return ERR("unknown field \"%.*s\"", (int)(json_toklen(d, key) > 64 ? 64 : json_toklen(d, key)),
                   json_tokptr(d, key));
    }
    if (json_is(d, key, "topic"))
        return json_single_target(d, v, TARGET_TOPIC, ps, err, errlen);
    if (json_is(d, key, "condition"))
        return json_single_target(d, v, TARGET_CONDITION, ps, err, errlen);
    if (json_is(d, key, "payload")) {
        if (d->tok[v].type != JSMN_OBJECT)
            return ERR("payload must be a JSON object%s",
                       ps->rules != NULL && ps->rules->any_payload ? " or string" : "");
        if (json_toklen(d, v) > ps->lim->max_payload)
            return ERR("payload is larger than %zu bytes", ps->lim->max_payload);
        r->msg.payload = json_tokptr(d, v);
        r->msg.payload_len = json_toklen(d, v);
        return 0;
    }
    for (int o = 0; o < ROPT_FCM_COUNT; o++) {
        if (json_is(d, key, request_opt_names[o])) {
            r->msg.opt[o] = json_raw(d, v, &r->msg.opt_len[o]);
            return check_option(d, v, (enum request_opt)o, err, errlen);
        }
    }
    return ERR("unknown field \"%.*s\"", (int)(json_toklen(d, key) > 64 ? 64 : json_toklen(d, key)),
               json_tokptr(d, key));
}

static char *copy_text(const char **dst, const char *src, size_t len, char *out)
{
    memcpy(out, src, len);
    out[len] = '\0';
    *dst = out;
    return out + len + 1;
}

size_t message_size(const struct message *m)
{
    size_t size = m->payload ? m->payload_len + 1 : 0;

    for (int o = 0; o < ROPT_COUNT; o++)
        size += m->opt[o] ? m->opt_len[o] + 1 : 0;
    return size;
}

char *message_copy(struct message *dst, const struct message *src, char *out)
{
    dst->payload_len = src->payload_len;
    if (src->payload)
        out = copy_text(&dst->payload, src->payload, src->payload_len, out);
    else
        dst->payload = NULL;
    for (int o = 0; o < ROPT_COUNT; o++) {
        dst->opt_len[o] = src->opt_len[o];
        if (src->opt[o])
            out = copy_text(&dst->opt[o], src->opt[o], src->opt_len[o], out);
        else
            dst->opt[o] = NULL;
    }
    return out;
}

/* Bytes of the payload and the options, as JSON texts. */
static size_t texts_len(const struct message *m)
{
    size_t n = m->payload_len;

    for (int o = 0; o < ROPT_COUNT; o++)
        n += m->opt[o] ? m->opt_len[o] : 0;
    return n;
}

static int parse_json(const char *body, size_t len, struct parse *ps, char *err, size_t errlen)
{
    struct send_request *r = ps->r;
    struct json_doc d;
    int rc = 0, key;
    unsigned kinds = 0;

    /* json_parse refuses repeated keys, so each member below is seen once. */
    if ((rc = json_parse(&d, body, len)) != 0)
        return json_error(&d, rc, "body", err, errlen);
    if (d.tok[0].type != JSMN_OBJECT) {
        json_free(&d);
        return ERR("body must be a JSON object");
    }
    /* Unescaped strings plus the raw texts never exceed twice the body. */
    if ((r->storage = ps->out = malloc(2 * len + 2 * ROPT_COUNT + 4)) == NULL) {
        json_free(&d);
        return snprintf(err, errlen, "out of memory"), -ENOMEM;
    }
    key = 1;
    for (int m = 0; m < d.tok[0].size && rc == 0; m++) {
        kinds |= json_is(&d, key, "tokens") || (ps->rules != NULL && ps->rules->targets_json != NULL &&
                                                json_is(&d, key, ps->rules->targets_json))
                     ? 1u
                 : ps->rules != NULL             ? 0u /* a provider's topic is its own */
                 : json_is(&d, key, "topic")     ? 2u
                 : json_is(&d, key, "condition") ? 4u
                                                 : 0u;
        rc = json_member(&d, key, ps, err, errlen);
        key = json_skip(&d, key + 1);
    }
    json_free(&d);
    if (rc != 0)
        return rc;
    if (kinds != 1 && kinds != 2 && kinds != 4)
        return kinds == 0 ? ERR("no %s", targets_what(ps->rules))
                          : ERR("give one of \"tokens\", \"topic\" or \"condition\"");
    if (r->ntargets == 0)
        return ERR("no %s", targets_what(ps->rules));
    if (r->msg.payload == NULL && r->msg.opt[ROPT_NOTIFICATION] == NULL)
        return ERR("payload is missing");
    /* Every target carries the options too: they count with the payload. */
    if (texts_len(&r->msg) > ps->lim->max_payload)
        return ERR("payload and message options are larger than %zu bytes together", ps->lim->max_payload);
    /* The raw texts still point into the body: give them their own copies. */
    message_copy(&r->msg, &r->msg, ps->out);
    return ps->rules != NULL ? ps->rules->check(r, err, errlen) : 0;
}

static int ctype_is(const char *ct, size_t n, const char *want)
{
    size_t w = strlen(want);

    while (n > 0 && (*ct == ' ' || *ct == '\t'))
        ct++, n--;
    if (n < w || strncasecmp(ct, want, w) != 0)
        return 0;
    ct += w;
    n -= w;
    while (n > 0 && (*ct == ' ' || *ct == '\t'))
        ct++, n--;
    return n == 0 || *ct == ';';
}

static const struct request_limits defaults = {REQUEST_MAX_BODY, REQUEST_MAX_TOKENS, REQUEST_MAX_PAYLOAD, {NULL}};

int request_parse(enum upstream_kind upstream, const char *ctype, size_t ctype_len, const char *body, size_t len,
                      const struct request_limits *lim, struct send_request *r, char *err, size_t errlen)
{
    struct parse ps;
    int rc;

    if (lim == NULL)
        lim = &defaults;
    memset(r, 0, sizeof(*r));
    r->upstream = upstream;
    ps = (struct parse){r, upstream == UPSTREAM_FCM ? NULL : lim->rules[upstream], lim, 0, NULL};
    if (upstream != UPSTREAM_FCM && ps.rules == NULL)
        return ERR("this instance has no rules for upstream %d", (int)upstream);
    if (len > lim->max_body) {
        snprintf(err, errlen, "body is larger than %zu bytes", lim->max_body);
        return -EMSGSIZE;
    }
    if (ctype != NULL && ctype_is(ctype, ctype_len, "application/x-www-form-urlencoded")) {
        r->format = REQUEST_FORM;
        rc = parse_form(body, len, &ps, err, errlen);
    } else if (ctype != NULL && ctype_is(ctype, ctype_len, "application/json")) {
        r->format = REQUEST_JSON;
        rc = len == 0 ? ERR("body is empty") : parse_json(body, len, &ps, err, errlen);
    } else {
        rc = ERR("unsupported content type: use application/x-www-form-urlencoded or application/json");
    }
    if (rc != 0)
        request_free(r);
    return rc;
}

void request_free(struct send_request *r)
{
    free(r->targets);
    free(r->storage);
    r->targets = NULL;
    r->storage = NULL;
    r->ntargets = 0;
}

int request_check(const struct send_request *r, const struct request_limits *lim, char *err, size_t errlen)
{
    const char *what = r->kind == TARGET_TOKEN ? "token" : r->kind == TARGET_TOPIC ? "topic" : "condition";
    int rc;

    if (lim == NULL)
        lim = &defaults;
    if (r->ntargets == 0 || (r->kind != TARGET_TOKEN && r->ntargets != 1))
        return ERR("%zu targets of kind %s", r->ntargets, what);
    for (size_t i = 0; i < r->ntargets; i++) {
        if ((rc = check_target(what, i, r->targets[i], strlen(r->targets[i]), err, errlen)) != 0)
            return rc;
        if (r->kind == TARGET_TOPIC && !topic_ok(r->targets[i]))
            return ERR("topic may contain only letters, digits and -_.~%%");
    }
    if (r->msg.payload == NULL && r->msg.opt[ROPT_NOTIFICATION] == NULL)
        return ERR("payload is missing");
    if (r->upstream != UPSTREAM_FCM) {
        if ((unsigned)r->upstream >= UPSTREAM_KINDS || lim->rules[r->upstream] == NULL)
            return ERR("unknown upstream %d", (int)r->upstream);
        if (r->msg.payload != NULL && !lim->rules[r->upstream]->any_payload &&
            (rc = check_payload(r->msg.payload, r->msg.payload_len, lim, err, errlen)) != 0)
            return rc;
        return lim->rules[r->upstream]->check(r, err, errlen);
    }
    if (r->msg.payload != NULL && (rc = check_payload(r->msg.payload, r->msg.payload_len, lim, err, errlen)) != 0)
        return rc;
    for (int o = 0; o < ROPT_FCM_COUNT; o++) {
        struct json_doc d;
        if (r->msg.opt[o] == NULL)
            continue;
        if ((rc = json_parse(&d, r->msg.opt[o], r->msg.opt_len[o])) != 0)
            return json_error(&d, rc, request_opt_names[o], err, errlen);
        rc = check_option(&d, 0, (enum request_opt)o, err, errlen);
        json_free(&d);
        if (rc != 0)
            return rc;
    }
    return 0;
}

size_t request_target_shown(enum upstream_kind k, const char *name, size_t n)
{
    const char *sp = k == UPSTREAM_WEBPUSH ? memchr(name, ' ', n) : NULL;

    return sp != NULL ? (size_t)(sp - name) : n;
}

/* ---- a provider's own fields ---- */

static int field_set(const struct request_fields *f, const struct request_field *fld, struct message *m,
                     const char *s, size_t n, char *err, size_t errlen)
{
    if (m->opt[fld->opt] != NULL) {
        snprintf(err, errlen, "\"%s\" is given twice", fld->name);
        return -EINVAL;
    }
    m->opt[fld->opt] = s;
    m->opt_len[fld->opt] = n;
    return f->check(fld->opt, s, n, err, errlen);
}

int request_fields_form(const struct request_fields *f, const char *key, const char *val, size_t n, struct message *m,
                        char *err, size_t errlen)
{
    for (size_t i = 0; i < f->n; i++)
        if (strcmp(key, f->list[i].name) == 0)
            return field_set(f, &f->list[i], m, val, n, err, errlen);
    return 0;
}

int request_fields_json(const struct request_fields *f, const struct json_doc *d, int key, struct message *m,
                        char **out, char *err, size_t errlen)
{
    int v = key + 1;

    for (size_t i = 0; i < f->n; i++) {
        const struct request_field *fld = &f->list[i];
        long n;
        if (!json_is(d, key, fld->name))
            continue;
        if (fld->numeric && d->tok[v].type == JSMN_PRIMITIVE)
            return field_set(f, fld, m, json_tokptr(d, v), json_toklen(d, v), err, errlen);
        if (d->tok[v].type != JSMN_STRING || (n = json_unescape(d, v, *out)) < 0) {
            snprintf(err, errlen, "\"%s\" must be a %s", fld->name, fld->numeric ? "number" : "string");
            return -EINVAL;
        }
        if (memchr(*out, '\0', (size_t)n) != NULL) {
            snprintf(err, errlen, "\"%s\" contains a NUL character", fld->name);
            return -EINVAL;
        }
        (*out)[n] = '\0';
        *out += n + 1;
        return field_set(f, fld, m, *out - n - 1, (size_t)n, err, errlen);
    }
    return -ENOENT;
}

int request_fields_check(const struct request_fields *f, const struct message *m, char *err, size_t errlen)
{
    int rc;

    for (size_t i = 0; i < f->n; i++) {
        enum request_opt o = f->list[i].opt;
        if (m->opt[o] != NULL && (rc = f->check(o, m->opt[o], m->opt_len[o], err, errlen)) != 0)
            return rc;
    }
    return 0;
}
