/* tests/fuzz/fuzz_config.c - INI configuration files, then their validation. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../../master/config.h"
#include "../../common/options.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct fcmd_options o;
    struct config_strings owned = {0};
    char err[600];
    FILE *f = size > 0 ? fmemopen((void *)data, size, "r") : NULL;
    int rc;

    if (f == NULL)
        return 0;
    options_defaults(&o);
    rc = config_read(f, "fuzz.conf", &o, &owned, err, sizeof(err));
    fclose(f);
    if (rc == 0) {
        /* No filesystem side effects from the fuzzer: drop what validation would touch. */
        o.spool = NULL;
        o.ca_file = NULL;
        o.access_log = NULL;
        o.service_account = NULL;
        o.user = NULL;
        options_validate(&o, err, sizeof(err));
        /* Every [app NAME] the parser kept has a name a request could give. */
        for (size_t i = 0; i < owned.napp; i++)
            if (!options_app_name_ok(owned.app[i].app, strlen(owned.app[i].app)) ||
                strcmp(owned.app[i].app, "default") == 0)
                abort();
    }
    config_strings_free(&owned);
    return 0;
}
