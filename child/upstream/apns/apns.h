/*
 * child/upstream/apns/apns.h - the APNs adapter (apns.c), for /apns/send.
 */
#ifndef FCMD_CHILD_UPSTREAM_APNS_APNS_H
#define FCMD_CHILD_UPSTREAM_APNS_APNS_H

#include "../upstream.h"

/* The adapter, signing with the provider token its app shares with every
 * worker.  NULL when out of memory. */
struct provider_token;
struct upstream *apns_create(const struct fcmd_options *o, struct provider_token *token);

/* Reads one APNs answer into out; *expired says Apple called the provider
 * token expired, detail gets Apple's reason.  Returns 0. */
int apns_classify(const struct upstream_result *res, struct outcome *out, int *expired, char *detail, size_t dlen);

#endif
