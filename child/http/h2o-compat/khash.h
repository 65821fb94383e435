/*
 * child/http/h2o-compat/khash.h - just enough for <h2o/http2_internal.h>, which
 * Debian's libh2o-dev installs without the khash.h it includes.
 *
 * child/http/conn.c reads two fields of h2o's HTTP/2 stream (its id and its
 * request body buffer), laid out by that header.  The only hash it mentions
 * is the connection's table of streams, held through a pointer, so the type
 * stays incomplete here; the accessors exist only so that the header's inline
 * lookup compiles, and using them fails to link: the table is h2o's alone.
 */
#ifndef FCMD_H2O_COMPAT_KHASH_H
#define FCMD_H2O_COMPAT_KHASH_H

typedef unsigned int khint_t;
typedef khint_t khiter_t;

#define KHASH_MAP_INIT_INT64(name, khval_t) typedef struct kh_##name##_s kh_##name##_t;
#define khash_t(name) kh_##name##_t

/* Declared, never defined. */
khiter_t fcmd_h2o_stream_table_is_private(void);

#define kh_get(name, h, key) ((void)(h), (void)(key), fcmd_h2o_stream_table_is_private())
#define kh_end(h) ((void)(h), (khiter_t)0)
#define kh_val(h, x) ((void)(h), (void)(x), (void *)0)

#endif
