/*
 * child/http.h - fcmd's HTTP endpoints on libh2o.
 */
#ifndef FCMD_CHILD_HTTP_H
#define FCMD_CHILD_HTTP_H

#include <h2o.h>

struct child;

/* Largest body h2o buffers.  Bodies above REQUEST_MAX_BODY and up to this get
 * fcmd's JSON 413; h2o itself refuses anything larger. */
#define HTTP_MAX_ENTITY (8u << 20)

/* Registers every endpoint on host.  Returns 0 or -1 (out of memory). */
int http_register(struct child *c, h2o_hostconf_t *host);

#endif
