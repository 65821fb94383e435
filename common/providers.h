/*
 * common/providers.h - the providers fcmd speaks, one line each.
 *
 * Everything that is sized or named by provider comes from this list: the
 * upstream kinds of a request (child/core/request.h), the shared counters
 * per upstream and their names in the report, /metrics and Graphite
 * (shm/region.h), the send endpoints and their metric labels
 * (shm/metrics.h, child/http/http.c), and the worker's table of each
 * provider's hooks (child/child.c, which finds NAME_provider in the
 * provider's folder under child/upstream/).
 *
 * X(ID, NAME, LABEL, PATH, ENDPOINT, HINT):
 *   ID        UPSTREAM_ID, EP_SEND_ID
 *   NAME      the provider's word (a C identifier): counters, logs, and
 *             the symbol NAME_provider its folder defines
 *   LABEL     how messages write it ("APNs")
 *   PATH      its send endpoint
 *   ENDPOINT  that endpoint's label in fcmd_http_requests_total
 *   HINT      the options that configure it, for the 404 when none do
 *
 * The position in the list is stored: a spool record and a queued entry in
 * Redis name their upstream by it.  Append, never reorder or remove.
 */
#ifndef FCMD_COMMON_PROVIDERS_H
#define FCMD_COMMON_PROVIDERS_H

#define FCMD_PROVIDERS(X)                                                                                              \
    X(FCM, fcm, "FCM", "/gcm/send", "send", "--service-account or --apikey-file")                                      \
    X(APNS, apns, "APNs", "/apns/send", "apns_send", "--apns-key, --apns-key-id and --apns-team-id")                   \
    X(WEBPUSH, webpush, "Web Push", "/webpush/send", "webpush_send", "--vapid-key and --vapid-subject")

#define FCMD_PROVIDER_ONE(ID, NAME, LABEL, PATH, ENDPOINT, HINT) +1
enum { PROVIDERS = 0 FCMD_PROVIDERS(FCMD_PROVIDER_ONE) }; /* how many */
#undef FCMD_PROVIDER_ONE

#endif
