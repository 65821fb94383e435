"""A worker's clean stop frees what it made, so the asan build's leak check
(`make asan`, ASAN_OPTIONS detect_leaks=1) sees a worker's memory: every
libuv handle is closed and the loop closes, and an allocation a room forgets
to free is reported (tests/integration/fault_leak.c forgets one).  The last
two tests run in the asan build only."""

import os
import pathlib
import socket
import time

import pytest

from conftest import FCMD_BIN

RESOLVE_LIB = os.environ.get("RESOLVE_LIB",
                             os.path.join(os.path.dirname(FCMD_BIN), "build", "tests", "fault_resolve.so"))
LEAK_LIB = os.environ.get("LEAK_LIB", os.path.join(os.path.dirname(FCMD_BIN), "build", "tests", "fault_leak.so"))
LEAK_CHECKED = "detect_leaks=1" in os.environ.get("ASAN_OPTIONS", "")

# What the teardown says when a room left something behind.
LEFT_BEHIND = ("left open", "does not close", "h2o still has timers", "still waiting for an answer")


def serve_and_stop(f, mock, n=3):
    """Sends n pushes through the worker, waits for them, and stops fcmd cleanly."""
    for i in range(n):
        assert f.send_form([f"leak-{i}"], {"k": i}).status_code == 200
    f.wait_idle()
    assert f.stop() == 0
    for i in range(n):
        assert mock.token(f"leak-{i}") is not None


def test_a_clean_stop_closes_every_handle_and_the_loop(mock, start_fcmd, tmp_path):
    """With the spool, the sender, and a keep-alive HTTP connection still
    open when the stop comes (the client holds it)."""
    import requests
    f = start_fcmd(mock, workers=1, args=["--spool", str(tmp_path / "spool"), "--spool-fsync", "batch"])
    s = requests.Session()
    assert s.post(f.url("/gcm/send"), data={"tokens": ["held"], "payload": "{}"}, timeout=5).status_code == 200
    serve_and_stop(f, mock)
    s.close()
    log = f.log_text()
    for line in LEFT_BEHIND:
        assert line not in log, log
    assert "child stopping with" not in log, log


def test_a_worker_stopping_while_it_connects_to_redis_exits_cleanly(mock, start_fcmd):
    """Its connection to Redis is still connecting when the worker frees
    everything: libuv calls the connect back (cancelled) after the fleet is
    gone, and the callback must not touch it.  A listener whose backlog is
    full leaves the connect waiting for ever."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(0)
    filler = socket.create_connection(listener.getsockname(), timeout=5)  # the backlog's one place
    try:
        f = start_fcmd(mock, workers=1,
                       args=["--redis", "redis://127.0.0.1:%d" % listener.getsockname()[1], "--shutdown-timeout", "1"])
        started = time.monotonic()
        assert f.stop() == 0
        assert time.monotonic() - started < 10
    finally:
        filler.close()
        listener.close()
    log = f.log_text()
    assert "exited with status" not in log and "killed by signal" not in log, log
    for line in LEFT_BEHIND:
        assert line not in log, log


def test_a_worker_stopping_during_an_upstream_name_lookup_exits_at_once(mock, start_fcmd, monkeypatch):
    """A push whose transfer is still looking the upstream's name up when the
    worker gives up on it (--shutdown-timeout): taking the transfer off curl
    must not wait for the resolver (tests/integration/fault_resolve.c holds
    it for a minute), or the master would kill the worker."""
    assert os.path.exists(RESOLVE_LIB), f"build {RESOLVE_LIB} first (make integration does)"
    monkeypatch.setenv("LD_PRELOAD", RESOLVE_LIB)
    monkeypatch.setenv("FCMD_TEST_RESOLVE_MS", "60000")
    monkeypatch.setenv("ASAN_OPTIONS", os.environ.get("ASAN_OPTIONS", "") + ":verify_asan_link_order=0")
    f = start_fcmd(workers=1, gcm_url=f"http://upstream.slow.invalid:{mock.port}/fcm/send",
                   args=["--shutdown-timeout", "1"])
    assert f.send_form(["looked-up"], {}).status_code == 200
    started = time.monotonic()
    assert f.stop() == 0
    assert time.monotonic() - started < 5
    log = f.log_text()
    assert "child stopping with 1 targets unfinished" in log, log
    assert "killed by signal" not in log and "exited with status 0, 1 pending targets lost" in log, log


def lsan_env(tmp_path, preload=None):
    """The asan build's options, with the reports going to tmp_path/lsan.*."""
    env = dict(os.environ)
    env["ASAN_OPTIONS"] = os.environ.get("ASAN_OPTIONS", "") + f":log_path={tmp_path / 'lsan'}"
    if preload:
        env["LD_PRELOAD"] = preload
        env["ASAN_OPTIONS"] += ":verify_asan_link_order=0"
    return env


def reports(tmp_path):
    return [p.read_text() for p in pathlib.Path(tmp_path).glob("lsan.*")]


@pytest.mark.skipif(not LEAK_CHECKED, reason="leaks are checked in the asan build (make asan)")
def test_a_clean_stop_leaves_nothing_to_report(mock, start_fcmd, tmp_path):
    f = start_fcmd(mock, workers=2, env=lsan_env(tmp_path))
    serve_and_stop(f, mock)
    assert reports(tmp_path) == []


@pytest.mark.skipif(not LEAK_CHECKED, reason="leaks are checked in the asan build (make asan)")
def test_what_a_worker_forgets_to_free_is_reported(mock, start_fcmd, tmp_path):
    assert os.path.exists(LEAK_LIB), f"build {LEAK_LIB} first (make integration does)"
    f = start_fcmd(mock, workers=1, env=lsan_env(tmp_path, LEAK_LIB))
    serve_and_stop(f, mock)
    found = reports(tmp_path)
    assert len(found) == 1, found  # the worker's; the master makes no multi handle
    assert "LeakSanitizer: detected memory leaks" in found[0], found[0]
    # libcurl's frames carry no symbols; the sender's call into it does.
    assert "libcurl" in found[0] and "sender_create" in found[0], found[0]
