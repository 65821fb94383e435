/*
 * common/service_account.c - reading a Google service-account JSON key.
 *
 * The file is small and read once; every field fcmd needs is checked here,
 * and the PEM text of the private key is wiped from memory as soon as
 * OpenSSL has parsed it.
 */
#include "service_account.h"
#include "json.h"

#include <errno.h>
#include <openssl/crypto.h>
#include <openssl/pem.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define MAX_FILE (1u << 20)

static char *read_file(const char *path, size_t *len, char *err, size_t errlen)
{
    FILE *f = fopen(path, "rb");
    char *data;
    size_t n;

    if (f == NULL) {
        snprintf(err, errlen, "--service-account: cannot read \"%s\": %s", path, strerror(errno));
        return NULL;
    }
    if ((data = malloc(MAX_FILE + 1)) == NULL) {
        fclose(f);
        snprintf(err, errlen, "--service-account: out of memory");
        return NULL;
    }
    n = fread(data, 1, MAX_FILE + 1, f);
    fclose(f);
    if (n > MAX_FILE) {
        snprintf(err, errlen, "--service-account: \"%s\" is larger than 1 MiB", path);
        free(data);
        return NULL;
    }
    data[n] = '\0';
    *len = n;
    return data;
}

/* A required string field, unescaped into a new allocation. */
static char *string_field(const struct json_doc *d, const char *name, const char *path, char *err, size_t errlen)
{
    int v = json_find(d, 0, name);
    char *s;

    if (v < 0 || d->tok[v].type != JSMN_STRING || json_toklen(d, v) == 0) {
        snprintf(err, errlen, "--service-account: \"%s\" has no \"%s\" string", path, name);
        return NULL;
    }
    if ((s = malloc(json_toklen(d, v) + 1)) == NULL || json_unescape(d, v, s) < 0) {
        snprintf(err, errlen, "--service-account: \"%s\": field \"%s\" is not a valid string", path, name);
        free(s);
        return NULL;
    }
    return s;
}

static EVP_PKEY *parse_key(char *pem)
{
    BIO *bio = BIO_new_mem_buf(pem, -1);
    EVP_PKEY *key = bio ? PEM_read_bio_PrivateKey(bio, NULL, NULL, NULL) : NULL;

    BIO_free(bio);
    if (key != NULL && EVP_PKEY_base_id(key) != EVP_PKEY_RSA) {
        EVP_PKEY_free(key);
        key = NULL;
    }
    return key;
}

static int check_url(const char *u)
{
    return strncmp(u, "https://", 8) == 0 || strncmp(u, "http://", 7) == 0;
}

int service_account_parse(const char *text, size_t len, const char *path, struct service_account *sa, char *err,
                          size_t errlen)
{
    struct json_doc d;
    char *type = NULL, *pem = NULL;
    int rc = -1;

    memset(sa, 0, sizeof(*sa));
    if (json_parse(&d, text, len) != 0 || d.tok[0].type != JSMN_OBJECT) {
        json_free(&d);
        snprintf(err, errlen, "--service-account: \"%s\" is not a JSON object", path);
        return -1;
    }
    if ((type = string_field(&d, "type", path, err, errlen)) == NULL)
        goto out;
    if (strcmp(type, "service_account") != 0) {
        snprintf(err, errlen, "--service-account: \"%s\" has type \"%.40s\", not \"service_account\"", path, type);
        goto out;
    }
    if ((sa->project_id = string_field(&d, "project_id", path, err, errlen)) == NULL ||
        (sa->private_key_id = string_field(&d, "private_key_id", path, err, errlen)) == NULL ||
        (sa->client_email = string_field(&d, "client_email", path, err, errlen)) == NULL ||
        (sa->token_uri = string_field(&d, "token_uri", path, err, errlen)) == NULL ||
        (pem = string_field(&d, "private_key", path, err, errlen)) == NULL)
        goto out;
    if (!check_url(sa->token_uri)) {
        snprintf(err, errlen, "--service-account: \"%s\": token_uri is not an http:// or https:// URL", path);
        goto out;
    }
    if (strspn(sa->project_id, "abcdefghijklmnopqrstuvwxyz0123456789-") != strlen(sa->project_id)) {
        snprintf(err, errlen, "--service-account: \"%s\": project_id is not a valid project id", path);
        goto out;
    }
    if ((sa->key = parse_key(pem)) == NULL) {
        snprintf(err, errlen, "--service-account: \"%s\": private_key is not a PEM RSA private key", path);
        goto out;
    }
    rc = 0;
out:
    json_free(&d);
    if (pem != NULL) {
        OPENSSL_cleanse(pem, strlen(pem));
        free(pem);
    }
    free(type);
    if (rc != 0)
        service_account_free(sa);
    return rc;
}

int service_account_load(const char *path, struct service_account *sa, char *err, size_t errlen)
{
    size_t len;
    char *text = read_file(path, &len, err, errlen);
    int rc;

    if (text == NULL)
        return -1;
    rc = service_account_parse(text, len, path, sa, err, errlen);
    OPENSSL_cleanse(text, len);
    free(text);
    return rc;
}

void service_account_free(struct service_account *sa)
{
    free(sa->project_id);
    free(sa->private_key_id);
    free(sa->client_email);
    free(sa->token_uri);
    EVP_PKEY_free(sa->key);
    memset(sa, 0, sizeof(*sa));
}
