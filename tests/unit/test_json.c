/*
 * tests/unit/test_json.c - the strict JSON reader: what it accepts, what it
 * refuses and why, and that hostile shapes cost no more than their size.
 */
#include "cmocka_all.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../../common/json.h"

static void accept(const char *js)
{
    struct json_doc d;

    if (json_parse(&d, js, strlen(js)) != 0)
        fail_msg("refused valid JSON %s: %s at %zu", js, d.error ? d.error : "(no reason)", d.error_at);
    json_free(&d);
}

/* Refused, with a reason that mentions `why`. */
static void refuse_n(const char *js, size_t len, const char *why)
{
    struct json_doc d;
    int rc = json_parse(&d, js, len);

    if (rc == 0) {
        json_free(&d);
        fail_msg("accepted invalid JSON %.*s", (int)(len > 80 ? 80 : len), js);
    }
    assert_int_equal(rc, -EINVAL);
    assert_non_null(d.error);
    if (strstr(d.error, why) == NULL)
        fail_msg("%.*s: reason \"%s\" does not mention \"%s\"", (int)(len > 80 ? 80 : len), js, d.error, why);
    assert_null(d.tok);
}

static void refuse(const char *js, const char *why)
{
    refuse_n(js, strlen(js), why);
}

static void grammar(void **state)
{
    (void)state;
    accept("{}");
    accept(" [ ] ");
    accept("{\"a\":[1,-2.5e+3,true,false,null,\"x\"],\"b\":{\"c\":0}}");
    accept("\"just a string\"");
    accept("0");
    accept("[-0.0E-0]");
    refuse("", "no value");
    refuse("   ", "no value");
    refuse("[1 2]", "expected ','");
    refuse("[1,,2]", "expected a value");
    refuse("[,1]", "expected a value");
    refuse("[1,]", "expected a value");
    refuse("{\"a\":1,}", "expected a string key");
    refuse("{,\"a\":1}", "expected a string key");
    refuse("{\"a\" 1}", "expected ':'");
    refuse("{\"a\":1 \"b\":2}", "expected ','");
    refuse("{\"a\":1:2}", "expected ','");
    refuse("{1:2}", "expected a string key");
    refuse("[1:2]", "expected ','");
    refuse("{\"a\":1]", "expected ','");
    refuse("[1}", "expected ','");
    refuse("[1", "ends inside");
    refuse("{\"a\":", "ends inside");
    refuse("{} {}", "text after");
    refuse("[tru]", "expected a value");
    refuse("[truex]", "expected ','");
    refuse("[01]", "expected ','");
    refuse("[1.]", "bad number");
    refuse("[1e]", "bad number");
    refuse("[-]", "expected a value");
    refuse("[+1]", "expected a value");
    refuse("[.5]", "expected a value");
    refuse("[NaN]", "expected a value");
    refuse("['a']", "expected a value");
    refuse("[\"a\nb\"]", "control character");
    refuse("[\"a", "unterminated");
    refuse("[\"\\x\"]", "bad escape");
    refuse("[\"\\u12G4\"]", "bad \\u escape");
    refuse("[\"\\u12\"]", "bad \\u escape");
    refuse_n("[1]\0", 4, "text after");
    refuse_n("[\"a\0b\"]", 7, "control character");
}

static void utf8(void **state)
{
    (void)state;
    accept("[\"h\xc3\xa9llo \xe2\x82\xac \xf0\x9f\x98\x80 \xf4\x8f\xbf\xbf\"]");
    refuse("[\"\xff\"]", "invalid UTF-8");
    refuse("[\"\xc0\xaf\"]", "invalid UTF-8");         /* overlong '/' */
    refuse("[\"\xc1\xbf\"]", "invalid UTF-8");         /* overlong */
    refuse("[\"\xe0\x80\xaf\"]", "invalid UTF-8");     /* overlong, three bytes */
    refuse("[\"\xf0\x80\x80\xaf\"]", "invalid UTF-8"); /* overlong, four bytes */
    refuse("[\"\xed\xa0\x80\"]", "invalid UTF-8");     /* the surrogate U+D800, encoded */
    refuse("[\"\xf4\x90\x80\x80\"]", "invalid UTF-8"); /* U+110000 */
    refuse("[\"\xf5\x80\x80\x80\"]", "invalid UTF-8");
    refuse("[\"\x80\"]", "invalid UTF-8");             /* a lone continuation byte */
    refuse("[\"\xc3\"]", "invalid UTF-8");             /* cut short */
    refuse("[\"\xe2\x82\"]", "invalid UTF-8");
    refuse("{\"\xff\":1}", "invalid UTF-8");           /* in a key too */
    refuse("[\xc3\xa9]", "expected a value");          /* outside strings, only ASCII */
    assert_true(json_valid_utf8("abc\xc3\xa9", 5));
    assert_false(json_valid_utf8("\xc0\x80", 2));
}

static void surrogate_escapes(void **state)
{
    struct json_doc d;
    char out[16];

    (void)state;
    accept("[\"\\ud83d\\ude00\"]");
    refuse("[\"\\ud800\"]", "lone surrogate");
    refuse("[\"\\ud800x\"]", "lone surrogate");
    refuse("[\"\\udc00\"]", "lone surrogate");
    refuse("[\"\\ud800\\u0041\"]", "lone surrogate");
    refuse("[\"\\ud800\\ud800\"]", "lone surrogate");
    refuse("[\"\\ude00\\ud83d\"]", "lone surrogate");
    assert_int_equal(json_parse(&d, "\"\\ud83d\\ude00\\u00e9\"", 20), 0);
    assert_int_equal(json_unescape(&d, 0, out), 6);
    assert_memory_equal(out, "\xf0\x9f\x98\x80\xc3\xa9", 6);
    json_free(&d);
}

static void repeated_keys(void **state)
{
    struct json_doc d;

    (void)state;
    accept("{\"a\":1,\"b\":{\"a\":2},\"c\":[{\"a\":3},{\"a\":4}]}");
    refuse("{\"a\":1,\"a\":2}", "repeated key");
    refuse("{\"a\":1,\"b\":2,\"a\":{}}", "repeated key");
    refuse("{\"x\":{\"k\":1,\"k\":1}}", "repeated key");
    refuse("[{\"k\":1},{\"k\":1,\"j\":2,\"k\":3}]", "repeated key");
    /* Two spellings of one key are one key to every other reader. */
    refuse("{\"a\":1,\"\\u0061\":2}", "repeated key");
    refuse("{\"\\/\":1,\"/\":2}", "repeated key");
    /* Where: the object that repeats it. */
    assert_int_equal(json_parse(&d, "[0,{\"k\":1,\"k\":2}]", 17), -EINVAL);
    assert_int_equal(d.error_at, 3);
}

/* A document nested n deep: [[[...]]] */
static char *nested(size_t n)
{
    char *s = malloc(2 * n + 1);

    assert_non_null(s);
    memset(s, '[', n);
    memset(s + n, ']', n);
    s[2 * n] = '\0';
    return s;
}

static void depth_is_bounded(void **state)
{
    char *ok = nested(JSON_MAX_DEPTH), *deep = nested(JSON_MAX_DEPTH + 1), *huge = nested(200000);
    struct json_doc d;

    (void)state;
    accept(ok);
    refuse(deep, "nested too deeply");
    /* Refused where the limit is crossed: nothing past it is looked at. */
    assert_int_equal(json_parse(&d, huge, strlen(huge)), -EINVAL);
    assert_string_equal(d.error, "nested too deeply");
    assert_int_equal(d.error_at, JSON_MAX_DEPTH);
    free(ok);
    free(deep);
    free(huge);
}

/* The shapes that used to cost quadratic time parse at once: wide arrays of
 * empty containers and many keys.  (A benchmark measures the time; here
 * the point is that they parse, into the exact number of tokens.) */
static void wide_documents(void **state)
{
    size_t n = 100000, len = 0;
    char *s = malloc(12 * n + 16);
    struct json_doc d;

    (void)state;
    assert_non_null(s);
    s[len++] = '[';
    for (size_t i = 0; i < n; i++) {
        memcpy(s + len, i ? ",[]" : "[]", i ? 3 : 2);
        len += i ? 3 : 2;
    }
    s[len++] = ']';
    assert_int_equal(json_parse(&d, s, len), 0);
    assert_int_equal(d.ntok, (int)n + 1);
    assert_int_equal(d.tok[1].parent, 0);
    assert_int_equal(d.tok[n].parent, 0);
    json_free(&d);
    len = 0;
    s[len++] = '{';
    for (size_t i = 0; i < n; i++)
        len += (size_t)sprintf(s + len, "%s\"%zx\":1", i ? "," : "", i);
    s[len++] = '}';
    assert_int_equal(json_parse(&d, s, len), 0);
    assert_int_equal(d.ntok, 2 * (int)n + 1);
    assert_int_equal(d.tok[0].size, (int)n);
    json_free(&d);
    free(s);
}

static void helpers(void **state)
{
    static const char js[] = "{\"a\":{\"x\":[1,2]},\"b\":\"t\\\"q\",\"c\":null}";
    struct json_doc d;
    char out[16];

    (void)state;
    assert_int_equal(json_parse(&d, js, sizeof(js) - 1), 0);
    assert_int_equal(json_find(&d, 0, "b"), 8);
    assert_true(json_is(&d, json_find(&d, 0, "b") - 1, "b"));
    assert_int_equal(json_unescape(&d, 8, out), 3);
    assert_string_equal(out, "t\"q");
    assert_int_equal(json_skip(&d, 2), 7);
    assert_int_equal(json_find(&d, 0, "zz"), -1);
    assert_int_equal(json_find(&d, 8, "b"), -1);
    json_free(&d);
    /* Names match however they are spelled. */
    assert_int_equal(json_parse(&d, "{\"tok\\u0065ns\":\"\\u0068igh\"}", 27), 0);
    assert_true(json_is(&d, 1, "tokens"));
    assert_true(json_is(&d, 2, "high"));
    assert_false(json_is(&d, 2, "hig"));
    assert_int_equal(json_find(&d, 0, "tokens"), 2);
    json_free(&d);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(grammar),
        cmocka_unit_test(utf8),
        cmocka_unit_test(surrogate_escapes),
        cmocka_unit_test(repeated_keys),
        cmocka_unit_test(depth_is_bounded),
        cmocka_unit_test(wide_documents),
        cmocka_unit_test(helpers),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
