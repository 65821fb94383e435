/*
 * child/observe/graphite.c - a carbon plaintext client that never gets in the way.
 *
 * Everything is asynchronous on the child's loop: name resolution, the
 * connection, the writes.  A send is skipped while the previous one is
 * still being written, so nothing piles up when carbon is slow; when the
 * connection fails it is closed and tried again with a growing delay (1 s
 * to 60 s), and the log says so once per outage.
 */
#include "graphite.h"
#include "../../common/backoff.h"
#include "../../common/log.h"
#include "../../common/options.h"
#include "../../shm/region.h"
#include "../core/buf.h"
#include "metrics.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define RECONNECT_MIN_MS 1000
#define RECONNECT_MAX_MS 60000

enum state { IDLE, RESOLVING, CONNECTING, CONNECTED, CLOSING };

struct graphite {
    uv_loop_t *loop;
    const struct fcmd_options *opts;
    struct shm_region *shm;
    char host[256];
    char service[8];
    enum state state;
    uv_timer_t tick;
    uv_getaddrinfo_t resolve;
    uv_connect_t connect;
    uv_tcp_t *tcp; /* NULL when there is no connection */
    uv_write_t write;
    struct buf out; /* the lines being written */
    int writing;
    uint64_t next_connect; /* loop time before which no reconnect is tried */
    unsigned failures;
    int stopped;
    unsigned refs; /* once stopped: the timer, socket or lookup libuv still has */
};

/* One of what graphite_stop() waited for is back: the last frees g. */
static void release(struct graphite *g)
{
    if (--g->refs == 0) {
        buf_free(&g->out);
        free(g);
    }
}

static void free_tcp(uv_handle_t *h)
{
    struct graphite *g = h->data;

    free(h);
    g->state = IDLE;
    if (g->stopped)
        release(g);
}

static void tick_closed(uv_handle_t *h)
{
    release(h->data);
}

static void drop(struct graphite *g, const char *what, int err)
{
    static const struct backoff reconnect = {RECONNECT_MIN_MS, RECONNECT_MAX_MS, BACKOFF_EXACT};
    uint64_t delay = backoff_delay(&reconnect, g->failures, 0);

    if (g->failures++ == 0)
        log_warn("graphite: %s %s:%s failed: %s; retrying with back-off", what, g->host, g->service, uv_strerror(err));
    g->next_connect = uv_now(g->loop) + delay;
    g->writing = 0;
    if (g->tcp != NULL) {
        g->state = CLOSING;
        uv_close((uv_handle_t *)g->tcp, free_tcp);
        g->tcp = NULL;
    } else {
        g->state = IDLE;
    }
}

static void on_written(uv_write_t *w, int status)
{
    struct graphite *g = w->data;

    g->writing = 0;
    if (status < 0 && status != UV_ECANCELED && g->tcp != NULL)
        drop(g, "writing to", status);
}

static void send_metrics(struct graphite *g)
{
    struct shm_totals t;
    long long now = (long long)time(NULL);
    uv_buf_t b;

    if (g->state != CONNECTED || g->writing)
        return;
    shm_sum(g->shm, &t);
    buf_reset(&g->out);
    metrics_graphite(&g->out, &t, g->opts->graphite_prefix, now);
    if (g->out.failed)
        return;
    b = uv_buf_init(g->out.data, (unsigned)g->out.len);
    g->write.data = g;
    if (uv_write(&g->write, (uv_stream_t *)g->tcp, &b, 1, on_written) == 0)
        g->writing = 1;
}

static void on_alloc(uv_handle_t *h, size_t size, uv_buf_t *b)
{
    static char sink[256];

    (void)h;
    (void)size;
    *b = uv_buf_init(sink, sizeof(sink));
}

/* carbon says nothing; a read only tells us when it closed the connection. */
static void on_read(uv_stream_t *s, ssize_t n, const uv_buf_t *b)
{
    struct graphite *g = s->data;

    (void)b;
    if (n < 0)
        drop(g, "the connection to", (int)n);
}

static void on_connected(uv_connect_t *c, int status)
{
    struct graphite *g = c->data;

    if (g->stopped)
        return;
    if (status < 0) {
        drop(g, "connecting to", status);
        return;
    }
    if (g->failures > 0)
        log_info("graphite: connected to %s:%s again", g->host, g->service);
    g->failures = 0;
    g->state = CONNECTED;
    uv_read_start((uv_stream_t *)g->tcp, on_alloc, on_read);
    send_metrics(g);
}

static void on_resolved(uv_getaddrinfo_t *r, int status, struct addrinfo *res)
{
    struct graphite *g = r->data;
    int rc;

    if (g->stopped) {
        uv_freeaddrinfo(res);
        release(g);
        return;
    }
    if (status < 0) {
        drop(g, "resolving", status);
        return;
    }
    if ((g->tcp = malloc(sizeof(*g->tcp))) == NULL) {
        uv_freeaddrinfo(res);
        drop(g, "connecting to", UV_ENOMEM);
        return;
    }
    uv_tcp_init(g->loop, g->tcp);
    g->tcp->data = g;
    g->connect.data = g;
    g->state = CONNECTING;
    rc = uv_tcp_connect(&g->connect, g->tcp, res->ai_addr, on_connected);
    uv_freeaddrinfo(res);
    if (rc < 0)
        drop(g, "connecting to", rc);
}

static void start_connect(struct graphite *g)
{
    struct addrinfo hints = {.ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM};

    g->resolve.data = g;
    g->state = RESOLVING;
    if (uv_getaddrinfo(g->loop, &g->resolve, on_resolved, g->host, g->service, &hints) < 0)
        drop(g, "resolving", UV_EAI_FAIL);
}

static void on_tick(uv_timer_t *t)
{
    struct graphite *g = t->data;

    if (g->state == CONNECTED)
        send_metrics(g);
    else if (g->state == IDLE && uv_now(g->loop) >= g->next_connect)
        start_connect(g);
}

struct graphite *graphite_start(uv_loop_t *loop, const struct fcmd_options *o, struct shm_region *shm)
{
    struct graphite *g = calloc(1, sizeof(*g));
    int port;

    if (g == NULL || options_graphite_address(o, g->host, sizeof(g->host), &port) != 0) {
        free(g);
        return NULL;
    }
    snprintf(g->service, sizeof(g->service), "%d", port);
    g->loop = loop;
    g->opts = o;
    g->shm = shm;
    uv_timer_init(loop, &g->tick);
    g->tick.data = g;
    /* Connect at once; then a tick every interval sends (or reconnects when due). */
    start_connect(g);
    uv_timer_start(&g->tick, on_tick, (uint64_t)o->graphite_interval * 1000, (uint64_t)o->graphite_interval * 1000);
    uv_unref((uv_handle_t *)&g->tick);
    log_info("graphite: sending to %s:%s every %d s as %s.*", g->host, g->service, o->graphite_interval,
             o->graphite_prefix);
    return g;
}

void graphite_stop(struct graphite *g)
{
    if (g == NULL)
        return;
    g->stopped = 1;
    g->refs = 1;
    uv_close((uv_handle_t *)&g->tick, tick_closed);
    if (g->state == CONNECTING || g->state == CONNECTED) {
        g->state = CLOSING;
        uv_close((uv_handle_t *)g->tcp, free_tcp);
        g->tcp = NULL;
    }
    /* A lookup under way (called off if it has not started) or a socket
     * closing calls back once more: g lives until then. */
    if (g->state == RESOLVING || g->state == CLOSING)
        g->refs++;
    if (g->state == RESOLVING)
        uv_cancel((uv_req_t *)&g->resolve);
}
