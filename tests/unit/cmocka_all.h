/*
 * tests/unit/cmocka_all.h - cmocka needs these headers before its own.
 */
#ifndef FCMD_TESTS_CMOCKA_ALL_H
#define FCMD_TESTS_CMOCKA_ALL_H

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#endif
