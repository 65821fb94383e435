"""GET /push/{id} (contract §10): what became of one push, from any worker,
with ?wait= answering as soon as the push is done.  Answers are read with
Python's json and checked against what the mock upstream says it did."""

import threading
import time

import requests

from conftest import accepted, wait_until

KEYS = {"id", "app", "upstream", "targets", "pending", "delivered", "canonical", "invalid", "failed", "state",
        "errors"}


def status(f, pid, **params):
    return requests.get(f.url(f"/push/{pid}"), params=params, headers={"Connection": "close"}, timeout=40)


def send(f, tokens, **kw):
    r = f.send_json({"tokens": tokens, "payload": {"k": 1}}, **kw)
    assert r.status_code == 200, r.text
    assert accepted(r) == len(tokens)
    return r.json()["id"]


def done(f, pid):
    r = status(f, pid)
    return r.status_code == 200 and r.json()["state"] == "done"


def test_counts_by_outcome_and_the_errors(mock, start_fcmd):
    f = start_fcmd(mock, workers=2, args=["--retries", "0"])
    tokens = ["ok-1", "ok-2", "canon-3", "notreg-4", "invalid-5", "unavail-6"]
    pid = send(f, tokens)
    wait_until(lambda: done(f, pid), what="the push to be done")
    # Each worker answers the same: one connection per request, two tries each.
    for _ in range(6):
        r = status(f, pid)
        assert r.status_code == 200 and r.headers["content-type"] == "application/json"
        s = r.json()
        assert set(s) == KEYS, s
        assert (s["id"], s["app"], s["upstream"], s["state"]) == (pid, "default", "fcm", "done")
        assert (s["targets"], s["pending"], s["delivered"], s["canonical"], s["invalid"], s["failed"]) == \
            (6, 0, 3, 1, 2, 1), s
        errors = {e["token"]: e["reason"] for e in s["errors"]}
        assert set(errors) == {"notreg-4", "invalid-5", "unavail-6"}, s
        assert errors["notreg-4"] == "NotRegistered" and errors["invalid-5"] == "InvalidRegistration"
        assert "Unavailable" in errors["unavail-6"]
    # The mock saw what the status says was delivered.
    for t in tokens[:3]:
        assert mock.token(t), t


def test_form_push_and_the_header_id(mock, start_fcmd):
    f = start_fcmd(mock, workers=1)
    r = f.send_form(["f-1", "f-2"], {"a": "b"})
    assert r.status_code == 200 and r.text == "ok\n"
    pid = r.headers["x-fcmd-id"]
    wait_until(lambda: done(f, pid), what="the form push to be done")
    s = status(f, pid).json()
    assert (s["targets"], s["delivered"], s["errors"]) == (2, 2, [])


def test_unknown_and_malformed_ids_are_404(mock, start_fcmd):
    f = start_fcmd(mock, workers=1)
    for path in ("/push/AAAAAAAAAAAAAAAAAAAAAA", "/push/" + "x" * 65, "/push/a.b", "/push/a%20b",
                 "/push/%00", "/push/a/b"):
        r = requests.get(f.url(path), timeout=5)
        assert r.status_code == 404 and "error" in r.json(), (path, r.text)
    r = requests.get(f.url("/push/"), timeout=5)
    assert r.status_code == 404 and r.json()["error"] == "no such endpoint"


def test_methods_and_query(mock, start_fcmd):
    f = start_fcmd(mock, workers=1)
    pid = send(f, ["m-1"])
    assert requests.post(f.url(f"/push/{pid}"), timeout=5).status_code == 405
    assert requests.head(f.url(f"/push/{pid}"), params={"wait": "5"}, timeout=5).status_code == 200
    for q in ("wait=31", "wait=-1", "wait=abc", "wait=1&wait=2", "other=1", "wait=1e1"):
        r = requests.get(f.url(f"/push/{pid}?{q}"), timeout=5)
        assert r.status_code == 400 and "error" in r.json(), (q, r.text)


def test_wait_answers_when_the_push_is_done(mock, start_fcmd):
    # The mock's 510e tokens are APNs'; for FCM a latency holds the push in flight.
    slow = start_mock_latency(mock)
    try:
        f = start_fcmd(slow, workers=2)
        pid = send(f, ["w-1", "w-2"])
        first = status(f, pid)
        assert first.json()["state"] == "pending" and first.json()["pending"] == 2, first.text
        t0 = time.monotonic()
        r = status(f, pid, wait="20")
        took = time.monotonic() - t0
        s = r.json()
        assert s["state"] == "done" and s["delivered"] == 2, s
        assert took < 15, took  # long before its 20 s: it answered once done
    finally:
        slow.stop()


def test_wait_answers_pending_when_its_time_is_up(mock, start_fcmd):
    slow = start_mock_latency(mock, latency_ms=8000)
    try:
        f = start_fcmd(slow, workers=1)
        pid = send(f, ["p-1"])
        t0 = time.monotonic()
        r = status(f, pid, wait="1")
        took = time.monotonic() - t0
        assert r.status_code == 200 and r.json()["state"] == "pending", r.text
        assert took >= 0.9, took
    finally:
        slow.stop()


def test_a_waiter_whose_status_is_dropped_hears_at_once(mock, start_fcmd):
    # Every push stays in flight for 8 s, so none finishes while this runs:
    # what wakes the waiter is its status dropped for room, answered 404.
    slow = start_mock_latency(mock, latency_ms=8000)
    try:
        f = start_fcmd(slow, workers=1, args=["--push-status-max-bytes", "65536"])
        pid = send(f, ["dropped-0"])
        answer = {}

        def wait():
            t0 = time.monotonic()
            answer["r"] = status(f, pid, wait="20")
            answer["took"] = time.monotonic() - t0
        waiter = threading.Thread(target=wait, daemon=True)
        waiter.start()
        wait_until(lambda: (metric(f, "fcmd_push_waiters") or 0) >= 1 or "r" in answer, what="the request waiting")
        for i in range(600):  # three times what 64 KiB holds
            send(f, [f"filler-{i}"])
        waiter.join(25)
        assert answer["r"].status_code == 404, answer["r"].text
        assert answer["took"] < 7, answer["took"]  # before any push finished (8 s), far before its 20 s
    finally:
        slow.stop()


def test_a_client_that_goes_away_while_waiting_costs_nothing(mock, start_fcmd):
    import socket
    slow = start_mock_latency(mock, latency_ms=3000)
    try:
        f = start_fcmd(slow, workers=1)
        pid = send(f, ["g-1"])
        for _ in range(50):
            s = socket.create_connection(("127.0.0.1", f.port))
            s.sendall(f"GET /push/{pid}?wait=30 HTTP/1.1\r\nHost: x\r\n\r\n".encode())
            s.close()
        wait_until(lambda: done(f, pid), timeout=20, what="the push to be done")
        wait_until(lambda: metric(f, "fcmd_push_waiters") == 0, what="the waiters to go")
        assert f.healthy() and len(f.children()) == 1
    finally:
        slow.stop()


def test_a_stopping_worker_answers_its_waiters(mock, start_fcmd):
    slow = start_mock_latency(mock, latency_ms=6000)
    try:
        f = start_fcmd(slow, workers=1)
        pid = send(f, ["s-1"])
        import threading
        out = {}

        def waiter():
            out["r"] = status(f, pid, wait="30")
        th = threading.Thread(target=waiter)
        th.start()
        wait_until(lambda: metric(f, "fcmd_push_waiters") == 1, what="the request to wait")
        t0 = time.monotonic()
        f.stop()
        th.join(20)
        assert "r" in out and out["r"].status_code == 200, out
        assert time.monotonic() - t0 < 20
    finally:
        slow.stop()


def metric(f, name):
    """The value of an unlabelled series of /metrics, or None."""
    for ln in requests.get(f.url("/metrics"), timeout=5).text.splitlines():
        if ln.split(" ")[0] == name:
            return float(ln.split()[-1])
    return None


def test_report_scope_guards_it(mock, start_fcmd, tmp_path):
    tok = tmp_path / "token"
    tok.write_text("s3cret\n")
    f = start_fcmd(mock, workers=1, args=["--auth-token-file", str(tok)])
    hdr = {"Authorization": "Bearer s3cret"}
    pid = send(f, ["a-1"], headers=hdr)
    assert requests.get(f.url(f"/push/{pid}"), timeout=5).status_code == 401
    wait_until(lambda: requests.get(f.url(f"/push/{pid}"), headers=hdr, timeout=5).json().get("state") == "done",
               what="the push to be done")


def test_named_app_and_apns(mock, start_fcmd, tmp_path):
    conf = tmp_path / "fcmd.conf"
    conf.write_text(f"[app alpha]\napikey = k\ngcm_url = {mock.url()}\n")
    conf.chmod(0o600)
    f = start_fcmd(mock, workers=1, args=["--config", str(conf)])
    pid = send(f, ["n-1"], headers={"X-Fcmd-App": "alpha"})
    wait_until(lambda: done(f, pid), what="the push to be done")
    assert status(f, pid).json()["app"] == "alpha"


def test_the_oldest_go_first_when_memory_is_short(mock, start_fcmd):
    f = start_fcmd(mock, workers=1, args=["--push-status-max-bytes", "65536"])
    ids = [send(f, [f"e-{i}"]) for i in range(600)]  # ~200 bytes each: three times what fits
    wait_until(lambda: done(f, ids[-1]), what="the last push to be done")
    assert status(f, ids[0]).status_code == 404
    assert status(f, ids[-1]).status_code == 200
    assert metric(f, "fcmd_push_status_evicted_total") > 0
    report = f.report()
    assert report["push_status_evicted"] > 0 and 0 < report["push_statuses"] < 600, report


def test_expired_after_the_ttl(mock, start_fcmd):
    f = start_fcmd(mock, workers=1, args=["--push-status-ttl", "1"])
    pid = send(f, ["x-1"])
    wait_until(lambda: done(f, pid), what="the push to be done")
    wait_until(lambda: status(f, pid).status_code == 404, timeout=5, what="the status to expire")


def test_a_respawned_worker_and_a_spool_replay_keep_the_status(mock, start_fcmd, tmp_path):
    import os
    import signal
    slow = start_mock_latency(mock, latency_ms=1500)
    try:
        spool = tmp_path / "spool"
        f = start_fcmd(slow, workers=1, args=["--spool", str(spool)])
        pid = send(f, ["r-1", "r-2", "r-3"])
        os.kill(f.children()[0], signal.SIGKILL)
        wait_until(lambda: done(f, pid), timeout=30, what="the replayed push to be done")
        s = status(f, pid).json()
        assert s["targets"] == 3 and s["delivered"] == 3, s
    finally:
        slow.stop()


def start_mock_latency(mock, latency_ms=1500):
    from conftest import Mock
    return Mock("--latency-ms", str(latency_ms))
