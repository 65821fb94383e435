/*
 * tests/unit/test_jwt.c - service-account files, the RS256 assertion
 * (checked with OpenSSL's verifier, its JSON read with jansson), and token
 * endpoint answers.  Test files are written with jansson too, so fcmd's
 * JSON code is never both the writer and the reader of a test's text.
 */
#include "cmocka_all.h"

#include <openssl/pem.h>
#include <openssl/rsa.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "../../child/upstream/jwt.h"
#include "../../child/upstream/fcm/oauth.h"
#include "../../common/service_account.h"
#include "oracle.h"

static EVP_PKEY *test_key;
static char *test_pem; /* the key as PEM, with real newlines */

static int setup(void **state)
{
    BIO *bio = BIO_new(BIO_s_mem());
    char *data;
    long n;

    (void)state;
    test_key = EVP_RSA_gen(2048);
    if (test_key == NULL || bio == NULL || PEM_write_bio_PrivateKey(bio, test_key, NULL, NULL, 0, NULL, NULL) != 1)
        return -1;
    n = BIO_get_mem_data(bio, &data);
    test_pem = strndup(data, (size_t)n);
    BIO_free(bio);
    return 0;
}

static int teardown(void **state)
{
    (void)state;
    EVP_PKEY_free(test_key);
    free(test_pem);
    return 0;
}

/* Writes a service-account file; fields NULL are left out. */
static void write_sa(const char *path, const char *type, const char *project, const char *pem, const char *uri)
{
    json_t *sa = json_pack("{s:s,s:s,s:s}", "private_key_id", "kid-1", "client_email", "svc@p.iam.gserviceaccount.com",
                           "private_key", pem);

    assert_non_null(sa);
    if (type)
        assert_int_equal(json_object_set_new(sa, "type", json_string(type)), 0);
    if (project)
        assert_int_equal(json_object_set_new(sa, "project_id", json_string(project)), 0);
    if (uri)
        assert_int_equal(json_object_set_new(sa, "token_uri", json_string(uri)), 0);
    assert_int_equal(json_dump_file(sa, path, JSON_COMPACT), 0);
    json_decref(sa);
}

static void loads_a_good_file(void **state)
{
    char path[] = "/tmp/fcmd-sa-XXXXXX";
    struct service_account sa;
    char err[512];

    (void)state;
    close(mkstemp(path));
    write_sa(path, "service_account", "demo-project", test_pem, "https://oauth2.example/token");
    assert_int_equal(service_account_load(path, &sa, err, sizeof(err)), 0);
    assert_string_equal(sa.project_id, "demo-project");
    assert_string_equal(sa.private_key_id, "kid-1");
    assert_string_equal(sa.token_uri, "https://oauth2.example/token");
    assert_int_equal(EVP_PKEY_eq(sa.key, test_key), 1);
    service_account_free(&sa);
    unlink(path);
}

static void expect_load_error(const char *path, const char *needle)
{
    struct service_account sa;
    char err[512] = "";

    assert_int_equal(service_account_load(path, &sa, err, sizeof(err)), -1);
    if (strstr(err, needle) == NULL || strstr(err, path) == NULL)
        fail_msg("error \"%s\" should name the file and say \"%s\"", err, needle);
    if (strstr(err, "PRIVATE KEY") != NULL)
        fail_msg("error \"%s\" shows key material", err);
}

static void each_bad_file_is_explained(void **state)
{
    char path[] = "/tmp/fcmd-sa-XXXXXX";
    FILE *f;

    (void)state;
    close(mkstemp(path));
    expect_load_error("/nonexistent/sa.json", "cannot read");
    f = fopen(path, "w");
    fputs("not json", f);
    fclose(f);
    expect_load_error(path, "not a JSON object");
    write_sa(path, "authorized_user", "p", test_pem, "https://x/token");
    expect_load_error(path, "not \"service_account\"");
    write_sa(path, "service_account", NULL, test_pem, "https://x/token");
    expect_load_error(path, "\"project_id\"");
    write_sa(path, "service_account", "p", test_pem, NULL);
    expect_load_error(path, "\"token_uri\"");
    write_sa(path, "service_account", "p", test_pem, "ftp://x/token");
    expect_load_error(path, "token_uri");
    write_sa(path, "service_account", "p", "-----BEGIN PRIVATE KEY-----\nnot base64\n-----END PRIVATE KEY-----\n",
             "https://x/token");
    expect_load_error(path, "not a PEM RSA private key");
    unlink(path);
}

static long b64url_decode(const char *s, size_t n, unsigned char *out)
{
    char tmp[4096];
    size_t padded = (n + 3) / 4 * 4;
    int len;

    for (size_t i = 0; i < padded; i++)
        tmp[i] = i >= n ? '=' : s[i] == '-' ? '+' : s[i] == '_' ? '/' : s[i];
    len = EVP_DecodeBlock(out, (unsigned char *)tmp, (int)padded);
    return len - (long)(padded - n);
}

static void jwt_is_signed_and_claims_are_right(void **state)
{
    struct service_account sa = {"p", "kid-1", "svc@p.iam.gserviceaccount.com", "https://oauth2.example/token", NULL};
    struct buf jwt = BUF_INIT;
    unsigned char part[4096];
    char *dot1, *dot2;
    json_t *d;
    EVP_MD_CTX *ctx = EVP_MD_CTX_new();
    long n;

    (void)state;
    sa.key = test_key;
    assert_int_equal(oauth_assertion(&sa, 1700000000, &jwt), 0);
    dot1 = strchr(jwt.data, '.');
    dot2 = strchr(dot1 + 1, '.');
    assert_non_null(dot2);
    assert_null(strpbrk(jwt.data, "+/="));
    n = b64url_decode(jwt.data, (size_t)(dot1 - jwt.data), part);
    d = oracle_decode((char *)part, (size_t)n);
    assert_int_equal(json_object_size(d), 3);
    assert_string_equal(oracle_string(d, "alg"), "RS256");
    assert_string_equal(oracle_string(d, "typ"), "JWT");
    assert_string_equal(oracle_string(d, "kid"), "kid-1");
    json_decref(d);
    n = b64url_decode(dot1 + 1, (size_t)(dot2 - dot1 - 1), part);
    d = oracle_decode((char *)part, (size_t)n);
    assert_int_equal(json_object_size(d), 5);
    assert_string_equal(oracle_string(d, "iss"), "svc@p.iam.gserviceaccount.com");
    assert_string_equal(oracle_string(d, "scope"), OAUTH_SCOPE);
    assert_string_equal(oracle_string(d, "aud"), "https://oauth2.example/token");
    assert_true(json_is_integer(json_object_get(d, "iat")));
    assert_int_equal(json_integer_value(json_object_get(d, "iat")), 1700000000);
    assert_int_equal(json_integer_value(json_object_get(d, "exp")), 1700003600);
    json_decref(d);
    n = b64url_decode(dot2 + 1, strlen(dot2 + 1), part);
    assert_int_equal(n, 256);
    assert_int_equal(EVP_DigestVerifyInit(ctx, NULL, EVP_sha256(), NULL, test_key), 1);
    assert_int_equal(EVP_DigestVerify(ctx, part, (size_t)n, (unsigned char *)jwt.data, (size_t)(dot2 - jwt.data)), 1);
    /* A changed claim no longer verifies. */
    jwt.data[dot1 - jwt.data + 3] ^= 1;
    assert_int_equal(EVP_DigestVerifyInit(ctx, NULL, EVP_sha256(), NULL, test_key), 1);
    assert_int_not_equal(EVP_DigestVerify(ctx, part, (size_t)n, (unsigned char *)jwt.data, (size_t)(dot2 - jwt.data)),
                         1);
    EVP_MD_CTX_free(ctx);
    buf_free(&jwt);
}

/* A key of another kind than the algorithm's is refused, not used. */
static void the_key_must_fit_the_algorithm(void **state)
{
    EVP_PKEY *ec = EVP_EC_gen("P-256");
    struct buf out = BUF_INIT;

    (void)state;
    assert_non_null(ec);
    assert_int_equal(jwt_sign(ec, &(struct jwt_header){.alg = JWT_RS256}, "{}", 2, &out), -1);
    assert_int_equal(jwt_sign(test_key, &(struct jwt_header){.alg = JWT_ES256}, "{}", 2, &out), -1);
    assert_int_equal(jwt_sign(ec, &(struct jwt_header){.alg = JWT_ES256}, "{}", 2, &out), 0);
    EVP_PKEY_free(ec);
    buf_free(&out);
}

static void base64url_padding_cases(void **state)
{
    struct buf b = BUF_INIT;

    (void)state;
    jwt_base64url(&b, (const unsigned char *)"\xfb\xff", 2);
    assert_string_equal(b.data, "-_8");
    buf_reset(&b);
    jwt_base64url(&b, (const unsigned char *)"abc", 3);
    assert_string_equal(b.data, "YWJj");
    buf_reset(&b);
    jwt_base64url(&b, (const unsigned char *)"a", 1);
    assert_string_equal(b.data, "YQ");
    buf_free(&b);
}

/* Every length and byte, against OpenSSL's base64 turned into base64url. */
static void base64url_matches_openssl(void **state)
{
    unsigned char data[256];
    char want[400];

    (void)state;
    for (size_t i = 0; i < sizeof(data); i++)
        data[i] = (unsigned char)(255 - i);
    for (size_t len = 0; len <= sizeof(data); len++) {
        struct buf b = BUF_INIT;
        int n = EVP_EncodeBlock((unsigned char *)want, data, (int)len);
        for (int i = 0; i < n; i++)
            want[i] = want[i] == '+' ? '-' : want[i] == '/' ? '_' : want[i];
        while (n > 0 && want[n - 1] == '=')
            n--;
        want[n] = '\0';
        buf_adds(&b, "x.");
        jwt_base64url(&b, data, len);
        assert_false(b.failed);
        assert_int_equal(b.len, 2 + (size_t)n);
        assert_string_equal(b.data + 2, want);
        buf_free(&b);
    }
}

static void token_answers(void **state)
{
    char *token;
    long ttl;
    const char *ok = "{\"access_token\":\"ya29.abc\",\"expires_in\":3599,\"token_type\":\"Bearer\"}";

    (void)state;
    assert_int_equal(oauth_parse_response(ok, strlen(ok), &token, &ttl), 0);
    assert_string_equal(token, "ya29.abc");
    assert_int_equal(ttl, 3599);
    free(token);
    assert_int_equal(oauth_parse_response("{\"expires_in\":5}", 16, &token, &ttl), -1);
    assert_int_equal(oauth_parse_response("{\"access_token\":\"\"}", 19, &token, &ttl), -1);
    /* A token that would break the header line is refused. */
    assert_int_equal(oauth_parse_response("{\"access_token\":\"a\\r\\nX: y\"}", 28, &token, &ttl), -1);
    assert_int_equal(oauth_parse_response("{\"access_token\":\"t\",\"expires_in\":0}", 35, &token, &ttl), -1);
    assert_null(token);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(loads_a_good_file),
        cmocka_unit_test(each_bad_file_is_explained),
        cmocka_unit_test(jwt_is_signed_and_claims_are_right),
        cmocka_unit_test(the_key_must_fit_the_algorithm),
        cmocka_unit_test(base64url_padding_cases),
        cmocka_unit_test(base64url_matches_openssl),
        cmocka_unit_test(token_answers),
    };
    return cmocka_run_group_tests_name("jwt", tests, setup, teardown);
}
