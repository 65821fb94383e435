/*
 * child/upstream/fcm/legacy.c - adapter for the legacy GCM/FCM HTTP protocol.
 *
 * One request carries up to 1000 tokens of one push as registration_ids
 * (or one topic or condition), authenticated with `Authorization: key=`.
 * The answer's results[] lines up with registration_ids, so classification
 * is positional: the i-th result is the i-th target's outcome.
 */
#include "legacy.h"
#include "../../../common/options.h"
#include "../../../common/json.h"

#include <stdlib.h>
#include <string.h>

struct legacy {
    struct upstream base;
    char *url;
    struct curl_slist *headers; /* built once: the key never changes in a child */
};

/* Legacy error names and what they mean for the target. */
static const struct {
    const char *name;
    enum outcome_kind kind;
    enum cause cause;
} legacy_errors[] = {
    {"NotRegistered", OUTCOME_INVALID, CAUSE_NONE},
    {"InvalidRegistration", OUTCOME_INVALID, CAUSE_NONE},
    {"Unavailable", OUTCOME_RETRY, CAUSE_UNAVAILABLE},
    {"InternalServerError", OUTCOME_RETRY, CAUSE_INTERNAL},
    {"DeviceMessageRateExceeded", OUTCOME_RETRY, CAUSE_RATE_LIMITED},
    {"TopicsMessageRateExceeded", OUTCOME_RETRY, CAUSE_RATE_LIMITED},
    {"MissingRegistration", OUTCOME_FAILED, CAUSE_MESSAGE_REJECTED},
    {"MismatchSenderId", OUTCOME_FAILED, CAUSE_MESSAGE_REJECTED},
    {"InvalidPackageName", OUTCOME_FAILED, CAUSE_MESSAGE_REJECTED},
    {"MessageTooBig", OUTCOME_FAILED, CAUSE_MESSAGE_REJECTED},
    {"InvalidDataKey", OUTCOME_FAILED, CAUSE_MESSAGE_REJECTED},
    {"InvalidTtl", OUTCOME_FAILED, CAUSE_MESSAGE_REJECTED},
    {"InvalidApnsCredential", OUTCOME_FAILED, CAUSE_THIRD_PARTY_AUTH},
};

void legacy_build_body(struct buf *b, const struct push *p, struct target *const *targets, size_t n)
{
    static const enum request_opt passed[] = {ROPT_NOTIFICATION, ROPT_COLLAPSE_KEY, ROPT_PRIORITY, ROPT_TIME_TO_LIVE};

    if (p->kind == TARGET_TOPIC) {
        buf_adds(b, "{\"to\":");
        buf_add(b, "\"/topics/", 9);
        buf_add(b, targets[0]->name, targets[0]->len); /* topic names need no escaping */
        buf_add(b, "\"", 1);
    } else if (p->kind == TARGET_CONDITION) {
        buf_adds(b, "{\"condition\":");
        buf_add_json_string(b, targets[0]->name, targets[0]->len);
    } else {
        buf_adds(b, "{\"registration_ids\":[");
        for (size_t i = 0; i < n; i++) {
            if (i)
                buf_add(b, ",", 1);
            buf_add_json_string(b, targets[i]->name, targets[i]->len);
        }
        buf_add(b, "]", 1);
    }
    if (p->msg.payload) {
        buf_adds(b, ",\"data\":");
        buf_add(b, p->msg.payload, p->msg.payload_len);
    }
    for (size_t i = 0; i < sizeof(passed) / sizeof(passed[0]); i++) {
        if (p->msg.opt[passed[i]] == NULL)
            continue;
        buf_addf(b, ",\"%s\":", request_opt_names[passed[i]]);
        buf_add(b, p->msg.opt[passed[i]], p->msg.opt_len[passed[i]]);
    }
    buf_add(b, "}", 1);
}

static void set_all(struct outcome *out, size_t n, enum outcome_kind kind, enum cause cause, const char *reason)
{
    for (size_t i = 0; i < n; i++) {
        out[i].kind = kind;
        out[i].cause = cause;
        out[i].canonical = NULL;
        out[i].reason = reason;
    }
}

/* One result object: {"message_id":...,"registration_id":...} or {"error":...}. */
static void classify_result(const struct json_doc *d, int obj, struct outcome *o)
{
    int err = json_find(d, obj, "error"), rid;

    o->canonical = NULL;
    if (err >= 0) {
        for (size_t k = 0; k < sizeof(legacy_errors) / sizeof(legacy_errors[0]); k++) {
            if (json_is(d, err, legacy_errors[k].name)) {
                o->kind = legacy_errors[k].kind;
                o->cause = legacy_errors[k].cause;
                o->reason = legacy_errors[k].name;
                return;
            }
        }
        o->kind = OUTCOME_FAILED;
        o->cause = CAUSE_MESSAGE_REJECTED;
        o->reason = "unknown upstream error";
        return;
    }
    if (json_find(d, obj, "message_id") < 0) {
        o->kind = OUTCOME_RETRY;
        o->cause = CAUSE_MALFORMED_RESPONSE;
        o->reason = "result without message_id";
        return;
    }
    o->kind = OUTCOME_DELIVERED;
    o->cause = CAUSE_NONE;
    o->reason = "delivered";
    rid = json_find(d, obj, "registration_id");
    if (rid >= 0 && d->tok[rid].type == JSMN_STRING && json_toklen(d, rid) > 0) {
        char *c = malloc(json_toklen(d, rid) + 1);
        if (c != NULL && json_unescape(d, rid, c) > 0) {
            o->kind = OUTCOME_CANONICAL;
            o->canonical = c;
        } else {
            free(c);
        }
    }
}

/* ---- an answer cut at the bound ----
 *
 * Only the prefix of the answer is at hand, so it cannot be parsed as one
 * document.  Its lexical structure is followed instead (strings with their
 * escapes, brackets), in linear time, to find the top-level members and the
 * elements of results[] that lie whole within it; each of those is parsed on
 * its own by json_parse, which checks the rest. */

static size_t skip_ws(const char *p, size_t len, size_t i)
{
    while (i < len && (p[i] == ' ' || p[i] == '\t' || p[i] == '\r' || p[i] == '\n'))
        i++;
    return i;
}

/* The end of the string whose opening quote is at p[i], or 0 when the
 * prefix ends first. */
static size_t string_end(const char *p, size_t len, size_t i)
{
    for (i++; i < len; i++) {
        if (p[i] == '\\')
            i++;
        else if (p[i] == '"')
            return i + 1;
    }
    return 0;
}

/* The end of the value that starts at p[i], or 0 when the prefix ends before
 * it does (a number or a word too: it may go on past the cut). */
static size_t value_end(const char *p, size_t len, size_t i)
{
    size_t depth = 0;

    if (i >= len)
        return 0;
    if (p[i] == '"')
        return string_end(p, len, i);
    if (p[i] != '{' && p[i] != '[') {
        size_t j = i;
        while (j < len && memchr(",}] \t\r\n", p[j], 7) == NULL)
            j++;
        return j < len && j > i ? j : 0;
    }
    for (; i < len; i++) {
        if (p[i] == '"') {
            if ((i = string_end(p, len, i)) == 0)
                return 0;
            i--;
        } else if (p[i] == '{' || p[i] == '[') {
            depth++;
        } else if ((p[i] == '}' || p[i] == ']') && --depth == 0) {
            return i + 1;
        }
    }
    return 0;
}

/* Reads p[0..len) as one result object when it is one that says something
 * (an error, or a message id); returns 1 then, 0 when it does not. */
static int result_from(const char *p, size_t len, struct outcome *o)
{
    struct json_doc d;
    int legible;

    if (json_parse(&d, p, len) != 0) {
        json_free(&d);
        return 0;
    }
    legible = d.tok[0].type == JSMN_OBJECT && (json_find(&d, 0, "error") >= 0 || json_find(&d, 0, "message_id") >= 0);
    if (legible)
        classify_result(&d, 0, o);
    json_free(&d);
    return legible;
}

/* Counts the elements of the array at p[i] that lie whole in the prefix, up
 * to the first that does not, or to anything that is not JSON; with out, the
 * first max of them are read into out[] as results too. */
static size_t whole_elements(const char *p, size_t len, size_t i, size_t max, struct outcome *out)
{
    size_t k = 0, end;

    if (i >= len || p[i] != '[')
        return 0;
    for (i = skip_ws(p, len, i + 1); i < len && p[i] != ']'; k++) {
        if ((end = value_end(p, len, i)) == 0)
            break; /* the cut runs through this one */
        if (out != NULL && k < max)
            result_from(p + i, end - i, &out[k]);
        i = skip_ws(p, len, end);
        if (i < len && p[i] == ',')
            i = skip_ws(p, len, i + 1);
        else if (i < len && p[i] != ']')
            return k + 1; /* not JSON: what follows says nothing */
    }
    return k;
}

/* A 200 cut at the bound.  For tokens, the results that lie whole in the
 * prefix are read, when they can line up with the targets (no more of them
 * than targets); for a topic or condition, an "error" member is.  Every
 * target the prefix says nothing legible about is delivered: FCM answered
 * 200, and sending again would duplicate a push to the device. */
static void classify_cut(const char *p, size_t len, enum target_kind kind, size_t n, struct outcome *out)
{
    size_t i = skip_ws(p, len, 0), end;

    set_all(out, n, OUTCOME_DELIVERED, CAUSE_NONE, "delivered (answer over the bound)");
    if (i < len && p[i] == '{')
        i = skip_ws(p, len, i + 1);
    else
        i = len;
    while (i < len && p[i] == '"') { /* top-level members, key by key */
        size_t key = i, key_end = string_end(p, len, i);
        if (key_end == 0 || (i = skip_ws(p, len, key_end)) >= len || p[i] != ':')
            return;
        i = skip_ws(p, len, i + 1);
        if (kind == TARGET_TOKEN && key_end - key == 9 && memcmp(p + key, "\"results\"", 9) == 0) {
            if (whole_elements(p, len, i, n, NULL) <= n)
                whole_elements(p, len, i, n, out);
            return;
        }
        if ((end = value_end(p, len, i)) == 0)
            return;
        if (kind != TARGET_TOKEN && key_end - key == 7 && memcmp(p + key, "\"error\"", 7) == 0) {
            struct buf member = BUF_INIT;
            buf_adds(&member, "{\"error\":");
            buf_add(&member, p + i, end - i);
            buf_add(&member, "}", 1);
            if (!member.failed)
                result_from(member.data, member.len, &out[0]);
            buf_free(&member);
            return;
        }
        i = skip_ws(p, len, end);
        if (i >= len || p[i] != ',')
            return;
        i = skip_ws(p, len, i + 1);
    }
}

void legacy_classify(const struct upstream_result *res, enum target_kind kind, size_t n, struct outcome *out)
{
    struct json_doc d;
    int results;

    if (res->code != CURLE_OK) {
        set_all(out, n, OUTCOME_RETRY, CAUSE_NETWORK, "no answer from upstream");
        return;
    }
    if (res->status == 429 || res->status >= 500) {
        set_all(out, n, OUTCOME_RETRY, res->status == 429 ? CAUSE_HTTP_429 : CAUSE_HTTP_5XX,
                res->status == 429 ? "HTTP 429" : "HTTP 5xx");
        return;
    }
    if (res->status == 401 || res->status == 403) {
        set_all(out, n, OUTCOME_FAILED, CAUSE_UNAUTHORIZED, "HTTP 401: the upstream refused the API key");
        return;
    }
    if (res->status == 400) {
        set_all(out, n, OUTCOME_FAILED, CAUSE_BAD_REQUEST, "HTTP 400: the upstream rejected the request");
        return;
    }
    if (res->status != 200) {
        set_all(out, n, OUTCOME_FAILED, CAUSE_UNEXPECTED_STATUS, "unexpected HTTP status");
        return;
    }
    if (res->cut) {
        classify_cut(res->body, res->len, kind, n, out);
        return;
    }
    if (json_parse(&d, res->body, res->len) != 0 || d.tok[0].type != JSMN_OBJECT) {
        if (d.tok)
            json_free(&d);
        set_all(out, n, OUTCOME_RETRY, CAUSE_MALFORMED_RESPONSE, "malformed response");
        return;
    }
    if (kind != TARGET_TOKEN) {
        classify_result(&d, 0, &out[0]);
    } else if ((results = json_find(&d, 0, "results")) < 0 || d.tok[results].type != JSMN_ARRAY ||
               (size_t)d.tok[results].size != n) {
        set_all(out, n, OUTCOME_RETRY, CAUSE_MALFORMED_RESPONSE, "malformed response");
    } else {
        int r = results + 1;
        for (size_t i = 0; i < n; i++) {
            if (d.tok[r].type == JSMN_OBJECT)
                classify_result(&d, r, &out[i]);
            else
                set_all(&out[i], 1, OUTCOME_RETRY, CAUSE_MALFORMED_RESPONSE, "malformed response");
            r = json_skip(&d, r);
        }
    }
    json_free(&d);
}

static int legacy_prepare(struct upstream *u, struct job *job)
{
    struct legacy *l = (struct legacy *)u;

    legacy_build_body(&job->body, job->push, job->targets, job->ntargets);
    if (job->body.failed)
        return -1;
    job->answer_max = LEGACY_ANSWER_MAX(job->ntargets);
    curl_easy_setopt(job->easy, CURLOPT_URL, l->url);
    curl_easy_setopt(job->easy, CURLOPT_HTTPHEADER, l->headers);
    curl_easy_setopt(job->easy, CURLOPT_POSTFIELDS, job->body.data);
    curl_easy_setopt(job->easy, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)job->body.len);
    return 0;
}

static void legacy_classify_job(struct upstream *u, struct job *job, const struct upstream_result *res,
                                struct outcome *out)
{
    (void)u;
    legacy_classify(res, job->push->kind, job->ntargets, out);
}

static void legacy_destroy(struct upstream *u)
{
    struct legacy *l = (struct legacy *)u;

    curl_slist_free_all(l->headers);
    free(l->url);
    free(l);
}

static const struct upstream_ops legacy_ops = {
    .name = "legacy",
    .prepare = legacy_prepare,
    .classify = legacy_classify_job,
    .destroy = legacy_destroy,
};

struct upstream *legacy_create(const struct fcmd_options *o)
{
    struct legacy *l = calloc(1, sizeof(*l));
    struct buf auth = BUF_INIT;
    struct curl_slist *h = NULL, *next;

    if (l == NULL)
        return NULL;
    l->base.ops = &legacy_ops;
    l->base.max_targets = LEGACY_MAX_TOKENS;
    buf_addf(&auth, "Authorization: key=%s", o->apikey);
    l->url = strdup(o->gcm_url);
    l->base.url = l->url;
    if (auth.failed || l->url == NULL)
        goto fail;
    /* "Expect:" stops curl from waiting for 100-continue on large bodies. */
    static const char *const fixed[] = {"Content-Type: application/json", "Expect:"};
    for (size_t i = 0; i < 2; i++) {
        if ((next = curl_slist_append(h, fixed[i])) == NULL)
            goto fail;
        h = next;
    }
    if ((next = curl_slist_append(h, auth.data)) == NULL)
        goto fail;
    l->headers = next;
    /* The key is copied into the list; clear our copy. */
    memset(auth.data, 0, auth.len);
    buf_free(&auth);
    return &l->base;
fail:
    curl_slist_free_all(h);
    buf_free(&auth);
    free(l->url);
    free(l);
    return NULL;
}
