/*
 * tests/unit/oracle.h - reading what fcmd produced with jansson, a parser
 * fcmd does not use, so a bug in common/json.c cannot hide itself by
 * approving its own output.  Include after cmocka_all.h.
 */
#ifndef FCMD_TESTS_ORACLE_H
#define FCMD_TESTS_ORACLE_H

#include <jansson.h>
#include <string.h>

/* text decoded strictly (repeated keys refused); fails the test otherwise.
 * Free with json_decref. */
static inline json_t *oracle_decode(const char *text, size_t len)
{
    json_error_t err;
    json_t *v = json_loadb(text, len, JSON_REJECT_DUPLICATES | JSON_DECODE_ANY, &err);

    if (v == NULL)
        fail_msg("jansson refuses %.*s: %s at byte %d", (int)len, text, err.text, err.position);
    return v;
}

/* The string at path (keys separated by '.') in v, or NULL. */
static inline const char *oracle_string(json_t *v, const char *path)
{
    char key[128];

    while (v != NULL && *path) {
        size_t n = strcspn(path, ".");
        if (n >= sizeof(key))
            return NULL;
        memcpy(key, path, n);
        key[n] = '\0';
        v = json_object_get(v, key);
        path += n + (path[n] == '.');
    }
    return json_string_value(v);
}

#endif
