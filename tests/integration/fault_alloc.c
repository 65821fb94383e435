/*
 * tests/integration/fault_alloc.c - a preloaded fault for the connection
 * tests: memory that runs out just as a connection is accepted.
 *
 * While the file named by FCMD_TEST_FAIL_ALLOC exists, every accept4() that
 * returns a connection makes the next calloc() on the same thread fail with
 * ENOMEM.  In a worker that calloc() is the accept callback's allocation of
 * the connection (child/http/conn.c): libuv accepts with accept4() and calls
 * the callback at once, allocating nothing in between.  Every other call is
 * the C library's own (or the sanitizers', in the sanitizer build).
 */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <errno.h>
#include <stddef.h>
#include <stdlib.h>
#include <sys/socket.h>
#include <unistd.h>

static __thread int fail_next; /* this thread's next calloc() fails */
static __thread int resolving; /* inside dlsym(), which must not recurse */

int accept4(int fd, struct sockaddr *addr, socklen_t *len, int flags)
{
    int (*real)(int, struct sockaddr *, socklen_t *, int) =
        (int (*)(int, struct sockaddr *, socklen_t *, int))dlsym(RTLD_NEXT, "accept4");
    const char *flag = getenv("FCMD_TEST_FAIL_ALLOC");
    int rc;

    if (real == NULL) {
        errno = ENOSYS;
        return -1;
    }
    rc = real(fd, addr, len, flags);
    if (rc >= 0 && flag != NULL && access(flag, F_OK) == 0)
        fail_next = 1;
    return rc;
}

void *calloc(size_t n, size_t size)
{
    static void *(*real)(size_t, size_t);

    if (fail_next) {
        fail_next = 0;
        errno = ENOMEM;
        return NULL;
    }
    if (real == NULL) {
        /* glibc's dlsym() allocates nothing when it finds the symbol; should
         * it ask anyway, it is told no rather than sent round again. */
        if (resolving)
            return NULL;
        resolving = 1;
        real = (void *(*)(size_t, size_t))dlsym(RTLD_NEXT, "calloc");
        resolving = 0;
        if (real == NULL) {
            errno = ENOMEM;
            return NULL;
        }
    }
    return real(n, size);
}
