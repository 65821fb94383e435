/* tests/fuzz/fuzz_service_account.c - service-account key files. */
#include <stdint.h>

#include "../../common/service_account.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct service_account sa;
    char err[512];

    if (service_account_parse((const char *)data, size, "fuzz.json", &sa, err, sizeof(err)) == 0)
        service_account_free(&sa);
    return 0;
}
