/*
 * child/http/query.h - the query of a request (the text after '?'), read
 * by one parser everywhere: split on '&', names and values percent-decoded
 * ('+' is a space, as forms and URLSearchParams write it), empty pieces
 * skipped, in any order.
 *
 * Each endpoint declares the parameters it takes (the route table in
 * http.c); a query holding another one, one given twice, or one that is not
 * percent-encoded is refused with a 400 naming the parameter before the
 * endpoint runs, so a client that adds a parameter gets an error, never
 * other numbers.  The endpoint then reads the values it takes by name.
 */
#ifndef FCMD_CHILD_HTTP_QUERY_H
#define FCMD_CHILD_HTTP_QUERY_H

#include <h2o.h>
#include <stddef.h>

/* Whether q[0..n) holds only parameters named in names (NULL-terminated; a
 * NULL names takes none), each at most once, names and values percent-
 * encoded with no %00.  Returns 0, or -EINVAL with the reason, naming the
 * parameter, in err. */
int query_check(const char *q, size_t n, const char *const *names, char *err, size_t errlen);

/* Parameter name's value in q[0..n), decoded into out (NUL-terminated):
 * its length, -ENOENT when q does not hold it, -EINVAL when it is not
 * percent-encoded, -ENOSPC when it does not fit outlen.  A name without
 * '=' has the empty value.  The first one counts (query_check refuses a
 * second). */
long query_get(const char *q, size_t n, const char *name, char *out, size_t outlen);

/* s[0..n) as a decimal number from 0 to max (digits only, at most 19):
 * 0 with *out set, or -EINVAL. */
int query_uint(const char *s, size_t n, unsigned long max, unsigned long *out);

/* The same over a request: its query, empty when it has none. */
h2o_iovec_t http_query(const h2o_req_t *req);
/* query_get over req's query. */
long http_query_get(const h2o_req_t *req, const char *name, char *out, size_t outlen);

#endif
