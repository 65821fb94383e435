/*
 * child/child.c - a worker process's life: set up, serve, drain, exit.
 *
 * The child adopts the listen descriptor the master bound, serves HTTP with
 * h2o and sends upstream with curl, both on one libuv loop, so nothing in
 * it ever blocks.  On SIGTERM it stops accepting, keeps sending until its
 * pending targets are finished (or shutdown_timeout passes), and exits.
 */
#include "child.h"
#include "entry.h"
#include "../common/log.h"
#include "../common/options.h"
#include "../common/tenant.h"
#include "../shm/region.h"
#include "http/conn.h"
#include "fleet/fleet.h"
#include "fleet/fleet_events.h"
#include "fleet/fleet_idem.h"
#include "fleet/fleet_queue.h"
#include "fleet/statuses.h"
#include "observe/graphite.h"
#include "http/http.h"
#include "upstream/sender.h"
#include "store/spool.h"
#include "upstream/upstream.h"
#include "webhook/webhook.h"

#include <errno.h>
#include <limits.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* A worker that could not start, or that stopped while h2o still held a
 * connection, frees nothing: what it made goes with the process, and stays
 * reachable from here so that a leak checker does not count it.  A worker
 * that stopped cleanly leaves this NULL and frees it all (teardown()). */
static struct child *volatile left;

static void on_accept(uv_stream_t *listener, int status)
{
    struct child *c = listener->data;

    if (status == 0)
        conn_accept(&c->conns, listener, c->is_unix);
}

static int open_listener(struct child *c, int fd)
{
    int rc;

    c->is_unix = c->opts->unix_path != NULL;
    /* Each step's own libuv error, not "a || b" (which makes any of them 1). */
    rc = c->is_unix ? uv_pipe_init(&c->loop, &c->listener.pipe, 0) : uv_tcp_init(&c->loop, &c->listener.tcp);
    c->listener.handle.data = c;
    if (rc == 0)
        rc = c->is_unix ? uv_pipe_open(&c->listener.pipe, fd) : uv_tcp_open(&c->listener.tcp, fd);
    if (rc == 0)
        rc = uv_listen(&c->listener.stream, 1024, on_accept);
    if (rc != 0)
        log_error("child cannot listen on the inherited socket: %s", uv_strerror(rc));
    return rc;
}

static void on_stop_tick(uv_timer_t *t)
{
    struct child *c = t->data;
    uint64_t now = uv_now(&c->loop);
    int http_done = c->conns.count == 0 || now >= c->stop_started + CHILD_HTTP_GRACE_MS;

    if ((c->queue.pending > 0 || !http_done) && now < c->stop_deadline)
        return;
    /* Fleet mode: drain answers not written by now go back to the lists
     * through Redis, which takes a round trip the loop must still run. */
    if (c->fleet != NULL)
        http_give_back_drains(&c->http);
    /* What this child counted reaches Redis before it goes (fleet mode). */
    if (c->fleet != NULL && !fleet_flushed(c->fleet) && now < c->stop_deadline)
        return;
    /* ...and what it learnt of its pushes' statuses, while Redis is there to take it. */
    if (c->fstat != NULL && !fleet_statuses_settled(c->fstat) && now < c->stop_deadline)
        return;
    /* The webhook's events go out before the worker does. */
    if (!webhook_settled(c->webhook) && now < c->stop_deadline)
        return;
    /* ...and so do the acknowledgements of the queue in Redis. */
    if (c->fq != NULL && !fleet_queue_settled(c->fq) && now < c->stop_deadline)
        return;
    if (!fleet_events_settled(c->events) && now < c->stop_deadline)
        return;
    if (c->queue.pending > 0)
        log_warn("child stopping with %zu targets unfinished", c->queue.pending);
    uv_stop(&c->loop);
}

static void on_stop_signal(uv_signal_t *s, int signo)
{
    struct child *c = s->data;

    if (c->stopping) {
        log_warn("child stopping at once on signal %d: %zu targets unfinished", signo, c->queue.pending);
        uv_stop(&c->loop);
        return;
    }
    c->stopping = 1;
    spool_stop(c->spool);
    webhook_stop(c->webhook);
    if (c->fq != NULL)
        fleet_queue_stop(c->fq);
    fleet_events_stop(c->events);
    graphite_stop(c->graphite);
    c->graphite = NULL;
    uv_close(&c->listener.handle, NULL);
    h2o_context_request_shutdown(&c->ctx);
    c->stop_started = uv_now(&c->loop);
    c->stop_deadline = c->stop_started + (uint64_t)c->opts->shutdown_timeout * 1000;
    /* Polling the pending count keeps the sender free of shutdown logic. */
    uv_timer_start(&c->stop_timer, on_stop_tick, 0, 50);
}

/* The master relays SIGUSR1 (logrotate) to every worker: each holds its own
 * descriptors for both logs. */
static void on_reopen_signal(uv_signal_t *s, int signo)
{
    struct child *c = s->data;
    int rc;

    (void)signo;
    if ((rc = log_reopen()) != 0)
        log_error("open(%s) failed, the log stays where it was: %s", log_path(), strerror(-rc));
    http_reopen_access_log(&c->http);
}

static int watch_signals(struct child *c)
{
    if (uv_signal_init(&c->loop, &c->sigterm) != 0 || uv_signal_start(&c->sigterm, on_stop_signal, SIGTERM) != 0 ||
        uv_signal_init(&c->loop, &c->sigusr1) != 0 || uv_signal_start(&c->sigusr1, on_reopen_signal, SIGUSR1) != 0)
        return -1;
    c->sigterm.data = c;
    c->sigusr1.data = c;
    uv_unref((uv_handle_t *)&c->sigterm);
    uv_unref((uv_handle_t *)&c->sigusr1);
    /* A Ctrl-C or a closed terminal reaches the whole process group; stopping
     * is the master's decision, relayed as SIGTERM, so a child ignores both. */
    signal(SIGINT, SIG_IGN);
    signal(SIGHUP, SIG_IGN);
    return 0;
}

/* The master forks children with its relayed signals blocked; once every
 * handler is in place, what arrived meanwhile is delivered to them. */
static int unblock_signals(void)
{
    sigset_t none;

    sigemptyset(&none);
    if (sigprocmask(SIG_SETMASK, &none, NULL) != 0) {
        log_error("sigprocmask() failed: %s", strerror(errno));
        return -1;
    }
    return 0;
}

/* Pushes came from the spool or the queue in Redis: send them. */
static void on_replayed(void *arg)
{
    sender_kick(arg);
}

static void on_push_done(void *arg, struct push *p)
{
    spool_push_done(arg, p);
}

static void on_fq_push_done(void *arg, struct push *p)
{
    fleet_queue_push_done(arg, p);
}

/* The webhook and its events in Redis, each through the other's calls. */
static int event_take(void *webhook, struct fe_held *h, const char *app, size_t app_len, int64_t at_ms,
                      const char *text, size_t len)
{
    return webhook_take(webhook, h, app, app_len, at_ms, text, len);
}

static size_t event_room(void *webhook)
{
    return webhook_room(webhook);
}

static void event_stored(void *webhook, size_t n, size_t bytes, size_t dropped)
{
    webhook_stored(webhook, n, bytes, dropped);
}

static int event_add(void *events, const char *app, size_t app_len, int64_t at_ms, const char *text, size_t len)
{
    return fleet_events_add(events, app, app_len, at_ms, text, len);
}

static void event_done(void *events, void *const *held, size_t n)
{
    fleet_events_done(events, held, n);
}

/* Whether this worker has app a's credentials for upstream kind k: the
 * queue in Redis leaves what it has not to the other instances. */
static int child_serves(void *arg, unsigned a, int k)
{
    const struct child *c = arg;

    return a <= APPS_MAX && k >= 0 && k < UPSTREAM_KINDS && c->ups[a][k] != NULL;
}

/* With --redis-queue: pushes come from the stream, and go back to it as
 * acknowledgements; the webhook's events go in with those, and come back
 * from a stream of their own. */
static int open_fleet_queue(struct child *c)
{
    unsigned slot = (unsigned)(c->slot - c->shm->slots);

    c->fq = fleet_queue_start(&c->loop, c->fleet, c->opts, c->shm, slot, &c->queue, on_replayed, c->sender,
                              &c->limits);
    if (c->fq == NULL)
        return -1;
    fleet_queue_serves(c->fq, child_serves, c);
    c->queue.on_push_done = on_fq_push_done;
    c->queue.arg = c->fq;
    if (c->webhook != NULL) {
        struct fe_sink sink = {event_take, event_room, event_stored, c->webhook};
        if ((c->events = fleet_events_start(&c->loop, c->fleet, c->opts, c->shm, slot, &sink)) == NULL)
            return -1;
        fleet_queue_use_events(c->fq, c->events);
        webhook_use_redis(c->webhook, &(struct webhook_store){event_add, event_done, c->events});
    }
    return 0;
}

static void on_rescan_signal(uv_signal_t *h, int signo)
{
    (void)signo;
    spool_scan(((struct child *)h->data)->spool);
}

/* The sender's word of each final outcome, for the webhook and the
 * fleet's push statuses. */
static void tell_outcome(void *arg, const struct push *p, const struct target *t, int outcome,
                         const char *reason, const char *canonical, int last)
{
    struct child *c = arg;

    if (c->webhook != NULL)
        webhook_outcome(c->webhook, p, t, outcome, reason, canonical, last);
    if (c->fstat != NULL)
        fleet_statuses_outcome(c->fstat, p->id,
                               p->app_name != NULL ? p->app_name : options_app_name(c->opts, p->app),
                               (unsigned)p->upstream, p->ntargets > UINT32_MAX ? UINT32_MAX : (uint32_t)p->ntargets,
                               (enum push_outcome)outcome, t->name, t->len, reason);
}

static int start_webhook(struct child *c, unsigned slot)
{
    if ((c->webhook = webhook_start(&c->loop, c->opts, c->shm, slot, c->sender)) == NULL)
        return -1;
    sender_on_outcome(c->sender, tell_outcome, c);
    return 0;
}

/* With --redis: push statuses and Idempotency-Keys for the whole fleet. */
static int start_fleet_outcomes(struct child *c)
{
    if ((!c->opts->redis_local_statuses &&
         (c->fstat = fleet_statuses_new(&c->loop, c->fleet, c->opts, c->slot)) == NULL) ||
        (c->fidem = fleet_idem_new(&c->loop, c->fleet)) == NULL)
        return -1;
    if (c->fstat != NULL)
        sender_on_outcome(c->sender, tell_outcome, c);
    return 0;
}

/* An event an adopted spool segment held, for the webhook. */
static int restore_event(void *webhook, struct segment *g, uint64_t at_ms, const char *app, size_t app_len,
                         const char *id, size_t id_len, const char *text, size_t len)
{
    return webhook_restore(webhook, g, at_ms, app, app_len, id, id_len, text, len);
}

/* The sender's word that targets are done for good, for the spool. */
static void ack_in_spool(void *spool, struct push *p, const uint32_t *indexes, size_t n)
{
    spool_ack(spool, p, indexes, n);
}

/* The fleet's live instances, for the sender's share of --rate-limit. */
static unsigned live_instances(void *fleet)
{
    struct fleet_totals ft;

    return fleet_totals(fleet, &ft) == 0 && ft.instances <= UINT_MAX ? (unsigned)ft.instances : 0;
}

/* The spool, and at once the work that dead children left in it. */
static int open_spool(struct child *c)
{
    if ((c->spool = spool_open(&c->loop, c->opts, c->shm, c->slot, &c->queue, &c->limits, on_replayed,
                                c->sender)) == NULL)
        return -1;
    c->queue.on_push_done = on_push_done;
    c->queue.arg = c->spool;
    sender_on_final(c->sender, ack_in_spool, c->spool);
    if (c->webhook != NULL) { /* before the first scan: adopted segments hold events too */
        webhook_use_spool(c->webhook, c->spool);
        spool_on_events(c->spool, restore_event, c->webhook);
    }
    if (uv_signal_init(&c->loop, &c->sigusr2) != 0 || uv_signal_start(&c->sigusr2, on_rescan_signal, SIGUSR2) != 0)
        return -1;
    c->sigusr2.data = c;
    uv_unref((uv_handle_t *)&c->sigusr2);
    spool_scan(c->spool);
    return 0;
}

static int setup_http(struct child *c)
{
    h2o_hostconf_t *host;

    h2o_config_init(&c->config);
    c->config.server_name = h2o_iovec_init(H2O_STRLIT("fcmd"));
    /* h2o refuses what is far beyond the limit (HTTP/1.1: its own 413;
     * HTTP/2: RST_STREAM); a little beyond it, fcmd answers a JSON 413. */
    c->config.max_request_entity_size = (size_t)c->opts->max_body_bytes + HTTP_ENTITY_SLACK;
    /* Slow clients (slowloris) and idle connections are closed after this;
     * conn.c does what h2o cannot for HTTP/2. */
    c->config.handshake_timeout = (uint64_t)c->opts->client_timeout * 1000;
    c->config.http1.req_timeout = (uint64_t)c->opts->client_timeout * 1000;
    c->config.http2.idle_timeout = (uint64_t)c->opts->client_timeout * 1000;
    host = h2o_config_register_host(&c->config, h2o_iovec_init(H2O_STRLIT("default")), 65535);
    c->http = (struct http_server){.opts = c->opts,
                                   .shm = c->shm,
                                   .slot = c->slot,
                                   .worker_id = c->worker_id,
                                   .upstream_name = child_upstream_name(c),
                                   .queue = &c->queue,
                                   .ups = c->ups,
                                   .sender = c->sender,
                                   .spool = c->spool,
                                   .fleet = c->fleet,
                                   .fq = c->fq,
                                   .fstat = c->fstat,
                                   .fidem = c->fidem,
                                   .conns = &c->conns,
                                   .limits = &c->limits,
                                   .stopping = &c->stopping,
                                   .auth_scopes = options_auth_scopes(c->opts),
                                   .who = TENANT_NONE,
                                   .access_log_fd = -1};
    if (host == NULL || http_register(&c->http, host) != 0)
        return -1;
    h2o_context_init(&c->ctx, &c->loop, &c->config);
    c->accept_ctx.ctx = &c->ctx;
    c->accept_ctx.hosts = c->config.hosts;
    c->accept_ctx.ssl_ctx = c->opts->tls_ctx;
    return conn_init(&c->conns, &c->ctx, &c->accept_ctx, (unsigned)c->opts->client_timeout,
                     (size_t)c->opts->max_connections);
}

/* Each provider's hooks, by upstream kind: NAME_provider from its folder. */
#define PROVIDER_ROW(ID, NAME, LABEL, PATH, ENDPOINT, HINT) [UPSTREAM_##ID] = &NAME##_provider,
static const struct provider *const providers[UPSTREAM_KINDS] = {FCMD_PROVIDERS(PROVIDER_ROW)};
#undef PROVIDER_ROW

/* App a's adapters, one for each provider its settings name; an app whose
 * credentials a reload could not read gets adapters that make its targets
 * wait. */
static int create_app_upstreams(struct child *c, unsigned a, const struct fcmd_options *o, int broken)
{
    struct shm_app *shared = &c->shm->apps[child_app_row(c, a)];

    for (int k = 0; k < UPSTREAM_KINDS; k++) {
        struct upstream *up;
        if (!providers[k]->configured(o, broken))
            continue;
        if ((up = broken ? wait_create(providers[k]->url(o)) : providers[k]->create(o, shared)) == NULL)
            return -1;
        up->app = a;
        c->ups[a][k] = up;
    }
    return 0;
}

static int create_upstreams(struct child *c)
{
    const struct fcmd_options *o = c->opts;

    if (create_app_upstreams(c, APP_DEFAULT, o, 0) != 0)
        return -1;
    for (size_t i = 0; i < o->napps; i++)
        if (create_app_upstreams(c, (unsigned)i + 1, &o->apps[i].o, o->apps[i].broken) != 0)
            return -1;
    c->upstream = c->ups[0][UPSTREAM_FCM];
    return 0;
}

/* The sender, with every app's adapters. */
static struct sender *create_sender(struct child *c, unsigned slot)
{
    struct sender *s = NULL;

    for (unsigned a = 0; a <= c->opts->napps; a++) {
        for (int k = 0; k < UPSTREAM_KINDS; k++) {
            struct upstream *up = c->ups[a][k];
            if (up == NULL)
                continue;
            if (s == NULL)
                s = sender_create(&c->loop, c->opts, &c->queue, k, up, c->shm, slot);
            else if (sender_set_upstream(s, k, up) != 0)
                return NULL;
            if (s == NULL)
                return NULL;
        }
    }
    return s;
}

static int start_upstreams(struct child *c)
{
    for (unsigned a = 0; a <= c->opts->napps; a++) {
        for (int k = 0; k < UPSTREAM_KINDS; k++) {
            struct upstream *up = c->ups[a][k];
            if (up != NULL && up->ops->start != NULL && up->ops->start(up, c->sender, c->slot) != 0)
                return -1;
        }
    }
    return 0;
}

/* ---- the stop: everything set up above, undone in reverse ---- */

static void on_close_deadline(uv_timer_t *t)
{
    struct child *c = t->data;

    c->close_timed_out = 1;
}

/* The HTTP connections still open (a keep-alive one a client holds, an
 * HTTP/2 one after its GOAWAY) are shut down, and the loop runs until h2o
 * has freed them all, for at most CHILD_CLOSE_MS.  Returns 0, or -1 when
 * some stayed: an HTTP/1 request whose answer was still to come, which
 * h2o no longer reads from. */
static int close_connections(struct child *c)
{
    c->close_timed_out = 0;
    uv_timer_start(&c->stop_timer, on_close_deadline, CHILD_CLOSE_MS, 0);
    while (c->conns.count > 0 && !c->close_timed_out) {
        conn_close_all(&c->conns);
        uv_run(&c->loop, UV_RUN_ONCE);
    }
    uv_timer_stop(&c->stop_timer);
    if (c->conns.count == 0)
        return 0;
    log_info("child stopping with %zu HTTP connections still waiting for an answer", c->conns.count);
    return -1;
}

/* Whether h2o's context holds no timeout entry: h2o_context_dispose()
 * asserts as much, and every connection has gone. */
static int h2o_idle(h2o_context_t *ctx)
{
    h2o_timeout_t *t[] = {&ctx->zero_timeout, &ctx->one_sec_timeout, &ctx->hundred_ms_timeout,
                          &ctx->handshake_timeout, &ctx->http1.req_timeout, &ctx->http2.idle_timeout,
                          &ctx->http2.graceful_shutdown_timeout, &ctx->proxy.io_timeout};

    for (size_t i = 0; i < sizeof(t) / sizeof(t[0]); i++)
        if (!h2o_linklist_is_empty(&t[i]->_entries))
            return 0;
    return 1;
}

static void close_signal(uv_signal_t *h, int signo)
{
    uv_close((uv_handle_t *)h, NULL);
    /* A signal that comes now finds no handler: the worker is stopping
     * anyway, and SIGUSR1's default would end it without its exit. */
    signal(signo, SIG_IGN);
}

static void close_left(uv_handle_t *h, void *arg)
{
    if (uv_is_closing(h))
        return;
    log_warn("child stopping: a %s handle was left open", uv_handle_type_name(uv_handle_get_type(h)));
    uv_close(h, NULL);
    ++*(unsigned *)arg;
}

/* Every room's handles are closing: the loop runs until libuv has closed
 * them and the thread pool has given back what it had. */
static int close_loop(struct child *c)
{
    unsigned stray = 0;
    int rc;

    uv_walk(&c->loop, close_left, &stray);
    while (uv_run(&c->loop, UV_RUN_DEFAULT) != 0)
        ;
    if ((rc = uv_loop_close(&c->loop)) != 0)
        log_error("child stopping: its loop does not close: %s", uv_strerror(rc));
    return rc != 0 || stray > 0 ? -1 : 0;
}

static void destroy_upstreams(struct child *c)
{
    for (unsigned a = 0; a <= c->opts->napps; a++)
        for (int k = 0; k < UPSTREAM_KINDS; k++)
            if (c->ups[a][k] != NULL) {
                c->ups[a][k]->ops->destroy(c->ups[a][k]);
                c->ups[a][k] = NULL;
            }
    c->upstream = NULL;
}

/* A clean stop: every room frees what it made, in the reverse order of
 * set-up.  The pushes still pending (a stop at once, or past the deadline)
 * are freed with the queue, unfinished: uncounted, unacknowledged, and
 * still in the spool. */
static void teardown(struct child *c)
{
    graphite_stop(c->graphite); /* stopped at SIGTERM already */
    c->graphite = NULL;
    close_signal(&c->sigterm, SIGTERM);
    close_signal(&c->sigusr1, SIGUSR1);
    if (c->spool != NULL)
        close_signal(&c->sigusr2, SIGUSR2);
    /* The HTTP side; disposing of h2o's context runs the loop once more,
     * while the rooms below are all still there. */
    conn_free(&c->conns);
    /* h2o's reminder, a second after the stop began, to send its HTTP/2
     * connections a second GOAWAY: none is left to send it to. */
    if (h2o_timeout_is_linked(&c->ctx.http2._graceful_shutdown_timeout))
        h2o_timeout_unlink(&c->ctx.http2._graceful_shutdown_timeout);
    if (h2o_idle(&c->ctx)) {
        h2o_context_dispose(&c->ctx);
        h2o_config_dispose(&c->config);
    } else {
        log_warn("child stopping: h2o still has timers set; its context is not freed");
    }
    http_close(&c->http);
    /* The fleet's connection goes first: the replies the queue in Redis
     * awaits on it are called off before the queue goes. */
    fleet_stop(c->fleet);
    fleet_queue_free(c->fq);
    c->fq = NULL;
    /* Before the webhook: the events it never got to Redis are handed back. */
    fleet_events_free(c->events);
    c->events = NULL;
    if (c->fstat != NULL && c->webhook == NULL)
        sender_on_outcome(c->sender, NULL, NULL);
    fleet_statuses_free(c->fstat);
    c->fstat = NULL;
    fleet_idem_free(c->fidem);
    c->fidem = NULL;
    fleet_free(c->fleet);
    c->fleet = NULL;
    spool_close(c->spool);
    c->spool = NULL;
    /* Its batch in flight is a transfer on the sender's multi handle. */
    if (c->webhook != NULL)
        sender_on_outcome(c->sender, NULL, NULL);
    webhook_free(c->webhook);
    c->webhook = NULL;
    /* The sender stopped (child_main()) before the adapters go that built
     * its jobs, and the adapters' own transfers (a token request) go before
     * the sender. */
    destroy_upstreams(c);
    sender_free(c->sender);
    c->sender = NULL;
    uv_close((uv_handle_t *)&c->stop_timer, NULL);
    if (close_loop(c) != 0) {
        left = c; /* a handle of some room's is still open: its memory may still be in use */
        return;
    }
    queue_free(&c->queue);
    free(c);
}

int child_main(const struct fcmd_options *o, int listen_fd, struct shm_region *shm, unsigned slot, int reporter)
{
    struct child *c = calloc(1, sizeof(*c));

    if (c == NULL) {
        log_error("child set-up failed: out of memory");
        return 1;
    }
    /* Accept one connection per wake-up, so children share the load. */
    setenv("UV_TCP_SINGLE_ACCEPT", "1", 1);
    c->opts = o;
    c->shm = shm;
    c->slot = &shm->slots[slot];
    snprintf(c->worker_id, sizeof(c->worker_id), "%u", slot);
    c->limits = (struct request_limits){.max_body = (size_t)o->max_body_bytes,
                                        .max_tokens = (size_t)o->max_tokens,
                                        .max_payload = (size_t)o->max_payload_bytes};
    for (int k = 0; k < UPSTREAM_KINDS; k++)
        c->limits.rules[k] = providers[k]->rules;
    queue_init(&c->queue, (size_t)o->queue_size, (size_t)o->queue_max_bytes);
    /* Every push writes a status: the ledger is mapped now, not a page fault at a time. */
    ledger_map(shm->push_status, 0);
    /* The bounds /metrics sets the queue's fill against (alerts read them). */
    shm_gauge_set(c->slot, SHM_QUEUE_CAPACITY, (int64_t)c->queue.capacity);
    shm_gauge_set(c->slot, SHM_QUEUE_MAX_BYTES, (int64_t)c->queue.max_bytes);
    if (uv_loop_init(&c->loop) != 0) {
        log_error("uv_loop_init() failed");
        free(c);
        return 1;
    }
    uv_timer_init(&c->loop, &c->stop_timer);
    c->stop_timer.data = c;
    if (create_upstreams(c) != 0 || (c->sender = create_sender(c, slot)) == NULL || start_upstreams(c) != 0 ||
        (options_has_webhook(o) && start_webhook(c, slot) != 0) ||
        (o->spool != NULL && open_spool(c) != 0) ||
        (o->redis != NULL && (c->fleet = fleet_start(&c->loop, o->redis, o->redis_password, o->redis_ca_file, shm, slot,
                                                     (unsigned)o->redis_drain_lease)) == NULL) ||
        (c->fleet != NULL && (sender_share_rate(c->sender, live_instances, c->fleet), 0)) ||
        (c->fleet != NULL && start_fleet_outcomes(c) != 0) || (o->redis_queue && open_fleet_queue(c) != 0) ||
        setup_http(c) != 0 || watch_signals(c) != 0 || unblock_signals() != 0 || open_listener(c, listen_fd) != 0) {
        log_error("child set-up failed");
        left = c;
        return 1;
    }
    if (reporter && o->graphite != NULL &&
        (c->graphite = graphite_start(&c->loop, o, shm)) == NULL)
        log_error("graphite: cannot start (out of memory)");
    /* Tell the master this child accepts: it may now retire an older generation. */
    atomic_store(&c->slot->ready, 1);
    kill(getppid(), SIGUSR2);
    uv_run(&c->loop, UV_RUN_DEFAULT);
    uv_timer_stop(&c->stop_timer);
    http_give_back_drains(&c->http);
    sender_flush_log(c->sender, 1);
    /* Nothing more goes upstream: what was not done by now is left undone,
     * as the exit has always left it. */
    sender_stop(c->sender);
    if (close_connections(c) != 0) {
        spool_close(c->spool); /* its acknowledgements, and the segments unlocked */
        left = c;
        return 0;
    }
    teardown(c);
    return 0;
}
