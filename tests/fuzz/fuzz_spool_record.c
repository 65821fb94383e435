/* tests/fuzz/fuzz_spool_record.c - spool segments as replay reads them. */
#include <stdint.h>

#include "../../child/store/record.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct record_reader r = {data, size, 0, 0};
    struct record rec;
    struct record_push p;
    enum record_read st;
    size_t bad, steps = 0;

    while ((st = record_next(&r, &rec, &bad)) != RECORD_END && st != RECORD_TORN && steps++ < 100000) {
        if (st != RECORD_GOOD)
            continue;
        if (record_decode_push(&rec, &p) == 0) {
            size_t pos = 0, len;
            uint32_t index;
            const char *name;
            /* What a PUSH4 holds lies inside the record. */
            if ((p.push_id != NULL && (p.push_id < (const char *)rec.payload ||
                                      p.push_id + p.push_id_len > (const char *)rec.payload + rec.len)) ||
                (p.idem_key != NULL && p.idem_key + p.idem_key_len > (const char *)rec.payload + rec.len) ||
                (p.fingerprint != NULL && p.fingerprint + p.fingerprint_len > rec.payload + rec.len))
                __builtin_trap();
            while (record_push_target(&p, &pos, &index, &name, &len) == 0)
                ;
        } else {
            uint64_t id;
            uint32_t n;
            const unsigned char *idx;
            if (record_decode_ack(&rec, &id, &n, &idx) == 0 && n > 0)
                (void)record_u32(idx + 4 * (n - 1));
        }
    }
    return 0;
}
