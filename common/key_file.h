/*
 * common/key_file.h - reading a small secret file (a PEM private key) into
 * memory, for the master's checks before it forks.
 *
 * The file is read with read(2), never through stdio, so no library buffer
 * keeps a copy; the caller parses the bytes and wipes them with
 * key_file_free.  Errors name the option and the file, never the contents.
 */
#ifndef FCMD_COMMON_KEY_FILE_H
#define FCMD_COMMON_KEY_FILE_H

#include <stddef.h>

/* A PEM private key is a few hundred bytes; anything much larger is not one. */
#define KEY_FILE_MAX 16384

/* Reads the regular file at path, at most KEY_FILE_MAX bytes, into *data
 * (NUL-terminated, KEY_FILE_MAX + 1 bytes to wipe) and returns its length;
 * or -1 with a reason in err that begins with option ("--apns-key") and,
 * for a file too large, says it is not `what` ("an APNs .p8 key"). */
long key_file_read(const char *path, const char *option, const char *what, char **data, char *err,
                   size_t errlen);

/* Wipes and frees what key_file_read gave.  data may be NULL. */
void key_file_free(char *data);

/* Whether key is an EC key on P-256 (APNs' and VAPID's curve); curve gets
 * its curve's name, "" when it has none, for the caller's message. */
struct evp_pkey_st;
int key_file_is_p256(struct evp_pkey_st *key, char *curve, size_t cap);

#endif
