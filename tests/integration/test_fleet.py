"""Fleet mode (--redis): a real redis-server and a real haproxy (round robin) in
front of several fcmd instances.  Counts must add up exactly: through the
balancer, across a Redis outage, and across a worker killed and respawned."""

import os
import signal
import socket
import subprocess
import threading
import time

import pytest
import requests

from conftest import FCMD_BIN, free_port, stop_process, wait_until


def redis_unreachable(f):
    """fcmd_redis_unreachable in f's /metrics: its workers that cannot reach Redis."""
    for line in requests.get(f.url("/metrics"), timeout=5).text.splitlines():
        if line.startswith("fcmd_redis_unreachable "):
            return int(line.split()[1])
    raise AssertionError("no fcmd_redis_unreachable in /metrics")


def redis_ping(port):
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=1) as s:
            s.sendall(b"PING\r\n")
            return s.recv(64).startswith((b"+PONG", b"-NOAUTH"))
    except OSError:
        return False


class Redis:
    """redis-server on a free loopback port, its data (AOF) in a temp dir, so
    a restart on the same port and dir finds what it had."""

    def __init__(self, tmp_path, *args):
        self.args = list(args)
        self.port = free_port()
        self.dir = tmp_path / "redis"
        self.dir.mkdir(exist_ok=True)
        self.proc = None
        self.start()

    def start(self):
        self.proc = subprocess.Popen(["redis-server", "--port", str(self.port), "--bind", "127.0.0.1",
                                      "--dir", str(self.dir), "--save", "", "--appendonly", "yes", *self.args],
                                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        wait_until(lambda: redis_ping(self.port), what="redis-server to answer PING")

    def stop(self):
        if self.proc is not None:
            stop_process(self.proc)  # SIGTERM: Redis writes its AOF out before it exits

    @property
    def url(self):
        return f"redis://127.0.0.1:{self.port}"


class Haproxy:
    def __init__(self, tmp_path, backends):
        self.port = free_port()
        servers = "\n".join(f"    server f{i} 127.0.0.1:{p} check inter 200ms fall 1 rise 1"
                            for i, p in enumerate(backends))
        conf = tmp_path / "haproxy.cfg"
        conf.write_text(f"""global
    maxconn 512
defaults
    mode http
    timeout connect 1s
    timeout client 10s
    timeout server 10s
    retries 3
    retry-on all-retryable-errors
    option redispatch 1
frontend fe
    bind 127.0.0.1:{self.port}
    default_backend fcmd
backend fcmd
    balance roundrobin
    option httpchk GET /healthz
{servers}
""")
        self.proc = subprocess.Popen(["haproxy", "-db", "-f", str(conf)], stdout=subprocess.DEVNULL,
                                     stderr=subprocess.PIPE, text=True)
        self.base = f"http://127.0.0.1:{self.port}"
        wait_until(self.answers, what="haproxy to forward /healthz")

    def answers(self):
        if self.proc.poll() is not None:
            raise AssertionError(f"haproxy exited: {self.proc.stderr.read()}")
        try:
            return requests.get(self.base + "/healthz", timeout=1).status_code == 200
        except requests.RequestException:
            return False

    def stop(self):
        stop_process(self.proc)
        self.proc.stderr.close()


@pytest.fixture
def redis(tmp_path):
    r = Redis(tmp_path)
    yield r
    r.stop()


@pytest.fixture
def start_haproxy(tmp_path):
    started = []

    def start(backends):
        h = Haproxy(tmp_path, backends)
        started.append(h)
        return h

    yield start
    for h in started:
        h.stop()


def fleet_report(base, **params):
    r = requests.get(base + "/gcm/report", params=params, timeout=5)
    assert r.status_code == 200, r.text
    return r.json()


def send(base, n_tokens, session=requests):
    r = session.post(base + "/gcm/send", data={"tokens": [f"tok{i}" for i in range(n_tokens)],
                                               "payload": '{"k": "v"}'}, timeout=5)
    return r.status_code


def settled(base, want, extra=lambda r: True, answers=3):
    """Polls until `answers` reports in a row (through a balancer: from
    different instances) all show `want` accepted and delivered."""
    def check():
        reps = [fleet_report(base) for _ in range(answers)]
        check.last = reps
        ok = all(r.get("scope") == "fleet" and r["accepted"] == want and r["successes"] == want
                 and r["pending"] == 0 and extra(r) for r in reps)
        return reps[-1] if ok else None
    check.last = None
    try:
        return wait_until(check, timeout=20, interval=0.2, what=f"fleet totals of {want}")
    except AssertionError as e:
        raise AssertionError(f"{e}; the last reports: {check.last}") from None


def test_fleet_totals_through_the_balancer(redis, mock, start_fcmd, start_haproxy):
    inst = [start_fcmd(mock, workers=1, args=["--redis", redis.url]) for _ in range(3)]
    lb = start_haproxy([f.port for f in inst])
    session = requests.Session()
    sent = 0
    for i in range(30):
        n = 1 + i % 4
        assert send(lb.base, n, session) == 200
        sent += n
    session.close()
    rep = settled(lb.base, sent, lambda r: r["instances"] == 3)
    assert list(rep)[:5] == ["attempts", "failures", "pending", "canonicals", "notregistered"]
    assert rep["attempts"] == sent and rep["failures"] == 0
    # Round robin spread the work; each instance alone shows its own share.
    local = [fleet_report(f.base, scope="local") for f in inst]
    assert all(r["scope"] == "local" and r["redis"] == "ok" and r["accepted"] > 0 for r in local)
    assert sum(r["accepted"] for r in local) == sent
    # An instance stopped: it stops counting as live, its counts stay.
    inst[0].stop()
    settled(lb.base, sent, lambda r: r["instances"] == 2)
    # An instance killed outright (master and workers): the same.
    os.killpg(inst[1].proc.pid, signal.SIGKILL)
    inst[1].proc.wait(5)
    settled(lb.base, sent, lambda r: r["instances"] == 1)


def test_redis_outage_under_traffic(redis, mock, start_fcmd):
    inst = [start_fcmd(mock, workers=2, args=["--redis", redis.url]) for _ in range(2)]
    sent = [0]
    stop = threading.Event()
    refused = []

    def traffic():
        s = requests.Session()
        i = 0
        while not stop.is_set():
            code = send(inst[i % 2].base, 2, s)
            if code == 200:
                sent[0] += 2
            else:
                refused.append(code)
            i += 1
        s.close()

    t = threading.Thread(target=traffic)
    t.start()
    try:
        wait_until(lambda: sent[0] >= 40, what="some traffic")
        for f in inst:
            wait_until(lambda: redis_unreachable(f) == 0, what="every worker connected")
        redis.stop()
        # Every worker notices; /readyz says so, sends still succeed (the queue is local).
        for f in inst:
            wait_until(lambda: all(requests.get(f.url("/readyz"), timeout=2).status_code == 503 for _ in range(4)),
                       what="/readyz 503 on every worker")
            r = requests.get(f.url("/readyz"), timeout=2)
            assert r.json() == {"error": "redis unreachable"}
            rep = fleet_report(f.base)
            assert rep["redis"] == "unreachable" and rep["scope"] == "local"
            wait_until(lambda: redis_unreachable(f) == 2, what="fcmd_redis_unreachable 2")
        during = sent[0]
        wait_until(lambda: sent[0] >= during + 40, what="traffic while Redis is down")
        redis.start()
        for f in inst:
            wait_until(lambda: all(requests.get(f.url("/readyz"), timeout=2).status_code == 200 for _ in range(4)),
                       what="/readyz 200 again")
            wait_until(lambda: redis_unreachable(f) == 0, what="fcmd_redis_unreachable 0 again")
        wait_until(lambda: sent[0] >= during + 80, what="traffic after Redis is back")
    finally:
        stop.set()
        t.join(10)
    assert refused == []
    settled(inst[0].base, sent[0], lambda r: r["instances"] == 2)
    settled(inst[1].base, sent[0])
    for f in inst:
        log = f.log_text()
        # One line when it went down and one when it was back, per worker.  A
        # worker still making its first connection when Redis stopped says it
        # cannot reach it rather than that it lost it.
        assert log.count("redis: lost") + log.count("redis: cannot reach") == 2, log
        assert log.count("reachable again") == 2, log


def later_report(base, since):
    """A fleet report brought by a flush made after `since` (time.monotonic()):
    each worker's copy can be up to a second older than another's."""
    def get():
        t = time.monotonic()
        r = fleet_report(base)
        return r if r.get("scope") == "fleet" and t - r["age_ms"] / 1000 > since + 0.05 else None
    return wait_until(get, interval=0.1, what="a report from a later flush")


def test_worker_killed_and_respawned_counts_once(redis, mock, start_fcmd):
    f = start_fcmd(mock, workers=2, args=["--redis", redis.url])
    s = requests.Session()
    for _ in range(20):
        assert send(f.base, 3, s) == 200
    settled(f.base, 60)
    # More, then a worker killed at once, before its next flush can carry them.
    for _ in range(20):
        assert send(f.base, 1, s) == 200
    s.close()
    # Delivered (the local report reads shared memory at once), so the kill
    # loses no target in flight; the next flush is still up to a second away.
    wait_until(lambda: (lambda r: r["successes"] == 80 and r["pending"] == 0)(fleet_report(f.base, scope="local")),
               interval=0.01, what="the targets delivered")
    before = f.children()
    os.kill(before[0], signal.SIGKILL)
    wait_until(lambda: len(f.children()) == 2 and before[0] not in f.children(), what="the worker respawned")
    rep = settled(f.base, 80, answers=4)
    since = time.monotonic()
    assert rep["lost"] == 0
    # The respawned worker went on from the slot's counts: nothing added twice
    # over the next flushes either.
    for _ in range(3):
        assert later_report(f.base, since)["accepted"] == 80


def test_redis_unreachable_at_start(mock, start_fcmd):
    port = free_port()  # nothing listens here
    f = start_fcmd(mock, workers=1, args=["--redis", f"redis://:hunter2@127.0.0.1:{port}/2", "--shutdown-timeout", "1"])
    assert requests.get(f.url("/readyz"), timeout=2).status_code == 503
    assert f.send_form(["a"], {"k": "v"}).status_code == 200
    rep = fleet_report(f.base)
    assert rep["redis"] == "unreachable" and rep["accepted"] == 1
    assert redis_unreachable(f) == 1
    assert requests.get(f.url("/gcm/report?scope=nope"), timeout=2).status_code == 400
    wait_until(lambda: "cannot reach" in f.log_text(), what="the outage in the log")
    log = f.log_text()
    assert log.count("cannot reach") == 1 and "hunter2" not in log and "redis://***@127.0.0.1" in log
    # Stopping, it waits the shutdown timeout for Redis, saying so without the password.
    assert f.stop() == 0
    log = f.log_text()
    assert "is unreachable: waiting" in log and "Redis has not confirmed" in log and "hunter2" not in log, log


@pytest.mark.parametrize("url", ["localhost:6379", "redis://:hunter2@host:99999", "redis://:hunter2@host/x",
                                 "unix://relative"])
def test_bad_redis_url_is_refused_at_start(url):
    r = subprocess.run([FCMD_BIN, "--apikey", "k", "--redis", url, "--check-config"], capture_output=True,
                       text=True, timeout=10)
    assert r.returncode == 2
    assert "--redis" in r.stderr and len(r.stderr.strip().splitlines()) == 1
    assert "hunter2" not in r.stderr + r.stdout


def environ_of(pid):
    with open(f"/proc/{pid}/environ", "rb") as f:
        return f.read()


def test_redis_password_from_a_file(tmp_path, mock, start_fcmd):
    r = Redis(tmp_path, "--requirepass", "s3cret-from-file")
    try:
        pw = tmp_path / "redis-password"
        pw.write_text("s3cret-from-file\n")
        pw.chmod(0o600)
        f = start_fcmd(mock, workers=1, args=["--redis", r.url, "--redis-password-file", str(pw)])
        wait_until(lambda: requests.get(f.url("/readyz"), timeout=2).status_code == 200, what="/readyz 200")
        assert f.send_form(["a"], {"k": "v"}).status_code == 200
        settled(f.base, 1)
        assert "s3cret" not in f.log_text()
    finally:
        r.stop()


def test_redis_password_from_the_environment_is_wiped(tmp_path, mock, start_fcmd):
    r = Redis(tmp_path, "--requirepass", "s3cret-from-env")
    try:
        env = dict(os.environ, FCMD_REDIS_PASSWORD="s3cret-from-env")
        f = start_fcmd(mock, workers=2, args=["--redis", r.url], env=env)
        wait_until(lambda: requests.get(f.url("/readyz"), timeout=2).status_code == 200, what="/readyz 200")
        for pid in [f.proc.pid] + f.children():
            # The name may stay in the block /proc shows; its value is wiped.
            assert b"s3cret" not in environ_of(pid)
    finally:
        r.stop()


@pytest.mark.parametrize("how", ["file", "env"])
def test_redis_password_too_long_is_refused_at_start(tmp_path, how):
    pw = "p" * 600
    args, env = [], dict(os.environ)
    if how == "file":
        (tmp_path / "pw").write_text(pw + "\n")
        args = ["--redis-password-file", str(tmp_path / "pw")]
    else:
        env["FCMD_REDIS_PASSWORD"] = pw
    r = subprocess.run([FCMD_BIN, "--apikey", "k", "--redis", "redis://127.0.0.1:1", *args, "--check-config"],
                       capture_output=True, text=True, timeout=10, env=env)
    assert r.returncode == 2 and "longer than" in r.stderr and pw not in r.stderr + r.stdout
