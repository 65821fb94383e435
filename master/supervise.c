/*
 * master/supervise.c - the master cycle.
 *
 * Signal handlers only set flags.  One loop around sigsuspend() acts on each
 * flag in one place:
 *   SIGCHLD  reap; restart a child of the current generation, with a
 *            back-off that grows while it keeps dying young;
 *   SIGHUP   reload: load the configuration again; if it is good, bind the
 *            new address first if it changed, write a new pid file and open
 *            a new log if they moved, fork a new generation, and once every
 *            new child accepts, tell the old generation to stop accepting
 *            and finish its work.  The listen socket stays open throughout,
 *            so no connection is refused;
 *   SIGUSR2  a child accepts connections now (see above, and READY=1);
 *   SIGUSR1  reopen the log (SIGHUP does too);
 *   SIGTERM, SIGINT  stop: children finish their work within
 *            shutdown_timeout; a second signal stops them at once.
 */
#include "supervise.h"
#include "../child/entry.h"
#include "../shm/region.h"
#include "listen.h"
#include "../common/backoff.h"
#include "../common/log.h"
#include "../common/options.h"
#include "settings.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/time.h>
#include <sys/wait.h>
#include <systemd/sd-daemon.h>
#include <time.h>
#include <unistd.h>

#define RESPAWN_MIN_MS 100
#define RESPAWN_MAX_MS 10000
#define HEALTHY_AFTER_MS 5000 /* a child that lived this long resets the back-off */
#define STOP_SLACK_MS 5000    /* beyond shutdown_timeout before children are killed */

static volatile sig_atomic_t sig_child, sig_term, sig_alarm, sig_reload, sig_reopen, sig_ready;

struct worker {
    pid_t pid;    /* 0 when the slot is free or waiting to restart */
    unsigned gen; /* generation it runs */
    int64_t started_ms;
    int64_t respawn_at_ms; /* > 0: restart due then */
    unsigned deaths;       /* consecutive early deaths */
    int retiring;          /* of an older generation: never restarted */
    int reporter;          /* sends to Graphite: one child per generation */
    int told_to_stop;      /* has had its SIGTERM */
};

struct generation {
    struct settings *settings;
    int listen_fd;
    unsigned number;
};

struct master {
    int argc;
    char **argv;
    struct shm_region *shm;
    struct generation cur;
    struct generation old; /* retiring; settings NULL when none */
    struct worker workers[SHM_MAX_SLOTS];
    int stopping; /* stop signals acted on */
    int64_t stop_deadline_ms;
    uint64_t lost_at_stop;
    int owe_ready; /* READY=1 once the current generation accepts */
    /* What only a restart changes, as the master started with it. */
    char user[256]; /* "" when none */
    long drain_list_bytes;
    long push_status_max_bytes;
    long idempotency_max_bytes;
};

static void on_signal(int signo)
{
    switch (signo) {
    case SIGCHLD: sig_child = 1; break;
    case SIGTERM:
    case SIGINT: sig_term++; break;
    case SIGALRM: sig_alarm = 1; break;
    case SIGHUP: sig_reload = 1; break;
    case SIGUSR1: sig_reopen = 1; break;
    case SIGUSR2: sig_ready = 1; break;
    }
}

/* Fleet mode, once every worker has gone: the counts no flush got confirmed
 * (Redis down, or the last flush past the stop deadline), which will never
 * reach the fleet's totals. */
static void log_unconfirmed(const struct shm_region *shm)
{
    char line[600];
    size_t len = 0;

    for (unsigned c = 0; c < SHM_NCOUNTERS; c++) {
        uint64_t n = 0;
        for (unsigned i = 0; i < SHM_MAX_SLOTS; i++) {
            uint64_t v = atomic_load(&shm->slots[i].counters[c]), base = atomic_load(&shm->slots[i].fleet_base[c]);
            n += v > base ? v - base : 0;
        }
        if (n > 0 && len < sizeof(line))
            len += (size_t)snprintf(line + len, sizeof(line) - len, "%s%s %" PRIu64, len ? ", " : "",
                                    shm_counter_name((enum shm_counter)c), n);
    }
    if (len > 0)
        log_warn("redis: stopping with counts Redis has not confirmed (%s): they stay out of the fleet's totals", line);
}

static int64_t now_ms(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static const int handled_signals[] = {SIGCHLD, SIGTERM, SIGINT, SIGALRM, SIGHUP, SIGUSR1, SIGUSR2};
#define NSIGNALS (sizeof(handled_signals) / sizeof(handled_signals[0]))

static int install_signals(void)
{
    struct sigaction sa;
    sigset_t blocked;

    memset(&sa, 0, sizeof(sa));
    sa.sa_handler = on_signal;
    sigemptyset(&blocked);
    for (size_t i = 0; i < NSIGNALS; i++) {
        sigaddset(&blocked, handled_signals[i]);
        if (sigaction(handled_signals[i], &sa, NULL) != 0) {
            log_error("sigaction(%d) failed: %s", handled_signals[i], strerror(errno));
            return -1;
        }
    }
    if (sigprocmask(SIG_BLOCK, &blocked, NULL) != 0) {
        log_error("sigprocmask() failed: %s", strerror(errno));
        return -1;
    }
    return 0;
}

/* In a new child: undo the master's signal set-up, keep only its own
 * listen socket, and tie its life to the master's. */
static void child_prepare(const struct master *m, pid_t master_pid)
{
    struct sigaction sa;
    sigset_t early;

    memset(&sa, 0, sizeof(sa));
    sa.sa_handler = SIG_DFL;
    for (size_t i = 0; i < NSIGNALS; i++)
        sigaction(handled_signals[i], &sa, NULL);
    /* The signals the master relays stay blocked until the child has its
     * own handlers (child/child.c unblocks them): a SIGUSR1 from logrotate
     * or a SIGTERM during set-up waits for them instead of killing it. */
    sigemptyset(&early);
    sigaddset(&early, SIGTERM);
    sigaddset(&early, SIGUSR1);
    sigaddset(&early, SIGUSR2);
    sigaddset(&early, SIGHUP);
    sigaddset(&early, SIGINT);
    if (sigprocmask(SIG_SETMASK, &early, NULL) != 0)
        log_error("sigprocmask() failed: %s", strerror(errno));
    if (m->old.settings != NULL && m->old.listen_fd != m->cur.listen_fd)
        close(m->old.listen_fd);
    /* If the master vanishes, finish the work in hand and go. */
    prctl(PR_SET_PDEATHSIG, SIGTERM);
    if (getppid() != master_pid)
        _exit(0);
}

static void spawn(struct master *m, int slot)
{
    struct worker *w = &m->workers[slot];
    pid_t master_pid = getpid();
    pid_t pid;

    atomic_store(&m->shm->slots[slot].ready, 0);
    if ((pid = fork()) < 0) {
        log_error("fork() failed: %s", strerror(errno));
        w->respawn_at_ms = now_ms() + RESPAWN_MAX_MS;
        return;
    }
    if (pid == 0) {
        child_prepare(m, master_pid);
        exit(child_main(&m->cur.settings->o, m->cur.listen_fd, m->shm, (unsigned)slot, w->reporter));
    }
    w->pid = pid;
    w->gen = m->cur.number;
    w->started_ms = now_ms();
    w->respawn_at_ms = 0;
    w->retiring = 0;
    w->told_to_stop = 0;
    atomic_store(&m->shm->slots[slot].pid, (int32_t)pid);
    log_info("child %d started (slot %d, generation %u)", (int)pid, slot, m->cur.number);
}

/* Forks the current generation's children into free slots. */
static void spawn_generation(struct master *m)
{
    int want = m->cur.settings->o.workers;

    for (int i = 0; i < SHM_MAX_SLOTS && want > 0; i++) {
        struct worker *w = &m->workers[i];
        if (w->pid != 0 || w->respawn_at_ms != 0)
            continue;
        w->deaths = 0;
        /* The first child of a generation reports to Graphite; a restart keeps the role. */
        w->reporter = want == m->cur.settings->o.workers;
        spawn(m, i);
        want--;
    }
    if (want > 0)
        log_error("no free worker slots for %d children", want);
}

static void schedule_respawn(struct worker *w, int slot)
{
    static const struct backoff respawn = {RESPAWN_MIN_MS, RESPAWN_MAX_MS, BACKOFF_EXACT};
    int64_t now = now_ms(), delay;

    if (now - w->started_ms >= HEALTHY_AFTER_MS)
        w->deaths = 0;
    /* The first early death restarts at once; then 100 ms, 200 ms, ... */
    delay = w->deaths == 0 ? 0 : (int64_t)backoff_delay(&respawn, (unsigned)w->deaths - 1, 0);
    w->deaths++;
    w->respawn_at_ms = now + delay;
    if (delay > 0)
        log_warn("child in slot %d keeps dying: next start in %lld ms", slot, (long long)delay);
}

static void signal_worker(struct worker *w, int signo)
{
    if (w->pid > 0 && kill(w->pid, signo) != 0 && errno != ESRCH)
        log_error("kill(%d, %d) failed: %s", (int)w->pid, signo, strerror(errno));
}

static void reap(struct master *m)
{
    int status, died = 0, spooled = m->cur.settings->o.spool != NULL, queued = m->cur.settings->o.redis_queue;
    const char *fate = queued ? "left in the Redis queue" : spooled ? "left in the spool" : "lost";
    pid_t pid;

    while ((pid = waitpid(-1, &status, WNOHANG)) > 0) {
        for (int i = 0; i < SHM_MAX_SLOTS; i++) {
            struct worker *w = &m->workers[i];
            int64_t lost;
            if (w->pid != pid)
                continue;
            w->pid = 0;
            atomic_store(&m->shm->slots[i].pid, 0);
            atomic_store(&m->shm->slots[i].ready, 0);
            lost = shm_settle_slot(m->shm, (unsigned)i, queued ? SHM_SETTLE_QUEUED : spooled ? SHM_SETTLE_SPOOLED : SHM_SETTLE_LOST);
            if (WIFSIGNALED(status))
                log_warn("child %d killed by signal %d, %lld pending targets %s", (int)pid, WTERMSIG(status),
                         (long long)lost, fate);
            else if (WEXITSTATUS(status) != 0 || lost > 0)
                log_warn("child %d exited with status %d, %lld pending targets %s", (int)pid, WEXITSTATUS(status),
                         (long long)lost, fate);
            else
                log_info("child %d exited", (int)pid);
            if (!m->stopping && !w->retiring)
                schedule_respawn(w, i);
            else
                w->respawn_at_ms = 0;
            died = 1;
        }
    }
    /* What a dead child had accepted is in its spool segments: have a live
     * child take them over now rather than at its next periodic look. */
    if (died && m->cur.settings->o.spool != NULL)
        for (int i = 0; i < SHM_MAX_SLOTS; i++)
            if (m->workers[i].pid > 0 && atomic_load(&m->shm->slots[i].ready))
                signal_worker(&m->workers[i], SIGUSR2);
}

/* SIGTERM, once, to every child matching retiring (or to all when -1). */
static void tell_to_stop(struct master *m, int retiring)
{
    for (int i = 0; i < SHM_MAX_SLOTS; i++) {
        struct worker *w = &m->workers[i];
        if (w->pid > 0 && !w->told_to_stop && (retiring < 0 || w->retiring == retiring)) {
            w->told_to_stop = 1;
            signal_worker(w, SIGTERM);
        }
    }
}

static int alive(const struct master *m)
{
    int n = 0;

    for (int i = 0; i < SHM_MAX_SLOTS; i++)
        n += m->workers[i].pid > 0;
    return n;
}

/* Whether every child of the current generation accepts connections. */
static int generation_ready(const struct master *m)
{
    int n = 0;

    for (int i = 0; i < SHM_MAX_SLOTS; i++) {
        const struct worker *w = &m->workers[i];
        if (w->pid > 0 && !w->retiring) {
            if (!atomic_load(&m->shm->slots[i].ready))
                return 0;
            n++;
        }
    }
    return n == m->cur.settings->o.workers;
}

/* The old generation's children stop accepting and finish their work; the
 * master lets go of what only they used. */
static void retire_old(struct master *m)
{
    if (m->old.settings == NULL)
        return;
    tell_to_stop(m, 1);
    if (m->old.listen_fd != m->cur.listen_fd) {
        close(m->old.listen_fd);
        if (m->old.settings->o.unix_path != NULL &&
            (m->cur.settings->o.unix_path == NULL ||
             strcmp(m->old.settings->o.unix_path, m->cur.settings->o.unix_path) != 0))
            listen_cleanup(&m->old.settings->o);
    }
    settings_free(m->old.settings);
    m->old.settings = NULL;
    log_info("generation %u serves; the previous one finishes its work", m->cur.number);
}

static void on_ready(struct master *m)
{
    if (!generation_ready(m))
        return;
    retire_old(m);
    if (m->owe_ready) {
        m->owe_ready = 0;
        sd_notifyf(0, "READY=1\nSTATUS=serving with %d workers", m->cur.settings->o.workers);
    }
}

static int same(const char *a, const char *b)
{
    return (a == NULL && b == NULL) || (a != NULL && b != NULL && strcmp(a, b) == 0);
}

int supervise_write_pidfile(const char *path, char *err, size_t errlen)
{
    char tmp[PATH_MAX], line[32];
    const char *call = NULL;
    int fd, n, e;

    if (snprintf(tmp, sizeof(tmp), "%s.XXXXXX", path) >= (int)sizeof(tmp)) {
        snprintf(err, errlen, "--pidfile: \"%s\" is too long", path);
        return -1;
    }
    if ((fd = mkostemp(tmp, O_CLOEXEC)) < 0) {
        snprintf(err, errlen, "--pidfile: cannot write \"%s\": mkostemp() failed: %s", path, strerror(errno));
        return -1;
    }
    n = snprintf(line, sizeof(line), "%d\n", (int)getpid());
    if (fchmod(fd, 0644) != 0)
        call = "fchmod()";
    else if (write(fd, line, (size_t)n) != n)
        call = "write()";
    if (close(fd) != 0 && call == NULL)
        call = "close()";
    if (call == NULL && rename(tmp, path) != 0)
        call = "rename()";
    if (call != NULL) {
        e = errno;
        unlink(tmp);
        snprintf(err, errlen, "--pidfile: cannot write \"%s\": %s failed: %s", path, call, strerror(e));
        return -1;
    }
    return 0;
}

static void remove_pidfile(const char *path)
{
    if (path != NULL && unlink(path) != 0 && errno != ENOENT)
        log_warn("unlink(%s) failed, the pid file stays: %s", path, strerror(errno));
}

static void reopen_log(void)
{
    int rc = log_reopen();

    if (rc != 0)
        log_error("open(%s) failed, the log stays where it was: %s", log_path(), strerror(-rc));
    else
        log_info("log reopened");
}

/* A moved pid file and a moved log are made before the reload commits, so a
 * failure leaves everything as it was; the old pid file goes last. */
static int move_files(const struct fcmd_options *cur, const struct fcmd_options *next, char *err, size_t errlen)
{
    int pid_moved = !same(cur->pidfile, next->pidfile), rc;
    char was[PATH_MAX];

    if (pid_moved && next->pidfile != NULL && supervise_write_pidfile(next->pidfile, err, errlen) != 0)
        return -1;
    if (!same(log_path(), next->logto)) {
        snprintf(was, sizeof(was), "%s", log_path() ? log_path() : "stderr");
        log_info("reload: opening the log at %s", next->logto ? next->logto : "stderr");
        if ((rc = log_open(next->logto)) != 0) {
            snprintf(err, errlen, "--logto: cannot open \"%s\": %s", next->logto, strerror(-rc));
            if (pid_moved)
                remove_pidfile(next->pidfile);
            return -1;
        }
        log_info("log reopened at %s (was %s)", next->logto ? next->logto : "stderr", was);
    }
    if (pid_moved) {
        remove_pidfile(cur->pidfile);
        log_info("reload: pid file now %s (was %s)", next->pidfile ? next->pidfile : "none",
                 cur->pidfile ? cur->pidfile : "none");
    }
    return 0;
}

/* One line for each setting the reload cannot apply. */
static void log_ignored(const struct master *m, const struct fcmd_options *next)
{
    if (!same(m->user[0] ? m->user : NULL, next->user))
        log_warn("reload: user is ignored until a restart; still running as %s",
                 m->user[0] ? m->user : "the starting user");
    if (next->drain_list_bytes != m->drain_list_bytes)
        log_warn("reload: drain_list_bytes is ignored until a restart; the drain lists keep %ld bytes",
                 m->drain_list_bytes);
    if (next->push_status_max_bytes != m->push_status_max_bytes)
        log_warn("reload: push_status_max_bytes is ignored until a restart; the statuses keep %ld bytes",
                 m->push_status_max_bytes);
    if (next->idempotency_max_bytes != m->idempotency_max_bytes)
        log_warn("reload: idempotency_max_bytes is ignored until a restart; the keys keep %ld bytes",
                 m->idempotency_max_bytes);
}

static void reload(struct master *m)
{
    struct settings *next;
    char err[600];
    int fd;

    sd_notify(0, "RELOADING=1");
    reopen_log();
    log_info("reloading the configuration");
    if ((next = settings_load(m->argc, m->argv, m->cur.settings->env, SETTINGS_RELOAD, err, sizeof(err))) == NULL) {
        log_error("reload failed, still serving the previous configuration: %s", err);
        sd_notify(0, "READY=1");
        return;
    }
    /* Its secrets are in this process's memory from here on, and in the
     * children it forks, whether or not the reload goes through.  Never made
     * dumpable again: the old settings' secrets may still be in memory. */
    if (settings_holds_secret(next))
        prctl(PR_SET_DUMPABLE, 0);
    /* The rows of a reload before the last one finished may still be in
     * use: keep those of the generation that has not gone yet as well. */
    if (settings_assign_apps(next, m->cur.settings, m->shm, err, sizeof(err)) != 0) {
        log_error("reload failed, still serving the previous configuration: %s", err);
        settings_free(next);
        sd_notify(0, "READY=1");
        return;
    }
    fd = m->cur.listen_fd;
    /* A new address is bound before the old one is let go: no gap. */
    if (!settings_same_listener(m->cur.settings, next) && (fd = listen_open(&next->o, err, sizeof(err))) < 0) {
        log_error("reload failed, still serving the previous configuration: %s", err);
        settings_free(next);
        sd_notify(0, "READY=1");
        return;
    }
    if (move_files(&m->cur.settings->o, &next->o, err, sizeof(err)) != 0) {
        log_error("reload failed, still serving the previous configuration: %s", err);
        if (fd != m->cur.listen_fd) {
            close(fd);
            listen_cleanup(&next->o);
        }
        settings_free(next);
        sd_notify(0, "READY=1");
        return;
    }
    log_ignored(m, &next->o);
    log_set_level((enum log_level)options_log_level(&next->o));
    /* A reload before the last one finished: the last one's old generation goes now. */
    if (m->old.settings != NULL)
        retire_old(m);
    for (int i = 0; i < SHM_MAX_SLOTS; i++) {
        m->workers[i].retiring = m->workers[i].pid > 0 ? 1 : m->workers[i].retiring;
        m->workers[i].respawn_at_ms = 0; /* the new generation replaces pending restarts */
    }
    m->old = m->cur;
    m->cur.settings = next;
    m->cur.listen_fd = fd;
    m->cur.number++;
    atomic_store(&m->shm->workers, (uint32_t)next->o.workers);
    m->owe_ready = 1;
    spawn_generation(m);
}

static void begin_stop(struct master *m)
{
    struct shm_totals t;

    m->stopping++;
    if (m->stopping == 1) {
        shm_sum(m->shm, &t);
        m->lost_at_stop = t.counters[SHM_LOST] + t.counters[SHM_LEFT_IN_SPOOL];
        sd_notify(0, "STOPPING=1");
        log_info("stopping: %d children finish their pending work", alive(m));
        m->stop_deadline_ms = now_ms() + (int64_t)m->cur.settings->o.shutdown_timeout * 1000 + STOP_SLACK_MS;
        /* No worker follows these: what they owe Redis cannot be left in
         * the region for the next ones (fleet mode). */
        atomic_store(&m->shm->stopping_all, 1);
        tell_to_stop(m, -1);
    } else {
        log_warn("stopping at once: second stop signal");
        for (int i = 0; i < SHM_MAX_SLOTS; i++)
            signal_worker(&m->workers[i], SIGKILL);
    }
}

/* Arms SIGALRM for the earliest pending restart or the stop deadline. */
static void arm_timer(struct master *m)
{
    int64_t next = 0, now = now_ms();
    struct itimerval it;

    if (m->stopping) {
        next = m->stop_deadline_ms;
    } else {
        for (int i = 0; i < SHM_MAX_SLOTS; i++) {
            int64_t at = m->workers[i].respawn_at_ms;
            if (m->workers[i].pid == 0 && at > 0 && (next == 0 || at < next))
                next = at;
        }
    }
    memset(&it, 0, sizeof(it));
    if (next > 0) {
        int64_t ms = next > now ? next - now : 1;
        it.it_value.tv_sec = ms / 1000;
        it.it_value.tv_usec = (ms % 1000) * 1000;
    }
    setitimer(ITIMER_REAL, &it, NULL);
}

static void on_alarm(struct master *m)
{
    int64_t now = now_ms();

    if (m->stopping) {
        if (now >= m->stop_deadline_ms) {
            log_warn("children did not finish in time: killing %d", alive(m));
            for (int i = 0; i < SHM_MAX_SLOTS; i++)
                signal_worker(&m->workers[i], SIGKILL);
            m->stop_deadline_ms = now + 1000;
        }
        return;
    }
    for (int i = 0; i < SHM_MAX_SLOTS; i++) {
        struct worker *w = &m->workers[i];
        if (w->pid == 0 && w->respawn_at_ms > 0 && w->respawn_at_ms <= now)
            spawn(m, i);
    }
}

int supervise_run(int argc, char **argv, struct settings *settings, int listen_fd, struct shm_region *shm)
{
    struct master m;
    struct shm_totals t;
    sigset_t none;

    memset(&m, 0, sizeof(m));
    m.argc = argc;
    m.argv = argv;
    m.shm = shm;
    m.cur.settings = settings;
    m.cur.listen_fd = listen_fd;
    m.cur.number = 1;
    m.owe_ready = 1;
    snprintf(m.user, sizeof(m.user), "%s", settings->o.user ? settings->o.user : "");
    m.drain_list_bytes = settings->o.drain_list_bytes;
    m.push_status_max_bytes = settings->o.push_status_max_bytes;
    m.idempotency_max_bytes = settings->o.idempotency_max_bytes;
    atomic_store(&shm->workers, (uint32_t)settings->o.workers);
    if (install_signals() != 0) {
        remove_pidfile(settings->o.pidfile);
        return 1;
    }
    sigemptyset(&none);
    spawn_generation(&m);

    for (;;) {
        if (sig_child) {
            sig_child = 0;
            reap(&m);
        }
        while (sig_term > m.stopping)
            begin_stop(&m);
        if (sig_reload) {
            sig_reload = 0;
            if (!m.stopping)
                reload(&m);
        }
        if (sig_reopen) {
            sig_reopen = 0;
            reopen_log();
            for (int i = 0; i < SHM_MAX_SLOTS; i++)
                signal_worker(&m.workers[i], SIGUSR1);
        }
        if (sig_ready) {
            sig_ready = 0;
            on_ready(&m);
        }
        if (sig_alarm) {
            sig_alarm = 0;
            on_alarm(&m);
        }
        if (m.stopping && alive(&m) == 0)
            break;
        arm_timer(&m);
        sigsuspend(&none);
    }
    shm_sum(shm, &t);
    log_info("stopped; %llu targets were left unfinished%s",
             (unsigned long long)(t.counters[SHM_LOST] + t.counters[SHM_LEFT_IN_SPOOL] - m.lost_at_stop),
             m.cur.settings->o.spool != NULL ? ", in the spool for the next start" : "");
    if (m.cur.settings->o.redis != NULL)
        log_unconfirmed(shm);
    remove_pidfile(m.cur.settings->o.pidfile);
    if (m.old.settings != NULL) {
        close(m.old.listen_fd);
        settings_free(m.old.settings);
    }
    close(m.cur.listen_fd);
    listen_cleanup(&m.cur.settings->o);
    settings_free(m.cur.settings);
    return 0;
}
