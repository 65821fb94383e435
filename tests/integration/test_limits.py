"""Limits, each a setting with a safe default: body size, tokens, payload
size, connections per child (and memory for them), slow clients, header
size, drain lists."""

import json
import os
import re
import signal
import socket
import ssl
import struct
import time

import pytest
import requests

from conftest import FCMD_BIN, http_ok, wait_until

ALLOC_LIB = os.environ.get("ALLOC_LIB", os.path.join(os.path.dirname(FCMD_BIN), "build", "tests", "fault_alloc.so"))


def test_body_tokens_and_payload_limits_are_settings(mock, start_fcmd):
    f = start_fcmd(mock, workers=1, args=["--max-body-bytes", "2048", "--max-tokens", "3",
                                          "--max-payload-bytes", "100"])
    r = f.send_form(["a", "b", "c", "d"], {})
    assert r.status_code == 400 and "at most 3" in r.json()["error"]
    r = f.send_form(["a"], {"k": "x" * 200})
    assert r.status_code == 400 and "100 bytes" in r.json()["error"]
    r = requests.post(f.url("/gcm/send"), data={"tokens": "a", "payload": "{}", "pad": "x" * 3000})
    assert r.status_code == 413 and "2048" in r.json()["error"]
    assert f.send_form(["a", "b", "c"], {"k": 1}).status_code == 200
    assert f.wait_idle()["accepted"] == 3


def test_connections_per_child_are_capped(mock, start_fcmd):
    f = start_fcmd(mock, workers=1, args=["--max-connections", "5", "--client-timeout", "30"])
    held = [socket.create_connection(("127.0.0.1", f.port)) for _ in range(5)]
    try:
        wait_until(lambda: _closed_at_once(f.port), what="a sixth connection to be closed at once")
    finally:
        for s in held:
            s.close()
    wait_until(lambda: http_ok(f.url("/healthz")), what="room again once the others closed")


def _closed_at_once(port):
    with socket.create_connection(("127.0.0.1", port)) as s:
        s.settimeout(2)
        try:
            s.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
            return s.recv(100) == b""
        except (ConnectionResetError, BrokenPipeError):
            return True


def _closed_by_server(s, timeout=5):
    """Whether the server closes s within timeout (False if it stays open)."""
    s.settimeout(timeout)
    try:
        return s.recv(100) == b""
    except ConnectionResetError:
        return True
    except socket.timeout:
        return False


def test_a_connection_without_memory_is_closed_and_the_next_served(mock, start_fcmd, tmp_path, monkeypatch):
    """A connection the worker finds no memory for is still accepted, and
    closed at once; the worker goes on accepting.  libuv stops watching a
    listener when its callback leaves a connection it accepted unclaimed, so
    one such connection used to leave the worker serving nobody, for good.
    tests/integration/fault_alloc.c fails the allocation that follows each
    accept (the connection's) while the flag file exists.  The worker is
    stopped while the clients connect, so that it finds them all waiting at
    once and must refuse several in one go."""
    assert os.path.exists(ALLOC_LIB), f"build {ALLOC_LIB} first (make integration does)"
    flag = tmp_path / "fail-alloc"
    monkeypatch.setenv("LD_PRELOAD", ALLOC_LIB)
    monkeypatch.setenv("FCMD_TEST_FAIL_ALLOC", str(flag))
    monkeypatch.setenv("ASAN_OPTIONS", os.environ.get("ASAN_OPTIONS", "") + ":verify_asan_link_order=0")
    f = start_fcmd(mock, workers=1)
    [worker] = f.children()
    flag.write_text("")
    refused = []
    os.kill(worker, signal.SIGSTOP)
    try:
        refused = [socket.create_connection(("127.0.0.1", f.port), timeout=5) for _ in range(4)]
    finally:
        os.kill(worker, signal.SIGCONT)
    try:
        for i, s in enumerate(refused):
            assert _closed_by_server(s), f"refused connection {i} was left open"
    finally:
        for s in refused:
            s.close()
    flag.unlink()
    wait_until(lambda: http_ok(f.url("/healthz")), timeout=5, what="the worker to accept again")
    assert f.send_form(["after-refusal"], {}).status_code == 200
    wait_until(lambda: "after-refusal" in mock.stats()["tokens"], what="the push after the refusals")
    assert f.log_text().count("no memory for a new connection") == len(refused)



def _tls_connection_in_use(port, cafile, alpn):
    """A TLS connection the worker has taken and now reads from: for h2 its
    SETTINGS arrived, for HTTP/1.1 a request was answered in full (the
    connection kept alive)."""
    ctx = ssl.create_default_context(cafile=str(cafile))
    ctx.set_alpn_protocols([alpn])
    s = ctx.wrap_socket(socket.create_connection(("127.0.0.1", port), timeout=5), server_hostname="localhost")
    got = b""
    if alpn == "h2":
        assert s.selected_alpn_protocol() == "h2"
        s.sendall(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n" + b"\0\0\0\x04\0\0\0\0\0")  # preface, empty SETTINGS
        while len(got) < 9 or got[3] != 4:  # the server's SETTINGS comes first
            data = s.recv(65536)
            assert data, "the worker closed the connection"
            got += data
    else:
        s.sendall(b"GET /healthz HTTP/1.1\r\nHost: localhost\r\n\r\n")
        while not got.endswith(b"\r\n\r\nok\n"):
            data = s.recv(65536)
            assert data, f"the worker closed the connection: {got!r}"
            got += data
    return s


def _reset(tls_socket):
    """Closes with an RST instead of a FIN, as a client that aborts does."""
    raw = socket.socket(fileno=tls_socket.detach())
    raw.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    raw.close()


@pytest.mark.parametrize("alpn", ["h2", "http/1.1"])
def test_a_tls_connection_the_client_resets_gives_its_slot_back(mock, start_fcmd, tls_cert, alpn):
    """A reset read by the worker fails the stream in libuv, which then
    refuses the TLS close_notify at once, without the callback h2o waits
    for: the connection, its descriptor and its slot were kept for good.
    With room for one connection, the next client must get in once the
    sweep (every second here) has handed h2o that failure."""
    cert, key = tls_cert
    f = start_fcmd(mock, workers=1, args=["--tls-cert", str(cert), "--tls-key", str(key), "--max-connections", "1",
                                          "--client-timeout", "30"], wait=False)
    url = f"https://localhost:{f.port}/healthz"
    wait_until(lambda: http_ok(url, verify=str(cert)), what="the TLS listener")
    s = wait_until(lambda: _try(lambda: _tls_connection_in_use(f.port, cert, alpn)), what="the one connection")
    try:
        assert not http_ok(url, verify=str(cert)), "the slot was not taken: the test proves nothing"
    finally:
        _reset(s)
    wait_until(lambda: http_ok(url, verify=str(cert)), timeout=10, what="the slot of the reset connection")


def _try(connect):
    """connect(), or None while the worker has no room yet (the last
    client's connection not yet freed)."""
    try:
        return connect()
    except (OSError, ssl.SSLError, AssertionError):
        return None


def test_slowloris_does_not_stop_others(mock, start_fcmd):
    f = start_fcmd(mock, workers=1, args=["--client-timeout", "1"])
    slow = []
    for _ in range(100):
        s = socket.create_connection(("127.0.0.1", f.port))
        s.sendall(b"POST /gcm/send HTTP/1.1\r\nHost: x\r\n")
        slow.append(s)
    try:
        deadline = time.monotonic() + 3
        served = 0
        while time.monotonic() < deadline:
            for s in slow:  # trickle: one header byte now and then
                try:
                    s.send(b"X")
                except OSError:
                    pass
            t0 = time.monotonic()
            r = requests.post(f.url("/gcm/send"), data={"tokens": f"ok{served}", "payload": "{}"}, timeout=5)
            assert r.status_code == 200 and time.monotonic() - t0 < 1.0
            served += 1
            time.sleep(0.2)
        assert served >= 5
        # The slow clients were cut off after the client timeout.
        closed = 0
        for s in slow:
            s.settimeout(3)
            try:
                closed += s.recv(4096) is not None  # data (an error answer) or b"" (closed)
            except (socket.timeout, OSError):
                pass
        assert closed == len(slow)
    finally:
        for s in slow:
            s.close()


def test_oversized_headers_are_refused_and_others_served(mock, start_fcmd):
    f = start_fcmd(mock, workers=1, args=["--max-header-bytes", "4096"])
    r = requests.get(f.url("/healthz"), headers={"X-Big": "a" * 5000})
    assert r.status_code == 431 and "headers" in r.json()["error"]
    assert requests.get(f.url("/healthz"), headers={"X-Fine": "a" * 3000}).status_code == 200
    assert http_ok(f.url("/healthz"))
    # Counted under its own status, which Prometheus can tell apart.
    text = requests.get(f.url("/metrics"), timeout=5).text
    assert re.search(r'^fcmd_http_requests_total\{endpoint="other",status="431"\} 1$', text, re.M), text
    assert 'status="other0"' not in text


def test_drain_list_capacity_counts_what_did_not_fit(mock, start_fcmd):
    f = start_fcmd(mock, workers=1, args=["--drain-list-bytes", "4096"])
    tokens = [f"notreg-{i:04d}-" + "p" * 30 for i in range(300)]
    assert f.send_json({"tokens": tokens, "payload": {}}).status_code == 200
    r = f.wait_idle()
    assert r["notregistered"] == 300
    got = requests.get(f.url("/gcm/report/notregistered")).json()["tokens"]
    assert 50 < len(got) < 300
    assert r["notregistered_dropped"] == 300 - len(got) and r["dropped"] == 300 - len(got)


def queue_bytes(f):
    text = requests.get(f.url("/metrics"), timeout=5).text
    return int(re.search(r"^fcmd_queue_bytes (\d+)$", text, re.M).group(1))


def test_queue_is_bounded_in_bytes(start_mock, start_fcmd):
    """One-token pushes with large payloads fill the queue's bytes long
    before its target count: 503 with Retry-After, and a request that could
    never fit an empty queue is a 413, not a 503 for ever."""
    mock = start_mock("--latency-ms", "3000")
    f = start_fcmd(mock, workers=1, args=["--queue-max-bytes", "200000", "--max-payload-bytes", "300000",
                                          "--max-body-bytes", "1000000", "--queue-size", "5"])
    big = {"k": "x" * 60000}
    codes = [f.send_form([f"big{i}"], big).status_code for i in range(5)]
    assert codes[:3] == [200, 200, 200] and codes[3:] == [503, 503], codes
    r = f.send_form(["late"], big)
    assert r.status_code == 503 and r.headers["retry-after"] and "queue full" in r.json()["error"]
    assert 180000 <= queue_bytes(f) <= 200000
    r = f.send_form(["huge"], {"k": "x" * 250000})
    assert r.status_code == 413 and "whole queue" in r.json()["error"]
    r = f.send_form([f"t{i}" for i in range(6)], {})
    assert r.status_code == 413 and "whole queue" in r.json()["error"]
    rep = f.wait_idle(timeout=30)
    assert rep["accepted"] == 3
    toks = mock.stats()["tokens"]
    assert sorted(t for t in toks) == ["big0", "big1", "big2"]


def test_replay_respects_the_queue_bound(start_mock, start_fcmd, tmp_path):
    """An adopted segment holding far more than the queue takes is fed to
    the queue as room frees up: every push delivered, the bytes bound kept."""
    from test_spool import push_record, all_delivered
    spool = tmp_path / "spool"
    spool.mkdir(mode=0o750)
    payload = json.dumps({"k": "y" * 20000}).encode()
    tokens = [f"replay{i}" for i in range(40)]
    (spool / "left.seg").write_bytes(b"".join(push_record(i + 1, [t], payload) for i, t in enumerate(tokens)))
    mock = start_mock("--latency-ms", "200")
    f = start_fcmd(mock, workers=1, args=["--spool", str(spool), "--queue-max-bytes", "65536"])
    peak = 0

    def done():
        nonlocal peak
        peak = max(peak, queue_bytes(f))
        return all_delivered(mock, tokens)()
    wait_until(done, timeout=60, interval=0.05, what="all 40 adopted pushes delivered")
    assert 0 < peak <= 65536
    assert f.wait_idle()["replayed"] == 40
