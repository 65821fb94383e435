/*
 * shm/region.c - creation of the shared region and sums over its slots.
 *
 * One anonymous shared mapping holds the header, the counter slots and both
 * drain lists back to back; it is made once by the master and inherited by
 * every child through fork, so pointers into it are valid everywhere.
 */
#include "region.h"

#include <errno.h>
#include <string.h>
#include <sys/mman.h>
#include <time.h>

static size_t align64(size_t n)
{
    return (n + 63) & ~(size_t)63;
}

struct shm_region *shm_region_create(size_t list_bytes)
{
    size_t head = align64(sizeof(struct shm_region));
    size_t list = align64(drainlist_footprint(list_bytes));
    size_t size = head + 2 * list;
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
    if ((err = drainlist_init(r->canonical, list_bytes)) != 0 ||
        (err = drainlist_init(r->notregistered, list_bytes)) != 0) {
        munmap(r, size);
        errno = err;
        return NULL;
    }
    return r;
}

void shm_region_destroy(struct shm_region *r)
{
    if (r != NULL)
        munmap(r, r->size);
}

void shm_sum(const struct shm_region *r, struct shm_totals *out)
{
    memset(out, 0, sizeof(*out));
    for (unsigned i = 0; i < SHM_MAX_SLOTS; i++) {
        struct shm_slot *s = (struct shm_slot *)&r->slots[i];
        for (unsigned c = 0; c < SHM_NCOUNTERS; c++)
            out->counters[c] += atomic_load_explicit(&s->counters[c], memory_order_relaxed);
        out->pending += atomic_load_explicit(&s->pending, memory_order_relaxed);
        if (atomic_load_explicit(&s->pid, memory_order_relaxed) != 0)
            out->waiting_for_token += atomic_load_explicit(&s->no_token, memory_order_relaxed) != 0;
    }
    out->canonical_dropped = drainlist_dropped(r->canonical);
    out->notregistered_dropped = drainlist_dropped(r->notregistered);
}

int64_t shm_settle_slot(struct shm_region *r, unsigned slot)
{
    struct shm_slot *s = &r->slots[slot];
    int64_t left = atomic_exchange(&s->pending, 0);

    if (left > 0)
        shm_add(s, SHM_LOST, (uint64_t)left);
    atomic_store(&s->no_token, 0);
    return left;
}
