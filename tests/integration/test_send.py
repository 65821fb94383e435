"""/gcm/send end to end against the legacy mock: the seed's examples, both
formats, outcomes, drains, retries and the queue bound."""

import json
import re
import subprocess
import time

import requests

from conftest import API_KEY, wait_until, accepted

GOCM_KEYS = ["attempts", "failures", "pending", "canonicals", "notregistered"]


def delivered(mock, *tokens):
    def check():
        toks = mock.stats()["tokens"]
        return all(t in toks and toks[t]["delivered"] >= 1 for t in tokens)
    return check


def test_seed_curl_example(mock, start_fcmd):
    f = start_fcmd(mock)
    out = subprocess.run(
        ["curl", "-s", "-d", 'tokens=token1&tokens=token2&payload={"title": "hello", "count": 3}',
         f.url("/gcm/send")], capture_output=True, text=True, timeout=10)
    assert out.stdout == "ok\n"
    wait_until(delivered(mock, "token1", "token2"), what="both tokens at the mock")
    for t in ("token1", "token2"):
        assert mock.token(t)["data"] == {"title": "hello", "count": 3}
    r = f.wait_idle()
    assert r["attempts"] == 2
    assert r["successes"] == 2
    assert r["failures"] == 0


def test_seed_python_requests_example(mock, start_fcmd):
    f = start_fcmd(mock)
    resp = requests.post(f.url("/gcm/send"),
                         data={"tokens": ["token1", "token2"], "payload": json.dumps({"message": "hi"})})
    assert resp.status_code == 200
    assert resp.text == "ok\n"
    wait_until(delivered(mock, "token1", "token2"), what="both tokens at the mock")
    assert mock.token("token2")["data"] == {"message": "hi"}
    r = f.wait_idle()
    assert r["attempts"] == 2 and r["pending"] == 0


def test_mock_sees_api_key(start_mock, start_fcmd):
    mock = start_mock("--apikey", API_KEY)
    f = start_fcmd(mock)
    assert f.send_form(["k1"], {"a": 1}).status_code == 200
    wait_until(delivered(mock, "k1"), what="delivery with the right key")
    assert mock.stats()["auth_failures"] == 0


def test_json_request(mock, start_fcmd):
    f = start_fcmd(mock)
    resp = f.send_json({"tokens": ["j1", "j2", "j3"], "payload": {"n": 1, "s": "x"}, "priority": "high",
                        "time_to_live": 30})
    assert resp.status_code == 200
    assert resp.headers["content-type"].startswith("application/json")
    assert accepted(resp) == 3
    wait_until(delivered(mock, "j1", "j2", "j3"), what="json tokens at the mock")
    assert mock.token("j3")["data"] == {"n": 1, "s": "x"}


def test_json_topic(mock, start_fcmd):
    f = start_fcmd(mock)
    resp = f.send_json({"topic": "news", "payload": {"headline": "x"}})
    assert accepted(resp) == 1
    wait_until(delivered(mock, "/topics/news"), what="topic at the mock")
    assert f.wait_idle()["successes"] == 1


def test_report_shape(mock, start_fcmd):
    f = start_fcmd(mock)
    resp = requests.get(f.url("/gcm/report"))
    assert resp.status_code == 200
    assert resp.headers["content-type"] == "application/json"
    body = resp.json()
    assert list(body)[:5] == GOCM_KEYS
    for k in GOCM_KEYS + ["successes", "retries", "accepted", "dropped"]:
        assert isinstance(body[k], int) and body[k] == 0, k
    assert body["workers"] == 2
    assert body["upstream"] == "legacy"


def test_drains_return_each_item_once(mock, start_fcmd):
    f = start_fcmd(mock)
    tokens = ["canonA", "canonB", "notreg1", "invalid2", "plain"]
    assert f.send_form(tokens, {"x": 1}).status_code == 200
    r = f.wait_idle()
    assert r["canonicals"] == 2
    assert r["notregistered"] == 2
    assert r["successes"] == 3  # the two canonical ones were delivered too
    canon = requests.get(f.url("/gcm/report/canonical")).json()
    assert sorted(canon["canonical_replacements"], key=lambda p: p["original"]) == [
        {"original": "canonA", "canonical": "canonical-canonA"},
        {"original": "canonB", "canonical": "canonical-canonB"},
    ]
    assert requests.get(f.url("/gcm/report/canonical")).json() == {"canonical_replacements": None}
    nr = requests.get(f.url("/gcm/report/notregistered")).json()
    assert sorted(nr["tokens"]) == ["invalid2", "notreg1"]
    assert requests.get(f.url("/gcm/report/notregistered")).json() == {"tokens": None}


def test_permanent_error_is_a_failure(mock, start_fcmd):
    f = start_fcmd(mock)
    f.send_form(["mismatch1", "ok1"], {})
    r = f.wait_idle()
    assert r["failures"] == 1 and r["successes"] == 1 and r["retries"] == 0


def test_unavailable_once_is_retried_and_delivered(mock, start_fcmd):
    f = start_fcmd(mock)
    f.send_form(["unavail1-a", "internal1-b", "fine"], {"k": "v"})
    wait_until(delivered(mock, "unavail1-a", "internal1-b", "fine"), what="retried tokens delivered")
    assert mock.token("unavail1-a")["attempts"] == 2
    assert mock.token("internal1-b")["attempts"] == 2
    assert mock.token("fine")["attempts"] == 1  # a retry sends only the tokens that need it
    r = f.wait_idle()
    assert r["retries"] == 2 and r["attempts"] == 5 and r["successes"] == 3


def test_retries_are_bounded(mock, start_fcmd):
    f = start_fcmd(mock, args=["--retries", "2"])
    f.send_form(["unavail-forever"], {})
    r = f.wait_idle(timeout=20)
    assert mock.token("unavail-forever")["attempts"] == 3
    assert r["failures"] == 1 and r["retries"] == 2


def test_503_retry_after_is_respected(start_mock, start_fcmd):
    mock = start_mock("--retry-after", "2")
    f = start_fcmd(mock)
    t0 = time.monotonic()
    f.send_form(["http503once-x", "other"], {})
    wait_until(delivered(mock, "http503once-x", "other"), timeout=15, what="delivery after the 503")
    elapsed = time.monotonic() - t0
    # The first try got 503 with Retry-After: 2, so the second cannot come sooner.
    assert elapsed >= 2.0
    assert mock.token("http503once-x")["attempts"] == 2
    assert f.wait_idle()["retries"] == 2


def test_401_is_a_failure_and_logged(start_mock, start_fcmd):
    mock = start_mock("--apikey", "the-right-key")
    f = start_fcmd(mock, apikey="a-wrong-key-77")
    f.send_form(["t1", "t2"], {})
    r = f.wait_idle()
    assert r["failures"] == 2 and r["retries"] == 0
    log = wait_until(lambda: "401" in f.log_text() and f.log_text(), what="a log line about the 401")
    assert "a-wrong-key-77" not in log


def test_legacy_batches_at_most_1000_tokens(mock, start_fcmd):
    f = start_fcmd(mock, workers=1)
    tokens = [f"bulk{i}" for i in range(2500)]
    assert accepted(f.send_json({"tokens": tokens, "payload": {"b": 1}})) == 2500
    r = f.wait_idle()
    assert r["successes"] == 2500
    s = mock.stats(summary=True)
    assert s["requests"] == 3
    assert s["unique_delivered"] == 2500


def test_queue_full_answers_503(start_mock, start_fcmd):
    mock = start_mock("--latency-ms", "1500")
    f = start_fcmd(mock, workers=1, args=["--queue-size", "5"])
    assert f.send_form(["q1", "q2", "q3"], {}).status_code == 200
    resp = f.send_form(["q4", "q5", "q6"], {})
    assert resp.status_code == 503
    assert resp.headers["retry-after"] == "1"
    assert "queue full" in resp.json()["error"]
    assert f.send_form(["q4", "q5"], {}).status_code == 200
    r = f.wait_idle()
    assert r["accepted"] == 5 and r["successes"] == 5
    assert "q6" not in mock.stats()["tokens"]


def test_two_workers_share_one_report(mock, start_fcmd):
    f = start_fcmd(mock, workers=2)
    workers = set()
    for i in range(300):
        resp = requests.post(f.url("/gcm/send"), data={"tokens": [f"w{i}"], "payload": "{}"},
                             headers={"Connection": "close"})
        assert resp.status_code == 200
        workers.add(resp.headers["x-fcmd-worker"])
    assert workers == {"0", "1"}, "both children should have served sends"
    f.wait_idle()
    seen = {}
    deadline = time.monotonic() + 10
    while len(seen) < 2 and time.monotonic() < deadline:
        resp = requests.get(f.url("/gcm/report"), headers={"Connection": "close"})
        seen[resp.headers["x-fcmd-worker"]] = resp.json()
    assert len(seen) == 2
    a, b = seen.values()
    a.pop("uptime_seconds"), b.pop("uptime_seconds")
    assert a == b
    assert a["accepted"] == 300 and a["attempts"] == 300 and a["successes"] == 300 and a["pending"] == 0


def test_an_outage_is_logged_once_per_interval_not_per_request(mock, start_fcmd):
    """Every request to an upstream that fails: the log says so with a
    count, not a line per request."""
    f = start_fcmd(mock, workers=1, args=["--retries", "0"])
    for i in range(200):
        assert f.send_form([f"http500-{i}"], {}).status_code == 200
    assert f.wait_idle()["failures"] == 200
    lines = [line for line in f.log_text().splitlines() if "targets failed" in line]
    assert 1 <= len(lines) <= 2, lines
    for i in range(5):
        f.send_form([f"http500-late-{i}"], {})
    f.wait_idle()
    assert len([line for line in f.log_text().splitlines() if "targets failed" in line]) <= 2
    # What was held back is said too, at the latest when the worker stops:
    # the lines printed and the counts they give add up to every failure.
    f.stop()
    text = f.log_text()
    printed = len([line for line in text.splitlines() if "targets failed" in line])
    held = sum(int(n) for n in re.findall(r"(\d+) more like (?:it|the last one)", text))
    assert printed + held == 205, text
