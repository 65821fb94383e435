/*
 * child/upstream/webpush/provider.c - Web Push in the worker's table of
 * providers: an app sends to browsers' push services when its settings
 * hold a VAPID key (with its subject, which the master requires).
 */
#include "../../../common/options.h"
#include "webpush.h"
#include "webpush_request.h"

static int webpush_configured(const struct fcmd_options *o, int broken)
{
    return o->vapid_pkey != NULL || (broken && o->vapid_key != NULL);
}

static struct upstream *webpush_provider_create(const struct fcmd_options *o, struct shm_app *shared)
{
    (void)shared;
    return webpush_create(o);
}

static const char *webpush_url(const struct fcmd_options *o)
{
    (void)o;
    return WEBPUSH_URL;
}

const struct provider webpush_provider = {webpush_configured, webpush_provider_create, webpush_url,
                                          &webpush_request_rules};
