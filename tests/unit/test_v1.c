/*
 * tests/unit/test_v1.c - FCM HTTP v1: data stringification, message
 * encoding, and the classification of every error FCM answers.  What fcmd
 * encodes is read back with jansson (oracle.h).
 */
#include "cmocka_all.h"

#include <stdlib.h>
#include <string.h>

#include "../../child/upstream/fcm/v1.h"
#include "oracle.h"

/* The shared part of a message (",\"data\":{...},...") as an object. */
static json_t *decode_shared(const struct buf *b)
{
    struct buf whole = BUF_INIT;
    json_t *v;

    buf_adds(&whole, "{\"token\":\"t\"");
    buf_add(&whole, b->data, b->len);
    buf_adds(&whole, "}");
    assert_false(whole.failed);
    v = oracle_decode(whole.data, whole.len);
    buf_free(&whole);
    return v;
}

static void stringify_data(void **state)
{
    struct buf b = BUF_INIT;
    json_t *data, *inner, *want;

    (void)state;
    assert_int_equal(
        v1_stringify_data(&b, "{\"s\":\"x\\\"y\",\"n\":1.5,\"t\":true,\"z\":null,\"o\":{\"a\":[1,\"b\"]}}",
                          strlen("{\"s\":\"x\\\"y\",\"n\":1.5,\"t\":true,\"z\":null,\"o\":{\"a\":[1,\"b\"]}}")),
        0);
    assert_string_equal(
        b.data, "{\"s\":\"x\\\"y\",\"n\":\"1.5\",\"t\":\"true\",\"z\":\"null\",\"o\":\"{\\\"a\\\":[1,\\\"b\\\"]}\"}");
    data = oracle_decode(b.data, b.len);
    assert_string_equal(oracle_string(data, "s"), "x\"y");
    assert_string_equal(oracle_string(data, "n"), "1.5");
    assert_string_equal(oracle_string(data, "z"), "null");
    /* A value that was an object arrives as that object's JSON text. */
    inner = oracle_decode(oracle_string(data, "o"), strlen(oracle_string(data, "o")));
    want = json_pack("{s:[i,s]}", "a", 1, "b");
    assert_true(json_equal(inner, want));
    json_decref(want);
    json_decref(inner);
    json_decref(data);
    buf_free(&b);
    assert_int_equal(v1_stringify_data(&b, "{}", 2), 0);
    assert_string_equal(b.data, "{}");
    buf_free(&b);
}

static struct message msg_with(const char *payload)
{
    struct message m;

    memset(&m, 0, sizeof(m));
    m.payload = payload;
    m.payload_len = payload ? strlen(payload) : 0;
    return m;
}

static void set_opt(struct message *m, enum request_opt o, const char *text)
{
    m->opt[o] = text;
    m->opt_len[o] = strlen(text);
}

static void encode_maps_legacy_options_under_android(void **state)
{
    struct message m = msg_with("{\"k\":2}");
    struct buf b = BUF_INIT;
    json_t *msg;

    (void)state;
    set_opt(&m, ROPT_PRIORITY, "\"high\"");
    set_opt(&m, ROPT_TIME_TO_LIVE, "60");
    set_opt(&m, ROPT_COLLAPSE_KEY, "\"ck\"");
    set_opt(&m, ROPT_NOTIFICATION, "{\"title\":\"t\"}");
    assert_int_equal(v1_encode_shared(&b, &m), 0);
    assert_string_equal(b.data, ",\"data\":{\"k\":\"2\"},\"notification\":{\"title\":\"t\"},"
                                "\"android\":{\"collapse_key\":\"ck\",\"priority\":\"HIGH\",\"ttl\":\"60s\"}");
    msg = decode_shared(&b);
    assert_string_equal(oracle_string(msg, "data.k"), "2");
    assert_string_equal(oracle_string(msg, "android.ttl"), "60s");
    assert_string_equal(oracle_string(msg, "android.priority"), "HIGH");
    assert_string_equal(oracle_string(msg, "android.collapse_key"), "ck");
    json_decref(msg);
    buf_free(&b);
}

static void explicit_android_fields_win(void **state)
{
    struct message m = msg_with(NULL);
    struct buf b = BUF_INIT;
    json_t *msg;

    (void)state;
    set_opt(&m, ROPT_ANDROID, "{\"ttl\":\"5s\",\"restricted_package_name\":\"p\"}");
    set_opt(&m, ROPT_TIME_TO_LIVE, "60");
    set_opt(&m, ROPT_PRIORITY, "\"normal\"");
    set_opt(&m, ROPT_APNS, "{\"headers\":{}}");
    assert_int_equal(v1_encode_shared(&b, &m), 0);
    assert_string_equal(b.data,
                        ",\"apns\":{\"headers\":{}},\"android\":{\"ttl\":\"5s\",\"restricted_package_name\":\"p\","
                        "\"priority\":\"NORMAL\"}");
    /* The client's ttl, and not a second one: repeated keys would not decode. */
    msg = decode_shared(&b);
    assert_string_equal(oracle_string(msg, "android.ttl"), "5s");
    assert_string_equal(oracle_string(msg, "android.priority"), "NORMAL");
    json_decref(msg);
    buf_free(&b);
}

/* The client's android fields win however they are spelled: a key given
 * with escapes is the same key, and fcmd must not add it a second time. */
static void escaped_android_fields_win(void **state)
{
    struct message m = msg_with(NULL);
    struct buf b = BUF_INIT;
    json_t *msg;

    (void)state;
    set_opt(&m, ROPT_ANDROID, "{\"tt\\u006c\":\"5s\",\"priorit\\u0079\":\"NORMAL\",\"collapse\\u005fkey\":\"in\"}");
    set_opt(&m, ROPT_TIME_TO_LIVE, "60");
    set_opt(&m, ROPT_PRIORITY, "\"high\"");
    set_opt(&m, ROPT_COLLAPSE_KEY, "\"out\"");
    assert_int_equal(v1_encode_shared(&b, &m), 0);
    msg = decode_shared(&b); /* repeated keys would not decode */
    assert_string_equal(oracle_string(msg, "android.ttl"), "5s");
    assert_string_equal(oracle_string(msg, "android.priority"), "NORMAL");
    assert_string_equal(oracle_string(msg, "android.collapse_key"), "in");
    json_decref(msg);
    buf_free(&b);
}

static void bodies_for_each_target_kind(void **state)
{
    char mem[sizeof(struct target) + 16];
    struct target *t = (struct target *)mem;
    struct buf b = BUF_INIT;
    json_t *body;

    (void)state;
    strcpy(t->name, "tok\"1");
    t->len = 5;
    v1_build_body(&b, TARGET_TOKEN, t, ",\"data\":{}", 10);
    assert_string_equal(b.data, "{\"message\":{\"token\":\"tok\\\"1\",\"data\":{}}}");
    body = oracle_decode(b.data, b.len);
    assert_string_equal(oracle_string(body, "message.token"), "tok\"1");
    assert_true(json_is_object(json_object_get(json_object_get(body, "message"), "data")));
    json_decref(body);
    buf_reset(&b);
    strcpy(t->name, "news");
    t->len = 4;
    v1_build_body(&b, TARGET_TOPIC, t, "", 0);
    assert_string_equal(b.data, "{\"message\":{\"topic\":\"news\"}}");
    body = oracle_decode(b.data, b.len);
    assert_string_equal(oracle_string(body, "message.topic"), "news");
    json_decref(body);
    buf_free(&b);
}

static void classify(long status, CURLcode code, const char *body, enum outcome_kind want, int want_refused,
                     const char *want_detail)
{
    struct upstream_result res = {code, status, body, strlen(body), 0};
    struct outcome out;
    char detail[256];
    int refused;

    v1_classify(&res, &out, &refused, detail, sizeof(detail));
    if (out.kind != want || refused != want_refused)
        fail_msg("HTTP %ld %s: got kind %d refused %d (%s), want %d %d", status, body, out.kind, refused, out.reason,
                 want, want_refused);
    if (want_detail)
        assert_string_equal(detail, want_detail);
}

#define FCM_ERROR(http, status, code)                                                                                  \
    "{\"error\":{\"code\":" #http ",\"message\":\"m\",\"status\":\"" status "\",\"details\":[{\"@type\":"              \
    "\"type.googleapis.com/google.firebase.fcm.v1.FcmError\",\"errorCode\":\"" code "\"}]}}"

static void classify_every_fcm_error(void **state)
{
    (void)state;
    classify(200, CURLE_OK, "{\"name\":\"projects/p/messages/1\"}", OUTCOME_DELIVERED, 0, NULL);
    classify(404, CURLE_OK, FCM_ERROR(404, "NOT_FOUND", "UNREGISTERED"), OUTCOME_INVALID, 0, "m");
    classify(403, CURLE_OK, FCM_ERROR(403, "PERMISSION_DENIED", "SENDER_ID_MISMATCH"), OUTCOME_INVALID, 0, NULL);
    classify(429, CURLE_OK, FCM_ERROR(429, "RESOURCE_EXHAUSTED", "QUOTA_EXCEEDED"), OUTCOME_RETRY, 0, NULL);
    classify(503, CURLE_OK, FCM_ERROR(503, "UNAVAILABLE", "UNAVAILABLE"), OUTCOME_RETRY, 0, NULL);
    classify(500, CURLE_OK, FCM_ERROR(500, "INTERNAL", "INTERNAL"), OUTCOME_RETRY, 0, NULL);
    /* THIRD_PARTY_AUTH_ERROR comes as a 401 but is not about our token. */
    classify(401, CURLE_OK, FCM_ERROR(401, "UNAUTHENTICATED", "THIRD_PARTY_AUTH_ERROR"), OUTCOME_FAILED, 0, NULL);
    /* INVALID_ARGUMENT: a bad payload is not a dead device... */
    classify(400, CURLE_OK, FCM_ERROR(400, "INVALID_ARGUMENT", "INVALID_ARGUMENT"), OUTCOME_FAILED, 0, "m");
    /* ...unless the field violation names the token. */
    classify(400, CURLE_OK,
             "{\"error\":{\"code\":400,\"message\":\"bad token\",\"status\":\"INVALID_ARGUMENT\",\"details\":["
             "{\"@type\":\"type.googleapis.com/google.firebase.fcm.v1.FcmError\",\"errorCode\":\"INVALID_ARGUMENT\"},"
             "{\"@type\":\"type.googleapis.com/google.rpc.BadRequest\",\"fieldViolations\":[{\"field\":"
             "\"message.token\",\"description\":\"x\"}]}]}}",
             OUTCOME_INVALID, 0, "bad token");
}

static void classify_without_fcm_details(void **state)
{
    (void)state;
    classify(401, CURLE_OK, "{\"error\":{\"code\":401,\"status\":\"UNAUTHENTICATED\"}}", OUTCOME_RETRY, 1, NULL);
    classify(502, CURLE_OK, "<html>bad gateway</html>", OUTCOME_RETRY, 0, NULL);
    classify(429, CURLE_OK, "", OUTCOME_RETRY, 0, NULL);
    classify(0, CURLE_OPERATION_TIMEDOUT, "", OUTCOME_RETRY, 0, NULL);
    classify(403, CURLE_OK, "{}", OUTCOME_FAILED, 0, NULL);
    classify(404, CURLE_OK, "not json", OUTCOME_FAILED, 0, NULL);
    classify(400, CURLE_OK, "{\"error\":{\"code\":400}}", OUTCOME_FAILED, 0, NULL);
}

/* An answer cut at the bound: the prefix is not one document, the status decides. */
static void classify_cut_answers(void **state)
{
    static const struct {
        long status;
        enum outcome_kind kind;
    } cases[] = {{200, OUTCOME_DELIVERED}, {503, OUTCOME_RETRY}, {500, OUTCOME_RETRY}, {429, OUTCOME_RETRY},
                 {404, OUTCOME_FAILED},    {400, OUTCOME_FAILED}};
    const char *prefix = "{\"error\":{\"code\":404,\"message\":\"m\",\"status\":\"NOT_FOUND\",\"padding\":\"xxxx";
    struct outcome out;
    char detail[256];
    int refused;

    (void)state;
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        struct upstream_result res = {CURLE_OK, cases[i].status, prefix, strlen(prefix), 1};
        v1_classify(&res, &out, &refused, detail, sizeof(detail));
        if (out.kind != cases[i].kind)
            fail_msg("HTTP %ld cut: kind %d (%s)", cases[i].status, out.kind, out.reason);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(stringify_data),
        cmocka_unit_test(encode_maps_legacy_options_under_android),
        cmocka_unit_test(explicit_android_fields_win),
        cmocka_unit_test(escaped_android_fields_win),
        cmocka_unit_test(bodies_for_each_target_kind),
        cmocka_unit_test(classify_every_fcm_error),
        cmocka_unit_test(classify_without_fcm_details),
        cmocka_unit_test(classify_cut_answers),
    };
    return cmocka_run_group_tests_name("v1", tests, NULL, NULL);
}
