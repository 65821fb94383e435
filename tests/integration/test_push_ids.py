"""Push ids (contract §10): every push answered 200 at /gcm/send (and
/apns/send: test_apns.py) has an id, in the JSON body and in X-Fcmd-Id,
unique across workers, respawns, restarts and instances.  JSON answers are
read with Python's json."""

import os
import re
import signal

import requests

from conftest import wait_until

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
