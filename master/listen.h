/*
 * master/listen.h - the listening socket the master binds and children share.
 */
#ifndef FCMD_MASTER_LISTEN_H
#define FCMD_MASTER_LISTEN_H

#include <stddef.h>

struct fcmd_options;

/* Binds and listens on the TCP address or UNIX path of the options.
 * Returns the non-blocking descriptor, or -1 with a one-line reason in err. */
int listen_open(const struct fcmd_options *o, char *err, size_t errlen);

/* Removes the UNIX socket file, if the options named one. */
void listen_cleanup(const struct fcmd_options *o);

#endif
