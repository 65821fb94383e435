/*
 * common/json.c - the strict check, jsmn instantiation, and helpers.
 *
 * The one idea: nothing reaches jsmn that is not already known to be valid
 * JSON.  scan() walks the text once with an explicit stack bounded by
 * JSON_MAX_DEPTH, so a hostile text costs what any text of its length
 * costs; it also counts the tokens, so jsmn fills an exact array in a
 * single call.  Repeated keys are then found by sorting each object's keys.
 */
/* jsmn's code is built here, once, strict and with the same parent links
 * json.h asks every other file for. */
#define JSMN_STRICT
#define JSMN_PARENT_LINKS
#include <jsmn.h>

#include "json.h"

#include <errno.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>

/* ---- UTF-8 ---- */

/* Length of the valid UTF-8 sequence at s (RFC 3629, table 3-7 of Unicode),
 * or 0 when the bytes there are not one. */
static size_t utf8_seq(const unsigned char *s, size_t n)
{
    unsigned char c = s[0], lo = 0x80, hi = 0xbf;
    size_t len;

    if (c < 0x80)
        return 1;
    if (c >= 0xc2 && c <= 0xdf)
        len = 2;
    else if (c >= 0xe0 && c <= 0xef)
        len = 3;
    else if (c >= 0xf0 && c <= 0xf4)
        len = 4;
    else
        return 0; /* continuation byte, overlong lead (C0, C1) or past U+10FFFF */
    if (n < len)
        return 0;
    if (c == 0xe0)
        lo = 0xa0; /* overlong */
    else if (c == 0xed)
        hi = 0x9f; /* surrogates */
    else if (c == 0xf0)
        lo = 0x90; /* overlong */
    else if (c == 0xf4)
        hi = 0x8f; /* past U+10FFFF */
    if (s[1] < lo || s[1] > hi)
        return 0;
    for (size_t i = 2; i < len; i++)
        if (s[i] < 0x80 || s[i] > 0xbf)
            return 0;
    return len;
}

int json_valid_utf8(const char *s, size_t n)
{
    const unsigned char *u = (const unsigned char *)s;

    for (size_t i = 0, k; i < n; i += k)
        if ((k = utf8_seq(u + i, n - i)) == 0)
            return 0;
    return 1;
}

/* ---- the grammar check ---- */

struct scan {
    const unsigned char *s;
    size_t len;
    size_t pos;
    size_t ntok;
    const char *error;
};

static int fail(struct scan *sc, size_t at, const char *why)
{
    sc->pos = at;
    sc->error = why;
    return -1;
}

static long hex4(const unsigned char *s, size_t n)
{
    long v = 0;

    if (n < 4)
        return -1;
    for (int k = 0; k < 4; k++) {
        unsigned char c = s[k];
        int h = c >= '0' && c <= '9' ? c - '0' : c >= 'a' && c <= 'f' ? c - 'a' + 10 : c >= 'A' && c <= 'F' ? c - 'A' + 10 : -1;
        if (h < 0)
            return -1;
        v = v * 16 + h;
    }
    return v;
}

/* A \u escape at i (pointing at the backslash); surrogates must pair. */
static int scan_u_escape(struct scan *sc, size_t *i)
{
    size_t at = *i;
    long cp = hex4(sc->s + at + 2, sc->len - at - 2), lo;

    if (cp < 0)
        return fail(sc, at, "bad \\u escape");
    *i += 6;
    if (cp >= 0xdc00 && cp <= 0xdfff)
        return fail(sc, at, "escaped lone surrogate");
    if (cp >= 0xd800 && cp <= 0xdbff) {
        if (sc->len - *i < 6 || sc->s[*i] != '\\' || sc->s[*i + 1] != 'u' ||
            (lo = hex4(sc->s + *i + 2, sc->len - *i - 2)) < 0xdc00 || lo > 0xdfff)
            return fail(sc, at, "escaped lone surrogate");
        *i += 6;
    }
    return 0;
}

static int scan_string(struct scan *sc)
{
    const unsigned char *s = sc->s;
    size_t i = sc->pos + 1, n;

    while (i < sc->len) {
        unsigned char c = s[i];
        if (c == '"') {
            sc->pos = i + 1;
            return 0;
        }
        if (c < 0x20)
            return fail(sc, i, "control character in a string");
        if (c == '\\') {
            if (i + 1 < sc->len && s[i + 1] == 'u') {
                if (scan_u_escape(sc, &i) != 0)
                    return -1;
                continue;
            }
            if (i + 1 >= sc->len || s[i + 1] == '\0' || strchr("\"\\/bfnrt", s[i + 1]) == NULL)
                return fail(sc, i, "bad escape in a string");
            i += 2;
        } else if (c < 0x80) {
            i++;
        } else if ((n = utf8_seq(s + i, sc->len - i)) == 0) {
            return fail(sc, i, "invalid UTF-8");
        } else {
            i += n;
        }
    }
    return fail(sc, sc->pos, "unterminated string");
}

static size_t digits(const unsigned char *s, size_t i, size_t len)
{
    size_t start = i;

    while (i < len && s[i] >= '0' && s[i] <= '9')
        i++;
    return i - start;
}

/* A number or literal at sc->pos; what follows it is the caller's check. */
static int scan_primitive(struct scan *sc)
{
    const unsigned char *s = sc->s;
    size_t i = sc->pos, len = sc->len, n;
    static const char *const words[] = {"true", "false", "null"};

    for (int w = 0; w < 3; w++) {
        n = strlen(words[w]);
        if (len - i >= n && memcmp(s + i, words[w], n) == 0) {
            sc->pos = i + n;
            return 0;
        }
    }
    if (s[i] == '-')
        i++;
    if (i < len && s[i] == '0')
        i++;
    else if (i < len && s[i] >= '1' && s[i] <= '9')
        i += digits(s, i, len);
    else
        return fail(sc, sc->pos, "expected a value");
    if (i < len && s[i] == '.') {
        if ((n = digits(s, i + 1, len)) == 0)
            return fail(sc, i, "bad number");
        i += 1 + n;
    }
    if (i < len && (s[i] == 'e' || s[i] == 'E')) {
        size_t e = i++;
        if (i < len && (s[i] == '+' || s[i] == '-'))
            i++;
        if ((n = digits(s, i, len)) == 0)
            return fail(sc, e, "bad number");
        i += n;
    }
    sc->pos = i;
    return 0;
}

/* What the scanner expects next. */
enum expect { VALUE, VALUE_OR_CLOSE, KEY, KEY_OR_CLOSE, COLON, NEXT };

static int scan(struct scan *sc)
{
    unsigned char stack[JSON_MAX_DEPTH]; /* '{' or '[' per open container */
    int depth = 0;
    enum expect want = VALUE;

    for (;;) {
        unsigned char c;
        while (sc->pos < sc->len && (sc->s[sc->pos] == ' ' || sc->s[sc->pos] == '\t' || sc->s[sc->pos] == '\n' ||
                                     sc->s[sc->pos] == '\r'))
            sc->pos++;
        if (sc->pos == sc->len) {
            if (want == NEXT && depth == 0)
                return 0;
            return fail(sc, sc->pos, sc->ntok == 0 ? "no value" : "text ends inside a value");
        }
        c = sc->s[sc->pos];
        switch (want) {
        case KEY_OR_CLOSE:
        case VALUE_OR_CLOSE:
            if (c == (want == KEY_OR_CLOSE ? '}' : ']')) {
                depth--;
                sc->pos++;
                want = NEXT;
                break;
            }
            want = want == KEY_OR_CLOSE ? KEY : VALUE;
            continue;
        case KEY:
            if (c != '"')
                return fail(sc, sc->pos, "expected a string key");
            if (scan_string(sc) != 0)
                return -1;
            sc->ntok++;
            want = COLON;
            break;
        case COLON:
            if (c != ':')
                return fail(sc, sc->pos, "expected ':'");
            sc->pos++;
            want = VALUE;
            break;
        case VALUE:
            sc->ntok++;
            if (c == '{' || c == '[') {
                if (depth == JSON_MAX_DEPTH)
                    return fail(sc, sc->pos, "nested too deeply");
                stack[depth++] = c;
                sc->pos++;
                want = c == '{' ? KEY_OR_CLOSE : VALUE_OR_CLOSE;
            } else if (c == '"') {
                if (scan_string(sc) != 0)
                    return -1;
                want = NEXT;
            } else {
                if (scan_primitive(sc) != 0)
                    return -1;
                want = NEXT;
            }
            break;
        case NEXT:
            if (depth == 0)
                return fail(sc, sc->pos, "text after the value");
            if (c == ',') {
                want = stack[depth - 1] == '{' ? KEY : VALUE;
            } else if (c == (stack[depth - 1] == '{' ? '}' : ']')) {
                depth--;
            } else {
                return fail(sc, sc->pos, "expected ',' or a closing bracket");
            }
            sc->pos++;
            break;
        }
    }
}

/* ---- repeated keys ---- */

struct key {
    size_t len;
    const char *s; /* unescaped */
};

static int key_cmp(const void *a, const void *b)
{
    const struct key *x = a, *y = b;

    if (x->len != y->len)
        return x->len < y->len ? -1 : 1;
    return memcmp(x->s, y->s, x->len);
}

static int is_key(const struct json_doc *d, int i)
{
    int p = d->tok[i].parent;

    return d->tok[i].type == JSMN_STRING && p >= 0 && d->tok[p].type == JSMN_OBJECT;
}

/* Returns 0, 1 when an object repeats a key (d->error_at is the object's
 * offset), or -1 when memory ran out.  Keys compare unescaped: "a" and
 * "\u0061" are the same key to every other reader.  Each object's keys are
 * sorted on their own (placed by a counting pass, since an object's keys
 * are interleaved with those of the objects inside it), so the work is the
 * keys times the log of the largest object, not of all keys. */
static int find_repeated_key(struct json_doc *d)
{
    size_t nkeys = 0, escaped = 0, off = 0;
    size_t *at = NULL;
    struct key *keys = NULL;
    char *text = NULL, *o;
    int rc = 0;

    for (int i = 0; i < d->ntok; i++) {
        if (d->tok[i].type == JSMN_OBJECT)
            nkeys += (size_t)d->tok[i].size;
        else if (is_key(d, i) && memchr(json_tokptr(d, i), '\\', json_toklen(d, i)) != NULL)
            escaped += json_toklen(d, i) + 1;
    }
    if (nkeys < 2)
        return 0;
    at = malloc((size_t)d->ntok * sizeof(*at));
    keys = malloc(nkeys * sizeof(*keys));
    text = o = malloc(escaped ? escaped : 1);
    if (at == NULL || keys == NULL || text == NULL) {
        rc = -1;
        goto out;
    }
    for (int i = 0; i < d->ntok; i++) {
        if (d->tok[i].type == JSMN_OBJECT) {
            at[i] = off;
            off += (size_t)d->tok[i].size;
        }
    }
    for (int i = 0; i < d->ntok; i++) {
        struct key *k;
        if (!is_key(d, i))
            continue;
        k = &keys[at[d->tok[i].parent]++];
        *k = (struct key){json_toklen(d, i), json_tokptr(d, i)};
        if (memchr(k->s, '\\', k->len) != NULL) {
            long n = json_unescape(d, i, o);
            k->s = o;
            k->len = n < 0 ? 0 : (size_t)n;
            o += k->len + 1;
        }
    }
    off = 0;
    for (int i = 0; i < d->ntok && rc == 0; i++) {
        size_t m = d->tok[i].type == JSMN_OBJECT ? (size_t)d->tok[i].size : 0;
        if (m > 1)
            qsort(keys + off, m, sizeof(*keys), key_cmp);
        for (size_t k = 1; k < m && rc == 0; k++) {
            if (key_cmp(&keys[off + k - 1], &keys[off + k]) == 0) {
                d->error_at = (size_t)d->tok[i].start;
                rc = 1;
            }
        }
        off += m;
    }
out:
    free(at);
    free(keys);
    free(text);
    return rc;
}

/* ---- parsing ---- */

/* A text that is one number or literal: its token, made here. */
static int first_is_primitive(const char *js, size_t len, jsmntok_t *t)
{
    size_t a = strspn(js, " \t\r\n"), b = len;

    if (a >= len || js[a] == '"' || js[a] == '[' || js[a] == '{')
        return 0;
    while (b > a && strchr(" \t\r\n", js[b - 1]) != NULL)
        b--;
    *t = (jsmntok_t){.type = JSMN_PRIMITIVE, .start = (int)a, .end = (int)b, .size = 0, .parent = -1};
    return 1;
}

int json_parse(struct json_doc *d, const char *js, size_t len)
{
    struct scan sc = {(const unsigned char *)js, len, 0, 0, NULL};
    jsmn_parser p;
    int n, rc;

    memset(d, 0, sizeof(*d));
    d->js = js;
    d->len = len;
    if (len >= INT_MAX) {
        d->error = "text too long";
        return -EINVAL;
    }
    if (scan(&sc) != 0) {
        d->error = sc.error;
        d->error_at = sc.pos;
        return -EINVAL;
    }
    if ((d->tok = malloc(sc.ntok * sizeof(*d->tok))) == NULL)
        return -ENOMEM;
    jsmn_init(&p);
    if (sc.ntok == 1 && first_is_primitive(js, len, &d->tok[0])) {
        d->ntok = 1; /* strict jsmn wants a delimiter after a primitive */
        return 0;
    }
    n = jsmn_parse(&p, js, len, d->tok, (unsigned)sc.ntok);
    d->ntok = n;
    if (n < 0 || (size_t)n != sc.ntok) {
        /* Valid JSON that jsmn reads otherwise: refuse rather than guess. */
        json_free(d);
        d->error = "not understood";
        return -EINVAL;
    }
    if ((rc = find_repeated_key(d)) != 0) {
        json_free(d);
        d->error = rc > 0 ? "repeated key" : NULL;
        return rc > 0 ? -EINVAL : -ENOMEM;
    }
    return 0;
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
    size_t n = strlen(s), len;
    char spelled[6 * 64 + 1];
    long got;

    if (i < 0 || i >= d->ntok || d->tok[i].type != JSMN_STRING)
        return 0;
    len = json_toklen(d, i);
    if (memchr(json_tokptr(d, i), '\\', len) == NULL)
        return len == n && memcmp(json_tokptr(d, i), s, n) == 0;
    /* Escaped ("\u0061" is "a" to every reader): never shorter than what it
     * spells, and at most six bytes for each byte of it. */
    if (len < n || len > 6 * n || len >= sizeof(spelled))
        return 0;
    got = json_unescape(d, i, spelled);
    return got == (long)n && memcmp(spelled, s, n) == 0;
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
    const unsigned char *s = (const unsigned char *)json_tokptr(d, i);
    size_t n = json_toklen(d, i), o = 0;

    if (d->tok[i].type != JSMN_STRING)
        return -1;
    for (size_t k = 0; k < n; k++) {
        long cp, lo;
        if (s[k] != '\\') {
            out[o++] = (char)s[k];
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
            if ((cp = hex4(s + k + 1, n - k - 1)) < 0)
                return -1;
            k += 4;
            if (cp >= 0xd800 && cp <= 0xdbff) {
                if (n - k - 1 < 6 || s[k + 1] != '\\' || s[k + 2] != 'u' || (lo = hex4(s + k + 3, n - k - 3)) < 0xdc00 ||
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
