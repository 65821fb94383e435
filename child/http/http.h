/*
 * child/http/http.h - fcmd's HTTP endpoints on libh2o.
 */
#ifndef FCMD_CHILD_HTTP_HTTP_H
#define FCMD_CHILD_HTTP_HTTP_H

#include <h2o.h>

struct child;

/* How far beyond --max-body-bytes h2o still buffers a body: up to that, fcmd
 * answers an oversized body with a JSON 413; beyond it h2o refuses it itself
 * (HTTP/1.1: a plain 413; HTTP/2: RST_STREAM REFUSED_STREAM). */
#define HTTP_ENTITY_SLACK (64u << 10)

/* Registers every endpoint on host.  Returns 0 or -1 (out of memory). */
int http_register(struct child *c, h2o_hostconf_t *host);

/* On SIGUSR1 (logrotate): the access log is opened anew at its path and
 * takes the place of the old one; if that fails, it stays where it was. */
void http_reopen_access_log(struct child *c);

/* At exit: the entries of drain answers not yet written go back into their
 * lists, for the next drain. */
void http_give_back_drains(struct child *c);

#endif
