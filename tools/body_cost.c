/*
 * tools/body_cost.c - what /gcm/send bodies of each shape cost to read.
 *
 * Builds bodies of about the same size in shapes a client might send -
 * normal, and the shapes that once cost more than their size (deep, wide,
 * many keys, keys with long equal prefixes, escapes, a repeated key at the
 * end) - runs request_parse on each many times and prints the median time
 * per body and per MiB, and each shape's ratio to the normal body.  The
 * point is the ratios within one run; see docs/BENCHMARKS.md.  ROUNDS in the
 * environment sets the runs per shape (21), BYTES the size of a body (1 MiB).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "../child/core/request.h"

static size_t target = 1u << 20; /* bytes per body, about: BYTES in the environment */
#define TARGET target
#define MAX_ROUNDS 101

struct shape {
    const char *name;
    char *body;
    size_t len;
};

static char *buf;
static size_t len;

static void put(const char *s)
{
    size_t n = strlen(s);

    memcpy(buf + len, s, n);
    len += n;
}

static void begin(void)
{
    buf = malloc(TARGET * 2 + 65536);
    if (buf == NULL)
        exit(1);
    len = 0;
}

static struct shape end(const char *name)
{
    return (struct shape){name, buf, len};
}

static struct shape normal_tokens(void)
{
    begin();
    put("{\"tokens\":[");
    for (int i = 0; len < TARGET - 200; i++) {
        char t[128];
        snprintf(t, sizeof(t),
                 "%s\"tok-%06d-aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\"",
                 i ? "," : "", i);
        put(t);
    }
    put("],\"payload\":{\"title\":\"hello\"}}");
    return end("normal: ~10,000 tokens");
}

static struct shape normal_payload(void)
{
    begin();
    put("{\"tokens\":[\"a\"],\"payload\":{");
    for (int i = 0; len < TARGET - 200; i++) {
        char t[128];
        snprintf(t, sizeof(t), "%s\"field%d\":\"value with some text in it %d\"", i ? "," : "", i, i);
        put(t);
    }
    put("}}");
    return end("payload of many fields");
}

static struct shape deep(void)
{
    begin();
    put("{\"tokens\":[\"a\"],\"payload\":{\"k\":");
    memset(buf + len, '[', TARGET / 2);
    len += TARGET / 2;
    memset(buf + len, ']', TARGET / 2);
    len += TARGET / 2;
    put("}}");
    return end("nested as deep as the body allows");
}

static struct shape wide_empty(void)
{
    begin();
    put("{\"tokens\":[\"a\"],\"payload\":{\"k\":[[]");
    while (len < TARGET - 16)
        put(",[]");
    put("]}}");
    return end("array of empty arrays");
}

static struct shape nested_objects(void)
{
    begin();
    put("{\"tokens\":[\"a\"],\"payload\":{\"k\":[");
    for (int i = 0; len < TARGET - 400; i++) {
        put(i ? "," : "");
        for (int d = 0; d < 60; d++)
            put("{\"a\":");
        put("1");
        for (int d = 0; d < 60; d++)
            put(",\"b\":2}");
    }
    put("]}}");
    return end("objects 60 deep, side by side");
}

static struct shape equal_prefix_keys(void)
{
    begin();
    put("{\"tokens\":[\"a\"],\"payload\":{");
    for (int i = 0; len < TARGET - 2000; i++) {
        put(i ? ",\"" : "\"");
        memset(buf + len, 'p', 1000);
        len += 1000;
        char t[64];
        snprintf(t, sizeof(t), "%d\":0", i);
        put(t);
    }
    put("}}");
    return end("keys of 1000 equal bytes");
}

static struct shape escapes(void)
{
    begin();
    put("{\"tokens\":[\"a\"],\"payload\":{\"k\":\"");
    while (len < TARGET - 16)
        put("\\u00e9\\ud83d\\ude00");
    put("\"}}");
    return end("a string of escapes");
}

static struct shape repeated_at_end(void)
{
    struct shape s = normal_payload();

    len -= 2;
    put(",\"field0\":1}}");
    s.len = len;
    s.name = "many fields, one repeated last";
    return s;
}

static double seconds(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static int cmp(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;

    return x < y ? -1 : x > y;
}

int main(void)
{
    static const char ct[] = "application/json";
    struct request_limits lim = {64u << 20, 1000000, 16u << 20, {NULL}};
    double base = 0;
    int rounds = getenv("ROUNDS") ? atoi(getenv("ROUNDS")) : 21;

    if (rounds < 1 || rounds > MAX_ROUNDS)
        rounds = 21;
    if (getenv("BYTES") != NULL && atol(getenv("BYTES")) >= 16384)
        target = (size_t)atol(getenv("BYTES"));
    setvbuf(stdout, NULL, _IOLBF, 0);
    struct shape shapes[] = {normal_tokens(),  normal_payload(),    deep(),    wide_empty(),
                             nested_objects(), equal_prefix_keys(), escapes(), repeated_at_end()};
    printf("%-34s %9s %7s %10s %8s  %s\n", "shape", "bytes", "status", "ms/body", "ratio", "answer");
    for (size_t i = 0; i < sizeof(shapes) / sizeof(shapes[0]); i++) {
        double t[MAX_ROUNDS];
        char err[256] = "";
        int status = 0;
        for (int r = 0; r < rounds; r++) {
            struct send_request req;
            double t0 = seconds();
            status = request_parse(UPSTREAM_FCM, ct, sizeof(ct) - 1, shapes[i].body, shapes[i].len, &lim, &req, err,
                                   sizeof(err));
            t[r] = seconds() - t0;
            if (status == 0)
                request_free(&req);
        }
        qsort(t, (size_t)rounds, sizeof(t[0]), cmp);
        if (i == 0)
            base = t[rounds / 2] / (double)shapes[i].len;
        printf("%-34s %9zu %7d %10.2f %8.2f  %.60s\n", shapes[i].name, shapes[i].len, request_status(status),
               t[rounds / 2] * 1e3, t[rounds / 2] / (double)shapes[i].len / base, status ? err : "accepted");
        free(shapes[i].body);
    }
    return 0;
}
