/*
 * tests/unit/test_request_apns.c - /apns/send bodies and Apple's answers:
 * the fields each format carries, every rule intake applies, and the
 * outcome of each status and reason APNs can answer.
 */
#include "cmocka_all.h"

#include <stdio.h>
#include <string.h>

#include "../../child/core/request.h"
#include "../../child/upstream/apns/apns_request.h"
#include "../../child/upstream/apns/apns.h"

/* Intake's limits with the APNs rules, as a worker sets them. */
static const struct request_limits apns_limits = {REQUEST_MAX_BODY, REQUEST_MAX_TOKENS, REQUEST_MAX_PAYLOAD,
                                                  {[UPSTREAM_APNS] = &apns_request_rules}};

#define TOK "0123456789abcdef0123456789ABCDEF"

static int parse(const char *ct, const char *body, struct send_request *r, char *err, size_t errlen)
{
    return request_parse(UPSTREAM_APNS, ct, strlen(ct), body, strlen(body), &apns_limits, r, err, errlen);
}

static int parse_json(const char *body, struct send_request *r, char *err, size_t errlen)
{
    return parse("application/json", body, r, err, errlen);
}

static void form_fields_become_header_texts(void **state)
{
    struct send_request r;
    char err[256];

    (void)state;
    assert_int_equal(parse("application/x-www-form-urlencoded",
                           "tokens=" TOK "&tokens=" TOK "&payload=%7B%22aps%22%3A%7B%7D%7D&topic=com.example.app"
                           "&push_type=background&priority=5&expiration=1700000000&collapse_id=a+b&other=ignored",
                           &r, err, sizeof(err)),
                     0);
    assert_int_equal(r.upstream, UPSTREAM_APNS);
    assert_int_equal(r.ntargets, 2);
    assert_string_equal(r.msg.payload, "{\"aps\":{}}");
    assert_string_equal(r.msg.opt[ROPT_APNS_TOPIC], "com.example.app");
    assert_string_equal(r.msg.opt[ROPT_APNS_PUSH_TYPE], "background");
    assert_string_equal(r.msg.opt[ROPT_APNS_PRIORITY], "5");
    assert_string_equal(r.msg.opt[ROPT_APNS_EXPIRATION], "1700000000");
    assert_string_equal(r.msg.opt[ROPT_APNS_COLLAPSE_ID], "a b");
    for (int o = 0; o < ROPT_FCM_COUNT; o++)
        assert_null(r.msg.opt[o]);
    request_free(&r);
}

static void json_numbers_and_strings(void **state)
{
    struct send_request r;
    char err[256];

    (void)state;
    assert_int_equal(parse_json("{\"tokens\":[\"" TOK "\"],\"payload\":{\"aps\":{\"alert\":\"\\u00e9\"}},"
                                "\"priority\":10,\"expiration\":\"0\",\"collapse_id\":\"c\\u0041\",\"topic\":\"t.v\"}",
                                &r, err, sizeof(err)),
                     0);
    assert_string_equal(r.msg.opt[ROPT_APNS_PRIORITY], "10");
    assert_string_equal(r.msg.opt[ROPT_APNS_EXPIRATION], "0");
    assert_string_equal(r.msg.opt[ROPT_APNS_COLLAPSE_ID], "cA");
    assert_string_equal(r.msg.opt[ROPT_APNS_TOPIC], "t.v");
    assert_int_equal(request_check(&r, &apns_limits, err, sizeof(err)), 0);
    request_free(&r);
}

static void expect_400(const char *body, const char *needle)
{
    struct send_request r;
    char err[256] = "";
    int rc = body[0] == '{' ? parse_json(body, &r, err, sizeof(err))
                            : parse("application/x-www-form-urlencoded", body, &r, err, sizeof(err));

    if (rc == 0)
        request_free(&r);
    if (rc != -EINVAL || strstr(err, needle) == NULL)
        fail_msg("%s: got %d \"%s\", expected -EINVAL (400) with \"%s\"", body, rc, err, needle);
}

static void every_rule(void **state)
{
    char big[5300];

    (void)state;
    expect_400("{\"tokens\":[\"" TOK "\"],\"payload\":{\"aps\":{}},\"push_type\":\"Alert\"}", "push_type");
    expect_400("{\"tokens\":[\"" TOK "\"],\"payload\":{\"aps\":{}},\"priority\":0}", "priority");
    expect_400("{\"tokens\":[\"" TOK "\"],\"payload\":{\"aps\":{}},\"priority\":10.0}", "priority");
    expect_400("{\"tokens\":[\"" TOK "\"],\"payload\":{\"aps\":{}},\"priority\":true}", "priority");
    expect_400("{\"tokens\":[\"" TOK "\"],\"payload\":{\"aps\":{}},\"expiration\":12345678901}", "expiration");
    expect_400("{\"tokens\":[\"" TOK "\"],\"payload\":{\"aps\":{}},\"expiration\":1e9}", "expiration");
    expect_400("{\"tokens\":[\"" TOK "\"],\"payload\":{\"aps\":{}},\"collapse_id\":\"\"}", "collapse_id");
    expect_400("{\"tokens\":[\"" TOK "\"],\"payload\":{\"aps\":{}},\"collapse_id\":\"a\\u0000b\"}", "NUL");
    expect_400("{\"tokens\":[\"" TOK "\"],\"payload\":{\"aps\":{}},\"topic\":\"a/b\"}", "topic");
    expect_400("{\"tokens\":[\"" TOK "\"],\"payload\":{\"aps\":{}},\"topic\":7}", "must be a string");
    expect_400("{\"tokens\":[\"" TOK "\"],\"payload\":{\"aps\":{}},\"priority\":\"high\"}", "priority");
    expect_400("{\"tokens\":[\"" TOK "\"],\"payload\":{\"aps\":{}},\"android\":{}}", "unknown field");
    expect_400("{\"tokens\":[\"" TOK "\"],\"payload\":{\"aps\":[]}}", "\"aps\" must be");
    expect_400("{\"tokens\":[\"" TOK "\"],\"payload\":{\"x\":1}}", "no \"aps\"");
    expect_400("{\"tokens\":[\"0123456789abcdef0\"],\"payload\":{\"aps\":{}}}", "not an APNs device token");
    expect_400("{\"tokens\":[\"0123456789abcde\"],\"payload\":{\"aps\":{}}}", "not an APNs device token");
    expect_400("{\"tokens\":[\"0123456789abcdeg\"],\"payload\":{\"aps\":{}}}", "not an APNs device token");
    expect_400("{\"topic\":\"com.x\",\"payload\":{\"aps\":{}}}", "no tokens");
    expect_400("tokens=" TOK "&payload=%7B%22aps%22%3A%7B%7D%7D&collapse_id=a%0Db", "control character");
    expect_400("tokens=" TOK "&payload=%7B%22aps%22%3A%7B%7D%7D&topic=a%00b", "topic");
    expect_400("tokens=" TOK "&payload=%7B%22aps%22%3A%7B%7D%7D&topic=a.b&topic=a.c", "given twice");
    /* 4096 bytes, or 5120 for voip */
    snprintf(big, sizeof(big), "{\"tokens\":[\"" TOK "\"],\"payload\":{\"aps\":{},\"x\":\"%4086d\"}}", 1);
    expect_400(big, "4096-byte limit");
    snprintf(big, sizeof(big),
             "{\"tokens\":[\"" TOK "\"],\"push_type\":\"voip\",\"payload\":{\"aps\":{},\"x\":\"%5110d\"}}", 1);
    expect_400(big, "5120-byte limit");
}

static void limits_are_inclusive(void **state)
{
    struct send_request r;
    char body[5400], err[256];

    (void)state;
    /* {"aps":{},"x":"..."} is 17 bytes plus the string. */
    snprintf(body, sizeof(body), "{\"tokens\":[\"" TOK "\"],\"payload\":{\"aps\":{},\"x\":\"%4079d\"}}", 1);
    assert_int_equal(parse_json(body, &r, err, sizeof(err)), 0);
    assert_int_equal(r.msg.payload_len, 4096);
    request_free(&r);
    snprintf(body, sizeof(body),
             "{\"tokens\":[\"" TOK "\"],\"push_type\":\"voip\",\"payload\":{\"aps\":{},\"x\":\"%5103d\"}}", 1);
    assert_int_equal(parse_json(body, &r, err, sizeof(err)), 0);
    assert_int_equal(r.msg.payload_len, 5120);
    request_free(&r);
    snprintf(body, sizeof(body), "{\"tokens\":[\"" TOK "\"],\"payload\":{\"aps\":{}},\"collapse_id\":\"%064d\"}", 0);
    assert_int_equal(parse_json(body, &r, err, sizeof(err)), 0);
    request_free(&r);
    assert_int_equal(parse_json("{\"tokens\":[\"" TOK "\"],\"payload\":{\"mdm\":\"m\"},\"push_type\":\"mdm\"}", &r, err,
                                sizeof(err)),
                     0);
    request_free(&r);
    for (const char *const *t =
             (const char *const[]){"alert", "background", "location", "voip", "complication", "fileprovider",
                                   "liveactivity", "pushtotalk", "widgets", "controls", NULL};
         *t; t++)
        assert_true(apns_request_push_type_ok(*t, strlen(*t)));
}

static void classify(long status, const char *body, enum outcome_kind kind, enum cause cause, int expired,
                     const char *detail)
{
    struct upstream_result res = {CURLE_OK, status, body, strlen(body), 0};
    struct outcome out;
    char d[256];
    int exp;

    apns_classify(&res, &out, &exp, d, sizeof(d));
    if (out.kind != kind || out.cause != cause || exp != expired || strcmp(d, detail) != 0)
        fail_msg("HTTP %ld %s: got kind %d cause %d expired %d detail \"%s\"", status, body, out.kind, out.cause, exp,
                 d);
}

static void every_answer(void **state)
{
    struct upstream_result none = {CURLE_COULDNT_CONNECT, 0, "", 0, 0};
    struct outcome out;
    char d[64];
    int exp;

    (void)state;
    classify(200, "", OUTCOME_DELIVERED, CAUSE_NONE, 0, "");
    classify(410, "{\"reason\":\"Unregistered\",\"timestamp\":1}", OUTCOME_INVALID, CAUSE_NONE, 0, "Unregistered");
    classify(400, "{\"reason\":\"BadDeviceToken\"}", OUTCOME_INVALID, CAUSE_NONE, 0, "BadDeviceToken");
    classify(400, "{\"reason\":\"DeviceTokenNotForTopic\"}", OUTCOME_INVALID, CAUSE_NONE, 0, "DeviceTokenNotForTopic");
    classify(400, "{\"reason\":\"BadCollapseId\"}", OUTCOME_FAILED, CAUSE_BAD_REQUEST, 0, "BadCollapseId");
    classify(403, "{\"reason\":\"ExpiredProviderToken\"}", OUTCOME_RETRY, CAUSE_TOKEN_REFUSED, 1,
             "ExpiredProviderToken");
    classify(403, "{\"reason\":\"InvalidProviderToken\"}", OUTCOME_FAILED, CAUSE_UNAUTHORIZED, 0,
             "InvalidProviderToken");
    classify(429, "{\"reason\":\"TooManyRequests\"}", OUTCOME_RETRY, CAUSE_HTTP_429, 0, "TooManyRequests");
    classify(500, "{\"reason\":\"InternalServerError\"}", OUTCOME_RETRY, CAUSE_INTERNAL, 0, "InternalServerError");
    classify(503, "{\"reason\":\"ServiceUnavailable\"}", OUTCOME_RETRY, CAUSE_UNAVAILABLE, 0, "ServiceUnavailable");
    classify(502, "bad gateway", OUTCOME_RETRY, CAUSE_HTTP_5XX, 0, "");
    classify(413, "{\"reason\":\"PayloadTooLarge\"}", OUTCOME_FAILED, CAUSE_MESSAGE_REJECTED, 0, "PayloadTooLarge");
    classify(405, "{\"reason\":\"MethodNotAllowed\"}", OUTCOME_FAILED, CAUSE_UNEXPECTED_STATUS, 0, "MethodNotAllowed");
    classify(400, "{\"reason\":\"Bad\\nLine\"}", OUTCOME_FAILED, CAUSE_BAD_REQUEST, 0, "Bad?Line");
    classify(400, "not json", OUTCOME_FAILED, CAUSE_BAD_REQUEST, 0, "");
    apns_classify(&none, &out, &exp, d, sizeof(d));
    assert_int_equal(out.kind, OUTCOME_RETRY);
    assert_int_equal(out.cause, CAUSE_NETWORK);
}

/* An answer cut at the bound: the status decides (the reason, cut, is lost). */
static void cut_answers(void **state)
{
    const char *prefix = "{\"reason\":\"BadDeviceToken\",\"padding\":\"xxxx";
    struct upstream_result res = {CURLE_OK, 200, prefix, strlen(prefix), 1};
    struct outcome out;
    char d[64];
    int exp;

    (void)state;
    apns_classify(&res, &out, &exp, d, sizeof(d));
    assert_int_equal(out.kind, OUTCOME_DELIVERED);
    res.status = 503;
    apns_classify(&res, &out, &exp, d, sizeof(d));
    assert_int_equal(out.kind, OUTCOME_RETRY);
    assert_int_equal(out.cause, CAUSE_UNAVAILABLE);
    res.status = 410;
    apns_classify(&res, &out, &exp, d, sizeof(d));
    assert_int_equal(out.kind, OUTCOME_INVALID);
    res.status = 400;
    apns_classify(&res, &out, &exp, d, sizeof(d));
    assert_int_equal(out.kind, OUTCOME_FAILED);
    assert_string_equal(d, "");
}

/* The parser holds no provider's rules: without them, an APNs body is
 * refused, never read as FCM's, and so is a stored APNs push. */
static void without_the_rules_nothing_passes(void **state)
{
    (void)state;
    struct send_request r;
    char err[256];
    const char *body = "{\"tokens\":[\"" TOK "\"],\"payload\":{\"aps\":{}},\"topic\":\"com.example.app\"}";

    assert_int_equal(request_parse(UPSTREAM_APNS, "application/json", 16, body, strlen(body), NULL, &r, err,
                                       sizeof(err)),
                     -EINVAL);
    assert_string_equal(err, "this instance has no rules for upstream 1");
    assert_int_equal(parse_json(body, &r, err, sizeof(err)), 0);
    assert_int_equal(request_check(&r, &apns_limits, err, sizeof(err)), 0);
    assert_int_equal(request_check(&r, NULL, err, sizeof(err)), -EINVAL);
    assert_string_equal(err, "unknown upstream 1");
    request_free(&r);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(without_the_rules_nothing_passes),
        cmocka_unit_test(form_fields_become_header_texts),
        cmocka_unit_test(json_numbers_and_strings),
        cmocka_unit_test(every_rule),
        cmocka_unit_test(limits_are_inclusive),
        cmocka_unit_test(every_answer),
        cmocka_unit_test(cut_answers),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
