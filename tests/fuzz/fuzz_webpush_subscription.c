/*
 * tests/fuzz/fuzz_webpush_subscription.c - /webpush/send bodies, form or
 * JSON (the first byte chooses).  What intake accepts must be, by this
 * file's own reading, subscriptions fcmd can post to: an https:// endpoint
 * with no space, control or non-ASCII byte, keys in base64url of the right
 * sizes, header fields without control characters; it must survive a spool
 * record unchanged and pass the check replay applies.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "../../child/core/push_id.h"
#include "../../child/core/request.h"
#include "../../child/store/record.h"
#include "../../child/upstream/webpush/webpush_request.h"

static const struct request_limits wp_limits = {
    REQUEST_MAX_BODY, REQUEST_MAX_TOKENS, REQUEST_MAX_PAYLOAD, {[UPSTREAM_WEBPUSH] = &webpush_request_rules}};

static void disagree(const char *why)
{
    fprintf(stderr, "webpush request: %s\n", why);
    abort();
}

static size_t b64url_run(const char *s, size_t n)
{
    size_t i = 0;

    while (i < n && strchr("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_", s[i]) && s[i])
        i++;
    return i;
}

static void check_target(const char *name)
{
    const char *sp1 = strchr(name, ' '), *sp2 = sp1 ? strchr(sp1 + 1, ' ') : NULL;
    size_t plen, alen;

    if (sp1 == NULL || sp2 == NULL || strchr(sp2 + 1, ' ') != NULL)
        disagree("a target that is not three parts");
    if (strncasecmp(name, "https://", 8) != 0 || sp1 - name <= 8 || sp1 - name > 2048)
        disagree("an endpoint that is not https:// or too long");
    for (const char *p = name; p < sp1; p++)
        if ((unsigned char)*p <= 0x20 || (unsigned char)*p >= 0x7f)
            disagree("an endpoint byte a request line cannot carry");
    for (const char *p = name + 8; p < sp1 && *p != '/' && *p != '?' && *p != '#'; p++)
        if (*p == '@')
            disagree("an endpoint with user information");
    plen = (size_t)(sp2 - sp1 - 1);
    alen = strlen(sp2 + 1);
    if (plen != 87 || b64url_run(sp1 + 1, plen) != plen || sp1[1] != 'B')
        disagree("p256dh is not 65 bytes of base64url beginning with 0x04");
    if (alen != 22 || b64url_run(sp2 + 1, alen) != alen)
        disagree("auth is not 16 bytes of base64url");
}

static void check_accepted(const struct send_request *r)
{
    struct buf b = BUF_INIT;
    struct record_reader rd;
    struct record rec;
    struct record_push p;
    char err[256];
    size_t bad;

    if (r->upstream != UPSTREAM_WEBPUSH || r->kind != TARGET_TOKEN || r->ntargets == 0)
        disagree("accepted without subscriptions");
    for (size_t i = 0; i < r->ntargets; i++)
        check_target(r->targets[i]);
    for (int o = ROPT_PROVIDER_0; o < ROPT_COUNT; o++) {
        if (r->msg.opt[o] == NULL)
            continue;
        if (o > ROPT_WEBPUSH_TOPIC || r->msg.opt_len[o] == 0 || strlen(r->msg.opt[o]) != r->msg.opt_len[o] ||
            r->msg.opt_len[o] > 32)
            disagree("an unknown, empty, long or NUL-holding field");
        for (size_t i = 0; i < r->msg.opt_len[o]; i++)
            if ((unsigned char)r->msg.opt[o][i] <= 0x20 || r->msg.opt[o][i] == 0x7f)
                disagree("a header with a control character");
    }
    for (int o = 0; o < ROPT_FCM_COUNT; o++)
        if (r->msg.opt[o] != NULL)
            disagree("an FCM field on a Web Push request");
    if (r->msg.payload == NULL || r->msg.payload_len > 3993 || memchr(r->msg.payload, 0, r->msg.payload_len))
        disagree("payload missing, over 3993 bytes, or with a NUL");
    if (request_check(r, &wp_limits, err, sizeof(err)) != 0)
        disagree("replay's check refuses what intake took");
    record_encode_push(&b, 1, r);
    rd = (struct record_reader){(unsigned char *)b.data, b.len, 0, 0};
    if (b.failed || record_next(&rd, &rec, &bad) != RECORD_GOOD || record_decode_push(&rec, &p) != 0 ||
        p.upstream != UPSTREAM_WEBPUSH || p.ntargets != r->ntargets)
        disagree("the spool record does not read back");
    for (int o = 0; o < ROPT_COUNT; o++)
        if ((p.msg.opt[o] == NULL) != (r->msg.opt[o] == NULL) ||
            (p.msg.opt[o] &&
             (p.msg.opt_len[o] != r->msg.opt_len[o] || memcmp(p.msg.opt[o], r->msg.opt[o], r->msg.opt_len[o]) != 0)))
            disagree("a field changed in the spool record");
    if (p.msg.payload_len != r->msg.payload_len || memcmp(p.msg.payload, r->msg.payload, r->msg.payload_len) != 0)
        disagree("the payload changed in the spool record");
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
    if (request_parse(UPSTREAM_WEBPUSH, ct, strlen(ct), (const char *)data + 1, size - 1, &wp_limits, &r, err,
                      sizeof(err)) != 0)
        return 0;
    r.id_len = push_id_make(&ids, r.id);
    check_accepted(&r);
    request_free(&r);
    return 0;
}
