/*
 * shm/provider_token.h - one signed provider token shared by every worker.
 *
 * APNs throttles changes of a team's provider token, so the workers share
 * one: it lives in the shared region under a process-shared robust mutex,
 * and is replaced only under that lock, by whichever worker first finds it
 * missing, old or refused.  gen moves last (release), after the token's
 * bytes, so a worker that sees its cached gen still current needs no lock.
 *
 * In fleet mode the instances share it through Redis (child/fleet/tokens.c):
 * while the fleet's lease is ahead, a worker that needs a new token does not
 * sign one; it names the signer it needs (wanted, want) and goes on with its
 * copy, and the fleet brings the token another instance made, or grants this
 * instance the making of it (Redis' lock was free) and publishes what it
 * made.  A lease that runs out (Redis lost, the fleet's worker gone) puts the
 * workers back to signing their own.
 */
#ifndef FCMD_SHM_PROVIDER_TOKEN_H
#define FCMD_SHM_PROVIDER_TOKEN_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>

#define PROVIDER_TOKEN_MAX 1024

struct provider_token {
    pthread_mutex_t lock;     /* robust, process-shared */
    _Atomic uint64_t gen;     /* bumped with each new token; 0 while there is none */
    _Atomic uint64_t made;    /* tokens made so far, for the report */
    int64_t made_ms;          /* CLOCK_MONOTONIC when made, ms */
    unsigned char signer[32]; /* SHA-256 of the key, key id and team id that made it */
    uint32_t len;             /* 0: none (or a holder died while writing it) */
    char text[PROVIDER_TOKEN_MAX];
    /* Fleet mode; the times are CLOCK_MONOTONIC ms. */
    _Atomic int64_t fleet_until;   /* the fleet brings the token until then */
    _Atomic int64_t grant_until;   /* this instance may make one until then... */
    unsigned char granted[32];     /* ...for this signer (under the lock) */
    _Atomic int want;              /* a worker needs a new token for wanted (under the lock) */
    unsigned char wanted[32];
    _Atomic uint64_t published;    /* the generation Redis has: made here and sent, or taken from there */
    _Atomic uint64_t refused;      /* the generation Apple called expired, while the fleet replaces it */
};

/* Initialises t in the shared mapping.  Returns 0 or a negative errno. */
int provider_token_init(struct provider_token *t);

/* Locks t; a holder that died leaves the token marked missing, since it may
 * have been half written.  Returns 0 or a negative errno. */
int provider_token_lock(struct provider_token *t);

/* The same without waiting: -EBUSY while another process holds it (one
 * stopped with SIGSTOP holds it until it runs again), so a worker's loop
 * never waits on another worker. */
int provider_token_trylock(struct provider_token *t);
void provider_token_unlock(struct provider_token *t);

#endif
