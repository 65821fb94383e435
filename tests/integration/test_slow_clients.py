"""Slow and greedy clients on HTTP/2: what --client-timeout and the body
limits mean when one connection carries many streams.

The clients speak HTTP/2 with prior knowledge over plain TCP (and once over
TLS) with Debian's python3-h2, or with hand-made frames where h2 would not
send what a hostile client sends.  Every wait polls with a deadline."""

import os
import select
import socket
import ssl
import struct
import subprocess
import time

import h2.config
import h2.connection
import h2.errors
import h2.events
import h2.exceptions
import h2.settings
import hpack
import pytest
import requests

from conftest import http_ok, wait_until

TIMEOUT = 1  # --client-timeout, seconds
REFUSED = h2.errors.ErrorCodes.REFUSED_STREAM
FORM = "application/x-www-form-urlencoded"


class H2Client:
    """One HTTP/2 connection; `closed` once the server sent GOAWAY, closed
    the connection or reset it."""

    def __init__(self, port, cafile=None, window=None, auto_ack=True):
        raw = socket.create_connection(("127.0.0.1", port), timeout=5)
        if cafile:
            ctx = ssl.create_default_context(cafile=str(cafile))
            ctx.set_alpn_protocols(["h2"])
            raw = ctx.wrap_socket(raw, server_hostname="localhost")
            assert raw.selected_alpn_protocol() == "h2"
        self.sock = raw
        self.conn = h2.connection.H2Connection(h2.config.H2Configuration(client_side=True,
                                                                          header_encoding="utf-8"))
        self.closed = False
        self.goaway = None
        self.resets = {}     # stream id -> error code of the server's RST_STREAM
        self.responses = {}  # stream id -> {"status": int, "body": bytes, "done": bool}
        self.auto_ack = auto_ack
        self.unacked = []  # (stream id, length) of DATA not yet acknowledged, without auto_ack
        if window is not None:  # the server may send this much per stream before a WINDOW_UPDATE
            self.conn.local_settings = h2.settings.Settings(
                client=True, initial_values={h2.settings.SettingCodes.INITIAL_WINDOW_SIZE: window})
        self.conn.initiate_connection()
        self.flush()

    def close(self):
        self.sock.close()

    def flush(self):
        data = self.conn.data_to_send()
        if data and not self.closed:
            try:
                self.sock.sendall(data)
            except OSError:
                self.closed = True

    def pump(self, timeout):
        """Reads and handles what arrives within timeout seconds (one read)."""
        pending = isinstance(self.sock, ssl.SSLSocket) and self.sock.pending()
        if self.closed or not (pending or select.select([self.sock], [], [], timeout)[0]):
            return
        try:
            data = self.sock.recv(65536)
        except (OSError, ssl.SSLError):
            data = b""
        if not data:
            self.closed = True
            return
        try:
            events = self.conn.receive_data(data)
        except h2.exceptions.ProtocolError:
            self.closed = True
            return
        for e in events:
            self.handle(e)
        self.flush()

    def handle(self, e):
        if isinstance(e, h2.events.ConnectionTerminated):
            self.goaway = e.error_code
            self.closed = True
        elif isinstance(e, h2.events.StreamReset):
            self.resets[e.stream_id] = e.error_code
        elif isinstance(e, h2.events.ResponseReceived):
            self.responses[e.stream_id] = {"status": int(dict(e.headers)[":status"]), "body": b"", "done": False}
        elif isinstance(e, h2.events.DataReceived):
            self.responses[e.stream_id]["body"] += e.data
            if self.auto_ack:
                self.conn.acknowledge_received_data(e.flow_controlled_length, e.stream_id)
            else:
                self.unacked.append((e.stream_id, e.flow_controlled_length))
        elif isinstance(e, h2.events.StreamEnded):
            self.responses[e.stream_id]["done"] = True

    def pump_until(self, pred, seconds):
        """Pumps until pred() holds or the deadline passes; returns pred()."""
        deadline = time.monotonic() + seconds
        while not pred() and not self.closed and time.monotonic() < deadline:
            self.pump(0.05)
        return pred()

    def ack(self):
        """Acknowledges the DATA read so far: the server may send as much again."""
        for sid, n in self.unacked:
            self.conn.acknowledge_received_data(n, sid)
        self.unacked = []
        self.flush()

    def get(self, path):
        sid = self.conn.get_next_available_stream_id()
        self.conn.send_headers(sid, [(":method", "GET"), (":scheme", "http"), (":authority", "localhost"),
                                     (":path", path)], end_stream=True)
        self.flush()
        return sid

    def ping(self):
        if not self.closed:
            self.conn.ping(b"fcmd-pin")
            self.flush()

    def open_post(self, content_type=FORM, end=False):
        sid = self.conn.get_next_available_stream_id()
        self.conn.send_headers(sid, [(":method", "POST"), (":scheme", "http"), (":authority", "localhost"),
                                     (":path", "/gcm/send"), ("content-type", content_type)], end_stream=end)
        self.flush()
        return sid

    def send_body(self, sid, data, end=False, seconds=5):
        """Sends data on a stream as flow control allows; False if the stream
        or the connection was reset on the way."""
        deadline = time.monotonic() + seconds
        while data or end:
            if self.closed or sid in self.resets or time.monotonic() > deadline:
                return False
            n = min(len(data), self.conn.local_flow_control_window(sid), self.conn.max_outbound_frame_size)
            if data and n == 0:
                self.pump(0.05)
                continue
            try:
                self.conn.send_data(sid, data[:n], end_stream=end and n == len(data))
            except h2.exceptions.StreamClosedError:
                return False
            self.flush()
            data = data[n:]
            if not data:
                end = False
            self.pump(0)
        return True

    def post(self, body, seconds=5):
        """A whole request; returns the response dict (status, body) or None."""
        sid = self.open_post()
        if not self.send_body(sid, body, end=True, seconds=seconds):
            return None
        self.pump_until(lambda: self.responses.get(sid, {}).get("done") or sid in self.resets, seconds)
        r = self.responses.get(sid)
        return r if r and r["done"] else None


def held_open_for(client, seconds, action=lambda: None):
    """Calls action and pumps until the server closes the connection or
    seconds pass; returns how long the connection stayed open."""
    t0 = time.monotonic()
    while not client.closed and time.monotonic() - t0 < seconds:
        action()
        client.pump(0.1)
    return time.monotonic() - t0


def open_pinger(port, cafile=None):
    """A connection h2o has taken (its SETTINGS arrived), or None if the
    worker closed it at once for want of room."""
    try:
        c = H2Client(port, cafile=cafile)
    except (OSError, ssl.SSLError):
        return None
    if c.pump_until(lambda: c.conn.remote_settings.max_concurrent_streams == 100, 2):
        return c
    c.close()
    return None


@pytest.fixture
def fcmd(mock, start_fcmd):
    def start(*args, **kw):
        return start_fcmd(mock, workers=1, args=["--client-timeout", str(TIMEOUT), *args], **kw)
    return start


# ---- (a) a connection that only PINGs ----

def test_a_connection_that_only_pings_is_closed(fcmd):
    f = fcmd()
    c = H2Client(f.port)
    try:
        open_for = held_open_for(c, 8 * TIMEOUT, c.ping)
        assert c.closed, "a connection that only sends PINGs stayed open"
        assert TIMEOUT * 0.9 <= open_for <= TIMEOUT * 3
    finally:
        c.close()
    assert http_ok(f.url("/healthz"))


def test_a_connection_that_only_pings_over_tls_is_closed(fcmd, tls_cert):
    """With room for one connection: once the PINGing one is closed, h2o has
    freed it and the next client gets in.  A PING that crosses the sweep's
    shutdown makes the kernel reset the connection, and the worker then
    reads a reset instead of end-of-file: the slot must come back either
    way (test_limits resets a TLS connection on purpose)."""
    cert, key = tls_cert
    f = fcmd("--tls-cert", str(cert), "--tls-key", str(key), "--max-connections", "1", wait=False)
    url = f"https://localhost:{f.port}/healthz"
    wait_until(lambda: http_ok(url, verify=str(cert)), what="the TLS listener")
    c = wait_until(lambda: open_pinger(f.port, cafile=cert), what="room for the PINGing connection")
    try:
        open_for = held_open_for(c, 8 * TIMEOUT, c.ping)
        assert c.closed, "a TLS connection that only sends PINGs stayed open"
        assert TIMEOUT * 0.9 <= open_for <= TIMEOUT * 3
    finally:
        c.close()
    wait_until(lambda: http_ok(url, verify=str(cert)), timeout=3, what="the freed slot")


# ---- (b) a body trickled one byte at a time ----

def test_b_body_trickled_a_byte_at_a_time_is_cut(fcmd):
    f = fcmd()
    c = H2Client(f.port)
    try:
        sid = c.open_post()
        body = iter(b"tokens=a&payload=%7B%7D" * 100)

        def trickle():
            if sid not in c.resets:
                c.send_body(sid, bytes([next(body)]), seconds=1)

        open_for = held_open_for(c, 8 * TIMEOUT, lambda: (trickle(), c.ping()))
        assert c.closed, "a connection trickling a body stayed open"
        assert open_for <= TIMEOUT * 3
        assert sid not in c.responses  # the request never reached fcmd
    finally:
        c.close()


def test_b_bodies_reset_before_they_arrive_do_not_hold_the_connection(fcmd):
    """A new stream every quarter timeout sends more than the bytes that
    count as moving; each is reset before --client-timeout can call it slow.
    Every sweep sees a body move, yet no request ever arrives: the
    connection is closed within a few timeouts (two in which moving bodies
    still count, then the timeout)."""
    f = fcmd()
    c = H2Client(f.port)
    live = []  # (stream id, when it opened)
    state = {"next": 0.0, "streams": 0}

    def reset_after_some_body():
        now = time.monotonic()
        while live and now - live[0][1] >= TIMEOUT * 0.7:
            c.conn.reset_stream(live.pop(0)[0], h2.errors.ErrorCodes.CANCEL)
            c.flush()
        if now >= state["next"]:
            state["next"] = now + TIMEOUT / 4
            sid = c.open_post()
            if c.send_body(sid, b"tokens=a&payload=" + b"x" * 700, seconds=1):
                live.append((sid, now))
                state["streams"] += 1

    try:
        open_for = held_open_for(c, 12 * TIMEOUT, reset_after_some_body)
        assert c.closed, f"a connection resetting every body stayed open ({state['streams']} streams)"
        assert open_for >= TIMEOUT * 2  # the moving bodies did count, for a while
        assert open_for <= TIMEOUT * 6
        assert not c.responses  # no request reached fcmd
    finally:
        c.close()
    assert http_ok(f.url("/healthz"))  # the worker serves others as before


# ---- (c) headers trickled in CONTINUATION frames ----

def frame(ftype, flags, sid, payload):
    return struct.pack(">I", len(payload))[1:] + bytes([ftype, flags]) + struct.pack(">I", sid) + payload


def frame_types(data):
    """The types of the whole frames at the start of data."""
    types = []
    while len(data) >= 9:
        n = int.from_bytes(data[:3], "big")
        types.append(data[3])
        data = data[9 + n:]
    return types


def test_c_headers_trickled_in_continuation_frames_are_cut(fcmd):
    f = fcmd()
    block = hpack.Encoder().encode([(":method", "POST"), (":scheme", "http"), (":authority", "localhost"),
                                    (":path", "/gcm/send"), ("x-slow", "s" * 400)])
    pieces = [block[i:i + 4] for i in range(0, len(block), 4)]
    s = socket.create_connection(("127.0.0.1", f.port), timeout=5)
    try:
        s.sendall(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n" + frame(4, 0, 0, b""))  # preface, empty SETTINGS
        s.sendall(frame(1, 0, 1, pieces[0]))  # HEADERS without END_HEADERS
        t0, closed, i, got = time.monotonic(), False, 1, b""
        while not closed and time.monotonic() - t0 < 8 * TIMEOUT and i < len(pieces):
            try:
                s.sendall(frame(9, 0, 1, pieces[i]))  # CONTINUATION, never END_HEADERS
                i += 1
                if select.select([s], [], [], 0.1)[0]:
                    data = s.recv(65536)
                    got += data
                    closed = data == b"" or 7 in frame_types(got)  # EOF or GOAWAY
            except OSError:
                closed = True
        assert closed, "a connection trickling CONTINUATION frames stayed open"
        assert time.monotonic() - t0 <= TIMEOUT * 3
    finally:
        s.close()


# ---- (d) a busy, well-behaved client ----

@pytest.mark.parametrize("spool", [False, True], ids=["answers-at-once", "answers-after-the-spool-syncs"])
def test_d_busy_client_keeps_its_connection(fcmd, tmp_path, spool):
    f = fcmd(*(["--spool", str(tmp_path / "spool"), "--spool-fsync", "always"] if spool else []))
    c = H2Client(f.port)
    try:
        t0, sent = time.monotonic(), 0
        while time.monotonic() - t0 < 3.5 * TIMEOUT:
            r = c.post(f"tokens=busy{sent}&payload=%7B%7D".encode())
            assert r is not None and r["status"] == 200 and r["body"] == b"ok\n", (sent, c.closed, c.resets)
            sent += 1
            c.pump(0.1)  # a pause well under the timeout
        assert not c.closed and sent >= 10
    finally:
        c.close()
    assert f.wait_idle()["accepted"] == sent


def traced(pid, tid):
    with open(f"/proc/{pid}/task/{tid}/status") as f:
        return "TracerPid:\t0\n" not in f.read()


def test_d_connection_owed_an_answer_is_not_cut(fcmd, tmp_path):
    """strace holds every fdatasync of the worker for 2.5 s: the answer to a
    /gcm/send waits for the spool's sync, longer than the client timeout,
    and the connection, which sends nothing but PINGs meanwhile, is kept
    until the answer is out."""
    f = fcmd("--spool", str(tmp_path / "spool"))
    (child,) = f.children()
    said = tmp_path / "strace.err"
    tids = sorted(os.listdir(f"/proc/{child}/task"))
    with open(said, "w") as err:
        tracer = subprocess.Popen(["strace", "-f", "-qq", "-e", "trace=fdatasync", "-e",
                                   "inject=fdatasync:delay_enter=2500000", "-o", "/dev/null",
                                   *[a for t in tids for a in ("-p", t)]], stderr=err)
    c = None
    try:
        wait_until(lambda: tracer.poll() is None and all(traced(child, t) for t in tids), what="strace to attach")
        c = H2Client(f.port)
        sid = c.open_post()
        t0 = time.monotonic()
        assert c.send_body(sid, b"tokens=owed&payload=%7B%7D", end=True)
        def done():
            return c.responses.get(sid, {}).get("done")

        while not done() and not c.closed and time.monotonic() - t0 < 10:
            c.ping()
            c.pump(0.1)
        assert done(), f"no answer (closed={c.closed})"
        assert c.responses[sid]["status"] == 200 and time.monotonic() - t0 > 2 * TIMEOUT
        tracer.terminate()
        tracer.wait(10)
        # Answered, it is an idle connection again: closed after the timeout.
        assert held_open_for(c, 8 * TIMEOUT, c.ping) <= TIMEOUT * 3 and c.closed
    finally:
        if tracer.poll() is None:
            tracer.terminate()
            tracer.wait(10)
        if c is not None:
            c.close()


# ---- (e) PINGs do not lock a normal client out ----

def test_e_pinging_connections_do_not_lock_out_a_normal_client(fcmd):
    f = fcmd("--max-connections", "4")
    wait_until(lambda: f.children(), what="the worker")
    pingers = []
    try:
        deadline = time.monotonic() + 10
        while len(pingers) < 4 and time.monotonic() < deadline:
            c = open_pinger(f.port)  # None while the start-up health check still holds a slot
            if c is not None:
                pingers.append(c)
        assert len(pingers) == 4
        t0 = time.monotonic()
        served = None
        while served is None and time.monotonic() - t0 < 8 * TIMEOUT:
            for p in pingers:
                p.ping()
                p.pump(0)
            try:
                if requests.get(f.url("/healthz"), timeout=1).status_code == 200:
                    served = time.monotonic() - t0
            except requests.ConnectionError:
                time.sleep(0.05)  # the worker closed it at once: no room yet; poll again
        assert served is not None, "PINGing connections locked a normal client out"
        assert served <= TIMEOUT * 3
    finally:
        for p in pingers:
            p.close()


# ---- (f) bytes one connection may hold ----

MAX_BODY = 65536


def test_f_body_just_over_the_limit_gets_a_json_413(fcmd):
    f = fcmd("--max-body-bytes", str(MAX_BODY))
    c = H2Client(f.port)
    try:
        r = c.post(b"tokens=a&payload=" + b"x" * (MAX_BODY - 16))
        assert r is not None and r["status"] == 413 and b'"error"' in r["body"]
    finally:
        c.close()


def test_f_body_far_over_the_limit_is_refused_before_fcmd(fcmd):
    """h2o resets a stream whose body passes --max-body-bytes + 64 KiB."""
    f = fcmd("--max-body-bytes", str(MAX_BODY))
    c = H2Client(f.port)
    try:
        sid = c.open_post()
        c.send_body(sid, b"x" * (MAX_BODY + 65536 + 1), end=True)
        assert c.pump_until(lambda: sid in c.resets, 5), c.responses.get(sid)
        assert c.resets[sid] == REFUSED
        assert not c.closed
        assert c.post(b"tokens=after&payload=%7B%7D")["status"] == 200  # the connection goes on
    finally:
        c.close()


def test_f_http1_body_far_over_the_limit_is_refused_by_h2o(fcmd):
    f = fcmd("--max-body-bytes", str(MAX_BODY))
    r = requests.post(f.url("/gcm/send"), data=b"x" * (MAX_BODY + 65536 + 1), headers={"Content-Type": FORM},
                      timeout=5)
    assert r.status_code == 413
    r = requests.post(f.url("/gcm/send"), data=b"x" * (MAX_BODY + 1), headers={"Content-Type": FORM}, timeout=5)
    assert r.status_code == 413 and r.json()["error"]


def unfinished(c, n, size):
    """Opens n POST streams and sends size body bytes on each, never ending them."""
    sids = [c.open_post() for _ in range(n)]
    for sid in sids:
        assert c.send_body(sid, b"t" * size)
    return sids


def test_f_unfinished_requests_beyond_the_bound_close_the_connection(fcmd):
    """Up to 4 unfinished requests per connection are held; more, and the
    connection is closed within two sweeps (a second each here)."""
    f = fcmd("--max-body-bytes", str(MAX_BODY), "--client-timeout", "30")
    few, many = H2Client(f.port), H2Client(f.port)
    try:
        kept = unfinished(few, 4, 32768)
        unfinished(many, 12, 32768)
        t0 = time.monotonic()
        many.pump_until(lambda: False, 6)
        assert many.closed, "a connection holding 12 unfinished bodies stayed open"
        assert time.monotonic() - t0 <= 5
        few.pump_until(lambda: False, 0.5)
        assert not few.closed, "a connection with 4 unfinished bodies was cut"
        for sid in kept:
            assert few.send_body(sid, b"", end=True)
        assert few.pump_until(lambda: all(few.responses.get(s, {}).get("done") for s in kept), 5)
        assert {few.responses[s]["status"] for s in kept} == {400}
    finally:
        few.close()
        many.close()


def test_f_streams_beyond_h2o_s_fixed_limit_are_refused(fcmd):
    """h2o 2.2.5 allows 100 open streams per connection and refuses more."""
    f = fcmd("--max-body-bytes", str(MAX_BODY), "--client-timeout", "30")
    c = H2Client(f.port)
    try:
        sids = [c.open_post() for _ in range(101)]  # sent before h2o's SETTINGS are read
        assert c.pump_until(lambda: sids[-1] in c.resets, 5)
        assert c.resets[sids[-1]] == REFUSED
        assert not any(s in c.resets for s in sids[:-1])
    finally:
        c.close()


# ---- (g) slow but moving: answers read slowly, bodies sent in parallel ----

def read_slowly(c, sid, pause, seconds):
    """Reads one answer a flow-control window at a time, acknowledging each
    window only `pause` seconds after it came, as a slow link would; returns
    how long the answer took (or seconds, if it never ended)."""
    t0 = time.monotonic()
    def done():
        return c.responses.get(sid, {}).get("done")

    while not done() and not c.closed and sid not in c.resets and time.monotonic() - t0 < seconds:
        if c.pump_until(lambda: c.unacked or done(), 1) and not done():
            c.pump_until(lambda: False, pause)  # the link is busy: nothing more can come meanwhile
            c.ack()
    return time.monotonic() - t0


def test_g_slow_reader_of_a_large_answer_gets_all_of_it(fcmd):
    """/metrics (about 7 KB) through a 1 KiB window, each KiB acknowledged
    0.3 s after it came: about twice the client timeout in all, with no new
    request meanwhile, and the answer arrives whole."""
    f = fcmd()
    size = len(requests.get(f.url("/metrics"), timeout=5).content)
    assert size > 6 * 1024, size  # at least seven windows
    c = H2Client(f.port, window=1024, auto_ack=False)
    try:
        sid = c.get("/metrics")
        took = read_slowly(c, sid, 0.3, 10 * TIMEOUT)
        r = c.responses.get(sid)
        assert r is not None and r["done"], f"answer cut after {len(r['body']) if r else 0} bytes (closed={c.closed})"
        assert r["status"] == 200 and len(r["body"]) > 6 * 1024 and r["body"].endswith(b"\n")
        assert took > 1.5 * TIMEOUT  # it did take longer than the client timeout
    finally:
        c.close()


def test_g_reader_slower_than_the_floor_is_cut(fcmd):
    """The same answer through a 16-byte window acknowledged every 0.1 s,
    160 bytes a second: less than 512 bytes in a client timeout is too slow
    to hold the connection."""
    f = fcmd()
    c = H2Client(f.port, window=16, auto_ack=False)
    try:
        sid = c.get("/metrics")
        took = read_slowly(c, sid, 0.1, 8 * TIMEOUT)
        assert c.closed, "a reader taking 16 bytes at a time kept its connection"
        assert took <= TIMEOUT * 3
        assert not c.responses.get(sid, {}).get("done")
    finally:
        c.close()


def json_body(i, size):
    pad = "x" * (size - 60)
    return f'{{"tokens":["up{i:04d}"],"payload":{{"pad":"{pad}"}}}}'.encode()


def upload_in_parallel(c, bodies, seconds, chunk=4096):
    """Sends the bodies on as many streams, interleaved a chunk at a time at
    an even pace so that the last byte goes out after `seconds`; returns the
    stream ids, or None if the connection closed on the way."""
    sids = [c.open_post(content_type="application/json") for _ in bodies]
    pieces = [(sid, b[i:i + chunk], i + chunk >= len(b)) for i in range(0, max(map(len, bodies)), chunk)
              for sid, b in zip(sids, bodies) if i < len(b)]
    t0 = time.monotonic()
    for k, (sid, piece, last) in enumerate(pieces):
        due = t0 + seconds * (k + 1) / len(pieces)
        c.pump_until(lambda: time.monotonic() >= due, seconds)  # the pace of the uplink
        if not c.send_body(sid, piece, end=last, seconds=2):
            return None
    return sids


def test_g_parallel_uploads_flowing_steadily_are_all_answered(fcmd):
    """Six 30 KB bodies at once, interleaved over 2.6 s (about 70 KB/s):
    within the client timeout of 4 s as a whole, but across at least two
    sweeps (a second apart) whatever their phase.  All six are answered
    and the connection stays."""
    f = fcmd("--client-timeout", "4")
    c = H2Client(f.port)
    try:
        sids = upload_in_parallel(c, [json_body(i, 30000) for i in range(6)], 2.6)
        assert sids is not None, f"the connection was closed during the uploads (resets={c.resets})"
        assert c.pump_until(lambda: all(c.responses.get(s, {}).get("done") for s in sids), 5), (c.closed, c.resets)
        assert [c.responses[s]["status"] for s in sids] == [200] * 6
        assert not c.closed
    finally:
        c.close()
    assert f.wait_idle()["accepted"] == 6


def test_f_unfinished_bodies_holding_too_many_bytes_close_the_connection(fcmd):
    """Twelve bodies that all keep moving, but together hold more than four
    bodies' worth (4 x (64 KiB + 64 KiB) here): the connection is closed,
    long before the client timeout."""
    f = fcmd("--max-body-bytes", str(MAX_BODY), "--client-timeout", "30")
    c = H2Client(f.port)
    try:
        sids = [c.open_post() for _ in range(12)]
        t0 = time.monotonic()
        while not c.closed and time.monotonic() - t0 < 8:
            for sid in sids:
                c.send_body(sid, b"t" * 8192, seconds=1)
            c.pump_until(lambda: False, 0.3)
        assert c.closed, "twelve growing bodies of up to 96 KiB each stayed open"
        assert time.monotonic() - t0 <= 6
    finally:
        c.close()


def test_f_unfinished_requests_with_large_headers_close_the_connection(fcmd):
    """Requests with 40 KB of headers each, opened one after another, their
    bodies all kept moving a byte at a time: none is parked, but sixteen
    hold more than four bodies' worth (4 x 128 KiB here), so the connection
    is closed long before the client timeout."""
    f = fcmd("--max-body-bytes", str(MAX_BODY), "--client-timeout", "30")
    c = H2Client(f.port)
    try:
        sids = []
        t0 = time.monotonic()
        while not c.closed and time.monotonic() - t0 < 10:
            if len(sids) < 16:
                sid = c.conn.get_next_available_stream_id()
                c.conn.send_headers(sid, [(":method", "POST"), (":scheme", "http"), (":authority", "localhost"),
                                          (":path", "/gcm/send"), ("content-type", FORM),
                                          ("x-pad", f"{len(sids) % 10}" * 40000)])
                c.flush()
                sids.append(sid)
            for sid in sids:
                c.send_body(sid, b"t", seconds=1)
            c.pump_until(lambda: False, 0.1)
        assert c.closed, "sixteen requests holding 40 KB of headers each stayed open"
        assert time.monotonic() - t0 <= 8
        assert not c.resets  # closed by the sweep, not refused by h2o
    finally:
        c.close()
