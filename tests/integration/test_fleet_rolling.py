"""Instances that differ share one --redis-queue (a rolling deploy): an
instance that does not know a push's app, has no credentials for its
provider, or has smaller request limits leaves the push to one that can
serve it, and a push no instance serves within 10 x --redis-claim-after
fails with its reason.  A real redis-server; the oracles are the mock
upstreams' per-token counts, Redis itself (redis-cli), /metrics and the
logs."""

import json
import os
import re
import signal
import time

import pytest
import requests

from apns_keys import apns_args, make_p256
from conftest import wait_until
from test_fleet import fleet_report, redis  # noqa: F401 (fixture)
from test_fleet_queue import cli, command_calls, delivered, drained, group_pending, metric, stream_len, wait_ready
from webhook_receiver import Receiver

ALPHA_KEY = "alpha-key"
UNSERVED_CLAIMS = 10  # docs/FLEET.md: a push no instance served for 10 x --redis-claim-after fails


def queue_args(redis, claim):
    return ["--redis", redis.url, "--redis-queue", "--redis-claim-after", str(claim)]


def write_conf(tmp_path, name, alpha_mock=None):
    """A config file; with alpha_mock, an [app alpha] sending there."""
    conf = tmp_path / f"{name}.conf"
    conf.write_text(f"[app alpha]\napikey = {ALPHA_KEY}\ngcm_url = {alpha_mock.url()}\n" if alpha_mock else "")
    os.chmod(conf, 0o600)
    return conf


def send(f, tokens, path="/gcm/send", **fields):
    return requests.post(f.url(path), json={"tokens": tokens, "payload": {"k": "v"}, **fields}, timeout=5)


def status_done(f, pid):
    r = requests.get(f.url(f"/push/{pid}"), timeout=5)
    return r.json() if r.status_code == 200 and r.json()["state"] == "done" else None


def plug(f, slow, token):
    """One push that a slow upstream holds for a while: with --queue-size 1
    the instance reads nothing more meanwhile, so the other instance reads
    the pushes that follow (and must leave them)."""
    assert send(f, [token]).status_code == 200
    wait_until(lambda: slow.stats(summary=True)["requests"] >= 1, what="the plug in flight")


# An instance that reads one push at a time (the plug keeps it busy), but
# takes every left push in one claim once the plug is done.
BUSY = ["--queue-size", "1", "--queue-max-bytes", str(64 << 20)]


def left(f):
    return metric(f, "fcmd_queue_left_total")


def unserved(f):
    return metric(f, "fcmd_queue_unserved_total")


def assert_nothing_failed(f):
    rep = fleet_report(f.base, scope="local")
    assert rep["failures"] == 0, rep
    assert metric(f, "fcmd_failures_total", reason="queue_entry") == 0
    assert unserved(f) == 0
    assert "given up" not in f.log_text()


def test_an_app_one_instance_lacks_is_left_to_the_one_that_knows_it(redis, start_mock, start_fcmd, tmp_path):
    slow, fast, other = start_mock("--latency-ms", "2000"), start_mock(), start_mock()
    a = start_fcmd(slow, workers=1, args=[*queue_args(redis, 2), *BUSY, "--config",
                                          str(write_conf(tmp_path, "a", fast))])
    b = start_fcmd(other, workers=2, args=queue_args(redis, 2))
    wait_ready(a)
    wait_ready(b)
    plug(a, slow, "plug")
    tokens = [f"alpha-{i}" for i in range(8)]
    began = time.monotonic()
    for t in tokens:
        r = send(a, [t], app="alpha")
        assert r.status_code == 200, r.text
    # B does not know alpha: its intake refuses it, its readers leave it.
    r = send(b, ["alpha-at-b"], app="alpha")
    assert r.status_code == 400 and "unknown app" in r.json()["error"], r.text
    wait_until(lambda: left(b) >= 1, what="B to leave some of alpha's pushes")
    wait_until(lambda: all(v == 1 for v in delivered(fast, tokens).values()), timeout=20,
               what="A to deliver every alpha push")
    took = time.monotonic() - began
    wait_until(lambda: drained(redis), what="the stream empty")
    # Promptly: the plug's 2 s and a claim round, far under 10 x 2 s.
    assert took < UNSERVED_CLAIMS * 2 / 2, took
    assert all(v == 1 for v in delivered(fast, tokens).values())
    assert not set(tokens) & set(other.stats()["tokens"])
    assert_nothing_failed(b)
    assert "left to another instance: its app is not known here" in b.log_text()
    # B still serves what it can: the default app.
    assert send(b, ["b-own"]).status_code == 200
    wait_until(lambda: delivered(other, ["b-own"]) == {"b-own": 1} or delivered(slow, ["b-own"]) == {"b-own": 1},
               what="a default-app push delivered")


def test_a_provider_one_instance_lacks_is_left_to_the_one_that_has_it(redis, start_mock, start_fcmd, tmp_path,
                                                                      tls_cert):
    key = make_p256(tmp_path)
    cert, tkey = tls_cert
    apns = start_mock("--tls-cert", str(cert), "--tls-key", str(tkey), "--apns-public-key", str(key[1]),
                      "--apns-key-id", "ABC123DEFG", "--apns-team-id", "DEF123GHIJ", "--apns-topic",
                      "com.example.app", cafile=str(cert))
    slow, other = start_mock("--latency-ms", "2000"), start_mock()
    a = start_fcmd(slow, workers=1, args=[*queue_args(redis, 2), *BUSY, "--ca-file", str(cert),
                                          *apns_args(key[0], apns.base, topic="com.example.app",
                                                     key_id="ABC123DEFG", team_id="DEF123GHIJ")])
    b = start_fcmd(other, workers=2, args=queue_args(redis, 2))
    wait_ready(a)
    wait_ready(b)
    plug(a, slow, "plug")
    tokens = [("ab" + f"{i:x}".rjust(8, "0")).ljust(64, "a") for i in range(6)]
    for t in tokens:
        r = send(a, [t], path="/apns/send", payload={"aps": {"alert": "hi"}})
        assert r.status_code == 200, r.text
    assert send(b, [tokens[0]], path="/apns/send", payload={"aps": {}}).status_code == 404
    wait_until(lambda: left(b) >= 1, what="B to leave some APNs pushes")
    wait_until(lambda: all(apns.stats()["tokens"].get(t, {}).get("delivered", 0) == 1 for t in tokens),
               timeout=20, what="A to deliver every APNs push")
    wait_until(lambda: drained(redis), what="the stream empty")
    assert_nothing_failed(b)
    assert "left to another instance: its provider is not configured for its app here" in b.log_text()


def test_a_push_over_one_instances_limits_is_left_not_deleted(redis, start_mock, start_fcmd, tmp_path):
    slow, fast = start_mock("--latency-ms", "2000"), start_mock()
    # A's default app sends to the fast upstream; its plug goes to the slow one through app alpha.
    a = start_fcmd(fast, workers=1, args=[*queue_args(redis, 2), *BUSY, "--config",
                                          str(write_conf(tmp_path, "a", slow))])
    b = start_fcmd(fast, workers=2, args=[*queue_args(redis, 2), "--max-body-bytes", "16384", "--max-tokens", "100"])
    wait_ready(a)
    wait_ready(b)
    assert send(a, ["plug"], app="alpha").status_code == 200
    wait_until(lambda: slow.stats(summary=True)["requests"] >= 1, what="the plug in flight")
    big = {"pad": "z" * 30000}  # 30 KB: within A's limits, over B's 16 KiB bodies
    tokens = [f"big-{i}" for i in range(6)]
    for t in tokens:
        r = requests.post(a.url("/gcm/send"), json={"tokens": [t], "payload": big}, timeout=5)
        assert r.status_code == 200, r.text
    r = requests.post(b.url("/gcm/send"), json={"tokens": ["big-at-b"], "payload": big}, timeout=5)
    assert r.status_code == 413, r.text
    wait_until(lambda: left(b) >= 1, what="B to leave some large pushes")
    assert stream_len(redis) >= 1  # left, not deleted
    wait_until(lambda: all(v == 1 for v in delivered(fast, tokens).values()), timeout=20,
               what="A to deliver every large push")
    wait_until(lambda: drained(redis), what="the stream empty")
    assert_nothing_failed(b)
    assert "left to another instance: larger than this instance's limits" in b.log_text()
    assert "skipped" not in b.log_text()
    assert fleet_report(a.base, scope="local")["successes"] == len(tokens) + 1


def held_by_a_killed_instance(redis, start_mock, start_fcmd, tmp_path, tokens, claim, **fields):
    """Alpha's pushes (or with fields, those send() makes of them) accepted
    by an instance that held them (a silent upstream) and was then killed
    with SIGKILL: they wait in the group for another instance.  Returns
    their push ids."""
    silent = start_mock("--latency-ms", "60000")
    a = start_fcmd(silent, workers=1, args=[*queue_args(redis, claim), "--config",
                                            str(write_conf(tmp_path, "doomed", silent))])
    wait_ready(a)
    ids = []
    for t in tokens:
        r = send(a, [t], **(fields or {"app": "alpha"}))
        assert r.status_code == 200, r.text
        ids.append(r.json()["id"])
    wait_until(lambda: silent.stats(summary=True)["requests"] >= len(tokens), what="A holding every push")
    os.killpg(a.proc.pid, signal.SIGKILL)
    a.proc.wait(5)
    assert group_pending(redis) == len(tokens)
    return ids


def cpu_seconds(pids):
    total = 0
    for pid in pids:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        total += int(fields[11]) + int(fields[12])  # utime, stime
    return total / os.sysconf("SC_CLK_TCK")


@pytest.fixture
def receiver():
    r = Receiver()
    yield r
    r.stop()


def test_a_push_no_instance_serves_is_reported_then_failed_after_the_bound(redis, start_mock, start_fcmd, tmp_path,
                                                                           receiver):
    tokens = [f"lone-{i}" for i in range(5)]
    added = time.time()
    ids = held_by_a_killed_instance(redis, start_mock, start_fcmd, tmp_path, tokens, 1)
    other = start_mock()
    b = start_fcmd(other, workers=2, args=[*queue_args(redis, 1), "--webhook", receiver.url,
                                           "--webhook-events", "all"])
    wait_ready(b)
    wait_until(lambda: left(b) >= len(tokens), timeout=8, what="B to leave every alpha push")
    log = b.log_text()
    assert "left to another instance: its app is not known here (it fails if none serves it within 10 s)" in log
    entries = [ln.split("entry ", 1)[1].split()[0] for ln in log.splitlines() if "left to another" in ln]
    assert entries and all(e.split("-")[0].isdigit() for e in entries), entries
    # Meanwhile: nothing failed, nothing acknowledged, and the workers idle
    # between claim rounds (a few commands a second, little CPU).
    cli(redis, "CONFIG", "RESETSTAT")
    t0, c0 = time.monotonic(), cpu_seconds(b.children())

    def window_over():
        assert unserved(b) == 0 and stream_len(redis) == len(tokens)
        return time.time() >= added + UNSERVED_CLAIMS - 2.5 or time.monotonic() >= t0 + 5
    wait_until(window_over, timeout=10, interval=0.2, what="the measuring window to pass")
    seconds, cpu = time.monotonic() - t0, cpu_seconds(b.children()) - c0
    calls = command_calls(redis)
    assert seconds >= 1, seconds
    # Two workers, each with a claim round every 0.5 s for the queue and one
    # for the webhook's events; each queue round leaves at most every entry again.
    assert calls.get("xautoclaim", 0) <= 2 * (2 + 2) * seconds + 6, (calls, seconds)
    assert calls.get("xclaim", 0) <= 2 * 2 * seconds * len(tokens) + 2 * len(tokens), (calls, seconds)
    assert cpu < 0.25 * seconds, (cpu, seconds)
    assert fleet_report(b.base, scope="local")["failures"] == 0
    # The bound: failed with the reason, counted, then acknowledged and gone.
    wait_until(lambda: unserved(b) == len(tokens), timeout=UNSERVED_CLAIMS + 5, interval=0.1,
               what="every push failed as unserved")
    assert time.time() - added >= UNSERVED_CLAIMS
    wait_until(lambda: drained(redis), what="the stream empty")
    rep = fleet_report(b.base, scope="local")
    assert rep["failures"] == len(tokens), rep
    assert metric(b, "fcmd_failures_total", reason="unserved") == len(tokens)
    assert metric(b, "fcmd_failures_total", reason="queue_entry") == 0
    assert "failed: no instance served it within 10 s: its app is not known here" in b.log_text()
    assert not set(tokens) & set(other.stats()["tokens"])
    # Its push status says so, as for any failure.
    for pid in ids:
        s = wait_until(lambda: (lambda r: r.json() if r.status_code == 200 and r.json()["state"] == "done" else None)(
            requests.get(b.url(f"/push/{pid}"), timeout=5)), what="the push's status done")
        assert s["failed"] == 1 and s["delivered"] == 0 and s["app"] == "alpha", s
        assert "its app is not known here" in json.dumps(s["errors"]), s
    # And its webhook events: a failed one per target with the reason, then done.
    want = {f"{pid}.0" for pid in ids} | {f"{pid}.done" for pid in ids}
    wait_until(lambda: want <= set(receiver.events), what="the failed and done events")
    for pid, t in zip(ids, tokens):
        e = receiver.events[f"{pid}.0"]
        assert e["type"] == "failed" and e["token"] == t and "its app is not known here" in e["reason"], e
        assert e["app"] == "alpha" and e["id"] == pid, e
        done = receiver.events[f"{pid}.done"]
        assert done["failed"] == 1 and done["delivered"] == 0, done
    assert receiver.problems == []


def test_rolling_deploy_the_instance_that_learns_the_app_delivers_what_it_left(redis, start_mock, start_fcmd,
                                                                               tmp_path):
    claim = 2
    tokens = [f"roll-{i}" for i in range(5)]
    added = time.time()
    held_by_a_killed_instance(redis, start_mock, start_fcmd, tmp_path, tokens, claim)
    fast = start_mock()
    conf = write_conf(tmp_path, "b")
    b = start_fcmd(fast, workers=2, args=[*queue_args(redis, claim), "--config", str(conf)])
    wait_ready(b)
    wait_until(lambda: left(b) >= len(tokens), timeout=10, what="B to leave every alpha push")
    # Left round after round, more often than the five takes that give a
    # push up: each leave hands its take back, so no count grows.
    cli(redis, "CONFIG", "RESETSTAT")
    wait_until(lambda: command_calls(redis).get("xautoclaim", 0) >= 8, timeout=10, what="claim rounds")
    out = cli(redis, "XPENDING", "fcmd:queue", "fcmd", "-", "+", "100")
    counts = [int(n) for n in re.findall(r"\(integer\) (\d+)", out)][1::2]  # idle, count per entry
    assert len(counts) == len(tokens) and max(counts) <= 2, out  # the killed holder, and a take under way
    assert stream_len(redis) == len(tokens)
    assert "given up" not in b.log_text()
    assert time.time() - added < UNSERVED_CLAIMS * claim - 6, "too slow to see the reload within the bound"
    old = set(b.children())
    write_conf(tmp_path, "b", fast)
    b.proc.send_signal(signal.SIGHUP)
    reload_at = time.monotonic()
    wait_until(lambda: all(v == 1 for v in delivered(fast, tokens).values()), timeout=UNSERVED_CLAIMS * claim,
               what="the reloaded B to deliver every alpha push")
    # Promptly: a new generation's first claim round, far under the bound.
    assert time.monotonic() - reload_at < 6
    wait_until(lambda: drained(redis), what="the stream empty")
    wait_until(lambda: not (old & set(b.children())), timeout=20, what="the old generation to go")
    assert all(v == 1 for v in delivered(fast, tokens).values())
    assert_nothing_failed(b)


def test_a_push_larger_than_every_instance_serves_fails_whole_after_the_bound(redis, start_mock, start_fcmd,
                                                                              tmp_path):
    # Read only as its length and head while it waits; past the bound the
    # scripts hand it over whole (one a reply), so its targets fail by name.
    tokens = [f"huge-{i}" for i in range(3)]
    added = time.time()
    ids = held_by_a_killed_instance(redis, start_mock, start_fcmd, tmp_path, tokens, 1,
                                    payload={"pad": "q" * 30000})
    other = start_mock()
    b = start_fcmd(other, workers=2, args=[*queue_args(redis, 1), "--max-body-bytes", "16384",
                                           "--max-tokens", "100"])
    wait_ready(b)
    wait_until(lambda: left(b) >= len(tokens), timeout=8, what="B to leave every large push")
    assert "left to another instance: larger than this instance's limits" in b.log_text()
    assert unserved(b) == 0 and stream_len(redis) == len(tokens)
    wait_until(lambda: unserved(b) == len(tokens), timeout=UNSERVED_CLAIMS + 5, interval=0.1,
               what="every large push failed as unserved")
    assert time.time() - added >= UNSERVED_CLAIMS
    wait_until(lambda: drained(redis), what="the stream empty")
    assert metric(b, "fcmd_failures_total", reason="unserved") == len(tokens)
    assert metric(b, "fcmd_failures_total", reason="queue_entry") == 0
    assert "failed: no instance served it within 10 s: larger than this instance's limits" in b.log_text()
    for pid, t in zip(ids, tokens):
        s = wait_until(lambda: status_done(b, pid), what="the push's status done")
        assert s["failed"] == 1 and s["errors"][0]["token"] == t, s
        assert "larger than this instance's limits" in s["errors"][0]["reason"], s
    assert not set(tokens) & set(other.stats()["tokens"])
