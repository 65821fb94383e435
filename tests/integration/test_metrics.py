"""Observability: /metrics parsed by Prometheus's own parser against known
traffic, Graphite pushes to a loopback carbon (also after an outage),
/healthz during a drain, /readyz, and the access log."""

import json
import http.client
import os
import signal
import socket
import subprocess
import threading
import time

import pytest
import requests
from prometheus_client.parser import text_string_to_metric_families

from conftest import FCMD_BIN, free_port, wait_until, write_service_account


def scrape(f):
    resp = requests.get(f.url("/metrics"))
    assert resp.status_code == 200
    assert resp.headers["content-type"].startswith("text/plain; version=0.0.4")
    samples = {}
    for family in text_string_to_metric_families(resp.text):
        for s in family.samples:
            samples[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return samples


def value(samples, name, **labels):
    return samples[(name, tuple(sorted(labels.items())))]


def test_metrics_match_known_traffic(mock, start_fcmd):
    f = start_fcmd(mock, workers=2)
    assert f.send_form(["ok1", "ok2", "notreg-x", "mismatch-y", "unavail1-z"], {"k": 1}).status_code == 200
    assert f.send_form([], {}).status_code == 400
    assert requests.post(f.url("/gcm/send"), data="x", headers={"Content-Type": "text/plain"}).status_code == 400
    r = f.wait_idle()
    m = scrape(f)
    assert value(m, "fcmd_accepted_targets_total") == 5
    assert value(m, "fcmd_attempts_total") == r["attempts"] == 6
    assert value(m, "fcmd_successes_total") == 3
    assert value(m, "fcmd_notregistered_total") == 1
    assert value(m, "fcmd_failures_total", reason="message_rejected") == 1
    assert sum(v for (n, _), v in m.items() if n == "fcmd_failures_total") == r["failures"] == 1
    assert value(m, "fcmd_retries_total", reason="unavailable") == 1
    assert value(m, "fcmd_http_requests_total", endpoint="send", status="200") == 1
    assert value(m, "fcmd_http_requests_total", endpoint="send", status="400") == 2
    assert value(m, "fcmd_http_requests_total", endpoint="report", status="200") >= 1
    # Histograms: the batch and the retry went upstream; three requests came to /gcm/send.
    assert value(m, "fcmd_upstream_request_seconds_count") == 2
    assert value(m, "fcmd_upstream_request_seconds_bucket", le="+Inf") == 2
    buckets = sorted((float(dict(k)["le"]), v) for (n, k), v in m.items()
                     if n == "fcmd_upstream_request_seconds_bucket")
    assert all(a[1] <= b[1] for a, b in zip(buckets, buckets[1:]))
    assert value(m, "fcmd_send_handling_seconds_count") == 3
    assert value(m, "fcmd_send_handling_seconds_sum") > 0
    assert value(m, "fcmd_pending") == 0 and value(m, "fcmd_queue_depth") == 0
    assert value(m, "fcmd_upstream_inflight") == 0
    assert value(m, "fcmd_children") == 2 and value(m, "fcmd_workers") == 2
    version = subprocess.run([FCMD_BIN, "--version"], capture_output=True, text=True).stdout.split()[1]
    assert value(m, "fcmd_build_info", version=version, upstream="legacy") == 1


def test_gauges_show_work_in_flight(start_mock, start_fcmd):
    mock = start_mock("--latency-ms", "1500")
    f = start_fcmd(mock, workers=1, args=["--upstream-connections", "2"])
    f.send_json({"tokens": [f"g{i}" for i in range(10)], "payload": {}})
    m = wait_until(lambda: (lambda m: m if value(m, "fcmd_upstream_inflight") == 1 else None)(scrape(f)),
                   what="a request in flight")
    assert value(m, "fcmd_pending") == 10
    assert value(m, "fcmd_upstream_connections") >= 1
    f.wait_idle()
    assert value(scrape(f), "fcmd_upstream_inflight") == 0


def test_bounds_are_series_beside_what_they_bound(mock, start_fcmd, tmp_path):
    """The queue's bounds are each worker's, so /metrics shows them times the
    workers alive, as it sums their fill; the spool's bound is the
    instance's, shown once.  A worker killed and respawned changes neither."""
    f = start_fcmd(mock, workers=2, args=["--queue-size", "1000", "--queue-max-bytes", "1048576",
                                          "--spool", str(tmp_path / "spool"), "--spool-max-bytes", "4194304"])
    want = {"fcmd_queue_capacity": 2000, "fcmd_queue_max_bytes": 2 << 20, "fcmd_spool_max_bytes": 4 << 20,
            "fcmd_redis_unreachable": 0}

    def bounds():
        m = scrape(f)
        return {k: value(m, k) for k in want}
    wait_until(lambda: bounds() == want, what="both workers' bounds")  # the second may still be starting
    assert f.send_form(["ok1", "ok2"], {"k": 1}).status_code == 200
    f.wait_idle()
    before = f.children()
    os.kill(before[0], signal.SIGKILL)
    wait_until(lambda: len(f.children()) == 2 and before[0] not in f.children() and bounds() == want,
               what="the respawned worker's bounds")
    # Without a spool its bound is 0; the queue's defaults are 500000 targets and 256 MiB a worker.
    g = start_fcmd(mock, workers=1)
    wait_until(lambda: (lambda m: (value(m, "fcmd_queue_capacity"), value(m, "fcmd_queue_max_bytes"),
                                   value(m, "fcmd_spool_max_bytes")))(scrape(g)) == (500000, 256 << 20, 0),
               what="the default bounds")


class Carbon(threading.Thread):
    """A loopback carbon: accepts connections and collects the lines."""

    def __init__(self, port):
        super().__init__(daemon=True)
        self.sock = socket.socket()
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind(("127.0.0.1", port))
        self.sock.listen()
        self.sock.settimeout(0.2)
        self.lines, self.connections, self.running = [], 0, True
        self.start()

    def run(self):
        conns = []
        while self.running:
            try:
                c, _ = self.sock.accept()
                c.setblocking(False)
                conns.append([c, b""])
                self.connections += 1
            except socket.timeout:
                pass
            for entry in conns:
                try:
                    data = entry[0].recv(65536)
                except BlockingIOError:
                    continue
                entry[1] += data
                *done, entry[1] = entry[1].split(b"\n")
                self.lines += [d.decode() for d in done]
        for c, _ in conns:
            c.close()

    def stop(self):
        self.running = False
        self.join(5)
        self.sock.close()


def check_lines(lines, prefix):
    now = time.time()
    for line in lines:
        name, val, ts = line.split(" ")
        assert name.startswith(prefix + ".")
        float(val)
        assert abs(int(ts) - now) < 60


def test_graphite_push(mock, start_fcmd):
    port = free_port()
    carbon = Carbon(port)
    try:
        f = start_fcmd(mock, workers=2, args=["--graphite", f"127.0.0.1:{port}", "--graphite-interval", "1",
                                              "--graphite-prefix", "test.fcmd"])
        f.send_form(["gr1", "gr2"], {})
        f.wait_idle()
        wait_until(lambda: any(l.startswith("test.fcmd.successes 2 ") for l in carbon.lines),
                   what="the counters at carbon")
        check_lines(carbon.lines, "test.fcmd")
        names = {l.split(" ")[0] for l in carbon.lines}
        assert {"test.fcmd.attempts", "test.fcmd.failures", "test.fcmd.pending", "test.fcmd.canonicals",
                "test.fcmd.notregistered"} <= names
        assert carbon.connections == 1  # one child sends, not every child
    finally:
        carbon.stop()


def test_graphite_reconnects_after_carbon_was_down(mock, start_fcmd):
    port = free_port()
    f = start_fcmd(mock, workers=1, args=["--graphite", f"127.0.0.1:{port}", "--graphite-interval", "1"])
    wait_until(lambda: "graphite: connecting to" in f.log_text(), what="the failed connection to be logged")
    assert f.send_form(["while-down"], {}).status_code == 200  # requests are served all the while
    carbon = Carbon(port)
    try:
        wait_until(lambda: any(l.startswith("fcmd.successes 1 ") for l in carbon.lines), timeout=20,
                   what="lines once carbon is back")
        assert "connected to" in f.log_text()
    finally:
        carbon.stop()


def test_healthz_is_503_while_draining(start_mock, start_fcmd):
    mock = start_mock("--latency-ms", "3000")
    f = start_fcmd(mock, workers=1)
    conn = http.client.HTTPConnection("127.0.0.1", f.port, timeout=5)
    conn.request("GET", "/healthz")
    resp = conn.getresponse()
    assert resp.status == 200 and resp.read() == b"ok\n"
    f.send_form(["slow"], {})
    f.proc.send_signal(signal.SIGTERM)
    wait_until(lambda: "finish their pending work" in f.log_text(), what="the drain to begin")

    def draining():
        # The same kept-alive connection: the child answers once the master's SIGTERM reached it.
        conn.request("GET", "/healthz")
        resp = conn.getresponse()
        body = resp.read()
        assert resp.status in (200, 503)
        return (resp.status, body) if resp.status == 503 else None
    status, body = wait_until(draining, what="/healthz to say draining")
    assert json.loads(body) == {"error": "draining"}
    conn.close()
    assert f.proc.wait(20) == 0


def test_readyz(mock, start_mock, start_fcmd, signing_key, tmp_path):
    f = start_fcmd(mock, workers=1)
    assert requests.get(f.url("/readyz")).text == "ok\n"
    # A v1 server whose token endpoint is down is alive but not ready.
    down = start_mock("--oauth-public-key", str(signing_key[1]), "--oauth-fail", "1000")
    sa = write_service_account(tmp_path / "sa.json", signing_key[0], f"http://127.0.0.1:{down.port}/token")
    g = start_fcmd(workers=1, apikey=None, args=["--service-account", str(sa), "--fcm-url", down.base])
    assert requests.get(g.url("/healthz")).status_code == 200
    resp = requests.get(g.url("/readyz"))
    assert resp.status_code == 503 and "access token" in resp.text


def test_access_log(mock, start_fcmd, tmp_path):
    path = tmp_path / "access.log"
    f = start_fcmd(mock, workers=1, args=["--access-log", str(path)])
    f.send_form(["al"], {})
    requests.get(f.url("/nope"))
    def ours():
        lines = path.read_text().splitlines() if path.exists() else []
        lines = [l for l in lines if "/healthz" not in l]  # the fixture's start-up probes
        return lines if len(lines) >= 2 else None
    lines = wait_until(ours, what="two access-log lines")
    assert '"POST /gcm/send HTTP/1.1" 200 3' in lines[0]
    assert '"GET /nope HTTP/1.1" 404' in lines[1]
    assert lines[0].startswith("127.0.0.1 - - [")


def test_access_log_off_by_default(mock, start_fcmd, tmp_path):
    f = start_fcmd(mock, workers=1)
    f.send_form(["x"], {})
    assert not any(p.name.startswith("access") for p in tmp_path.iterdir())


def test_check_config_leaves_no_access_log_behind(tmp_path):
    path = tmp_path / "access.log"
    r = subprocess.run([FCMD_BIN, "--apikey", "k", "--access-log", str(path), "--check-config"],
                       capture_output=True, text=True, timeout=10)
    assert r.returncode == 0 and r.stdout == "ok\n", r.stderr
    assert not path.exists()
    # One that exists is checked for writing, and left as it was.
    path.write_text("old line\n")
    r = subprocess.run([FCMD_BIN, "--apikey", "k", "--access-log", str(path), "--check-config"],
                       capture_output=True, text=True, timeout=10)
    assert r.returncode == 0 and path.read_text() == "old line\n", r.stderr


@pytest.mark.parametrize("where", ["no-such-dir/access.log", "", "file/access.log"])
def test_check_config_refuses_an_access_log_it_could_not_write(tmp_path, where):
    (tmp_path / "file").write_text("")
    path = tmp_path / where if where else tmp_path  # "": a directory, not a file
    r = subprocess.run([FCMD_BIN, "--apikey", "k", "--access-log", str(path), "--check-config"],
                       capture_output=True, text=True, timeout=10)
    lines = r.stderr.strip().splitlines()
    assert r.returncode == 2 and len(lines) == 1 and "--access-log" in lines[0] and str(path) in lines[0], r.stderr
    assert not (tmp_path / "no-such-dir").exists()
