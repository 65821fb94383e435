/* tests/fuzz/fuzz_oauth_response.c - answers of the OAuth2 token endpoint. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "../../child/upstream/fcm/oauth.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char *token;
    long ttl;

    if (oauth_parse_response((const char *)data, size, &token, &ttl) == 0) {
        /* What goes into a header line must be printable and without spaces. */
        for (char *p = token; *p; p++)
            if (*p <= 0x20 || *p >= 0x7f)
                abort();
        if (ttl <= 0)
            abort();
        free(token);
    }
    return 0;
}
