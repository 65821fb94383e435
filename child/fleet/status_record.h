/*
 * child/fleet/status_record.h - a push's status as Redis holds it (the hash
 * fcmd:push:ID that statuses.c writes), read back into a struct push_status.
 *
 * The reader is total: any list of fields and values, however made (another
 * version, a hand-edited key, garbage), gives a status or -1, never more
 * than PUSH_STATUS_ERRORS errors, and never reads past what it was given.
 */
#ifndef FCMD_CHILD_FLEET_STATUS_RECORD_H
#define FCMD_CHILD_FLEET_STATUS_RECORD_H

#include <stddef.h>

#include "../../shm/push_status.h"

/* The hash's error fields: tN (the token) and rN (the reason), N from 0. */
struct status_record_errors {
    const char *token[PUSH_STATUS_ERRORS], *reason[PUSH_STATUS_ERRORS];
    size_t token_len[PUSH_STATUS_ERRORS], reason_len[PUSH_STATUS_ERRORS];
};

/* Reads n strings (field, value, field, value...) as HGETALL lists them.
 * upstreams names the upstream indexes (nupstreams of them).  Fills *out
 * (errors: how many of e, in order, are complete) and e, whose pointers
 * point into the strings.  Returns 0, or -1 when they are no status (no
 * targets, a count that is no number, more canonical than delivered).
 * Outcomes past the targets (targets delivered twice) read as done. */
int status_record_read(const char *const *str, const size_t *len, size_t n, const char *const *upstreams,
                       unsigned nupstreams, struct push_status *out, struct status_record_errors *e);

/* Calls fn for each of the n first errors of e, in order. */
void status_record_each_error(const struct status_record_errors *e, uint32_t n,
                              void (*fn)(void *arg, const char *token, size_t token_len, const char *reason,
                                         size_t reason_len),
                              void *arg);

#endif
