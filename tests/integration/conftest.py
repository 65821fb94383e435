"""Shared fixtures: start the real fcmd and the real mock upstream on free
loopback ports, wait for them with deadlines, and always stop them."""

import json
import os
import select
import signal
import socket
import subprocess
import time

import pytest
import requests

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
FCMD_BIN = os.environ.get("FCMD_BIN", os.path.join(ROOT, "fcmd"))
MOCK_BIN = os.environ.get("MOCK_BIN", os.path.join(ROOT, "tools", "mock-upstream"))
API_KEY = "test-server-key-3f9a"


# make asan names a folder here: what a sanitizer printed on a server's
# stderr is kept there as a report, for make asan's check to find. gcc's
# UBSan (with ASan in the same build) prints its reports on stderr whatever
# log_path says, so a worker that died of one would otherwise leave no trace
# but a respawn.
SANITIZER_DIR = os.environ.get("FCMD_SANITIZER_DIR")
SANITIZER_MARKS = ("runtime error:", "ERROR: AddressSanitizer", "ERROR: LeakSanitizer",
                   "SUMMARY: UndefinedBehaviorSanitizer")


def keep_sanitizer_reports(stream, what):
    """Reads what stream holds without waiting (a worker may still hold the
    pipe open), and keeps it as a report when a sanitizer wrote in it."""
    if stream is None:
        return
    chunks, size = [], 0
    try:
        fd = stream.fileno()
        os.set_blocking(fd, False)
        while size < 1 << 20:
            chunk = os.read(fd, 65536)
            if not chunk:
                break
            chunks.append(chunk)
            size += len(chunk)
    except (BlockingIOError, OSError, ValueError):
        pass
    text = b"".join(chunks).decode("utf-8", "replace")
    if any(m in text for m in SANITIZER_MARKS):
        folder = SANITIZER_DIR or os.path.join(ROOT, "build-asan")
        os.makedirs(folder, exist_ok=True)
        with open(os.path.join(folder, f"report.stderr.{os.getpid()}.{what}"), "a") as f:
            f.write(text)


def free_port(family=socket.AF_INET, host="127.0.0.1"):
    with socket.socket(family, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return s.getsockname()[1]


def wait_until(pred, timeout=10.0, interval=0.02, what="condition"):
    """Polls pred() until it returns a truthy value or the deadline passes."""
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        last = pred()
        if last:
            return last
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout}s waiting for {what} (last: {last!r})")


def accepted(resp):
    """The count a JSON send's answer accepted, once the answer is exactly
    {"accepted": N, "id": ID} with the id its X-Fcmd-Id header carries."""
    body = resp.json()
    assert resp.status_code == 200 and set(body) == {"accepted", "id"}, (resp.status_code, body)
    assert body["id"] == resp.headers["X-Fcmd-Id"], (body, resp.headers)
    return body["accepted"]


def http_ok(url, **kw):
    """Whether GET url answers 200 (False when nothing answers)."""
    try:
        return requests.get(url, timeout=2, **kw).status_code == 200
    except requests.RequestException:
        return False


def stop_process(proc, sig=signal.SIGTERM, timeout=15.0):
    if proc.poll() is None:
        proc.send_signal(sig)
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)
    return proc.returncode


class Mock:
    def __init__(self, *args, cafile=None):
        self.cafile = cafile
        self.session = requests.Session()  # one connection for stats, so connection counts stay exact
        self.proc = subprocess.Popen([MOCK_BIN, "--port", "0", *args], stdout=subprocess.PIPE,
                                     stderr=subprocess.PIPE, text=True)
        ready, _, _ = select.select([self.proc.stdout], [], [], 10)
        line = self.proc.stdout.readline() if ready else ""
        if "listening on" not in line:
            self.stop()
            raise RuntimeError(f"mock-upstream did not start: {line!r} {self.proc.stderr.read()}")
        self.port = int(line.split()[3].rsplit(":", 1)[1])
        self.scheme = "https" if "(https)" in line else "http"
        self.base = (f"https://localhost:{self.port}" if self.scheme == "https"
                     else f"http://127.0.0.1:{self.port}")

    def url(self, host="127.0.0.1"):
        return f"{self.scheme}://{host}:{self.port}/fcm/send"

    def stats(self, summary=False):
        return self.session.get(self.base + "/stats" + ("?summary" if summary else ""), timeout=5,
                                verify=self.cafile or True).json()

    def token(self, t):
        return self.stats()["tokens"].get(t)

    def stop(self):
        self.session.close()
        stop_process(self.proc)
        for f in (self.proc.stdout, self.proc.stderr):
            if f:
                f.close()


class Fcmd:
    def __init__(self, tmp_path, mock=None, args=(), workers=2, apikey=API_KEY, unix=None, host="127.0.0.1",
                 wait=True, gcm_url=None, env=None):
        self.port = free_port()
        self.unix = unix
        self.log = tmp_path / f"fcmd-{self.port}.log"
        cmd = [FCMD_BIN, "--logto", str(self.log)]
        if workers is not None:  # None: leave it to the config file
            cmd += ["--workers", str(workers)]
        if apikey is not None:
            cmd += ["--apikey", apikey]
        if unix:
            cmd += ["--unix", str(unix)]
        else:
            cmd += ["--host", host, "--port", str(self.port)]
        if gcm_url or mock:
            cmd += ["--gcm-url", gcm_url or mock.url()]
        cmd += list(args)
        self.host = f"[{host}]" if ":" in host else host
        self.base = f"http://{self.host}:{self.port}"
        # A session of its own: signals meant for the test runner's group do not reach it.
        self.proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                     start_new_session=True, env=env)
        if wait:
            try:
                wait_until(self.healthy, what="fcmd to answer /healthz")
                wait_until(lambda: len(self.children()) == (workers or 1), what=f"{workers or 1} children")
            except BaseException:
                self.stop(timeout=2)  # never leave a half-started server behind
                raise

    def healthy(self):
        if self.proc.poll() is not None:
            raise AssertionError(f"fcmd exited with {self.proc.returncode}: {self.proc.stderr.read()}")
        if self.unix:
            r = subprocess.run(["curl", "-s", "--unix-socket", str(self.unix), "http://localhost/healthz"],
                               capture_output=True, text=True, timeout=5)
            return r.stdout == "ok\n"
        try:
            return requests.get(self.base + "/healthz", timeout=1).status_code == 200
        except requests.ConnectionError:
            return False

    def children(self):
        try:
            with open(f"/proc/{self.proc.pid}/task/{self.proc.pid}/children") as f:
                return [int(p) for p in f.read().split()]
        except FileNotFoundError:
            return []

    def url(self, path):
        return self.base + path

    def report(self):
        r = requests.get(self.url("/gcm/report"), timeout=5)
        assert r.status_code == 200
        return r.json()

    def send_form(self, tokens, payload, **kw):
        return requests.post(self.url("/gcm/send"), data={"tokens": tokens, "payload": json.dumps(payload)},
                             timeout=5, **kw)

    def send_json(self, body, **kw):
        return requests.post(self.url("/gcm/send"), json=body, timeout=5, **kw)

    def wait_idle(self, timeout=15.0):
        """Waits until every accepted target has finished."""
        return wait_until(lambda: (lambda r: r if r["pending"] == 0 else None)(self.report()), timeout,
                          what="pending to reach 0")

    def log_text(self):
        return self.log.read_text() if self.log.exists() else ""

    def stop(self, timeout=20.0):
        """SIGTERM (drain), then a second SIGTERM (stop at once), then SIGKILL."""
        children = self.children()
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.send_signal(signal.SIGTERM)
                try:
                    self.proc.wait(5)
                except subprocess.TimeoutExpired:
                    for pid in children + [self.proc.pid]:
                        try:
                            os.kill(pid, signal.SIGKILL)
                        except ProcessLookupError:
                            pass
                    self.proc.wait(5)
        rc = self.proc.returncode
        keep_sanitizer_reports(self.proc.stderr, f"fcmd-{self.port}")
        for f in (self.proc.stdout, self.proc.stderr):
            if f:
                f.close()
        return rc


@pytest.fixture
def start_mock():
    mocks = []

    def start(*args, **kw):
        m = Mock(*args, **kw)
        mocks.append(m)
        return m

    yield start
    for m in mocks:
        m.stop()


@pytest.fixture
def mock(start_mock):
    return start_mock()


@pytest.fixture
def start_fcmd(tmp_path):
    servers = []

    def start(*a, **kw):
        f = Fcmd(tmp_path, *a, **kw)
        servers.append(f)
        return f

    yield start
    for f in servers:
        f.stop()


@pytest.fixture(scope="session")
def tls_cert(tmp_path_factory):
    d = tmp_path_factory.mktemp("tls")
    cert, key = d / "cert.pem", d / "key.pem"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2", "-subj",
                    "/CN=localhost", "-addext", "subjectAltName=DNS:localhost,IP:127.0.0.1",
                    "-keyout", str(key), "-out", str(cert)], check=True, capture_output=True, timeout=60)
    return cert, key


@pytest.fixture(scope="session")
def signing_key(tmp_path_factory):
    """An RSA key pair for service accounts: (private PEM text, public key file)."""
    d = tmp_path_factory.mktemp("sa")
    priv, pub = d / "key.pem", d / "pub.pem"
    subprocess.run(["openssl", "genpkey", "-algorithm", "RSA", "-pkeyopt", "rsa_keygen_bits:2048", "-out", str(priv)],
                   check=True, capture_output=True, timeout=60)
    subprocess.run(["openssl", "pkey", "-in", str(priv), "-pubout", "-out", str(pub)], check=True,
                   capture_output=True, timeout=60)
    return priv.read_text(), pub


def write_service_account(path, private_pem, uri, project="demo-project", **override):
    doc = {"type": "service_account", "project_id": project, "private_key_id": "test-key-1",
           "private_key": private_pem, "client_email": f"fcmd@{project}.iam.gserviceaccount.com",
           "client_id": "1", "token_uri": uri}
    doc.update(override)
    for k, v in list(doc.items()):
        if v is None:
            del doc[k]
    path.write_text(json.dumps(doc))
    return path
