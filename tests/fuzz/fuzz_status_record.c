/*
 * tests/fuzz/fuzz_status_record.c - a push's status as read back from its
 * hash in Redis, which anyone who can write to Redis can fill: the input is
 * split at each 0xff byte into the strings of an HGETALL reply.  A status
 * read has targets, at most 100 errors, each within the input, and an
 * upstream fcmd knows or none.
 */
#include <assert.h>
#include <stdint.h>
#include <string.h>

#include "../../child/fleet/status_record.h"

static const uint8_t *lo, *hi;

static void on_error(void *arg, const char *token, size_t tl, const char *reason, size_t rl)
{
    (void)arg;
    assert((const uint8_t *)token >= lo && (const uint8_t *)token + tl <= hi);
    assert((const uint8_t *)reason >= lo && (const uint8_t *)reason + rl <= hi);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static const char *const ups[] = {"fcm", "apns", "webpush"};
    const char *str[512];
    size_t len[512], n = 0, start = 0;
    struct status_record_errors e;
    struct push_status s;

    for (size_t i = 0; i <= size && n < 512; i++)
        if (i == size || data[i] == 0xff) {
            str[n] = (const char *)data + start;
            len[n++] = i - start;
            start = i + 1;
        }
    lo = data;
    hi = data + size;
    if (status_record_read(str, len, n, ups, 3, &s, &e) == 0) {
        assert(s.targets > 0);
        assert(s.canonical <= s.delivered && s.errors <= PUSH_STATUS_ERRORS);
        assert(s.upstream < 3 || s.upstream == UINT32_MAX);
        assert(strlen(s.app) <= APP_NAME_MAX);
        status_record_each_error(&e, s.errors, on_error, NULL);
    }
    return 0;
}
