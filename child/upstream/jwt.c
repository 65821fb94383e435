/*
 * child/upstream/jwt.c - RS256 JSON Web Tokens with OpenSSL's EVP API.
 *
 * The assertion is built fresh for each token request: a header naming the
 * key, claims binding it to the token endpoint and the FCM scope for one
 * hour, and an RSA-SHA256 signature over both.
 */
#include "jwt.h"
#include "../../common/service_account.h"

#include <openssl/evp.h>
#include <stdlib.h>
#include <string.h>

void jwt_base64url(struct buf *out, const unsigned char *data, size_t len)
{
    static const char alphabet[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    size_t i = 0;

    if (buf_reserve(out, (len + 2) / 3 * 4) != 0)
        return;
    for (; i + 2 < len; i += 3) {
        unsigned v = (unsigned)data[i] << 16 | (unsigned)data[i + 1] << 8 | data[i + 2];
        char q[4] = {alphabet[v >> 18], alphabet[(v >> 12) & 63], alphabet[(v >> 6) & 63], alphabet[v & 63]};
        buf_add(out, q, 4);
    }
    if (len - i == 1) {
        unsigned v = (unsigned)data[i] << 16;
        char q[2] = {alphabet[v >> 18], alphabet[(v >> 12) & 63]};
        buf_add(out, q, 2);
    } else if (len - i == 2) {
        unsigned v = (unsigned)data[i] << 16 | (unsigned)data[i + 1] << 8;
        char q[3] = {alphabet[v >> 18], alphabet[(v >> 12) & 63], alphabet[(v >> 6) & 63]};
        buf_add(out, q, 3);
    }
}

static int sign(EVP_PKEY *key, const char *msg, size_t len, struct buf *out)
{
    EVP_MD_CTX *ctx = EVP_MD_CTX_new();
    unsigned char *sig = NULL;
    size_t siglen = 0;
    int rc = -1;

    if (ctx != NULL && EVP_DigestSignInit(ctx, NULL, EVP_sha256(), NULL, key) == 1 &&
        EVP_DigestSign(ctx, NULL, &siglen, (const unsigned char *)msg, len) == 1 && (sig = malloc(siglen)) != NULL &&
        EVP_DigestSign(ctx, sig, &siglen, (const unsigned char *)msg, len) == 1) {
        jwt_base64url(out, sig, siglen);
        rc = out->failed ? -1 : 0;
    }
    free(sig);
    EVP_MD_CTX_free(ctx);
    return rc;
}

int jwt_make(const struct service_account *sa, time_t now, struct buf *out)
{
    struct buf header = BUF_INIT, claims = BUF_INIT;
    size_t start = out->len;
    int rc;

    buf_adds(&header, "{\"alg\":\"RS256\",\"typ\":\"JWT\",\"kid\":");
    buf_add_json_string(&header, sa->private_key_id, strlen(sa->private_key_id));
    buf_adds(&header, "}");
    buf_adds(&claims, "{\"iss\":");
    buf_add_json_string(&claims, sa->client_email, strlen(sa->client_email));
    buf_adds(&claims, ",\"scope\":\"" JWT_SCOPE "\",\"aud\":");
    buf_add_json_string(&claims, sa->token_uri, strlen(sa->token_uri));
    buf_addf(&claims, ",\"iat\":%lld,\"exp\":%lld}", (long long)now, (long long)now + JWT_LIFETIME);
    jwt_base64url(out, (unsigned char *)header.data, header.len);
    buf_add(out, ".", 1);
    jwt_base64url(out, (unsigned char *)claims.data, claims.len);
    rc = header.failed || claims.failed || out->failed ? -1 : 0;
    if (rc == 0) {
        size_t signed_len = out->len - start;
        /* Sign a copy: appending the signature may move out->data. */
        char *msg = malloc(signed_len);
        rc = -1;
        if (msg != NULL) {
            memcpy(msg, out->data + start, signed_len);
            buf_add(out, ".", 1);
            rc = sign(sa->key, msg, signed_len, out);
            free(msg);
        }
    }
    buf_free(&header);
    buf_free(&claims);
    return rc;
}
