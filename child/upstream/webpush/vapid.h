/*
 * child/upstream/webpush/vapid.h - VAPID (RFC 8292): the application
 * server's identity on every Web Push request.
 *
 * The header is `Authorization: vapid t=<JWT>, k=<public key>`: the JWT is
 * {"alg":"ES256","typ":"JWT"}.{"aud":ORIGIN,"exp":T,"sub":SUBJECT} signed
 * with the VAPID key by jwt_sign, `aud` the origin of the push endpoint
 * (scheme://host[:port], the port only when it is not the scheme's
 * default), `k` the key's public point in base64url.  A push service
 * refuses an `exp` more than 24 hours ahead; fcmd makes it VAPID_TTL_S
 * ahead, which leaves 12 hours for a clock ahead of the service's.
 *
 * Signing costs more than the rest of a request, so a worker keeps one
 * token per origin (VAPID_CACHE of them, the least recently used giving
 * way) and makes a new one only when less than VAPID_RENEW_S is left.
 */
#ifndef FCMD_CHILD_UPSTREAM_WEBPUSH_VAPID_H
#define FCMD_CHILD_UPSTREAM_WEBPUSH_VAPID_H

#include <openssl/evp.h>
#include <stddef.h>
#include <time.h>

#include "../../core/buf.h"

#define VAPID_TTL_S (12 * 3600)
#define VAPID_RENEW_S 3600
#define VAPID_CACHE 64
/* "https://" and a host name of at most 253 bytes, or a bracketed IPv6
 * literal, and ":65535". */
#define VAPID_ORIGIN_MAX 272

/* Writes the origin of the URL (n bytes) to out (cap bytes, NUL-terminated):
 * its scheme (http or https) and host in lower case, and its port when it
 * is not the scheme's default.  Returns the origin's length, or -EINVAL
 * when the URL has no such origin (another scheme, no host, user
 * information, a character a host cannot have, a port out of range) or
 * -EMSGSIZE when it does not fit cap. */
int vapid_origin(const char *url, size_t n, char *out, size_t cap);

/* Appends the signed JWT for aud, expiring at exp, to out.  Returns 0, or
 * -1 when signing or memory failed. */
int vapid_token_sign(EVP_PKEY *key, const char *aud, const char *subject, time_t exp, struct buf *out);

struct vapid;

/* A worker's tokens for key (a P-256 private key, referenced, not copied)
 * and subject.  NULL when key is not a P-256 key or memory ran out. */
struct vapid *vapid_create(EVP_PKEY *key, const char *subject);
void vapid_free(struct vapid *v);

/* The value of the Authorization header for a request to origin at wall
 * time now: "vapid t=<JWT>, k=<key>", kept from an earlier call while its
 * token has VAPID_RENEW_S or more left.  The text stays valid until the
 * next call.  NULL when signing or memory failed. */
const char *vapid_authorization(struct vapid *v, const char *origin, time_t now);

/* How many tokens v holds, and how many it has signed: for the tests. */
size_t vapid_cached(const struct vapid *v);
unsigned long vapid_signed(const struct vapid *v);

#endif
