/*
 * child/conn.h - a worker's accepted HTTP connections, and the limits on
 * slow or greedy HTTP/2 clients that libh2o 2.2.5 cannot be told.
 *
 * h2o times out HTTP/1.1 requests itself, but its HTTP/2 idle timer restarts
 * on every frame (a PING keeps a connection for ever) and it holds up to 100
 * unfinished requests per connection.  A sweep that runs a few times per
 * --client-timeout closes, with shutdown(2), an HTTP/2 connection that has
 * handed fcmd no request for --client-timeout, that carries a request still
 * arriving after --client-timeout, or that holds more than
 * CONN_H2_UNFINISHED_MAX requests still arriving - never one that fcmd owes an
 * answer.  h2o then reads end-of-file and frees the connection as usual.
 */
#ifndef FCMD_CHILD_CONN_H
#define FCMD_CHILD_CONN_H

#include <h2o.h>
#include <uv.h>

/* Requests whose headers or body are still arriving one HTTP/2 connection may
 * hold for longer than a sweep; each holds at most the body limit h2o is
 * given (--max-body-bytes plus HTTP_ENTITY_SLACK). */
#define CONN_H2_UNFINISHED_MAX 4

/* The longest time between two sweeps, in milliseconds. */
#define CONN_SWEEP_MAX_MS 1000

struct conn;

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
    uv_timer_t sweep;
};

/* Starts the sweep on ctx's loop.  Returns 0, or -1 if the timer fails. */
int conn_init(struct conn_set *cs, h2o_context_t *ctx, h2o_accept_ctx_t *accept_ctx, unsigned timeout_s, size_t max);

/* Accepts one connection from listener (a TCP or, with is_unix, a UNIX
 * socket) into h2o; over the limit it is closed at once. */
void conn_accept(struct conn_set *cs, uv_stream_t *listener, int is_unix);

/* A request was handed to fcmd, or fcmd answered it: its connection is busy
 * now, so its idle time starts again. */
void conn_progress(struct conn_set *cs, h2o_req_t *req);

#endif
