"""FCM HTTP v1 end to end: OAuth2 service-account tokens, one request per
target over HTTP/2 with TLS, and every FCM outcome, against the mock."""

import signal
import subprocess
import time

import pytest
import requests

from conftest import FCMD_BIN, free_port, wait_until, write_service_account, accepted


@pytest.fixture
def v1(start_mock, start_fcmd, tls_cert, signing_key, tmp_path):
    """Starts a TLS mock and fcmd on the v1 upstream; returns a function taking
    mock args and fcmd kwargs."""
    cert, key = tls_cert
    private_pem, public = signing_key

    def start(*mock_args, workers=1, args=(), **kw):
        mock = start_mock("--tls-cert", str(cert), "--tls-key", str(key), "--oauth-public-key", str(public),
                          *mock_args, cafile=str(cert))
        sa = write_service_account(tmp_path / "sa.json", private_pem, f"https://localhost:{mock.port}/token")
        f = start_fcmd(workers=workers, apikey=None,
                       args=["--service-account", str(sa), "--fcm-url", f"https://localhost:{mock.port}",
                             "--ca-file", str(cert), *args], **kw)
        return mock, f
    return start


def delivered(mock, *keys):
    def check():
        toks = mock.stats()["tokens"]
        return all(k in toks and toks[k]["delivered"] >= 1 for k in keys)
    return check


def test_v1_delivers_over_http2_with_string_data(v1):
    mock, f = v1(workers=2)
    resp = f.send_form(["d1", "d2", "d3"], {"s": "x", "n": 1, "b": True, "o": {"k": [1]}})
    assert resp.text == "ok\n"
    wait_until(delivered(mock, "d1", "d2", "d3"), what="v1 deliveries")
    assert mock.token("d1")["data"] == {"s": "x", "n": "1", "b": "true", "o": '{"k": [1]}'}  # the client's own JSON text
    r = f.wait_idle()
    assert r["upstream"] == "v1"
    assert r["successes"] == 3 and r["attempts"] == 3
    # One token per worker (a worker that had nothing to send may still be fetching its own).
    wait_until(lambda: f.report()["oauth_tokens"] == 2, what="a token in each worker")
    s = mock.stats(summary=True)
    assert s["http2_requests"] == s["requests"] == 3
    assert s["tokens_issued"] == 2 and s["oauth_rejected"] == 0 and s["v1_unauthorized"] == 0


def test_v1_outcomes_land_in_the_right_counters(v1):
    mock, f = v1()
    tokens = ["notreg-a", "mismatch-b", "invalid-c", "badarg-d", "thirdparty-e", "good-f"]
    assert accepted(f.send_json({"tokens": tokens, "payload": {"k": "v"}})) == 6
    r = f.wait_idle()
    assert r["notregistered"] == 3  # UNREGISTERED, SENDER_ID_MISMATCH, INVALID_ARGUMENT on the token
    assert r["failures"] == 2       # INVALID_ARGUMENT on the payload, THIRD_PARTY_AUTH_ERROR
    assert r["successes"] == 1 and r["retries"] == 0
    nr = requests.get(f.url("/gcm/report/notregistered")).json()
    assert sorted(nr["tokens"]) == ["invalid-c", "mismatch-b", "notreg-a"]
    log = f.log_text()
    assert "Invalid value at message.android.ttl" in log  # FCM's own words for the failure
    assert "APNs or web push credentials" in log


def test_v1_retries_and_retry_after(v1):
    mock, f = v1("--retry-after", "2")
    t0 = time.monotonic()
    f.send_form(["quota1-a", "unavail1-b", "internal1-c"], {})
    wait_until(delivered(mock, "quota1-a", "unavail1-b", "internal1-c"), timeout=15, what="retried deliveries")
    assert time.monotonic() - t0 >= 2.0  # QUOTA_EXCEEDED came with Retry-After: 2
    for t in ("quota1-a", "unavail1-b", "internal1-c"):
        assert mock.token(t)["attempts"] == 2
    r = f.wait_idle()
    assert r["retries"] == 3 and r["successes"] == 3


def test_v1_new_token_after_401(v1):
    mock, f = v1()
    f.send_form(["refuse1-a"], {})
    wait_until(delivered(mock, "refuse1-a"), what="delivery after the token was refused")
    s = mock.stats(summary=True)
    assert s["tokens_issued"] == 2 and s["oauth_requests"] == 2
    assert f.wait_idle()["oauth_tokens"] == 2
    assert "refused the access token" in f.log_text()


def test_v1_token_refreshed_before_expiry(v1):
    mock, f = v1("--token-ttl", "2")
    # 80% of a 2 s lifetime: a new token every 1.6 s, without a single 401.
    wait_until(lambda: mock.stats(summary=True)["tokens_issued"] >= 3, timeout=10, what="early refreshes")
    f.send_form(["after-refresh"], {})
    wait_until(delivered(mock, "after-refresh"), what="delivery with a refreshed token")
    assert mock.stats(summary=True)["v1_unauthorized"] == 0


def test_v1_waits_while_the_token_endpoint_is_down(v1):
    mock, f = v1("--oauth-fail", "3")
    assert f.send_form(["patient"], {}).text == "ok\n"
    wait_until(delivered(mock, "patient"), timeout=20, what="delivery once a token came")
    r = f.wait_idle()
    assert r["oauth_failures"] == 3 and r["failures"] == 0 and r["successes"] == 1
    log = f.log_text()
    assert "HTTP 503: unavailable" in log and "nothing is sent until it succeeds" in log


def test_v1_rejected_assertion_is_reported(v1, tmp_path):
    # The mock trusts another key: every assertion fails to verify.
    other = tmp_path / "other.pem"
    subprocess.run(["openssl", "genpkey", "-algorithm", "RSA", "-pkeyopt", "rsa_keygen_bits:2048", "-out",
                    str(tmp_path / "other-key.pem")], check=True, capture_output=True, timeout=60)
    subprocess.run(["openssl", "pkey", "-in", str(tmp_path / "other-key.pem"), "-pubout", "-out", str(other)],
                   check=True, capture_output=True, timeout=60)
    mock, f = v1("--oauth-public-key", str(other))
    f.send_form(["never"], {})
    r = wait_until(lambda: (lambda r: r if r["oauth_failures"] >= 2 else None)(f.report()), what="token failures")
    assert r["waiting_for_token"] == 1 and r["pending"] == 1 and r["attempts"] == 0
    assert "invalid_grant (JWT signature does not verify)" in f.log_text()
    assert mock.stats(summary=True)["requests"] == 0
    # Its work can never finish: a second SIGTERM stops fcmd at once, and the loss is counted.
    f.proc.send_signal(signal.SIGTERM)
    wait_until(lambda: "finish their pending work" in f.log_text(), what="the drain to begin")
    f.proc.send_signal(signal.SIGTERM)
    assert f.proc.wait(10) == 0
    assert "stopping at once" in f.log_text()


def test_v1_topics_conditions_and_options(v1):
    mock, f = v1()
    f.send_json({"topic": "news", "payload": {"h": "x"}, "notification": {"title": "T"}})
    f.send_json({"condition": "'a' in topics", "payload": {"h": "y"}})
    f.send_json({"tokens": ["opt1"], "payload": {"k": 1}, "priority": "high", "time_to_live": 60,
                 "collapse_key": "ck", "android": {"restricted_package_name": "com.example"}})
    wait_until(delivered(mock, "/topics/news", "'a' in topics", "opt1"), what="topic, condition and token")
    assert mock.token("/topics/news")["message"]["notification"] == {"title": "T"}
    assert mock.token("opt1")["message"]["android"] == {
        "restricted_package_name": "com.example", "collapse_key": "ck", "priority": "HIGH", "ttl": "60s"}


def test_v1_payload_over_4096_bytes_is_refused(v1):
    mock, f = v1()
    resp = f.send_json({"tokens": ["big"], "payload": {"blob": "x" * 4100}})
    assert resp.status_code == 400
    assert "4096" in resp.json()["error"]
    r = f.report()
    assert r["accepted"] == 0 and r["pending"] == 0
    assert f.send_json({"tokens": ["fits"], "payload": {"blob": "x" * 4000}}).status_code == 200


def test_v1_1000_sends_share_the_capped_connections(v1):
    mock, f = v1("--latency-ms", "100", args=["--upstream-connections", "2"])
    tokens = [f"many{i}" for i in range(1000)]
    assert accepted(f.send_json({"tokens": tokens, "payload": {"n": 1}})) == 1000
    r = f.wait_idle(timeout=30)
    assert r["successes"] == 1000
    s = mock.stats(summary=True)
    assert s["requests"] == s["http2_requests"] == 1000
    assert s["max_inflight"] > 2    # multiplexed: more requests at once than connections
    assert s["connections"] <= 3    # fcmd's cap of 2, plus this test's stats connection


def test_service_account_wins_over_apikey(v1):
    mock, f = v1(args=["--apikey", "legacy-key"])
    assert f.report()["upstream"] == "v1"


@pytest.mark.parametrize("override,needle", [
    ({"type": "user"}, "service_account"),
    ({"client_email": None}, "client_email"),
    ({"private_key": "-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n"}, "private_key"),
    ({"token_uri": "file:///etc/passwd"}, "token_uri"),
])
def test_bad_service_account_exits_2(tmp_path, signing_key, override, needle):
    sa = write_service_account(tmp_path / "bad.json", signing_key[0], "https://localhost/token", **override)
    r = subprocess.run([FCMD_BIN, "--service-account", str(sa), "--port", str(free_port())],
                       capture_output=True, text=True, timeout=10)
    assert r.returncode == 2
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and needle in lines[0] and str(sa) in lines[0]
    assert "PRIVATE KEY" not in r.stderr


def test_unreadable_service_account_exits_2(tmp_path):
    r = subprocess.run([FCMD_BIN, "--service-account", str(tmp_path / "missing.json")],
                       capture_output=True, text=True, timeout=10)
    assert r.returncode == 2 and "cannot read" in r.stderr


def test_v1_max_inflight_caps_concurrent_requests(v1):
    mock, f = v1("--latency-ms", "150", args=["--max-inflight", "7"])
    f.send_json({"tokens": [f"cap{i}" for i in range(40)], "payload": {}})
    assert f.wait_idle()["successes"] == 40
    s = mock.stats(summary=True)
    assert s["max_inflight"] == 7
    assert s["oauth_requests"] == s["tokens_issued"] == 1  # delayed answers leave the counters alone


def test_v1_falls_back_to_http1_when_tls_server_offers_only_that(v1):
    mock, f = v1("--http1-only")
    f.send_json({"tokens": [f"h1-{i}" for i in range(20)], "payload": {"k": "v"}})
    assert f.wait_idle()["successes"] == 20
    s = mock.stats(summary=True)
    assert s["requests"] == 20 and s["http2_requests"] == 0


def test_v1_over_plain_http_speaks_http1(start_mock, start_fcmd, signing_key, tmp_path):
    private_pem, public = signing_key
    mock = start_mock("--oauth-public-key", str(public))
    sa = write_service_account(tmp_path / "sa.json", private_pem, f"http://127.0.0.1:{mock.port}/token")
    f = start_fcmd(workers=1, apikey=None,
                   args=["--service-account", str(sa), "--fcm-url", f"http://127.0.0.1:{mock.port}"])
    f.send_form(["plain1", "plain2"], {"x": 1})
    assert f.wait_idle()["successes"] == 2
    s = mock.stats(summary=True)
    assert s["requests"] == 2 and s["http2_requests"] == 0


def test_v1_message_fields_are_bounded(v1):
    """v1 sends the message fields once per target: a 900 KB webpush object
    with 1,000 tokens would have made fcmd upload 900 MB.  Options count with
    the payload against --max-payload-bytes, and FCM's fields together
    against the per-message bound."""
    mock, f = v1()
    tokens = [f"amp{i}" for i in range(1000)]
    r = f.send_json({"tokens": tokens, "payload": {"k": "v"}, "webpush": {"data": {"blob": "x" * 900000}}})
    assert r.status_code == 400 and "options are larger than" in r.json()["error"]
    r = f.send_json({"tokens": tokens, "payload": {"k": "v"},
                     "webpush": {"data": {"blob": "x" * 9000}}, "apns": {"payload": {"blob": "y" * 9000}}})
    assert r.status_code == 400 and "over the 16384-byte limit" in r.json()["error"]
    assert f.report()["accepted"] == 0
    assert f.send_json({"tokens": ["fine"], "payload": {"k": "v"}, "webpush": {"data": {"k": "w"}}}).status_code == 200
    f.wait_idle()
    assert mock.stats(summary=True)["requests"] == 1
