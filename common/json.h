/*
 * common/json.h - strict JSON reading on top of jsmn.
 *
 * jsmn tokenises but does not validate: it lets through missing commas,
 * trailing commas, bad literals, invalid UTF-8, and its work grows with the
 * nesting.  json_parse first checks the whole text against the JSON grammar
 * in one linear pass (UTF-8 and escapes included, nesting bounded), which
 * also counts the tokens, so jsmn then runs once into an exact array.
 * Repeated keys are refused, at any depth.  Text it accepts can be embedded
 * verbatim in an upstream request.
 */
#ifndef FCMD_COMMON_JSON_H
#define FCMD_COMMON_JSON_H

#include <stddef.h>

/* Parent links make jsmn's closing brackets cost the depth, not the size
 * of what precedes them.  Every file that includes jsmn.h does so here. */
#define JSMN_PARENT_LINKS
#define JSMN_HEADER
#include <jsmn.h>

/* Deepest nesting of objects and arrays a document may have. */
#define JSON_MAX_DEPTH 64

struct json_doc {
    const char *js;
    size_t len;
    jsmntok_t *tok;
    int ntok;
    const char *error; /* why json_parse refused the text */
    size_t error_at;   /* at which byte */
};

/* Tokenises and validates js.  Returns 0, -EINVAL (d->error and d->error_at
 * say what and where) or -ENOMEM; errno is not its report.  On success free
 * with json_free(); after a failure there is nothing to free. */
int json_parse(struct json_doc *d, const char *js, size_t len);
void json_free(struct json_doc *d);

/* Whether s[0..n) is valid UTF-8: no overlong forms, no surrogates, nothing
 * past U+10FFFF. */
int json_valid_utf8(const char *s, size_t n);

/* Index of the token after value i and everything inside it. */
int json_skip(const struct json_doc *d, int i);

/* Value token of key in object obj, or -1. */
int json_find(const struct json_doc *d, int obj, const char *key);

/* Whether token i is a string equal to s once unescaped (s of at most 64
 * bytes when the token holds escapes). */
int json_is(const struct json_doc *d, int i, const char *s);

/* Unescapes string token i into out (which must hold token length + 1
 * bytes) and NUL-terminates it.  Returns the length, or -1. */
long json_unescape(const struct json_doc *d, int i, char *out);

static inline size_t json_toklen(const struct json_doc *d, int i)
{
    return (size_t)(d->tok[i].end - d->tok[i].start);
}

static inline const char *json_tokptr(const struct json_doc *d, int i)
{
    return d->js + d->tok[i].start;
}

/* The value's JSON text as it appears in the document: strings keep their
 * quotes (jsmn's tokens exclude them). */
static inline const char *json_raw(const struct json_doc *d, int i, size_t *len)
{
    int q = d->tok[i].type == JSMN_STRING;

    *len = json_toklen(d, i) + (q ? 2 : 0);
    return json_tokptr(d, i) - q;
}

#endif
