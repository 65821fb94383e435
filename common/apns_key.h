/*
 * common/apns_key.h - the APNs signing key (Apple's .p8 file) and its ids.
 *
 * The master reads and checks the key before it forks, so a bad file or a
 * missing id ends the start with exit status 2; the children inherit the
 * parsed key.  Error messages name the file and the problem, never the key
 * material.
 */
#ifndef FCMD_COMMON_APNS_KEY_H
#define FCMD_COMMON_APNS_KEY_H

#include <openssl/evp.h>
#include <stddef.h>

#include "key_file.h"

/* A .p8 file is a few hundred bytes; anything much larger is not one. */
#define APNS_KEY_MAX_FILE KEY_FILE_MAX
/* Apple's key ids and team ids: ten upper-case letters and digits. */
#define APNS_ID_LEN 10

/* Loads the PKCS#8 PEM at path and checks it is an EC key on P-256.
 * Returns the key, or NULL with a one-line reason in err. */
EVP_PKEY *apns_key_load(const char *path, char *err, size_t errlen);

/* The same for the file's text already in memory; path only names it. */
EVP_PKEY *apns_key_parse(const char *text, size_t len, const char *path, char *err, size_t errlen);

/* Whether s is a key id or team id as Apple issues them. */
int apns_id_ok(const char *s);

/* The longest bundle id Apple registers. */
#define APNS_BUNDLE_ID_MAX 155
/* What a topic must be, for the error messages that refuse one. */
#define APNS_TOPIC_RULE                                                                                                \
    "a bundle id (reverse-DNS: two or more labels of letters, digits and '-', at most 155 bytes), "                    \
    "optionally followed by .voip, .complication, .pushkit.fileprovider or .push-type.liveactivity"

/* Whether s can be an apns-topic: a bundle id, optionally followed by one of
 * Apple's suffixes. */
int apns_topic_ok(const char *s, size_t n);

#endif
