/*
 * child/upstream/webpush/ece.c - RFC 8291 with OpenSSL 3's EVP interfaces:
 * EVP_PKEY_derive for the ECDH secret, HKDF-SHA256 (RFC 5869) on the "HMAC"
 * EVP_MAC for the keys, the "AES-128-GCM" EVP_CIPHER for the record.
 *
 * The derivation, in the RFC's names (4, and RFC 8188 2.2 and 2.3):
 *   ecdh_secret = ECDH(as_private, ua_public)
 *   PRK_key     = HKDF-Extract(salt=auth_secret, IKM=ecdh_secret)
 *   IKM         = HKDF-Expand(PRK_key, "WebPush: info" 0x00 ua_public as_public, 32)
 *   PRK         = HKDF-Extract(salt=salt, IKM)
 *   CEK         = HKDF-Expand(PRK, "Content-Encoding: aes128gcm" 0x00, 16)
 *   NONCE       = HKDF-Expand(PRK, "Content-Encoding: nonce" 0x00, 12)
 * The one record is number 0, so its nonce is NONCE itself.  Every
 * intermediate is wiped before return.
 */
#include "ece.h"

#include <errno.h>
#include <openssl/core_names.h>
#include <openssl/ec.h>
#include <openssl/err.h>
#include <openssl/obj_mac.h>
#include <openssl/params.h>
#include <openssl/rand.h>
#include <pthread.h>
#include <stdio.h>
#include <string.h>

#include "../jwt.h"

static const char key_label[] = "WebPush: info";           /* with its NUL: 14 bytes */
static const char cek_label[] = "Content-Encoding: aes128gcm"; /* 28 */
static const char nonce_label[] = "Content-Encoding: nonce";   /* 24 */

/* What every message needs, made once per process: the algorithms; P-256
 * itself, to check points against (EC_GROUP: making one per point cost more
 * than the ECDH); a P-256 key whose parameters the subscription's public
 * key copies; and a key generation context for the sender keys. */
static EVP_MAC_CTX *hmac_ctx;
static EVP_CIPHER *gcm_alg;
static EC_GROUP *p256;
static EVP_PKEY *p256_params;
static EVP_PKEY_CTX *keygen_ctx;

static int fetch_algs(void)
{
    if (hmac_ctx == NULL) {
        EVP_MAC *alg = EVP_MAC_fetch(NULL, "HMAC", NULL);
        OSSL_PARAM digest[] = {OSSL_PARAM_construct_utf8_string(OSSL_MAC_PARAM_DIGEST, (char *)"SHA256", 0),
                               OSSL_PARAM_construct_end()};
        if (alg != NULL && (hmac_ctx = EVP_MAC_CTX_new(alg)) != NULL && EVP_MAC_CTX_set_params(hmac_ctx, digest) != 1) {
            EVP_MAC_CTX_free(hmac_ctx);
            hmac_ctx = NULL;
        }
        EVP_MAC_free(alg); /* the context holds its own reference */
    }
    if (gcm_alg == NULL)
        gcm_alg = EVP_CIPHER_fetch(NULL, "AES-128-GCM", NULL);
    if (p256 == NULL)
        p256 = EC_GROUP_new_by_curve_name(NID_X9_62_prime256v1);
    if (p256_params == NULL)
        p256_params = EVP_PKEY_Q_keygen(NULL, NULL, "EC", "P-256");
    if (keygen_ctx == NULL && p256_params != NULL &&
        (keygen_ctx = EVP_PKEY_CTX_new_from_pkey(NULL, p256_params, NULL)) != NULL &&
        EVP_PKEY_keygen_init(keygen_ctx) != 1) {
        EVP_PKEY_CTX_free(keygen_ctx);
        keygen_ctx = NULL;
    }
    ERR_clear_error();
    return hmac_ctx != NULL && gcm_alg != NULL && p256 != NULL && keygen_ctx != NULL ? 0 : -1;
}

/* HMAC-SHA256(key, a || b) at out.  HKDF (RFC 5869) is two uses of it:
 * extract is HMAC(salt, IKM), and an expand to at most 32 bytes is the
 * first block, HMAC(PRK, info || 0x01).  One HMAC context per process,
 * keyed again for each step: OpenSSL's "HKDF" KDF fetches HMAC and SHA-256
 * and makes a context on every call, which cost more than the hashing. */

static int hmac(const unsigned char *key, size_t keylen, const void *a, size_t alen, const void *b, size_t blen,
                unsigned char out[32])
{
    size_t n = 0;

    return EVP_MAC_init(hmac_ctx, key, keylen, NULL) == 1 && EVP_MAC_update(hmac_ctx, a, alen) == 1 &&
                   (blen == 0 || EVP_MAC_update(hmac_ctx, b, blen) == 1) &&
                   EVP_MAC_final(hmac_ctx, out, &n, 32) == 1 && n == 32
               ? 0
               : -1;
}

static int extract(const unsigned char *salt, size_t saltlen, const unsigned char *ikm, size_t len,
                   unsigned char prk[32])
{
    return hmac(salt, saltlen, ikm, len, NULL, 0, prk);
}

static int expand(const unsigned char prk[32], const void *info, size_t infolen, unsigned char *out, size_t len)
{
    static const unsigned char first = 0x01;
    unsigned char t[32];
    int rc = hmac(prk, 32, info, infolen, &first, 1, t);

    memcpy(out, t, len);
    OPENSSL_cleanse(t, sizeof(t));
    return rc;
}

/* Whether p is an uncompressed point on P-256.  On the curve and not the
 * point at infinity (which has no uncompressed form) is the whole check:
 * P-256's cofactor is 1, so such a point has the group's order, and the
 * full check's scalar multiplication, which costs as much as the ECDH
 * itself, would prove nothing more. */
static int point_ok(const unsigned char p[P256_POINT_LEN])
{
    EC_POINT *q;
    int ok;

    if (p[0] != 0x04 || fetch_algs() != 0 || (q = EC_POINT_new(p256)) == NULL)
        return 0;
    ok = EC_POINT_oct2point(p256, q, p, P256_POINT_LEN, NULL) == 1 && EC_POINT_is_on_curve(p256, q, NULL) == 1 &&
         !EC_POINT_is_at_infinity(p256, q);
    EC_POINT_free(q);
    ERR_clear_error();
    return ok;
}

/* The public key at the point p, or NULL when p is not a point on P-256:
 * OpenSSL's import of the encoded point refuses one off the curve (as
 * EC_POINT_oct2point does), so point_ok here would be a second check. */
static EVP_PKEY *point_key(const unsigned char p[P256_POINT_LEN])
{
    EVP_PKEY *key = p[0] == 0x04 && fetch_algs() == 0 ? EVP_PKEY_new() : NULL;

    if (key != NULL && (EVP_PKEY_copy_parameters(key, p256_params) != 1 ||
                        EVP_PKEY_set1_encoded_public_key(key, p, P256_POINT_LEN) != 1)) {
        EVP_PKEY_free(key);
        key = NULL;
    }
    ERR_clear_error();
    return key;
}

/* The sender's public point, uncompressed, at out. */
static int public_point(EVP_PKEY *key, unsigned char out[P256_POINT_LEN])
{
    size_t n = 0;
    int ok = EVP_PKEY_get_octet_string_param(key, OSSL_PKEY_PARAM_ENCODED_PUBLIC_KEY, out, P256_POINT_LEN, &n) == 1 &&
             n == P256_POINT_LEN && out[0] == 0x04;

    ERR_clear_error();
    return ok ? 0 : p256_point(key, out); /* a key whose encoding is not the uncompressed one */
}

static int keys_decode(const char *p256dh, size_t plen, const char *auth, size_t alen, struct ece_keys *k,
                       int check, char *err, size_t errlen)
{
    unsigned char buf[P256_POINT_LEN + 1];
    int n;

    if ((n = jwt_base64url_decode(p256dh, plen, buf, sizeof(buf))) == -EINVAL) {
        snprintf(err, errlen, "keys.p256dh is not base64url");
        return -EINVAL;
    }
    if (n != P256_POINT_LEN || buf[0] != 0x04) {
        if (n == -EMSGSIZE)
            snprintf(err, errlen, "keys.p256dh is longer than a P-256 public key (65 bytes, uncompressed)");
        else
            snprintf(err, errlen, "keys.p256dh is %d bytes%s; it must be an uncompressed P-256 public key (65 bytes "
                     "beginning with 0x04)", n, n == P256_POINT_LEN ? " not beginning with 0x04" : "");
        return -EINVAL;
    }
    if (check && !point_ok(buf)) {
        snprintf(err, errlen, "keys.p256dh is not a point on the P-256 curve");
        return -EINVAL;
    }
    memcpy(k->p256dh, buf, P256_POINT_LEN);
    if ((n = jwt_base64url_decode(auth, alen, k->auth, sizeof(k->auth))) != ECE_AUTH_LEN) {
        if (n == -EINVAL)
            snprintf(err, errlen, "keys.auth is not base64url");
        else if (n == -EMSGSIZE)
            snprintf(err, errlen, "keys.auth is longer than 16 bytes; the auth secret is 16 bytes");
        else
            snprintf(err, errlen, "keys.auth is %d bytes; the auth secret is 16 bytes", n);
        OPENSSL_cleanse(k->auth, sizeof(k->auth));
        return -EINVAL;
    }
    return 0;
}

int ece_keys_parse(const char *p256dh, size_t plen, const char *auth, size_t alen, struct ece_keys *k, char *err,
                   size_t errlen)
{
    return keys_decode(p256dh, plen, auth, alen, k, 1, err, errlen);
}

int ece_keys_decode(const char *p256dh, size_t plen, const char *auth, size_t alen, struct ece_keys *k, char *err,
                    size_t errlen)
{
    return keys_decode(p256dh, plen, auth, alen, k, 0, err, errlen);
}

/* The ECDH secret of sender and the point ua. */
static int agree(EVP_PKEY *sender, const unsigned char ua[P256_POINT_LEN], unsigned char secret[32])
{
    EVP_PKEY *peer = point_key(ua);
    EVP_PKEY_CTX *ctx = peer != NULL ? EVP_PKEY_CTX_new_from_pkey(NULL, sender, NULL) : NULL;
    size_t len = 32;
    int ok;

    /* point_key has checked the peer: derive_set_peer's own check would be a
     * second full one. */
    ok = ctx != NULL && EVP_PKEY_derive_init(ctx) == 1 && EVP_PKEY_derive_set_peer_ex(ctx, peer, 0) == 1 &&
         EVP_PKEY_derive(ctx, secret, &len) == 1 && len == 32;
    EVP_PKEY_CTX_free(ctx);
    EVP_PKEY_free(peer);
    ERR_clear_error();
    return ok ? 0 : -1;
}

/* The keys of the message: everything up to the CEK and the NONCE. */
static int derive(const struct ece_keys *k, EVP_PKEY *sender, const unsigned char as_public[P256_POINT_LEN],
                  const unsigned char salt[ECE_SALT_LEN], struct ece_trace *t)
{
    unsigned char info[sizeof(key_label) + 2 * P256_POINT_LEN];

    memcpy(info, key_label, sizeof(key_label));
    memcpy(info + sizeof(key_label), k->p256dh, P256_POINT_LEN);
    memcpy(info + sizeof(key_label) + P256_POINT_LEN, as_public, P256_POINT_LEN);
    if (agree(sender, k->p256dh, t->ecdh_secret) != 0)
        return -EINVAL;
    if (extract(k->auth, ECE_AUTH_LEN, t->ecdh_secret, sizeof(t->ecdh_secret), t->prk_key) != 0 ||
        expand(t->prk_key, info, sizeof(info), t->ikm, sizeof(t->ikm)) != 0 ||
        extract(salt, ECE_SALT_LEN, t->ikm, sizeof(t->ikm), t->prk) != 0 ||
        expand(t->prk, cek_label, sizeof(cek_label), t->cek, sizeof(t->cek)) != 0 ||
        expand(t->prk, nonce_label, sizeof(nonce_label), t->nonce, sizeof(t->nonce)) != 0)
        return -ENOMEM;
    return 0;
}

/* Writes the record (plaintext, 0x02, tag) at out: len + 1 + 16 bytes. */
static int seal(const struct ece_trace *t, const unsigned char *plain, size_t len, unsigned char *out)
{
    static const unsigned char last = 0x02;
    EVP_CIPHER_CTX *ctx = EVP_CIPHER_CTX_new();
    int n = 0, m = 0, f = 0, ok;

    ok = ctx != NULL && EVP_EncryptInit_ex2(ctx, gcm_alg, t->cek, t->nonce, NULL) == 1 &&
         EVP_EncryptUpdate(ctx, out, &n, plain, (int)len) == 1 &&
         EVP_EncryptUpdate(ctx, out + n, &m, &last, 1) == 1 && EVP_EncryptFinal_ex(ctx, out + n + m, &f) == 1 &&
         (size_t)(n + m + f) == len + 1 &&
         EVP_CIPHER_CTX_ctrl(ctx, EVP_CTRL_GCM_GET_TAG, ECE_TAG_LEN, out + len + 1) == 1;
    EVP_CIPHER_CTX_free(ctx);
    return ok ? 0 : -1;
}

/* A fresh random salt.  RAND_bytes costs about as much for 1 KiB as for
 * 16 bytes, so salts are drawn 64 at a time into a pool of the process;
 * each is handed out once and wiped.  A child made by fork() empties the
 * pool it inherited (pthread_atfork: asking getpid() each time was a system
 * call a message), so two processes never hand out the same salts. */
#define SALT_POOL 64
static unsigned char salt_pool[SALT_POOL * ECE_SALT_LEN];
static size_t salts_left;
static pthread_once_t salt_once = PTHREAD_ONCE_INIT;

static void salt_pool_forget(void)
{
    OPENSSL_cleanse(salt_pool, sizeof(salt_pool));
    salts_left = 0;
}

static void salt_pool_init(void)
{
    pthread_atfork(NULL, NULL, salt_pool_forget);
}

static int fresh_salt(unsigned char out[ECE_SALT_LEN])
{
    pthread_once(&salt_once, salt_pool_init);
    if (salts_left == 0) {
        if (RAND_bytes(salt_pool, sizeof(salt_pool)) != 1)
            return -1;
        salts_left = SALT_POOL;
    }
    salts_left--;
    memcpy(out, salt_pool + salts_left * ECE_SALT_LEN, ECE_SALT_LEN);
    OPENSSL_cleanse(salt_pool + salts_left * ECE_SALT_LEN, ECE_SALT_LEN);
    return 0;
}

int ece_encrypt(const struct ece_keys *k, const void *plain, size_t len, EVP_PKEY *sender, const unsigned char *salt,
                struct buf *out, struct ece_trace *trace, char *err, size_t errlen)
{
    unsigned char new_salt[ECE_SALT_LEN], *h;
    struct ece_trace t;
    EVP_PKEY *own = NULL;
    size_t start = out->len;
    int rc;

    if (len > ECE_MAX_PLAINTEXT) {
        snprintf(err, errlen, "the payload is %zu bytes; one Web Push message holds at most %d", len,
                 ECE_MAX_PLAINTEXT);
        return -EMSGSIZE;
    }
    if (fetch_algs() != 0 || out->failed || buf_reserve(out, ECE_HEADER_LEN + len + 1 + ECE_TAG_LEN) != 0) {
        snprintf(err, errlen, "encryption failed: out of memory or no HMAC-SHA256 and AES-128-GCM in OpenSSL");
        ERR_clear_error();
        return -ENOMEM;
    }
    if (salt == NULL) {
        if (fresh_salt(new_salt) != 0) {
            snprintf(err, errlen, "encryption failed: OpenSSL made no random salt");
            ERR_clear_error();
            return -ENOMEM;
        }
        salt = new_salt;
    }
    if (sender == NULL && (EVP_PKEY_keygen(keygen_ctx, &own) != 1 || (sender = own) == NULL)) {
        snprintf(err, errlen, "encryption failed: OpenSSL made no P-256 key");
        ERR_clear_error();
        return -ENOMEM;
    }
    /* The header, written in place: salt, rs, idlen, keyid. */
    h = (unsigned char *)out->data + start;
    memcpy(h, salt, ECE_SALT_LEN);
    h[16] = (ECE_RS >> 24) & 0xff, h[17] = (ECE_RS >> 16) & 0xff, h[18] = (ECE_RS >> 8) & 0xff, h[19] = ECE_RS & 0xff;
    h[20] = P256_POINT_LEN;
    if (public_point(sender, h + 21) != 0) {
        snprintf(err, errlen, "the sender key is not a P-256 key");
        rc = -EINVAL;
    } else if ((rc = derive(k, sender, h + 21, salt, &t)) != 0) {
        snprintf(err, errlen, rc == -EINVAL ? "ECDH failed: keys.p256dh or the sender key is not a usable P-256 key"
                                            : "encryption failed: HMAC-SHA256 in OpenSSL failed");
    } else if (seal(&t, plain, len, h + ECE_HEADER_LEN) != 0) {
        snprintf(err, errlen, "encryption failed: AES-128-GCM in OpenSSL failed");
        rc = -ENOMEM;
    } else {
        out->len = start + ECE_HEADER_LEN + len + 1 + ECE_TAG_LEN;
        if (trace != NULL)
            *trace = t;
    }
    OPENSSL_cleanse(&t, sizeof(t));
    OPENSSL_cleanse(new_salt, sizeof(new_salt));
    EVP_PKEY_free(own);
    ERR_clear_error();
    return rc;
}
