"""Per-app access across a fleet: two instances on one real redis-server,
both with apps alpha and beta, each with its token file.  Each app's drain
entries wait in a Redis list of their own (fcmd:list:KIND:APP), so each
tenant drains its own entries exactly once through either instance while
the other tenant drains too, the instance's token drains the rest, and a
push status read through the other instance is its app's token's only."""

import json
import threading

import requests

from conftest import wait_until
from test_fleet import Redis, redis  # noqa: F401 (fixture)
from test_fleet_drains import redis_cmd
from test_tenants import (ALPHA, BETA, CANON, INSTANCE, NOTREG, Tenants, drain, get, produce, push_id, refused,
                          send_json)


def llen(r, key):
    return int(redis_cmd(r, "LLEN", key))


def settled(f):
    return get(f, "/gcm/report?scope=local", INSTANCE).json()["pending"] == 0


def test_tenants_drain_their_own_entries_once_across_the_fleet(redis, tmp_path, mock, start_fcmd):  # noqa: F811
    t = Tenants(tmp_path, mock)
    inst = [t.start(start_fcmd, args=["--redis", redis.url]) for _ in range(2)]
    made = {}
    for rnd in range(2):
        for k, f in enumerate(inst):
            for token, app in ((ALPHA, "alpha"), (BETA, "beta"), (INSTANCE, None)):
                nr, cn = produce(f, token, app, f"{app}{rnd}{k}", 15)
                made.setdefault(app, ([], []))
                made[app][0].extend(nr)
                made[app][1].extend(cn)
    for f in inst:
        wait_until(lambda: settled(f), what="the targets finished")
    # Each app's entries reach its own list in Redis.
    wait_until(lambda: llen(redis, "fcmd:list:notregistered:alpha") == len(made["alpha"][0])
               and llen(redis, "fcmd:list:notregistered:beta") == len(made["beta"][0])
               and llen(redis, "fcmd:list:notregistered") == len(made[None][0])
               and llen(redis, "fcmd:list:canonical:beta") == len(made["beta"][1]), what="the entries in Redis")
    assert set(redis_cmd(redis, "SMEMBERS", "fcmd:listapps:notregistered").split()) == {"alpha", "beta"}
    got = {ALPHA: ([], []), BETA: ([], [])}
    errors = []

    def tenant(token):
        try:
            for i in range(6):  # through both instances in turn
                f = inst[i % 2]
                got[token][0].extend(drain(f, NOTREG, token))
                got[token][1].extend(drain(f, CANON, token))
        except Exception as e:  # noqa: BLE001 - reported below
            errors.append(e)

    threads = [threading.Thread(target=tenant, args=(tok,)) for tok in (ALPHA, BETA)]
    for th in threads:
        th.start()
    for th in threads:
        th.join(60)
    assert not errors, errors
    for token, app in ((ALPHA, "alpha"), (BETA, "beta")):
        for k in (0, 1):
            assert len(got[token][k]) == len(set(got[token][k]))
            assert sorted(got[token][k]) == sorted(made[app][k])
        refused(get(inst[1], NOTREG + ("?app=beta" if app == "alpha" else "?app=alpha"), token))
    # The default app's entries were left to the instance's token, each once.
    assert sorted(drain(inst[1], NOTREG, INSTANCE)) == sorted(made[None][0])
    assert sorted(drain(inst[0], CANON, INSTANCE)) == sorted(made[None][1])
    assert drain(inst[0], NOTREG, INSTANCE) == [] and drain(inst[1], NOTREG, ALPHA) == []
    assert redis_cmd(redis, "ZCARD", "fcmd:inflight:notregistered") == "0"
    # ?app= with the instance's token: that app's list alone.
    a, _ = produce(inst[0], ALPHA, None, "late-a", 3)
    b, _ = produce(inst[1], BETA, None, "late-b", 3)
    for f in inst:
        wait_until(lambda: settled(f), what="the targets finished")
    wait_until(lambda: llen(redis, "fcmd:list:notregistered:alpha") == 3, what="alpha's entries in Redis")
    assert sorted(drain(inst[1], NOTREG, INSTANCE, "?app=alpha")) == sorted(a)
    assert sorted(drain(inst[0], NOTREG, INSTANCE)) == sorted(b)
    for f in inst:
        for token in (INSTANCE, ALPHA, BETA):
            assert token not in f.log_text()


def test_push_statuses_across_the_fleet_are_their_apps_only(redis, tmp_path, mock, start_fcmd):  # noqa: F811
    t = Tenants(tmp_path, mock)
    one, two = (t.start(start_fcmd, args=["--redis", redis.url]) for _ in range(2))
    a_id = push_id(send_json(one, ALPHA, {"tokens": ["fa1"], "payload": {}}))
    b_id = push_id(send_json(one, BETA, {"tokens": ["fb1"], "payload": {}}))
    # Through the other instance, from the fleet's record in Redis.
    wait_until(lambda: get(two, f"/push/{a_id}", ALPHA).status_code == 200, what="alpha's push seen by two")
    assert json.loads(get(two, f"/push/{a_id}", ALPHA).text)["app"] == "alpha"
    assert get(two, f"/push/{b_id}", BETA).json()["app"] == "beta"
    unknown = get(two, "/push/no-such-push-id", ALPHA)
    assert unknown.status_code == 404
    for f in (one, two):
        for token, other in ((ALPHA, b_id), (BETA, a_id)):
            r = get(f, f"/push/{other}", token)
            assert (r.status_code, r.json()) == (404, unknown.json())
            assert get(f, f"/push/{other}?wait=1", token).status_code == 404
        refused(get(f, f"/push/{a_id}"), 401)  # no token at all: the report scope's 401
        assert get(f, f"/push/{a_id}", INSTANCE).json()["app"] == "alpha"
        assert get(f, f"/push/{b_id}", INSTANCE).json()["app"] == "beta"
    refused(requests.get(two.url("/gcm/report?scope=fleet&app=beta"), headers={"Authorization": f"Bearer {ALPHA}"},
                         timeout=5))
