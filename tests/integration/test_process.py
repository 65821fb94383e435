"""The master: flags, start-up errors, children, signals, listen addresses,
and the upstream transport (HTTP/1.1, HTTP/2 over TLS)."""

import json
import os
import re
import signal
import socket
import subprocess
import time

import pytest
import requests

from conftest import API_KEY, FCMD_BIN, free_port, http_ok, wait_until, write_service_account


def run_fcmd(*args, timeout=10):
    return subprocess.run([FCMD_BIN, *args], capture_output=True, text=True, timeout=timeout)


def test_version_and_help():
    r = run_fcmd("--version")
    assert r.returncode == 0 and r.stdout.startswith("fcmd ")
    r = run_fcmd("-help")
    assert r.returncode == 0 and "--apikey" in r.stdout and "--ipaddress" in r.stdout


@pytest.mark.parametrize("args,needle", [
    ((), "no upstream credentials"),
    (("--apikey", "k", "--bogus"), "unknown option"),
    (("--apikey", "k", "--port", "notaport"), "--port"),
    (("--apikey", "k", "--workers", "0"), "--workers"),
    (("--apikey", "k", "--gcm-url", "ftp://x"), "--gcm-url"),
    (("--apikey", "k", "--ca-file", "/nonexistent/ca.pem"), "--ca-file"),
    (("--apikey", "k", "--host", "203.0.113.300"), "listen address"),
])
def test_bad_start_exits_2_with_one_line(args, needle):
    r = run_fcmd(*args, "--port", str(free_port())) if "--port" not in args else run_fcmd(*args)
    assert r.returncode == 2
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1, r.stderr
    assert needle in lines[0]


def test_unbindable_address_exits_2():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        port = s.getsockname()[1]
        r = run_fcmd("--apikey", "k", "--host", "127.0.0.1", "--port", str(port))
    assert r.returncode == 2
    assert "cannot listen" in r.stderr and len(r.stderr.strip().splitlines()) == 1


def test_api_key_never_printed_or_logged(mock, start_fcmd):
    f = start_fcmd(mock, apikey="super-secret-key-4242")
    f.send_form(["t"], {})
    f.wait_idle()
    assert "super-secret-key-4242" not in f.log_text()
    r = run_fcmd("--apikey", "super-secret-key-4242", "--bogus")
    assert "super-secret-key-4242" not in r.stderr


def test_single_dash_flags(mock, tmp_path):
    port = free_port()
    log = tmp_path / "single.log"
    proc = subprocess.Popen([FCMD_BIN, "-apikey", API_KEY, "-ipaddress", "127.0.0.1", "-port", str(port),
                             "-workers=1", "-gcm-url", mock.url(), "-logto", str(log), "-retries=1"])
    try:
        base = f"http://127.0.0.1:{port}"
        wait_until(lambda: http_ok(base + "/healthz"), what="fcmd with single-dash flags")
        assert requests.post(base + "/gcm/send", data={"tokens": "s1", "payload": "{}"}).text == "ok\n"
        wait_until(lambda: "s1" in mock.stats()["tokens"], what="delivery")
        assert requests.get(base + "/gcm/report").json()["workers"] == 1
    finally:
        proc.terminate()
        proc.wait(20)
    assert proc.returncode == 0



def test_sigkill_child_is_respawned_and_counters_survive(mock, start_fcmd):
    f = start_fcmd(mock, workers=2)
    for i in range(20):
        f.send_form([f"k{i}"], {})
    before = f.wait_idle()
    victim = f.children()[0]
    os.kill(victim, signal.SIGKILL)
    wait_until(lambda: victim not in f.children() and len(f.children()) == 2, what="a new child")
    after = f.report()
    for k in ("accepted", "attempts", "successes"):
        assert after[k] == before[k] == 20
    assert f.send_form(["after-kill"], {}).status_code == 200
    assert f.wait_idle()["successes"] == 21
    assert "killed by signal 9" in f.log_text()


def test_sigkill_with_pending_work_counts_it_lost(start_mock, start_fcmd):
    mock = start_mock("--latency-ms", "5000")
    f = start_fcmd(mock, workers=1)
    f.send_form(["slow1", "slow2"], {})
    assert f.report()["pending"] == 2
    victim = f.children()[0]
    os.kill(victim, signal.SIGKILL)
    wait_until(lambda: victim not in f.children() and len(f.children()) == 1, what="a new child")
    r = wait_until(lambda: (lambda r: r if r["pending"] == 0 else None)(f.report()), what="pending settled")
    assert r["lost"] == 2


def test_sigterm_finishes_pending_work_then_exits_0(start_mock, start_fcmd):
    mock = start_mock("--latency-ms", "700")
    f = start_fcmd(mock, workers=2)
    tokens = [f"drain{i}" for i in range(10)]
    for t in tokens:
        assert f.send_form([t], {}).status_code == 200
    f.proc.send_signal(signal.SIGTERM)
    assert f.proc.wait(30) == 0
    toks = mock.stats()["tokens"]
    assert all(toks[t]["delivered"] == 1 for t in tokens)
    assert "stopped" in f.log_text()


def test_unix_socket(mock, start_fcmd, tmp_path):
    path = tmp_path / "fcmd.sock"
    f = start_fcmd(mock, unix=path, workers=1)
    out = subprocess.run(["curl", "-s", "--unix-socket", str(path), "-d", "tokens=u1&payload={}",
                          "http://localhost/gcm/send"], capture_output=True, text=True, timeout=10)
    assert out.stdout == "ok\n"
    wait_until(lambda: "u1" in mock.stats()["tokens"], what="delivery via the UNIX socket")
    f.stop()
    assert not path.exists(), "the socket file is removed on exit"


def test_ipv6_listen(mock, start_fcmd):
    if not socket.has_ipv6:
        pytest.fail("IPv6 is required on the test machine")
    f = start_fcmd(mock, host="::1", workers=1)
    assert requests.post(f.url("/gcm/send"), data={"tokens": "v6", "payload": "{}"}).text == "ok\n"
    wait_until(lambda: "v6" in mock.stats()["tokens"], what="delivery via IPv6")


def test_pidfile(mock, start_fcmd, tmp_path):
    pidfile = tmp_path / "fcmd.pid"
    f = start_fcmd(mock, workers=1, args=["--pidfile", str(pidfile)])
    assert int(pidfile.read_text()) == f.proc.pid
    f.stop()
    assert not pidfile.exists()


def test_plain_http_upstream_speaks_http1(mock, start_fcmd):
    f = start_fcmd(mock, workers=1)
    f.send_form(["h1"], {})
    f.wait_idle()
    s = mock.stats(summary=True)
    assert s["requests"] == 1 and s["http2_requests"] == 0


def test_h2c_prior_knowledge_when_asked(mock, start_fcmd):
    # One request only: the mock's h2o 2.2.5 does not keep a prior-knowledge
    # h2c connection usable for curl's next stream (see docs/ARCHITECTURE.md).
    f = start_fcmd(mock, workers=1, args=["--http2-prior-knowledge"])
    f.send_form(["h2c"], {})
    assert f.wait_idle()["successes"] == 1
    s = mock.stats(summary=True)
    assert s["requests"] == 1 and s["http2_requests"] == 1


@pytest.fixture
def tls_cert(tmp_path):
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2", "-subj",
                    "/CN=localhost", "-addext", "subjectAltName=DNS:localhost,IP:127.0.0.1",
                    "-keyout", str(key), "-out", str(cert)], check=True, capture_output=True, timeout=60)
    return cert, key


def tls_mock_stats(mock, cert):
    """The TLS mock keeps its stats to itself over plain HTTP: read them with curl over TLS."""
    out = subprocess.run(["curl", "-s", "--cacert", str(cert), f"https://localhost:{mock.port}/stats?summary"],
                         capture_output=True, text=True, timeout=10)
    return json.loads(out.stdout)


def upstream_connections(f):
    metrics = requests.get(f.url("/metrics")).text
    return int(next(line.split()[1] for line in metrics.splitlines() if line.startswith("fcmd_upstream_connections ")))


def test_https_upstream_is_http2_multiplexed(start_mock, start_fcmd, tls_cert):
    cert, key = tls_cert
    mock = start_mock("--tls-cert", str(cert), "--tls-key", str(key), "--latency-ms", "300")
    f = start_fcmd(mock, workers=1, args=["--ca-file", str(cert)], gcm_url=mock.url("localhost"))
    for i in range(50):
        assert f.send_form([f"tls{i}"], {}).status_code == 200
    r = f.wait_idle()
    assert r["successes"] == 50, r
    s = tls_mock_stats(mock, cert)
    assert s["http2_requests"] == 50
    assert s["connections"] <= 5  # 50 concurrent requests share a few connections (+1 for this curl)
    # Idle connections stay open for the next sends (for --upstream-idle-timeout, 60 s), and count.
    assert 1 <= upstream_connections(f) <= 4


def test_idle_upstream_connections_are_closed_and_reopened(start_mock, start_fcmd, tls_cert):
    cert, key = tls_cert
    mock = start_mock("--tls-cert", str(cert), "--tls-key", str(key))
    f = start_fcmd(mock, workers=1, args=["--ca-file", str(cert), "--upstream-idle-timeout", "1"],
                   gcm_url=mock.url("localhost"))
    for n in (1, 2):
        assert f.send_form([f"idle{n}"], {}).status_code == 200
        assert f.wait_idle()["successes"] == n
        wait_until(lambda: upstream_connections(f) == 0, what="the idle upstream connection closed")
    # Each send found its connection closed and opened a new one (+1 for the stats request).
    s = tls_mock_stats(mock, cert)
    assert s["delivered"] == 2 and s["connections"] == 3


def test_https_upstream_without_trusted_ca_fails_cleanly(start_mock, start_fcmd, tls_cert):
    cert, key = tls_cert
    mock = start_mock("--tls-cert", str(cert), "--tls-key", str(key))
    f = start_fcmd(mock, workers=1, args=["--retries", "0"], gcm_url=mock.url("localhost"))
    f.send_form(["untrusted"], {})
    r = f.wait_idle()
    assert r["failures"] == 1 and r["successes"] == 0


def test_log_reopened_on_sigusr1_and_sighup(mock, start_fcmd):
    f = start_fcmd(mock, workers=1)
    for n, sig in enumerate((signal.SIGUSR1, signal.SIGHUP)):
        rotated = f.log.with_name(f.log.name + f".{n}")
        os.rename(f.log, rotated)
        f.proc.send_signal(sig)
        wait_until(lambda: f.log.exists() and "log reopened" in f.log.read_text(), what="the master's new log")
        # The worker reopens too: its next line lands in the new file.
        i = 0

        def worker_line():
            nonlocal i
            i += 1
            f.send_form([f"mismatch-{n}-{i}"], {})
            return "targets failed" in f.log.read_text()
        wait_until(worker_line, interval=0.1, what="a worker line in the new log")
        assert rotated.read_text().count("log reopened") == n  # only the previous rotation's line


def test_child_dying_young_is_restarted_with_growing_delay(mock, start_fcmd):
    f = start_fcmd(mock, workers=1)
    for _ in range(3):
        victim = f.children()[0]
        os.kill(victim, signal.SIGKILL)
        wait_until(lambda: [p for p in f.children() if p != victim], what="a restarted child")
    # A back-off: each quick death waits longer than the one before.
    delays = [int(d) for d in re.findall(r"keeps dying: next start in (\d+) ms", f.log_text())]
    assert len(delays) >= 2 and delays == sorted(delays) and delays[-1] > delays[0], delays
    assert f.healthy()


def test_ctrl_c_to_the_process_group_still_drains(start_mock, start_fcmd):
    # The terminal sends SIGINT to master and children at once; the children
    # must not take the master's relayed SIGTERM as a second, urgent signal.
    mock = start_mock("--latency-ms", "700")
    f = start_fcmd(mock, workers=2)
    tokens = [f"ctrlc{i}" for i in range(10)]
    for t in tokens:
        assert f.send_form([t], {}).status_code == 200
    os.killpg(f.proc.pid, signal.SIGINT)
    assert f.proc.wait(30) == 0
    toks = mock.stats()["tokens"]
    assert all(toks[t]["delivered"] == 1 for t in tokens)
    assert "stopping at once" not in f.log_text()


def test_make_install_honours_prefix_and_destdir(tmp_path):
    from conftest import ROOT
    r = subprocess.run(["make", "-s", "-C", ROOT, "install", f"DESTDIR={tmp_path}", "PREFIX=/opt/fcmd"],
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    installed = tmp_path / "opt" / "fcmd" / "bin" / "fcmd"
    assert os.access(installed, os.X_OK)
    assert subprocess.run([str(installed), "--version"], capture_output=True, text=True).stdout.startswith("fcmd ")
    # The man page, where man finds it under the prefix.
    page = tmp_path / "opt" / "fcmd" / "share" / "man" / "man8" / "fcmd.8"
    assert page.read_bytes() == open(os.path.join(ROOT, "docs", "fcmd.8"), "rb").read()
    r = subprocess.run(["man", "-w", "-M", str(tmp_path / "opt" / "fcmd" / "share" / "man"), "8", "fcmd"],
                       capture_output=True, text=True, timeout=30)
    assert r.stdout.strip() == str(page), r.stdout + r.stderr
    # The alert rules and the dashboard in the prefix's data (DATADIR), as shipped.
    for name in ("fcmd-alerts.yml", "grafana-fcmd.json"):
        data = tmp_path / "opt" / "fcmd" / "share" / "fcmd" / name
        assert data.read_bytes() == open(os.path.join(ROOT, "conf", name), "rb").read(), name
        assert data.stat().st_mode & 0o777 == 0o644, name


def test_url_credentials_never_printed_or_logged(mock, start_fcmd, tmp_path, signing_key):
    # Legacy: the start-up line names the upstream without its user and password.
    url = f"http://fcmuser:url-secret-7731@127.0.0.1:{mock.port}/fcm/send"
    f = start_fcmd(workers=1, gcm_url=url)
    wait_until(lambda: "legacy upstream" in f.log_text(), what="the start-up line")
    assert f"legacy upstream http://***@127.0.0.1:{mock.port}/fcm/send" in f.log_text()
    assert "url-secret-7731" not in f.log_text() and "fcmuser" not in f.log_text()
    # v1: the same for --fcm-url, and for the token endpoint named in the
    # service account, which a worker logs when a token request fails.
    sa = write_service_account(tmp_path / "sa.json", signing_key[0], "http://tokuser:tok-secret-5521@127.0.0.1:1/token")
    g = start_fcmd(workers=1, apikey=None, args=["--service-account", str(sa), "--fcm-url",
                                                  "https://fcmuser:url-secret-7731@fcm.example/base"])
    wait_until(lambda: "FCM v1 upstream" in g.log_text(), what="the start-up line")
    assert "FCM v1 upstream https://***@fcm.example/base, project" in g.log_text()
    assert "url-secret-7731" not in g.log_text() and "fcmuser" not in g.log_text()
    wait_until(lambda: "to http://***@127.0.0.1:1/token failed" in g.log_text(),
               what="the failed token request's line")
    assert "tok-secret-5521" not in g.log_text() and "tokuser" not in g.log_text()
    # A URL refused at start is named without them too.
    for flag in ("--gcm-url", "--fcm-url"):
        r = run_fcmd("--apikey", "k", flag, "ftp://fcmuser:url-secret-7731@fcm.example/x", "--check-config")
        assert r.returncode == 2 and flag in r.stderr and "ftp://***@fcm.example/x" in r.stderr
        assert "url-secret-7731" not in r.stderr and "fcmuser" not in r.stderr


def test_signals_during_a_childs_start_wait_for_its_handlers(mock, start_fcmd, tmp_path):
    """A reload and a log rotation close together: the master relays SIGUSR1
    to children still setting up, which once died of it (the default action)."""
    f = start_fcmd(mock, workers=2, args=["--access-log", str(tmp_path / "access.log")])
    for _ in range(10):
        before = set(f.children())
        os.kill(f.proc.pid, signal.SIGHUP)
        os.kill(f.proc.pid, signal.SIGUSR1)
        wait_until(lambda: len(f.children()) == 2 and not set(f.children()) & before, timeout=20,
                   what="the new generation alone")
    wait_until(f.healthy, what="fcmd to answer")
    assert "killed by signal" not in f.log_text(), f.log_text()
