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

/* The apns-* fields in the request's provider slots. */
#define ROPT_APNS_TOPIC ROPT_PROVIDER_0
#define ROPT_APNS_PUSH_TYPE ROPT_PROVIDER_1
#define ROPT_APNS_PRIORITY ROPT_PROVIDER_2
#define ROPT_APNS_EXPIRATION ROPT_PROVIDER_3
#define ROPT_APNS_COLLAPSE_ID ROPT_PROVIDER_4

/* The request rules of /apns/send (core/request.h): its form fields and
 * JSON members (the apns-* fields; other form fields are ignored, as
 * /gcm/send ignores them, other JSON members refused), and Apple's rules
 * over a whole request: device tokens only, a payload that is an object
 * with an aps object (at most 4096 bytes, 5120 for voip), each field's
 * shape, no FCM option.  The check returns 0, or -EINVAL with a reason. */
extern const struct request_rules apns_request_rules;

/* Whether s is one of Apple's apns-push-type values. */
int apns_request_push_type_ok(const char *s, size_t n);

/* Whether s is a device token: an even number of hex digits, 16 to 200. */
int apns_request_device_token_ok(const char *s, size_t n);

#endif
