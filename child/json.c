/*
 * child/json.c - jsmn instantiation and strict checks.
 *
 * jsmn is built here once, in strict mode.  Strict jsmn still lets a few
 * malformed inputs through (bad literals, bad numbers, trailing values), so
 * json_parse checks those itself: text it accepts can be embedded verbatim
 * in an upstream request.
 */
#define JSMN_STRICT
#include <jsmn.h>

#include "json.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

/* Whether the bytes are exactly one valid JSON number. */
static int json_valid_number(const char *s, size_t n)
{
    size_t i = 0;

    if (i < n && s[i] == '-')
        i++;
    if (i < n && s[i] == '0') {
        i++;
    } else if (i < n && s[i] >= '1' && s[i] <= '9') {
        while (i < n && s[i] >= '0' && s[i] <= '9')
            i++;
    } else {
        return 0;
    }
    if (i < n && s[i] == '.') {
        size_t d = ++i;
        while (i < n && s[i] >= '0' && s[i] <= '9')
            i++;
        if (i == d)
            return 0;
    }
    if (i < n && (s[i] == 'e' || s[i] == 'E')) {
        size_t d;
        i++;
        if (i < n && (s[i] == '+' || s[i] == '-'))
            i++;
        d = i;
        while (i < n && s[i] >= '0' && s[i] <= '9')
            i++;
        if (i == d)
            return 0;
    }
    return i == n;
}

static int valid_primitive(const char *s, size_t n)
{
    return (n == 4 && memcmp(s, "true", 4) == 0) || (n == 5 && memcmp(s, "false", 5) == 0) ||
           (n == 4 && memcmp(s, "null", 4) == 0) || json_valid_number(s, n);
}

static int only_space(const char *s, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (s[i] != ' ' && s[i] != '\t' && s[i] != '\n' && s[i] != '\r')
            return 0;
    return 1;
}

int json_parse(struct json_doc *d, const char *js, size_t len)
{
    jsmn_parser p;
    int n, cap = 64;

    memset(d, 0, sizeof(*d));
    d->js = js;
    d->len = len;
    for (;;) {
        jsmntok_t *t = realloc(d->tok, sizeof(*t) * (size_t)cap);
        if (t == NULL) {
            json_free(d);
            errno = ENOMEM;
            return -1;
        }
        d->tok = t;
        jsmn_init(&p);
        n = jsmn_parse(&p, js, len, d->tok, (unsigned)cap);
        if (n != JSMN_ERROR_NOMEM)
            break;
        cap *= 2;
    }
    if (n <= 0 || !only_space(js + d->tok[0].end, len - (size_t)d->tok[0].end) ||
        !only_space(js, (size_t)d->tok[0].start)) {
        json_free(d);
        errno = EINVAL;
        return -1;
    }
    d->ntok = n;
    for (int i = 0; i < n; i++) {
        if (d->tok[i].type == JSMN_PRIMITIVE && !valid_primitive(json_tokptr(d, i), json_toklen(d, i)))
            goto invalid;
        /* Object keys must be strings. */
        if (d->tok[i].type == JSMN_OBJECT) {
            for (int k = i + 1, m = 0; m < d->tok[i].size; m++) {
                if (d->tok[k].type != JSMN_STRING || d->tok[k].size != 1)
                    goto invalid;
                k = json_skip(d, k + 1);
            }
        }
    }
    /* A string with a raw control character or a bad escape is no JSON. */
    for (int i = 0; i < n; i++) {
        if (d->tok[i].type == JSMN_STRING) {
            const char *s = json_tokptr(d, i);
            for (size_t k = 0; k < json_toklen(d, i); k++)
                if ((unsigned char)s[k] < 0x20)
                    goto invalid;
        }
    }
    return 0;
invalid:
    json_free(d);
    errno = EINVAL;
    return -1;
}

void json_free(struct json_doc *d)
{
    free(d->tok);
    d->tok = NULL;
    d->ntok = 0;
}

int json_skip(const struct json_doc *d, int i)
{
    int pending = 1;

    /* Every token owns `size` direct children; walk until all are consumed. */
    while (pending > 0 && i < d->ntok) {
        pending += d->tok[i].size - 1;
        i++;
    }
    return i;
}

int json_find(const struct json_doc *d, int obj, const char *key)
{
    int k;

    if (obj < 0 || obj >= d->ntok || d->tok[obj].type != JSMN_OBJECT)
        return -1;
    k = obj + 1;
    for (int m = 0; m < d->tok[obj].size; m++) {
        if (json_is(d, k, key))
            return k + 1;
        k = json_skip(d, k + 1);
    }
    return -1;
}

int json_is(const struct json_doc *d, int i, const char *s)
{
    size_t n = strlen(s);

    return i >= 0 && i < d->ntok && d->tok[i].type == JSMN_STRING && json_toklen(d, i) == n &&
           memcmp(json_tokptr(d, i), s, n) == 0;
}

static int hexval(char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    return -1;
}

static long read_u16(const char *s)
{
    long v = 0;

    for (int k = 0; k < 4; k++) {
        int h = hexval(s[k]);
        if (h < 0)
            return -1;
        v = v * 16 + h;
    }
    return v;
}

static size_t put_utf8(char *o, unsigned long cp)
{
    if (cp < 0x80) {
        o[0] = (char)cp;
        return 1;
    }
    if (cp < 0x800) {
        o[0] = (char)(0xc0 | (cp >> 6));
        o[1] = (char)(0x80 | (cp & 0x3f));
        return 2;
    }
    if (cp < 0x10000) {
        o[0] = (char)(0xe0 | (cp >> 12));
        o[1] = (char)(0x80 | ((cp >> 6) & 0x3f));
        o[2] = (char)(0x80 | (cp & 0x3f));
        return 3;
    }
    o[0] = (char)(0xf0 | (cp >> 18));
    o[1] = (char)(0x80 | ((cp >> 12) & 0x3f));
    o[2] = (char)(0x80 | ((cp >> 6) & 0x3f));
    o[3] = (char)(0x80 | (cp & 0x3f));
    return 4;
}

long json_unescape(const struct json_doc *d, int i, char *out)
{
    const char *s = json_tokptr(d, i);
    size_t n = json_toklen(d, i), o = 0;

    if (d->tok[i].type != JSMN_STRING)
        return -1;
    for (size_t k = 0; k < n; k++) {
        long cp, lo;
        if (s[k] != '\\') {
            out[o++] = s[k];
            continue;
        }
        if (++k >= n)
            return -1;
        switch (s[k]) {
        case '"': out[o++] = '"'; break;
        case '\\': out[o++] = '\\'; break;
        case '/': out[o++] = '/'; break;
        case 'b': out[o++] = '\b'; break;
        case 'f': out[o++] = '\f'; break;
        case 'n': out[o++] = '\n'; break;
        case 'r': out[o++] = '\r'; break;
        case 't': out[o++] = '\t'; break;
        case 'u':
            if (k + 4 >= n)
                return -1;
            if ((cp = read_u16(s + k + 1)) < 0)
                return -1;
            k += 4;
            if (cp >= 0xd800 && cp <= 0xdbff) {
                if (k + 6 >= n || s[k + 1] != '\\' || s[k + 2] != 'u' || (lo = read_u16(s + k + 3)) < 0xdc00 ||
                    lo > 0xdfff)
                    return -1;
                cp = 0x10000 + ((cp - 0xd800) << 10) + (lo - 0xdc00);
                k += 6;
            } else if (cp >= 0xdc00 && cp <= 0xdfff) {
                return -1;
            }
            o += put_utf8(out + o, (unsigned long)cp);
            break;
        default: return -1;
        }
    }
    out[o] = '\0';
    return (long)o;
}
