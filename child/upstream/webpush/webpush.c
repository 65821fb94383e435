/*
 * child/upstream/webpush/webpush.c - the Web Push adapter: a request per
 * subscription, to the endpoint it names.
 *
 * The endpoint comes from a client, so it is held to --webpush-allow twice:
 * its host at intake (check), and the address the sender is about to
 * connect to (connect_ok), since an allowed name may resolve to an internal
 * address.  No redirect is followed and at most WEBPUSH_ANSWER_MAX bytes of
 * an answer are read.  Each request has its own sender key and salt
 * (ece_encrypt); its VAPID token is the origin's, kept by vapid.c.
 */
#include "webpush.h"
#include "../../../common/log.h"
#include "../../../common/options.h"
#include "../../../common/webpush_allow.h"
#include "../../core/queue.h"
#include "../../core/request.h"
#include "ece.h"
#include "vapid.h"
#include "webpush_request.h"

#include <ctype.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

struct webpush {
    struct upstream base;
    struct vapid *vapid;
    const char *allow; /* --webpush-allow, or the default list */
};

/* What prepare attached to a job. */
struct webpush_job {
    struct curl_slist *headers; /* first: upstream_release_headers frees it */
    char host[VAPID_ORIGIN_MAX + 1]; /* the endpoint's host, for connect_ok */
    int refused;                     /* connect_ok refused an address */
};

static struct curl_slist *build_headers(const struct message *m, const char *auth)
{
    static const struct {
        enum request_opt opt;
        const char *header;
    } opts[] = {{ROPT_WEBPUSH_URGENCY, "Urgency"}, {ROPT_WEBPUSH_TOPIC, "Topic"}};
    struct curl_slist *list = NULL;
    char line[128];
    int failed = 0;

    list = upstream_header(list, "Content-Encoding: aes128gcm", &failed);
    list = upstream_header(list, "Content-Type: application/octet-stream", &failed);
    list = upstream_header(list, "Expect:", &failed);
    /* Checked at intake: digits, a word of four, at most 32 base64url characters. */
    snprintf(line, sizeof(line), "TTL: %s", m->opt[ROPT_WEBPUSH_TTL] ? m->opt[ROPT_WEBPUSH_TTL] : WEBPUSH_TTL_DEFAULT);
    list = upstream_header(list, line, &failed);
    for (size_t i = 0; i < sizeof(opts) / sizeof(opts[0]); i++) {
        if (m->opt[opts[i].opt] == NULL)
            continue;
        snprintf(line, sizeof(line), "%s: %s", opts[i].header, m->opt[opts[i].opt]);
        list = upstream_header(list, line, &failed);
    }
    if (auth != NULL) {
        char *a = malloc(strlen(auth) + 16);
        if (a == NULL) {
            failed = 1;
        } else {
            sprintf(a, "Authorization: %s", auth);
            list = upstream_header(list, a, &failed);
            free(a);
        }
    }
    if (failed) {
        curl_slist_free_all(list);
        return NULL;
    }
    return list;
}

static int webpush_prepare(struct upstream *u, struct job *job)
{
    struct webpush *w = (struct webpush *)u;
    const struct target *t = job->targets[0];
    const struct push *p = job->push;
    struct webpush_job *wj = calloc(1, sizeof(*wj));
    struct webpush_target parts;
    struct ece_keys keys;
    char origin[VAPID_ORIGIN_MAX + 1], url[WEBPUSH_ENDPOINT_MAX + 1], why[200];
    const char *auth, *host;
    size_t hostlen;

    if (wj == NULL)
        return -1;
    job->adapter_data = wj;
    /* Checked at intake or when read back from a store: these hold. */
    if (webpush_target_split(t->name, t->len, &parts) != 0 || parts.endpoint_len > WEBPUSH_ENDPOINT_MAX ||
        vapid_origin(parts.endpoint, parts.endpoint_len, origin, sizeof(origin)) < 0 ||
        ece_keys_decode(parts.p256dh, parts.p256dh_len, parts.auth, parts.auth_len, &keys, why, sizeof(why)) != 0) {
        log_error("webpush: a queued subscription is not one");
        return -1;
    }
    host = webpush_endpoint_host(parts.endpoint, parts.endpoint_len, &hostlen);
    snprintf(wj->host, sizeof(wj->host), "%.*s", (int)hostlen, host);
    memcpy(url, parts.endpoint, parts.endpoint_len);
    url[parts.endpoint_len] = '\0';
    if ((auth = vapid_authorization(w->vapid, origin, time(NULL))) == NULL ||
        (wj->headers = build_headers(&p->msg, auth)) == NULL ||
        ece_encrypt(&keys, p->msg.payload ? p->msg.payload : "", p->msg.payload_len, NULL, NULL, &job->body, NULL, why,
                    sizeof(why)) != 0) {
        OPENSSL_cleanse(&keys, sizeof(keys));
        return -1;
    }
    OPENSSL_cleanse(&keys, sizeof(keys));
    job->answer_max = WEBPUSH_ANSWER_MAX;
    curl_easy_setopt(job->easy, CURLOPT_URL, url); /* curl copies it */
    curl_easy_setopt(job->easy, CURLOPT_HTTPHEADER, wj->headers);
    curl_easy_setopt(job->easy, CURLOPT_POSTFIELDS, job->body.data);
    curl_easy_setopt(job->easy, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)job->body.len);
    return 0;
}

/* The sender is about to connect the job to addr: only to a host the list
 * allows (a push read back from the spool or Redis was checked at intake
 * against the list of its day), and to an internal address only when
 * --webpush-allow names the endpoint's host or that address itself. */
static int webpush_connect_ok(struct upstream *u, struct job *job, const struct sockaddr *addr)
{
    struct webpush *w = (struct webpush *)u;
    struct webpush_job *wj = job->adapter_data;
    size_t n = wj != NULL ? strlen(wj->host) : 0;
    char text[64];

    if (wj == NULL)
        return 0;
    if (!webpush_allow_host(w->allow, wj->host, n)) {
        wj->refused = 1;
        return 0;
    }
    if (!webpush_addr_internal(addr) || webpush_allow_literal(w->allow, wj->host, n))
        return 1;
    webpush_addr_text(addr, text, sizeof(text));
    if (text[0] != '\0' && webpush_allow_literal(w->allow, text, strlen(text)))
        return 1;
    wj->refused = 1;
    return 0;
}

/* The service's answer, one printable line of at most dlen - 1 bytes. */
static void read_detail(const struct upstream_result *res, char *detail, size_t dlen)
{
    size_t n = res->len < dlen - 1 ? res->len : dlen - 1;

    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)res->body[i];
        detail[i] = c < 0x20 || c >= 0x7f ? ' ' : (char)c;
    }
    detail[n] = '\0';
}

void webpush_classify(const struct upstream_result *res, int refused, struct outcome *out, char *detail, size_t dlen)
{
    long st = res->status;

    detail[0] = '\0';
    if (refused) {
        outcome_set(out, OUTCOME_FAILED, CAUSE_ADDRESS_REFUSED, "the endpoint's host or address is not allowed");
        return;
    }
    if (res->code != CURLE_OK) {
        outcome_set(out, OUTCOME_RETRY, CAUSE_NETWORK, "no answer from the push service");
        return;
    }
    if (st == 200 || st == 201 || st == 202) {
        outcome_set(out, OUTCOME_DELIVERED, CAUSE_NONE, "delivered");
        return;
    }
    read_detail(res, detail, dlen);
    if (st == 404 || st == 410)
        outcome_set(out, OUTCOME_INVALID, CAUSE_NONE,
            st == 404 ? "HTTP 404: no such subscription" : "HTTP 410: subscription gone");
    else if (st == 429)
        outcome_set(out, OUTCOME_RETRY, CAUSE_HTTP_429, "HTTP 429 (too many requests)");
    else if (st == 503)
        outcome_set(out, OUTCOME_RETRY, CAUSE_UNAVAILABLE, "HTTP 503 (unavailable)");
    else if (st >= 500)
        outcome_set(out, OUTCOME_RETRY, CAUSE_HTTP_5XX, "HTTP 5xx");
    else if (st == 401 || st == 403)
        outcome_set(out, OUTCOME_FAILED, CAUSE_UNAUTHORIZED, "the push service refused the VAPID token");
    else if (st == 400)
        outcome_set(out, OUTCOME_FAILED, CAUSE_BAD_REQUEST, "HTTP 400: the push service refused the message");
    else if (st == 413)
        outcome_set(out, OUTCOME_FAILED, CAUSE_MESSAGE_REJECTED, "HTTP 413: the message is too large for the push service");
    else
        outcome_set(out, OUTCOME_FAILED, CAUSE_UNEXPECTED_STATUS, "unexpected HTTP status from the push service");
}

static void webpush_classify_job(struct upstream *u, struct job *job, const struct upstream_result *res,
                                 struct outcome *out)
{
    struct webpush_job *wj = job->adapter_data;

    (void)u;
    webpush_classify(res, wj != NULL && wj->refused && res->code != CURLE_OK, &out[0], job->detail,
                     sizeof(job->detail));
}

/* The endpoints' hosts against the app's --webpush-allow. */
static int webpush_check(struct upstream *u, const struct send_request *r, char *err, size_t errlen)
{
    struct webpush *w = (struct webpush *)u;

    for (size_t i = 0; i < r->ntargets; i++) {
        struct webpush_target t;
        const char *host;
        size_t n;
        if (webpush_target_split(r->targets[i], strlen(r->targets[i]), &t) != 0)
            return snprintf(err, errlen, "subscription %zu is not an endpoint and two keys", i + 1), -EINVAL;
        host = webpush_endpoint_host(t.endpoint, t.endpoint_len, &n);
        if (!webpush_allow_host(w->allow, host, n))
            return snprintf(err, errlen,
                            "subscription %zu: the endpoint's host %.*s is not a push service "
                            "--webpush-allow lists",
                            i + 1, (int)(n > 100 ? 100 : n), host),
                   -EINVAL;
    }
    return 0;
}

static void webpush_destroy(struct upstream *u)
{
    struct webpush *w = (struct webpush *)u;

    vapid_free(w->vapid);
    free(w);
}

static const struct upstream_ops webpush_ops = {
    .name = "webpush",
    .check = webpush_check,
    .prepare = webpush_prepare,
    .classify = webpush_classify_job,
    .release = upstream_release_headers,
    .destroy = webpush_destroy,
    .connect_ok = webpush_connect_ok,
};

struct upstream *webpush_create(const struct fcmd_options *o)
{
    struct webpush *w = calloc(1, sizeof(*w));

    if (w == NULL)
        return NULL;
    if ((w->vapid = vapid_create(o->vapid_pkey, o->vapid_subject)) == NULL) {
        free(w);
        return NULL;
    }
    w->base.ops = &webpush_ops;
    w->base.max_targets = 1;
    w->base.url = WEBPUSH_URL;
    w->allow = o->webpush_allow != NULL ? o->webpush_allow : WEBPUSH_ALLOW_DEFAULT;
    return &w->base;
}
