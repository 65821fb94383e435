"""The durable spool: nothing accepted is lost to a killed child, a killed
server, a torn or corrupt segment, or a full spool."""

import os
import re
import signal
import socket
import struct
import subprocess
import time

import pytest
import requests

from conftest import API_KEY, FCMD_BIN, Fcmd, wait_until


def crc32c(data, crc=0):
    crc ^= 0xFFFFFFFF
    for b in data:
        crc ^= b
        for _ in range(8):
            crc = (crc >> 1) ^ (0x82F63B78 & -(crc & 1))
    return crc ^ 0xFFFFFFFF


def record(rtype, payload):
    """One spool record, as docs/ARCHITECTURE.md describes it."""
    head = struct.pack("<B3xI", rtype, len(payload))
    return b"FCSP" + head + struct.pack("<I", crc32c(head + payload)) + payload


def push_record(pid, tokens, payload=b"{}"):
    body = struct.pack("<QB", pid, 0) + struct.pack("<I", len(payload)) + payload
    body += struct.pack("<I", 0xFFFFFFFF) * 8  # no message options
    body += struct.pack("<I", len(tokens))
    for i, t in enumerate(tokens):
        body += struct.pack("<IH", i, len(t)) + t.encode()
    return record(1, body)


def send_many(f, tokens):
    """One request per token, each on a fresh connection, so every child gets its share."""
    workers = set()
    for t in tokens:
        r = requests.post(f.url("/gcm/send"), data={"tokens": t, "payload": "{}"}, headers={"Connection": "close"},
                          timeout=10)
        assert r.status_code == 200
        workers.add(r.headers["x-fcmd-worker"])
    return workers


def all_delivered(mock, tokens):
    def check():
        toks = mock.stats()["tokens"]
        missing = [t for t in tokens if toks.get(t, {}).get("delivered", 0) < 1]
        return not missing or None
    return check


def segments(spool):
    """Each segment's bytes of records: under batch and always a file runs on in zeros after them."""
    def used(name):
        with open(os.path.join(spool, name), "rb") as f:
            return len(f.read().rstrip(b"\0"))
    return {p: used(p) for p in os.listdir(spool) if p.endswith(".seg")}


@pytest.mark.parametrize("mode", ["never", "batch", "always"])
def test_sigkill_one_child_loses_nothing(start_mock, start_fcmd, tmp_path, mode):
    mock = start_mock("--latency-ms", "500")
    spool = str(tmp_path / "spool")
    f = start_fcmd(mock, workers=2, args=["--spool", spool, "--spool-fsync", mode, "--max-inflight", "25"])
    tokens = [f"k{mode}{i}" for i in range(500)]
    assert len(send_many(f, tokens)) == 2
    # At most 100 a second go upstream, so much of it is still queued when a child dies.
    assert f.report()["pending"] > 100
    victim = f.children()[0]
    os.kill(victim, signal.SIGKILL)
    wait_until(all_delivered(mock, tokens), timeout=30, what="every accepted token at the mock")
    r = f.wait_idle(timeout=30)
    assert r["replayed"] > 0 and r["accepted"] == 500
    # Nothing was lost: the dead worker's targets were left in the spool, and adopted.
    assert r["lost"] == 0 and r["left_in_spool"] == r["replayed"]
    assert "pending targets left in the spool" in f.log_text()
    assert "spool: adopted" in f.log_text()
    # Nothing is left behind: live children's segments hold no records.
    wait_until(lambda: all(size == 0 for size in segments(spool).values()), what="empty segments")


def test_sigkill_everything_and_restart(start_mock, tmp_path):
    mock = start_mock("--latency-ms", "500")
    spool = str(tmp_path / "spool")
    args = ["--spool", spool, "--max-inflight", "50"]
    first = Fcmd(tmp_path, mock, workers=2, args=args)
    tokens = [f"all{i}" for i in range(500)]
    try:
        send_many(first, tokens)
        os.killpg(first.proc.pid, signal.SIGKILL)  # master and children at once, like a power cut to the service
        first.proc.wait(10)
    finally:
        first.stop(timeout=1)
    wait_until(lambda: not any(os.path.exists(f"/proc/{p}") for p in first.children()), what="the children to die")
    left = segments(spool)
    assert left, "the killed server left its spool"
    # With batch (the default) a segment runs ahead of its records in zeros.
    assert any(open(os.path.join(spool, p), "rb").read().endswith(bytes(4096)) for p in left)
    second = Fcmd(tmp_path, mock, workers=2, args=args)
    try:
        wait_until(all_delivered(mock, tokens), timeout=60, what="every token after the restart")
        r = second.wait_idle(timeout=30)
        assert r["replayed"] > 0
        log = second.log_text()
        assert "spool: adopted" in log and " warn " not in log, log
    finally:
        second.stop()
    assert segments(spool) == {}, "a clean stop leaves no segments"


def test_torn_tail_and_corrupt_middle(mock, start_fcmd, tmp_path):
    spool = tmp_path / "spool"
    spool.mkdir(mode=0o750)  # fcmd refuses a spool others can write in
    a = [push_record(1, ["ta1"]), push_record(2, ["ta2"]), push_record(3, ["ta3", "ta4"])]
    bad = bytearray(a[1])
    bad[20] ^= 0x01  # a flipped bit inside the second record
    (spool / "111-0.seg").write_bytes(a[0] + bytes(bad) + a[2] + record(2, struct.pack("<QII", 3, 1, 1)))
    b = push_record(1, ["tb1"]) + push_record(2, ["tb2"])[:-7]  # the crash cut the last write short
    (spool / "222-0.seg").write_bytes(b)
    f = start_fcmd(mock, workers=1, args=["--spool", str(spool)])
    wait_until(all_delivered(mock, ["ta1", "ta3", "tb1"]), what="the good records")
    r = f.wait_idle()
    toks = mock.stats()["tokens"]
    assert "ta2" not in toks and "tb2" not in toks
    assert "ta4" not in toks  # acknowledged in the segment: already delivered before the crash
    assert r["replayed"] == 3
    log = f.log_text()
    assert f"111-0.seg: corrupt record at offset {len(a[0])} skipped" in log
    assert f"222-0.seg: record cut short at offset {len(push_record(1, ['tb1']))}" in log
    # Each goes once its last push has finished and its acknowledgement is in.
    wait_until(lambda: not (spool / "111-0.seg").exists() and not (spool / "222-0.seg").exists(),
               what="the adopted segments to be deleted")


def test_full_spool_answers_503_and_loses_nothing(start_mock, start_fcmd, tmp_path):
    mock = start_mock("--latency-ms", "100")
    spool = str(tmp_path / "spool")
    f = start_fcmd(mock, workers=1, args=["--spool", spool, "--spool-max-bytes", "65536", "--max-inflight", "1"])
    payload = {"blob": "x" * 2000}
    accepted, refused = [], None
    for i in range(200):
        r = f.send_form([f"full{i}"], payload)
        if r.status_code == 503:
            refused = r
            break
        assert r.status_code == 200
        accepted.append(f"full{i}")
    assert refused is not None, "the spool never filled"
    assert refused.headers["retry-after"] == "1" and refused.json()["error"] == "spool full"
    assert 10 < len(accepted) < 40
    wait_until(all_delivered(mock, accepted), timeout=30, what="everything accepted before the spool filled")
    assert f.wait_idle()["spool_bytes"] == 0  # finished records make room again
    m = requests.get(f.url("/metrics")).text
    assert "fcmd_spool_bytes " in m and "fcmd_spool_segments " in m
    assert f.send_form(["after-drain"], payload).status_code == 200


def test_segments_rotate_and_finished_ones_go(start_mock, start_fcmd, tmp_path):
    mock = start_mock("--latency-ms", "50")
    spool = str(tmp_path / "spool")
    f = start_fcmd(mock, workers=1, args=["--spool", spool, "--spool-segment-bytes", "4096"])
    tokens = [f"rot{i}" for i in range(300)]
    send_many(f, tokens)
    wait_until(all_delivered(mock, tokens), timeout=30, what="all tokens")
    f.wait_idle()
    wait_until(lambda: sum(segments(spool).values()) == 0 and len(segments(spool)) <= 1, what="old segments deleted")
    assert f.report()["spool_bytes"] == 0


def test_an_emptied_segment_keeps_its_zeros(mock, start_fcmd, tmp_path):
    spool = str(tmp_path / "spool")
    f = start_fcmd(mock, workers=1, args=["--spool", spool])  # batch
    names = set()
    for i in range(3):
        assert f.send_form([f"z{i}"], {}).status_code == 200
        assert f.wait_idle()["successes"] == i + 1
        wait_until(lambda: list(segments(spool).values()) == [0], what="the segment emptied")
        # Overwritten with zeros, not truncated: the next sync need not grow the file again.
        (name,) = segments(spool)
        assert os.path.getsize(os.path.join(spool, name)) >= 1 << 20
        names.add(name)
    assert len(names) == 1


def raw_send(token):
    body = f"tokens={token}&payload=%7B%7D".encode()
    return (b"POST /gcm/send HTTP/1.1\r\nHost: fcmd\r\nContent-Type: application/x-www-form-urlencoded\r\n"
            b"Content-Length: %d\r\n\r\n" % len(body)) + body


def read_status(sock):
    """The status of the next answer on a kept-alive connection, its body read."""
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(4096)
        assert chunk, "connection closed"
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    length = int(re.search(rb"(?i)\r\ncontent-length: *(\d+)", head).group(1))
    while len(body) < length:
        body += sock.recv(4096)
    return int(head.split()[1])


def spool_syncs(f):
    text = requests.get(f.url("/metrics"), timeout=5).text
    return int(re.search(r"^fcmd_spool_syncs_total (\d+)$", text, re.M).group(1))


def stopped(pid):
    with open(f"/proc/{pid}/stat") as st:
        return st.read().rsplit(")", 1)[1].split()[0] == "T"


@pytest.mark.parametrize("mode,fewest,most", [("never", 0, 0), ("batch", 1, 20), ("always", 40, 80)])
def test_fsync_policy_syncs_per_request(mock, start_fcmd, tmp_path, mode, fewest, most):
    """40 requests read together: batch makes them durable with a few
    fdatasyncs for all (group commit), always with at least one each, never
    with none."""
    f = start_fcmd(mock, workers=1, args=["--spool", str(tmp_path / "spool"), "--spool-fsync", mode])
    conns = [socket.create_connection(("127.0.0.1", f.port), timeout=10) for _ in range(40)]
    try:
        for i, c in enumerate(conns):  # every connection accepted and kept alive
            c.sendall(raw_send(f"warm-{mode}-{i}"))
            assert read_status(c) == 200
        before = spool_syncs(f)
        (child,) = f.children()
        # Stopped, the worker finds all 40 requests readable when it wakes.
        os.kill(child, signal.SIGSTOP)
        try:
            wait_until(lambda: stopped(child), what="the worker to stop")
            for i, c in enumerate(conns):
                c.sendall(raw_send(f"sync-{mode}-{i}"))
        finally:
            os.kill(child, signal.SIGCONT)
        assert [read_status(c) for c in conns] == [200] * 40
        assert fewest <= spool_syncs(f) - before <= most
    finally:
        for c in conns:
            c.close()
    f.wait_idle()


def test_syncs_run_off_the_event_loop(mock, start_fcmd, tmp_path):
    """Every fdatasync, and the directory fsync a new segment needs, runs on
    a thread-pool thread: strace shows none from the worker's own thread."""
    spool = str(tmp_path / "spool")
    f = start_fcmd(mock, workers=1, args=["--spool", spool, "--spool-segment-bytes", "4096"])
    (child,) = f.children()
    trace, said = tmp_path / "strace.out", tmp_path / "strace.err"
    with open(said, "w") as err:
        tracer = subprocess.Popen(["strace", "-f", "-e", "trace=fsync,fdatasync", "-o", str(trace), "-p", str(child)],
                                  stderr=err)
    try:
        wait_until(lambda: tracer.poll() is None and "attached" in said.read_text(), what="strace to attach")
        payload = {"blob": "x" * 1000}  # four a segment: several new segments, each with its directory sync
        for i in range(30):
            assert f.send_form([f"loop{i}"], payload).status_code == 200
    finally:
        tracer.terminate()
        tracer.wait(10)
    lines = trace.read_text().splitlines()
    calls = [(int(line.split()[0]), line.split()[1].split("(")[0]) for line in lines
             if re.match(r"\d+ +f(data)?sync\(", line)]
    assert {name for _, name in calls} == {"fsync", "fdatasync"}, lines
    assert all(pid != child for pid, _ in calls), lines


def test_spool_directory_must_be_usable(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    r = subprocess.run([FCMD_BIN, "--apikey", API_KEY, "--spool", str(blocker / "sub")], capture_output=True,
                       text=True, timeout=10)
    assert r.returncode == 2 and "--spool" in r.stderr
