"""The mock's APNs endpoint, checked with curl over HTTP/2 and provider
tokens made by Python's cryptography: it accepts what Apple accepts and
refuses what Apple refuses, so fcmd's tests against it mean something."""

import json
import subprocess
import time

import pytest

from apns_keys import KEY_ID, TEAM_ID, TOPIC, make_p256, python_jwt

GOOD = "ab" * 32


@pytest.fixture(scope="module")
def key(tmp_path_factory):
    return make_p256(tmp_path_factory.mktemp("mock-apns"))


@pytest.fixture
def apns_mock(start_mock, tls_cert, key):
    cert, tkey = tls_cert
    return start_mock("--tls-cert", str(cert), "--tls-key", str(tkey), "--apns-public-key", str(key[1]),
                      "--apns-key-id", KEY_ID, "--apns-team-id", TEAM_ID, "--apns-topic", TOPIC, cafile=str(cert))


def post(m, token, payload=b'{"aps":{"alert":"hi"}}', jwt=None, headers=None, http1=False):
    cmd = ["curl", "-s", "-o", "-", "-w", "\\n%{http_code} %{http_version}", "--cacert", m.cafile,
           "--http1.1" if http1 else "--http2", "-X", "POST", "--data-binary", "@-",
           f"https://localhost:{m.port}/3/device/{token}"]
    hdrs = {"apns-topic": TOPIC}
    hdrs.update(headers or {})
    if jwt is not None:
        hdrs["authorization"] = f"bearer {jwt}"
    for k, v in hdrs.items():
        if v is not None:
            cmd += ["-H", f"{k}: {v}"]
    r = subprocess.run(cmd, input=payload, capture_output=True, timeout=20)
    body, _, tail = r.stdout.decode().rpartition("\n")
    status, version = tail.split()
    return int(status), (json.loads(body) if body else None), version


def test_accepts_a_good_token_and_records_headers(apns_mock, key):
    jwt = python_jwt(key[0])
    status, body, version = post(apns_mock, GOOD, jwt=jwt, headers={"apns-push-type": "alert", "apns-priority": "5",
                                                                    "apns-collapse-id": "c1"})
    assert (status, body, version) == (200, None, "2")
    t = apns_mock.token(GOOD)
    assert t["delivered"] == 1 and t["data"] == {"aps": {"alert": "hi"}}
    assert t["message"] == {"apns-topic": TOPIC, "apns-push-type": "alert", "apns-priority": "5",
                            "apns-collapse-id": "c1"}
    assert apns_mock.stats(summary=True)["apns_jwts"] == [jwt]


def test_refuses_bad_provider_tokens(apns_mock, key, tmp_path):
    other = make_p256(tmp_path, "other")[0]
    assert post(apns_mock, GOOD)[:2] == (403, {"reason": "MissingProviderToken"})
    for jwt in (python_jwt(other), python_jwt(key[0], key_id="ZZZZZ12345"), python_jwt(key[0], team_id="ZZZZZ12345"),
                python_jwt(key[0])[:-4] + "AAAA", "a.b.c"):
        assert post(apns_mock, GOOD, jwt=jwt)[:2] == (403, {"reason": "InvalidProviderToken"}), jwt
    old = python_jwt(key[0], iat=int(time.time()) - 3700)
    assert post(apns_mock, GOOD, jwt=old)[:2] == (403, {"reason": "ExpiredProviderToken"})
    assert apns_mock.token(GOOD) is None


def test_expire_makes_seen_tokens_expired(apns_mock, key):
    jwt = python_jwt(key[0])
    assert post(apns_mock, GOOD, jwt=jwt)[0] == 200
    apns_mock.session.post(apns_mock.base + "/apns/expire", verify=apns_mock.cafile).raise_for_status()
    assert post(apns_mock, GOOD, jwt=jwt)[:2] == (403, {"reason": "ExpiredProviderToken"})
    # A new token (ECDSA signatures differ each time, even for the same claims) is good.
    fresh = python_jwt(key[0])
    assert fresh != jwt and post(apns_mock, GOOD, jwt=fresh)[0] == 200


def test_http1_is_refused(apns_mock, key):
    status, body, version = post(apns_mock, GOOD, jwt=python_jwt(key[0]), http1=True)
    assert status == 400 and version == "1.1"
    assert apns_mock.stats(summary=True)["apns_http1_refused"] == 1


@pytest.mark.parametrize("headers,payload,answer", [
    ({"apns-topic": None}, None, (400, "MissingTopic")),
    ({"apns-topic": "com.other.app"}, None, (400, "TopicDisallowed")),
    ({"apns-topic": TOPIC + ".voip", "apns-push-type": "voip"}, None, (200, None)),
    ({"apns-push-type": "banner"}, None, (400, "InvalidPushType")),
    ({"apns-priority": "7"}, None, (400, "BadPriority")),
    ({"apns-expiration": "soon"}, None, (400, "BadExpirationDate")),
    ({"apns-collapse-id": "x" * 65}, None, (400, "BadCollapseId")),
    ({}, b'{"aps":{"alert":"' + b"x" * 4100 + b'"}}', (413, "PayloadTooLarge")),
    ({"apns-push-type": "voip", "apns-topic": TOPIC + ".voip"}, b'{"aps":{},"x":"' + b"x" * 4100 + b'"}', (200, None)),
    ({}, b"[1]", (400, "BadRequest")),
])
def test_headers_and_payload_are_checked(apns_mock, key, headers, payload, answer):
    kw = {"payload": payload} if payload is not None else {}
    status, body, _ = post(apns_mock, GOOD, jwt=python_jwt(key[0]), headers=headers, **kw)
    assert (status, body["reason"] if body else None) == answer


def test_token_prefixes(apns_mock, key):
    jwt = python_jwt(key[0])
    assert post(apns_mock, "dead" + "0" * 60, jwt=jwt)[0] == 410
    assert post(apns_mock, "dead" + "0" * 60, jwt=jwt)[1]["reason"] == "Unregistered"
    assert post(apns_mock, "bad0" + "0" * 60, jwt=jwt)[:2] == (400, {"reason": "BadDeviceToken"})
    assert post(apns_mock, "bad1" + "0" * 60, jwt=jwt)[:2] == (400, {"reason": "DeviceTokenNotForTopic"})
    assert post(apns_mock, "bad2" + "0" * 60, jwt=jwt)[:2] == (400, {"reason": "BadCollapseId"})
    assert post(apns_mock, "nothex", jwt=jwt)[:2] == (400, {"reason": "BadDeviceToken"})
    for prefix, status in (("0429", 429), ("0500", 500), ("0503", 503)):
        tok = prefix + "0" * 60
        assert post(apns_mock, tok, jwt=jwt)[0] == status
        assert post(apns_mock, tok, jwt=jwt)[0] == 200
        assert apns_mock.token(tok) == {"attempts": 2, "delivered": 1, "data": {"aps": {"alert": "hi"}},
                                        "message": {"apns-topic": TOPIC}}
    assert post(apns_mock, "5555" + "0" * 60, jwt=jwt)[0] == 503
    assert post(apns_mock, "5555" + "0" * 60, jwt=jwt)[0] == 503
    start = time.monotonic()
    assert post(apns_mock, "510e" + "0" * 60, jwt=jwt)[0] == 200
    assert time.monotonic() - start >= 0.9
