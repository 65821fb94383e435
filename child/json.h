/*
 * child/json.h - strict JSON reading on top of jsmn.
 *
 * jsmn tokenises; this module adds what a gateway needs before it forwards
 * someone else's JSON: exactly one root value, well-formed numbers and
 * literals, escapes checked, and helpers to walk objects and unescape
 * strings into caller-owned memory.
 */
#ifndef FCMD_CHILD_JSON_H
#define FCMD_CHILD_JSON_H

#include <stddef.h>

#define JSMN_HEADER
#include <jsmn.h>

struct json_doc {
    const char *js;
    size_t len;
    jsmntok_t *tok;
    int ntok;
};

/* Tokenises and validates js.  Returns 0, or -1 (invalid JSON or no memory;
 * errno tells ENOMEM apart).  On success free with json_free(). */
int json_parse(struct json_doc *d, const char *js, size_t len);
void json_free(struct json_doc *d);

/* Index of the token after value i and everything inside it. */
int json_skip(const struct json_doc *d, int i);

/* Value token of key in object obj, or -1. */
int json_find(const struct json_doc *d, int obj, const char *key);

/* Whether token i is a string equal to s. */
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
