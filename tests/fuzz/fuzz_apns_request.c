/*
 * tests/fuzz/fuzz_apns_request.c - /apns/send bodies, form or JSON (the
 * first byte chooses).  What intake accepts must hold to Apple's rules by
 * this file's own reading, must survive a spool record unchanged, and must
 * pass the check replay applies; nothing it sends as a header may hold a
 * control character.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../../child/core/push_id.h"
#include "../../child/core/request.h"
#include "../../child/store/record.h"
#include "../../child/upstream/apns/apns_request.h"

/* Intake's limits with the APNs rules, as a worker sets them. */
static const struct request_limits apns_limits = {REQUEST_MAX_BODY, REQUEST_MAX_TOKENS, REQUEST_MAX_PAYLOAD,
                                                  {[UPSTREAM_APNS] = &apns_request_rules}};

static void disagree(const char *why)
{
    fprintf(stderr, "apns request: %s\n", why);
    abort();
}

static int is_hex(const char *s)
{
    for (; *s; s++)
        if (!strchr("0123456789abcdefABCDEF", *s))
            return 0;
    return 1;
}

static void check_accepted(const struct send_request *r)
{
    struct buf b = BUF_INIT;
    struct record_reader rd;
    struct record rec;
    struct record_push p;
    char err[256];
    size_t bad;

    if (r->upstream != UPSTREAM_APNS || r->kind != TARGET_TOKEN || r->ntargets == 0)
        disagree("accepted without device tokens");
    for (size_t i = 0; i < r->ntargets; i++)
        if (!is_hex(r->targets[i]) || strlen(r->targets[i]) % 2 || strlen(r->targets[i]) < 16)
            disagree("a device token that is not hex");
    for (int o = ROPT_APNS_TOPIC; o < ROPT_COUNT; o++) {
        if (r->msg.opt[o] == NULL)
            continue;
        if (r->msg.opt_len[o] == 0 || strlen(r->msg.opt[o]) != r->msg.opt_len[o])
            disagree("an empty field, or one with a NUL");
        for (size_t i = 0; i < r->msg.opt_len[o]; i++)
            if ((unsigned char)r->msg.opt[o][i] < 0x20 || r->msg.opt[o][i] == 0x7f)
                disagree("a header with a control character");
    }
    if (r->msg.opt[ROPT_APNS_COLLAPSE_ID] && r->msg.opt_len[ROPT_APNS_COLLAPSE_ID] > 64)
        disagree("collapse_id over 64 bytes");
    if (r->msg.payload == NULL || r->msg.payload_len > 5120)
        disagree("payload missing or over 5120 bytes");
    if (r->msg.payload_len > 4096 &&
        !(r->msg.opt[ROPT_APNS_PUSH_TYPE] && strcmp(r->msg.opt[ROPT_APNS_PUSH_TYPE], "voip") == 0))
        disagree("payload over 4096 bytes and not voip");
    for (int o = 0; o < ROPT_FCM_COUNT; o++)
        if (r->msg.opt[o] != NULL)
            disagree("an FCM field on an APNs request");
    if (request_check(r, &apns_limits, err, sizeof(err)) != 0)
        disagree("replay's check refuses what intake took");
    record_encode_push(&b, 1, r);
    rd = (struct record_reader){(unsigned char *)b.data, b.len, 0, 0};
    if (b.failed || record_next(&rd, &rec, &bad) != RECORD_GOOD || record_decode_push(&rec, &p) != 0 ||
        p.upstream != UPSTREAM_APNS || p.ntargets != r->ntargets || p.push_id_len != r->id_len ||
        memcmp(p.push_id, r->id, r->id_len) != 0)
        disagree("the spool record does not read back");
    for (int o = 0; o < ROPT_COUNT; o++)
        if ((p.msg.opt[o] == NULL) != (r->msg.opt[o] == NULL) ||
            (p.msg.opt[o] &&
             (p.msg.opt_len[o] != r->msg.opt_len[o] || memcmp(p.msg.opt[o], r->msg.opt[o], r->msg.opt_len[o]) != 0)))
            disagree("a field changed in the spool record");
    buf_free(&b);
}

static struct push_ids ids; /* a fixed prefix: runs repeat */

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static const char form[] = "application/x-www-form-urlencoded", json[] = "application/json";
    struct send_request r;
    char err[256];
    const char *ct;

    if (size == 0)
        return 0;
    ct = data[0] & 1 ? json : form;
    if (request_parse(UPSTREAM_APNS, ct, strlen(ct), (const char *)data + 1, size - 1, &apns_limits, &r, err,
                          sizeof(err)) != 0)
        return 0;
    /* Intake names the push before it is stored (child/core/queue.c). */
    r.id_len = push_id_make(&ids, r.id);
    check_accepted(&r);
    request_free(&r);
    return 0;
}
