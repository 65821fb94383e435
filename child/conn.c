/*
 * child/conn.c - accepted HTTP connections, and the sweep that closes slow
 * or greedy HTTP/2 ones.
 *
 * Each connection owns its libuv stream, so h2o's close callback frees it.
 * The sweep learns what each HTTP/2 connection is doing from h2o's own list
 * of live requests (the protocol's foreach_request callback): a request not
 * yet handed to fcmd is still arriving, one handed over and not answered is
 * an answer fcmd owes.  It never reads h2o's private HTTP/2 structures, and
 * closes with shutdown(2), so h2o reads end-of-file and frees all as usual.
 */
#include "conn.h"
#include "../master/log.h"

#include <errno.h>
#include <h2o/socket/uv-binding.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>

struct conn {
    union {
        uv_handle_t handle;
        uv_stream_t stream;
        uv_tcp_t tcp;
        uv_pipe_t pipe;
    } io; /* first, so h2o's close callback hands back the connection */
    struct conn_set *set;
    h2o_linklist_t link; /* in set->all */
    h2o_socket_t *sock;
    int fd;
    uint64_t progress_at; /* loop time of the accept, of the last request handed over or answer */
    int cut;              /* shut down by the sweep */
    /* What the current sweep found: */
    int http1;           /* h2o serves it as HTTP/1 */
    int owed;            /* fcmd owes an answer on it */
    int slow;            /* a request has been arriving for --client-timeout */
    unsigned unfinished; /* requests arriving for longer than a sweep */
};

static struct conn *of_fd(struct conn_set *cs, int fd)
{
    return fd >= 0 && (size_t)fd < cs->by_fd_len ? cs->by_fd[fd] : NULL;
}

/* The connection a request came on, or NULL. */
static struct conn *of_req(struct conn_set *cs, h2o_req_t *req)
{
    h2o_socket_t *sock = req->conn->callbacks->get_socket ? req->conn->callbacks->get_socket(req->conn) : NULL;
    struct conn *cn = sock != NULL ? of_fd(cs, h2o_socket_get_fd(sock)) : NULL;

    return cn != NULL && cn->sock == sock ? cn : NULL;
}

/* ---- accept and close ---- */

static int index_fd(struct conn_set *cs, struct conn *cn)
{
    size_t len = cs->by_fd_len;
    struct conn **t;

    if ((size_t)cn->fd >= len) {
        while (len <= (size_t)cn->fd)
            len = len ? len * 2 : 256;
        if ((t = realloc(cs->by_fd, len * sizeof(*t))) == NULL)
            return -1;
        memset(t + cs->by_fd_len, 0, (len - cs->by_fd_len) * sizeof(*t));
        cs->by_fd = t;
        cs->by_fd_len = len;
    }
    cs->by_fd[cn->fd] = cn;
    return 0;
}

static void free_refused(uv_handle_t *h)
{
    free(h);
}

static void on_closed(uv_handle_t *h)
{
    struct conn *cn = (struct conn *)h;
    struct conn_set *cs = cn->set;

    /* The descriptor may already belong to a newer connection. */
    if (of_fd(cs, cn->fd) == cn)
        cs->by_fd[cn->fd] = NULL;
    h2o_linklist_unlink(&cn->link);
    cs->count--;
    free(cn);
}

static struct conn *new_conn(struct conn_set *cs, int is_unix)
{
    struct conn *cn = calloc(1, sizeof(*cn));

    if (cn == NULL)
        return NULL;
    if ((is_unix ? uv_pipe_init(cs->loop, &cn->io.pipe, 0) : uv_tcp_init(cs->loop, &cn->io.tcp)) != 0) {
        free(cn);
        return NULL;
    }
    cn->set = cs;
    return cn;
}

void conn_accept(struct conn_set *cs, uv_stream_t *listener, int is_unix)
{
    struct conn *cn = new_conn(cs, is_unix);
    uv_os_fd_t fd;

    if (cn == NULL)
        return;
    /* Over the limit the connection is closed at once: the other children may have room. */
    if (uv_accept(listener, &cn->io.stream) != 0 || cs->count >= cs->max || uv_fileno(&cn->io.handle, &fd) != 0 ||
        (cn->fd = fd, index_fd(cs, cn)) != 0) {
        uv_close(&cn->io.handle, free_refused);
        return;
    }
    if (!is_unix && uv_tcp_nodelay(&cn->io.tcp, 1) != 0)
        log_debug("uv_tcp_nodelay() failed on an accepted connection");
    cs->count++;
    h2o_linklist_insert(&cs->all, &cn->link);
    cn->progress_at = uv_now(cs->loop);
    cn->sock = h2o_uv_socket_create(&cn->io.stream, on_closed);
    h2o_accept(cs->accept_ctx, cn->sock);
}

void conn_progress(struct conn_set *cs, h2o_req_t *req)
{
    struct conn *cn = of_req(cs, req);

    if (cn != NULL)
        cn->progress_at = uv_now(cs->loop);
}

/* ---- the sweep ---- */

struct sweep {
    struct conn_set *cs;
    struct timeval now;
};

static uint64_t ms_since(const struct timeval *then, const struct timeval *now)
{
    int64_t ms = (int64_t)(now->tv_sec - then->tv_sec) * 1000 + (now->tv_usec - then->tv_usec) / 1000;

    return ms > 0 ? (uint64_t)ms : 0;
}

static int note_http1(h2o_req_t *req, void *arg)
{
    struct conn *cn = of_req(((struct sweep *)arg)->cs, req);

    if (cn != NULL)
        cn->http1 = 1;
    return 0;
}

/* One HTTP/2 request: handed to fcmd and not answered, or still arriving. */
static int note_http2(h2o_req_t *req, void *arg)
{
    struct sweep *s = arg;
    struct conn *cn = of_req(s->cs, req);
    uint64_t age;

    if (cn == NULL || req->res.status != 0)
        return 0; /* answered: what is left is h2o's to send */
    if (req->processed_at.at.tv_sec != 0) {
        cn->owed = 1;
        return 0;
    }
    if (req->timestamps.request_begin_at.tv_sec == 0)
        return 0; /* a stream that only a PRIORITY frame opened */
    age = ms_since(&req->timestamps.request_begin_at, &s->now);
    cn->slow |= age >= s->cs->timeout_ms;
    cn->unfinished += age >= s->cs->sweep_ms;
    return 0;
}

/* HTTP/2 once past TLS's handshake: h2o lists every HTTP/1 connection, even
 * an idle one, but an HTTP/2 connection only while it has streams. */
static int is_http2(const struct conn *cn)
{
    h2o_iovec_t alpn;

    if (cn->http1)
        return 0;
    if (cn->sock->ssl == NULL)
        return 1;
    alpn = h2o_socket_ssl_get_selected_protocol(cn->sock);
    return h2o_memis(alpn.base, alpn.len, H2O_STRLIT("h2"));
}

/* Why an HTTP/2 connection is to be closed now, or NULL. */
static const char *verdict(struct conn *cn, uint64_t now)
{
    if (cn->owed) {
        cn->progress_at = now; /* its idle time starts once it is answered */
        return NULL;
    }
    if (cn->slow)
        return "a request still arriving after the client timeout";
    if (cn->unfinished > CONN_H2_UNFINISHED_MAX)
        return "too many requests still arriving";
    if (now - cn->progress_at >= cn->set->timeout_ms)
        return "no request for the client timeout";
    return NULL;
}

static void cut(struct conn *cn, const char *why)
{
    uv_os_fd_t fd;

    if (uv_fileno(&cn->io.handle, &fd) != 0)
        return;
    if (shutdown(fd, SHUT_RDWR) != 0 && errno != ENOTCONN)
        log_warn("shutdown() of an HTTP/2 connection failed: %s", strerror(errno));
    cn->cut = 1;
    log_debug("closing an HTTP/2 connection: %s", why);
}

static void judge(struct conn *cn, uint64_t now)
{
    const char *why;

    if (!cn->cut && !uv_is_closing(&cn->io.handle) && is_http2(cn) && (why = verdict(cn, now)) != NULL)
        cut(cn, why);
    cn->http1 = cn->owed = cn->slow = 0;
    cn->unfinished = 0;
}

static void on_sweep(uv_timer_t *t)
{
    struct conn_set *cs = t->data;
    struct sweep s = {cs, {0, 0}};
    uint64_t now = uv_now(cs->loop);
    h2o_linklist_t *node;

    gettimeofday(&s.now, NULL); /* the clock h2o stamps requests with */
    cs->ctx->globalconf->http1.callbacks.foreach_request(cs->ctx, note_http1, &s);
    cs->ctx->globalconf->http2.callbacks.foreach_request(cs->ctx, note_http2, &s);
    for (node = cs->all.next; node != &cs->all; node = node->next)
        judge(H2O_STRUCT_FROM_MEMBER(struct conn, link, node), now);
}

int conn_init(struct conn_set *cs, h2o_context_t *ctx, h2o_accept_ctx_t *accept_ctx, unsigned timeout_s, size_t max)
{
    memset(cs, 0, sizeof(*cs));
    cs->loop = ctx->loop;
    cs->ctx = ctx;
    cs->accept_ctx = accept_ctx;
    cs->timeout_ms = (uint64_t)timeout_s * 1000;
    cs->sweep_ms = cs->timeout_ms / 4 < CONN_SWEEP_MAX_MS ? cs->timeout_ms / 4 : CONN_SWEEP_MAX_MS;
    cs->max = max;
    h2o_linklist_init_anchor(&cs->all);
    if (uv_timer_init(cs->loop, &cs->sweep) != 0)
        return -1;
    cs->sweep.data = cs;
    if (uv_timer_start(&cs->sweep, on_sweep, cs->sweep_ms, cs->sweep_ms) != 0)
        return -1;
    uv_unref((uv_handle_t *)&cs->sweep); /* the sweep alone does not keep a child running */
    return 0;
}
