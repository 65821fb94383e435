/*
 * tools/mock_text.c - the mock upstream's text buffer: appends, printf,
 * and JSON values written by jansson straight into the buffer.
 */
#include "mock_text.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static void grow(struct mtext *t, size_t extra)
{
    size_t cap = t->cap ? t->cap : 256;
    char *p;

    if (t->len + extra + 1 <= t->cap)
        return;
    while (cap < t->len + extra + 1)
        cap *= 2;
    if ((p = realloc(t->data, cap)) == NULL) {
        fprintf(stderr, "mock-upstream: out of memory\n");
        abort();
    }
    t->data = p;
    t->cap = cap;
}

void mtext_add(struct mtext *t, const void *p, size_t n)
{
    grow(t, n);
    memcpy(t->data + t->len, p, n);
    t->len += n;
    t->data[t->len] = '\0';
}

void mtext_adds(struct mtext *t, const char *s)
{
    mtext_add(t, s, strlen(s));
}

void mtext_addf(struct mtext *t, const char *fmt, ...)
{
    va_list ap;
    int n;

    va_start(ap, fmt);
    n = vsnprintf(NULL, 0, fmt, ap);
    va_end(ap);
    if (n < 0) {
        fprintf(stderr, "mock-upstream: bad format %s\n", fmt);
        abort();
    }
    grow(t, (size_t)n);
    va_start(ap, fmt);
    vsnprintf(t->data + t->len, (size_t)n + 1, fmt, ap);
    va_end(ap);
    t->len += (size_t)n;
}

static int append(const char *p, size_t n, void *t)
{
    mtext_add(t, p, n);
    return 0;
}

void mtext_add_json(struct mtext *t, const json_t *v)
{
    if (json_dump_callback(v, append, t, JSON_COMPACT | JSON_ENCODE_ANY) != 0) {
        fprintf(stderr, "mock-upstream: cannot write a JSON value\n");
        abort();
    }
}

void mtext_free(struct mtext *t)
{
    free(t->data);
    t->data = NULL;
    t->len = t->cap = 0;
}
