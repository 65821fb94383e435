/* tests/fuzz/fuzz_v1_error.c - error bodies of FCM HTTP v1 (google.rpc.Status). */
#include <stdint.h>

#include "../../child/upstream/fcm/v1.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static const long statuses[] = {400, 401, 403, 404, 429, 500, 503, 200};
    /* Half of them as if cut at the bound: the status decides then. */
    struct upstream_result res = {CURLE_OK, statuses[size % 8], (const char *)data, size, size > 0 && data[0] & 1};
    struct outcome out;
    char detail[256];
    int refused;

    v1_classify(&res, &out, &refused, detail, sizeof(detail));
    return 0;
}
