/*
 * child/store/record.h - the records of pushes and acknowledgements: the
 * spool's segments are made of them, and an entry of the queue in Redis is
 * one push record (child/fleet/fleet_queue.c).
 *
 * A segment is a sequence of records, each a 16-byte header - magic,
 * type, length, CRC-32C of type, length and payload - then the payload:
 *   PUSH  id, kind, the message texts, and the targets with their index;
 *   PUSH2 the same with the upstream and the count of option texts;
 *   PUSH3 the same as PUSH2 with the name of the app the push is for;
 *   PUSH4 the same as PUSH3 with the push's id, and room for its
 *         idempotency key and body fingerprint;
 *   ACK   id and the indexes of targets that reached a final outcome;
 *   EVENT a webhook event waiting for its receiver: when it was made, its
 *         app's name, its event_id and its JSON text;
 *   EVENT_ACK event_ids its receiver acknowledged (or that were dropped).
 * A segment may end in zeros, space its writer keeps ahead of the records.
 * A reader stops at the zeros and at a torn tail (a record cut short by a
 * crash), and skips a corrupt record by looking for the next header that
 * checks out.  Headers whose checksum fails cost the reader the bytes they
 * claim; past about two passes over the file of such work, the rest of the
 * file counts as torn, so a file of fake headers costs what its size costs.
 */
#ifndef FCMD_CHILD_STORE_RECORD_H
#define FCMD_CHILD_STORE_RECORD_H

#include <stddef.h>
#include <stdint.h>

#include "../core/buf.h"
#include "../core/request.h"

#define RECORD_MAGIC 0x50534346u /* "FCSP" little endian */
#define RECORD_HEADER 16
#define RECORD_MAX_PAYLOAD (64u << 20)

/* PUSH is an FCM push of the default app, as the first versions wrote it;
 * PUSH2 names its upstream and how many option texts follow (APNs pushes of
 * the default app); PUSH3 adds the name of its app (a push for a named app);
 * PUSH4, which this version writes for every push, adds the push's id, an
 * idempotency key and a body fingerprint (the default app's name is empty).
 * The older types are still read.  A version that does not know a type
 * skips its records. */
enum record_type {
    RECORD_PUSH = 1,
    RECORD_ACK = 2,
    RECORD_PUSH2 = 3,
    RECORD_PUSH3 = 4,
    RECORD_PUSH4 = 5,
    RECORD_EVENT = 6,
    RECORD_EVENT_ACK = 7,
};

/* The bounds of what an EVENT record holds. */
#define RECORD_EVENT_ID_MAX 96
#define RECORD_EVENT_TEXT_MAX (64u << 10)

static inline int record_is_push(enum record_type t)
{
    return t == RECORD_PUSH || t == RECORD_PUSH2 || t == RECORD_PUSH3 || t == RECORD_PUSH4;
}

/* Appends a PUSH4 record for request r to b; r has its id (r->id_len is
 * 1 to PUSH_ID_MAX) and any key or fingerprint within their bounds. */
void record_encode_push(struct buf *b, uint64_t id, const struct send_request *r);

/* Whether head, the first n bytes of something total bytes long, begins a
 * push record that fills it exactly: magic, a push type and its length (the
 * checksum needs the whole).  What the queue in Redis tells of an entry too
 * large for this instance to read: a push another instance may serve. */
int record_head_is_push(const unsigned char *head, size_t n, size_t total);

/* Appends an ACK record to b. */
void record_encode_ack(struct buf *b, uint64_t id, const uint32_t *indexes, size_t n);

/* Appends an EVENT record to b: at_ms (Unix ms), the app's name (app_len
 * at most APP_NAME_MAX), the event_id (1 to RECORD_EVENT_ID_MAX bytes) and
 * the event's JSON text (at most RECORD_EVENT_TEXT_MAX bytes). */
void record_encode_event(struct buf *b, uint64_t at_ms, const char *app, size_t app_len, const char *id, size_t id_len,
                         const char *text, size_t len);

/* Appends an EVENT_ACK record of the n event_ids ids[i] (lens[i] bytes). */
void record_encode_event_ack(struct buf *b, const char *const *ids, const uint8_t *lens, size_t n);

struct record;

struct record_event {
    uint64_t at_ms;
    const char *app; /* not NUL-terminated; app_len 0 for the default app */
    size_t app_len;
    const char *id;
    size_t id_len;
    const char *text;
    size_t len;
};

/* Decodes an EVENT; the fields point into the record.  Returns 0, or -1
 * when it does not add up (lengths out of their bounds). */
int record_decode_event(const struct record *rec, struct record_event *out);

/* Walks the event_ids of an EVENT_ACK: returns 0 with the next one in
 * *id, *len, or -1 at the end or at bytes that do not add up. */
int record_event_ack_next(const struct record *rec, size_t *pos, const char **id, size_t *len);

struct record_reader {
    const unsigned char *data;
    size_t len;
    size_t pos;
    size_t searched; /* bytes checksummed in vain: bounded, see record_next */
};

struct record {
    enum record_type type;
    const unsigned char *payload;
    size_t len;
    size_t offset; /* of the header */
};

enum record_read {
    RECORD_GOOD,  /* *rec is the next good record */
    RECORD_END,     /* no more records */
    RECORD_TORN,    /* the rest is a record cut short: stop */
    RECORD_CORRUPT, /* a bad record at *bad; the reader moved past it */
};

enum record_read record_next(struct record_reader *r, struct record *rec, size_t *bad);

/* A decoded PUSH; message texts and target names point into the record. */
struct record_push {
    uint64_t id;
    enum upstream_kind upstream; /* UPSTREAM_FCM for a PUSH record */
    const char *app;             /* PUSH3, PUSH4: its app's name (a valid name, not NUL-terminated); else NULL */
    size_t app_len;
    /* PUSH4 only, else NULL: the push's id (push_id_ok), its idempotency
     * key (1 to REQUEST_IDEM_KEY_MAX bytes of '!' to '~') and its body's
     * fingerprint (REQUEST_FINGERPRINT_LEN bytes), the last two NULL when
     * absent; none NUL-terminated. */
    const char *push_id;
    size_t push_id_len;
    const char *idem_key;
    size_t idem_key_len;
    const unsigned char *fingerprint;
    size_t fingerprint_len;
    enum target_kind kind;
    struct message msg; /* texts are not NUL-terminated */
    uint32_t ntargets;
    const unsigned char *targets; /* encoded: index u32, length u16, bytes */
    size_t targets_len;
};

int record_decode_push(const struct record *rec, struct record_push *out);

/* Walks the targets of a decoded push; returns 0, or -1 at the end. */
int record_push_target(const struct record_push *p, size_t *pos, uint32_t *index, const char **name, size_t *len);

/* Reads an ACK: its id and count; the indexes follow at *indexes (u32 LE each). */
int record_decode_ack(const struct record *rec, uint64_t *id, uint32_t *n, const unsigned char **indexes);

static inline uint32_t record_u32(const unsigned char *p)
{
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

#endif
