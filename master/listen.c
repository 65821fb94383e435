/*
 * master/listen.c - binding the shared listen socket.
 *
 * The master binds once, before any fork, so a bad address fails the start
 * with exit status 2 and the children all accept from the same descriptor.
 */
#include "listen.h"
#include "../common/options.h"

#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#define LISTEN_BACKLOG 1024

static int listen_unix(const char *path, int mode, char *err, size_t errlen)
{
    struct sockaddr_un sun = {.sun_family = AF_UNIX};
    struct stat st;
    int fd;

    if (strlen(path) >= sizeof(sun.sun_path)) {
        snprintf(err, errlen, "--unix: path \"%s\" is too long", path);
        return -1;
    }
    strcpy(sun.sun_path, path);
    if ((fd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0)) < 0) {
        snprintf(err, errlen, "socket(AF_UNIX) failed: %s", strerror(errno));
        return -1;
    }
    /* A socket file left by a previous run is stale when nobody answers on it. */
    if (lstat(path, &st) == 0 && S_ISSOCK(st.st_mode)) {
        int probe = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
        if (probe >= 0 && connect(probe, (struct sockaddr *)&sun, sizeof(sun)) != 0 && errno == ECONNREFUSED)
            unlink(path);
        if (probe >= 0)
            close(probe);
    }
    if (bind(fd, (struct sockaddr *)&sun, sizeof(sun)) != 0 || listen(fd, LISTEN_BACKLOG) != 0) {
        snprintf(err, errlen, "cannot listen on unix:%s: %s", path, strerror(errno));
        close(fd);
        return -1;
    }
    if (mode >= 0 && chmod(path, (mode_t)mode) != 0) {
        snprintf(err, errlen, "--socket-mode: chmod(%s) failed: %s", path, strerror(errno));
        close(fd);
        unlink(path);
        return -1;
    }
    return fd;
}

static int listen_tcp(const char *host, int port, char *err, size_t errlen)
{
    struct addrinfo hints = {.ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM, .ai_flags = AI_PASSIVE};
    struct addrinfo *res;
    char addr[256], service[16];
    size_t len = strlen(host);
    int fd, on = 1, rc;

    /* Accept "[::1]" as well as "::1". */
    if (len >= 2 && host[0] == '[' && host[len - 1] == ']')
        snprintf(addr, sizeof(addr), "%.*s", (int)(len - 2), host + 1);
    else
        snprintf(addr, sizeof(addr), "%s", host);
    snprintf(service, sizeof(service), "%d", port);
    if ((rc = getaddrinfo(addr, service, &hints, &res)) != 0) {
        snprintf(err, errlen, "cannot resolve listen address \"%s\": %s", host, gai_strerror(rc));
        return -1;
    }
    fd = socket(res->ai_family, res->ai_socktype | SOCK_NONBLOCK | SOCK_CLOEXEC, res->ai_protocol);
    if (fd < 0) {
        snprintf(err, errlen, "socket() failed: %s", strerror(errno));
        freeaddrinfo(res);
        return -1;
    }
    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &on, sizeof(on));
    if (bind(fd, res->ai_addr, res->ai_addrlen) != 0 || listen(fd, LISTEN_BACKLOG) != 0) {
        snprintf(err, errlen, "cannot listen on %s port %d: %s", host, port, strerror(errno));
        close(fd);
        fd = -1;
    }
    freeaddrinfo(res);
    return fd;
}

int listen_open(const struct fcmd_options *o, char *err, size_t errlen)
{
    return o->unix_path ? listen_unix(o->unix_path, options_socket_mode(o), err, errlen)
                        : listen_tcp(o->host, o->port, err, errlen);
}

void listen_cleanup(const struct fcmd_options *o)
{
    if (o->unix_path != NULL)
        unlink(o->unix_path);
}
