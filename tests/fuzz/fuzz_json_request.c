/* tests/fuzz/fuzz_json_request.c - /gcm/send bodies as JSON, and the v1
 * encoding of whatever is accepted (what fcmd would send upstream). */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "../../child/json.h"
#include "../../child/request.h"
#include "../../child/upstream_v1.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static const char ct[] = "application/json; charset=utf-8";
    struct send_request r;
    struct buf b = BUF_INIT;
    struct json_doc d;
    char err[256];

    if (request_parse(ct, sizeof(ct) - 1, (const char *)data, size, NULL, &r, err, sizeof(err)) != 0)
        return 0;
    /* Accepted input must encode to valid JSON. */
    buf_add(&b, "{\"m\":{\"x\":1", 11);
    if (v1_encode_shared(&b, &r.msg) == 0) {
        buf_add(&b, "}}", 2);
        if (!b.failed && json_parse(&d, b.data, b.len) != 0)
            abort();
        json_free(&d);
    }
    buf_free(&b);
    request_free(&r);
    return 0;
}
