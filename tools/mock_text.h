/*
 * tools/mock_text.h - the mock upstream's growable text buffer.
 *
 * The mock shares no code with fcmd, so that a bug in fcmd's own helpers
 * cannot show up identically on both sides of a test.  Running out of
 * memory ends the mock: it is a test tool, and a half-built answer would
 * only mislead the test that reads it.
 */
#ifndef FCMD_TOOLS_MOCK_TEXT_H
#define FCMD_TOOLS_MOCK_TEXT_H

#include <jansson.h>
#include <stddef.h>

struct mtext {
    char *data; /* NUL-terminated once anything was added */
    size_t len;
    size_t cap;
};

#define MTEXT_INIT                                                                                                     \
    {                                                                                                                  \
        NULL, 0, 0                                                                                                     \
    }

void mtext_add(struct mtext *t, const void *p, size_t n);
void mtext_adds(struct mtext *t, const char *s);
void mtext_addf(struct mtext *t, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* Appends v as compact JSON text (any value, strings included). */
void mtext_add_json(struct mtext *t, const json_t *v);
void mtext_free(struct mtext *t);

#endif
