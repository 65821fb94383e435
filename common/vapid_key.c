/*
 * common/vapid_key.c - reading and checking the VAPID key, its public
 * point in Web Push's raw form, and the subject's shape.
 *
 * The file is read by key_file_read into one buffer that is wiped once
 * OpenSSL has parsed it.  ES256 signs with P-256 only, so any other key is
 * refused here rather than by every push service.  The public point comes
 * from the key's x and y, so it is uncompressed whatever form the file
 * stored it in; its base64url is OpenSSL's base64 with the URL alphabet
 * and no padding (common/ links no h2o).
 */
#include "vapid_key.h"

#include <openssl/core_names.h>
#include <openssl/err.h>
#include <openssl/pem.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>

#include "key_file.h"

static int no_passphrase(char *buf, int size, int rwflag, void *u)
{
    (void)buf, (void)size, (void)rwflag, (void)u;
    return 0;
}

EVP_PKEY *vapid_key_parse(const char *text, size_t len, const char *path, char *err, size_t errlen)
{
    static const char rule[] = "expected a PEM EC P-256 private key, as `openssl ecparam -name prime256v1 -genkey "
                               "-noout` writes";
    BIO *bio;
    EVP_PKEY *key;
    char curve[64];

    if (len == 0) {
        snprintf(err, errlen, "--vapid-key: \"%s\" is empty", path);
        return NULL;
    }
    if (memmem(text, len, "-----BEGIN ", 11) == NULL) {
        snprintf(err, errlen, "--vapid-key: \"%s\" is not a PEM file (%s)", path, rule);
        return NULL;
    }
    if ((bio = BIO_new_mem_buf(text, (int)len)) == NULL) {
        snprintf(err, errlen, "--vapid-key: out of memory");
        return NULL;
    }
    /* Refused, never asked for: without the callback OpenSSL would prompt
     * on the terminal and the start would wait there. */
    key = PEM_read_bio_PrivateKey(bio, NULL, no_passphrase, NULL);
    BIO_free(bio);
    ERR_clear_error();
    if (key == NULL && (memmem(text, len, "ENCRYPTED", 9) != NULL)) {
        snprintf(err, errlen, "--vapid-key: \"%s\" is encrypted with a passphrase; give the key unencrypted", path);
        return NULL;
    }
    if (key == NULL) {
        snprintf(err, errlen, "--vapid-key: \"%s\" holds no readable private key (%s)", path, rule);
        return NULL;
    }
    if (EVP_PKEY_base_id(key) != EVP_PKEY_EC) {
        snprintf(err, errlen, "--vapid-key: \"%s\" is %s key; VAPID needs an EC P-256 key", path,
                 EVP_PKEY_base_id(key) == EVP_PKEY_RSA ? "an RSA" : "another kind of");
        EVP_PKEY_free(key);
        return NULL;
    }
    if (!key_file_is_p256(key, curve, sizeof(curve))) {
        snprintf(err, errlen, "--vapid-key: \"%s\" is an EC key on curve %s; VAPID needs P-256 (prime256v1)", path,
                 curve[0] ? curve : "(unknown)");
        EVP_PKEY_free(key);
        return NULL;
    }
    return key;
}

EVP_PKEY *vapid_key_load(const char *path, char *err, size_t errlen)
{
    char *data;
    EVP_PKEY *key = NULL;
    long len = key_file_read(path, "--vapid-key", "a VAPID key", &data, err, errlen);

    if (len >= 0)
        key = vapid_key_parse(data, (size_t)len, path, err, errlen);
    key_file_free(data);
    return key;
}

int p256_point(EVP_PKEY *key, unsigned char out[P256_POINT_LEN])
{
    BIGNUM *x = NULL, *y = NULL;
    char curve[64];
    int ok;

    ok = key != NULL && EVP_PKEY_base_id(key) == EVP_PKEY_EC && key_file_is_p256(key, curve, sizeof(curve)) &&
         EVP_PKEY_get_bn_param(key, OSSL_PKEY_PARAM_EC_PUB_X, &x) == 1 &&
         EVP_PKEY_get_bn_param(key, OSSL_PKEY_PARAM_EC_PUB_Y, &y) == 1 && BN_bn2binpad(x, out + 1, 32) == 32 &&
         BN_bn2binpad(y, out + 33, 32) == 32;
    out[0] = 0x04;
    BN_free(x);
    BN_free(y);
    ERR_clear_error();
    return ok ? 0 : -1;
}

int p256_point_b64url(EVP_PKEY *key, char out[P256_POINT_B64_LEN + 1])
{
    unsigned char point[P256_POINT_LEN], b64[4 * ((P256_POINT_LEN + 2) / 3) + 1];
    int n;

    if (p256_point(key, point) != 0)
        return -1;
    n = EVP_EncodeBlock(b64, point, P256_POINT_LEN);
    for (int i = 0; i < n && i < P256_POINT_B64_LEN; i++)
        out[i] = b64[i] == '+' ? '-' : b64[i] == '/' ? '_' : (char)b64[i];
    out[P256_POINT_B64_LEN] = '\0'; /* drops the one '=' that pads 65 bytes */
    return n == P256_POINT_B64_LEN + 1 ? 0 : -1;
}

int vapid_subject_ok(const char *s)
{
    size_t n = s ? strlen(s) : 0;
    const char *at, *host;

    if (n == 0 || n > VAPID_SUBJECT_MAX)
        return 0;
    for (size_t i = 0; i < n; i++)
        if ((unsigned char)s[i] <= 0x20 || (unsigned char)s[i] >= 0x7f)
            return 0;
    if (strncasecmp(s, "mailto:", 7) == 0) {
        /* local@domain: something on both sides of one '@'. */
        at = strchr(s + 7, '@');
        return at != NULL && at > s + 7 && at[1] != '\0' && strchr(at + 1, '@') == NULL;
    }
    if (strncasecmp(s, "https://", 8) == 0) {
        host = s + 8;
        return *host != '\0' && *host != '/' && *host != '?' && *host != '#' && *host != ':';
    }
    return 0;
}
