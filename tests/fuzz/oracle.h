/*
 * tests/fuzz/oracle.h - jansson as the fuzz targets' judge of JSON, so that
 * common/json.c never checks its own work.  Two limits of jansson that are
 * not JSON's are named here once: numbers beyond a double and NUL bytes in
 * object keys.
 */
#ifndef FCMD_TESTS_FUZZ_ORACLE_H
#define FCMD_TESTS_FUZZ_ORACLE_H

#include <jansson.h>
#include <stddef.h>

/* Strict, as fcmd is: any value at the top, repeated keys refused, \u0000
 * allowed in strings. */
#define ORACLE_FLAGS (JSON_DECODE_ANY | JSON_REJECT_DUPLICATES | JSON_ALLOW_NUL)

/* text decoded with ORACLE_FLAGS and extra; an integer beyond 64 bits is
 * read again as a real, so that only reals beyond a double stay refused as
 * overflow. */
static inline json_t *oracle_load(const char *text, size_t len, size_t extra, json_error_t *err)
{
    json_t *v = json_loadb(text, len, ORACLE_FLAGS | extra, err);

    if (v == NULL && json_error_code(err) == json_error_numeric_overflow)
        v = json_loadb(text, len, ORACLE_FLAGS | extra | JSON_DECODE_INT_AS_REAL, err);
    return v;
}

/* Whether jansson refused valid JSON for one of its own limits. */
static inline int oracle_limit(const json_error_t *err)
{
    enum json_error_code c = json_error_code(err);

    return c == json_error_numeric_overflow || c == json_error_null_byte_in_key || c == json_error_out_of_memory;
}

#endif
