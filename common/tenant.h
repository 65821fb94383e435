/*
 * common/tenant.h - whose bearer token a request carries: the instance's
 * (--auth-token), one app's ([app NAME] auth_token_file), or nobody's.
 *
 * Every token is compared, in constant time, whatever matched first, so the
 * time an answer takes tells neither whether a token is right nor which
 * app's it is.
 */
#ifndef FCMD_COMMON_TENANT_H
#define FCMD_COMMON_TENANT_H

#include <stddef.h>

struct fcmd_options;

#define TENANT_NONE (-1)     /* no token, or one that is nobody's */
#define TENANT_INSTANCE (-2) /* the instance's token: every app */

/* The holder of the n bytes of token: TENANT_INSTANCE, the index of the app
 * whose token it is (1 + its place in o->apps), or TENANT_NONE. */
int tenant_of(const struct fcmd_options *o, const char *token, size_t n);

/* The holder named by an Authorization header's value (v, n bytes): its
 * "Bearer " token's, TENANT_NONE for any other header. */
int tenant_of_header(const struct fcmd_options *o, const char *v, size_t n);

/* Whether app index a has a token of its own (the default app never has). */
int tenant_app_protected(const struct fcmd_options *o, unsigned a);

/* Whether any app has a token of its own. */
int tenant_any_protected(const struct fcmd_options *o);

#endif
