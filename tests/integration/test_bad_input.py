"""Every bad /gcm/send input of the contract gets a 4xx with a JSON reason,
and nothing is queued or counted."""

import json
import socket

import pytest
import requests

FORM = "application/x-www-form-urlencoded"

CASES = [
    ("no tokens", FORM, "payload=%7B%7D", 400),
    ("empty payload", FORM, "tokens=a&payload=", 400),
    ("missing payload", FORM, "tokens=a", 400),
    ("non-JSON payload", FORM, "tokens=a&payload=hello", 400),
    ("payload not an object", FORM, "tokens=a&payload=%5B1%2C2%5D", 400),
    ("token with a control character", FORM, "tokens=a%01b&payload=%7B%7D", 400),
    ("more than 10,000 tokens", FORM, "&".join(f"tokens=t{i}" for i in range(10001)) + "&payload=%7B%7D", 400),
    ("unknown content type", "text/plain", "tokens=a&payload=%7B%7D", 400),
    ("no content type", None, "tokens=a&payload=%7B%7D", 400),
    ("JSON not an object", "application/json", "[1]", 400),
    ("JSON broken", "application/json", '{"tokens": ["a"], "payload": {', 400),
    ("JSON empty tokens", "application/json", '{"tokens": [], "payload": {}}', 400),
    ("JSON payload a string", "application/json", '{"tokens": ["a"], "payload": "x"}', 400),
    ("JSON unknown field", "application/json", '{"tokens": ["a"], "payload": {}, "tokenz": 1}', 400),
    ("body over 1 MiB", FORM, "tokens=a&payload=" + "x" * (1 << 20), 413),
    ("JSON repeated topic", "application/json",
     '{"payload": {}' + "".join(f', "topic": "t{i}"' for i in range(40)) + "}", 400),
    ("JSON two tokens arrays", "application/json", '{"tokens": ["a"], "tokens": ["b"], "payload": {}}', 400),
    ("JSON repeated key in payload", "application/json", '{"tokens": ["a"], "payload": {"k": 1, "k": 2}}', 400),
    ("JSON trailing comma", "application/json", '{"tokens": ["a"], "payload": {"k": [1,]}}', 400),
    ("JSON missing comma", "application/json", '{"tokens": ["a" "b"], "payload": {}}', 400),
    ("JSON invalid UTF-8", "application/json", b'{"tokens": ["a"], "payload": {"k": "\xff"}}', 400),
    ("JSON overlong UTF-8", "application/json", b'{"tokens": ["a"], "payload": {"k": "\xc0\xaf"}}', 400),
    ("JSON encoded surrogate", "application/json", b'{"tokens": ["a"], "payload": {"k": "\xed\xa0\x80"}}', 400),
    ("JSON escaped lone surrogate", "application/json", '{"tokens": ["a"], "payload": {"k": "\\ud800"}}', 400),
    ("JSON nested 65 deep", "application/json", '{"tokens": ["a"], "payload": {"k": ' + "[" * 63 + "]" * 63 + "}}",
     400),
    ("form invalid UTF-8 payload", FORM, "tokens=a&payload=%7B%22k%22%3A%22%FF%22%7D", 400),
    ("form payload twice", FORM, "tokens=a&payload=%7B%7D&payload=%7B%7D", 400),
]


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    from conftest import Fcmd, Mock
    mock = Mock()
    f = Fcmd(tmp_path_factory.mktemp("bad"), mock)
    yield f, mock
    f.stop()
    mock.stop()


@pytest.mark.parametrize("name,ctype,body,status", CASES, ids=[c[0] for c in CASES])
def test_rejected_with_json_reason(server, name, ctype, body, status):
    f, mock = server
    before = f.report()
    headers = {"Content-Type": ctype} if ctype else {}
    s = requests.Session()
    data = body if isinstance(body, bytes) else body.encode()
    req = requests.Request("POST", f.url("/gcm/send"), data=data, headers=headers).prepare()
    if ctype is None:
        req.headers.pop("Content-Type", None)
    resp = s.send(req, timeout=10)
    assert resp.status_code == status
    assert resp.headers["content-type"] == "application/json"
    err = resp.json()["error"]
    assert isinstance(err, str) and err
    after = f.report()
    for k in ("accepted", "attempts", "pending", "failures"):
        assert after[k] == before[k], k
    assert mock.stats(summary=True)["targets"] == 0


@pytest.mark.parametrize("method", ["GET", "PUT", "DELETE"])
def test_send_other_methods_405(server, method):
    f, _ = server
    resp = requests.request(method, f.url("/gcm/send"))
    assert resp.status_code == 405
    assert resp.headers["allow"] == "POST"
    assert "error" in resp.json()


@pytest.mark.parametrize("path", ["/gcm/report", "/gcm/report/canonical", "/gcm/report/notregistered",
                                  "/metrics", "/healthz"])
def test_report_endpoints_refuse_post(server, path):
    f, _ = server
    resp = requests.post(f.url(path), data="x")
    assert resp.status_code == 405
    assert resp.headers["allow"] == "GET"


def test_unknown_path_404(server):
    f, _ = server
    resp = requests.get(f.url("/gcm/sendx"))
    assert resp.status_code == 404
    assert json.loads(resp.text)["error"]


def test_metrics_exposition(server):
    f, _ = server
    resp = requests.get(f.url("/metrics"))
    assert resp.status_code == 200
    assert resp.headers["content-type"].startswith("text/plain")
    lines = resp.text.splitlines()
    assert "# TYPE fcmd_attempts_total counter" in lines
    assert any(line.startswith("fcmd_pending ") for line in lines)


def test_hostile_bodies_neither_crash_nor_stall_a_worker(tmp_path, start_fcmd, mock):
    """One worker: a body that once overflowed the heap, and one that once
    took seconds of the worker's loop, are refused while the same worker
    keeps answering; it is never replaced."""
    f = start_fcmd(mock, workers=1)
    pid = f.children()
    repeated = '{"payload": {}' + "".join(f', "topic": "t{i}"' for i in range(40)) + "}"
    deep = '{"tokens": ["a"], "payload": {"k": ' + "[" * 200000 + "]" * 200000 + "}}"
    wide = '{"tokens": ["a"], "payload": {"k": [' + ",".join(["[]"] * 150000) + "]}}"
    for body in (repeated, deep, wide, repeated):
        # The deadline is generous; the quadratic reader took 17 s on `deep`.
        r = requests.post(f.url("/gcm/send"), data=body, headers={"Content-Type": "application/json"}, timeout=5)
        assert r.status_code in (400, 413), r.text
        assert r.json()["error"]
        assert requests.get(f.url("/healthz"), timeout=5).status_code == 200
    assert f.children() == pid
    assert "killed by signal" not in f.log_text() and "exited" not in f.log_text()
    assert f.send_json({"tokens": ["ok-1"], "payload": {"k": "v"}}).status_code == 200
    f.wait_idle()
    assert mock.token("ok-1")


def raw_exchange(port, request):
    """Sends raw bytes, returns everything the server answers until it closes."""
    with socket.create_connection(("127.0.0.1", port), timeout=5) as s:
        s.sendall(request)
        data = b""
        while True:
            chunk = s.recv(65536)
            if not chunk:
                return data
            data += chunk


@pytest.mark.parametrize("framing", [
    b"Content-Length: 24\r\nContent-Length: 5\r\n",
    b"Content-Length: 24\r\nContent-Length: 24\r\n",
    b"Content-Length: 24\r\nTransfer-Encoding: chunked\r\n",
    b"Transfer-Encoding: chunked\r\ncontent-length: 24\r\n",
    b"Transfer-Encoding: identity\r\nTransfer-Encoding: chunked\r\n",
    b"Transfer-Encoding: chunked, identity\r\n",
    b"Content-Length: 24\r\n 5\r\n",                 # a folded continuation of the length
    b"X-Note: a\nContent-Length: 24\r\n",            # a bare LF hides a header from CRLF readers
])
def test_ambiguous_framing_is_refused(server, framing):
    """Two ways to find a body's end: a proxy that reads the other one would
    see a different request boundary (request smuggling)."""
    f, mock = server
    before = f.report()["accepted"]
    body = b"tokens=a&payload=%7B%7D\r\n"
    answer = raw_exchange(f.port, b"POST /gcm/send HTTP/1.1\r\nHost: x\r\n"
                          b"Content-Type: application/x-www-form-urlencoded\r\n" + framing + b"\r\n" + body[:24] +
                          b"0\r\n\r\nGET /gcm/report HTTP/1.1\r\nHost: x\r\n\r\n")
    assert answer.startswith(b"HTTP/1.1 400 ")
    assert answer.count(b"HTTP/1.1 ") == 1  # closed: nothing after it was read as a request
    assert f.report()["accepted"] == before
    ok = raw_exchange(f.port, b"POST /gcm/send HTTP/1.1\r\nHost: x\r\nConnection: close\r\n"
                      b"Content-Type: application/x-www-form-urlencoded\r\nContent-Length: 23\r\n\r\n" + body[:23])
    assert ok.startswith(b"HTTP/1.1 200 ")


def test_one_way_to_frame_a_body_is_served(server):
    f, _ = server
    body = b"tokens=a&payload=%7B%7D"
    chunked = b"%x\r\n%s\r\n0\r\n\r\n" % (len(body), body)
    ok = raw_exchange(f.port, b"POST /gcm/send HTTP/1.1\r\nHost: x\r\nConnection: close\r\n"
                      b"Content-Type: application/x-www-form-urlencoded\r\nTransfer-Encoding: chunked\r\n\r\n" + chunked)
    assert ok.startswith(b"HTTP/1.1 200 "), ok
