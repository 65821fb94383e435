/*
 * child/upstream/fcm/legacy.h - the legacy GCM/FCM JSON protocol's pure parts,
 * exposed for unit tests: building a request body and reading the answer.
 */
#ifndef FCMD_CHILD_UPSTREAM_FCM_LEGACY_H
#define FCMD_CHILD_UPSTREAM_FCM_LEGACY_H

#include "../upstream.h"

#define LEGACY_MAX_TOKENS 1000

/* The adapter.  NULL when out of memory. */
struct upstream *legacy_create(const struct fcmd_options *o);

/* Appends the JSON body for targets[0..n) of push p to b. */
void legacy_build_body(struct buf *b, const struct push *p, struct target *const *targets, size_t n);

/* Classifies a legacy answer for n targets of the given kind into out[]. */
void legacy_classify(const struct upstream_result *res, enum target_kind kind, size_t n, struct outcome *out);

#endif
