/*
 * child/upstream/apns/apns_token.h - the APNs provider token: an ES256 JWT, one for all
 * workers.
 *
 * The token is {"alg":"ES256","kid":KEY_ID}.{"iss":TEAM_ID,"iat":NOW}
 * signed with the .p8 key; the signature is JOSE's raw r||s, not DER.
 * Apple refuses a token older than an hour and throttles a team that
 * changes its token more often than every 20 minutes, so every worker uses
 * the one in the shared region, renewed APNS_TOKEN_RENEW_S after it was
 * made, or once when Apple answers 403 ExpiredProviderToken to it.
 */
#ifndef FCMD_CHILD_UPSTREAM_APNS_APNS_TOKEN_H
#define FCMD_CHILD_UPSTREAM_APNS_APNS_TOKEN_H

#include <openssl/evp.h>
#include <stdint.h>
#include <time.h>

#include "../../core/buf.h"

struct provider_token;

/* Between Apple's 20-minute floor and its 60-minute limit, with room left
 * for a token that a request took just before its renewal. */
#define APNS_TOKEN_RENEW_S (40 * 60)

/* How long a worker goes on with its copy while another worker holds the
 * shared token's lock: short of Apple's hour. */
#define APNS_TOKEN_USABLE_S (55 * 60)

/* Appends header.claims.signature to out.  Returns 0, or -1 when signing or
 * memory failed. */
int apns_token_sign(EVP_PKEY *key, const char *key_id, const char *team_id, time_t iat, struct buf *out);

struct apns_token;

/* A worker's view of the shared token.  NULL when out of memory. */
struct apns_token *apns_token_create(struct provider_token *shared, EVP_PKEY *key, const char *key_id,
                                     const char *team_id);
void apns_token_free(struct apns_token *t);

/* The "authorization: bearer <jwt>" header line to use now (now_ms on
 * CLOCK_MONOTONIC, wall the time for iat), making or renewing the shared
 * token when it is missing, older than APNS_TOKEN_RENEW_S or made by other
 * credentials; *gen gets its generation.  NULL when signing failed, or,
 * with *busy set, when another worker holds the shared token's lock and
 * this one has no copy younger than APNS_TOKEN_USABLE_S: try again later. */
const char *apns_token_header(struct apns_token *t, int64_t now_ms, time_t wall, uint64_t *gen, int *busy);

/* Apple answered ExpiredProviderToken to token generation gen: replace it,
 * unless another worker already did.  Returns 1 when this call made the new
 * token, 0 when it was renewed already (or another worker holds the lock),
 * -1 when signing failed. */
int apns_token_expired(struct apns_token *t, uint64_t gen, int64_t now_ms, time_t wall);

/* CLOCK_MONOTONIC in ms: the same clock in every process. */
int64_t apns_token_clock_ms(void);

#endif
