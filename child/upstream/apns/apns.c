/*
 * child/upstream/apns/apns.c - adapter for Apple's APNs provider API.
 *
 * One HTTP/2 request per device token, POST {apns-url}/3/device/TOKEN, the
 * payload as it was given (already checked at intake against Apple's
 * limits), the apns-* fields as headers, and the provider token every
 * worker shares (apns_token.c).  Apple answers 200 with no body, or a
 * status and {"reason": ...}; the reason decides, and goes to the log when
 * a target fails.
 */
#include "../../../common/log.h"
#include "../../../common/options.h"
#include "../../../shm/region.h"
#include "apns.h"
#include "apns_token.h"
#include "../../../common/json.h"
#include "../../core/request.h"
#include "apns_request.h"
#include "../sender.h"
#include "../upstream.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

/* The most of an answer fcmd reads.  Apple answers 200 with no body, and an
 * error with {"reason": ..., "timestamp": ...}, under 100 bytes; a longer
 * body is not Apple's, and past the bound the status decides. */
#define APNS_ANSWER_MAX 4096

struct apns {
    struct upstream base;
    char *url; /* the base URL without a trailing slash */
    const char *default_topic;
    struct apns_token *token;
};

/* What prepare attached to a job. */
struct apns_job {
    struct curl_slist *headers; /* first: upstream_release_headers frees it */
    uint64_t gen; /* of the provider token it carries */
};

static const struct {
    enum request_opt opt;
    const char *header;
} headers[] = {
    {ROPT_APNS_PUSH_TYPE, "apns-push-type"},
    {ROPT_APNS_PRIORITY, "apns-priority"},
    {ROPT_APNS_EXPIRATION, "apns-expiration"},
    {ROPT_APNS_COLLAPSE_ID, "apns-collapse-id"},
};

static struct curl_slist *build_headers(const struct apns *a, const struct message *m, const char *auth)
{
    struct curl_slist *list = NULL;
    char line[320];
    int failed = 0;
    const char *topic = m->opt[ROPT_APNS_TOPIC] ? m->opt[ROPT_APNS_TOPIC] : a->default_topic;

    list = upstream_header(list, "content-type: application/json", &failed);
    list = upstream_header(list, "Expect:", &failed);
    list = upstream_header(list, auth, &failed);
    /* Checked at intake: at most 178 bytes (255 in records an older fcmd spooled). */
    snprintf(line, sizeof(line), "apns-topic: %s", topic);
    list = upstream_header(list, line, &failed);
    for (size_t i = 0; i < sizeof(headers) / sizeof(headers[0]); i++) {
        if (m->opt[headers[i].opt] == NULL)
            continue;
        snprintf(line, sizeof(line), "%s: %s", headers[i].header, m->opt[headers[i].opt]);
        list = upstream_header(list, line, &failed);
    }
    if (failed) {
        curl_slist_free_all(list);
        return NULL;
    }
    return list;
}

static int apns_prepare(struct upstream *u, struct job *job)
{
    struct apns *a = (struct apns *)u;
    struct apns_job *aj = calloc(1, sizeof(*aj));
    const struct push *p = job->push;
    const char *auth;
    int busy;

    if (aj == NULL)
        return -1;
    if ((auth = apns_token_header(a->token, apns_token_clock_ms(), time(NULL), &aj->gen, &busy)) == NULL ||
        (aj->headers = build_headers(a, &p->msg, auth)) == NULL) {
        free(aj);
        return auth == NULL && busy ? -EAGAIN : -1;
    }
    job->adapter_data = aj;
    buf_addf(&job->body, "%s/3/device/%s", a->url, job->targets[0]->name);
    if (job->body.failed)
        return -1;
    job->answer_max = APNS_ANSWER_MAX;
    /* curl copies the URL; the body is the push's own payload text. */
    curl_easy_setopt(job->easy, CURLOPT_URL, job->body.data);
    curl_easy_setopt(job->easy, CURLOPT_HTTPHEADER, aj->headers);
    curl_easy_setopt(job->easy, CURLOPT_POSTFIELDS, p->msg.payload);
    curl_easy_setopt(job->easy, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)p->msg.payload_len);
    return 0;
}

/* Apple's {"reason": "..."} into detail; "" when there is none. */
static void read_reason(const struct upstream_result *res, char *detail, size_t dlen)
{
    struct json_doc d;
    int r;

    detail[0] = '\0';
    if (res->len == 0 || json_parse(&d, res->body, res->len) != 0)
        return;
    r = json_find(&d, 0, "reason");
    if (r >= 0 && d.tok[r].type == JSMN_STRING && json_toklen(&d, r) < dlen) {
        long n = json_unescape(&d, r, detail);
        detail[n > 0 ? n : 0] = '\0';
        for (long i = 0; i < n; i++) /* it goes into the log */
            if ((unsigned char)detail[i] < 0x20 || detail[i] == 0x7f)
                detail[i] = '?';
    }
    json_free(&d);
}

int apns_classify(const struct upstream_result *res, struct outcome *out, int *expired, char *detail, size_t dlen)
{
    long st = res->status;

    *expired = 0;
    detail[0] = '\0';
    if (res->code != CURLE_OK) {
        outcome_set(out, OUTCOME_RETRY, CAUSE_NETWORK, "no answer from APNs");
        return 0;
    }
    if (st == 200) {
        outcome_set(out, OUTCOME_DELIVERED, CAUSE_NONE, "delivered");
        return 0;
    }
    read_reason(res, detail, dlen);
    if (st == 410) {
        outcome_set(out, OUTCOME_INVALID, CAUSE_NONE, "Unregistered");
    } else if (st == 400 && (strcmp(detail, "BadDeviceToken") == 0 || strcmp(detail, "DeviceTokenNotForTopic") == 0)) {
        outcome_set(out, OUTCOME_INVALID, CAUSE_NONE, detail[0] == 'B' ? "BadDeviceToken" : "DeviceTokenNotForTopic");
    } else if (st == 403 && strcmp(detail, "ExpiredProviderToken") == 0) {
        *expired = 1;
        outcome_set(out, OUTCOME_RETRY, CAUSE_TOKEN_REFUSED, "ExpiredProviderToken");
    } else if (st == 429) {
        outcome_set(out, OUTCOME_RETRY, CAUSE_HTTP_429, "HTTP 429 (TooManyRequests)");
    } else if (st == 500) {
        outcome_set(out, OUTCOME_RETRY, CAUSE_INTERNAL, "HTTP 500 (InternalServerError)");
    } else if (st == 503) {
        outcome_set(out, OUTCOME_RETRY, CAUSE_UNAVAILABLE, "HTTP 503 (ServiceUnavailable)");
    } else if (st >= 500) {
        outcome_set(out, OUTCOME_RETRY, CAUSE_HTTP_5XX, "HTTP 5xx");
    } else if (st == 403) {
        outcome_set(out, OUTCOME_FAILED, CAUSE_UNAUTHORIZED, "HTTP 403: APNs refused the provider token or the topic");
    } else if (st == 400) {
        outcome_set(out, OUTCOME_FAILED, CAUSE_BAD_REQUEST, "HTTP 400: APNs refused the notification");
    } else if (st == 413) {
        outcome_set(out, OUTCOME_FAILED, CAUSE_MESSAGE_REJECTED, "HTTP 413: payload too large for APNs");
    } else {
        outcome_set(out, OUTCOME_FAILED, CAUSE_UNEXPECTED_STATUS, "unexpected HTTP status from APNs");
    }
    return 0;
}

static void apns_classify_job(struct upstream *u, struct job *job, const struct upstream_result *res,
                              struct outcome *out)
{
    struct apns *a = (struct apns *)u;
    struct apns_job *aj = job->adapter_data;
    int expired;

    apns_classify(res, &out[0], &expired, job->detail, sizeof(job->detail));
    /* One renewal per refused token, whichever worker is told first. */
    if (expired && aj != NULL && apns_token_expired(a->token, aj->gen, apns_token_clock_ms(), time(NULL)) < 0)
        log_error("apns: cannot sign a new provider token");
}

static int apns_check(struct upstream *u, const struct send_request *r, char *err, size_t errlen)
{
    struct apns *a = (struct apns *)u;

    if (r->msg.opt[ROPT_APNS_TOPIC] == NULL && a->default_topic == NULL) {
        snprintf(err, errlen, "no topic: give \"topic\" (the app's bundle id) or start fcmd with --apns-topic");
        return -EINVAL;
    }
    return 0;
}

static void apns_destroy(struct upstream *u)
{
    struct apns *a = (struct apns *)u;

    apns_token_free(a->token);
    free(a->url);
    free(a);
}

static const struct upstream_ops apns_ops = {
    .name = "apns",
    .check = apns_check,
    .prepare = apns_prepare,
    .classify = apns_classify_job,
    .release = upstream_release_headers,
    .destroy = apns_destroy,
};

struct upstream *apns_create(const struct fcmd_options *o, struct provider_token *token)
{
    struct apns *a = calloc(1, sizeof(*a));
    size_t n = strlen(o->apns_url);

    if (a == NULL)
        return NULL;
    while (n > 0 && o->apns_url[n - 1] == '/')
        n--;
    a->url = strndup(o->apns_url, n);
    a->token = apns_token_create(token, o->apns_pkey, o->apns_key_id, o->apns_team_id);
    if (a->url == NULL || a->token == NULL) {
        apns_token_free(a->token);
        free(a->url);
        free(a);
        return NULL;
    }
    a->base.ops = &apns_ops;
    a->base.max_targets = 1;
    a->base.url = a->url;
    a->default_topic = o->apns_topic;
    return &a->base;
}
