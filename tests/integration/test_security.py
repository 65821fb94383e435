"""Access control (--auth-token per scope), TLS on the listener, and what
fcmd keeps from other users of the machine."""

import os
import subprocess

import pytest
import requests

from conftest import FCMD_BIN, free_port, http_ok, wait_until

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



def test_processes_holding_keys_are_not_dumpable(mock):
    # Started as an unprivileged user (as systemd's User= does), so nothing but
    # fcmd itself makes its processes non-dumpable.
    assert os.geteuid() == 0, "this test runs as root, as CI does"
    port = free_port()

    def become_nobody():
        os.setgroups([])
        os.setgid(65534)
        os.setuid(65534)
    proc = subprocess.Popen([FCMD_BIN, "--apikey", "k", "--host", "127.0.0.1", "--port", str(port), "--workers", "1",
                             "--gcm-url", mock.url()], preexec_fn=become_nobody, start_new_session=True,
                            stderr=subprocess.DEVNULL)
    try:
        wait_until(lambda: http_ok(f"http://127.0.0.1:{port}/healthz"), what="fcmd as nobody")
        with open(f"/proc/{proc.pid}/task/{proc.pid}/children") as fh:
            pids = [proc.pid] + [int(p) for p in fh.read().split()]
        for pid in pids:
            with open(f"/proc/{pid}/status") as fh:
                assert "\nUid:\t65534" in fh.read()
            # A dumpable process owns its /proc files; one that is not leaves them to root,
            # so another process of the same user cannot read its memory.
            assert os.stat(f"/proc/{pid}/mem").st_uid == 0
    finally:
        proc.terminate()
        proc.wait(20)



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
