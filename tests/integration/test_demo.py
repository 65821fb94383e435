"""`make run` (tools/demo.sh) under Ctrl-C: a terminal sends SIGINT to the
whole foreground process group, and fcmd must see one stop signal, not two,
so its workers finish and exit instead of being killed."""

import os
import signal
import subprocess
import time

import pytest

from conftest import FCMD_BIN, MOCK_BIN, ROOT, free_port, wait_until


def _children(pid):
    try:
        with open(f"/proc/{pid}/task/{pid}/children") as f:
            return [int(p) for p in f.read().split()]
    except (FileNotFoundError, ProcessLookupError):
        return []


def _kill_all(pids):
    for pid in pids:
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass


@pytest.mark.parametrize("upstream", ["legacy", "v1"])
def test_ctrl_c_stops_the_demo_cleanly(tmp_path, upstream):
    out = tmp_path / "demo.out"
    env = dict(os.environ, PORT=str(free_port()), LATENCY_MS="10", UPSTREAM=upstream, FCMD_BIN=FCMD_BIN,
               MOCK_BIN=MOCK_BIN)
    with open(out, "w") as sink:
        # Its own process group, as a terminal's foreground job is.
        demo = subprocess.Popen([os.path.join(ROOT, "tools", "demo.sh")], stdout=sink, stderr=subprocess.STDOUT,
                                stdin=subprocess.DEVNULL, env=env, start_new_session=True)
    started = []  # fcmd, its workers and the mock, wherever their process groups are
    try:
        wait_until(lambda: "Press Ctrl-C to stop." in out.read_text() or demo.poll() is not None, timeout=30,
                   what="the demo to serve")
        assert demo.poll() is None, out.read_text()
        started = _children(demo.pid)
        started += [w for p in started for w in _children(p)]
        assert len(started) >= 3, started  # the mock, fcmd and at least one worker
        os.killpg(demo.pid, signal.SIGINT)  # what Ctrl-C does
        assert demo.wait(30) == 0
        text = out.read_text()
        assert "stopped;" in text, text
        assert "killed by signal" not in text and "second stop signal" not in text, text
        time.sleep(0.2)
        for pid in started:  # the script waited for everything it started
            assert not os.path.exists(f"/proc/{pid}") or open(f"/proc/{pid}/stat").read().split()[2] == "Z", pid
    finally:
        if demo.poll() is None:
            os.killpg(demo.pid, signal.SIGKILL)
            demo.wait(5)
        _kill_all(started)
