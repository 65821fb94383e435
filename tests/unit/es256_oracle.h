/*
 * tests/unit/es256_oracle.h - the tests' own reading of an ES256 JWT: their
 * own base64url decoder, JOSE's r||s turned back into DER, OpenSSL's
 * verifier and jansson for the JSON, so fcmd's JWT code is never its own
 * judge.  Include after cmocka_all.h and oracle.h.
 */
#ifndef FCMD_TESTS_ES256_ORACLE_H
#define FCMD_TESTS_ES256_ORACLE_H

#include <openssl/ecdsa.h>
#include <openssl/evp.h>
#include <string.h>

#include "oracle.h"

/* base64url text (n bytes) into out; fails the test on a character outside
 * the URL alphabet.  Returns the decoded length. */
static inline size_t b64url_decode(const char *s, size_t n, unsigned char *out)
{
    static const char alphabet[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    unsigned v = 0;
    int bits = 0;
    size_t o = 0;

    for (size_t i = 0; i < n; i++) {
        const char *p = strchr(alphabet, s[i]);
        if (p == NULL || s[i] == '\0')
            fail_msg("'%c' is not base64url", s[i]);
        v = v << 6 | (unsigned)(p - alphabet);
        bits += 6;
        if (bits >= 8) {
            bits -= 8;
            out[o++] = (unsigned char)(v >> bits);
        }
    }
    return o;
}

/* Checks jwt's signature with key and returns its decoded parts. */
static inline void verify_jwt(const char *jwt, EVP_PKEY *key, json_t **head, json_t **claims)
{
    const char *dot1 = strchr(jwt, '.'), *dot2 = dot1 ? strchr(dot1 + 1, '.') : NULL;
    unsigned char buf[1024], raw[128], *der = NULL;
    size_t n;
    ECDSA_SIG *sig = ECDSA_SIG_new();
    EVP_MD_CTX *ctx = EVP_MD_CTX_new();
    int derlen;

    assert_non_null(dot2);
    assert_null(strchr(dot2 + 1, '.'));
    n = b64url_decode(jwt, (size_t)(dot1 - jwt), buf);
    *head = oracle_decode((char *)buf, n);
    n = b64url_decode(dot1 + 1, (size_t)(dot2 - dot1 - 1), buf);
    *claims = oracle_decode((char *)buf, n);
    assert_int_equal(b64url_decode(dot2 + 1, strlen(dot2 + 1), raw), 64);
    assert_int_equal(ECDSA_SIG_set0(sig, BN_bin2bn(raw, 32, NULL), BN_bin2bn(raw + 32, 32, NULL)), 1);
    derlen = i2d_ECDSA_SIG(sig, &der);
    assert_true(derlen > 0);
    assert_int_equal(EVP_DigestVerifyInit(ctx, NULL, EVP_sha256(), NULL, key), 1);
    if (EVP_DigestVerify(ctx, der, (size_t)derlen, (const unsigned char *)jwt, (size_t)(dot2 - jwt)) != 1)
        fail_msg("the ES256 signature does not verify");
    OPENSSL_free(der);
    ECDSA_SIG_free(sig);
    EVP_MD_CTX_free(ctx);
}

#endif
