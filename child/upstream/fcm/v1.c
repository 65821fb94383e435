/*
 * child/upstream/fcm/v1.c - adapter for the FCM HTTP v1 API.
 *
 * One request per target, `{"message": {...}}` to
 * {fcm-url}/v1/projects/{project_id}/messages:send with a bearer token from
 * oauth.c.  Everything but the target is the same for all targets of a
 * push, so it is encoded once and cached on the push.  Errors come as a
 * google.rpc.Status whose details carry FCM's own errorCode.
 */
#include "v1.h"
#include "../../../common/log.h"
#include "../../../common/options.h"
#include "../../../common/service_account.h"
#include "../../../common/json.h"
#include "oauth.h"
#include "../../core/request.h"
#include "../sender.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Header lists are per token: jobs in flight keep theirs alive. */
struct v1_headers {
    unsigned refs;
    unsigned gen;
    struct curl_slist *list;
};

struct v1 {
    struct upstream base;
    char *url;
    const struct service_account *sa;
    struct oauth *oauth;
    struct sender *sender;
    struct v1_headers *headers; /* for the current token */
};

/* ---- encoding ---- */

int v1_stringify_data(struct buf *out, const char *payload, size_t len)
{
    struct json_doc d;
    int k = 1;

    if (json_parse(&d, payload, len) != 0 || d.tok[0].type != JSMN_OBJECT) {
        json_free(&d);
        return -1;
    }
    buf_add(out, "{", 1);
    for (int m = 0; m < d.tok[0].size; m++) {
        size_t klen, vlen;
        const char *key = json_raw(&d, k, &klen), *val = json_raw(&d, k + 1, &vlen);
        if (m)
            buf_add(out, ",", 1);
        buf_add(out, key, klen);
        buf_add(out, ":", 1);
        if (d.tok[k + 1].type == JSMN_STRING)
            buf_add(out, val, vlen);
        else
            buf_add_json_string(out, val, vlen);
        k = json_skip(&d, k + 1);
    }
    buf_add(out, "}", 1);
    json_free(&d);
    return out->failed ? -1 : 0;
}

/* The legacy-style options that v1 keeps under "android". */
static void add_mapped_android(struct buf *out, const struct message *m, const struct json_doc *android, int *first)
{
    const char *prio = m->opt[ROPT_PRIORITY];

    if (m->opt[ROPT_COLLAPSE_KEY] && json_find(android, 0, "collapse_key") < 0) {
        buf_adds(out, *first ? "\"collapse_key\":" : ",\"collapse_key\":");
        buf_add(out, m->opt[ROPT_COLLAPSE_KEY], m->opt_len[ROPT_COLLAPSE_KEY]);
        *first = 0;
    }
    if (prio && json_find(android, 0, "priority") < 0) {
        buf_adds(out, *first ? "" : ",");
        buf_adds(out, strcmp(prio, "\"high\"") == 0 ? "\"priority\":\"HIGH\"" : "\"priority\":\"NORMAL\"");
        *first = 0;
    }
    if (m->opt[ROPT_TIME_TO_LIVE] && json_find(android, 0, "ttl") < 0) {
        buf_addf(out, "%s\"ttl\":\"%ss\"", *first ? "" : ",", m->opt[ROPT_TIME_TO_LIVE]);
        *first = 0;
    }
}

static int add_android(struct buf *out, const struct message *m)
{
    struct json_doc android = {0};
    int first = 1;

    if (!m->opt[ROPT_ANDROID] && !m->opt[ROPT_COLLAPSE_KEY] && !m->opt[ROPT_PRIORITY] && !m->opt[ROPT_TIME_TO_LIVE])
        return 0;
    if (m->opt[ROPT_ANDROID] && json_parse(&android, m->opt[ROPT_ANDROID], m->opt_len[ROPT_ANDROID]) != 0)
        return -1;
    buf_adds(out, ",\"android\":{");
    if (android.ntok > 0 && android.tok[0].size > 0) {
        /* The client's own android fields first: they win over the mapped ones. */
        size_t open = (size_t)android.tok[0].start + 1, close = (size_t)android.tok[0].end - 1;
        buf_add(out, m->opt[ROPT_ANDROID] + open, close - open);
        first = 0;
    }
    add_mapped_android(out, m, &android, &first);
    buf_add(out, "}", 1);
    json_free(&android);
    return 0;
}

int v1_encode_shared(struct buf *out, const struct message *m)
{
    static const enum request_opt passed[] = {ROPT_NOTIFICATION, ROPT_APNS, ROPT_WEBPUSH, ROPT_FCM_OPTIONS};

    if (m->payload) {
        buf_adds(out, ",\"data\":");
        if (v1_stringify_data(out, m->payload, m->payload_len) != 0)
            return -1;
    }
    for (size_t i = 0; i < sizeof(passed) / sizeof(passed[0]); i++) {
        if (m->opt[passed[i]] == NULL)
            continue;
        buf_addf(out, ",\"%s\":", request_opt_names[passed[i]]);
        buf_add(out, m->opt[passed[i]], m->opt_len[passed[i]]);
    }
    if (add_android(out, m) != 0)
        return -1;
    return out->failed ? -1 : 0;
}

void v1_build_body(struct buf *out, enum target_kind kind, const struct target *t, const char *shared, size_t len)
{
    static const char *const field[] = {
        "{\"message\":{\"token\":", "{\"message\":{\"topic\":", "{\"message\":{\"condition\":"};

    buf_adds(out, field[kind]);
    buf_add_json_string(out, t->name, t->len);
    buf_add(out, shared, len);
    buf_adds(out, "}}");
}

/* ---- classification ---- */

static const struct {
    const char *code;
    enum outcome_kind kind;
    enum cause cause;
} fcm_errors[] = {
    {"UNREGISTERED", OUTCOME_INVALID, CAUSE_NONE},
    {"SENDER_ID_MISMATCH", OUTCOME_INVALID, CAUSE_NONE},
    {"QUOTA_EXCEEDED", OUTCOME_RETRY, CAUSE_RATE_LIMITED},
    {"UNAVAILABLE", OUTCOME_RETRY, CAUSE_UNAVAILABLE},
    {"INTERNAL", OUTCOME_RETRY, CAUSE_INTERNAL},
    {"THIRD_PARTY_AUTH_ERROR", OUTCOME_FAILED, CAUSE_THIRD_PARTY_AUTH},
    {"INVALID_ARGUMENT", OUTCOME_FAILED, CAUSE_INVALID_ARGUMENT}, /* unless it names the token: see below */
    {"UNSPECIFIED_ERROR", OUTCOME_FAILED, CAUSE_UNEXPECTED_STATUS},
};

/* details[]: the FcmError's errorCode, and whether a BadRequest names the token. */
static int read_details(const struct json_doc *d, int details, int *token_violation)
{
    int code = -1;

    *token_violation = 0;
    if (details < 0 || d->tok[details].type != JSMN_ARRAY)
        return -1;
    for (int i = details + 1, k = 0; k < d->tok[details].size; k++, i = json_skip(d, i)) {
        int ec = json_find(d, i, "errorCode"), fv = json_find(d, i, "fieldViolations");
        if (ec >= 0 && d->tok[ec].type == JSMN_STRING)
            code = ec;
        if (fv >= 0 && d->tok[fv].type == JSMN_ARRAY)
            for (int j = fv + 1, n = 0; n < d->tok[fv].size; n++, j = json_skip(d, j))
                if (json_is(d, json_find(d, j, "field"), "message.token"))
                    *token_violation = 1;
    }
    return code;
}

static void classify_status(long status, struct outcome *out, int *refused)
{
    if (status == 401) {
        *refused = 1;
        outcome_set(out, OUTCOME_RETRY, CAUSE_TOKEN_REFUSED, "HTTP 401: access token refused");
    } else if (status == 429 || status >= 500) {
        outcome_set(out, OUTCOME_RETRY, status == 429 ? CAUSE_HTTP_429 : CAUSE_HTTP_5XX,
            status == 429 ? "HTTP 429" : "HTTP 5xx");
    } else if (status == 403) {
        outcome_set(out, OUTCOME_FAILED, CAUSE_UNAUTHORIZED, "HTTP 403: the service account may not send for this project");
    } else if (status == 404) {
        outcome_set(out, OUTCOME_FAILED, CAUSE_UNEXPECTED_STATUS, "HTTP 404: check --fcm-url and project_id");
    } else {
        outcome_set(out, OUTCOME_FAILED, CAUSE_UNEXPECTED_STATUS, "unexpected HTTP status");
    }
}

void v1_classify(const struct upstream_result *res, struct outcome *out, int *refused, char *detail, size_t dlen)
{
    struct json_doc d;
    int err, code, msg, token_violation;

    *refused = 0;
    detail[0] = '\0';
    if (res->code != CURLE_OK) {
        outcome_set(out, OUTCOME_RETRY, CAUSE_NETWORK, "no answer from upstream");
        return;
    }
    if (res->status == 200) {
        outcome_set(out, OUTCOME_DELIVERED, CAUSE_NONE, "delivered");
        return;
    }
    if (json_parse(&d, res->body, res->len) != 0) {
        classify_status(res->status, out, refused);
        return;
    }
    err = json_find(&d, 0, "error");
    msg = json_find(&d, err, "message");
    if (msg >= 0 && d.tok[msg].type == JSMN_STRING)
        snprintf(detail, dlen, "%.*s", (int)json_toklen(&d, msg), json_tokptr(&d, msg));
    code = read_details(&d, json_find(&d, err, "details"), &token_violation);
    for (size_t i = 0; code >= 0 && i < sizeof(fcm_errors) / sizeof(fcm_errors[0]); i++) {
        if (!json_is(&d, code, fcm_errors[i].code))
            continue;
        outcome_set(out, fcm_errors[i].kind, fcm_errors[i].cause, fcm_errors[i].code);
        if (fcm_errors[i].kind == OUTCOME_FAILED && strcmp(fcm_errors[i].code, "INVALID_ARGUMENT") == 0 &&
            token_violation)
            outcome_set(out, OUTCOME_INVALID, CAUSE_NONE, "INVALID_ARGUMENT (token)");
        if (strcmp(fcm_errors[i].code, "THIRD_PARTY_AUTH_ERROR") == 0)
            out->reason = "THIRD_PARTY_AUTH_ERROR: check the APNs or web push credentials of the Firebase project";
        json_free(&d);
        return;
    }
    json_free(&d);
    classify_status(res->status, out, refused);
}

/* ---- the adapter ---- */

static void headers_unref(struct v1_headers *h)
{
    if (h != NULL && --h->refs == 0) {
        curl_slist_free_all(h->list);
        free(h);
    }
}

/* The header list for the current token, made once per token. */
static struct v1_headers *current_headers(struct v1 *v, const char *auth, unsigned gen)
{
    static const char *const fixed[] = {"Content-Type: application/json", "Expect:"};
    struct v1_headers *h;
    struct curl_slist *next;

    if (v->headers != NULL && v->headers->gen == gen)
        return v->headers;
    if ((h = calloc(1, sizeof(*h))) == NULL)
        return NULL;
    for (size_t i = 0; i < 2; i++) {
        if ((next = curl_slist_append(h->list, fixed[i])) == NULL)
            goto fail;
        h->list = next;
    }
    if ((next = curl_slist_append(h->list, auth)) == NULL)
        goto fail;
    h->list = next;
    h->refs = 1; /* the adapter's own reference */
    h->gen = gen;
    headers_unref(v->headers);
    v->headers = h;
    return h;
fail:
    curl_slist_free_all(h->list);
    free(h);
    return NULL;
}

static int v1_ready(struct upstream *u)
{
    struct v1 *v = (struct v1 *)u;
    unsigned gen;

    return v->oauth != NULL && oauth_header(v->oauth, &gen) != NULL;
}

static int v1_prepare(struct upstream *u, struct job *job)
{
    struct v1 *v = (struct v1 *)u;
    struct push *p = job->push;
    struct v1_headers *h;
    const char *auth;
    unsigned gen;

    if ((auth = oauth_header(v->oauth, &gen)) == NULL || (h = current_headers(v, auth, gen)) == NULL)
        return -1;
    if (p->encoded == NULL) {
        struct buf shared = BUF_INIT;
        if (v1_encode_shared(&shared, &p->msg) != 0) {
            buf_free(&shared);
            return -1;
        }
        p->encoded = shared.data ? shared.data : strdup("");
        p->encoded_len = shared.len;
        if (p->encoded == NULL)
            return -1;
    }
    v1_build_body(&job->body, p->kind, job->targets[0], p->encoded, p->encoded_len);
    if (job->body.failed)
        return -1;
    job->answer_max = V1_ANSWER_MAX;
    h->refs++;
    job->adapter_data = h;
    curl_easy_setopt(job->easy, CURLOPT_URL, v->url);
    curl_easy_setopt(job->easy, CURLOPT_HTTPHEADER, h->list);
    curl_easy_setopt(job->easy, CURLOPT_POSTFIELDS, job->body.data);
    curl_easy_setopt(job->easy, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)job->body.len);
    return 0;
}

static void v1_classify_job(struct upstream *u, struct job *job, const struct upstream_result *res, struct outcome *out)
{
    struct v1 *v = (struct v1 *)u;
    struct v1_headers *h = job->adapter_data;
    int refused;

    v1_classify(res, &out[0], &refused, job->detail, sizeof(job->detail));
    if (refused && h != NULL)
        oauth_refused(v->oauth, h->gen);
}

static void v1_release(struct upstream *u, struct job *job)
{
    (void)u;
    headers_unref(job->adapter_data);
    job->adapter_data = NULL;
}

static int v1_check(struct upstream *u, const struct send_request *r, char *err, size_t errlen)
{
    struct buf data = BUF_INIT;
    int rc = 0;

    (void)u;
    if (v1_encode_shared(&data, &r->msg) != 0 || data.failed) {
        snprintf(err, errlen, "message cannot be encoded for FCM");
        rc = -EINVAL;
    } else if (data.len > V1_MAX_SHARED) {
        snprintf(err, errlen, "message fields are %zu bytes for FCM, over the %d-byte limit per message", data.len,
                 V1_MAX_SHARED);
        rc = -EINVAL;
    }
    buf_free(&data);
    if (rc != 0 || r->msg.payload == NULL)
        return rc;
    if (v1_stringify_data(&data, r->msg.payload, r->msg.payload_len) != 0) {
        snprintf(err, errlen, "payload cannot be encoded as FCM data");
        rc = -EINVAL;
    } else if (data.len > V1_MAX_DATA) {
        snprintf(err, errlen, "payload is %zu bytes as FCM data, over FCM's %d-byte limit", data.len, V1_MAX_DATA);
        rc = -EINVAL;
    }
    buf_free(&data);
    return rc;
}

static void on_token(void *arg)
{
    sender_kick(arg);
}

static int v1_start(struct upstream *u, struct sender *s, struct shm_slot *slot)
{
    struct v1 *v = (struct v1 *)u;

    v->sender = s;
    v->oauth = oauth_create(sender_loop(s), v->sa, s, slot, u->app, on_token, s);
    return v->oauth ? 0 : -1;
}

static void v1_destroy(struct upstream *u)
{
    struct v1 *v = (struct v1 *)u;

    oauth_free(v->oauth);
    headers_unref(v->headers);
    free(v->url);
    free(v);
}

static const struct upstream_ops v1_ops = {
    .name = "v1",
    .start = v1_start,
    .check = v1_check,
    .ready = v1_ready,
    .prepare = v1_prepare,
    .classify = v1_classify_job,
    .release = v1_release,
    .destroy = v1_destroy,
};

struct upstream *v1_create(const struct fcmd_options *o)
{
    struct v1 *v = calloc(1, sizeof(*v));
    struct buf url = BUF_INIT;
    size_t n = strlen(o->fcm_url);

    if (v == NULL)
        return NULL;
    while (n > 0 && o->fcm_url[n - 1] == '/')
        n--;
    buf_add(&url, o->fcm_url, n);
    buf_addf(&url, "/v1/projects/%s/messages:send", o->sa->project_id);
    if (url.failed) {
        buf_free(&url);
        free(v);
        return NULL;
    }
    v->base.ops = &v1_ops;
    v->base.max_targets = 1;
    v->base.url = v->url = url.data;
    v->sa = o->sa;
    return &v->base;
}
