/* tests/fuzz/fuzz_spool_replay.c - whole segment files through the replay
 * path: reading pushes and acknowledgements, building each push's request
 * of unfinished targets, and checking it as intake would; and the webhook
 * events left, which must each be an object a batch can carry as it is.
 *
 * Random bytes almost never carry a valid CRC, so the harness fixes each
 * record's CRC in a copy before reading (unless the record's first padding
 * byte is odd, which keeps corrupt records in play): the fuzzer explores
 * what is inside records, where a crafted file's danger is. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "../../child/store/crc32c.h"
#include "../../child/store/spool_replay.h"
#include "../../common/json.h"
#include "../../common/log.h"
#include "../../common/options.h"
#include "../../child/upstream/apns/apns_request.h"

/* Intake's limits with the APNs rules, as a worker sets them. */
static const struct request_limits apns_limits = {REQUEST_MAX_BODY, REQUEST_MAX_TOKENS, REQUEST_MAX_PAYLOAD,
                                                  {[UPSTREAM_APNS] = &apns_request_rules}};

static void fix_crcs(unsigned char *d, size_t len)
{
    size_t pos = 0;

    while (len - pos >= RECORD_HEADER) {
        unsigned char *h = d + pos;
        uint32_t n = record_u32(h + 8), crc;
        if (n > len - pos - RECORD_HEADER)
            n = (uint32_t)(len - pos - RECORD_HEADER);
        if (!(h[5] & 1)) {
            memcpy(h, "FCSP", 4);
            h[8] = (unsigned char)n;
            h[9] = (unsigned char)(n >> 8);
            h[10] = (unsigned char)(n >> 16);
            h[11] = (unsigned char)(n >> 24);
            crc = crc32c(crc32c(0, h + 4, 8), h + RECORD_HEADER, n);
            h[12] = (unsigned char)crc;
            h[13] = (unsigned char)(crc >> 8);
            h[14] = (unsigned char)(crc >> 16);
            h[15] = (unsigned char)(crc >> 24);
        }
        pos += RECORD_HEADER + n;
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    unsigned char *copy = malloc(size ? size : 1);
    struct spool_replay r;
    char err[256];

    if (copy == NULL)
        return 0;
    log_set_level(LOG_ERROR); /* a skipped record is a warning: keep them quiet */
    memcpy(copy, data, size);
    fix_crcs(copy, size);
    if (spool_replay_read(&r, copy, size, "fuzz") != 0) {
        free(copy);
        return 0;
    }
    if (r.records_end > size)
        abort();
    for (size_t i = 0; i < r.nevents; i++) {
        const struct record_event *e = &r.events[i].ev;
        const unsigned char *lo = copy, *hi = copy + size;
        if ((const unsigned char *)e->text < lo || (const unsigned char *)e->text + e->len > hi ||
            (const unsigned char *)e->id < lo || (const unsigned char *)e->id + e->id_len > hi)
            abort(); /* inside the file */
        if (e->id_len == 0 || e->id_len > RECORD_EVENT_ID_MAX || e->app_len > APP_NAME_MAX || e->len < 2 ||
            e->text[0] != '{' || e->text[e->len - 1] != '}' || !json_valid_utf8(e->text, e->len))
            abort(); /* an object a batch can carry */
        if (i > 0) {
            const struct record_event *f = &r.events[i - 1].ev;
            size_t n = f->id_len < e->id_len ? f->id_len : e->id_len;
            int c = memcmp(f->id, e->id, n);
            if (c > 0 || (c == 0 && f->id_len >= e->id_len))
                abort(); /* sorted, each event_id once */
        }
    }
    for (; r.next < r.n; r.next++) {
        struct spool_replay_push *p = &r.v[r.next];
        struct send_request req;
        uint32_t *index = NULL;
        if (p->acked >= p->ntargets || (r.next > 0 && r.v[r.next - 1].id >= p->id))
            abort(); /* finished pushes are dropped; ids are sorted and unique */
        if (spool_replay_request(p, &req, &index) == 0) {
            if (req.ntargets != (size_t)(p->ntargets - p->acked))
                abort();
            /* A push keeps an id only if it is one; key and fingerprint within bounds. */
            if (req.id_len > PUSH_ID_MAX || strlen(req.id) != req.id_len ||
                (req.id_len > 0 && !push_id_ok(req.id, req.id_len)) ||
                (req.idem_key != NULL && (req.idem_key_len == 0 || req.idem_key_len > REQUEST_IDEM_KEY_MAX)) ||
                (req.fingerprint != NULL && req.fingerprint_len != REQUEST_FINGERPRINT_LEN))
                abort();
            for (size_t i = 0; i < req.ntargets; i++)
                if (index[i] >= p->ntargets || (p->bits[index[i] / 8] & (1u << (index[i] % 8))))
                    abort(); /* only unacknowledged targets, each a real one */
            (void)request_check(&req, &apns_limits, err, sizeof(err));
        }
        request_free(&req);
        free(index);
        free(p->bits);
    }
    spool_replay_free(&r);
    free(copy);
    return 0;
}
