/*
 * child/upstream/wait.c - the adapter of an app whose credentials a reload
 * could not read.
 *
 * Intake refuses such an app's pushes (503); those that reach it anyway,
 * replayed from the spool or taken from the queue in Redis, wait: it is
 * never ready, so the sender sets that app's targets aside and tries
 * again later, as it does for an FCM v1 app still waiting for its access
 * token: nothing fails and nothing is dropped, and a reload that loads the
 * credentials sends them (from the spool, with --spool).
 */
#include "upstream.h"

#include <stdlib.h>

static int wait_ready(struct upstream *u)
{
    (void)u;
    return 0;
}

static int wait_prepare(struct upstream *u, struct job *job)
{
    (void)u;
    (void)job;
    return -1; /* never called: it is never ready */
}

static void wait_classify(struct upstream *u, struct job *job, const struct upstream_result *res, struct outcome *out)
{
    (void)u;
    (void)res;
    for (size_t i = 0; i < job->ntargets; i++)
        out[i] = (struct outcome){OUTCOME_RETRY, CAUSE_NOT_CONFIGURED, NULL, "credentials not loaded"};
}

static void wait_destroy(struct upstream *u)
{
    free(u);
}

static const struct upstream_ops wait_ops = {
    .name = "unloaded",
    .ready = wait_ready,
    .prepare = wait_prepare,
    .classify = wait_classify,
    .destroy = wait_destroy,
};

struct upstream *wait_create(const char *url)
{
    struct upstream *u = calloc(1, sizeof(*u));

    if (u == NULL)
        return NULL;
    u->ops = &wait_ops;
    u->max_targets = 1;
    u->url = url;
    return u;
}
