/* tests/fuzz/fuzz_spool_record.c - spool segments as replay reads them. */
#include <stdint.h>

#include "../../child/store/spool_record.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct spool_reader r = {data, size, 0, 0};
    struct spool_rec rec;
    struct spool_push p;
    enum spool_read st;
    size_t bad, steps = 0;

    while ((st = spool_next(&r, &rec, &bad)) != SPOOL_END && st != SPOOL_TORN && steps++ < 100000) {
        if (st != SPOOL_RECORD)
            continue;
        if (spool_decode_push(&rec, &p) == 0) {
            size_t pos = 0, len;
            uint32_t index;
            const char *name;
            while (spool_push_target(&p, &pos, &index, &name, &len) == 0)
                ;
        } else {
            uint64_t id;
            uint32_t n;
            const unsigned char *idx;
            if (spool_decode_ack(&rec, &id, &n, &idx) == 0 && n > 0)
                (void)spool_u32(idx + 4 * (n - 1));
        }
    }
    return 0;
}
