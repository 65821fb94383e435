/*
 * tests/integration/webpush_tool.c - fcmd's Web Push crypto on the command
 * line, for test_webpush_crypto.py to hand to an independent implementation.
 * Built only for the tests (make integration), from fcmd's own objects.
 *
 *   webpush_tool encrypt P256DH AUTH        the plaintext on stdin; prints
 *                                           the aes128gcm body, base64url
 *   webpush_tool vapid KEY SUBJECT URL NOW  prints the Authorization value
 *                                           for a request to URL at NOW
 *   webpush_tool public-key KEY             prints the key's public point
 *
 * A refusal prints fcmd's reason on stderr and exits 1; bad usage exits 2.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../../child/upstream/jwt.h"
#include "../../child/upstream/webpush/ece.h"
#include "../../child/upstream/webpush/vapid.h"
#include "../../common/vapid_key.h"

static int encrypt(const char *p256dh, const char *auth)
{
    struct ece_keys k;
    struct buf in = BUF_INIT, body = BUF_INIT, text = BUF_INIT;
    char err[256], chunk[4096];
    size_t n;
    int rc;

    if (ece_keys_parse(p256dh, strlen(p256dh), auth, strlen(auth), &k, err, sizeof(err)) != 0) {
        fprintf(stderr, "%s\n", err);
        return 1;
    }
    while ((n = fread(chunk, 1, sizeof(chunk), stdin)) > 0)
        buf_add(&in, chunk, n);
    if ((rc = ece_encrypt(&k, in.data, in.len, NULL, NULL, &body, NULL, err, sizeof(err))) == 0) {
        jwt_base64url(&text, (const unsigned char *)body.data, body.len);
        printf("%.*s\n", (int)text.len, text.data);
    } else {
        fprintf(stderr, "%s\n", err);
    }
    buf_free(&in);
    buf_free(&body);
    buf_free(&text);
    return rc == 0 ? 0 : 1;
}

static int vapid(const char *path, const char *subject, const char *url, const char *now)
{
    char err[512], origin[VAPID_ORIGIN_MAX];
    EVP_PKEY *key = vapid_key_load(path, err, sizeof(err));
    struct vapid *v;
    const char *h;
    int rc = 1;

    if (key == NULL) {
        fprintf(stderr, "%s\n", err);
        return 1;
    }
    if (!vapid_subject_ok(subject))
        fprintf(stderr, "--vapid-subject: \"%s\" is not %s\n", subject, VAPID_SUBJECT_RULE);
    else if (vapid_origin(url, strlen(url), origin, sizeof(origin)) < 0)
        fprintf(stderr, "the endpoint has no origin\n");
    else if ((v = vapid_create(key, subject)) != NULL) {
        if ((h = vapid_authorization(v, origin, (time_t)strtoll(now, NULL, 10))) != NULL) {
            printf("%s\n", h);
            rc = 0;
        }
        vapid_free(v);
    }
    EVP_PKEY_free(key);
    return rc;
}

static int public_key(const char *path)
{
    char err[512], pub[P256_POINT_B64_LEN + 1];
    EVP_PKEY *key = vapid_key_load(path, err, sizeof(err));
    int rc = 1;

    if (key == NULL)
        fprintf(stderr, "%s\n", err);
    else if (p256_point_b64url(key, pub) == 0) {
        printf("%s\n", pub);
        rc = 0;
    }
    EVP_PKEY_free(key);
    return rc;
}

int main(int argc, char **argv)
{
    if (argc == 4 && strcmp(argv[1], "encrypt") == 0)
        return encrypt(argv[2], argv[3]);
    if (argc == 6 && strcmp(argv[1], "vapid") == 0)
        return vapid(argv[2], argv[3], argv[4], argv[5]);
    if (argc == 3 && strcmp(argv[1], "public-key") == 0)
        return public_key(argv[2]);
    fprintf(stderr, "usage: webpush_tool encrypt P256DH AUTH < plaintext\n"
                    "       webpush_tool vapid KEY SUBJECT URL NOW\n"
                    "       webpush_tool public-key KEY\n");
    return 2;
}
