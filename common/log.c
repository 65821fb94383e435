/*
 * common/log.c - the process-wide log.
 *
 * The logger owns a copy of its path: the settings that named it are freed
 * by a reload, and the log is reopened at that path long afterwards (SIGUSR1,
 * logrotate).  Every process writes whole lines with one write() each, and
 * names URLs through log_url(), which leaves their passwords out.
 */
#include "log.h"

#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

static struct {
    int fd;
    char *path; /* owned; NULL while the log is stderr */
    enum log_level level;
} logger = {STDERR_FILENO, NULL, LOG_INFO};

static const char *const level_names[] = {"error", "warn", "info", "debug"};

static int open_file(const char *path)
{
    int fd = open(path, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0640);

    return fd < 0 ? -errno : fd;
}

/* Makes fd the log, closing the one it replaces. */
static void use_fd(int fd)
{
    if (logger.fd != STDERR_FILENO && logger.fd != fd)
        close(logger.fd);
    logger.fd = fd;
}

int log_open(const char *path)
{
    char *copy;
    int fd;

    if (path == NULL) {
        use_fd(STDERR_FILENO);
        free(logger.path);
        logger.path = NULL;
        return 0;
    }
    if ((copy = strdup(path)) == NULL)
        return -ENOMEM;
    if ((fd = open_file(path)) < 0) {
        free(copy);
        return fd;
    }
    use_fd(fd);
    free(logger.path);
    logger.path = copy;
    return 0;
}

int log_reopen(void)
{
    int fd;

    if (logger.path == NULL)
        return 0;
    if ((fd = open_file(logger.path)) < 0)
        return fd;
    use_fd(fd);
    return 0;
}

const char *log_path(void)
{
    return logger.path;
}

/* The one redaction of a URL: from after the scheme up to the userinfo's
 * '@' becomes "***".  The '@' is the last one within the authority (up to
 * the first '/', '?' or '#'), or with any_at the last one of all, for a
 * URL whose reader lets a password hold those (fcmd's --redis). */
static const char *redact(const char *url, int any_at, char *out, size_t outlen)
{
    const char *sep = strstr(url, "://");
    const char *host = sep != NULL ? sep + 3 : url;
    size_t end = any_at ? strlen(host) : strcspn(host, "/?#");
    const char *at = memrchr(host, '@', end);

    if (at == NULL)
        snprintf(out, outlen, "%s", url);
    else
        snprintf(out, outlen, "%.*s***%s", (int)(host - url), url, at);
    return out;
}

const char *log_url(const char *url, char *out, size_t outlen)
{
    return redact(url, 0, out, outlen);
}

const char *log_url_any_at(const char *url, char *out, size_t outlen)
{
    return redact(url, 1, out, outlen);
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

static unsigned long long monotonic_ms(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (unsigned long long)ts.tv_sec * 1000 + (unsigned long long)ts.tv_nsec / 1000000 + 1;
}

void log_limit_flush(struct log_limit *l, enum log_level level, const char *what, int force)
{
    unsigned long long now = monotonic_ms();

    if (l->held == 0 || (!force && now - l->last_ms < l->interval_ms))
        return;
    log_msg(level, "%s: %llu more like the last one in the last %llu s", what, l->held,
            (now - l->last_ms + 500) / 1000);
    l->held = 0;
    l->last_ms = now;
}

void log_limited(struct log_limit *l, enum log_level level, const char *fmt, ...)
{
    unsigned long long now;
    char suffix[96] = "";
    va_list ap;

    if (level > logger.level)
        return;
    now = monotonic_ms();
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
