/*
 * child/upstream/webpush/webpush_request.h - what /webpush/send takes: its
 * subscriptions, its payload, and the TTL, Urgency and Topic of RFC 8030.
 *
 * A subscription becomes a target named "ENDPOINT P256DH AUTH" (the keys in
 * base64url without padding; an endpoint has no space), so the queue, the
 * spool and the queue in Redis carry it as they carry a device token.  The
 * fields are kept as the text of their headers in the request's provider
 * slots (msg.opt[ROPT_WEBPUSH_*]), so a spool record carries them too.
 */
#ifndef FCMD_CHILD_UPSTREAM_WEBPUSH_WEBPUSH_REQUEST_H
#define FCMD_CHILD_UPSTREAM_WEBPUSH_WEBPUSH_REQUEST_H

#include <stddef.h>

#include "../../core/request.h"
#include "ece.h"

#define WEBPUSH_ENDPOINT_MAX 2048 /* bytes of an endpoint URL */
#define WEBPUSH_TOPIC_MAX 32      /* base64url characters of a Topic (RFC 8030, 5.4) */
#define WEBPUSH_TTL_MAX 2419200   /* seconds: 28 days, what push services keep at most */
#define WEBPUSH_TTL_DEFAULT "2419200"

#define ROPT_WEBPUSH_TTL ROPT_PROVIDER_0
#define ROPT_WEBPUSH_URGENCY ROPT_PROVIDER_1
#define ROPT_WEBPUSH_TOPIC ROPT_PROVIDER_2

/* The request rules of /webpush/send (core/request.h): "subscriptions"
 * (JSON) or "subscription" repeated (form), a payload that is an object or
 * a string of at most ECE_MAX_PLAINTEXT bytes, ttl, urgency and topic; each
 * subscription's endpoint an https:// URL with a host, its keys a point on
 * P-256 and a 16-byte auth secret.  Which hosts are allowed is the
 * adapter's check (webpush.c), since it is an app's setting. */
extern const struct request_rules webpush_request_rules;

/* A target's parts, pointing into its name (n bytes). */
struct webpush_target {
    const char *endpoint, *p256dh, *auth;
    size_t endpoint_len, p256dh_len, auth_len;
};

/* Splits a target's name into its parts.  Returns 0, or -EINVAL when it is
 * not three parts. */
int webpush_target_split(const char *name, size_t n, struct webpush_target *t);

/* Whether an endpoint (n bytes) is an https:// URL fcmd can post to: a
 * host and no user information, visible ASCII only, at most
 * WEBPUSH_ENDPOINT_MAX bytes.  Returns 0, or -EINVAL with a reason. */
int webpush_endpoint_check(const char *s, size_t n, char *err, size_t errlen);

/* The host of an endpoint that passed webpush_endpoint_check (brackets of
 * an IPv6 literal kept), and its length. */
const char *webpush_endpoint_host(const char *s, size_t n, size_t *len);

#endif
