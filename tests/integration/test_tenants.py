"""Per-app access: [app NAME] auth_token_file gives each app a client token
of its own.  Two tenants, alpha and beta, each holding its app's token, try
each other's app by the "app" field (form and JSON), the X-Fcmd-App header
and the query: every send, drain, report, /metrics, push status and
/readyz?app= of the other app is a 403 with a JSON reason (a push status a
404, as an unknown id), while each works for its own app and the instance's
token works for all.  Drains are kept per app: each tenant drains its own
entries exactly once while the other drains too, and the instance's drain
returns everything else.  JSON answers are read with Python's json,
/metrics with prometheus_client."""

import json
import os
import signal
import subprocess
import threading

import pytest
import requests
from prometheus_client.parser import text_string_to_metric_families

from conftest import FCMD_BIN, wait_until

KEY = "key-tenants-1"
INSTANCE, ALPHA, BETA = "instance-token-0123456789", "alpha-token-abcdef", "beta-token-fedcba"
NOTREG, CANON = "/gcm/report/notregistered", "/gcm/report/canonical"


def write_token(path, token):
    path.write_text(token + "\n")
    os.chmod(path, 0o600)
    return path


class Tenants:
    """An instance with apps alpha and beta (each with a token file) and
    open (without one), all sending to the one mock with one key."""

    def __init__(self, tmp_path, mock):
        self.tmp, self.mock = tmp_path, mock
        self.alpha_file = write_token(tmp_path / "alpha.token", ALPHA)
        self.beta_file = write_token(tmp_path / "beta.token", BETA)
        self.instance_file = write_token(tmp_path / "instance.token", INSTANCE)
        self.conf = tmp_path / "fcmd.conf"

    def write(self, instance_token=True, extra=""):
        text = f"[upstream]\napikey = {KEY}\ngcm_url = {self.mock.url()}\n"
        if instance_token:
            text += f"[server]\nauth_token_file = {self.instance_file}\n"
        text += (f"[app alpha]\napikey = {KEY}\ngcm_url = {self.mock.url()}\nauth_token_file = {self.alpha_file}\n"
                 f"[app beta]\napikey = {KEY}\ngcm_url = {self.mock.url()}\nauth_token_file = {self.beta_file}\n"
                 f"[app open]\napikey = {KEY}\ngcm_url = {self.mock.url()}\n" + extra)
        self.conf.write_text(text)
        os.chmod(self.conf, 0o600)
        return self.conf

    def start(self, start_fcmd, instance_token=True, workers=2, args=()):
        return start_fcmd(apikey=None, workers=workers,
                          args=["--config", str(self.write(instance_token)), *args])


@pytest.fixture
def tenants(tmp_path, mock):
    return Tenants(tmp_path, mock)


def bearer(token):
    return {"Authorization": f"Bearer {token}"} if token else {}


def get(f, path, token=None):
    return requests.get(f.url(path), headers=bearer(token), timeout=10)


def send_json(f, token, body, headers=None):
    return requests.post(f.url("/gcm/send"), json=body, headers={**bearer(token), **(headers or {})}, timeout=10)


def send_form(f, token, fields, headers=None):
    return requests.post(f.url("/gcm/send"), data=fields, headers={**bearer(token), **(headers or {})}, timeout=10)


def refused(r, status=403):
    assert r.status_code == status, (r.status_code, r.text)
    assert r.headers["content-type"].startswith("application/json")
    assert json.loads(r.text)["error"], r.text
    return json.loads(r.text)["error"]


def push_id(r):
    assert r.status_code == 200, r.text
    return r.headers["x-fcmd-id"] if r.text == "ok\n" else json.loads(r.text)["id"]


def app_series(text):
    return {s.labels["app"] for fam in text_string_to_metric_families(text) for s in fam.samples
            if s.name == "fcmd_app_targets_total"}


def drain(f, path, token=None, query=""):
    r = get(f, path + query, token)
    assert r.status_code == 200, r.text
    body = json.loads(r.text)
    if path == NOTREG:
        return body["tokens"] or []
    return [p["original"] for p in body["canonical_replacements"] or []]


def produce(f, token, app, prefix, n):
    """n NotRegistered and n canonical targets for app, sent with token."""
    notreg = [f"notreg-{prefix}-{i:03d}" for i in range(n)]
    canon = [f"canon-{prefix}-{i:03d}" for i in range(n)]
    body = {"tokens": notreg + canon, "payload": {"k": "v"}}
    if app:
        body["app"] = app
    assert send_json(f, token, body).status_code == 200
    return notreg, canon


def idle(f):
    return wait_until(lambda: (lambda r: r if r["pending"] == 0 else None)(get(f, "/gcm/report", INSTANCE).json()),
                      what="pending to reach 0")


# ---- each tenant reaches its own app and no other ----

def test_each_tenant_reaches_only_its_own_app(tenants, start_fcmd):
    f = tenants.start(start_fcmd)
    own = {ALPHA: "alpha", BETA: "beta"}
    ids = {}
    for token, app in own.items():
        other = "beta" if app == "alpha" else "alpha"
        # Its own app: named by the field (form, JSON), the header, or not at all.
        ids[app] = [push_id(send_form(f, token, {"tokens": f"{app}-f", "payload": "{}", "app": app})),
                    push_id(send_json(f, token, {"tokens": [f"{app}-j"], "payload": {}, "app": app})),
                    push_id(send_json(f, token, {"tokens": [f"{app}-h"], "payload": {}}, {"X-Fcmd-App": app})),
                    push_id(send_json(f, token, {"tokens": [f"{app}-n"], "payload": {}}))]
        # Any other app, by every way of naming it, even one that does not exist.
        for r in (send_form(f, token, {"tokens": "x", "payload": "{}", "app": other}),
                  send_json(f, token, {"tokens": ["x"], "payload": {}, "app": other}),
                  send_json(f, token, {"tokens": ["x"], "payload": {}}, {"X-Fcmd-App": other}),
                  send_json(f, token, {"tokens": ["x"], "payload": {}, "app": "default"}),
                  send_json(f, token, {"tokens": ["x"], "payload": {}, "app": "open"}),
                  send_json(f, token, {"tokens": ["x"], "payload": {}, "app": "nosuch"})):
            assert app in refused(r)
        for path in (f"/gcm/report?app={other}", f"/gcm/report?scope=local&app={other}", f"{NOTREG}?app={other}",
                     f"{CANON}?app={other}", f"/readyz?app={other}", "/readyz?app=default", "/gcm/report?app=zz"):
            refused(get(f, path, token))
        refused(get(f, "/metrics", token))
    r = idle(f)
    assert r["apps"]["alpha"]["accepted"] == 4 and r["apps"]["beta"]["accepted"] == 4, r
    assert r["apps"]["default"]["accepted"] == 0 and r["apps"]["open"]["accepted"] == 0, r
    assert {"alpha-f", "alpha-j", "alpha-h", "alpha-n", "beta-f", "beta-j", "beta-h", "beta-n"} <= \
        set(tenants.mock.stats()["tokens"])
    for token, app in own.items():
        other = "beta" if app == "alpha" else "alpha"
        # Its report is its app's alone, asked for or not: never the totals or another app's.
        for path in ("/gcm/report", f"/gcm/report?app={app}"):
            rep = get(f, path, token).json()
            assert rep["app"] == app and rep["accepted"] == 4 and "apps" not in rep, rep
        assert get(f, f"/readyz?app={app}", token).status_code == 200
        assert get(f, "/readyz", token).text == "ok\n"  # the instance's readiness, no app named
        for i in ids[app]:
            st = get(f, f"/push/{i}", token)
            assert st.status_code == 200 and st.json()["app"] == app, st.text
        unknown = get(f, "/push/no-such-push-id", token)
        for i in ids[other]:  # another app's push is answered as an unknown id
            st = get(f, f"/push/{i}", token)
            assert (st.status_code, st.json()) == (404, unknown.json())
            assert get(f, f"/push/{i}?wait=1", token).status_code == 404
    # The instance's token reaches everything.
    rep = get(f, "/gcm/report", INSTANCE).json()
    assert set(rep["apps"]) == {"default", "alpha", "beta", "open"} and rep["accepted"] == 8
    assert app_series(get(f, "/metrics", INSTANCE).text) == {"default", "alpha", "beta", "open"}
    for app in ("alpha", "beta"):
        assert get(f, f"/gcm/report?app={app}", INSTANCE).json()["accepted"] == 4
        assert get(f, f"/readyz?app={app}", INSTANCE).status_code == 200
        for i in ids[app]:
            assert get(f, f"/push/{i}", INSTANCE).json()["app"] == app
    assert push_id(send_json(f, INSTANCE, {"tokens": ["i1"], "payload": {}, "app": "beta"}))
    # No token or a wrong one stays a 401, as without apps.
    for token in (None, "not-a-token", ALPHA + "x"):
        r = send_json(f, token, {"tokens": ["x"], "payload": {}, "app": "alpha"})
        assert refused(r, 401) and r.headers["www-authenticate"] == "Bearer"
        refused(get(f, "/gcm/report", token), 401)
        refused(get(f, NOTREG, token), 401)
        refused(get(f, "/readyz?app=alpha", token), 401)
    for token in (INSTANCE, ALPHA, BETA):
        assert token not in f.log_text()


# ---- drains per app ----

def test_each_tenant_drains_its_own_entries_exactly_once_while_the_other_drains(tenants, start_fcmd):
    f = tenants.start(start_fcmd)
    made = {}
    for rnd in range(3):
        for token, app in ((ALPHA, "alpha"), (BETA, "beta"), (INSTANCE, "open"), (INSTANCE, None)):
            nr, cn = produce(f, token, app, f"{app}{rnd}", 20)
            made.setdefault(app, ([], []))
            made[app][0].extend(nr)
            made[app][1].extend(cn)
    got = {ALPHA: ([], []), BETA: ([], [])}
    done = threading.Event()
    errors = []

    def tenant(token):
        try:
            while True:
                last = done.is_set()
                got[token][0].extend(drain(f, NOTREG, token))
                got[token][1].extend(drain(f, CANON, token))
                if last:
                    return
        except Exception as e:  # noqa: BLE001 - reported below
            errors.append(e)

    threads = [threading.Thread(target=tenant, args=(t,)) for t in (ALPHA, BETA)]
    for t in threads:
        t.start()
    idle(f)
    done.set()
    for t in threads:
        t.join(30)
    assert not errors, errors
    for token, app in ((ALPHA, "alpha"), (BETA, "beta")):
        for k in (0, 1):
            assert len(got[token][k]) == len(set(got[token][k]))  # never twice
            assert sorted(got[token][k]) == sorted(made[app][k])   # its own, all of them
    # The other apps' entries wait for the instance's drain, each once.
    rest = drain(f, NOTREG, INSTANCE)
    assert sorted(rest) == sorted(made["open"][0] + made[None][0])
    assert sorted(drain(f, CANON, INSTANCE)) == sorted(made["open"][1] + made[None][1])
    assert drain(f, NOTREG, INSTANCE) == [] and drain(f, NOTREG, ALPHA) == []
    # ?app= with the instance's token drains that app's alone.
    a, _ = produce(f, ALPHA, None, "late-a", 3)
    o, _ = produce(f, INSTANCE, "open", "late-o", 3)
    idle(f)
    assert sorted(drain(f, NOTREG, INSTANCE, "?app=open")) == sorted(o)
    assert sorted(drain(f, NOTREG, INSTANCE, "?app=alpha")) == sorted(a)
    assert drain(f, NOTREG, INSTANCE) == []
    r = get(f, "/gcm/report", INSTANCE).json()
    assert r["notregistered_records"] == 0 and r["notregistered_bytes"] == 0, r


# ---- without an instance token ----

def test_apps_with_a_token_stay_closed_when_the_instance_has_none(tenants, start_fcmd):
    f = tenants.start(start_fcmd, instance_token=False)
    # Open apps stay open, as the scopes say.
    assert push_id(send_json(f, None, {"tokens": ["d1"], "payload": {}}))
    assert push_id(send_json(f, None, {"tokens": ["o1"], "payload": {}, "app": "open"}))
    # An app with a token needs it, by any way of naming the app.
    for r in (send_json(f, None, {"tokens": ["x"], "payload": {}, "app": "alpha"}),
              send_json(f, None, {"tokens": ["x"], "payload": {}}, {"X-Fcmd-App": "alpha"}),
              send_form(f, "wrong", {"tokens": "x", "payload": "{}", "app": "beta"})):
        refused(r, 401)
    a_id = push_id(send_json(f, ALPHA, {"tokens": ["notreg-a1"], "payload": {}}))
    refused(send_json(f, ALPHA, {"tokens": ["x"], "payload": {}, "app": "open"}))
    nr, _ = produce(f, None, "open", "o", 2)
    dn, _ = produce(f, None, None, "d", 2)
    wait_until(lambda: get(f, "/gcm/report").json()["pending"] == 0, what="pending to reach 0")
    # The open report and /metrics leave the closed apps out; their names ask for their token.
    rep = get(f, "/gcm/report").json()
    assert set(rep["apps"]) == {"default", "open"}, rep
    assert app_series(get(f, "/metrics").text) == {"default", "open"}
    refused(get(f, "/gcm/report?app=alpha"), 401)
    refused(get(f, "/readyz?app=alpha"), 401)
    refused(get(f, f"{NOTREG}?app=alpha"), 401)
    assert get(f, "/gcm/report?app=alpha", ALPHA).json()["accepted"] == 1
    assert get(f, f"/push/{a_id}").status_code == 404
    assert get(f, f"/push/{a_id}", ALPHA).json()["app"] == "alpha"
    # The open drain takes the open apps' entries and leaves alpha's to alpha.
    assert sorted(drain(f, NOTREG)) == sorted(nr + dn)
    assert drain(f, NOTREG, ALPHA) == ["notreg-a1"]
    assert drain(f, NOTREG) == []


# ---- reload ----

def test_a_reload_changes_a_token_and_an_unreadable_one_keeps_the_old(tenants, start_fcmd):
    f = tenants.start(start_fcmd)
    assert push_id(send_json(f, ALPHA, {"tokens": ["r1"], "payload": {}}))
    new = "alpha-token-rotated-42"
    write_token(tenants.alpha_file, new)
    f.proc.send_signal(signal.SIGHUP)
    wait_until(lambda: send_json(f, new, {"tokens": ["r2"], "payload": {}}).status_code == 200, timeout=20,
               what="the new token to be taken")
    wait_until(lambda: "generation 2 serves" in f.log_text(), what="generation 2")
    wait_until(lambda: all(send_json(f, ALPHA, {"tokens": ["r3"], "payload": {}}).status_code == 401
                           for _ in range(4)), timeout=20, what="the old token to be refused by every worker")
    # A token file that cannot be read fails the reload: the running tokens stay.
    tenants.alpha_file.unlink()
    f.proc.send_signal(signal.SIGHUP)
    wait_until(lambda: "reload failed" in f.log_text() and "auth_token_file" in f.log_text(),
               what="the failed reload in the log")
    for _ in range(4):
        assert send_json(f, new, {"tokens": ["r4"], "payload": {}}).status_code == 200
        refused(send_json(f, None, {"tokens": ["r5"], "payload": {}, "app": "alpha"}), 401)
    assert "generation 3" not in f.log_text()
    for token in (ALPHA, new, BETA, INSTANCE):
        assert token not in f.log_text()


# ---- bad settings ----

def check(tmp_path, conf_text):
    conf = tmp_path / "bad.conf"
    conf.write_text(conf_text)
    os.chmod(conf, 0o600)
    r = subprocess.run([FCMD_BIN, "--config", str(conf), "--check-config"], capture_output=True, text=True,
                       timeout=10)
    return r.returncode, r.stderr


@pytest.mark.parametrize("case", ["shared", "instance", "empty", "both", "missing", "spaces"])
def test_bad_app_tokens_are_refused_at_start(tmp_path, case):
    a = write_token(tmp_path / "a.token", "same-token-1")
    b = write_token(tmp_path / "b.token", "same-token-1" if case == "shared" else "other-token-2")
    if case == "empty":
        b.write_text("\n")
    if case == "spaces":
        b.write_text(" padded \n")
    inst = write_token(tmp_path / "i.token", "same-token-1")
    bline = {"both": f"auth_token_file = {b}\nauth_token = inline-3\n",
             "missing": f"auth_token_file = {tmp_path / 'none'}\n"}.get(case, f"auth_token_file = {b}\n")
    text = (f"[upstream]\napikey = k\n"
            + (f"[server]\nauth_token_file = {inst}\n" if case == "instance" else "")
            + f"[app a]\napikey = k\nauth_token_file = {a}\n[app b]\napikey = k\n{bline}")
    rc, err = check(tmp_path, text)
    assert rc == 2 and len(err.strip().splitlines()) == 1, (rc, err)
    assert "[app" in err and "same-token-1" not in err and "other-token-2" not in err, err


def test_an_inline_app_token_works(tmp_path, mock, start_fcmd):
    conf = tmp_path / "inline.conf"
    conf.write_text(f"[upstream]\napikey = {KEY}\ngcm_url = {mock.url()}\n"
                    f"[app shop]\napikey = {KEY}\ngcm_url = {mock.url()}\nauth_token = shop-inline-token\n")
    os.chmod(conf, 0o600)
    f = start_fcmd(apikey=None, workers=1, args=["--config", str(conf)])
    assert push_id(send_json(f, "shop-inline-token", {"tokens": ["s1"], "payload": {}}))
    refused(send_json(f, None, {"tokens": ["s1"], "payload": {}, "app": "shop"}), 401)
    assert "shop-inline-token" not in f.log_text()


def test_a_tenant_never_hears_the_other_apps_names_from_readyz(tmp_path, mock, start_fcmd, signing_key):
    """Without an instance token /readyz is open and names the apps that cannot
    send; a tenant's token hears only ready or not, and about its own app."""
    from conftest import free_port, write_service_account
    sa = write_service_account(tmp_path / "sick-sa.json", signing_key[0], f"http://127.0.0.1:{free_port()}/token")
    conf = tmp_path / "ready.conf"
    conf.write_text(f"[upstream]\napikey = {KEY}\ngcm_url = {mock.url()}\n"
                    f"[app alpha]\napikey = {KEY}\ngcm_url = {mock.url()}\nauth_token = {ALPHA}\n"
                    f"[app sick]\nservice_account = {sa}\n")
    os.chmod(conf, 0o600)
    f = start_fcmd(apikey=None, workers=1, args=["--config", str(conf)])
    wait_until(lambda: "sick" in get(f, "/readyz").text, what="the open /readyz to name the sick app")
    r = get(f, "/readyz", ALPHA)
    assert (r.status_code, r.text) == (200, "ok\n")
    assert get(f, "/readyz?app=alpha", ALPHA).status_code == 200
    refused(get(f, "/readyz?app=sick", ALPHA))
