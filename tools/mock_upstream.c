/*
 * tools/mock-upstream - a stand-in for Firebase's legacy send API, for fcmd's
 * tests, demo and benchmarks.
 *
 * It is a real libh2o server (HTTP/1.1, h2c, and HTTP/2 over TLS by ALPN when
 * given a certificate) that answers after a configurable latency.  What it
 * answers for a token depends on the token's prefix (see usage below), so
 * one mock instance can play every upstream behaviour at once, and GET
 * /stats tells tests exactly what it received, per token and per attempt.
 * It reads JSON with jansson, never with fcmd's parser, so that a parser
 * bug in fcmd cannot hide behind the same bug in the mock.
 */
#include "mock_upstream.h"

#include <h2o.h>
#include <h2o/http2.h>
#include <h2o/socket/uv-binding.h>
#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/ssl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <uv.h>

static const char usage[] =
    "Usage: mock-upstream [--host ADDR] [--port N] [--latency-ms N] [--apikey KEY]\n"
    "                     [--retry-after SECONDS] [--tls-cert FILE --tls-key FILE]\n"
    "                     [--oauth-public-key PEM] [--token-ttl SECONDS] [--oauth-fail N]\n"
    "                     [--quota N]      (messages admitted per second, like a project's quota;\n"
    "                                       beyond it: 429, QUOTA_EXCEEDED on v1)\n"
    "                     [--http1-only]   (TLS without HTTP/2 in ALPN)\n"
    "                     [--apns-public-key PEM] [--apns-key-id ID] [--apns-team-id ID] [--apns-topic T]\n"
    "                     [--huge-body BYTES] (the padding of the huge answers below; 5 MiB)\n"
    "\n"
    "Request bodies must be JSON without repeated keys (jansson's reading); anything else gets 400.\n"
    "POST /fcm/send  legacy GCM/FCM API.  What a token gets depends on its prefix:\n"
    "  notreg...       error NotRegistered          invalid...   error InvalidRegistration\n"
    "  canon...        delivered, registration_id \"canonical-<token>\"\n"
    "  unavail1...     error Unavailable on the first attempt, then delivered\n"
    "  internal1...    error InternalServerError on the first attempt, then delivered\n"
    "  unavail...      error Unavailable always      mismatch...  error MismatchSenderId\n"
    "  http503once...  whole request: 503 with Retry-After the first time, then normal\n"
    "  huge503once...  the same, with --huge-body bytes of padding after \"forced 503\"\n"
    "  hugeafter...    whole request: 200, the results, then a \"padding\" member of --huge-body bytes\n"
    "  hugebefore...   whole request: 200 with the \"padding\" member before the results\n"
    "  endless...      whole request: 200, the results, then a \"padding\" string that never ends\n"
    "  http500... / http401... / http400...   whole request: that status, always\n"
    "  anything else   delivered\n"
    "POST /token      OAuth2 JWT-bearer grant: verifies the RS256 assertion with --oauth-public-key\n"
    "                 and its claims, issues tokens valid --token-ttl seconds (3600); the first\n"
    "                 --oauth-fail requests get 503\n"
    "POST /v1/projects/P/messages:send   FCM HTTP v1: needs a bearer token from /token; data values\n"
    "                 must be strings.  Token prefixes: notreg (404 UNREGISTERED), mismatch (403\n"
    "                 SENDER_ID_MISMATCH), invalid (400 INVALID_ARGUMENT on message.token), badarg\n"
    "                 (400 INVALID_ARGUMENT on message.android), quota1 (429 QUOTA_EXCEEDED once),\n"
    "                 unavail1 / unavail (503 UNAVAILABLE once / always), internal1 (500 INTERNAL\n"
    "                 once), thirdparty (401 THIRD_PARTY_AUTH_ERROR), refuse1 (401 UNAUTHENTICATED once),\n"
    "                 hugeok (200 with --huge-body bytes of padding), endless (200 whose body never ends),\n"
    "                 huge503once (503 UNAVAILABLE with --huge-body bytes of padding, once)\n"
    "POST /3/device/TOKEN   APNs, HTTP/2 only: checks the ES256 bearer JWT against --apns-public-key\n"
    "                 (kid, iss, iat within the hour), apns-topic (--apns-topic or it plus a suffix),\n"
    "                 the other apns-* headers and the payload (4096 bytes, 5120 for voip).  Token\n"
    "                 prefixes: dead (410 Unregistered), bad0 (400 BadDeviceToken), bad1 (400\n"
    "                 DeviceTokenNotForTopic), bad2 (400 BadCollapseId), 0429 / 0500 / 0503 (429, 500,\n"
    "                 503 on the first attempt), 5555 (503 always), 510e (answered after 1 s), b160 (200 with\n"
    "                 --huge-body bytes of body), b16e (200 whose body never ends), b163 (503 with\n"
    "                 --huge-body bytes of padding after the reason, on the first attempt)\n"
    "POST /apns/expire   every provider token seen so far gets 403 ExpiredProviderToken from now on\n"
    "GET /stats       JSON: requests, connections, per-token attempts and deliveries, quota_peak (the\n"
    "                 most messages admitted in one second), quota_refused, huge_answers and\n"
    "                 endless_answers (answers with padding begun; endless_bytes: what those sent)\n"
    "GET /stats?summary   the same without the per-token map\n"
    "POST /stats/reset    forget everything\n"
    "Port 0 picks a free port; the chosen one is printed on stdout.\n";

struct mock mock;

/* ---- per-token statistics: open addressing, FNV-1a ---- */

static uint64_t hash(const char *s, size_t n)
{
    uint64_t h = 1469598103934665603ull;

    for (size_t i = 0; i < n; i++)
        h = (h ^ (unsigned char)s[i]) * 1099511628211ull;
    return h;
}

static struct token_stat *slot_for(struct token_stat *t, size_t cap, const char *s, size_t n)
{
    size_t i = hash(s, n) & (cap - 1);

    while (t[i].token && !(t[i].len == n && memcmp(t[i].token, s, n) == 0))
        i = (i + 1) & (cap - 1);
    return &t[i];
}

struct token_stat *mock_stat(const char *s, size_t n)
{
    struct token_stat *e;

    if (mock.table_used * 2 >= mock.table_cap) {
        size_t cap = mock.table_cap ? mock.table_cap * 2 : 1024;
        struct token_stat *t = calloc(cap, sizeof(*t));
        if (t == NULL)
            abort();
        for (size_t i = 0; i < mock.table_cap; i++)
            if (mock.table[i].token)
                *slot_for(t, cap, mock.table[i].token, mock.table[i].len) = mock.table[i];
        free(mock.table);
        mock.table = t;
        mock.table_cap = cap;
    }
    e = slot_for(mock.table, mock.table_cap, s, n);
    if (e->token == NULL) {
        /* Tokens may hold a NUL (JSON allows \u0000): keep their length. */
        if ((e->token = malloc(n + 1)) == NULL)
            abort();
        memcpy(e->token, s, n);
        e->token[n] = '\0';
        e->len = n;
        mock.table_used++;
    }
    return e;
}

static void stats_reset(void)
{
    for (size_t i = 0; i < mock.table_cap; i++) {
        free(mock.table[i].token);
        json_decref(mock.table[i].data);
        json_decref(mock.table[i].message);
    }
    free(mock.table);
    mock.table = NULL;
    mock.table_cap = mock.table_used = 0;
    mock.requests = mock.http2_requests = mock.targets = mock.delivered = mock.unique_delivered = 0;
    mock.auth_failures = mock.first_request_ms = mock.last_delivery_ms = 0;
    mock.max_inflight = mock.inflight;
    mock.oauth_requests = mock.oauth_rejected = mock.v1_unauthorized = 0;
    mock.quota_used = mock.quota_peak = mock.quota_refused = 0;
    mock.huge_answers = mock.endless_answers = mock.endless_bytes = 0;
    mock_apns_reset();
}

void mock_record_delivery(struct token_stat *e, json_t *data, json_t *msg)
{
    mock.delivered++;
    mock.last_delivery_ms = uv_now(mock.loop);
    if (e->delivered++ == 0)
        mock.unique_delivered++;
    json_decref(e->data);
    json_decref(e->message);
    e->data = json_incref(data);
    e->message = json_incref(msg);
}

json_t *mock_decode(h2o_req_t *req, char *why, size_t size)
{
    json_error_t err;
    json_t *v = json_loadb(req->entity.base ? req->entity.base : "", req->entity.len, MOCK_JSON_FLAGS, &err);

    if (v != NULL)
        return v;
    /* jansson quotes the bytes near the error, which may be anything. */
    snprintf(why, size, "%s (byte %d)", err.text, err.position);
    for (size_t i = 0; i < size && why[i] != '\0'; i++)
        if ((unsigned char)why[i] < 0x20 || (unsigned char)why[i] >= 0x7f)
            why[i] = '?';
    return NULL;
}

/* ---- answering after the latency ---- */

struct delayed {
    uv_timer_t timer;
    h2o_req_t *req;        /* NULL once the client went away */
    struct delayed **link; /* lives in req->pool; cleared when we answer */
    int status;
    char retry_after[16];
    struct mtext body;
};

static void on_req_gone(void *p)
{
    struct delayed *d = *(struct delayed **)p;

    if (d != NULL)
        d->req = NULL;
}

void mock_send_now(h2o_req_t *req, int status, const char *retry_after, const char *body, size_t len)
{
    req->res.status = status;
    req->res.reason = status == 200 ? "OK" : "Error";
    req->res.content_length = len;
    h2o_add_header(&req->pool, &req->res.headers, H2O_TOKEN_CONTENT_TYPE, NULL, H2O_STRLIT("application/json"));
    if (retry_after && *retry_after)
        h2o_add_header(&req->pool, &req->res.headers, H2O_TOKEN_RETRY_AFTER, NULL, retry_after, strlen(retry_after));
    h2o_send_inline(req, body, len);
}

static void free_delayed(uv_handle_t *h)
{
    struct delayed *d = h->data;

    mtext_free(&d->body);
    free(d);
}

static void on_due(uv_timer_t *t)
{
    struct delayed *d = t->data;

    mock.inflight--;
    if (d->req != NULL) {
        *d->link = NULL;
        mock_send_now(d->req, d->status, d->retry_after, d->body.data ? d->body.data : "", d->body.len);
    }
    uv_close((uv_handle_t *)&d->timer, free_delayed);
}

/* Answers now, or after the latency with the same status and body. */
int mock_answer(h2o_req_t *req, int status, int with_retry_after, struct mtext *body)
{
    return mock_answer_after(req, status, with_retry_after, body, mock.latency_ms);
}

int mock_answer_after(h2o_req_t *req, int status, int with_retry_after, struct mtext *body, unsigned delay_ms)
{
    struct delayed *d;

    if (delay_ms == 0 || (d = calloc(1, sizeof(*d))) == NULL) {
        char ra[16];
        snprintf(ra, sizeof(ra), "%u", mock.retry_after);
        mock_send_now(req, status, with_retry_after ? ra : NULL, body->data ? body->data : "", body->len);
        mtext_free(body);
        return 0;
    }
    d->req = req;
    d->status = status;
    d->body = *body;
    if (with_retry_after)
        snprintf(d->retry_after, sizeof(d->retry_after), "%u", mock.retry_after);
    d->link = h2o_mem_alloc_shared(&req->pool, sizeof(*d->link), on_req_gone);
    *d->link = d;
    uv_timer_init(mock.loop, &d->timer);
    d->timer.data = d;
    uv_timer_start(&d->timer, on_due, delay_ms, 0);
    if (++mock.inflight > mock.max_inflight)
        mock.max_inflight = mock.inflight;
    return 0;
}

/* ---- answers longer than anyone needs ---- */

static char padding[16384];

void mock_pad(struct mtext *b)
{
    for (size_t left = mock.huge_body; left > 0;) {
        size_t n = left < sizeof(padding) ? left : sizeof(padding);
        mtext_add(b, padding, n);
        left -= n;
    }
    mock.huge_answers++;
}

static void endless_proceed(h2o_generator_t *g, h2o_req_t *req)
{
    h2o_iovec_t v = h2o_iovec_init(padding, sizeof(padding));

    (void)g;
    mock.endless_bytes += sizeof(padding);
    h2o_send(req, &v, 1, H2O_SEND_STATE_IN_PROGRESS);
}

static void endless_stop(h2o_generator_t *g, h2o_req_t *req)
{
    (void)g;
    (void)req;
}

int mock_answer_endless(h2o_req_t *req, int status, struct mtext *body)
{
    h2o_generator_t *g = h2o_mem_alloc_pool(&req->pool, sizeof(*g));
    h2o_iovec_t start = h2o_strdup(&req->pool, body->data ? body->data : "", body->len);

    mtext_free(body);
    mock.endless_answers++;
    mock.endless_bytes += start.len;
    g->proceed = endless_proceed;
    g->stop = endless_stop;
    req->res.status = status;
    req->res.reason = status == 200 ? "OK" : "Error";
    h2o_add_header(&req->pool, &req->res.headers, H2O_TOKEN_CONTENT_TYPE, NULL, H2O_STRLIT("application/json"));
    h2o_start_response(req, g);
    h2o_send(req, &start, 1, H2O_SEND_STATE_IN_PROGRESS);
    return 0;
}

static int answer_text(h2o_req_t *req, int status, const char *text)
{
    struct mtext b = MTEXT_INIT;

    mtext_adds(&b, text);
    return mock_answer(req, status, 0, &b);
}

/* ---- the legacy API ---- */

int mock_load_pubkey(const char *path, EVP_PKEY **key)
{
    FILE *f = fopen(path, "r");

    EVP_PKEY_free(*key);
    if (f == NULL || (*key = PEM_read_PUBKEY(f, NULL, NULL, NULL)) == NULL) {
        fprintf(stderr, "mock-upstream: cannot read a PEM public key from %s\n", path);
        if (f)
            fclose(f);
        return -1;
    }
    fclose(f);
    return 0;
}

int mock_quota_admit(size_t n)
{
    uint64_t second = uv_now(mock.loop) / 1000;

    if (mock.quota == 0)
        return 1;
    if (second != mock.quota_second) {
        mock.quota_second = second;
        mock.quota_used = 0;
    }
    if (mock.quota_used + n > mock.quota) {
        mock.quota_refused += n;
        return 0;
    }
    mock.quota_used += n;
    if (mock.quota_used > mock.quota_peak)
        mock.quota_peak = mock.quota_used;
    return 1;
}

int mock_has_prefix(const char *s, size_t n, const char *p)
{
    size_t k = strlen(p);

    return n >= k && memcmp(s, p, k) == 0;
}

/* What one token gets; writes its result object to b and counts it. */
static void legacy_result(struct mtext *b, json_t *tokv, json_t *data, unsigned *ok, unsigned *fail, unsigned *canon)
{
    const char *tok = json_string_value(tokv), *error = NULL;
    size_t n = json_string_length(tokv);
    struct token_stat *e = mock_stat(tok, n);

    if (mock_has_prefix(tok, n, "notreg"))
        error = "NotRegistered";
    else if (mock_has_prefix(tok, n, "invalid"))
        error = "InvalidRegistration";
    else if (mock_has_prefix(tok, n, "unavail1") && e->attempts == 1)
        error = "Unavailable";
    else if (mock_has_prefix(tok, n, "internal1") && e->attempts == 1)
        error = "InternalServerError";
    else if (mock_has_prefix(tok, n, "unavail") && !mock_has_prefix(tok, n, "unavail1"))
        error = "Unavailable";
    else if (mock_has_prefix(tok, n, "mismatch"))
        error = "MismatchSenderId";
    if (error != NULL) {
        mtext_addf(b, "{\"error\":\"%s\"}", error);
        (*fail)++;
        return;
    }
    mock_record_delivery(e, data, NULL);
    (*ok)++;
    if (mock_has_prefix(tok, n, "canon")) {
        json_t *canonical = json_sprintf("canonical-%s", tok);
        if (canonical == NULL)
            abort();
        mtext_addf(b, "{\"message_id\":\"0:%llu\",\"registration_id\":", (unsigned long long)mock.delivered);
        mtext_add_json(b, canonical);
        mtext_adds(b, "}");
        json_decref(canonical);
        (*canon)++;
    } else {
        mtext_addf(b, "{\"message_id\":\"0:%llu\"}", (unsigned long long)mock.delivered);
    }
}

/* A whole-request status forced by one of the tokens, or 0; *huge says its
 * body gets the padding. */
static int forced_status(json_t *ids, int *huge)
{
    int status = 0;
    size_t k;
    json_t *t;

    *huge = 0;
    json_array_foreach (ids, k, t) {
        const char *s = json_string_value(t);
        size_t n = json_string_length(t);
        if (mock_has_prefix(s, n, "huge503once") && mock_stat(s, n)->attempts == 1)
            status = 503, *huge = 1;
        else if (mock_has_prefix(s, n, "http503once") && mock_stat(s, n)->attempts == 1)
            status = 503;
        else if (mock_has_prefix(s, n, "http500"))
            status = 500;
        else if (mock_has_prefix(s, n, "http401"))
            status = 401;
        else if (mock_has_prefix(s, n, "http400"))
            status = 400;
    }
    return status;
}

static int authorized(h2o_req_t *req)
{
    ssize_t h = h2o_find_header(&req->headers, H2O_TOKEN_AUTHORIZATION, -1);
    char want[512];
    int n;

    if (mock.apikey == NULL)
        return 1;
    n = snprintf(want, sizeof(want), "key=%s", mock.apikey);
    return h >= 0 && h2o_memis(req->headers.entries[h].value.base, req->headers.entries[h].value.len, want, (size_t)n);
}

/* Whether ids is an array of strings only. */
static int all_strings(json_t *ids)
{
    size_t k;
    json_t *t;

    json_array_foreach (ids, k, t) {
        if (!json_is_string(t))
            return 0;
    }
    return 1;
}

/* Where one of the tokens asks for padding in a 200 answer. */
enum padding { PAD_NONE, PAD_AFTER, PAD_BEFORE, PAD_ENDLESS };

static enum padding padding_of(json_t *ids)
{
    enum padding pad = PAD_NONE;
    size_t k;
    json_t *t;

    json_array_foreach (ids, k, t) {
        const char *s = json_string_value(t);
        size_t n = json_string_length(t);
        if (mock_has_prefix(s, n, "hugeafter"))
            pad = PAD_AFTER;
        else if (mock_has_prefix(s, n, "hugebefore"))
            pad = PAD_BEFORE;
        else if (mock_has_prefix(s, n, "endless"))
            pad = PAD_ENDLESS;
    }
    return pad;
}

/* registration_ids: one result per token, in order, or a forced status. */
static int legacy_tokens(h2o_req_t *req, json_t *ids, json_t *data)
{
    struct mtext b = MTEXT_INIT;
    unsigned ok = 0, fail = 0, canon = 0;
    enum padding pad = padding_of(ids);
    int status, huge;
    size_t k;
    json_t *t;

    json_array_foreach (ids, k, t) {
        mock_stat(json_string_value(t), json_string_length(t))->attempts++;
        mock.targets++;
    }
    if (!mock_quota_admit(json_array_size(ids))) {
        mtext_adds(&b, "quota exceeded\n");
        return mock_answer(req, 429, 1, &b);
    }
    if ((status = forced_status(ids, &huge)) != 0) {
        mtext_addf(&b, "forced %d\n", status);
        if (huge)
            mock_pad(&b);
        return mock_answer(req, status, status == 503, &b);
    }
    mtext_adds(&b, "{\"multicast_id\":1,");
    if (pad == PAD_BEFORE) {
        mtext_adds(&b, "\"padding\":\"");
        mock_pad(&b);
        mtext_adds(&b, "\",");
    }
    mtext_adds(&b, "\"results\":[");
    json_array_foreach (ids, k, t) {
        if (k)
            mtext_add(&b, ",", 1);
        legacy_result(&b, t, data, &ok, &fail, &canon);
    }
    mtext_addf(&b, "],\"success\":%u,\"failure\":%u,\"canonical_ids\":%u", ok, fail, canon);
    if (pad == PAD_ENDLESS) {
        mtext_adds(&b, ",\"padding\":\"");
        return mock_answer_endless(req, 200, &b);
    }
    if (pad == PAD_AFTER) {
        mtext_adds(&b, ",\"padding\":\"");
        mock_pad(&b);
        mtext_adds(&b, "\"");
    }
    mtext_adds(&b, "}");
    return mock_answer(req, 200, 0, &b);
}

/* Topics and conditions: counted under their own text. */
static int legacy_topic(h2o_req_t *req, json_t *to, json_t *data)
{
    struct mtext b = MTEXT_INIT;
    struct token_stat *e = mock_stat(json_string_value(to), json_string_length(to));

    e->attempts++;
    mock.targets++;
    mock_record_delivery(e, data, NULL);
    mtext_addf(&b, "{\"message_id\":%llu}", (unsigned long long)mock.delivered);
    return mock_answer(req, 200, 0, &b);
}

static int on_legacy(h2o_req_t *req)
{
    char why[200 + sizeof(((json_error_t *)0)->text)], text[sizeof(why) + 40];
    json_t *d, *ids, *to;
    int rc;

    mock.requests++;
    if (mock.first_request_ms == 0)
        mock.first_request_ms = uv_now(mock.loop);
    if (req->version >= 0x200)
        mock.http2_requests++;
    if (!authorized(req)) {
        mock.auth_failures++;
        return answer_text(req, 401, "Unauthorized\n");
    }
    if ((d = mock_decode(req, why, sizeof(why))) == NULL) {
        snprintf(text, sizeof(text), "JSON_PARSING_ERROR: %s\n", why);
        return answer_text(req, 400, text);
    }
    if (!json_is_object(d)) {
        json_decref(d);
        return answer_text(req, 400, "body is not a JSON object\n");
    }
    ids = json_object_get(d, "registration_ids");
    if ((to = json_object_get(d, "to")) == NULL)
        to = json_object_get(d, "condition");
    if (json_is_array(ids))
        rc = all_strings(ids) ? legacy_tokens(req, ids, json_object_get(d, "data"))
                              : answer_text(req, 400, "registration_ids must be strings\n");
    else if (json_is_string(to))
        rc = legacy_topic(req, to, json_object_get(d, "data"));
    else
        rc = answer_text(req, 400, "no registration_ids, to or condition\n");
    json_decref(d);
    return rc;
}

/* ---- statistics endpoint ---- */

/* Appends v as JSON, or null. */
static void add_or_null(struct mtext *b, const json_t *v)
{
    if (v != NULL)
        mtext_add_json(b, v);
    else
        mtext_adds(b, "null");
}

/* ,"tokens":{"<token>":{"attempts":..,"delivered":..,"data":..,"message":..},...} */
static void stats_tokens(struct mtext *b)
{
    int first = 1;

    mtext_adds(b, ",\"tokens\":{");
    for (size_t i = 0; i < mock.table_cap; i++) {
        struct token_stat *e = &mock.table[i];
        json_t *name;
        if (e->token == NULL)
            continue;
        if ((name = json_stringn(e->token, e->len)) == NULL)
            abort();
        if (!first)
            mtext_add(b, ",", 1);
        first = 0;
        mtext_add_json(b, name);
        json_decref(name);
        mtext_addf(b, ":{\"attempts\":%u,\"delivered\":%u,\"data\":", e->attempts, e->delivered);
        add_or_null(b, e->data);
        mtext_adds(b, ",\"message\":");
        add_or_null(b, e->message);
        mtext_adds(b, "}");
    }
    mtext_adds(b, "}");
}

/* Web Push, for the benchmark: POST /webpush/ID, a body in aes128gcm of at
 * most 4096 bytes with a vapid Authorization, answered 201 after the
 * latency.  The mock cannot decrypt (it has no subscription's key): the
 * tests' push service (tests/integration/push_service.py) judges the crypto. */
static int on_webpush(h2o_req_t *req)
{
    ssize_t a = h2o_find_header(&req->headers, H2O_TOKEN_AUTHORIZATION, -1);
    ssize_t c = h2o_find_header(&req->headers, H2O_TOKEN_CONTENT_ENCODING, -1);
    struct mtext none = MTEXT_INIT;
    struct token_stat *e;

    mock.requests++;
    if (mock.first_request_ms == 0)
        mock.first_request_ms = uv_now(mock.loop);
    if (req->version >= 0x200)
        mock.http2_requests++;
    if (a < 0 || req->headers.entries[a].value.len < 8 ||
        strncmp(req->headers.entries[a].value.base, "vapid t=", 8) != 0) {
        mock.auth_failures++;
        return answer_text(req, 401, "no vapid Authorization\n");
    }
    if (c < 0 || !h2o_memis(req->headers.entries[c].value.base, req->headers.entries[c].value.len,
                            H2O_STRLIT("aes128gcm")) ||
        req->entity.len < 86 + 17 || req->entity.len > 4096)
        return answer_text(req, 400, "not one aes128gcm record of at most 4096 bytes\n");
    e = mock_stat(req->path_normalized.base + 9, req->path_normalized.len - 9);
    e->attempts++;
    mock.targets++;
    mock_record_delivery(e, NULL, NULL);
    return mock_answer(req, 201, 0, &none);
}

static int on_stats(h2o_req_t *req)
{
    struct mtext b = MTEXT_INIT;
    int summary = req->query_at != SIZE_MAX;
    uint64_t now = uv_now(mock.loop);

    mtext_addf(&b,
               "{\"requests\":%llu,\"http2_requests\":%llu,\"connections\":%llu,\"targets\":%llu,\"delivered\":%llu,"
               "\"unique_tokens\":%zu,\"unique_delivered\":%llu,\"auth_failures\":%llu,\"inflight\":%zu,"
               "\"max_inflight\":%zu,\"first_request_ms_ago\":%lld,\"last_delivery_ms_ago\":%lld,"
               "\"oauth_requests\":%llu,\"oauth_rejected\":%llu,\"tokens_issued\":%zu,\"v1_unauthorized\":%llu,"
               "\"quota_peak\":%llu,\"quota_refused\":%llu,\"huge_answers\":%llu,\"endless_answers\":%llu,"
               "\"endless_bytes\":%llu",
               (unsigned long long)mock.requests, (unsigned long long)mock.http2_requests,
               (unsigned long long)mock.connections, (unsigned long long)mock.targets,
               (unsigned long long)mock.delivered, mock.table_used, (unsigned long long)mock.unique_delivered,
               (unsigned long long)mock.auth_failures, mock.inflight, mock.max_inflight,
               mock.first_request_ms ? (long long)(now - mock.first_request_ms) : -1LL,
               mock.last_delivery_ms ? (long long)(now - mock.last_delivery_ms) : -1LL,
               (unsigned long long)mock.oauth_requests, (unsigned long long)mock.oauth_rejected, mock.nissued,
               (unsigned long long)mock.v1_unauthorized, (unsigned long long)mock.quota_peak,
               (unsigned long long)mock.quota_refused, (unsigned long long)mock.huge_answers,
               (unsigned long long)mock.endless_answers, (unsigned long long)mock.endless_bytes);
    mock_apns_stats(&b);
    if (!summary)
        stats_tokens(&b);
    mtext_adds(&b, "}\n");
    mock_send_now(req, 200, NULL, b.data, b.len);
    mtext_free(&b);
    return 0;
}

static int on_req(h2o_handler_t *self, h2o_req_t *req)
{
    h2o_iovec_t p = req->path_normalized;
    int post = h2o_memis(req->method.base, req->method.len, H2O_STRLIT("POST"));

    (void)self;
    if (post && h2o_memis(p.base, p.len, H2O_STRLIT("/fcm/send")))
        return on_legacy(req);
    if (post && h2o_memis(p.base, p.len, H2O_STRLIT("/token")))
        return mock_oauth(req);
    if (post && p.len > 13 && memcmp(p.base, "/v1/projects/", 13) == 0)
        return mock_v1_send(req);
    if (post && p.len > 10 && memcmp(p.base, "/3/device/", 10) == 0)
        return mock_apns_send(req);
    if (post && p.len > 9 && memcmp(p.base, "/webpush/", 9) == 0)
        return on_webpush(req);
    if (post && h2o_memis(p.base, p.len, H2O_STRLIT("/apns/expire"))) {
        mock_apns_expire();
        mock_send_now(req, 200, NULL, H2O_STRLIT("{}\n"));
        return 0;
    }
    if (h2o_memis(p.base, p.len, H2O_STRLIT("/stats")))
        return on_stats(req);
    if (post && h2o_memis(p.base, p.len, H2O_STRLIT("/stats/reset"))) {
        stats_reset();
        mock_send_now(req, 200, NULL, H2O_STRLIT("{}\n"));
        return 0;
    }
    mock_send_now(req, 404, NULL, H2O_STRLIT("{\"error\":\"not found\"}\n"));
    return 0;
}

/* ---- server ---- */

static void free_handle(uv_handle_t *h)
{
    free(h);
}

static void on_accept(uv_stream_t *listener, int status)
{
    uv_tcp_t *conn;

    if (status != 0 || (conn = malloc(sizeof(*conn))) == NULL)
        return;
    uv_tcp_init(listener->loop, conn);
    if (uv_accept(listener, (uv_stream_t *)conn) != 0) {
        uv_close((uv_handle_t *)conn, free_handle);
        return;
    }
    uv_tcp_nodelay(conn, 1);
    mock.connections++;
    h2o_accept(&mock.accept_ctx, h2o_uv_socket_create((uv_stream_t *)conn, free_handle));
}

static SSL_CTX *tls_context(const char *cert, const char *key, int http1_only)
{
    SSL_CTX *ssl = SSL_CTX_new(TLS_server_method());

    if (ssl == NULL || SSL_CTX_use_certificate_chain_file(ssl, cert) != 1 ||
        SSL_CTX_use_PrivateKey_file(ssl, key, SSL_FILETYPE_PEM) != 1) {
        fprintf(stderr, "mock-upstream: cannot load the TLS certificate or key\n");
        exit(2);
    }
    /* Without ALPN h2 the server speaks HTTP/1.1 only, as some proxies do. */
    if (!http1_only)
        h2o_ssl_register_alpn_protocols(ssl, h2o_http2_alpn_protocols);
    return ssl;
}

static int listen_on(uv_loop_t *loop)
{
    struct sockaddr_storage ss;
    int len = sizeof(ss), rc;

    if (uv_ip4_addr(mock.host, mock.port, (struct sockaddr_in *)&ss) != 0 &&
        uv_ip6_addr(mock.host, mock.port, (struct sockaddr_in6 *)&ss) != 0) {
        fprintf(stderr, "mock-upstream: bad --host %s\n", mock.host);
        return -1;
    }
    uv_tcp_init(loop, &mock.listener);
    if ((rc = uv_tcp_bind(&mock.listener, (struct sockaddr *)&ss, 0)) != 0 ||
        (rc = uv_listen((uv_stream_t *)&mock.listener, 1024, on_accept)) != 0) {
        fprintf(stderr, "mock-upstream: cannot listen on %s:%d: %s\n", mock.host, mock.port, uv_strerror(rc));
        return -1;
    }
    uv_tcp_getsockname(&mock.listener, (struct sockaddr *)&ss, &len);
    mock.port = ntohs(ss.ss_family == AF_INET ? ((struct sockaddr_in *)&ss)->sin_port
                                              : ((struct sockaddr_in6 *)&ss)->sin6_port);
    return 0;
}

static void on_term(uv_signal_t *s, int signo)
{
    (void)signo;
    uv_stop(s->loop);
}

int main(int argc, char **argv)
{
    const char *cert = NULL, *key = NULL;
    int http1_only = 0;
    static uv_loop_t loop;
    static uv_signal_t sigterm, sigint;
    h2o_hostconf_t *host;

    mock.host = "127.0.0.1";
    mock.retry_after = 1;
    mock.token_ttl = 3600;
    mock.huge_body = 5u << 20;
    memset(padding, 'x', sizeof(padding));
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i] + (strncmp(argv[i], "--", 2) == 0 ? 2 : 1);
        const char *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (strcmp(a, "help") == 0 || strcmp(a, "h") == 0) {
            fputs(usage, stdout);
            return 0;
        }
        if (strcmp(a, "http1-only") == 0) {
            http1_only = 1;
            continue;
        }
        if (v == NULL) {
            fprintf(stderr, "mock-upstream: %s needs a value\n%s", argv[i], usage);
            return 2;
        }
        i++;
        if (strcmp(a, "host") == 0)
            mock.host = v;
        else if (strcmp(a, "port") == 0)
            mock.port = atoi(v);
        else if (strcmp(a, "latency-ms") == 0)
            mock.latency_ms = (unsigned)atoi(v);
        else if (strcmp(a, "apikey") == 0)
            mock.apikey = v;
        else if (strcmp(a, "retry-after") == 0)
            mock.retry_after = (unsigned)atoi(v);
        else if (strcmp(a, "tls-cert") == 0)
            cert = v;
        else if (strcmp(a, "tls-key") == 0)
            key = v;
        else if (strcmp(a, "oauth-public-key") == 0) {
            if (mock_v1_load_key(v) != 0)
                return 2;
        } else if (strcmp(a, "apns-public-key") == 0) {
            if (mock_apns_load_key(v) != 0)
                return 2;
        } else if (strcmp(a, "apns-key-id") == 0)
            mock_apns_set(v, NULL, NULL);
        else if (strcmp(a, "apns-team-id") == 0)
            mock_apns_set(NULL, v, NULL);
        else if (strcmp(a, "apns-topic") == 0)
            mock_apns_set(NULL, NULL, v);
        else if (strcmp(a, "token-ttl") == 0)
            mock.token_ttl = (unsigned)atoi(v);
        else if (strcmp(a, "quota") == 0)
            mock.quota = strtoull(v, NULL, 10);
        else if (strcmp(a, "oauth-fail") == 0)
            mock.oauth_fail = (unsigned)atoi(v);
        else if (strcmp(a, "huge-body") == 0)
            mock.huge_body = strtoull(v, NULL, 10);
        else {
            fprintf(stderr, "mock-upstream: unknown option %s\n%s", argv[i - 1], usage);
            return 2;
        }
    }
    signal(SIGPIPE, SIG_IGN);
    uv_loop_init(&loop);
    mock.loop = &loop;
    h2o_config_init(&mock.config);
    mock.config.max_request_entity_size = 64u << 20;
    host = h2o_config_register_host(&mock.config, h2o_iovec_init(H2O_STRLIT("default")), 65535);
    h2o_create_handler(h2o_config_register_path(host, "/", 0), sizeof(h2o_handler_t))->on_req = on_req;
    h2o_context_init(&mock.ctx, &loop, &mock.config);
    mock.accept_ctx.ctx = &mock.ctx;
    mock.accept_ctx.hosts = mock.config.hosts;
    if (cert != NULL || key != NULL) {
        if (cert == NULL || key == NULL) {
            fprintf(stderr, "mock-upstream: --tls-cert and --tls-key go together\n");
            return 2;
        }
        mock.accept_ctx.ssl_ctx = tls_context(cert, key, http1_only);
    }
    if (listen_on(&loop) != 0)
        return 2;
    uv_signal_init(&loop, &sigterm);
    uv_signal_start(&sigterm, on_term, SIGTERM);
    uv_signal_init(&loop, &sigint);
    uv_signal_start(&sigint, on_term, SIGINT);
    printf("mock-upstream listening on %s:%d (%s)\n", mock.host, mock.port, cert ? "https" : "http");
    fflush(stdout);
    uv_run(&loop, UV_RUN_DEFAULT);
    return 0;
}
