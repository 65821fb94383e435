/*
 * common/vapid_key.h - the VAPID key (RFC 8292) and subject of Web Push, and
 * the raw form of a P-256 public key that Web Push writes everywhere.
 *
 * The master reads and checks the key before it forks (a bad file stops the
 * start with exit status 2), `fcmd --vapid-public-key` prints its public
 * half for the site's applicationServerKey, and the workers sign VAPID JWTs
 * with the parsed key.  Error messages name the file and the problem, never
 * the key material.
 */
#ifndef FCMD_COMMON_VAPID_KEY_H
#define FCMD_COMMON_VAPID_KEY_H

#include <openssl/evp.h>
#include <stddef.h>

/* An uncompressed P-256 point: 0x04, then x and y, 32 bytes each. */
#define P256_POINT_LEN 65
/* Its base64url form, without padding: 65 bytes are 87 characters. */
#define P256_POINT_B64_LEN 87
/* The longest subject fcmd accepts: a contact address, not a document. */
#define VAPID_SUBJECT_MAX 512

/* Loads the PEM EC private key at path (SEC1 "EC PRIVATE KEY", as
 * `openssl ecparam -genkey` writes it, or PKCS#8) and checks it is on P-256.
 * Returns the key, or NULL with a one-line reason in err. */
EVP_PKEY *vapid_key_load(const char *path, char *err, size_t errlen);

/* The same for the file's text already in memory; path only names it. */
EVP_PKEY *vapid_key_parse(const char *text, size_t len, const char *path, char *err, size_t errlen);

/* Writes key's public point, uncompressed, to out.  Returns 0, or -1 when
 * key is not an EC key with a public point on P-256 (or memory ran out). */
int p256_point(EVP_PKEY *key, unsigned char out[P256_POINT_LEN]);

/* Writes the base64url form (no padding) of key's public point to out,
 * NUL-terminated.  Returns 0, or -1 as p256_point. */
int p256_point_b64url(EVP_PKEY *key, char out[P256_POINT_B64_LEN + 1]);

/* Whether s is a subject RFC 8292 allows: a "mailto:" URI with an address
 * (local@domain) or an "https:" URI with a host, printable ASCII without
 * spaces, at most VAPID_SUBJECT_MAX bytes. */
int vapid_subject_ok(const char *s);

/* What a subject must be, for the error messages that refuse one. */
#define VAPID_SUBJECT_RULE                                                                                             \
    "a mailto: address (mailto:ops@example.com) or an https: URL (https://example.com/contact), at most 512 "         \
    "printable ASCII characters without spaces"

#endif
