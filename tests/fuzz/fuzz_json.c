/*
 * tests/fuzz/fuzz_json.c - common/json.c against jansson: json_parse must
 * accept exactly what jansson accepts (oracle.h's flags), and read the same
 * values from it.  Skipped, as documented differences: jansson's limits
 * (numbers beyond a double, NUL in keys) and nesting deeper than
 * JSON_MAX_DEPTH, which fcmd refuses and jansson allows up to 2048.  A raw
 * NUL byte is never JSON, but jansson skips one after a number or literal:
 * such input is judged without it.
 */
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../../common/json.h"
#include "oracle.h"

static void disagree(const uint8_t *data, size_t size, const char *what)
{
    fprintf(stderr, "fuzz_json: %s:", what);
    for (size_t i = 0; i < size; i++) {
        if (data[i] >= 0x20 && data[i] < 0x7f && data[i] != '\\' && data[i] != '"')
            fputc(data[i], stderr);
        else
            fprintf(stderr, "\\x%02x", data[i]);
    }
    fprintf(stderr, "\n");
    abort();
}

/* Containers on the deepest path of v. */
static int depth(const json_t *v)
{
    const char *k;
    json_t *e;
    size_t i;
    int deepest = 0;

    if (json_is_object(v)) {
        json_object_foreach ((json_t *)v, k, e) {
            int n = depth(e);
            deepest = n > deepest ? n : deepest;
        }
    } else if (json_is_array(v)) {
        json_array_foreach (v, i, e) {
            int n = depth(e);
            deepest = n > deepest ? n : deepest;
        }
    } else {
        return 0;
    }
    return deepest + 1;
}

static int same_value(const struct json_doc *d, int i, const json_t *v);

/* String token i, unescaped by json.c, equals the bytes s[0..n). */
static int same_string(const struct json_doc *d, int i, const char *s, size_t n)
{
    char *out = malloc(json_toklen(d, i) + 1);
    long len = out ? json_unescape(d, i, out) : -1;
    int same = len >= 0 && (size_t)len == n && memcmp(out, s, n) == 0;

    free(out);
    return same;
}

/* A number token has the value and the kind (integer or real) jansson read. */
static int same_number(const struct json_doc *d, int i, const json_t *v)
{
    size_t n = json_toklen(d, i);
    char *text = strndup(json_tokptr(d, i), n);
    int real = strpbrk(text ? text : "", ".eE") != NULL, same;

    if (text == NULL)
        return 1;
    if (json_is_integer(v))
        same = !real && strtoll(text, NULL, 10) == json_integer_value(v);
    else /* a real, or an integer jansson read as one after an overflow */
        same = json_is_real(v) && strtod(text, NULL) == json_real_value(v);
    free(text);
    return same;
}

static int same_object(const struct json_doc *d, int i, const json_t *v)
{
    int k = i + 1;

    if (!json_is_object(v) || (size_t)d->tok[i].size != json_object_size(v))
        return 0;
    for (int m = 0; m < d->tok[i].size; m++, k = json_skip(d, k + 1)) {
        char *key = malloc(json_toklen(d, k) + 1);
        long len = key ? json_unescape(d, k, key) : -1;
        json_t *e = len >= 0 ? json_object_getn(v, key, (size_t)len) : NULL;
        int same = e != NULL && same_value(d, k + 1, e);
        free(key);
        if (!same)
            return 0;
    }
    return 1;
}

static int same_array(const struct json_doc *d, int i, const json_t *v)
{
    int k = i + 1;

    if (!json_is_array(v) || (size_t)d->tok[i].size != json_array_size(v))
        return 0;
    for (int m = 0; m < d->tok[i].size; m++, k = json_skip(d, k))
        if (!same_value(d, k, json_array_get(v, (size_t)m)))
            return 0;
    return 1;
}

/* Token i and what it holds read as v. */
static int same_value(const struct json_doc *d, int i, const json_t *v)
{
    const char *p = json_tokptr(d, i);

    switch (d->tok[i].type) {
    case JSMN_OBJECT: return same_object(d, i, v);
    case JSMN_ARRAY: return same_array(d, i, v);
    case JSMN_STRING: return json_is_string(v) && same_string(d, i, json_string_value(v), json_string_length(v));
    case JSMN_PRIMITIVE:
        if (*p == 't' || *p == 'f' || *p == 'n')
            return (*p == 't' && json_is_true(v)) || (*p == 'f' && json_is_false(v)) || (*p == 'n' && json_is_null(v));
        return json_is_number(v) && same_number(d, i, v);
    default: return 0;
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct json_doc d;
    json_error_t err;
    int rc = json_parse(&d, (const char *)data, size);
    int ours = rc == 0, nomem = rc == -ENOMEM;
    json_t *theirs = oracle_load((const char *)data, size, 0, &err);

    if (nomem || (theirs == NULL && json_error_code(&err) == json_error_out_of_memory)) {
        /* nothing to compare */
    } else if (memchr(data, '\0', size) != NULL) {
        if (ours)
            disagree(data, size, "json_parse accepted a raw NUL byte");
    } else if (ours && theirs == NULL) {
        if (!oracle_limit(&err))
            disagree(data, size, err.text);
    } else if (!ours && theirs != NULL) {
        if (d.error == NULL || strcmp(d.error, "nested too deeply") != 0 || depth(theirs) <= JSON_MAX_DEPTH)
            disagree(data, size, d.error ? d.error : "json_parse refused");
    } else if (ours && (!same_value(&d, 0, theirs) || json_skip(&d, 0) != d.ntok)) {
        disagree(data, size, "json_parse read other values");
    }
    if (ours)
        json_free(&d);
    json_decref(theirs);
    return 0;
}
