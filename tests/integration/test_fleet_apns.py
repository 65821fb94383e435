"""One APNs provider token per key across a fleet (--redis): instances that
share a Redis send with the token one of them made, Apple's "expired" is
answered by one new token for all, and without Redis each instance signs
its own.  The mock upstream checks every token's ES256 signature with its
own code and lists the distinct tokens it saw; Redis is read with
redis-cli."""

import subprocess

import requests

from apns_keys import python_verify
from conftest import free_port, wait_until
from test_apns import apns_mock, key, send_until_every_worker_sent, start_apns  # noqa: F401 (fixtures)
from test_fleet import redis  # noqa: F401 (fixture)


def cli(redis, *args):
    return subprocess.run(["redis-cli", "-p", str(redis.port), *map(str, args)], capture_output=True, text=True,
                          timeout=10, check=True).stdout.strip()


def connected(f):
    return wait_until(lambda: requests.get(f.url("/readyz"), timeout=2).status_code == 200, what="redis reachable")


def local(f):
    r = requests.get(f.url("/gcm/report?scope=local"), timeout=5)
    assert r.status_code == 200, r.text
    return r.json()


def idle(f):
    """Every target this instance accepted has finished (its own counts: the
    fleet's come a flush later)."""
    return wait_until(lambda: (lambda r: r if r["pending"] == 0 else None)(local(f)), timeout=30,
                      what="pending to reach 0")


def made(instances):
    return sum(local(f)["apns"]["provider_tokens"] for f in instances)


def test_instances_share_one_token_and_renew_it_once(redis, start_apns, apns_mock, key):
    inst = [start_apns(args=["--redis", redis.url], workers=2) for _ in range(3)]
    for f in inst:
        connected(f)
    sent = []
    for i, f in enumerate(inst):
        sent += send_until_every_worker_sent(f, 2, f"c{i}")
    for f in inst:
        idle(f)
    s = apns_mock.stats(summary=True)
    assert len(s["apns_jwts"]) == 1 and s["apns_bad_jwt"] == 0, s["apns_jwts"]
    python_verify(s["apns_jwts"][0], key[1])
    assert made(inst) == 1, "one instance made it; the others took it from Redis"
    keys = wait_until(lambda: cli(redis, "KEYS", "fcmd:apns:token:*"), what="the token published").split()
    assert len(keys) == 1
    ttl = int(cli(redis, "PTTL", keys[0]))
    assert 0 < ttl <= 3300000
    assert cli(redis, "GET", keys[0]).split(" ", 1)[1] == s["apns_jwts"][0]
    assert cli(redis, "KEYS", "fcmd:apns:lock:*") == ""  # the maker let go of the lock
    # Apple calls it expired, to every instance: one new token, for all of them.
    apns_mock.session.post(apns_mock.base + "/apns/expire", verify=apns_mock.cafile).raise_for_status()
    for i, f in enumerate(inst):
        sent += send_until_every_worker_sent(f, 2, f"d{i}", per_request=10)
    reports = [idle(f) for f in inst]
    s = apns_mock.stats()
    assert s["apns_expired_answers"] >= 1
    assert len(s["apns_jwts"]) == 2, "one new token for the whole fleet"
    python_verify(s["apns_jwts"][1], key[1])
    assert made(inst) == 2
    assert all(s["tokens"][t]["delivered"] == 1 for t in sent)
    assert all(r["failures"] == 0 for r in reports)
    assert cli(redis, "GET", keys[0]).split(" ", 1)[1] == s["apns_jwts"][1]


def test_without_redis_each_instance_signs_its_own(start_apns, apns_mock):
    dead = f"redis://127.0.0.1:{free_port()}"
    inst = [start_apns(args=["--redis", dead], workers=1) for _ in range(2)]
    sent = []
    for i, f in enumerate(inst):
        sent += send_until_every_worker_sent(f, 1, f"e{i}")
    for f in inst:
        idle(f)
    s = apns_mock.stats(summary=True)
    assert len(s["apns_jwts"]) == 2 and made(inst) == 2
    assert all(apns_mock.stats()["tokens"][t]["delivered"] == 1 for t in sent)


def test_a_token_written_into_redis_by_someone_else_is_checked(redis, start_apns, apns_mock, key):
    """Whoever can write to Redis can put anything under the token's name: a
    value that is no token of fcmd's is not used (the instance signs one)."""
    f = start_apns(args=["--redis", redis.url], workers=1)
    connected(f)
    send_until_every_worker_sent(f, 1, "f0")
    idle(f)
    k = wait_until(lambda: cli(redis, "KEYS", "fcmd:apns:token:*"), what="the token published").split()[0]
    now_ms = int(cli(redis, "TIME").split()[0]) * 1000
    cli(redis, "SET", k, f"{now_ms} " + "x" * 5000)  # far longer than a token
    g = start_apns(args=["--redis", redis.url], workers=1)
    connected(g)
    send_until_every_worker_sent(g, 1, "f1")
    idle(g)
    s = apns_mock.stats(summary=True)
    assert s["apns_bad_jwt"] == 0 and all("x" * 100 not in j for j in s["apns_jwts"])
    assert made([g]) == 1
    assert local(g)["failures"] == 0


def test_a_making_lock_left_without_a_ttl_does_not_wedge_the_fleet(redis, start_apns, apns_mock):
    """A lock someone wrote without a TTL (a foreign SET, a PERSIST) would
    make every instance wait for good: the script gives it one, so the
    fleet makes its token once it runs out."""
    f = start_apns(args=["--redis", redis.url], workers=1)
    connected(f)
    send_until_every_worker_sent(f, 1, "a8")
    idle(f)
    token_key = wait_until(lambda: cli(redis, "KEYS", "fcmd:apns:token:*"), what="the token published").split()[0]
    lock_key = token_key.replace(":token:", ":lock:")
    cli(redis, "DEL", token_key)
    cli(redis, "SET", lock_key, "someone-else")
    assert cli(redis, "PTTL", lock_key) == "-1"
    g = start_apns(args=["--redis", redis.url], workers=1)
    connected(g)
    sent = send_until_every_worker_sent(g, 1, "b9")
    wait_until(lambda: 0 < int(cli(redis, "PTTL", lock_key)) <= 10000, what="the lock given a TTL")
    wait_until(lambda: all(apns_mock.stats()["tokens"].get(t, {}).get("delivered") == 1 for t in sent), timeout=30,
               what="the push sent once the lock ran out")
    assert made([g]) == 1 and local(g)["failures"] == 0
