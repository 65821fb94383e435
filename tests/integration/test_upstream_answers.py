"""What fcmd makes of upstream answers longer than it needs, and what it puts
on the wire when a connection fails under a request.

An answer is read up to a bound of its adapter's (legacy: what a full answer
for the job's tokens can hold; v1 and APNs: a few KiB); past it, the
transfer is stopped and the HTTP status decides, with the legacy results
the prefix holds.  A 2xx is delivered once, counted a success and not
retried, however much the server goes on sending; a 5xx is a 5xx.  And curl
never resends a request behind fcmd's back (a refused HTTP/2 stream, a
reused HTTP/1.1 connection that died): the report's attempts are the
requests the upstream received.

The mock's huge and endless answers come from tools/mock-upstream; the
broken HTTP/2 and HTTP/1.1 upstreams are written here, on Debian's
python3-h2 and plain sockets, and read fcmd's requests with Python's json."""

import json
import socket
import ssl
import threading

import h2.config
import h2.connection
import h2.errors
import h2.events
import h2.exceptions
import pytest
import requests

from apns_keys import KEY_ID, TEAM_ID, TOPIC, apns_args, make_p256
from conftest import accepted, wait_until, write_service_account

MIB = 1 << 20


def metric(f, name, **labels):
    text = requests.get(f.url("/metrics"), timeout=5).text
    want = name + ("{" + ",".join(f'{k}="{v}"' for k, v in labels.items()) + "}" if labels else "")
    for line in text.splitlines():
        if line.startswith(want + " "):
            return float(line.split()[-1])
    raise AssertionError(f"{want} not in /metrics")


def peak_rss_kib(pid):
    with open(f"/proc/{pid}/status") as fh:
        for line in fh:
            if line.startswith("VmHWM:"):
                return int(line.split()[1])
    raise AssertionError("no VmHWM")


def attempts_at_mock(mock, *tokens):
    toks = mock.stats()["tokens"]
    return {t: toks[t]["attempts"] if t in toks else 0 for t in tokens}


def still_serves(f, mock, token):
    """The worker answers and delivers a plain push after the long answers."""
    assert f.send_form([token], {"k": "v"}).status_code == 200
    wait_until(lambda: (mock.token(token) or {}).get("delivered") == 1, what=f"{token} delivered")


# ---- legacy (plain HTTP/1.1 to the mock) ----

def test_legacy_results_before_a_huge_tail_are_used(mock, start_fcmd):
    f = start_fcmd(mock=mock, workers=1, args=["--retries", "3"])
    tokens = ["hugeafter-1", "notreg-2", "canon-3", "unavail1-4"]
    assert accepted(f.send_json({"tokens": tokens, "payload": {"k": "v"}})) == 4
    r = f.wait_idle(timeout=20)
    assert mock.stats(summary=True)["huge_answers"] == 1  # the first answer was 5 MiB long
    # Every result lay before the padding: each target got its own outcome,
    # and only the Unavailable one went again.
    assert attempts_at_mock(mock, *tokens) == {"hugeafter-1": 1, "notreg-2": 1, "canon-3": 1, "unavail1-4": 2}
    assert r["successes"] == 3 and r["notregistered"] == 1 and r["canonicals"] == 1
    assert r["failures"] == 0 and r["retries"] == 1 and r["attempts"] == 5
    assert metric(f, "fcmd_upstream_errors_total") == 0
    assert requests.get(f.url("/gcm/report/canonical"), timeout=5).json()["canonical_replacements"] == [
        {"original": "canon-3", "canonical": "canonical-canon-3"}]


def test_legacy_200_whose_results_lie_past_the_bound_is_delivered(mock, start_fcmd):
    f = start_fcmd(mock=mock, workers=1)
    tokens = ["hugebefore-1", "notreg-2"]
    assert f.send_form(tokens, {"k": "v"}).text == "ok\n"
    r = f.wait_idle(timeout=20)
    # FCM said 200 and no result is within reach: success, never a resend.
    assert attempts_at_mock(mock, *tokens) == {"hugebefore-1": 1, "notreg-2": 1}
    assert r["successes"] == 2 and r["failures"] == 0 and r["retries"] == 0 and r["attempts"] == 2
    assert r["notregistered"] == 0
    assert metric(f, "fcmd_upstream_errors_total") == 0
    assert "answer over" in f.log_text()  # said once, with the bound
    still_serves(f, mock, "after-1")


def test_legacy_endless_200_is_read_to_the_bound_and_delivered(mock, start_fcmd):
    f = start_fcmd(mock=mock, workers=1)
    base = peak_rss_kib(f.children()[0])
    batches = [[f"endless-{i}", f"notreg-{i}"] for i in range(20)]
    for b in batches:
        assert f.send_form(b, {"k": "v"}).status_code == 200
    r = f.wait_idle(timeout=30)
    assert mock.stats(summary=True)["endless_answers"] == 20
    for b in batches:
        assert attempts_at_mock(mock, *b) == {b[0]: 1, b[1]: 1}
    assert r["successes"] == 20 and r["notregistered"] == 20 and r["failures"] == 0 and r["retries"] == 0
    assert r["attempts"] == 40
    assert metric(f, "fcmd_upstream_errors_total") == 0
    assert peak_rss_kib(f.children()[0]) - base < 16 * 1024  # a few KiB an answer, not MiBs
    still_serves(f, mock, "after-2")


def test_legacy_huge_503_is_retried_as_a_5xx(start_mock, start_fcmd):
    mock = start_mock("--retry-after", "0")
    f = start_fcmd(mock=mock, workers=1)
    assert f.send_form(["huge503once-1"], {"k": "v"}).status_code == 200
    r = f.wait_idle(timeout=20)
    assert mock.stats(summary=True)["huge_answers"] == 1
    assert attempts_at_mock(mock, "huge503once-1") == {"huge503once-1": 2}
    assert r["successes"] == 1 and r["retries"] == 1 and r["attempts"] == 2 and r["failures"] == 0
    assert metric(f, "fcmd_retries_total", reason="http_5xx") == 1
    assert metric(f, "fcmd_retries_total", reason="network") == 0
    assert metric(f, "fcmd_upstream_errors_total") == 0


# ---- FCM HTTP v1 (HTTP/2 over TLS) ----

@pytest.fixture
def v1(start_mock, start_fcmd, tls_cert, signing_key, tmp_path):
    cert, key = tls_cert
    private_pem, public = signing_key
    mock = start_mock("--tls-cert", str(cert), "--tls-key", str(key), "--oauth-public-key", str(public),
                      "--retry-after", "0", cafile=str(cert))
    sa = write_service_account(tmp_path / "sa.json", private_pem, f"https://localhost:{mock.port}/token")
    f = start_fcmd(workers=1, apikey=None, args=["--service-account", str(sa), "--fcm-url",
                                                 f"https://localhost:{mock.port}", "--ca-file", str(cert)])
    return mock, f


def test_v1_huge_and_endless_200s_are_one_success_each(v1):
    mock, f = v1
    wait_until(lambda: f.report()["oauth_tokens"] == 1, what="an access token")
    base = peak_rss_kib(f.children()[0])
    tokens = ["hugeok-1"] + [f"endless-{i}" for i in range(20)]
    assert f.send_form(tokens, {"k": "v"}).status_code == 200
    r = f.wait_idle(timeout=30)
    s = mock.stats(summary=True)
    assert s["huge_answers"] == 1 and s["endless_answers"] == 20
    assert set(attempts_at_mock(mock, *tokens).values()) == {1}
    assert r["successes"] == 21 and r["failures"] == 0 and r["retries"] == 0 and r["attempts"] == 21
    assert metric(f, "fcmd_upstream_errors_total") == 0
    assert peak_rss_kib(f.children()[0]) - base < 16 * 1024
    still_serves(f, mock, "after-1")


def test_v1_huge_503_is_retried_as_a_5xx(v1):
    mock, f = v1
    assert f.send_form(["huge503once-1"], {"k": "v"}).status_code == 200
    r = f.wait_idle(timeout=20)
    assert mock.stats(summary=True)["huge_answers"] == 1
    assert attempts_at_mock(mock, "huge503once-1") == {"huge503once-1": 2}
    assert r["successes"] == 1 and r["retries"] == 1 and r["attempts"] == 2 and r["failures"] == 0
    assert metric(f, "fcmd_retries_total", reason="http_5xx") == 1
    assert metric(f, "fcmd_upstream_errors_total") == 0


# ---- APNs (HTTP/2 over TLS) ----

def tok(prefix, i=0):
    """A 64-hex-digit device token with the mock's prefix."""
    return (prefix + f"{i:x}".rjust(8, "0")).ljust(64, "a")


@pytest.fixture(scope="module")
def apns_key(tmp_path_factory):
    return make_p256(tmp_path_factory.mktemp("apns"))


@pytest.fixture
def apns(start_mock, start_fcmd, tls_cert, apns_key):
    cert, tkey = tls_cert
    mock = start_mock("--tls-cert", str(cert), "--tls-key", str(tkey), "--apns-public-key", str(apns_key[1]),
                      "--apns-key-id", KEY_ID, "--apns-team-id", TEAM_ID, "--apns-topic", TOPIC,
                      "--retry-after", "0", cafile=str(cert))
    f = start_fcmd(gcm_url=mock.url("localhost"), workers=1,
                   args=["--ca-file", str(cert), *apns_args(apns_key[0], mock.base)])
    return mock, f


def apns_send(f, tokens):
    r = requests.post(f.url("/apns/send"), data={"tokens": tokens, "payload": json.dumps({"aps": {"alert": "x"}})},
                      timeout=5)
    assert r.status_code == 200


def test_apns_huge_and_endless_200s_are_one_success_each(apns):
    mock, f = apns
    base = peak_rss_kib(f.children()[0])
    tokens = [tok("b160", 1)] + [tok("b16e", i) for i in range(20)]
    apns_send(f, tokens)
    r = f.wait_idle(timeout=30)
    s = mock.stats(summary=True)
    assert s["huge_answers"] == 1 and s["endless_answers"] == 20
    assert set(attempts_at_mock(mock, *tokens).values()) == {1}
    assert r["successes"] == 21 and r["failures"] == 0 and r["retries"] == 0 and r["attempts"] == 21
    assert metric(f, "fcmd_upstream_errors_total") == 0
    assert peak_rss_kib(f.children()[0]) - base < 16 * 1024
    apns_send(f, [tok("ab", 1)])
    wait_until(lambda: (mock.token(tok("ab", 1)) or {}).get("delivered") == 1, what="a push after them")


def test_apns_huge_503_is_retried(apns):
    mock, f = apns
    apns_send(f, [tok("b163", 1)])
    r = f.wait_idle(timeout=20)
    assert mock.stats(summary=True)["huge_answers"] == 1
    assert attempts_at_mock(mock, tok("b163", 1)) == {tok("b163", 1): 2}
    assert r["successes"] == 1 and r["retries"] == 1 and r["attempts"] == 2 and r["failures"] == 0
    assert metric(f, "fcmd_retries_total", reason="unavailable") == 1  # Apple's 503 ServiceUnavailable
    assert metric(f, "fcmd_upstream_errors_total") == 0


# ---- what goes on the wire when a connection fails under a request ----

def legacy_answer(body):
    ids = json.loads(body)["registration_ids"]
    return json.dumps({"multicast_id": 1, "success": len(ids), "failure": 0, "canonical_ids": 0,
                       "results": [{"message_id": f"0:{i}"} for i in range(len(ids))]}).encode()


class BrokenUpstream:
    """A legacy upstream that fails requests in one way (mode), counting the
    requests it received:
      refuse   HTTP/2: every stream is reset with REFUSED_STREAM
      goaway   HTTP/2: every request gets a GOAWAY whose last stream id is below it
      h1drop   HTTP/1.1: the first request of a connection is answered; the
               next one is read whole, and the connection closed unanswered"""

    def __init__(self, mode, tls_cert=None):
        self.mode, self.requests, self.connections = mode, 0, 0
        self.lock = threading.Lock()
        self.ctx = None
        if mode != "h1drop":
            self.ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
            self.ctx.load_cert_chain(str(tls_cert[0]), str(tls_cert[1]))
            self.ctx.set_alpn_protocols(["h2"])
        self.listener = socket.socket()
        self.listener.bind(("127.0.0.1", 0))
        self.listener.listen(16)
        self.port = self.listener.getsockname()[1]
        self.conns = []
        threading.Thread(target=self._accept, daemon=True).start()

    def url(self):
        return f"{'http' if self.mode == 'h1drop' else 'https'}://localhost:{self.port}/fcm/send"

    def _count(self):
        with self.lock:
            self.requests += 1

    def _accept(self):
        while True:
            try:
                raw, _ = self.listener.accept()
            except OSError:
                return
            with self.lock:
                self.connections += 1
                self.conns.append(raw)
            threading.Thread(target=self._serve, args=(raw,), daemon=True).start()

    def _serve(self, raw):
        try:
            if self.mode == "h1drop":
                self._serve_h1(raw)
            else:
                self._serve_h2(self.ctx.wrap_socket(raw, server_side=True))
        except (OSError, ssl.SSLError, h2.exceptions.ProtocolError, ValueError):
            pass
        finally:
            raw.close()

    def _serve_h1(self, s):
        buf, answered = b"", 0
        while True:
            while b"\r\n\r\n" not in buf or len(buf.split(b"\r\n\r\n", 1)[1]) < self._length(buf):
                data = s.recv(65536)
                if not data:
                    return
                buf += data
            head, rest = buf.split(b"\r\n\r\n", 1)
            n = self._length(buf)
            body, buf = rest[:n], rest[n:]
            self._count()
            if answered:
                return  # read whole, never answered: the connection just closes
            answered += 1
            out = legacy_answer(body)
            s.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n%s"
                      % (len(out), out))

    @staticmethod
    def _length(buf):
        head = buf.split(b"\r\n\r\n", 1)[0]
        for line in head.split(b"\r\n")[1:]:
            name, _, value = line.partition(b":")
            if name.strip().lower() == b"content-length":
                return int(value)
        return 0

    def _serve_h2(self, s):
        c = h2.connection.H2Connection(h2.config.H2Configuration(client_side=False))
        c.initiate_connection()
        s.sendall(c.data_to_send())
        gone = False
        while True:
            data = s.recv(65536)
            if not data:
                return
            if gone:
                continue  # after our GOAWAY: read until the client closes
            for ev in c.receive_data(data):
                if isinstance(ev, h2.events.RequestReceived):
                    self._count()
                    if self.mode == "refuse":
                        c.reset_stream(ev.stream_id, error_code=h2.errors.ErrorCodes.REFUSED_STREAM)
                    else:
                        c.close_connection(error_code=0, last_stream_id=max(ev.stream_id - 2, 0))
                        gone = True
                        break
            s.sendall(c.data_to_send())

    def stop(self):
        self.listener.close()
        with self.lock:
            for c in self.conns:
                try:
                    c.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass


@pytest.fixture
def broken():
    servers = []

    def start(mode, tls_cert=None):
        s = BrokenUpstream(mode, tls_cert)
        servers.append(s)
        return s

    yield start
    for s in servers:
        s.stop()


@pytest.mark.parametrize("mode", ["refuse", "goaway"])
def test_h2_refused_or_goaway_requests_are_counted_as_sent(broken, start_fcmd, tls_cert, mode):
    up = broken(mode, tls_cert)
    f = start_fcmd(workers=1, gcm_url=up.url(), args=["--ca-file", str(tls_cert[0]), "--retries", "2"])
    assert f.send_form(["tok-1"], {"k": "v"}).status_code == 200
    r = f.wait_idle(timeout=30)
    # 1 + --retries requests, each one fcmd's own and counted; curl resent none.
    assert up.requests == r["attempts"] == 3
    assert r["failures"] == 1 and r["retries"] == 2 and r["successes"] == 0


def test_h1_reused_connection_that_dies_is_retried_by_fcmd_not_curl(broken, start_fcmd):
    up = broken("h1drop")
    f = start_fcmd(workers=1, gcm_url=up.url())
    assert f.send_form(["first-1"], {"k": "v"}).status_code == 200
    f.wait_idle()
    assert f.send_form(["second-1"], {"k": "v"}).status_code == 200  # on the kept-alive connection
    r = f.wait_idle(timeout=20)
    assert up.requests == r["attempts"] == 3
    assert r["successes"] == 2 and r["retries"] == 1 and r["failures"] == 0
