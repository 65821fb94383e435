/*
 * child/http/http1_guard.c - HTTP/1.1 framing that could smuggle a request.
 *
 * libh2o 2.2.5 frames a request body by the first Content-Length header, by
 * the last Transfer-Encoding, lets Transfer-Encoding win over
 * Content-Length, and takes a folded header line or a bare LF as its parser
 * sees them, all silently.  A proxy in front of fcmd that reads the framing
 * otherwise sees a different end of the request, and the rest of the body
 * becomes a request of its own.  fcmd allows one way only (RFC 9112, 2.2,
 * 5.2, 6.1, 6.3): at most one Content-Length, or one Transfer-Encoding that
 * is exactly "chunked" and no Content-Length; no folded lines; CRLF line
 * ends.  This file interposes picohttpparser's phr_parse_request, which
 * libh2o calls through its PLT, and reports anything else as malformed, so
 * h2o answers 400 and closes the connection.
 */
#include <dlfcn.h>
#include <stddef.h>
#include <string.h>
#include <strings.h>

/* picohttpparser's header, as libh2o 2.2.5 was built with it. */
struct phr_header {
    const char *name;
    size_t name_len;
    const char *value;
    size_t value_len;
};

typedef int (*parse_fn)(const char *, size_t, const char **, size_t *, const char **, size_t *, int *,
                        struct phr_header *, size_t *, size_t);

int phr_parse_request(const char *buf, size_t len, const char **method, size_t *method_len, const char **path,
                      size_t *path_len, int *minor_version, struct phr_header *headers, size_t *num_headers,
                      size_t last_len);

static int is(const struct phr_header *h, const char *name, size_t n)
{
    return h->name_len == n && strncasecmp(h->name, name, n) == 0;
}

static int value_is(const struct phr_header *h, const char *v, size_t n)
{
    return h->value_len == n && strncasecmp(h->value, v, n) == 0;
}

/* Whether the head could frame the body in more than one way. */
static int ambiguous_framing(const char *buf, size_t head_len, const struct phr_header *h, size_t n)
{
    size_t lengths = 0, encodings = 0;

    for (size_t i = 0; i < n; i++) {
        if (h[i].name == NULL)
            return 1; /* a folded continuation line */
        lengths += is(&h[i], "content-length", 14);
        if (is(&h[i], "transfer-encoding", 17)) {
            if (!value_is(&h[i], "chunked", 7))
                return 1;
            encodings++;
        }
    }
    for (size_t i = 0; i < head_len; i++)
        if (buf[i] == '\n' && (i == 0 || buf[i - 1] != '\r'))
            return 1; /* a bare LF ends a line for some readers and not others */
    return lengths > 1 || encodings > 1 || (lengths > 0 && encodings > 0);
}

int phr_parse_request(const char *buf, size_t len, const char **method, size_t *method_len, const char **path,
                      size_t *path_len, int *minor_version, struct phr_header *headers, size_t *num_headers,
                      size_t last_len)
{
    /* Resolved once; the same for the whole process. */
    static parse_fn parse;
    int rc;

    if (parse == NULL) {
        /* POSIX has dlsym's void * hold a function's address; ISO C has no
         * conversion between the two, so the bytes are copied. */
        void *sym = dlsym(RTLD_NEXT, "phr_parse_request");
        _Static_assert(sizeof(sym) == sizeof(parse), "a function pointer is as wide as a void *");
        if (sym == NULL)
            return -1;
        memcpy(&parse, &sym, sizeof(parse));
    }
    rc = parse(buf, len, method, method_len, path, path_len, minor_version, headers, num_headers, last_len);
    if (rc > 0 && ambiguous_framing(buf, (size_t)rc, headers, *num_headers))
        return -1;
    return rc;
}
