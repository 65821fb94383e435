/*
 * child/upstream/upstream.h - the interface every upstream adapter implements.
 *
 * The sender knows nothing of any provider's protocol: it takes a batch of
 * targets from the queue, asks the adapter to turn it into an HTTP request
 * on a curl easy handle, and when the answer is in asks the adapter to say,
 * for each target, what happened.  A provider is a folder of its own here
 * (docs/ARCHITECTURE.md, "Adding a provider", lists what else it touches).
 */
#ifndef FCMD_CHILD_UPSTREAM_UPSTREAM_H
#define FCMD_CHILD_UPSTREAM_UPSTREAM_H

#include <curl/curl.h>
#include <stddef.h>
#include <stdlib.h>
#include <sys/socket.h>
#include <uv.h>

#include "../../shm/metrics.h"
#include "../core/buf.h"
#include "../core/queue.h"

struct fcmd_options;
struct sender;
struct send_request;
struct shm_slot;
struct shm_region;

enum outcome_kind {
    OUTCOME_DELIVERED, /* the upstream took it */
    OUTCOME_CANONICAL, /* delivered, and the device has a new token */
    OUTCOME_INVALID,   /* the token is dead for good: notregistered */
    OUTCOME_RETRY,     /* a transient failure: try again later */
    OUTCOME_FAILED,    /* a permanent failure that is not the token's */
};

struct outcome {
    enum outcome_kind kind;
    enum cause cause;   /* OUTCOME_RETRY and OUTCOME_FAILED: why, for the metrics */
    char *canonical;    /* OUTCOME_CANONICAL: malloc'd new token */
    const char *reason; /* static text for logs: the upstream's error name */
};

/* Fills an outcome that carries no new token. */
static inline void outcome_set(struct outcome *out, enum outcome_kind kind, enum cause cause, const char *reason)
{
    out->kind = kind;
    out->cause = cause;
    out->reason = reason;
    out->canonical = NULL;
}

/* Appends a header line to list, for an adapter building a request's
 * headers: once one append has failed (*failed set), the rest do nothing,
 * so the caller checks *failed once and frees the list it has. */
static inline struct curl_slist *upstream_header(struct curl_slist *list, const char *line, int *failed)
{
    struct curl_slist *next = *failed ? NULL : curl_slist_append(list, line);

    if (next == NULL)
        *failed = 1;
    return next ? next : list;
}

/* A transfer on the sender's multi handle: done() runs when it finished. */
struct sender_transfer {
    void (*done)(struct sender_transfer *t, CURLcode code);
};

/* One upstream HTTP request in flight. */
struct job {
    struct sender_transfer xfer; /* first: the easy handle's PRIVATE */
    struct sender *sender;
    struct upstream *up; /* the adapter that built it */
    void *adapter_data;  /* the adapter's, released by ops->release */
    struct push *push;
    struct target **targets;
    size_t ntargets;
    CURL *easy;
    struct buf body;     /* request body, built by the adapter */
    struct buf response; /* response body, its first answer_max bytes at most */
    size_t answer_max;   /* set by prepare: the most of an answer's body read (docs/ARCHITECTURE.md) */
    int cut;             /* the body went on past answer_max: the transfer was stopped there */
    unsigned sends;      /* times curl was about to send the request: more than one is a resend of its own */
    long retry_after_ms; /* from Retry-After, -1 when absent */
    struct job *next, **prev; /* in the sender's jobs in flight */
    char detail[256];    /* the upstream's own words about a failure, for the log */
    char error[CURL_ERROR_SIZE];
};

/* What came back for a job. */
struct upstream_result {
    CURLcode code; /* CURLE_OK when an HTTP answer arrived */
    long status;   /* HTTP status */
    const char *body;
    size_t len;
    int cut; /* the body was longer than the job's answer_max: body is its first len bytes; the status decides */
};

struct upstream;

struct upstream_ops {
    const char *name;
    /* Optional: starts what the adapter runs by itself (token refresh...)
     * once the sender exists.  Returns 0 or -1. */
    int (*start)(struct upstream *u, struct sender *s, struct shm_slot *slot);
    /* Optional: extra checks of a /gcm/send request for this upstream.
     * Returns 0, or -EINVAL with a one-line reason in err. */
    int (*check)(struct upstream *u, const struct send_request *r, char *err, size_t errlen);
    /* Optional: whether a request can be built now (e.g. a token is at hand).
     * When it says no, the adapter kicks the sender once it can. */
    int (*ready)(struct upstream *u);
    /* Builds the request for job (body, URL, headers on job->easy) and
     * sets job->answer_max, the most of the answer's body fcmd reads.
     * Returns 0; -EAGAIN when it cannot be built for a moment (the targets
     * are tried again a second later); -1 when memory ran out. */
    int (*prepare)(struct upstream *u, struct job *job);
    /* Fills out[0..job->ntargets) from the result. */
    void (*classify)(struct upstream *u, struct job *job, const struct upstream_result *res, struct outcome *out);
    /* Optional: frees what prepare attached to the job.  An adapter whose
     * job data is a malloc'd struct that begins with its header list uses
     * upstream_release_headers. */
    void (*release)(struct upstream *u, struct job *job);
    void (*destroy)(struct upstream *u);
    /* Optional: whether the job may open a connection to addr, the address
     * curl is about to connect to (Web Push refuses internal ones).  A
     * refusal makes the connection fail; classify hears of it. */
    int (*connect_ok)(struct upstream *u, struct job *job, const struct sockaddr *addr);
};

/* The release of job data that is a malloc'd struct whose first member is
 * the request's struct curl_slist *headers. */
static inline void upstream_release_headers(struct upstream *u, struct job *job)
{
    struct curl_slist **headers = job->adapter_data;

    (void)u;
    if (headers != NULL) {
        curl_slist_free_all(*headers);
        free(headers);
    }
    job->adapter_data = NULL;
}

struct upstream {
    const struct upstream_ops *ops;
    unsigned app;       /* the app it serves: 0 the default, i the child's o->apps[i - 1] */
    size_t max_targets; /* targets one job may carry */
    const char *url;    /* where requests go; its scheme picks HTTP/2 or HTTP/1.1 */
};

/* What the worker needs of a provider besides its adapter's ops: one per
 * line of FCMD_PROVIDERS (common/providers.h), defined as NAME_provider in
 * the provider's folder (its provider.c), and gathered by child/child.c. */
struct shm_app;
struct request_rules;
struct provider {
    /* Whether an app's settings o give this provider's credentials, or, for
     * an app whose credentials a reload could not read (broken), name them. */
    int (*configured)(const struct fcmd_options *o, int broken);
    /* Its adapter for an app's settings o; shared is the app's row of the
     * region (which holds what its workers share, such as APNs' provider
     * token).  NULL when out of memory. */
    struct upstream *(*create)(const struct fcmd_options *o, struct shm_app *shared);
    /* Where its requests go: the waiting adapter of a broken app names it. */
    const char *(*url)(const struct fcmd_options *o);
    /* The body its send endpoint takes beyond /gcm/send's (core/request.h);
     * NULL for /gcm/send's own. */
    const struct request_rules *rules;
};

#define UPSTREAM_PROVIDER(ID, NAME, LABEL, PATH, ENDPOINT, HINT) extern const struct provider NAME##_provider;
FCMD_PROVIDERS(UPSTREAM_PROVIDER)
#undef UPSTREAM_PROVIDER

/* The adapter of an app whose credentials could not be read: never ready,
 * so its targets wait (wait.c).  NULL when out of memory. */
struct upstream *wait_create(const char *url);

#endif
