/*
 * child/webhook/webhook.c - events, their queues and their batches.
 *
 * An event is made as its outcome is applied: its JSON text, built once,
 * and the loop time it was made at.  Each receiver (one per distinct URL
 * and secret among the instance's and the apps' settings) has a FIFO of
 * them and one timer, which is due at the earliest of: the first event's
 * batch window over, a full batch waiting, or the back-off after a failed
 * POST over.  One batch is in flight per receiver, so a receiver sees a
 * worker's events in order; it stays in the FIFO until a 2xx, and a retry
 * sends the FIFO's head again (with any events that came meanwhile).
 *
 * A receiver costs what it is allowed: one transfer with a 10 s limit,
 * WEBHOOK_ANSWER_READ bytes of its answer, and the events the bound on
 * memory lets wait.  Its transfers run on the sender's multi handle
 * beside the upstream ones, which they never hold up.
 */
#include "webhook.h"
#include "../../common/backoff.h"
#include "../../common/log.h"
#include "../../common/options.h"
#include "../../shm/push_status.h"
#include "../../shm/region.h"
#include "../core/buf.h"
#include "../core/queue.h"
#include "../store/spool.h"
#include "../upstream/sender.h"
#include "../upstream/upstream.h"

#include <curl/curl.h>
#include <inttypes.h>
#include <openssl/core_names.h>
#include <openssl/evp.h>
#include <openssl/params.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#define LOG_INTERVAL_MS 10000

struct event {
    struct event *next;
    struct segment *seg; /* with --spool: the segment that keeps it, else NULL */
    void *held;          /* with --redis-queue: its entry in Redis, else NULL */
    uint64_t born;  /* loop time, ms */
    int64_t at_ms;  /* Unix time, ms: the oldest's goes to the gauge */
    uint32_t len;
    uint8_t id_len; /* its event_id is at text + EVENT_ID_AT */
    char text[];    /* its JSON object */
};

/* Every event's text starts {"event_id":"ID" */
#define EVENT_ID_AT 13

struct receiver {
    struct sender_transfer xfer; /* first: the easy handle's PRIVATE */
    struct webhook *w;
    const char *url;
    const char *secret; /* NULL: unsigned */
    struct event *head, **tailp;
    size_t count;
    uv_timer_t timer;
    CURL *easy;
    struct curl_slist *headers;
    struct buf body; /* "<t>." then the batch's JSON */
    size_t body_at;  /* where the JSON starts */
    size_t batch;    /* events in flight, from head; 0 when none is */
    size_t answer;   /* bytes of the answer read */
    int cut;         /* the answer went on past WEBHOOK_ANSWER_READ */
    int64_t retry_after_ms;
    unsigned failures; /* POSTs in a row not acknowledged */
    uint64_t not_before; /* loop time of the next try */
    size_t limit;        /* events a batch may hold now: halved after a timeout, grown back after a 2xx */
    int tried_stopping;  /* a POST made since the worker began to stop has failed */
    char shown[200];     /* the URL as logs show it: scheme, host and port, never a path or a query */
    struct log_limit log;
    struct receiver *next;
};

struct webhook {
    uv_loop_t *loop;
    const struct fcmd_options *opts;
    struct shm_region *shm;
    struct shm_slot *slot;
    struct sender *sender;
    struct spool *spool; /* with --spool: events wait in it too */
    struct webhook_store store; /* with --redis-queue: events wait in Redis (store.add != NULL) */
    struct receiver *receivers;
    struct receiver *of_app[APPS_MAX + 1]; /* by app index; NULL: no webhook */
    int events_of_app[APPS_MAX + 1];       /* WEBHOOK_* bits */
    size_t count, bytes;                   /* events waiting here, and what they hold */
    uint64_t rng;
    int stopping;
    unsigned closing;
    struct log_limit drop_log;
    struct buf scratch; /* the event being made */
    time_t stamp_sec; /* the second stamp[] is of */
    char stamp[24];   /* "YYYY-MM-DDTHH:MM:SS" */
};

static const struct backoff retry_backoff = {WEBHOOK_RETRY_FIRST_MS * 2, WEBHOOK_RETRY_CAP_MS, BACKOFF_HALF};

/* ---- the signature ---- */

int webhook_sign(const char *secret, size_t secret_len, long long at, const char *body, size_t len, char *out,
                 size_t outlen)
{
    EVP_MAC *mac = EVP_MAC_fetch(NULL, "HMAC", NULL);
    EVP_MAC_CTX *ctx = mac != NULL ? EVP_MAC_CTX_new(mac) : NULL;
    unsigned char md[32];
    char prefix[32];
    size_t mdlen = 0;
    int n = snprintf(prefix, sizeof(prefix), "%lld.", at), rc = -1;
    OSSL_PARAM params[] = {OSSL_PARAM_construct_utf8_string(OSSL_MAC_PARAM_DIGEST, "SHA256", 0), OSSL_PARAM_END};

    if (ctx != NULL && outlen >= 100 && EVP_MAC_init(ctx, (const unsigned char *)secret, secret_len, params) == 1 &&
        EVP_MAC_update(ctx, (const unsigned char *)prefix, (size_t)n) == 1 &&
        EVP_MAC_update(ctx, (const unsigned char *)body, len) == 1 && EVP_MAC_final(ctx, md, &mdlen, sizeof(md)) == 1 &&
        mdlen == sizeof(md)) {
        int k = snprintf(out, outlen, "t=%lld,v1=", at);
        for (size_t i = 0; i < mdlen; i++)
            snprintf(out + k + 2 * i, 3, "%02x", md[i]);
        rc = 0;
    }
    OPENSSL_cleanse(md, sizeof(md));
    EVP_MAC_CTX_free(ctx);
    EVP_MAC_free(mac);
    return rc;
}

/* ---- gauges and the bound on memory ---- */

static size_t event_cost(size_t len)
{
    return sizeof(struct event) + len;
}

static void publish(struct webhook *w)
{
    int64_t oldest = 0;

    for (struct receiver *r = w->receivers; r != NULL; r = r->next)
        if (r->head != NULL && (oldest == 0 || r->head->at_ms < oldest))
            oldest = r->head->at_ms;
    shm_gauge_set(w->slot, SHM_WEBHOOK_PENDING, (int64_t)w->count);
    shm_gauge_set(w->slot, SHM_WEBHOOK_BYTES, (int64_t)w->bytes);
    shm_gauge_set(w->slot, SHM_WEBHOOK_OLDEST_AT, oldest);
}

static void count(struct webhook *w, enum shm_webhook_counter c, uint64_t n)
{
    atomic_fetch_add_explicit(&w->slot->webhook[c], n, memory_order_relaxed);
}

/* Reserves bytes more under --webhook-queue-bytes, for all workers
 * together (one shared count, so two workers never both take the last
 * room).  force: reserve even past the bound (an event read back from the
 * spool, made under it).  Returns 1 when reserved. */
static int reserve(struct webhook *w, size_t bytes, int force)
{
    int64_t before = atomic_fetch_add_explicit(&w->shm->webhook_bytes, (int64_t)bytes, memory_order_relaxed);

    if (!force && before + (int64_t)bytes > w->opts->webhook_queue_bytes) {
        atomic_fetch_sub_explicit(&w->shm->webhook_bytes, (int64_t)bytes, memory_order_relaxed);
        return 0;
    }
    w->bytes += bytes;
    shm_gauge_set(w->slot, SHM_WEBHOOK_BYTES, (int64_t)w->bytes);
    return 1;
}

static void unreserve(struct webhook *w, size_t bytes)
{
    atomic_fetch_sub_explicit(&w->shm->webhook_bytes, (int64_t)bytes, memory_order_relaxed);
    w->bytes -= bytes;
}

/* The first n events of r that Redis holds are let go of there. */
static void settle_in_redis(struct receiver *r, size_t n)
{
    struct webhook *w = r->w;
    void *held[WEBHOOK_BATCH_MAX];
    size_t h = 0;

    for (struct event *e = r->head; n > 0; e = e->next, n--)
        if (e->held != NULL) {
            held[h++] = e->held;
            e->held = NULL;
            if (h == WEBHOOK_BATCH_MAX) {
                w->store.done(w->store.arg, held, h);
                h = 0;
            }
        }
    if (h > 0)
        w->store.done(w->store.arg, held, h);
}

/* The first n events of r are done for good (acknowledged or dropped):
 * the spool lets go of them, a run of one segment's at a time, and Redis
 * of those it holds. */
static void settle_head(struct receiver *r, size_t n)
{
    struct webhook *w = r->w;
    const char *ids[WEBHOOK_BATCH_MAX];
    uint8_t lens[WEBHOOK_BATCH_MAX];
    struct segment *seg = NULL;
    size_t k = 0;

    if (w->store.done != NULL)
        settle_in_redis(r, n);
    if (w->spool == NULL)
        return;
    for (struct event *e = r->head; n > 0; e = e->next, n--) {
        if (e->seg != seg || k == WEBHOOK_BATCH_MAX) {
            spool_event_done(w->spool, seg, ids, lens, k);
            seg = e->seg;
            k = 0;
        }
        if (seg != NULL) {
            ids[k] = e->text + EVENT_ID_AT;
            lens[k++] = e->id_len;
        }
    }
    spool_event_done(w->spool, seg, ids, lens, k);
}

static void drop_head(struct receiver *r)
{
    struct webhook *w = r->w;
    struct event *e = r->head;

    if ((r->head = e->next) == NULL)
        r->tailp = &r->head;
    r->count--;
    w->count--;
    unreserve(w, event_cost(e->len));
    free(e);
}

/* ---- sending ---- */

static void on_timer(uv_timer_t *t);

/* Sets the receiver's timer to its next due time, unless a batch is in
 * flight (its end does that) or nothing waits. */
static void arm(struct receiver *r)
{
    uint64_t now = uv_now(r->w->loop), due = now;

    if (r->batch > 0)
        return;
    if (r->head == NULL) {
        uv_timer_stop(&r->timer);
        return;
    }
    if (r->count < WEBHOOK_BATCH_MAX && !r->w->stopping)
        due = r->head->born + WEBHOOK_BATCH_WAIT_MS;
    if (r->not_before > due)
        due = r->not_before;
    /* The oldest event is dropped at its age, not at the next try after it. */
    uint64_t expiry = r->head->born + (uint64_t)r->w->opts->webhook_max_age * 1000;
    if (expiry < due)
        due = expiry;
    uv_timer_start(&r->timer, on_timer, due > now ? due - now : 0, 0);
}

static size_t on_answer(char *p, size_t size, size_t n, void *userp)
{
    struct receiver *r = userp;
    size_t len = size * n;

    (void)p;
    if (len > WEBHOOK_ANSWER_READ - r->answer) {
        r->cut = 1;
        return 0; /* read no further: the status is in */
    }
    r->answer += len;
    return len;
}

/* A receiver's Retry-After, in seconds or as an HTTP date, is honoured up
 * to the back-off's cap. */
static size_t on_answer_header(char *p, size_t size, size_t n, void *userp)
{
    struct receiver *r = userp;
    int64_t ms = sender_retry_after_ms(p, size * n, WEBHOOK_RETRY_CAP_MS);

    if (ms >= 0)
        r->retry_after_ms = ms;
    return size * n;
}

static void batch_failed(struct receiver *r, const char *why)
{
    struct webhook *w = r->w;
    uint64_t delay = backoff_delay(&retry_backoff, r->failures, backoff_random(&w->rng));

    if (r->retry_after_ms > 0 && (uint64_t)r->retry_after_ms > delay)
        delay = (uint64_t)r->retry_after_ms;
    r->failures++;
    r->not_before = uv_now(w->loop) + delay;
    count(w, SHM_WEBHOOK_FAILED, 1);
    log_limited(&r->log, LOG_WARN, "webhook %s: %s; %zu events wait, tried again in %.1f s", r->shown, why, r->count,
                (double)delay / 1000);
}

static void on_posted(struct sender_transfer *t, CURLcode code)
{
    struct receiver *r = (struct receiver *)t;
    struct webhook *w = r->w;
    long status = 0;
    char why[160];

    curl_easy_getinfo(r->easy, CURLINFO_RESPONSE_CODE, &status);
    if ((code == CURLE_OK || (code == CURLE_WRITE_ERROR && r->cut)) && status >= 200 && status <= 299) {
        count(w, SHM_WEBHOOK_SENT, r->batch);
        settle_head(r, r->batch);
        while (r->batch > 0) {
            drop_head(r);
            r->batch--;
        }
        r->failures = 0;
        r->not_before = 0;
        r->limit = r->limit * 2 > WEBHOOK_BATCH_MAX ? WEBHOOK_BATCH_MAX : r->limit * 2;
    } else {
        if (status > 0)
            snprintf(why, sizeof(why), "HTTP %ld", status);
        else
            snprintf(why, sizeof(why), "%s", curl_easy_strerror(code));
        /* A receiver too slow for a batch this size gets smaller ones. */
        if (code == CURLE_OPERATION_TIMEDOUT)
            r->limit = r->batch > 1 ? r->batch / 2 : 1;
        r->batch = 0;
        r->tried_stopping = w->stopping;
        batch_failed(r, why);
    }
    buf_free(&r->body); /* a batch's copy is not kept between batches */
    publish(w);
    arm(r);
}

/* Drops the events at the head that waited past --webhook-max-age. */
static void expire(struct receiver *r)
{
    struct webhook *w = r->w;
    uint64_t now = uv_now(w->loop), age = (uint64_t)w->opts->webhook_max_age * 1000;
    size_t n = 0, run;

    do { /* in runs of at most a batch, as the spool is told of them */
        run = 0;
        for (struct event *e = r->head; e != NULL && now - e->born >= age && run < WEBHOOK_BATCH_MAX; e = e->next)
            run++;
        settle_head(r, run);
        for (size_t i = 0; i < run; i++)
            drop_head(r);
        n += run;
    } while (run == WEBHOOK_BATCH_MAX);
    if (n > 0) {
        count(w, SHM_WEBHOOK_DROPPED, n);
        log_limited(&w->drop_log, LOG_WARN, "webhook %s: %zu events dropped after --webhook-max-age (%d s)",
                    r->shown, n, w->opts->webhook_max_age);
    }
}

static int post(struct receiver *r)
{
    struct webhook *w = r->w;
    struct timespec ts;
    char signature[128];
    size_t n = 0;

    clock_gettime(CLOCK_REALTIME, &ts);
    buf_reset(&r->body);
    buf_addf(&r->body, "%lld.", (long long)ts.tv_sec);
    r->body_at = r->body.len;
    buf_adds(&r->body, "{\"events\":[");
    for (struct event *e = r->head; e != NULL && n < r->limit; e = e->next, n++) {
        if (n > 0 && r->body.len + e->len > WEBHOOK_BATCH_BYTES)
            break;
        if (n > 0)
            buf_adds(&r->body, ",");
        buf_add(&r->body, e->text, e->len);
    }
    buf_adds(&r->body, "]}");
    if (r->body.failed)
        return -1;
    curl_slist_free_all(r->headers);
    r->headers = curl_slist_append(NULL, "Content-Type: application/json");
    r->headers = r->headers ? curl_slist_append(r->headers, "Expect:") : NULL;
    if (r->secret != NULL && r->headers != NULL) {
        char line[160];
        if (webhook_sign(r->secret, strlen(r->secret), (long long)ts.tv_sec, r->body.data + r->body_at,
                         r->body.len - r->body_at, signature, sizeof(signature)) != 0)
            return -1;
        snprintf(line, sizeof(line), "X-Fcmd-Signature: %s", signature);
        r->headers = curl_slist_append(r->headers, line);
    }
    if (r->headers == NULL)
        return -1;
    curl_easy_setopt(r->easy, CURLOPT_HTTPHEADER, r->headers);
    curl_easy_setopt(r->easy, CURLOPT_POSTFIELDS, r->body.data + r->body_at);
    curl_easy_setopt(r->easy, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)(r->body.len - r->body_at));
    r->answer = 0;
    r->cut = 0;
    r->retry_after_ms = 0;
    if (sender_add(w->sender, r->easy, &r->xfer) != 0)
        return -1;
    r->batch = n;
    return 0;
}

static void on_timer(uv_timer_t *t)
{
    struct receiver *r = t->data;

    if (r->batch > 0)
        return;
    expire(r);
    publish(r->w);
    if (r->head == NULL)
        return;
    if (uv_now(r->w->loop) < r->not_before) {
        arm(r);
        return;
    }
    if (post(r) != 0) {
        batch_failed(r, "the batch could not be started (out of memory)");
        arm(r);
    }
}

/* ---- events ---- */

/* "at": RFC 3339 in UTC with milliseconds. */
static void add_at(struct webhook *w, struct buf *b, const struct timespec *ts)
{
    if (ts->tv_sec != w->stamp_sec) {
        struct tm tm;
        gmtime_r(&ts->tv_sec, &tm);
        strftime(w->stamp, sizeof(w->stamp), "%Y-%m-%dT%H:%M:%S", &tm);
        w->stamp_sec = ts->tv_sec;
    }
    buf_addf(b, ",\"at\":\"%s.%03ldZ\"", w->stamp, ts->tv_nsec / 1000000);
}

/* Appends an event to r's FIFO. */
static void push_event(struct webhook *w, struct receiver *r, struct event *e)
{
    e->next = NULL;
    *r->tailp = e;
    r->tailp = &e->next;
    r->count++;
    w->count++;
    if (r->count == 1)
        publish(w); /* a new oldest */
    else
        shm_gauge_set(w->slot, SHM_WEBHOOK_PENDING, (int64_t)w->count);
    /* A first event starts the window; a full batch ends it early. */
    if (r->count == 1 || r->count == WEBHOOK_BATCH_MAX)
        arm(r);
}

/* The app whose receiver hears of push p: its own, but a push that no
 * instance served for an app this worker does not know goes to the
 * instance's own receiver (the default app's), named as the push named it. */
static unsigned heard_by(const struct push *p)
{
    return p->app == APP_NONE && p->unserved != NULL ? APP_DEFAULT : p->app;
}

/* Makes the event of push p that the caller has written into b (its JSON
 * object, its event_id id_len bytes) and queues it for r, kept in p's spool
 * segment too, or drops it when memory is over the bound. */
static void queue_event(struct webhook *w, struct receiver *r, const struct push *p, const struct buf *b,
                        size_t id_len, const struct timespec *ts)
{
    struct event *e = NULL;
    int held = !b->failed && reserve(w, event_cost(b->len), 0);

    if (held && w->store.add != NULL) { /* to Redis with the push's acknowledgement */
        const char *app = options_app_name(w->opts, heard_by(p));
        if (w->store.add(w->store.arg, app, strlen(app), (int64_t)ts->tv_sec * 1000 + ts->tv_nsec / 1000000, b->data,
                         b->len) == 0) {
            w->count++;
            shm_gauge_set(w->slot, SHM_WEBHOOK_PENDING, (int64_t)w->count);
            return;
        }
        unreserve(w, event_cost(b->len));
        held = 0;
    }
    if (!held || (e = malloc(event_cost(b->len))) == NULL) {
        if (held)
            unreserve(w, event_cost(b->len));
        count(w, SHM_WEBHOOK_DROPPED, 1);
        log_limited(&w->drop_log, LOG_WARN, "webhook %s: an event dropped: %s", r->shown,
                    b->failed ? "out of memory" : "the events waiting hold --webhook-queue-bytes");
        return;
    }
    e->born = uv_now(w->loop);
    e->at_ms = (int64_t)ts->tv_sec * 1000 + ts->tv_nsec / 1000000;
    e->len = (uint32_t)b->len;
    e->id_len = (uint8_t)id_len;
    memcpy(e->text, b->data, b->len);
    e->seg = NULL;
    e->held = NULL;
    if (w->spool != NULL) {
        const char *app = options_app_name(w->opts, heard_by(p));
        e->seg = spool_event_keep(w->spool, p, (uint64_t)e->at_ms, app, strlen(app), e->text + EVENT_ID_AT, id_len,
                                  e->text, e->len);
    }
    push_event(w, r, e);
}

/* Writes the members every event has; returns the length of its event_id. */
static size_t event_head(struct webhook *w, struct buf *b, const struct push *p, const char *type, const char *suffix,
                         size_t suffix_len)
{
    const char *app = p->app == APP_DEFAULT ? "default"
                      : p->app_name != NULL ? p->app_name
                                            : options_app_name(w->opts, p->app);

    buf_adds(b, "{\"event_id\":\"");
    buf_adds(b, p->id);
    buf_adds(b, ".");
    buf_add(b, suffix, suffix_len);
    buf_addf(b, "\",\"type\":\"%s\",\"id\":\"%s\",\"app\":", type, p->id);
    buf_add_json_string(b, app, strlen(app));
    buf_addf(b, ",\"upstream\":\"%s\"",
             (unsigned)p->upstream < SHM_UPSTREAMS ? shm_upstream_names[p->upstream] : "");
    return strlen(p->id) + 1 + suffix_len;
}

void webhook_outcome(struct webhook *w, const struct push *p, const struct target *t, int outcome,
                     const char *reason, const char *canonical, int last)
{
    static const char *const types[] = {"delivered", "canonical", "invalid", "failed"};
    struct receiver *r;
    struct timespec ts;
    struct buf *b;
    int want, type = -1;
    char index[16];
    unsigned a = heard_by(p);

    if (w == NULL || a > APPS_MAX || (r = w->of_app[a]) == NULL)
        return;
    want = w->events_of_app[a];
    switch (outcome) {
    case PUSH_CANONICAL:
        /* Told as a delivery to a receiver that does not ask for canonicals. */
        type = want & WEBHOOK_CANONICAL ? PUSH_CANONICAL : want & WEBHOOK_DELIVERED ? PUSH_DELIVERED : -1;
        break;
    case PUSH_DELIVERED:
        type = want & WEBHOOK_DELIVERED ? PUSH_DELIVERED : -1;
        break;
    case PUSH_INVALID:
        type = want & WEBHOOK_INVALID ? PUSH_INVALID : -1;
        break;
    case PUSH_FAILED:
        type = want & WEBHOOK_FAILED ? PUSH_FAILED : -1;
        break;
    }
    if (type < 0 && !(last && (want & WEBHOOK_DONE)))
        return;
    clock_gettime(CLOCK_REALTIME, &ts);
    b = &w->scratch; /* kept from event to event: no allocation once it has grown */
    if (b->failed)
        buf_free(b); /* memory ran out for an earlier one */
    buf_reset(b);
    if (type >= 0) {
        int n = snprintf(index, sizeof(index), "%" PRIu32, t->index);
        size_t id_len = event_head(w, b, p, types[type], index, (size_t)n);
        buf_adds(b, ",\"token\":");
        buf_add_json_string(b, t->name, request_target_shown(p->upstream, t->name, t->len));
        add_at(w, b, &ts);
        if (type == PUSH_CANONICAL && canonical != NULL) {
            buf_adds(b, ",\"canonical\":");
            buf_add_json_string(b, canonical, strlen(canonical));
        } else if (type == PUSH_INVALID || type == PUSH_FAILED) {
            const char *why = reason != NULL ? reason : "";
            size_t n = strnlen(why, PUSH_STATUS_REASON_MAX);
            buf_adds(b, ",\"reason\":");
            buf_add_json_string(b, why, n);
        }
        buf_adds(b, "}");
        queue_event(w, r, p, b, id_len, &ts);
    }
    if (last && (want & WEBHOOK_DONE)) {
        /* The push's counts as its status has them (a push taken up again
         * after a worker's death goes on with them), else this worker's. */
        struct push_status st;
        uint32_t targets = (uint32_t)p->ntargets, delivered = p->delivered, invalid = p->invalid, failed = p->failed;
        if (p->status != 0 &&
            push_status_read(w->shm->push_status, p->id, strlen(p->id), ledger_now_ms(), &st, NULL, NULL) == 1) {
            targets = st.targets;
            delivered = st.delivered;
            invalid = st.invalid;
            failed = st.failed;
        }
        buf_reset(b);
        size_t id_len = event_head(w, b, p, "done", "done", 4);
        buf_adds(b, ",\"token\":null");
        add_at(w, b, &ts);
        buf_addf(b, ",\"targets\":%" PRIu32 ",\"delivered\":%" PRIu32 ",\"invalid\":%" PRIu32 ",\"failed\":%" PRIu32 "}",
                 targets, delivered, invalid, failed);
        queue_event(w, r, p, b, id_len, &ts);
    }
    if (b->cap > (64u << 10))
        buf_free(b); /* one huge event's room is not kept */
}

/* An event read from Redis past --webhook-max-age: let go of there, and
 * counted as dropped. */
static void drop_old(struct webhook *w, struct receiver *r, void *held)
{
    w->store.done(w->store.arg, &held, 1);
    count(w, SHM_WEBHOOK_DROPPED, 1);
    log_limited(&w->drop_log, LOG_WARN, "webhook %s: an event dropped: older than --webhook-max-age (%d s)",
                r->shown, w->opts->webhook_max_age);
}

/* An event kept elsewhere (a spool segment, Redis), queued again for its
 * app's receiver with the age it had.  It counts against the bound on
 * memory but is never refused for it: it was under the bound when it was
 * made, and a read from Redis asks for no more than webhook_room(). */
static int requeue(struct webhook *w, struct segment *seg, void *held, uint64_t at_ms, const char *app,
                   size_t app_len, const char *text, size_t len)
{
    int a = app_len == 0 ? (int)APP_DEFAULT : options_app_find(w->opts, app, app_len);
    struct receiver *r = a >= 0 ? w->of_app[a] : NULL;
    struct timespec ts;
    struct event *e;
    uint64_t now = uv_now(w->loop), age;
    const char *id_end;

    /* Its event_id ends at the first quote after {"event_id":" */
    if (r == NULL || len > UINT32_MAX || len <= EVENT_ID_AT ||
        (id_end = memchr(text + EVENT_ID_AT, '"', len - EVENT_ID_AT)) == NULL ||
        id_end - (text + EVENT_ID_AT) > UINT8_MAX || (e = malloc(event_cost(len))) == NULL)
        return 0;
    clock_gettime(CLOCK_REALTIME, &ts);
    age = (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
    age = age > at_ms ? age - at_ms : 0;
    if (held != NULL && age >= (uint64_t)w->opts->webhook_max_age * 1000) {
        /* Already too old (claimed late): the loop's clock may not reach
         * back to when it was made (a host up for less than its age), so
         * it goes now. */
        free(e);
        drop_old(w, r, held);
        return 1;
    }
    reserve(w, event_cost(len), 1);
    e->born = age < now ? now - age : 0;
    e->at_ms = (int64_t)at_ms;
    e->len = (uint32_t)len;
    e->id_len = (uint8_t)(id_end - (text + EVENT_ID_AT));
    memcpy(e->text, text, len);
    e->seg = seg;
    e->held = held;
    push_event(w, r, e);
    return 1;
}

int webhook_restore(struct webhook *w, struct segment *seg, uint64_t at_ms, const char *app, size_t app_len,
                    const char *id, size_t id_len, const char *text, size_t len)
{
    (void)id;
    if (id_len > UINT8_MAX)
        return 0;
    return requeue(w, seg, NULL, at_ms, app, app_len, text, len);
}

int webhook_take(struct webhook *w, void *held, const char *app, size_t app_len, int64_t at_ms, const char *text,
                 size_t len)
{
    if (len <= EVENT_ID_AT || memcmp(text, "{\"event_id\":\"", EVENT_ID_AT) != 0)
        return 0;
    return requeue(w, NULL, held, at_ms > 0 ? (uint64_t)at_ms : 0, app, app_len, text, len);
}

/* Reads from Redis fill half the bound at most: the other half is for the
 * events the workers make meanwhile, which would otherwise be dropped while
 * Redis has room for them. */
size_t webhook_room(const struct webhook *w)
{
    int64_t used = atomic_load_explicit(&w->shm->webhook_bytes, memory_order_relaxed);
    int64_t half = w->opts->webhook_queue_bytes / 2;

    return used < half ? (size_t)(half - used) : 0;
}

void webhook_stored(struct webhook *w, size_t n, size_t bytes, size_t dropped)
{
    unreserve(w, bytes + n * sizeof(struct event));
    w->count -= n;
    if (dropped > 0)
        count(w, SHM_WEBHOOK_DROPPED, dropped);
    publish(w);
}

void webhook_use_redis(struct webhook *w, const struct webhook_store *s)
{
    if (w != NULL)
        w->store = *s;
}

void webhook_use_spool(struct webhook *w, struct spool *spool)
{
    if (w != NULL)
        w->spool = spool;
}

/* ---- set-up and teardown ---- */

static int same(const char *a, const char *b)
{
    return (a == NULL && b == NULL) || (a != NULL && b != NULL && strcmp(a, b) == 0);
}

/* scheme://host[:port] of url: a path or a query may carry a token, and
 * userinfo a password. */
static void shown_url(const char *url, char *out, size_t outlen)
{
    const char *host = strstr(url, "://"), *end;

    host = host != NULL ? host + 3 : url;
    end = host + strcspn(host, "/?#");
    const char *at = memchr(host, '@', (size_t)(end - host));
    if (at != NULL)
        host = at + 1;
    snprintf(out, outlen, "%.*s://%.*s", (int)(strstr(url, "://") ? strstr(url, "://") - url : 0), url,
             (int)(end - host), host);
}

static struct receiver *receiver_for(struct webhook *w, const char *url, const char *secret)
{
    struct receiver *r;

    for (r = w->receivers; r != NULL; r = r->next)
        if (strcmp(r->url, url) == 0 && same(r->secret, secret))
            return r;
    if ((r = calloc(1, sizeof(*r))) == NULL || (r->easy = sender_new_easy(w->sender)) == NULL) {
        free(r);
        return NULL;
    }
    r->xfer.done = on_posted;
    r->w = w;
    r->url = url;
    r->secret = secret;
    r->tailp = &r->head;
    r->limit = WEBHOOK_BATCH_MAX;
    shown_url(url, r->shown, sizeof(r->shown));
    r->log = (struct log_limit)LOG_LIMIT_INIT(LOG_INTERVAL_MS);
    uv_timer_init(w->loop, &r->timer);
    r->timer.data = r;
    /* The receiver's own terms: HTTP/2 where TLS offers it, else HTTP/1.1;
     * no redirect followed; its answer bounded in time and bytes. */
    curl_easy_setopt(r->easy, CURLOPT_URL, url);
    curl_easy_setopt(r->easy, CURLOPT_HTTP_VERSION, (long)CURL_HTTP_VERSION_2TLS);
    curl_easy_setopt(r->easy, CURLOPT_PIPEWAIT, 0L);
    curl_easy_setopt(r->easy, CURLOPT_FOLLOWLOCATION, 0L);
    curl_easy_setopt(r->easy, CURLOPT_PROTOCOLS_STR, "http,https");
    curl_easy_setopt(r->easy, CURLOPT_TIMEOUT_MS, (long)WEBHOOK_ANSWER_MS);
    curl_easy_setopt(r->easy, CURLOPT_CONNECTTIMEOUT_MS, (long)WEBHOOK_ANSWER_MS);
    curl_easy_setopt(r->easy, CURLOPT_POST, 1L);
    curl_easy_setopt(r->easy, CURLOPT_WRITEFUNCTION, on_answer);
    curl_easy_setopt(r->easy, CURLOPT_WRITEDATA, r);
    curl_easy_setopt(r->easy, CURLOPT_HEADERFUNCTION, on_answer_header);
    curl_easy_setopt(r->easy, CURLOPT_HEADERDATA, r);
    r->next = w->receivers;
    w->receivers = r;
    return r;
}

struct webhook *webhook_start(uv_loop_t *loop, const struct fcmd_options *o, struct shm_region *shm, unsigned slot,
                              struct sender *sender)
{
    struct webhook *w;

    if (!options_has_webhook(o))
        return NULL;
    if ((w = calloc(1, sizeof(*w))) == NULL) {
        log_error("webhook: cannot start (out of memory)");
        return NULL;
    }
    w->loop = loop;
    w->opts = o;
    w->shm = shm;
    w->slot = &shm->slots[slot];
    w->sender = sender;
    w->stamp_sec = -1;
    w->drop_log = (struct log_limit)LOG_LIMIT_INIT(LOG_INTERVAL_MS);
    w->rng = ((uint64_t)getpid() << 32) ^ (uint64_t)time(NULL) ^ 0x2545f4914f6cdd1dull;
    for (unsigned a = 0; a <= o->napps; a++) {
        const struct fcmd_options *ao = a == APP_DEFAULT ? o : &o->apps[a - 1].o;
        if (ao->webhook == NULL)
            continue;
        if ((w->of_app[a] = receiver_for(w, ao->webhook, ao->webhook_secret)) == NULL) {
            log_error("webhook: cannot start (out of memory)");
            webhook_free(w);
            return NULL;
        }
        w->events_of_app[a] = options_webhook_events(ao);
    }
    publish(w);
    return w;
}

void webhook_stop(struct webhook *w)
{
    if (w == NULL)
        return;
    w->stopping = 1;
    for (struct receiver *r = w->receivers; r != NULL; r = r->next) {
        r->not_before = 0; /* one more try at once, whatever the back-off */
        arm(r);
    }
}

int webhook_settled(const struct webhook *w)
{
    if (w == NULL)
        return 1;
    /* A receiver that failed the try made at the stop is not waited for:
     * its events stay in the spool, or are counted dropped at the exit. */
    for (const struct receiver *r = w->receivers; r != NULL; r = r->next)
        if (r->batch > 0 || (r->head != NULL && !(w->stopping && r->tried_stopping)))
            return 0;
    return 1;
}

static void on_closed(uv_handle_t *h)
{
    struct receiver *r = h->data;
    struct webhook *w = r->w;

    free(r);
    if (--w->closing == 0)
        free(w);
}

void webhook_free(struct webhook *w)
{
    size_t left;

    if (w == NULL)
        return;
    left = 0;
    for (struct receiver *r = w->receivers; r != NULL; r = r->next) {
        size_t kept = 0, lost = 0;
        if (r->batch > 0)
            sender_remove(w->sender, r->easy);
        for (struct event *e = r->head; e != NULL; e = e->next)
            e->seg != NULL || e->held != NULL ? kept++ : lost++;
        if (lost > 0)
            log_warn("webhook %s: %zu events not delivered at exit: dropped", r->shown, lost);
        if (kept > 0)
            log_info("webhook %s: %zu events not delivered at exit wait in %s", r->shown, kept,
                     w->store.add != NULL ? "Redis" : "the spool");
        left += lost;
        while (r->head != NULL)
            drop_head(r);
        curl_easy_cleanup(r->easy);
        curl_slist_free_all(r->headers);
        buf_free(&r->body);
    }
    if (left > 0)
        count(w, SHM_WEBHOOK_DROPPED, left);
    buf_free(&w->scratch);
    publish(w);
    if (w->receivers == NULL) {
        free(w);
        return;
    }
    for (struct receiver *r = w->receivers, *next; r != NULL; r = next) {
        next = r->next;
        w->closing++;
        uv_close((uv_handle_t *)&r->timer, on_closed);
    }
}
