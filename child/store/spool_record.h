/*
 * child/store/spool_record.h - the spool's on-disk records.
 *
 * A segment is a sequence of records, each a 16-byte header - magic,
 * type, length, CRC-32C of type, length and payload - then the payload:
 *   PUSH  id, kind, the message texts, and the targets with their index;
 *   PUSH2 the same with the upstream and the count of option texts;
 *   PUSH3 the same as PUSH2 with the name of the app the push is for;
 *   ACK   id and the indexes of targets that reached a final outcome.
 * A segment may end in zeros, space its writer keeps ahead of the records.
 * A reader stops at the zeros and at a torn tail (a record cut short by a
 * crash), and skips a corrupt record by looking for the next header that
 * checks out.  Headers whose checksum fails cost the reader the bytes they
 * claim; past about two passes over the file of such work, the rest of the
 * file counts as torn, so a file of fake headers costs what its size costs.
 */
#ifndef FCMD_CHILD_STORE_SPOOL_RECORD_H
#define FCMD_CHILD_STORE_SPOOL_RECORD_H

#include <stddef.h>
#include <stdint.h>

#include "../core/buf.h"
#include "../core/request.h"

#define SPOOL_MAGIC 0x50534346u /* "FCSP" little endian */
#define SPOOL_HEADER 16
#define SPOOL_MAX_PAYLOAD (64u << 20)

/* PUSH is an FCM push of the default app, as every version wrote it; PUSH2
 * names its upstream and how many option texts follow (APNs pushes of the
 * default app); PUSH3 adds the name of its app (a push for a named app).  A
 * version that does not know a type skips its records. */
enum spool_type { SPOOL_PUSH = 1, SPOOL_ACK = 2, SPOOL_PUSH2 = 3, SPOOL_PUSH3 = 4 };

static inline int spool_is_push(enum spool_type t)
{
    return t == SPOOL_PUSH || t == SPOOL_PUSH2 || t == SPOOL_PUSH3;
}

/* Appends a push record for request r to b: PUSH for FCM, PUSH2 otherwise,
 * PUSH3 when r names an app (r->app). */
void spool_encode_push(struct buf *b, uint64_t id, const struct send_request *r);

/* Appends an ACK record to b. */
void spool_encode_ack(struct buf *b, uint64_t id, const uint32_t *indexes, size_t n);

struct spool_reader {
    const unsigned char *data;
    size_t len;
    size_t pos;
    size_t searched; /* bytes checksummed in vain: bounded, see spool_next */
};

struct spool_rec {
    enum spool_type type;
    const unsigned char *payload;
    size_t len;
    size_t offset; /* of the header */
};

enum spool_read {
    SPOOL_RECORD,  /* *rec is the next good record */
    SPOOL_END,     /* no more records */
    SPOOL_TORN,    /* the rest is a record cut short: stop */
    SPOOL_CORRUPT, /* a bad record at *bad; the reader moved past it */
};

enum spool_read spool_next(struct spool_reader *r, struct spool_rec *rec, size_t *bad);

/* A decoded PUSH; message texts and target names point into the record. */
struct spool_push {
    uint64_t id;
    enum upstream_kind upstream; /* UPSTREAM_FCM for a PUSH record */
    const char *app;             /* PUSH3: its app's name (a valid name, not NUL-terminated); else NULL */
    size_t app_len;
    enum target_kind kind;
    struct message msg; /* texts are not NUL-terminated */
    uint32_t ntargets;
    const unsigned char *targets; /* encoded: index u32, length u16, bytes */
    size_t targets_len;
};

int spool_decode_push(const struct spool_rec *rec, struct spool_push *out);

/* Walks the targets of a decoded push; returns 0, or -1 at the end. */
int spool_push_target(const struct spool_push *p, size_t *pos, uint32_t *index, const char **name, size_t *len);

/* Reads an ACK: its id and count; the indexes follow at *indexes (u32 LE each). */
int spool_decode_ack(const struct spool_rec *rec, uint64_t *id, uint32_t *n, const unsigned char **indexes);

static inline uint32_t spool_u32(const unsigned char *p)
{
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

#endif
