"""The webhook's events in Redis (--redis-queue with --webhook): a real
redis-server (appendonly yes), fcmd instances sharing it, the mock upstream
and webhook_receiver.py (Python's http.server, hmac and json).  The oracle
is what the mock upstream delivered, each push's id as /gcm/send answered
it, and Redis itself, asked with redis-cli."""

import os
import signal
import time

import requests

from conftest import free_port, wait_until
from test_fleet import redis  # noqa: F401 (fixture)
from test_fleet_queue import cli, cli_int, stream_len, wait_ready
from webhook_receiver import Receiver

import pytest

SECRET = "whsec-fleet-51a7"
CLAIM = "2"


@pytest.fixture
def receivers():
    made = []

    def make(**kw):
        r = Receiver(**kw)
        made.append(r)
        return r

    yield make
    for r in made:
        r.stop()


def secret_file(tmp_path):
    p = tmp_path / "webhook.secret"
    p.write_text(SECRET + "\n")
    p.chmod(0o600)
    return str(p)


def hooked(start_fcmd, mock, redis, tmp_path, url, workers=2, extra=(), claim=CLAIM):
    f = start_fcmd(mock, workers=workers,
                   args=["--redis", redis.url, "--redis-queue", "--redis-claim-after", claim, "--retries", "0",
                         "--webhook", url, "--webhook-secret-file", secret_file(tmp_path),
                         "--webhook-events", "all", *extra])
    wait_ready(f)
    return f


def send(f, tokens):
    r = requests.post(f.url("/gcm/send"), json={"tokens": tokens, "payload": {"k": 1}}, timeout=5)
    assert r.status_code == 200, r.text
    return r.json()["id"]


def expected_ids(pushes):
    """event_id of each push's targets (the push's id and the target's place) and its done."""
    want = set()
    for pid, tokens in pushes.items():
        want |= {f"{pid}.{i}" for i in range(len(tokens))}
        want.add(f"{pid}.done")
    return want


def events_len(redis):
    return cli_int(redis, "XLEN", "fcmd:events")


def events_pending(redis):
    # XPENDING's summary: the count is the first line.
    out = cli(redis, "XPENDING", "fcmd:events", "fcmd")
    return int(out.splitlines()[0].split()[-1])


def webhook_report(f):
    r = requests.get(f.url("/gcm/report?scope=local"), timeout=5).json()
    return {k: v for k, v in r.items() if k.startswith("webhook_")}


def metric(f, name):
    text = requests.get(f.url("/metrics"), timeout=5).text
    return sum(float(line.split()[-1]) for line in text.splitlines() if line.startswith(name + " ")
               or line.startswith(name + "{"))


def mock_delivered(mock, tokens):
    toks = mock.stats()["tokens"]
    return {t for t in tokens if toks.get(t, {}).get("delivered", 0) >= 1}


def test_two_instances_every_event_arrives_once_per_outcome(redis, mock, start_fcmd, receivers, tmp_path):
    rcv = receivers(secret=SECRET)
    inst = [hooked(start_fcmd, mock, redis, tmp_path, rcv.url) for _ in range(2)]
    pushes = {}
    for i in range(40):
        tokens = [f"ok-f{i}-{k}" for k in range(1 + i % 3)]
        pushes[send(inst[i % 2], tokens)] = tokens
    alltokens = [t for ts in pushes.values() for t in ts]
    wait_until(lambda: mock_delivered(mock, alltokens) == set(alltokens), timeout=20, what="every target delivered")
    want = expected_ids(pushes)
    wait_until(lambda: want <= set(rcv.events), timeout=20, what="every event at the receiver")
    assert set(rcv.events) == want and rcv.problems == []
    # Every delivered event names a token the mock delivered, of the push that had it.
    for pid, tokens in pushes.items():
        for i, t in enumerate(tokens):
            e = rcv.events[f"{pid}.{i}"]
            assert (e["type"], e["token"], e["id"]) == ("delivered", t, pid)
        done = rcv.events[f"{pid}.done"]
        assert (done["targets"], done["delivered"]) == (len(tokens), len(tokens))
    # Acknowledged and deleted in Redis once the receiver said 2xx.
    wait_until(lambda: events_len(redis) == 0 and events_pending(redis) == 0, what="the events stream empty")
    assert stream_len(redis) == 0
    rep = [webhook_report(f) for f in inst]
    assert sum(r["webhook_events"] for r in rep) == len(rcv.events) + rcv.duplicates
    assert sum(r["webhook_dropped"] for r in rep) == 0


def test_kill9_with_the_receiver_down_another_instance_sends_them(redis, mock, start_fcmd, receivers, tmp_path):
    port = free_port()
    url = f"http://127.0.0.1:{port}/hook"
    doomed = hooked(start_fcmd, mock, redis, tmp_path, url)
    pushes = {}
    for i in range(20):
        tokens = [f"ok-k{i}-{k}" for k in range(2)]
        pushes[send(doomed, tokens)] = tokens
    want = expected_ids(pushes)
    # Every push finished and left the queue: its events are in Redis, and
    # the doomed instance has read them and failed to POST them.
    # Seen at once inside Redis (one script): no push has left the queue
    # before its three events (two targets and a done) are in the stream.
    snapshots = []

    def both():
        out = cli(redis, "--raw", "EVAL", "return {redis.call('XLEN', KEYS[1]), redis.call('XLEN', KEYS[2])}", "2",
                  "fcmd:queue", "fcmd:events")
        q, e = (int(x) for x in out.split())
        snapshots.append((q, e))
        assert e >= 3 * (len(pushes) - q), snapshots
        return q == 0
    wait_until(both, timeout=20, interval=0.01, what="the queue empty")
    assert events_len(redis) == len(want)
    wait_until(lambda: webhook_report(doomed)["webhook_failed_attempts"] >= 1, what="a failed POST")
    os.killpg(doomed.proc.pid, signal.SIGKILL)
    doomed.proc.wait(5)
    assert events_len(redis) == len(want)
    rcv = receivers(secret=SECRET, port=port)
    other = hooked(start_fcmd, mock, redis, tmp_path, url)
    wait_until(lambda: want <= set(rcv.events), timeout=30, what="the other instance to send every event")
    assert set(rcv.events) == want and rcv.problems == []
    wait_until(lambda: events_len(redis) == 0 and events_pending(redis) == 0, what="the events stream empty")
    assert "events of a silent consumer" in other.log_text()


def test_events_past_max_age_are_dropped_and_counted(redis, mock, start_fcmd, tmp_path):
    url = f"http://127.0.0.1:{free_port()}/hook"  # nobody listens
    f = hooked(start_fcmd, mock, redis, tmp_path, url, workers=1, extra=["--webhook-max-age", "2"])
    pushes = {send(f, ["ok-a1", "ok-a2"]): ["ok-a1", "ok-a2"]}
    n = len(expected_ids(pushes))
    wait_until(lambda: webhook_report(f)["webhook_dropped"] == n, timeout=20, what="the events dropped for their age")
    wait_until(lambda: events_len(redis) == 0 and events_pending(redis) == 0, what="the dropped events gone from Redis")
    assert webhook_report(f)["webhook_events"] == 0
    assert metric(f, "fcmd_webhook_dropped_total") == n


def test_a_receiver_failing_first_gets_everything_later(redis, mock, start_fcmd, receivers, tmp_path):
    rcv = receivers(secret=SECRET, plan=lambda n: "fail" if n < 2 else "ok")
    f = hooked(start_fcmd, mock, redis, tmp_path, rcv.url, workers=1)
    pushes = {send(f, [f"ok-r{i}"]): [f"ok-r{i}"] for i in range(5)}
    want = expected_ids(pushes)
    wait_until(lambda: want <= set(rcv.events), timeout=30, what="every event after the failures")
    assert rcv.requests >= 3 and rcv.problems == []
    assert webhook_report(f)["webhook_failed_attempts"] >= 2
    wait_until(lambda: events_len(redis) == 0, what="the events stream empty")


def test_redis_restarted_midway_loses_no_event(redis, start_mock, start_fcmd, receivers, tmp_path):
    slow = start_mock("--latency-ms", "1500")
    rcv = receivers(secret=SECRET)
    f = hooked(start_fcmd, slow, redis, tmp_path, rcv.url)
    pushes = {}
    for i in range(10):
        tokens = [f"ok-m{i}-{k}" for k in range(2)]
        pushes[send(f, tokens)] = tokens
    alltokens = [t for ts in pushes.values() for t in ts]
    # The pushes are read and upstream when Redis goes away; they finish
    # meanwhile, and their events wait in memory for Redis.
    wait_until(lambda: slow.stats(summary=True)["requests"] >= 1, what="the pushes upstream")
    redis.stop()
    wait_until(lambda: mock_delivered(slow, alltokens) == set(alltokens), timeout=20, what="every target delivered")
    r = requests.post(f.url("/gcm/send"), json={"tokens": ["x"], "payload": {"k": 1}}, timeout=5)
    assert r.status_code == 503
    # They wait in memory for Redis, not sent around it.
    want = expected_ids(pushes)
    wait_until(lambda: webhook_report(f)["webhook_pending"] == len(want), what="the events waiting in memory")
    assert not want & set(rcv.events)
    redis.start()
    wait_until(lambda: want <= set(rcv.events), timeout=30, what="every event once Redis is back")
    assert rcv.problems == []
    wait_until(lambda: events_len(redis) == 0, what="the events stream empty")


def test_foreign_and_huge_entries_are_skipped_and_counted(redis, mock, start_fcmd, receivers, tmp_path):
    # Entries fcmd never writes, in the stream before any instance reads it,
    # made now (an old one would be dropped for its age whatever it held).
    now = str(int(time.time() * 1000))
    cli(redis, "XADD", "fcmd:events", "*", "junk", "1")
    cli(redis, "XADD", "fcmd:events", "*", "a", "", "t", now, "e", "not an event")
    cli(redis, "XADD", "fcmd:events", "*", "a", "", "t", now, "e", '{"event_id":"' + "x" * 70000 + '"}')
    cli(redis, "XADD", "fcmd:events", "*", "a", "no-such-app", "t", now, "e", '{"event_id":"z.1"}')
    # One that would break the batch's body it joined, and so every event in it.
    cli(redis, "XADD", "fcmd:events", "*", "a", "", "t", now, "e", '{"event_id":"z.2"}]},{"x":[{"y":1')
    rcv = receivers(secret=SECRET)
    f = hooked(start_fcmd, mock, redis, tmp_path, rcv.url, workers=1)
    wait_until(lambda: webhook_report(f)["webhook_dropped"] == 5, what="the five foreign entries dropped")
    wait_until(lambda: events_len(redis) == 0, what="the foreign entries deleted")
    # The events around them go on.
    pushes = {send(f, ["ok-z1"]): ["ok-z1"]}
    want = expected_ids(pushes)
    wait_until(lambda: want <= set(rcv.events), what="the real events")
    assert set(rcv.events) == want and rcv.problems == []
    assert "redis webhook events: entry" in f.log_text()  # logged, at most once a second


def test_the_events_stream_is_bounded_by_redis_queue_max(redis, mock, start_fcmd, tmp_path):
    url = f"http://127.0.0.1:{free_port()}/hook"  # nobody listens: the events stay in Redis
    f = hooked(start_fcmd, mock, redis, tmp_path, url, workers=1, extra=["--redis-queue-max", "4"])
    pid = send(f, ["ok-b1", "ok-b2", "ok-b3", "ok-b4", "ok-b5"])  # 6 events: 5 delivered and a done
    wait_until(lambda: stream_len(redis) == 0, what="the push acknowledged")
    wait_until(lambda: webhook_report(f)["webhook_dropped"] == 2, what="the events over the bound dropped")
    assert events_len(redis) == 4
    ids = cli(redis, "--raw", "XRANGE", "fcmd:events", "-", "+")
    assert ids.count(f'"id":"{pid}"') == 4


def test_memory_holds_at_most_the_bound_of_what_redis_keeps(redis, mock, start_fcmd, receivers, tmp_path):
    port = free_port()
    url = f"http://127.0.0.1:{port}/hook"
    bound = 65536  # the least --webhook-queue-bytes: about 200 events
    f = hooked(start_fcmd, mock, redis, tmp_path, url, workers=1, extra=["--webhook-queue-bytes", str(bound)])
    pushes = {}
    for i in range(50):
        tokens = [f"ok-h{i}-{k}" for k in range(10)]
        pushes[send(f, tokens)] = tokens
    want = expected_ids(pushes)
    wait_until(lambda: events_len(redis) == len(want), timeout=20, what="every event in Redis")
    # The worker read what its bound holds and left the rest in Redis; none
    # made meanwhile was dropped for the room the reads took.
    rep = webhook_report(f)
    assert rep["webhook_dropped"] == 0
    assert 0 < events_pending(redis) < len(want)
    assert rep["webhook_queue_bytes"] <= bound
    rcv = receivers(secret=SECRET, port=port)
    wait_until(lambda: want <= set(rcv.events), timeout=60, what="every event once the receiver is up")
    assert set(rcv.events) == want and rcv.problems == []
    wait_until(lambda: events_len(redis) == 0, what="the events stream empty")


def test_an_event_claimed_past_max_age_is_dropped_not_sent(redis, mock, start_fcmd, receivers, tmp_path):
    rcv = receivers(secret=SECRET)
    hour_ago = str(int(time.time() * 1000) - 3600 * 1000)
    cli(redis, "XADD", "fcmd:events", "*", "a", "", "t", hour_ago, "e", '{"event_id":"old.1","type":"failed"}')
    f = hooked(start_fcmd, mock, redis, tmp_path, rcv.url, workers=1, extra=["--webhook-max-age", "60"])
    wait_until(lambda: webhook_report(f)["webhook_dropped"] == 1, what="the old event dropped")
    wait_until(lambda: events_len(redis) == 0, what="the old event deleted")
    pushes = {send(f, ["ok-o1"]): ["ok-o1"]}
    wait_until(lambda: expected_ids(pushes) <= set(rcv.events), what="a fresh push's events")
    assert "old.1" not in rcv.events and "older than --webhook-max-age" in f.log_text()


def test_each_app_reaches_its_own_receiver_through_redis(redis, mock, start_fcmd, receivers, tmp_path):
    main, alpha = receivers(secret=SECRET), receivers(secret="alpha-secret")
    (tmp_path / "alpha.secret").write_text("alpha-secret\n")
    conf = tmp_path / "fcmd.conf"
    conf.write_text(f"[app alpha]\napikey = k\ngcm_url = {mock.url()}\nwebhook = {alpha.url}\n"
                    f"webhook_secret_file = {tmp_path / 'alpha.secret'}\nwebhook_events = all\n"
                    f"[app beta]\napikey = k\ngcm_url = {mock.url()}\n")
    conf.chmod(0o600)
    # Two instances: the one that delivers a push need not be the one that sends its events.
    inst = [hooked(start_fcmd, mock, redis, tmp_path, main.url, extra=["--config", str(conf)]) for _ in range(2)]
    send(inst[0], ["notreg-d"])
    r = requests.post(inst[1].url("/gcm/send"), json={"tokens": ["ok-a", "notreg-a"], "payload": {"k": 1}},
                      headers={"X-Fcmd-App": "alpha"}, timeout=5)
    assert r.status_code == 200, r.text
    r = requests.post(inst[0].url("/gcm/send"), json={"tokens": ["notreg-b"], "payload": {"k": 1}},
                      headers={"X-Fcmd-App": "beta"}, timeout=5)
    assert r.status_code == 200, r.text
    wait_until(lambda: len(alpha.events) == 3, what="alpha's three events")
    wait_until(lambda: len(main.events) == 4, what="the default app's and beta's events (all: a target's and a done each)")
    assert {e["app"] for e in alpha.events.values()} == {"alpha"}
    assert sorted((e["app"], e["type"], e["token"]) for e in main.events.values()) == [
        ("beta", "done", None), ("beta", "invalid", "notreg-b"), ("default", "done", None),
        ("default", "invalid", "notreg-d")]
    assert main.problems == [] and alpha.problems == []
    wait_until(lambda: events_len(redis) == 0, what="the events stream empty")


def test_a_push_with_more_events_than_one_script_carries(redis, mock, start_fcmd, receivers, tmp_path):
    port = free_port()
    url = f"http://127.0.0.1:{port}/hook"
    f = hooked(start_fcmd, mock, redis, tmp_path, url, workers=1)
    tokens = [f"ok-big-{k}" for k in range(2500)]
    pushes = {send(f, tokens): tokens}
    want = expected_ids(pushes)
    seen = []

    def both():
        # One script, so both lengths are of one moment: the push is never
        # gone while some of its events are still outside Redis.
        out = cli(redis, "--raw", "EVAL", "return {redis.call('XLEN', KEYS[1]), redis.call('XLEN', KEYS[2])}", "2",
                  "fcmd:queue", "fcmd:events")
        q, e = (int(x) for x in out.split())
        seen.append((q, e))
        assert q == 1 or e == len(want), seen[-5:]
        return q == 0
    wait_until(both, timeout=30, interval=0.005, what="the push acknowledged")
    rcv = receivers(secret=SECRET, port=port)
    wait_until(lambda: want <= set(rcv.events), timeout=60, what="all 2501 events")
    assert set(rcv.events) == want and rcv.problems == []
    assert all(len(b) <= 500 for b in rcv.batches)


def test_a_worker_killed_holding_events_its_successor_sends_them(redis, mock, start_fcmd, receivers, tmp_path):
    rcv = receivers(secret=SECRET, plan=lambda n: "slow")  # holds every POST: the events stay held
    f = hooked(start_fcmd, mock, redis, tmp_path, rcv.url, workers=1)
    pushes = {send(f, [f"ok-w{i}"]): [f"ok-w{i}"] for i in range(10)}
    want = expected_ids(pushes)
    wait_until(lambda: events_len(redis) == len(want) and events_pending(redis) == len(want),
               what="every event read by the worker")
    wait_until(lambda: rcv.requests >= 1, what="a POST under way")
    (child,) = f.children()
    os.kill(child, signal.SIGKILL)
    wait_until(lambda: len(f.children()) == 1 and f.children()[0] != child, what="the worker respawned")
    rcv.plan = lambda n: "ok"
    rcv.release.set()  # the held POST ends without an answer
    wait_until(lambda: want <= set(rcv.events), timeout=30, what="the new worker to send the dead one's events")
    assert set(rcv.events) == want and rcv.problems == []
    wait_until(lambda: events_len(redis) == 0 and events_pending(redis) == 0, what="the events stream empty")
    assert "events of a silent consumer" in f.log_text()


def test_a_stopping_instance_leaves_its_events_to_the_others_at_once(redis, mock, start_fcmd, receivers, tmp_path):
    failing = {"on": True}
    rcv = receivers(secret=SECRET, plan=lambda n: "fail" if failing["on"] else "ok")
    a = hooked(start_fcmd, mock, redis, tmp_path, rcv.url, workers=1, claim="30")
    pushes = {send(a, [f"ok-s{i}"]): [f"ok-s{i}"] for i in range(5)}
    want = expected_ids(pushes)
    wait_until(lambda: events_pending(redis) == len(want), what="every event held by the first instance")
    assert a.stop() == 0  # its last try at the stop fails too
    assert not want & set(rcv.events)
    failing["on"] = False
    started = time.monotonic()
    hooked(start_fcmd, mock, redis, tmp_path, rcv.url, workers=1, claim="30")
    # Taken over at the new instance's first claim, not 30 s later.
    wait_until(lambda: want <= set(rcv.events), timeout=15, what="the events the stopped instance held")
    assert time.monotonic() - started < 15 and rcv.problems == []
