"""Operations: the config file and --check-config, SIGHUP reloads without a
refused connection, shutdown_timeout, systemd notifications, UNIX socket
handling, --user, and the files in conf/."""

import contextlib
import os
import pathlib
import re
import shutil
import signal
import socket
import stat
import subprocess
import tempfile
import threading
import time

import pytest
import requests

from conftest import API_KEY, FCMD_BIN, ROOT, free_port, http_ok, wait_until

CONF = os.path.join(ROOT, "conf")


def run_fcmd(*args, timeout=10):
    return subprocess.run([FCMD_BIN, *args], capture_output=True, text=True, timeout=timeout)


def write_conf(path, text):
    path.write_text(text)
    return path


# ---- the config file ----

def test_config_file_applies_and_flags_override(mock, start_fcmd, tmp_path):
    conf = write_conf(tmp_path / "fcmd.conf", f"""
[server]
workers = 1
[upstream]
apikey = {API_KEY}
gcm_url = {mock.url()}
[send]
retries = 0
""")
    f = start_fcmd(workers=2, apikey=None, args=["--config", str(conf)])  # --workers 2 wins over the file
    assert f.report()["workers"] == 2
    f.send_form(["unavail-once-only"], {})
    r = f.wait_idle()
    assert r["failures"] == 1 and r["retries"] == 0  # retries = 0 came from the file
    assert mock.token("unavail-once-only")["attempts"] == 1


@pytest.mark.parametrize("text,needle", [
    ("[server]\nport = 5601\nbogus = 1\n", ":3: unknown key \"bogus\" in [server]"),
    ("[server]\nport = seventy\n", ":2: [server] port: \"seventy\" is not a number"),
    ("[nowhere]\nport = 1\n", ":2: unknown key \"port\" in [nowhere]"),
    ("[server]\nthis line has no equals sign\n", ":2: not a \"key = value\" line"),
    ("[log]\nlevel = chatty\n", "--log-level"),
    ("[server]\nsocket_mode = rw\n", "--socket-mode"),
])
def test_config_errors_name_file_line_and_key(tmp_path, text, needle):
    conf = write_conf(tmp_path / "bad.conf", text)
    r = run_fcmd("--config", str(conf), "--apikey", "k", "--port", str(free_port()))
    assert r.returncode == 2
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and needle in lines[0], r.stderr
    if ":" in needle[:3]:
        assert str(conf) in lines[0]


def test_check_config(tmp_path):
    good = write_conf(tmp_path / "good.conf", "[upstream]\napikey = k\n[send]\nretries = 5\n")
    r = run_fcmd("--config", str(good), "--check-config")
    assert r.returncode == 0 and r.stdout == "ok\n"
    r = run_fcmd("--config", str(good), "--check-config", "--retries", "500")
    assert r.returncode == 2 and "--retries" in r.stderr
    missing_key = write_conf(tmp_path / "sa.conf", f"[upstream]\nservice_account = {tmp_path}/none.json\n")
    r = run_fcmd("--config", str(missing_key), "--check-config")
    assert r.returncode == 2 and "none.json" in r.stderr
    r = run_fcmd("--config", str(tmp_path / "absent.conf"), "--check-config")
    assert r.returncode == 2 and "cannot read" in r.stderr


def test_example_config_is_complete_and_valid():
    text = open(os.path.join(CONF, "fcmd.conf")).read()
    r = run_fcmd("--config", os.path.join(CONF, "fcmd.conf"), "--apikey", "k", "--check-config")
    assert r.returncode == 0 and r.stdout == "ok\n", r.stderr
    # Every flag but the ones that only make sense on a command line has its key in the example.
    flags = set(re.findall(r"^  --([a-z0-9-]+)", run_fcmd("--help").stdout, re.M))
    flags -= {"config", "check-config", "version", "help", "vapid-public-key"}
    for flag in flags:
        assert f"flag: --{flag}" in text, f"--{flag} is not in conf/fcmd.conf"


def test_help_names_every_option_of_the_readme():
    """The README's option table is what operators read; --help must name each of its flags."""
    readme = open(os.path.join(ROOT, "README.md")).read()
    flags = set(re.findall(r"^\| `--([a-z0-9-]+)", readme, re.M))
    assert len(flags) > 40
    shown = set(re.findall(r"--([a-z0-9-]+)", run_fcmd("--help").stdout))
    assert sorted(flags - shown) == []


# ---- reload ----

class Sender(threading.Thread):
    """Sends one token per fresh connection until told to stop (at most 60 s)."""

    def __init__(self, url):
        super().__init__(daemon=True)
        self.url, self.stop_at = url, time.monotonic() + 60
        self.accepted, self.errors, self.statuses = [], [], {}
        self.done = threading.Event()

    def run(self):
        i = 0
        while not self.done.is_set() and time.monotonic() < self.stop_at:
            tok = f"hup{i}"
            i += 1
            try:
                r = requests.post(self.url, data={"tokens": tok, "payload": "{}"},
                                  headers={"Connection": "close"}, timeout=5)
                self.statuses[r.status_code] = self.statuses.get(r.status_code, 0) + 1
                if r.status_code == 200:
                    self.accepted.append(tok)
            except requests.RequestException as e:
                self.errors.append(repr(e))


def generation_serving(f, n):
    return lambda: f"generation {n} serves" in f.log_text()


def test_sighup_three_times_under_load_refuses_nothing(mock, start_fcmd, tmp_path):
    conf = write_conf(tmp_path / "fcmd.conf", "[send]\nretries = 0\n")
    f = start_fcmd(mock, workers=2, args=["--config", str(conf)])
    sender = Sender(f.url("/gcm/send"))
    sender.start()
    wait_until(lambda: len(sender.accepted) > 20, what="the sender to get going")
    for n in (2, 3, 4):
        old = set(f.children())
        f.proc.send_signal(signal.SIGHUP)
        wait_until(generation_serving(f, n), what=f"generation {n}")
        wait_until(lambda: not (old & set(f.children())), timeout=15, what="the old generation to exit")
        wait_until(lambda: len(sender.accepted) > 20 * n, what="more sends after the reload")
    sender.done.set()
    sender.join(10)
    print(f"sent {len(sender.accepted)} over fresh connections across 3 reloads")
    assert sender.errors == [] and set(sender.statuses) == {200}
    r = f.wait_idle()
    assert r["accepted"] == len(sender.accepted) and r["successes"] == len(sender.accepted)
    toks = mock.stats()["tokens"]
    assert all(toks[t]["delivered"] >= 1 for t in sender.accepted)
    # New settings are in force: retries from 0 to 2.
    # The old generation may still accept a connection in the moment between
    # the master's signal and its workers closing their listeners, so the
    # probe goes out once they have exited.
    conf.write_text("[send]\nretries = 2\n")
    old = set(f.children())
    f.proc.send_signal(signal.SIGHUP)
    wait_until(generation_serving(f, 5), what="generation 5")
    wait_until(lambda: not (old & set(f.children())), timeout=15, what="generation 4 to exit")
    f.send_form(["unavail-after-reload"], {})
    f.wait_idle(timeout=20)
    assert mock.token("unavail-after-reload")["attempts"] == 3


def test_sighup_with_a_broken_config_keeps_serving(mock, start_fcmd, tmp_path):
    conf = write_conf(tmp_path / "fcmd.conf", "[send]\nretries = 1\n")
    f = start_fcmd(mock, workers=1, args=["--config", str(conf)])
    before = f.children()
    conf.write_text("[send]\nretries = lots\n")
    f.proc.send_signal(signal.SIGHUP)
    wait_until(lambda: "reload failed" in f.log_text(), what="the reload to fail")
    assert f"{conf}:2: [send] retries" in f.log_text()
    assert f.children() == before
    assert f.send_form(["still-here"], {}).status_code == 200
    assert f.wait_idle()["successes"] == 1


def test_reload_changes_the_worker_count(mock, start_fcmd, tmp_path):
    conf = write_conf(tmp_path / "fcmd.conf", "[server]\nworkers = 1\n")
    f = start_fcmd(mock, workers=None, args=["--config", str(conf)])
    f.send_form(["before"], {})
    f.wait_idle()
    conf.write_text("[server]\nworkers = 2\n")
    f.proc.send_signal(signal.SIGHUP)
    wait_until(generation_serving(f, 2), what="generation 2")
    wait_until(lambda: len(f.children()) == 2, what="two workers")
    r = f.report()
    assert r["workers"] == 2 and r["successes"] == 1  # counters carried over


def test_reload_moves_to_a_new_port_without_a_gap(mock, tmp_path):
    port1, port2 = free_port(), free_port()
    conf = write_conf(tmp_path / "fcmd.conf",
                      f"[server]\nhost = 127.0.0.1\nport = {port1}\nworkers = 1\n[upstream]\napikey = k\n"
                      f"gcm_url = {mock.url()}\n")
    log = tmp_path / "fcmd.log"
    proc = subprocess.Popen([FCMD_BIN, "--config", str(conf), "--logto", str(log)], start_new_session=True)
    try:
        wait_until(lambda: http_ok(f"http://127.0.0.1:{port1}/healthz"), what="the first port")
        conf.write_text(conf.read_text().replace(f"port = {port1}", f"port = {port2}"))
        proc.send_signal(signal.SIGHUP)
        wait_until(lambda: "generation 2 serves" in log.read_text(), what="generation 2")
        assert http_ok(f"http://127.0.0.1:{port2}/healthz")
        wait_until(lambda: not http_ok(f"http://127.0.0.1:{port1}/healthz"), what="the old port to close")
        assert requests.get(f"http://127.0.0.1:{port2}/gcm/report").json()["workers"] == 1
    finally:
        proc.terminate()
        proc.wait(30)
    assert proc.returncode == 0



@contextlib.contextmanager
def configured_fcmd(conf, cwd=None):
    """fcmd started with --config alone, so the log, pid file and address come
    from the file; always stopped afterwards."""
    proc = subprocess.Popen([FCMD_BIN, "--config", str(conf)], cwd=cwd, stderr=subprocess.DEVNULL,
                            start_new_session=True)
    try:
        yield proc
    finally:
        if proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(5)


def text_of(path):
    return path.read_text() if path.exists() else ""


def test_log_named_in_the_config_is_reopened_after_reloads(mock, tmp_path):
    # A reload frees the settings that named the log; the log must still be
    # reopened at its own path (it once went to a file named after freed memory).
    work = tmp_path / "cwd"
    work.mkdir()
    log, port = tmp_path / "fcmd.log", free_port()
    conf = write_conf(tmp_path / "fcmd.conf",
                      f"[server]\nhost = 127.0.0.1\nport = {port}\nworkers = 1\n[upstream]\napikey = k\n"
                      f"gcm_url = {mock.url()}\n[log]\nfile = {log}\n")
    with configured_fcmd(conf, cwd=work) as proc:
        wait_until(lambda: http_ok(f"http://127.0.0.1:{port}/healthz"), what="fcmd to start")
        for n in (2, 3):
            proc.send_signal(signal.SIGHUP)
            wait_until(lambda: f"generation {n} serves" in text_of(log), what=f"generation {n} in the log")
        before = text_of(log).count("log reopened")
        proc.send_signal(signal.SIGUSR1)
        wait_until(lambda: text_of(log).count("log reopened") > before, what="SIGUSR1's line in the log")
        assert os.listdir(work) == [], "the log was reopened somewhere else"



def test_reload_moves_the_log_and_the_pid_file(mock, tmp_path):
    log1, log2 = tmp_path / "one.log", tmp_path / "two.log"
    pid1, pid2 = tmp_path / "one.pid", tmp_path / "two.pid"
    port = free_port()
    base = (f"[server]\nhost = 127.0.0.1\nport = {port}\nworkers = 1\n[upstream]\napikey = k\n"
            f"gcm_url = {mock.url()}\n")
    conf = write_conf(tmp_path / "fcmd.conf", base + f"[server]\npidfile = {pid1}\n[log]\nfile = {log1}\n")
    with configured_fcmd(conf) as proc:
        wait_until(lambda: http_ok(f"http://127.0.0.1:{port}/healthz"), what="fcmd to start")
        assert int(pid1.read_text()) == proc.pid
        conf.write_text(base + f"[server]\npidfile = {pid2}\n[log]\nfile = {log2}\n")
        proc.send_signal(signal.SIGHUP)
        wait_until(lambda: "generation 2 serves" in text_of(log2), what="generation 2 in the new log")
        assert int(pid2.read_text()) == proc.pid and not pid1.exists()
        assert f"reload: opening the log at {log2}" in log1.read_text()
        new = log2.read_text()
        assert f"log reopened at {log2} (was {log1})" in new
        assert f"reload: pid file now {pid2} (was {pid1})" in new
        # The new generation's workers write there too.
        requests.post(f"http://127.0.0.1:{port}/gcm/send", data={"tokens": "mismatch-moved", "payload": "{}"},
                      timeout=5)
        wait_until(lambda: "targets failed" in text_of(log2), what="a worker line in the new log")
        # SIGUSR1 reopens the new path.
        os.rename(log2, tmp_path / "two.log.1")
        proc.send_signal(signal.SIGUSR1)
        wait_until(lambda: "log reopened" in text_of(log2), what="the new path reopened")
    assert proc.returncode == 0 and not pid2.exists()


def test_reload_that_cannot_move_the_log_changes_nothing(mock, tmp_path):
    log, pid1, pid2 = tmp_path / "fcmd.log", tmp_path / "one.pid", tmp_path / "two.pid"
    port = free_port()
    base = f"[server]\nhost = 127.0.0.1\nport = {port}\nworkers = 1\n[upstream]\napikey = k\ngcm_url = {mock.url()}\n"
    conf = write_conf(tmp_path / "fcmd.conf", base + f"[server]\npidfile = {pid1}\n[log]\nfile = {log}\n")
    with configured_fcmd(conf) as proc:
        wait_until(lambda: http_ok(f"http://127.0.0.1:{port}/healthz"), what="fcmd to start")
        conf.write_text(base + f"[server]\npidfile = {pid2}\n[log]\nfile = {tmp_path}/missing/fcmd.log\n")
        proc.send_signal(signal.SIGHUP)
        wait_until(lambda: "reload failed" in text_of(log), what="the reload to fail")
        assert "--logto: cannot open" in text_of(log)
        assert int(pid1.read_text()) == proc.pid and not pid2.exists()
        assert "generation 2" not in text_of(log)
        assert http_ok(f"http://127.0.0.1:{port}/healthz")


def test_reload_says_which_settings_need_a_restart(mock, start_fcmd, tmp_path):
    conf = write_conf(tmp_path / "fcmd.conf", "[server]\ndrain_list_bytes = 65536\n")
    f = start_fcmd(mock, workers=1, args=["--config", str(conf)])
    conf.write_text("[server]\ndrain_list_bytes = 131072\nuser = nobody\n")
    f.proc.send_signal(signal.SIGHUP)
    wait_until(generation_serving(f, 2), what="generation 2")
    log = f.log_text()
    assert "reload: drain_list_bytes is ignored until a restart; the drain lists keep 65536 bytes" in log
    assert "reload: user is ignored until a restart" in log



# ---- stopping ----

def test_shutdown_timeout_bounds_the_drain(start_mock, start_fcmd):
    mock = start_mock("--latency-ms", "8000")
    f = start_fcmd(mock, workers=1, args=["--shutdown-timeout", "1"])
    f.send_form(["slow-a", "slow-b"], {})
    t0 = time.monotonic()
    f.proc.send_signal(signal.SIGTERM)
    assert f.proc.wait(15) == 0
    assert time.monotonic() - t0 < 7  # well before the upstream would have answered
    log = f.log_text()
    assert "child stopping with 2 targets unfinished" in log
    assert "stopped; 2 targets were left unfinished" in log


def test_log_level_filters(mock, start_fcmd):
    f = start_fcmd(mock, workers=1, args=["--log-level", "warn"])
    f.send_form(["mismatch-lvl"], {})
    f.wait_idle()
    wait_until(lambda: "targets failed" in f.log_text(), what="the warning")
    assert " info " not in f.log_text()


# ---- systemd ----

def test_sd_notify_ready_reloading_stopping(mock, tmp_path):
    path = str(tmp_path / "notify.sock")
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(path)
    sock.settimeout(10)
    port = free_port()
    env = dict(os.environ, NOTIFY_SOCKET=path)
    proc = subprocess.Popen([FCMD_BIN, "--apikey", "k", "--host", "127.0.0.1", "--port", str(port), "--workers", "2",
                             "--gcm-url", mock.url(), "--logto", str(tmp_path / "log")], env=env,
                            start_new_session=True)
    try:
        def next_message():
            return sock.recv(4096).decode()
        first = next_message()
        assert first.startswith("READY=1")
        assert http_ok(f"http://127.0.0.1:{port}/healthz")  # ready means accepting
        proc.send_signal(signal.SIGHUP)
        assert next_message() == "RELOADING=1"
        assert next_message().startswith("READY=1")
        proc.send_signal(signal.SIGTERM)
        assert next_message() == "STOPPING=1"
        assert proc.wait(20) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
        sock.close()


def test_systemd_unit_verifies(tmp_path):
    tool = shutil.which("systemd-analyze")
    if tool is None:
        pytest.fail("systemd-analyze is required (Debian package systemd)")
    unit = tmp_path / "fcmd.service"
    unit.write_text(open(os.path.join(CONF, "fcmd.service")).read().replace("/usr/local/bin/fcmd", FCMD_BIN))
    r = subprocess.run([tool, "verify", str(unit)], capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    text = unit.read_text()
    for needle in ("Type=notify", "ExecReload=/bin/kill -HUP $MAINPID", "NoNewPrivileges=yes", "ProtectSystem=",
                   "PrivateTmp=yes"):
        assert needle in text


# ---- UNIX socket, pid file, user ----

def test_unix_socket_stale_file_and_mode(mock, start_fcmd, tmp_path):
    path = tmp_path / "fcmd.sock"
    stale = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    stale.bind(str(path))
    stale.close()  # a crash leaves the file behind, with nobody listening
    assert path.exists()
    f = start_fcmd(mock, unix=path, workers=1, args=["--socket-mode", "0600"])
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    f.stop()
    assert not path.exists()


def test_unix_socket_in_use_is_refused(mock, start_fcmd, tmp_path):
    path = tmp_path / "busy.sock"
    f = start_fcmd(mock, unix=path, workers=1)
    r = run_fcmd("--apikey", "k", "--unix", str(path))
    assert r.returncode == 2 and "cannot listen" in r.stderr
    assert f.healthy()  # the running server's socket was left alone


def test_user_drops_privileges(mock, start_fcmd, tmp_path):
    assert os.geteuid() == 0, "this test runs as root, as CI does"
    os.chmod(tmp_path, 0o755)
    f = start_fcmd(mock, workers=2, args=["--user", "nobody"])

    def uid(pid):
        with open(f"/proc/{pid}/status") as fh:
            return int(re.search(r"^Uid:\s+(\d+)", fh.read(), re.M).group(1))
    assert uid(f.proc.pid) == 65534
    assert all(uid(c) == 65534 for c in f.children())
    assert f.send_form(["as-nobody"], {}).status_code == 200
    assert f.wait_idle()["successes"] == 1


def test_unknown_user_exits_2():
    r = run_fcmd("--apikey", "k", "--user", "no-such-user-fcmd", "--port", str(free_port()))
    assert r.returncode == 2 and "no such user" in r.stderr


NOBODY = 65534


@pytest.fixture
def open_dir():
    """A directory every user can reach (pytest's own are root's alone), so a
    test can hand its subdirectories to nobody; removed afterwards."""
    d = tempfile.mkdtemp(prefix="fcmd-test-")
    os.chmod(d, 0o755)
    yield pathlib.Path(d)
    shutil.rmtree(d, ignore_errors=True)


def one_line_exit_2(r, *needles):
    lines = r.stderr.strip().splitlines()
    assert r.returncode == 2 and len(lines) == 1, (r.returncode, r.stdout, r.stderr)
    assert all(n in lines[0] for n in needles), lines[0]


def test_user_gets_a_spool_it_can_write(mock, start_fcmd, open_dir):
    spool = open_dir / "spool"
    f = start_fcmd(mock, workers=1, args=["--user", "nobody", "--spool", str(spool)])
    st = os.stat(spool)
    assert (st.st_uid, stat.S_IMODE(st.st_mode)) == (NOBODY, 0o750)
    r = f.send_form(["spooled-as-nobody"], {})
    assert r.status_code == 200, r.text
    assert f.wait_idle()["successes"] == 1


@pytest.mark.parametrize("check", [True, False], ids=["check-config", "start"])
def test_user_who_cannot_write_the_spool_exits_2(open_dir, check):
    spool = open_dir / "spool"
    spool.mkdir(mode=0o750)  # root's: nobody cannot write in it
    args = ["--check-config"] if check else ["--host", "127.0.0.1", "--port", str(free_port()), "--workers", "1"]
    r = run_fcmd("--apikey", "k", "--user", "nobody", "--spool", str(spool), *args)
    one_line_exit_2(r, "--spool", "nobody", str(spool))
    assert os.listdir(spool) == []  # the write check left nothing behind


@pytest.mark.parametrize("kind,needle", [
    ("symlink", "symbolic link"),
    ("0777", "writable by other users"),
    ("0770", "writable by other users"),
    ("1777", "writable by other users"),
    ("other-owner", "belongs to uid"),
])
@pytest.mark.parametrize("check", [True, False], ids=["check-config", "start"])
def test_spool_others_could_plant_files_in_is_refused(tmp_path, kind, needle, check):
    real = tmp_path / "real"
    real.mkdir(mode=0o750)
    spool = tmp_path / "spool"
    if kind == "symlink":
        spool.symlink_to(real)
    elif kind == "other-owner":
        spool.mkdir(mode=0o750)
        os.chown(spool, NOBODY, NOBODY)  # fcmd runs as root here, not as nobody
    else:
        spool.mkdir()
        os.chmod(spool, int(kind, 8))
    args = ["--check-config"] if check else ["--host", "127.0.0.1", "--port", str(free_port()), "--workers", "1"]
    r = run_fcmd("--apikey", "k", "--spool", str(spool), *args)
    one_line_exit_2(r, "--spool", str(spool), needle)


@pytest.mark.parametrize("sticky", [False, True], ids=["runtime-dir", "sticky-dir"])
def test_user_pid_file_is_removed_at_exit(mock, start_fcmd, open_dir, sticky):
    run = open_dir / "run"
    run.mkdir()
    if sticky:
        os.chmod(run, 0o1777)  # as /tmp: only a file's owner may remove it
    else:
        os.chown(run, NOBODY, NOBODY)  # as systemd's RuntimeDirectory= makes it
    pidfile = run / "fcmd.pid"
    f = start_fcmd(mock, workers=1, args=["--user", "nobody", "--pidfile", str(pidfile)])
    assert int(pidfile.read_text()) == f.proc.pid
    assert f.stop() == 0
    assert not pidfile.exists()
    assert "pid file" not in f.log_text()  # no warning that it could not be removed


@pytest.mark.parametrize("check", [True, False], ids=["check-config", "start"])
def test_user_who_could_not_remove_the_pid_file_exits_2(open_dir, check):
    pidfile = open_dir / "fcmd.pid"  # root's directory: nobody could not remove it at exit
    args = ["--check-config"] if check else ["--host", "127.0.0.1", "--port", str(free_port()), "--workers", "1"]
    r = run_fcmd("--apikey", "k", "--user", "nobody", "--pidfile", str(pidfile), *args)
    one_line_exit_2(r, "--pidfile", "nobody", str(open_dir))
    assert not pidfile.exists()


def test_logrotate_config_present():
    text = open(os.path.join(CONF, "fcmd.logrotate")).read()
    assert "SIGUSR1" in text and "/var/log/fcmd/" in text
