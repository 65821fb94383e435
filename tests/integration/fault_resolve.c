/*
 * tests/integration/fault_resolve.c - a preloaded fault for the fleet tests:
 * a DNS server that answers late, or never.
 *
 * getaddrinfo() of a name ending in ".slow.invalid" waits
 * FCMD_TEST_RESOLVE_MS milliseconds (default 60000) and then fails with
 * EAI_NONAME.  A name ending in ".map.invalid" resolves to the IPv4 address
 * written in the file FCMD_TEST_RESOLVE_FILE names, read at each lookup: a DNS
 * name a failover moves.  Every other name is the C library's own lookup.
 * Offline and deterministic, unlike a real resolver.
 */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <netdb.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <stdio.h>

static int ends_with(const char *node, const char *suffix)
{
    size_t n = node ? strlen(node) : 0, s = strlen(suffix);

    return n > s && strcmp(node + n - s, suffix) == 0;
}

/* The address in FCMD_TEST_RESOLVE_FILE, as the C library would give it. */
static int mapped(const char *service, const struct addrinfo *hints, struct addrinfo **res,
                  int (*real)(const char *, const char *, const struct addrinfo *, struct addrinfo **))
{
    const char *path = getenv("FCMD_TEST_RESOLVE_FILE");
    char addr[64] = "";
    struct addrinfo numeric = {.ai_family = AF_INET, .ai_flags = AI_NUMERICHOST};
    FILE *f = path ? fopen(path, "r") : NULL;

    if (f == NULL)
        return EAI_NONAME;
    if (fgets(addr, sizeof(addr), f) == NULL)
        addr[0] = '\0';
    fclose(f);
    addr[strcspn(addr, " \r\n")] = '\0';
    if (hints != NULL)
        numeric.ai_socktype = hints->ai_socktype;
    return real(addr, service, &numeric, res);
}

int getaddrinfo(const char *node, const char *service, const struct addrinfo *hints, struct addrinfo **res)
{
    int (*real)(const char *, const char *, const struct addrinfo *, struct addrinfo **) =
        (int (*)(const char *, const char *, const struct addrinfo *, struct addrinfo **))dlsym(RTLD_NEXT,
                                                                                                "getaddrinfo");
    const char *env = getenv("FCMD_TEST_RESOLVE_MS");
    long ms = env ? strtol(env, NULL, 10) : 60000;
    struct timespec ts = {.tv_sec = ms / 1000, .tv_nsec = (ms % 1000) * 1000000};

    if (real == NULL)
        return EAI_SYSTEM;
    if (ends_with(node, ".map.invalid"))
        return mapped(service, hints, res, real);
    if (!ends_with(node, ".slow.invalid"))
        return real(node, service, hints, res);
    while (nanosleep(&ts, &ts) != 0)
        ;
    return EAI_NONAME;
}
