/*
 * tests/unit/test_crc32c.c - CRC-32C: RFC 3720's known answers, every table
 * entry against the bitwise definition, and a checksum that writes nothing
 * (the loop and libuv's thread pool compute checksums at the same time).
 */
#include "cmocka_all.h"

#include <link.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include "../../child/store/crc32c.h"

/* CRC-32C one bit at a time, straight from the polynomial. */
static uint32_t bitwise(uint32_t crc, const unsigned char *p, size_t n)
{
    crc = ~crc;
    while (n--) {
        crc ^= *p++;
        for (int k = 0; k < 8; k++)
            crc = crc & 1 ? (crc >> 1) ^ 0x82F63B78u : crc >> 1;
    }
    return ~crc;
}

/* RFC 3720, B.4 "CRC Examples", and the usual check value. */
static void known_answers(void **state)
{
    unsigned char b[32];

    (void)state;
    memset(b, 0, sizeof(b));
    assert_int_equal(crc32c(0, b, sizeof(b)), 0x8A9136AAu);
    memset(b, 0xff, sizeof(b));
    assert_int_equal(crc32c(0, b, sizeof(b)), 0x62A8AB43u);
    for (int i = 0; i < 32; i++)
        b[i] = (unsigned char)i;
    assert_int_equal(crc32c(0, b, sizeof(b)), 0x46DD794Eu);
    for (int i = 0; i < 32; i++)
        b[i] = (unsigned char)(31 - i);
    assert_int_equal(crc32c(0, b, sizeof(b)), 0x113FDB5Cu);
    assert_int_equal(crc32c(0, "123456789", 9), 0xE3069283u);
    assert_int_equal(crc32c(0, "", 0), 0);
}

/* One byte from 0 reads one table entry, so the 256 bytes read them all. */
static void every_table_entry(void **state)
{
    unsigned char buf[4096];
    uint32_t rng = 1;

    (void)state;
    for (unsigned v = 0; v < 256; v++) {
        unsigned char c = (unsigned char)v;
        assert_int_equal(crc32c(0, &c, 1), bitwise(0, &c, 1));
    }
    for (size_t i = 0; i < sizeof(buf); i++) {
        rng = rng * 1103515245u + 12345u;
        buf[i] = (unsigned char)(rng >> 16);
    }
    assert_int_equal(crc32c(0, buf, sizeof(buf)), bitwise(0, buf, sizeof(buf)));
    assert_int_equal(crc32c(crc32c(0, buf, 1000), buf + 1000, sizeof(buf) - 1000), bitwise(0, buf, sizeof(buf)));
}

/* Makes the executable's writable segments (.data, .bss, its GOT) read-only:
 * the first object dl_iterate_phdr() names is the program itself. */
static int protect_program(struct dl_phdr_info *info, size_t size, void *arg)
{
    uintptr_t page = *(const long *)arg;

    (void)size;
    for (int i = 0; i < info->dlpi_phnum; i++) {
        const ElfW(Phdr) *ph = &info->dlpi_phdr[i];
        uintptr_t from = (info->dlpi_addr + ph->p_vaddr) & ~(page - 1);
        uintptr_t to = (info->dlpi_addr + ph->p_vaddr + ph->p_memsz + page - 1) & ~(page - 1);
        if (ph->p_type == PT_LOAD && (ph->p_flags & PF_W) && mprotect((void *)from, to - from, PROT_READ) != 0)
            return -1;
    }
    return 1; /* the program only */
}

/* The check of writes_nothing, in a process of its own that has computed no
 * checksum before: it makes the program's writable data read-only, then
 * computes one, and dies of SIGSEGV if crc32c() writes there.  From the
 * mprotect() on, nothing may bind a symbol lazily (that writes the GOT):
 * syscall() is bound by its first call, before. */
static int checksum_read_only(void)
{
    long page = sysconf(_SC_PAGESIZE);
    uint32_t crc;

    syscall(SYS_getpid);
    if (page <= 0 || dl_iterate_phdr(protect_program, &page) != 1)
        syscall(SYS_exit_group, 3);
    crc = crc32c(0, "123456789", 9);
    syscall(SYS_exit_group, crc == 0xE3069283u ? 0 : 1);
    return 1;
}

/* crc32c() runs on the worker's loop and on libuv's thread pool at the same
 * time (a spool's adoption), so it may write no memory of its own: a table
 * filled at the first call is a data race, and a thread that sees it half
 * filled computes a wrong checksum.  The check runs in a fresh copy of this
 * program, since this one has filled any such table already. */
static void writes_nothing(void **state)
{
    int status;
    pid_t pid;

    (void)state;
    pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        execl("/proc/self/exe", "test_crc32c", "--checksum-read-only", (char *)NULL);
        _exit(4);
    }
    assert_int_equal(waitpid(pid, &status, 0), pid);
    if (WIFSIGNALED(status))
        fail_msg("crc32c() writes memory of its own: killed by signal %d", WTERMSIG(status));
    assert_true(WIFEXITED(status));
    assert_int_equal(WEXITSTATUS(status), 0);
}

int main(int argc, char **argv)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(known_answers),
        cmocka_unit_test(every_table_entry),
        cmocka_unit_test(writes_nothing),
    };

    if (argc == 2 && strcmp(argv[1], "--checksum-read-only") == 0)
        return checksum_read_only();
    return cmocka_run_group_tests_name("crc32c", tests, NULL, NULL);
}
