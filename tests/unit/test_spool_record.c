/*
 * tests/unit/test_spool_record.c - spool records: CRC-32C, round trips, a
 * torn tail and a corrupt record in the middle.
 */
#include "cmocka_all.h"

#include <stdlib.h>
#include <string.h>

#include "../../child/store/crc32c.h"
#include "../../child/store/spool_record.h"
#include "../../child/store/spool_replay.h"

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
    return r;
}

static void round_trip(void **state)
{
    char *targets[] = {"tok-a", "tok-bb"};
    struct send_request r = sample(targets, 2);
    struct buf b = BUF_INIT;
    struct spool_reader rd;
    struct spool_rec rec;
    struct spool_push p;
    const unsigned char *idx;
    const char *name;
    uint32_t index, n;
    uint64_t id;
    size_t pos = 0, len, bad;

    (void)state;
    spool_encode_push(&b, 42, &r);
    spool_encode_ack(&b, 42, (uint32_t[]){1}, 1);
    rd = (struct spool_reader){(unsigned char *)b.data, b.len, 0, 0};
    assert_int_equal(spool_next(&rd, &rec, &bad), SPOOL_RECORD);
    assert_int_equal(spool_decode_push(&rec, &p), 0);
    assert_int_equal(p.id, 42);
    assert_int_equal(p.kind, TARGET_TOKEN);
    assert_int_equal(p.ntargets, 2);
    assert_memory_equal(p.msg.payload, "{\"k\":1}", 7);
    assert_memory_equal(p.msg.opt[ROPT_PRIORITY], "\"high\"", 6);
    assert_null(p.msg.opt[ROPT_ANDROID]);
    assert_int_equal(spool_push_target(&p, &pos, &index, &name, &len), 0);
    assert_int_equal(index, 0);
    assert_memory_equal(name, "tok-a", len);
    assert_int_equal(spool_push_target(&p, &pos, &index, &name, &len), 0);
    assert_int_equal(index, 1);
    assert_int_equal(len, 6);
    assert_int_equal(spool_push_target(&p, &pos, &index, &name, &len), -1);
    assert_int_equal(spool_next(&rd, &rec, &bad), SPOOL_RECORD);
    assert_int_equal(spool_decode_ack(&rec, &id, &n, &idx), 0);
    assert_int_equal(id, 42);
    assert_int_equal(n, 1);
    assert_int_equal(spool_u32(idx), 1);
    assert_int_equal(spool_next(&rd, &rec, &bad), SPOOL_END);
    buf_free(&b);
}

static void torn_tail_is_cut_off(void **state)
{
    char *targets[] = {"t"};
    struct send_request r = sample(targets, 1);
    struct buf b = BUF_INIT;
    struct spool_reader rd;
    struct spool_rec rec;
    size_t first, bad;

    (void)state;
    spool_encode_push(&b, 1, &r);
    first = b.len;
    spool_encode_push(&b, 2, &r);
    /* A crash in the middle of the second write. */
    rd = (struct spool_reader){(unsigned char *)b.data, b.len - 5, 0, 0};
    assert_int_equal(spool_next(&rd, &rec, &bad), SPOOL_RECORD);
    assert_int_equal(spool_next(&rd, &rec, &bad), SPOOL_TORN);
    assert_int_equal(bad, first);
    assert_int_equal(spool_next(&rd, &rec, &bad), SPOOL_END);
    /* Only part of a header. */
    rd = (struct spool_reader){(unsigned char *)b.data, first + 7, 0, 0};
    assert_int_equal(spool_next(&rd, &rec, &bad), SPOOL_RECORD);
    assert_int_equal(spool_next(&rd, &rec, &bad), SPOOL_TORN);
    buf_free(&b);
}

static void zero_tail_ends_the_records(void **state)
{
    char *targets[] = {"t"};
    struct send_request r = sample(targets, 1);
    struct buf b = BUF_INIT;
    struct spool_reader rd;
    struct spool_rec rec;
    struct spool_push p;
    size_t first, second, bad;
    char zeros[4096] = {0};

    (void)state;
    spool_encode_push(&b, 1, &r);
    first = b.len;
    spool_encode_push(&b, 2, &r);
    second = b.len;
    buf_add(&b, zeros, sizeof(zeros)); /* the space a writer keeps ahead */
    rd = (struct spool_reader){(unsigned char *)b.data, b.len, 0, 0};
    assert_int_equal(spool_next(&rd, &rec, &bad), SPOOL_RECORD);
    assert_int_equal(spool_next(&rd, &rec, &bad), SPOOL_RECORD);
    assert_int_equal(spool_decode_push(&rec, &p), 0);
    assert_int_equal(p.id, 2);
    assert_int_equal(spool_next(&rd, &rec, &bad), SPOOL_END);
    /* A crash in the middle of the second write, into the zeros: still a torn tail. */
    memset(b.data + second - 5, 0, 5);
    rd = (struct spool_reader){(unsigned char *)b.data, b.len, 0, 0};
    assert_int_equal(spool_next(&rd, &rec, &bad), SPOOL_RECORD);
    assert_int_equal(spool_next(&rd, &rec, &bad), SPOOL_TORN);
    assert_int_equal(bad, first);
    /* Zeros where a record should be, with a good record after them: a corrupt record, skipped. */
    b.len = second;
    memset(b.data + first, 0, second - first);
    spool_encode_push(&b, 3, &r);
    rd = (struct spool_reader){(unsigned char *)b.data, b.len, 0, 0};
    assert_int_equal(spool_next(&rd, &rec, &bad), SPOOL_RECORD);
    assert_int_equal(spool_next(&rd, &rec, &bad), SPOOL_CORRUPT);
    assert_int_equal(bad, first);
    assert_int_equal(spool_next(&rd, &rec, &bad), SPOOL_RECORD);
    assert_int_equal(spool_decode_push(&rec, &p), 0);
    assert_int_equal(p.id, 3);
    buf_free(&b);
}

static void corrupt_middle_record_is_skipped(void **state)
{
    char *targets[] = {"t"};
    struct send_request r = sample(targets, 1);
    struct buf b = BUF_INIT;
    struct spool_reader rd;
    struct spool_rec rec;
    struct spool_push p;
    size_t second, bad;

    (void)state;
    spool_encode_push(&b, 1, &r);
    second = b.len;
    spool_encode_push(&b, 2, &r);
    spool_encode_push(&b, 3, &r);
    b.data[second + SPOOL_HEADER + 3] ^= 0x40; /* a flipped bit in the second payload */
    rd = (struct spool_reader){(unsigned char *)b.data, b.len, 0, 0};
    assert_int_equal(spool_next(&rd, &rec, &bad), SPOOL_RECORD);
    assert_int_equal(spool_next(&rd, &rec, &bad), SPOOL_CORRUPT);
    assert_int_equal(bad, second);
    assert_int_equal(spool_next(&rd, &rec, &bad), SPOOL_RECORD);
    assert_int_equal(spool_decode_push(&rec, &p), 0);
    assert_int_equal(p.id, 3);
    assert_int_equal(spool_next(&rd, &rec, &bad), SPOOL_END);
    buf_free(&b);
}

static void garbage_length_does_not_read_past_the_end(void **state)
{
    char *targets[] = {"t"};
    struct send_request r = sample(targets, 1);
    struct buf b = BUF_INIT;
    struct spool_reader rd;
    struct spool_rec rec;
    size_t bad;

    (void)state;
    spool_encode_push(&b, 1, &r);
    b.data[9] = 0x7f; /* length now far beyond the data */
    rd = (struct spool_reader){(unsigned char *)b.data, b.len, 0, 0};
    assert_int_equal(spool_next(&rd, &rec, &bad), SPOOL_TORN);
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
    struct spool_reader rd;
    struct spool_rec rec;
    size_t bad;
    enum spool_read st;
    int steps = 0;

    (void)state;
    assert_non_null(d);
    for (size_t at = 0; at + SPOOL_HEADER <= len; at += 16) {
        uint32_t n = (uint32_t)(len - at - SPOOL_HEADER);
        memcpy(d + at, "FCSP\1\0\0\0", 8);
        d[at + 8] = (unsigned char)n;
        d[at + 9] = (unsigned char)(n >> 8);
        d[at + 10] = (unsigned char)(n >> 16);
        d[at + 11] = (unsigned char)(n >> 24);
        memset(d + at + 12, 0xee, 4); /* never the checksum */
    }
    rd = (struct spool_reader){d, len, 0, 0};
    while ((st = spool_next(&rd, &rec, &bad)) == SPOOL_CORRUPT || st == SPOOL_RECORD)
        assert_true(++steps < 1000);
    assert_int_equal(st, SPOOL_TORN);
    assert_true(rd.searched <= 3 * len + (1u << 20));
    free(d);
}

/* ---- record versions ---- */

static void le32(unsigned char *p, uint32_t v)
{
    p[0] = (unsigned char)v, p[1] = (unsigned char)(v >> 8), p[2] = (unsigned char)(v >> 16),
    p[3] = (unsigned char)(v >> 24);
}

/* A PUSH record laid out byte by byte as the versions before APNs wrote it. */
static size_t old_push_record(unsigned char *out)
{
    unsigned char *p = out + 16;
    size_t n = 0;

    le32(p, 7), le32(p + 4, 0), n = 8; /* id */
    p[n++] = TARGET_TOKEN;
    le32(p + n, 7), memcpy(p + n + 4, "{\"k\":1}", 7), n += 11; /* payload */
    for (int o = 0; o < 8; o++) {
        if (o == 6) { /* priority */
            le32(p + n, 6), memcpy(p + n + 4, "\"high\"", 6), n += 10;
        } else {
            le32(p + n, 0xffffffffu), n += 4;
        }
    }
    le32(p + n, 1), n += 4;                                                          /* one target */
    le32(p + n, 0), p[n + 4] = 3, p[n + 5] = 0, memcpy(p + n + 6, "old", 3), n += 9; /* index, length, name */
    memcpy(out, "FCSP", 4);
    out[4] = 1, out[5] = out[6] = out[7] = 0;
    le32(out + 8, (uint32_t)n);
    le32(out + 12, crc32c(crc32c(0, out + 4, 8), p, n));
    return 16 + n;
}

static void old_push_records_still_decode(void **state)
{
    unsigned char rec_bytes[256];
    size_t len = old_push_record(rec_bytes), bad, pos = 0, nlen;
    struct spool_reader rd = {rec_bytes, len, 0, 0};
    struct spool_rec rec;
    struct spool_push p;
    const char *name;
    uint32_t index;

    (void)state;
    assert_int_equal(spool_next(&rd, &rec, &bad), SPOOL_RECORD);
    assert_true(spool_is_push(rec.type));
    assert_int_equal(spool_decode_push(&rec, &p), 0);
    assert_int_equal(p.upstream, UPSTREAM_FCM);
    assert_int_equal(p.id, 7);
    assert_memory_equal(p.msg.payload, "{\"k\":1}", 7);
    assert_memory_equal(p.msg.opt[ROPT_PRIORITY], "\"high\"", 6);
    for (int o = ROPT_FCM_COUNT; o < ROPT_COUNT; o++)
        assert_null(p.msg.opt[o]);
    assert_int_equal(spool_push_target(&p, &pos, &index, &name, &nlen), 0);
    assert_memory_equal(name, "old", 3);
}

static void fcm_pushes_keep_the_old_format(void **state)
{
    char *targets[] = {"tok"};
    struct send_request r = sample(targets, 1);
    struct buf b = BUF_INIT;

    (void)state;
    spool_encode_push(&b, 1, &r);
    assert_int_equal((unsigned char)b.data[4], SPOOL_PUSH);
    buf_free(&b);
}

static void apns_pushes_carry_their_upstream_and_fields(void **state)
{
    char *targets[] = {"abababababababababababababababab"};
    struct send_request r = sample(targets, 1);
    struct buf b = BUF_INIT;
    struct spool_reader rd;
    struct spool_rec rec;
    struct spool_push p;
    size_t bad;

    (void)state;
    r.upstream = UPSTREAM_APNS;
    r.msg.opt[ROPT_PRIORITY] = NULL;
    r.msg.opt[ROPT_APNS_TOPIC] = "com.example.app";
    r.msg.opt_len[ROPT_APNS_TOPIC] = 15;
    r.msg.opt[ROPT_APNS_COLLAPSE_ID] = "c";
    r.msg.opt_len[ROPT_APNS_COLLAPSE_ID] = 1;
    spool_encode_push(&b, 9, &r);
    assert_int_equal((unsigned char)b.data[4], SPOOL_PUSH2);
    rd = (struct spool_reader){(unsigned char *)b.data, b.len, 0, 0};
    assert_int_equal(spool_next(&rd, &rec, &bad), SPOOL_RECORD);
    assert_int_equal(spool_decode_push(&rec, &p), 0);
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
    assert_int_equal(spool_decode_push(&rec, &p), -1);
    ((unsigned char *)b.data)[16 + 8] = UPSTREAM_APNS;
    ((unsigned char *)b.data)[16 + 9] = ROPT_COUNT + 1;
    assert_int_equal(spool_decode_push(&rec, &p), -1);
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
    spool_encode_push(&b, 0, &r);
    assert_null(spool_replay_one((unsigned char *)b.data, b.len, &out, &index));
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
    spool_encode_push(&two, 0, &r);
    spool_encode_push(&two, 1, &r);
    assert_non_null(spool_replay_one((unsigned char *)two.data, two.len, &out, &index));
    request_free(&out);
    free(index);
    buf_reset(&two);
    spool_encode_ack(&two, 0, (uint32_t[]){0}, 1);
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

/* A push for a named app is a PUSH3 that names it; the default app's
 * pushes keep the formats every version reads, and decode with no app. */
static void app_pushes_name_their_app(void **state)
{
    char *targets[] = {"tok1", "tok2"};
    struct send_request r = sample(targets, 2);
    struct buf b = BUF_INIT;
    struct spool_reader rd;
    struct spool_rec rec;
    struct spool_push p;
    size_t bad;

    (void)state;
    r.app = "alpha-1";
    r.app_len = 7;
    spool_encode_push(&b, 5, &r);
    assert_int_equal((unsigned char)b.data[4], SPOOL_PUSH3);
    rd = (struct spool_reader){(unsigned char *)b.data, b.len, 0, 0};
    assert_int_equal(spool_next(&rd, &rec, &bad), SPOOL_RECORD);
    assert_int_equal(spool_decode_push(&rec, &p), 0);
    assert_int_equal(p.id, 5);
    assert_int_equal(p.upstream, UPSTREAM_FCM);
    assert_int_equal(p.app_len, 7);
    assert_memory_equal(p.app, "alpha-1", 7);
    assert_int_equal(p.ntargets, 2);
    assert_memory_equal(p.msg.payload, r.msg.payload, r.msg.payload_len);
    /* A name no config could give, or one longer than the record, is refused. */
    ((unsigned char *)b.data)[16 + 10 + 1] = '/';
    assert_int_equal(spool_decode_push(&rec, &p), -1);
    ((unsigned char *)b.data)[16 + 10 + 1] = 'a';
    ((unsigned char *)b.data)[16 + 10] = 0;
    assert_int_equal(spool_decode_push(&rec, &p), -1);
    ((unsigned char *)b.data)[16 + 10] = 255;
    rec.len = 16;
    assert_int_equal(spool_decode_push(&rec, &p), -1);
    buf_free(&b);
    /* The default app: the old format, no app. */
    b = (struct buf)BUF_INIT;
    r.app = NULL;
    r.app_len = 0;
    spool_encode_push(&b, 6, &r);
    assert_int_equal((unsigned char)b.data[4], SPOOL_PUSH);
    rd = (struct spool_reader){(unsigned char *)b.data, b.len, 0, 0};
    assert_int_equal(spool_next(&rd, &rec, &bad), SPOOL_RECORD);
    assert_int_equal(spool_decode_push(&rec, &p), 0);
    assert_null(p.app);
    buf_free(&b);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(crc32c_check_value),
        cmocka_unit_test(round_trip),
        cmocka_unit_test(old_push_records_still_decode),
        cmocka_unit_test(fcm_pushes_keep_the_old_format),
        cmocka_unit_test(apns_pushes_carry_their_upstream_and_fields),
        cmocka_unit_test(app_pushes_name_their_app),
        cmocka_unit_test(torn_tail_is_cut_off),
        cmocka_unit_test(zero_tail_ends_the_records),
        cmocka_unit_test(corrupt_middle_record_is_skipped),
        cmocka_unit_test(garbage_length_does_not_read_past_the_end),
        cmocka_unit_test(fake_headers_cost_a_bounded_search),
        cmocka_unit_test(one_record_is_a_request),
    };
    return cmocka_run_group_tests_name("spool_record", tests, NULL, NULL);
}
