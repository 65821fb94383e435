"""`make run` (tools/demo.sh) under Ctrl-C: a terminal sends SIGINT to the
whole foreground process group, and fcmd must see one stop signal, not two,
so its workers finish and exit instead of being killed."""

import os
import signal
import subprocess

import pytest

from conftest import FCMD_BIN, MOCK_BIN, ROOT, free_port, wait_until


def _children(pid):
    try:
        with open(f"/proc/{pid}/task/{pid}/children") as f:
            return [int(p) for p in f.read().split()]
    except (FileNotFoundError, ProcessLookupError):
        return []


def _stat(pid):
    """(state, start time) of a process from /proc/PID/stat, or None once
    it is gone.  The command name is in parentheses and may hold spaces."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
    except (FileNotFoundError, ProcessLookupError):
        return None
    return fields[0], fields[19]


def _still_running(pid, started_at):
    """Whether pid is the process that was started at started_at and has not
    exited (a zombie has: only its parent's wait is left)."""
    st = _stat(pid)
    return st is not None and st[1] == started_at and st[0] != "Z"


def _states(pids):
    """Each process's state and where it sleeps in the kernel, for a failure's message."""
    states = {}
    for pid in pids:
        try:
            with open(f"/proc/{pid}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
            with open(f"/proc/{pid}/wchan") as f:
                states[pid] = (fields[0], f.read())
        except OSError:
            states[pid] = "gone"
    return states


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
        # Its own process group, as a terminal's foreground job is, and
        # SIGINT's default disposition, as a terminal gives it: a suite
        # started in the background of a shell without job control inherits
        # SIGINT ignored, and a shell cannot trap a signal that was ignored
        # when it started.
        demo = subprocess.Popen([os.path.join(ROOT, "tools", "demo.sh")], stdout=sink, stderr=subprocess.STDOUT,
                                stdin=subprocess.DEVNULL, env=env, start_new_session=True,
                                preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    started = []  # fcmd, its workers and the mock, wherever their process groups are
    try:
        wait_until(lambda: "Press Ctrl-C to stop." in out.read_text() or demo.poll() is not None, timeout=30,
                   what="the demo to serve")
        assert demo.poll() is None, out.read_text()
        started = _children(demo.pid)
        started += [w for p in started for w in _children(p)]
        assert len(started) >= 3, started  # the mock, fcmd and at least one worker
        started_at = {pid: st[1] for pid in started if (st := _stat(pid))}  # tells a reused pid from ours
        os.killpg(demo.pid, signal.SIGINT)  # what Ctrl-C does
        # fcmd's own bound on a stop is --shutdown-timeout (30 s): past it
        # something hangs, and what each process was doing says what.
        try:
            assert demo.wait(45) == 0
        except subprocess.TimeoutExpired:
            raise AssertionError(f"the demo did not stop: {_states(started)}\n{out.read_text()}") from None
        text = out.read_text()
        assert "stopped;" in text, text
        assert "killed by signal" not in text and "second stop signal" not in text, text
        # The script waited for fcmd and the mock, and fcmd's master waited
        # for its workers before it said "stopped;": once the script has
        # exited, nothing it started runs, not even for a moment.  So this is
        # checked at once, not polled: a script that stopped waiting would
        # still see its processes gone a few milliseconds later.
        running = [pid for pid in started if _still_running(pid, started_at.get(pid))]
        assert not running, f"still running after the demo exited: {running}"
    finally:
        if demo.poll() is None:
            os.killpg(demo.pid, signal.SIGKILL)
            demo.wait(5)
        _kill_all(started)
