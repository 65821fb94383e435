/*
 * child/upstream/apns/apns_request.c - the /apns/send fields and Apple's rules for them.
 *
 * Everything Apple would refuse for the request as a whole (a malformed
 * device token, an unknown push type, a payload over its limit) is refused
 * here with a 400, before anything is queued, so the upstream only ever
 * answers for the device.  The rules follow Apple's documentation of the
 * provider API's headers; where Apple leaves room (token length), so do we.
 */
#include "apns_request.h"
#include "../../../common/apns_key.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>

#define ERR(...) (snprintf(err, errlen, __VA_ARGS__), -EINVAL)

static const char *const push_types[] = {"alert",        "background",   "location", "voip",
                                         "complication", "fileprovider", "mdm",      "liveactivity",
                                         "pushtotalk",   "widgets",      "controls"};

static int check_field(enum request_opt o, const char *s, size_t n, char *err, size_t errlen);

static const struct request_field field_list[] = {
    {"topic", ROPT_APNS_TOPIC, 0},           {"push_type", ROPT_APNS_PUSH_TYPE, 0},
    {"priority", ROPT_APNS_PRIORITY, 1},     /* a number, or its digits as a string */
    {"expiration", ROPT_APNS_EXPIRATION, 1}, {"collapse_id", ROPT_APNS_COLLAPSE_ID, 0},
};
static const struct request_fields fields = {field_list, sizeof(field_list) / sizeof(field_list[0]), check_field};

int apns_request_push_type_ok(const char *s, size_t n)
{
    for (size_t i = 0; i < sizeof(push_types) / sizeof(push_types[0]); i++)
        if (strlen(push_types[i]) == n && memcmp(push_types[i], s, n) == 0)
            return 1;
    return 0;
}

int apns_request_device_token_ok(const char *s, size_t n)
{
    if (n < APNS_TOKEN_MIN_HEX || n > APNS_TOKEN_MAX_HEX || n % 2 != 0)
        return 0;
    for (size_t i = 0; i < n; i++)
        if (!((s[i] >= '0' && s[i] <= '9') || (s[i] >= 'a' && s[i] <= 'f') || (s[i] >= 'A' && s[i] <= 'F')))
            return 0;
    return 1;
}

static int all_digits(const char *s, size_t n, size_t max)
{
    if (n == 0 || n > max)
        return 0;
    for (size_t i = 0; i < n; i++)
        if (s[i] < '0' || s[i] > '9')
            return 0;
    return 1;
}

/* One field's text, as it will go into its header. */
static int check_field(enum request_opt o, const char *s, size_t n, char *err, size_t errlen)
{
    switch (o) {
    case ROPT_APNS_TOPIC:
        return apns_topic_ok(s, n) ? 0 : ERR("\"topic\" must be " APNS_TOPIC_RULE);
    case ROPT_APNS_PUSH_TYPE:
        return apns_request_push_type_ok(s, n)
                   ? 0
                   : ERR("\"push_type\" must be one of alert, background, location, voip, "
                         "complication, fileprovider, mdm, liveactivity, pushtotalk, widgets, "
                         "controls");
    case ROPT_APNS_PRIORITY:
        return (n == 2 && memcmp(s, "10", 2) == 0) || (n == 1 && (*s == '5' || *s == '1'))
                   ? 0
                   : ERR("\"priority\" must be 10, 5 or 1");
    case ROPT_APNS_EXPIRATION:
        return all_digits(s, n, 10) ? 0 : ERR("\"expiration\" must be a UNIX time in seconds (0: try once)");
    case ROPT_APNS_COLLAPSE_ID:
        if (n == 0 || n > APNS_MAX_COLLAPSE_ID)
            return ERR("\"collapse_id\" must be 1 to %d bytes", APNS_MAX_COLLAPSE_ID);
        for (size_t i = 0; i < n; i++)
            if ((unsigned char)s[i] < 0x20 || s[i] == 0x7f)
                return ERR("\"collapse_id\" contains a control character");
        return json_valid_utf8(s, n) ? 0 : ERR("\"collapse_id\" is not valid UTF-8");
    default: return ERR("not an APNs field");
    }
}

static int form_field(const char *key, const char *val, size_t n, struct message *m, char *err, size_t errlen)
{
    return request_fields_form(&fields, key, val, n, m, err, errlen);
}

static int json_member(const struct json_doc *d, int key, struct message *m, char **out, char *err, size_t errlen)
{
    return request_fields_json(&fields, d, key, m, out, err, errlen);
}

static int is_type(const struct message *m, const char *t)
{
    const char *s = m->opt[ROPT_APNS_PUSH_TYPE];

    return s != NULL && m->opt_len[ROPT_APNS_PUSH_TYPE] == strlen(t) && memcmp(s, t, strlen(t)) == 0;
}

static int check_payload(const struct message *m, char *err, size_t errlen)
{
    size_t max = is_type(m, "voip") ? APNS_MAX_PAYLOAD_VOIP : APNS_MAX_PAYLOAD;
    struct json_doc d;
    int aps;

    if (m->payload == NULL)
        return ERR("payload is missing");
    if (m->payload_len > max)
        return ERR("payload is %zu bytes, over APNs' %zu-byte limit%s", m->payload_len, max,
                   max == APNS_MAX_PAYLOAD ? " (5120 for voip)" : " for voip");
    if (json_parse(&d, m->payload, m->payload_len) != 0 || d.tok[0].type != JSMN_OBJECT) {
        json_free(&d);
        return ERR("payload must be a JSON object");
    }
    aps = json_find(&d, 0, "aps");
    if (aps >= 0 && d.tok[aps].type != JSMN_OBJECT) {
        json_free(&d);
        return ERR("payload's \"aps\" must be a JSON object");
    }
    json_free(&d);
    /* MDM's payload is {"mdm": ...}; every other kind carries aps. */
    if (aps < 0 && !is_type(m, "mdm"))
        return ERR("payload has no \"aps\" object");
    return 0;
}

static int check_request(const struct send_request *r, char *err, size_t errlen)
{
    int rc;

    if (r->kind != TARGET_TOKEN)
        return ERR("APNs sends to device tokens only");
    for (size_t i = 0; i < r->ntargets; i++)
        if (!apns_request_device_token_ok(r->targets[i], strlen(r->targets[i])))
            return ERR("token %zu is not an APNs device token (an even number of hex digits, %d to %d)", i + 1,
                       APNS_TOKEN_MIN_HEX, APNS_TOKEN_MAX_HEX);
    if ((rc = request_fields_check(&fields, &r->msg, err, errlen)) != 0)
        return rc;
    for (int o = 0; o < ROPT_FCM_COUNT; o++)
        if (r->msg.opt[o] != NULL)
            return ERR("\"%s\" is an FCM field; /apns/send does not take it", request_opt_names[o]);
    return check_payload(&r->msg, err, errlen);
}

const struct request_rules apns_request_rules = {
    .form_field = form_field, .json_member = json_member, .check = check_request};
