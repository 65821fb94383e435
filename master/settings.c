/*
 * master/settings.c - one load of fcmd's configuration.
 *
 * The command line is parsed twice: once to find --config (and to report
 * a bad flag before anything else), and once more after the file has been
 * applied, so that flags override the file.
 */
#include "settings.h"

#include <h2o.h>
#include <h2o/http2.h>
#include <openssl/crypto.h>
#include <openssl/ssl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int load_token(struct settings *s, char *err, size_t errlen)
{
    FILE *f = fopen(s->o.auth_token_file, "r");
    char line[1024];
    size_t n;

    if (f == NULL || fgets(line, sizeof(line), f) == NULL) {
        snprintf(err, errlen, "--auth-token-file: cannot read a token from \"%s\"", s->o.auth_token_file);
        if (f)
            fclose(f);
        return -1;
    }
    fclose(f);
    n = strcspn(line, "\r\n");
    line[n] = '\0';
    if (n == 0 || (s->auth_token = strdup(line)) == NULL) {
        snprintf(err, errlen, "--auth-token-file: \"%s\" holds no token", s->o.auth_token_file);
        return -1;
    }
    OPENSSL_cleanse(line, sizeof(line));
    s->o.auth_token = s->auth_token;
    return 0;
}

/* The listener's TLS context, with HTTP/2 offered by ALPN. */
static void *tls_context(const struct fcmd_options *o, char *err, size_t errlen)
{
    SSL_CTX *ctx = SSL_CTX_new(TLS_server_method());

    if (ctx == NULL || SSL_CTX_use_certificate_chain_file(ctx, o->tls_cert) != 1 ||
        SSL_CTX_use_PrivateKey_file(ctx, o->tls_key, SSL_FILETYPE_PEM) != 1 || SSL_CTX_check_private_key(ctx) != 1) {
        snprintf(err, errlen, "--tls-cert/--tls-key: cannot use \"%s\" with \"%s\"", o->tls_cert, o->tls_key);
        SSL_CTX_free(ctx);
        return NULL;
    }
    SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION);
    h2o_ssl_register_alpn_protocols(ctx, h2o_http2_alpn_protocols);
    return ctx;
}

struct settings *settings_load(int argc, char **argv, int validate, char *err, size_t errlen)
{
    struct settings *s = calloc(1, sizeof(*s));
    struct fcmd_options flags;

    if (s == NULL) {
        snprintf(err, errlen, "out of memory");
        return NULL;
    }
    options_defaults(&flags);
    if (options_parse(&flags, argc, argv, err, errlen) != 0)
        goto fail;
    options_defaults(&s->o);
    if (flags.config != NULL && !flags.help && !flags.version &&
        config_load(flags.config, &s->o, &s->strings, err, errlen) != 0)
        goto fail;
    if (options_parse(&s->o, argc, argv, err, errlen) != 0)
        goto fail;
    if (!validate || s->o.help || s->o.version)
        return s;
    if (options_validate(&s->o, err, errlen) != 0)
        goto fail;
    if (s->o.auth_token_file != NULL && load_token(s, err, errlen) != 0)
        goto fail;
    if (s->o.tls_cert != NULL && (s->o.tls_ctx = tls_context(&s->o, err, errlen)) == NULL)
        goto fail;
    /* --service-account wins over --apikey when both are given. */
    if (s->o.service_account != NULL) {
        if (service_account_load(s->o.service_account, &s->sa, err, errlen) != 0)
            goto fail;
        s->o.sa = &s->sa;
    }
    return s;
fail:
    settings_free(s);
    return NULL;
}

void settings_free(struct settings *s)
{
    if (s == NULL)
        return;
    if (s->o.sa != NULL)
        service_account_free(&s->sa);
    SSL_CTX_free(s->o.tls_ctx);
    if (s->auth_token != NULL) {
        OPENSSL_cleanse(s->auth_token, strlen(s->auth_token));
        free(s->auth_token);
    }
    config_strings_free(&s->strings);
    free(s);
}

static int same(const char *a, const char *b)
{
    return (a == NULL && b == NULL) || (a != NULL && b != NULL && strcmp(a, b) == 0);
}

int settings_same_listener(const struct settings *a, const struct settings *b)
{
    if (a->o.unix_path || b->o.unix_path)
        return same(a->o.unix_path, b->o.unix_path) && same(a->o.socket_mode, b->o.socket_mode);
    return a->o.port == b->o.port && same(a->o.host, b->o.host);
}
