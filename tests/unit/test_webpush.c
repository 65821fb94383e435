/*
 * tests/unit/test_webpush.c - Web Push's crypto: RFC 8291's example byte
 * for byte (every intermediate value too), fresh keys and salts, the
 * refusals of bad keys and oversized payloads, the VAPID key file and its
 * public half, the origin a token is for, the ES256 token (checked with
 * OpenSSL's verifier and jansson) and its cache.
 *
 * The RFC's values are copied from its Appendix A as base64url text and
 * decoded by the tests' own decoder (es256_oracle.h), not fcmd's.
 */
#include "cmocka_all.h"

#include <errno.h>
#include <openssl/core_names.h>
#include <openssl/encoder.h>
#include <openssl/param_build.h>
#include <openssl/pem.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "../../child/upstream/jwt.h"
#include "../../child/upstream/webpush/ece.h"
#include "../../child/upstream/webpush/vapid.h"
#include "../../common/vapid_key.h"
#include "oracle.h"
#include "es256_oracle.h"

/* RFC 8291, Appendix A. */
#define RFC_PLAINTEXT "When I grow up, I want to be a watermelon"
#define RFC_AS_PUBLIC "BP4z9KsN6nGRTbVYI_c7VJSPQTBtkgcy27mlmlMoZIIgDll6e3vCYLocInmYWAmS6TlzAC8wEqKK6PBru3jl7A8"
#define RFC_AS_PRIVATE "yfWPiYE-n46HLnH0KqZOF1fJJU3MYrct3AELtAQ-oRw"
#define RFC_UA_PUBLIC "BCVxsr7N_eNgVRqvHtD0zTZsEc6-VV-JvLexhqUzORcxaOzi6-AYWXvTBHm4bjyPjs7Vd8pZGH6SRpkNtoIAiw4"
#define RFC_UA_PRIVATE "q1dXpw3UpT5VOmu_cf_v6ih07Aems3njxI-JWgLcM94"
#define RFC_SALT "DGv6ra1nlYgDCS1FRnbzlw"
#define RFC_AUTH "BTBZMqHH6r4Tts7J_aSIgg"
#define RFC_ECDH_SECRET "kyrL1jIIOHEzg3sM2ZWRHDRB62YACZhhSlknJ672kSs"
#define RFC_PRK_KEY "Snr3JMxaHVDXHWJn5wdC52WjpCtd2EIEGBykDcZW32k"
#define RFC_IKM "S4lYMb_L0FxCeq0WhDx813KgSYqU26kOyzWUdsXYyrg"
#define RFC_PRK "09_eUZGrsvxChDCGRCdkLiDXrReGOEVeSCdCcPBSJSc"
#define RFC_CEK "oIhVW04MRdy2XN9CiKLxTg"
#define RFC_NONCE "4h_95klXJ5E_qnoN"
#define RFC_HEADER                                                                                                     \
    "DGv6ra1nlYgDCS1FRnbzlwAAEABBBP4z9KsN6nGRTbVYI_c7VJSPQTBtkgcy27mlmlMoZIIgDll6e3vCYLocInmYWAmS6TlzAC8wEqKK6PBru3jl7A8"
#define RFC_CIPHERTEXT "8pfeW0KbunFT06SuDKoJH9Ql87S1QUrdirN6GcG7sFz1y1sqLgVi1VhjVkHsUoEsbI_0LpXMuGvnzQ"
#define RFC_BODY                                                                                                       \
    "DGv6ra1nlYgDCS1FRnbzlwAAEABBBP4z9KsN6nGRTbVYI_c7VJSPQTBtkgcy27mlmlMoZIIgDll6e3vCYLocInmYWAmS6TlzAC8wEqKK6PBru3jl7A_" \
    "yl95bQpu6cVPTpK4Mqgkf1CXztLVBSt2Ks3oZwbuwXPXLWyouBWLVWGNWQexSgSxsj_Qulcy4a-fN"

static size_t unb64(const char *s, unsigned char *out)
{
    return b64url_decode(s, strlen(s), out);
}

static void assert_b64_equal(const unsigned char *got, size_t len, const char *want_b64)
{
    unsigned char want[256];
    size_t n = unb64(want_b64, want);

    assert_int_equal(len, n);
    assert_memory_equal(got, want, n);
}

/* An EC P-256 key from the raw private scalar and public point. */
static EVP_PKEY *raw_key(const char *priv_b64, const char *pub_b64)
{
    unsigned char d[32], pub[65];
    OSSL_PARAM_BLD *bld = OSSL_PARAM_BLD_new();
    OSSL_PARAM *params;
    EVP_PKEY_CTX *ctx = EVP_PKEY_CTX_new_from_name(NULL, "EC", NULL);
    EVP_PKEY *key = NULL;
    BIGNUM *bn;

    assert_int_equal(unb64(priv_b64, d), 32);
    assert_int_equal(unb64(pub_b64, pub), 65);
    bn = BN_bin2bn(d, 32, NULL);
    assert_int_equal(OSSL_PARAM_BLD_push_utf8_string(bld, OSSL_PKEY_PARAM_GROUP_NAME, "prime256v1", 0), 1);
    assert_int_equal(OSSL_PARAM_BLD_push_BN(bld, OSSL_PKEY_PARAM_PRIV_KEY, bn), 1);
    assert_int_equal(OSSL_PARAM_BLD_push_octet_string(bld, OSSL_PKEY_PARAM_PUB_KEY, pub, 65), 1);
    params = OSSL_PARAM_BLD_to_param(bld);
    assert_int_equal(EVP_PKEY_fromdata_init(ctx), 1);
    assert_int_equal(EVP_PKEY_fromdata(ctx, &key, EVP_PKEY_KEYPAIR, params), 1);
    OSSL_PARAM_free(params);
    OSSL_PARAM_BLD_free(bld);
    EVP_PKEY_CTX_free(ctx);
    BN_free(bn);
    return key;
}

static void rfc_keys(struct ece_keys *k)
{
    char err[256];

    assert_int_equal(ece_keys_parse(RFC_UA_PUBLIC, strlen(RFC_UA_PUBLIC), RFC_AUTH, strlen(RFC_AUTH), k, err,
                                    sizeof(err)),
                     0);
}

/* ---- RFC 8291 Appendix A ---- */

static void rfc8291_example_byte_for_byte(void **state)
{
    struct ece_keys k;
    struct ece_trace t;
    struct buf out = BUF_INIT;
    EVP_PKEY *as = raw_key(RFC_AS_PRIVATE, RFC_AS_PUBLIC);
    unsigned char salt[16];
    char err[256];

    (void)state;
    rfc_keys(&k);
    assert_b64_equal(k.p256dh, sizeof(k.p256dh), RFC_UA_PUBLIC);
    assert_b64_equal(k.auth, sizeof(k.auth), RFC_AUTH);
    assert_int_equal(unb64(RFC_SALT, salt), 16);
    assert_int_equal(ece_encrypt(&k, RFC_PLAINTEXT, strlen(RFC_PLAINTEXT), as, salt, &out, &t, err, sizeof(err)), 0);
    assert_b64_equal(t.ecdh_secret, sizeof(t.ecdh_secret), RFC_ECDH_SECRET);
    assert_b64_equal(t.prk_key, sizeof(t.prk_key), RFC_PRK_KEY);
    assert_b64_equal(t.ikm, sizeof(t.ikm), RFC_IKM);
    assert_b64_equal(t.prk, sizeof(t.prk), RFC_PRK);
    assert_b64_equal(t.cek, sizeof(t.cek), RFC_CEK);
    assert_b64_equal(t.nonce, sizeof(t.nonce), RFC_NONCE);
    /* The header and the record, and the whole body as the RFC prints it. */
    assert_b64_equal((unsigned char *)out.data, ECE_HEADER_LEN, RFC_HEADER);
    assert_b64_equal((unsigned char *)out.data + ECE_HEADER_LEN, out.len - ECE_HEADER_LEN, RFC_CIPHERTEXT);
    assert_b64_equal((unsigned char *)out.data, out.len, RFC_BODY);
    buf_free(&out);
    EVP_PKEY_free(as);
}

/* Appends to what out held before: a body after other bytes is intact. */
static void appends_after_what_the_buffer_holds(void **state)
{
    struct ece_keys k;
    struct buf out = BUF_INIT;
    EVP_PKEY *as = raw_key(RFC_AS_PRIVATE, RFC_AS_PUBLIC);
    unsigned char salt[16];
    char err[256];

    (void)state;
    rfc_keys(&k);
    unb64(RFC_SALT, salt);
    buf_adds(&out, "prefix");
    assert_int_equal(ece_encrypt(&k, RFC_PLAINTEXT, strlen(RFC_PLAINTEXT), as, salt, &out, NULL, err, sizeof(err)), 0);
    assert_memory_equal(out.data, "prefix", 6);
    assert_b64_equal((unsigned char *)out.data + 6, out.len - 6, RFC_BODY);
    buf_free(&out);
    EVP_PKEY_free(as);
}

/* Production: a fresh salt and sender key each time, the RFC's header
 * shape, and a body of 86 + len + 17 bytes. */
static void fresh_salt_and_key_per_message(void **state)
{
    struct ece_keys k;
    struct buf a = BUF_INIT, b = BUF_INIT;
    char err[256];
    const char msg[] = "{\"title\":\"hi\"}";

    (void)state;
    rfc_keys(&k);
    assert_int_equal(ece_encrypt(&k, msg, strlen(msg), NULL, NULL, &a, NULL, err, sizeof(err)), 0);
    assert_int_equal(ece_encrypt(&k, msg, strlen(msg), NULL, NULL, &b, NULL, err, sizeof(err)), 0);
    assert_int_equal(a.len, ECE_HEADER_LEN + strlen(msg) + 1 + 16);
    assert_int_equal(b.len, a.len);
    assert_memory_not_equal(a.data, b.data, 16);                 /* salt */
    assert_memory_not_equal(a.data + 21, b.data + 21, 65);       /* sender's public key */
    assert_memory_equal(a.data + 16, "\x00\x00\x10\x00\x41", 5); /* rs 4096, idlen 65 */
    assert_int_equal((unsigned char)a.data[21], 0x04);
    buf_free(&a);
    buf_free(&b);
}

/* ---- refusals ---- */

static void payload_limit_is_3993_bytes(void **state)
{
    struct ece_keys k;
    struct buf out = BUF_INIT;
    char err[256], *big = calloc(1, 5000);

    (void)state;
    assert_int_equal(ECE_MAX_PLAINTEXT, 3993);
    rfc_keys(&k);
    assert_int_equal(ece_encrypt(&k, big, 3993, NULL, NULL, &out, NULL, err, sizeof(err)), 0);
    assert_int_equal(out.len, 4096); /* exactly what a push service must take */
    buf_reset(&out);
    assert_int_equal(ece_encrypt(&k, big, 3994, NULL, NULL, &out, NULL, err, sizeof(err)), -EMSGSIZE);
    assert_non_null(strstr(err, "3994 bytes"));
    assert_non_null(strstr(err, "at most 3993"));
    assert_int_equal(out.len, 0);
    assert_int_equal(ece_encrypt(&k, big, 4079, NULL, NULL, &out, NULL, err, sizeof(err)), -EMSGSIZE);
    /* An empty message is a record of its delimiter alone. */
    assert_int_equal(ece_encrypt(&k, "", 0, NULL, NULL, &out, NULL, err, sizeof(err)), 0);
    assert_int_equal(out.len, ECE_HEADER_LEN + 1 + 16);
    buf_free(&out);
    free(big);
}

static void expect_keys_refused(const char *p256dh, const char *auth, const char *needle)
{
    struct ece_keys k;
    char err[256] = "";

    if (ece_keys_parse(p256dh, strlen(p256dh), auth, strlen(auth), &k, err, sizeof(err)) != -EINVAL)
        fail_msg("accepted p256dh %s auth %s", p256dh, auth);
    if (strstr(err, needle) == NULL)
        fail_msg("\"%s\" does not say \"%s\"", err, needle);
}

/* The RFC's point with one bit of y flipped: 65 bytes, not on the curve. */
static void off_curve(char *out, size_t cap)
{
    unsigned char p[65], b64[100];
    int n;

    unb64(RFC_UA_PUBLIC, p);
    p[64] ^= 1;
    n = EVP_EncodeBlock(b64, p, 65);
    snprintf(out, cap, "%.*s", n - 1, (char *)b64); /* drop the '=' */
    for (char *c = out; *c; c++)
        *c = *c == '+' ? '-' : *c == '/' ? '_' : *c;
}

static void bad_keys_are_refused_with_a_reason(void **state)
{
    char bad[128], shifted[128];

    (void)state;
    off_curve(bad, sizeof(bad));
    expect_keys_refused(bad, RFC_AUTH, "not a point on the P-256 curve");
    /* Not base64url: the standard alphabet's '+', a space, a NUL-free junk. */
    snprintf(shifted, sizeof(shifted), "%s", RFC_UA_PUBLIC);
    shifted[10] = '+';
    expect_keys_refused(shifted, RFC_AUTH, "p256dh is not base64url");
    shifted[10] = ' ';
    expect_keys_refused(shifted, RFC_AUTH, "p256dh is not base64url");
    expect_keys_refused("A", RFC_AUTH, "p256dh is not base64url");
    expect_keys_refused("", RFC_AUTH, "p256dh is 0 bytes");
    /* The compressed form of a point (33 bytes), 64 bytes, too long. */
    expect_keys_refused("AyVxsr7N_eNgVRqvHtD0zTZsEc6-VV-JvLexhqUzORcx", RFC_AUTH, "is 33 bytes");
    snprintf(shifted, sizeof(shifted), "%s", &RFC_UA_PUBLIC[1]); /* 86 characters */
    expect_keys_refused(shifted, RFC_AUTH, "is 64 bytes");
    snprintf(shifted, sizeof(shifted), "%sAAAA", RFC_UA_PUBLIC);
    expect_keys_refused(shifted, RFC_AUTH, "longer than a P-256 public key");
    /* 65 bytes that do not begin with 0x04. */
    snprintf(shifted, sizeof(shifted), "A%s", &RFC_UA_PUBLIC[1]);
    expect_keys_refused(shifted, RFC_AUTH, "not beginning with 0x04");
    /* The auth secret. */
    expect_keys_refused(RFC_UA_PUBLIC, "BTBZMqHH6r4Tts7J", "keys.auth is 12 bytes");
    expect_keys_refused(RFC_UA_PUBLIC, "BTBZMqHH6r4Tts7J_aSIggAA", "keys.auth is longer than 16 bytes");
    expect_keys_refused(RFC_UA_PUBLIC, "BTBZMqHH6r4Tts7J/aSIgg", "keys.auth is not base64url");
    expect_keys_refused(RFC_UA_PUBLIC, "", "keys.auth is 0 bytes");
}

/* Keys decoded without the curve check (a push read back from a store) are
 * still refused by the encryption when the point is off the curve; the
 * same text passes the decoding with every length checked. */
static void an_off_curve_point_is_refused_by_the_encryption(void **state)
{
    struct ece_keys k;
    struct buf out = BUF_INIT;
    char bad[128], err[256] = "";

    (void)state;
    off_curve(bad, sizeof(bad));
    assert_int_equal(ece_keys_decode(bad, strlen(bad), RFC_AUTH, strlen(RFC_AUTH), &k, err, sizeof(err)), 0);
    assert_int_equal(ece_encrypt(&k, "x", 1, NULL, NULL, &out, NULL, err, sizeof(err)), -EINVAL);
    assert_non_null(strstr(err, "ECDH failed"));
    assert_int_equal(out.len, 0);
    assert_int_equal(ece_keys_decode(RFC_UA_PUBLIC, strlen(RFC_UA_PUBLIC), "BTBZMqHH6r4Tts7J", 16, &k, err,
                                     sizeof(err)), -EINVAL);
    assert_non_null(strstr(err, "keys.auth is 12 bytes"));
    buf_free(&out);
}

/* Salts come from a pool drawn in blocks: many messages still never share
 * one. */
static void salts_never_repeat(void **state)
{
    enum { N = 300 };
    struct ece_keys k;
    struct buf out = BUF_INIT;
    static unsigned char salts[N][ECE_SALT_LEN];
    char err[256];

    (void)state;
    rfc_keys(&k);
    for (int i = 0; i < N; i++) {
        buf_reset(&out);
        assert_int_equal(ece_encrypt(&k, "x", 1, NULL, NULL, &out, NULL, err, sizeof(err)), 0);
        memcpy(salts[i], out.data, ECE_SALT_LEN);
        for (int j = 0; j < i; j++)
            assert_memory_not_equal(salts[i], salts[j], ECE_SALT_LEN);
    }
    buf_free(&out);
}

/* A child made by fork() draws salts of its own: the parent's next salt
 * (from the pool both inherited) is never the child's. */
static void a_forked_child_never_repeats_its_parents_salts(void **state)
{
    struct ece_keys k;
    struct buf out = BUF_INIT;
    unsigned char child_salt[ECE_SALT_LEN], parent_salt[ECE_SALT_LEN];
    char err[256];
    int fds[2], status;
    pid_t pid;

    (void)state;
    rfc_keys(&k);
    assert_int_equal(ece_encrypt(&k, "x", 1, NULL, NULL, &out, NULL, err, sizeof(err)), 0); /* the pool is full */
    assert_int_equal(pipe(fds), 0);
    if ((pid = fork()) == 0) {
        buf_reset(&out);
        _exit(ece_encrypt(&k, "x", 1, NULL, NULL, &out, NULL, err, sizeof(err)) != 0 ||
              write(fds[1], out.data, ECE_SALT_LEN) != ECE_SALT_LEN);
    }
    assert_true(pid > 0);
    assert_int_equal(read(fds[0], child_salt, sizeof(child_salt)), ECE_SALT_LEN);
    assert_int_equal(waitpid(pid, &status, 0), pid);
    assert_true(WIFEXITED(status) && WEXITSTATUS(status) == 0);
    buf_reset(&out);
    assert_int_equal(ece_encrypt(&k, "x", 1, NULL, NULL, &out, NULL, err, sizeof(err)), 0);
    memcpy(parent_salt, out.data, ECE_SALT_LEN);
    assert_memory_not_equal(child_salt, parent_salt, ECE_SALT_LEN);
    close(fds[0]);
    close(fds[1]);
    buf_free(&out);
}

/* A sender key that is not P-256 is an error, never a crash. */
static void a_sender_key_off_p256_is_refused(void **state)
{
    struct ece_keys k;
    struct buf out = BUF_INIT;
    EVP_PKEY *p384 = EVP_PKEY_Q_keygen(NULL, NULL, "EC", "P-384");
    char err[256];

    (void)state;
    rfc_keys(&k);
    assert_int_equal(ece_encrypt(&k, "x", 1, p384, NULL, &out, NULL, err, sizeof(err)), -EINVAL);
    assert_int_equal(out.len, 0);
    buf_free(&out);
    EVP_PKEY_free(p384);
}

static void base64url_decoding(void **state)
{
    unsigned char out[8];

    (void)state;
    assert_int_equal(jwt_base64url_decode("YWJj", 4, out, sizeof(out)), 3);
    assert_memory_equal(out, "abc", 3);
    assert_int_equal(jwt_base64url_decode("YQ", 2, out, sizeof(out)), 1);
    assert_int_equal(jwt_base64url_decode("YQ==", 4, out, sizeof(out)), 1);
    assert_int_equal(jwt_base64url_decode("YWI=", 4, out, sizeof(out)), 2);
    assert_int_equal(jwt_base64url_decode("_-8", 3, out, sizeof(out)), 2);
    assert_memory_equal(out, "\xff\xef", 2);
    assert_int_equal(jwt_base64url_decode("", 0, out, sizeof(out)), 0);
    assert_int_equal(jwt_base64url_decode("/+8", 3, out, sizeof(out)), -EINVAL);
    assert_int_equal(jwt_base64url_decode("YQ=", 3, out, sizeof(out)), -EINVAL);
    assert_int_equal(jwt_base64url_decode("Y===", 4, out, sizeof(out)), -EINVAL);
    assert_int_equal(jwt_base64url_decode("Y", 1, out, sizeof(out)), -EINVAL);
    assert_int_equal(jwt_base64url_decode("YQ==YQ", 6, out, sizeof(out)), -EINVAL);
    assert_int_equal(jwt_base64url_decode("Y\0Q", 3, out, sizeof(out)), -EINVAL);
    assert_int_equal(jwt_base64url_decode("YWJjZGVmZ2hp", 12, out, sizeof(out)), -EMSGSIZE);
}

/* ---- the VAPID key ---- */

static char key_path[] = "/tmp/fcmd-vapid-XXXXXX";

static void write_file(const char *text, size_t len)
{
    FILE *f = fopen(key_path, "w");

    assert_non_null(f);
    assert_int_equal(fwrite(text, 1, len, f), len);
    fclose(f);
}

/* key as PEM: SEC1 ("EC PRIVATE KEY") or PKCS#8. */
static char *pem_of(EVP_PKEY *key, int sec1)
{
    BIO *bio = BIO_new(BIO_s_mem());
    char *data, *copy;
    long n;

    if (sec1) {
        OSSL_ENCODER_CTX *e =
            OSSL_ENCODER_CTX_new_for_pkey(key, EVP_PKEY_KEYPAIR, "PEM", "type-specific", NULL);
        assert_int_equal(OSSL_ENCODER_to_bio(e, bio), 1);
        OSSL_ENCODER_CTX_free(e);
    } else {
        assert_int_equal(PEM_write_bio_PrivateKey(bio, key, NULL, NULL, 0, NULL, NULL), 1);
    }
    n = BIO_get_mem_data(bio, &data);
    copy = strndup(data, (size_t)n);
    BIO_free(bio);
    return copy;
}

static EVP_PKEY *load_written(const char *pem, char *err, size_t errlen)
{
    write_file(pem, strlen(pem));
    return vapid_key_load(key_path, err, errlen);
}

/* The RFC's sender key as a VAPID key prints the RFC's public key: what
 * `fcmd --vapid-public-key` shows, from either PEM form. */
static void vapid_public_key_of_sec1_and_pkcs8(void **state)
{
    EVP_PKEY *key = raw_key(RFC_AS_PRIVATE, RFC_AS_PUBLIC), *loaded;
    char err[256], pub[P256_POINT_B64_LEN + 1];
    int fd = mkstemp(key_path);

    (void)state;
    assert_true(fd >= 0);
    close(fd);
    for (int sec1 = 0; sec1 < 2; sec1++) {
        char *pem = pem_of(key, sec1);
        assert_non_null(strstr(pem, sec1 ? "BEGIN EC PRIVATE KEY" : "BEGIN PRIVATE KEY"));
        loaded = load_written(pem, err, sizeof(err));
        if (loaded == NULL)
            fail_msg("%s", err);
        assert_int_equal(p256_point_b64url(loaded, pub), 0);
        assert_string_equal(pub, RFC_AS_PUBLIC);
        EVP_PKEY_free(loaded);
        free(pem);
    }
    EVP_PKEY_free(key);
}

static void expect_key_refused(const char *pem, const char *needle)
{
    char err[512] = "";
    EVP_PKEY *k = load_written(pem, err, sizeof(err));

    if (k != NULL)
        fail_msg("accepted a key that should say \"%s\"", needle);
    if (strstr(err, needle) == NULL || strncmp(err, "--vapid-key: ", 13) != 0)
        fail_msg("\"%s\" does not say \"%s\"", err, needle);
}

static void bad_vapid_keys_are_named(void **state)
{
    EVP_PKEY *rsa = EVP_RSA_gen(2048), *p384 = EVP_PKEY_Q_keygen(NULL, NULL, "EC", "P-384");
    char *pem;
    char err[512];

    (void)state;
    expect_key_refused("", "is empty");
    expect_key_refused("just text\n", "is not a PEM file");
    expect_key_refused("-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n", "no readable private key");
    pem = pem_of(rsa, 0);
    expect_key_refused(pem, "an RSA key");
    free(pem);
    pem = pem_of(p384, 1);
    expect_key_refused(pem, "curve secp384r1");
    free(pem);
    assert_null(vapid_key_load("/nonexistent/vapid.pem", err, sizeof(err)));
    assert_non_null(strstr(err, "--vapid-key: cannot read \"/nonexistent/vapid.pem\""));
    assert_null(vapid_key_load("/tmp", err, sizeof(err)));
    assert_non_null(strstr(err, "not a regular file"));
    unlink(key_path);
    EVP_PKEY_free(rsa);
    EVP_PKEY_free(p384);
}

static void subjects(void **state)
{
    static const char *const good[] = {"mailto:ops@example.com", "MAILTO:a@b", "https://example.com",
                                       "https://example.com/contact", "https://[::1]/x"};
    static const char *const bad[] = {"",
                                      "ops@example.com",
                                      "mailto:",
                                      "mailto:ops",
                                      "mailto:@example.com",
                                      "mailto:ops@",
                                      "mailto:a@b@c",
                                      "mailto:ops@example.com\r\nX: y",
                                      "mailto:o ps@example.com",
                                      "http://example.com",
                                      "https://",
                                      "https:///path",
                                      "ftp://example.com",
                                      "mailto:ops@exämple.com"};
    char big[VAPID_SUBJECT_MAX + 2];

    (void)state;
    for (size_t i = 0; i < sizeof(good) / sizeof(good[0]); i++)
        if (!vapid_subject_ok(good[i]))
            fail_msg("refused %s", good[i]);
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
        if (vapid_subject_ok(bad[i]))
            fail_msg("accepted %s", bad[i]);
    assert_false(vapid_subject_ok(NULL));
    memset(big, 'a', sizeof(big) - 1);
    big[sizeof(big) - 1] = '\0';
    memcpy(big, "mailto:a@", 9);
    assert_false(vapid_subject_ok(big));
    big[VAPID_SUBJECT_MAX] = '\0';
    assert_true(vapid_subject_ok(big));
}

/* ---- the origin ---- */

static void origins(void **state)
{
    static const struct {
        const char *url, *origin;
    } cases[] = {
        {"https://fcm.googleapis.com/fcm/send/abc:def", "https://fcm.googleapis.com"},
        {"https://updates.push.services.mozilla.com/wpush/v2/gAAA", "https://updates.push.services.mozilla.com"},
        {"https://web.push.apple.com/QGuQ", "https://web.push.apple.com"},
        {"HTTPS://Web.Push.Apple.COM/x", "https://web.push.apple.com"},
        {"https://push.example:443/x", "https://push.example"},
        {"https://push.example:8443/x", "https://push.example:8443"},
        {"https://push.example:08443", "https://push.example:8443"},
        {"http://127.0.0.1:5601/push/1", "http://127.0.0.1:5601"},
        {"http://127.0.0.1:80/", "http://127.0.0.1"},
        {"https://[::1]:8443/p", "https://[::1]:8443"},
        {"https://[2001:DB8::1]/p", "https://[2001:db8::1]"},
        {"https://push.example?x", "https://push.example"},
        {"https://push.example#x", "https://push.example"},
        {"https://push.example", "https://push.example"},
    };
    static const char *const bad[] = {"ftp://push.example/x",
                                      "https:/push.example",
                                      "push.example/x",
                                      "https://",
                                      "https:///x",
                                      "https://user@push.example/x",
                                      "https://user:pw@push.example/x",
                                      "https://push.example:/x",
                                      "https://push.example:0/x",
                                      "https://push.example:65536/x",
                                      "https://push.example:123456/x",
                                      "https://push.example:80a/x",
                                      "https://push example/x",
                                      "https://push.example\r\n/x",
                                      "https://[::1/x",
                                      "https://[]/x",
                                      "https://[::g]/x",
                                      "https://push.ex%61mple/x"};
    char out[VAPID_ORIGIN_MAX], big[400];

    (void)state;
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        int n = vapid_origin(cases[i].url, strlen(cases[i].url), out, sizeof(out));
        if (n < 0 || strcmp(out, cases[i].origin) != 0)
            fail_msg("%s: got %d \"%s\", want \"%s\"", cases[i].url, n, n >= 0 ? out : "", cases[i].origin);
        assert_int_equal((size_t)n, strlen(out));
    }
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
        if (vapid_origin(bad[i], strlen(bad[i]), out, sizeof(out)) != -EINVAL)
            fail_msg("%s has an origin", bad[i]);
    /* A NUL inside the length is not part of a host. */
    assert_int_equal(vapid_origin("https://a\0b/", 12, out, sizeof(out)), -EINVAL);
    memcpy(big, "https://", 8);
    memset(big + 8, 'a', 300);
    memcpy(big + 308, "/x", 3);
    assert_int_equal(vapid_origin(big, strlen(big), out, sizeof(out)), -EMSGSIZE);
    assert_int_equal(vapid_origin("https://push.example:8443/", 26, out, 20), -EMSGSIZE);
}

/* ---- the token and its cache ---- */

static EVP_PKEY *vapid_test_key;

static int vapid_setup(void **state)
{
    (void)state;
    vapid_test_key = EVP_PKEY_Q_keygen(NULL, NULL, "EC", "P-256");
    return vapid_test_key != NULL ? 0 : -1;
}

static int vapid_teardown(void **state)
{
    (void)state;
    EVP_PKEY_free(vapid_test_key);
    return 0;
}

/* Checks header is "vapid t=<jwt>, k=<the key's point>" with the token
 * for aud, and returns its exp. */
static long long check_header(const char *header, const char *aud, time_t now)
{
    char pub[P256_POINT_B64_LEN + 1], jwt[2048];
    const char *k = strstr(header, ", k=");
    json_t *head, *claims;
    long long exp;

    assert_non_null(k);
    assert_int_equal(strncmp(header, "vapid t=", 8), 0);
    assert_true((size_t)(k - header - 8) < sizeof(jwt));
    snprintf(jwt, sizeof(jwt), "%.*s", (int)(k - header - 8), header + 8);
    assert_int_equal(p256_point_b64url(vapid_test_key, pub), 0);
    assert_string_equal(k + 4, pub);
    verify_jwt(jwt, vapid_test_key, &head, &claims);
    assert_string_equal(oracle_string(head, "alg"), "ES256");
    assert_string_equal(oracle_string(head, "typ"), "JWT");
    assert_int_equal(json_object_size(head), 2);
    assert_string_equal(oracle_string(claims, "aud"), aud);
    assert_string_equal(oracle_string(claims, "sub"), "mailto:ops@example.com");
    assert_int_equal(json_object_size(claims), 3);
    exp = json_integer_value(json_object_get(claims, "exp"));
    assert_true(exp > now && exp <= now + 24 * 3600);
    json_decref(head);
    json_decref(claims);
    return exp;
}

static void token_is_es256_for_the_origin(void **state)
{
    struct vapid *v = vapid_create(vapid_test_key, "mailto:ops@example.com");
    const char *h;
    time_t now = 1700000000;

    (void)state;
    assert_non_null(v);
    h = vapid_authorization(v, "https://fcm.googleapis.com", now);
    assert_non_null(h);
    assert_int_equal(check_header(h, "https://fcm.googleapis.com", now), now + VAPID_TTL_S);
    assert_true(VAPID_TTL_S <= 24 * 3600);
    vapid_free(v);
}

static void token_reused_until_its_last_hour(void **state)
{
    struct vapid *v = vapid_create(vapid_test_key, "mailto:ops@example.com");
    const char *origin = "https://updates.push.services.mozilla.com";
    time_t now = 1700000000;
    char first[2048];

    (void)state;
    snprintf(first, sizeof(first), "%s", vapid_authorization(v, origin, now));
    assert_int_equal(vapid_signed(v), 1);
    /* Reused while an hour or more is left. */
    assert_string_equal(vapid_authorization(v, origin, now + 60), first);
    assert_string_equal(vapid_authorization(v, origin, now + VAPID_TTL_S - VAPID_RENEW_S), first);
    assert_int_equal(vapid_signed(v), 1);
    /* Then a new one, good for the full time from then. */
    assert_string_not_equal(vapid_authorization(v, origin, now + VAPID_TTL_S - VAPID_RENEW_S + 1), first);
    assert_int_equal(vapid_signed(v), 2);
    assert_int_equal(check_header(vapid_authorization(v, origin, now + VAPID_TTL_S - VAPID_RENEW_S + 1), origin,
                                  now + VAPID_TTL_S - VAPID_RENEW_S + 1),
                     now + 2 * VAPID_TTL_S - VAPID_RENEW_S + 1);
    /* A clock set back makes a new one rather than one past 24 hours. */
    snprintf(first, sizeof(first), "%s", vapid_authorization(v, origin, now));
    assert_int_equal(vapid_signed(v), 3);
    assert_int_equal(check_header(first, origin, now), now + VAPID_TTL_S);
    assert_int_equal(vapid_cached(v), 1);
    vapid_free(v);
}

static void one_token_per_origin_and_bounded(void **state)
{
    struct vapid *v = vapid_create(vapid_test_key, "mailto:ops@example.com");
    time_t now = 1700000000;
    char origin[64], hot[2048];

    (void)state;
    snprintf(hot, sizeof(hot), "%s", vapid_authorization(v, "https://hot.example", now));
    for (int i = 0; i < VAPID_CACHE * 2; i++) {
        snprintf(origin, sizeof(origin), "https://push%d.example", i);
        check_header(vapid_authorization(v, origin, now), origin, now);
        /* The origin in use all along stays; the others take turns. */
        assert_string_equal(vapid_authorization(v, "https://hot.example", now), hot);
        assert_true(vapid_cached(v) <= VAPID_CACHE);
    }
    assert_int_equal(vapid_cached(v), VAPID_CACHE);
    assert_int_equal(vapid_signed(v), 1 + VAPID_CACHE * 2);
    /* The newest are held, the oldest gave way. */
    vapid_authorization(v, "https://push127.example", now);
    assert_int_equal(vapid_signed(v), 1 + VAPID_CACHE * 2);
    vapid_authorization(v, "https://push0.example", now);
    assert_int_equal(vapid_signed(v), 2 + VAPID_CACHE * 2);
    vapid_free(v);
}

static void only_p256_keys_make_tokens(void **state)
{
    EVP_PKEY *p384 = EVP_PKEY_Q_keygen(NULL, NULL, "EC", "P-384"), *rsa = EVP_RSA_gen(2048);
    struct buf b = BUF_INIT;

    (void)state;
    assert_null(vapid_create(p384, "mailto:ops@example.com"));
    assert_null(vapid_create(rsa, "mailto:ops@example.com"));
    assert_int_equal(vapid_token_sign(rsa, "https://a", "mailto:a@b", 1, &b), -1);
    EVP_PKEY_free(p384);
    EVP_PKEY_free(rsa);
    buf_free(&b);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(rfc8291_example_byte_for_byte),
        cmocka_unit_test(appends_after_what_the_buffer_holds),
        cmocka_unit_test(fresh_salt_and_key_per_message),
        cmocka_unit_test(payload_limit_is_3993_bytes),
        cmocka_unit_test(bad_keys_are_refused_with_a_reason),
        cmocka_unit_test(a_sender_key_off_p256_is_refused),
        cmocka_unit_test(an_off_curve_point_is_refused_by_the_encryption),
        cmocka_unit_test(salts_never_repeat),
        cmocka_unit_test(a_forked_child_never_repeats_its_parents_salts),
        cmocka_unit_test(base64url_decoding),
        cmocka_unit_test(vapid_public_key_of_sec1_and_pkcs8),
        cmocka_unit_test(bad_vapid_keys_are_named),
        cmocka_unit_test(subjects),
        cmocka_unit_test(origins),
        cmocka_unit_test_setup_teardown(token_is_es256_for_the_origin, vapid_setup, vapid_teardown),
        cmocka_unit_test_setup_teardown(token_reused_until_its_last_hour, vapid_setup, vapid_teardown),
        cmocka_unit_test_setup_teardown(one_token_per_origin_and_bounded, vapid_setup, vapid_teardown),
        cmocka_unit_test(only_p256_keys_make_tokens),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
