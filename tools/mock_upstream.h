/*
 * tools/mock_upstream.h - what the parts of the mock upstream share: its
 * state, the per-token statistics and the delayed answer.
 */
#ifndef FCMD_TOOLS_MOCK_UPSTREAM_H
#define FCMD_TOOLS_MOCK_UPSTREAM_H

#include <h2o.h>
#include <jansson.h>
#include <openssl/evp.h>
#include <uv.h>

#include "mock_text.h"

/* Every request body is decoded with these: a repeated key is an error, as
 * it is to FCM; a \u0000 inside a string value is valid JSON. */
#define MOCK_JSON_FLAGS (JSON_REJECT_DUPLICATES | JSON_ALLOW_NUL)

struct issued {
    char token[48];
    uint64_t expires_at; /* loop time, ms */
};

struct token_stat {
    char *token;
    size_t len;
    unsigned attempts;
    unsigned delivered;
    json_t *data;    /* last delivered data value, or NULL */
    json_t *message; /* v1: the last delivered message object, or NULL */
};

struct mock {
    const char *host;
    int port;
    unsigned latency_ms;
    const char *apikey;
    unsigned retry_after;
    uv_loop_t *loop;
    h2o_globalconf_t config;
    h2o_context_t ctx;
    h2o_accept_ctx_t accept_ctx;
    uv_tcp_t listener;
    /* statistics */
    struct token_stat *table;
    size_t table_cap, table_used;
    uint64_t requests, http2_requests, connections, targets, delivered, unique_delivered, auth_failures;
    uint64_t first_request_ms, last_delivery_ms;
    size_t inflight, max_inflight;
    /* --quota: messages admitted per second of the mock's clock, 0 for no limit */
    uint64_t quota, quota_second, quota_used, quota_peak, quota_refused;
    /* FCM HTTP v1 and OAuth (mock_v1.c) */
    EVP_PKEY *oauth_key;   /* verifies assertions; NULL: v1 answers 401 to all */
    unsigned token_ttl;    /* seconds */
    unsigned oauth_fail;   /* token requests still to answer 503 */
    struct issued *issued; /* access tokens handed out */
    size_t nissued, issued_cap;
    uint64_t oauth_requests, oauth_rejected, v1_unauthorized;
    /* answers longer than anyone needs: --huge-body bytes of padding, or a body that never ends */
    size_t huge_body;
    uint64_t huge_answers, endless_answers, endless_bytes;
};

extern struct mock mock;

/* The statistics entry of a token (or topic), made on first sight. */
struct token_stat *mock_stat(const char *s, size_t n);

/* Counts a delivery to e, keeping references to its data and (v1) message. */
void mock_record_delivery(struct token_stat *e, json_t *data, json_t *msg);

/* The request body decoded with MOCK_JSON_FLAGS, or NULL with jansson's
 * reason (printable ASCII) in why. */
json_t *mock_decode(h2o_req_t *req, char *why, size_t size);

int mock_has_prefix(const char *s, size_t n, const char *p);

/* Reads a PEM public key from path into *key, replacing (and freeing) what
 * it held.  Returns 0, or -1 with a line on stderr. */
int mock_load_pubkey(const char *path, EVP_PKEY **key);

/* Whether n more messages fit this second's --quota; counts them either way. */
int mock_quota_admit(size_t n);

/* Answers now, or after --latency-ms; takes over body. */
int mock_answer(h2o_req_t *req, int status, int with_retry_after, struct mtext *body);

void mock_send_now(h2o_req_t *req, int status, const char *retry_after, const char *body, size_t len);

/* Appends --huge-body bytes of padding ('x', so it may sit in a JSON string)
 * and counts a huge answer. */
void mock_pad(struct mtext *b);

/* Answers status at once with body as the start of a body that never ends:
 * padding follows it as fast as the client reads, until it goes away.
 * Takes over body. */
int mock_answer_endless(h2o_req_t *req, int status, struct mtext *body);

/* The same after delay_ms instead of --latency-ms. */
int mock_answer_after(h2o_req_t *req, int status, int with_retry_after, struct mtext *body, unsigned delay_ms);

/* mock_apns.c */
int mock_apns_load_key(const char *path);
void mock_apns_set(const char *key_id, const char *team_id, const char *topic);
void mock_apns_reset(void);
void mock_apns_expire(void);
void mock_apns_stats(struct mtext *b);
int mock_apns_send(h2o_req_t *req);

/* mock_v1.c */
int mock_v1_load_key(const char *path);
int mock_oauth(h2o_req_t *req);
int mock_v1_send(h2o_req_t *req);

#endif
