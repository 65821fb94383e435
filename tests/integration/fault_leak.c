/*
 * tests/integration/fault_leak.c - a preloaded leak, for the asan build's
 * leak check (tests/integration/test_leaks.py).
 *
 * curl_multi_cleanup() does nothing: what it would free (the multi handle a
 * worker's sender made, its connection cache) is lost, as it is when a room
 * forgets to free what it made.  A worker calls it only as it stops (or after
 * --upstream-idle-timeout), so LeakSanitizer must report it at a clean exit
 * - which it can only if nothing of the worker's state is still reachable.
 */
#include <curl/curl.h>

CURLMcode curl_multi_cleanup(CURLM *multi)
{
    (void)multi;
    return CURLM_OK;
}
