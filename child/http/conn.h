/*
 * child/http/conn.h - a worker's accepted HTTP connections, and the limits on
 * slow or greedy HTTP/2 clients that libh2o 2.2.5 cannot be told.
 *
 * h2o times out HTTP/1.1 requests itself, but its HTTP/2 idle timer restarts
 * on every frame (a PING keeps a connection for ever) and it holds up to 100
 * unfinished requests per connection.  A sweep that runs a few times per
 * --client-timeout closes, with shutdown(2), an HTTP/2 connection on which
 * nothing moved for --client-timeout (no request handed to fcmd or answered,
 * and no stream moving CONN_H2_MOVED_MIN bytes of its body or its answer),
 * that carries a request still arriving after --client-timeout, or that holds
 * more requests still arriving than the bounds below - never one that fcmd
 * owes an answer.  Bodies moving keep a connection only while its requests
 * also arrive whole.  h2o then reads end-of-file and frees the connection as
 * usual.
 */
#ifndef FCMD_CHILD_HTTP_CONN_H
#define FCMD_CHILD_HTTP_CONN_H

#include <h2o.h>
#include <uv.h>

/* Requests still arriving, for longer than a sweep, that one HTTP/2
 * connection may hold parked (no body bytes came for them since the last
 * sweep); and, in bodies' worth (the body limit h2o is given, --max-body-bytes
 * plus HTTP_ENTITY_SLACK), the header and body bytes such requests may hold
 * together, moving or not. */
#define CONN_H2_UNFINISHED_MAX 4

/* Bytes one stream must move, of its body arriving or of its answer going
 * out, within --client-timeout for its connection to count as busy: a client
 * reading or sending slower than that does not keep a connection. */
#define CONN_H2_MOVED_MIN 512

/* Client timeouts for which bodies moving keep a connection busy without a
 * request arriving whole: a client that sends some body and resets each
 * stream before it is complete does not keep a connection. */
#define CONN_H2_UPLOAD_SPAN 2

/* The longest time between two sweeps, in milliseconds. */
#define CONN_SWEEP_MAX_MS 1000

struct conn;
struct conn_mark;

/* What the sweeps saw of every live HTTP/2 stream. */
struct conn_marks {
    struct conn_mark *v;
    size_t len, cap;
};

struct conn_set {
    uv_loop_t *loop;
    h2o_context_t *ctx;
    h2o_accept_ctx_t *accept_ctx;
    uint64_t timeout_ms; /* --client-timeout */
    uint64_t sweep_ms;   /* between two sweeps */
    size_t max;          /* --max-connections */
    size_t count;        /* open connections */
    struct conn **by_fd; /* open connections by descriptor: how a request finds its own */
    size_t by_fd_len;
    h2o_linklist_t all; /* every open connection */
    uint64_t next_id;   /* names connections in the marks, as their addresses are reused */
    struct conn_marks marks[2]; /* [0] the last sweep's, sorted; [1] the one this sweep fills */
    uv_timer_t sweep;
    /* Takes, to close it, a connection there is no memory for: libuv stops
     * watching a listener whose accepted connection is left unclaimed. */
    union {
        uv_handle_t handle;
        uv_stream_t stream;
        uv_tcp_t tcp;
        uv_pipe_t pipe;
    } refuse;
    int refusing;          /* refuse is closing */
    uv_stream_t *waiting;  /* a listener whose connection waits for refuse, or NULL */
    int waiting_unix;
};

/* Starts the sweep on ctx's loop.  Returns 0, or -1 if the timer fails. */
int conn_init(struct conn_set *cs, h2o_context_t *ctx, h2o_accept_ctx_t *accept_ctx, unsigned timeout_s, size_t max);

/* Accepts one connection from listener (a TCP or, with is_unix, a UNIX
 * socket) into h2o; over the limit, or without memory for it, it is closed
 * at once. */
void conn_accept(struct conn_set *cs, uv_stream_t *listener, int is_unix);

/* A request was handed to fcmd, or fcmd answered it: its connection is busy
 * now, so its idle time starts again. */
void conn_progress(struct conn_set *cs, h2o_req_t *req);

/* At a worker's exit: shuts every open connection down, so that h2o reads
 * end-of-file (or fails a write) and frees it as the loop runs on; an
 * HTTP/1 request whose answer is still to come is not read from, so its
 * connection stays.  Called again, it also fails writes libuv refused. */
void conn_close_all(struct conn_set *cs);

/* Then, once none is left: closes the sweep and frees what the set holds
 * (cs itself is the caller's, and must outlive the loop's next turn). */
void conn_free(struct conn_set *cs);

#endif
