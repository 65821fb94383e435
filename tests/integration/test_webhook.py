"""The webhook (contract §10): outcome events POSTed in signed batches to a
receiver on loopback (webhook_receiver.py: Python's http.server, hmac and
json, none of which fcmd uses), checked against what the mock upstream and
GET /push/{id} say happened.  The receiver also fails, stalls, floods and
resets, and the bounds must hold while deliveries go on."""

import hashlib
import hmac
import json
import os
import signal
import socket
import subprocess
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
import requests
from prometheus_client.parser import text_string_to_metric_families

from conftest import FCMD_BIN, ROOT, accepted, free_port, stop_process, wait_until
from webhook_receiver import Receiver

SECRET = "whsec-7c1e0d9a"
MIXED = ["ok-1", "ok-2", "canon-3", "notreg-4", "invalid-5", "unavail-6"]
COMMON = {"event_id", "type", "id", "app", "upstream", "token", "at"}


@pytest.fixture
def receivers():
    made = []

    def make(**kw):
        r = Receiver(**kw)
        made.append(r)
        return r

    yield make
    for r in made:
        r.stop()


def secret_file(tmp_path, text=SECRET):
    p = tmp_path / "webhook.secret"
    p.write_text(text + "\n")
    p.chmod(0o600)
    return str(p)


def hook_args(tmp_path, rcv, *more, secret=True):
    args = ["--webhook", rcv.url, "--retries", "0"]
    if secret:
        args += ["--webhook-secret-file", secret_file(tmp_path)]
    return args + list(more)


def send(f, tokens, **kw):
    r = f.send_json({"tokens": tokens, "payload": {"k": 1}}, **kw)
    assert r.status_code == 200, r.text
    assert accepted(r) == len(tokens)
    return r.json()["id"]


def webhook_report(f):
    return {k: v for k, v in f.report().items() if k.startswith("webhook_")}


def test_every_outcome_is_told_once_signed(mock, start_fcmd, receivers, tmp_path):
    rcv = receivers(secret=SECRET)
    f = start_fcmd(mock, workers=2, args=hook_args(tmp_path, rcv, "--webhook-events", "all"))
    pid = send(f, MIXED)
    wait_until(lambda: rcv.of_type("done"), what="the done event")
    wait_until(lambda: len(rcv.events) == len(MIXED) + 1, what="an event per target and one done")
    assert rcv.problems == [] and rcv.duplicates == 0
    by_token = {e["token"]: e for e in rcv.events.values() if e["type"] != "done"}
    assert set(by_token) == set(MIXED)
    for e in by_token.values():
        assert COMMON <= set(e), e
        assert (e["id"], e["app"], e["upstream"]) == (pid, "default", "fcm")
        assert time.strptime(e["at"][:19], "%Y-%m-%dT%H:%M:%S") and e["at"].endswith("Z")
    assert by_token["ok-1"]["type"] == by_token["ok-2"]["type"] == "delivered"
    assert by_token["canon-3"]["type"] == "canonical"
    assert by_token["canon-3"]["canonical"] == mock.token("canon-3").get("canonical", "canonical-canon-3")
    assert (by_token["notreg-4"]["type"], by_token["notreg-4"]["reason"]) == ("invalid", "NotRegistered")
    assert (by_token["invalid-5"]["type"], by_token["invalid-5"]["reason"]) == ("invalid", "InvalidRegistration")
    assert by_token["unavail-6"]["type"] == "failed" and "Unavailable" in by_token["unavail-6"]["reason"]
    # The done event carries the push's counts, as its status has them.
    done = rcv.of_type("done")[0]
    status = requests.get(f.url(f"/push/{pid}"), timeout=5).json()
    assert done["event_id"] == f"{pid}.done" and done["token"] is None
    assert (done["targets"], done["delivered"], done["invalid"], done["failed"]) == \
        (status["targets"], status["delivered"], status["invalid"], status["failed"]) == (6, 3, 2, 1)
    # Event ids are the push's id and the target's place: unique, and the
    # same if an outcome is ever told again.
    assert len({e["event_id"] for e in rcv.events.values()}) == len(rcv.events)
    assert all(e["event_id"].startswith(pid + ".") for e in rcv.events.values())
    wait_until(lambda: webhook_report(f)["webhook_events"] == 7, what="the report to count 7 events")
    w = webhook_report(f)
    assert (w["webhook_failed_attempts"], w["webhook_dropped"], w["webhook_pending"]) == (0, 0, 0)


def test_default_events_are_the_bad_news(mock, start_fcmd, receivers, tmp_path):
    rcv = receivers(secret=None)
    f = start_fcmd(mock, workers=1, args=hook_args(tmp_path, rcv, secret=False))
    send(f, MIXED)
    f.wait_idle()
    wait_until(lambda: len(rcv.events) == 4, what="invalid, canonical and failed events")
    assert sorted(e["type"] for e in rcv.events.values()) == ["canonical", "failed", "invalid", "invalid"]
    assert rcv.problems == []  # unsigned without a secret, and says so by having no header


def test_a_canonical_is_a_delivery_to_who_asks_for_deliveries_only(mock, start_fcmd, receivers, tmp_path):
    rcv = receivers(secret=SECRET)
    f = start_fcmd(mock, workers=1, args=hook_args(tmp_path, rcv, "--webhook-events", "delivered"))
    send(f, ["ok-1", "canon-3", "notreg-4"])
    f.wait_idle()
    wait_until(lambda: len(rcv.events) == 2, what="two delivered events")
    assert {e["token"]: e["type"] for e in rcv.events.values()} == {"ok-1": "delivered", "canon-3": "delivered"}


def test_batches_hold_at_most_500_and_come_in_order(mock, start_fcmd, receivers, tmp_path):
    rcv = receivers(secret=SECRET)
    f = start_fcmd(mock, workers=1, args=hook_args(tmp_path, rcv, "--webhook-events", "delivered"))
    tokens = [f"ok-b{i}" for i in range(1600)]
    pid = send(f, tokens[:800])
    pid2 = send(f, tokens[800:])
    wait_until(lambda: len(rcv.events) == 1600, timeout=30, what="1600 events")
    sizes = [len(b) for b in rcv.batches]
    assert max(sizes) <= 500 and sum(sizes) == 1600 and rcv.duplicates == 0
    assert max(sizes) == 500, sizes  # a full batch goes at once
    # One worker, one receiver: the first push's events all come before the second's.
    order = [e["id"] for b in rcv.batches for e in b]
    assert order.index(pid2) > len(order) - 1 - order[::-1].index(pid)


def test_a_failing_receiver_gets_every_event_later(mock, start_fcmd, receivers, tmp_path):
    rcv = receivers(secret=SECRET, plan=lambda n: "fail" if n < 3 else "ok")
    f = start_fcmd(mock, workers=2, args=hook_args(tmp_path, rcv))
    send(f, ["notreg-a", "notreg-b", "invalid-c"])
    f.wait_idle()
    wait_until(lambda: len(rcv.events) == 3, timeout=30, what="the events after three refusals")
    w = webhook_report(f)
    assert w["webhook_failed_attempts"] == 3 and w["webhook_events"] == 3 and w["webhook_dropped"] == 0
    assert "webhook http://127.0.0.1" in f.log_text() and "HTTP 500" in f.log_text()


@pytest.mark.parametrize("behaviour", ["reset", "redirect"])
def test_no_answer_is_no_acknowledgement(mock, start_fcmd, receivers, tmp_path, behaviour):
    rcv = receivers(secret=SECRET, plan=lambda n: behaviour if n < 2 else "ok")
    f = start_fcmd(mock, workers=1, args=hook_args(tmp_path, rcv))
    send(f, ["notreg-r1", "notreg-r2"])
    wait_until(lambda: len(rcv.events) == 2, timeout=30, what="the events once the receiver behaves")
    assert rcv.requests == 3  # the redirect was not followed
    assert webhook_report(f)["webhook_failed_attempts"] == 2


@pytest.mark.parametrize("behaviour", ["huge", "endless"])
def test_a_flooding_answer_is_cut_and_still_acknowledges(mock, start_fcmd, receivers, tmp_path, behaviour):
    rcv = receivers(secret=SECRET, plan=lambda n: behaviour if n == 0 else "ok")
    f = start_fcmd(mock, workers=1, args=hook_args(tmp_path, rcv))
    send(f, ["notreg-h1"])
    wait_until(lambda: webhook_report(f)["webhook_events"] == 1, timeout=15, what="the batch acknowledged")
    send(f, ["notreg-h2"])
    wait_until(lambda: len(rcv.events) == 2, timeout=15, what="the next batch")
    assert rcv.requests == 2 and webhook_report(f)["webhook_failed_attempts"] == 0
    rcv.release.set()


def test_a_stalled_receiver_never_holds_up_deliveries(mock, start_fcmd, receivers, tmp_path):
    rcv = receivers(secret=SECRET, plan=lambda n: "slow" if n == 0 else "ok")
    f = start_fcmd(mock, workers=1, args=hook_args(tmp_path, rcv, "--webhook-events", "all"))
    send(f, ["ok-s0"])
    wait_until(lambda: rcv.requests == 1, what="the first batch to stall")
    tokens = [f"ok-s{i}" for i in range(1, 301)]
    send(f, tokens)
    # Every push reaches the upstream while the receiver holds its batch.
    wait_until(lambda: all(mock.token(t) for t in tokens), what="deliveries during the stall")
    assert rcv.requests == 1 and f.report()["pending"] == 0
    # 10 s without an answer fails the batch; the retry carries everything:
    # two events of the first push, 300 deliveries and a done of the second.
    wait_until(lambda: len(rcv.events) == 303, timeout=40, what="every event after the stall")
    assert webhook_report(f)["webhook_failed_attempts"] == 1


def test_events_past_max_age_are_dropped_and_counted(mock, start_fcmd, receivers, tmp_path):
    rcv = receivers(secret=SECRET, plan=lambda n: "fail")
    f = start_fcmd(mock, workers=1, args=hook_args(tmp_path, rcv, "--webhook-max-age", "2"))
    send(f, ["notreg-m1", "notreg-m2"])
    wait_until(lambda: webhook_report(f)["webhook_pending"] == 2, what="two events waiting")
    assert webhook_report(f)["webhook_oldest_seconds"] <= 2
    wait_until(lambda: webhook_report(f)["webhook_dropped"] == 2, timeout=15, what="both dropped after 2 s")
    w = webhook_report(f)
    assert (w["webhook_pending"], w["webhook_queue_bytes"], w["webhook_oldest_seconds"]) == (0, 0, 0)
    assert rcv.events == {} and "--webhook-max-age" in f.log_text()


def test_memory_is_bounded_and_drops_are_counted(mock, start_fcmd, tmp_path, receivers):
    rcv = receivers(secret=SECRET, plan=lambda n: "fail")
    bound = 65536
    f = start_fcmd(mock, workers=2, args=hook_args(tmp_path, rcv, "--webhook-events", "all",
                                                   "--webhook-queue-bytes", str(bound)))
    for i in range(4):
        send(f, [f"ok-q{i}-{k}" + "x" * 100 for k in range(500)])
    f.wait_idle()
    w = webhook_report(f)
    assert 0 < w["webhook_queue_bytes"] <= bound, w
    assert w["webhook_dropped"] > 0 and w["webhook_pending"] + w["webhook_dropped"] == 2004, w
    assert f.report()["successes"] == 2000  # deliveries are not what the bound costs


def test_each_app_has_its_own_receiver(mock, start_fcmd, receivers, tmp_path):
    main, alpha = receivers(secret=SECRET), receivers(secret="alpha-secret")
    (tmp_path / "alpha.secret").write_text("alpha-secret\n")
    conf = tmp_path / "fcmd.conf"
    conf.write_text(f"[app alpha]\napikey = k\ngcm_url = {mock.url()}\nwebhook = {alpha.url}\n"
                    f"webhook_secret_file = {tmp_path / 'alpha.secret'}\nwebhook_events = all\n"
                    f"[app beta]\napikey = k\ngcm_url = {mock.url()}\n")
    conf.chmod(0o600)
    f = start_fcmd(mock, workers=2, args=hook_args(tmp_path, main, "--config", str(conf)))
    send(f, ["notreg-d"])
    send(f, ["ok-a", "notreg-a"], headers={"X-Fcmd-App": "alpha"})
    send(f, ["notreg-b"], headers={"X-Fcmd-App": "beta"})
    wait_until(lambda: len(alpha.events) == 3, what="alpha's three events")
    wait_until(lambda: len(main.events) == 2, what="the default app's and beta's events")
    assert {e["app"] for e in alpha.events.values()} == {"alpha"}
    assert sorted((e["app"], e["token"]) for e in main.events.values()) == [("beta", "notreg-b"), ("default", "notreg-d")]
    assert main.problems == [] and alpha.problems == []


def test_a_stop_sends_what_waits(mock, start_fcmd, receivers, tmp_path):
    rcv = receivers(secret=SECRET)
    f = start_fcmd(mock, workers=1, args=hook_args(tmp_path, rcv, "--webhook-events", "all"))
    send(f, ["ok-t1", "notreg-t2"])
    f.wait_idle()
    assert f.stop() == 0
    assert len(rcv.events) == 3  # inside its batch window, and still sent before the exit


def test_metrics_and_secrets(mock, start_fcmd, receivers, tmp_path):
    rcv = receivers(secret=SECRET)
    f = start_fcmd(mock, workers=1, args=hook_args(tmp_path, rcv, "--log-level", "debug"))
    send(f, ["notreg-x"])
    wait_until(lambda: len(rcv.events) == 1, what="the event")
    text = requests.get(f.url("/metrics"), timeout=5).text
    fams = {m.name: m for m in text_string_to_metric_families(text)}
    for name in ("fcmd_webhook_events", "fcmd_webhook_failed_attempts", "fcmd_webhook_dropped"):
        assert fams[name].type == "counter", name
    for name in ("fcmd_webhook_pending", "fcmd_webhook_queue_bytes", "fcmd_webhook_oldest_seconds"):
        assert fams[name].type == "gauge", name
    assert fams["fcmd_webhook_events"].samples[0].value == 1
    f.stop()
    assert SECRET not in f.log_text()


def test_no_webhook_keys_without_a_webhook(mock, start_fcmd):
    f = start_fcmd(mock, workers=1)
    assert not [k for k in f.report() if k.startswith("webhook")]


def test_the_secret_from_the_environment(mock, start_fcmd, receivers, tmp_path):
    rcv = receivers(secret="from-env")
    env = dict(os.environ, FCMD_WEBHOOK_SECRET="from-env")
    f = start_fcmd(mock, workers=1, args=hook_args(tmp_path, rcv, secret=False), env=env)
    send(f, ["notreg-e"])
    wait_until(lambda: len(rcv.events) == 1, what="the event signed with the environment's secret")
    assert rcv.problems == []
    with open(f"/proc/{f.children()[0]}/environ", "rb") as e:
        assert b"from-env" not in e.read()


@pytest.mark.parametrize("args, words", [
    (["--webhook", "ftp://example.com/hook"], "--webhook"),
    (["--webhook", "http://exa mple.com/hook"], "space or a control character"),
    (["--webhook", "http://example.com/" + "a" * 2100], "--webhook"),
    (["--webhook", "http://127.0.0.1:1/", "--webhook-events", "delivered,bogus"], "--webhook-events"),
    (["--webhook", "http://127.0.0.1:1/", "--webhook-events", ""], "--webhook-events"),
    (["--webhook", "http://127.0.0.1:1/", "--webhook-secret-file", "/nonexistent/secret"], "--webhook-secret-file"),
    (["--webhook", "http://127.0.0.1:1/", "--webhook-max-age", "0"], "--webhook-max-age"),
    (["--webhook", "http://127.0.0.1:1/", "--webhook-queue-bytes", "10"], "--webhook-queue-bytes"),
])
def test_bad_settings_stop_the_start(args, words):
    r = subprocess.run([FCMD_BIN, "--apikey", "k", "--check-config"] + args, capture_output=True, text=True,
                       timeout=10)
    assert r.returncode == 2, (r.returncode, r.stdout, r.stderr)
    assert words in r.stderr and len(r.stderr.strip().splitlines()) == 1, r.stderr


def test_a_reload_keeps_the_webhook(mock, start_fcmd, receivers, tmp_path):
    rcv = receivers(secret=SECRET)
    f = start_fcmd(mock, workers=1, args=hook_args(tmp_path, rcv))
    old = f.children()
    os.kill(f.proc.pid, signal.SIGHUP)
    wait_until(lambda: f.children() and set(f.children()).isdisjoint(old), what="a new generation")
    send(f, ["notreg-h"])
    wait_until(lambda: len(rcv.events) == 1, what="the event from the new generation")


def test_the_readmes_receiver(mock, start_fcmd, tmp_path):
    """The README's ten lines, run as they are (with this test's file and port)."""
    with open(os.path.join(ROOT, "README.md")) as f:
        readme = f.read()
    start = readme.index("```python\nimport hashlib, hmac")
    code = readme[start + len("```python\n"):readme.index("```", start + 10)]
    assert len(code.strip().splitlines()) == 10
    port = free_port()
    path = secret_file(tmp_path)
    code = code.replace('"/etc/app/webhook-secret"', repr(path)).replace("8080", str(port))
    proc = subprocess.Popen(["/usr/bin/python3", "-c", code], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True)
    try:
        wait_until(lambda: port_open(port), what="the receiver to listen")
        f = start_fcmd(mock, workers=1, args=["--webhook", f"http://127.0.0.1:{port}/", "--retries", "0",
                                              "--webhook-secret-file", path])
        send(f, ["notreg-readme", "invalid-readme"])
        wait_until(lambda: webhook_report(f)["webhook_events"] == 2, what="the receiver's acknowledgement")
    finally:
        stop_process(proc)
    lines = sorted(proc.stdout.read().split("\n"))
    assert lines[-2:] == ["invalid invalid-readme", "invalid notreg-readme"], lines


def test_the_readmes_receiver_refuses_a_forgery(tmp_path):
    with open(os.path.join(ROOT, "README.md")) as f:
        readme = f.read()
    start = readme.index("```python\nimport hashlib, hmac")
    code = readme[start + len("```python\n"):readme.index("```", start + 10)]
    port = free_port()
    code = code.replace('"/etc/app/webhook-secret"', repr(secret_file(tmp_path))).replace("8080", str(port))
    proc = subprocess.Popen(["/usr/bin/python3", "-c", code], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True)
    try:
        wait_until(lambda: port_open(port), what="the receiver to listen")
        body = b'{"events":[{"event_id":"x.0","type":"invalid","token":"forged"}]}'
        t = str(int(time.time()))
        bad = hmac.new(b"another secret", t.encode() + b"." + body, hashlib.sha256).hexdigest()
        r = requests.post(f"http://127.0.0.1:{port}/", data=body, headers={"X-Fcmd-Signature": f"t={t},v1={bad}"},
                          timeout=5)
        assert r.status_code == 401
        good = hmac.new(SECRET.encode(), t.encode() + b"." + body, hashlib.sha256).hexdigest()
        old = str(int(time.time()) - 3600)
        stale = hmac.new(SECRET.encode(), old.encode() + b"." + body, hashlib.sha256).hexdigest()
        r = requests.post(f"http://127.0.0.1:{port}/", data=body, headers={"X-Fcmd-Signature": f"t={old},v1={stale}"},
                          timeout=5)
        assert r.status_code == 401
        r = requests.post(f"http://127.0.0.1:{port}/", data=body, headers={"X-Fcmd-Signature": f"t={t},v1={good}"},
                          timeout=5)
        assert r.status_code == 204
    finally:
        stop_process(proc)
    assert proc.stdout.read().split("\n")[:-1] == ["invalid forged"]


def port_open(port):
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5):
            return True
    except OSError:
        return False


# ---- with --spool: events wait on disk too ----

def segments(spool):
    return sorted(p for p in os.listdir(spool) if p.endswith(".seg"))


def kill_instance(f):
    """SIGKILL to the master and every worker at once: nothing runs its exit."""
    pids = f.children() + [f.proc.pid]
    for pid in pids:
        os.kill(pid, signal.SIGKILL)
    f.proc.wait(10)


def test_a_kill_9_of_the_whole_instance_loses_no_event(mock, start_fcmd, receivers, tmp_path):
    spool = tmp_path / "spool"
    spool.mkdir()
    port = free_port()
    url = f"http://127.0.0.1:{port}/hook"  # nothing listens yet: every POST is refused
    args = ["--spool", str(spool), "--webhook", url, "--webhook-secret-file", secret_file(tmp_path),
            "--webhook-events", "all", "--retries", "0"]
    f = start_fcmd(mock, workers=2, args=args)
    ids = [send(f, [f"ok-k{i}", f"notreg-k{i}", f"canon-k{i}"]) for i in range(20)]
    f.wait_idle()
    wait_until(lambda: webhook_report(f)["webhook_pending"] == 80, what="80 events waiting")
    kill_instance(f)
    assert segments(spool), "the events wait in the spool"
    rcv = receivers(secret=SECRET, port=port)
    g = start_fcmd(mock, workers=2, args=args)
    want = {f"{pid}.{k}" for pid in ids for k in ("0", "1", "2", "done")}
    wait_until(lambda: want <= set(rcv.events), timeout=30, what="every event after the restart")
    assert set(rcv.events) == want and rcv.problems == []
    # Replayed events keep what they said: the done events' counts included.
    done = [e for e in rcv.events.values() if e["type"] == "done"]
    assert all((e["targets"], e["delivered"], e["invalid"]) == (3, 2, 1) for e in done), done
    # Acknowledged, they are let go of: the segments go, and nothing is sent twice.
    wait_until(lambda: segments(spool) == [], timeout=15, what="the spool to empty")
    w = webhook_report(g)
    assert w["webhook_pending"] == 0 and w["webhook_dropped"] == 0 and w["webhook_events"] == len(rcv.events)
    assert "webhook events to tell" in g.log_text()


def test_a_worker_killed_leaves_its_events_to_another(mock, start_fcmd, receivers, tmp_path):
    spool = tmp_path / "spool"
    spool.mkdir()
    down = {"down": True}
    rcv = receivers(secret=SECRET, plan=lambda n: "fail" if down["down"] else "ok")
    f = start_fcmd(mock, workers=2, args=hook_args(tmp_path, rcv, "--spool", str(spool), "--webhook-events", "all"))
    ids = [send(f, [f"ok-w{i}", f"notreg-w{i}"]) for i in range(20)]
    f.wait_idle()
    wait_until(lambda: webhook_report(f)["webhook_pending"] == 60, what="60 events waiting")
    victim = f.children()[0]
    os.kill(victim, signal.SIGKILL)
    wait_until(lambda: len(f.children()) == 2 and victim not in f.children(), what="the worker respawned")
    down["down"] = False
    want = {f"{pid}.{k}" for pid in ids for k in ("0", "1", "done")}
    wait_until(lambda: want <= set(rcv.events), timeout=40, what="every event, the dead worker's too")
    w = webhook_report(f)
    assert w["webhook_dropped"] == 0, w
    wait_until(lambda: webhook_report(f)["webhook_pending"] == 0, what="nothing left waiting")
    # The adopted segment goes once its events are acknowledged; the workers'
    # own hold no records.
    wait_until(lambda: f.report()["spool_bytes"] == 0 and len(segments(spool)) <= 2, timeout=15,
               what="the spool to empty")


def test_a_stop_with_the_receiver_down_keeps_the_events_for_the_next_start(mock, start_fcmd, receivers, tmp_path):
    spool = tmp_path / "spool"
    spool.mkdir()
    port = free_port()
    args = ["--spool", str(spool), "--webhook", f"http://127.0.0.1:{port}/", "--retries", "0",
            "--shutdown-timeout", "2"]
    f = start_fcmd(mock, workers=1, args=args)
    pid = send(f, ["notreg-s1", "invalid-s2"])
    wait_until(lambda: webhook_report(f)["webhook_pending"] == 2, what="two events waiting")
    assert f.stop() == 0
    assert "wait in the spool" in f.log_text() and segments(spool)
    rcv = receivers(port=port)
    start_fcmd(mock, workers=1, args=args)
    wait_until(lambda: set(rcv.events) == {f"{pid}.0", f"{pid}.1"}, timeout=20, what="the events after the start")


def test_events_dropped_past_their_age_are_not_read_back(mock, start_fcmd, receivers, tmp_path):
    spool = tmp_path / "spool"
    spool.mkdir()
    port = free_port()
    args = ["--spool", str(spool), "--webhook", f"http://127.0.0.1:{port}/", "--retries", "0",
            "--webhook-max-age", "2"]
    f = start_fcmd(mock, workers=1, args=args)
    send(f, ["notreg-a1"])
    wait_until(lambda: webhook_report(f)["webhook_dropped"] == 1, timeout=15, what="the event dropped")
    wait_until(lambda: f.report()["spool_bytes"] == 0, timeout=15, what="its records let go of")


def test_an_https_receiver_is_verified(mock, start_fcmd, receivers, tmp_path, tls_cert):
    rcv = receivers(secret=SECRET, tls=tls_cert)
    f = start_fcmd(mock, workers=1, args=hook_args(tmp_path, rcv, "--ca-file", str(tls_cert[0])))
    send(f, ["notreg-tls"])
    wait_until(lambda: len(rcv.events) == 1, what="the event over TLS")
    # Without the CA the receiver's certificate is refused: never acknowledged.
    other = receivers(secret=SECRET, tls=tls_cert)
    g = start_fcmd(mock, workers=1, args=hook_args(tmp_path, other))
    send(g, ["notreg-tls2"])
    wait_until(lambda: webhook_report(g)["webhook_failed_attempts"] >= 1, what="a refused certificate")
    assert other.events == {} and webhook_report(g)["webhook_pending"] == 1


def test_a_stop_does_not_wait_out_the_deadline_for_a_receiver_that_fails(mock, start_fcmd, receivers, tmp_path):
    rcv = receivers(secret=SECRET, plan=lambda n: "fail")
    f = start_fcmd(mock, workers=1, args=hook_args(tmp_path, rcv, "--shutdown-timeout", "20"))
    send(f, ["notreg-stop"])
    f.wait_idle()
    wait_until(lambda: webhook_report(f)["webhook_failed_attempts"] >= 1, what="a failed POST")
    t0 = time.monotonic()
    assert f.stop(timeout=40) == 0
    took = time.monotonic() - t0
    assert took < 8, f"the stop took {took:.1f} s with no push pending"
    assert rcv.requests >= 2  # it tried once more at the stop, whatever the back-off
    assert "1 events not delivered at exit: dropped" in f.log_text()


def test_logs_show_the_receivers_host_only(mock, start_fcmd, receivers, tmp_path):
    rcv = receivers(plan=lambda n: "fail")
    url = rcv.url.replace("http://", "http://user:pw-s3cr3t@") + "?token=qs-s3cr3t"
    f = start_fcmd(mock, workers=1, args=["--webhook", url, "--retries", "0"])
    send(f, ["notreg-log"])
    wait_until(lambda: "HTTP 500" in f.log_text(), what="a failure logged")
    assert f"webhook http://127.0.0.1:{rcv.port}: HTTP 500" in f.log_text()
    assert "s3cr3t" not in f.log_text()


class SlowReader:
    """A receiver that works, slowly: it reads the body at ~96 KiB/s and
    acknowledges what it read."""

    def __init__(self):
        rcv = self
        self.acked = 0
        self.requests = 0
        self.sizes = []

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *a):
                pass

            def do_POST(self):
                rcv.requests += 1
                n, body = int(self.headers["Content-Length"]), b""
                rcv.sizes.append(n)
                try:
                    while len(body) < n:
                        body += self.rfile.read(min(49152, n - len(body)))
                        time.sleep(0.5)
                    events = json.loads(body)["events"]
                    self.send_response(200)
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    rcv.acked += len(events)
                except OSError:
                    self.close_connection = True

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hook"

    def stop(self):
        self.server.shutdown()
        self.server.server_close()


def test_a_slow_receiver_still_gets_big_events(mock, start_fcmd, tmp_path):
    """Events of long tokens (4 KiB is allowed) make batches of a MiB, which
    a receiver reading 96 KiB/s cannot take in 10 s: after a timeout the
    batches get smaller until it can, and none is over WEBHOOK_BATCH_BYTES."""
    rcv = SlowReader()
    try:
        f = start_fcmd(mock, workers=1, args=["--webhook", rcv.url, "--retries", "0",
                                              "--webhook-events", "delivered"])
        for i in range(3):
            send(f, [f"ok-big{i}-{k}-" + "t" * 4000 for k in range(200)])
        f.wait_idle()
        wait_until(lambda: webhook_report(f)["webhook_events"] > 0, timeout=60,
                   what="any event acknowledged by a slow receiver")
        assert max(rcv.sizes) <= (1 << 20) + 16, max(rcv.sizes)
    finally:
        rcv.stop()


def test_an_apps_own_receiver_needs_its_own_secret(mock, tmp_path):
    conf = tmp_path / "fcmd.conf"
    conf.write_text(f"[app alpha]\napikey = k\nwebhook = http://127.0.0.1:1/alpha\n")
    conf.chmod(0o600)
    r = subprocess.run([FCMD_BIN, "--apikey", "k", "--check-config", "--config", str(conf), "--webhook",
                        "http://127.0.0.1:1/main", "--webhook-secret-file", secret_file(tmp_path)],
                       capture_output=True, text=True, timeout=10)
    assert r.returncode == 2 and "[app alpha]" in r.stderr and "webhook_secret_file" in r.stderr, r.stderr
    assert SECRET not in r.stderr
    # Unsigned everywhere, or the same receiver as the instance's: fine.
    r = subprocess.run([FCMD_BIN, "--apikey", "k", "--check-config", "--config", str(conf), "--webhook",
                        "http://127.0.0.1:1/main"], capture_output=True, text=True, timeout=10)
    assert r.returncode == 0, r.stderr
