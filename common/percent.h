/*
 * common/percent.h - percent-decoding, the one decoder of %XX escapes:
 * form fields (where '+' is a space) and the user and password of a
 * --redis URL.
 */
#ifndef FCMD_COMMON_PERCENT_H
#define FCMD_COMMON_PERCENT_H

#include <stddef.h>

#define PERCENT_PLUS 1u   /* '+' decodes to a space (application/x-www-form-urlencoded) */
#define PERCENT_NO_NUL 2u /* %00 is refused */

/* Decodes s[0..n) into out, NUL-terminated; outlen counts the NUL, and
 * n + 1 bytes are always enough.  Returns the decoded length, -EINVAL for a
 * broken escape (or %00 with PERCENT_NO_NUL), or -ENOSPC when it does not
 * fit. */
long percent_decode(const char *s, size_t n, char *out, size_t outlen, unsigned flags);

#endif
