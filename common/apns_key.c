/*
 * common/apns_key.c - reading and checking the APNs .p8 signing key.
 *
 * The file is read by key_file_read into one buffer that is wiped once
 * OpenSSL has parsed it.  Only an EC private key on P-256 can sign ES256, so any
 * other key (RSA, another curve) is refused here rather than at Apple.
 */
#include "apns_key.h"

#include <openssl/err.h>
#include <openssl/pem.h>
#include <stdio.h>
#include <string.h>

#include "key_file.h"

static int no_passphrase(char *buf, int size, int rwflag, void *u)
{
    (void)buf, (void)size, (void)rwflag, (void)u;
    return 0;
}

int apns_id_ok(const char *s)
{
    size_t n = s ? strlen(s) : 0;

    return n == APNS_ID_LEN && strspn(s, "ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789") == n;
}

/* A bundle id: reverse-DNS, two labels or more of letters, digits and
 * hyphens (Apple allows nothing else), no label empty. */
static int bundle_id_ok(const char *s, size_t n)
{
    size_t labels = 1, len = 0;

    if (n == 0 || n > APNS_BUNDLE_ID_MAX)
        return 0;
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c == '.') {
            if (len == 0)
                return 0;
            labels++, len = 0;
        } else if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '-') {
            len++;
        } else {
            return 0;
        }
    }
    return len > 0 && labels >= 2;
}

int apns_topic_ok(const char *s, size_t n)
{
    /* What Apple appends to the bundle id for the push types that need it. */
    static const char *const suffixes[] = {".voip", ".complication", ".pushkit.fileprovider",
                                           ".push-type.liveactivity"};

    if (bundle_id_ok(s, n))
        return 1;
    for (size_t i = 0; i < sizeof(suffixes) / sizeof(suffixes[0]); i++) {
        size_t k = strlen(suffixes[i]);
        if (n > k && memcmp(s + n - k, suffixes[i], k) == 0 && bundle_id_ok(s, n - k))
            return 1;
    }
    return 0;
}

EVP_PKEY *apns_key_parse(const char *text, size_t len, const char *path, char *err, size_t errlen)
{
    BIO *bio;
    EVP_PKEY *key;
    char curve[64];

    if (len == 0) {
        snprintf(err, errlen, "--apns-key: \"%s\" is empty", path);
        return NULL;
    }
    if (memmem(text, len, "-----BEGIN ", 11) == NULL) {
        snprintf(err, errlen,
                 "--apns-key: \"%s\" is not a PEM file (Apple's .p8 key begins with -----BEGIN PRIVATE KEY-----)",
                 path);
        return NULL;
    }
    if ((bio = BIO_new_mem_buf(text, (int)len)) == NULL) {
        snprintf(err, errlen, "--apns-key: out of memory");
        return NULL;
    }
    /* A key under a passphrase is refused, never asked about: without this
     * callback OpenSSL would prompt on the terminal and the start (or a
     * reload) would wait there. */
    key = PEM_read_bio_PrivateKey(bio, NULL, no_passphrase, NULL);
    BIO_free(bio);
    ERR_clear_error();
    if (key == NULL && memmem(text, len, "ENCRYPTED PRIVATE KEY", 21) != NULL) {
        snprintf(err, errlen, "--apns-key: \"%s\" is encrypted with a passphrase; give Apple's .p8 as downloaded",
                 path);
        return NULL;
    }
    if (key == NULL) {
        snprintf(err, errlen, "--apns-key: \"%s\" holds no readable private key (expected Apple's .p8 PKCS#8 key)",
                 path);
        return NULL;
    }
    if (EVP_PKEY_base_id(key) != EVP_PKEY_EC) {
        int id = EVP_PKEY_base_id(key);
        snprintf(err, errlen, "--apns-key: \"%s\" is %s key; APNs needs the EC P-256 key from Apple's .p8 file", path,
                 id == EVP_PKEY_RSA       ? "an RSA"
                 : id == EVP_PKEY_ED25519 ? "an Ed25519"
                                          : "another kind of");
        EVP_PKEY_free(key);
        return NULL;
    }
    if (!key_file_is_p256(key, curve, sizeof(curve))) {
        snprintf(err, errlen, "--apns-key: \"%s\" is an EC key on curve %s; APNs needs P-256 (prime256v1)", path,
                 curve[0] ? curve : "(unknown)");
        EVP_PKEY_free(key);
        return NULL;
    }
    return key;
}

EVP_PKEY *apns_key_load(const char *path, char *err, size_t errlen)
{
    char *data;
    EVP_PKEY *key = NULL;
    long len = key_file_read(path, "--apns-key", "an APNs .p8 key", &data, err, errlen);

    if (len >= 0)
        key = apns_key_parse(data, (size_t)len, path, err, errlen);
    key_file_free(data);
    return key;
}
