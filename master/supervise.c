/*
 * master/supervise.c - the master cycle.
 *
 * Signal handlers only set flags.  One loop around sigsuspend() acts on each
 * flag in one place: reap and respawn children (with a back-off that grows
 * while a child keeps dying young), reopen the log, and on SIGTERM/SIGINT
 * ask the children to finish their work, then stop them for good if they
 * outlive the grace period or a second signal arrives.
 */
#include "supervise.h"
#include "../child/child.h"
#include "../shm/region.h"
#include "log.h"
#include "options.h"

#include <errno.h>
#include <signal.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/time.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define RESPAWN_MIN_MS 100
#define RESPAWN_MAX_MS 10000
#define HEALTHY_AFTER_MS 5000 /* a child that lived this long resets the back-off */
#define STOP_GRACE_MS 35000   /* children drain for 30 s; then they are killed */

static volatile sig_atomic_t sig_child, sig_term, sig_alarm, sig_reopen;

struct worker {
    pid_t pid; /* 0 when not running */
    int64_t started_ms;
    int64_t respawn_at_ms;
    unsigned deaths; /* consecutive early deaths */
};

struct master {
    const struct fcmd_options *opts;
    int listen_fd;
    struct shm_region *shm;
    struct worker workers[OPTIONS_MAX_WORKERS];
    int nworkers;
    int stopping; /* number of stop signals received */
    int64_t stop_deadline_ms;
};

static void on_signal(int signo)
{
    switch (signo) {
    case SIGCHLD: sig_child = 1; break;
    case SIGTERM:
    case SIGINT: sig_term++; break;
    case SIGALRM: sig_alarm = 1; break;
    case SIGHUP:
    case SIGUSR1: sig_reopen = 1; break;
    }
}

static int64_t now_ms(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static const int handled_signals[] = {SIGCHLD, SIGTERM, SIGINT, SIGALRM, SIGHUP, SIGUSR1};
#define NSIGNALS (sizeof(handled_signals) / sizeof(handled_signals[0]))

static int install_signals(sigset_t *blocked)
{
    struct sigaction sa;

    memset(&sa, 0, sizeof(sa));
    sa.sa_handler = on_signal;
    sigemptyset(blocked);
    for (size_t i = 0; i < NSIGNALS; i++) {
        sigaddset(blocked, handled_signals[i]);
        if (sigaction(handled_signals[i], &sa, NULL) != 0) {
            log_error("sigaction(%d) failed: %s", handled_signals[i], strerror(errno));
            return -1;
        }
    }
    if (sigprocmask(SIG_BLOCK, blocked, NULL) != 0) {
        log_error("sigprocmask() failed: %s", strerror(errno));
        return -1;
    }
    return 0;
}

/* In a new child: undo the master's signal set-up and tie its life to ours. */
static void child_reset_signals(pid_t master_pid)
{
    struct sigaction sa;
    sigset_t none;

    memset(&sa, 0, sizeof(sa));
    sa.sa_handler = SIG_DFL;
    for (size_t i = 0; i < NSIGNALS; i++)
        sigaction(handled_signals[i], &sa, NULL);
    sigemptyset(&none);
    sigprocmask(SIG_SETMASK, &none, NULL);
    /* If the master vanishes, finish the work in hand and go. */
    prctl(PR_SET_PDEATHSIG, SIGTERM);
    if (getppid() != master_pid)
        _exit(0);
}

static void spawn(struct master *m, int slot)
{
    struct worker *w = &m->workers[slot];
    pid_t master_pid = getpid();
    pid_t pid = fork();

    if (pid < 0) {
        log_error("fork() failed: %s", strerror(errno));
        w->respawn_at_ms = now_ms() + RESPAWN_MAX_MS;
        return;
    }
    if (pid == 0) {
        child_reset_signals(master_pid);
        exit(child_main(m->opts, m->listen_fd, m->shm, (unsigned)slot));
    }
    w->pid = pid;
    w->started_ms = now_ms();
    w->respawn_at_ms = 0;
    atomic_store(&m->shm->slots[slot].pid, (int32_t)pid);
    log_info("child %d started (slot %d)", (int)pid, slot);
}

static void schedule_respawn(struct master *m, struct worker *w)
{
    int64_t now = now_ms(), delay;

    if (now - w->started_ms >= HEALTHY_AFTER_MS)
        w->deaths = 0;
    /* The first early death restarts at once; then 100 ms, 200 ms, ... */
    delay = w->deaths == 0 ? 0 : (int64_t)RESPAWN_MIN_MS << (w->deaths < 8 ? w->deaths - 1 : 7);
    if (delay > RESPAWN_MAX_MS)
        delay = RESPAWN_MAX_MS;
    w->deaths++;
    w->respawn_at_ms = now + delay;
    if (delay > 0)
        log_warn("child in slot %d keeps dying: next start in %lld ms", (int)(w - m->workers), (long long)delay);
    (void)m;
}

static void reap(struct master *m)
{
    int status;
    pid_t pid;

    while ((pid = waitpid(-1, &status, WNOHANG)) > 0) {
        for (int i = 0; i < m->nworkers; i++) {
            struct worker *w = &m->workers[i];
            int64_t lost;
            if (w->pid != pid)
                continue;
            w->pid = 0;
            atomic_store(&m->shm->slots[i].pid, 0);
            lost = shm_settle_slot(m->shm, (unsigned)i);
            if (WIFSIGNALED(status))
                log_warn("child %d killed by signal %d, %lld pending targets lost", (int)pid, WTERMSIG(status),
                         (long long)lost);
            else if (WEXITSTATUS(status) != 0 || lost > 0)
                log_warn("child %d exited with status %d, %lld pending targets lost", (int)pid, WEXITSTATUS(status),
                         (long long)lost);
            else
                log_info("child %d exited", (int)pid);
            if (!m->stopping)
                schedule_respawn(m, w);
        }
    }
}

static void signal_children(struct master *m, int signo)
{
    for (int i = 0; i < m->nworkers; i++)
        if (m->workers[i].pid > 0 && kill(m->workers[i].pid, signo) != 0 && errno != ESRCH)
            log_error("kill(%d, %d) failed: %s", (int)m->workers[i].pid, signo, strerror(errno));
}

static int alive(const struct master *m)
{
    int n = 0;

    for (int i = 0; i < m->nworkers; i++)
        n += m->workers[i].pid > 0;
    return n;
}

/* Arms SIGALRM for the earliest pending respawn or the stop deadline. */
static void arm_timer(struct master *m)
{
    int64_t next = 0, now = now_ms();
    struct itimerval it;

    if (m->stopping) {
        next = m->stop_deadline_ms;
    } else {
        for (int i = 0; i < m->nworkers; i++) {
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

static void respawn_due(struct master *m)
{
    int64_t now = now_ms();

    for (int i = 0; i < m->nworkers; i++) {
        struct worker *w = &m->workers[i];
        if (w->pid == 0 && w->respawn_at_ms > 0 && w->respawn_at_ms <= now)
            spawn(m, i);
    }
}

static void begin_stop(struct master *m)
{
    m->stopping++;
    if (m->stopping == 1) {
        log_info("stopping: %d children finish their pending work", alive(m));
        m->stop_deadline_ms = now_ms() + STOP_GRACE_MS;
        signal_children(m, SIGTERM);
    } else {
        log_warn("stopping at once: second stop signal");
        signal_children(m, SIGKILL);
    }
}

int supervise_run(const struct fcmd_options *o, int listen_fd, struct shm_region *shm)
{
    struct master m;
    sigset_t blocked, none;

    memset(&m, 0, sizeof(m));
    m.opts = o;
    m.listen_fd = listen_fd;
    m.shm = shm;
    m.nworkers = o->workers;
    atomic_store(&shm->workers, (uint32_t)o->workers);
    if (install_signals(&blocked) != 0)
        return 1;
    sigemptyset(&none);
    for (int i = 0; i < m.nworkers; i++)
        spawn(&m, i);

    for (;;) {
        if (sig_child) {
            sig_child = 0;
            reap(&m);
        }
        while (sig_term > m.stopping)
            begin_stop(&m);
        if (sig_reopen) {
            sig_reopen = 0;
            if (log_reopen() != 0)
                log_error("cannot reopen the log: %s", strerror(errno));
            else
                log_info("log reopened");
            signal_children(&m, SIGUSR1);
        }
        if (sig_alarm) {
            sig_alarm = 0;
            if (m.stopping && now_ms() >= m.stop_deadline_ms) {
                log_warn("children did not finish in time: killing %d", alive(&m));
                signal_children(&m, SIGKILL);
                m.stop_deadline_ms = now_ms() + 1000;
            } else if (!m.stopping) {
                respawn_due(&m);
            }
        }
        if (m.stopping && alive(&m) == 0)
            break;
        arm_timer(&m);
        sigsuspend(&none);
    }
    log_info("stopped");
    return 0;
}
