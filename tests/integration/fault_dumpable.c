/*
 * tests/integration/fault_dumpable.c - a preloaded fault for the secrets
 * tests: a master that started holding no secret.
 *
 * prctl(PR_SET_DUMPABLE, 0) does nothing (and succeeds) while the file named
 * by FCMD_TEST_KEEP_DUMPABLE exists, so a master started then stays dumpable,
 * as one holding no secret would.  fcmd does not start without an upstream
 * credential, and every credential is a secret, so there is no other way to
 * show what a reload does to a dumpable master.  Every other prctl() is the
 * kernel's.
 */
#define _GNU_SOURCE
#include <stdarg.h>
#include <stdlib.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <unistd.h>

int prctl(int option, ...)
{
    const char *flag = getenv("FCMD_TEST_KEEP_DUMPABLE");
    unsigned long arg[4];
    va_list ap;

    /* As the C library's own wrapper does: the kernel reads four arguments
     * whatever the option, and ignores those it does not use. */
    va_start(ap, option);
    for (int i = 0; i < 4; i++)
        arg[i] = va_arg(ap, unsigned long);
    va_end(ap);
    if (option == PR_SET_DUMPABLE && arg[0] == 0 && flag != NULL && access(flag, F_OK) == 0)
        return 0;
    return (int)syscall(SYS_prctl, option, arg[0], arg[1], arg[2], arg[3]);
}
