/*
 * child/store/crc32c.h - CRC-32C (Castagnoli), the checksum of spool records.
 * (Debian ships no C library for it; this is the plain table-driven form.)
 */
#ifndef FCMD_CHILD_STORE_CRC32C_H
#define FCMD_CHILD_STORE_CRC32C_H

#include <stddef.h>
#include <stdint.h>

/* Extends crc (0 to start) over n bytes. */
uint32_t crc32c(uint32_t crc, const void *data, size_t n);

#endif
