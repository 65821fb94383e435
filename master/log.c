/*
 * master/log.c - the process-wide log.
 *
 * The log's state is a handful of settings fixed by the master at start-up;
 * every process writes whole lines with one write() each.
 */
#include "log.h"

#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

static struct {
    int fd;
    const char *path;
    enum log_level level;
} logger = {STDERR_FILENO, NULL, LOG_INFO};

static const char *const level_names[] = {"error", "warn", "info", "debug"};

int log_open(const char *path)
{
    int fd;

    logger.path = path;
    if (path == NULL) {
        logger.fd = STDERR_FILENO;
        return 0;
    }
    fd = open(path, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0640);
    if (fd < 0)
        return -errno;
    if (logger.fd != STDERR_FILENO)
        close(logger.fd);
    logger.fd = fd;
    return 0;
}

int log_reopen(void)
{
    return logger.path ? log_open(logger.path) : 0;
}

void log_set_level(enum log_level level)
{
    logger.level = level;
}

static void log_line(enum log_level level, const char *suffix, const char *fmt, va_list ap)
{
    char line[2048];
    struct timeval tv;
    struct tm tm;
    size_t n;
    int m;

    gettimeofday(&tv, NULL);
    gmtime_r(&tv.tv_sec, &tm);
    n = strftime(line, sizeof(line), "%Y-%m-%dT%H:%M:%S", &tm);
    m = snprintf(line + n, sizeof(line) - n, ".%03ldZ %s [%d] ", (long)(tv.tv_usec / 1000), level_names[level],
                 (int)getpid());
    n += m > 0 ? (size_t)m : 0;
    m = vsnprintf(line + n, sizeof(line) - n, fmt, ap);
    n = m < 0 ? n : n + (size_t)m >= sizeof(line) - 1 ? sizeof(line) - 2 : n + (size_t)m;
    if (suffix != NULL && (m = snprintf(line + n, sizeof(line) - n, "%s", suffix)) > 0)
        n = n + (size_t)m >= sizeof(line) - 1 ? sizeof(line) - 2 : n + (size_t)m;
    line[n++] = '\n';
    /* A log that cannot be written has nowhere to report to. */
    if (write(logger.fd, line, n) < 0)
        (void)0;
}

void log_msg(enum log_level level, const char *fmt, ...)
{
    va_list ap;

    if (level > logger.level)
        return;
    va_start(ap, fmt);
    log_line(level, NULL, fmt, ap);
    va_end(ap);
}

void log_limited(struct log_limit *l, enum log_level level, const char *fmt, ...)
{
    struct timespec ts;
    unsigned long long now;
    char suffix[96] = "";
    va_list ap;

    if (level > logger.level)
        return;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    now = (unsigned long long)ts.tv_sec * 1000 + (unsigned long long)ts.tv_nsec / 1000000 + 1;
    if (l->last_ms != 0 && now - l->last_ms < l->interval_ms) {
        l->held++;
        return;
    }
    if (l->held > 0)
        snprintf(suffix, sizeof(suffix), " (and %llu more like it in the last %llu s)", l->held,
                 (now - l->last_ms + 500) / 1000);
    l->last_ms = now;
    l->held = 0;
    va_start(ap, fmt);
    log_line(level, suffix, fmt, ap);
    va_end(ap);
}
