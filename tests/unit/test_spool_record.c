/*
 * tests/unit/test_spool_record.c - spool records: CRC-32C, each record type
 * against bytes laid out from the documented format, round trips, a torn
 * tail and a corrupt record in the middle, hostile PUSH4 fields, and a
 * replayed push keeping its id.
 */
#include "cmocka_all.h"

#include <stdlib.h>
#include <string.h>

#include "../../child/core/queue.h"
#include "../../child/store/crc32c.h"
#include "../../child/store/record.h"
#include "../../child/store/spool_replay.h"
#include "../../child/upstream/apns/apns_request.h"

static void crc32c_check_value(void **state)
{
    (void)state;
    assert_int_equal(crc32c(0, "123456789", 9), 0xE3069283u);
    assert_int_equal(crc32c(crc32c(0, "1234", 4), "56789", 5), 0xE3069283u);
}

static struct send_request sample(char **targets, size_t n)
{
    struct send_request r;

    memset(&r, 0, sizeof(r));
    r.kind = TARGET_TOKEN;
    r.targets = targets;
    r.ntargets = n;
    r.msg.payload = "{\"k\":1}";
    r.msg.payload_len = 7;
    r.msg.opt[ROPT_PRIORITY] = "\"high\"";
    r.msg.opt_len[ROPT_PRIORITY] = 6;
    memcpy(r.id, "sample-id_1", 12);
    r.id_len = 11;
    return r;
}

static void round_trip(void **state)
{
    char *targets[] = {"tok-a", "tok-bb"};
    struct send_request r = sample(targets, 2);
    struct buf b = BUF_INIT;
    struct record_reader rd;
    struct record rec;
    struct record_push p;
    const unsigned char *idx;
    const char *name;
    uint32_t index, n;
    uint64_t id;
    size_t pos = 0, len, bad;

    (void)state;
    record_encode_push(&b, 42, &r);
    record_encode_ack(&b, 42, (uint32_t[]){1}, 1);
    rd = (struct record_reader){(unsigned char *)b.data, b.len, 0, 0};
    assert_int_equal(record_next(&rd, &rec, &bad), RECORD_GOOD);
    assert_int_equal(record_decode_push(&rec, &p), 0);
    assert_int_equal(p.id, 42);
    assert_int_equal(p.push_id_len, 11);
    assert_memory_equal(p.push_id, "sample-id_1", 11);
    assert_null(p.idem_key);
    assert_null(p.fingerprint);
    assert_int_equal(p.kind, TARGET_TOKEN);
    assert_int_equal(p.ntargets, 2);
    assert_memory_equal(p.msg.payload, "{\"k\":1}", 7);
    assert_memory_equal(p.msg.opt[ROPT_PRIORITY], "\"high\"", 6);
    assert_null(p.msg.opt[ROPT_ANDROID]);
    assert_int_equal(record_push_target(&p, &pos, &index, &name, &len), 0);
    assert_int_equal(index, 0);
    assert_memory_equal(name, "tok-a", len);
    assert_int_equal(record_push_target(&p, &pos, &index, &name, &len), 0);
    assert_int_equal(index, 1);
    assert_int_equal(len, 6);
    assert_int_equal(record_push_target(&p, &pos, &index, &name, &len), -1);
    assert_int_equal(record_next(&rd, &rec, &bad), RECORD_GOOD);
    assert_int_equal(record_decode_ack(&rec, &id, &n, &idx), 0);
    assert_int_equal(id, 42);
    assert_int_equal(n, 1);
    assert_int_equal(record_u32(idx), 1);
    assert_int_equal(record_next(&rd, &rec, &bad), RECORD_END);
    buf_free(&b);
}

/* What the queue in Redis knows of an entry too large to read: its length
 * and its first 16 bytes, which tell a push another instance may serve
 * from garbage. */
static void a_push_is_told_by_its_head(void **state)
{
    char *targets[] = {"t1", "t2"};
    struct send_request r = sample(targets, 2);
    struct buf b = BUF_INIT, ack = BUF_INIT;
    const unsigned char *h;

    (void)state;
    record_encode_push(&b, 7, &r);
    h = (const unsigned char *)b.data;
    assert_true(record_head_is_push(h, RECORD_HEADER, b.len));
    assert_true(record_head_is_push(h, b.len, b.len));
    assert_false(record_head_is_push(h, RECORD_HEADER - 1, b.len)); /* too little of it */
    assert_false(record_head_is_push(h, RECORD_HEADER, b.len + 1)); /* its length says otherwise */
    assert_false(record_head_is_push(h, RECORD_HEADER, b.len - 1));
    assert_false(record_head_is_push(h, RECORD_HEADER, 3));
    assert_false(record_head_is_push((const unsigned char *)"xxxxxxxxxxxxxxxxxxxx", RECORD_HEADER, 30000));
    record_encode_ack(&ack, 7, (uint32_t[]){1}, 1);
    assert_false(record_head_is_push((const unsigned char *)ack.data, RECORD_HEADER, ack.len)); /* not a push */
    buf_free(&b);
    buf_free(&ack);
}

static void torn_tail_is_cut_off(void **state)
{
    char *targets[] = {"t"};
    struct send_request r = sample(targets, 1);
    struct buf b = BUF_INIT;
    struct record_reader rd;
    struct record rec;
    size_t first, bad;

    (void)state;
    record_encode_push(&b, 1, &r);
    first = b.len;
    record_encode_push(&b, 2, &r);
    /* A crash in the middle of the second write. */
    rd = (struct record_reader){(unsigned char *)b.data, b.len - 5, 0, 0};
    assert_int_equal(record_next(&rd, &rec, &bad), RECORD_GOOD);
    assert_int_equal(record_next(&rd, &rec, &bad), RECORD_TORN);
    assert_int_equal(bad, first);
    assert_int_equal(record_next(&rd, &rec, &bad), RECORD_END);
    /* Only part of a header. */
    rd = (struct record_reader){(unsigned char *)b.data, first + 7, 0, 0};
    assert_int_equal(record_next(&rd, &rec, &bad), RECORD_GOOD);
    assert_int_equal(record_next(&rd, &rec, &bad), RECORD_TORN);
    buf_free(&b);
}

static void zero_tail_ends_the_records(void **state)
{
    char *targets[] = {"t"};
    struct send_request r = sample(targets, 1);
    struct buf b = BUF_INIT;
    struct record_reader rd;
    struct record rec;
    struct record_push p;
    size_t first, second, bad;
    char zeros[4096] = {0};

    (void)state;
    record_encode_push(&b, 1, &r);
    first = b.len;
    record_encode_push(&b, 2, &r);
    second = b.len;
    buf_add(&b, zeros, sizeof(zeros)); /* the space a writer keeps ahead */
    rd = (struct record_reader){(unsigned char *)b.data, b.len, 0, 0};
    assert_int_equal(record_next(&rd, &rec, &bad), RECORD_GOOD);
    assert_int_equal(record_next(&rd, &rec, &bad), RECORD_GOOD);
    assert_int_equal(record_decode_push(&rec, &p), 0);
    assert_int_equal(p.id, 2);
    assert_int_equal(record_next(&rd, &rec, &bad), RECORD_END);
    /* A crash in the middle of the second write, into the zeros: still a torn tail. */
    memset(b.data + second - 5, 0, 5);
    rd = (struct record_reader){(unsigned char *)b.data, b.len, 0, 0};
    assert_int_equal(record_next(&rd, &rec, &bad), RECORD_GOOD);
    assert_int_equal(record_next(&rd, &rec, &bad), RECORD_TORN);
    assert_int_equal(bad, first);
    /* Zeros where a record should be, with a good record after them: a corrupt record, skipped. */
    b.len = second;
    memset(b.data + first, 0, second - first);
    record_encode_push(&b, 3, &r);
    rd = (struct record_reader){(unsigned char *)b.data, b.len, 0, 0};
    assert_int_equal(record_next(&rd, &rec, &bad), RECORD_GOOD);
    assert_int_equal(record_next(&rd, &rec, &bad), RECORD_CORRUPT);
    assert_int_equal(bad, first);
    assert_int_equal(record_next(&rd, &rec, &bad), RECORD_GOOD);
    assert_int_equal(record_decode_push(&rec, &p), 0);
    assert_int_equal(p.id, 3);
    buf_free(&b);
}

static void corrupt_middle_record_is_skipped(void **state)
{
    char *targets[] = {"t"};
    struct send_request r = sample(targets, 1);
    struct buf b = BUF_INIT;
    struct record_reader rd;
    struct record rec;
    struct record_push p;
    size_t second, bad;

    (void)state;
    record_encode_push(&b, 1, &r);
    second = b.len;
    record_encode_push(&b, 2, &r);
    record_encode_push(&b, 3, &r);
    b.data[second + RECORD_HEADER + 3] ^= 0x40; /* a flipped bit in the second payload */
    rd = (struct record_reader){(unsigned char *)b.data, b.len, 0, 0};
    assert_int_equal(record_next(&rd, &rec, &bad), RECORD_GOOD);
    assert_int_equal(record_next(&rd, &rec, &bad), RECORD_CORRUPT);
    assert_int_equal(bad, second);
    assert_int_equal(record_next(&rd, &rec, &bad), RECORD_GOOD);
    assert_int_equal(record_decode_push(&rec, &p), 0);
    assert_int_equal(p.id, 3);
    assert_int_equal(record_next(&rd, &rec, &bad), RECORD_END);
    buf_free(&b);
}

static void garbage_length_does_not_read_past_the_end(void **state)
{
    char *targets[] = {"t"};
    struct send_request r = sample(targets, 1);
    struct buf b = BUF_INIT;
    struct record_reader rd;
    struct record rec;
    size_t bad;

    (void)state;
    record_encode_push(&b, 1, &r);
    b.data[9] = 0x7f; /* length now far beyond the data */
    rd = (struct record_reader){(unsigned char *)b.data, b.len, 0, 0};
    assert_int_equal(record_next(&rd, &rec, &bad), RECORD_TORN);
    assert_int_equal(bad, 0);
    buf_free(&b);
}

/* A file of fake headers, one every 16 bytes, each claiming the rest of the
 * file with a wrong checksum: reading it once cost the square of its size.
 * Now the checksums spent on bad headers are bounded by a few passes over
 * the file, and the reader calls the rest torn. */
static void fake_headers_cost_a_bounded_search(void **state)
{
    size_t len = 1u << 20;
    unsigned char *d = calloc(1, len);
    struct record_reader rd;
    struct record rec;
    size_t bad;
    enum record_read st;
    int steps = 0;

    (void)state;
    assert_non_null(d);
    for (size_t at = 0; at + RECORD_HEADER <= len; at += 16) {
        uint32_t n = (uint32_t)(len - at - RECORD_HEADER);
        memcpy(d + at, "FCSP\1\0\0\0", 8);
        d[at + 8] = (unsigned char)n;
        d[at + 9] = (unsigned char)(n >> 8);
        d[at + 10] = (unsigned char)(n >> 16);
        d[at + 11] = (unsigned char)(n >> 24);
        memset(d + at + 12, 0xee, 4); /* never the checksum */
    }
    rd = (struct record_reader){d, len, 0, 0};
    while ((st = record_next(&rd, &rec, &bad)) == RECORD_CORRUPT || st == RECORD_GOOD)
        assert_true(++steps < 1000);
    assert_int_equal(st, RECORD_TORN);
    assert_true(rd.searched <= 3 * len + (1u << 20));
    free(d);
}

/* ---- golden bytes ----
 *
 * Each record below was laid out from the format in docs/ARCHITECTURE.md
 * ("The spool"), field by field as the comments say, never by the code
 * under test: little-endian integers, texts as a u32 length (0xffffffff
 * when absent) and their bytes, the option texts in the documented order.
 * Each CRC-32C constant was computed once, outside this file, with a plain
 * bitwise loop over header bytes 4 to 11 followed by the payload (reflected
 * polynomial 0x82F63B78, initial value and final XOR 0xffffffff; the same
 * loop gives 0xE3069283 for "123456789"), in Python:
 *
 *     crc = 0xFFFFFFFF
 *     for b in record[4:12] + record[16:]:
 *         crc ^= b
 *         for _ in range(8):
 *             crc = (crc >> 1) ^ 0x82F63B78 if crc & 1 else crc >> 1
 *     crc ^= 0xFFFFFFFF
 *
 * and written out as header bytes 12 to 15.  Records on disk outlive the
 * version that wrote them: a change to the encoding breaks these tests on
 * purpose, and then needs a new record type, not new constants here.  This
 * version writes PUSH4 only; the older types are here as earlier versions
 * wrote them, and must still read. */

/* PUSH4: an FCM push of the default app, as this version writes every push:
 * its id, no idempotency key, no fingerprint, two tokens. */
static const unsigned char golden_push4[] = {
    0x46, 0x43, 0x53, 0x50,                                                 /* "FCSP" */
    0x05, 0x00, 0x00, 0x00,                                                 /* type 5, padding */
    0x85, 0x00, 0x00, 0x00,                                                 /* payload length 133 */
    0x91, 0x7c, 0x53, 0x3a,                                                 /* CRC-32C 0x3a537c91 */
    0x2b, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,                         /* id 0x2b */
    0x00, 0x0d,                                                             /* upstream 0 (FCM), 13 option texts */
    0x00,                                                                   /* app length 0: the default app */
    0x16,                                                                   /* push id length 22 */
    0x41, 0x41, 0x45, 0x43, 0x41, 0x77, 0x51, 0x46, 0x42, 0x67, 0x63, 0x49, /* "AAECAwQFBgcI" */
    0x43, 0x51, 0x6f, 0x4c, 0x44, 0x41, 0x30, 0x4f, 0x44, 0x77,             /* "CQoLDA0ODw" */
    0x00,                                                                   /* idempotency key length 0: none */
    0x00,                                                                   /* fingerprint length 0: none */
    0x00,                                                                   /* kind 0 (token) */
    0x07, 0x00, 0x00, 0x00,                                                 /* payload: length 7 */
    0x7b, 0x22, 0x6b, 0x22, 0x3a, 0x31, 0x7d,                               /* "{\"k\":1}" */
    0xff, 0xff, 0xff, 0xff,                                                 /* notification: absent */
    0xff, 0xff, 0xff, 0xff,                                                 /* android: absent */
    0xff, 0xff, 0xff, 0xff,                                                 /* apns: absent */
    0xff, 0xff, 0xff, 0xff,                                                 /* webpush: absent */
    0xff, 0xff, 0xff, 0xff,                                                 /* fcm_options: absent */
    0xff, 0xff, 0xff, 0xff,                                                 /* collapse_key: absent */
    0x06, 0x00, 0x00, 0x00,                                                 /* priority: length 6 */
    0x22, 0x68, 0x69, 0x67, 0x68, 0x22,                                     /* "\"high\"" */
    0xff, 0xff, 0xff, 0xff,                                                 /* time_to_live: absent */
    0xff, 0xff, 0xff, 0xff,                                                 /* apns-topic: absent */
    0xff, 0xff, 0xff, 0xff,                                                 /* apns-push-type: absent */
    0xff, 0xff, 0xff, 0xff,                                                 /* apns-priority: absent */
    0xff, 0xff, 0xff, 0xff,                                                 /* apns-expiration: absent */
    0xff, 0xff, 0xff, 0xff,                                                 /* apns-collapse-id: absent */
    0x02, 0x00, 0x00, 0x00,                                                 /* 2 targets */
    0x00, 0x00, 0x00, 0x00, 0x05, 0x00,                                     /* index 0, length 5 */
    0x74, 0x6f, 0x6b, 0x2d, 0x61,                                           /* "tok-a" */
    0x01, 0x00, 0x00, 0x00, 0x06, 0x00,                                     /* index 1, length 6 */
    0x74, 0x6f, 0x6b, 0x2d, 0x62, 0x62,                                     /* "tok-bb" */
};

/* PUSH4: an APNs push for the app "beta" with every field a PUSH4 has: an
 * id of another length (any fcmd's), an idempotency key and a fingerprint. */
static const unsigned char golden_push4_full[] = {
    0x46, 0x43, 0x53, 0x50,                                                 /* "FCSP" */
    0x05, 0x00, 0x00, 0x00,                                                 /* type 5, padding */
    0xb1, 0x00, 0x00, 0x00,                                                 /* payload length 177 */
    0x9c, 0x32, 0x6b, 0x9a,                                                 /* CRC-32C 0x9a6b329c */
    0x09, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,                         /* id 0x9 */
    0x01, 0x0d,                                                             /* upstream 1 (APNs), 13 option texts */
    0x04,                                                                   /* app length 4 */
    0x62, 0x65, 0x74, 0x61,                                                 /* "beta" */
    0x05,                                                                   /* push id length 5 */
    0x78, 0x5f, 0x79, 0x2d, 0x5a,                                           /* "x_y-Z" */
    0x08,                                                                   /* idempotency key length 8 */
    0x6f, 0x72, 0x64, 0x65, 0x72, 0x2d, 0x31, 0x37,                         /* "order-17" */
    0x20,                                                                   /* fingerprint length 32 */
    0xa0, 0xa1, 0xa2, 0xa3, 0xa4, 0xa5, 0xa6, 0xa7,                         /* fingerprint bytes 0xa0 ... */
    0xa8, 0xa9, 0xaa, 0xab, 0xac, 0xad, 0xae, 0xaf,
    0xb0, 0xb1, 0xb2, 0xb3, 0xb4, 0xb5, 0xb6, 0xb7,
    0xb8, 0xb9, 0xba, 0xbb, 0xbc, 0xbd, 0xbe, 0xbf,                         /* ... to 0xbf */
    0x00,                                                                   /* kind 0 (token) */
    0x0a, 0x00, 0x00, 0x00,                                                 /* payload: length 10 */
    0x7b, 0x22, 0x61, 0x70, 0x73, 0x22, 0x3a, 0x7b, 0x7d, 0x7d,             /* "{\"aps\":{}}" */
    0xff, 0xff, 0xff, 0xff,                                                 /* notification: absent */
    0xff, 0xff, 0xff, 0xff,                                                 /* android: absent */
    0xff, 0xff, 0xff, 0xff,                                                 /* apns: absent */
    0xff, 0xff, 0xff, 0xff,                                                 /* webpush: absent */
    0xff, 0xff, 0xff, 0xff,                                                 /* fcm_options: absent */
    0xff, 0xff, 0xff, 0xff,                                                 /* collapse_key: absent */
    0xff, 0xff, 0xff, 0xff,                                                 /* priority: absent */
    0xff, 0xff, 0xff, 0xff,                                                 /* time_to_live: absent */
    0x10, 0x00, 0x00, 0x00,                                                 /* apns-topic: length 16 */
    0x63, 0x6f, 0x6d, 0x2e, 0x65, 0x78, 0x61, 0x6d, 0x70, 0x6c, 0x65, 0x2e, /* "com.example." */
    0x62, 0x65, 0x74, 0x61,                                                 /* "beta" */
    0x05, 0x00, 0x00, 0x00,                                                 /* apns-push-type: length 5 */
    0x61, 0x6c, 0x65, 0x72, 0x74,                                           /* "alert" */
    0xff, 0xff, 0xff, 0xff,                                                 /* apns-priority: absent */
    0xff, 0xff, 0xff, 0xff,                                                 /* apns-expiration: absent */
    0xff, 0xff, 0xff, 0xff,                                                 /* apns-collapse-id: absent */
    0x01, 0x00, 0x00, 0x00,                                                 /* 1 target */
    0x00, 0x00, 0x00, 0x00, 0x10, 0x00,                                     /* index 0, length 16 */
    0x66, 0x66, 0x65, 0x65, 0x64, 0x64, 0x63, 0x63, 0x62, 0x62, 0x61, 0x61, /* "ffeeddccbbaa" */
    0x39, 0x39, 0x38, 0x38,                                                 /* "9988" */
};

/* PUSH2: an APNs push of the default app, with all five APNs fields. */
static const unsigned char golden_push2[] = {
    0x46, 0x43, 0x53, 0x50,                                                 /* "FCSP" */
    0x03, 0x00, 0x00, 0x00,                                                 /* type 3, padding */
    0xab, 0x00, 0x00, 0x00,                                                 /* payload length 171 */
    0x9b, 0xa4, 0x05, 0xd4,                                                 /* CRC-32C 0xd405a49b */
    0x08, 0x07, 0x06, 0x05, 0x04, 0x03, 0x02, 0x01,                         /* id 0x102030405060708 */
    0x01, 0x0d,                                                             /* upstream 1 (APNs), 13 option texts */
    0x00,                                                                   /* kind 0 (token) */
    0x16, 0x00, 0x00, 0x00,                                                 /* payload: length 22 */
    0x7b, 0x22, 0x61, 0x70, 0x73, 0x22, 0x3a, 0x7b, 0x22, 0x61, 0x6c, 0x65, /* "{\"aps\":{\"ale" */
    0x72, 0x74, 0x22, 0x3a, 0x22, 0x68, 0x69, 0x22, 0x7d, 0x7d,             /* "rt\":\"hi\"}}" */
    0xff, 0xff, 0xff, 0xff,                                                 /* notification: absent */
    0xff, 0xff, 0xff, 0xff,                                                 /* android: absent */
    0xff, 0xff, 0xff, 0xff,                                                 /* apns: absent */
    0xff, 0xff, 0xff, 0xff,                                                 /* webpush: absent */
    0xff, 0xff, 0xff, 0xff,                                                 /* fcm_options: absent */
    0xff, 0xff, 0xff, 0xff,                                                 /* collapse_key: absent */
    0xff, 0xff, 0xff, 0xff,                                                 /* priority: absent */
    0xff, 0xff, 0xff, 0xff,                                                 /* time_to_live: absent */
    0x0f, 0x00, 0x00, 0x00,                                                 /* apns-topic: length 15 */
    0x63, 0x6f, 0x6d, 0x2e, 0x65, 0x78, 0x61, 0x6d, 0x70, 0x6c, 0x65, 0x2e, /* "com.example." */
    0x61, 0x70, 0x70,                                                       /* "app" */
    0x05, 0x00, 0x00, 0x00,                                                 /* apns-push-type: length 5 */
    0x61, 0x6c, 0x65, 0x72, 0x74,                                           /* "alert" */
    0x02, 0x00, 0x00, 0x00,                                                 /* apns-priority: length 2 */
    0x31, 0x30,                                                             /* "10" */
    0x0a, 0x00, 0x00, 0x00,                                                 /* apns-expiration: length 10 */
    0x31, 0x37, 0x36, 0x37, 0x32, 0x32, 0x35, 0x36, 0x30, 0x30,             /* "1767225600" */
    0x02, 0x00, 0x00, 0x00,                                                 /* apns-collapse-id: length 2 */
    0x63, 0x31,                                                             /* "c1" */
    0x02, 0x00, 0x00, 0x00,                                                 /* 2 targets */
    0x00, 0x00, 0x00, 0x00, 0x10, 0x00,                                     /* index 0, length 16 */
    0x61, 0x31, 0x62, 0x32, 0x63, 0x33, 0x64, 0x34, 0x65, 0x35, 0x66, 0x36, /* "a1b2c3d4e5f6" */
    0x30, 0x37, 0x31, 0x38,                                                 /* "0718" */
    0x01, 0x00, 0x00, 0x00, 0x10, 0x00,                                     /* index 1, length 16 */
    0x30, 0x66, 0x30, 0x65, 0x30, 0x64, 0x30, 0x63, 0x30, 0x62, 0x30, 0x61, /* "0f0e0d0c0b0a" */
    0x30, 0x39, 0x30, 0x38,                                                 /* "0908" */
};

/* PUSH3: an FCM push with options for the app "alpha-1", three tokens. */
static const unsigned char golden_push3[] = {
    0x46, 0x43, 0x53, 0x50,                                                 /* "FCSP" */
    0x04, 0x00, 0x00, 0x00,                                                 /* type 4, padding */
    0x93, 0x00, 0x00, 0x00,                                                 /* payload length 147 */
    0xff, 0x62, 0x1f, 0xbe,                                                 /* CRC-32C 0xbe1f62ff */
    0x2a, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,                         /* id 0x2a */
    0x00, 0x0d,                                                             /* upstream 0 (FCM), 13 option texts */
    0x07,                                                                   /* app length 7 */
    0x61, 0x6c, 0x70, 0x68, 0x61, 0x2d, 0x31,                               /* "alpha-1" */
    0x00,                                                                   /* kind 0 (token) */
    0x07, 0x00, 0x00, 0x00,                                                 /* payload: length 7 */
    0x7b, 0x22, 0x6b, 0x22, 0x3a, 0x31, 0x7d,                               /* "{\"k\":1}" */
    0x0d, 0x00, 0x00, 0x00,                                                 /* notification: length 13 */
    0x7b, 0x22, 0x74, 0x69, 0x74, 0x6c, 0x65, 0x22, 0x3a, 0x22, 0x74, 0x22, /* "{\"title\":\"t\"" */
    0x7d,                                                                   /* "}" */
    0xff, 0xff, 0xff, 0xff,                                                 /* android: absent */
    0xff, 0xff, 0xff, 0xff,                                                 /* apns: absent */
    0xff, 0xff, 0xff, 0xff,                                                 /* webpush: absent */
    0xff, 0xff, 0xff, 0xff,                                                 /* fcm_options: absent */
    0x04, 0x00, 0x00, 0x00,                                                 /* collapse_key: length 4 */
    0x22, 0x63, 0x6b, 0x22,                                                 /* "\"ck\"" */
    0x06, 0x00, 0x00, 0x00,                                                 /* priority: length 6 */
    0x22, 0x68, 0x69, 0x67, 0x68, 0x22,                                     /* "\"high\"" */
    0x02, 0x00, 0x00, 0x00,                                                 /* time_to_live: length 2 */
    0x36, 0x30,                                                             /* "60" */
    0xff, 0xff, 0xff, 0xff,                                                 /* apns-topic: absent */
    0xff, 0xff, 0xff, 0xff,                                                 /* apns-push-type: absent */
    0xff, 0xff, 0xff, 0xff,                                                 /* apns-priority: absent */
    0xff, 0xff, 0xff, 0xff,                                                 /* apns-expiration: absent */
    0xff, 0xff, 0xff, 0xff,                                                 /* apns-collapse-id: absent */
    0x03, 0x00, 0x00, 0x00,                                                 /* 3 targets */
    0x00, 0x00, 0x00, 0x00, 0x05, 0x00,                                     /* index 0, length 5 */
    0x74, 0x6f, 0x6b, 0x2d, 0x61,                                           /* "tok-a" */
    0x01, 0x00, 0x00, 0x00, 0x06, 0x00,                                     /* index 1, length 6 */
    0x74, 0x6f, 0x6b, 0x2d, 0x62, 0x62,                                     /* "tok-bb" */
    0x02, 0x00, 0x00, 0x00, 0x07, 0x00,                                     /* index 2, length 7 */
    0x74, 0x6f, 0x6b, 0x2d, 0x63, 0x63, 0x63,                               /* "tok-ccc" */
};

/* PUSH3: an APNs push for the app "beta", with some APNs fields. */
static const unsigned char golden_push3_apns[] = {
    0x46, 0x43, 0x53, 0x50,                                                 /* "FCSP" */
    0x04, 0x00, 0x00, 0x00,                                                 /* type 4, padding */
    0x9c, 0x00, 0x00, 0x00,                                                 /* payload length 156 */
    0x2c, 0x85, 0xa6, 0xc0,                                                 /* CRC-32C 0xc0a6852c */
    0x07, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,                         /* id 0x7 */
    0x01, 0x0d,                                                             /* upstream 1 (APNs), 13 option texts */
    0x04,                                                                   /* app length 4 */
    0x62, 0x65, 0x74, 0x61,                                                 /* "beta" */
    0x00,                                                                   /* kind 0 (token) */
    0x1f, 0x00, 0x00, 0x00,                                                 /* payload: length 31 */
    0x7b, 0x22, 0x61, 0x70, 0x73, 0x22, 0x3a, 0x7b, 0x22, 0x63, 0x6f, 0x6e, /* "{\"aps\":{\"con" */
    0x74, 0x65, 0x6e, 0x74, 0x2d, 0x61, 0x76, 0x61, 0x69, 0x6c, 0x61, 0x62, /* "tent-availab" */
    0x6c, 0x65, 0x22, 0x3a, 0x31, 0x7d, 0x7d,                               /* "le\":1}}" */
    0xff, 0xff, 0xff, 0xff,                                                 /* notification: absent */
    0xff, 0xff, 0xff, 0xff,                                                 /* android: absent */
    0xff, 0xff, 0xff, 0xff,                                                 /* apns: absent */
    0xff, 0xff, 0xff, 0xff,                                                 /* webpush: absent */
    0xff, 0xff, 0xff, 0xff,                                                 /* fcm_options: absent */
    0xff, 0xff, 0xff, 0xff,                                                 /* collapse_key: absent */
    0xff, 0xff, 0xff, 0xff,                                                 /* priority: absent */
    0xff, 0xff, 0xff, 0xff,                                                 /* time_to_live: absent */
    0x10, 0x00, 0x00, 0x00,                                                 /* apns-topic: length 16 */
    0x63, 0x6f, 0x6d, 0x2e, 0x65, 0x78, 0x61, 0x6d, 0x70, 0x6c, 0x65, 0x2e, /* "com.example." */
    0x62, 0x65, 0x74, 0x61,                                                 /* "beta" */
    0x0a, 0x00, 0x00, 0x00,                                                 /* apns-push-type: length 10 */
    0x62, 0x61, 0x63, 0x6b, 0x67, 0x72, 0x6f, 0x75, 0x6e, 0x64,             /* "background" */
    0x01, 0x00, 0x00, 0x00,                                                 /* apns-priority: length 1 */
    0x35,                                                                   /* "5" */
    0xff, 0xff, 0xff, 0xff,                                                 /* apns-expiration: absent */
    0xff, 0xff, 0xff, 0xff,                                                 /* apns-collapse-id: absent */
    0x01, 0x00, 0x00, 0x00,                                                 /* 1 target */
    0x00, 0x00, 0x00, 0x00, 0x10, 0x00,                                     /* index 0, length 16 */
    0x66, 0x66, 0x65, 0x65, 0x64, 0x64, 0x63, 0x63, 0x62, 0x62, 0x61, 0x61, /* "ffeeddccbbaa" */
    0x39, 0x39, 0x38, 0x38,                                                 /* "9988" */
};

/* PUSH: an FCM push of the default app to a topic, the format of the
 * versions before APNs, which FCM pushes of the default app still use. */
static const unsigned char golden_push1[] = {
    0x46, 0x43, 0x53, 0x50,                         /* "FCSP" */
    0x01, 0x00, 0x00, 0x00,                         /* type 1, padding */
    0x48, 0x00, 0x00, 0x00,                         /* payload length 72 */
    0xc0, 0x63, 0x2a, 0x11,                         /* CRC-32C 0x112a63c0 */
    0x07, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, /* id 0x7 */
    0x01,                                           /* kind 1 (topic) */
    0x07, 0x00, 0x00, 0x00,                         /* payload: length 7 */
    0x7b, 0x22, 0x6b, 0x22, 0x3a, 0x31, 0x7d,       /* "{\"k\":1}" */
    0xff, 0xff, 0xff, 0xff,                         /* notification: absent */
    0xff, 0xff, 0xff, 0xff,                         /* android: absent */
    0xff, 0xff, 0xff, 0xff,                         /* apns: absent */
    0xff, 0xff, 0xff, 0xff,                         /* webpush: absent */
    0xff, 0xff, 0xff, 0xff,                         /* fcm_options: absent */
    0xff, 0xff, 0xff, 0xff,                         /* collapse_key: absent */
    0x06, 0x00, 0x00, 0x00,                         /* priority: length 6 */
    0x22, 0x68, 0x69, 0x67, 0x68, 0x22,             /* "\"high\"" */
    0xff, 0xff, 0xff, 0xff,                         /* time_to_live: absent */
    0x01, 0x00, 0x00, 0x00,                         /* 1 target */
    0x00, 0x00, 0x00, 0x00, 0x04, 0x00,             /* index 0, length 4 */
    0x6e, 0x65, 0x77, 0x73,                         /* "news" */
};

/* ACK: targets 0 and 2 of push 42 reached a final outcome. */
static const unsigned char golden_ack[] = {
    0x46, 0x43, 0x53, 0x50,                         /* "FCSP" */
    0x02, 0x00, 0x00, 0x00,                         /* type 2, padding */
    0x14, 0x00, 0x00, 0x00,                         /* payload length 20 */
    0x55, 0x2a, 0xa5, 0x29,                         /* CRC-32C 0x29a52a55 */
    0x2a, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, /* id 0x2a */
    0x02, 0x00, 0x00, 0x00,                         /* 2 indexes */
    0x00, 0x00, 0x00, 0x00,                         /* index 0 */
    0x02, 0x00, 0x00, 0x00,                         /* index 2 */
};

static void set_opt(struct send_request *r, enum request_opt o, const char *text)
{
    r->msg.opt[o] = text;
    r->msg.opt_len[o] = strlen(text);
}

/* The pushes the golden records hold, as intake would hand them over. */
static struct send_request golden_request(const unsigned char *golden)
{
    static char *apns_tokens[] = {"a1b2c3d4e5f60718", "0f0e0d0c0b0a0908"};
    static char *fcm_tokens[] = {"tok-a", "tok-bb", "tok-ccc"};
    static char *beta_tokens[] = {"ffeeddccbbaa9988"};
    static char *topic[] = {"news"};
    struct send_request r;

    static const unsigned char fingerprint[32] = {0xa0, 0xa1, 0xa2, 0xa3, 0xa4, 0xa5, 0xa6, 0xa7, 0xa8, 0xa9, 0xaa,
                                                  0xab, 0xac, 0xad, 0xae, 0xaf, 0xb0, 0xb1, 0xb2, 0xb3, 0xb4, 0xb5,
                                                  0xb6, 0xb7, 0xb8, 0xb9, 0xba, 0xbb, 0xbc, 0xbd, 0xbe, 0xbf};
    static char *push4_tokens[] = {"tok-a", "tok-bb"};

    memset(&r, 0, sizeof(r));
    r.kind = TARGET_TOKEN;
    if (golden == golden_push4) {
        memcpy(r.id, "AAECAwQFBgcICQoLDA0ODw", 23);
        r.id_len = 22;
        r.targets = push4_tokens, r.ntargets = 2;
        r.msg.payload = "{\"k\":1}", r.msg.payload_len = 7;
        set_opt(&r, ROPT_PRIORITY, "\"high\"");
    } else if (golden == golden_push4_full) {
        r.upstream = UPSTREAM_APNS;
        r.app = "beta", r.app_len = 4;
        memcpy(r.id, "x_y-Z", 6);
        r.id_len = 5;
        r.idem_key = "order-17", r.idem_key_len = 8;
        r.fingerprint = fingerprint, r.fingerprint_len = 32;
        r.targets = beta_tokens, r.ntargets = 1;
        r.msg.payload = "{\"aps\":{}}", r.msg.payload_len = 10;
        set_opt(&r, ROPT_APNS_TOPIC, "com.example.beta");
        set_opt(&r, ROPT_APNS_PUSH_TYPE, "alert");
    } else if (golden == golden_push2) {
        r.upstream = UPSTREAM_APNS;
        r.targets = apns_tokens, r.ntargets = 2;
        r.msg.payload = "{\"aps\":{\"alert\":\"hi\"}}", r.msg.payload_len = 22;
        set_opt(&r, ROPT_APNS_TOPIC, "com.example.app");
        set_opt(&r, ROPT_APNS_PUSH_TYPE, "alert");
        set_opt(&r, ROPT_APNS_PRIORITY, "10");
        set_opt(&r, ROPT_APNS_EXPIRATION, "1767225600");
        set_opt(&r, ROPT_APNS_COLLAPSE_ID, "c1");
    } else if (golden == golden_push3) {
        r.app = "alpha-1", r.app_len = 7;
        r.targets = fcm_tokens, r.ntargets = 3;
        r.msg.payload = "{\"k\":1}", r.msg.payload_len = 7;
        set_opt(&r, ROPT_NOTIFICATION, "{\"title\":\"t\"}");
        set_opt(&r, ROPT_COLLAPSE_KEY, "\"ck\"");
        set_opt(&r, ROPT_PRIORITY, "\"high\"");
        set_opt(&r, ROPT_TIME_TO_LIVE, "60");
    } else if (golden == golden_push3_apns) {
        r.upstream = UPSTREAM_APNS;
        r.app = "beta", r.app_len = 4;
        r.targets = beta_tokens, r.ntargets = 1;
        r.msg.payload = "{\"aps\":{\"content-available\":1}}", r.msg.payload_len = 31;
        set_opt(&r, ROPT_APNS_TOPIC, "com.example.beta");
        set_opt(&r, ROPT_APNS_PUSH_TYPE, "background");
        set_opt(&r, ROPT_APNS_PRIORITY, "5");
    } else {
        r.kind = TARGET_TOPIC;
        r.targets = topic, r.ntargets = 1;
        r.msg.payload = "{\"k\":1}", r.msg.payload_len = 7;
        set_opt(&r, ROPT_PRIORITY, "\"high\"");
    }
    return r;
}

struct golden {
    const unsigned char *bytes;
    size_t len;
    enum record_type type;
    uint64_t id;
    int written; /* this version writes it (the others it only reads) */
};

static const struct golden goldens[] = {
    {golden_push4, sizeof(golden_push4), RECORD_PUSH4, 0x2b, 1},
    {golden_push4_full, sizeof(golden_push4_full), RECORD_PUSH4, 9, 1},
    {golden_push2, sizeof(golden_push2), RECORD_PUSH2, 0x0102030405060708u, 0},
    {golden_push3, sizeof(golden_push3), RECORD_PUSH3, 42, 0},
    {golden_push3_apns, sizeof(golden_push3_apns), RECORD_PUSH3, 7, 0},
    {golden_push1, sizeof(golden_push1), RECORD_PUSH, 7, 0},
};

static void pushes_encode_to_the_golden_bytes(void **state)
{
    (void)state;
    for (size_t i = 0; i < sizeof(goldens) / sizeof(goldens[0]); i++) {
        struct send_request r = golden_request(goldens[i].bytes);
        struct buf b = BUF_INIT;

        if (!goldens[i].written)
            continue;
        record_encode_push(&b, goldens[i].id, &r);
        assert_false(b.failed);
        assert_int_equal(b.len, goldens[i].len);
        assert_memory_equal(b.data, goldens[i].bytes, goldens[i].len);
        buf_free(&b);
    }
}

static void an_ack_encodes_to_the_golden_bytes(void **state)
{
    struct buf b = BUF_INIT;

    (void)state;
    record_encode_ack(&b, 42, (uint32_t[]){0, 2}, 2);
    assert_int_equal(b.len, sizeof(golden_ack));
    assert_memory_equal(b.data, golden_ack, sizeof(golden_ack));
    buf_free(&b);
}

/* Checks a decoded push against the request it was made from: every field,
 * every option text present or absent, every target with its index. */
static void assert_push_is(const struct record_push *p, uint64_t id, const struct send_request *r)
{
    size_t pos = 0, len;
    uint32_t index;
    const char *name;

    assert_int_equal(p->id, id);
    assert_int_equal(p->push_id_len, r->id_len);
    if (r->id_len == 0)
        assert_null(p->push_id);
    else
        assert_memory_equal(p->push_id, r->id, r->id_len);
    assert_int_equal(p->idem_key_len, r->idem_key_len);
    if (r->idem_key == NULL)
        assert_null(p->idem_key);
    else
        assert_memory_equal(p->idem_key, r->idem_key, r->idem_key_len);
    assert_int_equal(p->fingerprint_len, r->fingerprint_len);
    if (r->fingerprint == NULL)
        assert_null(p->fingerprint);
    else
        assert_memory_equal(p->fingerprint, r->fingerprint, r->fingerprint_len);
    assert_int_equal(p->upstream, r->upstream);
    if (r->app == NULL) {
        assert_null(p->app);
    } else {
        assert_int_equal(p->app_len, r->app_len);
        assert_memory_equal(p->app, r->app, r->app_len);
    }
    assert_int_equal(p->kind, r->kind);
    assert_int_equal(p->msg.payload_len, r->msg.payload_len);
    assert_memory_equal(p->msg.payload, r->msg.payload, r->msg.payload_len);
    for (int o = 0; o < ROPT_COUNT; o++) {
        if (r->msg.opt[o] == NULL) {
            assert_null(p->msg.opt[o]);
            continue;
        }
        assert_non_null(p->msg.opt[o]);
        assert_int_equal(p->msg.opt_len[o], r->msg.opt_len[o]);
        assert_memory_equal(p->msg.opt[o], r->msg.opt[o], r->msg.opt_len[o]);
    }
    assert_int_equal(p->ntargets, r->ntargets);
    for (size_t i = 0; i < r->ntargets; i++) {
        assert_int_equal(record_push_target(p, &pos, &index, &name, &len), 0);
        assert_int_equal(index, i);
        assert_int_equal(len, strlen(r->targets[i]));
        assert_memory_equal(name, r->targets[i], len);
    }
    assert_int_equal(record_push_target(p, &pos, &index, &name, &len), -1);
}

/* A segment made of the golden records, as an older or this version wrote
 * them: each reads back as the push or acknowledgement it holds. */
static void golden_records_decode(void **state)
{
    struct buf seg = BUF_INIT;
    struct record_reader rd;
    struct record rec;
    struct record_push p;
    const unsigned char *idx;
    uint64_t id;
    uint32_t n;
    size_t bad, at = 0;

    (void)state;
    for (size_t i = 0; i < sizeof(goldens) / sizeof(goldens[0]); i++)
        buf_add(&seg, goldens[i].bytes, goldens[i].len);
    buf_add(&seg, golden_ack, sizeof(golden_ack));
    rd = (struct record_reader){(unsigned char *)seg.data, seg.len, 0, 0};
    for (size_t i = 0; i < sizeof(goldens) / sizeof(goldens[0]); i++) {
        struct send_request r = golden_request(goldens[i].bytes);

        assert_int_equal(record_next(&rd, &rec, &bad), RECORD_GOOD);
        assert_int_equal(rec.type, goldens[i].type);
        assert_int_equal(rec.offset, at);
        assert_int_equal(rec.len, goldens[i].len - RECORD_HEADER);
        assert_int_equal(record_decode_push(&rec, &p), 0);
        assert_push_is(&p, goldens[i].id, &r);
        at += goldens[i].len;
    }
    assert_int_equal(record_next(&rd, &rec, &bad), RECORD_GOOD);
    assert_int_equal(rec.type, RECORD_ACK);
    assert_int_equal(record_decode_ack(&rec, &id, &n, &idx), 0);
    assert_int_equal(id, 42);
    assert_int_equal(n, 2);
    assert_int_equal(record_u32(idx), 0);
    assert_int_equal(record_u32(idx + 4), 2);
    assert_int_equal(record_next(&rd, &rec, &bad), RECORD_END);
    buf_free(&seg);
}

/* The checksum in the golden bytes is the one the reader checks: with any
 * one of its bytes changed, the record no longer reads. */
static void golden_checksums_are_checked(void **state)
{
    unsigned char rec_bytes[sizeof(golden_push3)];
    struct record_reader rd;
    struct record rec;
    size_t bad;

    (void)state;
    for (int k = 12; k < 16; k++) {
        memcpy(rec_bytes, golden_push3, sizeof(rec_bytes));
        rec_bytes[k] ^= 0x01;
        rd = (struct record_reader){rec_bytes, sizeof(rec_bytes), 0, 0};
        assert_int_equal(record_next(&rd, &rec, &bad), RECORD_TORN);
        assert_int_equal(bad, 0);
    }
}

/* ---- record versions ---- */

/* Every push carries its id now: FCM or APNs, default app or named. */
static void every_push_is_a_push4(void **state)
{
    char *targets[] = {"tok"};
    struct send_request r = sample(targets, 1);
    struct buf b = BUF_INIT;

    (void)state;
    for (int v = 0; v < 3; v++) {
        r.upstream = v == 1 ? UPSTREAM_APNS : UPSTREAM_FCM;
        r.app = v == 2 ? "alpha" : NULL;
        r.app_len = v == 2 ? 5 : 0;
        buf_reset(&b);
        record_encode_push(&b, 1, &r);
        assert_int_equal((unsigned char)b.data[4], RECORD_PUSH4);
    }
    buf_free(&b);
}

static void apns_pushes_carry_their_upstream_and_fields(void **state)
{
    char *targets[] = {"abababababababababababababababab"};
    struct send_request r = sample(targets, 1);
    struct buf b = BUF_INIT;
    struct record_reader rd;
    struct record rec;
    struct record_push p;
    size_t bad;

    (void)state;
    r.upstream = UPSTREAM_APNS;
    r.msg.opt[ROPT_PRIORITY] = NULL;
    r.msg.opt[ROPT_APNS_TOPIC] = "com.example.app";
    r.msg.opt_len[ROPT_APNS_TOPIC] = 15;
    r.msg.opt[ROPT_APNS_COLLAPSE_ID] = "c";
    r.msg.opt_len[ROPT_APNS_COLLAPSE_ID] = 1;
    record_encode_push(&b, 9, &r);
    assert_int_equal((unsigned char)b.data[4], RECORD_PUSH4);
    rd = (struct record_reader){(unsigned char *)b.data, b.len, 0, 0};
    assert_int_equal(record_next(&rd, &rec, &bad), RECORD_GOOD);
    assert_int_equal(record_decode_push(&rec, &p), 0);
    assert_int_equal(p.upstream, UPSTREAM_APNS);
    assert_int_equal(p.id, 9);
    assert_int_equal(p.ntargets, 1);
    assert_memory_equal(p.msg.opt[ROPT_APNS_TOPIC], "com.example.app", 15);
    assert_int_equal(p.msg.opt_len[ROPT_APNS_COLLAPSE_ID], 1);
    assert_null(p.msg.opt[ROPT_APNS_PUSH_TYPE]);
    assert_null(p.msg.opt[ROPT_PRIORITY]);
    /* A later version's upstream or option count is refused, not misread. */
    ((unsigned char *)b.data)[16 + 8] = 7;
    rec.payload = (unsigned char *)b.data + 16;
    assert_int_equal(record_decode_push(&rec, &p), -1);
    ((unsigned char *)b.data)[16 + 8] = UPSTREAM_APNS;
    ((unsigned char *)b.data)[16 + 9] = ROPT_COUNT + 1;
    assert_int_equal(record_decode_push(&rec, &p), -1);
    buf_free(&b);
}

/* An entry of the queue in Redis: exactly one PUSH record, checked. */
static void one_record_is_a_request(void **state)
{
    char *targets[] = {"tok-a", "tok-bb"};
    struct send_request r = sample(targets, 2), out;
    struct buf b = BUF_INIT, two = BUF_INIT;
    uint32_t *index;

    (void)state;
    record_encode_push(&b, 0, &r);
    assert_null(spool_replay_one((unsigned char *)b.data, b.len, &out, &index));
    assert_string_equal(out.id, "sample-id_1");
    assert_int_equal(out.ntargets, 2);
    assert_string_equal(out.targets[0], "tok-a");
    assert_string_equal(out.targets[1], "tok-bb");
    assert_int_equal(out.msg.payload_len, 7);
    assert_memory_equal(out.msg.payload, "{\"k\":1}", 7);
    request_free(&out);
    free(index);
    /* Cut short, with bytes after it, two records, an ACK, a bit flipped: refused. */
    assert_non_null(spool_replay_one((unsigned char *)b.data, b.len - 1, &out, &index));
    request_free(&out);
    free(index);
    record_encode_push(&two, 0, &r);
    record_encode_push(&two, 1, &r);
    assert_non_null(spool_replay_one((unsigned char *)two.data, two.len, &out, &index));
    request_free(&out);
    free(index);
    buf_reset(&two);
    record_encode_ack(&two, 0, (uint32_t[]){0}, 1);
    assert_non_null(spool_replay_one((unsigned char *)two.data, two.len, &out, &index));
    request_free(&out);
    free(index);
    b.data[b.len - 2] ^= 1;
    assert_non_null(spool_replay_one((unsigned char *)b.data, b.len, &out, &index));
    request_free(&out);
    free(index);
    assert_non_null(spool_replay_one((const unsigned char *)"", 0, &out, &index));
    request_free(&out);
    free(index);
    buf_free(&b);
    buf_free(&two);
}

/* A push for a named app names it; the default app's name is empty, and
 * its pushes decode with no app. */
static void app_pushes_name_their_app(void **state)
{
    char *targets[] = {"tok1", "tok2"};
    struct send_request r = sample(targets, 2);
    struct buf b = BUF_INIT;
    struct record_reader rd;
    struct record rec;
    struct record_push p;
    size_t bad;

    (void)state;
    r.app = "alpha-1";
    r.app_len = 7;
    record_encode_push(&b, 5, &r);
    assert_int_equal((unsigned char)b.data[4], RECORD_PUSH4);
    rd = (struct record_reader){(unsigned char *)b.data, b.len, 0, 0};
    assert_int_equal(record_next(&rd, &rec, &bad), RECORD_GOOD);
    assert_int_equal(record_decode_push(&rec, &p), 0);
    assert_int_equal(p.id, 5);
    assert_int_equal(p.upstream, UPSTREAM_FCM);
    assert_int_equal(p.app_len, 7);
    assert_memory_equal(p.app, "alpha-1", 7);
    assert_int_equal(p.ntargets, 2);
    assert_memory_equal(p.msg.payload, r.msg.payload, r.msg.payload_len);
    /* A name no config could give, or one longer than the record, is refused. */
    ((unsigned char *)b.data)[16 + 10 + 1] = '/';
    assert_int_equal(record_decode_push(&rec, &p), -1);
    ((unsigned char *)b.data)[16 + 10 + 1] = 'a';
    ((unsigned char *)b.data)[16 + 10] = 255;
    rec.len = 16;
    assert_int_equal(record_decode_push(&rec, &p), -1);
    buf_free(&b);
    /* The default app: an empty name, no app. */
    b = (struct buf)BUF_INIT;
    r.app = NULL;
    r.app_len = 0;
    record_encode_push(&b, 6, &r);
    assert_int_equal((unsigned char)b.data[16 + 10], 0);
    rd = (struct record_reader){(unsigned char *)b.data, b.len, 0, 0};
    assert_int_equal(record_next(&rd, &rec, &bad), RECORD_GOOD);
    assert_int_equal(record_decode_push(&rec, &p), 0);
    assert_null(p.app);
    buf_free(&b);
}

/* PUSH4's fields as a crafted file or a hostile Redis could hold them:
 * each bound is checked, and nothing is read past the record. */
static void hostile_push4_fields_are_refused(void **state)
{
    unsigned char d[sizeof(golden_push4_full)];
    const size_t plen = sizeof(golden_push4_full) - RECORD_HEADER;
    unsigned char *pl = d + RECORD_HEADER;
    struct record rec = {RECORD_PUSH4, pl, plen, 0};
    struct record_push p;
    /* Offsets in golden_push4_full's payload (see its layout above). */
    enum { APP = 11, ID_LEN = 15, ID = 16, KEY_LEN = 21, KEY = 22, FP_LEN = 30, KIND = 63 };
    static const struct {
        size_t at;
        unsigned char v;
    } bad[] = {
        {APP, '/'},       /* an app name no config could give */
        {ID_LEN, 0},      /* no id */
        {ID, '.'},        /* an id outside [A-Za-z0-9_-] */
        {ID + 4, 0},      /* ... a NUL in it */
        {ID_LEN, 0xff},   /* an id longer than any, and past the end of the record */
        {KEY, ' '},       /* a key that is not visible ASCII */
        {KEY + 7, 0x7f},
        {KEY + 1, 0},
        {FP_LEN, 31},     /* a fingerprint that is not 32 bytes */
        {FP_LEN, 33},
        {FP_LEN, 0xff},
        {KEY_LEN, 0xff},  /* a key past the end of the record */
    };

    (void)state;
    memcpy(d, golden_push4_full, sizeof(golden_push4_full));
    assert_int_equal(record_decode_push(&rec, &p), 0);
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        unsigned char was = pl[bad[i].at];
        pl[bad[i].at] = bad[i].v;
        assert_int_equal(record_decode_push(&rec, &p), -1);
        pl[bad[i].at] = was;
    }
    assert_int_equal(record_decode_push(&rec, &p), 0);
    /* Cut anywhere before the kind byte: refused, never read past the cut. */
    for (size_t n = 0; n <= KIND; n++) {
        rec.len = n;
        assert_int_equal(record_decode_push(&rec, &p), -1);
    }
    rec.len = plen;
    /* An id of 64 characters is read; one of 65 is refused. */
    for (size_t n = PUSH_ID_MAX; n <= PUSH_ID_MAX + 1; n++) {
        unsigned char big[sizeof(golden_push4_full) + 64];
        size_t at = ID_LEN;
        struct record r2;
        memcpy(big, pl, ID_LEN);
        big[at++] = (unsigned char)n;
        memset(big + at, 'A', n);
        at += n;
        memcpy(big + at, pl + KEY_LEN, plen - KEY_LEN);
        r2 = (struct record){RECORD_PUSH4, big, at + plen - KEY_LEN, 0};
        assert_int_equal(record_decode_push(&r2, &p), n <= PUSH_ID_MAX ? 0 : -1);
        if (n <= PUSH_ID_MAX) {
            assert_int_equal(p.push_id_len, n);
            assert_memory_equal(p.idem_key, "order-17", 8);
        }
    }
}

/* A dead worker's segment: the push left to deliver keeps its id through
 * the replay into the adopting worker's queue, as does an entry of the
 * queue in Redis (one record) a worker claims. */
static void a_replayed_push_keeps_its_id(void **state)
{
    struct buf seg = BUF_INIT;
    struct spool_replay o;
    struct send_request r;
    struct queue q;
    struct target *t[4];
    struct push *p;
    uint32_t *index = NULL;

    (void)state;
    buf_add(&seg, golden_push4, sizeof(golden_push4));
    buf_add(&seg, golden_push4_full, sizeof(golden_push4_full));
    record_encode_ack(&seg, 0x2b, (uint32_t[]){0}, 1); /* tok-a was delivered */
    record_encode_ack(&seg, 9, (uint32_t[]){0}, 1);    /* the APNs push is done */
    assert_int_equal(spool_replay_read(&o, (unsigned char *)seg.data, seg.len, "test"), 0);
    assert_int_equal(o.n, 1);
    assert_int_equal(spool_replay_request(&o.v[0], &r, &index), 0);
    assert_int_equal(r.ntargets, 1);
    assert_string_equal(r.targets[0], "tok-bb");
    assert_int_equal(r.id_len, 22);
    assert_string_equal(r.id, "AAECAwQFBgcICQoLDA0ODw");
    queue_init(&q, 100, 1u << 20);
    assert_non_null(p = queue_accept(&q, &r));
    assert_string_equal(p->id, "AAECAwQFBgcICQoLDA0ODw");
    request_free(&r);
    free(index);
    assert_int_equal(queue_take_batch(&q, t, 4), 1);
    queue_finish(&q, t[0]);
    spool_replay_free(&o);

    /* The Redis entry: the APNs push with its key and fingerprint. */
    assert_null(spool_replay_one(golden_push4_full, sizeof(golden_push4_full), &r, &index));
    assert_string_equal(r.id, "x_y-Z");
    assert_int_equal(r.idem_key_len, 8);
    assert_memory_equal(r.idem_key, "order-17", 8);
    assert_int_equal(r.fingerprint_len, 32);
    assert_int_equal(r.fingerprint[31], 0xbf);
    assert_non_null(p = queue_accept(&q, &r));
    assert_string_equal(p->id, "x_y-Z");
    request_free(&r);
    free(index);
    assert_int_equal(queue_take_batch(&q, t, 4), 1);
    queue_finish(&q, t[0]);
    assert_int_equal(q.pending, 0);
    buf_free(&seg);
}

/* A record written before pushes had ids replays with one the adopting
 * worker makes (each replay a new one: the record is not rewritten). */
static void an_old_record_replays_with_a_new_id(void **state)
{
    struct send_request r;
    struct queue q;
    struct target *t[4];
    struct push *p, *p2;
    uint32_t *index = NULL;

    (void)state;
    queue_init(&q, 100, 1u << 20);
    for (size_t i = 0; i < sizeof(goldens) / sizeof(goldens[0]); i++) {
        if (goldens[i].written)
            continue;
        assert_null(spool_replay_one(goldens[i].bytes, goldens[i].len, &r, &index));
        assert_int_equal(r.id_len, 0);
        assert_null(r.idem_key);
        assert_null(r.fingerprint);
        assert_non_null(p = queue_accept(&q, &r));
        assert_int_equal(strlen(p->id), PUSH_ID_LEN);
        assert_true(push_id_ok(p->id, strlen(p->id)));
        assert_non_null(p2 = queue_accept(&q, &r));
        assert_string_not_equal(p->id, p2->id);
        request_free(&r);
        free(index);
        for (size_t n; (n = queue_take_batch(&q, t, 4)) > 0;)
            for (size_t k = 0; k < n; k++)
                queue_finish(&q, t[k]);
    }
    assert_int_equal(q.pending, 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(crc32c_check_value),
        cmocka_unit_test(round_trip),
        cmocka_unit_test(pushes_encode_to_the_golden_bytes),
        cmocka_unit_test(an_ack_encodes_to_the_golden_bytes),
        cmocka_unit_test(golden_records_decode),
        cmocka_unit_test(golden_checksums_are_checked),
        cmocka_unit_test(every_push_is_a_push4),
        cmocka_unit_test(hostile_push4_fields_are_refused),
        cmocka_unit_test(a_replayed_push_keeps_its_id),
        cmocka_unit_test(an_old_record_replays_with_a_new_id),
        cmocka_unit_test(apns_pushes_carry_their_upstream_and_fields),
        cmocka_unit_test(app_pushes_name_their_app),
        cmocka_unit_test(torn_tail_is_cut_off),
        cmocka_unit_test(zero_tail_ends_the_records),
        cmocka_unit_test(corrupt_middle_record_is_skipped),
        cmocka_unit_test(garbage_length_does_not_read_past_the_end),
        cmocka_unit_test(fake_headers_cost_a_bounded_search),
        cmocka_unit_test(a_push_is_told_by_its_head),
        cmocka_unit_test(one_record_is_a_request),
    };
    return cmocka_run_group_tests_name("spool_record", tests, NULL, NULL);
}
