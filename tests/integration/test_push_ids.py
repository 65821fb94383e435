"""Push ids (contract §10): every push answered 200 at /gcm/send and
/apns/send has an id, in the JSON body and in X-Fcmd-Id, unique across
workers, respawns, restarts and instances, and kept in the spool's record
and in the entry of the queue in Redis.  JSON answers are read with
Python's json; records with a reader written here from docs/ARCHITECTURE.md."""

import os
import re
import signal
import socket
import struct

import requests

from conftest import wait_until
from test_fleet import redis  # noqa: F401 (fixture)
from test_fleet_queue import wait_ready

ID = re.compile(r"[A-Za-z0-9_-]{1,64}")


def fresh(f, tokens, json_body=True):
    """One push on a connection of its own, so the workers share them."""
    if json_body:
        r = requests.post(f.url("/gcm/send"), json={"tokens": tokens, "payload": {"k": 1}},
                          headers={"Connection": "close"}, timeout=10)
    else:
        r = requests.post(f.url("/gcm/send"), data={"tokens": tokens, "payload": "{}"},
                          headers={"Connection": "close"}, timeout=10)
    assert r.status_code == 200, r.text
    return r


def push_ids_in(data):
    """(type, push id, key, fingerprint) of each push record in a segment's
    bytes, read by the layout docs/ARCHITECTURE.md gives (not checked
    further: the unit tests do)."""
    out, pos = [], 0
    while pos + 16 <= len(data) and data[pos:pos + 4] == b"FCSP":
        rtype, n = data[pos + 4], struct.unpack_from("<I", data, pos + 8)[0]
        p = data[pos + 16:pos + 16 + n]
        pos += 16 + n
        if rtype != 5:
            out.append((rtype, None, None, None))
            continue
        at = 8 + 2  # spool id, upstream, option count
        fields = []
        for _ in range(4):  # app, push id, key, fingerprint: u8 length, bytes
            fields.append(p[at + 1:at + 1 + p[at]])
            at += 1 + p[at]
        out.append((rtype, fields[1].decode(), fields[2], fields[3]))
    return out


def test_json_and_form_answers_carry_the_id(mock, start_fcmd):
    f = start_fcmd(mock, workers=2)
    r = f.send_json({"tokens": ["j1", "j2"], "payload": {"k": 1}})
    assert r.status_code == 200 and r.headers["content-type"] == "application/json"
    body = r.json()
    assert set(body) == {"accepted", "id"} and body["accepted"] == 2, body
    assert ID.fullmatch(body["id"]), body
    assert r.headers["x-fcmd-id"] == body["id"]
    # GoCM's form: the body stays "ok", the id comes in the header.
    r = f.send_form("f1", {"k": 1})
    assert (r.status_code, r.text) == (200, "ok\n")
    assert ID.fullmatch(r.headers["x-fcmd-id"]) and r.headers["x-fcmd-id"] != body["id"]
    # A request refused takes no id.
    r = f.send_json({"tokens": [], "payload": {}})
    assert r.status_code == 400 and "x-fcmd-id" not in r.headers
    f.wait_idle()
    assert mock.token("j1")["delivered"] == 1 and mock.token("f1")["delivered"] == 1


def test_ids_are_unique_across_workers_respawns_restarts_and_instances(mock, start_fcmd):
    a, b = start_fcmd(mock, workers=2), start_fcmd(mock, workers=2)
    seen = {}  # id -> (phase, instance, worker)

    def send(phase, f, name, n, want_workers=2):
        workers = set()
        i = 0
        while i < n or len(workers) < want_workers:
            assert i < 20 * n, f"{name}: only workers {workers} answered"
            r = fresh(f, [f"{phase}-{name}-{i}"], json_body=i % 2 == 0)
            pid = r.json()["id"] if i % 2 == 0 else r.headers["x-fcmd-id"]
            if i % 2 == 0:
                assert r.headers["x-fcmd-id"] == pid
            else:
                assert r.text == "ok\n"
            assert ID.fullmatch(pid), pid
            assert pid not in seen, (pid, seen[pid], (phase, name))
            seen[pid] = (phase, name, r.headers["x-fcmd-worker"])
            workers.add(r.headers["x-fcmd-worker"])
            i += 1

    send("start", a, "a", 100)
    send("start", b, "b", 100)
    before = set(seen)
    # Every worker of a killed and respawned: the new ones draw anew.
    old = a.children()
    for pid in old:
        os.kill(pid, signal.SIGKILL)
    wait_until(lambda: len(set(a.children()) - set(old)) == 2, what="two respawned workers")
    wait_until(a.healthy, what="a to answer again")
    send("respawned", a, "a", 100)
    # b restarted: a new instance on the same settings.
    b.stop()
    c = start_fcmd(mock, workers=2)
    send("restarted", c, "c", 100)
    send("again", a, "a", 50)
    assert len(seen) >= 450
    # The documented structure: the first 10 characters come from the 64 bits
    # a worker draws at its start, so a respawned worker shares none with the dead.
    respawned = {i[:10] for i, v in seen.items() if v[0] == "respawned"}
    assert not respawned & {i[:10] for i in before}
    a.wait_idle()
    c.wait_idle()


def test_the_spool_record_holds_the_id_and_survives_a_kill(start_mock, start_fcmd, tmp_path):
    """The id answered is the one in the record a replay reads; after a
    kill -9 the push is replayed from that record (that the replayed push
    keeps it is checked in tests/unit/test_spool_record.c until
    GET /push/{id} shows it)."""
    slow = start_mock("--latency-ms", "3000")
    spool = tmp_path / "spool"
    f = start_fcmd(slow, workers=1, args=["--spool", str(spool), "--spool-fsync", "never"])
    answered = [fresh(f, ["s1", "s2"]).json()["id"], fresh(f, ["s3"], json_body=False).headers["x-fcmd-id"]]

    def records():
        got = []
        for name in os.listdir(spool):
            if name.endswith(".seg"):
                got += push_ids_in((spool / name).read_bytes())
        return got
    recs = wait_until(lambda: (lambda r: r if len(r) == 2 else None)(records()), what="two push records")
    assert sorted(r[1] for r in recs) == sorted(answered), recs
    assert all(r[0] == 5 and r[2] == b"" and r[3] == b"" for r in recs), recs  # no key, no fingerprint yet
    def sent(times):
        return lambda: all((slow.token(t) or {}).get("delivered", 0) >= times for t in ("s1", "s2", "s3"))
    wait_until(sent(1), what="the pushes in flight upstream")
    os.kill(f.children()[0], signal.SIGKILL)  # before any answer came back
    wait_until(sent(2), timeout=30, what="the pushes replayed from their records and sent again")
    assert "spool: adopted" in f.log_text()


# ---- the queue in Redis ----

def resp(port, *args):
    """One command to Redis over RESP, written here: the reply as Python values."""
    with socket.create_connection(("127.0.0.1", port), timeout=5) as s:
        s.sendall(b"".join([f"*{len(args)}\r\n".encode()] +
                           [f"${len(a)}\r\n".encode() + a.encode() + b"\r\n" for a in args]))
        f = s.makefile("rb")

        def read():
            line = f.readline()
            kind, rest = line[:1], line[1:-2]
            if kind in (b"+", b"-"):
                return rest.decode()
            if kind == b":":
                return int(rest)
            if kind == b"$":
                n = int(rest)
                if n < 0:
                    return None
                data = f.read(n + 2)[:-2]
                return data
            if kind == b"*":
                n = int(rest)
                return None if n < 0 else [read() for _ in range(n)]
            raise AssertionError(f"unexpected reply {line!r}")
        return read()


def test_the_redis_entry_holds_the_id(redis, start_mock, start_fcmd):  # noqa: F811
    slow = start_mock("--latency-ms", "5000")  # the entries stay in the stream while we look
    f = start_fcmd(slow, workers=2, args=["--redis", redis.url, "--redis-queue"])
    wait_ready(f)  # each worker reaches Redis on its own
    answered = set()
    for i in range(6):
        r = fresh(f, [f"r{i}"], json_body=i % 2 == 0)
        answered.add(r.json()["id"] if i % 2 == 0 else r.headers["x-fcmd-id"])
    assert len(answered) == 6 and all(ID.fullmatch(i) for i in answered)
    entries = resp(redis.port, "XRANGE", "fcmd:queue", "-", "+")
    stored = set()
    for _, fields in entries:
        rec = dict(zip(fields[::2], fields[1::2]))[b"p"]
        (rtype, pid, key, fp), = push_ids_in(rec)
        assert rtype == 5 and key == b"" and fp == b""
        stored.add(pid)
    assert stored == answered
