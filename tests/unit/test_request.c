/*
 * tests/unit/test_request.c - /gcm/send body parsing: both formats, every
 * validation rule of the contract.
 */
#include "cmocka_all.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../../child/core/request.h"

#define FORM "application/x-www-form-urlencoded"
#define JSON "application/json"

static int parse(const char *ct, const char *body, struct send_request *r, char *err)
{
    return request_parse(UPSTREAM_FCM, ct, ct ? strlen(ct) : 0, body, strlen(body), NULL, r, err, 256);
}

static void form_gocm_example(void **state)
{
    struct send_request r;
    char err[256];

    (void)state;
    assert_int_equal(parse(FORM, "tokens=abc&tokens=def&payload=%7B%22msg%22%3A%22hi+there%22%7D", &r, err), 0);
    assert_int_equal(r.format, REQUEST_FORM);
    assert_int_equal(r.kind, TARGET_TOKEN);
    assert_int_equal(r.ntargets, 2);
    assert_string_equal(r.targets[0], "abc");
    assert_string_equal(r.targets[1], "def");
    assert_int_equal(r.msg.payload_len, strlen("{\"msg\":\"hi there\"}"));
    assert_memory_equal(r.msg.payload, "{\"msg\":\"hi there\"}", r.msg.payload_len);
    request_free(&r);
}

static void form_raw_json_payload(void **state)
{
    struct send_request r;
    char err[256];

    (void)state;
    /* curl --data with an unencoded payload, as GoCM users typed it. */
    assert_int_equal(
        parse("application/x-www-form-urlencoded; charset=utf-8", "tokens=t1&payload={\"title\": \"hello\"}", &r, err),
        0);
    assert_int_equal(r.ntargets, 1);
    assert_memory_equal(r.msg.payload, "{\"title\": \"hello\"}", r.msg.payload_len);
    request_free(&r);
}

static void expect_error(const char *ct, const char *body, int status, const char *needle)
{
    struct send_request r;
    char err[256] = "";

    assert_int_equal(parse(ct, body, &r, err), status);
    if (strstr(err, needle) == NULL)
        fail_msg("error \"%s\" does not mention \"%s\"", err, needle);
    assert_null(r.targets);
    assert_null(r.storage);
}

static void form_errors(void **state)
{
    (void)state;
    expect_error(FORM, "payload=%7B%7D", -EINVAL, "no tokens");
    expect_error(FORM, "tokens=a", -EINVAL, "payload is missing");
    expect_error(FORM, "tokens=a&payload=", -EINVAL, "payload is empty");
    expect_error(FORM, "tokens=a&payload=nope", -EINVAL, "not valid JSON");
    expect_error(FORM, "tokens=a&payload=%5B1%5D", -EINVAL, "JSON object");
    expect_error(FORM, "tokens=a&payload=%7B%7D%7B%7D", -EINVAL, "not valid JSON");
    expect_error(FORM, "tokens=a%0Ab&payload=%7B%7D", -EINVAL, "control character");
    expect_error(FORM, "tokens=&payload=%7B%7D", -EINVAL, "empty");
    expect_error(FORM, "tokens=a%zz&payload=%7B%7D", -EINVAL, "percent-encoding");
    expect_error(FORM, "tokens=a&payload=%7", -EINVAL, "percent-encoding");
    expect_error(NULL, "tokens=a&payload=%7B%7D", -EINVAL, "content type");
    expect_error("text/plain", "tokens=a&payload=%7B%7D", -EINVAL, "content type");
}

static void too_many_tokens(void **state)
{
    size_t n = REQUEST_MAX_TOKENS + 1;
    char *body = malloc(n * 20 + 64), *p = body;
    struct send_request r;
    char err[256];

    (void)state;
    for (size_t i = 0; i < n; i++)
        p += sprintf(p, "tokens=t%zu&", i);
    strcpy(p, "payload=%7B%7D");
    assert_int_equal(parse(FORM, body, &r, err), -EINVAL);
    assert_non_null(strstr(err, "too many tokens"));
    /* Exactly the limit is fine. */
    p = body;
    for (size_t i = 0; i < n - 1; i++)
        p += sprintf(p, "tokens=t%zu&", i);
    strcpy(p, "payload=%7B%7D");
    assert_int_equal(parse(FORM, body, &r, err), 0);
    assert_int_equal(r.ntargets, REQUEST_MAX_TOKENS);
    request_free(&r);
    free(body);
}

static void body_too_large(void **state)
{
    size_t n = REQUEST_MAX_BODY + 1;
    char *body = malloc(n);
    struct send_request r;
    char err[256];

    (void)state;
    memset(body, 'a', n);
    assert_int_equal(request_parse(UPSTREAM_FCM, FORM, strlen(FORM), body, n, NULL, &r, err, sizeof(err)), -EMSGSIZE);
    free(body);
}

/* A reading's result is the answer's status: too large is 413, wrong 400. */
static void results_are_statuses(void **state)
{
    (void)state;
    assert_int_equal(request_status(0), 200);
    assert_int_equal(request_status(-EINVAL), 400);
    assert_int_equal(request_status(-EMSGSIZE), 413);
    assert_int_equal(request_status(-ENOMEM), 500);
}

static void json_tokens_and_options(void **state)
{
    struct send_request r;
    char err[256];

    (void)state;
    assert_int_equal(parse(JSON,
                           "{\"tokens\":[\"a\\u00e9\",\"b\\\"q\"],\"payload\":{\"k\":[1,2]},\"priority\":\"high\","
                           "\"time_to_live\":60,\"collapse_key\":\"c\",\"notification\":{\"title\":\"t\"}}",
                           &r, err),
                     0);
    assert_int_equal(r.format, REQUEST_JSON);
    assert_int_equal(r.ntargets, 2);
    assert_string_equal(r.targets[0], "a\xc3\xa9");
    assert_string_equal(r.targets[1], "b\"q");
    assert_string_equal(r.msg.payload, "{\"k\":[1,2]}");
    assert_string_equal(r.msg.opt[ROPT_PRIORITY], "\"high\"");
    assert_string_equal(r.msg.opt[ROPT_TIME_TO_LIVE], "60");
    assert_string_equal(r.msg.opt[ROPT_NOTIFICATION], "{\"title\":\"t\"}");
    assert_null(r.msg.opt[ROPT_ANDROID]);
    request_free(&r);
}

static void json_topic_and_condition(void **state)
{
    struct send_request r;
    char err[256];

    (void)state;
    assert_int_equal(parse(JSON, "{\"topic\":\"/topics/news\",\"payload\":{}}", &r, err), 0);
    assert_int_equal(r.kind, TARGET_TOPIC);
    assert_string_equal(r.targets[0], "news");
    request_free(&r);
    assert_int_equal(parse(JSON, "{\"condition\":\"'a' in topics\",\"payload\":{}}", &r, err), 0);
    assert_int_equal(r.kind, TARGET_CONDITION);
    assert_string_equal(r.targets[0], "'a' in topics");
    request_free(&r);
}

static void json_errors(void **state)
{
    (void)state;
    expect_error(JSON, "", -EINVAL, "empty");
    expect_error(JSON, "{", -EINVAL, "not valid JSON");
    expect_error(JSON, "[1]", -EINVAL, "JSON object");
    expect_error(JSON, "{\"payload\":{}}", -EINVAL, "no tokens");
    expect_error(JSON, "{\"tokens\":[],\"payload\":{}}", -EINVAL, "no tokens");
    expect_error(JSON, "{\"tokens\":\"a\",\"payload\":{}}", -EINVAL, "array of strings");
    expect_error(JSON, "{\"tokens\":[1],\"payload\":{}}", -EINVAL, "array of strings");
    expect_error(JSON, "{\"tokens\":[\"a\"]}", -EINVAL, "payload is missing");
    expect_error(JSON, "{\"tokens\":[\"a\"],\"payload\":\"x\"}", -EINVAL, "JSON object");
    expect_error(JSON, "{\"tokens\":[\"a\\n\"],\"payload\":{}}", -EINVAL, "control character");
    expect_error(JSON, "{\"tokens\":[\"a\"],\"topic\":\"b\",\"payload\":{}}", -EINVAL, "one of");
    expect_error(JSON, "{\"topic\":\"a b\",\"payload\":{}}", -EINVAL, "topic may contain");
    expect_error(JSON, "{\"tokens\":[\"a\"],\"payload\":{},\"bogus\":1}", -EINVAL, "unknown field");
    expect_error(JSON, "{\"tokens\":[\"a\"],\"payload\":{},\"priority\":\"urgent\"}", -EINVAL, "priority");
    expect_error(JSON, "{\"tokens\":[\"a\"],\"payload\":{},\"time_to_live\":-1}", -EINVAL, "time_to_live");
    expect_error(JSON, "{\"tokens\":[\"a\"],\"payload\":{},\"android\":[]}", -EINVAL, "JSON object");
    expect_error(JSON, "{\"tokens\":[\"a\"],\"payload\":{\"x\":tru}}", -EINVAL, "not valid JSON");
    expect_error(JSON, "{\"tokens\":[\"a\"],\"payload\":{\"x\":01}}", -EINVAL, "not valid JSON");
}

/* Bodies that once wrote past the targets array or got past the limit. */
static void hostile_bodies(void **state)
{
    char body[2048];
    size_t n = 0;

    (void)state;
    n += (size_t)sprintf(body, "{\"payload\":{}");
    for (int i = 0; i < 40; i++)
        n += (size_t)sprintf(body + n, ",\"topic\":\"t%d\"", i);
    sprintf(body + n, "}");
    expect_error(JSON, body, -EINVAL, "repeated key");
    expect_error(JSON, "{\"tokens\":[\"a\"],\"tokens\":[\"b\"],\"payload\":{}}", -EINVAL, "repeated key");
    expect_error(JSON, "{\"tokens\":[\"a\"],\"payload\":{},\"payload\":{}}", -EINVAL, "repeated key");
    expect_error(JSON, "{\"tokens\":[\"a\"],\"payload\":{\"k\":1,\"k\":2}}", -EINVAL, "repeated key");
    expect_error(JSON, "{\"tokens\":[\"a\"],\"payload\":{\"k\":\"\xff\"}}", -EINVAL, "invalid UTF-8");
    expect_error(JSON, "{\"tokens\":[\"a\"],\"payload\":{\"k\":\"\xc0\xaf\"}}", -EINVAL, "invalid UTF-8");
    expect_error(JSON, "{\"tokens\":[\"a\"],\"payload\":{\"k\":\"\\ud800\"}}", -EINVAL, "lone surrogate");
    expect_error(JSON, "{\"tokens\":[\"a\\u0000b\"],\"payload\":{}}", -EINVAL, "control character");
    expect_error(JSON, "{\"tokens\":[\"a\"],\"payload\":{\"k\":[1,]}}", -EINVAL, "not valid JSON");
    expect_error(JSON, "{\"tokens\":[\"a\"],\"payload\":{},\"time_to_live\":99999999999}", -EINVAL, "time_to_live");
    expect_error(JSON, "{\"tokens\":[\"a\"],\"payload\":{},\"time_to_live\":1.5}", -EINVAL, "time_to_live");
    /* A form's payload is held to the same rules, and tokens to UTF-8. */
    expect_error(FORM, "tokens=a&payload=%7B%22k%22%3A%22%FF%22%7D", -EINVAL, "invalid UTF-8");
    expect_error(FORM, "tokens=a%C0%AF&payload=%7B%7D", -EINVAL, "not valid UTF-8");
    expect_error(FORM, "tokens=a&payload=%7B%7D&payload=%7B%22x%22%3A1%7D", -EINVAL, "given twice");
}

/* Field names and option words spelled with escapes are what they spell. */
static void escaped_names_are_their_names(void **state)
{
    struct send_request r;
    char err[256];

    (void)state;
    assert_int_equal(
        parse(JSON, "{\"tok\\u0065ns\":[\"a\"],\"p\\u0061yload\":{},\"priority\":\"\\u0068igh\"}", &r, err), 0);
    assert_int_equal(r.ntargets, 1);
    assert_non_null(r.msg.payload);
    request_free(&r);
    expect_error(JSON, "{\"tokens\":[\"a\"],\"tok\\u0065ns\":[\"b\"],\"payload\":{}}", -EINVAL, "repeated key");
}

static void deep_nesting_is_refused_where_it_starts(void **state)
{
    size_t depth = 200000, n = 0;
    char *body = malloc(2 * depth + 64);

    (void)state;
    assert_non_null(body);
    n += (size_t)sprintf(body, "{\"tokens\":[\"a\"],\"payload\":{\"k\":");
    memset(body + n, '[', depth);
    memset(body + n + depth, ']', depth);
    strcpy(body + n + 2 * depth, "}}");
    expect_error(JSON, body, -EINVAL, "nested too deeply at byte 93");
    free(body);
}

static void limits_are_settings(void **state)
{
    struct request_limits lim = {64, 2, 10, {NULL}};
    struct send_request r;
    char err[256];

    (void)state;
    assert_int_equal(request_parse(UPSTREAM_FCM, FORM, strlen(FORM), "tokens=a&tokens=b&tokens=c&payload=%7B%7D", 41,
                                   &lim, &r, err, sizeof(err)),
                     -EINVAL);
    assert_non_null(strstr(err, "at most 2"));
    assert_int_equal(request_parse(UPSTREAM_FCM, JSON, strlen(JSON),
                                   "{\"tokens\":[\"a\"],\"payload\":{\"k\":\"12345\"}}", 40, &lim, &r, err,
                                   sizeof(err)),
                     -EINVAL);
    assert_non_null(strstr(err, "larger than 10 bytes"));
    /* Options count with the payload: each target carries them all. */
    assert_int_equal(request_parse(UPSTREAM_FCM, JSON, strlen(JSON),
                                   "{\"tokens\":[\"a\"],\"payload\":{},\"webpush\":{\"k\":\"x\"}}", 49, &lim, &r, err,
                                   sizeof(err)),
                     -EINVAL);
    assert_non_null(strstr(err, "options are larger than 10 bytes together"));
    assert_int_equal(request_parse(UPSTREAM_FCM, FORM, strlen(FORM),
                                   "tokens=a&payload=%7B%7D&pad=xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx", 67, &lim,
                                   &r, err, sizeof(err)),
                     -EMSGSIZE);
    assert_int_equal(request_parse(UPSTREAM_FCM, FORM, strlen(FORM), "tokens=a&tokens=b&payload=%7B%7D", 32, &lim, &r,
                                   err, sizeof(err)),
                     0);
    request_free(&r);
}

/* The "app" field: a name, once, in either format; the request keeps it. */
static void app_field(void **state)
{
    struct send_request r;
    char err[256];

    (void)state;
    assert_int_equal(parse(FORM, "tokens=a&app=shop.eu-1&payload=%7B%7D", &r, err), 0);
    assert_int_equal(r.app_len, 9);
    assert_memory_equal(r.app, "shop.eu-1", 9);
    request_free(&r);
    assert_int_equal(parse(JSON, "{\"app\":\"sh\\u006fp\",\"tokens\":[\"a\"],\"payload\":{}}", &r, err), 0);
    assert_int_equal(r.app_len, 4);
    assert_memory_equal(r.app, "shop", 4);
    assert_string_equal(r.targets[0], "a");
    request_free(&r);
    assert_int_equal(parse(JSON, "{\"tokens\":[\"a\"],\"payload\":{}}", &r, err), 0);
    assert_null(r.app);
    request_free(&r);
    expect_error(FORM, "tokens=a&app=x&app=y&payload=%7B%7D", -EINVAL, "app is given twice");
    expect_error(FORM, "tokens=a&app=&payload=%7B%7D", -EINVAL, "app must be");
    expect_error(FORM, "tokens=a&app=a%2Fb&payload=%7B%7D", -EINVAL, "app must be");
    expect_error(FORM, "tokens=a&app=aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa&payload=%7B%7D", -EINVAL,
                 "app must be");
    expect_error(JSON, "{\"app\":1,\"tokens\":[\"a\"],\"payload\":{}}", -EINVAL, "must be a string");
    expect_error(JSON, "{\"app\":\"a b\",\"tokens\":[\"a\"],\"payload\":{}}", -EINVAL, "app must be");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(form_gocm_example),
        cmocka_unit_test(form_raw_json_payload),
        cmocka_unit_test(form_errors),
        cmocka_unit_test(too_many_tokens),
        cmocka_unit_test(body_too_large),
        cmocka_unit_test(json_tokens_and_options),
        cmocka_unit_test(json_topic_and_condition),
        cmocka_unit_test(json_errors),
        cmocka_unit_test(app_field),
        cmocka_unit_test(limits_are_settings),
        cmocka_unit_test(hostile_bodies),
        cmocka_unit_test(results_are_statuses),
        cmocka_unit_test(deep_nesting_is_refused_where_it_starts),
        cmocka_unit_test(escaped_names_are_their_names),
    };
    return cmocka_run_group_tests_name("request", tests, NULL, NULL);
}
