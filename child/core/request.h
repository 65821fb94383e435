/*
 * child/core/request.h - parsing and validating a /gcm/send body.
 *
 * A request is either a GoCM form (tokens repeated, payload as JSON text) or
 * a JSON object.  Parsing either gives the same struct; nothing is queued
 * unless the whole request is valid.  The struct owns copies of what it
 * keeps, so the body may be freed after parsing.
 */
#ifndef FCMD_CHILD_CORE_REQUEST_H
#define FCMD_CHILD_CORE_REQUEST_H

#include <errno.h>
#include <stddef.h>
#include <stdint.h>

#include "../../common/providers.h"
#include "push_id.h"

#define REQUEST_MAX_BODY (1u << 20)
#define REQUEST_MAX_TOKENS 10000
#define REQUEST_MAX_TOKEN_LEN 4096
#define REQUEST_MAX_PAYLOAD (64u << 10)
#define REQUEST_IDEM_KEY_MAX 255   /* bytes of an Idempotency-Key */
#define REQUEST_FINGERPRINT_LEN 32 /* a body's fingerprint: its SHA-256 */

enum target_kind { TARGET_TOKEN, TARGET_TOPIC, TARGET_CONDITION };

/* Which upstream a request is for: one per line of FCMD_PROVIDERS
 * (/gcm/send is FCM's, /apns/send Apple's). */
#define REQUEST_KIND(ID, NAME, LABEL, PATH, ENDPOINT, HINT) UPSTREAM_##ID,
enum upstream_kind { FCMD_PROVIDERS(REQUEST_KIND) UPSTREAM_KINDS };
#undef REQUEST_KIND

/* Message options a request may carry: FCM's, which /gcm/send takes, as
 * their raw JSON text; then slots that mean what the request's provider
 * says, as plain text (their names are the provider's own: APNs' are in
 * upstream/apns/apns_request.h).  A spool record stores them by position,
 * so a provider with more options adds slots at the end; records written
 * with fewer still read. */
enum request_opt {
    ROPT_NOTIFICATION,
    ROPT_ANDROID,
    ROPT_APNS,
    ROPT_WEBPUSH,
    ROPT_FCM_OPTIONS,
    ROPT_COLLAPSE_KEY,
    ROPT_PRIORITY,
    ROPT_TIME_TO_LIVE,
    ROPT_FCM_COUNT, /* the FCM options end here */
    ROPT_PROVIDER_0 = ROPT_FCM_COUNT, /* the provider's own */
    ROPT_PROVIDER_1,
    ROPT_PROVIDER_2,
    ROPT_PROVIDER_3,
    ROPT_PROVIDER_4,
    ROPT_COUNT
};

/* The FCM options' JSON member names. */
extern const char *const request_opt_names[ROPT_FCM_COUNT];

enum request_format { REQUEST_FORM, REQUEST_JSON };

/* What a message carries besides its targets, as JSON texts.  A request
 * and the push made of it both hold one. */
struct message {
    const char *payload; /* the data object's JSON text; NULL when absent */
    size_t payload_len;
    const char *opt[ROPT_COUNT];
    size_t opt_len[ROPT_COUNT];
};

/* Bytes message_copy() writes for m. */
size_t message_size(const struct message *m);

/* Copies every text of src, NUL-terminated, to storage and points dst at the
 * copies (dst may be src).  Returns the end of what it wrote. */
char *message_copy(struct message *dst, const struct message *src, char *storage);

struct send_request {
    enum upstream_kind upstream;
    enum request_format format;
    enum target_kind kind;
    char **targets; /* tokens, or the one topic or condition */
    size_t ntargets;
    const uint32_t *index; /* each target's index in its push, when not its position (replay) */
    const char *app;       /* the app the request named (NUL-terminated, a valid name), or NULL */
    size_t app_len;
    unsigned app_index; /* the caller's: app looked up in the settings (0 the default app, or APP_NONE) */
    char id[PUSH_ID_MAX + 1]; /* the push's id (push_id.h), set by the caller; "" for none yet */
    size_t id_len;
    /* What a spool record keeps for idempotency: the request's
     * Idempotency-Key (1 to REQUEST_IDEM_KEY_MAX visible ASCII characters)
     * and its body's fingerprint (REQUEST_FINGERPRINT_LEN bytes), each NULL
     * when absent; only a replay sets them yet. */
    const char *idem_key;
    size_t idem_key_len;
    const unsigned char *fingerprint;
    size_t fingerprint_len;
    struct message msg;
    char *storage; /* owns every string above */
};

/* What a provider adds to the GoCM body (tokens, payload, app, and FCM's
 * topic, condition and options), so that the parser holds no provider's
 * fields: each upstream kind other than FCM has one, in its own folder
 * (child/upstream/apns/apns_request.c), and the worker names them in its
 * request_limits.  With rules, every member but tokens, app and payload is
 * the provider's to take or refuse. */
struct json_doc;
struct request_rules {
    /* A form field that is not tokens, app or payload.  Returns 0 (also for
     * a field it ignores), or -EINVAL with a reason in err. */
    int (*form_field)(const char *key, const char *val, size_t n, struct message *m, char *err, size_t errlen);
    /* A JSON member (key, its value at key + 1); strings are unescaped to
     * *out, which moves past them.  Returns 0, -EINVAL with a reason, or
     * -ENOENT when the member is none of the provider's. */
    int (*json_member)(const struct json_doc *d, int key, struct message *m, char **out, char *err, size_t errlen);
    /* The whole request, parsed or read back from a store, after the
     * generic checks.  Returns 0, or -EINVAL with a reason in err. */
    int (*check)(const struct send_request *r, char *err, size_t errlen);
    /* Optional, for a provider whose targets are not device tokens (Web
     * Push's subscriptions): the JSON member that holds their array and the
     * form field given once for each (its text is one target's JSON), in
     * place of "tokens".  target turns one, the JSON value v of d (the
     * idx-th), into the target's name: at most json_toklen(d, v) bytes and
     * a NUL at out.  It returns the name's length, or -EINVAL with a reason. */
    const char *targets_json, *targets_form, *targets_what;
    long (*target)(const struct json_doc *d, int v, size_t idx, char *out, char *err, size_t errlen);
    /* Nonzero: the payload may be a JSON string as well as an object (the
     * string's text is the payload), and the rules' check judges it. */
    int any_payload;
};

/* A provider's own fields (APNs' topic, Web Push's ttl, ...): each field's
 * name in a form or a JSON body, the option slot it fills, and whether a
 * JSON number is taken as its text; check judges one field's text.  The
 * helpers below parse and check them the same way for every provider: a
 * field given twice is refused, a JSON string is unescaped (a NUL in it is
 * refused), anything else is refused with the type the field wants. */
struct request_field {
    const char *name;
    enum request_opt opt;
    int numeric;
};

struct request_fields {
    const struct request_field *list;
    size_t n;
    int (*check)(enum request_opt o, const char *s, size_t n, char *err, size_t errlen);
};

/* A form field: 0 for a field that is none of f's (ignored, as /gcm/send
 * ignores them), or check's answer. */
int request_fields_form(const struct request_fields *f, const char *key, const char *val, size_t n, struct message *m,
                        char *err, size_t errlen);

/* A JSON member, as request_rules.json_member: -ENOENT when it is none of f's. */
int request_fields_json(const struct request_fields *f, const struct json_doc *d, int key, struct message *m,
                        char **out, char *err, size_t errlen);

/* Every field of f that m holds, checked again (a record read back from a
 * store has not been through the parsing). */
int request_fields_check(const struct request_fields *f, const struct message *m, char *err, size_t errlen);

/* What one request may hold; a NULL limits means the defaults above and
 * FCM's body alone. */
struct request_limits {
    size_t max_body;    /* bytes */
    size_t max_tokens;  /* targets */
    size_t max_payload; /* bytes of the payload's JSON text */
    const struct request_rules *rules[UPSTREAM_KINDS]; /* by upstream kind; NULL for FCM */
};

/* Parses body, a request for upstream's endpoint, according to the
 * Content-Type value, with lim->rules[upstream] (FCM needs none; another
 * kind without rules is -EINVAL).  Returns 0, or with a one-line reason in
 * err: -EINVAL (the request is wrong), -EMSGSIZE (it is too large) or
 * -ENOMEM. */
int request_parse(enum upstream_kind upstream, const char *ctype, size_t ctype_len, const char *body, size_t len,
                      const struct request_limits *lim, struct send_request *r, char *err, size_t errlen);

/* Checks a request that did not come from a client (a spool record) with
 * the rules intake applies.  Returns 0, or -EINVAL or -ENOMEM with a reason
 * in err. */
int request_check(const struct send_request *r, const struct request_limits *lim, char *err, size_t errlen);

/* The HTTP status that answers a request whose reading returned rc. */
static inline int request_status(int rc)
{
    return rc == 0 ? 200 : rc == -EMSGSIZE ? 413 : rc == -ENOMEM ? 500 : 400;
}

void request_free(struct send_request *r);

/* How much of a target's name (n bytes) is shown outside the worker: in a
 * drain list, a push's status, a webhook event.  A Web Push target carries
 * its subscription's keys after its endpoint and a space; only the
 * endpoint is shown.  Others are shown whole. */
size_t request_target_shown(enum upstream_kind k, const char *name, size_t n);

#endif
