"""/apns/send end to end: the real fcmd against the mock's APNs endpoint over
HTTP/2 and TLS.  The mock checks every provider token's ES256 signature
with its own code, and the tests check them again with Python's
cryptography; JSON fcmd answers is read with Python's json."""

import json
import os
import re
import signal
import subprocess
import time

import pytest
import requests

from apns_keys import KEY_ID, TEAM_ID, TOPIC, apns_args, make_p256, python_verify
from conftest import wait_until

HEX = "0123456789abcdef"


def tok(prefix, i=0):
    """A 64-hex-digit device token with the mock's prefix."""
    body = f"{i:x}".rjust(8, "0")
    return (prefix + body).ljust(64, "a")


@pytest.fixture(scope="module")
def key(tmp_path_factory):
    return make_p256(tmp_path_factory.mktemp("apns"))


@pytest.fixture
def apns_mock(start_mock, tls_cert, key):
    cert, tkey = tls_cert
    return start_mock("--tls-cert", str(cert), "--tls-key", str(tkey), "--apns-public-key", str(key[1]),
                      "--apns-key-id", KEY_ID, "--apns-team-id", TEAM_ID, "--apns-topic", TOPIC, cafile=str(cert))


@pytest.fixture
def start_apns(start_fcmd, apns_mock, tls_cert, key):
    def start(args=(), workers=2, topic=TOPIC, **kw):
        return start_fcmd(gcm_url=apns_mock.url("localhost"), workers=workers,
                          args=["--ca-file", str(tls_cert[0]), *apns_args(key[0], apns_mock.base, topic=topic),
                                *args], **kw)
    return start


def apns_form(f, tokens, payload, **fields):
    return requests.post(f.url("/apns/send"), data={"tokens": tokens, "payload": json.dumps(payload), **fields},
                         timeout=5)


def apns_json(f, body, **kw):
    return requests.post(f.url("/apns/send"), json=body, timeout=5, **kw)


def mock_stats(m):
    return m.stats()


# ---- delivery ----

def test_form_and_json_are_delivered_with_their_headers(start_apns, apns_mock):
    f = start_apns()
    r = apns_form(f, [tok("ab", 1), tok("ab", 2)], {"aps": {"alert": "hi"}, "k": 1}, push_type="alert",
                  priority="5", expiration="1900000000", collapse_id="c-1")
    assert (r.status_code, r.text) == (200, "ok\n")
    form_id = r.headers["x-fcmd-id"]
    r = apns_json(f, {"tokens": [tok("cd", 1)], "payload": {"aps": {"content-available": 1}},
                      "topic": TOPIC + ".voip", "push_type": "voip", "priority": 10, "expiration": 0})
    assert r.status_code == 200 and r.json() == {"accepted": 1, "id": r.headers["x-fcmd-id"]}
    # Each push its id, as at /gcm/send (tests/integration/test_push_ids.py).
    assert all(re.fullmatch(r"[A-Za-z0-9_-]{1,64}", i) for i in (form_id, r.json()["id"]))
    assert form_id != r.json()["id"]
    report = f.wait_idle()
    tokens = apns_mock.stats()["tokens"]
    for t in (tok("ab", 1), tok("ab", 2)):
        assert tokens[t]["delivered"] == 1
        assert tokens[t]["data"] == {"aps": {"alert": "hi"}, "k": 1}
        assert tokens[t]["message"] == {"apns-topic": TOPIC, "apns-push-type": "alert", "apns-priority": "5",
                                        "apns-expiration": "1900000000", "apns-collapse-id": "c-1"}
    assert tokens[tok("cd", 1)]["message"] == {"apns-topic": TOPIC + ".voip", "apns-push-type": "voip",
                                               "apns-priority": "10", "apns-expiration": "0"}
    s = apns_mock.stats(summary=True)
    assert s["apns_requests"] == 3 and s["http2_requests"] == 3 and s["apns_bad_jwt"] == 0
    assert report["successes"] == 3 and report["attempts"] == 3 and report["accepted"] == 3
    assert report["apns"]["successes"] == 3 and report["apns"]["accepted"] == 3
    assert report["fcm"]["attempts"] == 0


def test_provider_token_verifies_with_an_independent_oracle(start_apns, apns_mock, key):
    f = start_apns()
    assert apns_form(f, [tok("ab")], {"aps": {}}).status_code == 200
    f.wait_idle()
    jwts = apns_mock.stats(summary=True)["apns_jwts"]
    assert len(jwts) == 1
    head, claims = python_verify(jwts[0], key[1])
    assert head == {"alg": "ES256", "kid": KEY_ID}
    assert claims["iss"] == TEAM_ID and abs(claims["iat"] - time.time()) < 60 and set(claims) == {"iss", "iat"}
    assert jwts[0] not in f.log_text()  # never logged


def test_every_apple_answer(start_apns, apns_mock):
    f = start_apns(args=["--retries", "1"])
    dead, bad0, bad1, bad2 = tok("dead"), tok("bad0"), tok("bad1"), tok("bad2")
    busy, err500, unavail, always = tok("0429"), tok("0500"), tok("0503"), tok("5555")
    r = apns_form(f, [dead, bad0, bad1, bad2, busy, err500, unavail, always], {"aps": {"alert": "x"}})
    assert r.status_code == 200
    report = f.wait_idle(timeout=30)
    drained = requests.get(f.url("/gcm/report/notregistered"), timeout=5).json()["tokens"]
    assert sorted(drained) == sorted([dead, bad0, bad1])
    tokens = apns_mock.stats()["tokens"]
    # 429, 500 and 503 once: tried again after Retry-After, then delivered.
    for t in (busy, err500, unavail):
        assert tokens[t]["attempts"] == 2 and tokens[t]["delivered"] == 1, t
    assert tokens[always]["attempts"] == 2 and tokens[always]["delivered"] == 0
    assert tokens[bad2]["attempts"] == 1
    assert report["notregistered"] == 3 and report["successes"] == 3 and report["failures"] == 2
    assert report["apns"]["notregistered"] == 3 and report["apns"]["failures"] == 2
    assert report["apns"]["retries"] == 4
    log = f.log_text()
    assert "BadCollapseId" in log  # a failure is logged with Apple's reason
    metrics = requests.get(f.url("/metrics"), timeout=5).text
    assert 'fcmd_upstream_targets_total{upstream="apns",outcome="notregistered"} 3' in metrics
    assert 'fcmd_upstream_targets_total{upstream="apns",outcome="failures"} 2' in metrics
    assert "fcmd_notregistered_total 3" in metrics


def test_fcm_and_apns_side_by_side(start_apns, apns_mock):
    f = start_apns()
    assert f.send_form(["fcm-token-1"], {"a": 1}).status_code == 200
    assert apns_form(f, [tok("ab")], {"aps": {}}).status_code == 200
    report = f.wait_idle()
    assert report["fcm"]["successes"] == 1 and report["apns"]["successes"] == 1 and report["successes"] == 2
    tokens = apns_mock.stats()["tokens"]
    assert tokens["fcm-token-1"]["delivered"] == 1 and tokens[tok("ab")]["delivered"] == 1


# ---- one provider token for every worker ----

def send_until_every_worker_sent(f, workers, prefix, per_request=1):
    """Sends per_request tokens per fresh connection until each worker took some."""
    seen, sent, i = set(), [], 0
    deadline = time.monotonic() + 20
    while len(seen) < workers and time.monotonic() < deadline:
        batch = [tok(prefix, i + k) for k in range(per_request)]
        i += per_request
        r = requests.post(f.url("/apns/send"), data={"tokens": batch, "payload": '{"aps":{}}'},
                          headers={"Connection": "close"}, timeout=5)
        assert r.status_code == 200
        seen.add(r.headers["x-fcmd-worker"])
        sent += batch
    assert len(seen) == workers, f"only workers {seen} took requests"
    return sent


def test_all_workers_share_one_token_and_renew_it_once(start_apns, apns_mock, key):
    f = start_apns(workers=3)
    sent = send_until_every_worker_sent(f, 3, "a1")
    f.wait_idle()
    s = apns_mock.stats(summary=True)
    assert len(s["apns_jwts"]) == 1 and s["apns_bad_jwt"] == 0
    assert f.report()["apns"]["provider_tokens"] == 1
    # Apple calls it expired: the requests in flight with it all get 403 ExpiredProviderToken
    # (20 at once on the first worker to send), and one new token is made for all.
    apns_mock.session.post(apns_mock.base + "/apns/expire", verify=apns_mock.cafile).raise_for_status()
    sent += send_until_every_worker_sent(f, 3, "b2", per_request=20)
    report = f.wait_idle(timeout=30)
    s = apns_mock.stats()
    assert s["apns_expired_answers"] >= 2
    assert len(s["apns_jwts"]) == 2, "one new token for all workers"
    python_verify(s["apns_jwts"][1], key[1])
    assert report["apns"]["provider_tokens"] == 2
    assert all(s["tokens"][t]["delivered"] == 1 for t in sent)
    assert report["failures"] == 0 and report["successes"] == len(sent)
    assert "called the provider token expired" in f.log_text()


# ---- intake ----

BAD_REQUESTS = [
    ({"tokens": ["xyz"], "payload": {"aps": {}}}, "not an APNs device token"),
    ({"tokens": ["abc"], "payload": {"aps": {}}}, "not an APNs device token"),
    ({"tokens": [tok("ab")[:63]], "payload": {"aps": {}}}, "not an APNs device token"),
    ({"tokens": [tok("ab")], "payload": {"aps": {}}, "push_type": "banner"}, "push_type"),
    ({"tokens": [tok("ab")], "payload": {"aps": {}}, "priority": 7}, "priority"),
    ({"tokens": [tok("ab")], "payload": {"aps": {}}, "priority": "high"}, "priority"),
    ({"tokens": [tok("ab")], "payload": {"aps": {}}, "expiration": "soon"}, "expiration"),
    ({"tokens": [tok("ab")], "payload": {"aps": {}}, "expiration": -1}, "expiration"),
    ({"tokens": [tok("ab")], "payload": {"aps": {}}, "collapse_id": "x" * 65}, "collapse_id"),
    ({"tokens": [tok("ab")], "payload": {"aps": {}}, "collapse_id": "a\nb"}, "collapse_id"),
    ({"tokens": [tok("ab")], "payload": {"aps": {}}, "topic": "com.example app"}, "topic"),
    # Not bundle ids: Apple answers TopicDisallowed, out of the client's sight.
    ({"tokens": [tok("ab")], "payload": {"aps": {}}, "topic": "..."}, '"topic"'),
    ({"tokens": [tok("ab")], "payload": {"aps": {}}, "topic": "x"}, '"topic"'),
    ({"tokens": [tok("ab")], "payload": {"aps": {}}, "topic": "a" * 255}, '"topic"'),
    ({"tokens": [tok("ab")], "payload": {"aps": {}}, "topic": "com..example"}, '"topic"'),
    ({"tokens": [tok("ab")], "payload": {"aps": {}}, "topic": ".com.example"}, '"topic"'),
    ({"tokens": [tok("ab")], "payload": {"aps": {}}, "topic": "com.example."}, '"topic"'),
    ({"tokens": [tok("ab")], "payload": {"aps": {}}, "topic": "com.example_app"}, '"topic"'),
    ({"tokens": [tok("ab")], "payload": {"aps": {}}, "topic": ".voip"}, '"topic"'),
    ({"tokens": [tok("ab")], "payload": {"aps": {}}, "topic": "voip"}, '"topic"'),
    ({"tokens": [tok("ab")], "payload": {"aps": {}}, "topic": "com." + "a" * 152}, '"topic"'),
    ({"tokens": [tok("ab")], "payload": {"aps": {"alert": "x" * 4100}}}, "4096-byte limit"),
    ({"tokens": [tok("ab")], "payload": {"aps": {"alert": "x" * 5200}}, "push_type": "voip"}, "5120-byte limit"),
    ({"tokens": [tok("ab")], "payload": {"alert": "x"}}, 'no "aps" object'),
    ({"tokens": [tok("ab")], "payload": {"aps": "x"}}, '"aps" must be a JSON object'),
    ({"tokens": [tok("ab")], "payload": {"aps": {}}, "notification": {"title": "t"}}, 'unknown field "notification"'),
    ({"tokens": [tok("ab")], "payload": {"aps": {}}, "condition": "'a' in topics"}, 'unknown field "condition"'),
    ({"tokens": [], "payload": {"aps": {}}}, "no tokens"),
    ({"tokens": [tok("ab")]}, "payload is missing"),
]


@pytest.mark.parametrize("body,needle", BAD_REQUESTS)
def test_bad_requests_are_400_and_nothing_is_queued(start_apns, apns_mock, body, needle):
    f = start_apns(workers=1)
    r = apns_json(f, body)
    assert r.status_code == 400 and needle in r.json()["error"], r.text
    assert f.report()["accepted"] == 0 and apns_mock.stats(summary=True)["apns_requests"] == 0


def test_limits_at_the_edge(start_apns, apns_mock):
    f = start_apns(workers=1)
    payload = {"aps": {"alert": ""}}
    payload["aps"]["alert"] = "x" * (4096 - len(json.dumps(payload, separators=(",", ":"))))
    body = json.dumps({"tokens": [tok("ab")], "payload": payload}, separators=(",", ":"))
    assert len(json.dumps(payload, separators=(",", ":"))) == 4096
    r = requests.post(f.url("/apns/send"), data=body, headers={"Content-Type": "application/json"}, timeout=5)
    assert r.status_code == 200, r.text
    voip = {"aps": {}, "v": "y" * 5000}
    r = apns_json(f, {"tokens": [tok("cd")], "payload": voip, "push_type": "voip", "topic": TOPIC + ".voip"})
    assert r.status_code == 200, r.text
    # MDM's payload has no aps.
    r = apns_json(f, {"tokens": [tok("ef")], "payload": {"mdm": "magic"}, "push_type": "mdm"})
    assert r.status_code == 200, r.text
    r = apns_json(f, {"tokens": [tok("ab", 9)], "payload": {"aps": {}}, "collapse_id": "c" * 64,
                      "priority": "1", "expiration": "0"})
    assert r.status_code == 200, r.text
    f.wait_idle()
    tokens = apns_mock.stats()["tokens"]
    assert all(tokens[t]["delivered"] == 1 for t in (tok("ab"), tok("cd"), tok("ef"), tok("ab", 9)))


def test_bundle_ids_and_apples_suffixes_are_topics(start_apns, apns_mock):
    f = start_apns(workers=1)
    topics = [TOPIC, TOPIC + ".voip", TOPIC + ".complication", TOPIC + ".pushkit.fileprovider",
              TOPIC + ".push-type.liveactivity", "com.example.fcmd-2.Beta9", "com." + "a" * 151]
    sent = {}
    for i, topic in enumerate(topics):
        r = apns_json(f, {"tokens": [tok("ab", 40 + i)], "payload": {"aps": {}}, "topic": topic})
        assert r.status_code == 200, (topic, r.text)
        sent[tok("ab", 40 + i)] = topic
    rep = f.wait_idle()
    tokens = apns_mock.stats()["tokens"]
    for t, topic in sent.items():
        if topic.startswith(TOPIC + ".") or topic == TOPIC:
            assert tokens[t]["delivered"] == 1 and tokens[t]["message"]["apns-topic"] == topic
    # The mock takes only its own bundle id's topics: the other two are Apple's TopicDisallowed.
    assert (rep["successes"], rep["failures"]) == (len(topics) - 2, 2)


def test_form_rules(start_apns):
    f = start_apns(workers=1)
    r = apns_form(f, [tok("ab")], {"aps": {}}, priority=["5", "10"])
    assert r.status_code == 400 and "given twice" in r.json()["error"]
    r = apns_form(f, ["not-hex"], {"aps": {}})
    assert r.status_code == 400
    r = requests.post(f.url("/apns/send"), data="tokens=" + tok("ab") + "&payload=%7B%7D", timeout=5,
                      headers={"Content-Type": "application/x-www-form-urlencoded"})
    assert r.status_code == 400 and "aps" in r.json()["error"]
    assert requests.get(f.url("/apns/send"), timeout=5).status_code == 405
    assert f.report()["accepted"] == 0


def test_no_topic_anywhere_is_400(start_apns):
    f = start_apns(workers=1, topic=None)
    r = apns_form(f, [tok("ab")], {"aps": {}})
    assert r.status_code == 400 and "no topic" in r.json()["error"]
    assert apns_form(f, [tok("ab")], {"aps": {}}, topic=TOPIC).status_code == 200


def test_without_apns_the_endpoint_is_404(start_fcmd, mock):
    f = start_fcmd(mock, workers=1)
    r = requests.post(f.url("/apns/send"), data={"tokens": tok("ab"), "payload": '{"aps":{}}'}, timeout=5)
    assert r.status_code == 404 and r.json()["error"] == (
        "APNs is not configured: start fcmd with --apns-key, --apns-key-id and --apns-team-id")


def test_queue_full_is_503_like_gcm_send(start_apns, apns_mock):
    f = start_apns(workers=1, args=["--queue-size", "2"])
    assert apns_form(f, [tok("510e", 1), tok("510e", 2)], {"aps": {}}).status_code == 200
    r = apns_form(f, [tok("510e", 3)], {"aps": {}})
    assert r.status_code == 503 and "Retry-After" in r.headers and "queue full" in r.json()["error"]
    r = apns_form(f, [tok("510e", i) for i in range(3)], {"aps": {}})
    assert r.status_code == 413
    f.wait_idle()


# ---- durability ----

def test_spooled_apns_push_survives_a_kill(start_apns, apns_mock, tmp_path):
    spool = tmp_path / "spool"
    args = ["--spool", str(spool), "--spool-fsync", "batch"]
    f = start_apns(workers=1, args=args)
    # 510e: the mock answers after a second, so the push is still in flight when fcmd is killed.
    t = tok("510e", 1)
    r = apns_json(f, {"tokens": [t], "payload": {"aps": {"alert": "kept"}}, "push_type": "alert",
                      "collapse_id": "durable", "priority": 5})
    assert r.status_code == 200
    wait_until(lambda: apns_mock.token(t), what="a first attempt")
    for pid in f.children() + [f.proc.pid]:
        os.kill(pid, signal.SIGKILL)
    f.proc.wait(5)
    assert list(spool.glob("*.seg")), "the push was not in the spool"
    # The next start replays it with its APNs fields.
    g = start_apns(workers=1, args=args)
    wait_until(lambda: apns_mock.token(t)["attempts"] >= 2, timeout=20, what="the replayed attempt")
    report = g.wait_idle(timeout=20)
    entry = apns_mock.token(t)
    assert entry["message"] == {"apns-topic": TOPIC, "apns-push-type": "alert", "apns-priority": "5",
                                "apns-collapse-id": "durable"}
    assert entry["data"] == {"aps": {"alert": "kept"}}
    assert report["replayed"] == 1 and report["apns"]["successes"] == 1


def test_fcm_without_a_token_does_not_hold_apns_back(start_mock, start_fcmd, tls_cert, signing_key, key, tmp_path):
    from conftest import write_service_account
    cert, tkey = tls_cert
    private_pem, public = signing_key
    m = start_mock("--tls-cert", str(cert), "--tls-key", str(tkey), "--oauth-public-key", str(public),
                   "--oauth-fail", "100000", "--apns-public-key", str(key[1]), "--apns-key-id", KEY_ID,
                   "--apns-team-id", TEAM_ID, "--apns-topic", TOPIC, cafile=str(cert))
    sa = write_service_account(tmp_path / "sa.json", private_pem, f"https://localhost:{m.port}/token")
    f = start_fcmd(workers=1, apikey=None,
                   args=["--service-account", str(sa), "--fcm-url", f"https://localhost:{m.port}",
                         "--ca-file", str(cert), "--shutdown-timeout", "1", *apns_args(key[0], m.base)])
    # The FCM push is first in the queue, and cannot go while there is no access token.
    assert f.send_form(["fcm-waits"], {"a": 1}).status_code == 200
    assert apns_form(f, [tok("ab")], {"aps": {}}).status_code == 200
    wait_until(lambda: (m.token(tok("ab")) or {}).get("delivered") == 1, timeout=10, what="the APNs delivery")
    report = f.report()
    assert report["apns"]["successes"] == 1 and report["pending"] == 1 and report["fcm"]["attempts"] == 0
    assert m.token("fcm-waits") is None


def test_apns_alone_without_fcm_credentials(start_fcmd, apns_mock, tls_cert, key):
    f = start_fcmd(workers=1, apikey=None, args=["--ca-file", str(tls_cert[0]), *apns_args(key[0], apns_mock.base)])
    r = f.send_form([tok("ab")], {"aps": {}})
    assert r.status_code == 404 and r.json()["error"] == (
        "FCM is not configured: start fcmd with --service-account or --apikey-file")
    assert apns_form(f, [tok("ab")], {"aps": {"alert": "alone"}}).status_code == 200
    report = f.wait_idle()
    assert report["upstream"] == "apns" and report["apns"]["successes"] == 1 and report["successes"] == 1
    assert apns_mock.token(tok("ab"))["delivered"] == 1
    assert requests.get(f.url("/readyz"), timeout=5).status_code == 200
    assert "no FCM upstream, APNs upstream" in f.log_text()


def test_apns_pushes_through_the_queue_in_redis_keep_their_fields(tmp_path, start_apns, apns_mock):
    """With --redis-queue an APNs push waits in the stream as any other and
    is delivered with its topic and apns-* fields."""
    from test_fleet import Redis
    redis = Redis(tmp_path)
    try:
        f = start_apns(args=["--redis", redis.url, "--redis-queue"], workers=2)
        wait_until(lambda: requests.get(f.url("/readyz"), timeout=2).status_code == 200, what="redis reachable")
        r = apns_form(f, [tok("ef", 1), tok("ef", 2)], {"aps": {"alert": "q"}}, push_type="alert", priority="5",
                      collapse_id="cq")
        assert (r.status_code, r.text) == (200, "ok\n")
        wait_until(lambda: all(apns_mock.stats()["tokens"].get(t, {}).get("delivered") == 1
                               for t in (tok("ef", 1), tok("ef", 2))), what="both delivered")
        t = apns_mock.stats()["tokens"][tok("ef", 1)]
        assert t["data"] == {"aps": {"alert": "q"}}
        assert t["message"] == {"apns-topic": TOPIC, "apns-push-type": "alert", "apns-priority": "5",
                                "apns-collapse-id": "cq"}
    finally:
        redis.stop()
