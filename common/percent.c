/*
 * common/percent.c - percent-decoding: %XX with two hex digits of either
 * case; anything else is copied as it is.
 */
#include "percent.h"

#include <errno.h>

static int hexval(char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    return -1;
}

long percent_decode(const char *s, size_t n, char *out, size_t outlen, unsigned flags)
{
    size_t o = 0;

    for (size_t i = 0; i < n; i++) {
        char c = s[i];
        if (c == '%') {
            int hi, lo;
            if (i + 2 >= n)
                return -EINVAL;
            if ((hi = hexval(s[i + 1])) < 0 || (lo = hexval(s[i + 2])) < 0)
                return -EINVAL;
            if ((flags & PERCENT_NO_NUL) && hi == 0 && lo == 0)
                return -EINVAL;
            c = (char)(hi * 16 + lo);
            i += 2;
        } else if (c == '+' && (flags & PERCENT_PLUS)) {
            c = ' ';
        }
        if (o + 1 >= outlen)
            return -ENOSPC;
        out[o++] = c;
    }
    if (outlen == 0)
        return -ENOSPC;
    out[o] = '\0';
    return (long)o;
}
