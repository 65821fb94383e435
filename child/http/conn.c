/*
 * child/http/conn.c - accepted HTTP connections, and the sweep that closes slow
 * or greedy HTTP/2 ones.
 *
 * Each connection owns its libuv stream, so h2o's close callback frees it.
 * The sweep learns what each HTTP/2 connection is doing from h2o's own list
 * of live requests (the protocol's foreach_request callback): a request not
 * yet handed to fcmd is still arriving, one handed over and not answered is
 * an answer fcmd owes, one answered and still listed is an answer h2o is
 * still sending.  Whether a stream moves is told by its bytes: those of its
 * answer sent (h2o_req_t's bytes_sent) and those of its body received, which
 * h2o 2.2.5 keeps only in the stream around the request (h2o/http2_internal.h,
 * installed with the library; read, never written).  The sweep keeps what it
 * saw of each stream until the next one, and closes with shutdown(2), so h2o
 * reads end-of-file and frees all as usual.
 *
 * The sweep also finishes what libuv and h2o leave hanging after a read
 * error (see lost_write()): a client that resets its TLS connection would
 * otherwise keep the worker's socket and a --max-connections slot for good.
 */
#include "conn.h"
#include "../../common/log.h"

#include <errno.h>
#include <h2o/http2.h> /* before its internals, which need its types */
#include <h2o/http2_internal.h>
#include <h2o/socket/uv-binding.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>

/* The stream's fields read here, and the socket's write callback, are
 * private to h2o and may change with any release: a new libh2o must be
 * checked against stream_of(), note_arriving() and lost_write() before this
 * line is changed. */
#if H2O_LIBRARY_VERSION_MAJOR != 0 || H2O_LIBRARY_VERSION_MINOR != 13
#error "child/http/conn.c reads libh2o 0.13's (h2o 2.2's) HTTP/2 stream; check it against this libh2o"
#endif

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
    uint64_t id;          /* its name in the sweep's marks */
    uint64_t progress_at; /* loop time of the accept, of the last request handed over or answer, of bytes moving */
    uint64_t taken_at;    /* loop time of the accept, or of the last request handed over or answered */
    int cut;              /* shut down by the sweep */
    int lost;             /* sweeps in a row that found h2o waiting on a write libuv refused */
    /* What the current sweep found: */
    int http1;     /* h2o serves it as HTTP/1 */
    int owed;      /* fcmd owes an answer on it */
    int slow;      /* a request has been arriving for --client-timeout */
    int answering; /* an answer moved CONN_H2_MOVED_MIN bytes since it last counted */
    int uploading; /* a body still arriving did */
    unsigned parked; /* requests arriving for longer than a sweep, no body bytes since the last */
    uint64_t held;   /* header and body bytes of requests arriving for longer than a sweep */
};

/* What the sweep saw of one HTTP/2 stream.  Stream ids are never reused
 * within a connection, so (conn, stream) names one stream for good. */
struct conn_mark {
    uint64_t conn;
    uint32_t stream;
    int answer;     /* its bytes are those of the answer, not of the body */
    uint64_t seen;  /* its bytes at the last sweep */
    uint64_t moved; /* its bytes when it last counted as moving */
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

static void refuse(struct conn_set *cs, uv_stream_t *listener, int is_unix);

static void on_refuse_closed(uv_handle_t *h)
{
    struct conn_set *cs = h->data;
    uv_stream_t *listener = cs->waiting;

    cs->refusing = 0;
    cs->waiting = NULL;
    if (listener != NULL && !uv_is_closing((uv_handle_t *)listener))
        refuse(cs, listener, cs->waiting_unix);
}

/* Takes the connection libuv accepted on listener into the set's own handle,
 * which needs no memory, and closes it.  While that handle is still closing
 * from the last refusal the connection waits in libuv, which watches the
 * listener again once the handle takes it (uv_accept restarts it). */
static void refuse(struct conn_set *cs, uv_stream_t *listener, int is_unix)
{
    if (cs->refusing) {
        cs->waiting = listener;
        cs->waiting_unix = is_unix;
        return;
    }
    /* Neither allocates nor fails: uv_tcp_init() makes no socket of its own. */
    if (is_unix)
        uv_pipe_init(cs->loop, &cs->refuse.pipe, 0);
    else
        uv_tcp_init(cs->loop, &cs->refuse.tcp);
    cs->refuse.handle.data = cs;
    cs->refusing = 1;
    /* Should it fail, libuv has closed the connection itself. */
    uv_accept(listener, &cs->refuse.stream);
    uv_close(&cs->refuse.handle, on_refuse_closed);
}

void conn_accept(struct conn_set *cs, uv_stream_t *listener, int is_unix)
{
    struct conn *cn = new_conn(cs, is_unix);
    uv_os_fd_t fd;

    /* The connection is taken and closed all the same: left to libuv, it
     * would stop this worker's accepting for good. */
    if (cn == NULL) {
        log_warn("no memory for a new connection: closed it");
        refuse(cs, listener, is_unix);
        return;
    }
    /* Over the limit the connection is closed at once: the other children may have room. */
    if (uv_accept(listener, &cn->io.stream) != 0 || cs->count >= cs->max || uv_fileno(&cn->io.handle, &fd) != 0 ||
        (cn->fd = fd, index_fd(cs, cn)) != 0) {
        uv_close(&cn->io.handle, free_refused);
        return;
    }
    if (!is_unix && uv_tcp_nodelay(&cn->io.tcp, 1) != 0)
        log_debug("uv_tcp_nodelay() failed on an accepted connection");
    cs->count++;
    cn->id = ++cs->next_id;
    h2o_linklist_insert(&cs->all, &cn->link);
    cn->progress_at = cn->taken_at = uv_now(cs->loop);
    cn->sock = h2o_uv_socket_create(&cn->io.stream, on_closed);
    h2o_accept(cs->accept_ctx, cn->sock);
}

void conn_progress(struct conn_set *cs, h2o_req_t *req)
{
    struct conn *cn = of_req(cs, req);

    if (cn != NULL)
        cn->progress_at = cn->taken_at = uv_now(cs->loop);
}

/* ---- the sweep ---- */

struct sweep {
    struct conn_set *cs;
    struct timeval now;
    int short_of_memory; /* a mark was lost: said once per sweep */
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

/* ---- what each stream moved ---- */

static int cmp_mark(const void *a, const void *b)
{
    const struct conn_mark *x = a, *y = b;

    if (x->conn != y->conn)
        return x->conn < y->conn ? -1 : 1;
    return x->stream < y->stream ? -1 : x->stream > y->stream;
}

/* What the last sweep saw of a stream, or NULL if it is new. */
static const struct conn_mark *last_mark(const struct conn_set *cs, uint64_t conn, uint32_t stream)
{
    const struct conn_mark key = {conn, stream, 0, 0, 0};

    if (cs->marks[0].len == 0)
        return NULL; /* bsearch() may not be handed a null array */
    return bsearch(&key, cs->marks[0].v, cs->marks[0].len, sizeof(key), cmp_mark);
}

static int add_mark(struct conn_marks *m, const struct conn_mark *mk)
{
    size_t cap = m->cap ? m->cap * 2 : 64;
    struct conn_mark *v;

    if (m->len == m->cap) {
        if ((v = realloc(m->v, cap * sizeof(*v))) == NULL)
            return -1;
        m->v = v;
        m->cap = cap;
    }
    m->v[m->len++] = *mk;
    return 0;
}

/* Notes a stream's byte count, of its answer sent or of its body received,
 * for the next sweep.  Returns whether it moved CONN_H2_MOVED_MIN bytes since
 * it last counted as moving; *grew says whether it moved at all since the
 * last sweep. */
static int note_bytes(struct sweep *s, struct conn *cn, uint32_t stream, int answer, uint64_t bytes, int *grew)
{
    const struct conn_mark *last = last_mark(s->cs, cn->id, stream);
    struct conn_mark mk;
    int moved;

    if (last != NULL && last->answer != answer)
        last = NULL; /* its answer has started: a count of its own, from zero */
    mk = (struct conn_mark){cn->id, stream, answer, bytes, last != NULL ? last->moved : 0};
    moved = bytes >= mk.moved + CONN_H2_MOVED_MIN;

    *grew = bytes > (last != NULL ? last->seen : 0);
    if (moved)
        mk.moved = bytes;
    /* Without room the stream is new to the next sweep: it may count as
     * moving once more, and no connection is cut for want of memory. */
    if (add_mark(&s->cs->marks[1], &mk) != 0 && !s->short_of_memory) {
        s->short_of_memory = 1;
        log_warn("sweep: out of memory for what the HTTP/2 streams moved");
    }
    return moved;
}

/* The sorted marks of this sweep become the last sweep's. */
static void keep_marks(struct conn_set *cs)
{
    struct conn_marks last = cs->marks[0];

    if (cs->marks[1].len != 0)
        qsort(cs->marks[1].v, cs->marks[1].len, sizeof(*cs->marks[1].v), cmp_mark);
    cs->marks[0] = cs->marks[1];
    cs->marks[1] = last;
    cs->marks[1].len = 0;
}

/* ---- what each HTTP/2 connection is doing ---- */

/* Every request h2o's HTTP/2 foreach_request lists lives in a stream. */
static h2o_http2_stream_t *stream_of(h2o_req_t *req)
{
    return H2O_STRUCT_FROM_MEMBER(h2o_http2_stream_t, req, req);
}

/* An answer h2o is still sending: its connection is busy while the client
 * takes it fast enough. */
static void note_answer(struct sweep *s, struct conn *cn, h2o_req_t *req)
{
    int grew;

    cn->answering |= note_bytes(s, cn, stream_of(req)->stream_id, 1, req->bytes_sent, &grew);
}

/* The bytes of a request's decoded headers: with its body, what a request
 * still arriving makes the worker hold (h2o's pool adds a little). */
static uint64_t header_bytes(const h2o_req_t *req)
{
    uint64_t n = req->input.authority.len + req->input.method.len + req->input.path.len;
    size_t i;

    for (i = 0; i != req->headers.size; ++i)
        n += req->headers.entries[i].name->len + req->headers.entries[i].value.len;
    return n;
}

/* A request whose headers or body are still arriving.  As a whole it must
 * arrive within --client-timeout, however fast its bytes come; until then it
 * keeps its connection busy while its body moves, and counts against the
 * connection's bounds once it is older than a sweep: a body that moved not at
 * all since the last sweep is parked, and headers and body are held. */
static void note_arriving(struct sweep *s, struct conn *cn, h2o_req_t *req)
{
    h2o_http2_stream_t *st = stream_of(req);
    uint64_t body = st->_req_body != NULL ? st->_req_body->size : 0;
    uint64_t age = ms_since(&req->timestamps.request_begin_at, &s->now);
    int grew;

    cn->uploading |= note_bytes(s, cn, st->stream_id, 0, body, &grew);
    cn->slow |= age >= s->cs->timeout_ms;
    if (age >= s->cs->sweep_ms) {
        cn->parked += !grew;
        cn->held += header_bytes(req) + body;
    }
}

/* One HTTP/2 request: answered and still being sent, handed to fcmd and not
 * answered, or still arriving. */
static int note_http2(h2o_req_t *req, void *arg)
{
    struct sweep *s = arg;
    struct conn *cn = of_req(s->cs, req);

    if (cn == NULL)
        return 0;
    if (req->res.status != 0)
        note_answer(s, cn, req);
    else if (req->processed_at.at.tv_sec != 0)
        cn->owed = 1;
    else if (req->timestamps.request_begin_at.tv_sec != 0)
        note_arriving(s, cn, req);
    /* else a stream that only a PRIORITY frame opened */
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

/* Why an HTTP/2 connection is to be closed now, or NULL.  Bytes moving
 * never excuse a request that is too slow as a whole, nor a connection
 * holding too much.  Bodies moving excuse a connection only while it also
 * delivers requests: each must arrive whole within --client-timeout, so a
 * connection whose bodies keep moving and none of which arrives in
 * CONN_H2_UPLOAD_SPAN timeouts is resetting its streams before they count
 * as slow. */
static const char *verdict(struct conn *cn, uint64_t now)
{
    const struct conn_set *cs = cn->set;

    if (cn->owed) {
        cn->progress_at = now; /* its idle time starts once it is answered */
        return NULL;
    }
    if (cn->slow)
        return "a request still arriving after the client timeout";
    if (cn->parked > CONN_H2_UNFINISHED_MAX)
        return "too many requests parked while still arriving";
    if (cn->held > CONN_H2_UNFINISHED_MAX * (uint64_t)cs->ctx->globalconf->max_request_entity_size)
        return "too many bytes held by requests still arriving";
    if (cn->answering || (cn->uploading && now - cn->taken_at < CONN_H2_UPLOAD_SPAN * cs->timeout_ms))
        cn->progress_at = now;
    if (now - cn->progress_at >= cs->timeout_ms)
        return "nothing moved for the client timeout";
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
    cn->http1 = cn->owed = cn->slow = cn->answering = cn->uploading = 0;
    cn->parked = 0;
    cn->held = 0;
}

/* A write libuv refused and h2o still waits on.  libuv (1.44) fails a
 * stream on a read error such as a client's reset, and from then on
 * uv_write() returns UV_EPIPE at once and never calls back; h2o 2.2.5
 * ignores that return and waits for the callback.  So a TLS socket that
 * closes after a reset (its close_notify is such a write), or an HTTP/2
 * connection that had a write scheduled when the reset came, waits for
 * ever: its descriptor, its memory and a --max-connections slot are never
 * freed.  The stream is failed (not writable, not closing), libuv holds no
 * write for it, and h2o's socket still has a write callback (h2o_socket_t's
 * _cb.write, h2o's own field: read and cleared here the way h2o's write
 * completion does).  A write that did complete calls back within a turn of
 * the loop, so only what is seen at two sweeps in a row is lost. */
static int lost_write(const struct conn *cn)
{
    return !uv_is_closing(&cn->io.handle) && !uv_is_writable(&cn->io.stream) &&
           uv_stream_get_write_queue_size(&cn->io.stream) == 0 && cn->sock->_cb.write != NULL;
}

/* Hands h2o the failure of a lost write, as libuv would have: h2o then
 * closes the connection on its own error path (a TLS socket may take one
 * more lost write, its close_notify, and so one more round). */
static void finish_lost_write(struct conn *cn)
{
    h2o_socket_cb cb;

    if (!lost_write(cn)) {
        cn->lost = 0;
        return;
    }
    if (++cn->lost < 2)
        return;
    cn->lost = 0;
    cb = cn->sock->_cb.write;
    cn->sock->_cb.write = NULL;
    log_debug("closing a connection whose stream failed: its last write was refused");
    cb(cn->sock, h2o_socket_error_io);
}

static void on_sweep(uv_timer_t *t)
{
    struct conn_set *cs = t->data;
    struct sweep s = {cs, {0, 0}, 0};
    uint64_t now = uv_now(cs->loop);
    h2o_linklist_t *node;

    gettimeofday(&s.now, NULL); /* the clock h2o stamps requests with */
    cs->ctx->globalconf->http1.callbacks.foreach_request(cs->ctx, note_http1, &s);
    cs->ctx->globalconf->http2.callbacks.foreach_request(cs->ctx, note_http2, &s);
    keep_marks(cs);
    for (node = cs->all.next; node != &cs->all; node = node->next) {
        struct conn *cn = H2O_STRUCT_FROM_MEMBER(struct conn, link, node);
        judge(cn, now);
        finish_lost_write(cn); /* a connection it closes stays listed until its close callback */
    }
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

/* ---- at exit ---- */

void conn_close_all(struct conn_set *cs)
{
    h2o_linklist_t *node;
    uv_os_fd_t fd;

    for (node = cs->all.next; node != &cs->all; node = node->next) {
        struct conn *cn = H2O_STRUCT_FROM_MEMBER(struct conn, link, node);
        h2o_socket_cb cb;

        if (uv_is_closing(&cn->io.handle))
            continue;
        if (!cn->cut && uv_fileno(&cn->io.handle, &fd) == 0) {
            shutdown(fd, SHUT_RDWR); /* h2o reads end-of-file, or a write fails: it closes */
            cn->cut = 1;
        }
        /* A write libuv refused is failed at once (see lost_write()): the
         * connection is going anyway. */
        if (lost_write(cn)) {
            cb = cn->sock->_cb.write;
            cn->sock->_cb.write = NULL;
            cb(cn->sock, h2o_socket_error_io);
        }
    }
}

void conn_free(struct conn_set *cs)
{
    uv_close((uv_handle_t *)&cs->sweep, NULL);
    free(cs->by_fd);
    cs->by_fd = NULL;
    cs->by_fd_len = 0;
    for (int i = 0; i < 2; i++) {
        free(cs->marks[i].v);
        cs->marks[i] = (struct conn_marks){NULL, 0, 0};
    }
}
