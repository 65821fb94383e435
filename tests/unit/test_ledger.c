/*
 * tests/unit/test_ledger.c - the keyed log in shared memory and the push
 * statuses on it: lookups through many evictions and wraps (checked against
 * a plain model), notes, expiry, a key taken over, a holder that dies, and
 * processes sharing one ledger.
 */
#include "cmocka_all.h"

#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <unistd.h>

#include "../../shm/idempotency.h"
#include "../../shm/ledger.h"
#include "../../shm/push_status.h"

static struct ledger *make(size_t bytes)
{
    size_t n = ledger_footprint(bytes, LEDGER_MIN_ENTRY);
    struct ledger *l = mmap(NULL, n, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);

    assert_true(l != MAP_FAILED);
    assert_int_equal(ledger_init(l, bytes, LEDGER_MIN_ENTRY), 0);
    return l;
}

static void unmake(struct ledger *l, size_t bytes)
{
    munmap(l, ledger_footprint(bytes, LEDGER_MIN_ENTRY));
}

static void add(struct ledger *l, const char *key, uint32_t v, uint64_t now)
{
    struct ledger_ref ref;

    assert_int_equal(ledger_lock(l), 0);
    assert_int_equal(ledger_add(l, key, strlen(key), sizeof(v), LEDGER_NEVER, now, &ref), 1);
    memcpy(ref.body, &v, sizeof(v));
    ledger_unlock(l);
}

/* The value stored under key, or -1. */
static long find(struct ledger *l, const char *key, uint64_t now)
{
    struct ledger_ref ref;
    uint32_t v;
    long out = -1;

    assert_int_equal(ledger_lock(l), 0);
    if (ledger_find(l, key, strlen(key), now, &ref)) {
        assert_int_equal(ref.body_len, sizeof(v));
        memcpy(&v, ref.body, sizeof(v));
        out = v;
    }
    ledger_unlock(l);
    return out;
}

static void add_find_and_replace(void **state)
{
    struct ledger *l = make(LEDGER_MIN_BYTES);

    (void)state;
    add(l, "alpha", 1, 0);
    add(l, "beta", 2, 0);
    assert_int_equal(find(l, "alpha", 0), 1);
    assert_int_equal(find(l, "beta", 0), 2);
    assert_int_equal(find(l, "gamma", 0), -1);
    add(l, "alpha", 3, 0); /* the newer entry takes the key */
    assert_int_equal(find(l, "alpha", 0), 3);
    assert_int_equal(ledger_entries(l), 2);
    unmake(l, LEDGER_MIN_BYTES);
}

/* Keys of many lengths through twenty times the ring: every key the model
 * says is among the newest that fit is found with its value, every older one
 * is gone, and the index never loses one (backward-shift deletion). */
static void oldest_go_first_through_many_wraps(void **state)
{
    enum { N = 20000 };
    struct ledger *l = make(LEDGER_MIN_BYTES);
    static uint32_t sizes[N];
    char key[300];
    uint64_t live = 0;

    (void)state;
    srand(7);
    for (uint32_t i = 0; i < N; i++) {
        int klen = snprintf(key, sizeof(key), "k%u-", i);
        int pad = rand() % 200;
        memset(key + klen, 'x', (size_t)pad);
        key[klen + pad] = '\0';
        sizes[i] = (uint32_t)(klen + pad);
        add(l, key, i, 0);
        /* Spot checks as it goes: the newest is there. */
        assert_int_equal(find(l, key, 0), i);
    }
    /* Walking back from the newest, the entries found form one unbroken run. */
    int gone = 0;
    for (long i = N - 1; i >= 0; i--) {
        int klen = snprintf(key, sizeof(key), "k%ld-", i);
        memset(key + klen, 'x', sizes[i] - (size_t)klen);
        key[sizes[i]] = '\0';
        long v = find(l, key, 0);
        if (v < 0) {
            gone = 1;
            continue;
        }
        assert_false(gone); /* found after a gap: an older one outlived a newer */
        assert_int_equal(v, i);
        live++;
    }
    assert_true(live > 100 && live < N);
    assert_int_equal(ledger_entries(l), live);
    assert_int_equal(atomic_load(&l->added), N);
    assert_int_equal(atomic_load(&l->evicted), N - live);
    unmake(l, LEDGER_MIN_BYTES);
}

static void expired_entries_are_not_found_nor_counted_evicted(void **state)
{
    struct ledger *l = make(LEDGER_MIN_BYTES);
    struct ledger_ref ref;
    char key[32];

    (void)state;
    assert_int_equal(ledger_lock(l), 0);
    assert_int_equal(ledger_add(l, "soon", 4, 8, 1000, 0, &ref), 1);
    assert_int_equal(ledger_find(l, "soon", 4, 999, &ref), 1);
    assert_int_equal(ledger_find(l, "soon", 4, 1000, &ref), 0);
    ledger_unlock(l);
    /* Pushed out of the ring after its expiry: not an eviction. */
    for (int i = 0; i < 2000; i++) {
        snprintf(key, sizeof(key), "fill-%d", i);
        add(l, key, 1, 5000);
    }
    assert_int_equal(find(l, "fill-0", 5000), -1);
    /* "soon" went first, expired: every eviction counted is a fill's. */
    assert_true(atomic_load(&l->evicted) > 0);
    assert_int_equal(atomic_load(&l->evicted), atomic_load(&l->added) - 1 - ledger_entries(l));
    unmake(l, LEDGER_MIN_BYTES);
}

static void notes_in_order_and_gone_with_their_entry(void **state)
{
    struct ledger *l = make(LEDGER_MIN_BYTES);
    struct ledger_ref ref, again;
    uint64_t cursor = 0;
    const char *n;
    size_t len;
    char text[32];
    int i = 0;

    (void)state;
    assert_int_equal(ledger_lock(l), 0);
    assert_int_equal(ledger_add(l, "e", 1, 4, LEDGER_NEVER, 0, &ref), 1);
    for (int k = 0; k < 5; k++) {
        int m = snprintf(text, sizeof(text), "note %d", k);
        assert_int_equal(ledger_note(l, &ref, text, (size_t)m, 0), 1);
    }
    assert_int_equal(ledger_find(l, "e", 1, 0, &again), 1);
    while ((n = ledger_next_note(l, &again, &cursor, &len)) != NULL) {
        int m = snprintf(text, sizeof(text), "note %d", i++);
        assert_int_equal(len, (size_t)m);
        assert_memory_equal(n, text, len);
    }
    assert_int_equal(i, 5);
    /* Notes that fill the ring push their own entry out: the last one is refused. */
    char big[8000];
    memset(big, 'n', sizeof(big));
    int in = 0;
    while (ledger_note(l, &ref, big, sizeof(big), 0))
        in++;
    assert_true(in >= 6 && in <= 8);
    assert_int_equal(ledger_get(l, &ref), 0);
    assert_int_equal(ledger_find(l, "e", 1, 0, &again), 0);
    ledger_unlock(l);
    unmake(l, LEDGER_MIN_BYTES);
}

static void limits(void **state)
{
    struct ledger *l = make(LEDGER_MIN_BYTES);
    struct ledger_ref ref;
    static char big[LEDGER_MAX_NOTE + 1];

    (void)state;
    assert_int_equal(ledger_lock(l), 0);
    assert_int_equal(ledger_add(l, "", 0, 4, LEDGER_NEVER, 0, &ref), 0);
    assert_int_equal(ledger_add(l, big, LEDGER_MAX_KEY + 1, 4, LEDGER_NEVER, 0, &ref), 0);
    assert_int_equal(ledger_add(l, "k", 1, LEDGER_MAX_BODY + 1, LEDGER_NEVER, 0, &ref), 0);
    assert_int_equal(ledger_add(l, "k", 1, 4, LEDGER_NEVER, 0, &ref), 1);
    assert_int_equal(ledger_note(l, &ref, big, sizeof(big), 0), 0);
    /* A reference from outside is checked, never trusted. */
    struct ledger_ref bogus = {.pos = ref.pos + 8};
    assert_int_equal(ledger_get(l, &bogus), 0);
    bogus.pos = UINT64_MAX - 7;
    assert_int_equal(ledger_get(l, &bogus), 0);
    ledger_unlock(l);
    unmake(l, LEDGER_MIN_BYTES);
}

/* A process killed while it holds the lock: the next locker empties the
 * ledger, counts what it held as lost, and goes on. */
static void dead_holder_empties_it(void **state)
{
    struct ledger *l = make(LEDGER_MIN_BYTES);
    pid_t pid;
    int st;

    (void)state;
    add(l, "a", 1, 0);
    add(l, "b", 2, 0);
    if ((pid = fork()) == 0) {
        ledger_lock(l);
        raise(SIGKILL);
    }
    assert_int_equal(waitpid(pid, &st, 0), pid);
    assert_true(WIFSIGNALED(st));
    assert_int_equal(find(l, "a", 0), -1);
    assert_int_equal(atomic_load(&l->lost), 2);
    add(l, "c", 3, 0);
    assert_int_equal(find(l, "c", 0), 3);
    unmake(l, LEDGER_MIN_BYTES);
}

struct errs {
    int n;
    char last[64];
};

static void each_error(void *arg, const char *token, size_t tl, const char *reason, size_t rl)
{
    struct errs *e = arg;

    snprintf(e->last, sizeof(e->last), "%.*s=%.*s", (int)tl, token, (int)rl, reason);
    e->n++;
}

static void statuses_count_and_keep_the_first_errors(void **state)
{
    struct ledger *l = make(1 << 20);
    struct push_status s;
    struct errs e = {0};
    char tok[32];
    uint64_t h;

    (void)state;
    h = push_status_begin(l, "id1", 3, "shop", 1, 250, 0);
    assert_true(h != 0);
    assert_int_equal(push_status_begin(l, "id1", 3, "other", 0, 9, 0), h); /* taken up again: the same */
    push_status_outcome(l, h, PUSH_DELIVERED, "t0", 2, NULL, 0, 1000);
    push_status_outcome(l, h, PUSH_CANONICAL, "t1", 2, NULL, 0, 1000);
    for (int i = 2; i < 250; i++) {
        int n = snprintf(tok, sizeof(tok), "t%d", i);
        push_status_outcome(l, h, i % 2 ? PUSH_INVALID : PUSH_FAILED, tok, (size_t)n, i % 2 ? "Dead" : "Bad", 10,
                            1000);
    }
    assert_int_equal(push_status_read(l, "id1", 3, 10, &s, each_error, &e), 1);
    assert_string_equal(s.app, "shop");
    assert_int_equal(s.upstream, 1);
    assert_int_equal(s.targets, 250);
    assert_int_equal(s.delivered, 2);
    assert_int_equal(s.canonical, 1);
    assert_int_equal(s.invalid, 124);
    assert_int_equal(s.failed, 124);
    assert_int_equal(push_status_pending(&s), 0);
    assert_int_equal(e.n, PUSH_STATUS_ERRORS);
    assert_string_equal(e.last, "t101=Dead");
    /* More outcomes than targets (a push delivered again) change nothing. */
    push_status_outcome(l, h, PUSH_FAILED, "x", 1, "X", 10, 1000);
    e.n = 0;
    assert_int_equal(push_status_read(l, "id1", 3, 10, &s, each_error, &e), 1);
    assert_int_equal(s.failed, 124);
    /* Done at 10: kept until 1010. */
    assert_int_equal(push_status_read(l, "id1", 3, 1009, &s, each_error, &e), 1);
    assert_int_equal(push_status_read(l, "id1", 3, 1010, &s, each_error, &e), 0);
    unmake(l, 1 << 20);
}

/* Four processes make and finish statuses at once on one ledger; each
 * finds its own at the end, complete. */
static void processes_share_one_ledger(void **state)
{
    enum { P = 4, PER = 300 };
    size_t bytes = 4 << 20;
    struct ledger *l = make(bytes);
    pid_t pids[P];

    (void)state;
    for (int p = 0; p < P; p++) {
        if ((pids[p] = fork()) == 0) {
            char id[32];
            for (int i = 0; i < PER; i++) {
                int n = snprintf(id, sizeof(id), "p%d-%d", p, i);
                uint64_t h = push_status_begin(l, id, (size_t)n, "", 0, 3, 0);
                for (int t = 0; t < 3; t++)
                    push_status_outcome(l, h, t == 2 ? PUSH_INVALID : PUSH_DELIVERED, "tok", 3, "Dead", 0, 60000);
            }
            _exit(0);
        }
    }
    for (int p = 0; p < P; p++) {
        int st;
        assert_int_equal(waitpid(pids[p], &st, 0), pids[p]);
        assert_true(WIFEXITED(st) && WEXITSTATUS(st) == 0);
    }
    for (int p = 0; p < P; p++)
        for (int i = 0; i < PER; i++) {
            char id[32];
            struct push_status s;
            struct errs e = {0};
            int n = snprintf(id, sizeof(id), "p%d-%d", p, i);
            assert_int_equal(push_status_read(l, id, (size_t)n, 1, &s, each_error, &e), 1);
            assert_int_equal(s.delivered, 2);
            assert_int_equal(s.invalid, 1);
            assert_int_equal(e.n, 1);
        }
    unmake(l, bytes);
}

/* An entry whose expiry was set to 0 (a refused Idempotency-Key's claim)
 * leaves the index when a newer entry takes its key: left there, it came
 * first in the probe and hid the newer one for good. */
static void a_key_expired_at_zero_is_taken_over(void **state)
{
    struct ledger *l = make(LEDGER_MIN_BYTES);
    struct ledger_ref ref;

    (void)state;
    assert_int_equal(ledger_lock(l), 0);
    assert_int_equal(ledger_add(l, "k", 1, 4, LEDGER_NEVER, 10, &ref), 1);
    ledger_set_expiry(l, &ref, 0);
    assert_int_equal(ledger_find(l, "k", 1, 10, &ref), 0);
    assert_int_equal(ledger_add(l, "k", 1, 4, LEDGER_NEVER, 10, &ref), 1);
    assert_int_equal(ledger_find(l, "k", 1, 10, &ref), 1);
    assert_int_equal(l->entries, 1);
    ledger_unlock(l);
    unmake(l, LEDGER_MIN_BYTES);
}

/* A key whose first request was refused (a 503) is claimed again by the
 * retry, and once that is accepted a third request is its duplicate. */
static void a_refused_key_dedupes_its_accepted_retry(void **state)
{
    struct ledger *l = make(LEDGER_MIN_BYTES);
    unsigned char fp[IDEM_FINGERPRINT] = {1};
    struct idem_first first;
    char key[IDEM_LEDGER_KEY_MAX];
    size_t n = idempotency_ledger_key(key, "", "K", 1);

    (void)state;
    assert_int_equal(idempotency_claim(l, key, n, fp, "id1", 1, 1000, &first), IDEM_NEW);
    idempotency_settle(l, key, n, "id1", 0, 1000, 60000);
    assert_int_equal(idempotency_claim(l, key, n, fp, "id2", 1, 1001, &first), IDEM_NEW);
    idempotency_settle(l, key, n, "id2", 1, 1001, 60000);
    assert_int_equal(idempotency_claim(l, key, n, fp, "id3", 1, 1002, &first), IDEM_DUPLICATE);
    assert_string_equal(first.id, "id2");
    unmake(l, LEDGER_MIN_BYTES);
}

/* After a dead holder's ledger is emptied, a handle taken before names no
 * entry made after: positions keep growing, so the first entry made next is
 * not at the old one's position. */
static void a_handle_from_before_an_emptying_names_nothing_after(void **state)
{
    struct ledger *l = make(LEDGER_MIN_BYTES);
    struct push_status s;
    uint64_t ha, hb;
    pid_t pid;
    int st;

    (void)state;
    ha = push_status_begin(l, "push-a", 6, "", 0, 1, 0);
    assert_true(ha != 0);
    if ((pid = fork()) == 0) {
        ledger_lock(l);
        raise(SIGKILL);
    }
    assert_int_equal(waitpid(pid, &st, 0), pid);
    hb = push_status_begin(l, "push-b", 6, "", 0, 1, 0);
    assert_true(hb != 0 && hb != ha);
    push_status_outcome(l, ha, PUSH_DELIVERED, "t", 1, NULL, 0, 1000); /* push a's target */
    assert_int_equal(push_status_read(l, "push-b", 6, 0, &s, each_error, NULL), 1);
    assert_int_equal(s.delivered, 0);
    assert_int_equal(push_status_pending(&s), 1);
    unmake(l, LEDGER_MIN_BYTES);
}

/* The ring of l: after the header and the index. */
static unsigned char *ring(struct ledger *l)
{
    return (unsigned char *)l + ((sizeof(struct ledger) + 7) & ~(size_t)7) + (l->mask + 1) * sizeof(uint64_t);
}

/* A record whose length would take it past the ring's end is no record: its
 * fields there are not read, nor written (as ledger_set_expiry would). */
static void a_record_past_the_rings_end_is_refused(void **state)
{
    size_t bytes = LEDGER_MIN_BYTES, n = ledger_footprint(bytes, LEDGER_MIN_ENTRY);
    struct ledger *l = mmap(NULL, n + 4096, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    unsigned char *end;
    struct ledger_ref ref;
    uint32_t rec[2] = {64, 2 /* REC_ENTRY */}, live = 1;
    uint16_t key_len = 8, body_len = 0;

    (void)state;
    assert_true(l != MAP_FAILED);
    assert_int_equal(ledger_init(l, bytes, LEDGER_MIN_ENTRY), 0);
    end = ring(l) + l->capacity;
    /* What a torn write could leave: a record 8 bytes before the end, 64 long,
     * and past the end (the next thing in the region) bytes that look like
     * the rest of a live entry. */
    memcpy(end - 8, rec, sizeof(rec));
    memcpy(end + 32, &live, sizeof(live));
    memcpy(end + 36, &key_len, sizeof(key_len));
    memcpy(end + 38, &body_len, sizeof(body_len));
    l->tail = l->capacity - 8;
    l->head = l->capacity + 56;
    assert_int_equal(ledger_lock(l), 0);
    ref.pos = l->capacity - 8;
    assert_int_equal(ledger_get(l, &ref), 0);
    ledger_unlock(l);
    munmap(l, n + 4096);
}

/* A note chain that loops back (a torn or scribbled next) ends. */
static void a_looping_note_chain_ends(void **state)
{
    struct ledger *l = make(LEDGER_MIN_BYTES);
    struct ledger_ref ref;
    uint64_t cursor = 0, first, second;
    size_t len;
    int seen = 0;

    (void)state;
    assert_int_equal(ledger_lock(l), 0);
    assert_int_equal(ledger_add(l, "e", 1, 8, LEDGER_NEVER, 0, &ref), 1);
    assert_int_equal(ref.pos, 0);
    assert_int_equal(ledger_note(l, &ref, "one", 3, 0), 1);
    assert_int_equal(ledger_note(l, &ref, "two", 3, 0), 1);
    first = 64;                  /* the entry: 48 bytes, its body 8, its key 8 */
    second = first + 32;         /* a note: 24 bytes and its 3, padded */
    memcpy(ring(l) + second + 8, &(uint64_t){first + 1}, 8); /* the second's next: the first */
    while (ledger_next_note(l, &ref, &cursor, &len) != NULL && seen < 10)
        seen++;
    assert_int_equal(seen, 2);
    /* A note record too short for a note's header gives no note, whatever
     * length it says its bytes have. */
    memcpy(ring(l) + first, &(uint32_t){8}, 4);
    memcpy(ring(l) + first + 16, &(uint32_t){4000}, 4);
    cursor = 0;
    assert_null(ledger_next_note(l, &ref, &cursor, &len));
    ledger_unlock(l);
    unmake(l, LEDGER_MIN_BYTES);
}

/* A ledger sized for entries of at least min_entry bytes: smaller ones take
 * that much room, so however small they are the index never fills (it would
 * empty the ledger), and the oldest go first as usual. */
static void entries_smaller_than_the_minimum_take_its_room(void **state)
{
    enum { MIN = 256, N = 3000 };
    size_t bytes = LEDGER_MIN_BYTES, n = ledger_footprint(bytes, MIN);
    struct ledger *l = mmap(NULL, n, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    struct ledger_ref ref;
    char key[32];

    (void)state;
    assert_true(l != MAP_FAILED);
    assert_int_equal(ledger_init(l, bytes, MIN), 0);
    /* Half as many buckets as a ring of 64-byte entries would need. */
    assert_true(n < ledger_footprint(bytes, LEDGER_MIN_ENTRY));
    ledger_map(l, 1);
    ledger_map(l, 0);
    assert_int_equal(ledger_lock(l), 0);
    for (int i = 0; i < N; i++) {
        int k = snprintf(key, sizeof(key), "k%d", i);
        assert_int_equal(ledger_add(l, key, (size_t)k, 8, LEDGER_NEVER, 1, &ref), 1);
    }
    assert_int_equal(ledger_find(l, "k2999", 5, 1, &ref), 1);
    assert_int_equal(ledger_find(l, "k0", 2, 1, &ref), 0);
    ledger_unlock(l);
    assert_true(ledger_entries(l) <= bytes / MIN);
    assert_true(ledger_entries(l) >= bytes / MIN / 2);
    assert_int_equal(atomic_load(&l->lost), 0); /* never emptied for a full index */
    assert_int_equal(atomic_load(&l->evicted), N - ledger_entries(l));
    munmap(l, n);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(add_find_and_replace),
        cmocka_unit_test(oldest_go_first_through_many_wraps),
        cmocka_unit_test(expired_entries_are_not_found_nor_counted_evicted),
        cmocka_unit_test(notes_in_order_and_gone_with_their_entry),
        cmocka_unit_test(limits),
        cmocka_unit_test(dead_holder_empties_it),
        cmocka_unit_test(statuses_count_and_keep_the_first_errors),
        cmocka_unit_test(processes_share_one_ledger),
        cmocka_unit_test(a_key_expired_at_zero_is_taken_over),
        cmocka_unit_test(a_refused_key_dedupes_its_accepted_retry),
        cmocka_unit_test(a_handle_from_before_an_emptying_names_nothing_after),
        cmocka_unit_test(a_record_past_the_rings_end_is_refused),
        cmocka_unit_test(a_looping_note_chain_ends),
        cmocka_unit_test(entries_smaller_than_the_minimum_take_its_room),
    };
    return cmocka_run_group_tests_name("ledger", tests, NULL, NULL);
}
