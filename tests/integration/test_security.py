"""Access control (--auth-token per scope), TLS on the listener, and what
fcmd keeps from other users of the machine."""

import os
import pathlib
import shutil
import signal
import subprocess
import tempfile

import pytest
import requests

from apns_keys import KEY_ID, TEAM_ID, make_p256
from conftest import FCMD_BIN, free_port, http_ok, stop_process, wait_until, write_service_account

TOKEN = "s3cret-operator-token-91"


def call(f, method, path, token=None, **kw):
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    return requests.request(method, f.url(path), headers=headers, timeout=5, **kw)


SEND = dict(data={"tokens": "auth1", "payload": "{}"})


@pytest.mark.parametrize("method,path,kw", [
    ("POST", "/gcm/send", SEND),
    ("GET", "/gcm/report", {}),
    ("GET", "/gcm/report/canonical", {}),
    ("GET", "/gcm/report/notregistered", {}),
    ("GET", "/metrics", {}),
])
def test_every_scope_needs_the_token(mock, start_fcmd, method, path, kw):
    f = start_fcmd(mock, workers=1, args=["--auth-token", TOKEN])
    for token in (None, "wrong-token", TOKEN[:-1] + "X", TOKEN + "X"):
        r = call(f, method, path, token, **kw)
        assert r.status_code == 401, (token, r.text)
        assert r.json()["error"] and r.headers["www-authenticate"] == "Bearer"
    r = call(f, method, path, TOKEN, **kw)
    assert r.status_code == 200
    # Health checks stay open for load balancers.
    assert call(f, "GET", "/healthz").status_code == 200
    assert call(f, "GET", "/readyz").status_code == 200
    assert TOKEN not in f.log_text()


def test_refused_send_queues_nothing(mock, start_fcmd):
    f = start_fcmd(mock, workers=1, args=["--auth-token", TOKEN])
    assert call(f, "POST", "/gcm/send", None, **SEND).status_code == 401
    assert call(f, "GET", "/gcm/report", TOKEN).json()["accepted"] == 0
    assert mock.stats(summary=True)["targets"] == 0


def test_scopes_leave_metrics_open(mock, start_fcmd, tmp_path):
    token_file = tmp_path / "token"
    token_file.write_text(TOKEN + "\n")
    f = start_fcmd(mock, workers=1, args=["--auth-token-file", str(token_file), "--auth-scopes", "send,report"])
    assert call(f, "GET", "/metrics").status_code == 200
    assert call(f, "GET", "/gcm/report/notregistered").status_code == 401
    assert call(f, "GET", "/gcm/report/notregistered", TOKEN).status_code == 200
    assert call(f, "POST", "/gcm/send", TOKEN, **SEND).status_code == 200


def test_readyz_tells_names_and_reasons_only_to_the_token(mock, start_fcmd):
    f = start_fcmd(mock, workers=1, args=["--auth-token", TOKEN])
    assert (call(f, "GET", "/readyz").status_code, call(f, "GET", "/readyz").text) == (200, "ok\n")
    for token in (None, "wrong-token"):
        for name in ("default", "nope"):  # whether an app exists is not told either
            r = call(f, "GET", f"/readyz?app={name}", token)
            assert r.status_code == 401 and r.headers["www-authenticate"] == "Bearer", r.text
            assert name not in r.text
    assert call(f, "GET", "/readyz?app=default", TOKEN).status_code == 200
    assert call(f, "GET", "/readyz?app=nope", TOKEN).status_code == 400
    # Without the report scope protected, /readyz tells anyone, as before.
    g = start_fcmd(mock, workers=1, args=["--auth-token", TOKEN, "--auth-scopes", "send"])
    assert call(g, "GET", "/readyz?app=default").status_code == 200
    assert call(g, "GET", "/readyz?app=nope").status_code == 400


def test_readyz_without_the_token_gives_no_reason(mock, start_fcmd):
    dead = f"redis://127.0.0.1:{free_port()}"
    f = start_fcmd(mock, workers=1, args=["--auth-token", TOKEN, "--redis", dead, "--shutdown-timeout", "1"])
    r = call(f, "GET", "/readyz", TOKEN)
    assert r.status_code == 503 and r.json() == {"error": "redis unreachable"}
    for token in (None, "wrong-token"):
        r = call(f, "GET", "/readyz", token)
        assert r.status_code == 503 and r.json() == {"error": "not ready"}, r.text


@pytest.mark.parametrize("args,needle", [
    (["--auth-scopes", "send,everything"], "--auth-scopes"),
    (["--auth-token", "a", "--auth-token-file", "/etc/hostname"], "give one"),
    (["--auth-token-file", "/nonexistent/token"], "--auth-token-file"),
    (["--tls-cert", "/nonexistent/cert.pem"], "go together"),
    (["--tls-cert", "/nonexistent/cert.pem", "--tls-key", "/nonexistent/key.pem"], "--tls-cert"),
])
def test_bad_access_settings_exit_2(args, needle):
    r = subprocess.run([FCMD_BIN, "--apikey", "k", "--port", str(free_port()), *args], capture_output=True,
                       text=True, timeout=10)
    assert r.returncode == 2 and needle in r.stderr


def test_tls_listener_with_http2(mock, start_fcmd, tls_cert):
    cert, key = tls_cert
    f = start_fcmd(mock, workers=1, args=["--tls-cert", str(cert), "--tls-key", str(key)], wait=False)
    url = f"https://localhost:{f.port}"
    wait_until(lambda: http_ok(url + "/healthz", verify=str(cert)), what="the TLS listener")
    out = subprocess.run(["curl", "-s", "--http2", "--cacert", str(cert), "-o", "/dev/null", "-w", "%{http_version}",
                          "-d", "tokens=tls1&payload={}", url + "/gcm/send"], capture_output=True, text=True,
                         timeout=10)
    assert out.stdout == "2"
    wait_until(lambda: "tls1" in mock.stats()["tokens"], what="delivery of a send over TLS")
    r = requests.post(url + "/gcm/send", data={"tokens": "tls2", "payload": "{}"}, verify=str(cert), timeout=5)
    assert r.text == "ok\n"  # HTTP/1.1 over TLS too
    with pytest.raises(requests.ConnectionError):
        requests.get(f"http://127.0.0.1:{f.port}/healthz", timeout=2)


# ---- dumpability (dumpable() says how it is seen from outside) ----

NOBODY = 65534
DUMP_LIB = os.environ.get("DUMP_LIB", os.path.join(os.path.dirname(FCMD_BIN), "build", "tests", "fault_dumpable.so"))


def become_nobody():
    os.setgroups([])
    os.setgid(NOBODY)
    os.setuid(NOBODY)


def dumpable(pid):
    """Whether pid is dumpable, seen from outside as root.

    A process that is not dumpable (prctl PR_SET_DUMPABLE 0) cannot be read
    through /proc/PID/mem or ptrace by other processes of its user, and leaves
    no core dump.  /proc/PID/status has no field for it, but the kernel gives
    the files of /proc/PID to the process's own user while it is dumpable and
    to root (0:0) while it is not (proc(5)), and works that out again at each
    lookup: the owner of /proc/PID/mem tells.

    That tells only for a process that is not root, and fcmd is not started
    with --user here: a process that changes its user ids, as --user does
    after reading the credentials as root, is made non-dumpable by the kernel
    itself (while fs.suid_dumpable is 0, the default), secrets or not, which
    would hide a master that forgot to.  So fcmd is started by a process that
    is nobody already, as systemd's User= starts it: it is dumpable until it
    says otherwise.  Its files are in a directory of nobody's (nobody_dir).
    """
    with open(f"/proc/{pid}/status") as fh:
        assert f"\nUid:\t{NOBODY}\t" in fh.read(), f"{pid} does not run as nobody"
    return os.stat(f"/proc/{pid}/mem").st_uid != 0


def children(pid):
    try:
        with open(f"/proc/{pid}/task/{pid}/children") as fh:
            return [int(p) for p in fh.read().split()]
    except FileNotFoundError:
        return []


@pytest.fixture
def nobody_dir():
    """A directory of nobody's own, under /tmp (pytest's are root's, mode 0700)."""
    d = pathlib.Path(tempfile.mkdtemp(prefix="fcmd-nobody-", dir="/tmp"))
    os.chown(d, NOBODY, NOBODY)
    yield d
    shutil.rmtree(d, ignore_errors=True)


def put(d, name, text):
    """A file of nobody's, mode 0600, in d."""
    path = d / name
    path.write_text(text)
    os.chmod(path, 0o600)
    os.chown(path, NOBODY, NOBODY)
    return path


def env_without_secrets(**kw):
    """This environment without FCMD_* (which may hold a secret), plus kw."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("FCMD_")}
    env.update(kw)
    return env


def keeping_dumpable(flag):
    """The environment of a master that stays dumpable while flag exists."""
    assert os.path.exists(DUMP_LIB), f"build {DUMP_LIB} first (make integration does)"
    # The sanitizer build wants its runtime first of all libraries, unless told otherwise.
    return env_without_secrets(LD_PRELOAD=DUMP_LIB, FCMD_TEST_KEEP_DUMPABLE=str(flag),
                               ASAN_OPTIONS=os.environ.get("ASAN_OPTIONS", "") + ":verify_asan_link_order=0")


class Nobody:
    """fcmd run by nobody, with --config d/fcmd.conf; always stopped."""

    def __init__(self, d, args=(), env=None, workers=1):
        self.port = free_port()
        self.log = d / "fcmd.log"
        cmd = [FCMD_BIN, "--logto", str(self.log), "--host", "127.0.0.1", "--port", str(self.port),
               "--workers", str(workers), *args]
        self.workers = workers
        self.proc = subprocess.Popen(cmd, preexec_fn=become_nobody, start_new_session=True, stdout=subprocess.DEVNULL,
                                     stderr=subprocess.PIPE, text=True, env=env)
        try:
            wait_until(self.serving, what="fcmd as nobody")
            wait_until(lambda: len(children(self.proc.pid)) == workers, what=f"{workers} workers")
        except BaseException:
            self.stop()
            raise

    def serving(self):
        if self.proc.poll() is not None:
            raise AssertionError(f"fcmd exited with {self.proc.returncode}: {self.proc.stderr.read()}")
        return http_ok(f"http://127.0.0.1:{self.port}/healthz")

    def pids(self):
        return [self.proc.pid] + children(self.proc.pid)

    def log_text(self):
        return self.log.read_text() if self.log.exists() else ""

    def reload(self):
        """SIGHUP, then waits until the new generation alone runs."""
        before = set(children(self.proc.pid))
        self.proc.send_signal(signal.SIGHUP)
        wait_until(lambda: "generation 2 serves" in self.log_text() or "reload failed" in self.log_text(),
                   what="the reload")
        assert "reload failed" not in self.log_text(), self.log_text()
        wait_until(lambda: (lambda now: len(now) == self.workers and not now & before)(set(children(self.proc.pid))),
                   what="the new generation alone")

    def stop(self):
        stop_process(self.proc)
        self.proc.stderr.close()


@pytest.fixture
def run_as_nobody(nobody_dir):
    servers = []

    def start(*a, **kw):
        n = Nobody(nobody_dir, *a, **kw)
        servers.append(n)
        return n

    yield start
    for n in servers:
        n.stop()


@pytest.fixture(scope="session")
def secret_material(tmp_path_factory, signing_key, tls_cert):
    """The texts of each kind of key file: a service account's RSA key, an
    APNs P-256 key, the listener's certificate and key."""
    d = tmp_path_factory.mktemp("secret-material")
    p8, _ = make_p256(d)
    cert, key = tls_cert
    return {"rsa": signing_key[0], "p8": p8.read_text(), "cert": cert.read_text(), "tls_key": key.read_text()}


def write_secret(kind, d, material):
    """Writes the files secret `kind` needs into d; returns its config lines."""
    if kind in ("apikey", "app_apikey"):
        key = put(d, "apikey", "legacy-key-for-dumpable-test\n")
        return ("[upstream]\n" if kind == "apikey" else "[app a]\n") + f"apikey_file = {key}\n"
    if kind in ("service_account", "app_service_account"):
        sa = d / "sa.json"
        write_service_account(sa, material["rsa"], "http://127.0.0.1:1/token")
        put(d, "sa.json", sa.read_text())
        return ("[upstream]\n" if kind == "service_account" else "[app a]\n") + f"service_account = {sa}\n"
    if kind in ("apns_key", "app_apns_key"):
        p8 = put(d, "AuthKey.p8", material["p8"])
        if kind == "apns_key":
            return f"[apns]\nkey = {p8}\nkey_id = {KEY_ID}\nteam_id = {TEAM_ID}\n"
        return f"[app a]\napns_key = {p8}\napns_key_id = {KEY_ID}\napns_team_id = {TEAM_ID}\n"
    if kind == "auth_token":
        return f"[server]\nauth_token_file = {put(d, 'token', TOKEN + chr(10))}\n"
    if kind == "tls_key":
        cert, key = put(d, "cert.pem", material["cert"]), put(d, "key.pem", material["tls_key"])
        return f"[server]\ntls_cert = {cert}\ntls_key = {key}\n"
    if kind == "redis_password":
        pw = put(d, "redis-password", "redis-pass-for-dumpable-test\n")
        return f"[redis]\nurl = redis://127.0.0.1:{free_port()}\npassword_file = {pw}\n"
    if kind == "url_password":
        return "[upstream]\ngcm_url = http://fcmd:url-pass-for-dumpable-test@127.0.0.1:1/fcm/send\n"
    raise ValueError(kind)


CREDENTIALS = ["apikey", "service_account", "apns_key", "app_apikey", "app_service_account", "app_apns_key"]
OTHER_SECRETS = ["auth_token", "tls_key", "redis_password", "url_password"]


def test_processes_holding_keys_are_not_dumpable(run_as_nobody, mock):
    n = run_as_nobody(["--apikey", "k", "--gcm-url", mock.url()])
    assert n.pids() and not any(dumpable(pid) for pid in n.pids())


@pytest.mark.parametrize("kind", CREDENTIALS)
def test_each_credential_alone_makes_the_processes_not_dumpable(run_as_nobody, nobody_dir, secret_material, kind):
    """fcmd does not start without an upstream credential; whichever it is,
    the default app's or only an [app NAME]'s, the master and its workers are
    not dumpable."""
    conf = put(nobody_dir, "fcmd.conf", write_secret(kind, nobody_dir, secret_material))
    n = run_as_nobody(["--config", str(conf)], env=env_without_secrets())
    pids = n.pids()
    assert len(pids) == 2 and not any(dumpable(pid) for pid in pids), {pid: dumpable(pid) for pid in pids}


@pytest.mark.parametrize("kind", CREDENTIALS + OTHER_SECRETS)
def test_a_reload_that_brings_a_secret_makes_the_processes_not_dumpable(run_as_nobody, nobody_dir, secret_material,
                                                                       kind):
    """A master dumpable before a reload (tests/integration/fault_dumpable.c
    keeps it so at start, as if it held no secret) is not after a reload whose
    settings hold a secret, whichever kind, alone; nor is the generation it
    forks.  Where the secret is not an upstream credential, the config's one
    app has a key file that is not there: a reload keeps such an app with no
    credential loaded (broken, its sends refused), so the secret is the only one
    the new settings hold."""
    flag = put(nobody_dir, "keep-dumpable", "")
    env = keeping_dumpable(flag)
    conf = put(nobody_dir, "fcmd.conf", write_secret("apikey", nobody_dir, secret_material))
    n = run_as_nobody(["--config", str(conf)], env=env)
    assert all(dumpable(pid) for pid in n.pids()), "the preloaded fault did not keep the master dumpable"
    flag.unlink()
    (nobody_dir / "apikey").unlink()
    text = write_secret(kind, nobody_dir, secret_material)
    if kind in OTHER_SECRETS:
        text += f"[app spare]\napikey_file = {nobody_dir}/no-such-key\n"
    put(nobody_dir, "fcmd.conf", text)
    n.reload()
    pids = n.pids()
    assert len(pids) == 2 and not any(dumpable(pid) for pid in pids), {pid: dumpable(pid) for pid in pids}


def test_a_reload_holding_no_secret_leaves_the_master_as_it_was(run_as_nobody, nobody_dir, secret_material):
    """The control of the test above: a reload to the broken app alone holds
    no secret and changes nothing, so there it is the secret that counts."""
    flag = put(nobody_dir, "keep-dumpable", "")
    env = keeping_dumpable(flag)
    conf = put(nobody_dir, "fcmd.conf", write_secret("apikey", nobody_dir, secret_material))
    n = run_as_nobody(["--config", str(conf)], env=env)
    flag.unlink()
    (nobody_dir / "apikey").unlink()
    put(nobody_dir, "fcmd.conf", f"[app spare]\napikey_file = {nobody_dir}/no-such-key\n")
    n.reload()
    pids = n.pids()
    assert len(pids) == 2 and all(dumpable(pid) for pid in pids), {pid: dumpable(pid) for pid in pids}


def test_a_long_auth_token_file_is_read_whole(mock, start_fcmd, tmp_path):
    token = "".join(chr(ord("a") + i % 26) for i in range(5000))
    token_file = tmp_path / "token"
    token_file.write_text(token + "\r\n")  # a CRLF file too
    f = start_fcmd(mock, workers=1, args=["--auth-token-file", str(token_file), "--max-header-bytes", "65536"])
    assert call(f, "GET", "/gcm/report", token[:1023]).status_code == 401
    assert call(f, "GET", "/gcm/report", token[:-1]).status_code == 401
    assert call(f, "GET", "/gcm/report", token).status_code == 200
    assert token[:64] not in f.log_text()


@pytest.mark.parametrize("length,ok", [(65536, True), (65537, False)])
def test_auth_token_file_is_bounded(tmp_path, length, ok):
    token_file = tmp_path / "token"
    token_file.write_text("t" * length + "\nsecond line\n")
    r = subprocess.run([FCMD_BIN, "--apikey", "k", "--auth-token-file", str(token_file), "--check-config",
                        "--max-header-bytes", "262144"], capture_output=True, text=True, timeout=10)
    if ok:
        assert r.returncode == 0 and r.stdout == "ok\n", r.stderr
    else:
        lines = r.stderr.strip().splitlines()
        assert r.returncode == 2 and len(lines) == 1, r.stderr
        assert "--auth-token-file" in lines[0] and "65536 bytes" in lines[0] and "ttt" not in lines[0]


@pytest.mark.parametrize("args,why", [
    (["--auth-token", "t" * 20000], "does not fit in --max-header-bytes"),
    (["--auth-token", "secret "], "begins or ends with a space"),
    (["--auth-token", "\tsecret"], "begins or ends with a space"),
])
def test_a_token_no_client_could_present_is_refused(args, why):
    r = subprocess.run([FCMD_BIN, "--apikey", "k", "--check-config", *args], capture_output=True, text=True,
                       timeout=10)
    assert r.returncode == 2 and why in r.stderr and "secret" not in r.stderr and "ttt" not in r.stderr, r.stderr
