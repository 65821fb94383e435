/*
 * child/store/record.c - encoding and decoding spool records.
 *
 * Little endian throughout.  The CRC covers everything after the magic,
 * so a header with a bad length is caught like a bad payload.
 */
#include "record.h"
#include "../../common/options.h"
#include "crc32c.h"

#include <string.h>

#define ABSENT 0xffffffffu

static void put_u16(struct buf *b, uint16_t v)
{
    unsigned char x[2] = {(unsigned char)v, (unsigned char)(v >> 8)};

    buf_add(b, x, 2);
}

static void put_u32(struct buf *b, uint32_t v)
{
    unsigned char x[4] = {(unsigned char)v, (unsigned char)(v >> 8), (unsigned char)(v >> 16),
                          (unsigned char)(v >> 24)};

    buf_add(b, x, 4);
}

static void put_u64(struct buf *b, uint64_t v)
{
    put_u32(b, (uint32_t)v);
    put_u32(b, (uint32_t)(v >> 32));
}

static uint64_t get_u64(const unsigned char *p)
{
    return (uint64_t)record_u32(p) | (uint64_t)record_u32(p + 4) << 32;
}

/* Reserves the header; spool_finish() fills it once the payload is in. */
static size_t begin(struct buf *b, enum record_type type)
{
    size_t at = b->len;

    put_u32(b, RECORD_MAGIC);
    buf_add(b, (unsigned char[4]){(unsigned char)type, 0, 0, 0}, 4);
    put_u32(b, 0);
    put_u32(b, 0);
    return at;
}

static void finish(struct buf *b, size_t at)
{
    unsigned char *h;
    uint32_t len, crc;

    if (b->failed)
        return;
    h = (unsigned char *)b->data + at;
    len = (uint32_t)(b->len - at - RECORD_HEADER);
    h[8] = (unsigned char)len;
    h[9] = (unsigned char)(len >> 8);
    h[10] = (unsigned char)(len >> 16);
    h[11] = (unsigned char)(len >> 24);
    crc = crc32c(crc32c(0, h + 4, 8), h + RECORD_HEADER, len);
    h[12] = (unsigned char)crc;
    h[13] = (unsigned char)(crc >> 8);
    h[14] = (unsigned char)(crc >> 16);
    h[15] = (unsigned char)(crc >> 24);
}

static void put_text(struct buf *b, const char *s, size_t n)
{
    if (s == NULL) {
        put_u32(b, ABSENT);
        return;
    }
    put_u32(b, (uint32_t)n);
    buf_add(b, s, n);
}

void record_encode_push(struct buf *b, uint64_t id, const struct send_request *r)
{
    /* FCM pushes of the default app keep the first format, which every
     * version reads; the default app's APNs pushes the second. */
    int v3 = r->app != NULL, v2 = v3 || r->upstream != UPSTREAM_FCM;
    int nopts = v2 ? ROPT_COUNT : ROPT_FCM_COUNT;
    size_t at = begin(b, v3 ? RECORD_PUSH3 : v2 ? RECORD_PUSH2 : RECORD_PUSH);

    put_u64(b, id);
    if (v2)
        buf_add(b, (unsigned char[2]){(unsigned char)r->upstream, (unsigned char)nopts}, 2);
    if (v3) { /* a valid name: at most APP_NAME_MAX bytes */
        buf_add(b, (unsigned char[1]){(unsigned char)r->app_len}, 1);
        buf_add(b, r->app, r->app_len);
    }
    buf_add(b, (unsigned char[1]){(unsigned char)r->kind}, 1);
    put_text(b, r->msg.payload, r->msg.payload_len);
    for (int o = 0; o < nopts; o++)
        put_text(b, r->msg.opt[o], r->msg.opt_len[o]);
    put_u32(b, (uint32_t)r->ntargets);
    for (size_t i = 0; i < r->ntargets; i++) {
        size_t n = strlen(r->targets[i]);
        put_u32(b, (uint32_t)i);
        put_u16(b, (uint16_t)n);
        buf_add(b, r->targets[i], n);
    }
    finish(b, at);
}

void record_encode_ack(struct buf *b, uint64_t id, const uint32_t *indexes, size_t n)
{
    size_t at = begin(b, RECORD_ACK);

    put_u64(b, id);
    put_u32(b, (uint32_t)n);
    for (size_t i = 0; i < n; i++)
        put_u32(b, indexes[i]);
    finish(b, at);
}

/* Checksum work spent on headers that turn out bad, at most. */
static size_t search_budget(const struct record_reader *r)
{
    return 2 * r->len + (1u << 20);
}

/* Whether a whole, good record starts at pos; *len gets its payload length. */
static int good_at(struct record_reader *r, size_t pos, uint32_t *len)
{
    const unsigned char *h = r->data + pos;
    uint32_t n;

    if (r->len - pos < RECORD_HEADER || record_u32(h) != RECORD_MAGIC)
        return 0;
    n = record_u32(h + 8);
    if (n > RECORD_MAX_PAYLOAD || r->len - pos - RECORD_HEADER < n || r->searched > search_budget(r))
        return 0;
    if (crc32c(crc32c(0, h + 4, 8), h + RECORD_HEADER, n) != record_u32(h + 12)) {
        r->searched += (size_t)n + 8;
        return 0;
    }
    *len = n;
    return 1;
}

static int all_zero(const unsigned char *p, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (p[i] != 0)
            return 0;
    return 1;
}

enum record_read record_next(struct record_reader *r, struct record *rec, size_t *bad)
{
    const unsigned char *h;
    uint32_t n;

    if (r->pos >= r->len)
        return RECORD_END;
    if (good_at(r, r->pos, &n)) {
        h = r->data + r->pos;
        rec->type = (enum record_type)h[4];
        rec->payload = h + RECORD_HEADER;
        rec->len = n;
        rec->offset = r->pos;
        r->pos += RECORD_HEADER + n;
        return RECORD_GOOD;
    }
    /* Not good here.  Zeros to the end are the space a writer keeps ahead of
     * its records: the end.  If no good record follows, this is a torn tail;
     * otherwise a corrupt record, and reading resumes at the next good one. */
    if (all_zero(r->data + r->pos, r->len - r->pos)) {
        r->pos = r->len;
        return RECORD_END;
    }
    *bad = r->pos;
    for (size_t p = r->pos + 1; p + RECORD_HEADER <= r->len && r->searched <= search_budget(r); p++) {
        if (r->data[p] == (RECORD_MAGIC & 0xff) && good_at(r, p, &n)) {
            r->pos = p;
            return RECORD_CORRUPT;
        }
    }
    r->pos = r->len;
    return RECORD_TORN;
}

static int get_text(const unsigned char *p, size_t len, size_t *pos, const char **s, size_t *n)
{
    uint32_t l;

    if (len - *pos < 4)
        return -1;
    l = record_u32(p + *pos);
    *pos += 4;
    if (l == ABSENT) {
        *s = NULL;
        *n = 0;
        return 0;
    }
    if (len - *pos < l)
        return -1;
    *s = (const char *)p + *pos;
    *n = l;
    *pos += l;
    return 0;
}

int record_decode_push(const struct record *rec, struct record_push *out)
{
    const unsigned char *p = rec->payload;
    size_t len = rec->len, pos = 8;
    unsigned nopts = ROPT_FCM_COUNT;

    memset(out, 0, sizeof(*out));
    if (!record_is_push(rec->type) || len < 8)
        return -1;
    out->id = get_u64(p);
    out->upstream = UPSTREAM_FCM;
    if (rec->type == RECORD_PUSH2 || rec->type == RECORD_PUSH3) {
        /* A later version may know more upstreams or options: not this one. */
        if (len < 10 || p[8] >= UPSTREAM_KINDS || p[9] > ROPT_COUNT)
            return -1;
        out->upstream = (enum upstream_kind)p[8];
        nopts = p[9];
        pos = 10;
    }
    if (rec->type == RECORD_PUSH3) {
        if (len - pos < 1 || len - pos - 1 < p[pos] || !options_app_name_ok((const char *)p + pos + 1, p[pos]))
            return -1;
        out->app = (const char *)p + pos + 1;
        out->app_len = p[pos];
        pos += 1 + (size_t)p[pos];
    }
    if (len - pos < 1 || p[pos] > TARGET_CONDITION)
        return -1;
    out->kind = (enum target_kind)p[pos++];
    if (get_text(p, len, &pos, &out->msg.payload, &out->msg.payload_len) != 0)
        return -1;
    for (unsigned o = 0; o < nopts; o++)
        if (get_text(p, len, &pos, &out->msg.opt[o], &out->msg.opt_len[o]) != 0)
            return -1;
    if (len - pos < 4)
        return -1;
    out->ntargets = record_u32(p + pos);
    out->targets = p + pos + 4;
    out->targets_len = len - pos - 4;
    return 0;
}

int record_push_target(const struct record_push *p, size_t *pos, uint32_t *index, const char **name, size_t *len)
{
    const unsigned char *t = p->targets + *pos;
    size_t n;

    if (p->targets_len - *pos < 6)
        return -1;
    n = (size_t)t[4] | (size_t)t[5] << 8;
    if (p->targets_len - *pos - 6 < n)
        return -1;
    *index = record_u32(t);
    *name = (const char *)t + 6;
    *len = n;
    *pos += 6 + n;
    return 0;
}

int record_decode_ack(const struct record *rec, uint64_t *id, uint32_t *n, const unsigned char **indexes)
{
    if (rec->type != RECORD_ACK || rec->len < 12)
        return -1;
    *id = get_u64(rec->payload);
    *n = record_u32(rec->payload + 8);
    if ((rec->len - 12) / 4 < *n)
        return -1;
    *indexes = rec->payload + 12;
    return 0;
}
