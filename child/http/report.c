/*
 * child/http/report.c - /gcm/report: the totals of this instance (every
 * worker's slot of the shared region) or, with --redis, of the fleet as the
 * last flush brought them, and per app with ?app=.  Its keys and their
 * order are the counter table's (shm/metrics.h).
 */
#include "endpoints.h"
#include "query.h"
#include "../../common/log.h"
#include "../../common/options.h"
#include "../../shm/region.h"
#include "../core/buf.h"
#include "../fleet/fleet.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>

#define U(x) ((unsigned long long)(x))

enum scope { SCOPE_BAD = -1, SCOPE_UNSAID, SCOPE_FLEET, SCOPE_LOCAL };

/* ?scope=fleet or ?scope=local; without --redis the instance is the fleet. */
static enum scope report_scope(const h2o_req_t *req)
{
    char v[8];
    long n = http_query_get(req, "scope", v, sizeof(v));

    if (n == -ENOENT)
        return SCOPE_UNSAID;
    if (n == 5 && memcmp(v, "local", 5) == 0)
        return SCOPE_LOCAL;
    return n == 5 && memcmp(v, "fleet", 5) == 0 ? SCOPE_FLEET : SCOPE_BAD;
}

/* A row's key and value, after sep. */
static void add_key(struct buf *b, const char *sep, const struct shm_metric *m, uint64_t v)
{
    if (m->kind == SHM_GAUGE)
        buf_addf(b, "%s\"%s\":%lld", sep, m->name, (long long)(int64_t)v);
    else
        buf_addf(b, "%s\"%s\":%llu", sep, m->name, U(v));
}

void http_report_keys(struct buf *b, const struct shm_totals *t, unsigned want, int closing, const char *sep)
{
    for (unsigned place = 1; place <= shm_nmetrics; place++)
        for (size_t i = 0; i < shm_nmetrics; i++) {
            const struct shm_metric *m = &shm_metrics[i];
            if (m->report == place && (m->shows & want) && !(m->shows & SHM_CLOSING) == !closing) {
                add_key(b, sep, m, shm_metric_value(m, t));
                sep = ",";
            }
        }
}

/* The fleet's totals, as the last flush brought them (child/fleet/counters.c). */
static int respond_fleet(struct http_server *hs, h2o_req_t *req, const struct fleet_totals *t)
{
    struct buf b = BUF_INIT;

    buf_adds(&b, "{");
    http_report_keys(&b, &t->sums, SHM_FLEET, 0, "");
    buf_addf(&b, ",\"instances\":%llu,\"scope\":\"fleet\",\"redis\":\"ok\",\"age_ms\":%llu,\"upstream\":\"%s\"}\n",
             U(t->instances), U(t->age_ms), hs->upstream_name);
    http_respond_buf(req, "application/json", &b);
    buf_free(&b);
    return 0;
}

/* An upstream's counters, or an app's: "accepted":..,... */
static void upstream_counters(struct buf *b, const _Atomic uint64_t *c)
{
    for (int k = 0; k < SHM_UP_NCOUNTERS; k++)
        buf_addf(b, "%s\"%s\":%llu", k ? "," : "", shm_counter_name((enum shm_counter)k),
                 U(atomic_load_explicit(&c[k], memory_order_relaxed)));
}

void http_report_upstreams(struct buf *b, const struct shm_totals *t)
{
    for (int u = 0; u < SHM_UPSTREAMS; u++) {
        buf_addf(b, ",\"%s\":{", shm_upstream_names[u]);
        for (int k = 0; k < SHM_UP_NCOUNTERS; k++)
            buf_addf(b, "%s\"%s\":%llu", k ? "," : "", shm_counter_name((enum shm_counter)k), U(t->by_upstream[u][k]));
        if (u == UPSTREAM_APNS)
            for (size_t i = 0; i < shm_nmetrics; i++)
                if (shm_metrics[i].shows & SHM_APNS)
                    add_key(b, ",", &shm_metrics[i], shm_metric_value(&shm_metrics[i], t));
        buf_adds(b, "}");
    }
}

/* Whether an upstream besides FCM is served: then each has its object. */
static int serves_another(struct http_server *hs)
{
    for (int u = 0; u < UPSTREAM_KINDS; u++)
        if (u != UPSTREAM_FCM && http_serves(hs, (enum upstream_kind)u))
            return 1;
    return 0;
}

/* One app's counters: {"accepted":..,...} summed over its upstreams. */
static void report_app_totals(struct buf *b, const struct shm_app *a)
{
    for (int k = 0; k < SHM_UP_NCOUNTERS; k++) {
        uint64_t n = 0;
        for (int u = 0; u < SHM_UPSTREAMS; u++)
            n += atomic_load_explicit(&((struct shm_app *)a)->by_upstream[u][k], memory_order_relaxed);
        buf_addf(b, "%s\"%s\":%llu", k ? "," : "", shm_counter_name((enum shm_counter)k), U(n));
    }
}

/* "apps": {"default": {...}, "NAME": {...}} after the totals. */
static void report_apps(struct http_server *hs, struct buf *b)
{
    buf_adds(b, ",\"apps\":{\"default\":{");
    report_app_totals(b, &hs->shm->apps[0]);
    buf_adds(b, "}");
    for (size_t i = 0; i < hs->opts->napps; i++) {
        if (!http_may_see_app(hs, (unsigned)i + 1))
            continue; /* an app with a token of its own: its counts are its token's to read */
        buf_addf(b, ",\"%s\":{", hs->opts->apps[i].name);
        report_app_totals(b, &hs->shm->apps[hs->opts->apps[i].shm]);
        buf_adds(b, "}");
    }
    buf_adds(b, "}");
}

/* /gcm/report?app=NAME: that app's counters, this instance's alone. */
static int respond_app_report(struct http_server *hs, h2o_req_t *req, int a)
{
    struct buf b = BUF_INIT;
    unsigned row;

    row = shm_app_row_of(hs->opts, (unsigned)a);
    buf_addf(&b, "{\"app\":\"%s\",", a == APP_DEFAULT ? "default" : options_app_name(hs->opts, (unsigned)a));
    report_app_totals(&b, &hs->shm->apps[row]);
    for (int u = 0; u < SHM_UPSTREAMS; u++) {
        buf_addf(&b, ",\"%s\":{", shm_upstream_names[u]);
        upstream_counters(&b, hs->shm->apps[row].by_upstream[u]);
        buf_adds(&b, "}");
    }
    buf_addf(&b, ",\"unhealthy\":%s}\n", http_app_healthy(hs, (unsigned)a) ? "false" : "true");
    http_respond_buf(req, "application/json", &b);
    buf_free(&b);
    return 0;
}

int http_on_report(struct http_server *hs, h2o_req_t *req)
{
    struct shm_totals t;
    struct fleet_totals ft;
    struct buf b = BUF_INIT;
    enum scope scope = report_scope(req);
    char app[APP_NAME_MAX + 2]; /* one byte more than a name: a longer value is no app's */
    long app_len = http_query_get(req, "app", app, sizeof(app));
    unsigned want =
        SHM_REPORT | (hs->opts->spool != NULL ? SHM_WITH_SPOOL : 0) | (hs->opts->sa != NULL ? SHM_WITH_SA : 0) |
        (options_has_webhook(hs->opts) ? SHM_WITH_WEBHOOK : 0);

    if (http_wrong_method(req, "GET"))
        return 0;
    if (scope == SCOPE_BAD)
        return http_error(req, 400, "scope is fleet or local");
    /* An app's token reads its app's counters alone, asked for or not. */
    if (app_len != -ENOENT || hs->who >= 1) {
        int a;
        if (http_app_pick(hs, req, app, app_len, &a) != 0)
            return 0;
        /* The fleet sums the totals only: an app's counters are this instance's. */
        if (hs->fleet != NULL && scope == SCOPE_FLEET)
            return http_error(req, 400, "an app's counters are this instance's alone: ask with scope=local");
        return respond_app_report(hs, req, a);
    }
    if (hs->fleet != NULL && scope != SCOPE_LOCAL && fleet_totals(hs->fleet, &ft) == 0)
        return respond_fleet(hs, req, &ft);
    shm_sum(hs->shm, &t);
    buf_adds(&b, "{");
    http_report_keys(&b, &t, want, 0, "");
    if (serves_another(hs))
        http_report_upstreams(&b, &t);
    if (hs->opts->napps > 0)
        report_apps(hs, &b);
    if (hs->fleet != NULL) /* this instance alone: asked for, or Redis cannot be reached */
        buf_addf(&b, ",\"scope\":\"local\",\"redis\":\"%s\"", fleet_ready(hs->fleet) ? "ok" : "unreachable");
    buf_addf(&b, ",\"upstream\":\"%s\"", hs->upstream_name);
    http_report_keys(&b, &t, SHM_REPORT, 1, ",");
    buf_adds(&b, "}\n");
    http_respond_buf(req, "application/json", &b);
    buf_free(&b);
    return 0;
}
