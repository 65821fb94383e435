/*
 * child/http/query.c - one parser for every query: split on '&', each piece
 * NAME or NAME=VALUE, both percent-decoded with common/percent.h.
 */
#include "query.h"
#include "../../common/percent.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>

/* A parameter's name longer than this is no name an endpoint takes. */
#define QUERY_NAME_MAX 64

struct piece {
    const char *name, *value; /* value NULL for a piece without '=' */
    size_t name_len, value_len;
};

/* The piece of q[0..n) that starts at *pos, skipping empty ones: 1 with
 * *pos past it, or 0 at the end. */
static int next_piece(const char *q, size_t n, size_t *pos, struct piece *p)
{
    const char *s, *end, *eq;

    while (*pos < n && q[*pos] == '&')
        (*pos)++;
    if (*pos >= n)
        return 0;
    s = q + *pos;
    end = memchr(s, '&', n - *pos);
    if (end == NULL)
        end = q + n;
    eq = memchr(s, '=', (size_t)(end - s));
    p->name = s;
    p->name_len = (size_t)((eq ? eq : end) - s);
    p->value = eq ? eq + 1 : NULL;
    p->value_len = eq ? (size_t)(end - eq - 1) : 0;
    *pos = (size_t)(end - q);
    return 1;
}

static int hex(char c)
{
    return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F');
}

/* Whether percent_decode takes s[0..n): every '%' starts an escape of two
 * hex digits, none of them %00.  The value is decoded only when it is read. */
static int escapes_ok(const char *s, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (s[i] == '%' && (i + 2 >= n || !hex(s[i + 1]) || !hex(s[i + 2]) || (s[i + 1] == '0' && s[i + 2] == '0')))
            return 0;
    return 1;
}

/* The name as the reason shows it: at most 40 bytes, what is not printable
 * ASCII (and the quotes around it) as '?', since the reason repeats what
 * the client sent. */
static const char *shown(const char *name, size_t n, char out[48])
{
    size_t o = 0;

    for (; o < n && o < 40; o++) {
        unsigned char c = (unsigned char)name[o];
        out[o] = c > 0x20 && c < 0x7f && c != '"' && c != '\\' ? (char)c : '?';
    }
    if (o < n)
        memcpy(out + o, "...", 3), o += 3;
    out[o] = '\0';
    return out;
}

static int named(const char *const *names, const char *name, size_t n)
{
    for (size_t i = 0; names != NULL && names[i] != NULL; i++)
        if (strlen(names[i]) == n && memcmp(names[i], name, n) == 0)
            return (int)i;
    return -1;
}

static void unknown(const char *const *names, const char *name, size_t n, char *err, size_t errlen)
{
    char show[48], takes[128] = "";
    size_t o = 0;

    for (size_t i = 0; names != NULL && names[i] != NULL && o < sizeof(takes); i++)
        o += (size_t)snprintf(takes + o, sizeof(takes) - o, "%s%s", i ? ", " : "", names[i]);
    snprintf(err, errlen, "unknown query parameter \"%s\": this endpoint takes %s", shown(name, n, show),
             o ? takes : "none");
}

int query_check(const char *q, size_t n, const char *const *names, char *err, size_t errlen)
{
    char name[QUERY_NAME_MAX + 1], show[48];
    unsigned seen = 0; /* a bit per name of names */
    size_t pos = 0;
    struct piece p;

    while (next_piece(q, n, &pos, &p)) {
        long len = percent_decode(p.name, p.name_len, name, sizeof(name), PERCENT_PLUS | PERCENT_NO_NUL);
        int i;
        if (len == -EINVAL) {
            snprintf(err, errlen, "query parameter \"%s\" is not percent-encoded",
                     shown(p.name, p.name_len, show));
            return -EINVAL;
        }
        if (len < 0 || (i = named(names, name, (size_t)len)) < 0) {
            unknown(names, len < 0 ? p.name : name, len < 0 ? p.name_len : (size_t)len, err, errlen);
            return -EINVAL;
        }
        if (seen & (1u << i)) {
            snprintf(err, errlen, "query parameter \"%s\" is given twice", names[i]);
            return -EINVAL;
        }
        seen |= 1u << i;
        if (!escapes_ok(p.value, p.value_len)) {
            snprintf(err, errlen, "query parameter \"%s\" has a value that is not percent-encoded (or holds %%00)",
                     names[i]);
            return -EINVAL;
        }
    }
    return 0;
}

long query_get(const char *q, size_t n, const char *name, char *out, size_t outlen)
{
    char buf[QUERY_NAME_MAX + 1];
    size_t pos = 0, want = strlen(name);
    struct piece p;

    while (next_piece(q, n, &pos, &p)) {
        long len = percent_decode(p.name, p.name_len, buf, sizeof(buf), PERCENT_PLUS | PERCENT_NO_NUL);
        if (len < 0 || (size_t)len != want || memcmp(buf, name, want) != 0)
            continue;
        return percent_decode(p.value ? p.value : "", p.value_len, out, outlen, PERCENT_PLUS | PERCENT_NO_NUL);
    }
    return -ENOENT;
}

int query_uint(const char *s, size_t n, unsigned long max, unsigned long *out)
{
    unsigned long v = 0;

    if (n == 0 || n > 19)
        return -EINVAL;
    for (size_t i = 0; i < n; i++) {
        if (s[i] < '0' || s[i] > '9')
            return -EINVAL;
        v = v * 10 + (unsigned long)(s[i] - '0');
    }
    if (v > max)
        return -EINVAL;
    *out = v;
    return 0;
}

h2o_iovec_t http_query(const h2o_req_t *req)
{
    if (req->query_at == SIZE_MAX)
        return h2o_iovec_init("", 0);
    return h2o_iovec_init(req->path.base + req->query_at + 1, req->path.len - req->query_at - 1);
}

long http_query_get(const h2o_req_t *req, const char *name, char *out, size_t outlen)
{
    h2o_iovec_t q = http_query(req);

    return query_get(q.base, q.len, name, out, outlen);
}
