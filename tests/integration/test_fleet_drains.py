"""Fleet mode's drain lists (--redis): a real redis-server and a real haproxy
in front of several fcmd instances.  Every canonical and notregistered entry,
wherever it was produced, comes out of exactly one drain through any
instance: with concurrent drains, an answer the client never read, Redis
stopped while entries are made, and a worker killed while it answers."""

import os
import signal
import socket
import subprocess
import threading
import time

import h2.config
import h2.connection
import h2.events
import h2.settings
import pytest
import requests

from conftest import wait_until
from fake_redis import FakeRedis
from test_drains import h2_cancelled_drain
from test_fleet import Haproxy, Redis, redis, start_haproxy  # noqa: F401 (fixtures)

NOTREG = "/gcm/report/notregistered"
CANON = "/gcm/report/canonical"


def redis_cmd(r, *args):
    out = subprocess.run(["redis-cli", "-p", str(r.port), *map(str, args)], capture_output=True, text=True,
                         timeout=10, check=True)
    return out.stdout.strip()


def rejected_evalshas(r):
    """EVALSHA calls Redis refused or failed (OOM...), from INFO commandstats."""
    for line in redis_cmd(r, "INFO", "commandstats").split():
        if line.startswith("cmdstat_evalsha:"):
            fields = dict(kv.split("=") for kv in line.split(":", 1)[1].split(","))
            return int(fields.get("rejected_calls", 0)) + int(fields.get("failed_calls", 0))
    return 0


def in_redis(r, name):
    """Entries waiting in a fleet list in Redis (not those held by a drain)."""
    return int(redis_cmd(r, "LLEN", f"fcmd:list:{name}"))


def produce(f, prefix, n_notreg, n_canon):
    """Sends tokens that the mock answers NotRegistered or with a canonical
    id, and waits until this instance has finished them.  Returns them."""
    notreg = [f"notreg-{prefix}-{i:04d}" for i in range(n_notreg)]
    canon = [f"canon-{prefix}-{i:04d}" for i in range(n_canon)]
    r = f.send_json({"tokens": notreg + canon, "payload": {"k": "v"}})
    assert r.status_code == 200, r.text
    wait_until(lambda: requests.get(f.url("/gcm/report?scope=local"), timeout=5).json()["pending"] == 0,
               what="the targets finished")
    return notreg, canon


def drain_json(base, path, session=requests):
    r = session.get(base + path, timeout=10)
    assert r.status_code == 200, r.text
    assert r.headers["content-type"] == "application/json"
    return r.json()


def busy(r):
    """A drain answered 503 as a client must retry: a worker not connected (yet, or again)."""
    return (r.status_code == 503 and r.headers.get("retry-after") == "1"
            and r.json()["error"].startswith("redis"))


def drain_all(base, path, want, key, session=requests, timeout=20, busy_ok=True):
    """Drains until `want` entries came out, retrying a busy answer.  Returns them."""
    got = []

    def step():
        r = session.get(base + path, timeout=10)
        if busy_ok and busy(r):
            return False
        assert r.status_code == 200, r.text
        got.extend(r.json()[key] or [])
        return len(got) >= want
    wait_until(step, timeout=timeout, interval=0.1, what=f"{want} entries from {path} (got {len(got)})")
    return got


def test_drains_exactly_once_through_the_balancer(redis, mock, start_fcmd, start_haproxy):  # noqa: F811
    # Small lists, so that a drain answers a part of them and drains interleave.
    inst = [start_fcmd(mock, workers=2, args=["--redis", redis.url, "--drain-list-bytes", "4096"])
            for _ in range(3)]
    lb = start_haproxy([f.port for f in inst])
    want_notreg, want_canon = [], []
    for rnd in range(3):
        for k, f in enumerate(inst):
            n, c = produce(f, f"{rnd}{k}", 100, 40)
            want_notreg += n
            want_canon += c
        # Each instance's lists move to Redis within about a second (they hold 4 KiB).
        wait_until(lambda: in_redis(redis, "notregistered") >= len(want_notreg)
                   and in_redis(redis, "canonical") >= len(want_canon), what="the entries in Redis")
    got = {NOTREG: [], CANON: []}
    answers = {NOTREG: [], CANON: []}
    errors = []
    lock = threading.Lock()

    def client(path, key):
        s = requests.Session()
        try:
            deadline = time.monotonic() + 30
            empty = 0
            while time.monotonic() < deadline and empty < 3:
                r = s.get(lb.base + path, timeout=10)
                if busy(r):
                    continue
                assert r.status_code == 200, r.text
                body = r.json()
                if body[key] is None:
                    empty += 1
                    continue
                assert len(body[key]) > 0
                with lock:
                    got[path].extend(body[key])
                    answers[path].append(body[key])
        except Exception as e:  # reported below, with the others
            errors.append(e)
        finally:
            s.close()

    threads = [threading.Thread(target=client, args=(p, k)) for p, k in
               [(NOTREG, "tokens")] * 3 + [(CANON, "canonical_replacements")] * 3]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert errors == []
    # Exactly once: nothing missing, nothing twice.
    assert len(got[NOTREG]) == len(want_notreg) and sorted(got[NOTREG]) == sorted(want_notreg)
    pairs = [(p["original"], p["canonical"]) for p in got[CANON]]
    assert sorted(pairs) == sorted((t, f"canonical-{t}") for t in want_canon)
    # Several answers were needed: each holds at most the 4 KiB budget of records (two length
    # bytes and the entry each), and the lists are empty now.
    assert len(answers[NOTREG]) > 3 and len(answers[CANON]) > 1
    assert max(sum(2 + len(t) for t in a) for a in answers[NOTREG]) <= 4096
    assert max(sum(3 + len(p["original"]) + len(p["canonical"]) for p in a) for a in answers[CANON]) <= 4096
    assert drain_json(lb.base, NOTREG) == {"tokens": None}
    assert drain_json(lb.base, CANON) == {"canonical_replacements": None}
    assert in_redis(redis, "notregistered") == 0 and redis_cmd(redis, "ZCARD", "fcmd:inflight:notregistered") == "0"
    rep = drain_json(lb.base, "/gcm/report")
    assert rep["scope"] == "fleet" and rep["canonical_dropped"] == 0 and rep["notregistered_dropped"] == 0


def test_answer_not_read_comes_back(redis, mock, start_fcmd):  # noqa: F811
    f = start_fcmd(mock, workers=2, args=["--redis", redis.url])
    tokens, _ = produce(f, "x", 200, 0)
    wait_until(lambda: in_redis(redis, "notregistered") == 200, what="the entries in Redis")
    status, got = h2_cancelled_drain(f.port, NOTREG)
    assert status == 200 and got == 16
    # The stream's reset gives them back to the list's head at once (no lease to wait for).
    back = drain_all(f.base, NOTREG, 200, "tokens", timeout=5)
    assert sorted(back) == tokens
    assert drain_json(f.base, NOTREG) == {"tokens": None}


def test_redis_down_while_entries_are_made(redis, mock, start_fcmd):  # noqa: F811
    inst = [start_fcmd(mock, workers=2, args=["--redis", redis.url]) for _ in range(2)]
    first, _ = produce(inst[0], "before", 30, 0)
    wait_until(lambda: in_redis(redis, "notregistered") == 30, what="the first entries in Redis")
    redis.stop()
    want = list(first)
    for k, f in enumerate(inst):
        n, _ = produce(f, f"down{k}", 50, 0)
        want += n
    # A drain cannot reach the fleet's lists: 503 with Retry-After, nothing taken.
    for f in inst:
        r = wait_until(lambda: (lambda r: [r] if r.status_code == 503 else None)(
            requests.get(f.url(NOTREG), timeout=5)), what="a 503 drain")[0]
        assert r.headers["retry-after"] == "1" and "redis unreachable" in r.json()["error"]
    redis.start()
    # Each worker reconnects on its own back-off: wait until every worker of
    # both instances has answered /readyz 200 (a worker is up for good once it is).
    for f in inst:
        up = set()

        def all_workers_up():
            r = requests.get(f.url("/readyz"), timeout=2)
            if r.status_code == 200:
                up.add(r.headers["x-fcmd-worker"])
            return len(up) == 2

        wait_until(all_workers_up, what="/readyz 200 from both workers")
    got = drain_all(inst[1].base, NOTREG, len(want), "tokens")
    assert sorted(got) == sorted(want)
    for f in inst:
        assert drain_json(f.base, NOTREG) == {"tokens": None}
        log = f.log_text()
        assert log.count("redis: lost") == 2, log  # one line per worker for the outage
        assert f.report()["notregistered_dropped"] == 0


def h2_drain_left_unread(port, path):
    """Starts a drain over HTTP/2 with a 16-byte window and keeps the
    connection open without reading further.  Returns the socket."""
    sock = socket.create_connection(("127.0.0.1", port), timeout=10)
    conn = h2.connection.H2Connection(config=h2.config.H2Configuration(client_side=True))
    conn.local_settings = h2.settings.Settings(client=True, initial_values={
        h2.settings.SettingCodes.INITIAL_WINDOW_SIZE: 16})
    conn.initiate_connection()
    sid = conn.get_next_available_stream_id()
    conn.send_headers(sid, [(":method", "GET"), (":path", path), (":scheme", "http"),
                            (":authority", "localhost")], end_stream=True)
    sock.sendall(conn.data_to_send())

    def answer_started():
        for ev in conn.receive_data(sock.recv(65536)):
            if isinstance(ev, h2.events.ResponseReceived):
                return True
        sock.sendall(conn.data_to_send())
        return None
    wait_until(answer_started, what="the drain answer to start")
    return sock


def test_worker_killed_mid_answer_entries_come_back_after_the_lease(redis, mock, start_fcmd):  # noqa: F811
    f = start_fcmd(mock, workers=1, args=["--redis", redis.url, "--redis-drain-lease", "2"])
    tokens, _ = produce(f, "k", 200, 0)
    wait_until(lambda: in_redis(redis, "notregistered") == 200, what="the entries in Redis")
    sock = h2_drain_left_unread(f.port, NOTREG)
    try:
        assert in_redis(redis, "notregistered") == 0
        assert redis_cmd(redis, "ZCARD", "fcmd:inflight:notregistered") == "1"
        old = f.children()
        os.kill(old[0], signal.SIGKILL)
        wait_until(lambda: f.children() and f.children() != old, what="the worker respawned")
    finally:
        sock.close()
    wait_until(lambda: requests.get(f.url("/readyz"), timeout=2).status_code == 200, what="/readyz 200")
    # Held for the dead worker until the lease runs out, then back, once.
    got = drain_all(f.base, NOTREG, 200, "tokens", timeout=15)
    assert sorted(got) == tokens
    assert drain_json(f.base, NOTREG) == {"tokens": None}
    assert redis_cmd(redis, "ZCARD", "fcmd:inflight:notregistered") == "0"


def test_slow_reader_keeps_its_entries_past_the_lease(redis, mock, start_fcmd):  # noqa: F811
    """The worker renews an answer's lease while it writes it: a client
    slower than the lease does not see its entries handed to another."""
    f = start_fcmd(mock, workers=2, args=["--redis", redis.url, "--redis-drain-lease", "2"])
    tokens, _ = produce(f, "slow", 100, 0)
    wait_until(lambda: in_redis(redis, "notregistered") == 100, what="the entries in Redis")
    sock = h2_drain_left_unread(f.port, NOTREG)
    try:
        deadline = time.monotonic() + 5  # two and a half leases
        while time.monotonic() < deadline:
            assert drain_json(f.base, NOTREG) == {"tokens": None}
            time.sleep(0.25)
        assert redis_cmd(redis, "ZCARD", "fcmd:inflight:notregistered") == "1"
    finally:
        sock.close()  # gone without reading: the entries go back at once
    got = drain_all(f.base, NOTREG, 100, "tokens", timeout=5)
    assert sorted(got) == tokens


def test_reload_with_an_unread_answer_gives_entries_back(redis, mock, start_fcmd):  # noqa: F811
    f = start_fcmd(mock, workers=1, args=["--redis", redis.url])
    tokens, _ = produce(f, "r", 100, 0)
    wait_until(lambda: in_redis(redis, "notregistered") == 100, what="the entries in Redis")
    old = f.children()
    sock = h2_drain_left_unread(f.port, NOTREG)
    try:
        os.kill(f.proc.pid, signal.SIGHUP)
        wait_until(lambda: f.children() and not set(f.children()) & set(old), timeout=20,
                   what="the old worker to exit")
    finally:
        sock.close()
    # Given back by the stopping worker itself, not by the lease (30 s).
    assert in_redis(redis, "notregistered") == 100
    assert redis_cmd(redis, "ZCARD", "fcmd:inflight:notregistered") == "0"
    wait_until(lambda: requests.get(f.url("/readyz"), timeout=2).status_code == 200, what="/readyz 200")
    got = drain_all(f.base, NOTREG, 100, "tokens", timeout=5)
    assert sorted(got) == tokens


def test_refused_moves_keep_the_entries_and_log_once(redis, mock, start_fcmd):  # noqa: F811
    f = start_fcmd(mock, workers=2, args=["--redis", redis.url])
    wait_until(lambda: requests.get(f.url("/readyz"), timeout=2).status_code == 200, what="/readyz 200")
    redis_cmd(redis, "CONFIG", "SET", "maxmemory", "1")  # every write is refused: OOM
    try:
        tokens, _ = produce(f, "oom", 60, 0)
        wait_until(lambda: f.log_text().count("moving entries to Redis was refused: OOM") >= 1,
                   what="the refusal in the log")
        # The flush is refused too: no drain while the fleet cannot be counted.
        wait_until(lambda: requests.get(f.url(NOTREG), timeout=5).status_code == 503, what="a 503 drain")
        # Tried again every second, logged once (by the worker holding the batch; at most once each).
        first = rejected_evalshas(redis)
        wait_until(lambda: rejected_evalshas(redis) >= first + 6, what="several refused tries")
        assert 1 <= f.log_text().count("moving entries to Redis was refused") <= 2
        assert in_redis(redis, "notregistered") == 0
    finally:
        redis_cmd(redis, "CONFIG", "SET", "maxmemory", "0")
    got = drain_all(f.base, NOTREG, 60, "tokens", timeout=15)
    assert sorted(got) == tokens
    assert f.report()["notregistered_dropped"] == 0


def test_stopped_instance_moves_its_entries_first(redis, mock, start_fcmd):  # noqa: F811
    a = start_fcmd(mock, workers=1, args=["--redis", redis.url])
    b = start_fcmd(mock, workers=1, args=["--redis", redis.url])
    tokens, _ = produce(a, "s", 50, 0)
    a.stop()  # its shared memory goes with it: the entries reach Redis before
    got = drain_all(b.base, NOTREG, 50, "tokens", timeout=5)
    assert sorted(got) == tokens


def test_a_drain_sees_its_instance_entries_at_once(redis, mock, start_fcmd):  # noqa: F811
    """The answering worker moves what its instance holds just before it
    takes: no waiting for the next second's move."""
    f = start_fcmd(mock, workers=1, args=["--redis", redis.url])
    wait_until(lambda: requests.get(f.url("/readyz"), timeout=2).status_code == 200, what="/readyz 200")
    for k in range(3):
        tokens, _ = produce(f, f"now{k}", 20, 0)
        assert sorted(drain_json(f.base, NOTREG)["tokens"] or []) == tokens


def test_head_on_a_fleet_drain_takes_nothing(redis, mock, start_fcmd):  # noqa: F811
    f = start_fcmd(mock, workers=1, args=["--redis", redis.url])
    tokens, _ = produce(f, "h", 5, 0)
    wait_until(lambda: in_redis(redis, "notregistered") == 5, what="the entries in Redis")
    assert requests.head(f.url(NOTREG), timeout=5).status_code == 405
    assert in_redis(redis, "notregistered") == 5
    assert sorted(drain_json(f.base, NOTREG)["tokens"]) == tokens


@pytest.fixture
def fake():
    started = []

    def start(mode, lists_mode):
        r = FakeRedis(mode, lists_mode)
        started.append(r)
        return r

    yield start
    for r in started:
        r.stop()


@pytest.mark.parametrize("lists_mode", ["torn", "array", "integer", "hugebulk"])
def test_garbage_drain_reply_drops_the_connection_not_the_worker(fake, mock, start_fcmd, lists_mode):
    r = fake("ok", lists_mode)
    f = start_fcmd(mock, workers=1, args=["--redis", r.url])
    pids = f.children()
    wait_until(lambda: requests.get(f.url("/readyz"), timeout=2).status_code == 200, what="/readyz 200")
    t0 = time.monotonic()
    resp = requests.get(f.url(NOTREG), timeout=10)
    assert resp.status_code == 503 and "redis" in resp.json()["error"]
    assert time.monotonic() - t0 < 5
    assert r.takes == 1
    # The worker lives on and answers; the bad server is an outage it logged once.
    assert requests.get(f.url("/healthz"), timeout=2).status_code == 200
    assert f.children() == pids
    wait_until(lambda: "answered something unexpected" in f.log_text() or "larger than any" in f.log_text(),
               what="the dropped connection in the log")
    assert "killed by signal" not in f.log_text()
    assert requests.get(f.url(NOTREG), timeout=5).status_code == 503  # still on probation


def test_garbage_after_the_take_drops_the_connection_not_the_worker(fake, mock, start_fcmd):
    """Moves, renewals and a drain's end answered with a string instead of a
    count: the connection goes, the worker stays, the answer is still right."""
    r = fake("ok", "badend")
    f = start_fcmd(mock, workers=1, args=["--redis", r.url, "--shutdown-timeout", "1"])
    pids = f.children()
    wait_until(lambda: requests.get(f.url("/readyz"), timeout=2).status_code == 200, what="/readyz 200")
    assert drain_json(f.base, NOTREG) == {"tokens": ["dead1"]}
    wait_until(lambda: "done" in r.list_ops, what="the drain's end sent")
    produce(f, "g", 3, 0)  # something to move: its reply is garbage too
    wait_until(lambda: "move" in r.list_ops, what="a move")
    wait_until(lambda: "answered something unexpected" in f.log_text(), what="the dropped connection in the log")
    assert requests.get(f.url("/healthz"), timeout=2).status_code == 200
    assert f.children() == pids and "killed by signal" not in f.log_text()
    # The drain's end is told again on the next connection (it was never confirmed).
    wait_until(lambda: r.list_ops.count("done") >= 2, timeout=15, what="the drain's end sent again")
    assert f.children() == pids


@pytest.mark.parametrize("value", ["1", "3601", "x"])
def test_bad_drain_lease_is_refused_at_start(value):
    from conftest import FCMD_BIN
    r = subprocess.run([FCMD_BIN, "--apikey", "k", "--redis", "redis://127.0.0.1:1", "--redis-drain-lease", value,
                        "--check-config"], capture_output=True, text=True, timeout=10)
    assert r.returncode == 2 and "redis-drain-lease" in r.stderr and len(r.stderr.strip().splitlines()) == 1
