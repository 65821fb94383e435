/* tests/fuzz/fuzz_json_request.c - /gcm/send bodies as JSON, and the v1
 * body fcmd would send upstream for whatever is accepted, judged by jansson:
 * it must decode, name the target, and carry every payload field as a
 * string (the value itself, or the JSON text of any other value). */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../../child/core/request.h"
#include "../../child/upstream/fcm/v1.h"
#include "oracle.h"

static void disagree(const char *why, const struct buf *b)
{
    fprintf(stderr, "fuzz_json_request: %s in %.*s\n", why, (int)b->len, b->data);
    abort();
}

/* data[k] is payload[k] if that is a string, else its JSON text. */
static int data_matches(json_t *data, json_t *payload)
{
    const char *k;
    json_t *v;
    json_error_t err;

    if (!json_is_object(data) || json_object_size(data) != json_object_size(payload))
        return 0;
    json_object_foreach (payload, k, v) {
        json_t *sent = json_object_get(data, k), *text;
        int same;
        if (!json_is_string(sent))
            return 0;
        if (json_is_string(v)) {
            if (!json_equal(sent, v))
                return 0;
            continue;
        }
        text = oracle_load(json_string_value(sent), json_string_length(sent), JSON_DECODE_INT_AS_REAL, &err);
        if (text == NULL && oracle_limit(&err))
            continue;
        same = text != NULL && json_equal(text, v);
        json_decref(text);
        if (!same)
            return 0;
    }
    return 1;
}

/* The v1 body for the request's first target, as jansson reads it. */
static void check_body(const struct send_request *r, const struct buf *shared)
{
    static const char *const field[] = {"token", "topic", "condition"};
    size_t n = strlen(r->targets[0]);
    struct target *t = malloc(sizeof(*t) + n + 1);
    struct buf b = BUF_INIT;
    json_error_t err;
    json_t *body, *msg, *payload;
    const char *name;

    if (t == NULL)
        return;
    t->len = (uint32_t)n;
    memcpy(t->name, r->targets[0], n + 1);
    v1_build_body(&b, r->kind, t, shared->data ? shared->data : "", shared->len);
    free(t);
    if (b.failed || (body = oracle_load(b.data, b.len, 0, &err)) == NULL) {
        if (!b.failed && !oracle_limit(&err))
            disagree(err.text, &b);
        buf_free(&b);
        return;
    }
    /* jansson skips a raw NUL after a number: that check is ours. */
    if (memchr(b.data, '\0', b.len) != NULL)
        disagree("raw NUL byte", &b);
    msg = json_object_get(body, "message");
    name = json_string_value(json_object_get(msg, field[r->kind]));
    if (name == NULL || strcmp(name, r->targets[0]) != 0)
        disagree("target lost", &b);
    /* Numbers as reals on both sides: the texts are the client's own. */
    if (r->msg.payload != NULL) {
        payload = oracle_load(r->msg.payload, r->msg.payload_len, JSON_DECODE_INT_AS_REAL, &err);
        if (payload == NULL && !oracle_limit(&err))
            disagree("the accepted payload is not JSON", &b);
        if (payload != NULL && !data_matches(json_object_get(msg, "data"), payload))
            disagree("data is not the payload as strings", &b);
        json_decref(payload);
    }
    json_decref(body);
    buf_free(&b);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static const char ct[] = "application/json; charset=utf-8";
    struct send_request r;
    struct buf shared = BUF_INIT;
    char err[256];

    if (request_parse(UPSTREAM_FCM, ct, sizeof(ct) - 1, (const char *)data, size, NULL, &r, err, sizeof(err)) != 0)
        return 0;
    if (v1_encode_shared(&shared, &r.msg) == 0 && r.ntargets > 0)
        check_body(&r, &shared);
    buf_free(&shared);
    request_free(&r);
    return 0;
}
