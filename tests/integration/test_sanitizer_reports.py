"""What a server under test printed on stderr reaches make asan's check:
gcc's UBSan writes its reports there whatever log_path says."""

import subprocess

import conftest


def run(script):
    # The background sleep keeps the pipe open, as a live worker would.
    proc = subprocess.Popen(["sh", "-c", script + "; sleep 30 & exit 0"], stderr=subprocess.PIPE, text=True,
                            start_new_session=True)
    proc.wait(10)
    return proc


def test_a_sanitizer_report_on_stderr_is_kept(tmp_path, monkeypatch):
    monkeypatch.setattr(conftest, "SANITIZER_DIR", str(tmp_path))
    proc = run("echo 'child/core/queue.c:10:5: runtime error: signed integer overflow' >&2")
    try:
        conftest.keep_sanitizer_reports(proc.stderr, "probe")  # returns with the pipe still open
    finally:
        proc.stderr.close()
        subprocess.run(["pkill", "-f", "^sleep 30$", "-s", str(proc.pid)], check=False)
    reports = list(tmp_path.glob("report.stderr.*.probe"))
    assert len(reports) == 1 and "signed integer overflow" in reports[0].read_text()


def test_other_stderr_is_not_a_report(tmp_path, monkeypatch):
    monkeypatch.setattr(conftest, "SANITIZER_DIR", str(tmp_path))
    proc = run("echo 'fcmd: --port: not a port' >&2")
    try:
        conftest.keep_sanitizer_reports(proc.stderr, "probe")
    finally:
        proc.stderr.close()
        subprocess.run(["pkill", "-f", "^sleep 30$", "-s", str(proc.pid)], check=False)
    assert list(tmp_path.glob("report.*")) == []
