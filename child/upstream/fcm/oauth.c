/*
 * child/upstream/fcm/oauth.c - JWT-bearer token exchange and refresh.
 *
 * One token request at a time, as a transfer on the sender's multi handle;
 * one timer drives both the early refresh and the retries after a failure.
 * The token only ever appears in the Authorization header it is used in,
 * never in a log line.
 */
#include "oauth.h"
#include "../../../common/log.h"
#include "../../../common/service_account.h"
#include "../../../shm/region.h"
#include "../../../common/backoff.h"
#include "../../core/buf.h"
#include "../../../common/json.h"
#include "../jwt.h"
#include "../sender.h"
#include "../upstream.h"

#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#define GRANT "grant_type=urn%3Aietf%3Aparams%3Aoauth%3Agrant-type%3Ajwt-bearer&assertion="
#define MAX_ANSWER (64u << 10)
#define MIN_RETRY_MS 200

struct oauth {
    struct sender_transfer xfer; /* first: the easy handle's PRIVATE */
    uv_loop_t *loop;
    const struct service_account *sa;
    struct sender *sender;
    struct shm_slot *slot;
    uint64_t bit; /* the app's bit in slot->no_token */
    void (*on_token)(void *);
    void *arg;
    CURL *easy;
    struct buf request, answer;
    char error[CURL_ERROR_SIZE];
    char *header;        /* "Authorization: Bearer <token>", or NULL */
    unsigned gen;        /* bumped with every new token */
    uint64_t expires_at; /* loop time, ms */
    int fetching;
    unsigned failures; /* in a row */
    uv_timer_t timer;
    uint64_t rng;
};

static void fetch(struct oauth *o);

int oauth_assertion(const struct service_account *sa, time_t now, struct buf *out)
{
    const struct jwt_header h = {.alg = JWT_RS256, .typ = "JWT", .kid = sa->private_key_id};
    struct buf claims = BUF_INIT;
    int rc;

    buf_adds(&claims, "{\"iss\":");
    buf_add_json_string(&claims, sa->client_email, strlen(sa->client_email));
    buf_adds(&claims, ",\"scope\":\"" OAUTH_SCOPE "\",\"aud\":");
    buf_add_json_string(&claims, sa->token_uri, strlen(sa->token_uri));
    buf_addf(&claims, ",\"iat\":%lld,\"exp\":%lld}", (long long)now, (long long)now + OAUTH_ASSERTION_LIFETIME);
    rc = claims.failed ? -1 : jwt_sign(sa->key, &h, claims.data, claims.len, out);
    buf_free(&claims);
    return rc;
}

int oauth_parse_response(const char *body, size_t len, char **token, long *expires_in)
{
    struct json_doc d;
    int t, e;
    long n;

    *token = NULL;
    if (json_parse(&d, body, len) != 0)
        return -1;
    t = json_find(&d, 0, "access_token");
    e = json_find(&d, 0, "expires_in");
    *expires_in = e >= 0 && d.tok[e].type == JSMN_PRIMITIVE ? atol(json_tokptr(&d, e)) : 3600;
    if (t < 0 || d.tok[t].type != JSMN_STRING || json_toklen(&d, t) == 0 || *expires_in <= 0 ||
        (*token = malloc(json_toklen(&d, t) + 1)) == NULL || (n = json_unescape(&d, t, *token)) <= 0) {
        json_free(&d);
        free(*token);
        *token = NULL;
        return -1;
    }
    json_free(&d);
    /* It goes into a header line: printable ASCII only. */
    for (long i = 0; i < n; i++) {
        if ((*token)[i] <= 0x20 || (*token)[i] >= 0x7f) {
            free(*token);
            *token = NULL;
            return -1;
        }
    }
    return 0;
}

static size_t on_answer(char *p, size_t size, size_t n, void *userp)
{
    struct oauth *o = userp;

    if (o->answer.len + size * n > MAX_ANSWER)
        return 0;
    buf_add(&o->answer, p, size * n);
    return o->answer.failed ? 0 : size * n;
}

static size_t ignore_header(char *p, size_t size, size_t n, void *userp)
{
    (void)p;
    (void)userp;
    return size * n;
}

static void on_timer(uv_timer_t *t)
{
    fetch(t->data);
}

/* The token endpoint's own words, when it gave any: {"error": ..., "error_description": ...}. */
static void describe_failure(struct oauth *o, long status, CURLcode code, char *out, size_t outlen)
{
    struct json_doc d;
    int e, desc;

    if (code != CURLE_OK) {
        snprintf(out, outlen, "%s", o->error[0] ? o->error : curl_easy_strerror(code));
        return;
    }
    if (status != 200) {
        snprintf(out, outlen, "HTTP %ld", status);
        if (o->answer.len > 0 && json_parse(&d, o->answer.data, o->answer.len) == 0) {
            size_t n = strlen(out);
            if ((e = json_find(&d, 0, "error")) >= 0 && d.tok[e].type == JSMN_STRING)
                snprintf(out + n, outlen - n, ": %.*s", (int)(json_toklen(&d, e) > 80 ? 80 : json_toklen(&d, e)),
                         json_tokptr(&d, e));
            n = strlen(out);
            if ((desc = json_find(&d, 0, "error_description")) >= 0 && d.tok[desc].type == JSMN_STRING)
                snprintf(out + n, outlen - n, " (%.*s)",
                         (int)(json_toklen(&d, desc) > 160 ? 160 : json_toklen(&d, desc)), json_tokptr(&d, desc));
            json_free(&d);
        }
        return;
    }
    snprintf(out, outlen, "HTTP 200 without a usable access_token");
}

static void failed(struct oauth *o, long status, CURLcode code)
{
    char why[320], uri[512];
    uint64_t delay;

    o->failures++;
    shm_add(o->slot, SHM_OAUTH_FAILURES, 1);
    if (o->header == NULL)
        atomic_fetch_or(&o->slot->no_token, o->bit);
    delay = backoff_delay_ms(o->failures > 6 ? 6 : o->failures - 1, -1, backoff_random(&o->rng));
    if (delay < MIN_RETRY_MS)
        delay = MIN_RETRY_MS;
    describe_failure(o, status, code, why, sizeof(why));
    log_warn("oauth: token request for %s to %s failed (%s)%s; next try in %llu ms", o->sa->client_email,
             log_url(o->sa->token_uri, uri, sizeof(uri)), why, o->header ? "" : ": nothing is sent until it succeeds",
             (unsigned long long)delay);
    uv_timer_start(&o->timer, on_timer, delay, 0);
}

static void on_done(struct sender_transfer *t, CURLcode code)
{
    struct oauth *o = (struct oauth *)t;
    long status = 0, lifetime;
    char *token, uri[512];
    struct buf header = BUF_INIT;

    o->fetching = 0;
    curl_easy_getinfo(o->easy, CURLINFO_RESPONSE_CODE, &status);
    if (code != CURLE_OK || status != 200 ||
        oauth_parse_response(o->answer.data, o->answer.len, &token, &lifetime) != 0) {
        failed(o, status, code);
        return;
    }
    buf_adds(&header, "Authorization: Bearer ");
    buf_adds(&header, token);
    free(token);
    if (header.failed) {
        failed(o, status, code);
        return;
    }
    free(o->header);
    o->header = header.data;
    o->gen++;
    o->expires_at = uv_now(o->loop) + (uint64_t)lifetime * 1000;
    o->failures = 0;
    atomic_fetch_and(&o->slot->no_token, ~o->bit);
    shm_add(o->slot, SHM_OAUTH_TOKENS, 1);
    log_info("oauth: new access token for %s from %s, valid for %ld s", o->sa->client_email,
             log_url(o->sa->token_uri, uri, sizeof(uri)), lifetime);
    /* Refresh at 80% of the lifetime, while the current token still works. */
    uv_timer_start(&o->timer, on_timer, (uint64_t)lifetime * 800, 0);
    o->on_token(o->arg);
}

static void fetch(struct oauth *o)
{
    if (o->fetching)
        return;
    uv_timer_stop(&o->timer);
    buf_reset(&o->request);
    buf_reset(&o->answer);
    o->error[0] = '\0';
    buf_adds(&o->request, GRANT);
    if (oauth_assertion(o->sa, time(NULL), &o->request) != 0 || o->request.failed) {
        log_error("oauth: cannot sign the token request");
        buf_free(&o->request);
        failed(o, 0, CURLE_OUT_OF_MEMORY);
        return;
    }
    curl_easy_setopt(o->easy, CURLOPT_POSTFIELDS, o->request.data);
    curl_easy_setopt(o->easy, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)o->request.len);
    if (sender_add(o->sender, o->easy, &o->xfer) != 0) {
        failed(o, 0, CURLE_FAILED_INIT);
        return;
    }
    o->fetching = 1;
}

const char *oauth_header(struct oauth *o, unsigned *gen)
{
    if (o->header != NULL && uv_now(o->loop) >= o->expires_at) {
        free(o->header);
        o->header = NULL;
        atomic_fetch_or(&o->slot->no_token, o->bit);
        fetch(o);
    }
    *gen = o->gen;
    return o->header;
}

void oauth_refused(struct oauth *o, unsigned gen)
{
    if (gen != o->gen || o->header == NULL)
        return;
    log_warn("oauth: FCM refused the access token; fetching a new one");
    free(o->header);
    o->header = NULL;
    atomic_fetch_or(&o->slot->no_token, o->bit);
    fetch(o);
}

struct oauth *oauth_create(uv_loop_t *loop, const struct service_account *sa, struct sender *s, struct shm_slot *slot,
                           unsigned app, void (*on_token)(void *), void *arg)
{
    struct oauth *o = calloc(1, sizeof(*o));

    if (o == NULL || (o->easy = sender_new_easy(s)) == NULL) {
        free(o);
        return NULL;
    }
    o->xfer.done = on_done;
    o->loop = loop;
    o->sa = sa;
    o->sender = s;
    o->slot = slot;
    o->bit = (uint64_t)1 << (app % 64);
    o->on_token = on_token;
    o->arg = arg;
    o->rng = ((uint64_t)getpid() << 20) ^ (uint64_t)time(NULL) ^ 0x2545f4914f6cdd1dull;
    uv_timer_init(loop, &o->timer);
    o->timer.data = o;
    /* The token endpoint is its own server: plain HTTP/2 negotiation, no waiting for multiplexing. */
    curl_easy_setopt(o->easy, CURLOPT_URL, sa->token_uri);
    curl_easy_setopt(o->easy, CURLOPT_HTTP_VERSION, (long)CURL_HTTP_VERSION_2TLS);
    curl_easy_setopt(o->easy, CURLOPT_PIPEWAIT, 0L);
    curl_easy_setopt(o->easy, CURLOPT_WRITEFUNCTION, on_answer);
    curl_easy_setopt(o->easy, CURLOPT_WRITEDATA, o);
    curl_easy_setopt(o->easy, CURLOPT_HEADERFUNCTION, ignore_header);
    curl_easy_setopt(o->easy, CURLOPT_ERRORBUFFER, o->error);
    atomic_fetch_or(&slot->no_token, o->bit);
    fetch(o);
    return o;
}

static void free_oauth(uv_handle_t *h)
{
    free(h->data);
}

void oauth_free(struct oauth *o)
{
    if (o == NULL)
        return;
    if (o->fetching)
        sender_remove(o->sender, o->easy);
    curl_easy_cleanup(o->easy);
    if (o->header != NULL) {
        explicit_bzero(o->header, strlen(o->header)); /* a credential */
        free(o->header);
    }
    buf_free(&o->request);
    buf_free(&o->answer);
    uv_close((uv_handle_t *)&o->timer, free_oauth);
}
