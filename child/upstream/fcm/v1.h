/*
 * child/upstream/fcm/v1.h - the FCM HTTP v1 protocol's pure parts, exposed for
 * unit tests: encoding a message and reading FCM's answer.
 */
#ifndef FCMD_CHILD_UPSTREAM_FCM_V1_H
#define FCMD_CHILD_UPSTREAM_FCM_V1_H

#include "../upstream.h"

#define V1_MAX_DATA 4096 /* FCM's limit on the data payload */
/* The message fields shared by every target (data, notification and the
 * platform blocks, each limited to about 4 KB by FCM): sent once per target,
 * so a bound on them is a bound on what one request makes fcmd upload. */
#define V1_MAX_SHARED (16 * 1024)

/* The adapter.  NULL when out of memory. */
struct upstream *v1_create(const struct fcmd_options *o);

/* The most of an answer fcmd reads.  A success needs no body, and an error
 * is a google.rpc.Status (code, message, status, details[] with FCM's
 * errorCode and any BadRequest field violations): under 1 KiB from FCM,
 * since its message quotes at most a field's name and a short value.  Past
 * the bound the prefix is not one JSON document, and the status decides. */
#define V1_ANSWER_MAX (16 * 1024)

/* Appends payload (a JSON object) with every value turned into a string:
 * strings as they are, anything else as its JSON text.  Returns 0 or -1. */
int v1_stringify_data(struct buf *out, const char *payload, size_t len);

/* Appends the fields of a v1 message that all targets of p share, each
 * starting with a comma: data, notification, android (with collapse_key,
 * priority and time_to_live mapped into it), apns, webpush, fcm_options. */
int v1_encode_shared(struct buf *out, const struct message *m);

/* Appends the whole request body for one target of p; shared is what
 * v1_encode_shared() gave for p. */
void v1_build_body(struct buf *out, enum target_kind kind, const struct target *t, const char *shared, size_t len);

/* Classifies FCM's answer for one target.  Sets *refused when FCM refused
 * the access token (a new one is needed), and copies FCM's error message to
 * detail. */
void v1_classify(const struct upstream_result *res, struct outcome *out, int *refused, char *detail, size_t dlen);

#endif
