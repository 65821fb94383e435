/*
 * master/supervise.h - the master's cycle: fork children, reap and respawn
 * them, and act on signals.
 */
#ifndef FCMD_MASTER_SUPERVISE_H
#define FCMD_MASTER_SUPERVISE_H

struct fcmd_options;
struct shm_region;

/* Runs until SIGTERM/SIGINT has stopped every child.  Returns the exit status. */
int supervise_run(const struct fcmd_options *o, int listen_fd, struct shm_region *shm);

#endif
