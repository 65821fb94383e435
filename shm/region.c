/*
 * shm/region.c - creation of the shared region and sums over its slots.
 *
 * One anonymous shared mapping holds the header, the counter slots and both
 * drain lists back to back; it is made once by the master and inherited by
 * every child through fork, so pointers into it are valid everywhere.
 */
#include "region.h"
#include "idempotency.h"
#include "push_status.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/random.h>
#include <time.h>

#define UPSTREAM_NAME(ID, NAME, LABEL, PATH, ENDPOINT, HINT) #NAME,
const char *const shm_upstream_names[SHM_UPSTREAMS] = {FCMD_PROVIDERS(UPSTREAM_NAME)};
#undef UPSTREAM_NAME

static size_t align64(size_t n)
{
    return (n + 63) & ~(size_t)63;
}

/* A fresh id per run: a restarted instance must never add to the marks of
 * the run before it (child/fleet/fleet.c). */
static int name_instance(struct shm_region *r)
{
    unsigned char b[8];

    if (getrandom(b, sizeof(b), 0) != (ssize_t)sizeof(b))
        return errno ? -errno : -EIO;
    for (size_t i = 0; i < sizeof(b); i++)
        snprintf(r->instance + 2 * i, 3, "%02x", b[i]);
    return 0;
}

/* Each app's APNs provider token.  Returns 0 or a negative errno. */
static int init_tokens(struct shm_region *r)
{
    int err;

    for (unsigned i = 0; i < SHM_APPS; i++)
        if ((err = provider_token_init(&r->apps[i].apns_token)) != 0)
            return err;
    return 0;
}

struct shm_region *shm_region_create(size_t list_bytes, size_t status_bytes, size_t idem_bytes)
{
    size_t head = align64(sizeof(struct shm_region));
    size_t list = align64(drainlist_footprint(list_bytes));
    size_t status = align64(ledger_footprint(status_bytes, push_status_entry_min()));
    size_t size = head + 2 * list + status + align64(ledger_footprint(idem_bytes, idempotency_entry_min()));
    struct shm_region *r;
    int err;

    r = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    if (r == MAP_FAILED)
        return NULL;
    /* The mapping is zero-filled: every counter and slot starts at 0. */
    r->magic = SHM_MAGIC;
    r->version = SHM_VERSION;
    r->size = size;
    atomic_store(&r->started_at, (uint64_t)time(NULL));
    r->canonical = (struct drainlist *)((char *)r + head);
    r->notregistered = (struct drainlist *)((char *)r + head + list);
    r->push_status = (struct ledger *)((char *)r + head + 2 * list);
    r->idempotency = (struct ledger *)((char *)r + head + 2 * list + status);
    if ((err = drainlist_init(r->canonical, list_bytes)) != 0 ||
        (err = drainlist_init(r->notregistered, list_bytes)) != 0 || (err = ledger_init(r->push_status, status_bytes, push_status_entry_min())) != 0 ||
        (err = ledger_init(r->idempotency, idem_bytes, idempotency_entry_min())) != 0 || (err = name_instance(r)) != 0 ||
        (err = init_tokens(r)) != 0) {
        munmap(r, size);
        errno = -err;
        return NULL;
    }
    /* Every push writes a status; an Idempotency-Key only the sends that
     * carry one: that ledger's pages come as they are used. */
    ledger_map(r->push_status, 1);
    return r;
}

void shm_region_destroy(struct shm_region *r)
{
    if (r != NULL)
        munmap(r, r->size);
}

#define LOAD(x) atomic_load_explicit(&(x), memory_order_relaxed)

static void sum_histogram(const struct histogram *h, uint64_t *buckets, uint64_t *count, uint64_t *sum_us)
{
    for (int b = 0; b < HIST_BUCKETS; b++)
        buckets[b] += LOAD(((struct histogram *)h)->buckets[b]);
    *count += LOAD(((struct histogram *)h)->count);
    *sum_us += LOAD(((struct histogram *)h)->sum_us);
}

void shm_sum(const struct shm_region *r, struct shm_totals *out)
{
    uint64_t now = (uint64_t)time(NULL), started = atomic_load(&((struct shm_region *)r)->started_at);

    memset(out, 0, sizeof(*out));
    for (unsigned i = 0; i < SHM_MAX_SLOTS; i++) {
        struct shm_slot *s = (struct shm_slot *)&r->slots[i];
        int alive = LOAD(s->pid) != 0;
        for (unsigned c = 0; c < SHM_NCOUNTERS; c++)
            out->counters[c] += LOAD(s->counters[c]);
        for (unsigned u = 0; u < SHM_UPSTREAMS; u++)
            for (unsigned c = 0; c < SHM_UP_NCOUNTERS; c++)
                out->by_upstream[u][c] += LOAD(s->by_upstream[u][c]);
        out->pending += LOAD(s->pending);
        for (unsigned g = 0; g < SHM_NGAUGES; g++) {
            int64_t v = LOAD(s->gauges[g]);
            /* Each worker holds the one bound of the whole spool: the
             * largest (a reload may change it), not their sum. */
            if (g == SHM_WEBHOOK_OLDEST_AT) {
                if (v > 0 && (out->gauges[g] == 0 || v < out->gauges[g]))
                    out->gauges[g] = v;
            } else if (g != SHM_SPOOL_MAX_BYTES) {
                out->gauges[g] += v;
            } else if (v > out->gauges[g]) {
                out->gauges[g] = v;
            }
        }
        for (unsigned c = 0; c < SHM_WEBHOOK_NCOUNTERS; c++)
            out->webhook[c] += LOAD(s->webhook[c]);
        for (unsigned c = 0; c < CAUSE_COUNT; c++) {
            out->failures_by[c] += LOAD(s->failures_by[c]);
            out->retries_by[c] += LOAD(s->retries_by[c]);
        }
        for (unsigned e = 0; e < EP_COUNT; e++)
            for (unsigned k = 0; k < HTTP_STATUS_COUNT; k++)
                out->http[e][k] += LOAD(s->http[e][k]);
        sum_histogram(&s->upstream_latency, out->upstream_latency, &out->upstream_latency_count,
                      &out->upstream_latency_sum_us);
        sum_histogram(&s->send_latency, out->send_latency, &out->send_latency_count, &out->send_latency_sum_us);
        out->children += alive;
        if (alive)
            out->waiting_for_token += LOAD(s->no_token) != 0;
    }
    for (unsigned i = 0; i < SHM_APPS; i++)
        out->apns_tokens_made += atomic_load(&((struct shm_region *)r)->apps[i].apns_token.made);
    out->dropped[SHM_LIST_CANONICAL] = drainlist_dropped(r->canonical);
    out->dropped[SHM_LIST_NOTREGISTERED] = drainlist_dropped(r->notregistered);
    drainlist_size(r->canonical, &out->list_records[SHM_LIST_CANONICAL], &out->list_bytes[SHM_LIST_CANONICAL]);
    drainlist_size(r->notregistered, &out->list_records[SHM_LIST_NOTREGISTERED],
                   &out->list_bytes[SHM_LIST_NOTREGISTERED]);
    out->list_capacity = r->canonical->capacity;
    out->workers = atomic_load(&((struct shm_region *)r)->workers);
    out->push_statuses = ledger_entries(r->push_status);
    out->push_status_evicted = atomic_load(&r->push_status->evicted);
    out->push_status_lost = atomic_load(&r->push_status->lost);
    out->uptime_seconds = now > started ? now - started : 0;
    if (out->gauges[SHM_WEBHOOK_OLDEST_AT] > 0) {
        struct timespec ts;
        clock_gettime(CLOCK_REALTIME, &ts);
        int64_t ms = (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000 - out->gauges[SHM_WEBHOOK_OLDEST_AT];
        out->webhook_oldest_seconds = ms > 0 ? (uint64_t)ms / 1000 : 0;
    }
}

int64_t shm_settle_slot(struct shm_region *r, unsigned slot, enum shm_settle how)
{
    struct shm_slot *s = &r->slots[slot];
    int64_t left = atomic_exchange(&s->pending, 0);

    /* Left in the queue in Redis, they are delivered by another worker and
     * counted then. */
    if (left > 0 && how != SHM_SETTLE_QUEUED)
        shm_add(s, how == SHM_SETTLE_SPOOLED ? SHM_LEFT_IN_SPOOL : SHM_LOST, (uint64_t)left);
    atomic_store(&s->no_token, (uint64_t)0);
    /* The webhook events it held in memory went with it; with a spool they
     * wait in its segments for the worker that adopts them. */
    int64_t events = atomic_load(&s->gauges[SHM_WEBHOOK_PENDING]);
    if (events > 0 && how != SHM_SETTLE_SPOOLED)
        atomic_fetch_add(&s->webhook[SHM_WEBHOOK_DROPPED], (uint64_t)events);
    atomic_fetch_sub(&r->webhook_bytes, atomic_load(&s->gauges[SHM_WEBHOOK_BYTES]));
    /* A dead child holds no queue, no requests and no connections. */
    for (unsigned g = 0; g < SHM_NGAUGES; g++)
        atomic_store(&s->gauges[g], 0);
    return left;
}

int shm_app_row(const struct shm_region *r, const char *name)
{
    for (int i = 1; i < SHM_APPS; i++)
        if (r->apps[i].name[0] != '\0' && strcmp(r->apps[i].name, name) == 0)
            return i;
    return -1;
}

static int held(const struct fcmd_app *apps, size_t n, const char *name)
{
    for (size_t i = 0; i < n; i++)
        if (strcmp(apps[i].name, name) == 0)
            return 1;
    return 0;
}

static int unused(const struct shm_region *r, unsigned row)
{
    for (unsigned u = 0; u < SHM_UPSTREAMS; u++)
        for (unsigned c = 0; c < SHM_UP_NCOUNTERS; c++)
            if (LOAD(((struct shm_region *)r)->apps[row].by_upstream[u][c]) != 0)
                return 0;
    return r->apps[row].name[0] == '\0';
}

int shm_apps_assign(struct shm_region *r, const struct fcmd_app *apps, size_t n, const struct fcmd_app *running,
                    size_t nrunning, unsigned *rows)
{
    for (size_t i = 0; i < n; i++) {
        int row = shm_app_row(r, apps[i].name);
        if (row < 0) /* never used first, then one no running generation holds */
            for (int pass = 0; pass < 2 && row < 0; pass++)
                for (unsigned k = 1; k < SHM_APPS && row < 0; k++)
                    if (pass == 0 ? unused(r, k)
                                  : !held(apps, n, r->apps[k].name) && !held(running, nrunning, r->apps[k].name))
                        row = (int)k;
        if (row < 0)
            return -ENOSPC;
        if (strcmp(r->apps[row].name, apps[i].name) != 0) {
            for (unsigned u = 0; u < SHM_UPSTREAMS; u++)
                for (unsigned c = 0; c < SHM_UP_NCOUNTERS; c++)
                    atomic_store(&r->apps[row].by_upstream[u][c], (uint64_t)0);
            snprintf(r->apps[row].name, sizeof(r->apps[row].name), "%s", apps[i].name);
        }
        rows[i] = (unsigned)row;
    }
    return 0;
}
