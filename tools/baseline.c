/*
 * tools/baseline - the ceiling for fcmd's ingress on this machine.
 *
 * The same worker model as fcmd (a listen socket bound once, one forked
 * child per core, each a libh2o server on its own libuv loop with single
 * accepts) answering "ok\n" to any request, and doing nothing else.
 * Benchmarks report fcmd's ingress as a ratio of this server's.
 */
#include <h2o.h>
#include <h2o/socket/uv-binding.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>
#include <uv.h>

static struct {
    h2o_globalconf_t config;
    h2o_context_t ctx;
    h2o_accept_ctx_t accept_ctx;
    uv_loop_t loop;
    uv_tcp_t listener;
} server;

static int on_req(h2o_handler_t *self, h2o_req_t *req)
{
    (void)self;
    req->res.status = 200;
    req->res.reason = "OK";
    req->res.content_length = 3;
    h2o_add_header(&req->pool, &req->res.headers, H2O_TOKEN_CONTENT_TYPE, NULL, H2O_STRLIT("text/plain"));
    h2o_send_inline(req, "ok\n", 3);
    return 0;
}

static void free_handle(uv_handle_t *h)
{
    free(h);
}

static void on_accept(uv_stream_t *listener, int status)
{
    uv_tcp_t *conn;

    if (status != 0 || (conn = malloc(sizeof(*conn))) == NULL)
        return;
    uv_tcp_init(listener->loop, conn);
    if (uv_accept(listener, (uv_stream_t *)conn) != 0) {
        uv_close((uv_handle_t *)conn, free_handle);
        return;
    }
    uv_tcp_nodelay(conn, 1);
    h2o_accept(&server.accept_ctx, h2o_uv_socket_create((uv_stream_t *)conn, free_handle));
}

static int child(int fd)
{
    h2o_hostconf_t *host;

    setenv("UV_TCP_SINGLE_ACCEPT", "1", 1);
    prctl(PR_SET_PDEATHSIG, SIGTERM);
    uv_loop_init(&server.loop);
    h2o_config_init(&server.config);
    host = h2o_config_register_host(&server.config, h2o_iovec_init(H2O_STRLIT("default")), 65535);
    h2o_create_handler(h2o_config_register_path(host, "/", 0), sizeof(h2o_handler_t))->on_req = on_req;
    h2o_context_init(&server.ctx, &server.loop, &server.config);
    server.accept_ctx.ctx = &server.ctx;
    server.accept_ctx.hosts = server.config.hosts;
    uv_tcp_init(&server.loop, &server.listener);
    if (uv_tcp_open(&server.listener, fd) != 0 || uv_listen((uv_stream_t *)&server.listener, 1024, on_accept) != 0)
        return 1;
    uv_run(&server.loop, UV_RUN_DEFAULT);
    return 0;
}

int main(int argc, char **argv)
{
    struct sockaddr_in sin = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    long workers = sysconf(_SC_NPROCESSORS_ONLN);
    int fd, on = 1;

    for (int i = 1; i + 1 < argc; i += 2) {
        if (strcmp(argv[i], "--port") == 0)
            sin.sin_port = htons((uint16_t)atoi(argv[i + 1]));
        else if (strcmp(argv[i], "--workers") == 0)
            workers = atol(argv[i + 1]);
    }
    if ((fd = socket(AF_INET, SOCK_STREAM, 0)) < 0 || setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &on, sizeof(on)) != 0 ||
        bind(fd, (struct sockaddr *)&sin, sizeof(sin)) != 0 || listen(fd, 1024) != 0) {
        perror("baseline: cannot listen");
        return 2;
    }
    signal(SIGPIPE, SIG_IGN);
    for (long i = 0; i < workers; i++)
        if (fork() == 0)
            return child(fd);
    /* The parent waits; SIGTERM ends it, and the children follow it. */
    while (wait(NULL) > 0)
        ;
    return 0;
}
