/*
 * tests/integration/fault_resolve.c - a preloaded fault for the fleet tests:
 * a DNS server that answers late, or never.
 *
 * getaddrinfo() of a name ending in ".slow.invalid" waits
 * FCMD_TEST_RESOLVE_MS milliseconds (default 60000) and then fails with
 * EAI_NONAME; every other name is the C library's own lookup.  Offline and
 * deterministic, unlike a real resolver made slow.
 */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <netdb.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define SLOW_SUFFIX ".slow.invalid"

static int slow_name(const char *node)
{
    size_t n = node ? strlen(node) : 0, s = sizeof(SLOW_SUFFIX) - 1;

    return n > s && strcmp(node + n - s, SLOW_SUFFIX) == 0;
}

int getaddrinfo(const char *node, const char *service, const struct addrinfo *hints, struct addrinfo **res)
{
    int (*real)(const char *, const char *, const struct addrinfo *, struct addrinfo **) =
        (int (*)(const char *, const char *, const struct addrinfo *, struct addrinfo **))dlsym(RTLD_NEXT,
                                                                                                "getaddrinfo");
    const char *env = getenv("FCMD_TEST_RESOLVE_MS");
    long ms = env ? strtol(env, NULL, 10) : 60000;
    struct timespec ts = {.tv_sec = ms / 1000, .tv_nsec = (ms % 1000) * 1000000};

    if (!slow_name(node))
        return real ? real(node, service, hints, res) : EAI_SYSTEM;
    while (nanosleep(&ts, &ts) != 0)
        ;
    return EAI_NONAME;
}
