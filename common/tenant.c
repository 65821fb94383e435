/*
 * common/tenant.c - which holder a bearer token names (tenant.h).
 *
 * The one idea: no comparison ever stops early.  Each known token is
 * compared with CRYPTO_memcmp whether or not an earlier one matched, and a
 * token of another length costs a comparison of the same size, so the work
 * done depends on the number of tokens only.
 */
#include "tenant.h"
#include "options.h"

#include <openssl/crypto.h>
#include <string.h>
#include <strings.h>

/* 1 when token (n bytes) is want, else 0; the same work either way. */
static int same_token(const char *want, const char *token, size_t n)
{
    size_t w = strlen(want);

    if (w != n) {
        CRYPTO_memcmp(want, want, w);
        return 0;
    }
    return CRYPTO_memcmp(want, token, n) == 0;
}

int tenant_of(const struct fcmd_options *o, const char *token, size_t n)
{
    int who = TENANT_NONE;

    if (n == 0)
        return TENANT_NONE;
    if (o->auth_token != NULL && same_token(o->auth_token, token, n))
        who = TENANT_INSTANCE;
    for (size_t i = 0; i < o->napps; i++) {
        const char *t = o->apps[i].o.auth_token;
        /* The master refuses a token two holders share: at most one matches. */
        if (t != NULL && same_token(t, token, n))
            who = (int)i + 1;
    }
    return who;
}

int tenant_of_header(const struct fcmd_options *o, const char *v, size_t n)
{
    if (n < 7 || strncasecmp(v, "Bearer ", 7) != 0)
        return TENANT_NONE; /* no secret in the scheme's name: nothing to hide */
    return tenant_of(o, v + 7, n - 7);
}

int tenant_app_protected(const struct fcmd_options *o, unsigned a)
{
    return a >= 1 && a <= o->napps && o->apps[a - 1].o.auth_token != NULL;
}

int tenant_any_protected(const struct fcmd_options *o)
{
    for (size_t i = 0; i < o->napps; i++)
        if (o->apps[i].o.auth_token != NULL)
            return 1;
    return 0;
}
