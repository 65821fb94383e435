/*
 * child/upstream/apns/apns_request.h - what /apns/send adds to a request: the apns-*
 * fields, and Apple's rules for them and for device tokens and payloads.
 *
 * The fields are kept as the text of the header they become (topic,
 * push_type, priority, expiration, collapse_id in msg.opt[ROPT_APNS_*]),
 * so a spool record carries them as they will be sent.
 */
#ifndef FCMD_CHILD_UPSTREAM_APNS_APNS_REQUEST_H
#define FCMD_CHILD_UPSTREAM_APNS_APNS_REQUEST_H

#include <stddef.h>

#include "../../../common/json.h"
#include "../../core/request.h"

#define APNS_MAX_PAYLOAD 4096      /* bytes of the payload's JSON text */
#define APNS_MAX_PAYLOAD_VOIP 5120 /* the same for push_type voip */
#define APNS_MAX_COLLAPSE_ID 64
#define APNS_TOKEN_MIN_HEX 16
#define APNS_TOKEN_MAX_HEX 200

/* A form field of /apns/send.  Returns 0 (also for a field that is not
 * APNs'), or -EINVAL with a reason in err. */
int apns_form_field(const char *key, const char *val, size_t n, struct message *m, char *err, size_t errlen);

/* A JSON member (key, value at key + 1) of /apns/send; strings are
 * unescaped to *out, which moves past them.  Returns 0, -EINVAL with a
 * reason, or APNS_NOT_MINE when the member is not an APNs field. */
#define APNS_NOT_MINE 1
int apns_json_member(const struct json_doc *d, int key, struct message *m, char **out, char *err, size_t errlen);

/* Apple's rules over a whole request: device tokens, payload (an object
 * with an aps object, at most 4096 bytes, 5120 for voip), and each field.
 * Returns 0, or 400 with a reason in err. */
int apns_check_request(const struct send_request *r, char *err, size_t errlen);

/* Whether s is one of Apple's apns-push-type values. */
int apns_push_type_ok(const char *s, size_t n);

/* Whether s is a device token: an even number of hex digits, 16 to 200. */
int apns_device_token_ok(const char *s, size_t n);

#endif
