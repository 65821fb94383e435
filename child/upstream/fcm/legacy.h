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

/* The most of a legacy answer fcmd reads for a job of n tokens: what FCM's
 * full answer for them can hold, so a legitimate answer is never cut.  A
 * result is at most {"message_id":"ID","registration_id":"TOKEN"} and a
 * comma: a message id of up to 128 bytes (FCM's are under 40) and a new token
 * no longer than the longest fcmd accepts (FCM's tokens are URL-safe base64
 * and ':', with nothing to escape); the members around results[]
 * (multicast_id, success, failure, canonical_ids) take under 1 KiB.  That is
 * 4,264,024 bytes for 1000 tokens, 5,287 for a topic or one token. */
#define LEGACY_ANSWER_HEAD 1024
#define LEGACY_MESSAGE_ID_MAX 128
#define LEGACY_RESULT_MAX                                                                                              \
    (sizeof("{\"message_id\":\"\",\"registration_id\":\"\"},") - 1 + LEGACY_MESSAGE_ID_MAX + REQUEST_MAX_TOKEN_LEN)
#define LEGACY_ANSWER_MAX(n) (LEGACY_ANSWER_HEAD + (size_t)(n) * LEGACY_RESULT_MAX)

/* Appends the JSON body for targets[0..n) of push p to b. */
void legacy_build_body(struct buf *b, const struct push *p, struct target *const *targets, size_t n);

/* Classifies a legacy answer for n targets of the given kind into out[].
 * A 200 cut at the bound (res->cut) is read as far as it goes: the results it
 * holds whole are used, every other target is delivered. */
void legacy_classify(const struct upstream_result *res, enum target_kind kind, size_t n, struct outcome *out);

#endif
