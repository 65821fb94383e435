/*
 * tests/unit/test_tenant.c - whose bearer token a request carries: the
 * instance's, one app's, or nobody's, whatever the order of the apps and
 * with tokens that are prefixes of one another.
 */
#include "cmocka_all.h"

#include <stdio.h>
#include <string.h>

#include "../../common/options.h"
#include "../../common/tenant.h"

static void tokens_name_their_holders(void **state)
{
    static struct fcmd_app apps[3];
    struct fcmd_options o;

    (void)state;
    memset(&o, 0, sizeof(o));
    memset(apps, 0, sizeof(apps));
    snprintf(apps[0].name, sizeof(apps[0].name), "alpha");
    snprintf(apps[1].name, sizeof(apps[1].name), "beta");
    snprintf(apps[2].name, sizeof(apps[2].name), "gamma");
    apps[0].o.auth_token = "alpha-secret";
    apps[1].o.auth_token = "alpha-secret-2"; /* the first one is a prefix of it */
    o.apps = apps;
    o.napps = 3;
    assert_int_equal(tenant_of(&o, "alpha-secret", 12), 1);
    assert_int_equal(tenant_of(&o, "alpha-secret-2", 14), 2);
    assert_int_equal(tenant_of(&o, "alpha-secre", 11), TENANT_NONE);
    assert_int_equal(tenant_of(&o, "", 0), TENANT_NONE);
    assert_int_equal(tenant_of(&o, "instance", 8), TENANT_NONE); /* no instance token set */
    o.auth_token = "instance";
    assert_int_equal(tenant_of(&o, "instance", 8), TENANT_INSTANCE);
    assert_int_equal(tenant_of(&o, "alpha-secret", 12), 1);
    assert_int_equal(tenant_of_header(&o, "Bearer alpha-secret-2", 21), 2);
    assert_int_equal(tenant_of_header(&o, "bearer instance", 15), TENANT_INSTANCE);
    assert_int_equal(tenant_of_header(&o, "Basic instance", 14), TENANT_NONE);
    assert_int_equal(tenant_of_header(&o, "Bearer", 6), TENANT_NONE);
    assert_true(tenant_app_protected(&o, 1));
    assert_true(tenant_app_protected(&o, 2));
    assert_false(tenant_app_protected(&o, 3)); /* gamma has none */
    assert_false(tenant_app_protected(&o, 0)); /* nor the default app */
    assert_false(tenant_app_protected(&o, 4));
    assert_true(tenant_any_protected(&o));
    apps[0].o.auth_token = apps[1].o.auth_token = NULL;
    assert_false(tenant_any_protected(&o));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(tokens_name_their_holders),
    };
    return cmocka_run_group_tests_name("tenant", tests, NULL, NULL);
}
