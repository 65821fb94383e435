"""How fast fcmd sends upstream: the requests in flight found by additive
increase and multiplicative decrease, and --rate-limit.  The mock's --quota
plays a project's quota (429, QUOTA_EXCEEDED on v1, beyond N messages in a
second of its clock) and reports the most messages it admitted in a second;
the figures are read with Prometheus' parser and Python's json."""

import subprocess
import time

import requests
from prometheus_client.parser import text_string_to_metric_families

from conftest import FCMD_BIN, wait_until, accepted
from test_v1 import v1  # noqa: F401  (the fixture)


def gauge(f, name):
    text = requests.get(f.url("/metrics"), timeout=5).text
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            if s.name == name and not s.labels:
                return s.value
    raise AssertionError(f"{name} not in /metrics")


def test_the_limit_starts_at_a_quarter_of_the_ceiling(v1):
    # Each worker sets its gauge once its sender is up, which the start of
    # the second may not have reached when the first answers /healthz.
    _, f = v1(workers=2)
    wait_until(lambda: gauge(f, "fcmd_upstream_limit") == 2 * 400,  # 16 connections x 100 streams / 4, per worker
               what="both workers' limits")
    _, g = v1(workers=1, args=["--max-inflight", "64"])
    wait_until(lambda: gauge(g, "fcmd_upstream_limit") == 16, what="the limit")


def test_the_limit_grows_while_messages_wait(v1):
    """One worker, a ceiling of 64 and 16 to start with: 600 one-token
    requests at 100 ms each keep every request allowed in flight, so the
    limit grows to the ceiling, which the mock sees in flight at once."""
    mock, f = v1("--latency-ms", "100", workers=1, args=["--max-inflight", "64"])
    tokens = [f"grow-{i}" for i in range(600)]
    assert accepted(f.send_json({"tokens": tokens, "payload": {"k": "v"}})) == 600
    r = f.wait_idle(timeout=60)
    assert r["successes"] == 600
    assert gauge(f, "fcmd_upstream_limit") == 64
    s = mock.stats(summary=True)
    assert 16 < s["max_inflight"] <= 64


def test_a_throttling_upstream_halves_the_limit_and_everything_arrives(v1):
    """A quota of 100 messages a second against 400 requests in flight: the
    first 429s halve the limit (once per window, down to the floor), the
    refused messages are retried, and all arrive."""
    mock, f = v1("--quota", "100", "--retry-after", "0", workers=1, args=["--retries", "30"])
    tokens = [f"quota-{i}" for i in range(500)]
    assert accepted(f.send_json({"tokens": tokens, "payload": {"k": "v"}})) == 500
    r = f.wait_idle(timeout=90)
    assert r["successes"] == 500 and r["failures"] == 0
    assert r["retries"] > 0  # the quota did refuse some
    limit = gauge(f, "fcmd_upstream_limit")
    assert 8 <= limit < 400
    s = mock.stats(summary=True)
    assert s["quota_refused"] > 0 and s["quota_peak"] <= 100


def test_rate_limit_keeps_under_the_quota(v1):
    """--rate-limit 60 over two workers against a quota of 90 a second: no
    message is refused, and 240 messages take at least the time the rate
    allows (less what the buckets may hold at the start)."""
    mock, f = v1("--quota", "90", workers=2, args=["--rate-limit", "60", "--retries", "0"])
    tokens = [f"rate-{i}" for i in range(240)]
    t0 = time.monotonic()
    for i in range(0, 240, 40):
        assert f.send_json({"tokens": tokens[i:i + 40], "payload": {"k": "v"}}).status_code == 200
    r = f.wait_idle(timeout=60)
    elapsed = time.monotonic() - t0
    assert r["successes"] == 240 and r["failures"] == 0 and r["retries"] == 0
    s = mock.stats(summary=True)
    assert s["quota_refused"] == 0
    assert s["quota_peak"] <= 60 + 2 * 3 + 2  # the rate, the buckets (a tenth of a second each), rounding
    assert elapsed >= (240 - 2 * 3) / 60 - 0.5


def test_without_a_rate_limit_the_same_quota_refuses(v1):
    """The oracle of the test above: the quota does refuse a sender that
    does not keep to it."""
    mock, f = v1("--quota", "90", workers=2, args=["--retries", "0"])
    tokens = [f"norate-{i}" for i in range(240)]
    assert f.send_json({"tokens": tokens, "payload": {"k": "v"}}).status_code == 200
    r = f.wait_idle(timeout=60)
    assert r["failures"] > 0
    assert mock.stats(summary=True)["quota_refused"] == r["failures"]


def test_rate_limit_is_checked():
    for bad in ("-1", "x", "100000001"):
        p = subprocess.run([FCMD_BIN, "--rate-limit", bad, "--apikey", "k", "--check-config"],
                           capture_output=True, text=True, timeout=10)
        assert p.returncode == 2 and "rate-limit" in p.stderr and p.stderr.count("\n") == 1, p.stderr


def test_rate_limit_is_shared_by_the_fleet(tmp_path, start_mock, start_fcmd):
    """With --redis, --rate-limit is the fleet's: two instances of one
    worker each keep to half of it once both are live, so together they
    stay under a quota that either alone at the full rate would pass."""
    from test_fleet import Redis
    redis = Redis(tmp_path)
    try:
        mock = start_mock("--quota", "90")
        inst = [start_fcmd(mock, workers=1, args=["--redis", redis.url, "--rate-limit", "60", "--retries", "0"])
                for _ in range(2)]
        for f in inst:
            wait_until(lambda: gauge(f, "fcmd_rate_limit") == 30, what="the instance's half of the rate")
        t0 = time.monotonic()
        for f in inst:
            for i in range(0, 120, 40):
                tokens = [f"fleet-{f.port}-{k}" for k in range(i, i + 40)]
                assert f.send_json({"tokens": tokens, "payload": {"k": "v"}}).status_code == 200
        def local(f):
            return requests.get(f.url("/gcm/report"), params={"scope": "local"}, timeout=5).json()
        for f in inst:
            wait_until(lambda: local(f)["successes"] == 120, timeout=60, what="the instance's 120 delivered")
        elapsed = time.monotonic() - t0
        s = mock.stats(summary=True)
        assert s["quota_refused"] == 0
        assert s["quota_peak"] <= 60 + 2 * 3 + 2
        assert elapsed >= (240 - 2 * 3) / 60 - 0.5
    finally:
        redis.stop()
