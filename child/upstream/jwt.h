/*
 * child/upstream/jwt.h - the signed assertion a service account trades for an OAuth2
 * access token (RFC 7523 JWT bearer grant, RS256).
 */
#ifndef FCMD_CHILD_UPSTREAM_JWT_H
#define FCMD_CHILD_UPSTREAM_JWT_H

#include <time.h>

#include "../core/buf.h"

struct service_account;

#define JWT_SCOPE "https://www.googleapis.com/auth/firebase.messaging"
#define JWT_LIFETIME 3600

/* Appends header.claims.signature (base64url) for now to out.
 * Returns 0, or -1 when signing or memory failed. */
int jwt_make(const struct service_account *sa, time_t now, struct buf *out);

/* Appends the base64url form (no padding) of data to out. */
void jwt_base64url(struct buf *out, const unsigned char *data, size_t len);

#endif
