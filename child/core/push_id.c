/*
 * child/core/push_id.c - making push ids: a random prefix and a counter.
 */
#include "push_id.h"
#include "../../common/log.h"

#include <errno.h>
#include <string.h>
#include <sys/random.h>
#include <time.h>
#include <unistd.h>

static const char alphabet[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";

/* splitmix64's finalizer: spreads the fallback's few changing bits. */
static uint64_t mix(uint64_t z)
{
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9u;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebu;
    return z ^ (z >> 31);
}

void push_ids_init(struct push_ids *g)
{
    uint64_t r[2];
    struct timespec rt = {0, 0}, mono = {0, 0};
    ssize_t got;

    do
        got = getrandom(r, sizeof(r), 0);
    while (got < 0 && errno == EINTR);
    if (got == (ssize_t)sizeof(r)) {
        g->prefix = r[0];
        g->next = r[1];
        return;
    }
    log_warn("getrandom() failed (%s): push ids are made from the time and the process id",
             got < 0 ? strerror(errno) : "short read");
    clock_gettime(CLOCK_REALTIME, &rt);
    clock_gettime(CLOCK_MONOTONIC, &mono);
    g->prefix = mix((uint64_t)rt.tv_sec * 1000000000u + (uint64_t)rt.tv_nsec) ^ mix((uint64_t)getpid());
    g->next = mix((uint64_t)mono.tv_sec * 1000000000u + (uint64_t)mono.tv_nsec);
}

size_t push_id_make(struct push_ids *g, char out[PUSH_ID_MAX + 1])
{
    unsigned char b[16];
    uint64_t n = g->next++;
    char *o = out;

    for (int i = 0; i < 8; i++) {
        b[i] = (unsigned char)(g->prefix >> (56 - 8 * i));
        b[8 + i] = (unsigned char)(n >> (56 - 8 * i));
    }
    /* base64url of 16 bytes: five groups of three, then one byte alone. */
    for (int i = 0; i < 15; i += 3) {
        uint32_t v = (uint32_t)b[i] << 16 | (uint32_t)b[i + 1] << 8 | b[i + 2];
        *o++ = alphabet[v >> 18];
        *o++ = alphabet[(v >> 12) & 63];
        *o++ = alphabet[(v >> 6) & 63];
        *o++ = alphabet[v & 63];
    }
    *o++ = alphabet[b[15] >> 2];
    *o++ = alphabet[(b[15] & 3) << 4];
    *o = '\0';
    return PUSH_ID_LEN;
}

int push_id_ok(const char *s, size_t n)
{
    if (n == 0 || n > PUSH_ID_MAX)
        return 0;
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        if (!((c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-' || c == '_'))
            return 0;
    }
    return 1;
}
