/*
 * child/upstream/apns/provider.c - APNs in the worker's table of providers:
 * an app sends to Apple when its settings hold a .p8 signing key.
 */
#include "../../../common/options.h"
#include "../../../shm/region.h"
#include "apns.h"
#include "apns_request.h"

static int apns_configured(const struct fcmd_options *o, int broken)
{
    return o->apns_pkey != NULL || (broken && o->apns_key != NULL);
}

static struct upstream *apns_provider_create(const struct fcmd_options *o, struct shm_app *shared)
{
    return apns_create(o, &shared->apns_token);
}

static const char *apns_url(const struct fcmd_options *o)
{
    return o->apns_url;
}

const struct provider apns_provider = {apns_configured, apns_provider_create, apns_url, &apns_request_rules};
