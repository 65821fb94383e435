/*
 * tests/unit/test_legacy.c - the legacy adapter: request bodies (read back
 * with jansson, see oracle.h) and the classification of every kind of answer.
 */
#include "cmocka_all.h"

#include <stdlib.h>
#include <string.h>

#include "../../child/upstream/fcm/legacy.h"
#include "oracle.h"

static struct target *mk_target(struct push *p, const char *name)
{
    size_t n = strlen(name);
    struct target *t = calloc(1, sizeof(*t) + n + 1);

    t->push = p;
    t->len = (uint32_t)n;
    memcpy(t->name, name, n + 1);
    return t;
}

static void body_for_tokens(void **state)
{
    struct push p = {0};
    struct target *t[2];
    struct buf b = BUF_INIT;
    json_t *body, *ids;

    (void)state;
    p.kind = TARGET_TOKEN;
    p.msg.payload = "{\"msg\":\"hi\"}";
    p.msg.payload_len = strlen(p.msg.payload);
    p.msg.opt[ROPT_PRIORITY] = "\"high\"";
    p.msg.opt_len[ROPT_PRIORITY] = 6;
    t[0] = mk_target(&p, "tok1");
    t[1] = mk_target(&p, "to\"k2");
    legacy_build_body(&b, &p, t, 2);
    assert_false(b.failed);
    assert_string_equal(
        b.data, "{\"registration_ids\":[\"tok1\",\"to\\\"k2\"],\"data\":{\"msg\":\"hi\"},\"priority\":\"high\"}");
    body = oracle_decode(b.data, b.len);
    ids = json_object_get(body, "registration_ids");
    assert_int_equal(json_array_size(ids), 2);
    assert_string_equal(json_string_value(json_array_get(ids, 0)), "tok1");
    assert_string_equal(json_string_value(json_array_get(ids, 1)), "to\"k2");
    assert_string_equal(oracle_string(body, "data.msg"), "hi");
    assert_string_equal(oracle_string(body, "priority"), "high");
    json_decref(body);
    buf_free(&b);
    free(t[0]);
    free(t[1]);
}

static void body_for_topic(void **state)
{
    struct push p = {0};
    struct target *t;
    struct buf b = BUF_INIT;
    json_t *body;

    (void)state;
    p.kind = TARGET_TOPIC;
    p.msg.payload = "{}";
    p.msg.payload_len = 2;
    t = mk_target(&p, "news");
    legacy_build_body(&b, &p, &t, 1);
    assert_string_equal(b.data, "{\"to\":\"/topics/news\",\"data\":{}}");
    body = oracle_decode(b.data, b.len);
    assert_string_equal(oracle_string(body, "to"), "/topics/news");
    json_decref(body);
    buf_free(&b);
    free(t);
}

static void classify(long status, CURLcode code, const char *body, enum target_kind kind, size_t n, struct outcome *out)
{
    struct upstream_result res = {code, status, body, strlen(body), 0};

    memset(out, 0, n * sizeof(*out));
    legacy_classify(&res, kind, n, out);
}

static void classify_cut(long status, const char *body, enum target_kind kind, size_t n, struct outcome *out)
{
    struct upstream_result res = {CURLE_OK, status, body, strlen(body), 1};

    memset(out, 0, n * sizeof(*out));
    legacy_classify(&res, kind, n, out);
}

/* A 200 cut at the bound: the results that lie whole in the prefix are used,
 * every other target is delivered (FCM answered 200). */
static void cut_answer_uses_the_whole_results(void **state)
{
    struct outcome out[6];

    (void)state;
    classify_cut(200,
                 "{\"multicast_id\":1,\"x\":\"]}\\\"[{\",\"results\":[ {\"message_id\":\"0:1\"},"
                 "{\"error\":\"NotRegistered\"} , {\"message_id\":\"0:]3\",\"registration_id\":\"n\\\"ew\"},"
                 "{\"error\":\"Unavailable\"},{\"error\":\"Unava",
                 TARGET_TOKEN, 6, out);
    assert_int_equal(out[0].kind, OUTCOME_DELIVERED);
    assert_int_equal(out[1].kind, OUTCOME_INVALID);
    assert_int_equal(out[2].kind, OUTCOME_CANONICAL);
    assert_string_equal(out[2].canonical, "n\"ew");
    assert_int_equal(out[3].kind, OUTCOME_RETRY); /* said whole in the prefix: as in a whole answer */
    assert_int_equal(out[4].kind, OUTCOME_DELIVERED); /* the cut runs through it */
    assert_int_equal(out[5].kind, OUTCOME_DELIVERED);
    free(out[2].canonical);
}

static void cut_answer_without_legible_results_is_delivered(void **state)
{
    static const char *const bodies[] = {
        "{\"multicast_id\":1,\"padding\":\"xxxxxxxx",           /* the results lie past the bound */
        "xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx", /* not JSON at all */
        "{\"results\":[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[", /* deep, and cut */
        "{\"results\":[{},5,\"s\",{\"other\":1},[{\"error\":\"x\"}]",   /* whole, but saying nothing */
        "{\"results\":[{\"error\":\"NotRegistered\"}x{\"error\":\"NotRegistered\"}", /* not JSON after one */
        "{\"multicast_id\":12345",                                  /* a number that may go on */
        "",
    };
    struct outcome out[6];

    (void)state;
    for (size_t b = 0; b < sizeof(bodies) / sizeof(bodies[0]); b++) {
        classify_cut(200, bodies[b], TARGET_TOKEN, 6, out);
        for (size_t i = 0; i < 6; i++)
            if (out[i].kind != OUTCOME_DELIVERED && !(b == 4 && i == 0))
                fail_msg("body %zu target %zu: kind %d (%s)", b, i, out[i].kind, out[i].reason);
    }
    assert_int_equal(out[0].kind, OUTCOME_DELIVERED); /* the last body was empty */
    classify_cut(200, bodies[4], TARGET_TOKEN, 6, out);
    assert_int_equal(out[0].kind, OUTCOME_INVALID); /* the one before the garbage was whole */
    /* More whole results than targets: nothing lines up, so none is used. */
    classify_cut(200, "{\"results\":[{\"error\":\"NotRegistered\"},{\"error\":\"NotRegistered\"},{", TARGET_TOKEN,
                 1, out);
    assert_int_equal(out[0].kind, OUTCOME_DELIVERED);
}

static void cut_answer_other_statuses_and_topics(void **state)
{
    struct outcome out[2];

    (void)state;
    classify_cut(503, "{\"results\":[{\"message_id\":\"1\"},", TARGET_TOKEN, 2, out);
    assert_int_equal(out[0].kind, OUTCOME_RETRY);
    assert_int_equal(out[0].cause, CAUSE_HTTP_5XX);
    classify_cut(500, "xxxx", TARGET_TOKEN, 2, out);
    assert_int_equal(out[1].cause, CAUSE_HTTP_5XX);
    classify_cut(400, "xxxx", TARGET_TOKEN, 2, out);
    assert_int_equal(out[1].kind, OUTCOME_FAILED);
    classify_cut(200, "{\"error\":\"TopicsMessageRateExceeded\",\"padding\":\"xxx", TARGET_TOPIC, 1, out);
    assert_int_equal(out[0].kind, OUTCOME_RETRY);
    classify_cut(200, "{\"message_id\":123,\"padding\":\"xxx", TARGET_TOPIC, 1, out);
    assert_int_equal(out[0].kind, OUTCOME_DELIVERED);
    classify_cut(200, "{\"padding\":\"xxx\",\"error\":\"TopicsMessageRa", TARGET_CONDITION, 1, out);
    assert_int_equal(out[0].kind, OUTCOME_DELIVERED);
}

/* The bound holds FCM's longest answer for the largest batch fcmd sends. */
static void bound_holds_a_full_answer(void **state)
{
    struct buf b = BUF_INIT;
    char id[LEGACY_MESSAGE_ID_MAX + 1], *tok = malloc(REQUEST_MAX_TOKEN_LEN + 1);

    (void)state;
    memset(id, '7', LEGACY_MESSAGE_ID_MAX);
    id[LEGACY_MESSAGE_ID_MAX] = '\0';
    memset(tok, 'A', REQUEST_MAX_TOKEN_LEN);
    tok[REQUEST_MAX_TOKEN_LEN] = '\0';
    buf_addf(&b, "{\"multicast_id\":18446744073709551615,\"success\":%d,\"failure\":%d,\"canonical_ids\":%d,"
                 "\"results\":[",
             LEGACY_MAX_TOKENS, LEGACY_MAX_TOKENS, LEGACY_MAX_TOKENS);
    for (int i = 0; i < LEGACY_MAX_TOKENS; i++)
        buf_addf(&b, "%s{\"message_id\":\"%s\",\"registration_id\":\"%s\"}", i ? "," : "", id, tok);
    buf_adds(&b, "]}");
    assert_false(b.failed);
    assert_true(b.len <= LEGACY_ANSWER_MAX(LEGACY_MAX_TOKENS));
    assert_true(LEGACY_ANSWER_MAX(LEGACY_MAX_TOKENS) < (5u << 20));
    buf_free(&b);
    free(tok);
}

static void per_result_outcomes(void **state)
{
    struct outcome out[6];

    (void)state;
    classify(200, CURLE_OK,
             "{\"multicast_id\":1,\"success\":2,\"failure\":4,\"canonical_ids\":1,\"results\":["
             "{\"message_id\":\"0:1\"},"
             "{\"message_id\":\"0:2\",\"registration_id\":\"new\\/tok\"},"
             "{\"error\":\"NotRegistered\"},"
             "{\"error\":\"InvalidRegistration\"},"
             "{\"error\":\"Unavailable\"},"
             "{\"error\":\"MismatchSenderId\"}]}",
             TARGET_TOKEN, 6, out);
    assert_int_equal(out[0].kind, OUTCOME_DELIVERED);
    assert_int_equal(out[1].kind, OUTCOME_CANONICAL);
    assert_string_equal(out[1].canonical, "new/tok");
    assert_int_equal(out[2].kind, OUTCOME_INVALID);
    assert_int_equal(out[3].kind, OUTCOME_INVALID);
    assert_int_equal(out[4].kind, OUTCOME_RETRY);
    assert_string_equal(out[4].reason, "Unavailable");
    assert_int_equal(out[5].kind, OUTCOME_FAILED);
    free(out[1].canonical);
}

static void whole_request_outcomes(void **state)
{
    struct outcome out[2];

    (void)state;
    classify(503, CURLE_OK, "", TARGET_TOKEN, 2, out);
    assert_int_equal(out[0].kind, OUTCOME_RETRY);
    assert_int_equal(out[1].kind, OUTCOME_RETRY);
    classify(429, CURLE_OK, "", TARGET_TOKEN, 2, out);
    assert_int_equal(out[1].kind, OUTCOME_RETRY);
    classify(500, CURLE_OK, "", TARGET_TOKEN, 2, out);
    assert_int_equal(out[0].kind, OUTCOME_RETRY);
    classify(0, CURLE_COULDNT_CONNECT, "", TARGET_TOKEN, 2, out);
    assert_int_equal(out[0].kind, OUTCOME_RETRY);
    classify(401, CURLE_OK, "Unauthorized", TARGET_TOKEN, 2, out);
    assert_int_equal(out[0].kind, OUTCOME_FAILED);
    assert_non_null(strstr(out[0].reason, "401"));
    classify(400, CURLE_OK, "bad", TARGET_TOKEN, 2, out);
    assert_int_equal(out[1].kind, OUTCOME_FAILED);
    assert_non_null(strstr(out[1].reason, "400"));
}

static void malformed_answers_retry(void **state)
{
    struct outcome out[2];

    (void)state;
    classify(200, CURLE_OK, "not json", TARGET_TOKEN, 2, out);
    assert_int_equal(out[0].kind, OUTCOME_RETRY);
    /* results[] must line up with the tokens sent. */
    classify(200, CURLE_OK, "{\"results\":[{\"message_id\":\"1\"}]}", TARGET_TOKEN, 2, out);
    assert_int_equal(out[0].kind, OUTCOME_RETRY);
    assert_int_equal(out[1].kind, OUTCOME_RETRY);
    classify(200, CURLE_OK, "{\"results\":[{\"message_id\":\"1\"},{}]}", TARGET_TOKEN, 2, out);
    assert_int_equal(out[0].kind, OUTCOME_DELIVERED);
    assert_int_equal(out[1].kind, OUTCOME_RETRY);
}

static void topic_answers(void **state)
{
    struct outcome out[1];

    (void)state;
    classify(200, CURLE_OK, "{\"message_id\":123}", TARGET_TOPIC, 1, out);
    assert_int_equal(out[0].kind, OUTCOME_DELIVERED);
    classify(200, CURLE_OK, "{\"error\":\"TopicsMessageRateExceeded\"}", TARGET_TOPIC, 1, out);
    assert_int_equal(out[0].kind, OUTCOME_RETRY);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(body_for_tokens),         cmocka_unit_test(body_for_topic),
        cmocka_unit_test(per_result_outcomes),     cmocka_unit_test(whole_request_outcomes),
        cmocka_unit_test(malformed_answers_retry), cmocka_unit_test(topic_answers),
        cmocka_unit_test(cut_answer_uses_the_whole_results),
        cmocka_unit_test(cut_answer_without_legible_results_is_delivered),
        cmocka_unit_test(cut_answer_other_statuses_and_topics),
        cmocka_unit_test(bound_holds_a_full_answer),
    };
    return cmocka_run_group_tests_name("legacy", tests, NULL, NULL);
}
