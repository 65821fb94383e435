/*
 * child/fleet/script.c - Lua scripts that Redis runs by their digest: the
 * call (EVALSHA once Redis holds the script, EVAL and the body until then)
 * and what a NOSCRIPT means for the next one.  script.h has the two ways
 * Redis gets a script's body.
 */
#include "script.h"
#include "fleet_internal.h"

#include <hiredis/hiredis.h>
#include <openssl/evp.h>
#include <stdio.h>
#include <string.h>

int fleet_script_init(struct fleet_script *s, const char *body)
{
    unsigned char md[EVP_MAX_MD_SIZE];
    unsigned int len = 0;

    *s = (struct fleet_script){.body = body};
    if (EVP_Digest(body, strlen(body), md, &len, EVP_sha1(), NULL) != 1 || len != 20)
        return -1;
    for (unsigned i = 0; i < len; i++)
        snprintf(s->sha + 2 * i, 3, "%02x", md[i]);
    return 0;
}

int fleet_script_run(struct fleet *f, struct fleet_script *s, fleet_reply_fn fn, void *arg, size_t cap, int argc,
                     const char **argv, size_t *argvlen)
{
    argv[0] = s->loaded ? "EVALSHA" : "EVAL";
    argv[1] = s->loaded ? s->sha : s->body;
    if (argvlen != NULL) {
        argvlen[0] = strlen(argv[0]);
        argvlen[1] = strlen(argv[1]);
    }
    return fleet_command(f, fn, arg, cap, argc, argv, argvlen);
}

int fleet_script_lost(struct fleet *f, struct fleet_script *s, const redisReply *r)
{
    if (r->type != REDIS_REPLY_ERROR || strncmp(r->str, "NOSCRIPT", 8) != 0) {
        s->loaded = 1;
        return 0;
    }
    if (s->by_link)
        link_reload_scripts(f); /* calls after the load, on the same connection, find it */
    else
        s->loaded = 0; /* the next call carries the body */
    return 1;
}

const char fleet_clean_script[] =
    "local n = 0\n"
    "for _, c in ipairs(redis.call('XINFO', 'CONSUMERS', KEYS[1], ARGV[1])) do\n"
    "  local f = {}\n"
    "  for i = 1, #c, 2 do f[c[i]] = c[i + 1] end\n"
    "  if f['pending'] == 0 and f['idle'] > tonumber(ARGV[2]) and f['name'] ~= ARGV[3] then\n"
    "    redis.call('XGROUP', 'DELCONSUMER', KEYS[1], ARGV[1], f['name'])\n"
    "    n = n + 1\n"
    "  end\n"
    "end\n"
    "return n\n";
