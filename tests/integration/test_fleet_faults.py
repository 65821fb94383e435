"""Fleet mode against a Redis that misbehaves (tests/integration/fake_redis.py):
whatever it sends, the worker is never replaced, keeps answering, keeps its
memory bounded, and says so in a line or two, not a line per retry."""

import time

import pytest
import requests

from conftest import wait_until
from fake_redis import FakeRedis

RSS_LIMIT_KB = 200 * 1024


def rss_kb(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


def watch(f, pids, seconds):
    """For `seconds`: /healthz answers within a generous deadline every time,
    and the workers' RSS stays under the limit.  Returns the largest RSS."""
    peak = 0
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        t0 = time.monotonic()
        assert requests.get(f.url("/healthz"), timeout=2).status_code == 200
        assert time.monotonic() - t0 < 1.5, "/healthz was slow: the loop was blocked"
        peak = max([peak] + [rss_kb(p) for p in pids])
        assert peak < RSS_LIMIT_KB, f"worker RSS {peak} kB"
        time.sleep(0.2)
    return peak


def redis_lines(f):
    return [line for line in f.log_text().splitlines() if "redis:" in line]


@pytest.fixture
def fake():
    started = []

    def start(mode):
        r = FakeRedis(mode)
        started.append(r)
        return r

    yield start
    for r in started:
        r.stop()


@pytest.mark.parametrize("mode", ["extra", "hugearray", "hugebulk", "negative"])
def test_bad_reply_drops_the_connection_not_the_worker(fake, mock, start_fcmd, mode):
    r = fake(mode)
    f = start_fcmd(mock, workers=2, args=["--redis", r.url])
    pids = f.children()
    wait_until(lambda: r.evalshas >= 2, what="the workers' first flushes")
    watch(f, pids, 5)
    assert f.children() == pids
    log = f.log_text()
    assert "killed by signal" not in log
    # One line per worker for the outage (plus, at most, the first connect's).
    assert len(redis_lines(f)) <= 4, log
    # Nothing the server said is taken for the fleet's totals.
    rep = f.report()
    assert rep["scope"] == "local" and rep["redis"] == "unreachable"
    assert requests.get(f.url("/readyz"), timeout=2).status_code == 503
    # Back-off: a few reconnects, not one every 100 ms.
    assert r.connections <= 2 * 8


def test_refused_flush_keeps_the_connection_and_logs_once(fake, mock, start_fcmd):
    r = fake("wrongtype")
    f = start_fcmd(mock, workers=1, args=["--redis", r.url])
    pids = f.children()
    wait_until(lambda: r.evalshas >= 3, what="flushes retried")
    watch(f, pids, 3)
    assert r.connections == 1
    lines = redis_lines(f)
    assert len(lines) == 1 and "WRONGTYPE" in lines[0], lines
    assert requests.get(f.url("/readyz"), timeout=2).status_code == 503
    # The refusal clears: the next flush counts, on the same connection.
    r.mode = "ok"
    wait_until(lambda: requests.get(f.url("/readyz"), timeout=2).status_code == 200, what="/readyz 200")
    assert r.connections == 1 and f.children() == pids
    assert f.report()["scope"] == "fleet"
    assert len(redis_lines(f)) == 2 and "reachable again" in redis_lines(f)[1]
