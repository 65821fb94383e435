/*
 * child/entry.h - the one way into a worker from the master.
 *
 * The master forks and then calls child_main; it needs nothing else of the
 * worker, so this header holds only that, with forward declarations, and
 * no header of the worker's (nor h2o's, libuv's or curl's) reaches master/.
 */
#ifndef FCMD_CHILD_ENTRY_H
#define FCMD_CHILD_ENTRY_H

struct fcmd_options;
struct shm_region;

/* Runs a child on the inherited listen descriptor; the reporter is the one
 * child that sends to Graphite.  Returns its exit status. */
int child_main(const struct fcmd_options *o, int listen_fd, struct shm_region *shm, unsigned slot, int reporter);

#endif
