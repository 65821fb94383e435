/* tests/fuzz/fuzz_config.c - INI configuration files, then their validation. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "../../master/config.h"
#include "../../common/options.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct fcmd_options o;
    struct config_strings owned = {0};
    char err[600], *text = malloc(size + 1);

    if (text == NULL)
        return 0;
    memcpy(text, data, size);
    text[size] = '\0';
    options_defaults(&o);
    if (config_parse_string(text, "fuzz.conf", &o, &owned, err, sizeof(err)) == 0) {
        /* No filesystem side effects from the fuzzer: drop what validation would touch. */
        o.spool = NULL;
        o.ca_file = NULL;
        o.access_log = NULL;
        o.service_account = NULL;
        o.user = NULL;
        options_validate(&o, err, sizeof(err));
    }
    config_strings_free(&owned);
    free(text);
    return 0;
}
