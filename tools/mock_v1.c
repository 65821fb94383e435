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
    FILE *f = fopen(path, "r");

    /* A later --oauth-public-key replaces an earlier one. */
    EVP_PKEY_free(mock.oauth_key);
    if (f == NULL || (mock.oauth_key = PEM_read_PUBKEY(f, NULL, NULL, NULL)) == NULL) {
        fprintf(stderr, "mock-upstream: cannot read a PEM public key from %s\n", path);
        if (f)
            fclose(f);
        return -1;
    }
    fclose(f);
    return 0;
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

static long long number(const struct json_doc *d, int obj, const char *key)
{
    int v = json_find(d, obj, key);

    return v >= 0 && d->tok[v].type == JSMN_PRIMITIVE ? atoll(json_tokptr(d, v)) : -1;
}

/* Checks a JWT-bearer assertion; returns NULL when good, else why not. */
static const char *check_assertion(const char *jwt)
{
    const char *dot1 = strchr(jwt, '.'), *dot2 = dot1 ? strchr(dot1 + 1, '.') : NULL;
    unsigned char head[1024], claims[2048], sig[1024];
    long hlen, clen, slen;
    struct json_doc h, c;
    const char *why = NULL;
    long long iat, exp, now = (long long)time(NULL);
    EVP_MD_CTX *ctx;
    int aud, ok;

    if (dot1 == NULL || dot2 == NULL || strchr(dot2 + 1, '.') != NULL)
        return "assertion is not a JWT";
    if ((size_t)(dot1 - jwt) > 1300 || (size_t)(dot2 - dot1) > 2700 || strlen(dot2 + 1) > 1300 ||
        (hlen = b64url_decode(jwt, (size_t)(dot1 - jwt), head)) < 0 ||
        (clen = b64url_decode(dot1 + 1, (size_t)(dot2 - dot1 - 1), claims)) < 0 ||
        (slen = b64url_decode(dot2 + 1, strlen(dot2 + 1), sig)) < 0)
        return "assertion is not base64url";
    if (json_parse(&h, (char *)head, (size_t)hlen) != 0)
        return "JWT header is not JSON";
    if (!json_is(&h, json_find(&h, 0, "alg"), "RS256") || !json_is(&h, json_find(&h, 0, "typ"), "JWT") ||
        json_find(&h, 0, "kid") < 0)
        why = "JWT header must say alg RS256, typ JWT and name a kid";
    json_free(&h);
    if (why)
        return why;
    if (json_parse(&c, (char *)claims, (size_t)clen) != 0)
        return "JWT claims are not JSON";
    iat = number(&c, 0, "iat");
    exp = number(&c, 0, "exp");
    aud = json_find(&c, 0, "aud");
    if (json_find(&c, 0, "iss") < 0 || !json_is(&c, json_find(&c, 0, "scope"), SCOPE))
        why = "JWT claims need iss and the firebase.messaging scope";
    else if (aud < 0 || json_toklen(&c, aud) < 6 ||
             memcmp(json_tokptr(&c, aud) + json_toklen(&c, aud) - 6, "/token", 6))
        why = "JWT aud is not this token endpoint";
    else if (iat < now - 300 || iat > now + 300 || exp != iat + 3600)
        why = "JWT iat must be now and exp one hour later";
    json_free(&c);
    if (why)
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
    struct buf b = BUF_INIT;

    buf_addf(&b, "{\"error\":\"%s\",\"error_description\":\"%s\"}", error, desc);
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
    struct buf b = BUF_INIT;
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
        buf_addf(&b, "{\"access_token\":\"%s\",\"expires_in\":%u,\"token_type\":\"Bearer\"}", issue_token(),
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

static int v1_error(h2o_req_t *req, int http, const char *status, const char *code, const char *field,
                    const char *message, int retry_after)
{
    struct buf b = BUF_INIT;

    buf_addf(&b, "{\"error\":{\"code\":%d,\"message\":\"%s\",\"status\":\"%s\",\"details\":[", http, message, status);
    if (code)
        buf_addf(&b, "{\"@type\":\"type.googleapis.com/google.firebase.fcm.v1.FcmError\",\"errorCode\":\"%s\"}", code);
    if (field)
        buf_addf(&b,
                 "%s{\"@type\":\"type.googleapis.com/google.rpc.BadRequest\",\"fieldViolations\":[{\"field\":\"%s\","
                 "\"description\":\"%s\"}]}",
                 code ? "," : "", field, message);
    buf_adds(&b, "]}}");
    return mock_answer(req, http, retry_after, &b);
}

/* Data values must all be strings, as FCM requires. */
static int data_ok(const struct json_doc *d, int data)
{
    if (data < 0)
        return 1;
    if (d->tok[data].type != JSMN_OBJECT)
        return 0;
    for (int k = data + 1, m = 0; m < d->tok[data].size; m++, k = json_skip(d, k + 1))
        if (d->tok[k + 1].type != JSMN_STRING)
            return 0;
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
    if (mock_has_prefix(t, n, "refuse1") && e->attempts == 1)
        return v1_error(req, 401, "UNAUTHENTICATED", NULL, NULL, "Request had invalid authentication credentials.", 0),
               1;
    return 0;
}

int mock_v1_send(h2o_req_t *req)
{
    struct json_doc d;
    struct buf b = BUF_INIT, key = BUF_INIT;
    struct token_stat *e;
    int msg, target, data, is_token = 0, rc;

    mock.requests++;
    if (mock.first_request_ms == 0)
        mock.first_request_ms = uv_now(mock.loop);
    if (req->version >= 0x200)
        mock.http2_requests++;
    if (!bearer_ok(req)) {
        mock.v1_unauthorized++;
        return v1_error(req, 401, "UNAUTHENTICATED", NULL, NULL, "Request had invalid authentication credentials.", 0);
    }
    if (json_parse(&d, req->entity.base ? req->entity.base : "", req->entity.len) != 0 ||
        (msg = json_find(&d, 0, "message")) < 0 || d.tok[msg].type != JSMN_OBJECT)
        return v1_error(req, 400, "INVALID_ARGUMENT", "INVALID_ARGUMENT", "message", "no message object", 0);
    if ((target = json_find(&d, msg, "token")) >= 0) {
        is_token = 1;
    } else if ((target = json_find(&d, msg, "topic")) >= 0) {
        buf_adds(&key, "/topics/");
    } else if ((target = json_find(&d, msg, "condition")) < 0) {
        json_free(&d);
        return v1_error(req, 400, "INVALID_ARGUMENT", "INVALID_ARGUMENT", "message", "no token, topic or condition", 0);
    }
    buf_add(&key, json_tokptr(&d, target), json_toklen(&d, target));
    e = mock_stat(key.data, key.len);
    e->attempts++;
    mock.targets++;
    data = json_find(&d, msg, "data");
    if (!data_ok(&d, data)) {
        rc = v1_error(req, 400, "INVALID_ARGUMENT", "INVALID_ARGUMENT", "message.data",
                      "Invalid value at message.data: values must be strings", 0);
    } else if (!is_token || !(rc = prefixed_error(req, key.data, key.len, e))) {
        size_t dlen = 0, mlen;
        const char *dtext = data >= 0 ? json_raw(&d, data, &dlen) : NULL, *mtext = json_raw(&d, msg, &mlen);
        mock_record_delivery(e, dtext, dlen, mtext, mlen);
        buf_addf(&b, "{\"name\":\"projects/mock/messages/%llu\"}", (unsigned long long)mock.delivered);
        rc = mock_answer(req, 200, 0, &b);
    } else {
        rc = 0;
    }
    buf_free(&key);
    json_free(&d);
    return rc;
}
