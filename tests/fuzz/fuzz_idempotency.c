/*
 * tests/fuzz/fuzz_idempotency.c - the Idempotency-Key header and the value
 * Redis holds for a key (which anyone who can write to Redis can make): the
 * first byte splits the input into a header and a stored value.  A key is
 * accepted only when it is 1 to 255 visible ASCII characters, its names
 * stay within their buffers, and a stored value gives a duplicate only with
 * an id fcmd could have made.
 */
#include <assert.h>
#include <stdint.h>
#include <string.h>

#include "../../child/fleet/fleet_idem.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static const unsigned char fp[IDEM_FINGERPRINT] = {1, 2, 3};
    char lkey[IDEM_LEDGER_KEY_MAX], rkey[FLEET_IDEM_KEY_MAX], ours[FLEET_IDEM_VALUE_MAX], id[IDEM_ID_MAX + 1];
    size_t split = size > 0 ? data[0] : 0;
    const char *key = (const char *)data + (size > 0), *stored;
    size_t key_len, stored_len;
    uint32_t targets = 0;

    if (size == 0)
        return 0;
    key_len = split < size - 1 ? split : size - 1;
    stored = key + key_len;
    stored_len = size - 1 - key_len;
    if (idempotency_key_ok(key, key_len)) {
        assert(key_len >= 1 && key_len <= IDEM_KEY_MAX);
        for (size_t i = 0; i < key_len; i++)
            assert(key[i] > ' ' && key[i] < 0x7f);
        assert(idempotency_ledger_key(lkey, "app", key, key_len) == 4 + key_len);
        assert(fleet_idem_key(rkey, "app", key, key_len) == 14 + key_len);
    }
    fleet_idem_value(ours, fp, "AAECAwQFBgcICQoLDA0ODw", 7);
    if (fleet_idem_judge(ours, stored, stored_len, id, &targets) == FLEET_IDEM_DUPLICATE) {
        size_t n = strlen(id);
        assert(n >= 1 && n <= IDEM_ID_MAX);
    }
    return 0;
}
