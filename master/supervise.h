/*
 * master/supervise.h - the master's cycle: fork generations of children,
 * reap and respawn them, reload, and stop.
 */
#ifndef FCMD_MASTER_SUPERVISE_H
#define FCMD_MASTER_SUPERVISE_H

struct settings;
struct shm_region;

/* Runs until SIGTERM/SIGINT has stopped every child; argv is kept for
 * reloading.  Takes over settings and listen_fd.  Returns the exit status. */
int supervise_run(int argc, char **argv, struct settings *settings, int listen_fd, struct shm_region *shm);

#endif
