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

/* A field of up to 255 bytes: its length (u8), then its bytes. */
static void put_short(struct buf *b, const void *s, size_t n)
{
    buf_add(b, (unsigned char[1]){(unsigned char)n}, 1);
    if (n > 0)
        buf_add(b, s, n);
}

void record_encode_push(struct buf *b, uint64_t id, const struct send_request *r)
{
    size_t at = begin(b, RECORD_PUSH4);

    put_u64(b, id);
    buf_add(b, (unsigned char[2]){(unsigned char)r->upstream, (unsigned char)ROPT_COUNT}, 2);
    put_short(b, r->app, r->app != NULL ? r->app_len : 0); /* a valid name: at most APP_NAME_MAX bytes */
    put_short(b, r->id, r->id_len);
    put_short(b, r->idem_key, r->idem_key != NULL ? r->idem_key_len : 0);
    put_short(b, r->fingerprint, r->fingerprint != NULL ? r->fingerprint_len : 0);
    buf_add(b, (unsigned char[1]){(unsigned char)r->kind}, 1);
    put_text(b, r->msg.payload, r->msg.payload_len);
    for (int o = 0; o < ROPT_COUNT; o++)
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

int record_head_is_push(const unsigned char *head, size_t n, size_t total)
{
    return n >= RECORD_HEADER && total >= RECORD_HEADER && total - RECORD_HEADER <= RECORD_MAX_PAYLOAD &&
           record_u32(head) == RECORD_MAGIC && record_is_push((enum record_type)head[4]) && head[5] == 0 &&
           head[6] == 0 && head[7] == 0 && record_u32(head + 8) == total - RECORD_HEADER;
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

void record_encode_event(struct buf *b, uint64_t at_ms, const char *app, size_t app_len, const char *id, size_t id_len,
                         const char *text, size_t len)
{
    size_t at = begin(b, RECORD_EVENT);

    put_u64(b, at_ms);
    put_short(b, app, app_len);
    put_short(b, id, id_len);
    buf_add(b, text, len);
    finish(b, at);
}

void record_encode_event_ack(struct buf *b, const char *const *ids, const uint8_t *lens, size_t n)
{
    size_t at = begin(b, RECORD_EVENT_ACK);

    put_u32(b, (uint32_t)n);
    for (size_t i = 0; i < n; i++)
        put_short(b, ids[i], lens[i]);
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

/* Reads a field of up to 255 bytes (u8 length, bytes) at *pos: -1 when it
 * runs past the payload. */
static int get_short(const unsigned char *p, size_t len, size_t *pos, const unsigned char **s, size_t *n)
{
    if (len - *pos < 1 || len - *pos - 1 < p[*pos])
        return -1;
    *n = p[*pos];
    *s = *n > 0 ? p + *pos + 1 : NULL;
    *pos += 1 + *n;
    return 0;
}

/* An idempotency key: visible ASCII, as the header must be. */
static int idem_key_ok(const unsigned char *s, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (s[i] < 0x21 || s[i] > 0x7e)
            return 0;
    return 1;
}

/* PUSH4's fields after the option count: app, push id, key, fingerprint. */
static int decode_push4(const unsigned char *p, size_t len, size_t *pos, struct record_push *out)
{
    const unsigned char *app, *id, *key;

    if (get_short(p, len, pos, &app, &out->app_len) != 0 ||
        (app != NULL && !options_app_name_ok((const char *)app, out->app_len)) ||
        get_short(p, len, pos, &id, &out->push_id_len) != 0 ||
        !push_id_ok((const char *)id, out->push_id_len) || get_short(p, len, pos, &key, &out->idem_key_len) != 0 ||
        (key != NULL && !idem_key_ok(key, out->idem_key_len)) ||
        get_short(p, len, pos, &out->fingerprint, &out->fingerprint_len) != 0 ||
        (out->fingerprint != NULL && out->fingerprint_len != REQUEST_FINGERPRINT_LEN))
        return -1;
    out->app = (const char *)app;
    out->push_id = (const char *)id;
    out->idem_key = (const char *)key;
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
    if (rec->type != RECORD_PUSH) {
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
    if (rec->type == RECORD_PUSH4 && decode_push4(p, len, &pos, out) != 0)
        return -1;
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

int record_decode_event(const struct record *rec, struct record_event *out)
{
    const unsigned char *p = rec->payload;
    size_t pos = 8, len = rec->len;

    if (rec->type != RECORD_EVENT || len < 8 + 2)
        return -1;
    out->at_ms = get_u64(p);
    out->app_len = p[pos++];
    if (out->app_len > APP_NAME_MAX || len - pos < out->app_len + 1)
        return -1;
    out->app = (const char *)p + pos;
    pos += out->app_len;
    out->id_len = p[pos++];
    if (out->id_len == 0 || out->id_len > RECORD_EVENT_ID_MAX || len - pos < out->id_len)
        return -1;
    out->id = (const char *)p + pos;
    pos += out->id_len;
    out->text = (const char *)p + pos;
    out->len = len - pos;
    return out->len >= 2 && out->len <= RECORD_EVENT_TEXT_MAX ? 0 : -1;
}

int record_event_ack_next(const struct record *rec, size_t *pos, const char **id, size_t *len)
{
    const unsigned char *p = rec->payload;

    if (rec->type != RECORD_EVENT_ACK || rec->len < 4)
        return -1;
    if (*pos == 0)
        *pos = 4;
    if (*pos >= rec->len)
        return -1;
    *len = p[(*pos)++];
    if (*len == 0 || rec->len - *pos < *len)
        return -1;
    *id = (const char *)p + *pos;
    *pos += *len;
    return 0;
}
