/*
 * child/fleet/link.c - fleet mode's connection to Redis: one per worker, on
 * the worker's loop, that fcmd owns: a libuv socket, hiredis' reply parser,
 * and a queue of the replies it awaits.  A reply it did not ask for, or
 * larger than any it asks for, is never parsed further: the connection is
 * dropped and made again after a back-off.  Nothing here waits for Redis or
 * aborts on it.  Also fleet_start() and the once-a-second tick.
 *
 * With rediss:// the same connection carries TLS: OpenSSL works on two
 * memory BIOs, one fed with what the socket read, the other emptied into
 * the socket's writes, so the loop drives the handshake like any read and
 * write, and the Redis handshake (AUTH, SELECT, the scripts) begins once
 * the server's certificate has been checked against the CA file (or the
 * system's store) and the URL's host.
 */
#include "fleet_internal.h"
#include "../../common/log.h"
#include "../../common/backoff.h"
#include "../../common/redis_url.h"

#include <errno.h>
#include <hiredis/hiredis.h>
#include <hiredis/read.h>
#include <arpa/inet.h>
#include <netdb.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define NWANT 64 /* replies a connection can await at once */
#define REPLY_MAX_ELEMENTS 4096
#define TLS_PLAIN_BYTES (16 * 1024) /* one TLS record's plaintext at most */

/* A reply the connection awaits, in the order the commands went. */
struct want {
    fleet_reply_fn fn;
    void *arg;
    size_t cap;       /* bytes: a larger reply drops the connection */
    uint64_t sent_at; /* for the reply deadline */
};

/* One connection: the socket, its reply parser and the replies it awaits.
 * Freed when libuv has closed the socket, so a late callback finds it; f is
 * NULL once it is given up, so that callback touches no fleet, which may be
 * gone by then (a worker's exit). */
struct link {
    union {
        uv_handle_t handle;
        uv_stream_t stream;
        uv_tcp_t tcp;
        uv_pipe_t pipe;
    } u;
    uv_connect_t connect;
    struct fleet *f;
    redisReader *reader;
    redisReplyObjectFunctions fn;               /* hiredis' own, with arrays capped */
    void *(*array)(const redisReadTask *, int); /* hiredis' own array maker */
    uint64_t fed;                               /* bytes fed to the reader */
    uint64_t boundary;                          /* ...up to the end of the last complete reply */
    struct want want[NWANT];
    unsigned nwant, first;
    SSL *ssl;       /* rediss://: the TLS session, else NULL */
    BIO *in, *out;  /* ...its memory BIOs (the session owns them) */
    int tls_ready;  /* ...its handshake is done */
    char *plain;    /* ...and TLS_PLAIN_BYTES for what SSL_read() gives */
};

/* Bytes on their way out, a command or (TLS) its records; wiped (AUTH
 * carries the password) and freed by their write callback. */
struct out {
    uv_write_t req;
    char *cmd;
    size_t len;
    int sealed; /* cmd is TLS records (malloc), not a formatted command */
};

static void out_free(struct out *o)
{
    explicit_bzero(o->cmd, o->len);
    if (o->sealed)
        free(o->cmd);
    else
        redisFreeCommand(o->cmd);
    free(o);
}

static void connect_begin(struct fleet *f);

static void on_retry(uv_timer_t *t)
{
    connect_begin(t->data);
}

/* Back-off from FLEET_RETRY_MIN_MS doubling to FLEET_RETRY_MAX_MS, half of it
 * jitter so a fleet's workers do not retry in step. */
uint64_t link_backoff_ms(struct fleet *f, unsigned n)
{
    static const struct backoff retry = {FLEET_RETRY_MIN_MS, FLEET_RETRY_MAX_MS, BACKOFF_HALF};

    return backoff_delay(&retry, n, backoff_random(&f->rng));
}

/* ---- outages ---- */

/* The worker is not up from here (no totals, /readyz 503) until
 * link_now_up(); the start of an outage is logged once, its end there. */
void link_outage_begins(struct fleet *f, const char *why)
{
    f->up = 0;
    shm_gauge_set(f->slot, SHM_REDIS_DOWN, 1);
    f->have_totals = 0;
    if (f->outage)
        return;
    f->outage = 1;
    f->down_since = uv_now(f->loop);
    if (f->ever_up)
        log_warn("redis: lost %s: %.200s; counting locally until it is back", f->printable, why);
    else
        log_warn("redis: cannot reach %s: %.200s; counting locally, retrying", f->printable, why);
}

/* An outage without a connection: no reply is awaited any more, and the
 * retry timer connects again after the back-off. */
static void outage(struct fleet *f, const char *why)
{
    if (f->closed)
        return; /* the worker is gone: nothing reconnects */
    link_outage_begins(f, why);
    f->inflight = f->settling = f->reloading = 0;
    uv_timer_start(&f->retry, on_retry, link_backoff_ms(f, f->attempt++), 0);
}

static void link_closed(uv_handle_t *h)
{
    struct link *l = h->data;

    if (l->reader != NULL)
        redisReaderFree(l->reader);
    SSL_free(l->ssl);
    free(l->plain);
    free(l);
}

/* Closes l, already no longer f->link: whoever awaits a reply on it
 * learns it will not come. */
static void link_close(struct fleet *f, struct link *l)
{
    l->f = NULL;
    uv_close(&l->u.handle, link_closed);
    while (l->nwant > 0) {
        struct want w = l->want[l->first];
        l->first = (l->first + 1) % NWANT;
        l->nwant--;
        w.fn(f, w.arg, NULL);
    }
}

/* Gives the connection up (and what Redis held for it: the scripts loaded,
 * the count of refusals) and reconnects after the back-off.  Callbacks of
 * the old connection still to come see it is no longer f->link. */
void link_drop(struct fleet *f, const char *why)
{
    struct link *l = f->link;

    f->link = NULL;
    f->flush_s.loaded = f->lists_s.loaded = 0;
    f->refusals = 0;
    outage(f, why);
    if (l == NULL)
        return;
    link_close(f, l);
}

/* The server sent what no Redis would: every connection to it is likely to
 * end the same way, so it stays an outage (one log line, growing back-off)
 * until a connection to it has carried a few clean flushes. */
void link_drop_bad(struct fleet *f, const char *why)
{
    f->probation = FLEET_PROBATION_FLUSHES;
    link_drop(f, why);
}

void link_now_up(struct fleet *f)
{
    f->up = 1;
    shm_gauge_set(f->slot, SHM_REDIS_DOWN, 0);
    f->attempt = 0;
    if (f->outage)
        log_info("redis: %s reachable again after %.1f s; sending the counters kept meanwhile", f->printable,
                 (double)(uv_now(f->loop) - f->down_since) / 1000);
    else if (!f->ever_up)
        log_info("redis: connected to %s as instance %s", f->printable, f->shm->instance);
    f->outage = 0;
    f->ever_up = 1;
    f->refusal[0] = '\0';
}

/* ---- the transport ---- */

static void on_written(uv_write_t *req, int status)
{
    struct out *o = (struct out *)req;
    struct link *l = req->data;

    out_free(o);
    if (status != 0 && status != UV_ECANCELED && l->f != NULL && l->f->link == l)
        link_drop(l->f, uv_strerror(status));
}

/* ---- TLS ---- */

/* Writes what the session has sealed.  Returns 0, or -1 with the
 * connection dropped. */
static int tls_send(struct fleet *f, struct link *l)
{
    size_t n;
    int rc;

    while ((n = BIO_ctrl_pending(l->out)) > 0) {
        struct out *o = malloc(sizeof(*o));
        char *b = n <= INT_MAX ? malloc(n) : NULL;
        if (o == NULL || b == NULL || BIO_read(l->out, b, (int)n) != (int)n) {
            free(o);
            free(b);
            link_drop(f, "TLS: out of memory");
            return -1;
        }
        *o = (struct out){.cmd = b, .len = n, .sealed = 1};
        o->req.data = l;
        uv_buf_t buf = uv_buf_init(b, (unsigned)n);
        if ((rc = uv_write(&o->req, &l->u.stream, &buf, 1, on_written)) != 0) {
            out_free(o);
            link_drop(f, uv_strerror(rc));
            return -1;
        }
    }
    return 0;
}

/* Drops the connection with what OpenSSL says went wrong: the certificate
 * check's verdict when it failed, else the first error queued. */
static void tls_fail(struct fleet *f, struct link *l, const char *during)
{
    char why[400], ssl_err[256] = "the server closed the connection";
    long v = SSL_get_verify_result(l->ssl);
    unsigned long e = ERR_peek_error();

    if (v != X509_V_OK)
        snprintf(ssl_err, sizeof(ssl_err), "the server's certificate: %s", X509_verify_cert_error_string(v));
    else if (e != 0)
        ERR_error_string_n(e, ssl_err, sizeof(ssl_err));
    ERR_clear_error();
    snprintf(why, sizeof(why), "TLS %s: %s", during, ssl_err);
    link_drop(f, why);
}

static int is_address(const char *host)
{
    unsigned char a[sizeof(struct in6_addr)];

    return inet_pton(AF_INET, host, a) == 1 || inet_pton(AF_INET6, host, a) == 1;
}

/* A TLS session on the connected socket, its ClientHello sent: SNI and the
 * certificate's name are the URL's host (an address is checked as one and
 * sent no SNI).  Returns 0, or -1 with the connection dropped. */
static int tls_begin(struct fleet *f, struct link *l)
{
    const char *host = f->url.host;
    int rc;

    ERR_clear_error();
    if ((l->plain = malloc(TLS_PLAIN_BYTES)) == NULL || (l->ssl = SSL_new(f->tls)) == NULL ||
        (l->in = BIO_new(BIO_s_mem())) == NULL || (l->out = BIO_new(BIO_s_mem())) == NULL) {
        BIO_free(l->in);
        l->in = NULL;
        link_drop(f, "TLS: out of memory");
        return -1;
    }
    BIO_set_mem_eof_return(l->in, -1); /* empty is "read more", not the end */
    SSL_set_bio(l->ssl, l->in, l->out);
    SSL_set_connect_state(l->ssl);
    if (is_address(host) ? X509_VERIFY_PARAM_set1_ip_asc(SSL_get0_param(l->ssl), host) != 1
                         : SSL_set_tlsext_host_name(l->ssl, host) != 1 || SSL_set1_host(l->ssl, host) != 1) {
        tls_fail(f, l, "set-up");
        return -1;
    }
    rc = SSL_do_handshake(l->ssl);
    if (rc != 1 && SSL_get_error(l->ssl, rc) != SSL_ERROR_WANT_READ) {
        tls_fail(f, l, "handshake");
        return -1;
    }
    return tls_send(f, l);
}

static void parse(struct fleet *f, struct link *l, const char *buf, size_t n);
static void handshake(struct fleet *f);

/* What the socket read, through the session: the handshake first (then
 * Redis' own), then the replies' plaintext to the parser. */
static void tls_received(struct fleet *f, struct link *l, const char *buf, size_t n)
{
    int rc;

    ERR_clear_error();
    if (BIO_write(l->in, buf, (int)n) != (int)n) {
        link_drop(f, "TLS: out of memory");
        return;
    }
    if (!l->tls_ready) {
        rc = SSL_do_handshake(l->ssl);
        if (tls_send(f, l) != 0)
            return;
        if (rc != 1) {
            if (SSL_get_error(l->ssl, rc) != SSL_ERROR_WANT_READ)
                tls_fail(f, l, "handshake");
            return;
        }
        l->tls_ready = 1;
        handshake(f);
        if (f->link != l)
            return;
    }
    for (;;) {
        ERR_clear_error(); /* what the parser's callbacks left is not this read's */
        rc = SSL_read(l->ssl, l->plain, TLS_PLAIN_BYTES);
        if (rc > 0) {
            parse(f, l, l->plain, (size_t)rc);
            if (f->link != l)
                return;
            continue;
        }
        rc = SSL_get_error(l->ssl, rc);
        if (rc == SSL_ERROR_WANT_READ)
            break;
        if (rc == SSL_ERROR_ZERO_RETURN)
            link_drop(f, "connection closed (TLS close_notify)");
        else
            tls_fail(f, l, "read");
        return;
    }
    tls_send(f, l); /* what reading made the session answer (a key update) */
}

/* The client context for rediss://: TLS 1.2 or later, the peer verified
 * against ca_file, or the system's store without one.  NULL, logged, when
 * it cannot be made. */
static SSL_CTX *tls_context(const char *ca_file)
{
    SSL_CTX *ctx = SSL_CTX_new(TLS_client_method());
    char err[256];

    if (ctx == NULL || SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION) != 1 ||
        (ca_file != NULL ? SSL_CTX_load_verify_locations(ctx, ca_file, NULL) : SSL_CTX_set_default_verify_paths(ctx)) !=
            1) {
        ERR_error_string_n(ERR_get_error(), err, sizeof(err));
        ERR_clear_error();
        log_error("redis: cannot set TLS up%s%s: %s", ca_file ? " with --redis-ca-file " : "", ca_file ? ca_file : "",
                  err);
        SSL_CTX_free(ctx);
        return NULL;
    }
    SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER, NULL);
    /* A TLS 1.2 renegotiation would make a command's SSL_write() want a
     * read first; Redis never asks for one, so a peer that does is refused. */
    SSL_CTX_set_options(ctx, SSL_OP_NO_RENEGOTIATION);
    return ctx;
}

/* Sends one command (argvlen NULL: C strings) on the connection, which
 * must be there (f->link), and notes that fn handles its reply, of at most
 * cap bytes.  Returns 0; -EAGAIN when NWANT replies are awaited already
 * (nothing sent, the connection kept); -ENOTCONN with the connection
 * dropped.  fn is called only after 0. */
static int send_command(struct fleet *f, fleet_reply_fn fn, void *arg, size_t cap, int argc, const char **argv,
                        const size_t *argvlen)
{
    struct link *l = f->link;
    struct out *o;
    long long n;
    int rc;

    if (l->nwant == NWANT)
        return -EAGAIN;
    if ((o = malloc(sizeof(*o))) == NULL) {
        link_drop(f, "out of memory");
        return -ENOTCONN;
    }
    if ((n = redisFormatCommandArgv(&o->cmd, argc, argv, argvlen)) < 0) {
        free(o);
        link_drop(f, "cannot format a command: out of memory");
        return -ENOTCONN;
    }
    o->len = (size_t)n;
    o->sealed = 0;
    if (l->ssl != NULL) {
        /* A memory BIO takes all of it: the records go out in one write. */
        ERR_clear_error();
        rc = n > INT_MAX ? -1 : SSL_write(l->ssl, o->cmd, (int)n);
        out_free(o);
        if (rc != n) {
            link_drop(f, "TLS: cannot seal a command");
            return -ENOTCONN;
        }
        if (tls_send(f, l) != 0)
            return -ENOTCONN;
    } else {
        uv_buf_t buf = uv_buf_init(o->cmd, (unsigned)n);
        o->req.data = l;
        if ((rc = uv_write(&o->req, &l->u.stream, &buf, 1, on_written)) != 0) {
            out_free(o);
            link_drop(f, uv_strerror(rc));
            return -ENOTCONN;
        }
    }
    l->want[(l->first + l->nwant++) % NWANT] = (struct want){fn, arg, cap, uv_now(f->loop)};
    return 0;
}

/* ---- replies ---- */

/* arg: the command's name. */
static void on_handshake(struct fleet *f, void *arg, const redisReply *r)
{
    char why[300];

    if (r != NULL && r->type == REDIS_REPLY_ERROR) {
        snprintf(why, sizeof(why), "%s refused: %.200s", (const char *)arg, r->str);
        link_drop(f, why);
    }
}

/* Sends SCRIPT LOAD of s; fn gets s as its argument. */
static int load(struct fleet *f, struct fleet_script *s, fleet_reply_fn fn)
{
    const char *argv[3] = {"SCRIPT", "LOAD", s->body};

    return send_command(f, fn, s, REPLY_MAX_BYTES, 3, argv, NULL);
}

/* Whether a SCRIPT LOAD's answer is s's digest: anything else is not a
 * Redis fcmd can talk to. */
static int is_digest(const redisReply *r, const struct fleet_script *s)
{
    return r->type == REDIS_REPLY_STRING && r->len == 40 && memcmp(r->str, s->sha, 40) == 0;
}

/* A SCRIPT LOAD's answer on a new connection: s is loaded.  Returns 0, or
 * -1 with the connection dropped (or gone). */
static int loaded(struct fleet *f, struct fleet_script *s, const redisReply *r)
{
    char why[300];

    if (r == NULL)
        return -1;
    if (r->type != REDIS_REPLY_STRING || r->len != 40) {
        snprintf(why, sizeof(why), "SCRIPT LOAD refused: %.200s", r->type == REDIS_REPLY_ERROR ? r->str : "?");
        link_drop(f, why);
        return -1;
    }
    if (!is_digest(r, s)) {
        link_drop_bad(f, "SCRIPT LOAD answered something unexpected");
        return -1;
    }
    s->loaded = 1;
    return 0;
}

static void on_loaded(struct fleet *f, void *arg, const redisReply *r)
{
    if (loaded(f, arg, r) != 0)
        return;
    counters_connected(f);
    if (f->on_connect != NULL && f->link != NULL)
        f->on_connect(f->on_connect_arg);
}

static void on_lists_loaded(struct fleet *f, void *arg, const redisReply *r)
{
    if (loaded(f, arg, r) != 0)
        return;
    drains_tick(f); /* at once: drains' ends kept during an outage first */
}

/* A SCRIPT LOAD after a NOSCRIPT (arg: the script): the server answers its
 * digest, or it is not a Redis fcmd can talk to. */
static void on_reloaded(struct fleet *f, void *arg, const redisReply *r)
{
    f->reloading = 0;
    if (r == NULL)
        return;
    if (!is_digest(r, arg))
        link_drop_bad(f, "SCRIPT LOAD answered something unexpected");
}

/* Redis forgot the scripts on a connection that stayed up (SCRIPT FLUSH, a
 * proxy now sending to a server that never saw them): load both again on
 * it, once until the loads are answered.  Commands after the loads find
 * them; those already refused are sent again by their ticks. */
void link_reload_scripts(struct fleet *f)
{
    if (f->reloading || f->link == NULL)
        return;
    log_info("redis: %s forgot fcmd's scripts (NOSCRIPT): loading them again", f->printable);
    if (load(f, &f->flush_s, on_reloaded) == 0 && load(f, &f->lists_s, on_reloaded) == 0)
        f->reloading = 1;
}

/* Hands a reply to what awaits it; one nobody awaits drops the connection. */
static void dispatch(struct fleet *f, struct link *l, const redisReply *r)
{
    struct want w;

    if (l->nwant == 0) {
        link_drop_bad(f, "a reply to no command");
        return;
    }
    w = l->want[l->first];
    l->first = (l->first + 1) % NWANT;
    l->nwant--;
    w.fn(f, w.arg, r);
}

static void *capped_array(const redisReadTask *task, int n)
{
    struct link *l = task->privdata;

    return n > REPLY_MAX_ELEMENTS ? NULL : l->array(task, n);
}

/* Feeds what was read to the parser and hands out every complete reply. */
static void parse(struct fleet *f, struct link *l, const char *buf, size_t n)
{
    void *reply;
    char why[200];

    if (redisReaderFeed(l->reader, buf, n) != REDIS_OK) {
        link_drop(f, "out of memory for a reply");
        return;
    }
    l->fed += n;
    for (;;) {
        if (redisReaderGetReply(l->reader, &reply) != REDIS_OK) {
            /* The only "out of memory" a capped reply can cause is an array over the cap. */
            snprintf(why, sizeof(why), "an unreadable reply: %s",
                     l->reader->err == REDIS_ERR_OOM ? "an array larger than any fcmd asks for" : l->reader->errstr);
            link_drop_bad(f, why);
            return;
        }
        if (reply == NULL)
            break;
        /* What the reader holds unread belongs to the replies after this one. */
        l->boundary = l->fed - (l->reader->len - l->reader->pos);
        dispatch(f, l, reply);
        freeReplyObject(reply);
        if (f->link != l)
            return;
    }
    /* The reply being read is capped by the command it answers. */
    if (l->fed - l->boundary > (l->nwant > 0 ? l->want[l->first].cap : REPLY_MAX_BYTES))
        link_drop_bad(f, "a reply larger than any fcmd asks for");
}

static void on_alloc(uv_handle_t *h, size_t hint, uv_buf_t *buf)
{
    struct link *l = h->data;

    (void)hint;
    *buf = l->f != NULL ? uv_buf_init(l->f->rbuf, sizeof(l->f->rbuf)) : uv_buf_init(NULL, 0);
}

static void on_read(uv_stream_t *s, ssize_t n, const uv_buf_t *buf)
{
    struct link *l = s->data;

    if (l->f == NULL || l->f->link != l || n == 0)
        return;
    if (n < 0)
        link_drop(l->f, n == UV_EOF ? "connection closed" : uv_strerror((int)n));
    else if (l->ssl != NULL)
        tls_received(l->f, l, buf->base, (size_t)n);
    else
        parse(l->f, l, buf->base, (size_t)n);
}

/* ---- connecting ---- */

/* AUTH (with a password), SELECT (for a database other than 0) and the
 * SCRIPT LOADs go out as soon as the connection is made; the connection is
 * usable once the flush script's load is answered. */
static void handshake(struct fleet *f)
{
    const char *auth[3] = {"AUTH"};
    char db[16];
    const char *select[2] = {"SELECT", db};
    int n = 1;

    snprintf(db, sizeof(db), "%d", f->url.db);
    if (f->url.user[0] != '\0')
        auth[n++] = f->url.user;
    auth[n++] = f->url.password;
    if (f->url.password[0] != '\0' && send_command(f, on_handshake, "AUTH", REPLY_MAX_BYTES, n, auth, NULL) != 0)
        return;
    if (f->url.db != 0 && send_command(f, on_handshake, "SELECT", REPLY_MAX_BYTES, 2, select, NULL) != 0)
        return;
    if (load(f, &f->flush_s, on_loaded) != 0)
        return;
    load(f, &f->lists_s, on_lists_loaded);
}

static void on_connected(uv_connect_t *req, int status)
{
    struct link *l = req->data;
    struct fleet *f = l->f;
    int rc;

    if (f == NULL || f->link != l)
        return;
    if (status != 0) {
        link_drop(f, uv_strerror(status));
        return;
    }
    if ((rc = uv_read_start(&l->u.stream, on_alloc, on_read)) != 0) {
        link_drop(f, uv_strerror(rc));
        return;
    }
    if (f->tls != NULL)
        tls_begin(f, l); /* Redis' handshake follows TLS' */
    else
        handshake(f);
}

/* A parser whose arrays are capped: hiredis' own reply objects otherwise. */
static int link_reader(struct link *l)
{
    if ((l->reader = redisReaderCreate()) == NULL)
        return -1;
    l->fn = *l->reader->fn;
    l->array = l->fn.createArray;
    l->fn.createArray = capped_array;
    l->reader->fn = &l->fn;
    l->reader->privdata = l;
    return 0;
}

/* Opens a socket to addr (TCP) or to the URL's path (UNIX) and starts connecting. */
static void open_link(struct fleet *f, const struct sockaddr *addr)
{
    struct link *l = calloc(1, sizeof(*l));
    int rc;

    if (l == NULL || link_reader(l) != 0) {
        free(l);
        outage(f, "out of memory");
        return;
    }
    l->f = f;
    rc = addr ? uv_tcp_init(f->loop, &l->u.tcp) : uv_pipe_init(f->loop, &l->u.pipe, 0);
    if (rc != 0) {
        redisReaderFree(l->reader);
        free(l);
        outage(f, uv_strerror(rc));
        return;
    }
    l->u.handle.data = l->connect.data = l;
    f->link = l;
    if (addr == NULL)
        uv_pipe_connect(&l->connect, &l->u.pipe, f->url.path, on_connected);
    else if ((rc = uv_tcp_connect(&l->connect, &l->u.tcp, addr, on_connected)) != 0)
        link_drop(f, uv_strerror(rc));
}

/*
 * Names are resolved on a detached thread of fcmd's own, one lookup at a time
 * per worker: the loop never waits, and neither does the worker's exit.  On
 * libuv's thread pool (uv_getaddrinfo) a lookup that never returns - a
 * resolver that does not answer - would hold the exit up, as libuv joins its
 * threads when the process exits.
 */
struct lookup {
    char host[sizeof(((struct redis_url *)0)->host)];
    uv_async_t *wake;
    int status; /* getaddrinfo()'s */
    int family;
    struct sockaddr_storage addr;
    _Atomic int done;
    /* The worker may stop while the thread still waits for the resolver:
     * under the lock, the thread either wakes the loop or, once the worker
     * has given the lookup up (fleet_stop), frees it and touches nothing
     * of the worker's. */
    pthread_mutex_t lock;
    int abandoned;
};

static void lookup_free(struct lookup *q)
{
    pthread_mutex_destroy(&q->lock);
    free(q);
}

static void *lookup_run(void *arg)
{
    struct lookup *q = arg;
    struct addrinfo hints = {.ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM}, *res = NULL;

    if ((q->status = getaddrinfo(q->host, NULL, &hints, &res)) == 0) {
        q->family = res->ai_family;
        memcpy(&q->addr, res->ai_addr, res->ai_addrlen < sizeof(q->addr) ? res->ai_addrlen : sizeof(q->addr));
        freeaddrinfo(res);
    }
    pthread_mutex_lock(&q->lock);
    if (q->abandoned) {
        pthread_mutex_unlock(&q->lock);
        lookup_free(q);
        return NULL;
    }
    atomic_store_explicit(&q->done, 1, memory_order_release);
    uv_async_send(q->wake); /* q is the loop's to free once done is set and the lock is let go */
    pthread_mutex_unlock(&q->lock);
    return NULL;
}

/* A lookup whose thread has set done: once the thread has let go of the
 * lock, nothing touches it any more. */
static void lookup_done_free(struct lookup *q)
{
    pthread_mutex_lock(&q->lock);
    pthread_mutex_unlock(&q->lock);
    lookup_free(q);
}

/* At exit: a lookup still under way is the thread's to free. */
static void lookup_abandon(struct lookup *q)
{
    int done;

    pthread_mutex_lock(&q->lock);
    done = atomic_load_explicit(&q->done, memory_order_acquire);
    q->abandoned = 1;
    pthread_mutex_unlock(&q->lock);
    if (done)
        lookup_free(q);
}

/* Starts a lookup of the URL's host.  Returns 0, or a negative errno
 * (-ENOMEM, or pthread_attr_init()'s or pthread_create()'s). */
static int lookup_start(struct fleet *f)
{
    struct lookup *q = calloc(1, sizeof(*q));
    pthread_attr_t attr;
    pthread_t thread;
    sigset_t all, old;
    int rc;

    if (q == NULL)
        return -ENOMEM;
    memcpy(q->host, f->url.host, sizeof(q->host));
    q->wake = &f->looked_up;
    if ((rc = pthread_mutex_init(&q->lock, NULL)) != 0) {
        free(q);
        return -rc;
    }
    if ((rc = pthread_attr_init(&attr)) != 0) {
        lookup_free(q);
        return -rc;
    }
    pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
    /* The worker's signals stay with its loop's thread. */
    sigfillset(&all);
    pthread_sigmask(SIG_SETMASK, &all, &old);
    rc = pthread_create(&thread, &attr, lookup_run, q);
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    pthread_attr_destroy(&attr);
    if (rc != 0) {
        lookup_free(q);
        return -rc; /* pthread_create() returns the errno value */
    }
    f->lookup = q;
    return 0;
}

static void on_resolved(uv_async_t *a)
{
    struct fleet *f = a->data;
    struct lookup *q = f->lookup;
    struct sockaddr_storage addr;
    char why[400];

    if (q == NULL || !atomic_load_explicit(&q->done, memory_order_acquire))
        return;
    f->lookup = NULL;
    f->resolving = 0;
    if (f->resolve_late) {
        f->resolve_late = 0; /* the retry timer, already started, tries again */
        lookup_done_free(q);
        return;
    }
    if (q->status != 0) {
        snprintf(why, sizeof(why), "cannot resolve %s: %s", f->url.host, gai_strerror(q->status));
        lookup_done_free(q);
        outage(f, why);
        return;
    }
    addr = q->addr;
    if (q->family == AF_INET6)
        ((struct sockaddr_in6 *)&addr)->sin6_port = htons((uint16_t)f->url.port);
    else
        ((struct sockaddr_in *)&addr)->sin_port = htons((uint16_t)f->url.port);
    lookup_done_free(q);
    open_link(f, (const struct sockaddr *)&addr);
}

static void connect_begin(struct fleet *f)
{
    int rc;
    char why[400];

    if (f->resolving) { /* a lookup past its deadline still runs: wait for it */
        outage(f, "no address for the host within 3 s");
        return;
    }
    f->connect_at = uv_now(f->loop);
    if (f->url.is_unix) {
        open_link(f, NULL);
        return;
    }
    if ((rc = lookup_start(f)) != 0) {
        snprintf(why, sizeof(why), "cannot resolve %s: %s", f->url.host, strerror(-rc));
        outage(f, why);
        return;
    }
    f->resolving = 1;
}

/* ---- the tick ---- */

/* Every FLEET_FLUSH_MS: the resolve, connect and reply deadlines, then the
 * counters' flush when it is due and the drain lists' work. */
static void on_tick(uv_timer_t *t)
{
    struct fleet *f = t->data;
    uint64_t now = uv_now(f->loop);

    if (f->resolving && !f->resolve_late && now - f->connect_at >= FLEET_TIMEOUT_MS) {
        f->resolve_late = 1; /* its thread's getaddrinfo() cannot be taken back: its answer is ignored */
        outage(f, "no address for the host within 3 s");
        return;
    }
    if (f->link == NULL)
        return;
    if (!f->flush_s.loaded) {
        if (now - f->connect_at >= FLEET_TIMEOUT_MS)
            link_drop(f, "no answer within 3 s");
        return;
    }
    if (f->link->nwant > 0 && now - f->link->want[f->link->first].sent_at >= FLEET_TIMEOUT_MS) {
        link_drop(f, "no reply within 3 s");
        return;
    }
    counters_tick(f, now);
    drains_tick(f);
    tokens_tick(f);
}

/* ---- the interface ---- */

struct fleet *fleet_start(uv_loop_t *loop, const char *url, const char *password, const char *ca_file,
                          struct shm_region *shm, unsigned slot, unsigned drain_lease_s)
{
    struct fleet *f = calloc(1, sizeof(*f));
    char err[200];

    if (f == NULL) {
        log_error("redis: out of memory");
        return NULL;
    }
    if (redis_url_parse(url, &f->url, err, sizeof(err)) != 0) {
        log_error("redis: %s", err);
        free(f);
        return NULL;
    }
    if (f->url.password[0] == '\0' && password != NULL &&
        snprintf(f->url.password, sizeof(f->url.password), "%s", password) >= (int)sizeof(f->url.password)) {
        log_error("redis: the password is longer than %zu bytes", sizeof(f->url.password) - 1);
        free(f);
        return NULL;
    }
    if (f->url.tls && (f->tls = tls_context(ca_file)) == NULL) {
        free(f);
        return NULL;
    }
    log_url_any_at(url, f->printable, sizeof(f->printable));
    f->loop = loop;
    f->shm = shm;
    f->slot = &shm->slots[slot];
    shm_gauge_set(f->slot, SHM_REDIS_DOWN, 1); /* until the first flush is counted, as fleet_ready() says */
    f->rng = uv_hrtime() | 1;
    snprintf(f->member, sizeof(f->member), "%s:%u", shm->instance, slot);
    if (counters_init(f) != 0 || drains_init(f, drain_lease_s) != 0 || tokens_init(f) != 0) {
        log_error("redis: cannot set fleet mode up: out of memory, or no SHA-1 for its scripts' digests");
        drains_free(f);
        tokens_free(f);
        SSL_CTX_free(f->tls);
        free(f);
        return NULL;
    }
    if (uv_timer_init(loop, &f->tick) != 0 || uv_timer_init(loop, &f->retry) != 0 ||
        uv_async_init(loop, &f->looked_up, on_resolved) != 0 ||
        uv_timer_start(&f->tick, on_tick, FLEET_FLUSH_MS, FLEET_FLUSH_MS) != 0) {
        log_error("redis: cannot start its timers");
        drains_free(f);
        tokens_free(f);
        SSL_CTX_free(f->tls);
        free(f);
        return NULL;
    }
    f->tick.data = f->retry.data = f->looked_up.data = f;
    uv_unref((uv_handle_t *)&f->tick);
    uv_unref((uv_handle_t *)&f->retry);
    uv_unref((uv_handle_t *)&f->looked_up);
    connect_begin(f);
    return f;
}

int fleet_connected(const struct fleet *f)
{
    return f->link != NULL && f->flush_s.loaded;
}

int fleet_command(struct fleet *f, fleet_reply_fn fn, void *arg, size_t cap, int argc, const char **argv,
                  const size_t *argvlen)
{
    if (!fleet_connected(f))
        return -ENOTCONN;
    return send_command(f, fn, arg, cap, argc, argv, argvlen);
}

void fleet_on_connect(struct fleet *f, void (*fn)(void *arg), void *arg)
{
    f->on_connect = fn;
    f->on_connect_arg = arg;
}

/* ---- at exit ---- */

void fleet_stop(struct fleet *f)
{
    struct link *l;

    if (f == NULL)
        return;
    f->closed = 1;
    uv_timer_stop(&f->tick);
    uv_timer_stop(&f->retry);
    if (f->lookup != NULL) {
        lookup_abandon(f->lookup);
        f->lookup = NULL;
    }
    f->resolving = 0;
    if ((l = f->link) == NULL)
        return;
    /* As link_drop(), but nothing reconnects and no outage is logged. */
    f->link = NULL;
    f->flush_s.loaded = f->lists_s.loaded = 0;
    f->inflight = f->settling = f->reloading = 0;
    link_close(f, l);
}

static void on_fleet_closed(uv_handle_t *h)
{
    struct fleet *f = h->data;

    if (--f->closing == 0) {
        explicit_bzero(f->url.password, sizeof(f->url.password));
        SSL_CTX_free(f->tls);
        free(f);
    }
}

void fleet_free(struct fleet *f)
{
    if (f == NULL)
        return;
    drains_free(f);
    tokens_free(f);
    f->closing = 3;
    uv_close((uv_handle_t *)&f->tick, on_fleet_closed);
    uv_close((uv_handle_t *)&f->retry, on_fleet_closed);
    uv_close((uv_handle_t *)&f->looked_up, on_fleet_closed);
}
