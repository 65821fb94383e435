/*
 * master/supervise.h - the master's cycle: fork generations of children,
 * reap and respawn them, reload, and stop.
 */
#ifndef FCMD_MASTER_SUPERVISE_H
#define FCMD_MASTER_SUPERVISE_H

#include <stddef.h>

struct settings;
struct shm_region;

/* Runs until SIGTERM/SIGINT has stopped every child; argv is kept for
 * reloading.  Takes over settings and listen_fd, and the pid file that
 * settings name: a reload replaces it, the exit removes it.  Returns the
 * exit status. */
int supervise_run(int argc, char **argv, struct settings *settings, int listen_fd, struct shm_region *shm);

/* Writes this process's pid to path, replacing the file whole (a reader
 * never sees half of it; a stale file of another owner goes too, where the
 * directory allows).  Returns 0, or -1 with a reason in err. */
int supervise_write_pidfile(const char *path, char *err, size_t errlen);

#endif
