/*
 * child/upstream/webpush/webpush.h - the Web Push adapter (RFC 8030): one
 * POST per subscription to the endpoint it names, encrypted (ece.h) and
 * signed (vapid.h), on whichever push service's host that is.
 */
#ifndef FCMD_CHILD_UPSTREAM_WEBPUSH_WEBPUSH_H
#define FCMD_CHILD_UPSTREAM_WEBPUSH_WEBPUSH_H

#include "../upstream.h"

struct fcmd_options;

/* Where its requests go, for the sender's choice of HTTP/2: the endpoints
 * are https:// URLs of many hosts, none known ahead. */
#define WEBPUSH_URL "https://push-service.invalid/"

/* The most of a push service's answer read: its error is a line or a small
 * JSON object; past the bound, the status decides. */
#define WEBPUSH_ANSWER_MAX 2048

/* The adapter for an app's settings o (its VAPID key, subject and
 * --webpush-allow).  NULL when out of memory. */
struct upstream *webpush_create(const struct fcmd_options *o);

/* What an answer means for the subscription.  refused: the sender did not
 * connect because the address was internal and not allowed.  detail gets
 * the service's own words (printable, bounded) for the log. */
void webpush_classify(const struct upstream_result *res, int refused, struct outcome *out, char *detail, size_t dlen);

#endif
