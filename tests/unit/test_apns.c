/*
 * tests/unit/test_apns.c - the APNs key file, the ES256 provider token and
 * its sharing between processes.  Signatures are checked with OpenSSL's
 * verifier after the test's own conversion of JOSE's r||s back to DER, and
 * the token's JSON is read with jansson: fcmd's code is never its own judge.
 */
#include "cmocka_all.h"

#include <openssl/ec.h>
#include <openssl/ecdsa.h>
#include <openssl/pem.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "../../child/upstream/apns/apns_token.h"
#include "../../common/apns_key.h"
#include "../../shm/provider_token.h"
#include "oracle.h"
#include "es256_oracle.h"

static EVP_PKEY *ec_key; /* P-256, as Apple makes them */
static char key_path[] = "/tmp/fcmd-apns-XXXXXX";

static char *pem_of(EVP_PKEY *k)
{
    BIO *bio = BIO_new(BIO_s_mem());
    char *data, *out;
    long n;

    assert_non_null(bio);
    assert_int_equal(PEM_write_bio_PKCS8PrivateKey(bio, k, NULL, NULL, 0, NULL, NULL), 1);
    n = BIO_get_mem_data(bio, &data);
    out = strndup(data, (size_t)n);
    BIO_free(bio);
    return out;
}

static void write_file(const char *path, const char *text, size_t len)
{
    FILE *f = fopen(path, "wb");

    assert_non_null(f);
    assert_int_equal(fwrite(text, 1, len, f), len);
    fclose(f);
}

static int setup(void **state)
{
    (void)state;
    ec_key = EVP_EC_gen("P-256");
    close(mkstemp(key_path));
    return ec_key ? 0 : -1;
}

static int teardown(void **state)
{
    (void)state;
    EVP_PKEY_free(ec_key);
    unlink(key_path);
    return 0;
}

static void expect_refused(const char *needle)
{
    char err[512] = "";
    EVP_PKEY *k = apns_key_load(key_path, err, sizeof(err));

    if (k != NULL)
        fail_msg("key file accepted, expected \"%s\"", needle);
    if (strstr(err, needle) == NULL || strstr(err, key_path) == NULL || strstr(err, "--apns-key") == NULL)
        fail_msg("error \"%s\" should name --apns-key, the file and say \"%s\"", err, needle);
    if (strstr(err, "MII") != NULL || strstr(err, "AAAA") != NULL)
        fail_msg("error \"%s\" shows key material", err);
}

static void loads_a_p256_key(void **state)
{
    char *pem = pem_of(ec_key), err[512];
    EVP_PKEY *k;

    (void)state;
    write_file(key_path, pem, strlen(pem));
    k = apns_key_load(key_path, err, sizeof(err));
    assert_non_null(k);
    assert_int_equal(EVP_PKEY_eq(k, ec_key), 1);
    EVP_PKEY_free(k);
    free(pem);
}

static void bad_key_files_are_named(void **state)
{
    EVP_PKEY *rsa = EVP_RSA_gen(2048), *p384 = EVP_EC_gen("P-384");
    char *pem, *huge;

    (void)state;
    write_file(key_path, "", 0);
    expect_refused("is empty");
    write_file(key_path, "just some text\n", 15);
    expect_refused("not a PEM file");
    write_file(key_path, "-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n", 58);
    expect_refused("no readable private key");
    pem = pem_of(rsa);
    write_file(key_path, pem, strlen(pem));
    expect_refused("an RSA key");
    free(pem);
    pem = pem_of(p384);
    write_file(key_path, pem, strlen(pem));
    expect_refused("secp384r1");
    free(pem);
    huge = malloc(APNS_KEY_MAX_FILE + 100);
    memset(huge, 'A', APNS_KEY_MAX_FILE + 100);
    memcpy(huge, "-----BEGIN PRIVATE KEY-----\n", 28);
    write_file(key_path, huge, APNS_KEY_MAX_FILE + 100);
    expect_refused("larger than");
    free(huge);
    EVP_PKEY_free(rsa);
    EVP_PKEY_free(p384);
    {
        char err[512] = "";
        assert_null(apns_key_load("/nonexistent/AuthKey.p8", err, sizeof(err)));
        assert_non_null(strstr(err, "cannot read \"/nonexistent/AuthKey.p8\""));
        assert_null(apns_key_load("/tmp", err, sizeof(err)));
        assert_non_null(strstr(err, "not a regular file"));
    }
}

static void ids_and_topics(void **state)
{
    (void)state;
    assert_true(apns_id_ok("ABC123DEFG"));
    assert_false(apns_id_ok("ABC123DEF"));
    assert_false(apns_id_ok("ABC123DEFGH"));
    assert_false(apns_id_ok("abc123defg"));
    assert_false(apns_id_ok("ABC123DEF\""));
    assert_false(apns_id_ok(""));
    assert_true(apns_topic_ok("com.example.app", 15));
    assert_true(apns_topic_ok("com.example.app.voip", 20));
    assert_true(apns_topic_ok("com.example.app.push-type.liveactivity", 38));
    assert_false(apns_topic_ok("com.example app", 15));
    assert_false(apns_topic_ok("com.example\r\nx", 14));
    assert_false(apns_topic_ok("", 0));
    /* A bundle id is reverse-DNS: two labels or more of letters, digits and
     * hyphens, none empty, at most 155 bytes; then one of Apple's suffixes. */
    assert_true(apns_topic_ok("a.b", 3));
    assert_true(apns_topic_ok("com.example.app.complication", 28));
    assert_true(apns_topic_ok("com.example.app.pushkit.fileprovider", 36));
    assert_true(apns_topic_ok("com.Example-2.app9", 18));
    assert_false(apns_topic_ok("...", 3));
    assert_false(apns_topic_ok("x", 1));
    assert_false(apns_topic_ok("voip", 4));
    assert_false(apns_topic_ok(".voip", 5));
    assert_false(apns_topic_ok("com..app", 8));
    assert_false(apns_topic_ok(".com.app", 8));
    assert_false(apns_topic_ok("com.app.", 8));
    assert_false(apns_topic_ok("com.example_app", 15));
    assert_false(apns_topic_ok("com.app\0x", 9));
    {
        char t[256];
        memset(t, 'a', sizeof(t));
        assert_false(apns_topic_ok(t, 255));
        t[3] = '.';
        assert_true(apns_topic_ok(t, 155));
        assert_false(apns_topic_ok(t, 156));
        memcpy(t + 155, ".push-type.liveactivity", 23);
        assert_true(apns_topic_ok(t, 178));
        memcpy(t + 155, ".voip", 5);
        assert_true(apns_topic_ok(t, 160));
    }
}

static void jwt_is_es256_with_kid_iss_iat(void **state)
{
    struct buf out = BUF_INIT;
    json_t *head, *claims;

    (void)state;
    /* Many signatures: r or s with leading zero bytes must still be 32 bytes each. */
    for (int i = 0; i < 64; i++) {
        buf_reset(&out);
        assert_int_equal(apns_token_sign(ec_key, "KEY1234567", "TEAM123456", 1700000000 + i, &out), 0);
        buf_add(&out, "", 1);
        verify_jwt(out.data, ec_key, &head, &claims);
        assert_string_equal(json_string_value(json_object_get(head, "alg")), "ES256");
        assert_string_equal(json_string_value(json_object_get(head, "kid")), "KEY1234567");
        assert_int_equal(json_object_size(head), 2);
        assert_string_equal(json_string_value(json_object_get(claims, "iss")), "TEAM123456");
        assert_int_equal(json_integer_value(json_object_get(claims, "iat")), 1700000000 + i);
        assert_int_equal(json_object_size(claims), 2);
        json_decref(head);
        json_decref(claims);
    }
    buf_free(&out);
}

/* ---- the shared token ---- */

static int busy; /* apns_token_header()'s word that the lock was held */

static struct provider_token *shared_map(void)
{
    struct provider_token *p = mmap(NULL, sizeof(*p), PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);

    assert_true(p != MAP_FAILED);
    assert_int_equal(provider_token_init(p), 0);
    return p;
}

static const char *jwt_of(const char *header)
{
    assert_non_null(header);
    assert_memory_equal(header, "authorization: bearer ", 22);
    return header + 22;
}

static void renewed_between_20_and_50_minutes(void **state)
{
    struct provider_token *s = shared_map();
    struct apns_token *a = apns_token_create(s, ec_key, "KEY1234567", "TEAM123456");
    struct apns_token *b = apns_token_create(s, ec_key, "KEY1234567", "TEAM123456");
    int64_t t0 = 1000000;
    uint64_t g1, g2;
    char first[PROVIDER_TOKEN_MAX + 32];
    json_t *head, *claims;

    (void)state;
    assert_true(APNS_TOKEN_RENEW_S >= 20 * 60 && APNS_TOKEN_RENEW_S <= 50 * 60);
    snprintf(first, sizeof(first), "%s", jwt_of(apns_token_header(a, t0, 1700000000, &g1, &busy)));
    verify_jwt(first, ec_key, &head, &claims);
    assert_int_equal(json_integer_value(json_object_get(claims, "iat")), 1700000000);
    json_decref(head);
    json_decref(claims);
    /* The other worker takes the same token, also just before the renewal. */
    assert_string_equal(jwt_of(apns_token_header(b, t0 + 60000, 1700000060, &g2, &busy)), first);
    assert_int_equal(g1, g2);
    assert_string_equal(jwt_of(apns_token_header(b, t0 + APNS_TOKEN_RENEW_S * 1000L - 1, 1700002399, &g2, &busy)), first);
    assert_int_equal(atomic_load(&s->made), 1);
    /* At the renewal age, one new token, which the other worker then takes. */
    assert_string_not_equal(jwt_of(apns_token_header(b, t0 + APNS_TOKEN_RENEW_S * 1000L, 1700002400, &g2, &busy)), first);
    assert_int_not_equal(g1, g2);
    snprintf(first, sizeof(first), "%s", jwt_of(apns_token_header(b, t0 + APNS_TOKEN_RENEW_S * 1000L, 0, &g2, &busy)));
    assert_string_equal(jwt_of(apns_token_header(a, t0 + APNS_TOKEN_RENEW_S * 1000L + 5, 1700002405, &g1, &busy)), first);
    assert_int_equal(g1, g2);
    assert_int_equal(atomic_load(&s->made), 2);
    apns_token_free(a);
    apns_token_free(b);
    munmap(s, sizeof(*s));
}

static void other_credentials_replace_the_token(void **state)
{
    struct provider_token *s = shared_map();
    struct apns_token *a = apns_token_create(s, ec_key, "KEY1234567", "TEAM123456");
    struct apns_token *b = apns_token_create(s, ec_key, "KEY7654321", "TEAM123456");
    json_t *head, *claims;
    uint64_t g;

    (void)state;
    apns_token_header(a, 1000, 1700000000, &g, &busy);
    verify_jwt(jwt_of(apns_token_header(b, 2000, 1700000001, &g, &busy)), ec_key, &head, &claims);
    assert_string_equal(json_string_value(json_object_get(head, "kid")), "KEY7654321");
    json_decref(head);
    json_decref(claims);
    apns_token_free(a);
    apns_token_free(b);
    munmap(s, sizeof(*s));
}

/* Workers in separate processes: one token for all of them, and one
 * replacement for an expired token however many of them were refused. */
static void workers_share_one_token_and_renew_once(void **state)
{
    enum { WORKERS = 4 };
    struct provider_token *s = shared_map();
    struct {
        _Atomic int go, got, expired;
        uint64_t gen[WORKERS];
        int made_new[WORKERS];
        char jwt[WORKERS][PROVIDER_TOKEN_MAX];
        char after[WORKERS][PROVIDER_TOKEN_MAX];
    } *out = mmap(NULL, sizeof(*out), PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    pid_t pids[WORKERS];

    (void)state;
    assert_true(out != MAP_FAILED);
    for (int w = 0; w < WORKERS; w++) {
        if ((pids[w] = fork()) == 0) {
            struct apns_token *t = apns_token_create(s, ec_key, "KEY1234567", "TEAM123456");
            uint64_t g;
            const char *h;
            while (!atomic_load(&out->go))
                ;
            /* The lock is only tried: a worker that finds it held and has
             * no copy yet tries again, as the sender does a second later. */
            for (long i = 0; (h = apns_token_header(t, 5000, 1700000000, &g, &busy)) == NULL && busy && i < 100000000;
                 i++)
                ;
            snprintf(out->jwt[w], PROVIDER_TOKEN_MAX, "%s", h ? h + 22 : "");
            out->gen[w] = g;
            atomic_fetch_add(&out->got, 1);
            while (atomic_load(&out->got) < WORKERS)
                ;
            /* Every worker is told the token expired. */
            out->made_new[w] = apns_token_expired(t, g, 6000, 1700000001);
            atomic_fetch_add(&out->expired, 1);
            while (atomic_load(&out->expired) < WORKERS)
                ;
            /* Held, the lock lets a worker go on with its copy a while:
             * each looks until it has the new token. */
            for (long i = 0; ((h = apns_token_header(t, 6001, 1700000001, &g, &busy)) == NULL && busy) ||
                             (h != NULL && g != atomic_load(&s->gen) && i < 100000000);
                 i++)
                ;
            snprintf(out->after[w], PROVIDER_TOKEN_MAX, "%s", h ? h + 22 : "");
            _exit(0);
        }
        assert_true(pids[w] > 0);
    }
    atomic_store(&out->go, 1);
    for (int w = 0; w < WORKERS; w++) {
        int status;
        assert_int_equal(waitpid(pids[w], &status, 0), pids[w]);
        assert_true(WIFEXITED(status) && WEXITSTATUS(status) == 0);
    }
    {
        int renewals = 0;
        for (int w = 0; w < WORKERS; w++) {
            assert_string_equal(out->jwt[w], out->jwt[0]);
            assert_true(out->jwt[w][0] != '\0');
            assert_int_equal(out->gen[w], out->gen[0]);
            assert_true(out->made_new[w] == 0 || out->made_new[w] == 1);
            renewals += out->made_new[w];
            assert_string_equal(out->after[w], out->after[0]);
        }
        assert_int_equal(renewals, 1);
        assert_string_not_equal(out->after[0], out->jwt[0]);
        assert_int_equal(atomic_load(&s->made), 2);
    }
    munmap(out, sizeof(*out));
    munmap(s, sizeof(*s));
}

/* A worker killed while holding the lock leaves a token that may be half
 * written: the next worker makes a new one instead of using it. */
static void dead_holder_leaves_no_half_token(void **state)
{
    struct provider_token *s = shared_map();
    struct apns_token *a = apns_token_create(s, ec_key, "KEY1234567", "TEAM123456");
    struct apns_token *b = apns_token_create(s, ec_key, "KEY1234567", "TEAM123456");
    json_t *head, *claims;
    uint64_t g1, g2, g3;
    pid_t pid;
    int status;

    (void)state;
    apns_token_header(a, 1000, 1700000000, &g1, &busy);
    if ((pid = fork()) == 0) {
        provider_token_lock(s);
        memset(s->text, 'x', 10); /* a write cut short */
        _exit(0);
    }
    assert_int_equal(waitpid(pid, &status, 0), pid);
    /* ...and the fleet has nothing to publish: it may bring one instead. */
    assert_int_equal(provider_token_trylock(s), 0);
    assert_int_equal(s->len, 0);
    assert_int_equal(atomic_load(&s->published), atomic_load(&s->gen));
    provider_token_unlock(s);
    /* The next worker to look makes a new token rather than copy that one... */
    verify_jwt(jwt_of(apns_token_header(b, 2000, 1700000001, &g2, &busy)), ec_key, &head, &claims);
    assert_int_not_equal(g1, g2);
    json_decref(head);
    json_decref(claims);
    /* ...which the others then take. */
    apns_token_header(a, 2001, 1700000001, &g3, &busy);
    assert_int_equal(g3, g2);
    assert_int_equal(atomic_load(&s->made), 2);
    apns_token_free(a);
    apns_token_free(b);
    munmap(s, sizeof(*s));
}

/* A worker stopped (SIGSTOP) while it holds the lock: the others never wait
 * for it.  One with a copy young enough for Apple goes on with it; one
 * without is told to try later; once the holder runs and lets go, the token
 * is renewed as usual. */
static void stopped_holder_blocks_no_one(void **state)
{
    struct provider_token *s = shared_map();
    struct apns_token *a = apns_token_create(s, ec_key, "KEY1234567", "TEAM123456");
    struct apns_token *b = apns_token_create(s, ec_key, "KEY1234567", "TEAM123456");
    const int64_t renew = APNS_TOKEN_RENEW_S * 1000L, usable = APNS_TOKEN_USABLE_S * 1000L;
    char first[PROVIDER_TOKEN_MAX];
    uint64_t g1, g2;
    int pipefd[2], status;
    pid_t pid;
    char c;

    (void)state;
    snprintf(first, sizeof(first), "%s", jwt_of(apns_token_header(a, 1000, 1700000000, &g1, &busy)));
    assert_int_equal(pipe(pipefd), 0);
    if ((pid = fork()) == 0) {
        provider_token_lock(s);
        (void)!write(pipefd[1], "l", 1);
        raise(SIGSTOP); /* holding the lock */
        provider_token_unlock(s);
        _exit(0);
    }
    assert_int_equal(read(pipefd[0], &c, 1), 1);
    assert_int_equal(waitpid(pid, &status, WUNTRACED), pid);
    assert_true(WIFSTOPPED(status));
    /* Past the renewal, a copy under Apple's hour: used, nothing waits. */
    assert_string_equal(jwt_of(apns_token_header(a, 1000 + renew, 1700002400, &g2, &busy)), first);
    assert_int_equal(busy, 0);
    assert_int_equal(g2, g1);
    /* Too old to go on with, or no copy at all: try later, at once. */
    assert_null(apns_token_header(a, 1000 + usable, 1700003300, &g2, &busy));
    assert_int_equal(busy, 1);
    assert_null(apns_token_header(b, 1000 + renew, 1700002400, &g2, &busy));
    assert_int_equal(busy, 1);
    /* Apple's "expired" while the lock is held renews nothing, and waits for nothing. */
    assert_int_equal(apns_token_expired(a, g1, 1000 + renew, 1700002400), 0);
    assert_int_equal(atomic_load(&s->made), 1);
    /* The holder runs again and lets go: the next look renews it. */
    kill(pid, SIGCONT);
    assert_int_equal(waitpid(pid, &status, 0), pid);
    assert_string_not_equal(jwt_of(apns_token_header(b, 2000 + usable, 1700003301, &g2, &busy)), first);
    assert_int_equal(busy, 0);
    assert_int_equal(atomic_load(&s->made), 2);
    close(pipefd[0]);
    close(pipefd[1]);
    apns_token_free(a);
    apns_token_free(b);
    munmap(s, sizeof(*s));
}

/* Fleet mode: while the lease is ahead no worker signs, it asks; a grant
 * is used once, and only by a worker of the key it was asked for. */
static void fleet_grant_is_for_its_key_and_used_once(void **state)
{
    struct provider_token *s = shared_map();
    struct apns_token *a = apns_token_create(s, ec_key, "KEY1234567", "TEAM123456");
    struct apns_token *b = apns_token_create(s, ec_key, "KEY7654321", "TEAM123456"); /* a reload's other key */
    struct apns_token *a2 = apns_token_create(s, ec_key, "KEY1234567", "TEAM123456");
    unsigned char signer_a[32];
    uint64_t g;

    (void)state;
    atomic_store(&s->fleet_until, 100000);
    assert_null(apns_token_header(a, 1000, 1700000000, &g, &busy));
    assert_int_equal(busy, 1);
    assert_int_equal(atomic_load(&s->want), 1);
    assert_int_equal(atomic_load(&s->made), 0);
    memcpy(signer_a, s->wanted, sizeof(signer_a));
    /* The fleet grants the making for a's key: b may not use it... */
    memcpy(s->granted, signer_a, sizeof(signer_a));
    atomic_store(&s->grant_until, 6000);
    assert_null(apns_token_header(b, 1100, 1700000000, &g, &busy));
    assert_int_equal(busy, 1);
    assert_int_equal(atomic_load(&s->made), 0);
    /* ...a does, once; another worker of that key then copies its token. */
    assert_non_null(apns_token_header(a, 1200, 1700000001, &g, &busy));
    assert_int_equal(atomic_load(&s->made), 1);
    assert_int_equal(atomic_load(&s->grant_until), 0);
    assert_int_equal(atomic_load(&s->want), 0);
    assert_non_null(apns_token_header(a2, 1300, 1700000001, &g, &busy));
    assert_int_equal(atomic_load(&s->made), 1);
    /* Apple refuses it: nobody goes on with it, and the fleet is asked. */
    assert_int_equal(apns_token_expired(a2, g, 1400, 1700000002), 0);
    assert_int_equal(atomic_load(&s->refused), g);
    assert_int_equal(atomic_load(&s->want), 1);
    assert_int_equal(apns_token_expired(a, g, 1401, 1700000002), 0); /* told again: nothing more */
    assert_null(apns_token_header(a, 1500, 1700000002, &g, &busy));
    assert_int_equal(busy, 1);
    /* The lease runs out (Redis lost): the workers sign their own again. */
    assert_non_null(apns_token_header(a, 100000, 1700000100, &g, &busy));
    assert_int_equal(atomic_load(&s->made), 2);
    apns_token_free(a);
    apns_token_free(b);
    apns_token_free(a2);
    munmap(s, sizeof(*s));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(loads_a_p256_key),
        cmocka_unit_test(bad_key_files_are_named),
        cmocka_unit_test(ids_and_topics),
        cmocka_unit_test(jwt_is_es256_with_kid_iss_iat),
        cmocka_unit_test(renewed_between_20_and_50_minutes),
        cmocka_unit_test(other_credentials_replace_the_token),
        cmocka_unit_test(workers_share_one_token_and_renew_once),
        cmocka_unit_test(dead_holder_leaves_no_half_token),
        cmocka_unit_test(stopped_holder_blocks_no_one),
        cmocka_unit_test(fleet_grant_is_for_its_key_and_used_once),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
