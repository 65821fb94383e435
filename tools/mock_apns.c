/*
 * tools/mock_apns.c - the mock's stand-in for Apple's APNs provider API.
 *
 * POST /3/device/TOKEN over HTTP/2 only, as Apple's servers are: the bearer
 * JWT is checked the way Apple checks it (ES256 signature against the
 * public key of --apns-public-key, kid, iss, an iat less than an hour old),
 * then apns-topic and the other apns-* headers, then the payload; the
 * device token's prefix picks the answer.  Every distinct JWT is kept, so
 * tests can count the provider tokens fcmd used and expire them at will.
 * Like the rest of the mock it reads JSON with jansson and checks the
 * signature with its own code on OpenSSL.
 */
#include "mock_upstream.h"

#include <openssl/bn.h>
#include <openssl/ecdsa.h>
#include <openssl/pem.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#define MAX_JWTS 256

static struct {
    EVP_PKEY *key; /* NULL: every APNs request is refused with 403 */
    const char *key_id, *team_id, *topic;
    char *jwts[MAX_JWTS]; /* distinct provider tokens seen, in order */
    int expired[MAX_JWTS];
    size_t njwts;
    uint64_t requests, http1_refused, bad_jwt, expired_answers;
} apns;

int mock_apns_load_key(const char *path)
{
    return mock_load_pubkey(path, &apns.key);
}

void mock_apns_set(const char *key_id, const char *team_id, const char *topic)
{
    if (key_id)
        apns.key_id = key_id;
    if (team_id)
        apns.team_id = team_id;
    if (topic)
        apns.topic = topic;
}

void mock_apns_reset(void)
{
    for (size_t i = 0; i < apns.njwts; i++)
        free(apns.jwts[i]);
    apns.njwts = 0;
    apns.requests = apns.http1_refused = apns.bad_jwt = apns.expired_answers = 0;
}

/* Every provider token seen so far counts as expired from now on. */
void mock_apns_expire(void)
{
    for (size_t i = 0; i < apns.njwts; i++)
        apns.expired[i] = 1;
}

void mock_apns_stats(struct mtext *b)
{
    mtext_addf(b,
               ",\"apns_requests\":%llu,\"apns_http1_refused\":%llu,\"apns_bad_jwt\":%llu,"
               "\"apns_expired_answers\":%llu,\"apns_jwts\":[",
               (unsigned long long)apns.requests, (unsigned long long)apns.http1_refused,
               (unsigned long long)apns.bad_jwt, (unsigned long long)apns.expired_answers);
    for (size_t i = 0; i < apns.njwts; i++)
        mtext_addf(b, "%s\"%s\"", i ? "," : "", apns.jwts[i]); /* base64url and dots only */
    mtext_adds(b, "]");
}

/* ---- the JWT, read independently of fcmd ---- */

static int unb64url(const char *s, size_t n, unsigned char *out, size_t cap, size_t *outlen)
{
    unsigned v = 0;
    int bits = 0;
    size_t o = 0;

    for (size_t i = 0; i < n; i++) {
        int c = s[i], d;
        if (c >= 'A' && c <= 'Z')
            d = c - 'A';
        else if (c >= 'a' && c <= 'z')
            d = c - 'a' + 26;
        else if (c >= '0' && c <= '9')
            d = c - '0' + 52;
        else if (c == '-')
            d = 62;
        else if (c == '_')
            d = 63;
        else
            return -1;
        v = v << 6 | (unsigned)d;
        if ((bits += 6) >= 8) {
            bits -= 8;
            if (o == cap)
                return -1;
            out[o++] = (unsigned char)(v >> bits);
        }
    }
    *outlen = o;
    return 0;
}

static json_t *decode_part(const char *s, size_t n)
{
    unsigned char buf[512];
    size_t len;

    if (unb64url(s, n, buf, sizeof(buf), &len) != 0)
        return NULL;
    return json_loadb((const char *)buf, len, MOCK_JSON_FLAGS, NULL);
}

static int signature_ok(const char *jwt, size_t signed_len, const char *sig64, size_t n)
{
    unsigned char raw[64], *der = NULL;
    size_t len;
    ECDSA_SIG *sig;
    EVP_MD_CTX *ctx;
    int derlen, ok = 0;

    if (unb64url(sig64, n, raw, sizeof(raw), &len) != 0 || len != 64 || (sig = ECDSA_SIG_new()) == NULL)
        return 0;
    if (ECDSA_SIG_set0(sig, BN_bin2bn(raw, 32, NULL), BN_bin2bn(raw + 32, 32, NULL)) != 1) {
        ECDSA_SIG_free(sig);
        return 0;
    }
    derlen = i2d_ECDSA_SIG(sig, &der);
    ctx = EVP_MD_CTX_new();
    ok = derlen > 0 && ctx != NULL && EVP_DigestVerifyInit(ctx, NULL, EVP_sha256(), NULL, apns.key) == 1 &&
         EVP_DigestVerify(ctx, der, (size_t)derlen, (const unsigned char *)jwt, signed_len) == 1;
    EVP_MD_CTX_free(ctx);
    OPENSSL_free(der);
    ECDSA_SIG_free(sig);
    return ok;
}

/* Apple's reason for refusing the token, or NULL when it is good. */
static const char *check_jwt(const char *jwt, size_t n)
{
    const char *d1 = memchr(jwt, '.', n), *d2 = d1 ? memchr(d1 + 1, '.', n - (size_t)(d1 + 1 - jwt)) : NULL;
    json_t *head, *claims;
    const char *why = NULL;
    long long iat, now = (long long)time(NULL);

    if (apns.key == NULL || d2 == NULL)
        return "InvalidProviderToken";
    head = decode_part(jwt, (size_t)(d1 - jwt));
    claims = decode_part(d1 + 1, (size_t)(d2 - d1 - 1));
    if (!json_is_object(head) || !json_is_object(claims) || !json_is_string(json_object_get(head, "alg")) ||
        strcmp(json_string_value(json_object_get(head, "alg")), "ES256") != 0 ||
        !json_is_string(json_object_get(head, "kid")) ||
        (apns.key_id && strcmp(json_string_value(json_object_get(head, "kid")), apns.key_id) != 0) ||
        !json_is_string(json_object_get(claims, "iss")) ||
        (apns.team_id && strcmp(json_string_value(json_object_get(claims, "iss")), apns.team_id) != 0) ||
        !json_is_integer(json_object_get(claims, "iat")))
        why = "InvalidProviderToken";
    else if (!signature_ok(jwt, (size_t)(d2 - jwt), d2 + 1, n - (size_t)(d2 + 1 - jwt)))
        why = "InvalidProviderToken";
    else if ((iat = json_integer_value(json_object_get(claims, "iat"))) < now - 3600 || iat > now + 300)
        why = "ExpiredProviderToken";
    json_decref(head);
    json_decref(claims);
    return why;
}

/* Keeps a distinct token; returns its index. */
static size_t remember(const char *jwt, size_t n)
{
    for (size_t i = 0; i < apns.njwts; i++)
        if (strlen(apns.jwts[i]) == n && memcmp(apns.jwts[i], jwt, n) == 0)
            return i;
    if (apns.njwts == MAX_JWTS)
        return MAX_JWTS;
    if ((apns.jwts[apns.njwts] = strndup(jwt, n)) == NULL)
        abort();
    apns.expired[apns.njwts] = 0;
    return apns.njwts++;
}

/* ---- the request ---- */

static int header(h2o_req_t *req, const char *name, h2o_iovec_t *out)
{
    for (size_t i = 0; i < req->headers.size; i++) {
        h2o_header_t *h = &req->headers.entries[i];
        if (h->name->len == strlen(name) && strncasecmp(h->name->base, name, h->name->len) == 0) {
            *out = h->value;
            return 1;
        }
    }
    return 0;
}

/* Apple's {"reason": ...}; with huge, a "padding" member of --huge-body
 * bytes follows the reason. */
static int reason_padded(h2o_req_t *req, int status, const char *why, int retry_after, int huge)
{
    struct mtext b = MTEXT_INIT;

    mtext_addf(&b, "{\"reason\":\"%s\"", why);
    if (status == 410)
        mtext_addf(&b, ",\"timestamp\":%lld", (long long)time(NULL) * 1000);
    if (huge) {
        mtext_adds(&b, ",\"padding\":\"");
        mock_pad(&b);
        mtext_adds(&b, "\"");
    }
    mtext_adds(&b, "}");
    return mock_answer(req, status, retry_after, &b);
}

static int reason(h2o_req_t *req, int status, const char *why, int retry_after)
{
    return reason_padded(req, status, why, retry_after, 0);
}

static int digits(h2o_iovec_t v, size_t max)
{
    if (v.len == 0 || v.len > max)
        return 0;
    for (size_t i = 0; i < v.len; i++)
        if (v.base[i] < '0' || v.base[i] > '9')
            return 0;
    return 1;
}

static int is(h2o_iovec_t v, const char *s)
{
    return v.len == strlen(s) && memcmp(v.base, s, v.len) == 0;
}

/* The apns-* headers as Apple reads them; the reason when one is wrong. */
static const char *check_headers(h2o_req_t *req, json_t *seen, int *voip)
{
    static const char *const types[] = {"alert",        "background",   "location", "voip",
                                        "complication", "fileprovider", "mdm",      "liveactivity",
                                        "pushtotalk",   "widgets",      "controls"};
    static const char *const names[] = {"apns-topic", "apns-push-type", "apns-priority", "apns-expiration",
                                        "apns-collapse-id"};
    h2o_iovec_t v;
    size_t t;

    for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++)
        if (header(req, names[i], &v))
            json_object_set_new(seen, names[i], json_stringn(v.base, v.len));
    *voip = 0;
    if (!header(req, "apns-topic", &v))
        return "MissingTopic";
    if (apns.topic && !(v.len >= strlen(apns.topic) && memcmp(v.base, apns.topic, strlen(apns.topic)) == 0 &&
                        (v.len == strlen(apns.topic) || v.base[strlen(apns.topic)] == '.')))
        return "TopicDisallowed";
    if (header(req, "apns-push-type", &v)) {
        for (t = 0; t < sizeof(types) / sizeof(types[0]) && !is(v, types[t]); t++)
            ;
        if (t == sizeof(types) / sizeof(types[0]))
            return "InvalidPushType";
        *voip = is(v, "voip");
    }
    if (header(req, "apns-priority", &v) && !is(v, "10") && !is(v, "5") && !is(v, "1"))
        return "BadPriority";
    if (header(req, "apns-expiration", &v) && !digits(v, 10))
        return "BadExpirationDate";
    if (header(req, "apns-collapse-id", &v) && (v.len == 0 || v.len > 64))
        return "BadCollapseId";
    return NULL;
}

/* The answer the device token's prefix asks for: a status, or 0 to deliver. */
static int prefixed(const char *tok, size_t n, const struct token_stat *e, const char **why)
{
    if (mock_has_prefix(tok, n, "dead"))
        return *why = "Unregistered", 410;
    if (mock_has_prefix(tok, n, "bad0"))
        return *why = "BadDeviceToken", 400;
    if (mock_has_prefix(tok, n, "bad1"))
        return *why = "DeviceTokenNotForTopic", 400;
    if (mock_has_prefix(tok, n, "bad2"))
        return *why = "BadCollapseId", 400;
    if (mock_has_prefix(tok, n, "0429") && e->attempts == 1)
        return *why = "TooManyRequests", 429;
    if (mock_has_prefix(tok, n, "0500") && e->attempts == 1)
        return *why = "InternalServerError", 500;
    if ((mock_has_prefix(tok, n, "0503") && e->attempts == 1) || mock_has_prefix(tok, n, "5555") ||
        (mock_has_prefix(tok, n, "b163") && e->attempts == 1))
        return *why = "ServiceUnavailable", 503;
    return 0;
}

int mock_apns_send(h2o_req_t *req)
{
    const char *tok = req->path_normalized.base + 10, *why = NULL;
    size_t n = req->path_normalized.len - 10;
    h2o_iovec_t auth;
    json_t *seen, *payload;
    struct token_stat *e;
    size_t jwt;
    int voip, status;

    apns.requests++;
    mock.requests++;
    if (mock.first_request_ms == 0)
        mock.first_request_ms = uv_now(mock.loop);
    if (req->version < 0x200) {
        apns.http1_refused++;
        return reason(req, 400, "BadRequest: APNs speaks HTTP/2 only", 0);
    }
    mock.http2_requests++;
    if (!header(req, "authorization", &auth) || auth.len < 8 || strncasecmp(auth.base, "bearer ", 7) != 0) {
        apns.bad_jwt++;
        return reason(req, 403, "MissingProviderToken", 0);
    }
    if ((why = check_jwt(auth.base + 7, auth.len - 7)) != NULL) {
        apns.bad_jwt++;
        return reason(req, 403, why, 0);
    }
    if ((jwt = remember(auth.base + 7, auth.len - 7)) < MAX_JWTS && apns.expired[jwt]) {
        apns.expired_answers++;
        return reason(req, 403, "ExpiredProviderToken", 0);
    }
    e = mock_stat(tok, n);
    e->attempts++;
    mock.targets++;
    seen = json_object();
    if ((why = check_headers(req, seen, &voip)) != NULL) {
        json_decref(seen);
        return reason(req, 400, why, 0);
    }
    if (req->entity.len > (voip ? 5120u : 4096u)) {
        json_decref(seen);
        return reason(req, 413, "PayloadTooLarge", 0);
    }
    if ((payload = json_loadb(req->entity.base ? req->entity.base : "", req->entity.len, MOCK_JSON_FLAGS, NULL)) ==
            NULL ||
        !json_is_object(payload)) {
        json_decref(seen);
        json_decref(payload);
        return reason(req, 400, req->entity.len == 0 ? "PayloadEmpty" : "BadRequest", 0);
    }
    for (size_t i = 0; i < n; i++)
        if (!strchr("0123456789abcdefABCDEF", tok[i]) || tok[i] == '\0')
            status = 400, why = "BadDeviceToken";
    if (why == NULL && (status = prefixed(tok, n, e, &why)) == 0) {
        struct mtext b = MTEXT_INIT;
        if (mock_has_prefix(tok, n, "510e")) {
            mock_answer_after(req, 200, 0, &b, 1000);
        } else if (mock_has_prefix(tok, n, "b16e")) {
            mtext_adds(&b, "{\"padding\":\"");
            mock_answer_endless(req, 200, &b);
        } else {
            if (mock_has_prefix(tok, n, "b160")) {
                mtext_adds(&b, "{\"padding\":\"");
                mock_pad(&b);
                mtext_adds(&b, "\"}");
            }
            mock_answer(req, 200, 0, &b);
        }
        mock_record_delivery(e, payload, seen);
        json_decref(payload);
        json_decref(seen);
        return 0;
    }
    json_decref(payload);
    json_decref(seen);
    return reason_padded(req, status, why, status == 429 || status == 503, mock_has_prefix(tok, n, "b163"));
}
