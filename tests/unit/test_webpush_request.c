/*
 * tests/unit/test_webpush_request.c - /webpush/send bodies, --webpush-allow
 * and the push services' answers: the subscription a target is made of, the
 * fields each format carries, every rule intake applies, which hosts and
 * addresses are allowed, and the outcome of each status.
 */
#include "cmocka_all.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdio.h>
#include <string.h>

#include "../../child/core/request.h"
#include "../../child/upstream/webpush/webpush.h"
#include "../../child/upstream/webpush/webpush_request.h"
#include "../../common/webpush_allow.h"

static const struct request_limits wp_limits = {
    REQUEST_MAX_BODY, REQUEST_MAX_TOKENS, REQUEST_MAX_PAYLOAD, {[UPSTREAM_WEBPUSH] = &webpush_request_rules}};

/* A point on P-256 (made with Python's cryptography), the same with its last
 * bit flipped (off the curve), and a 16-byte auth secret. */
#define P256DH "BD7Xoo7GSO3OXVt-JS9rKq-7RINRFKJLPKqPcQ9kmTvCVxGjTNySKQgLY58Jl3_rfKkezOFkm_6orYXHKyBq3n4"
#define OFF_CURVE "BD7Xoo7GSO3OXVt-JS9rKq-7RINRFKJLPKqPcQ9kmTvCVxGjTNySKQgLY58Jl3_rfKkezOFkm_6orYXHKyBq3n8"
#define AUTH "AAECAwQFBgcICQoLDA0ODw"
#define EP "https://fcm.googleapis.com/fcm/send/abc:def"
#define SUB(ep, p, a)                                                                                                  \
    "{\"endpoint\":\"" ep "\",\"expirationTime\":null,\"keys\":{\"p256dh\":\"" p "\",\"auth\":\"" a "\"}}"

static int parse(const char *ct, const char *body, struct send_request *r, char *err, size_t errlen)
{
    return request_parse(UPSTREAM_WEBPUSH, ct, strlen(ct), body, strlen(body), &wp_limits, r, err, errlen);
}

static int json(const char *body, char *err, size_t errlen)
{
    struct send_request r;
    int rc = parse("application/json", body, &r, err, errlen);

    if (rc == 0)
        request_free(&r);
    return rc;
}

static void a_subscription_becomes_endpoint_and_keys(void **state)
{
    struct send_request r;
    struct webpush_target t;
    char err[256];

    (void)state;
    assert_int_equal(
        parse("application/json",
              "{\"subscriptions\":[" SUB(EP, P256DH, AUTH) "," SUB(
                  "https://a.push.services.mozilla.com/x", P256DH "=",
                  AUTH "==") "],"
                             "\"payload\":\"hi \\u2603\",\"ttl\":60,\"urgency\":\"high\",\"topic\":\"news_1\"}",
              &r, err, sizeof(err)),
        0);
    assert_int_equal(r.ntargets, 2);
    assert_string_equal(r.targets[0], EP " " P256DH " " AUTH);
    /* Padding is dropped: one subscription, one name. */
    assert_string_equal(r.targets[1], "https://a.push.services.mozilla.com/x " P256DH " " AUTH);
    assert_int_equal(webpush_target_split(r.targets[0], strlen(r.targets[0]), &t), 0);
    assert_int_equal(t.endpoint_len, strlen(EP));
    assert_int_equal(request_target_shown(UPSTREAM_WEBPUSH, r.targets[0], strlen(r.targets[0])), strlen(EP));
    assert_string_equal(r.msg.payload, "hi \xe2\x98\x83");
    assert_string_equal(r.msg.opt[ROPT_WEBPUSH_TTL], "60");
    assert_string_equal(r.msg.opt[ROPT_WEBPUSH_URGENCY], "high");
    assert_string_equal(r.msg.opt[ROPT_WEBPUSH_TOPIC], "news_1");
    assert_int_equal(request_check(&r, &wp_limits, err, sizeof(err)), 0);
    request_free(&r);
}

static void an_object_payload_is_its_json_text(void **state)
{
    struct send_request r;
    char err[256];

    (void)state;
    assert_int_equal(parse("application/json",
                           "{\"payload\":{\"a\":[1,2]},\"subscriptions\":[" SUB(EP, P256DH, AUTH) "]}", &r, err,
                           sizeof(err)),
                     0);
    assert_string_equal(r.msg.payload, "{\"a\":[1,2]}");
    assert_null(r.msg.opt[ROPT_WEBPUSH_TTL]);
    request_free(&r);
}

static void a_form_repeats_subscription(void **state)
{
    struct send_request r;
    char err[256];

    (void)state;
    assert_int_equal(parse("application/x-www-form-urlencoded",
                           "subscription=%7B%22endpoint%22%3A%22https%3A%2F%2Fweb.push.apple.com%2Fq%22%2C%22keys%22%3A"
                           "%7B%22p256dh%22%3A%22" P256DH "%22%2C%22auth%22%3A%22" AUTH "%22%7D%7D"
                           "&subscription=%7B%22endpoint%22%3A%22https%3A%2F%2Fweb.push.apple.com%2Fr%22%2C%22keys%22"
                           "%3A%7B%22p256dh%22%3A%22" P256DH "%22%2C%22auth%22%3A%22" AUTH "%22%7D%7D"
                           "&payload=plain+text&urgency=low&ttl=0&other=ignored",
                           &r, err, sizeof(err)),
                     0);
    assert_int_equal(r.ntargets, 2);
    assert_string_equal(r.targets[0], "https://web.push.apple.com/q " P256DH " " AUTH);
    assert_string_equal(r.targets[1], "https://web.push.apple.com/r " P256DH " " AUTH);
    assert_string_equal(r.msg.payload, "plain text");
    assert_string_equal(r.msg.opt[ROPT_WEBPUSH_URGENCY], "low");
    assert_string_equal(r.msg.opt[ROPT_WEBPUSH_TTL], "0");
    request_free(&r);
}

static void every_rule(void **state)
{
    static const struct {
        const char *body, *want;
    } cases[] = {
        {"{\"subscriptions\":[" SUB("http://x.com/a", P256DH, AUTH) "],\"payload\":\"x\"}", "https://"},
        {"{\"subscriptions\":[" SUB("https://u@x.com/a", P256DH, AUTH) "],\"payload\":\"x\"}", "user information"},
        {"{\"subscriptions\":[" SUB("https://x.com/a b", P256DH, AUTH) "],\"payload\":\"x\"}", "space"},
        {"{\"subscriptions\":[" SUB("https://x.com/a\\r\\nX: y", P256DH, AUTH) "],\"payload\":\"x\"}", "control"},
        {"{\"subscriptions\":[" SUB("https://x.com/\\u00e9", P256DH, AUTH) "],\"payload\":\"x\"}", "ASCII"},
        {"{\"subscriptions\":[" SUB("https://x.com:99999/a", P256DH, AUTH) "],\"payload\":\"x\"}", "port"},
        {"{\"subscriptions\":[" SUB(EP, OFF_CURVE, AUTH) "],\"payload\":\"x\"}", "not a point on the P-256 curve"},
        {"{\"subscriptions\":[" SUB(EP, "BD7X", AUTH) "],\"payload\":\"x\"}", "3 bytes"},
        {"{\"subscriptions\":[" SUB(EP, "BD7X$", AUTH) "],\"payload\":\"x\"}", "not base64url"},
        {"{\"subscriptions\":[" SUB(EP, P256DH, "AAEC") "],\"payload\":\"x\"}", "3 bytes"},
        {"{\"subscriptions\":[" SUB(EP, P256DH, "") "],\"payload\":\"x\"}", "keys.auth is empty"},
        {"{\"subscriptions\":[{\"endpoint\":\"" EP "\"}],\"payload\":\"x\"}", "no \"keys\" object"},
        {"{\"subscriptions\":[{\"keys\":{}}],\"payload\":\"x\"}", "no \"endpoint\" string"},
        {"{\"subscriptions\":[7],\"payload\":\"x\"}", "JSON object"},
        {"{\"subscriptions\":{},\"payload\":\"x\"}", "must be an array"},
        {"{\"subscriptions\":[],\"payload\":\"x\"}", "no subscriptions"},
        {"{\"subscriptions\":[" SUB(EP, P256DH, AUTH) "]}", "payload is missing"},
        {"{\"subscriptions\":[" SUB(EP, P256DH, AUTH) "],\"payload\":true}", "object or string"},
        {"{\"subscriptions\":[" SUB(EP, P256DH, AUTH) "],\"payload\":\"\\u0000\"}", "NUL"},
        {"{\"subscriptions\":[" SUB(EP, P256DH, AUTH) "],\"payload\":\"x\",\"ttl\":2419201}", "ttl"},
        {"{\"subscriptions\":[" SUB(EP, P256DH, AUTH) "],\"payload\":\"x\",\"ttl\":1.5}", "ttl"},
        {"{\"subscriptions\":[" SUB(EP, P256DH, AUTH) "],\"payload\":\"x\",\"urgency\":\"now\"}", "urgency"},
        {"{\"subscriptions\":[" SUB(EP, P256DH, AUTH) "],\"payload\":\"x\",\"topic\":\"a.b\"}", "topic"},
        {"{\"subscriptions\":[" SUB(EP, P256DH, AUTH) "],\"payload\":\"x\",\"topic\":\"\"}", "topic"},
        {"{\"subscriptions\":[" SUB(EP, P256DH, AUTH) "],\"payload\":\"x\",\"collapse_key\":\"c\"}", "unknown field"},
        {"{\"tokens\":[\"t\"],\"payload\":\"x\"}", "\"subscriptions\", not \"tokens\""},
    };
    char err[256];

    (void)state;
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        err[0] = '\0';
        if (json(cases[i].body, err, sizeof(err)) != -EINVAL || strstr(err, cases[i].want) == NULL)
            fail_msg("case %zu: %s gave \"%s\", not \"%s\"", i, cases[i].body, err, cases[i].want);
    }
}

static void the_payload_bound_is_one_record(void **state)
{
    char body[8192], err[256];
    int n;

    (void)state;
    n = snprintf(body, sizeof(body), "{\"subscriptions\":[" SUB(EP, P256DH, AUTH) "],\"payload\":\"%*s\"}",
                 ECE_MAX_PLAINTEXT, "");
    assert_true(n > 0 && (size_t)n < sizeof(body));
    assert_int_equal(json(body, err, sizeof(err)), 0);
    snprintf(body, sizeof(body), "{\"subscriptions\":[" SUB(EP, P256DH, AUTH) "],\"payload\":\"%*s\"}",
             ECE_MAX_PLAINTEXT + 1, "");
    assert_int_equal(json(body, err, sizeof(err)), -EINVAL);
    assert_non_null(strstr(err, "3993"));
}

static void a_stored_record_is_checked_again(void **state)
{
    char *targets[] = {(char *)EP " " OFF_CURVE " " AUTH};
    struct send_request r = {.upstream = UPSTREAM_WEBPUSH, .kind = TARGET_TOKEN, .targets = targets, .ntargets = 1};
    char err[256];

    (void)state;
    r.msg.payload = "x";
    r.msg.payload_len = 1;
    assert_int_equal(request_check(&r, &wp_limits, err, sizeof(err)), -EINVAL);
    assert_non_null(strstr(err, "curve"));
    targets[0] = (char *)EP;
    assert_int_equal(request_check(&r, &wp_limits, err, sizeof(err)), -EINVAL);
    targets[0] = (char *)EP " " P256DH " " AUTH;
    assert_int_equal(request_check(&r, &wp_limits, err, sizeof(err)), 0);
}

static void allow_lists(void **state)
{
    char err[256];

    (void)state;
    assert_int_equal(webpush_allow_check(WEBPUSH_ALLOW_DEFAULT, err, sizeof(err)), 0);
    assert_int_equal(webpush_allow_check("localhost, 127.0.0.1,[::1],::1,*.example.com", err, sizeof(err)), 0);
    assert_int_equal(webpush_allow_check("", err, sizeof(err)), -1);
    assert_int_equal(webpush_allow_check("a,,b", err, sizeof(err)), -1);
    assert_int_equal(webpush_allow_check("*.", err, sizeof(err)), -1);
    assert_int_equal(webpush_allow_check("*.1.2.3.4", err, sizeof(err)), -1);
    assert_int_equal(webpush_allow_check("https://x.com", err, sizeof(err)), -1);
    assert_int_equal(webpush_allow_check("x\ny", err, sizeof(err)), -1);
    assert_null(strchr(err, '\n'));
    assert_true(webpush_allow_host(WEBPUSH_ALLOW_DEFAULT, "fcm.googleapis.com", 18));
    assert_true(webpush_allow_host(WEBPUSH_ALLOW_DEFAULT, "FCM.googleapis.com", 18));
    assert_true(webpush_allow_host(WEBPUSH_ALLOW_DEFAULT, "updates.push.services.mozilla.com", 33));
    assert_false(webpush_allow_host(WEBPUSH_ALLOW_DEFAULT, "push.services.mozilla.com", 25));
    assert_false(webpush_allow_host(WEBPUSH_ALLOW_DEFAULT, "evilpush.services.mozilla.com", 29));
    assert_false(webpush_allow_host(WEBPUSH_ALLOW_DEFAULT, "fcm.googleapis.com.evil.com", 27));
    assert_false(webpush_allow_host(WEBPUSH_ALLOW_DEFAULT, "127.0.0.1", 9));
    assert_true(webpush_allow_host("::1", "[::1]", 5));
    assert_true(webpush_allow_literal("*.example.com,localhost", "localhost", 9));
    assert_false(webpush_allow_literal("*.example.com,localhost", "a.example.com", 13));
}

static int internal4(const char *text)
{
    struct sockaddr_in a = {.sin_family = AF_INET};

    assert_int_equal(inet_pton(AF_INET, text, &a.sin_addr), 1);
    return webpush_addr_internal((struct sockaddr *)&a);
}

static int internal6(const char *text)
{
    struct sockaddr_in6 a = {.sin6_family = AF_INET6};

    assert_int_equal(inet_pton(AF_INET6, text, &a.sin6_addr), 1);
    return webpush_addr_internal((struct sockaddr *)&a);
}

static void internal_addresses(void **state)
{
    static const char *const in4[] = {"127.0.0.1",      "127.255.0.9", "10.1.2.3",        "172.16.0.1",
                                      "172.31.255.255", "192.168.1.1", "169.254.169.254", "0.0.0.0",
                                      "100.64.0.1",     "224.0.0.1",   "255.255.255.255", "192.0.0.8"};
    static const char *const out4[] = {"8.8.8.8",     "172.32.0.1",  "172.15.255.255",
                                       "192.169.0.1", "142.250.1.1", "100.128.0.1"};
    static const char *const in6[] = {"::1",
                                      "::",
                                      "fc00::1",
                                      "fd12:3456::1",
                                      "fe80::1",
                                      "ff02::1",
                                      "::ffff:127.0.0.1",
                                      "::ffff:10.0.0.1",
                                      "64:ff9b::a9fe:a9fe",
                                      "::127.0.0.1"};
    static const char *const out6[] = {"2001:4860:4860::8888", "2a00:1450::1", "::ffff:8.8.8.8"};
    struct sockaddr_in a = {.sin_family = AF_INET};
    char text[64];

    (void)state;
    for (size_t i = 0; i < sizeof(in4) / sizeof(in4[0]); i++)
        if (!internal4(in4[i]))
            fail_msg("%s is internal", in4[i]);
    for (size_t i = 0; i < sizeof(out4) / sizeof(out4[0]); i++)
        if (internal4(out4[i]))
            fail_msg("%s is public", out4[i]);
    for (size_t i = 0; i < sizeof(in6) / sizeof(in6[0]); i++)
        if (!internal6(in6[i]))
            fail_msg("%s is internal", in6[i]);
    for (size_t i = 0; i < sizeof(out6) / sizeof(out6[0]); i++)
        if (internal6(out6[i]))
            fail_msg("%s is public", out6[i]);
    inet_pton(AF_INET, "127.0.0.1", &a.sin_addr);
    webpush_addr_text((struct sockaddr *)&a, text, sizeof(text));
    assert_string_equal(text, "127.0.0.1");
}

static void every_answer(void **state)
{
    static const struct {
        long status;
        enum outcome_kind kind;
        enum cause cause;
    } cases[] = {
        {200, OUTCOME_DELIVERED, CAUSE_NONE},
        {201, OUTCOME_DELIVERED, CAUSE_NONE},
        {202, OUTCOME_DELIVERED, CAUSE_NONE},
        {404, OUTCOME_INVALID, CAUSE_NONE},
        {410, OUTCOME_INVALID, CAUSE_NONE},
        {429, OUTCOME_RETRY, CAUSE_HTTP_429},
        {500, OUTCOME_RETRY, CAUSE_HTTP_5XX},
        {503, OUTCOME_RETRY, CAUSE_UNAVAILABLE},
        {502, OUTCOME_RETRY, CAUSE_HTTP_5XX},
        {400, OUTCOME_FAILED, CAUSE_BAD_REQUEST},
        {401, OUTCOME_FAILED, CAUSE_UNAUTHORIZED},
        {403, OUTCOME_FAILED, CAUSE_UNAUTHORIZED},
        {413, OUTCOME_FAILED, CAUSE_MESSAGE_REJECTED},
        {301, OUTCOME_FAILED, CAUSE_UNEXPECTED_STATUS},
        {302, OUTCOME_FAILED, CAUSE_UNEXPECTED_STATUS},
    };
    struct outcome o;
    char detail[32];

    (void)state;
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        struct upstream_result res = {CURLE_OK, cases[i].status, "bad\r\nthing", 10, 0};
        webpush_classify(&res, 0, &o, detail, sizeof(detail));
        if (o.kind != cases[i].kind || o.cause != cases[i].cause)
            fail_msg("HTTP %ld: outcome %d cause %d", cases[i].status, (int)o.kind, (int)o.cause);
        if (cases[i].kind != OUTCOME_DELIVERED)
            assert_string_equal(detail, "bad  thing");
    }
    struct upstream_result none = {CURLE_COULDNT_CONNECT, 0, "", 0, 0};
    webpush_classify(&none, 0, &o, detail, sizeof(detail));
    assert_int_equal(o.kind, OUTCOME_RETRY);
    webpush_classify(&none, 1, &o, detail, sizeof(detail));
    assert_int_equal(o.kind, OUTCOME_FAILED);
    assert_int_equal(o.cause, CAUSE_ADDRESS_REFUSED);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(a_subscription_becomes_endpoint_and_keys),
        cmocka_unit_test(an_object_payload_is_its_json_text),
        cmocka_unit_test(a_form_repeats_subscription),
        cmocka_unit_test(every_rule),
        cmocka_unit_test(the_payload_bound_is_one_record),
        cmocka_unit_test(a_stored_record_is_checked_again),
        cmocka_unit_test(allow_lists),
        cmocka_unit_test(internal_addresses),
        cmocka_unit_test(every_answer),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
