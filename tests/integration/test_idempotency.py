"""Idempotency-Key (contract §10) without Redis: a retried send is not
queued again, through any worker, after a worker's death, and after a
restart for pushes still in the spool; another body under the same key is
a 422.  What was delivered is read from the mock upstream's own count."""

import os
import signal

import requests

from conftest import Mock, wait_until


def post(f, tokens, key=None, app=None, form=False, payload=None, path="/gcm/send"):
    headers = {"Connection": "close"}  # a connection each: the workers share them
    if key is not None:
        headers["Idempotency-Key"] = key
    if app is not None:
        headers["X-Fcmd-App"] = app
    payload = payload or {"k": "v"}
    if form:
        import json
        return requests.post(f.url(path), data={"tokens": tokens, "payload": json.dumps(payload)},
                             headers=headers, timeout=10)
    return requests.post(f.url(path), json={"tokens": tokens, "payload": payload}, headers=headers, timeout=10)


def sends_of(mock, token):
    """Times the mock upstream was sent token."""
    t = mock.token(token)
    return t["attempts"] if t else 0


def test_a_retry_is_answered_with_the_first_id_and_not_queued(mock, start_fcmd):
    f = start_fcmd(mock, workers=2)
    first = post(f, ["i-1", "i-2"], key="order-1")
    assert first.status_code == 200 and first.json() == {"accepted": 2, "id": first.headers["x-fcmd-id"]}
    workers, tries = set(), 0
    while len(workers) < 2 and tries < 400:  # until both workers have answered the retry
        again = post(f, ["i-1", "i-2"], key="order-1")
        tries += 1
        assert again.status_code == 200, again.text
        assert again.json() == {"accepted": 2, "id": first.json()["id"], "duplicate": True}
        assert again.headers["x-fcmd-id"] == first.json()["id"]
        workers.add(again.headers["x-fcmd-worker"])
    assert len(workers) == 2, workers
    f.wait_idle()
    assert sends_of(mock, "i-1") == 1 and sends_of(mock, "i-2") == 1
    report = f.report()
    assert report["accepted"] == 2 and report["idempotent_duplicates"] == tries, report


def test_form_duplicates_say_so_in_a_header(mock, start_fcmd):
    f = start_fcmd(mock, workers=1)
    a = post(f, ["fm-1"], key="k-form", form=True)
    b = post(f, ["fm-1"], key="k-form", form=True)
    assert a.status_code == b.status_code == 200 and a.text == b.text == "ok\n"
    assert "x-fcmd-duplicate" not in a.headers and b.headers["x-fcmd-duplicate"] == "1"
    assert a.headers["x-fcmd-id"] == b.headers["x-fcmd-id"]


def test_another_body_under_the_key_is_422_and_queues_nothing(mock, start_fcmd):
    f = start_fcmd(mock, workers=1)
    assert post(f, ["m-1"], key="same").status_code == 200
    for other in (dict(tokens=["m-2"]), dict(tokens=["m-1"], payload={"k": "w"}), dict(tokens=["m-1"], form=True),
                  dict(tokens=["m-1"], path="/gcm/send?")):
        tokens = other.pop("tokens")
        r = post(f, tokens, key="same", **other)
        if other.get("path"):  # the same body at the same endpoint: a duplicate
            assert r.status_code == 200 and r.json()["duplicate"] is True, r.text
            continue
        assert r.status_code == 422 and "error" in r.json(), r.text
    f.wait_idle()
    assert sends_of(mock, "m-2") == 0 and f.report()["accepted"] == 1


def test_keys_are_per_app(mock, start_fcmd, tmp_path):
    conf = tmp_path / "fcmd.conf"
    conf.write_text(f"[app alpha]\napikey = k\ngcm_url = {mock.url()}\n")
    conf.chmod(0o600)
    f = start_fcmd(mock, workers=1, args=["--config", str(conf)])
    a = post(f, ["pa-1"], key="shared")
    b = post(f, ["pa-1"], key="shared", app="alpha")
    assert a.status_code == b.status_code == 200
    assert "duplicate" not in b.json() and a.json()["id"] != b.json()["id"]


def test_bad_keys_are_400(mock, start_fcmd):
    f = start_fcmd(mock, workers=1)
    for bad in ("", "a b", "x" * 256, "caf\u00e9".encode().decode("latin-1"), "tab\there"):
        r = post(f, ["b-1"], key=bad)
        assert r.status_code == 400 and "Idempotency-Key" in r.json()["error"], (bad, r.text)
    # Two headers that differ.
    import http.client
    c = http.client.HTTPConnection("127.0.0.1", f.port, timeout=5)
    c.putrequest("POST", "/gcm/send")
    c.putheader("Content-Type", "application/json")
    c.putheader("Idempotency-Key", "one")
    c.putheader("Idempotency-Key", "two")
    body = b'{"tokens":["b-2"],"payload":{}}'
    c.putheader("Content-Length", str(len(body)))
    c.endheaders(body)
    r = c.getresponse()
    assert r.status == 400, r.read()
    c.close()
    assert post(f, ["b-3"], key="x" * 255).status_code == 200
    f.wait_idle()
    assert f.report()["accepted"] == 1


def test_a_refused_push_does_not_keep_its_key(mock, start_fcmd):
    f = start_fcmd(mock, workers=1, args=["--queue-size", "1"])
    slow = Mock("--latency-ms", "3000")
    try:
        g = start_fcmd(slow, workers=1, args=["--queue-size", "1"])
        assert post(g, ["q-1"], key="fill").status_code == 200
        r = post(g, ["q-2"], key="later")
        assert r.status_code == 503, r.text
        # Once there is room the same key goes ahead: the 503 kept nothing.
        ok = wait_until(lambda: (lambda r: r if r.status_code == 200 else None)(post(g, ["q-2"], key="later")),
                        timeout=20, what="the retry to be accepted")
        g.wait_idle()
        # And the key names the retry's push now: a third request is its duplicate.
        again = post(g, ["q-2"], key="later")
        assert again.status_code == 200 and again.json() == {"accepted": 1, "id": ok.json()["id"],
                                                             "duplicate": True}, again.text
        g.wait_idle()
        assert sends_of(slow, "q-2") == 1
    finally:
        slow.stop()
    assert f.healthy()


def test_a_key_survives_a_workers_death_and_a_restart_with_the_spool(mock, start_fcmd, tmp_path):
    slow = Mock("--latency-ms", "60000")  # nothing finishes: the pushes stay in the spool
    spool = tmp_path / "spool"
    try:
        f = start_fcmd(slow, workers=1, args=["--spool", str(spool)])
        first = post(f, ["sp-1"], key="durable")
        assert first.status_code == 200
        pid = first.json()["id"]
        os.kill(f.children()[0], signal.SIGKILL)
        wait_until(lambda: len(f.children()) == 1 and f.healthy(), what="a new worker")
        r = post(f, ["sp-1"], key="durable")
        assert r.status_code == 200 and r.json() == {"accepted": 1, "id": pid, "duplicate": True}, r.text
        # The whole instance killed, and started again on the same spool.
        os.killpg(f.proc.pid, signal.SIGKILL)
        f.proc.wait(10)
    finally:
        slow.stop()
    g = start_fcmd(mock, workers=2, args=["--spool", str(spool)])
    wait_until(lambda: sends_of(mock, "sp-1") == 1, timeout=30, what="the replayed push to be delivered")
    for _ in range(4):
        r = post(g, ["sp-1"], key="durable")
        assert r.status_code == 200 and r.json() == {"accepted": 1, "id": pid, "duplicate": True}, r.text
    g.wait_idle()
    assert sends_of(mock, "sp-1") == 1


def test_after_a_restart_every_key_in_the_spool_is_known_before_its_push_is_queued(start_fcmd, tmp_path):
    slow = Mock("--latency-ms", "60000")  # nothing finishes while the test runs
    spool = tmp_path / "spool"
    try:
        f = start_fcmd(slow, workers=1, args=["--spool", str(spool)])
        ids = {}
        for i in range(3):
            r = post(f, [f"rs-{i}"], key=f"restart-{i}")
            assert r.status_code == 200
            ids[i] = r.json()["id"]
        os.killpg(f.proc.pid, signal.SIGKILL)
        f.proc.wait(10)
        # A queue of one target: the replay takes one push at a time, the
        # others wait in the spool - and their keys are known already.
        g = start_fcmd(slow, workers=1, args=["--spool", str(spool), "--queue-size", "1"])
        wait_until(lambda: g.report()["replayed"] == 3, what="the segment to be adopted")
        for i in (2, 1, 0):
            r = post(g, [f"rs-{i}"], key=f"restart-{i}")
            assert r.status_code == 200 and r.json() == {"accepted": 1, "id": ids[i], "duplicate": True}, r.text
    finally:
        slow.stop()
