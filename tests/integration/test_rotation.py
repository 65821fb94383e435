"""Log rotation with the real logrotate and the shipped conf/fcmd.logrotate:
the file is taken as shipped, only its paths moved into the test's directory,
so these tests exercise its patterns and its postrotate script."""

import os
import subprocess

import requests

from conftest import ROOT, wait_until

LOGROTATE = "/usr/sbin/logrotate"
SHIPPED = os.path.join(ROOT, "conf", "fcmd.logrotate")
SHIPPED_LOG_DIR = "/var/log/fcmd/"
SHIPPED_PIDFILE = "/run/fcmd/fcmd.pid"


def logrotate_conf(tmp_path, log_dir, pidfile):
    """The shipped file with its log directory and pid file moved."""
    text = open(SHIPPED).read()
    assert SHIPPED_LOG_DIR in text and SHIPPED_PIDFILE in text, "the shipped file names other paths"
    conf = tmp_path / "logrotate.conf"
    conf.write_text(text.replace(SHIPPED_LOG_DIR, f"{log_dir}/").replace(SHIPPED_PIDFILE, str(pidfile)))
    conf.chmod(0o644)  # logrotate refuses a config others may write
    return conf


def logrotate(tmp_path, conf):
    # A missing logrotate fails these tests: they are what shows that the
    # shipped file works, and make deps installs it (the Makefile's DEPS).
    assert os.path.exists(LOGROTATE), f"{LOGROTATE} is missing: make deps installs logrotate"
    return subprocess.run([LOGROTATE, "-f", "-s", str(tmp_path / "logrotate.state"), str(conf)],
                          capture_output=True, text=True, timeout=60)


def get_marked(f, marker):
    """GET /healthz with the marker as User-Agent (the access log records it);
    returns the worker that answered."""
    r = requests.get(f.url("/healthz"), headers={"User-Agent": marker}, timeout=5)
    assert r.status_code == 200
    return r.headers["x-fcmd-worker"]


def mark_every_worker(f, prefix, workers):
    """Sends marked requests until every worker has answered some; returns
    {worker: [markers it answered]}."""
    seen = {}
    for i in range(400):
        marker = f"{prefix}-{i}"
        seen.setdefault(get_marked(f, marker), []).append(marker)
        if len(seen) == workers:
            return seen
    raise AssertionError(f"only workers {sorted(seen)} answered 400 requests")


def read(path):
    return path.read_text() if path.exists() else ""


def test_logrotate_rotates_both_logs_and_every_process_reopens(mock, start_fcmd, tmp_path):
    access, pidfile = tmp_path / "access.log", tmp_path / "run" / "fcmd.pid"
    pidfile.parent.mkdir()
    f = start_fcmd(mock, workers=2, args=["--access-log", str(access), "--pidfile", str(pidfile)])
    before = mark_every_worker(f, "before-rotation", 2)
    wait_until(lambda: all(m in read(access) for ms in before.values() for m in ms), what="the access log")

    conf = logrotate_conf(tmp_path, tmp_path, pidfile)
    r = logrotate(tmp_path, conf)
    assert r.returncode == 0, f"logrotate failed ({r.returncode}): {r.stderr}"

    main_log = f.log
    access_old, main_old = tmp_path / "access.log.1", tmp_path / (main_log.name + ".1")
    assert all(m in read(access_old) for ms in before.values() for m in ms), "access.log was not rotated"
    assert "before-rotation" not in read(access), "access.log was copied, not renamed"
    assert main_old.exists(), "the fcmd log was not rotated"

    # The master reopens its log, then every worker says it reopened both of its.
    children = f.children()
    wait_until(lambda: all(f"[{pid}] access log reopened at {access}" in read(main_log) for pid in children),
               what="every worker to reopen its logs")
    assert "log reopened" in read(main_log)
    assert "log reopened" not in read(main_old)

    after = mark_every_worker(f, "after-rotation", 2)
    for worker, markers in after.items():
        wait_until(lambda: any(m in read(access) for m in markers),
                   what=f"worker {worker}'s requests in the new access.log")
    assert "after-rotation" not in read(access_old), "a worker still writes into access.log.1"
    f.send_form(["rotated"], {})
    f.wait_idle()
    assert "after-rotation" not in read(access_old)


def test_logrotate_fails_loudly_without_a_pid_file(tmp_path):
    (tmp_path / "fcmd.log").write_text("a line to rotate\n")
    pidfile = tmp_path / "run" / "fcmd.pid"  # no fcmd wrote it
    r = logrotate(tmp_path, logrotate_conf(tmp_path, tmp_path, pidfile))
    assert r.returncode != 0, "logrotate succeeded though no fcmd was told to reopen its logs"
    assert str(pidfile) in r.stderr, r.stderr


def test_logrotate_does_not_signal_a_stranger_through_a_stale_pid_file(tmp_path):
    (tmp_path / "fcmd.log").write_text("a line to rotate\n")
    stranger = subprocess.Popen(["sleep", "60"])  # SIGUSR1 would kill it
    try:
        pidfile = tmp_path / "fcmd.pid"
        pidfile.write_text(f"{stranger.pid}\n")
        r = logrotate(tmp_path, logrotate_conf(tmp_path, tmp_path, pidfile))
        assert r.returncode != 0 and "not fcmd" in r.stderr, r.stderr
        assert stranger.poll() is None, "the postrotate script signalled a process that is not fcmd"
    finally:
        stranger.kill()
        stranger.wait()
