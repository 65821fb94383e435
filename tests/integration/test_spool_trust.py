"""The spool holds in containers and against what is on its disk: restarts
in a PID namespace (every start gets the same process ids), crafted and
damaged segment files, and a full disk."""

import json
import os
import re
import signal
import struct
import subprocess

import pytest
import requests

from conftest import API_KEY, FCMD_BIN, free_port, stop_process, wait_until
from test_spool import all_delivered, push_record, record, segments


class NamespacedFcmd:
    """fcmd as a container runs it: pid 1 of a PID namespace of its own."""

    def __init__(self, tmp_path, mock, spool, workers=2):
        self.port = free_port()
        self.log = tmp_path / f"ns-{self.port}.log"
        self.proc = subprocess.Popen(
            ["unshare", "--pid", "--fork", "--mount-proc", FCMD_BIN, "--logto", str(self.log), "--workers",
             str(workers), "--apikey", API_KEY, "--host", "127.0.0.1", "--port", str(self.port), "--gcm-url",
             mock.url(), "--spool", str(spool)], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
            start_new_session=True)
        self.base = f"http://127.0.0.1:{self.port}"
        try:
            wait_until(self.healthy, what="namespaced fcmd to answer")
            self.master = self.init_pid()
        except BaseException:
            self.kill()
            raise

    def init_pid(self):
        with open(f"/proc/{self.proc.pid}/task/{self.proc.pid}/children") as f:
            (pid,) = [int(p) for p in f.read().split()]
        with open(f"/proc/{pid}/status") as f:
            nspid = [line.split()[1:] for line in f if line.startswith("NSpid:")][0]
        assert nspid[-1] == "1", nspid  # the master is pid 1 in its namespace, as in a container
        return pid

    def healthy(self):
        if self.proc.poll() is not None:
            raise AssertionError(f"unshare/fcmd exited: {self.proc.stderr.read()}")
        try:
            return requests.get(self.base + "/healthz", timeout=1).status_code == 200
        except requests.ConnectionError:
            return False

    def kill(self):
        """SIGKILL to the namespace's init takes every process in it down."""
        try:
            os.kill(self.master, signal.SIGKILL)
        except (AttributeError, ProcessLookupError):
            pass
        stop_process(self.proc, signal.SIGKILL, timeout=10)
        for f in (self.proc.stdout, self.proc.stderr):
            f.close()


def test_restarts_in_a_pid_namespace_lose_nothing(start_mock, tmp_path):
    """Three rounds of start, accept 60, SIGKILL everything; then a start
    against a working upstream delivers all 180.  Segment names once came
    from process ids, which repeat in a namespace: a new segment took the
    name of the orphan being replayed and deleted it."""
    stuck = start_mock("--latency-ms", "60000")  # nothing finishes while a round runs
    spool = tmp_path / "spool"
    sent = []
    for rnd in range(3):
        f = NamespacedFcmd(tmp_path, stuck, spool)
        try:
            tokens = [f"ns{rnd}-{i}" for i in range(60)]
            for t in tokens:
                r = requests.post(f.base + "/gcm/send", data={"tokens": t, "payload": "{}"},
                                  headers={"Connection": "close"}, timeout=10)
                assert r.status_code == 200
            sent += tokens
        finally:
            f.kill()
        assert any(p.endswith(".seg") for p in os.listdir(spool)), f"round {rnd} left no spool"
    working = start_mock()
    f = NamespacedFcmd(tmp_path, working, spool)
    try:
        wait_until(all_delivered(working, sent), timeout=60, what="all 180 pushes after the last restart")
        wait_until(lambda: requests.get(f.base + "/gcm/report", timeout=5).json()["pending"] == 0,
                   what="nothing pending")
    finally:
        f.kill()


def counted_push(pid, tokens, claimed, payload=b"{}", indexes=None):
    """A CRC-valid PUSH whose target count says `claimed`, whatever it holds."""
    body = struct.pack("<QB", pid, 0) + struct.pack("<I", len(payload)) + payload
    body += struct.pack("<I", 0xFFFFFFFF) * 8
    body += struct.pack("<I", claimed)
    for i, t in enumerate(tokens):
        body += struct.pack("<IH", indexes[i] if indexes else i, len(t)) + t.encode()
    return record(1, body)


def test_crafted_segments_are_skipped_not_trusted(mock, start_fcmd, tmp_path):
    """Records that check out by CRC but do not add up are skipped with
    their offset; files that are not fcmd's own segments are left alone; the
    good records around them are delivered; no worker dies."""
    spool = tmp_path / "spool"
    spool.mkdir(mode=0o750)
    good1 = push_record(1, ["good-1"])
    bad = [
        counted_push(2, ["x1", "x2"], 1000),                  # says 1000, holds 2: overflowed the heap
        counted_push(3, ["x3"], 0xFFFFFFFF),                   # a bitmap size computed in 32 bits
        counted_push(4, ["x4", "x5"], 2, indexes=[0, 0]),      # one index twice
        counted_push(5, ["x6"], 1, indexes=[7]),               # an index past the count
        counted_push(6, ["x7"], 1, payload=b'{"k":"\xff"}'),   # text intake would refuse
        counted_push(7, ["x\x01y"], 1),                        # a control character in a token
    ]
    acks = record(2, struct.pack("<QI", 9, 0x3FFFFFFF))  # claims a billion indexes, has none
    good2 = push_record(9, ["good-2", "good-3"]) + record(2, struct.pack("<QII", 9, 1, 1))
    data = good1 + b"".join(bad) + acks + good2
    (spool / "crafted.seg").write_bytes(data)
    # Not segments of fcmd's own: a symlink to a file elsewhere, a file with a second name.
    outside = tmp_path / "outside.seg"
    outside.write_bytes(push_record(1, ["via-symlink"]))
    before = outside.read_bytes()
    (spool / "link.seg").symlink_to(outside)
    os.link(outside, spool / "hardlink.seg")
    f = start_fcmd(mock, workers=1, args=["--spool", str(spool)])
    (child,) = f.children()
    wait_until(all_delivered(mock, ["good-1", "good-2"]), what="the good records")
    f.wait_idle()
    toks = mock.stats()["tokens"]
    assert not any(t.startswith("x") for t in toks), toks
    assert "good-3" not in toks and "via-symlink" not in toks
    log = f.log_text()
    offset = len(good1)
    for rec in bad[:4]:
        assert f"crafted.seg: push record at offset {offset} skipped" in log, log
        offset += len(rec)
    assert "invalid UTF-8" in log and "control character" in log
    # The two whose texts intake would refuse are counted as failures, with their cause.
    metrics = requests.get(f.url("/metrics"), timeout=5).text
    assert 'fcmd_failures_total{reason="spool_record"} 2' in metrics, metrics
    assert "link.seg skipped" in log and "hardlink.seg skipped" in log
    assert f.children() == [child] and "killed by signal" not in log
    assert outside.read_bytes() == before and (spool / "link.seg").is_symlink()
    wait_until(lambda: not (spool / "crafted.seg").exists(), what="the crafted segment to go once done")


def test_full_disk_loses_nothing_and_says_so_once(start_mock, start_fcmd, tmp_path):
    """On a full disk a worker killed with SIGKILL leaves its segment; the
    other worker adopts it without writing a copy (there is no room for
    one) and delivers it.  Sends meanwhile get 503, /readyz says not ready,
    the log says so once rather than per request, and it all recovers when
    space comes back."""
    spool = tmp_path / "spool"
    spool.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=8m,mode=0750", "tmpfs", str(spool)], check=True, timeout=10)
    try:
        mock = start_mock("--latency-ms", "400")
        f = start_fcmd(mock, workers=2, args=["--spool", str(spool), "--max-inflight", "10"])
        tokens = [f"full{i}" for i in range(300)]
        workers = set()
        for t in tokens:
            r = requests.post(f.url("/gcm/send"), data={"tokens": t, "payload": "{}"},
                              headers={"Connection": "close"}, timeout=10)
            assert r.status_code == 200
            workers.add(r.headers["x-fcmd-worker"])
        assert len(workers) == 2
        filler = spool / "filler"
        with open(filler, "wb") as out:  # fill the disk
            try:
                while True:
                    out.write(b"\1" * 65536)
                    out.flush()
            except OSError:
                pass
        refused = 0
        for i in range(100):  # 3 MB: past the zeros each segment keeps ahead of its records
            r = requests.post(f.url("/gcm/send"), timeout=10,
                              data={"tokens": f"nospace{i}", "payload": json.dumps({"x": "y" * 30000})})
            assert r.status_code in (200, 503)
            refused += r.status_code == 503
        assert refused > 0
        wait_until(lambda: requests.get(f.url("/readyz"), timeout=5).status_code == 503, what="/readyz to say 503")
        victim = f.children()[0]
        os.kill(victim, signal.SIGKILL)
        wait_until(all_delivered(mock, tokens), timeout=60, what="every accepted push, the disk still full")
        log = f.log_text()
        assert "spool: adopted" in log
        assert log.count("spool: cannot write") <= 4, log  # once per worker and outage, not per request
        filler.unlink()
        wait_until(lambda: requests.get(f.url("/readyz"), timeout=5).status_code == 200, timeout=30,
                   what="/readyz to recover once space is back")
        assert f.send_form(["after"], {}).status_code == 200
        f.wait_idle(timeout=30)
        f.stop()
    finally:
        subprocess.run(["umount", "-l", str(spool)], timeout=10)


FAULT_LIB = os.environ.get("FAULT_LIB", os.path.join(os.path.dirname(FCMD_BIN), "build", "tests", "fault_sync.so"))


def sockets(pid):
    """The sockets a process holds open, by inode."""
    fds = f"/proc/{pid}/fd"
    found = set()
    for fd in os.listdir(fds):
        try:
            target = os.readlink(os.path.join(fds, fd))
        except FileNotFoundError:
            continue
        if target.startswith("socket:"):
            found.add(target)
    return found


@pytest.mark.parametrize("mode, http2", [("batch", True), ("always", True), ("batch", False)])
def test_a_worker_stopped_at_once_during_a_sync_leaves_the_push_in_the_spool(mock, start_fcmd, tmp_path,
                                                                             monkeypatch, mode, http2):
    """A push whose answer waits for its sync when its worker is told to stop
    at once (a second SIGTERM): the worker lets it go, waiting only for the
    sync already running, and the record stays in the segment as it was
    written, so the worker started next delivers it.  Over HTTP/2 h2o closes
    the client's connection at the worker's exit and the worker frees
    everything; an HTTP/1 request still waiting for its answer is not read
    from, so its connection stays with h2o, and the worker gives up on it
    after a second and exits all the same."""
    assert os.path.exists(FAULT_LIB), f"build {FAULT_LIB} first (make integration does)"
    held = tmp_path / "hold-sync"
    spool = tmp_path / "spool"
    monkeypatch.setenv("LD_PRELOAD", FAULT_LIB)
    monkeypatch.setenv("FCMD_TEST_HOLD_SYNC", str(held))
    monkeypatch.setenv("ASAN_OPTIONS", os.environ.get("ASAN_OPTIONS", "") + ":verify_asan_link_order=0")
    f = start_fcmd(mock, workers=1, args=["--spool", str(spool), "--spool-fsync", mode])
    (worker,) = f.children()
    held.write_text("")
    client = subprocess.Popen(["curl", "-s", "--http2-prior-knowledge" if http2 else "--http1.1", "-m", "30", "-o",
                               "/dev/null", "-w", "%{http_code}", "-d", "tokens=held-sync&payload={}",
                               f.url("/gcm/send")], stdout=subprocess.PIPE, text=True)
    try:
        wait_until(lambda: any(n > 0 for n in segments(str(spool)).values()), what="the push's record")
        # The listener the worker shares with the master: it closes it as it begins to stop.
        listener = sockets(f.proc.pid) & sockets(worker)
        assert len(listener) == 1, listener
        os.kill(worker, signal.SIGTERM)
        wait_until(lambda: not listener & sockets(worker), what="the worker to begin its stop")
        os.kill(worker, signal.SIGTERM)
        # The sync goes on until the worker is past the point under test.
        if http2:
            wait_until(lambda: client.poll() is not None, what="h2o to close the client's connection")
        else:
            wait_until(lambda: "still waiting for an answer" in f.log_text(), what="the worker to give up on it")
    finally:
        held.unlink()
        answer = client.communicate(timeout=30)[0]
    assert answer != "200", answer  # never answered: the worker went first
    wait_until(lambda: worker not in f.children() and len(f.children()) == 1, what="the next worker")
    wait_until(lambda: (mock.token("held-sync") or {}).get("delivered", 0) >= 1, timeout=20,
               what="the next worker to deliver the push left in the spool")
    log = f.log_text()
    assert "stopping at once on signal 15: 1 targets unfinished" in log, log
    assert re.search(rf"child {worker} exited$", log, re.M), log  # status 0
    assert "killed by signal" not in log, log
    assert ("1 HTTP connections still waiting for an answer" in log) != http2, log


@pytest.mark.parametrize("mode", ["batch", "always"])
def test_failed_sync_answers_503_and_queues_nothing(mock, start_fcmd, tmp_path, monkeypatch, mode):
    """A push is answered 200 only once durable.  When the sync fails the
    answer is 503 and the push is neither sent nor counted, nor replayed
    after a restart; when syncs work again, so does the service."""
    assert os.path.exists(FAULT_LIB), f"build {FAULT_LIB} first (make integration does)"
    flag = tmp_path / "fail-sync"
    spool = tmp_path / "spool"
    monkeypatch.setenv("LD_PRELOAD", FAULT_LIB)
    monkeypatch.setenv("FCMD_TEST_FAIL_SYNC", str(flag))
    monkeypatch.setenv("ASAN_OPTIONS", os.environ.get("ASAN_OPTIONS", "") + ":verify_asan_link_order=0")
    args = ["--spool", str(spool), "--spool-fsync", mode]
    f = start_fcmd(mock, workers=1, args=args)
    assert f.send_form(["before"], {}).status_code == 200
    flag.write_text("")
    for i in range(3):
        r = f.send_json({"tokens": [f"during{i}"], "payload": {}})
        assert r.status_code == 503 and "sync" in r.json()["error"] and r.headers["retry-after"]
    assert f.report()["accepted"] == 1
    flag.unlink()
    assert f.send_form(["after"], {}).status_code == 200
    f.wait_idle()
    f.stop()
    again = start_fcmd(mock, workers=1, args=args)
    again.wait_idle()
    toks = mock.stats()["tokens"]
    assert "before" in toks and "after" in toks
    assert not any(t.startswith("during") for t in toks), toks


def test_replay_keeps_pushes_accepted_under_looser_limits(mock, start_fcmd, tmp_path):
    """A push accepted when --max-payload-bytes was larger is still a valid
    push after a restart with a smaller limit: replay checks validity, not
    today's sizes."""
    spool = tmp_path / "spool"
    spool.mkdir(mode=0o750)
    big = json.dumps({"k": "v" * 5000}).encode()
    (spool / "old.seg").write_bytes(push_record(1, ["older-limits"], big))
    f = start_fcmd(mock, workers=1, args=["--spool", str(spool), "--max-payload-bytes", "100"])
    wait_until(all_delivered(mock, ["older-limits"]), what="the push accepted under the old limit")
    assert f.send_form(["new"], {"k": "v" * 200}).status_code == 400  # today's limit still holds at intake


def test_crafted_files_cost_what_their_size_costs(mock, start_fcmd, tmp_path):
    """A segment of fake headers, each claiming the rest of the file with a
    wrong checksum, once took a worker minutes to read, on its loop, before
    it listened; a sparse file of any size was mapped whole.  Now the first
    is read in bounded work on the thread pool while the worker serves, and
    the second is refused by its size."""
    spool = tmp_path / "spool"
    spool.mkdir(mode=0o750)
    size = 1 << 20
    fake = bytearray(size)
    for at in range(0, size - 16, 16):
        fake[at:at + 16] = b"FCSP\x01\0\0\0" + struct.pack("<I", size - at - 16) + b"\xee" * 4
    (spool / "fake-headers.seg").write_bytes(push_record(1, ["before-the-fakes"]) + bytes(fake))
    with open(spool / "sparse.seg", "wb") as sparse:
        sparse.truncate(8 << 30)  # 8 GiB, no blocks: larger than any segment under these settings
    f = start_fcmd(mock, workers=1, args=["--spool", str(spool), "--spool-max-bytes", str(1 << 30)])
    assert f.send_form(["while-reading"], {}).status_code == 200
    wait_until(all_delivered(mock, ["before-the-fakes", "while-reading"]), what="the good record and a new push")
    log = f.log_text()
    assert "fake-headers.seg: record cut short" in log, log
    assert "sparse.seg skipped: larger than any segment" in log, log
    assert (spool / "sparse.seg").exists()
