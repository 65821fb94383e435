"""Push statuses and Idempotency-Key across a fleet (--redis, contract §10):
real redis-server and haproxy, two or more instances sharing them.  The
oracles are the mock upstream's own counts, Python's json, and Redis itself,
asked with a RESP client written here (test_push_ids.resp)."""

import json
import os
import signal
import time

import requests

from conftest import accepted, wait_until
from test_fleet import redis, start_haproxy  # noqa: F401 (fixtures)
from test_fleet_queue import wait_ready
from test_push_ids import resp

KEYS = {"id", "app", "upstream", "targets", "pending", "delivered", "canonical", "invalid", "failed", "state",
        "errors"}


def status(base, pid, **params):
    return requests.get(f"{base}/push/{pid}", params=params, headers={"Connection": "close"}, timeout=40)


def send(base, tokens, key=None, payload=None, form=False):
    headers = {"Connection": "close"}
    if key is not None:
        headers["Idempotency-Key"] = key
    payload = payload or {"k": 1}
    if form:
        return requests.post(base + "/gcm/send", data={"tokens": tokens, "payload": json.dumps(payload)},
                             headers=headers, timeout=10)
    return requests.post(base + "/gcm/send", json={"tokens": tokens, "payload": payload}, headers=headers, timeout=10)


def done_at(base, pid):
    r = status(base, pid)
    return r.status_code == 200 and r.json()["state"] == "done"


def fleet(start_fcmd, mock, redis, n=2, extra=(), workers=2):
    inst = [start_fcmd(mock, workers=workers, args=["--redis", redis.url, "--retries", "0", *extra])
            for _ in range(n)]
    for f in inst:
        wait_ready(f)
    return inst


def hash_of(redis, pid):
    flat = resp(redis.port, "HGETALL", f"fcmd:push:{pid}")
    return {flat[i].decode(): flat[i + 1].decode() for i in range(0, len(flat), 2)}


def test_a_push_sent_to_one_instance_is_answered_by_another(redis, mock, start_fcmd):  # noqa: F811
    a, b = fleet(start_fcmd, mock, redis, extra=["--push-status-ttl", "600"])
    tokens = ["ok-1", "ok-2", "canon-3", "notreg-4", "invalid-5", "unavail-6"]
    r = send(a.base, tokens)
    assert r.status_code == 200 and accepted(r) == 6
    pid = r.json()["id"]
    wait_until(lambda: done_at(b.base, pid), what="the other instance to see the push done")
    for base in (a.base, b.base):
        s = status(base, pid).json()
        assert set(s) == KEYS, s
        assert (s["id"], s["app"], s["upstream"], s["state"]) == (pid, "default", "fcm", "done")
        assert (s["targets"], s["pending"], s["delivered"], s["canonical"], s["invalid"], s["failed"]) == \
            (6, 0, 3, 1, 2, 1), s
        errors = {e["token"]: e["reason"] for e in s["errors"]}
        assert set(errors) == {"notreg-4", "invalid-5", "unavail-6"}, s
        assert errors["notreg-4"] == "NotRegistered"
    # One small hash in Redis, kept --push-status-ttl once done.
    h = hash_of(redis, pid)
    assert (h["targets"], h["delivered"], h["invalid"], h["failed"]) == ("6", "3", "2", "1"), h
    ttl = resp(redis.port, "TTL", f"fcmd:push:{pid}")
    assert 0 < ttl <= 600, ttl
    # The mock saw what the status says.
    for t in tokens[:3]:
        assert mock.token(t), t


def test_a_pending_push_has_the_pending_ttl_and_wait_answers_early(redis, start_mock, start_fcmd):  # noqa: F811
    slow = start_mock("--latency-ms", "1500")
    a, b = fleet(start_fcmd, slow, redis)
    pid = send(a.base, ["w-1", "w-2"]).json()["id"]
    # Before it is done: pending through the other instance, with the longer ttl.
    wait_until(lambda: status(b.base, pid).status_code == 200, what="the push known to the other instance")
    s = status(b.base, pid).json()
    assert s["state"] == "pending" and s["targets"] == 2, s
    assert resp(redis.port, "TTL", f"fcmd:push:{pid}") > 3600
    t0 = time.monotonic()
    r = status(b.base, pid, wait="20")
    took = time.monotonic() - t0
    assert r.status_code == 200 and r.json()["state"] == "done" and r.json()["delivered"] == 2, r.text
    assert took < 10, took  # as soon as it was done, not at the end of the wait


def test_wait_ends_at_s_while_the_push_is_pending(redis, start_mock, start_fcmd):  # noqa: F811
    stalled = start_mock("--latency-ms", "60000")
    a, b = fleet(start_fcmd, stalled, redis)
    pid = send(a.base, ["s-1"]).json()["id"]
    wait_until(lambda: status(b.base, pid).status_code == 200, what="the push known to the other instance")
    t0 = time.monotonic()
    r = status(b.base, pid, wait="2")
    took = time.monotonic() - t0
    assert r.status_code == 200 and r.json()["state"] == "pending" and r.json()["pending"] == 1, r.text
    assert 1.8 <= took < 6, took
    # More waiting at once than a worker asks Redis about at a time: each still
    # answers at its end, none with a 503.
    import concurrent.futures
    with concurrent.futures.ThreadPoolExecutor(60) as pool:
        answers = list(pool.map(lambda _: status(b.base, pid, wait="2"), range(60)))
    assert all(a.status_code == 200 and a.json()["state"] == "pending" for a in answers), \
        [(a.status_code, a.text) for a in answers if a.status_code != 200][:3]


def test_an_unknown_id_is_404_after_a_grace_and_503_while_redis_is_down(redis, mock, start_fcmd):  # noqa: F811
    (a,) = fleet(start_fcmd, mock, redis, n=1, workers=1)
    t0 = time.monotonic()
    r = status(a.base, "no-such-push")
    assert r.status_code == 404 and "error" in r.json(), r.text
    assert time.monotonic() - t0 >= 2.0  # it may have been on its way to Redis
    local = send(a.base, ["d-1"]).json()["id"]
    wait_until(lambda: done_at(a.base, local), what="the local push done")
    redis.stop()
    wait_until(lambda: requests.get(a.url("/readyz"), timeout=2).status_code == 503, what="Redis seen down")
    r = status(a.base, "no-such-push")
    assert r.status_code == 503 and "redis" in r.json()["error"], r.text
    # What the instance knows itself it still says.
    r = status(a.base, local)
    assert r.status_code == 200 and r.json()["state"] == "done", r.text


def test_idempotency_keys_hold_across_instances(redis, mock, start_fcmd):  # noqa: F811
    a, b = fleet(start_fcmd, mock, redis, extra=["--idempotency-ttl", "900"])
    first = send(a.base, ["k-1", "k-2"], key="order-7")
    assert first.status_code == 200, first.text
    pid = first.json()["id"]
    again = send(b.base, ["k-1", "k-2"], key="order-7")
    assert again.status_code == 200, again.text
    assert again.json() == {"accepted": 2, "id": pid, "duplicate": True}
    assert again.headers["x-fcmd-id"] == pid
    other = send(b.base, ["k-1", "k-3"], key="order-7")
    assert other.status_code == 422 and "error" in other.json(), other.text
    # Form answers say it in a header.
    f1 = send(b.base, ["k-4"], key="form-1", form=True)
    f2 = send(a.base, ["k-4"], key="form-1", form=True)
    assert f1.status_code == f2.status_code == 200 and f1.text == f2.text == "ok\n"
    assert f2.headers["x-fcmd-duplicate"] == "1" and f2.headers["x-fcmd-id"] == f1.headers["x-fcmd-id"]
    # Redis holds the key with the idempotency ttl.
    ttl = resp(redis.port, "TTL", "fcmd:idem::order-7")
    assert 0 < ttl <= 900, ttl
    wait_until(lambda: all(mock.token(t) for t in ("k-1", "k-2", "k-4")), what="the first pushes delivered")
    for f in (a, b):
        f.wait_idle()  # nothing more pending anywhere: what the mock counted is final
    for t in ("k-1", "k-2", "k-4"):
        assert mock.token(t)["attempts"] == 1, (t, mock.token(t))
    assert not mock.token("k-3")


def test_a_retried_post_through_haproxy_is_delivered_once(redis, mock, start_fcmd, start_haproxy):  # noqa: F811
    inst = fleet(start_fcmd, mock, redis, n=3, workers=1)
    lb = start_haproxy([f.port for f in inst])
    answers = [send(lb.base, ["h-1", "h-2"], key="retry-1") for _ in range(6)]  # round robin: every instance
    assert all(r.status_code == 200 for r in answers), [r.text for r in answers]
    ids = {r.json()["id"] for r in answers}
    assert len(ids) == 1, ids
    assert sum(1 for r in answers if r.json().get("duplicate")) == 5
    pid = ids.pop()
    wait_until(lambda: all(done_at(f.base, pid) for f in inst), what="the push done, seen from every instance")
    for t in ("h-1", "h-2"):
        assert mock.token(t)["attempts"] == 1, mock.token(t)


def test_redis_down_idempotency_falls_back_to_the_instance(redis, mock, start_fcmd):  # noqa: F811
    (a,) = fleet(start_fcmd, mock, redis, n=1, workers=2)
    redis.stop()
    wait_until(lambda: requests.get(a.url("/readyz"), timeout=2).status_code == 503, what="Redis seen down")
    first = send(a.base, ["fb-1"], key="fb")
    assert first.status_code == 200, first.text
    for _ in range(6):  # through either worker: the instance's ledger
        again = send(a.base, ["fb-1"], key="fb")
        assert again.status_code == 200 and again.json()["duplicate"] is True, again.text
        assert again.json()["id"] == first.json()["id"]
    wait_until(lambda: mock.token("fb-1"), what="the push delivered")
    assert mock.token("fb-1")["attempts"] == 1
    assert "Idempotency-Key" in a.log_text()
    fallbacks = [ln for ln in requests.get(a.url("/metrics"), timeout=5).text.splitlines()
                 if ln.startswith("fcmd_idempotency_fallbacks_total ")]
    # Only the first went to Redis: the retries were duplicates in the instance's ledger already.
    assert fallbacks and int(float(fallbacks[0].split()[1])) == 1, fallbacks


def test_statuses_are_fleet_wide_with_the_queue_in_redis(redis, start_mock, start_fcmd):  # noqa: F811
    """A push accepted by one instance and delivered by another (the first
    was killed holding it) is done as seen from any instance."""
    stalled, fast = start_mock("--latency-ms", "60000"), start_mock()
    args = ["--redis", redis.url, "--redis-queue", "--redis-claim-after", "2"]
    doomed = start_fcmd(stalled, workers=1, args=args)
    wait_ready(doomed)
    pid = send(doomed.base, ["q-1", "q-2"]).json()["id"]
    wait_until(lambda: stalled.stats(summary=True)["requests"] >= 1, what="the push in flight at the doomed one")
    os.killpg(doomed.proc.pid, signal.SIGKILL)
    doomed.proc.wait(5)
    b = start_fcmd(fast, workers=1, args=args)
    c = start_fcmd(fast, workers=1, args=args)
    for f in (b, c):
        wait_ready(f)
    wait_until(lambda: all(fast.token(t) for t in ("q-1", "q-2")), timeout=30, what="the claimed push delivered")
    for f in (b, c):
        wait_until(lambda: done_at(f.base, pid), what="the push done from every live instance")
        s = status(f.base, pid).json()
        assert (s["targets"], s["delivered"], s["pending"]) == (2, 2, 0), s


def test_the_documented_acl_user_is_enough(tmp_path, start_mock, start_fcmd):
    """docs/FLEET.md's ACL user: a fleet run as that user sends, queues,
    claims, reports, drains, and keeps statuses and keys, with no NOPERM."""
    from test_fleet import Redis
    doc = open(os.path.join(os.path.dirname(__file__), "..", "..", "docs", "FLEET.md")).read()
    line = next(ln for ln in doc.splitlines() if ln.startswith("user fcmd on >PASSWORD "))
    r = Redis(tmp_path)
    try:
        rules = line.split()[2:]  # after "user fcmd"
        rules[1] = ">s3cret-acl"
        assert resp(r.port, "ACL", "SETUSER", "fcmd", *rules) == "OK"
        pw = tmp_path / "redis-password"
        pw.write_text("s3cret-acl\n")
        pw.chmod(0o600)
        mock = start_mock()
        url = f"redis://fcmd:@127.0.0.1:{r.port}"
        args = ["--redis", url, "--redis-password-file", str(pw), "--redis-queue", "--redis-claim-after", "2"]
        a, b = (start_fcmd(mock, workers=1, args=args) for _ in range(2))
        for f in (a, b):
            wait_ready(f)
        first = send(a.base, ["acl-1", "notreg-acl"], key="acl-key")
        assert first.status_code == 200, first.text
        pid = first.json()["id"]
        dup = send(b.base, ["acl-1", "notreg-acl"], key="acl-key")
        assert dup.status_code == 200 and dup.json().get("duplicate") is True, dup.text
        wait_until(lambda: done_at(b.base, pid) and done_at(a.base, pid), what="the push done, seen from both")
        wait_until(lambda: requests.get(a.url("/gcm/report/notregistered"), timeout=5).json()["tokens"],
                   what="the dead token drained through Redis")
        for f in (a, b):
            assert "NOPERM" not in f.log_text(), f.log_text()
    finally:
        r.stop()


def test_a_refused_batch_is_counted_and_the_key_falls_back(redis, start_mock, start_fcmd):  # noqa: F811
    """Redis refusing writes (maxmemory reached, noeviction): the statuses'
    batch is refused and its outcomes counted in fleet_status_lost, the
    key's claim is refused and the instance's ledger alone judges it."""
    mock = start_mock("--latency-ms", "300")
    (a,) = fleet(start_fcmd, mock, redis, n=1, workers=1)
    assert resp(redis.port, "CONFIG", "SET", "maxmemory-policy", "noeviction") == "OK"
    assert resp(redis.port, "CONFIG", "SET", "maxmemory", "1") == "OK"
    try:
        r = send(a.base, ["oom-1", "oom-2"], key="oom-key")
        assert r.status_code == 200, r.text

        def counted():
            text = requests.get(a.url("/metrics"), timeout=5).text
            got = {ln.split()[0]: float(ln.split()[1]) for ln in text.splitlines()
                   if ln.startswith(("fcmd_fleet_status_lost_total ", "fcmd_idempotency_fallbacks_total "))}
            return got if got.get("fcmd_fleet_status_lost_total", 0) >= 2 else None
        got = wait_until(counted, timeout=15, what="the refused batch counted")
        assert got["fcmd_idempotency_fallbacks_total"] == 1, got
        assert "Idempotency-Key" in a.log_text() and "statuses of" in a.log_text()
    finally:
        assert resp(redis.port, "CONFIG", "SET", "maxmemory", "0") == "OK"
    # The instance's own status still knows the push.
    pid = r.json()["id"]
    s = status(a.base, pid)
    assert s.status_code == 200 and s.json()["state"] == "done" and s.json()["delivered"] == 2, s.text


def test_keys_and_hashes_someone_else_wrote_cost_nothing(redis, mock, start_fcmd):  # noqa: F811
    """Anyone who can write to Redis can fill fcmd's keys: a huge value under
    an Idempotency-Key, a hash with huge or garbage fields under a push id.
    They are read as no answer (the instance's ledger decides) or no status,
    and never cost the connection."""
    (a,) = fleet(start_fcmd, mock, redis, n=1, workers=1)
    big = "v" * 100000
    assert resp(redis.port, "SET", "fcmd:idem::hostile", big) == "OK"
    r = send(a.base, ["hx-1"], key="hostile")
    assert r.status_code == 200 and "duplicate" not in r.json(), r.text
    assert resp(redis.port, "HSET", "fcmd:push:forged", "targets", "2", "t0", big, "r0", big, "junk", big) == 4
    s = status(a.base, "forged")
    assert s.status_code == 200, s.text
    assert s.json()["targets"] == 2 and s.json()["errors"] == [] and s.json()["state"] == "pending", s.text
    assert resp(redis.port, "HSET", "fcmd:push:garbage", "targets", "many") == 1
    assert status(a.base, "garbage").status_code == 404
    assert "lost redis" not in a.log_text()
    fallbacks = [ln for ln in requests.get(a.url("/metrics"), timeout=5).text.splitlines()
                 if ln.startswith(("fcmd_idempotency_fallbacks_total ", "fcmd_redis_unreachable "))]
    assert sorted(fallbacks) == ["fcmd_idempotency_fallbacks_total 1", "fcmd_redis_unreachable 0"], fallbacks


def test_local_statuses_write_no_hash_and_keys_stay_fleet_wide(redis, mock, start_fcmd):  # noqa: F811
    a, b = fleet(start_fcmd, mock, redis, extra=["--redis-local-statuses"])
    r = send(a.base, ["ls-1"], key="local-1")
    assert r.status_code == 200, r.text
    pid = r.json()["id"]
    wait_until(lambda: done_at(a.base, pid), what="the push done where it was sent")
    assert resp(redis.port, "EXISTS", f"fcmd:push:{pid}") == 0
    assert status(b.base, pid).status_code == 404  # the other instance does not know it
    dup = send(b.base, ["ls-1"], key="local-1")
    assert dup.status_code == 200 and dup.json() == {"accepted": 1, "id": pid, "duplicate": True}, dup.text


def test_local_statuses_need_redis():
    import subprocess
    from conftest import FCMD_BIN
    p = subprocess.run([FCMD_BIN, "--apikey", "k", "--redis-local-statuses"], capture_output=True, text=True,
                       timeout=10)
    assert p.returncode == 2 and p.stderr.count("\n") == 1 and "--redis" in p.stderr, p.stderr
