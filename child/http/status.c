/*
 * child/http/status.c - the status page at / and /status: one HTML file
 * (status.html, embedded at build time by tools/embed-page) that holds no
 * data, so it needs no token; its script reads /gcm/report and /readyz
 * with the token the operator types in.  The page runs under a CSP that
 * allows its own inline script and style by their hashes and nothing else.
 */
#include "endpoints.h"
#include "../../common/options.h"

#include <stddef.h>
#include <string.h>

/* Defined by the build's gen/status_page.c, made from status.html. */
extern const unsigned char status_page_html[];
extern const size_t status_page_len;
extern const char status_page_csp[];

static void add(h2o_req_t *req, const char *name, size_t nlen, const char *value, size_t vlen)
{
    h2o_add_header_by_str(&req->pool, &req->res.headers, name, nlen, 0, NULL, value, vlen);
}

int http_on_status(struct http_server *hs, h2o_req_t *req)
{
    if (http_wrong_method(req, "GET"))
        return 0;
    add(req, H2O_STRLIT("content-security-policy"), status_page_csp, strlen(status_page_csp));
    add(req, H2O_STRLIT("x-content-type-options"), H2O_STRLIT("nosniff"));
    add(req, H2O_STRLIT("referrer-policy"), H2O_STRLIT("no-referrer"));
    add(req, H2O_STRLIT("x-frame-options"), H2O_STRLIT("DENY"));
    h2o_add_header(&req->pool, &req->res.headers, H2O_TOKEN_CACHE_CONTROL, NULL, H2O_STRLIT("no-store"));
    /* So the page asks for the token before its first read of the report,
     * rather than after a refused one: the 401 would tell as much. */
    if (!http_authorized(hs, req, AUTH_REPORT))
        add(req, H2O_STRLIT("x-fcmd-report-auth"), H2O_STRLIT("bearer"));
    return http_respond(req, 200, "OK", "text/html; charset=utf-8", (const char *)status_page_html,
                        status_page_len);
}
