/*
 * child/http.h - fcmd's HTTP endpoints on libh2o.
 */
#ifndef FCMD_CHILD_HTTP_H
#define FCMD_CHILD_HTTP_H

#include <h2o.h>

struct child;

/* The least h2o buffers of a body: twice --max-body-bytes when that is more.
 * Up to that, fcmd answers an oversized body with a JSON 413; beyond it h2o
 * refuses it itself. */
#define HTTP_MAX_ENTITY (8u << 20)

/* Registers every endpoint on host.  Returns 0 or -1 (out of memory). */
int http_register(struct child *c, h2o_hostconf_t *host);

#endif
