/* tests/fuzz/fuzz_legacy_response.c - answers of the legacy FCM API, whole
 * or cut at the bound (the prefix reader). */
#include <stdint.h>
#include <stdlib.h>

#include "../../child/upstream/fcm/legacy.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct outcome out[7];
    /* data[0] & 8: the answer was cut at the bound. */
    struct upstream_result res = {CURLE_OK, 200, (const char *)data, size, size > 0 && (data[0] & 8)};
    size_t pick = size > 0 ? (size_t)(data[0] % 8) : 0;
    /* 0-6: that many tokens plus one; 7: a topic. */
    size_t n = pick == 7 ? 1 : pick + 1;

    legacy_classify(&res, pick == 7 ? TARGET_TOPIC : TARGET_TOKEN, n, out);
    for (size_t i = 0; i < n; i++)
        free(out[i].kind == OUTCOME_CANONICAL ? out[i].canonical : NULL);
    return 0;
}
