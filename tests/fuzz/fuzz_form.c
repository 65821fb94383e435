/* tests/fuzz/fuzz_form.c - /gcm/send bodies as application/x-www-form-urlencoded. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "../../child/core/request.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static const char ct[] = "application/x-www-form-urlencoded";
    struct send_request r;
    char err[256];

    if (request_parse(UPSTREAM_FCM, ct, sizeof(ct) - 1, (const char *)data, size, NULL, &r, err, sizeof(err)) == 0)
        request_free(&r);
    return 0;
}
