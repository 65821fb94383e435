/*
 * shm/robust_mutex.h - the one kind of lock the shared region uses: a
 * process-shared robust mutex, so a process killed while it holds one
 * cannot wedge the others (the next locker is told EOWNERDEAD and repairs
 * or empties what it guards).
 */
#ifndef FCMD_SHM_ROBUST_MUTEX_H
#define FCMD_SHM_ROBUST_MUTEX_H

#include <pthread.h>

/* Initialises m in shared memory.  Returns 0 or -errno. */
static inline int robust_mutex_init(pthread_mutex_t *m)
{
    pthread_mutexattr_t attr;
    int err;

    if ((err = pthread_mutexattr_init(&attr)) != 0)
        return -err;
    if ((err = pthread_mutexattr_setpshared(&attr, PTHREAD_PROCESS_SHARED)) == 0 &&
        (err = pthread_mutexattr_setrobust(&attr, PTHREAD_MUTEX_ROBUST)) == 0)
        err = pthread_mutex_init(m, &attr);
    pthread_mutexattr_destroy(&attr);
    return -err;
}

#endif
