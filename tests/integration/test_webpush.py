"""POST /webpush/send end to end: fcmd encrypts and signs each message, and
tests/integration/push_service.py, with its own crypto (Python's
`cryptography`), decrypts it with the subscription's private key and
verifies the VAPID JWT.  Then what the contract says of answers, retries,
intake's refusals, the internal addresses fcmd must not reach, the spool and
the counters."""

import json
import os
import signal
import subprocess
import time

import pytest
import requests

from conftest import FCMD_BIN, Fcmd, free_port, wait_until
from push_service import PushService, b64, unb64
from test_fleet import redis  # noqa: F401 (a fixture: a real redis-server)

SUBJECT = "mailto:ops@example.com"


@pytest.fixture(scope="module")
def vapid(tmp_path_factory):
    d = tmp_path_factory.mktemp("vapid")
    pem = d / "vapid.pem"
    subprocess.run(["openssl", "ecparam", "-name", "prime256v1", "-genkey", "-noout", "-out", str(pem)], check=True,
                   capture_output=True, timeout=30)
    os.chmod(pem, 0o600)
    pub = subprocess.run([FCMD_BIN, "--vapid-public-key", "--vapid-key", str(pem)], capture_output=True, text=True,
                         timeout=30)
    assert pub.returncode == 0, pub.stderr
    return pem, pub.stdout.strip()


@pytest.fixture
def service(tls_cert, vapid):
    s = PushService(str(tls_cert[0]), str(tls_cert[1]), server_key=vapid[1])
    yield s
    s.stop()


def webpush_args(vapid, tls_cert, allow="127.0.0.1", extra=()):
    args = ["--vapid-key", str(vapid[0]), "--vapid-subject", SUBJECT, "--ca-file", str(tls_cert[0])]
    if allow is not None:
        args += ["--webpush-allow", allow]
    return args + ["--retries", "2", *extra]


@pytest.fixture
def fcmd_wp(start_fcmd, vapid, tls_cert, service):
    return start_fcmd(None, args=webpush_args(vapid, tls_cert))


def send(f, body, **kw):
    return requests.post(f.url("/webpush/send"), json=body, timeout=10, **kw)


def delivered(sub, n=1, timeout=15):
    return wait_until(lambda: sub.messages if len(sub.messages) >= n else None, timeout,
                      what=f"{n} messages at {sub.sid} (errors: {sub.errors})")


def test_a_message_decrypts_with_the_subscriptions_key_and_its_vapid_token_verifies(fcmd_wp, service):
    sub = service.subscribe({"status": 201})
    r = send(fcmd_wp, {"subscriptions": [sub.to_json()], "payload": {"title": "Hello", "body": "\u00e9t\u00e9"}})
    assert r.status_code == 200, r.text
    assert r.json()["accepted"] == 1 and r.json()["id"]
    [m] = delivered(sub)
    assert json.loads(m["plaintext"]) == {"title": "Hello", "body": "\u00e9t\u00e9"}
    assert m["headers"]["ttl"] == "2419200"
    assert "urgency" not in m["headers"] and "topic" not in m["headers"]
    assert m["claims"]["sub"] == SUBJECT and m["claims"]["aud"] == service.origin
    assert not sub.errors
    fcmd_wp.wait_idle()
    rep = fcmd_wp.report()
    assert rep["webpush"]["successes"] == 1, rep
    assert rep["attempts"] == 1 and rep["failures"] == 0


def test_string_payload_ttl_urgency_and_topic_reach_the_service(fcmd_wp, service):
    sub = service.subscribe()
    r = send(fcmd_wp, {"subscriptions": [sub.to_json()], "payload": "just text \u2603", "ttl": 60,
                       "urgency": "high", "topic": "news-1_A"})
    assert r.status_code == 200, r.text
    [m] = delivered(sub)
    assert m["plaintext"] == "just text \u2603".encode()
    assert (m["headers"]["ttl"], m["headers"]["urgency"], m["headers"]["topic"]) == ("60", "high", "news-1_A")


def test_a_form_body_with_subscription_repeated(fcmd_wp, service):
    subs = [service.subscribe() for _ in range(3)]
    r = requests.post(fcmd_wp.url("/webpush/send"), timeout=10,
                      data={"subscription": [json.dumps(s.to_json()) for s in subs],
                            "payload": json.dumps({"k": "v"}), "urgency": "low", "ttl": "30"})
    assert r.status_code == 200 and r.text == "ok\n", r.text
    assert r.headers["X-Fcmd-Id"]
    for s in subs:
        [m] = delivered(s)
        assert json.loads(m["plaintext"]) == {"k": "v"} and m["headers"]["urgency"] == "low"


def test_every_message_has_its_own_salt_and_sender_key_and_one_jwt_per_origin(fcmd_wp, service):
    subs = [service.subscribe() for _ in range(4)]
    for _ in range(3):
        assert send(fcmd_wp, {"subscriptions": [s.to_json() for s in subs], "payload": "x"}).status_code == 200
    msgs = [m for s in subs for m in delivered(s, 3)]
    assert len({m["salt"] for m in msgs}) == 12 and len({m["sender_key"] for m in msgs}) == 12
    # Each worker signs once for the origin and reuses its token (two workers: at most two tokens).
    assert len({m["jwt"] for m in msgs}) <= 2


@pytest.mark.parametrize("status", [404, 410])
def test_gone_subscriptions_go_to_the_notregistered_drain_as_their_endpoint(fcmd_wp, service, status):
    sub = service.subscribe({"status": status})
    r = send(fcmd_wp, {"subscriptions": [sub.to_json()], "payload": "x"})
    assert r.status_code == 200
    pid = r.json()["id"]
    fcmd_wp.wait_idle()
    assert sub.requests == 1
    drained = requests.get(fcmd_wp.url("/gcm/report/notregistered"), timeout=5).json()
    assert drained == {"tokens": [sub.endpoint]}
    status = requests.get(fcmd_wp.url(f"/push/{pid}"), timeout=5).json()
    assert status["upstream"] == "webpush" and status["invalid"] == 1
    assert [e["token"] for e in status["errors"]] == [sub.endpoint]  # never the keys
    rep = fcmd_wp.report()
    assert rep["notregistered"] == 1 and rep["webpush"]["notregistered"] == 1


@pytest.mark.parametrize("first", [{"status": 429, "headers": {"Retry-After": "1"}},
                                   {"status": 503, "headers": {"Retry-After": "1"}}, {"status": 500}])
def test_429_and_5xx_are_retried_after_the_retry_after(fcmd_wp, service, first):
    sub = service.subscribe(first, {"status": 201})
    assert send(fcmd_wp, {"subscriptions": [sub.to_json()], "payload": "again"}).status_code == 200
    msgs = delivered(sub, 2)
    assert all(m["plaintext"] == b"again" for m in msgs)
    if "headers" in first:
        assert msgs[1]["at"] - msgs[0]["at"] >= 0.9
    fcmd_wp.wait_idle()
    rep = fcmd_wp.report()
    assert rep["retries"] == 1 and rep["successes"] == 1 and rep["failures"] == 0


def test_another_4xx_is_a_failure_logged_with_the_services_answer(fcmd_wp, service):
    sub = service.subscribe({"status": 403, "body": "vapid key mismatch\r\nInjected: yes"})
    assert send(fcmd_wp, {"subscriptions": [sub.to_json()], "payload": "x"}).status_code == 200
    fcmd_wp.wait_idle()
    assert sub.requests == 1
    rep = fcmd_wp.report()
    assert rep["failures"] == 1 and rep["notregistered"] == 0
    log = wait_until(lambda: (lambda t: t if "vapid key mismatch" in t else None)(fcmd_wp.log_text()), 10,
                     what="the service's answer in the log")
    assert "\nInjected" not in log
    assert sub.keys()["auth"] not in log and sub.keys()["p256dh"] not in log


def test_retries_run_out(fcmd_wp, service):
    sub = service.subscribe({"status": 500})
    assert send(fcmd_wp, {"subscriptions": [sub.to_json()], "payload": "x"}).status_code == 200
    fcmd_wp.wait_idle(30)
    assert sub.requests == 3  # --retries 2
    assert fcmd_wp.report()["failures"] == 1


# ---- the push service itself, judged by the reference ----

ORACLE = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "webpush", "oracle.js")


def web_push_send(tls_cert, message):
    assert os.path.isdir(os.path.join(os.path.dirname(ORACLE), "node_modules", "web-push")), \
        "the oracle's npm packages are missing (make webpush-oracle installs them)"
    out = subprocess.run(["node", ORACLE, "send"], input=json.dumps(message), capture_output=True, text=True,
                         timeout=60, env=dict(os.environ, NODE_EXTRA_CA_CERTS=str(tls_cert[0])))
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout)


def test_the_push_service_takes_what_npm_web_push_sends_and_refuses_what_it_cannot_decrypt(tls_cert):
    """The oracle is checked against the reference: npm's web-push, sending to
    it, must pass; the same message for another subscription's keys must not."""
    s = PushService(str(tls_cert[0]), str(tls_cert[1]))
    try:
        sub, other = s.subscribe(), s.subscribe()
        out = web_push_send(tls_cert, {"subscription": sub.to_json(), "payload": "from web-push", "ttl": 77,
                                       "urgency": "low", "topic": "ref"})
        assert out["status"] == 201, out
        [m] = sub.messages
        assert m["plaintext"] == b"from web-push"
        assert (m["headers"]["ttl"], m["headers"]["urgency"], m["headers"]["topic"]) == ("77", "low", "ref")
        assert m["claims"]["aud"] == s.origin and m["claims"]["sub"] == "mailto:ops@example.com"
        assert f"k={out['publicKey']}" in m["headers"]["authorization"]
        wrong = web_push_send(tls_cert, {"subscription": dict(sub.to_json(), endpoint=other.endpoint),
                                         "payload": "not for you"})
        assert wrong["status"] == 400 and not other.messages and len(other.errors) == 1, wrong
    finally:
        s.stop()


# ---- intake refuses what it must, and queues nothing ----

def refused(f, body, want):
    r = send(f, body)
    assert r.status_code == 400, (r.status_code, r.text)
    assert want in r.json()["error"], r.json()
    return r.json()["error"]


def test_endpoints_that_are_not_https_allowed_or_sane_are_refused(fcmd_wp, service):
    good = service.subscribe().to_json()
    cases = [
        ("http://127.0.0.1:1/push/x", "https://"),
        ("https://evil.example.com/push/x", "not a push service"),
        ("https://127.0.0.2/push/x", "not a push service"),
        ("https://user:pw@127.0.0.1/x", "user information"),
        ("https://127.0.0.1/x\r\nX-Injected: 1", "control character"),
        ("https://127.0.0.1/x y", "space"),
        ("https://127.0.0.1/" + "a" * 3000, "longer than 2048"),
        ("ftp://127.0.0.1/x", "https://"),
        ("https://", "host"),
    ]
    for endpoint, want in cases:
        refused(fcmd_wp, {"subscriptions": [dict(good, endpoint=endpoint)], "payload": "x"}, want)
    assert fcmd_wp.report()["attempts"] == 0 and fcmd_wp.report()["pending"] == 0


def test_keys_that_are_not_a_point_or_not_16_bytes_or_not_base64url_are_refused(fcmd_wp, service):
    good = service.subscribe().to_json()
    point = unb64(good["keys"]["p256dh"])
    off_curve = point[:-1] + bytes([point[-1] ^ 1])
    cases = [
        ({"p256dh": b64(off_curve), "auth": good["keys"]["auth"]}, "not a point on the P-256 curve"),
        ({"p256dh": b64(point[:33]), "auth": good["keys"]["auth"]}, "33 bytes"),
        ({"p256dh": b64(b"\x05" + point[1:]), "auth": good["keys"]["auth"]}, "0x04"),
        ({"p256dh": "not*base64", "auth": good["keys"]["auth"]}, "not base64url"),
        ({"p256dh": good["keys"]["p256dh"], "auth": b64(os.urandom(15))}, "15 bytes"),
        ({"p256dh": good["keys"]["p256dh"], "auth": b64(os.urandom(32))}, "16 bytes"),
        ({"p256dh": good["keys"]["p256dh"], "auth": "a b"}, "not base64url"),
        ({"p256dh": good["keys"]["p256dh"]}, "auth must be a string"),
    ]
    for keys, want in cases:
        refused(fcmd_wp, {"subscriptions": [dict(good, keys=keys)], "payload": "x"}, want)
    refused(fcmd_wp, {"subscriptions": [{"endpoint": good["endpoint"]}], "payload": "x"}, "no \"keys\" object")
    refused(fcmd_wp, {"subscriptions": ["https://127.0.0.1/x"], "payload": "x"}, "JSON object")
    assert fcmd_wp.report()["attempts"] == 0


def test_padded_keys_are_taken(fcmd_wp, service):
    sub = service.subscribe()
    j = sub.to_json()
    j["keys"] = {k: v + "=" * (-len(v) % 4) for k, v in j["keys"].items()}
    assert send(fcmd_wp, {"subscriptions": [j], "payload": "padded"}).status_code == 200
    assert delivered(sub)[0]["plaintext"] == b"padded"


def test_payloads_fields_and_shapes_that_are_wrong_are_refused(fcmd_wp, service):
    sub = service.subscribe().to_json()
    refused(fcmd_wp, {"subscriptions": [sub], "payload": "x" * 3994}, "3993")
    refused(fcmd_wp, {"subscriptions": [sub], "payload": {"a": "x" * 3990}}, "3993")
    refused(fcmd_wp, {"subscriptions": [sub], "payload": 5}, "object or string")
    refused(fcmd_wp, {"subscriptions": [sub]}, "payload is missing")
    refused(fcmd_wp, {"subscriptions": [], "payload": "x"}, "no subscriptions")
    refused(fcmd_wp, {"payload": "x"}, "no subscriptions")
    refused(fcmd_wp, {"tokens": ["abc"], "payload": "x"}, "\"subscriptions\"")
    refused(fcmd_wp, {"subscriptions": [sub], "payload": "x", "ttl": -1}, "ttl")
    refused(fcmd_wp, {"subscriptions": [sub], "payload": "x", "ttl": 2419201}, "ttl")
    refused(fcmd_wp, {"subscriptions": [sub], "payload": "x", "urgency": "urgent"}, "urgency")
    refused(fcmd_wp, {"subscriptions": [sub], "payload": "x", "topic": "a" * 33}, "topic")
    refused(fcmd_wp, {"subscriptions": [sub], "payload": "x", "topic": "no spaces"}, "topic")
    refused(fcmd_wp, {"subscriptions": [sub], "payload": "x", "priority": "high"}, "unknown field")
    refused(fcmd_wp, {"subscriptions": [sub], "payload": "nul\u0000"}, "NUL")
    r = requests.post(fcmd_wp.url("/webpush/send"), data={"subscription": "{not json", "payload": "x"}, timeout=5)
    assert r.status_code == 400 and "subscription is not valid JSON" in r.json()["error"]
    r = requests.post(fcmd_wp.url("/webpush/send"), data={"tokens": "abc", "payload": "x"}, timeout=5)
    assert r.status_code == 400 and "\"subscription\"" in r.json()["error"]
    r = requests.post(fcmd_wp.url("/webpush/send"), data={"subscription": json.dumps(sub), "payload": b"\xff\xfe"},
                      timeout=5)
    assert r.status_code == 400 and "UTF-8" in r.json()["error"]
    assert fcmd_wp.report()["attempts"] == 0 and fcmd_wp.report()["pending"] == 0


def test_3993_bytes_fit_one_record(fcmd_wp, service):
    sub = service.subscribe()
    assert send(fcmd_wp, {"subscriptions": [sub.to_json()], "payload": "y" * 3993}).status_code == 200
    [m] = delivered(sub)
    assert m["plaintext"] == b"y" * 3993 and m["length"] == 4096


def test_without_a_vapid_key_the_endpoint_is_404(start_fcmd, mock):
    f = start_fcmd(mock)
    r = send(f, {"subscriptions": [], "payload": "x"})
    assert r.status_code == 404 and "--vapid-key" in r.json()["error"]


def test_an_app_sends_with_its_own_vapid_key_and_allow_list(start_fcmd, tls_cert, service, tmp_path):
    pem = tmp_path / "app.pem"
    subprocess.run(["openssl", "ecparam", "-name", "prime256v1", "-genkey", "-noout", "-out", str(pem)], check=True,
                   capture_output=True, timeout=30)
    pub = subprocess.run([FCMD_BIN, "--vapid-public-key", "--vapid-key", str(pem)], capture_output=True, text=True,
                         timeout=30).stdout.strip()
    conf = tmp_path / "fcmd.conf"
    conf.write_text(f"[app web]\nvapid_key = {pem}\nvapid_subject = https://example.com/contact\n"
                    f"webpush_allow = 127.0.0.1\n")
    os.chmod(conf, 0o600)
    f = start_fcmd(None, args=["--config", str(conf), "--ca-file", str(tls_cert[0])])
    sub = service.subscribe()
    service.server_key = None
    r = send(f, {"subscriptions": [sub.to_json()], "payload": "app", "app": "web"})
    assert r.status_code == 200, r.text
    [m] = delivered(sub)
    assert f"k={pub}" in m["headers"]["authorization"] and m["claims"]["sub"] == "https://example.com/contact"
    r = send(f, {"subscriptions": [sub.to_json()], "payload": "default app"})
    assert r.status_code in (400, 404) and "error" in r.json(), r.text
    f.wait_idle()
    assert f.report()["apps"]["web"]["successes"] == 1


# ---- internal addresses ----

def test_the_default_list_refuses_loopback_endpoints_at_intake(start_fcmd, vapid, tls_cert, service):
    f = start_fcmd(None, args=webpush_args(vapid, tls_cert, allow=None))
    sub = service.subscribe()
    refused(f, {"subscriptions": [sub.to_json()], "payload": "x"}, "not a push service")
    ok = dict(sub.to_json(), endpoint="https://fcm.googleapis.com/fcm/send/abc")
    assert send(f, {"subscriptions": [ok], "payload": "x"}, headers={}).status_code == 200


def test_a_name_that_resolves_to_loopback_is_not_connected_to(start_fcmd, vapid, tls_cert, service, tmp_path):
    resolve_lib = os.environ.get("RESOLVE_LIB", "")
    assert os.path.exists(resolve_lib), "set RESOLVE_LIB to build/tests/fault_resolve.so (make integration does)"
    addr = tmp_path / "addr"
    addr.write_text("127.0.0.1\n")
    # Under the sanitizer build the preloaded library comes before ASan's runtime.
    env = dict(os.environ, LD_PRELOAD=resolve_lib, FCMD_TEST_RESOLVE_FILE=str(addr),
               ASAN_OPTIONS=os.environ.get("ASAN_OPTIONS", "") + ":verify_asan_link_order=0")
    f = start_fcmd(None, args=webpush_args(vapid, tls_cert, allow="*.map.invalid"), env=env)
    sub = service.subscribe()
    before = service.connections
    j = sub.to_json(endpoint=f"https://push.map.invalid:{service.port}/push/{sub.sid}")
    assert send(f, {"subscriptions": [j], "payload": "x"}).status_code == 200
    f.wait_idle()
    assert sub.requests == 0 and service.connections == before
    rep = f.report()
    assert rep["failures"] == 1 and rep["retries"] == 0, rep
    metrics = requests.get(f.url("/metrics"), timeout=5).text
    assert 'reason="address_refused"} 1' in metrics


def test_naming_the_host_literally_lets_it_through(start_fcmd, vapid, tls_cert, service):
    f = start_fcmd(None, args=webpush_args(vapid, tls_cert, allow="localhost"))
    sub = service.subscribe()
    j = sub.to_json(endpoint=f"https://localhost:{service.port}/push/{sub.sid}")
    assert send(f, {"subscriptions": [j], "payload": "via localhost"}).status_code == 200
    [m] = delivered(sub)
    assert m["plaintext"] == b"via localhost"
    assert m["claims"]["aud"] == f"https://localhost:{service.port}"


@pytest.mark.parametrize("allow", ["", "a,,b", "exa mple.com", "*.", "http://x.com", "x" * 5000],
                         ids=["empty", "empty-entry", "space", "bare-star", "url", "huge"])
def test_a_bad_allow_list_stops_the_start(vapid, tls_cert, allow):
    out = subprocess.run([FCMD_BIN, *webpush_args(vapid, tls_cert, allow=allow), "--check-config"],
                         capture_output=True, text=True, timeout=30)
    assert out.returncode == 2
    assert out.stderr.count("\n") == 1 and "--webpush-allow" in out.stderr


# ---- a hostile push service ----

def test_a_slow_huge_redirecting_or_resetting_service_is_bounded(fcmd_wp, service):
    slow = service.subscribe({"delay": 1.5, "status": 201})
    huge = service.subscribe({"status": 400, "huge": 64 << 20})
    redirect = service.subscribe({"status": 302, "headers": {"Location": "https://127.0.0.1:1/elsewhere"}})
    reset = service.subscribe({"reset": True}, {"status": 201})
    t0 = time.time()
    for s in (slow, huge, redirect, reset):
        assert send(fcmd_wp, {"subscriptions": [s.to_json()], "payload": "h"}).status_code == 200
    fcmd_wp.wait_idle(30)
    assert time.time() - t0 < 25
    assert len(slow.messages) == 1
    assert huge.requests == 1 and redirect.requests == 1  # failures, not retried
    assert reset.requests == 2 and len(reset.messages) == 2  # no answer: retried
    rep = fcmd_wp.report()
    assert rep["successes"] == 2 and rep["failures"] == 2, rep


# ---- durability and counters ----

def test_a_spooled_push_is_delivered_after_kill_9(start_fcmd, vapid, tls_cert, service, tmp_path):
    spool = tmp_path / "spool"
    spool.mkdir()
    args = webpush_args(vapid, tls_cert, extra=["--spool", str(spool)])
    f = start_fcmd(None, args=args)
    sub = service.subscribe({"delay": 30})  # the first attempt gets no answer before the kill
    r = send(f, {"subscriptions": [sub.to_json()], "payload": "kept", "urgency": "low", "topic": "t1", "ttl": 90})
    assert r.status_code == 200
    wait_until(lambda: sub.requests >= 1, 10, what="the first attempt")
    for pid in f.children() + [f.proc.pid]:
        os.kill(pid, signal.SIGKILL)
    f.proc.wait(5)
    sub.plan = [{"status": 201}]
    g = start_fcmd(None, args=args)
    msgs = delivered(sub, 2, 30)
    replayed = msgs[-1]
    assert replayed["plaintext"] == b"kept"
    assert (replayed["headers"]["urgency"], replayed["headers"]["topic"], replayed["headers"]["ttl"]) == \
        ("low", "t1", "90")
    g.wait_idle()
    assert g.report()["webpush"]["successes"] == 1


def test_a_replayed_push_is_held_to_the_allow_list_of_the_start_that_sends_it(start_fcmd, vapid, tls_cert, service,
                                                                             tmp_path):
    spool = tmp_path / "spool"
    spool.mkdir()
    f = start_fcmd(None, args=webpush_args(vapid, tls_cert, extra=["--spool", str(spool)]))
    sub = service.subscribe({"delay": 30})
    assert send(f, {"subscriptions": [sub.to_json()], "payload": "old list"}).status_code == 200
    wait_until(lambda: sub.requests >= 1, 10, what="the first attempt")
    for pid in f.children() + [f.proc.pid]:
        os.kill(pid, signal.SIGKILL)
    f.proc.wait(5)
    sub.plan = [{"status": 201}]
    before = service.connections
    g = start_fcmd(None, args=webpush_args(vapid, tls_cert, allow="localhost", extra=["--spool", str(spool)]))
    wait_until(lambda: g.report()["failures"] == 1, 20, what="the replayed push to fail")
    assert sub.requests == 1 and service.connections == before
    assert 'reason="address_refused"} 1' in requests.get(g.url("/metrics"), timeout=5).text


def test_the_queue_in_redis_carries_the_subscription_and_its_fields(start_fcmd, vapid, tls_cert, service, redis):
    """An instance killed with its push in flight: another, on the same
    Redis, claims it and delivers it with its TTL, Urgency and Topic."""
    args = webpush_args(vapid, tls_cert, extra=["--redis", redis.url, "--redis-queue", "--redis-claim-after", "2"])
    f = start_fcmd(None, args=args, workers=1)
    wait_until(lambda: requests.get(f.url("/readyz"), timeout=2).status_code == 200, what="redis reachable")
    sub = service.subscribe({"delay": 30})
    r = send(f, {"subscriptions": [sub.to_json()], "payload": {"via": "redis"}, "urgency": "very-low",
                 "topic": "q", "ttl": 120})
    assert r.status_code == 200, r.text
    wait_until(lambda: sub.requests >= 1, 10, what="the first attempt")
    for pid in f.children() + [f.proc.pid]:
        os.kill(pid, signal.SIGKILL)
    f.proc.wait(5)
    sub.plan = [{"status": 201}]
    g = start_fcmd(None, args=args, workers=1)
    msgs = delivered(sub, 2, 30)
    m = msgs[-1]
    assert json.loads(m["plaintext"]) == {"via": "redis"}
    assert (m["headers"]["urgency"], m["headers"]["topic"], m["headers"]["ttl"]) == ("very-low", "q", "120")
    assert g.report()


def test_metrics_count_the_webpush_upstream(fcmd_wp, service):
    sub = service.subscribe()
    assert send(fcmd_wp, {"subscriptions": [sub.to_json()], "payload": "m"}).status_code == 200
    fcmd_wp.wait_idle()
    text = requests.get(fcmd_wp.url("/metrics"), timeout=5).text
    assert 'upstream="webpush"' in text
    assert any(line.startswith("fcmd_requests_total") or 'endpoint="webpush_send"' in line
               for line in text.splitlines())
