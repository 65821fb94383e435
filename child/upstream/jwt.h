/*
 * child/upstream/jwt.h - JSON Web Tokens, signed (RFC 7515 compact form), for
 * every provider that authenticates with one: the FCM v1 OAuth2 assertion
 * (RS256), the APNs provider token and the Web Push VAPID token (ES256);
 * and base64url both ways, which JOSE and Web Push keys are written in.
 *
 * A caller brings its key and its claims; this builds the header, the
 * base64url parts, the signing input and the signature, in JOSE's form.
 */
#ifndef FCMD_CHILD_UPSTREAM_JWT_H
#define FCMD_CHILD_UPSTREAM_JWT_H

#include <openssl/evp.h>
#include <stddef.h>

#include "../core/buf.h"

enum jwt_alg {
    JWT_RS256, /* RSASSA-PKCS1-v1_5 with SHA-256: an RSA key */
    JWT_ES256, /* ECDSA with SHA-256: a P-256 key, the signature as r||s, 32 bytes each */
};

/* The JOSE header: "alg", then "typ" and "kid" when they are not NULL, in
 * that order. */
struct jwt_header {
    enum jwt_alg alg;
    const char *typ;
    const char *kid;
};

/* Appends header.claims.signature to out: h and claims (a JSON object's
 * text, len bytes) in base64url, and h->alg's signature over both with key.
 * Returns 0, or -1 when the key is not of h->alg's kind, or signing or
 * memory failed. */
int jwt_sign(EVP_PKEY *key, const struct jwt_header *h, const char *claims, size_t len, struct buf *out);

/* Appends the base64url form (no padding) of data to out. */
void jwt_base64url(struct buf *out, const unsigned char *data, size_t len);

/* Decodes the base64url text s (n bytes) into out (cap bytes): the URL
 * alphabet only ('+' and '/' are refused), without padding or with the
 * '=' that makes its length a multiple of 4.  Returns the decoded length,
 * -EINVAL when s is not base64url, or -EMSGSIZE when it decodes to more
 * than cap bytes. */
int jwt_base64url_decode(const char *s, size_t n, unsigned char *out, size_t cap);

#endif
