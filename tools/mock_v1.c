/*
 * tools/mock_v1.c - the mock's FCM HTTP v1 endpoint and OAuth2 token
 * endpoint.
 *
 * The token endpoint checks what Google's would: the grant type, the JWT's
 * RS256 signature against the test key's public half, and its claims.  The
 * send endpoint accepts only tokens it issued and still valid, insists that
 * data values are strings, and answers errors in FCM's google.rpc.Status
 * shape, chosen by token prefix.
 */
#include "mock_upstream.h"

#include <openssl/pem.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define SCOPE "https://www.googleapis.com/auth/firebase.messaging"
#define GRANT "urn:ietf:params:oauth:grant-type:jwt-bearer"

int mock_v1_load_key(const char *path)
{
    return mock_load_pubkey(path, &mock.oauth_key); /* a later --oauth-public-key replaces an earlier one */
}

/* ---- OAuth ---- */

static int unhex(int c)
{
    return c >= '0' && c <= '9'   ? c - '0'
           : c >= 'a' && c <= 'f' ? c - 'a' + 10
           : c >= 'A' && c <= 'F' ? c - 'A' + 10
                                  : -1;
}

/* The decoded value of form field name, in a new allocation, or NULL. */
static char *form_value(const char *body, size_t len, const char *name)
{
    size_t nlen = strlen(name);

    for (size_t pos = 0; pos < len;) {
        const char *f = body + pos, *amp = memchr(f, '&', len - pos);
        size_t flen = amp ? (size_t)(amp - f) : len - pos;
        pos += flen + 1;
        if (flen > nlen && memcmp(f, name, nlen) == 0 && f[nlen] == '=') {
            char *out = malloc(flen), *o = out;
            for (size_t i = nlen + 1; out && i < flen; i++) {
                if (f[i] == '%' && i + 2 < flen && unhex(f[i + 1]) >= 0 && unhex(f[i + 2]) >= 0) {
                    *o++ = (char)(unhex(f[i + 1]) * 16 + unhex(f[i + 2]));
                    i += 2;
                } else {
                    *o++ = f[i] == '+' ? ' ' : f[i];
                }
            }
            if (out)
                *o = '\0';
            return out;
        }
    }
    return NULL;
}

/* base64url without padding -> bytes.  Returns the length or -1. */
static long b64url_decode(const char *s, size_t n, unsigned char *out)
{
    size_t padded = (n + 3) / 4 * 4;
    char *tmp = malloc(padded + 1);
    int len;

    if (tmp == NULL)
        return -1;
    for (size_t i = 0; i < n; i++)
        tmp[i] = s[i] == '-' ? '+' : s[i] == '_' ? '/' : s[i];
    for (size_t i = n; i < padded; i++)
        tmp[i] = '=';
    len = EVP_DecodeBlock(out, (unsigned char *)tmp, (int)padded);
    free(tmp);
    return len < 0 ? -1 : len - (long)(padded - n);
}

/* An integer claim, or -1. */
static long long int_claim(json_t *claims, const char *key)
{
    json_t *v = json_object_get(claims, key);

    return json_is_integer(v) ? (long long)json_integer_value(v) : -1;
}

static int is_string(json_t *obj, const char *key, const char *want)
{
    json_t *v = json_object_get(obj, key);

    return json_is_string(v) && json_string_length(v) == strlen(want) && strcmp(json_string_value(v), want) == 0;
}

/* Why a decoded JWT header is not Google's, or NULL. */
static const char *check_header(json_t *h)
{
    if (!is_string(h, "alg", "RS256") || !is_string(h, "typ", "JWT") || json_object_get(h, "kid") == NULL)
        return "JWT header must say alg RS256, typ JWT and name a kid";
    return NULL;
}

/* Why decoded JWT claims are not what the token endpoint wants, or NULL. */
static const char *check_claims(json_t *c)
{
    long long iat = int_claim(c, "iat"), exp = int_claim(c, "exp"), now = (long long)time(NULL);
    json_t *aud = json_object_get(c, "aud");
    size_t alen = json_string_length(aud);

    if (json_object_get(c, "iss") == NULL || !is_string(c, "scope", SCOPE))
        return "JWT claims need iss and the firebase.messaging scope";
    if (!json_is_string(aud) || alen < 6 || memcmp(json_string_value(aud) + alen - 6, "/token", 6) != 0)
        return "JWT aud is not this token endpoint";
    if (iat < now - 300 || iat > now + 300 || exp != iat + 3600)
        return "JWT iat must be now and exp one hour later";
    return NULL;
}

/* Decodes one JWT part and checks it; returns NULL when good. */
static const char *check_part(const unsigned char *text, long len, const char *not_json, const char *(*check)(json_t *))
{
    json_t *v = json_loadb((const char *)text, (size_t)len, MOCK_JSON_FLAGS, NULL);
    const char *why;

    if (!json_is_object(v)) {
        json_decref(v);
        return not_json;
    }
    why = check(v);
    json_decref(v);
    return why;
}

/* Checks a JWT-bearer assertion; returns NULL when good, else why not. */
static const char *check_assertion(const char *jwt)
{
    const char *dot1 = strchr(jwt, '.'), *dot2 = dot1 ? strchr(dot1 + 1, '.') : NULL;
    unsigned char head[1024], claims[2048], sig[1024];
    long hlen, clen, slen;
    const char *why;
    EVP_MD_CTX *ctx;
    int ok;

    if (dot1 == NULL || dot2 == NULL || strchr(dot2 + 1, '.') != NULL)
        return "assertion is not a JWT";
    if ((size_t)(dot1 - jwt) > 1300 || (size_t)(dot2 - dot1) > 2700 || strlen(dot2 + 1) > 1300 ||
        (hlen = b64url_decode(jwt, (size_t)(dot1 - jwt), head)) < 0 ||
        (clen = b64url_decode(dot1 + 1, (size_t)(dot2 - dot1 - 1), claims)) < 0 ||
        (slen = b64url_decode(dot2 + 1, strlen(dot2 + 1), sig)) < 0)
        return "assertion is not base64url";
    if ((why = check_part(head, hlen, "JWT header is not JSON", check_header)) != NULL ||
        (why = check_part(claims, clen, "JWT claims are not JSON", check_claims)) != NULL)
        return why;
    if (mock.oauth_key == NULL)
        return "the mock has no --oauth-public-key";
    ctx = EVP_MD_CTX_new();
    ok = ctx && EVP_DigestVerifyInit(ctx, NULL, EVP_sha256(), NULL, mock.oauth_key) == 1 &&
         EVP_DigestVerify(ctx, sig, (size_t)slen, (const unsigned char *)jwt, (size_t)(dot2 - jwt)) == 1;
    EVP_MD_CTX_free(ctx);
    return ok ? NULL : "JWT signature does not verify";
}

static int oauth_error(h2o_req_t *req, int status, const char *error, const char *desc)
{
    struct mtext b = MTEXT_INIT;

    mtext_addf(&b, "{\"error\":\"%s\",\"error_description\":\"%s\"}", error, desc);
    return mock_answer(req, status, 0, &b);
}

static const char *issue_token(void)
{
    struct issued *t;

    if (mock.nissued == mock.issued_cap) {
        size_t cap = mock.issued_cap ? mock.issued_cap * 2 : 16;
        struct issued *n = realloc(mock.issued, cap * sizeof(*n));
        if (n == NULL)
            abort();
        mock.issued = n;
        mock.issued_cap = cap;
    }
    t = &mock.issued[mock.nissued++];
    snprintf(t->token, sizeof(t->token), "mock-access-%zu-%08x", mock.nissued, (unsigned)random());
    t->expires_at = uv_now(mock.loop) + (uint64_t)mock.token_ttl * 1000;
    return t->token;
}

int mock_oauth(h2o_req_t *req)
{
    const char *body = req->entity.base ? req->entity.base : "", *why;
    char *grant = form_value(body, req->entity.len, "grant_type");
    char *assertion = form_value(body, req->entity.len, "assertion");
    struct mtext b = MTEXT_INIT;
    int rc;

    mock.oauth_requests++;
    if (mock.oauth_fail > 0) {
        mock.oauth_fail--;
        rc = oauth_error(req, 503, "unavailable", "the token endpoint is down");
    } else if (grant == NULL || strcmp(grant, GRANT) != 0) {
        mock.oauth_rejected++;
        rc = oauth_error(req, 400, "unsupported_grant_type", "grant_type must be the JWT bearer grant");
    } else if (assertion == NULL || (why = check_assertion(assertion)) != NULL) {
        mock.oauth_rejected++;
        rc = oauth_error(req, 400, "invalid_grant", assertion ? why : "no assertion");
    } else {
        mtext_addf(&b, "{\"access_token\":\"%s\",\"expires_in\":%u,\"token_type\":\"Bearer\"}", issue_token(),
                   mock.token_ttl);
        rc = mock_answer(req, 200, 0, &b);
    }
    free(grant);
    free(assertion);
    return rc;
}

/* ---- FCM HTTP v1 ---- */

static int bearer_ok(h2o_req_t *req)
{
    ssize_t h = h2o_find_header(&req->headers, H2O_TOKEN_AUTHORIZATION, -1);
    h2o_iovec_t v;
    uint64_t now = uv_now(mock.loop);

    if (h < 0)
        return 0;
    v = req->headers.entries[h].value;
    if (v.len < 8 || memcmp(v.base, "Bearer ", 7) != 0)
        return 0;
    for (size_t i = 0; i < mock.nissued; i++)
        if (strlen(mock.issued[i].token) == v.len - 7 && memcmp(mock.issued[i].token, v.base + 7, v.len - 7) == 0)
            return mock.issued[i].expires_at > now;
    return 0;
}

/* FCM's details[]: an FcmError with code, a BadRequest naming field. */
static json_t *v1_details(const char *code, const char *field, const char *message)
{
    json_t *d = json_array();

    if (d != NULL && code != NULL)
        json_array_append_new(d, json_pack("{s:s,s:s}", "@type", "type.googleapis.com/google.firebase.fcm.v1.FcmError",
                                           "errorCode", code));
    if (d != NULL && field != NULL)
        json_array_append_new(d, json_pack("{s:s,s:[{s:s,s:s}]}", "@type", "type.googleapis.com/google.rpc.BadRequest",
                                           "fieldViolations", "field", field, "description", message));
    return d;
}

/* Answers a google.rpc.Status error; message may be any text.  With huge,
 * the error object ends with a "padding" member of --huge-body bytes. */
static int v1_error_padded(h2o_req_t *req, int http, const char *status, const char *code, const char *field,
                           const char *message, int retry_after, int huge)
{
    struct mtext b = MTEXT_INIT;
    json_t *e = json_pack("{s:{s:i,s:s,s:s,s:o}}", "error", "code", http, "message", message, "status", status,
                          "details", v1_details(code, field, message));

    if (e == NULL) {
        fprintf(stderr, "mock-upstream: cannot build an error answer\n");
        abort();
    }
    mtext_add_json(&b, e);
    json_decref(e);
    if (huge) { /* {"error":{...}} becomes {"error":{...,"padding":"xx..."}} */
        b.len -= 2;
        mtext_adds(&b, ",\"padding\":\"");
        mock_pad(&b);
        mtext_adds(&b, "\"}}");
    }
    return mock_answer(req, http, retry_after, &b);
}

static int v1_error(h2o_req_t *req, int http, const char *status, const char *code, const char *field,
                    const char *message, int retry_after)
{
    return v1_error_padded(req, http, status, code, field, message, retry_after, 0);
}

/* Data values must all be strings, as FCM requires. */
static int data_ok(json_t *data)
{
    const char *k;
    json_t *v;

    if (data == NULL)
        return 1;
    if (!json_is_object(data))
        return 0;
    json_object_foreach (data, k, v) {
        if (!json_is_string(v))
            return 0;
    }
    return 1;
}

/* The error a token's prefix asks for, or 0 to deliver. */
static int prefixed_error(h2o_req_t *req, const char *t, size_t n, const struct token_stat *e)
{
    if (mock_has_prefix(t, n, "notreg"))
        return v1_error(req, 404, "NOT_FOUND", "UNREGISTERED", NULL, "Requested entity was not found.", 0), 1;
    if (mock_has_prefix(t, n, "mismatch"))
        return v1_error(req, 403, "PERMISSION_DENIED", "SENDER_ID_MISMATCH", NULL, "SenderId mismatch", 0), 1;
    if (mock_has_prefix(t, n, "invalid"))
        return v1_error(req, 400, "INVALID_ARGUMENT", "INVALID_ARGUMENT", "message.token",
                        "The registration token is not a valid FCM registration token", 0),
               1;
    if (mock_has_prefix(t, n, "badarg"))
        return v1_error(req, 400, "INVALID_ARGUMENT", "INVALID_ARGUMENT", "message.android.ttl",
                        "Invalid value at message.android.ttl", 0),
               1;
    if (mock_has_prefix(t, n, "quota1") && e->attempts == 1)
        return v1_error(req, 429, "RESOURCE_EXHAUSTED", "QUOTA_EXCEEDED", NULL, "Quota exceeded.", 1), 1;
    if ((mock_has_prefix(t, n, "unavail1") && e->attempts == 1) ||
        (mock_has_prefix(t, n, "unavail") && !mock_has_prefix(t, n, "unavail1")))
        return v1_error(req, 503, "UNAVAILABLE", "UNAVAILABLE", NULL, "The service is currently unavailable.", 0), 1;
    if (mock_has_prefix(t, n, "internal1") && e->attempts == 1)
        return v1_error(req, 500, "INTERNAL", "INTERNAL", NULL, "Internal error encountered.", 0), 1;
    if (mock_has_prefix(t, n, "thirdparty"))
        return v1_error(req, 401, "UNAUTHENTICATED", "THIRD_PARTY_AUTH_ERROR", NULL, "Auth error from APNS", 0), 1;
    if (mock_has_prefix(t, n, "huge503once") && e->attempts == 1)
        return v1_error_padded(req, 503, "UNAVAILABLE", "UNAVAILABLE", NULL, "The service is currently unavailable.",
                               1, 1),
               1;
    if (mock_has_prefix(t, n, "refuse1") && e->attempts == 1)
        return v1_error(req, 401, "UNAUTHENTICATED", NULL, NULL, "Request had invalid authentication credentials.", 0),
               1;
    return 0;
}

/* The message's target as the statistics key, or NULL; *is_token says
 * whether token prefixes apply. */
static json_t *target_key(json_t *msg, int *is_token)
{
    json_t *t;

    *is_token = 0;
    if (json_is_string(t = json_object_get(msg, "token"))) {
        *is_token = 1;
        return json_incref(t);
    }
    if (json_is_string(t = json_object_get(msg, "topic")))
        return json_sprintf("/topics/%s", json_string_value(t));
    if (json_is_string(t = json_object_get(msg, "condition")))
        return json_incref(t);
    return NULL;
}

/* One decoded message: its target's outcome. */
static int v1_deliver(h2o_req_t *req, json_t *msg)
{
    struct mtext b = MTEXT_INIT;
    struct token_stat *e;
    json_t *key, *data = json_object_get(msg, "data");
    int is_token, rc;

    if ((key = target_key(msg, &is_token)) == NULL)
        return v1_error(req, 400, "INVALID_ARGUMENT", "INVALID_ARGUMENT", "message", "no token, topic or condition", 0);
    e = mock_stat(json_string_value(key), json_string_length(key));
    e->attempts++;
    mock.targets++;
    if (!mock_quota_admit(1)) {
        rc = v1_error(req, 429, "RESOURCE_EXHAUSTED", "QUOTA_EXCEEDED", NULL, "Quota exceeded for quota metric.", 1);
    } else if (!data_ok(data)) {
        rc = v1_error(req, 400, "INVALID_ARGUMENT", "INVALID_ARGUMENT", "message.data",
                      "Invalid value at message.data: values must be strings", 0);
    } else if (!is_token || !(rc = prefixed_error(req, json_string_value(key), json_string_length(key), e))) {
        const char *t = json_string_value(key);
        size_t n = json_string_length(key);
        mock_record_delivery(e, data, msg);
        mtext_addf(&b, "{\"name\":\"projects/mock/messages/%llu\"", (unsigned long long)mock.delivered);
        if (is_token && (mock_has_prefix(t, n, "hugeok") || mock_has_prefix(t, n, "endless")))
            mtext_adds(&b, ",\"padding\":\"");
        if (is_token && mock_has_prefix(t, n, "endless")) {
            rc = mock_answer_endless(req, 200, &b);
        } else {
            if (is_token && mock_has_prefix(t, n, "hugeok")) {
                mock_pad(&b);
                mtext_adds(&b, "\"");
            }
            mtext_adds(&b, "}");
            rc = mock_answer(req, 200, 0, &b);
        }
    } else {
        rc = 0;
    }
    json_decref(key);
    return rc;
}

int mock_v1_send(h2o_req_t *req)
{
    char why[200 + sizeof(((json_error_t *)0)->text)], text[sizeof(why) + 40];
    json_t *d, *msg;
    int rc;

    mock.requests++;
    if (mock.first_request_ms == 0)
        mock.first_request_ms = uv_now(mock.loop);
    if (req->version >= 0x200)
        mock.http2_requests++;
    if (!bearer_ok(req)) {
        mock.v1_unauthorized++;
        return v1_error(req, 401, "UNAUTHENTICATED", NULL, NULL, "Request had invalid authentication credentials.", 0);
    }
    if ((d = mock_decode(req, why, sizeof(why))) == NULL) {
        snprintf(text, sizeof(text), "Invalid JSON payload received. %s", why);
        return v1_error(req, 400, "INVALID_ARGUMENT", NULL, NULL, text, 0);
    }
    if (!json_is_object(msg = json_object_get(d, "message")))
        rc = v1_error(req, 400, "INVALID_ARGUMENT", "INVALID_ARGUMENT", "message", "no message object", 0);
    else
        rc = v1_deliver(req, msg);
    json_decref(d);
    return rc;
}
