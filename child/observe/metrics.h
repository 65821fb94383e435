/*
 * child/observe/metrics.h - the shared counters as text: Prometheus exposition for
 * /metrics and carbon's plaintext protocol for Graphite.  Both print the
 * same series, from one table.
 */
#ifndef FCMD_CHILD_OBSERVE_METRICS_H
#define FCMD_CHILD_OBSERVE_METRICS_H

#include <stdint.h>

#include "../core/buf.h"

struct shm_totals;

/* The exposition of t; upstream names the adapter in fcmd_build_info. */
void metrics_prometheus(struct buf *b, const struct shm_totals *t, const char *upstream);

struct shm_region;
struct fcmd_options;
/* fcmd_app_targets_total{app,upstream,outcome} for the default app ("default")
 * and each app o names, when it names any; the apps with a client token of
 * their own only when protected_too is set (the instance's token reads). */
void metrics_apps(struct buf *b, const struct shm_region *r, const struct fcmd_options *o, int protected_too);

/* Lines "prefix.name value timestamp\n". */
void metrics_graphite(struct buf *b, const struct shm_totals *t, const char *prefix, long long timestamp);

#endif
