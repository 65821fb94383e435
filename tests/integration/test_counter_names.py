"""One name per counter: /gcm/report's keys, /metrics' scalar series and the
fields of the fleet's hash in Redis name each counter the same, and show the
same count.  Three instances share one real Redis, and between them make
every counter move: a legacy one with a spool and small drain lists whose
workers are killed with pushes pending (left in the spool, then replayed), a
v1 one whose first token request fails, and one whose upstream refuses
connections and whose workers are killed while they wait to retry (lost).
The names are this file's own; Redis is read with redis-cli, /metrics with
prometheus_client, the reports with Python's json."""

import os
import signal
import subprocess

import requests
from prometheus_client.parser import text_string_to_metric_families

from conftest import free_port, wait_until, write_service_account
from test_fleet import redis  # noqa: F401 (the fixture)

# The fields of fcmd:totals: every slot counter and the two drain lists' drops.
COUNTERS = ["accepted", "attempts", "successes", "failures", "retries", "canonicals", "notregistered", "lost",
            "left_in_spool", "upstream_requests", "upstream_errors", "oauth_tokens", "oauth_failures", "replayed",
            "spool_syncs", "idempotent_duplicates", "fleet_status_lost", "idempotency_fallbacks", "queue_left",
            "queue_unserved"]
DROPS = {"canonical_dropped": "canonical", "notregistered_dropped": "notregistered"}
FIELDS = COUNTERS + list(DROPS)

# /metrics' unlabelled counters and gauges.
SCALARS = {"fcmd_accepted_targets_total", "fcmd_attempts_total", "fcmd_successes_total", "fcmd_canonicals_total",
           "fcmd_notregistered_total", "fcmd_lost_total", "fcmd_left_in_spool_total", "fcmd_upstream_requests_total",
           "fcmd_upstream_errors_total", "fcmd_oauth_tokens_total", "fcmd_oauth_failures_total", "fcmd_pending",
           "fcmd_queue_depth", "fcmd_queue_bytes", "fcmd_queue_capacity", "fcmd_queue_max_bytes",
           "fcmd_retry_waiting", "fcmd_upstream_inflight", "fcmd_upstream_limit", "fcmd_rate_limit",
           "fcmd_upstream_connections", "fcmd_children", "fcmd_workers", "fcmd_waiting_for_token",
           "fcmd_redis_unreachable", "fcmd_uptime_seconds", "fcmd_replayed_total", "fcmd_spool_bytes",
           "fcmd_spool_segments", "fcmd_spool_max_bytes", "fcmd_spool_syncs_total",
           "fcmd_drain_list_bytes", "fcmd_apns_provider_tokens_total", "fcmd_push_statuses", "fcmd_push_waiters",
           "fcmd_push_status_evicted_total", "fcmd_push_status_lost_total", "fcmd_idempotent_duplicates_total",
           "fcmd_fleet_status_lost_total", "fcmd_idempotency_fallbacks_total", "fcmd_queue_left_total",
           "fcmd_queue_unserved_total",
           "fcmd_webhook_events_total", "fcmd_webhook_failed_attempts_total", "fcmd_webhook_dropped_total",
           "fcmd_webhook_pending", "fcmd_webhook_queue_bytes", "fcmd_webhook_oldest_seconds"}
GAUGES = {"pending", "workers", "waiting_for_token", "spool_bytes", "spool_segments", "uptime_seconds", "queue_depth",
          "queue_bytes", "queue_capacity", "queue_max_bytes", "spool_max_bytes", "drain_list_bytes", "push_statuses"}

# /gcm/report?scope=local: GoCM's five first, in GoCM's order; then fcmd's.
GOCM = ["attempts", "failures", "pending", "canonicals", "notregistered"]
LOCAL = GOCM + ["successes", "retries", "accepted", "lost"]
DROPPED = ["dropped", "canonical_dropped", "notregistered_dropped"]
STATUSES = ["push_statuses", "push_status_evicted", "push_status_lost", "idempotent_duplicates"]
CLOSING = ["scope", "redis", "upstream", "workers", "uptime_seconds"]
# What the status page reads: the queue's fill and bounds, the drain lists' sizes.
QUEUE = ["queue_depth", "queue_bytes", "queue_capacity", "queue_max_bytes"]
LISTS = ["canonical_records", "notregistered_records", "canonical_bytes", "notregistered_bytes", "drain_list_bytes"]
LOCAL_SPOOL = (LOCAL + ["left_in_spool"] + DROPPED + ["spool_bytes", "spool_segments", "replayed"] + QUEUE
               + ["spool_max_bytes"] + LISTS + STATUSES + CLOSING)
LOCAL_SA = LOCAL + DROPPED + ["oauth_tokens", "oauth_failures", "waiting_for_token"] + QUEUE + LISTS + STATUSES + CLOSING
LOCAL_PLAIN = LOCAL + DROPPED + QUEUE + LISTS + STATUSES + CLOSING
FLEET = set(LOCAL + ["left_in_spool", "replayed", "idempotent_duplicates", "fleet_status_lost",
                      "idempotency_fallbacks", "queue_left", "queue_unserved"] + DROPPED + ["instances", "scope", "redis", "age_ms", "upstream"])


def scrape(f):
    samples, scalars = {}, set()
    for fam in text_string_to_metric_families(requests.get(f.url("/metrics"), timeout=5).text):
        for s in fam.samples:
            samples[(s.name, tuple(sorted(s.labels.items())))] = s.value
            if fam.type in ("counter", "gauge") and not s.labels:
                scalars.add(s.name)
    return samples, scalars


def metric(samples, name):
    """The value /metrics shows for the report's or Redis' name."""
    if name == "accepted":
        return samples[("fcmd_accepted_targets_total", ())]
    if name in ("failures", "retries"):
        return sum(v for (n, _), v in samples.items() if n == f"fcmd_{name}_total")
    if name in DROPS:
        return samples[("fcmd_drain_dropped_total", (("list", DROPS[name]),))]
    if name == "dropped":
        return sum(metric(samples, d) for d in DROPS)
    if name.endswith(("_records", "_bytes")) and name.split("_")[0] in DROPS.values():
        lst, what = name.split("_")
        return samples[(f"fcmd_drain_{what}", (("list", lst),))]
    return samples[(f"fcmd_{name}" if name in GAUGES else f"fcmd_{name}_total", ())]


def report(f, scope):
    r = requests.get(f.url("/gcm/report"), params={"scope": scope}, timeout=5)
    assert r.status_code == 200, r.text
    return r.json()


def hgetall(r):
    out = subprocess.run(["redis-cli", "-p", str(r.port), "--raw", "HGETALL", "fcmd:totals"], capture_output=True,
                         text=True, timeout=10, check=True).stdout.split("\n")[:-1]
    return {k: int(v) for k, v in zip(out[::2], out[1::2])}


def one_push(f, token):
    r = requests.post(f.url("/gcm/send"), data={"tokens": token, "payload": "{}"}, headers={"Connection": "close"},
                      timeout=10)
    assert r.status_code == 200, r.text


def kill_workers(f):
    """SIGKILL to every worker; returns once as many new ones answer."""
    old = f.children()
    for pid in old:
        os.kill(pid, signal.SIGKILL)
    wait_until(lambda: len(set(f.children()) - set(old)) == len(old) and f.healthy(), what="respawned workers")


def test_report_metrics_and_redis_agree_on_every_counter_name(redis, start_mock, start_fcmd, signing_key,  # noqa: F811
                                                              tmp_path):
    # A: legacy, a spool, drain lists of 4 KiB.
    mock = start_mock("--latency-ms", "200")
    spool = tmp_path / "spool"
    a = start_fcmd(mock, workers=2, args=["--redis", redis.url, "--spool", str(spool), "--drain-list-bytes", "4096",
                                          "--max-inflight", "2"])
    tokens = (["ok-1", "ok-2", "mismatch-1", "unavail1-1"] + [f"canon-{i:04d}-" + "c" * 30 for i in range(150)]
              + [f"notreg-{i:04d}-" + "p" * 30 for i in range(300)])
    assert a.send_json({"tokens": tokens, "payload": {}}).status_code == 200
    a.wait_idle()
    for _ in range(2):  # the second is a duplicate
        assert a.send_json({"tokens": ["idem-1"], "payload": {}}, headers={"Idempotency-Key": "k"}).status_code == 200
    a.wait_idle()
    # Redis refusing writes for a while: a key judged by the instance alone, and
    # outcomes left out of the push statuses in Redis (counted once it takes writes again).
    config = ["redis-cli", "-p", str(redis.port), "CONFIG", "SET"]
    subprocess.run(config + ["maxmemory-policy", "noeviction"], check=True, capture_output=True, timeout=10)
    subprocess.run(config + ["maxmemory", "1"], check=True, capture_output=True, timeout=10)
    try:
        assert a.send_json({"tokens": ["oom-1"], "payload": {}}, headers={"Idempotency-Key": "oom"}).status_code == 200
        wait_until(lambda: metric(scrape(a)[0], "fleet_status_lost") >= 1, what="the refused status batch counted")
    finally:
        subprocess.run(config + ["maxmemory", "0"], check=True, capture_output=True, timeout=10)
    a.wait_idle()
    for i in range(30):
        one_push(a, f"slow-{i}")
    assert report(a, "local")["pending"] > 0
    kill_workers(a)
    wait_until(lambda: (lambda r: r["pending"] == 0 and r["replayed"] > 0)(report(a, "local")), timeout=30,
               what="the killed workers' pushes replayed")
    # B: v1, whose first token request fails.
    private_pem, public = signing_key
    v1 = start_mock("--oauth-public-key", str(public), "--oauth-fail", "1")
    sa = write_service_account(tmp_path / "sa.json", private_pem, f"http://127.0.0.1:{v1.port}/token")
    b = start_fcmd(workers=1, apikey=None, args=["--service-account", str(sa), "--fcm-url", v1.base,
                                                  "--redis", redis.url])
    wait_until(lambda: metric(scrape(b)[0], "oauth_tokens") == 1, timeout=20, what="a token after the refusal")
    # C: an upstream that refuses connections; its workers die while they wait to retry.
    c = start_fcmd(workers=2, gcm_url=f"http://127.0.0.1:{free_port()}/fcm/send",
                   args=["--redis", redis.url, "--retries", "100"])
    for i in range(4):
        one_push(c, f"refused-{i}")
    wait_until(lambda: metric(scrape(c)[0], "upstream_errors") >= 4, what="the refused connections")
    kill_workers(c)
    wait_until(lambda: (lambda r: r["pending"] == 0 and r["lost"] == 4)(report(c, "local")), what="the lost pushes")

    # D: the queue in Redis; a reload forgets app alpha while its push waits
    # upstream: the new generation leaves it, then fails it as unserved.
    silent = start_mock("--latency-ms", "60000")
    conf = tmp_path / "d.conf"
    conf.write_text(f"[app alpha]\napikey = alpha-key\ngcm_url = {silent.url()}\n")
    os.chmod(conf, 0o600)
    d = start_fcmd(silent, workers=1, args=["--redis", redis.url, "--redis-queue", "--redis-claim-after", "1",
                                            "--shutdown-timeout", "1", "--config", str(conf)])
    wait_until(lambda: requests.get(d.url("/readyz"), timeout=2).status_code == 200, what="D to reach Redis")
    r = requests.post(d.url("/gcm/send"), json={"tokens": ["alpha-1"], "payload": {}, "app": "alpha"}, timeout=5)
    assert r.status_code == 200, r.text
    wait_until(lambda: silent.stats(summary=True)["requests"] >= 1, what="alpha's push upstream")
    conf.write_text("")
    d.proc.send_signal(signal.SIGHUP)
    wait_until(lambda: metric(scrape(d)[0], "queue_unserved") == 1, timeout=30, what="the push failed as unserved")
    assert metric(scrape(d)[0], "queue_left") >= 1

    # Every instance is idle now: Redis holds the sum of their counts.
    def agree():
        scraped = [scrape(f)[0] for f in (a, b, c, d)]
        fields = hgetall(redis)
        want = {n: sum(metric(s, n) for s in scraped) for n in FIELDS}
        agree.last = (fields, want)
        return fields if fields == want else None
    agree.last = None
    try:
        fields = wait_until(agree, timeout=20, interval=0.2, what="Redis to hold the instances' sums")
    except AssertionError as e:
        raise AssertionError(f"{e}; Redis and the sum of /metrics: {agree.last}") from None
    assert set(fields) == set(FIELDS) and all(v > 0 for v in fields.values()), fields

    for f, keys in ((a, LOCAL_SPOOL), (b, LOCAL_SA), (c, LOCAL_PLAIN)):
        samples, scalars = scrape(f)
        assert scalars == SCALARS
        local = report(f, "local")
        assert list(local) == keys
        for k in keys:
            if k not in ("scope", "redis", "upstream", "uptime_seconds"):
                assert local[k] == metric(samples, k), k
    fleet = wait_until(lambda: (lambda r: r if r["scope"] == "fleet" and r["instances"] == 4
                                and all(r[n] == fields[n] for n in FLEET & set(FIELDS)) else None)(report(a, "fleet")),
                       what="a fleet report with Redis' counts")
    assert set(fleet) == FLEET and list(fleet)[:5] == GOCM
    assert fleet["dropped"] == fields["canonical_dropped"] + fields["notregistered_dropped"]
