/*
 * child/upstream/fcm/provider.c - FCM in the worker's table of providers: an
 * app with a service account speaks HTTP v1 (v1.c), one with a legacy API
 * key the legacy protocol (legacy.c); /gcm/send's body is the generic one.
 */
#include "../../../common/options.h"
#include "legacy.h"
#include "v1.h"

static int fcm_configured(const struct fcmd_options *o, int broken)
{
    return o->sa != NULL || o->apikey != NULL || (broken && (o->service_account || o->apikey_file));
}

static struct upstream *fcm_create(const struct fcmd_options *o, struct shm_app *shared)
{
    (void)shared;
    return o->sa != NULL ? v1_create(o) : legacy_create(o);
}

static const char *fcm_url(const struct fcmd_options *o)
{
    return o->gcm_url;
}

const struct provider fcm_provider = {fcm_configured, fcm_create, fcm_url, NULL};
