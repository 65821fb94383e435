/*
 * tests/integration/fault_sync.c - a preloaded fault for the spool tests.
 *
 * fdatasync() and fsync() fail with EIO while the file named by
 * FCMD_TEST_FAIL_SYNC exists; otherwise they are the C library's own.  A
 * disk that refuses to sync is otherwise hard to come by on a test machine.
 * While the file named by FCMD_TEST_HOLD_SYNC exists they wait for it to go
 * first: a sync still running when the test wants it to.
 */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <errno.h>
#include <stdlib.h>
#include <time.h>
#include <unistd.h>

static int failing(void)
{
    const char *flag = getenv("FCMD_TEST_FAIL_SYNC");

    return flag != NULL && access(flag, F_OK) == 0;
}

static void hold(void)
{
    const char *flag = getenv("FCMD_TEST_HOLD_SYNC");
    const struct timespec tick = {0, 10 * 1000 * 1000};

    while (flag != NULL && access(flag, F_OK) == 0)
        nanosleep(&tick, NULL);
}

/* The C library's call by name, or EIO while the flag file exists. */
static int sync_or_fail(const char *name, int fd)
{
    int (*real)(int) = (int (*)(int))dlsym(RTLD_NEXT, name);

    hold();
    if (failing() || real == NULL) {
        errno = EIO;
        return -1;
    }
    return real(fd);
}

int fdatasync(int fd)
{
    return sync_or_fail("fdatasync", fd);
}

int fsync(int fd)
{
    return sync_or_fail("fsync", fd);
}
