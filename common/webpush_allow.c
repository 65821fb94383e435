/*
 * common/webpush_allow.c - the --webpush-allow list and the internal
 * address ranges a Web Push request must not reach.
 *
 * The list is kept as the operator's text and read entry by entry on each
 * check: it is short, and a host is checked once per request at intake and
 * once per new connection in the sender.
 */
#include "webpush_allow.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>

#define HOST_MAX 253

/* Strips one pair of brackets from an IPv6 literal. */
static void unbracket(const char **s, size_t *n)
{
    if (*n >= 2 && (*s)[0] == '[' && (*s)[*n - 1] == ']')
        (*s)++, *n -= 2;
}

static int is_ip_literal(const char *s, size_t n)
{
    char text[64];
    unsigned char bin[16];

    unbracket(&s, &n);
    if (n == 0 || n >= sizeof(text))
        return 0;
    memcpy(text, s, n);
    text[n] = '\0';
    return inet_pton(AF_INET, text, bin) == 1 || inet_pton(AF_INET6, text, bin) == 1;
}

static int is_host_name(const char *s, size_t n)
{
    size_t label = 0;

    if (n == 0 || n > HOST_MAX || s[0] == '.' || s[n - 1] == '.')
        return 0;
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c == '.') {
            if (label == 0)
                return 0;
            label = 0;
            continue;
        }
        if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '-' || c == '_'))
            return 0;
        if (++label > 63)
            return 0;
    }
    return 1;
}

/* Calls fn on each entry of list (trimmed of blanks) until it returns non-zero. */
static int each(const char *list, int (*fn)(const char *e, size_t n, void *arg), void *arg)
{
    const char *p = list;

    while (p != NULL && *p != '\0') {
        const char *comma = strchr(p, ','), *end = comma ? comma : p + strlen(p);
        const char *s = p;
        size_t n;
        int rc;

        while (s < end && (*s == ' ' || *s == '\t'))
            s++;
        n = (size_t)(end - s);
        while (n > 0 && (s[n - 1] == ' ' || s[n - 1] == '\t'))
            n--;
        if ((rc = fn(s, n, arg)) != 0)
            return rc;
        p = comma ? comma + 1 : NULL;
    }
    return 0;
}

struct check {
    char *err;
    size_t errlen;
    size_t entries;
};

static int check_entry(const char *e, size_t n, void *arg)
{
    struct check *c = arg;
    const char *name = e;
    size_t len = n;

    c->entries++;
    if (n == 0) {
        snprintf(c->err, c->errlen, "--webpush-allow: entry %zu is empty", c->entries);
        return -1;
    }
    if (n >= 2 && e[0] == '*' && e[1] == '.')
        name += 2, len -= 2;
    if (is_ip_literal(e, n) || (is_host_name(name, len) && !(name != e && is_ip_literal(name, len))))
        return 0;
    snprintf(c->err, c->errlen, "--webpush-allow: entry %zu (\"%.*s\") is not a host name, a *.domain or an IP address",
             c->entries, (int)(n > 80 ? 80 : n), e);
    for (char *q = c->err; *q; q++) /* one line, whatever the entry held */
        if ((unsigned char)*q < 0x20 || *q == 0x7f)
            *q = '?';
    return -1;
}

int webpush_allow_check(const char *list, char *err, size_t errlen)
{
    struct check c = {err, errlen, 0};

    if (strlen(list) > WEBPUSH_ALLOW_MAX) {
        snprintf(err, errlen, "--webpush-allow: the list is longer than %d bytes", WEBPUSH_ALLOW_MAX);
        return -1;
    }
    if (each(list, check_entry, &c) != 0)
        return -1;
    if (c.entries == 0) {
        snprintf(err, errlen, "--webpush-allow: the list is empty");
        return -1;
    }
    return 0;
}

struct match {
    const char *host;
    size_t n;
    int literal_only;
};

static int match_entry(const char *e, size_t n, void *arg)
{
    const struct match *m = arg;
    const char *h = m->host;
    size_t hn = m->n;

    unbracket(&e, &n);
    unbracket(&h, &hn);
    if (n == hn && strncasecmp(e, h, n) == 0)
        return 1;
    if (m->literal_only || n < 3 || e[0] != '*' || e[1] != '.')
        return 0;
    /* "*.example.com" takes "a.example.com", not "example.com" or "xexample.com". */
    return hn > n - 1 && strncasecmp(h + hn - (n - 1), e + 1, n - 1) == 0;
}

int webpush_allow_host(const char *list, const char *host, size_t n)
{
    struct match m = {host, n, 0};

    return n > 0 && each(list, match_entry, &m) == 1;
}

int webpush_allow_literal(const char *list, const char *host, size_t n)
{
    struct match m = {host, n, 1};

    return n > 0 && each(list, match_entry, &m) == 1;
}

static int v4_internal(uint32_t a)
{
    return (a >> 24) == 0 ||                   /* 0/8: this network, unspecified */
           (a >> 24) == 10 ||                  /* 10/8 */
           (a >> 24) == 127 ||                 /* loopback */
           (a >> 22) == ((100u << 2) | 1) ||   /* 100.64/10: carrier-grade NAT */
           (a >> 16) == ((169u << 8) | 254) || /* link-local */
           (a >> 20) == ((172u << 4) | 1) ||   /* 172.16/12 */
           (a >> 16) == ((192u << 8) | 168) || /* 192.168/16 */
           (a >> 8) == ((192u << 16) | 0) ||   /* 192.0.0/24: protocol assignments */
           (a >> 28) >= 14;                    /* multicast, reserved, broadcast */
}

int webpush_addr_internal(const struct sockaddr *addr)
{
    if (addr->sa_family == AF_INET)
        return v4_internal(ntohl(((const struct sockaddr_in *)addr)->sin_addr.s_addr));
    if (addr->sa_family == AF_INET6) {
        const unsigned char *b = ((const struct sockaddr_in6 *)addr)->sin6_addr.s6_addr;
        static const unsigned char mapped[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};
        static const unsigned char nat64[12] = {0, 0x64, 0xff, 0x9b, 0, 0, 0, 0, 0, 0, 0, 0};
        static const unsigned char zero[16];
        if (memcmp(b, mapped, 12) == 0 || memcmp(b, nat64, 12) == 0 || memcmp(b, zero, 12) == 0)
            return v4_internal((uint32_t)b[12] << 24 | (uint32_t)b[13] << 16 | (uint32_t)b[14] << 8 | b[15]) ||
                   memcmp(b, zero, 12) == 0;              /* ::, ::1 and the old IPv4-compatible form */
        return (b[0] & 0xfe) == 0xfc ||                   /* fc00::/7 unique local */
               (b[0] == 0xfe && (b[1] & 0xc0) == 0x80) || /* fe80::/10 link-local */
               (b[0] == 0xfe && (b[1] & 0xc0) == 0xc0) || /* fec0::/10 old site-local */
               b[0] == 0xff;                              /* multicast */
    }
    return 1;
}

void webpush_addr_text(const struct sockaddr *addr, char *out, size_t cap)
{
    const void *bin = addr->sa_family == AF_INET    ? (const void *)&((const struct sockaddr_in *)addr)->sin_addr
                      : addr->sa_family == AF_INET6 ? (const void *)&((const struct sockaddr_in6 *)addr)->sin6_addr
                                                    : NULL;

    if (cap > 0)
        out[0] = '\0';
    if (bin == NULL || inet_ntop(addr->sa_family, bin, out, (socklen_t)cap) == NULL)
        if (cap > 0)
            out[0] = '\0';
}
