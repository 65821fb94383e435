/*
 * child/fleet/script.h - Lua scripts that Redis runs by their digest.
 *
 * A script a worker runs many times a second (a flush, the drain lists'
 * commands, the queue's reads) goes as EVALSHA and its digest once Redis
 * holds it on the connection, not as its body, a kilobyte Redis would
 * otherwise read and hash on every call.  Redis gets the body one of two
 * ways.  Fleet mode's own scripts (the flush, the drain lists) are loaded by
 * the link: SCRIPT LOAD on each new connection before it counts as connected,
 * and again when a call meets NOSCRIPT (SCRIPT FLUSH, a failover to a server
 * that never saw them), so their calls always go by digest.  Any other
 * script's first call on a connection, and its call after a NOSCRIPT, carry
 * the body (EVAL, which caches it).
 */
#ifndef FCMD_CHILD_FLEET_SCRIPT_H
#define FCMD_CHILD_FLEET_SCRIPT_H

#include <stddef.h>

#include "fleet.h"

struct fleet_script {
    const char *body;
    char sha[41]; /* the body's SHA1, in hex */
    int loaded;   /* Redis holds it on this connection: calls go by digest */
    int by_link;  /* the link loads it: fleet mode's own scripts (link.c) */
};

/* A script of body (which must outlive it), not loaded yet.  Returns 0, or
 * -1 when OpenSSL cannot compute the digest. */
int fleet_script_init(struct fleet_script *s, const char *body);

/* Runs s with fleet_command(): argv[0] and argv[1] are the call's own (EVALSHA
 * and the digest, or EVAL and the body), filled in here, as are argvlen[0]
 * and argvlen[1] when argvlen is not NULL; the keys and arguments follow.
 * Returns what fleet_command() returns. */
int fleet_script_run(struct fleet *f, struct fleet_script *s, fleet_reply_fn fn, void *arg, size_t cap, int argc,
                     const char **argv, size_t *argvlen);

/* The reply to a call of s (not NULL): 1 when Redis no longer had the script
 * (NOSCRIPT: the call did not run; the link loads fleet mode's scripts again,
 * any other's next call carries its body), and the caller sends the call
 * again later; 0 otherwise (Redis holds the script now). */
int fleet_script_lost(struct fleet *f, struct fleet_script *s, const struct redisReply *r);

/* Removes the consumers of a group that hold nothing and were idle over
 * ARGV[2] ms, except ARGV[3] (the caller).  KEYS[1] the stream, ARGV[1]
 * the group.  Returns how many.  The queue's group and the webhook
 * events' both gain a consumer per worker process life. */
extern const char fleet_clean_script[];

#endif
