"""Fleet mode in operation: a reload under traffic through a real haproxy, Redis
over a UNIX socket, a Redis name that resolves late or never, an instance
stopped while Redis is down, and Redis restarted under traffic.  Counts are
checked against what the test sent, and against Redis itself (redis-cli)."""

import os
import signal
import socket
import subprocess
import threading
import time

import pytest
import requests

from conftest import FCMD_BIN, free_port, http_ok, stop_process, wait_until
from test_fleet import fleet_report, later_report, redis, send, settled, start_haproxy  # noqa: F401 (fixtures)

RESOLVE_LIB = os.environ.get("RESOLVE_LIB",
                             os.path.join(os.path.dirname(FCMD_BIN), "build", "tests", "fault_resolve.so"))


def readyz(f):
    return requests.get(f.url("/readyz"), timeout=2).status_code


def every_worker_says(f, code, workers):
    """A predicate for wait_until: one /readyz on a new connection per call,
    remembering each worker's latest answer (told apart by X-Fcmd-Worker);
    true once `workers` workers have answered and each one's latest answer is
    code.  Make a new one for each wait: a worker retired in between would
    keep its old answer."""
    latest = {}

    def check():
        r = requests.get(f.url("/readyz"), timeout=2)
        latest[r.headers.get("X-Fcmd-Worker")] = r.status_code
        return len(latest) >= workers and all(c == code for c in latest.values())
    return check


class Traffic:
    """Threads sending pushes of 2 tokens through base until stopped; every
    answer that is not 200, and every request that fails, is kept."""

    def __init__(self, base, threads=2):
        self.base = base
        self.sent = 0
        self.errors = []
        self.lock = threading.Lock()
        self.stopping = threading.Event()
        self.threads = [threading.Thread(target=self.run) for _ in range(threads)]
        for t in self.threads:
            t.start()

    def run(self):
        s = requests.Session()
        try:
            while not self.stopping.is_set():
                try:
                    code = send(self.base, 2, s)
                except requests.RequestException as e:
                    code = repr(e)
                with self.lock:
                    if code == 200:
                        self.sent += 2
                    else:
                        self.errors.append(code)
        finally:
            s.close()

    def wait_for(self, more, what):
        start = self.sent
        wait_until(lambda: self.sent >= start + more, timeout=30, what=what)

    def stop(self):
        self.stopping.set()
        for t in self.threads:
            t.join(15)
        assert not any(t.is_alive() for t in self.threads), "a traffic thread is stuck"


@pytest.fixture
def traffic():
    started = []

    def start(base, **kw):
        t = Traffic(base, **kw)
        started.append(t)
        return t

    yield start
    for t in started:
        if not t.stopping.is_set():
            t.stop()


def test_reload_under_traffic_through_the_balancer(redis, mock, start_fcmd, start_haproxy, traffic):
    """SIGHUP replaces an instance's workers without refusing a connection
    (contract §4): no client sees an error, the fleet keeps counting every
    push once, and the instance count never moves."""
    inst = [start_fcmd(mock, workers=2, args=["--redis", redis.url]) for _ in range(3)]
    lb = start_haproxy([f.port for f in inst])
    # Every worker's copy of the totals (up to a second old) knows all three.
    wait_until(lambda: all(fleet_report(f.base).get("instances") == 3 for f in inst for _ in range(6)),
               what="three instances live, as every worker sees it")
    old = sorted(inst[1].children())
    seen = []
    t = traffic(lb.base)
    t.wait_for(60, "traffic before the reload")
    inst[1].proc.send_signal(signal.SIGHUP)

    def replaced():
        rep = fleet_report(lb.base)
        if rep.get("scope") == "fleet":
            seen.append(rep["instances"])
        kids = inst[1].children()
        return len(kids) == 2 and not set(kids) & set(old) and "previous one finishes" in inst[1].log_text()

    wait_until(replaced, timeout=30, interval=0.1, what="the reloaded instance's new workers, alone")
    # The new generation serves through the balancer too.
    local = fleet_report(inst[1].base, scope="local")["accepted"]
    t.wait_for(60, "traffic after the reload")
    wait_until(lambda: fleet_report(inst[1].base, scope="local")["accepted"] > local, what="the new workers serving")
    t.stop()
    assert t.errors == []
    assert t.sent >= 120
    rep = settled(lb.base, t.sent, lambda r: r["instances"] == 3 and r["failures"] == 0 and r["lost"] == 0)
    assert rep["attempts"] == t.sent
    assert seen and set(seen) == {3}, seen
    # Each instance's own share adds up to the fleet's.
    assert sum(fleet_report(f.base, scope="local")["accepted"] for f in inst) == t.sent
    # The retired workers' last counts were flushed (instance 1's share is complete in Redis).
    assert "killed by signal" not in inst[1].log_text()


def redis_cli(*args):
    r = subprocess.run(["redis-cli", *args], capture_output=True, text=True, timeout=10)
    assert r.returncode == 0, r.stderr
    return r.stdout.strip()


def unix_ping(path):
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
            s.settimeout(1)
            s.connect(str(path))
            s.sendall(b"PING\r\n")
            return s.recv(64).startswith(b"+PONG")
    except OSError:
        return False


@pytest.fixture
def unix_redis(tmp_path):
    """redis-server on a UNIX socket only (no TCP port), AOF on."""
    d = tmp_path / "redis-unix"
    d.mkdir()
    sock = d / "redis.sock"
    proc = subprocess.Popen(["redis-server", "--port", "0", "--unixsocket", str(sock), "--unixsocketperm", "700",
                             "--dir", str(d), "--save", "", "--appendonly", "yes"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_until(lambda: unix_ping(sock), what="redis-server to answer on its socket")
        yield sock
    finally:
        stop_process(proc)


def test_redis_over_a_unix_socket(unix_redis, mock, start_fcmd):
    url = f"unix://{unix_redis}?db=3"
    inst = [start_fcmd(mock, workers=2, args=["--redis", url]) for _ in range(2)]
    s = requests.Session()
    sent = 0
    for i in range(20):
        assert send(inst[i % 2].base, 1 + i % 3, s) == 200
        sent += 1 + i % 3
    s.close()
    settled(inst[0].base, sent, lambda r: r["instances"] == 2)
    settled(inst[1].base, sent, lambda r: r["instances"] == 2)
    # Redis itself holds them, in the database the URL names and no other.
    assert int(redis_cli("-s", str(unix_redis), "-n", "3", "HGET", "fcmd:totals", "accepted")) == sent
    assert redis_cli("-s", str(unix_redis), "-n", "0", "EXISTS", "fcmd:totals") == "0"
    for f in inst:
        log = f.log_text()
        assert log.count("redis: connected to unix://") == 2 and "cannot reach" not in log, log


@pytest.mark.parametrize("resolve_ms, line", [(1000, "cannot resolve redis.slow.invalid"),
                                              (60000, "no address for the host within 3 s")])
def test_a_slow_or_silent_resolver_never_blocks_the_loop(mock, start_fcmd, monkeypatch, resolve_ms, line):
    """The Redis host's name is looked up on libuv's thread pool: while the
    lookup hangs, sends and the local report answer at once, /readyz says
    503, and the log has one line per worker, not one per retry."""
    assert os.path.exists(RESOLVE_LIB), f"build {RESOLVE_LIB} first (make integration does)"
    monkeypatch.setenv("LD_PRELOAD", RESOLVE_LIB)
    monkeypatch.setenv("FCMD_TEST_RESOLVE_MS", str(resolve_ms))
    monkeypatch.setenv("ASAN_OPTIONS", os.environ.get("ASAN_OPTIONS", "") + ":verify_asan_link_order=0")
    f = start_fcmd(mock, workers=2, args=["--redis", "redis://redis.slow.invalid:6379", "--shutdown-timeout", "2"])
    pids = f.children()
    s = requests.Session()
    sent = 0
    # Requests carry a 2 s deadline: a loop waiting for the lookup (1 s or
    # 60 s) would miss it.  Keep going until each worker has declared the
    # outage, which takes at least the lookup or its 3 s deadline.
    def declared():
        nonlocal sent
        assert s.post(f.url("/gcm/send"), data={"tokens": ["a", "b"], "payload": "{}"}, timeout=2).status_code == 200
        sent += 2
        rep = requests.get(f.url("/gcm/report?scope=local"), timeout=2)
        assert rep.status_code == 200 and rep.json()["scope"] == "local" and rep.json()["redis"] == "unreachable"
        assert readyz(f) == 503
        return f.log_text().count(line) == 2

    wait_until(declared, timeout=20, interval=0.05, what="both workers to log the outage")
    # Retries (back-off, each waiting for the lookup again) add no lines.
    wait_until(lambda: declared() and sent >= 200, timeout=30, interval=0.05, what="more traffic")
    s.close()
    f.wait_idle()
    rep = fleet_report(f.base)
    assert rep["accepted"] == sent and rep["successes"] == sent and rep["redis"] == "unreachable"
    assert f.children() == pids
    redis_lines = [x for x in f.log_text().splitlines() if "redis:" in x]
    assert len(redis_lines) == 2, redis_lines
    # A lookup still hanging holds the stop up no longer than the shutdown
    # timeout, which the workers spend waiting for Redis to take their counts.
    stop_process(f.proc, timeout=15)
    assert "is unreachable: waiting, up to the shutdown timeout" in f.log_text()
    assert f.proc.returncode == 0


def stop_begins(f):
    """SIGTERM to an instance without waiting for it to exit."""
    f.proc.send_signal(signal.SIGTERM)


def exited(f):
    return f.proc.poll() is not None


STOP_WAIT_LINE = "is unreachable: waiting, up to the shutdown timeout"


def two_instances_then_an_outage(redis, mock, start_fcmd, a_workers, a_args=()):
    """Instances a and b with three sends each counted in Redis, then Redis
    stopped and four more sends to a, counted only locally."""
    a = start_fcmd(mock, workers=a_workers, args=["--redis", redis.url, *a_args])
    b = start_fcmd(mock, workers=1, args=["--redis", redis.url])
    with requests.Session() as s:
        for f in (a, b):
            for _ in range(3):
                assert send(f.base, 1, s) == 200
        settled(b.base, 6, lambda r: r["instances"] == 2)
        redis.stop()
        wait_until(every_worker_says(a, 503, a_workers), what="/readyz 503")
        for _ in range(4):
            assert send(a.base, 1, s) == 200
    return a, b


def test_instance_stopped_while_redis_is_down_waits_for_it(redis, mock, start_fcmd):
    """An instance stopped while Redis is down keeps its workers, within the
    shutdown timeout, until Redis is back and has taken what they counted
    during the outage: nothing is lost (contract: counters are added to Redis
    when it is back).  One line says it is waiting; none says counts stay out."""
    a, b = two_instances_then_an_outage(redis, mock, start_fcmd, 2)
    # ...and entries for the drain lists, which wait in a's shared memory.
    notreg = ["notreg-outage-0", "notreg-outage-1"]
    assert requests.post(a.url("/gcm/send"), json={"tokens": notreg + ["canon-outage-0"], "payload": {"k": "v"}},
                         timeout=5).status_code == 200
    wait_until(lambda: fleet_report(a.base)["pending"] == 0, what="instance a's targets finished")
    assert fleet_report(a.base)["accepted"] == 10
    stop_begins(a)
    wait_until(lambda: STOP_WAIT_LINE in a.log_text(), what="a's line that it waits for Redis")
    assert not exited(a), a.log_text()
    redis.start()
    wait_until(lambda: exited(a), timeout=15, what="a to exit once Redis is back")
    log = a.log_text()
    assert a.proc.returncode == 0, log
    assert log.count(STOP_WAIT_LINE) == 1, log
    assert "Redis has not confirmed" not in log, log
    # Everything a counted during the outage is in Redis, once, and so are its entries.
    port = ["-p", str(redis.port)]
    assert redis_cli(*port, "HGET", "fcmd:totals", "accepted") == "13"
    assert redis_cli(*port, "HGET", "fcmd:totals", "notregistered") == "2"
    assert redis_cli(*port, "HGET", "fcmd:totals", "canonicals") == "1"
    assert sorted(redis_cli(*port, "LRANGE", "fcmd:list:notregistered", "0", "-1").split()) == notreg
    assert redis_cli(*port, "LLEN", "fcmd:list:canonical") == "1"


def test_instance_stopped_while_redis_stays_down(redis, mock, start_fcmd):
    """When Redis is not back within the shutdown timeout, the instance stops
    at the timeout anyway (exit 0), and its last log line lists the counts
    that stay out of the fleet's totals (docs/FLEET.md); nothing is counted
    twice."""
    a, b = two_instances_then_an_outage(redis, mock, start_fcmd, 1, ("--shutdown-timeout", "2"))
    wait_until(lambda: fleet_report(a.base)["successes"] == 7, what="instance a's targets delivered")
    stop_begins(a)
    wait_until(lambda: exited(a), timeout=15, what="a to exit at its shutdown timeout")
    log = a.log_text()
    assert a.proc.returncode == 0, log
    assert STOP_WAIT_LINE in log, log
    assert "Redis has not confirmed" in log and "accepted 4" in log, log
    redis.start()
    assert send(b.base, 2) == 200
    # b's own counts arrive; a's four never do.
    settled(b.base, 8, lambda r: r["instances"] == 1)


def test_reload_then_stop_while_redis_is_down(redis, mock, start_fcmd):
    """A reload while Redis is down retires workers holding unconfirmed
    counts in their slots; a stop before Redis is back leaves no later
    worker to send them, so the stopping workers send them (and their own)
    once Redis returns within the shutdown timeout."""
    a = start_fcmd(mock, workers=1, args=["--redis", redis.url])
    b = start_fcmd(mock, workers=1, args=["--redis", redis.url])
    assert send(b.base, 1) == 200
    settled(b.base, 1, lambda r: r["instances"] == 2)
    redis.stop()
    wait_until(every_worker_says(a, 503, 1), what="/readyz 503")
    for _ in range(3):
        assert send(a.base, 1) == 200
    wait_until(lambda: fleet_report(a.base)["successes"] == 3, what="a's first targets delivered")
    old = a.children()
    a.proc.send_signal(signal.SIGHUP)
    wait_until(lambda: (lambda c: len(c) == 1 and c != old)(a.children()), what="the reload to replace a's worker")
    wait_until(every_worker_says(a, 503, 1), what="/readyz 503 from the new worker")
    for _ in range(2):
        assert send(a.base, 1) == 200
    wait_until(lambda: fleet_report(a.base, scope="local")["successes"] == 5, what="a's targets delivered")
    stop_begins(a)
    wait_until(lambda: STOP_WAIT_LINE in a.log_text(), what="a's line that it waits for Redis")
    redis.start()
    wait_until(lambda: exited(a), timeout=15, what="a to exit once Redis is back")
    log = a.log_text()
    assert a.proc.returncode == 0 and "Redis has not confirmed" not in log, log
    settled(b.base, 6, lambda r: r["instances"] == 1)


def test_redis_restarted_twice_under_traffic_through_the_balancer(redis, mock, start_fcmd, start_haproxy, traffic):
    """Redis (AOF) stopped and started twice under traffic: every send still
    answers 200, /readyz goes 503 and back to 200 by itself, the totals end
    up equal to what was sent, and each worker logs two lines per outage."""
    inst = [start_fcmd(mock, workers=1, args=["--redis", redis.url]) for _ in range(3)]
    lb = start_haproxy([f.port for f in inst])
    t = traffic(lb.base)
    for outage in range(2):
        t.wait_for(40, "traffic while Redis is up")
        redis.stop()
        for f in inst:
            wait_until(every_worker_says(f, 503, 1), what="/readyz 503 on every instance")
            assert fleet_report(f.base)["redis"] == "unreachable"
        t.wait_for(40, "traffic while Redis is down")
        redis.start()
        for f in inst:
            wait_until(every_worker_says(f, 200, 1), what="/readyz 200 again")
    t.wait_for(40, "traffic after the last outage")
    t.stop()
    assert t.errors == []
    settled(lb.base, t.sent, lambda r: r["instances"] == 3 and r["lost"] == 0)
    assert int(redis_cli("-p", str(redis.port), "HGET", "fcmd:totals", "accepted")) == t.sent
    for f in inst:
        log = f.log_text()
        assert log.count("redis: lost") == 2, log
        assert log.count("reachable again") == 2, log
        assert "cannot reach" not in log and "refused" not in log


def test_reload_while_redis_is_down_loses_no_count(redis, mock, start_fcmd):
    """Workers retired by a reload during an outage cannot flush before they
    go; the new workers run in other slots.  Once Redis is back, a live worker
    sends the retired slots' counts, once."""
    f = start_fcmd(mock, workers=2, args=["--redis", redis.url])
    s = requests.Session()
    for _ in range(5):
        assert send(f.base, 2, s) == 200
    settled(f.base, 10)
    redis.stop()
    wait_until(every_worker_says(f, 503, 2), what="/readyz 503")
    for _ in range(6):
        assert send(f.base, 1, s) == 200
    f.wait_idle()
    old = f.children()
    f.proc.send_signal(signal.SIGHUP)
    wait_until(lambda: len(f.children()) == 2 and not set(f.children()) & set(old), what="the new generation alone")
    assert send(f.base, 3, s) == 200
    s.close()
    redis.start()
    rep = settled(f.base, 19, answers=4)
    assert rep["lost"] == 0
    assert int(redis_cli("-p", str(redis.port), "HGET", "fcmd:totals", "accepted")) == 19
    # Settled once: later flushes add nothing.
    since = time.monotonic()
    for _ in range(3):
        assert later_report(f.base, since)["accepted"] == 19


NGINX_CONF = """# The nginx example of docs/FLEET.md, on the test's ports and paths.
worker_processes 1;
error_log {dir}/error.log warn;
pid {dir}/nginx.pid;
events {{
    worker_connections 512;
}}
http {{
    access_log off;
    client_body_temp_path {dir}/body;
    proxy_temp_path {dir}/proxy;
    fastcgi_temp_path {dir}/fastcgi;
    uwsgi_temp_path {dir}/uwsgi;
    scgi_temp_path {dir}/scgi;
    upstream fcmd {{
{servers}
        keepalive 32;
    }}
    server {{
        listen 127.0.0.1:{port};
        location / {{
            proxy_pass http://fcmd;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_next_upstream error timeout;
        }}
    }}
}}
"""


@pytest.fixture
def start_nginx(tmp_path):
    started = []

    def start(backends):
        d = tmp_path / "nginx"
        d.mkdir()
        port = free_port()
        servers = "\n".join(f"        server 127.0.0.1:{p} max_fails=1 fail_timeout=2s;" for p in backends)
        conf = d / "nginx.conf"
        conf.write_text(NGINX_CONF.format(dir=d, servers=servers, port=port))
        check = subprocess.run(["nginx", "-t", "-p", str(d), "-c", str(conf)], capture_output=True, text=True,
                               timeout=10)
        assert check.returncode == 0, check.stderr
        proc = subprocess.Popen(["nginx", "-p", str(d), "-c", str(conf), "-g", "daemon off;"],
                                stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        started.append(proc)
        base = f"http://127.0.0.1:{port}"
        wait_until(lambda: proc.poll() is None and http_ok(base + "/healthz"), what="nginx to forward /healthz")
        return base

    yield start
    for p in started:
        stop_process(p, signal.SIGQUIT)  # nginx's graceful stop
        p.stderr.close()


def test_reload_under_traffic_through_nginx(redis, mock, start_fcmd, start_nginx, traffic):
    """The same as through haproxy, with the nginx example: keep-alive
    connections to the instances, a reload of one, no client error."""
    inst = [start_fcmd(mock, workers=2, args=["--redis", redis.url]) for _ in range(3)]
    lb = start_nginx([f.port for f in inst])
    t = traffic(lb)
    t.wait_for(60, "traffic before the reload")
    old = inst[2].children()
    inst[2].proc.send_signal(signal.SIGHUP)
    wait_until(lambda: len(inst[2].children()) == 2 and not set(inst[2].children()) & set(old)
               and "previous one finishes" in inst[2].log_text(), timeout=30, what="the new workers, alone")
    local = fleet_report(inst[2].base, scope="local")["accepted"]
    wait_until(lambda: fleet_report(inst[2].base, scope="local")["accepted"] > local, what="the new workers serving")
    t.wait_for(60, "traffic after the reload")
    t.stop()
    assert t.errors == []
    settled(lb, t.sent, lambda r: r["instances"] == 3 and r["lost"] == 0)
    assert sum(fleet_report(f.base, scope="local")["accepted"] for f in inst) == t.sent


def redis_at(tmp_path, host, port):
    """redis-server bound to one loopback address (AOF on)."""
    d = tmp_path / f"redis-{host}"
    d.mkdir()
    proc = subprocess.Popen(["redis-server", "--port", str(port), "--bind", host, "--dir", str(d), "--save", "",
                             "--appendonly", "yes"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)

    def ping():
        try:
            with socket.create_connection((host, port), timeout=1) as s:
                s.sendall(b"PING\r\n")
                return s.recv(64).startswith(b"+PONG")
        except OSError:
            return False

    try:
        wait_until(ping, what=f"redis-server on {host}")
    except BaseException:
        stop_process(proc)
        raise
    return proc


def free_port_on(*hosts):
    """A port free on every one of hosts."""
    for _ in range(50):
        port = free_port()
        try:
            for h in hosts:
                with socket.socket() as s:
                    s.bind((h, port))
            return port
        except OSError:
            continue
    raise AssertionError("no port free on " + ", ".join(hosts))


def test_failover_by_dns_reaches_the_new_primary(tmp_path, mock, start_fcmd, monkeypatch):
    """A managed Redis' failover as fcmd sees it: the replica is promoted, the
    old primary is demoted (it answers READONLY) and the DNS name moves.  The
    workers drop the connection on READONLY, look the name up again, and count
    on the new primary; nothing replicated before the failover is lost."""
    assert os.path.exists(RESOLVE_LIB), f"build {RESOLVE_LIB} first (make integration does)"
    old_ip, new_ip = "127.0.0.2", "127.0.0.3"
    port = free_port_on(old_ip, new_ip)
    procs = []
    try:
        procs.append(redis_at(tmp_path, old_ip, port))
        procs.append(redis_at(tmp_path, new_ip, port))
        redis_cli("-h", new_ip, "-p", str(port), "REPLICAOF", old_ip, str(port))
        dns = tmp_path / "dns"
        dns.write_text(old_ip + "\n")
        monkeypatch.setenv("LD_PRELOAD", RESOLVE_LIB)
        monkeypatch.setenv("FCMD_TEST_RESOLVE_FILE", str(dns))
        monkeypatch.setenv("ASAN_OPTIONS", os.environ.get("ASAN_OPTIONS", "") + ":verify_asan_link_order=0")
        f = start_fcmd(mock, workers=2, args=["--redis", f"redis://redis.fleet.map.invalid:{port}"])
        s = requests.Session()
        for _ in range(5):
            assert send(f.base, 2, s) == 200
        settled(f.base, 10)
        wait_until(lambda: redis_cli("-h", new_ip, "-p", str(port), "HGET", "fcmd:totals", "accepted") == "10",
                   what="the replica to have the totals")
        # The failover, in Sentinel's order: promote, move the name, demote.
        redis_cli("-h", new_ip, "-p", str(port), "REPLICAOF", "NO", "ONE")
        dns.write_text(new_ip + "\n")
        redis_cli("-h", old_ip, "-p", str(port), "REPLICAOF", new_ip, str(port))
        for _ in range(5):
            assert send(f.base, 1, s) == 200
        s.close()
        settled(f.base, 15, answers=4)
        assert redis_cli("-h", new_ip, "-p", str(port), "HGET", "fcmd:totals", "accepted") == "15"
        # A worker whose flushes so far went to the demoted primary (which
        # replicates the new one's totals) meets READONLY at its next flush.
        wait_until(lambda: f.log_text().count("reachable again") == 2, what="both workers on the new primary")
        wait_until(every_worker_says(f, 200, 2), what="/readyz 200")
        log = f.log_text()
        assert log.count("reachable again") == 2, log
        assert "READONLY" in log, log
    finally:
        for p in procs:
            stop_process(p)


def send_one(base, session):
    r = session.post(base + "/gcm/send", data={"tokens": ["t"], "payload": '{"k": "v"}'}, timeout=5)
    assert r.status_code == 200, r.text
    return r.headers["x-fcmd-worker"]


def test_stop_settles_every_retired_slot_within_the_timeout(tmp_path, redis, mock, start_fcmd):
    """Eight workers count while Redis is down, a reload brings the instance
    to one worker (eight retired slots hold counts), Redis comes back and the
    instance is stopped at once.  Redis is up for the whole stop, so every
    count reaches it within --shutdown-timeout: the worker settles the
    retired slots one after another, not one a flush (a second each)."""
    conf = tmp_path / "review.conf"
    conf.write_text("[server]\nworkers = 8\n")
    a = start_fcmd(mock, workers=None, wait=False,
                   args=["--config", str(conf), "--redis", redis.url, "--shutdown-timeout", "4"])
    wait_until(a.healthy, what="fcmd to answer /healthz")
    wait_until(lambda: len(a.children()) == 8, what="8 children")
    # Eight workers on two cores share one listener: a busy one can lose
    # many accepts in a row, so reaching every one of them takes a while.
    wait_until(every_worker_says(a, 200, 8), timeout=60, what="/readyz 200")
    redis.stop()
    wait_until(every_worker_says(a, 503, 8), timeout=60, what="/readyz 503")
    seen, sent = set(), 0
    with requests.Session() as s:
        while len(seen) < 8 and sent < 2000:
            s.close()  # a new connection: another worker, perhaps
            seen.add(send_one(a.base, s))
            sent += 1
    assert len(seen) == 8, seen
    wait_until(lambda: fleet_report(a.base, scope="local")["successes"] == sent, what="every send delivered")
    old = set(a.children())
    conf.write_text("[server]\nworkers = 1\n")
    a.proc.send_signal(signal.SIGHUP)
    wait_until(lambda: (lambda c: len(c) == 1 and not set(c) & old)(a.children()), timeout=20,
               what="one new worker alone")
    redis.start()
    wait_until(lambda: "reachable again" in a.log_text(), timeout=15, what="the new worker reconnected")
    began = time.monotonic()
    a.proc.send_signal(signal.SIGTERM)
    a.proc.wait(30)
    took = time.monotonic() - began
    log = a.log_text()
    assert a.proc.returncode == 0, log
    assert "Redis has not confirmed" not in log, (took, log[-2000:])
    assert redis_cli("-p", str(redis.port), "HGET", "fcmd:totals", "accepted") == str(sent), (took, sent)


def test_worker_killed_during_the_stop_its_counts_still_reach_redis(redis, mock, start_fcmd):
    """A whole stop waiting for Redis; one of its workers is killed
    (SIGKILL) meanwhile.  The master restarts nothing, and once Redis is
    back the other worker sends the dead one's counts from its slot."""
    a = start_fcmd(mock, workers=2, args=["--redis", redis.url, "--shutdown-timeout", "20"])
    wait_until(every_worker_says(a, 200, 2), what="/readyz 200")
    redis.stop()
    wait_until(every_worker_says(a, 503, 2), what="/readyz 503")
    seen, sent = set(), 0
    with requests.Session() as s:
        while len(seen) < 2 and sent < 500:
            s.close()
            seen.add(send_one(a.base, s))
            sent += 1
    wait_until(lambda: fleet_report(a.base, scope="local")["successes"] == sent, what="every send delivered")
    kids = a.children()
    a.proc.send_signal(signal.SIGTERM)
    wait_until(lambda: "is unreachable: waiting" in a.log_text(), what="the line that it waits")
    os.kill(kids[0], signal.SIGKILL)
    wait_until(lambda: len(a.children()) == 1, what="the killed worker reaped, none restarted")
    redis.start()
    a.proc.wait(25)
    log = a.log_text()
    assert a.proc.returncode == 0, log
    assert "Redis has not confirmed" not in log, log
    assert log.count("is unreachable: waiting") == 1, log
    assert redis_cli("-p", str(redis.port), "HGET", "fcmd:totals", "accepted") == str(sent)
