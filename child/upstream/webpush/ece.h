/*
 * child/upstream/webpush/ece.h - Web Push message encryption (RFC 8291):
 * the aes128gcm content coding of RFC 8188 with keys agreed by P-256 ECDH
 * between a sender key made for the message and the subscription's key.
 *
 * The body is a header (salt 16, rs 4 = 4096, idlen 1 = 65, keyid = the
 * sender's public point) and one record: the plaintext, the last-record
 * delimiter 0x02, encrypted with AES-128-GCM, then its 16-byte tag.
 *
 * How much plaintext fits: RFC 8030 (7.2) obliges a push service to take
 * 4096 bytes of body and no more, so RFC 8291 (4) counts from the body,
 * not from the record size: 4096 - 86 header - 1 delimiter - 16 tag = 3993
 * bytes.  (The record alone, rs 4096, would hold 4096 - 16 - 1 = 4079; a
 * body that large is 4182 bytes, which a push service may refuse.)
 */
#ifndef FCMD_CHILD_UPSTREAM_WEBPUSH_ECE_H
#define FCMD_CHILD_UPSTREAM_WEBPUSH_ECE_H

#include <openssl/evp.h>
#include <stddef.h>

#include "../../../common/vapid_key.h"
#include "../../core/buf.h"

#define ECE_SALT_LEN 16
#define ECE_AUTH_LEN 16
#define ECE_TAG_LEN 16
#define ECE_RS 4096
#define ECE_HEADER_LEN (ECE_SALT_LEN + 4 + 1 + P256_POINT_LEN) /* 86 */
#define ECE_MAX_BODY 4096
#define ECE_MAX_PLAINTEXT (ECE_MAX_BODY - ECE_HEADER_LEN - 1 - ECE_TAG_LEN) /* 3993 */

/* A subscription's keys, decoded and checked. */
struct ece_keys {
    unsigned char p256dh[P256_POINT_LEN]; /* the user agent's public point */
    unsigned char auth[ECE_AUTH_LEN];     /* the auth secret */
};

/* Every value the derivation makes, in RFC 8291's names, for the tests to
 * hold against the RFC's example. */
struct ece_trace {
    unsigned char ecdh_secret[32];
    unsigned char prk_key[32];
    unsigned char ikm[32];
    unsigned char prk[32];
    unsigned char cek[16];
    unsigned char nonce[12];
};

/* Decodes a subscription's "p256dh" and "auth" (base64url) into k and
 * checks them: p256dh an uncompressed point on P-256, auth 16 bytes.
 * Returns 0, or -EINVAL with the reason in err (which names the key, never
 * its value). */
int ece_keys_parse(const char *p256dh, size_t plen, const char *auth, size_t alen, struct ece_keys *k, char *err,
                   size_t errlen);

/* The same decoding and lengths without the check that p256dh is on the
 * curve, for keys checked at intake: ece_encrypt's import of the point
 * refuses one that is not (-EINVAL). */
int ece_keys_decode(const char *p256dh, size_t plen, const char *auth, size_t alen, struct ece_keys *k, char *err,
                    size_t errlen);

/* Appends to out the aes128gcm body of the plaintext (len bytes) for k.
 * sender (an EC P-256 private key) and salt (ECE_SALT_LEN bytes) are for
 * tests; NULL makes a fresh key and a fresh random salt, as every message
 * must have.  trace, when not NULL, gets the derived values.  Returns 0, or
 * with the reason in err: -EMSGSIZE when len is over ECE_MAX_PLAINTEXT,
 * -EINVAL when k->p256dh or sender is not a P-256 key, -ENOMEM when memory
 * or OpenSSL failed.  out is unchanged on failure. */
int ece_encrypt(const struct ece_keys *k, const void *plain, size_t len, EVP_PKEY *sender, const unsigned char *salt,
                struct buf *out, struct ece_trace *trace, char *err, size_t errlen);

#endif
