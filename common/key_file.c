/*
 * common/key_file.c - a secret file read with read(2) into one buffer that
 * its caller wipes once the key is parsed.
 */
#include "key_file.h"

#include <errno.h>
#include <fcntl.h>
#include <openssl/core_names.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

void key_file_free(char *data)
{
    if (data == NULL)
        return;
    OPENSSL_cleanse(data, KEY_FILE_MAX + 1);
    free(data);
}

long key_file_read(const char *path, const char *option, const char *what, char **data, char *err,
                   size_t errlen)
{
    struct stat st;
    size_t len = 0;
    ssize_t n;
    char *buf;
    int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY);

    *data = NULL;
    if (fd < 0) {
        snprintf(err, errlen, "%s: cannot read \"%s\": %s", option, path, strerror(errno));
        return -1;
    }
    if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
        snprintf(err, errlen, "%s: \"%s\" is not a regular file", option, path);
        close(fd);
        return -1;
    }
    if ((buf = malloc(KEY_FILE_MAX + 1)) == NULL) {
        snprintf(err, errlen, "%s: out of memory", option);
        close(fd);
        return -1;
    }
    /* One byte more than a key may have tells a file that is too large. */
    while (len <= KEY_FILE_MAX && (n = read(fd, buf + len, KEY_FILE_MAX + 1 - len)) != 0) {
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0) {
            snprintf(err, errlen, "%s: cannot read \"%s\": %s", option, path, strerror(errno));
            goto fail;
        }
        len += (size_t)n;
    }
    if (len > KEY_FILE_MAX) {
        snprintf(err, errlen, "%s: \"%s\" is larger than %d bytes: not %s", option, path, KEY_FILE_MAX, what);
        goto fail;
    }
    close(fd);
    buf[len] = '\0';
    *data = buf;
    return (long)len;
fail:
    close(fd);
    key_file_free(buf);
    return -1;
}

int key_file_is_p256(EVP_PKEY *key, char *curve, size_t cap)
{
    size_t clen = 0;

    curve[0] = '\0';
    return EVP_PKEY_get_utf8_string_param(key, OSSL_PKEY_PARAM_GROUP_NAME, curve, cap, &clen) == 1 &&
           strcmp(curve, "prime256v1") == 0;
}
