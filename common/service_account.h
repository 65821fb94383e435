/*
 * common/service_account.h - an FCM HTTP v1 service-account key file.
 *
 * The master reads and checks the file before it forks, so a bad file ends
 * the start with exit status 2; the children inherit the parsed key.  Error
 * messages name the file and the field, never the key material.
 */
#ifndef FCMD_COMMON_SERVICE_ACCOUNT_H
#define FCMD_COMMON_SERVICE_ACCOUNT_H

#include <openssl/evp.h>
#include <stddef.h>

struct service_account {
    char *project_id;
    char *private_key_id;
    char *client_email;
    char *token_uri;
    EVP_PKEY *key; /* the RSA private key */
};

/* Loads path into sa.  Returns 0, or -1 with a one-line reason in err. */
int service_account_load(const char *path, struct service_account *sa, char *err, size_t errlen);

/* The same for a file's text already in memory; path only names it in errors. */
int service_account_parse(const char *text, size_t len, const char *path, struct service_account *sa, char *err,
                          size_t errlen);

void service_account_free(struct service_account *sa);

#endif
