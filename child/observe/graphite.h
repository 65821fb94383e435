/*
 * child/observe/graphite.h - pushing the counters to Graphite (carbon's plaintext
 * protocol over TCP) from one child, on its own loop.
 */
#ifndef FCMD_CHILD_OBSERVE_GRAPHITE_H
#define FCMD_CHILD_OBSERVE_GRAPHITE_H

#include <uv.h>

struct fcmd_options;
struct shm_region;
struct graphite;

/* Starts sending every graphite_interval seconds.  NULL when out of memory. */
struct graphite *graphite_start(uv_loop_t *loop, const struct fcmd_options *o, struct shm_region *shm);

/* Stops sending and closes the connection (when the child stops); g is
 * freed once libuv has closed its timer and socket and given back a lookup
 * under way. */
void graphite_stop(struct graphite *g);

#endif
