"""Redis as clouds run it: rediss:// (TLS, the server's certificate checked
against --redis-ca-file and the URL's host, SNI sent) and an ACL user that
may run only the commands docs/FLEET.md lists, against Debian's real
redis-server.  The checks read Redis through redis-cli, never through fcmd."""

import re
import socket
import ssl
import subprocess
import threading
from pathlib import Path

import pytest
import requests

from conftest import FCMD_BIN, free_port, stop_process, wait_until
from test_fleet import redis_unreachable, settled

ROOT = Path(__file__).resolve().parents[2]


def make_cert(d, name, sans):
    """A self-signed certificate (its own CA) for sans; (cert, key)."""
    cert, key = d / f"{name}.pem", d / f"{name}.key"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
                    "-nodes", "-days", "2", "-subj", f"/CN={name}", "-addext", f"subjectAltName={sans}",
                    "-keyout", str(key), "-out", str(cert)], check=True, capture_output=True, timeout=60)
    return cert, key


@pytest.fixture(scope="module")
def certs(tmp_path_factory):
    d = tmp_path_factory.mktemp("redis-tls")
    return {"good": make_cert(d, "localhost", "DNS:localhost,IP:127.0.0.1"),
            "other": make_cert(d, "redis.example", "DNS:redis.example")}


class TlsRedis:
    """redis-server listening with TLS only, on a free loopback port."""

    def __init__(self, tmp_path, cert, key, *args):
        self.port = free_port()
        self.cert = cert
        d = tmp_path / f"redis-{self.port}"
        d.mkdir()
        self.proc = subprocess.Popen(["redis-server", "--port", "0", "--tls-port", str(self.port), "--bind",
                                      "127.0.0.1", "--dir", str(d), "--save", "", "--tls-cert-file", str(cert),
                                      "--tls-key-file", str(key), "--tls-ca-cert-file", str(cert),
                                      "--tls-auth-clients", "no", *args],
                                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        wait_until(lambda: self.cli("PING", check=False) in ("PONG", "NOAUTH Authentication required."),
                   what="redis-server to answer PING over TLS")

    def cli(self, *args, user=None, check=True):
        auth = ["--user", user[0], "--pass", user[1]] if user else []
        out = subprocess.run(["redis-cli", "--tls", "--cacert", str(self.cert), "-h", "127.0.0.1", "-p",
                              str(self.port), "--no-auth-warning", *auth, *map(str, args)],
                             capture_output=True, text=True, timeout=10, check=check)
        return out.stdout.strip()

    def stop(self):
        stop_process(self.proc)


@pytest.fixture
def start_redis(tmp_path):
    started = []

    def start(*a):
        r = TlsRedis(tmp_path, *a)
        started.append(r)
        return r

    yield start
    for r in started:
        r.stop()


def test_rediss_carries_totals_and_the_queue(certs, start_redis, start_mock, start_fcmd):
    cert, key = certs["good"]
    r = start_redis(cert, key)
    mock = start_mock()
    url = f"rediss://localhost:{r.port}"
    inst = [start_fcmd(mock, workers=2, args=["--redis", url, "--redis-ca-file", str(cert), "--redis-queue"])
            for _ in range(2)]
    for f in inst:
        wait_until(lambda: redis_unreachable(f) == 0 and requests.get(f.url("/readyz"), timeout=2).status_code == 200,
                   what="every worker connected over TLS")
    sent = 0
    for i in range(20):
        # A 503 (Redis did not take the push within a second, on a loaded
        # machine) means not queued: sent again, as a client does.
        body = {"tokens": [f"t{i}-{j}" for j in range(3)], "payload": {"k": i}}
        assert wait_until(lambda: inst[i % 2].send_json(body).status_code == 200, interval=0.5,
                          what="the push taken")
        sent += 3
    settled(inst[0].base, sent, lambda rep: rep["instances"] == 2)
    tokens = mock.stats()["tokens"]
    assert sorted(tokens) == sorted(f"t{i}-{j}" for i in range(20) for j in range(3))
    # What fcmd wrote is in this Redis, read by another client: the queue
    # went through it (and is empty now), and the totals are there.
    assert r.cli("TYPE", "fcmd:queue") == "stream"
    assert int(r.cli("XLEN", "fcmd:queue")) == 0
    assert int(r.cli("DBSIZE")) > 1
    for f in inst:
        log = f.log_text()
        assert "redis: cannot reach" not in log and "redis: lost" not in log, log


@pytest.mark.parametrize("case", ["wrong name", "untrusted", "address not in the certificate"])
def test_a_certificate_that_does_not_match_is_refused(case, certs, start_redis, mock, start_fcmd):
    if case == "wrong name":  # signed by the CA fcmd trusts, for another host
        cert, key = certs["other"]
        r = start_redis(cert, key)
        args = ["--redis", f"rediss://localhost:{r.port}", "--redis-ca-file", str(cert)]
        reason = "hostname mismatch"
    elif case == "untrusted":  # fcmd checks against the system's store, which does not know it
        cert, key = certs["good"]
        r = start_redis(cert, key)
        args = ["--redis", f"rediss://localhost:{r.port}"]
        reason = "self-signed certificate"
    else:
        cert, key = certs["other"]
        r = start_redis(cert, key)
        args = ["--redis", f"rediss://127.0.0.1:{r.port}", "--redis-ca-file", str(cert)]
        reason = "ip address mismatch"
    f = start_fcmd(mock, workers=1, args=args)
    wait_until(lambda: reason in f.log_text().lower(), what=f"the refusal ({reason}) logged")
    assert redis_unreachable(f) == 1
    assert requests.get(f.url("/readyz"), timeout=5).status_code == 503
    # Nothing reached Redis: no key was written.
    assert r.cli("DBSIZE") == "0"
    # Sends still work (counted locally) and the outage is one line, not one per retry.
    assert f.send_json({"tokens": ["a"], "payload": {"k": 1}}).status_code == 200
    wait_until(lambda: f.log_text().count("TLS handshake") >= 1, what="the handshake's failure logged")
    assert f.log_text().count("redis: cannot reach") == 1


class SniRecorder:
    """A TLS server that notes the server name each ClientHello asks for."""

    def __init__(self, cert, key):
        self.names = []
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.load_cert_chain(str(cert), str(key))
        ctx.sni_callback = lambda sock, name, c: self.names.append(name)
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(8)
        self.sock.settimeout(0.2)
        self.port = self.sock.getsockname()[1]
        self.ctx = ctx
        self.done = threading.Event()
        self.thread = threading.Thread(target=self.serve, daemon=True)
        self.thread.start()

    def serve(self):
        while not self.done.is_set():
            try:
                c, _ = self.sock.accept()
            except OSError:
                continue
            try:
                c.settimeout(2)
                self.ctx.wrap_socket(c, server_side=True).close()
            except (OSError, ssl.SSLError):
                c.close()

    def stop(self):
        self.done.set()
        self.thread.join(5)
        self.sock.close()


@pytest.mark.parametrize("host,want", [("localhost", "localhost"), ("127.0.0.1", None)])
def test_sni_names_the_host_and_never_an_address(host, want, certs, mock, start_fcmd):
    cert, key = certs["good"]
    srv = SniRecorder(cert, key)
    try:
        start_fcmd(mock, workers=1, args=["--redis", f"rediss://{host}:{srv.port}", "--redis-ca-file", str(cert)])
        wait_until(lambda: srv.names, what="a ClientHello")
        assert srv.names[0] == want
    finally:
        srv.stop()


def fleet_acl():
    """The ACL line docs/FLEET.md gives for fcmd's own user."""
    text = (ROOT / "docs" / "FLEET.md").read_text()
    m = re.search(r"^user fcmd on (.*)$", text, re.M)
    assert m, "docs/FLEET.md gives no `user fcmd on ...` line"
    return m.group(1).replace(">PASSWORD", ">fcmd-secret")


def commands_in_source():
    """Every Redis command fcmd's code names: in its Lua scripts and as the
    first word of the commands it sends."""
    found = set()
    for p in (ROOT / "child").rglob("*.c"):
        src = p.read_text()
        found |= {c.lower() for c in re.findall(r"redis\.p?call\('([A-Za-z]+)'", src)}
        found |= {c.lower() for c in re.findall(r'"(EVALSHA|EVAL|SCRIPT|AUTH|SELECT|PING|X[A-Z]+)"', src)}
    return found


def test_the_documented_acl_names_every_command_fcmd_uses():
    acl = fleet_acl()
    allowed = {c.split("|")[0].lower() for c in re.findall(r"\+([A-Za-z|]+)", acl)}
    missing = commands_in_source() - allowed - {"auth"}  # AUTH needs no permission
    assert not missing, f"docs/FLEET.md's ACL line lacks {sorted(missing)}"
    assert "+@all" not in acl and "~*" not in acl.split()


def test_an_acl_user_with_only_the_documented_commands(tmp_path, certs, start_redis, start_mock, start_fcmd):
    cert, key = certs["good"]
    aclfile = tmp_path / "users.acl"
    aclfile.write_text(f"user default off\nuser admin on >admin-secret ~* &* +@all\nuser fcmd on {fleet_acl()}\n")
    r = start_redis(cert, key, "--aclfile", str(aclfile))
    admin = ("admin", "admin-secret")
    pw = tmp_path / "redis-password"
    pw.write_text("fcmd-secret\n")
    mock = start_mock()
    url = f"rediss://fcmd:@localhost:{r.port}"
    common = ["--redis", url, "--redis-ca-file", str(cert), "--redis-password-file", str(pw), "--redis-queue"]
    inst = [start_fcmd(mock, workers=2, args=common) for _ in range(2)]
    for f in inst:
        wait_until(lambda: redis_unreachable(f) == 0, what="every worker connected as fcmd")
    notreg = [f"notreg-acl-{i}" for i in range(4)]
    canon = [f"canon-acl-{i}" for i in range(3)]
    plain = [f"ok-acl-{i}" for i in range(5)]
    assert inst[0].send_json({"tokens": notreg + canon, "payload": {"k": 1}}).status_code == 200
    assert inst[1].send_json({"tokens": plain, "payload": {"k": 2}}).status_code == 200
    total = len(notreg) + len(canon) + len(plain)
    wait_until(lambda: (lambda rep: rep.get("scope") == "fleet" and rep["instances"] == 2 and rep["accepted"] == total
                        and rep["pending"] == 0 and rep["notregistered"] == len(notreg)
                        and rep["canonicals"] == len(canon))(requests.get(inst[1].url("/gcm/report"), timeout=5).json()),
               what="the fleet's totals, as the ACL user wrote them")
    # The drains, through either instance, as the ACL user.
    seen = set()

    def drain(f):
        got = requests.get(f.url("/gcm/report/notregistered"), timeout=5)
        assert got.status_code == 200, got.text
        seen.update(got.json()["tokens"] or [])
        return seen >= set(notreg)
    wait_until(lambda: drain(inst[1]) or drain(inst[0]), what="every notregistered token drained")
    assert seen == set(notreg)
    # Redis refused fcmd nothing.
    assert r.cli("ACL", "LOG", user=admin) == ""
    # A command outside the list is refused to that user: the list is what holds.
    out = r.cli("KEYS", "*", user=("fcmd", "fcmd-secret"), check=False)
    assert "NOPERM" in out
    for f in inst:
        assert "fcmd-secret" not in f.log_text()


def test_ca_file_without_tls_or_unreadable_stops_the_start(tmp_path, certs):
    cert, _ = certs["good"]
    junk = tmp_path / "junk.pem"
    junk.write_text("not a certificate\n")
    cases = [
        (["--redis", "redis://127.0.0.1:6379", "--redis-ca-file", str(cert)], "rediss://"),
        (["--redis", "rediss://127.0.0.1:6379", "--redis-ca-file", str(tmp_path / "none.pem")], "cannot read"),
        (["--redis", "rediss://127.0.0.1:6379", "--redis-ca-file", str(junk)], "no PEM certificate"),
        (["--redis-ca-file", str(cert)], "rediss://"),
    ]
    for args, want in cases:
        p = subprocess.run([FCMD_BIN, "--apikey", "k", "--check-config", *args], capture_output=True, text=True,
                           timeout=10)
        assert p.returncode == 2, (args, p.stderr)
        lines = p.stderr.strip().splitlines()
        assert len(lines) == 1 and want in lines[0] and "--redis-ca-file" in lines[0], (args, p.stderr)
    ok = subprocess.run([FCMD_BIN, "--apikey", "k", "--check-config", "--redis", "rediss://127.0.0.1:6379",
                         "--redis-ca-file", str(cert)], capture_output=True, text=True, timeout=10)
    assert ok.returncode == 0, ok.stderr


def test_a_server_without_tls_or_silent_is_an_outage(tmp_path, mock, start_fcmd):
    from test_fleet import Redis
    plain = Redis(tmp_path)
    silent = socket.socket()
    silent.bind(("127.0.0.1", 0))
    silent.listen(8)  # accepts (the kernel does) and never says a word
    try:
        a = start_fcmd(mock, workers=1, args=["--redis", f"rediss://127.0.0.1:{plain.port}"])
        b = start_fcmd(mock, workers=1, args=["--redis", f"rediss://127.0.0.1:{silent.getsockname()[1]}"])
        # A plain Redis reads the ClientHello as the start of a command and
        # waits for its end: the handshake's deadline ends it, or a reply
        # that is no TLS record.
        wait_until(lambda: "TLS handshake" in a.log_text() or "no answer within 3 s" in a.log_text(), timeout=15,
                   what="the plain server given up")
        wait_until(lambda: "no answer within 3 s" in b.log_text(), timeout=15, what="the silent server given up")
        for f in (a, b):
            assert redis_unreachable(f) == 1
            assert f.send_json({"tokens": ["x"], "payload": {"k": 1}}).status_code == 200
        # The plain Redis never saw a command: it has no key.
        out = subprocess.run(["redis-cli", "-p", str(plain.port), "DBSIZE"], capture_output=True, text=True,
                             timeout=10)
        assert out.stdout.strip() == "0"
    finally:
        silent.close()
        plain.stop()


def test_the_config_file_key(tmp_path, certs, start_redis, mock, start_fcmd):
    cert, key = certs["good"]
    r = start_redis(cert, key)
    conf = tmp_path / "fcmd.conf"
    conf.write_text(f"[redis]\nurl = rediss://localhost:{r.port}\nca_file = {cert}\n")
    f = start_fcmd(mock, workers=1, args=["--config", str(conf)])
    wait_until(lambda: redis_unreachable(f) == 0, what="connected with [redis] ca_file")
    assert f.send_json({"tokens": ["c1", "c2"], "payload": {"k": 1}}).status_code == 200
    settled(f.base, 2)


def test_a_ca_file_the_workers_user_cannot_read_stops_the_start(tmp_path, certs):
    """The workers read it as --user: a file only root can read would fail
    every worker's connect, so the start refuses it."""
    import os
    import tempfile
    cert, _ = certs["good"]
    if os.geteuid() != 0:
        pytest.fail("this test needs root: it checks --user nobody")
    private = tmp_path / "ca-private.pem"
    private.write_bytes(cert.read_bytes())
    private.chmod(0o600)
    p = subprocess.run([FCMD_BIN, "--apikey", "k", "--check-config", "--user", "nobody", "--redis",
                        "rediss://127.0.0.1:6379", "--redis-ca-file", str(private)], capture_output=True, text=True,
                       timeout=10)
    assert p.returncode == 2 and "cannot be read by user nobody" in p.stderr, p.stderr
    with tempfile.TemporaryDirectory(dir="/tmp") as d:
        os.chmod(d, 0o755)
        public = os.path.join(d, "ca.pem")
        with open(public, "wb") as out:
            out.write(cert.read_bytes())
        os.chmod(public, 0o644)
        ok = subprocess.run([FCMD_BIN, "--apikey", "k", "--check-config", "--user", "nobody", "--redis",
                             "rediss://127.0.0.1:6379", "--redis-ca-file", public], capture_output=True, text=True,
                            timeout=10)
        assert ok.returncode == 0, ok.stderr
