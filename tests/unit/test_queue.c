/*
 * tests/unit/test_queue.c - what a worker's exit frees: the queue with its
 * pushes (queue_free), and the targets waiting for a retry, which go back
 * to the queue first (retry_stop).  Under `make asan` LeakSanitizer checks
 * that nothing of them is left.
 */
#include "cmocka_all.h"

#include "../../child/core/queue.h"
#include "../../child/core/retry.h"

#include <string.h>
#include <uv.h>

/* A request of n tokens "t0", "t1"... with a payload. */
static void make_request(struct send_request *r, char (*names)[24], char **targets, size_t n)
{
    memset(r, 0, sizeof(*r));
    for (size_t i = 0; i < n; i++) {
        snprintf(names[i], sizeof(names[i]), "t%zu", i);
        targets[i] = names[i];
    }
    r->upstream = UPSTREAM_FCM;
    r->kind = TARGET_TOKEN;
    r->targets = targets;
    r->ntargets = n;
    r->msg.payload = "{\"a\":1}";
    r->msg.payload_len = strlen(r->msg.payload);
}

static int pushes_done;

static void count_done(void *arg, struct push *p)
{
    (void)arg;
    (void)p;
    pushes_done++;
}

static void free_takes_every_push_without_its_hook(void **state)
{
    char names[3][24];
    char *targets[3];
    struct send_request r;
    struct target *batch[3];
    struct queue q;

    (void)state;
    queue_init(&q, 100, 1 << 20);
    q.on_push_done = count_done;
    pushes_done = 0;
    make_request(&r, names, targets, 3);
    assert_non_null(queue_accept(&q, &r));
    make_request(&r, names, targets, 2);
    assert_non_null(queue_accept(&q, &r));
    /* Part of the first push was taken (in flight) and given back. */
    assert_int_equal(queue_take_batch(&q, batch, 2), 2);
    batch[0]->next = batch[1];
    batch[1]->next = NULL;
    queue_requeue(&q, batch[0]);
    assert_int_equal(q.pending, 5);
    queue_free(&q);
    assert_int_equal(q.pending, 0);
    assert_int_equal(q.ready, 0);
    assert_int_equal(q.bytes, 0);
    assert_null(q.head);
    assert_int_equal(pushes_done, 0); /* unfinished: nothing is acknowledged */
}

static int requeued;

static void on_requeue(void *arg)
{
    (void)arg;
    requeued++;
}

static void stop_gives_waiting_targets_back_and_closes_the_timers(void **state)
{
    char names[4][24];
    char *targets[4];
    struct send_request r;
    struct target *batch[4];
    struct retry_set rs;
    struct queue q;
    uv_loop_t loop;

    (void)state;
    assert_int_equal(uv_loop_init(&loop), 0);
    queue_init(&q, 100, 1 << 20);
    retry_init(&rs, &loop, &q, on_requeue, NULL);
    requeued = 0;
    make_request(&r, names, targets, 4);
    assert_non_null(queue_accept(&q, &r));
    assert_int_equal(queue_take_batch(&q, batch, 4), 4);
    batch[0]->next = batch[1];
    batch[1]->next = NULL;
    batch[2]->next = NULL;
    retry_schedule(&rs, batch[0], 2, 60000);
    retry_schedule(&rs, batch[2], 1, 60000);
    assert_int_equal(rs.waiting, 3);
    assert_int_equal(q.ready, 0);
    retry_stop(&rs);
    assert_int_equal(rs.waiting, 0);
    assert_null(rs.groups);
    assert_int_equal(q.ready, 3);
    assert_int_equal(requeued, 0);
    /* The timers close, and the loop with them. */
    assert_int_equal(uv_run(&loop, UV_RUN_DEFAULT), 0);
    assert_int_equal(uv_loop_close(&loop), 0);
    queue_finish(&q, batch[3]);
    queue_free(&q);
    assert_int_equal(q.pending, 0);
}

static void a_retry_that_comes_due_leaves_the_set(void **state)
{
    char names[1][24];
    char *targets[1];
    struct send_request r;
    struct target *batch[1];
    struct retry_set rs;
    struct queue q;
    uv_loop_t loop;

    (void)state;
    assert_int_equal(uv_loop_init(&loop), 0);
    queue_init(&q, 100, 1 << 20);
    retry_init(&rs, &loop, &q, on_requeue, NULL);
    requeued = 0;
    make_request(&r, names, targets, 1);
    assert_non_null(queue_accept(&q, &r));
    assert_int_equal(queue_take_batch(&q, batch, 1), 1);
    batch[0]->next = NULL;
    retry_schedule(&rs, batch[0], 1, 0);
    assert_int_equal(uv_run(&loop, UV_RUN_DEFAULT), 0);
    assert_int_equal(requeued, 1);
    assert_null(rs.groups);
    assert_int_equal(q.ready, 1);
    retry_stop(&rs); /* nothing left to stop */
    assert_int_equal(uv_loop_close(&loop), 0);
    queue_free(&q);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(free_takes_every_push_without_its_hook),
        cmocka_unit_test(stop_gives_waiting_targets_back_and_closes_the_timers),
        cmocka_unit_test(a_retry_that_comes_due_leaves_the_set),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
