/*
 * child/store/spool_replay.h - what is left to deliver in a dead child's segment.
 *
 * Reads a whole segment from memory: its push records, each checked against
 * its own bytes, and the acknowledgements that finish their targets.  What
 * remains is a backlog, sorted by push id, that the spool hands to the queue
 * a push at a time.  Nothing read here is trusted: a record that does not
 * add up is skipped, and logged with its offset.
 */
#ifndef FCMD_CHILD_STORE_SPOOL_REPLAY_H
#define FCMD_CHILD_STORE_SPOOL_REPLAY_H

#include <stddef.h>
#include <stdint.h>

#include "../core/request.h"
#include "record.h"

/* The most targets any request may hold (--max-tokens at its largest). */
#define SPOOL_REPLAY_MAX_TARGETS 1000000

struct spool_replay_push {
    struct record rec; /* points into the segment's bytes */
    uint64_t id;
    uint32_t ntargets;
    uint32_t acked;      /* targets acknowledged */
    unsigned char *bits; /* which ones */
};

/* A webhook event of the segment that no EVENT_ACK acknowledges. */
struct spool_replay_event {
    struct record_event ev; /* points into the segment's bytes */
};

struct spool_replay {
    struct spool_replay_push *v; /* pushes with targets left, by id */
    struct spool_replay_event *events; /* events waiting, each event_id once, by event_id */
    size_t nevents;
    size_t n;
    size_t next;        /* the first not yet handed out */
    size_t records_end; /* where the good records end: acknowledgements go here */
    size_t targets;     /* targets left, over all pushes */
};

/* Reads the segment at data (which must outlive r); path names it in log
 * lines.  An event is kept only when its text is one JSON object whose
 * event_id is the record's.  Returns 0, or -1 when memory ran out (r is then empty). */
int spool_replay_read(struct spool_replay *r, const unsigned char *data, size_t len, const char *path);

/* A request of the unacknowledged targets of p, each with its index in the
 * record, so that acknowledgements keep naming the record's targets, and
 * with the push's id, idempotency key and fingerprint from the record (its
 * app, key and fingerprint point into the record's bytes).  The
 * caller frees it with request_free() and *index with free(), also after a
 * failure.  Returns 0, or -1 when the record does not decode or memory ran
 * out (not logged). */
int spool_replay_request(const struct spool_replay_push *p, struct send_request *req, uint32_t **index);

/* Reads one PUSH record that fills data..len exactly (an entry of the queue
 * in Redis), checked as a record of a replayed segment is, into a request of
 * all its targets (the caller frees it with request_free() and *index with
 * free(), also after a failure).  Returns NULL, or why it was refused. */
const char *spool_replay_one(const unsigned char *data, size_t len, struct send_request *req, uint32_t **index);

/* Frees what is left from r->next on. */
void spool_replay_free(struct spool_replay *r);

#endif
