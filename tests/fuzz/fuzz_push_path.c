/*
 * tests/fuzz/fuzz_push_path.c - GET /push/{id}'s path and query, as a
 * client sends them (the input up to its first '?' is the path, the rest
 * the query): an id is accepted only when it is 1 to 64 characters of
 * [A-Za-z0-9_-] inside the path, and a wait only from 0 to 30.
 */
#include <assert.h>
#include <stdint.h>
#include <string.h>

#include "../../child/http/endpoints.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const char *s = (const char *)data, *q = memchr(s, '?', size), *id = NULL;
    size_t n = q != NULL ? (size_t)(q - s) : size, qn = q != NULL ? size - n - 1 : 0, id_len = 0;
    unsigned long secs = 99;
    int rc = http_push_path(s, n, q != NULL ? q + 1 : "", qn, &id, &id_len, &secs);

    if (rc == 0) {
        assert(id_len >= 1 && id_len <= 64 && id >= s && id + id_len == s + n);
        for (size_t i = 0; i < id_len; i++)
            assert((id[i] >= 'a' && id[i] <= 'z') || (id[i] >= 'A' && id[i] <= 'Z') ||
                   (id[i] >= '0' && id[i] <= '9') || id[i] == '_' || id[i] == '-');
        assert(secs <= 30);
    }
    return 0;
}
