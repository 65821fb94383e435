/*
 * child/core/buf.h - a growable byte buffer with a sticky error.
 *
 * Builders append without checking each call; an allocation failure marks
 * the buffer failed, later appends do nothing, and the caller checks
 * `failed` once when the text is complete.
 */
#ifndef FCMD_CHILD_CORE_BUF_H
#define FCMD_CHILD_CORE_BUF_H

#include <stddef.h>

struct buf {
    char *data;
    size_t len;
    size_t cap;
    int failed;
};

#define BUF_INIT                                                                                                       \
    {                                                                                                                  \
        NULL, 0, 0, 0                                                                                                  \
    }

int buf_reserve(struct buf *b, size_t extra);
void buf_add(struct buf *b, const void *p, size_t n);
void buf_adds(struct buf *b, const char *s);
void buf_addf(struct buf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* Appends s as a quoted, escaped JSON string. */
void buf_add_json_string(struct buf *b, const char *s, size_t n);
void buf_reset(struct buf *b);
void buf_free(struct buf *b);

#endif
