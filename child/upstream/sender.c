/*
 * child/upstream/sender.c - curl multi on the child's libuv loop, and job outcomes.
 *
 * curl tells us which sockets to watch (socket callback -> uv_poll_t) and
 * when to call it back (timer callback -> one uv_timer_t); we hand both
 * events back with curl_multi_socket_action and then collect finished
 * transfers.  New work is started from a uv_idle callback (sender_kick) and
 * after finished transfers are collected, so that all the targets accepted
 * in one loop turn are batched, and never from inside a curl callback.
 * Each loop turn has a budget of upstream work (sockets, starts, finishes),
 * spent across every callback of the turn and renewed by a uv_check after
 * the poll, so HTTP requests are read between any two slices of it.
 * Easy handles are pooled and keep their fixed options.
 */
#include "sender.h"
#include "../../common/log.h"
#include "../../common/options.h"
#include "../../shm/region.h"
#include "../../shm/push_status.h"
#include "../../common/backoff.h"
#include "pace.h"
#include "../core/queue.h"
#include "../core/retry.h"
#include "upstream.h"

#include <errno.h>
#include <malloc.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

/* The most of an answer read when an adapter set no bound of its own. */
#define ANSWER_MAX_DEFAULT (64u << 10)
#define STREAMS_PER_CONNECTION 100
#define REQUEST_TIMEOUT_MS 30000
#define CONNECT_TIMEOUT_MS 10000
/* Upstream work done per loop turn, so HTTP requests are read in between:
 * upstream sockets handed to curl (each may carry a hundred answers),
 * transfers started, and finished transfers handled.  A socket left over
 * stays readable and is reported again on the next turn (libuv's polls are
 * level-triggered); the rest is taken up by sender_kick. */
#define SOCKETS_PER_TURN 2
#define STARTS_PER_TURN 8
#define FINISHES_PER_TURN 8
/* After this long with nothing in flight, idle easy handles beyond a few
 * are freed and the heap is given back to the system; after
 * --upstream-idle-timeout, the upstream connections are closed too. */
#define IDLE_TRIM_MS 1000
#define LOG_FLUSH_MS 10000
#define POOL_KEEP 16
/* Upstream connections per worker over HTTP/2 without --upstream-connections,
 * at most; the requests allowed in flight start at a quarter of the most. */
#define H2_CONNECTIONS_MAX 16
#define H2_START_DIVISOR 4
/* The least requests in flight that throttling halves the limit to. */
#define INFLIGHT_FLOOR 8
/* How often a worker's share of --rate-limit is worked out again. */
#define RATE_SHARE_MS 1000

struct sender {
    uv_loop_t *loop;
    const struct fcmd_options *opts;
    struct queue *queue;
    struct upstream *ups[APPS_MAX + 1][UPSTREAM_KINDS]; /* by push->app, push->upstream; NULL: not configured */
    size_t batch_cap;                     /* targets s->batch holds */
    struct shm_region *shm;
    struct shm_slot *slot;
    CURLM *multi;
    long connections; /* the cap per host: the connections the limit needs */
    size_t attached;  /* transfers on the multi handle, ours and the adapter's */
    uv_timer_t timer;
    uv_timer_t trim; /* gives memory back once the worker has been idle a while */
    uv_idle_t kick;
    uv_check_t turn; /* after each poll: this turn's budget of upstream work is spent */
    unsigned turn_sockets, turn_starts, turn_finishes;
    struct retry_set retries;
    sender_ack_fn *ack;  /* with --spool: told of targets done for good */
    void *ack_arg;
    sender_outcome_fn *told; /* with a webhook: told of each final outcome */
    void *told_arg;
    CURL **pool;         /* idle easy handles */
    size_t npool;
    size_t inflight;
    size_t max_inflight; /* the ceiling of pace.limit */
    struct pace pace;    /* requests allowed in flight, messages allowed to start */
    int capped;          /* the last dispatch left targets waiting at the limit */
    uv_timer_t pace_wait;  /* the rate's next message */
    uv_timer_t rate_share; /* works out this worker's share of --rate-limit */
    unsigned (*instances_of)(void *arg); /* with --redis: how many instances share the rate */
    void *instances_arg;
    uint64_t instances;    /* live instances, as last known */
    long http_version;
    int multiplex;
    struct sock_watch *watches; /* the sockets curl has us watch: those of running transfers */
    size_t connections_open;    /* sockets curl opened and has not closed, idle ones too */
    char *ca_path;              /* the system CA directory, used with --ca-file */
    struct target **batch;      /* scratch for queue_take_batch */
    uint64_t rng;
    /* An outage fails every request: a line per cause and 10 s. */
    struct log_limit failed_log[CAUSE_COUNT], retried_log[CAUSE_COUNT];
    struct log_limit cut_log; /* answers longer than their bound */
    uv_timer_t log_flush; /* says what the limits held back, once a flood is over */
    struct job *jobs;     /* in flight */
    int stopped;          /* sender_stop(): nothing more is sent */
    unsigned closing;     /* handles sender_free() closes that libuv has not closed yet */
};

struct sock_watch {
    uv_poll_t poll;
    curl_socket_t fd;
    struct sender *sender;
    struct sock_watch *next, **prev; /* in sender->watches */
};

_Static_assert((int)UPSTREAM_KINDS == SHM_UPSTREAMS, "one set of shared counters per upstream");

static void dispatch(struct sender *s);
static void collect_done(struct sender *s);

/* ---- curl <-> libuv wiring ---- */

static void free_watch(uv_handle_t *h)
{
    free(h->data);
}

static void on_poll(uv_poll_t *p, int status, int events)
{
    struct sock_watch *w = p->data;
    int flags = 0, running;

    if (status >= 0 && w->sender->turn_sockets >= SOCKETS_PER_TURN)
        return; /* still ready on the next turn: HTTP requests first */
    w->sender->turn_sockets++;
    if (status < 0)
        flags = CURL_CSELECT_ERR;
    if (events & UV_READABLE)
        flags |= CURL_CSELECT_IN;
    if (events & UV_WRITABLE)
        flags |= CURL_CSELECT_OUT;
    curl_multi_socket_action(w->sender->multi, w->fd, flags, &running);
    collect_done(w->sender);
}

static void unwatch(struct sock_watch *w)
{
    if ((*w->prev = w->next) != NULL)
        w->next->prev = w->prev;
    uv_poll_stop(&w->poll);
    uv_close((uv_handle_t *)&w->poll, free_watch);
}

static int on_curl_socket(CURL *easy, curl_socket_t fd, int what, void *userp, void *socketp)
{
    struct sender *s = userp;
    struct sock_watch *w = socketp;
    int events = 0;

    (void)easy;
    if (what == CURL_POLL_REMOVE) {
        if (w != NULL)
            unwatch(w);
        return 0;
    }
    if (w == NULL) {
        if ((w = malloc(sizeof(*w))) == NULL || uv_poll_init_socket(s->loop, &w->poll, fd) != 0) {
            log_error("cannot watch upstream socket %d", (int)fd);
            free(w);
            return -1;
        }
        w->poll.data = w;
        w->fd = fd;
        w->sender = s;
        if ((w->next = s->watches) != NULL)
            w->next->prev = &w->next;
        w->prev = &s->watches;
        s->watches = w;
        curl_multi_assign(s->multi, fd, w);
    }
    if (what & CURL_POLL_IN)
        events |= UV_READABLE;
    if (what & CURL_POLL_OUT)
        events |= UV_WRITABLE;
    uv_poll_start(&w->poll, events, on_poll);
    return 0;
}

static void on_timeout(uv_timer_t *t)
{
    struct sender *s = t->data;
    int running;

    curl_multi_socket_action(s->multi, CURL_SOCKET_TIMEOUT, 0, &running);
    collect_done(s);
}

static int on_curl_timer(CURLM *multi, long timeout_ms, void *userp)
{
    struct sender *s = userp;

    (void)multi;
    if (timeout_ms < 0)
        uv_timer_stop(&s->timer);
    else
        uv_timer_start(&s->timer, on_timeout, (uint64_t)timeout_ms, 0);
    return 0;
}

/* ---- easy handles ---- */

/* The answer's body, up to the job's bound.  Past it, the rest is not read:
 * returning short makes curl stop the transfer (CURLE_WRITE_ERROR), which
 * finish_job reads as an answer whose status decides, not as no answer. */
static size_t on_body(char *p, size_t size, size_t n, void *userp)
{
    struct job *job = userp;
    size_t len = size * n, room = job->answer_max - job->response.len;

    if (len > room) {
        buf_add(&job->response, p, room);
        job->cut = !job->response.failed;
        return 0;
    }
    buf_add(&job->response, p, len);
    return job->response.failed ? 0 : len;
}

/* curl calls this each time it is about to send the job's request.  A
 * second time is curl resending it on its own, at once, on a new
 * connection: after a refused HTTP/2 stream, or when a reused connection
 * died before any answer.  That resend is stopped before it goes out, so
 * the job ends without an answer and fcmd's own retry (counted, with
 * back-off and within --retries) takes over: the attempts counted are the
 * requests sent. */
static int on_prereq(void *userp, char *remote_ip, char *local_ip, int remote_port, int local_port)
{
    struct job *job = userp;

    (void)remote_ip;
    (void)local_ip;
    (void)remote_port;
    (void)local_port;
    return job->sends++ == 0 ? CURL_PREREQFUNC_OK : CURL_PREREQFUNC_ABORT;
}

int64_t sender_retry_after_ms(const char *line, size_t len, int64_t cap_ms)
{
    char value[64], *end;
    time_t when;
    long secs;

    if (len <= 12 || strncasecmp(line, "Retry-After:", 12) != 0)
        return -1;
    len -= 12;
    if (len > sizeof(value) - 1)
        len = sizeof(value) - 1;
    memcpy(value, line + 12, len);
    value[len] = '\0';
    secs = strtol(value, &end, 10);
    if (end != value && secs >= 0)
        return secs > cap_ms / 1000 ? cap_ms : (int64_t)secs * 1000;
    if ((when = curl_getdate(value, NULL)) > 0) {
        int64_t d = (int64_t)(when - time(NULL));
        return d <= 0 ? 0 : d > cap_ms / 1000 ? cap_ms : d * 1000;
    }
    return -1;
}

/* Retry-After in seconds or as an HTTP date, capped at an hour. */
static size_t on_header(char *p, size_t size, size_t n, void *userp)
{
    struct job *job = userp;
    int64_t ms = sender_retry_after_ms(p, size * n, 3600000);

    if (ms >= 0)
        job->retry_after_ms = ms;
    return size * n;
}

/* Curl does not watch the sockets of idle connections: count them as they
 * open and close, for the gauge and to know when there is any to close. */
static curl_socket_t on_open_socket(void *userp, curlsocktype purpose, struct curl_sockaddr *a)
{
    struct sender *s = userp;
    curl_socket_t fd = socket(a->family, a->socktype | SOCK_CLOEXEC, a->protocol);

    (void)purpose;
    if (fd != CURL_SOCKET_BAD)
        s->connections_open++;
    return fd;
}

/* A job's connection: its adapter may refuse the address first. */
static curl_socket_t on_open_job_socket(void *userp, curlsocktype purpose, struct curl_sockaddr *a)
{
    struct job *job = userp;

    if (job->up->ops->connect_ok != NULL && !job->up->ops->connect_ok(job->up, job, &a->addr))
        return CURL_SOCKET_BAD;
    return on_open_socket(job->sender, purpose, a);
}

static int on_close_socket(void *userp, curl_socket_t fd)
{
    struct sender *s = userp;

    s->connections_open--;
    return close(fd);
}

CURL *sender_new_easy(struct sender *s)
{
    CURL *e = curl_easy_init();

    if (e == NULL)
        return NULL;
    curl_easy_setopt(e, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(e, CURLOPT_HTTP_VERSION, s->http_version);
    curl_easy_setopt(e, CURLOPT_PIPEWAIT, (long)s->multiplex);
    curl_easy_setopt(e, CURLOPT_TIMEOUT_MS, (long)REQUEST_TIMEOUT_MS);
    curl_easy_setopt(e, CURLOPT_CONNECTTIMEOUT_MS, (long)CONNECT_TIMEOUT_MS);
    curl_easy_setopt(e, CURLOPT_TCP_KEEPALIVE, 1L);
    curl_easy_setopt(e, CURLOPT_USERAGENT, "fcmd/" FCMD_VERSION);
    /* Requests and answers are small: curl's default 16 KiB download and
     * 64 KiB upload buffers per handle would dominate memory with thousands
     * of requests in flight. */
    curl_easy_setopt(e, CURLOPT_BUFFERSIZE, 4096L);
    curl_easy_setopt(e, CURLOPT_UPLOAD_BUFFERSIZE, 16384L);
    curl_easy_setopt(e, CURLOPT_OPENSOCKETFUNCTION, on_open_socket);
    curl_easy_setopt(e, CURLOPT_OPENSOCKETDATA, s);
    curl_easy_setopt(e, CURLOPT_CLOSESOCKETFUNCTION, on_close_socket);
    curl_easy_setopt(e, CURLOPT_CLOSESOCKETDATA, s);
    curl_easy_setopt(e, CURLOPT_WRITEFUNCTION, on_body);
    curl_easy_setopt(e, CURLOPT_HEADERFUNCTION, on_header);
    if (s->opts->ca_file != NULL) {
        curl_easy_setopt(e, CURLOPT_CAINFO, s->opts->ca_file);
        curl_easy_setopt(e, CURLOPT_CAPATH, s->ca_path);
    }
    return e;
}

static CURL *easy_get(struct sender *s)
{
    return s->npool > 0 ? s->pool[--s->npool] : sender_new_easy(s);
}

static void easy_put(struct sender *s, CURL *e)
{
    if (s->npool < s->max_inflight)
        s->pool[s->npool++] = e;
    else
        curl_easy_cleanup(e);
}

/* ---- jobs ---- */

static void job_done(struct sender_transfer *t, CURLcode code);

static struct job *job_new(struct sender *s, struct upstream *up, struct target **batch, size_t n)
{
    struct job *job = calloc(1, sizeof(*job) + n * (sizeof(struct target *) + sizeof(struct outcome)));

    if (job == NULL)
        return NULL;
    job->xfer.done = job_done;
    job->sender = s;
    job->up = up;
    job->targets = (struct target **)(job + 1);
    memcpy(job->targets, batch, n * sizeof(*batch));
    job->ntargets = n;
    job->push = batch[0]->push;
    job->retry_after_ms = -1;
    return job;
}

static void job_free(struct job *job)
{
    struct upstream *up = job->up;

    if (up->ops->release != NULL)
        up->ops->release(up, job);
    buf_free(&job->body);
    buf_free(&job->response);
    free(job);
}

static struct outcome *job_outcomes(struct job *job)
{
    return (struct outcome *)(job->targets + job->ntargets);
}

static int out_of_retries(const struct sender *s, const struct target *t)
{
    return t->attempts > (uint32_t)s->opts->retries;
}

/* Counts n of push's targets for its upstream and its app. */
static void count(struct sender *s, const struct push *p, enum shm_upstream_counter c, uint64_t n)
{
    shm_app_add(s->shm, s->slot, shm_app_row_of(s->opts, p->app), (unsigned)p->upstream, c, n);
}

/* A final outcome: for the push's status (shm/push_status.h), its counts,
 * and whoever asked to be told (the webhook). */
static void track(struct sender *s, struct target *t, enum push_outcome po, const char *reason, const char *canonical)
{
    struct push *p = t->push;

    push_status_outcome(s->shm->push_status, p->status, po, t->name, request_target_shown(p->upstream, t->name, t->len),
                        reason, ledger_now_ms(), (uint64_t)s->opts->push_status_ttl * 1000);
    if (po == PUSH_INVALID)
        p->invalid++;
    else if (po == PUSH_FAILED)
        p->failed++;
    else
        p->delivered++;
    if (s->told != NULL)
        s->told(s->told_arg, p, t, (int)po, reason, canonical, p->refs == 1);
}

/* Applies one target's outcome; returns 1 when the target waits for a retry. */
static int apply(struct sender *s, struct target *t, struct outcome *o)
{
    switch (o->kind) {
    case OUTCOME_CANONICAL:
        shm_add(s->slot, SHM_CANONICALS, 1);
        count(s, t->push, SHM_UP_CANONICALS, 1);
        count(s, t->push, SHM_UP_SUCCESSES, 1);
        /* Record: original '\0' canonical. */
        drainlist_append(s->shm->canonical, shm_app_row_of(s->opts, t->push->app), t->name, (size_t)t->len + 1, o->canonical, strlen(o->canonical));
        shm_add(s->slot, SHM_SUCCESSES, 1);
        track(s, t, PUSH_CANONICAL, NULL, o->canonical);
        free(o->canonical);
        o->canonical = NULL;
        break;
    case OUTCOME_DELIVERED:
        shm_add(s->slot, SHM_SUCCESSES, 1);
        count(s, t->push, SHM_UP_SUCCESSES, 1);
        track(s, t, PUSH_DELIVERED, NULL, NULL);
        break;
    case OUTCOME_INVALID:
        shm_add(s->slot, SHM_NOTREGISTERED, 1);
        count(s, t->push, SHM_UP_NOTREGISTERED, 1);
        drainlist_append(s->shm->notregistered, shm_app_row_of(s->opts, t->push->app), t->name, request_target_shown(t->push->upstream, t->name, t->len), NULL,
                         0);
        track(s, t, PUSH_INVALID, o->reason, NULL);
        break;
    case OUTCOME_RETRY:
        if (!out_of_retries(s, t)) {
            shm_add(s->slot, SHM_RETRIES, 1);
            count(s, t->push, SHM_UP_RETRIES, 1);
            atomic_fetch_add_explicit(&s->slot->retries_by[o->cause], 1, memory_order_relaxed);
            return 1;
        }
        shm_add(s->slot, SHM_FAILURES, 1);
        count(s, t->push, SHM_UP_FAILURES, 1);
        atomic_fetch_add_explicit(&s->slot->failures_by[CAUSE_RETRIES_EXHAUSTED], 1, memory_order_relaxed);
        track(s, t, PUSH_FAILED, o->reason, NULL);
        break;
    case OUTCOME_FAILED:
        shm_add(s->slot, SHM_FAILURES, 1);
        count(s, t->push, SHM_UP_FAILURES, 1);
        atomic_fetch_add_explicit(&s->slot->failures_by[o->cause], 1, memory_order_relaxed);
        track(s, t, PUSH_FAILED, o->reason, NULL);
        break;
    }
    queue_finish(s->queue, t);
    shm_pending_add(s->slot, -1);
    return 0;
}

static void log_job(struct sender *s, const struct job *job, long status, size_t retried, size_t failed,
                    const struct outcome *retry, const struct outcome *fail)
{
    const char *name = job->up->ops->name;
    const char *retry_reason = retry ? retry->reason : "", *fail_reason = fail ? fail->reason : "";
    const char *sep = job->error[0] ? ": " : "";
    const char *dsep = job->detail[0] ? ": " : "";

    if (failed > 0)
        log_limited(&s->failed_log[fail->cause], LOG_WARN,
                    "%s upstream: HTTP %ld: %zu of %zu targets failed (%s)%s%s%s%s", name, status, failed,
                    job->ntargets, fail_reason, sep, job->error, dsep, job->detail);
    if (retried > 0)
        log_limited(&s->retried_log[retry->cause], LOG_INFO,
                    "%s upstream: HTTP %ld: %zu of %zu targets will be retried (%s)%s%s", name, status, retried,
                    job->ntargets, retry_reason, sep, job->error);
}

/* ---- pace: requests in flight and messages a second ---- */

/* The connections a limit of requests in flight needs. */
static long connections_for(const struct sender *s, size_t limit)
{
    size_t n;

    if (!s->multiplex)
        return s->connections;
    n = (limit + STREAMS_PER_CONNECTION - 1) / STREAMS_PER_CONNECTION;
    return n < 1 ? 1 : (long)n;
}

/* A job finished: the limit may grow (every request allowed was in flight
 * and targets were waiting) or halve (the upstream throttles). */
static void pace_job_done(struct sender *s, int throttled)
{
    if (!pace_finished(&s->pace, throttled, s->capped))
        return;
    if (s->multiplex) {
        s->connections = connections_for(s, s->pace.limit);
        curl_multi_setopt(s->multi, CURLMOPT_MAX_HOST_CONNECTIONS, s->connections);
    }
    log_debug("upstream: %zu requests in flight allowed (%s)", s->pace.limit, throttled ? "throttled" : "saturated");
}

/* This worker's share of --rate-limit: the instance's (or with --redis the
 * fleet's, divided by the live instances) divided by the workers. */
static void on_rate_share(uv_timer_t *t)
{
    struct sender *s = t->data;
    unsigned live;
    double share = (double)s->opts->rate_limit / (s->opts->workers > 0 ? s->opts->workers : 1);

    if (s->instances_of != NULL && (live = s->instances_of(s->instances_arg)) > 0)
        s->instances = live;
    share /= (double)(s->instances > 0 ? s->instances : 1);
    pace_set_rate(&s->pace, share, uv_now(s->loop));
    shm_gauge_set(s->slot, SHM_RATE_SHARE, (int64_t)(share + 0.5));
}

static void on_pace_wait(uv_timer_t *t)
{
    sender_kick(t->data);
}

void sender_share_rate(struct sender *s, unsigned (*instances)(void *arg), void *arg)
{
    s->instances_of = instances;
    s->instances_arg = arg;
}

/* Writes one acknowledgement for the targets of the job that are done for
 * good, before they are freed. */
static void ack_final(struct sender *s, struct job *job, const struct outcome *out)
{
    uint32_t one, *idx = job->ntargets == 1 ? &one : malloc(job->ntargets * sizeof(*idx));
    size_t n = 0;

    if (idx == NULL)
        return; /* an acknowledgement lost is one more delivery after a crash */
    for (size_t i = 0; i < job->ntargets; i++)
        if (out[i].kind != OUTCOME_RETRY || out_of_retries(s, job->targets[i]))
            idx[n++] = job->targets[i]->index;
    s->ack(s->ack_arg, job->push, idx, n);
    if (idx != &one)
        free(idx);
}

static void finish_job(struct sender *s, struct job *job, CURLcode code)
{
    struct outcome *out = job_outcomes(job);
    struct upstream_result res = {code, 0, job->response.data ? job->response.data : "", job->response.len, 0};
    struct target *retry_head = NULL, **retry_tail = &retry_head;
    size_t retried = 0, failed = 0;
    unsigned attempt = 0;
    const struct outcome *retry = NULL, *fail = NULL;

    curl_off_t elapsed_us = 0;

    curl_easy_getinfo(job->easy, CURLINFO_RESPONSE_CODE, &res.status);
    curl_easy_getinfo(job->easy, CURLINFO_TOTAL_TIME_T, &elapsed_us);
    if (code == CURLE_WRITE_ERROR && job->cut && res.status > 0) {
        /* Stopped at the bound: the status is in, and it decides. */
        res.code = CURLE_OK;
        res.cut = 1;
        snprintf(job->error, sizeof(job->error), "an answer over %zu bytes, read no further", job->answer_max);
        log_limited(&s->cut_log, LOG_WARN, "%s upstream: HTTP %ld with an answer over %zu bytes: read no further",
                    job->up->ops->name, res.status, job->answer_max);
    } else if (code == CURLE_ABORTED_BY_CALLBACK && job->sends > 1) {
        snprintf(job->error, sizeof(job->error),
                 "the connection failed before an answer (a refused stream or a dead connection)");
    }
    pace_job_done(s, res.status == 429);
    shm_histogram_observe(&s->slot->upstream_latency, shm_upstream_bounds_us, (uint64_t)elapsed_us);
    if (res.code != CURLE_OK && job->error[0] == '\0')
        snprintf(job->error, sizeof(job->error), "%s", curl_easy_strerror(code));
    shm_add(s->slot, res.code == CURLE_OK ? SHM_UPSTREAM_REQS : SHM_UPSTREAM_ERRS, 1);
    job->up->ops->classify(job->up, job, &res, out);
    if (s->ack != NULL)
        ack_final(s, job, out);
    for (size_t i = 0; i < job->ntargets; i++) {
        struct target *t = job->targets[i];
        int gave_up = out[i].kind == OUTCOME_FAILED || (out[i].kind == OUTCOME_RETRY && out_of_retries(s, t));
        if (gave_up && failed++ == 0)
            fail = &out[i];
        if (apply(s, t, &out[i])) {
            if (retried++ == 0)
                retry = &out[i];
            *retry_tail = t;
            retry_tail = &t->next;
            attempt = t->attempts > attempt ? t->attempts : attempt;
        }
    }
    log_job(s, job, res.status, retried, failed, retry, fail);
    if (retry_head != NULL)
        retry_schedule(&s->retries, retry_head, retried,
                       backoff_delay_ms(attempt > 0 ? attempt - 1 : 0, job->retry_after_ms, backoff_random(&s->rng)));
}

static void link_job(struct sender *s, struct job *job)
{
    if ((job->next = s->jobs) != NULL)
        job->next->prev = &job->next;
    job->prev = &s->jobs;
    s->jobs = job;
}

static void unlink_job(struct job *job)
{
    if ((*job->prev = job->next) != NULL)
        job->next->prev = job->prev;
}

static void job_done(struct sender_transfer *t, CURLcode code)
{
    struct job *job = (struct job *)t;
    struct sender *s = job->sender;

    unlink_job(job);
    finish_job(s, job, code);
    easy_put(s, job->easy);
    job_free(job);
    s->inflight--;
}

/* The gauges /metrics shows for this child. */
static void publish_gauges(struct sender *s)
{
    shm_gauge_set(s->slot, SHM_QUEUE_DEPTH, (int64_t)s->queue->ready);
    shm_gauge_set(s->slot, SHM_QUEUE_BYTES, (int64_t)s->queue->bytes);
    shm_gauge_set(s->slot, SHM_RETRY_WAITING, (int64_t)s->retries.waiting);
    shm_gauge_set(s->slot, SHM_UPSTREAM_INFLIGHT, (int64_t)s->inflight);
    shm_gauge_set(s->slot, SHM_UPSTREAM_SOCKETS, (int64_t)s->connections_open);
    shm_gauge_set(s->slot, SHM_UPSTREAM_LIMIT, (int64_t)s->pace.limit);
}

static int multi_open(struct sender *s)
{
    if ((s->multi = curl_multi_init()) == NULL)
        return -1;
    curl_multi_setopt(s->multi, CURLMOPT_SOCKETFUNCTION, on_curl_socket);
    curl_multi_setopt(s->multi, CURLMOPT_SOCKETDATA, s);
    curl_multi_setopt(s->multi, CURLMOPT_TIMERFUNCTION, on_curl_timer);
    curl_multi_setopt(s->multi, CURLMOPT_TIMERDATA, s);
    curl_multi_setopt(s->multi, CURLMOPT_PIPELINING, (long)CURLPIPE_MULTIPLEX);
    curl_multi_setopt(s->multi, CURLMOPT_MAX_HOST_CONNECTIONS, s->connections);
    curl_multi_setopt(s->multi, CURLMOPT_MAX_CONCURRENT_STREAMS, (long)STREAMS_PER_CONNECTION);
    /* Web Push talks to many hosts: the cap per host holds for each, and
     * this one for all of them together. */
    curl_multi_setopt(s->multi, CURLMOPT_MAX_TOTAL_CONNECTIONS, (long)(s->max_inflight > 0 ? s->max_inflight : 1));
    return 0;
}

static int idle(const struct sender *s)
{
    return s->attached == 0 && s->queue->pending == 0;
}

/* Second stage of going idle: close the upstream connections, with their TLS
 * and HTTP/2 state and curl's caches, by replacing the multi handle (curl
 * has no call that closes only idle connections). The next send connects
 * anew. */
static void on_idle_close(uv_timer_t *t)
{
    struct sender *s = t->data;
    CURLM *old = s->multi;
    size_t open = s->connections_open;

    if (!idle(s))
        return;
    if (multi_open(s) != 0) {
        s->multi = old; /* out of memory: keep the connections */
        return;
    }
    curl_multi_cleanup(old);
    while (s->watches != NULL) /* curl removes its sockets as it closes them; any it did not are closed here */
        unwatch(s->watches);
    while (s->npool > 0)
        curl_easy_cleanup(s->pool[--s->npool]);
    publish_gauges(s);
    malloc_trim(0);
    log_debug("idle for %d s: closed %zu upstream connections", s->opts->upstream_idle_timeout, open);
}

/* First stage: free the easy handles beyond a few and trim the heap. */
static void on_trim(uv_timer_t *t)
{
    struct sender *s = t->data;
    uint64_t close_ms = (uint64_t)s->opts->upstream_idle_timeout * 1000;

    if (!idle(s))
        return;
    while (s->npool > POOL_KEEP)
        curl_easy_cleanup(s->pool[--s->npool]);
    malloc_trim(0);
    if (s->connections_open > 0)
        uv_timer_start(&s->trim, on_idle_close, close_ms > IDLE_TRIM_MS ? close_ms - IDLE_TRIM_MS : 0, 0);
}

static void collect_done(struct sender *s)
{
    CURLMsg *msg;
    int left = 0, handled = 0;

    while (s->turn_finishes < FINISHES_PER_TURN && (msg = curl_multi_info_read(s->multi, &left)) != NULL) {
        s->turn_finishes++;
        handled++;
        struct sender_transfer *t = NULL;
        CURL *easy = msg->easy_handle;
        CURLcode code = msg->data.result;
        if (msg->msg != CURLMSG_DONE)
            continue;
        curl_easy_getinfo(easy, CURLINFO_PRIVATE, (char **)&t);
        curl_multi_remove_handle(s->multi, easy);
        s->attached--;
        t->done(t, code);
    }
    if (left > 0 || s->turn_finishes >= FINISHES_PER_TURN)
        sender_kick(s); /* the rest (if any) on the next turn */
    dispatch(s);
    publish_gauges(s);
    if (idle(s) && (s->npool > POOL_KEEP || s->connections_open > 0) && handled > 0)
        uv_timer_start(&s->trim, on_trim, IDLE_TRIM_MS, 0);
}

int sender_add(struct sender *s, CURL *easy, struct sender_transfer *t)
{
    curl_easy_setopt(easy, CURLOPT_PRIVATE, t);
    if (curl_multi_add_handle(s->multi, easy) != CURLM_OK)
        return -1;
    s->attached++;
    return 0;
}

/* Puts a taken batch back, to be tried again shortly. */
static void defer_batch(struct sender *s, struct target **batch, size_t n)
{
    for (size_t i = 0; i < n; i++)
        batch[i]->next = i + 1 < n ? batch[i + 1] : NULL;
    retry_schedule(&s->retries, batch[0], n, 1000);
}

/* Targets whose upstream this start has no credentials for (spooled by an
 * earlier start), or of an entry of the queue in Redis that no instance
 * served in time (its reason is the push's): given up on, with a line in
 * the log. */
static void fail_unconfigured(struct sender *s, struct target **batch, size_t n)
{
    uint32_t *idx = s->ack != NULL ? calloc(n, sizeof(*idx)) : NULL;
    const char *unserved = batch[0]->push->unserved;
    enum cause cause = unserved != NULL ? CAUSE_UNSERVED : CAUSE_NOT_CONFIGURED;

    if (unserved == NULL)
        log_limited(&s->failed_log[cause], LOG_WARN,
                    "%zu targets of a spooled push for an app or upstream that is not configured: failed", n);
    if (idx != NULL) { /* without it, one more failure after a crash */
        for (size_t i = 0; i < n; i++)
            idx[i] = batch[i]->index;
        s->ack(s->ack_arg, batch[0]->push, idx, n);
        free(idx);
    }
    for (size_t i = 0; i < n; i++) {
        struct outcome o = {OUTCOME_FAILED, cause, NULL, unserved != NULL ? unserved : "upstream not configured"};
        apply(s, batch[i], &o);
    }
}

/* The upstream that serves the target at the head of the queue. */
static struct upstream *head_upstream(const struct sender *s)
{
    const struct push *p = s->queue->head->push;
    unsigned k = (unsigned)p->upstream;

    return k < UPSTREAM_KINDS && p->app <= APPS_MAX && p->unserved == NULL ? s->ups[p->app][k] : NULL;
}

static int several_upstreams(const struct sender *s)
{
    int n = 0;

    for (int a = 0; a <= APPS_MAX; a++)
        for (int k = 0; k < UPSTREAM_KINDS; k++)
            n += s->ups[a][k] != NULL;
    return n > 1;
}

/* Sends queued targets while there is room in flight. */
static void dispatch(struct sender *s)
{
    if (s->stopped)
        return;
    while (s->inflight < s->pace.limit && s->queue->head != NULL) {
        struct upstream *up = head_upstream(s);
        if (s->turn_starts++ >= STARTS_PER_TURN) {
            sender_kick(s); /* more on the next turn */
            return;
        }
        if (up == NULL) {
            size_t n = queue_take_batch(s->queue, s->batch, s->batch_cap);
            fail_unconfigured(s, s->batch, n);
            continue;
        }
        if (up->ops->ready != NULL && !up->ops->ready(up)) {
            /* It kicks the sender when it can send.  Alone, it holds the
             * queue; beside another upstream, its targets wait aside so the
             * other's are not held up behind them. */
            if (!several_upstreams(s)) {
                s->capped = 0;
                return;
            }
            size_t n = queue_take_batch(s->queue, s->batch, up->max_targets);
            defer_batch(s, s->batch, n);
            continue;
        }
        size_t allowed = pace_messages(&s->pace, uv_now(s->loop));
        if (allowed == 0) { /* the rate holds them back, not the limit */
            uv_timer_start(&s->pace_wait, on_pace_wait, pace_wait_ms(&s->pace, uv_now(s->loop)), 0);
            s->capped = 0;
            return;
        }
        size_t n = queue_take_batch(s->queue, s->batch, allowed < up->max_targets ? allowed : up->max_targets);
        struct job *job = job_new(s, up, s->batch, n);
        CURL *e = job ? easy_get(s) : NULL;
        int rc = 0;

        if (e != NULL)
            job->easy = e;
        if (e == NULL || (rc = up->ops->prepare(up, job)) != 0) {
            if (e == NULL || rc != -EAGAIN)
                log_error("cannot build an upstream request for %zu targets: out of memory", n);
            if (e)
                easy_put(s, e);
            if (job)
                job_free(job);
            defer_batch(s, s->batch, n);
            return;
        }
        if (job->answer_max == 0)
            job->answer_max = ANSWER_MAX_DEFAULT;
        curl_easy_setopt(e, CURLOPT_WRITEDATA, job);
        curl_easy_setopt(e, CURLOPT_HEADERDATA, job);
        curl_easy_setopt(e, CURLOPT_PREREQFUNCTION, on_prereq);
        curl_easy_setopt(e, CURLOPT_PREREQDATA, job);
        /* Pooled handles serve every upstream: set for each job. */
        curl_easy_setopt(e, CURLOPT_OPENSOCKETFUNCTION, on_open_job_socket);
        curl_easy_setopt(e, CURLOPT_OPENSOCKETDATA, job);
        curl_easy_setopt(e, CURLOPT_ERRORBUFFER, job->error);
        for (size_t i = 0; i < n; i++)
            job->targets[i]->attempts++;
        shm_add(s->slot, SHM_ATTEMPTS, n);
        count(s, job->push, SHM_UP_ATTEMPTS, n);
        pace_spend(&s->pace, n);
        if (sender_add(s, e, &job->xfer) != 0) {
            finish_job(s, job, CURLE_FAILED_INIT);
            easy_put(s, e);
            job_free(job);
            continue;
        }
        link_job(s, job);
        s->inflight++;
    }
    /* Finishes come in batches, handled before the next dispatch: each of
     * them counts as saturated if this one stopped at the limit. */
    s->capped = s->inflight >= s->pace.limit && s->queue->head != NULL;
}

static void on_turn_end(uv_check_t *c)
{
    struct sender *s = c->data;

    s->turn_sockets = s->turn_starts = s->turn_finishes = 0;
}

static void on_kick(uv_idle_t *idle)
{
    struct sender *s = idle->data;

    uv_idle_stop(idle);
    collect_done(s); /* finishes left from the last turn, then dispatch */
}

void sender_kick(struct sender *s)
{
    if (!s->stopped)
        uv_idle_start(&s->kick, on_kick);
}

static void kick_cb(void *arg)
{
    sender_kick(arg);
}

void sender_flush_log(struct sender *s, int force)
{
    for (int i = 0; i < CAUSE_COUNT; i++) {
        log_limit_flush(&s->failed_log[i], LOG_WARN, "upstream failures", force);
        log_limit_flush(&s->retried_log[i], LOG_INFO, "upstream retries", force);
    }
    log_limit_flush(&s->cut_log, LOG_WARN, "answers over their bound", force);
}

static void on_log_flush(uv_timer_t *t)
{
    sender_flush_log(t->data, 0);
}

int sender_set_upstream(struct sender *s, int kind, struct upstream *up)
{
    if (kind < 0 || kind >= UPSTREAM_KINDS || up->app > APPS_MAX)
        return -1;
    if (up->max_targets > s->batch_cap) {
        struct target **b = realloc(s->batch, up->max_targets * sizeof(*b));
        if (b == NULL)
            return -1;
        s->batch = b;
        s->batch_cap = up->max_targets;
    }
    s->ups[up->app][kind] = up;
    return 0;
}

void sender_on_outcome(struct sender *s, sender_outcome_fn *fn, void *arg)
{
    s->told = fn;
    s->told_arg = arg;
}

void sender_on_final(struct sender *s, sender_ack_fn *ack, void *arg)
{
    s->ack = ack;
    s->ack_arg = arg;
}

uv_loop_t *sender_loop(const struct sender *s)
{
    return s->loop;
}

/* ---- set-up ---- */

/* --ca-file adds to the system store. OpenSSL reads the file as CAINFO and
 * the system's hashed CA directory as CAPATH, so both verify. A path is
 * matched by name when curl looks for a connection to reuse; an in-memory
 * bundle (CURLOPT_CAINFO_BLOB) would be compared byte for byte, the whole
 * system store, for every request. */
static int find_ca_path(struct sender *s)
{
    CURL *probe;
    char *system_path = NULL;

    if (s->opts->ca_file == NULL)
        return 0;
    if ((probe = curl_easy_init()) == NULL)
        return -1;
    curl_easy_getinfo(probe, CURLINFO_CAPATH, &system_path);
    if (system_path != NULL)
        s->ca_path = strdup(system_path);
    curl_easy_cleanup(probe);
    if (system_path == NULL)
        log_warn("libcurl knows no system CA directory: upstream TLS trusts --ca-file alone");
    else if (s->ca_path == NULL)
        return -1;
    return 0;
}

struct sender *sender_create(uv_loop_t *loop, const struct fcmd_options *o, struct queue *q, int kind,
                             struct upstream *up, struct shm_region *shm, unsigned slot)
{
    struct sender *s = calloc(1, sizeof(*s));
    int https = strncmp(up->url, "https://", 8) == 0;

    if (s == NULL || kind < 0 || kind >= UPSTREAM_KINDS || up->app > APPS_MAX) {
        free(s);
        return NULL;
    }
    s->loop = loop;
    s->opts = o;
    s->queue = q;
    s->ups[up->app][kind] = up;
    s->batch_cap = up->max_targets;
    s->shm = shm;
    s->slot = &shm->slots[slot];
    for (int i = 0; i < CAUSE_COUNT; i++) {
        s->failed_log[i] = (struct log_limit)LOG_LIMIT_INIT(10000);
        s->retried_log[i] = (struct log_limit)LOG_LIMIT_INIT(10000);
    }
    s->cut_log = (struct log_limit)LOG_LIMIT_INIT(10000);
    s->rng = ((uint64_t)getpid() << 32) ^ (uint64_t)time(NULL) ^ 0x9e3779b97f4a7c15ull;
    /* HTTP/2 multiplexes many requests on few connections; HTTP/1.1 needs one
     * connection per request in flight. */
    s->multiplex = https || o->http2_prior_knowledge;
    s->http_version = o->http2_prior_knowledge ? CURL_HTTP_VERSION_2_PRIOR_KNOWLEDGE : CURL_HTTP_VERSION_2TLS;
    /* With HTTP/2 the requests in flight start at a quarter of the ceiling
     * (400 of 1,600 by default) and grow while targets wait; with HTTP/1.1
     * each needs its own connection and they start at the ceiling. */
    s->connections = o->upstream_connections > 0 ? o->upstream_connections : s->multiplex ? H2_CONNECTIONS_MAX : 32;
    s->max_inflight = o->max_inflight > 0 ? (size_t)o->max_inflight
                                          : (size_t)s->connections * (s->multiplex ? STREAMS_PER_CONNECTION : 1);
    pace_init(&s->pace, INFLIGHT_FLOOR, s->multiplex ? s->max_inflight / H2_START_DIVISOR : s->max_inflight,
              s->max_inflight);
    s->connections = connections_for(s, s->pace.limit);
    s->pool = calloc(s->max_inflight, sizeof(*s->pool));
    s->batch = calloc(up->max_targets, sizeof(*s->batch));
    if (s->pool == NULL || s->batch == NULL || find_ca_path(s) != 0 || multi_open(s) != 0)
        goto fail;
    retry_init(&s->retries, loop, q, kick_cb, s);
    uv_timer_init(loop, &s->timer);
    s->timer.data = s;
    uv_check_init(loop, &s->turn);
    s->turn.data = s;
    uv_check_start(&s->turn, on_turn_end);
    uv_unref((uv_handle_t *)&s->turn);
    uv_idle_init(loop, &s->kick);
    s->kick.data = s;
    uv_timer_init(loop, &s->trim);
    s->trim.data = s;
    uv_unref((uv_handle_t *)&s->trim);
    uv_timer_init(loop, &s->pace_wait);
    s->pace_wait.data = s;
    uv_timer_init(loop, &s->rate_share);
    s->rate_share.data = s;
    if (o->rate_limit > 0) {
        on_rate_share(&s->rate_share);
        uv_timer_start(&s->rate_share, on_rate_share, RATE_SHARE_MS, RATE_SHARE_MS);
        uv_unref((uv_handle_t *)&s->rate_share);
    }
    uv_timer_init(loop, &s->log_flush);
    s->log_flush.data = s;
    uv_timer_start(&s->log_flush, on_log_flush, LOG_FLUSH_MS, LOG_FLUSH_MS);
    uv_unref((uv_handle_t *)&s->log_flush);
    return s;
fail:
    log_error("cannot set up the upstream sender");
    free(s->ca_path);
    free(s->pool);
    free(s->batch);
    free(s);
    return NULL;
}

/* ---- teardown ---- */

void sender_remove(struct sender *s, CURL *easy)
{
    /* A name lookup under way is not waited for: curl would join its
     * resolver's thread, for as long as the resolver takes. */
    curl_easy_setopt(easy, CURLOPT_QUICK_EXIT, 1L);
    if (curl_multi_remove_handle(s->multi, easy) == CURLM_OK)
        s->attached--;
}

void sender_stop(struct sender *s)
{
    if (s == NULL)
        return;
    s->stopped = 1;
    uv_idle_stop(&s->kick);
    uv_timer_stop(&s->trim);
    uv_timer_stop(&s->pace_wait);
    uv_timer_stop(&s->rate_share);
    uv_timer_stop(&s->log_flush);
    while (s->jobs != NULL) {
        struct job *job = s->jobs;
        unlink_job(job);
        sender_remove(s, job->easy);
        s->inflight--;
        for (size_t i = 0; i < job->ntargets; i++)
            job->targets[i]->next = i + 1 < job->ntargets ? job->targets[i + 1] : NULL;
        queue_requeue(s->queue, job->targets[0]);
        easy_put(s, job->easy);
        job_free(job);
    }
    retry_stop(&s->retries);
}

static void on_closed(uv_handle_t *h)
{
    struct sender *s = h->data;

    if (--s->closing == 0)
        free(s);
}

void sender_free(struct sender *s)
{
    if (s == NULL)
        return;

    uv_handle_t *handles[] = {(uv_handle_t *)&s->timer, (uv_handle_t *)&s->trim, (uv_handle_t *)&s->kick,
                              (uv_handle_t *)&s->turn, (uv_handle_t *)&s->pace_wait, (uv_handle_t *)&s->rate_share,
                              (uv_handle_t *)&s->log_flush};

    /* curl closes its connections and tells on_curl_socket() of each socket
     * it had us watch (and may set its timer): the handles are still open. */
    curl_multi_cleanup(s->multi);
    s->multi = NULL;
    while (s->watches != NULL)
        unwatch(s->watches);
    while (s->npool > 0)
        curl_easy_cleanup(s->pool[--s->npool]);
    free(s->pool);
    free(s->batch);
    free(s->ca_path);
    s->closing = sizeof(handles) / sizeof(handles[0]);
    for (size_t i = 0; i < sizeof(handles) / sizeof(handles[0]); i++)
        uv_close(handles[i], on_closed);
}
