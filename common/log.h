/*
 * common/log.h - one line per event: ISO 8601 time, level, pid, message.
 *
 * The master opens the log before forking and the children inherit it.  Each
 * line goes out in a single write() to an O_APPEND descriptor, so lines from
 * different processes never interleave.  Never pass secrets or token lists;
 * a URL goes through log_url() first, since it may carry a password.
 */
#ifndef FCMD_COMMON_LOG_H
#define FCMD_COMMON_LOG_H

#include <stddef.h>

enum log_level { LOG_ERROR, LOG_WARN, LOG_INFO, LOG_DEBUG };

/* Makes path the log, opened for appending (NULL = stderr); the logger keeps
 * its own copy of path.  Returns 0, or -errno with the previous log kept. */
int log_open(const char *path);

/* Reopens the same path (after logrotate moved it).  Returns 0 or -errno. */
int log_reopen(void);

/* The log's path, or NULL while it is stderr. */
const char *log_path(void);

void log_set_level(enum log_level level);

/* url written to out with the user and password before its host replaced
 * by three asterisks ("https://user:pw@host/p" is printed with "***@host/p"
 * after the scheme): print URLs only through this.  Returns out. */
const char *log_url(const char *url, char *out, size_t outlen);

/* The same for a URL whose password may hold '/', '?' or '#' (fcmd's
 * --redis reader takes the userinfo up to the last '@'): anything up to the
 * last '@' becomes "***". */
const char *log_url_any_at(const char *url, char *out, size_t outlen);

void log_msg(enum log_level level, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* A line that comes in floods (an upstream outage or a full disk fails
 * every request): printed at most once per interval_ms, saying how many
 * like it were held back since. */
struct log_limit {
    unsigned interval_ms;
    unsigned long long last_ms; /* when one was last printed, 0 for never */
    unsigned long long held;    /* not printed since */
};

#define LOG_LIMIT_INIT(ms) {(ms), 0, 0}

void log_limited(struct log_limit *l, enum log_level level, const char *fmt, ...) __attribute__((format(printf, 3, 4)));

/* Says how many lines like `what` were held back, if any, once the
 * interval since the last has passed (force: at once); called now and then,
 * so the tail of a flood is not silent. */
void log_limit_flush(struct log_limit *l, enum log_level level, const char *what, int force);

#define log_error(...) log_msg(LOG_ERROR, __VA_ARGS__)
#define log_warn(...) log_msg(LOG_WARN, __VA_ARGS__)
#define log_info(...) log_msg(LOG_INFO, __VA_ARGS__)
#define log_debug(...) log_msg(LOG_DEBUG, __VA_ARGS__)

#endif
