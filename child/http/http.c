/*
 * child/http/http.c - routing: one catch-all h2o handler looks the exact
 * path up in a route table, checks the bearer token of the route's scope
 * and the query against the parameters the route takes, and calls the
 * endpoint (send.c, report.c, drain.c, ops.c, status.c), so each is one
 * small function and unknown paths get a JSON 404.  Also the access log.
 */
#include "http.h"
#include "conn.h"
#include "endpoints.h"
#include "query.h"
#include "../../common/log.h"
#include "../../common/options.h"
#include "../../common/tenant.h"
#include "../../shm/region.h"
#include "../core/buf.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

struct fcmd_handler {
    h2o_handler_t super;
    struct http_server *hs;
};

/* The query parameters each endpoint takes (query.h): any other is a 400. */
static const char *const report_params[] = {"scope", "app", NULL};
static const char *const drain_params[] = {"app", NULL};
static const char *const readyz_params[] = {"app", NULL};
static const char *const push_params[] = {"wait", NULL};

/* A provider's send endpoint: http_on_send for its upstream kind. */
#define SEND_ROUTE(ID, NAME, LABEL, PATH, ENDPOINT, HINT) {PATH, NULL, EP_SEND_##ID, AUTH_SEND, NULL, UPSTREAM_##ID, 0},

static const struct {
    const char *path;
    endpoint_fn fn; /* NULL for a send endpoint */
    enum endpoint id;
    int scope;                 /* AUTH_* bit that --auth-token protects, 0 for the health checks */
    const char *const *params; /* the query parameters it takes, NULL for none */
    int upstream;              /* a send endpoint's upstream kind, else -1 */
    int prefix;                /* path is where the endpoint's paths begin */
} routes[] = {
    FCMD_PROVIDERS(SEND_ROUTE)
    {"/gcm/report", http_on_report, EP_REPORT, AUTH_REPORT, report_params, -1, 0},
    {"/gcm/report/canonical", http_on_canonical, EP_CANONICAL, AUTH_REPORT, drain_params, -1, 0},
    {"/gcm/report/notregistered", http_on_notregistered, EP_NOTREGISTERED, AUTH_REPORT, drain_params, -1, 0},
    {"/metrics", http_on_metrics, EP_METRICS, AUTH_METRICS, NULL, -1, 0},
    {"/healthz", http_on_healthz, EP_HEALTHZ, 0, NULL, -1, 0},
    /* Open to load balancers; what it tells beyond ready or not needs the
     * report scope's token (ops.c). */
    {"/readyz", http_on_readyz, EP_READYZ, 0, readyz_params, -1, 0},
    {HTTP_PUSH_PREFIX, http_on_push, EP_PUSH, AUTH_REPORT, push_params, -1, 1},
    /* The status page holds no data: what it shows, it reads from the
     * report with the report scope's token. */
    {"/", http_on_status, EP_STATUS, 0, NULL, -1, 0},
    {"/status", http_on_status, EP_STATUS, 0, NULL, -1, 0},
};

int http_who(const struct http_server *hs, h2o_req_t *req)
{
    ssize_t h = h2o_find_header(&req->headers, H2O_TOKEN_AUTHORIZATION, -1);

    if (h < 0)
        return TENANT_NONE;
    return tenant_of_header(hs->opts, req->headers.entries[h].value.base, req->headers.entries[h].value.len);
}

int http_authorized(const struct http_server *hs, h2o_req_t *req, int scope)
{
    (void)req;
    return hs->who == TENANT_INSTANCE || hs->opts->auth_token == NULL || !(hs->auth_scopes & scope);
}

/* Whether the route of scope is open to the request's holder; answers 401
 * or 403 when not.  An app's token reaches every route that can be held to
 * its app (the endpoint holds it there); /metrics holds every app's
 * counters, so it is the instance's. */
static int route_open(struct http_server *hs, h2o_req_t *req, int scope)
{
    if (hs->who == TENANT_INSTANCE)
        return 1;
    if (hs->who >= 1 && scope == AUTH_METRICS) {
        http_error(req, 403, "an app's token does not read /metrics, which holds every app's counters: use the "
                             "instance's token");
        return 0;
    }
    if (hs->who >= 1)
        return 1;
    if (!http_authorized(hs, req, scope)) {
        http_unauthorized(req);
        return 0;
    }
    return 1;
}

int http_app_pick(struct http_server *hs, h2o_req_t *req, const char *name, long n, int *a)
{
    int who = hs->who;

    if (n == -ENOENT) {
        *a = who >= 1 ? who : (int)APP_DEFAULT;
    } else if (who >= 1) {
        const char *own = options_app_name(hs->opts, (unsigned)who);
        /* Any other name, known or not, is refused alike: a tenant learns
         * nothing of the other apps, not even which exist. */
        if (n < 0 || strlen(own) != (size_t)n || memcmp(own, name, (size_t)n) != 0) {
            char msg[160];
            snprintf(msg, sizeof(msg), "this token is app \"%s\"'s: it reaches no other app", own);
            http_error(req, 403, msg);
            return -1;
        }
        *a = who;
    } else if (n < 0 || !options_app_name_ok(name, (size_t)n) ||
               (*a = options_app_find(hs->opts, name, (size_t)n)) < 0) {
        http_error(req, 400, "unknown app");
        return -1;
    }
    if (who == TENANT_NONE && tenant_app_protected(hs->opts, (unsigned)*a)) {
        http_unauthorized_app(req);
        return -1;
    }
    return 0;
}

int http_may_see_app(const struct http_server *hs, unsigned a)
{
    if (hs->who == TENANT_INSTANCE)
        return 1;
    if (hs->who >= 1)
        return (unsigned)hs->who == a;
    return !tenant_app_protected(hs->opts, a);
}

int http_unauthorized_app(h2o_req_t *req)
{
    h2o_add_header(&req->pool, &req->res.headers, H2O_TOKEN_WWW_AUTHENTICATE, NULL, H2O_STRLIT("Bearer"));
    return http_error(req, 401, "this app takes its own token or the instance's: missing or wrong bearer token");
}

int http_unauthorized(h2o_req_t *req)
{
    h2o_add_header(&req->pool, &req->res.headers, H2O_TOKEN_WWW_AUTHENTICATE, NULL, H2O_STRLIT("Bearer"));
    return http_error(req, 401, "missing or wrong bearer token");
}

static size_t header_bytes(const h2o_req_t *req)
{
    size_t n = req->path.len;

    for (size_t i = 0; i < req->headers.size; i++)
        n += req->headers.entries[i].name->len + req->headers.entries[i].value.len + 4;
    return n;
}

static int on_req(h2o_handler_t *self, h2o_req_t *req)
{
    struct http_server *hs = ((struct fcmd_handler *)self)->hs;
    size_t plen = req->path_normalized.len, i;
    enum endpoint ep = EP_OTHER;
    uint64_t start = uv_hrtime();

    conn_progress(hs->conns, req); /* handed to fcmd: the connection is not idle */
    hs->who = TENANT_NONE; /* until the route's check asks: never the last request's */
    /* Which child answered: for operators chasing a problem, and for tests. */
    h2o_add_header_by_str(&req->pool, &req->res.headers, H2O_STRLIT("x-fcmd-worker"), 0, NULL, hs->worker_id,
                          strlen(hs->worker_id));
    if (header_bytes(req) > (size_t)hs->opts->max_header_bytes) {
        http_error(req, 431, "request headers are too large");
        http_count(hs, EP_OTHER, 431, start);
        return 0;
    }
    for (i = 0; i < sizeof(routes) / sizeof(routes[0]); i++)
        if (routes[i].prefix ? plen > strlen(routes[i].path) &&
                                   memcmp(req->path_normalized.base, routes[i].path, strlen(routes[i].path)) == 0
                             : h2o_memis(req->path_normalized.base, plen, routes[i].path, strlen(routes[i].path)))
            break;
    if (i < sizeof(routes) / sizeof(routes[0])) {
        h2o_iovec_t q = http_query(req);
        char err[256];
        ep = routes[i].id;
        hs->who = http_who(hs, req);
        if (!route_open(hs, req, routes[i].scope)) {
            /* answered */
        } else if (query_check(q.base, q.len, routes[i].params, err, sizeof(err)) != 0) {
            http_error(req, 400, err);
        } else {
            routes[i].fn != NULL ? routes[i].fn(hs, req) : http_on_send(hs, req, routes[i].upstream);
        }
    } else {
        http_error(req, 404, "no such endpoint");
    }
    /* Every answer is sent by now, so its status is known - unless it waits
     * for the spool, and then on_durable counts it. */
    if (req->res.status == 0)
        return 0;
    http_count(hs, ep, req->res.status, start);
    return 0;
}

/* The access log, one line per request in Apache's combined format.  h2o
 * formats the line; fcmd owns the descriptor, because h2o's own access-log
 * handle keeps its descriptor private and never reopens it (logrotate). */
struct access_logger {
    h2o_logger_t super;
    h2o_logconf_t *conf;
    struct http_server *hs;
};

static int open_access_log(const char *path)
{
    return open(path, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0640);
}

static void log_access(h2o_logger_t *logger, h2o_req_t *req)
{
    struct access_logger *al = (struct access_logger *)logger;
    struct http_server *hs = al->hs;
    char buf[4096], *line;
    size_t len = sizeof(buf);

    line = h2o_log_request(al->conf, req, &len, buf);
    /* One write() per line, so workers sharing the file never interleave. */
    if (write(hs->access_log_fd, line, len) < 0) {
        if (!hs->access_log_failing)
            log_error("write(%s) failed, access-log lines are lost until it works again: %s", hs->opts->access_log,
                      strerror(errno));
        hs->access_log_failing = 1;
    } else {
        hs->access_log_failing = 0;
    }
    if (line != buf)
        free(line);
}

static void dispose_access_log(h2o_logger_t *logger)
{
    h2o_logconf_dispose(((struct access_logger *)logger)->conf);
}

static int register_access_log(struct http_server *hs, h2o_pathconf_t *path)
{
    static const char combined[] = "%h %l %u %t \"%r\" %s %b \"%{Referer}i\" \"%{User-agent}i\"";
    char errbuf[256];
    h2o_logconf_t *conf = h2o_logconf_compile(combined, H2O_LOGCONF_ESCAPE_APACHE, errbuf);
    struct access_logger *al;

    if (conf == NULL) {
        log_error("h2o_logconf_compile() failed: %s", errbuf);
        return -1;
    }
    if ((hs->access_log_fd = open_access_log(hs->opts->access_log)) < 0) {
        log_error("open(%s) failed: %s", hs->opts->access_log, strerror(errno));
        h2o_logconf_dispose(conf);
        return -1;
    }
    al = (struct access_logger *)h2o_create_logger(path, sizeof(*al));
    al->super.log_access = log_access;
    al->super.dispose = dispose_access_log;
    al->conf = conf;
    al->hs = hs;
    return 0;
}

int http_register(struct http_server *hs, h2o_hostconf_t *host)
{
    h2o_pathconf_t *path = h2o_config_register_path(host, "/", 0);
    struct fcmd_handler *h = (struct fcmd_handler *)h2o_create_handler(path, sizeof(*h));

    if (h == NULL)
        return -1;
    h2o_linklist_init_anchor(&hs->drains);
    h->super.on_req = on_req;
    h->hs = hs;
    if (hs->opts->access_log != NULL && register_access_log(hs, path) != 0)
        return -1;
    return 0;
}

void http_reopen_access_log(struct http_server *hs)
{
    int fd;

    if (hs->opts->access_log == NULL)
        return;
    if ((fd = open_access_log(hs->opts->access_log)) < 0) {
        log_error("open(%s) failed, the access log stays where it was: %s", hs->opts->access_log, strerror(errno));
        return;
    }
    /* dup3() puts the new file under the old descriptor in one step: there is
     * no moment without an access log, and the logger needs no update. */
    if (dup3(fd, hs->access_log_fd, O_CLOEXEC) < 0)
        log_error("dup3() of the access log failed, it stays where it was: %s", strerror(errno));
    else
        log_info("access log reopened at %s", hs->opts->access_log);
    close(fd);
    hs->access_log_failing = 0;
}

void http_close(struct http_server *hs)
{
    http_close_push_waits(hs);
    if (hs->access_log_fd >= 0)
        close(hs->access_log_fd);
    hs->access_log_fd = -1;
}
