/*
 * child/upstream/jwt.c - JWS compact serialisation with OpenSSL's EVP API.
 *
 * The signing input is the two base64url parts as they stand in out, signed
 * before anything more is appended to out.  EVP gives an ECDSA signature in
 * DER; JOSE wants the raw r||s, so ES256 converts it.  base64url is
 * libh2o's, the one header of h2o's this room may include.
 */
#include "jwt.h"

#include <errno.h>
#include <h2o/string_.h>
#include <openssl/crypto.h>
#include <openssl/ecdsa.h>
#include <stdlib.h>
#include <string.h>

static const struct {
    const char *name;     /* the header's "alg" */
    const char *key_type; /* EVP_PKEY_is_a's name of the key it signs with */
} algs[] = {
    [JWT_RS256] = {"RS256", "RSA"},
    [JWT_ES256] = {"ES256", "EC"},
};

void jwt_base64url(struct buf *out, const unsigned char *data, size_t len)
{
    /* The capacity counts the NUL h2o ends with; url mode has no padding. */
    if (buf_reserve(out, h2o_base64_encode_capacity(len)) != 0)
        return;
    out->len += h2o_base64_encode(out->data + out->len, data, len, 1);
}

int jwt_base64url_decode(const char *s, size_t n, unsigned char *out, size_t cap)
{
    static const char alphabet[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    size_t len;
    h2o_iovec_t d;

    /* Padding only where it completes the last group of four. */
    if (n % 4 == 0 && n > 0 && s[n - 1] == '=')
        n -= n >= 2 && s[n - 2] == '=' ? 2 : 1;
    /* h2o's decoder also takes '+' and '/', which base64url has not. */
    for (size_t i = 0; i < n; i++)
        if (s[i] == '\0' || strchr(alphabet, s[i]) == NULL)
            return -EINVAL;
    if (n % 4 == 1)
        return -EINVAL;
    len = n / 4 * 3 + (n % 4 == 0 ? 0 : n % 4 - 1);
    if (len > cap)
        return -EMSGSIZE;
    if ((d = h2o_decode_base64url(NULL, s, n)).base == NULL)
        return -EINVAL;
    if (d.len == len)
        memcpy(out, d.base, len);
    /* An auth secret goes through here: no copy of it is left behind. */
    OPENSSL_cleanse(d.base, d.len);
    free(d.base);
    return d.len == len ? (int)len : -EINVAL;
}

/* The DER ECDSA signature as JOSE wants it: r and s, 32 bytes each. */
static int der_to_raw(const unsigned char *der, size_t len, unsigned char raw[64])
{
    ECDSA_SIG *sig = d2i_ECDSA_SIG(NULL, &der, (long)len);
    const BIGNUM *r, *s;
    int ok;

    if (sig == NULL)
        return -1;
    ECDSA_SIG_get0(sig, &r, &s);
    ok = BN_bn2binpad(r, raw, 32) == 32 && BN_bn2binpad(s, raw + 32, 32) == 32;
    ECDSA_SIG_free(sig);
    return ok ? 0 : -1;
}

/* Appends "." and alg's signature over out's bytes from start on. */
static int sign(EVP_PKEY *key, enum jwt_alg alg, struct buf *out, size_t start)
{
    const unsigned char *msg = (const unsigned char *)out->data + start, *part;
    size_t len = out->len - start, siglen = 0;
    EVP_MD_CTX *ctx = EVP_MD_CTX_new();
    unsigned char *sig = NULL, raw[64];
    int ok, rc = -1;

    ok = ctx != NULL && EVP_DigestSignInit(ctx, NULL, EVP_sha256(), NULL, key) == 1 &&
         EVP_DigestSign(ctx, NULL, &siglen, msg, len) == 1 && (sig = malloc(siglen)) != NULL &&
         EVP_DigestSign(ctx, sig, &siglen, msg, len) == 1;
    part = sig;
    if (ok && alg == JWT_ES256) {
        ok = der_to_raw(sig, siglen, raw) == 0;
        part = raw;
        siglen = sizeof(raw);
    }
    if (ok) {
        /* msg is not read again: appending may move out->data. */
        buf_add(out, ".", 1);
        jwt_base64url(out, part, siglen);
        rc = out->failed ? -1 : 0;
    }
    free(sig);
    EVP_MD_CTX_free(ctx);
    return rc;
}

int jwt_sign(EVP_PKEY *key, const struct jwt_header *h, const char *claims, size_t len, struct buf *out)
{
    struct buf head = BUF_INIT;
    size_t start = out->len;
    int rc = -1;

    buf_addf(&head, "{\"alg\":\"%s\"", algs[h->alg].name);
    if (h->typ != NULL) {
        buf_adds(&head, ",\"typ\":");
        buf_add_json_string(&head, h->typ, strlen(h->typ));
    }
    if (h->kid != NULL) {
        buf_adds(&head, ",\"kid\":");
        buf_add_json_string(&head, h->kid, strlen(h->kid));
    }
    buf_adds(&head, "}");
    if (!head.failed && EVP_PKEY_is_a(key, algs[h->alg].key_type)) {
        jwt_base64url(out, (const unsigned char *)head.data, head.len);
        buf_add(out, ".", 1);
        jwt_base64url(out, (const unsigned char *)claims, len);
        if (!out->failed)
            rc = sign(key, h->alg, out, start);
    }
    buf_free(&head);
    return rc;
}
