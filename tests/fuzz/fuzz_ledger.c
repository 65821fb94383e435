/*
 * tests/fuzz/fuzz_ledger.c - the ledger and the push statuses on it, driven
 * by the input: entries made and found, notes written and read back, and
 * bytes of the input scribbled over the ring and the index in between, as a
 * torn write would leave them.  Nothing may crash or loop, and what was
 * just made is found while nothing was scribbled.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "../../shm/ledger.h"
#include "../../shm/push_status.h"

#define BYTES LEDGER_MIN_BYTES

static void on_error(void *arg, const char *token, size_t tl, const char *reason, size_t rl)
{
    size_t *sum = arg;

    for (size_t i = 0; i < tl; i++)
        *sum += (unsigned char)token[i];
    for (size_t i = 0; i < rl; i++)
        *sum += (unsigned char)reason[i];
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static struct ledger *l;
    size_t at = 0, sum = 0;
    uint64_t now = 1000, h = 0;
    int scribbled = 0;

    if (l == NULL && (l = aligned_alloc(64, (ledger_footprint(BYTES, LEDGER_MIN_ENTRY) + 63) / 64 * 64)) == NULL)
        return 0;
    memset(l, 0, ledger_footprint(BYTES, LEDGER_MIN_ENTRY)); /* what a fresh mapping gives */
    if (ledger_init(l, BYTES, LEDGER_MIN_ENTRY) != 0)
        return 0;
    while (at + 2 <= size) {
        unsigned op = data[at] % 6, n = data[at + 1];
        at += 2;
        if (n > size - at)
            n = (unsigned)(size - at);
        const char *bytes = (const char *)data + at;
        at += n;
        now += n;
        switch (op) {
        case 0: { /* a status made and found at once */
            struct push_status s;
            if (n == 0)
                break;
            h = push_status_begin(l, bytes, n, "app", 1, n, now);
            if (!scribbled && h != 0 && !push_status_read(l, bytes, n, now, &s, on_error, &sum))
                __builtin_trap();
            break;
        }
        case 1: /* an outcome with its error */
            push_status_outcome(l, h, (enum push_outcome)(n % 4), bytes, n, "Reason", now, 5000);
            break;
        case 2: { /* a read of any key */
            struct push_status s;
            if (n > 0)
                push_status_read(l, bytes, n, now, &s, on_error, &sum);
            break;
        }
        case 3: { /* the ring's or the index's bytes overwritten */
            size_t span = ledger_footprint(BYTES, LEDGER_MIN_ENTRY) - sizeof(struct ledger);
            size_t off = sizeof(struct ledger) + ((size_t)n * 2654435761u) % span;
            size_t len = n < span - (off - sizeof(struct ledger)) ? n : span - (off - sizeof(struct ledger));
            memcpy((char *)l + off, bytes, len);
            scribbled = 1;
            break;
        }
        case 4: { /* a raw entry with notes, read back */
            struct ledger_ref ref;
            uint64_t cursor = 0;
            size_t len;
            if (n == 0 || ledger_lock(l) != 0)
                break;
            if (ledger_add(l, bytes, n, n % 64, now + n, now, &ref)) {
                ledger_note(l, &ref, bytes, n, now);
                ledger_note(l, &ref, bytes, n / 2, now);
                while (ledger_next_note(l, &ref, &cursor, &len) != NULL)
                    sum += len;
            }
            ledger_unlock(l);
            break;
        }
        case 5: /* time goes by */
            now += (uint64_t)n * 100;
            break;
        }
    }
    pthread_mutex_destroy(&l->lock);
    return (int)(sum & 0);
}
