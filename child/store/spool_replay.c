/*
 * child/store/spool_replay.c - reading a dead child's segment, distrusting it.
 *
 * Two passes over the records: the pushes first, each checked against its
 * own bytes (target count, indexes given once and in range, names), then
 * the acknowledgements, applied to the pushes sorted by id.  A count is
 * never used before the bytes are known to hold that many.
 */
#include "spool_replay.h"
#include "../../common/json.h"
#include "../../common/log.h"

#include <stdlib.h>
#include <string.h>

static int push_cmp(const void *a, const void *b)
{
    const struct spool_replay_push *x = a, *y = b;

    return x->id < y->id ? -1 : x->id > y->id;
}

static struct spool_replay_push *find(struct spool_replay_push *v, size_t n, uint64_t id)
{
    size_t lo = 0, hi = n;

    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        if (v[mid].id == id)
            return &v[mid];
        if (v[mid].id < id)
            lo = mid + 1;
        else
            hi = mid;
    }
    return NULL;
}

/* Whether a decoded PUSH adds up: as many targets as it says, each index
 * below that count and given once, each name a sane target, nothing left
 * over.  seen must hold ntargets bits, zeroed. */
static const char *push_adds_up(const struct record_push *p, unsigned char *seen)
{
    size_t pos = 0, count = 0, len;
    uint32_t index;
    const char *name;

    while (record_push_target(p, &pos, &index, &name, &len) == 0) {
        if (index >= p->ntargets || (seen[index / 8] & (1u << (index % 8))))
            return "a target index is out of range or repeated";
        seen[index / 8] |= (unsigned char)(1u << (index % 8));
        if (len == 0 || len > REQUEST_MAX_TOKEN_LEN || memchr(name, '\0', len) != NULL)
            return "a target name is empty, too long or holds a NUL";
        count++;
    }
    if (count != p->ntargets || pos != p->targets_len)
        return "the target count does not match the bytes";
    return NULL;
}

/* Reads the push records into o->v, and where the good records end. */
static int read_pushes(struct spool_replay *o, const unsigned char *data, size_t len, const char *path)
{
    struct record_reader rd = {data, len, 0, 0};
    struct record rec;
    struct record_push p;
    size_t bad, cap = 0, end = 0;
    enum record_read st;
    const char *why;

    while ((st = record_next(&rd, &rec, &bad)) != RECORD_END && st != RECORD_TORN) {
        if (st == RECORD_CORRUPT) {
            log_warn("spool: %s: corrupt record at offset %zu skipped", path, bad);
            continue;
        }
        end = rec.offset + RECORD_HEADER + rec.len;
        if (!record_is_push(rec.type))
            continue;
        why = record_decode_push(&rec, &p) != 0 ? "it cannot be decoded"
              : p.ntargets == 0 || p.ntargets > p.targets_len / 7 ? "the target count does not match the bytes"
              : p.ntargets > SPOOL_REPLAY_MAX_TARGETS                ? "more targets than any request may hold"
                                                                  : NULL;
        if (why == NULL && o->n == cap) {
            struct spool_replay_push *nv = realloc(o->v, (cap = cap ? 2 * cap : 64) * sizeof(*nv));
            if (nv == NULL)
                return -1;
            o->v = nv;
        }
        if (why == NULL) {
            unsigned char *bits = calloc(((size_t)p.ntargets + 7) / 8, 1);
            if (bits == NULL)
                return -1;
            if ((why = push_adds_up(&p, bits)) == NULL) {
                memset(bits, 0, ((size_t)p.ntargets + 7) / 8); /* now: which are acknowledged */
                o->v[o->n++] = (struct spool_replay_push){rec, p.id, p.ntargets, 0, bits};
            } else {
                free(bits);
            }
        }
        if (why != NULL)
            log_warn("spool: %s: push record at offset %zu skipped: %s", path, rec.offset, why);
    }
    if (st == RECORD_TORN)
        log_warn("spool: %s: record cut short at offset %zu: the rest is ignored", path, bad);
    o->records_end = end;
    return 0;
}

/* Marks what the ACK records acknowledge, and drops the pushes finished. */
static void read_acks(struct spool_replay *o, const unsigned char *data, size_t len, const char *path)
{
    struct record_reader rd = {data, len, 0, 0};
    struct record rec;
    enum record_read st;
    size_t bad, kept = 0;

    if (o->n > 1)
        qsort(o->v, o->n, sizeof(*o->v), push_cmp);
    for (size_t i = 0; i < o->n; i++) {
        if (kept > 0 && o->v[kept - 1].id == o->v[i].id) {
            log_warn("spool: %s: push record at offset %zu skipped: its id is repeated", path, o->v[i].rec.offset);
            free(o->v[i].bits);
            continue;
        }
        o->v[kept++] = o->v[i];
    }
    o->n = kept;
    while ((st = record_next(&rd, &rec, &bad)) != RECORD_END && st != RECORD_TORN) {
        uint64_t id;
        uint32_t n;
        const unsigned char *idx;
        struct spool_replay_push *rp;
        if (st != RECORD_GOOD || rec.type != RECORD_ACK || record_decode_ack(&rec, &id, &n, &idx) != 0 ||
            (rp = find(o->v, o->n, id)) == NULL)
            continue;
        for (uint32_t i = 0; i < n; i++) {
            uint32_t k = record_u32(idx + 4 * (size_t)i);
            if (k < rp->ntargets && !(rp->bits[k / 8] & (1u << (k % 8)))) {
                rp->bits[k / 8] |= (unsigned char)(1u << (k % 8));
                rp->acked++;
            }
        }
    }
    kept = 0;
    for (size_t i = 0; i < o->n; i++) {
        if (o->v[i].acked == o->v[i].ntargets) {
            free(o->v[i].bits);
        } else {
            o->targets += o->v[i].ntargets - o->v[i].acked;
            o->v[kept++] = o->v[i];
        }
    }
    o->n = kept;
}

int spool_replay_request(const struct spool_replay_push *rp, struct send_request *r, uint32_t **index)
{
    struct record_push p;
    size_t pos = 0, len, left = rp->ntargets - rp->acked;
    const char *name;
    uint32_t i;
    char *o;

    memset(r, 0, sizeof(*r));
    if (record_decode_push(&rp->rec, &p) != 0)
        return -1;
    r->upstream = p.upstream;
    r->app = p.app; /* points into the record, like the texts before their copy */
    r->app_len = p.app_len;
    /* The push keeps its id (a record older than ids has none: the queue
     * gives it one); the key and fingerprint point into the record too. */
    memcpy(r->id, p.push_id != NULL ? p.push_id : "", p.push_id_len);
    r->id[p.push_id_len] = '\0';
    r->id_len = p.push_id_len;
    r->idem_key = p.idem_key;
    r->idem_key_len = p.idem_key_len;
    r->fingerprint = p.fingerprint;
    r->fingerprint_len = p.fingerprint_len;
    r->kind = p.kind;
    r->msg = p.msg;
    r->targets = calloc(left, sizeof(*r->targets));
    *index = calloc(left, sizeof(**index));
    r->storage = o = malloc(p.targets_len + left + message_size(&p.msg));
    if (r->targets == NULL || *index == NULL || o == NULL)
        return -1;
    while (record_push_target(&p, &pos, &i, &name, &len) == 0 && r->ntargets < left) {
        if (rp->bits[i / 8] & (1u << (i % 8)))
            continue;
        memcpy(o, name, len);
        o[len] = '\0';
        (*index)[r->ntargets] = i;
        r->targets[r->ntargets++] = o;
        o += len + 1;
    }
    r->index = *index;
    /* The texts in the record are not NUL-terminated: copy them too. */
    message_copy(&r->msg, &r->msg, o);
    return 0;
}

const char *spool_replay_one(const unsigned char *data, size_t len, struct send_request *req, uint32_t **index)
{
    struct record_reader rd = {data, len, 0, 0};
    struct record rec;
    struct record_push p;
    size_t bad;
    const char *why;

    memset(req, 0, sizeof(*req));
    *index = NULL;
    if (record_next(&rd, &rec, &bad) != RECORD_GOOD || rec.offset != 0 || RECORD_HEADER + rec.len != len)
        return "it is not one whole record";
    if (!record_is_push(rec.type) || record_decode_push(&rec, &p) != 0)
        return "it cannot be decoded";
    if (p.ntargets == 0 || p.ntargets > p.targets_len / 7)
        return "the target count does not match the bytes";
    if (p.ntargets > SPOOL_REPLAY_MAX_TARGETS)
        return "more targets than any request may hold";
    struct spool_replay_push rp = {rec, p.id, p.ntargets, 0, calloc(((size_t)p.ntargets + 7) / 8, 1)};
    if (rp.bits == NULL)
        return "out of memory";
    if ((why = push_adds_up(&p, rp.bits)) == NULL) {
        memset(rp.bits, 0, ((size_t)p.ntargets + 7) / 8); /* none acknowledged */
        if (spool_replay_request(&rp, req, index) != 0)
            why = "out of memory";
    }
    free(rp.bits);
    return why;
}

static int id_cmp(const char *a, size_t an, const char *b, size_t bn)
{
    int c = memcmp(a, b, an < bn ? an : bn);

    return c != 0 ? c : an < bn ? -1 : an > bn;
}

static int event_cmp(const void *a, const void *b)
{
    const struct record_event *x = &((const struct spool_replay_event *)a)->ev;
    const struct record_event *y = &((const struct spool_replay_event *)b)->ev;

    return id_cmp(x->id, x->id_len, y->id, y->id_len);
}

/* Whether an event's text is what fcmd writes: one JSON object, its first
 * member the event_id the record names, so a batch made of such texts is a
 * well-formed body whatever the file held. */
static int event_ok(const struct record_event *e)
{
    static const char head[] = "{\"event_id\":\"";
    struct json_doc d;
    int ok;

    if (e->len < sizeof(head) + e->id_len || memcmp(e->text, head, sizeof(head) - 1) != 0 ||
        memcmp(e->text + sizeof(head) - 1, e->id, e->id_len) != 0 || e->text[sizeof(head) - 1 + e->id_len] != '"')
        return 0;
    if (json_parse(&d, e->text, e->len) != 0)
        return 0;
    ok = d.ntok > 0 && d.tok[0].type == JSMN_OBJECT && (size_t)d.tok[0].start == 0 && (size_t)d.tok[0].end == e->len;
    json_free(&d);
    return ok;
}

/* The EVENT records no EVENT_ACK names, each event_id once. */
static int read_events(struct spool_replay *o, const unsigned char *data, size_t len, const char *path)
{
    struct record_reader rd = {data, len, 0, 0};
    struct record rec;
    enum record_read st;
    size_t bad, cap = 0, kept = 0, skipped = 0;

    while ((st = record_next(&rd, &rec, &bad)) != RECORD_END && st != RECORD_TORN) {
        struct record_event e;
        if (st != RECORD_GOOD || rec.type != RECORD_EVENT)
            continue;
        if (record_decode_event(&rec, &e) != 0 || !event_ok(&e)) {
            skipped++;
            continue;
        }
        if (o->nevents == cap) {
            struct spool_replay_event *nv = realloc(o->events, (cap = cap ? 2 * cap : 64) * sizeof(*nv));
            if (nv == NULL)
                return -1;
            o->events = nv;
        }
        o->events[o->nevents++].ev = e;
    }
    if (skipped > 0)
        log_warn("spool: %s: %zu webhook event records skipped: they do not add up", path, skipped);
    if (o->nevents == 0)
        return 0;
    qsort(o->events, o->nevents, sizeof(*o->events), event_cmp);
    /* Acknowledged ones are marked by emptying their id. */
    rd = (struct record_reader){data, len, 0, 0};
    while ((st = record_next(&rd, &rec, &bad)) != RECORD_END && st != RECORD_TORN) {
        size_t pos = 0, n;
        const char *id;
        if (st != RECORD_GOOD || rec.type != RECORD_EVENT_ACK)
            continue;
        while (record_event_ack_next(&rec, &pos, &id, &n) == 0) {
            size_t lo = 0, hi = o->nevents;
            while (lo < hi) {
                size_t mid = lo + (hi - lo) / 2;
                int c = id_cmp(o->events[mid].ev.id, o->events[mid].ev.id_len, id, n);
                if (c < 0)
                    lo = mid + 1;
                else
                    hi = mid;
            }
            for (; lo < o->nevents && id_cmp(o->events[lo].ev.id, o->events[lo].ev.id_len, id, n) == 0; lo++)
                o->events[lo].ev.len = 0;
        }
    }
    for (size_t i = 0; i < o->nevents; i++) {
        const struct record_event *e = &o->events[i].ev;
        if (e->len == 0 || (kept > 0 && event_cmp(&o->events[kept - 1], &o->events[i]) == 0))
            continue;
        o->events[kept++] = o->events[i];
    }
    o->nevents = kept;
    return 0;
}

int spool_replay_read(struct spool_replay *r, const unsigned char *data, size_t len, const char *path)
{
    memset(r, 0, sizeof(*r));
    if (read_pushes(r, data, len, path) != 0 || read_events(r, data, len, path) != 0) {
        spool_replay_free(r);
        return -1;
    }
    read_acks(r, data, len, path);
    return 0;
}

void spool_replay_free(struct spool_replay *r)
{
    for (size_t i = r->next; i < r->n; i++)
        free(r->v[i].bits);
    free(r->v);
    free(r->events);
    memset(r, 0, sizeof(*r));
}
