/*
 * common/webpush_allow.h - which push services a Web Push endpoint may
 * name (--webpush-allow), and which internal addresses it may reach.
 *
 * A request names the URL fcmd posts to, so the list is the server-side
 * request forgery guard: the master checks the option before it forks, the
 * worker checks each endpoint's host at intake, and the sender checks the
 * address curl is about to connect to (a public name may resolve to an
 * internal address).  An internal address is reached only when the list
 * names that host or address literally, never through a "*." entry.
 */
#ifndef FCMD_COMMON_WEBPUSH_ALLOW_H
#define FCMD_COMMON_WEBPUSH_ALLOW_H

#include <stddef.h>
#include <sys/socket.h>

/* The public push services: Chrome and Edge's, Firefox's, Safari's, Windows'. */
#define WEBPUSH_ALLOW_DEFAULT "fcm.googleapis.com,*.push.services.mozilla.com,web.push.apple.com,*.notify.windows.com"
#define WEBPUSH_ALLOW_MAX 4096 /* bytes of the list */

/* Whether list (comma-separated host names, "*.name" entries, IPv4 or
 * IPv6 literals, the latter bracketed or not) is well formed.  Returns 0,
 * or -1 with a one-line reason in err naming the entry. */
int webpush_allow_check(const char *list, char *err, size_t errlen);

/* Whether host (n bytes; an IPv6 literal in brackets or not) matches an
 * entry of list: equal, case-insensitive, or under a "*." entry's domain
 * (a subdomain, not the domain itself). */
int webpush_allow_host(const char *list, const char *host, size_t n);

/* Whether list names host (n bytes) literally: an entry equal to it, not a
 * "*." entry. */
int webpush_allow_literal(const char *list, const char *host, size_t n);

/* Whether addr is an address a push service cannot be at: loopback,
 * private (10/8, 172.16/12, 192.168/16, 100.64/10, fc00::/7), link-local,
 * unspecified, multicast, broadcast, or an IPv4-mapped or -translated IPv6
 * address of one of those.  Unknown families count as internal. */
int webpush_addr_internal(const struct sockaddr *addr);

/* addr's text (an IPv4 or IPv6 literal, unbracketed) in out; "" when it
 * has none. */
void webpush_addr_text(const struct sockaddr *addr, char *out, size_t cap);

#endif
