"""Drains hand each entry out exactly once: HEAD never drains, and an
answer the client never received gives its entries back to the list."""

import os
import signal
import socket

import h2.config
import h2.connection
import h2.events
import h2.settings
import requests

from conftest import wait_until


def fill_notregistered(f, n):
    tokens = [f"notreg-{i:04d}" for i in range(n)]
    assert f.send_json({"tokens": tokens, "payload": {"k": "v"}}).status_code == 200
    assert f.wait_idle()["notregistered"] == n
    return tokens


def test_head_never_drains(mock, start_fcmd):
    f = start_fcmd(mock, workers=1)
    tokens = fill_notregistered(f, 5)
    for path in ("/gcm/report/notregistered", "/gcm/report/canonical"):
        r = requests.head(f.url(path), timeout=5)
        assert r.status_code == 405 and r.headers["allow"] == "GET"
    assert requests.get(f.url("/gcm/report/notregistered"), timeout=5).json() == {"tokens": tokens}
    assert requests.get(f.url("/gcm/report/notregistered"), timeout=5).json() == {"tokens": None}


def test_the_report_shows_the_lists_sizes_and_reading_it_drains_nothing(mock, start_fcmd):
    """notregistered_records and _bytes are what the list holds: the report
    shows them as often as it is read, and a drain takes them to 0."""
    f = start_fcmd(mock, workers=2, args=["--drain-list-bytes", "65536"])
    tokens = fill_notregistered(f, 4)
    for _ in range(3):
        r = f.report()
        assert (r["notregistered_records"], r["canonical_records"], r["canonical_bytes"]) == (4, 0, 0), r
        assert r["notregistered_bytes"] == sum(3 + len(t) for t in tokens), r  # a 2-byte length and a tag per record
        assert r["drain_list_bytes"] == 65536
    assert requests.get(f.url("/gcm/report/notregistered"), timeout=5).json() == {"tokens": tokens}
    r = f.report()
    assert (r["notregistered_records"], r["notregistered_bytes"]) == (0, 0), r


def test_a_drain_with_a_query_is_refused_and_drains_nothing(mock, start_fcmd):
    f = start_fcmd(mock, workers=1)
    tokens = fill_notregistered(f, 3)
    for q in ("?x=1", "?limit=1", "?app=default&app=default"):
        r = requests.get(f.url("/gcm/report/notregistered" + q), timeout=5)
        assert r.status_code == 400 and "query parameter" in r.json()["error"], r.text
    r = requests.get(f.url("/gcm/report/notregistered?app=nosuch"), timeout=5)
    assert (r.status_code, r.json()) == (400, {"error": "unknown app"})
    assert requests.get(f.url("/gcm/report/notregistered"), timeout=5).json() == {"tokens": tokens}


def test_a_drain_of_the_default_app_takes_its_entries(mock, start_fcmd):
    f = start_fcmd(mock, workers=1)
    tokens = fill_notregistered(f, 3)
    assert requests.get(f.url("/gcm/report/notregistered?app=default"), timeout=5).json() == {"tokens": tokens}
    assert requests.get(f.url("/gcm/report/notregistered"), timeout=5).json() == {"tokens": None}


def h2_cancelled_drain(port, path):
    """Asks for a drain over HTTP/2 with a 16-byte flow-control window, so
    the answer cannot be written past its start, reads the headers and what
    fits, then cancels the stream and goes away.  Returns the status."""
    sock = socket.create_connection(("127.0.0.1", port), timeout=10)
    conn = h2.connection.H2Connection(config=h2.config.H2Configuration(client_side=True))
    conn.local_settings = h2.settings.Settings(client=True, initial_values={
        h2.settings.SettingCodes.INITIAL_WINDOW_SIZE: 16})
    conn.initiate_connection()
    sid = conn.get_next_available_stream_id()
    conn.send_headers(sid, [(":method", "GET"), (":path", path), (":scheme", "http"),
                            (":authority", "localhost")], end_stream=True)
    sock.sendall(conn.data_to_send())
    status, got = None, 0
    try:
        for _ in range(200):  # bounded: a few frames are all that can come
            data = sock.recv(65536)
            if not data:
                break
            for ev in conn.receive_data(data):
                if isinstance(ev, h2.events.ResponseReceived):
                    status = int(dict(ev.headers)[b":status"])
                elif isinstance(ev, h2.events.DataReceived):
                    got += len(ev.data)
            sock.sendall(conn.data_to_send())
            if status is not None and got >= 16:
                break
        conn.reset_stream(sid)
        sock.sendall(conn.data_to_send())
    finally:
        sock.close()
    return status, got


def test_answer_not_received_gives_entries_back(mock, start_fcmd):
    f = start_fcmd(mock, workers=1)
    tokens = fill_notregistered(f, 200)  # about 3 KB of answer
    status, got = h2_cancelled_drain(f.port, "/gcm/report/notregistered")
    assert status == 200 and got == 16

    def drained():
        body = requests.get(f.url("/gcm/report/notregistered"), timeout=5).json()
        return body if body["tokens"] else None
    body = wait_until(drained, what="the entries back in the list")
    assert sorted(body["tokens"]) == tokens  # every one, once
    assert requests.get(f.url("/gcm/report/notregistered"), timeout=5).json() == {"tokens": None}


def test_worker_stopping_with_an_unwritten_answer_gives_entries_back(mock, start_fcmd):
    """A reload replaces the worker while a client is not reading its drain
    answer: the worker exits after its grace period, and the entries go back
    to the list rather than out of the world."""
    f = start_fcmd(mock, workers=1)
    tokens = fill_notregistered(f, 200)
    old = f.children()
    sock = socket.create_connection(("127.0.0.1", f.port), timeout=10)
    conn = h2.connection.H2Connection(config=h2.config.H2Configuration(client_side=True))
    conn.local_settings = h2.settings.Settings(client=True, initial_values={
        h2.settings.SettingCodes.INITIAL_WINDOW_SIZE: 16})
    conn.initiate_connection()
    sid = conn.get_next_available_stream_id()
    conn.send_headers(sid, [(":method", "GET"), (":path", "/gcm/report/notregistered"), (":scheme", "http"),
                            (":authority", "localhost")], end_stream=True)
    sock.sendall(conn.data_to_send())
    try:
        def answer_started():
            for ev in conn.receive_data(sock.recv(65536)):
                if isinstance(ev, h2.events.ResponseReceived):
                    return True
            sock.sendall(conn.data_to_send())
            return None
        wait_until(answer_started, what="the drain answer to start")
        os.kill(f.proc.pid, signal.SIGHUP)
        wait_until(lambda: f.children() and not set(f.children()) & set(old), timeout=20,
                   what="the old worker to exit")
    finally:
        sock.close()
    body = requests.get(f.url("/gcm/report/notregistered"), timeout=5).json()
    assert sorted(body["tokens"] or []) == tokens
