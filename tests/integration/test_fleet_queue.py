"""The queue in Redis (--redis-queue): a real redis-server (appendonly yes), a
real haproxy in front of three fcmd instances.  The oracle is the mock
upstream's per-token counts and Redis itself, asked with redis-cli."""

import json
import os
import re
import socket
import signal
import subprocess
import threading
import time

import pytest
import requests

from conftest import FCMD_BIN, wait_until
from test_fleet import fleet_report, redis, start_haproxy  # noqa: F401 (fixtures)

CLAIM = "2"


def cli(redis, *args):
    r = subprocess.run(["redis-cli", "-p", str(redis.port), "--no-raw", *args], capture_output=True, text=True,
                       timeout=10)
    assert r.returncode == 0, r.stderr
    return r.stdout.strip()


def cli_int(redis, *args):
    out = cli(redis, *args)
    assert out.startswith("(integer) "), out
    return int(out.split()[1])


def stream_len(redis):
    return cli_int(redis, "XLEN", "fcmd:queue")


def group_pending(redis):
    # XPENDING's summary: the count is the first line.
    out = cli(redis, "XPENDING", "fcmd:queue", "fcmd")
    return int(out.splitlines()[0].split()[-1])


def queued(mock, start_fcmd, redis, n=3, workers=1, extra=()):
    return [start_fcmd(mock, workers=workers, args=["--redis", redis.url, "--redis-queue", "--redis-claim-after",
                                                    CLAIM, *extra]) for _ in range(n)]


def wait_ready(f, timeout=10.0, what="/readyz 200"):
    """Waits until every worker of f has answered /readyz 200: each reaches
    Redis on its own, and a push sent to one not up yet is a 503."""
    up, want = set(), len(f.children())

    def all_up():
        r = requests.get(f.url("/readyz"), timeout=2)
        if r.status_code == 200:
            up.add(r.headers["x-fcmd-worker"])
        return len(up) >= want

    wait_until(all_up, timeout=timeout, what=f"{what} from all {want} workers")


def post(base, tokens, session=requests, timeout=5):
    return session.post(base + "/gcm/send", data={"tokens": tokens, "payload": '{"k": "v"}'}, timeout=timeout)


def post_in_pairs(base, tokens):
    """Sends the tokens two a push; every push answered 200."""
    with requests.Session() as s:
        for i in range(0, len(tokens), 2):
            assert post(base, tokens[i:i + 2], s).status_code == 200


def delivered(mock, tokens):
    toks = mock.stats()["tokens"]
    return {t: toks.get(t, {}).get("delivered", 0) for t in tokens}


def drained(redis):
    return stream_len(redis) == 0 and group_pending(redis) == 0


def test_pushes_through_the_balancer_delivered_once(redis, mock, start_fcmd, start_haproxy):
    inst = queued(mock, start_fcmd, redis)
    for f in inst:
        wait_ready(f, what="/readyz 200")
    lb = start_haproxy([f.port for f in inst])
    s = requests.Session()
    tokens = []
    for i in range(60):
        batch = [f"q{i}-{k}" for k in range(1 + i % 3)]
        r = post(lb.base, batch, s)
        assert r.status_code == 200, r.text
        tokens += batch
    s.close()
    wait_until(lambda: all(v == 1 for v in delivered(mock, tokens).values()), timeout=20,
               what="every target delivered")
    wait_until(lambda: drained(redis), what="the stream empty and nothing pending in the group")
    # Exactly once when nothing fails, and the fleet's totals add up.
    assert all(v == 1 for v in delivered(mock, tokens).values())

    def totals():
        r = fleet_report(lb.base)
        return r if (r["scope"] == "fleet" and r["accepted"] == len(tokens) and r["successes"] == len(tokens)
                     and r["pending"] == 0) else None
    rep = wait_until(totals, timeout=10, interval=0.2, what="the fleet's totals")
    assert rep["failures"] == 0 and rep["lost"] == 0 and rep["instances"] == 3
    # Every instance answered some of them (counted where answered 200).
    local = [fleet_report(f.base, scope="local") for f in inst]
    assert all(r["accepted"] > 0 for r in local) and sum(r["accepted"] for r in local) == len(tokens)


def test_instance_killed_others_deliver_its_pushes(redis, start_mock, start_fcmd):
    slow = start_mock("--latency-ms", "60000")  # the doomed instance never finishes a push
    fast = start_mock()
    doomed = start_fcmd(slow, workers=2, args=["--redis", redis.url, "--redis-queue", "--redis-claim-after", CLAIM])
    wait_ready(doomed, what="/readyz 200")
    tokens = [f"k{i}" for i in range(40)]
    post_in_pairs(doomed.base, tokens)
    # It read them all and holds them in flight upstream.
    wait_until(lambda: slow.stats(summary=True)["requests"] >= 20, what="the pushes in flight at the doomed one")
    assert stream_len(redis) == 20 and group_pending(redis) == 20
    os.killpg(doomed.proc.pid, signal.SIGKILL)
    doomed.proc.wait(5)
    others = queued(fast, start_fcmd, redis, n=2)
    wait_until(lambda: all(v >= 1 for v in delivered(fast, tokens).values()), timeout=30,
               what="the others to deliver every push of the killed instance")
    wait_until(lambda: drained(redis), what="the stream empty")
    # Claimed once each: one instance took each push.
    assert all(v == 1 for v in delivered(fast, tokens).values())
    assert any("took over" in f.log_text() for f in others)


def test_redis_down_503_then_everything_accepted_is_delivered(redis, mock, start_fcmd):
    inst = queued(mock, start_fcmd, redis, n=2)
    for f in inst:
        wait_ready(f, what="/readyz 200")
    accepted, refused, stop = [], [], threading.Event()
    slowest = [0.0]

    def traffic():
        s = requests.Session()
        i = 0
        while not stop.is_set():
            toks = [f"o{i}"]
            t0 = time.monotonic()
            try:
                r = post(inst[i % 2].base, toks, s)
            except requests.RequestException:
                r = None
            took = time.monotonic() - t0
            if r is not None and r.status_code == 200:
                accepted.extend(toks)
            elif r is not None:
                assert r.status_code == 503, r.text
                assert r.headers.get("Retry-After") == "1"
                assert "redis" in r.json()["error"]
                refused.append(took)
            slowest[0] = max(slowest[0], took)
            i += 1
        s.close()

    t = threading.Thread(target=traffic)
    t.start()
    try:
        wait_until(lambda: len(accepted) >= 30, what="some traffic")
        redis.stop()
        wait_until(lambda: len(refused) >= 20, what="503s while Redis is down")
        for f in inst:
            wait_until(lambda: requests.get(f.url("/readyz"), timeout=2).status_code == 503, what="/readyz 503")
        redis.start()
        for f in inst:
            wait_ready(f, timeout=15, what="/readyz 200 again")
        n = len(accepted)
        wait_until(lambda: len(accepted) >= n + 30, what="traffic after Redis is back")
    finally:
        stop.set()
        t.join(10)
    # Answered within about a second (the bound leaves room for a busy
    # machine, and stays under the transport's 3 s reply timeout).
    assert max(refused) < 2.5, max(refused)
    wait_until(lambda: all(v >= 1 for v in delivered(mock, accepted).values()), timeout=20,
               what="every push answered 200 delivered")
    wait_until(lambda: drained(redis), what="the stream empty")
    for f in inst:
        log = f.log_text()
        assert log.count("redis: lost") == 1, log  # one worker each, one outage
        assert log.count("reachable again") == 1, log


def test_redis_queue_needs_redis_and_excludes_the_spool(tmp_path):
    for args, why in ([["--redis-queue"], "--redis-queue needs --redis"],
                      [["--redis", "redis://127.0.0.1:1", "--redis-queue", "--spool", str(tmp_path)],
                       "--spool and --redis-queue"]):
        r = subprocess.run([FCMD_BIN, "--apikey", "k", *args, "--check-config"], capture_output=True, text=True,
                           timeout=10)
        assert r.returncode == 2 and why in r.stderr and len(r.stderr.strip().splitlines()) == 1, r.stderr


def test_redis_too_slow_answers_503_within_a_second(redis, mock, start_fcmd):
    inst = queued(mock, start_fcmd, redis, n=2)
    for f in inst:
        wait_ready(f, what="/readyz 200")
    assert post(inst[0].base, ["before"]).status_code == 200
    os.kill(redis.proc.pid, signal.SIGSTOP)  # Redis alive but silent
    try:
        t0 = time.monotonic()
        r = post(inst[0].base, ["stalled"])
        took = time.monotonic() - t0
        assert r.status_code == 503 and r.headers.get("Retry-After") == "1", r.text
        assert "redis" in r.json()["error"]
        assert 0.9 < took < 2.5, took  # the 1 s deadline, not the transport's 3 s
        # Known slow now: answered at once, and not ready.
        t0 = time.monotonic()
        assert post(inst[0].base, ["stalled2"]).status_code == 503
        assert time.monotonic() - t0 < 0.9  # not waiting for the deadline again
        assert requests.get(inst[0].url("/readyz"), timeout=2).status_code == 503
    finally:
        os.kill(redis.proc.pid, signal.SIGCONT)
    for f in inst:
        wait_ready(f, timeout=15, what="/readyz 200 again")
    assert post(inst[1].base, ["after"]).status_code == 200
    wait_until(lambda: delivered(mock, ["before", "after"]) == {"before": 1, "after": 1}, what="deliveries")
    wait_until(lambda: drained(redis), what="the stream empty")
    # A push answered 503 is either taken back or delivered and counted: the
    # fleet's totals add up either way.
    late = delivered(mock, ["stalled"])["stalled"]

    def totals():
        r = fleet_report(inst[0].base)
        totals.last = (late, r, [f.log_text() for f in inst])
        return r if r["scope"] == "fleet" and r["accepted"] == 2 + late == r["successes"] else None
    try:
        wait_until(totals, timeout=10, interval=0.2, what="the fleet's totals")
    except AssertionError:
        raise AssertionError(totals.last)
    assert delivered(mock, ["stalled2"])["stalled2"] == 0


def test_queue_max_refuses_then_recovers(redis, start_mock, start_fcmd):
    mock = start_mock("--latency-ms", "1500")
    f, = queued(mock, start_fcmd, redis, n=1, extra=["--redis-queue-max", "5"])
    wait_ready(f, what="/readyz 200")
    for i in range(5):
        assert post(f.base, [f"m{i}"]).status_code == 200
    r = post(f.base, ["over"])
    assert r.status_code == 503 and r.headers.get("Retry-After") == "1"
    assert r.json() == {"error": "the queue in redis is full (--redis-queue-max)"}
    assert stream_len(redis) == 5
    # As pushes finish, their entries go, and there is room again.
    wait_until(lambda: post(f.base, ["later"]).status_code == 200, timeout=15, interval=0.2, what="room again")
    wait_until(lambda: all(v == 1 for v in delivered(mock, [f"m{i}" for i in range(5)] + ["later"]).values()),
               timeout=15, what="deliveries")
    wait_until(lambda: drained(redis), what="the stream empty")
    assert delivered(mock, ["over"])["over"] == 0


def metric(f, name, **labels):
    text = requests.get(f.url("/metrics"), timeout=5).text
    want = name + ("{" + ",".join(f'{k}="{v}"' for k, v in labels.items()) + "}" if labels else "")
    for line in text.splitlines():
        if line.startswith(want + " "):
            return float(line.split()[-1])
    raise AssertionError(f"{want} not in /metrics")


def test_garbage_entries_skipped_acknowledged_counted(redis, mock, start_fcmd):
    f, = queued(mock, start_fcmd, redis, n=1, workers=2)
    wait_ready(f, what="/readyz 200")
    children = sorted(f.children())
    ids = [cli(redis, "XADD", "fcmd:queue", "*", "p", "not a record"),
           cli(redis, "XADD", "fcmd:queue", "*", "other", "field"),
           cli(redis, "XADD", "fcmd:queue", "*", "p", "FCSP" + "\x01" * 40)]
    wait_until(lambda: metric(f, "fcmd_failures_total", reason="queue_entry") == 3, what="the entries counted")
    wait_until(lambda: drained(redis), what="the bad entries acknowledged and deleted")
    # Logged with the entry's id (at most a line a second: a flood stays small).
    log = f.log_text()
    assert any(f"entry {i.strip(chr(34))} skipped" in log for i in ids), log
    # The workers live on and deliver.
    assert post(f.base, ["fine"]).status_code == 200
    wait_until(lambda: delivered(mock, ["fine"]) == {"fine": 1}, what="a good push delivered")
    assert sorted(f.children()) == children
    rep = fleet_report(f.base, scope="local")
    assert rep["failures"] == 0 and rep["accepted"] == 1 and rep["successes"] == 1


def test_config_file_turns_the_queue_on(tmp_path, redis, mock, start_fcmd):
    conf = tmp_path / "fcmd.conf"
    conf.write_text(f"[redis]\nurl = {redis.url}\nqueue = on\nclaim_after = 2\nqueue_max = 100\n")
    f = start_fcmd(mock, workers=1, args=["--config", str(conf)])
    wait_ready(f, what="/readyz 200")
    assert post(f.base, ["viaconf"]).status_code == 200
    wait_until(lambda: delivered(mock, ["viaconf"]) == {"viaconf": 1}, what="delivery")
    # It went through the stream: the group exists and delivered it.
    assert "fcmd" in cli(redis, "XINFO", "GROUPS", "fcmd:queue")
    wait_until(lambda: drained(redis), what="the stream empty")


def test_a_push_waiting_for_its_retry_is_not_claimed(redis, start_mock, start_fcmd):
    # The upstream asks to wait 5 s, over twice --redis-claim-after: the
    # holder keeps refreshing the entry, so no other worker takes it over.
    mock = start_mock("--retry-after", "5")
    inst = queued(mock, start_fcmd, redis, n=2)
    for f in inst:
        wait_ready(f, what="/readyz 200")
    assert post(inst[0].base, ["http503once-kept"]).status_code == 200
    wait_until(lambda: (mock.token("http503once-kept") or {}).get("attempts", 0) >= 1, what="the first attempt")
    wait_until(lambda: (mock.token("http503once-kept") or {}).get("delivered", 0) == 1, timeout=20,
               what="the delivery after Retry-After")
    wait_until(lambda: drained(redis), what="the stream empty")
    assert mock.token("http503once-kept") == {**mock.token("http503once-kept"), "attempts": 2, "delivered": 1}
    assert not any("took over" in f.log_text() for f in inst)


def test_workers_killed_their_pushes_are_claimed_not_lost(redis, start_mock, start_fcmd):
    mock = start_mock("--latency-ms", "1500")
    f, = queued(mock, start_fcmd, redis, n=1, workers=2)
    wait_ready(f, what="/readyz 200")
    tokens = [f"w{i}" for i in range(10)]
    for t in tokens:
        assert post(f.base, [t]).status_code == 200
    wait_until(lambda: mock.stats(summary=True)["requests"] >= 10, what="every push in flight")
    before = f.children()
    for pid in before:
        os.kill(pid, signal.SIGKILL)
    wait_until(lambda: len(f.children()) == 2 and not set(before) & set(f.children()), what="the workers respawned")
    # The new workers are new consumers: they take the dead ones' entries
    # over after --redis-claim-after and send them again.
    wait_until(lambda: all((mock.token(t) or {}).get("attempts", 0) >= 2 for t in tokens), timeout=20,
               what="every push sent again")
    wait_until(lambda: drained(redis), timeout=15, what="the stream empty")
    rep = fleet_report(f.base, scope="local")
    assert rep["lost"] == 0 and rep["pending"] == 0 and rep["accepted"] == 10, rep
    log = f.log_text()
    assert "left in the Redis queue" in log and "took over" in log, log


def xadd(redis, *fields):
    """XADD fcmd:queue * fields... over a raw socket (fields of any size and
    number); the new entry's id."""
    out = b"*%d\r\n" % (3 + len(fields))
    for a in ("XADD", "fcmd:queue", "*", *fields):
        a = a.encode()
        out += b"$%d\r\n%s\r\n" % (len(a), a)
    with socket.create_connection(("127.0.0.1", redis.port), timeout=10) as s:
        s.sendall(out)
        r = s.makefile("rb")
        head = r.readline().decode()
        assert head.startswith("$"), head
        return r.readline().decode().strip()


MANY_FIELDS = [x for i in range(3000) for x in (f"f{i}", "v")]  # past any array a reply of fcmd's may hold
SMALL = ["--max-body-bytes", "16384", "--max-tokens", "100"]    # an entry of a push: at most 16384 + 800 + 4096
BIG_P = "x" * 30000


def no_outage(f):
    log = f.log_text()
    return "redis: lost" not in log and "an unreadable reply" not in log and "larger than any" not in log


def test_foreign_entries_skipped_while_the_pushes_around_them_flow(redis, mock, start_fcmd):
    # A long --redis-claim-after: nothing here may wait for a claim or the reaper.
    inst = [start_fcmd(mock, workers=1, args=["--redis", redis.url, "--redis-queue", "--redis-claim-after", "30",
                                              *SMALL]) for _ in range(2)]
    for f in inst:
        wait_ready(f, what="/readyz 200")
    s = requests.Session()
    tokens, bad = [], []

    def pushes(tag):
        for i in range(10):
            t = f"{tag}-{i}"
            r = post(inst[i % 2].base, [t], s)
            assert r.status_code == 200, r.text
            tokens.append(t)

    def logs():
        return "".join(f.log_text() for f in inst)

    pushes("a")
    # A p larger than an entry of a push this instance accepts may be: the
    # first skip of a worker is always logged, so its reason is seen.
    bad.append(xadd(redis, "p", BIG_P))
    wait_until(lambda: metric(inst[0], "fcmd_failures_total", reason="queue_entry") +
               metric(inst[1], "fcmd_failures_total", reason="queue_entry") == 1, timeout=5,
               what="the entry with a large p counted")
    assert f"skipped: its push is {len(BIG_P)} bytes, over the " in logs(), logs()
    pushes("b")
    bad.append(xadd(redis, *MANY_FIELDS))
    pushes("c")
    bad.append(xadd(redis, "other", "field"))
    pushes("d")
    s.close()
    wait_until(lambda: all(v == 1 for v in delivered(mock, tokens).values()), timeout=5,
               what="every push delivered")
    wait_until(lambda: sum(metric(f, "fcmd_failures_total", reason="queue_entry") for f in inst) == 3, timeout=5,
               what="the three foreign entries counted")
    wait_until(lambda: drained(redis), timeout=5, what="the foreign entries acknowledged and deleted")
    assert all(no_outage(f) for f in inst), logs()
    assert "given up" not in logs()
    assert all(v == 1 for v in delivered(mock, tokens).values())
    assert sum(fleet_report(f.base, scope="local")["failures"] for f in inst) == 0


def test_a_push_as_large_as_the_limits_allow_goes_through(redis, mock, start_fcmd):
    # The reads hand back no entry larger than the limits make a push: the
    # largest body with the most (shortest) tokens is still delivered.
    f = start_fcmd(mock, workers=1, args=["--redis", redis.url, "--redis-queue", *SMALL])
    wait_ready(f, what="/readyz 200")
    tokens = [f"L{i:02d}" for i in range(100)]
    body = json.dumps({"tokens": tokens, "payload": {"pad": ""}}, separators=(",", ":"))
    body = body.replace('"pad":""', '"pad":"' + "y" * (16384 - len(body)) + '"')
    assert len(body) == 16384
    over = body.replace('"pad":"', '"pad":"y')  # one byte more is refused: this is the largest
    r = requests.post(f.base + "/gcm/send", data=over, headers={"Content-Type": "application/json"}, timeout=5)
    assert r.status_code == 413, r.text
    r = requests.post(f.base + "/gcm/send", data=body, headers={"Content-Type": "application/json"}, timeout=5)
    assert r.status_code == 200, r.text
    wait_until(lambda: all(v == 1 for v in delivered(mock, tokens).values()), what="every target delivered")
    wait_until(lambda: drained(redis), what="the stream empty")
    assert metric(f, "fcmd_failures_total", reason="queue_entry") == 0


def test_a_foreign_entry_claimed_from_a_silent_consumer_is_skipped(redis, mock, start_fcmd):
    # A consumer that read a foreign entry and went silent: its entry is
    # claimed, then skipped like a read one, and the connection stays.
    cli(redis, "XGROUP", "CREATE", "fcmd:queue", "fcmd", "$", "MKSTREAM")
    many = xadd(redis, *MANY_FIELDS)
    big = xadd(redis, "p", BIG_P)
    subprocess.run(["redis-cli", "-p", str(redis.port), "XREADGROUP", "GROUP", "fcmd", "ghost", "COUNT", "10",
                    "STREAMS", "fcmd:queue", ">"], capture_output=True, timeout=10, check=True)
    assert group_pending(redis) == 2
    f = start_fcmd(mock, workers=1, args=["--redis", redis.url, "--redis-queue", "--redis-claim-after", "1",
                                          *SMALL])
    wait_ready(f, what="/readyz 200")
    assert post(f.base, ["beside"]).status_code == 200
    wait_until(lambda: metric(f, "fcmd_failures_total", reason="queue_entry") == 2, timeout=8,
               what="the claimed entries counted")
    wait_until(lambda: drained(redis), timeout=8, what="the claimed entries acknowledged and deleted")
    wait_until(lambda: delivered(mock, ["beside"]) == {"beside": 1}, what="the push beside them delivered")
    log = f.log_text()
    assert no_outage(f), log
    assert "took over 2 pushes" in log and "given up" not in log, log
    assert f"entry {many} skipped: it holds no push" in log or f"entry {big} skipped: its push is" in log, log


def test_the_group_made_again_when_the_stream_is_deleted(redis, mock, start_fcmd):
    # DEL of the stream (or FLUSHDB) under running workers: their reads and
    # claims get NOGROUP, and they make the group again.
    f, = queued(mock, start_fcmd, redis, n=1, workers=2)
    wait_ready(f, what="/readyz 200")
    assert post(f.base, ["before-del"]).status_code == 200
    wait_until(lambda: delivered(mock, ["before-del"]) == {"before-del": 1}, what="a push delivered")
    wait_until(lambda: drained(redis), what="the stream empty")
    assert cli_int(redis, "DEL", "fcmd:queue") == 1
    wait_until(lambda: "NOGROUP" in f.log_text(), what="a read refused with NOGROUP")
    assert post(f.base, ["after-del"]).status_code == 200
    wait_until(lambda: delivered(mock, ["after-del"]) == {"after-del": 1}, what="a push after the DEL delivered")
    wait_until(lambda: drained(redis), what="the stream empty again")
    assert "fcmd" in cli(redis, "XINFO", "GROUPS", "fcmd:queue")


def test_an_entry_taken_five_times_is_given_up(redis, mock, start_fcmd):
    # An entry five holders in a row took and never finished (each died on
    # it): the next claim round gives it up rather than take it again.
    cli(redis, "XGROUP", "CREATE", "fcmd:queue", "fcmd", "$", "MKSTREAM")
    bad = cli(redis, "XADD", "fcmd:queue", "*", "p", "kills its readers").strip('"')
    cli(redis, "XREADGROUP", "GROUP", "fcmd", "ghost", "COUNT", "1", "STREAMS", "fcmd:queue", ">")
    cli(redis, "XCLAIM", "fcmd:queue", "fcmd", "ghost", "0", bad, "RETRYCOUNT", "5", "JUSTID")
    f, = queued(mock, start_fcmd, redis, n=1, extra=["--redis-claim-after", "1"])
    wait_ready(f, what="/readyz 200")
    children = f.children()
    wait_until(lambda: f"entry {bad} given up" in f.log_text(), timeout=10, interval=0.2,
               what="the entry given up")
    wait_until(lambda: drained(redis), what="the stream empty")
    assert "skipped" not in f.log_text()  # not claimed: given up first
    assert f.children() == children
    assert post(f.base, ["after-poison"]).status_code == 200
    wait_until(lambda: delivered(mock, ["after-poison"]) == {"after-poison": 1}, what="a good push delivered")
    assert metric(f, "fcmd_failures_total", reason="queue_entry") == 1


class IdRewriter:
    """A TCP proxy between fcmd and Redis that rewrites every stream id in
    Redis' replies to 0-0, the id no entry has: a hostile or broken peer."""

    ID = re.compile(rb"\$\d+\r\n\d{10,}-\d+\r\n")

    def __init__(self, redis_port):
        self.redis_port = redis_port
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.socks = []
        threading.Thread(target=self.accept, daemon=True).start()

    def accept(self):
        while True:
            try:
                c, _ = self.listener.accept()
            except OSError:
                return
            r = socket.create_connection(("127.0.0.1", self.redis_port))
            self.socks += [c, r]
            threading.Thread(target=self.pipe, args=(c, r, False), daemon=True).start()
            threading.Thread(target=self.pipe, args=(r, c, True), daemon=True).start()

    def pipe(self, a, b, rewrite):
        try:
            while True:
                d = a.recv(65536)
                if not d:
                    break
                b.sendall(self.ID.sub(b"$3\r\n0-0\r\n", d) if rewrite else d)
        except OSError:
            pass
        finally:
            try:
                b.shutdown(socket.SHUT_WR)
            except OSError:
                pass

    def close(self):
        self.listener.close()
        for s in self.socks:
            s.close()


def test_an_entry_with_the_id_no_entry_has_is_skipped(redis, mock, start_fcmd):
    """0-0 is what a push not read from the stream carries: an entry that
    claims it is refused (logged), and the worker lives on."""
    proxy = IdRewriter(redis.port)
    try:
        f = start_fcmd(mock, workers=1, args=["--redis", f"redis://127.0.0.1:{proxy.port}", "--redis-queue",
                                              "--redis-claim-after", CLAIM])
        wait_ready(f, what="redis reachable through the proxy")
        workers = f.children()
        assert post(f.base, ["zero-id"]).status_code == 200
        wait_until(lambda: "an entry without a readable id skipped" in f.log_text(), what="the entry refused")
        # Through several refresh and claim rounds (a third of --redis-claim-after
        # each), the same worker serves: none dies on the entry.
        with pytest.raises(AssertionError):
            wait_until(lambda: f.children() != workers, timeout=3 * int(CLAIM), what="a worker replaced")
        assert requests.get(f.url("/healthz"), timeout=2).status_code == 200
        assert delivered(mock, ["zero-id"]) == {"zero-id": 0}
    finally:
        proxy.close()


def test_stop_while_redis_is_down_sends_the_acknowledgements_it_owes(redis, start_mock, start_fcmd):
    """Pushes an instance finishes while Redis is down owe Redis their
    acknowledgement; when the whole instance stops then, its workers wait
    (within the shutdown timeout) for Redis and acknowledge them, so no other
    instance delivers them again."""
    slow = start_mock("--latency-ms", "1500")
    f = start_fcmd(slow, workers=1, args=["--redis", redis.url, "--redis-queue", "--redis-claim-after", CLAIM])
    wait_ready(f, what="/readyz 200")
    tokens = [f"ack{i}" for i in range(6)]
    post_in_pairs(f.base, tokens)
    wait_until(lambda: slow.stats(summary=True)["requests"] >= 3, what="the pushes in flight upstream")
    assert group_pending(redis) == 3
    redis.stop()
    # They finish while Redis is down: the acknowledgements wait.
    wait_until(lambda: all(v == 1 for v in delivered(slow, tokens).values()), what="the pushes delivered")
    f.proc.send_signal(signal.SIGTERM)
    wait_until(lambda: "is unreachable: waiting" in f.log_text(), what="the line that it waits for Redis")
    assert f.proc.poll() is None
    redis.start()
    wait_until(lambda: f.proc.poll() is not None, timeout=15, what="the instance to exit once Redis is back")
    assert f.proc.returncode == 0, f.log_text()
    assert drained(redis), (stream_len(redis), group_pending(redis))


def command_calls(redis):
    """Calls per command since the last CONFIG RESETSTAT, from INFO commandstats."""
    calls = {}
    for line in cli(redis, "INFO", "commandstats").split():
        if line.startswith("cmdstat_"):
            name, fields = line[len("cmdstat_"):].split(":", 1)
            calls[name] = int(dict(kv.split("=") for kv in fields.split(","))["calls"])
    return calls


def test_idle_workers_read_at_their_tick_by_digest(redis, mock, start_fcmd):
    """An idle worker looks for new entries once a tick (50 ms), not again as
    soon as an empty read comes back, and sends the read script by its
    digest (EVALSHA), not its kilobyte body, once Redis has it."""
    f, = queued(mock, start_fcmd, redis, n=1, workers=2)
    wait_ready(f, what="/readyz 200")
    assert post(f.base, ["idle-0"]).status_code == 200  # every script has run once
    wait_until(lambda: delivered(mock, ["idle-0"]) == {"idle-0": 1}, what="the push delivered")
    wait_until(lambda: drained(redis), what="its entry acknowledged")
    cli(redis, "CONFIG", "RESETSTAT")
    began = time.monotonic()
    wait_until(lambda: command_calls(redis).get("xreadgroup", 0) >= 80, what="reads by the idle workers")
    calls, seconds = command_calls(redis), time.monotonic() - began
    # Two workers at 20 reads a second, with room for a slow machine; an
    # empty read that started the next at once made thousands.
    assert calls["xreadgroup"] <= 3 * 2 * 20 * seconds + 10, (calls, seconds)
    # The scripts that still go by body (the claims' reaper and cleaner, once
    # a second or less) are few next to the reads.
    assert calls.get("eval", 0) * 4 <= calls["xreadgroup"], calls


def test_script_flush_under_traffic_answers_no_503(redis, mock, start_fcmd):
    """SCRIPT FLUSH while pushes are accepted: the queue's scripts go by
    body again, the counters' flush and the drain lists' script are loaded
    again on the same connection, and no send is answered 503 nor any read
    refused: no outage."""
    f, = queued(mock, start_fcmd, redis, n=1, workers=1)
    wait_ready(f, what="/readyz 200")
    codes, tokens = [], []
    with requests.Session() as s:
        assert post(f.base, ["warm"], s).status_code == 200
        cli(redis, "SCRIPT", "FLUSH")
        # Until the counters' flush (once a second) has met NOSCRIPT and
        # loaded the scripts again, and 50 sends after that.
        after = 0
        while after < 50 and len(codes) < 20000:
            t = f"sf-{len(codes)}"
            r = post(f.base, [t], s)
            codes.append(r.status_code)
            if r.status_code == 200:
                tokens.append(t)
            if "forgot fcmd's scripts" in f.log_text():
                after += 1
    assert after == 50, "the flush never met NOSCRIPT"
    wait_until(lambda: all(v == 1 for v in delivered(mock, tokens).values()), what="accepted pushes delivered")
    wait_until(lambda: drained(redis), what="the stream empty")
    log = f.log_text()
    assert [c for c in codes if c != 200] == [], [x for x in log.splitlines() if "redis" in x][-5:]
    assert "redis: lost" not in log and "a read was refused" not in log, log
    assert log.count("forgot fcmd's scripts") == 1, log


def test_hostile_entries_and_script_flushes_cost_nothing(redis, mock, start_fcmd):
    """Entries with p given several times, a p that is no push, an entry a
    silent consumer held and that was deleted before the claim, and
    SCRIPT FLUSH between reads: every good push is delivered once, every
    foreign entry is skipped once, nothing stays pending, no worker dies."""
    cli(redis, "XGROUP", "CREATE", "fcmd:queue", "fcmd", "$", "MKSTREAM")
    held = [xadd(redis, "p", "held-garbage"), xadd(redis, "p", "held-then-deleted")]
    cli(redis, "XREADGROUP", "GROUP", "fcmd", "ghost", "COUNT", "10", "STREAMS", "fcmd:queue", ">")
    assert group_pending(redis) == 2
    assert cli_int(redis, "XDEL", "fcmd:queue", held[1]) == 1
    f = start_fcmd(mock, workers=2, args=["--redis", redis.url, "--redis-queue", "--redis-claim-after", "1"])
    wait_ready(f, what="/readyz 200")
    children = f.children()
    xadd(redis, "p", "first", "p", "second")
    xadd(redis, "x", "p", "p", "x")  # a field named x whose value is p, then a field p
    tokens = []
    with requests.Session() as s:
        for i in range(30):
            if i % 10 == 5:
                cli(redis, "SCRIPT", "FLUSH")
            t = f"h-{i}"
            r = post(f.base, [t], s)
            if r.status_code == 200:
                tokens.append(t)
    wait_until(lambda: all(v == 1 for v in delivered(mock, tokens).values()), what="good pushes delivered")
    wait_until(lambda: metric(f, "fcmd_failures_total", reason="queue_entry") == 3, timeout=10,
               what="three foreign entries skipped")
    wait_until(lambda: drained(redis) and group_pending(redis) == 0, timeout=10, what="nothing left")
    assert f.children() == children
    assert all(v == 1 for v in delivered(mock, tokens).values())
    assert len(tokens) >= 20, len(tokens)
