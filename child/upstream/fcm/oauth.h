/*
 * child/upstream/fcm/oauth.h - the child's OAuth2 access token for FCM HTTP v1.
 *
 * Each child trades a signed JWT for an access token at the service
 * account's token_uri, as a transfer on the sender's curl multi handle, and
 * keeps it fresh:
 * a new one is fetched at 80% of its lifetime, at once after FCM refused
 * it with 401, and with back-off while the token endpoint fails.  Sends
 * wait for a token instead of failing.
 */
#ifndef FCMD_CHILD_UPSTREAM_FCM_OAUTH_H
#define FCMD_CHILD_UPSTREAM_FCM_OAUTH_H

#include <stddef.h>
#include <time.h>
#include <uv.h>

/* What the assertion asks for, and for how long (RFC 7523). */
#define OAUTH_SCOPE "https://www.googleapis.com/auth/firebase.messaging"
#define OAUTH_ASSERTION_LIFETIME 3600

struct buf;
struct oauth;
struct sender;
struct service_account;
struct shm_slot;

/* on_token(arg) runs whenever a new token arrives.  While there is none,
 * bit app of slot->no_token is set.  NULL when out of memory. */
struct oauth *oauth_create(uv_loop_t *loop, const struct service_account *sa, struct sender *s, struct shm_slot *slot,
                           unsigned app, void (*on_token)(void *), void *arg);

/* Stops refreshing (a token request under way is taken off the sender,
 * which must still be there) and frees o once libuv has closed its timer. */
void oauth_free(struct oauth *o);

/* The "Authorization: Bearer ..." header for the current token, or NULL
 * when there is none yet (a request for one is then under way); *gen gets
 * the token's generation. */
const char *oauth_header(struct oauth *o, unsigned *gen);

/* FCM refused a request made with token generation gen: get a new token,
 * unless that already happened. */
void oauth_refused(struct oauth *o, unsigned gen);

/* Appends the signed assertion (an RS256 JWT naming the key, bound to
 * sa's token_uri and OAUTH_SCOPE from now on) to out.  Returns 0, or -1
 * when signing or memory failed. */
int oauth_assertion(const struct service_account *sa, time_t now, struct buf *out);

/* Reads a token endpoint answer.  Returns 0 with a malloc'd *token and its
 * lifetime in seconds, or -1. */
int oauth_parse_response(const char *body, size_t len, char **token, long *expires_in);

#endif
