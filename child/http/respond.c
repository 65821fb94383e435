/*
 * child/http/respond.c - how every endpoint answers: a body of a type, a JSON
 * error, a 405 that says what the endpoint takes, a 503 with Retry-After,
 * and the count of each answer by endpoint and status.
 */
#include "endpoints.h"
#include "../../shm/region.h"
#include "../core/buf.h"

#include <string.h>

int http_respond(h2o_req_t *req, int status, const char *reason, const char *ctype, const char *body, size_t len)
{
    req->res.status = status;
    req->res.reason = reason;
    req->res.content_length = len;
    h2o_add_header(&req->pool, &req->res.headers, H2O_TOKEN_CONTENT_TYPE, NULL, ctype, strlen(ctype));
    h2o_send_inline(req, body, len);
    return 0;
}

static const char *reason_of(int status)
{
    switch (status) {
    case 200: return "OK";
    case 400: return "Bad Request";
    case 404: return "Not Found";
    case 401: return "Unauthorized";
    case 405: return "Method Not Allowed";
    case 413: return "Payload Too Large";
    case 431: return "Request Header Fields Too Large";
    case 503: return "Service Unavailable";
    default: return "Internal Server Error";
    }
}

int http_error(h2o_req_t *req, int status, const char *msg)
{
    struct buf b = BUF_INIT;

    buf_adds(&b, "{\"error\":");
    buf_add_json_string(&b, msg, strlen(msg));
    buf_adds(&b, "}\n");
    if (b.failed)
        http_respond(req, 500, "Internal Server Error", "application/json", "{\"error\":\"out of memory\"}\n", 26);
    else
        http_respond(req, status, reason_of(status), "application/json", b.data, b.len);
    buf_free(&b);
    return 0;
}

int http_respond_buf(h2o_req_t *req, const char *ctype, struct buf *b)
{
    if (b->failed)
        return http_error(req, 500, "out of memory");
    return http_respond(req, 200, "OK", ctype, b->data ? b->data : "", b->len);
}

int http_busy(h2o_req_t *req, const char *msg)
{
    h2o_add_header(&req->pool, &req->res.headers, H2O_TOKEN_RETRY_AFTER, NULL, H2O_STRLIT("1"));
    return http_error(req, 503, msg);
}

/* Answers 405 unless the method is the one the endpoint takes. */
int http_wrong_method(h2o_req_t *req, const char *allowed)
{
    if (h2o_memis(req->method.base, req->method.len, allowed, strlen(allowed)))
        return 0;
    if (strcmp(allowed, "GET") == 0 && h2o_memis(req->method.base, req->method.len, H2O_STRLIT("HEAD")))
        return 0;
    h2o_add_header(&req->pool, &req->res.headers, H2O_TOKEN_ALLOW, NULL, allowed, strlen(allowed));
    http_error(req, 405, "method not allowed");
    return 1;
}

int http_refuse_head(h2o_req_t *req)
{
    h2o_add_header(&req->pool, &req->res.headers, H2O_TOKEN_ALLOW, NULL, H2O_STRLIT("GET"));
    return http_error(req, 405, "HEAD would drain the list without showing it: use GET");
}


void http_count(struct http_server *hs, enum endpoint ep, int status, uint64_t start)
{
    atomic_fetch_add_explicit(&hs->slot->http[ep][shm_http_status_index(status)], 1, memory_order_relaxed);
    if (EP_IS_SEND(ep))
        shm_histogram_observe(&hs->slot->send_latency, shm_send_bounds_us, (uv_hrtime() - start) / 1000);
}
