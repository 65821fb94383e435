"""Several apps in one instance: [app NAME] sections, each with its own
credentials, chosen per request by an "app" field or X-Fcmd-App.  Each app
here talks to a mock of its own that accepts only that app's credentials
(its legacy key, its service account's signature, its APNs key), so a push
sent with another app's credentials would fail rather than arrive.  JSON
fcmd answers is read with Python's json, metrics with prometheus_client."""

import http.client
import json
import os
import signal
import subprocess
import threading
import time

import pytest
import requests
from prometheus_client.parser import text_string_to_metric_families

from apns_keys import KEY_ID, TEAM_ID, TOPIC, make_p256, python_verify
from conftest import FCMD_BIN, Fcmd, free_port, wait_until, write_service_account, accepted

DEFAULT_KEY, ALPHA_KEY, ALPHA_KEY2 = "key-default-1", "key-alpha-1", "key-alpha-2"


def apns_tok(i):
    return ("ab" + f"{i:x}".rjust(8, "0")).ljust(64, "a")


@pytest.fixture(scope="module")
def apns_key(tmp_path_factory):
    return make_p256(tmp_path_factory.mktemp("apps-apns"))


@pytest.fixture(scope="module")
def other_rsa(tmp_path_factory):
    d = tmp_path_factory.mktemp("other-sa")
    priv = d / "key.pem"
    subprocess.run(["openssl", "genpkey", "-algorithm", "RSA", "-pkeyopt", "rsa_keygen_bits:2048", "-out", str(priv)],
                   check=True, capture_output=True, timeout=60)
    return priv.read_text()


class Apps:
    """The mocks: one per app, each accepting only that app's credentials."""

    def __init__(self, start_mock, tmp_path, signing_key, tls_cert, apns_key):
        private_pem, public = signing_key
        cert, tkey = tls_cert
        self.tmp, self.cert = tmp_path, cert
        self.default = start_mock("--apikey", DEFAULT_KEY)
        self.alpha = start_mock("--apikey", ALPHA_KEY)
        self.alpha2 = start_mock("--apikey", ALPHA_KEY2)
        self.beta = start_mock("--oauth-public-key", str(public))
        self.ios = start_mock("--tls-cert", str(cert), "--tls-key", str(tkey), "--apns-public-key",
                              str(apns_key[1]), "--apns-key-id", KEY_ID, "--apns-team-id", TEAM_ID,
                              "--apns-topic", TOPIC, cafile=str(cert))
        self.sa = write_service_account(tmp_path / "beta-sa.json", private_pem,
                                        f"http://127.0.0.1:{self.beta.port}/token", project="beta-project")
        self.apns_key = apns_key[0]
        self.conf = tmp_path / "fcmd.conf"

    def sections(self, alpha_url=None, alpha_key=ALPHA_KEY, ios_url=None, ios_key=None, beta_sa=None,
                 extra="", drop=()):
        s = {
            "alpha": f"apikey = {alpha_key}\ngcm_url = {alpha_url or self.alpha.url()}\n",
            "beta": f"service_account = {beta_sa or self.sa}\nfcm_url = {self.beta.base}\n",
            "ios": (f"apns_key = {ios_key or self.apns_key}\napns_key_id = {KEY_ID}\napns_team_id = {TEAM_ID}\n"
                    f"apns_topic = {TOPIC}\napns_url = {ios_url or self.ios.base}\n"),
        }
        text = (f"[upstream]\napikey = {DEFAULT_KEY}\ngcm_url = {self.default.url()}\n"
                f"[send]\nretries = 30\n")
        for name, body in s.items():
            if name not in drop:
                text += f"[app {name}]\n{body}"
        return text + extra

    def write(self, **kw):
        self.conf.write_text(self.sections(**kw))
        os.chmod(self.conf, 0o600)
        return self.conf

    def start(self, start_fcmd, args=(), workers=2, **kw):
        return start_fcmd(apikey=None, workers=workers,
                          args=["--config", str(self.write(**kw)), "--ca-file", str(self.cert), *args])


@pytest.fixture
def apps(start_mock, tmp_path, signing_key, tls_cert, apns_key):
    return Apps(start_mock, tmp_path, signing_key, tls_cert, apns_key)


def send(f, body, path="/gcm/send", headers=None):
    return requests.post(f.url(path), json=body, headers=headers or {}, timeout=5)


def tokens(mock):
    return set(mock.stats()["tokens"])


def report(f, query=""):
    r = requests.get(f.url("/gcm/report" + query), timeout=5)
    assert r.status_code == 200, r.text
    return json.loads(r.text)


def app_samples(f):
    text = requests.get(f.url("/metrics"), timeout=5).text
    out = {}
    for fam in text_string_to_metric_families(text):
        for s in fam.samples:
            if s.name == "fcmd_app_targets_total":
                out[(s.labels["app"], s.labels["upstream"], s.labels["outcome"])] = s.value
    return out


# ---- selection and credentials ----

def test_each_request_goes_to_its_apps_upstream_with_its_credentials(apps, start_fcmd):
    f = apps.start(start_fcmd)
    assert f.send_form(["d1"], {"k": 1}).status_code == 200  # no app: the default app
    r = requests.post(f.url("/gcm/send"), data={"tokens": "a1", "payload": "{}", "app": "alpha"}, timeout=5)
    assert (r.status_code, r.text) == (200, "ok\n")
    assert accepted(send(f, {"tokens": ["a2"], "payload": {}}, headers={"X-Fcmd-App": "alpha"})) == 1
    assert accepted(send(f, {"tokens": ["b1", "b2"], "payload": {"x": 1}, "app": "beta"})) == 2
    assert accepted(send(f, {"tokens": [apns_tok(1)], "payload": {"aps": {"alert": "hi"}}}, path="/apns/send",
                         headers={"X-Fcmd-App": "ios"})) == 1
    r = f.wait_idle()
    assert (r["successes"], r["failures"], r["attempts"]) == (6, 0, 6)
    assert tokens(apps.default) == {"d1"}
    assert tokens(apps.alpha) == {"a1", "a2"}
    assert tokens(apps.beta) == {"b1", "b2"}
    assert tokens(apps.ios) == {apns_tok(1)}
    assert apps.beta.stats(summary=True).get("tokens_issued", 1) >= 1
    # The report breaks the counts down by app; GoCM's keys stay the totals.
    assert r["apps"]["default"]["successes"] == 1 and r["apps"]["alpha"]["successes"] == 2
    assert r["apps"]["beta"]["accepted"] == 2 and r["apps"]["ios"]["successes"] == 1
    one = report(f, "?app=alpha")
    assert one["app"] == "alpha" and one["fcm"]["successes"] == 2 and one["apns"]["successes"] == 0
    assert one["unhealthy"] is False
    assert report(f, "?app=ios")["apns"]["successes"] == 1
    assert report(f, "?app=default")["fcm"]["successes"] == 1
    assert requests.get(f.url("/gcm/report?app=nope"), timeout=5).status_code == 400
    m = app_samples(f)
    assert m[("alpha", "fcm", "successes")] == 2 and m[("beta", "fcm", "attempts")] == 2
    assert m[("ios", "apns", "successes")] == 1 and m[("default", "fcm", "accepted")] == 1
    assert m[("alpha", "apns", "successes")] == 0


def test_apns_apps_sign_with_their_own_keys_and_share_a_token_each(apps, start_fcmd, start_mock, tls_cert,
                                                                   tmp_path):
    """Two APNs apps, each with its own key, key id and team: each app's
    mock trusts only that app's key, and every worker of an app uses the
    app's one provider token."""
    key2, pub2 = make_p256(tmp_path, "Other")
    kid2, team2, topic2 = "KEYB222222", "TEAM222222", "com.example.other"
    cert, tkey = tls_cert
    ios2 = start_mock("--tls-cert", str(cert), "--tls-key", str(tkey), "--apns-public-key", str(pub2),
                      "--apns-key-id", kid2, "--apns-team-id", team2, "--apns-topic", topic2, cafile=str(cert))
    extra = (f"[app ios2]\napns_key = {key2}\napns_key_id = {kid2}\napns_team_id = {team2}\n"
             f"apns_topic = {topic2}\napns_url = {ios2.base}\n")
    f = apps.start(start_fcmd, extra=extra)
    sent, workers = {"ios": 0, "ios2": 0}, {"ios": set(), "ios2": set()}
    # The apps' sends interleaved, until both workers have sent for each app
    # (a worker sends what it accepted), waiting for each so they alternate
    # upstream too.
    while min(len(w) for w in workers.values()) < 2 and sent["ios"] < 200:
        for app in sent:
            r = requests.post(f.url("/apns/send"), data={"tokens": apns_tok(1000 + sent[app]),
                                                         "payload": '{"aps":{}}', "app": app},
                              headers={"Connection": "close"}, timeout=5)
            assert r.status_code == 200, r.text
            workers[app].add(r.headers["x-fcmd-worker"])
            sent[app] += 1
            f.wait_idle()
    assert min(len(w) for w in workers.values()) == 2
    rep = f.wait_idle()
    assert rep["failures"] == 0 and rep["apps"]["ios"]["successes"] == sent["ios"]
    assert rep["apps"]["ios2"]["successes"] == sent["ios2"]
    assert rep["apns"]["provider_tokens"] == 2  # one per app, shared by the workers
    for mock, pub, kid, team, n in ((apps.ios, apps.apns_key.with_suffix(".pub.pem"), KEY_ID, TEAM_ID, sent["ios"]),
                                    (ios2, pub2, kid2, team2, sent["ios2"])):
        s = mock.stats(summary=True)
        assert s["apns_requests"] == n and s["apns_bad_jwt"] == 0
        assert len(s["apns_jwts"]) == 1
        head, claims = python_verify(s["apns_jwts"][0], pub)
        assert head["kid"] == kid and claims["iss"] == team


def test_a_request_names_a_known_app_once(apps, start_fcmd):
    f = apps.start(start_fcmd, workers=1)
    cases = [
        (send(f, {"tokens": ["x"], "payload": {}, "app": "nope"}), "unknown app"),
        (send(f, {"tokens": ["x"], "payload": {}}, headers={"X-Fcmd-App": "nope"}), "unknown app"),
        (send(f, {"tokens": ["x"], "payload": {}, "app": "alpha"}, headers={"X-Fcmd-App": "beta"}),
         "different apps"),
        (send(f, {"tokens": ["x"], "payload": {}, "app": "a/b"}), "app must be"),
        (send(f, {"tokens": ["x"], "payload": {}, "app": 7}), "must be a string"),
        (send(f, {"tokens": ["x"], "payload": {}}, headers={"X-Fcmd-App": "x" * 45}), "X-Fcmd-App must be"),
        (requests.post(f.url("/gcm/send"), data={"tokens": "x", "payload": "{}", "app": ["alpha", "beta"]},
                       timeout=5), "given twice"),
        (send(f, {"tokens": ["x"], "payload": {}, "app": "ios"}), "has no FCM credentials"),
        (send(f, {"tokens": [apns_tok(2)], "payload": {"aps": {}}}, path="/apns/send"),
         "default app has no APNs credentials"),
    ]
    for r, needle in cases:
        assert r.status_code == 400, r.text
        assert needle in json.loads(r.text)["error"]
    # Two X-Fcmd-App headers that disagree (requests would merge them).
    conn = http.client.HTTPConnection("127.0.0.1", f.port, timeout=5)
    body = b'{"tokens":["x"],"payload":{}}'
    conn.putrequest("POST", "/gcm/send")
    for k, v in (("Content-Type", "application/json"), ("X-Fcmd-App", "alpha"), ("X-Fcmd-App", "beta"),
                 ("Content-Length", str(len(body)))):
        conn.putheader(k, v)
    conn.endheaders(body)
    r = conn.getresponse()
    assert r.status == 400 and "headers name different apps" in json.loads(r.read())["error"]
    conn.close()
    assert report(f)["accepted"] == 0
    # The same name in both places is fine, and "default" names the default app.
    assert send(f, {"tokens": ["same"], "payload": {}, "app": "alpha"}, headers={"X-Fcmd-App": "alpha"}).ok
    assert send(f, {"tokens": ["dflt"], "payload": {}, "app": "default"}).ok
    f.wait_idle()
    assert "same" in tokens(apps.alpha) and "dflt" in tokens(apps.default)


# ---- the query: parsed once, in any order; what an endpoint does not take is refused ----

def error_of(f, path, status=400):
    # http.client sends the path as it is (requests would quote a broken escape).
    conn = http.client.HTTPConnection("127.0.0.1", f.port, timeout=5)
    conn.request("GET", path)
    r = conn.getresponse()
    body = r.read()
    conn.close()
    assert r.status == status, (path, r.status, body)
    return json.loads(body)["error"]


def test_report_queries_in_any_order_and_unknown_parameters_refused(apps, start_fcmd):
    f = apps.start(start_fcmd, workers=1)
    assert send(f, {"tokens": ["q1", "q2"], "payload": {}, "app": "alpha"}).ok
    assert f.send_form(["q3"], {}).ok
    f.wait_idle()
    for q in ("?app=alpha", "?scope=local&app=alpha", "?app=alpha&scope=local", "?scope=fleet&app=alpha",
              "?app=%61lpha", "?&app=alpha&"):
        one = report(f, q)
        assert one["app"] == "alpha" and one["fcm"]["successes"] == 2 and one["fcm"]["accepted"] == 2, q
    assert report(f, "?scope=local")["accepted"] == 3 and "app" not in report(f, "?scope=local")
    # A parameter the endpoint does not take, or one given twice, is a 400 naming it, never other numbers.
    assert "\"x\"" in error_of(f, "/gcm/report?x=1&app=alpha")
    assert "\"x\"" in error_of(f, "/gcm/report?app=alpha&x")
    assert "\"app\"" in error_of(f, "/gcm/report?app=alpha&app=beta")
    assert "\"app\"" in error_of(f, "/gcm/report?app=alpha&app=alpha")
    assert "\"app\"" in error_of(f, "/gcm/report?app=al%zzpha")
    assert "scope" in error_of(f, "/gcm/report?scope=nope&app=alpha")
    assert "scope" in error_of(f, "/gcm/report?scope=nope")
    assert "unknown app" in error_of(f, "/gcm/report?app=nope&scope=local")
    assert "unknown app" in error_of(f, "/gcm/report?app=")
    # The same rule at every endpoint: /readyz and the drains take app, the rest take nothing.
    assert "\"x\"" in error_of(f, "/readyz?x=1")
    assert "\"x\"" in error_of(f, "/readyz?app=alpha&x=1")
    assert "\"app\"" in error_of(f, "/readyz?app=alpha&app=alpha")
    assert requests.get(f.url("/readyz?app=%61lpha"), timeout=5).status_code == 200
    assert "\"app\"" in error_of(f, "/gcm/report/canonical?app=alpha&app=alpha")
    assert "\"x\"" in error_of(f, "/gcm/report/notregistered?app=alpha&x=1")
    assert "unknown app" in error_of(f, "/gcm/report/notregistered?app=nope")
    assert "\"x\"" in error_of(f, "/metrics?x=1")
    assert "\"x\"" in error_of(f, "/healthz?x=1")
    r = requests.post(f.url("/gcm/send?app=beta"), data={"tokens": "q4", "payload": "{}", "app": "alpha"}, timeout=5)
    assert r.status_code == 400 and "\"app\"" in r.json()["error"]
    assert report(f)["accepted"] == 3  # nothing refused was queued


def test_with_redis_an_apps_report_is_the_instances_and_says_so(apps, start_fcmd):
    dead = f"redis://127.0.0.1:{free_port()}"  # the query is read before Redis is asked anything
    f = apps.start(start_fcmd, workers=1, args=["--redis", dead, "--shutdown-timeout", "1"])
    assert send(f, {"tokens": ["r1"], "payload": {}, "app": "alpha"}).ok
    wait_until(lambda: report(f, "?scope=local")["pending"] == 0, what="the push to finish")
    for q in ("?app=alpha", "?scope=local&app=alpha", "?app=alpha&scope=local"):
        one = report(f, q)
        assert one["app"] == "alpha" and one["fcm"]["successes"] == 1, q
    assert "scope=local" in error_of(f, "/gcm/report?scope=fleet&app=alpha")
    assert "\"x\"" in error_of(f, "/gcm/report?scope=local&x=1")


@pytest.mark.parametrize("section,needle", [
    ("[app a/b]\napikey = k\n", "an app's name is"),
    ("[app default]\napikey = k\n", "an app's name is"),
    ("[app " + "n" * 45 + "]\napikey = k\n", "at most 44 bytes"),
    ("[app x]\nport = 1\n", "unknown key \"port\" in [app x]"),
    ("[app x]\napns_key_id = ABCDE12345\n", "[app x]"),
    ("[app x]\nservice_account = /nonexistent/sa.json\n", "[app x]"),
    ("".join(f"[app a{i}]\napikey = k\n" for i in range(64)), "more than 63"),
])
def test_bad_app_sections_exit_2(tmp_path, section, needle):
    conf = tmp_path / "bad.conf"
    conf.write_text("[upstream]\napikey = k\n" + section)
    r = subprocess.run([FCMD_BIN, "--config", str(conf), "--port", str(free_port())], capture_output=True,
                       text=True, timeout=20)
    assert r.returncode == 2, r.stderr
    assert needle in r.stderr and len(r.stderr.strip().splitlines()) == 1


def test_apps_alone_need_no_default_credentials(apps, start_fcmd):
    apps.conf.write_text(f"[app alpha]\napikey = {ALPHA_KEY}\ngcm_url = {apps.alpha.url()}\n")
    f = start_fcmd(apikey=None, workers=1, args=["--config", str(apps.conf)])
    r = send(f, {"tokens": ["x"], "payload": {}})
    assert r.status_code == 400 and "default app has no FCM" in r.json()["error"]
    assert send(f, {"tokens": ["only"], "payload": {}, "app": "alpha"}).ok
    f.wait_idle()
    assert tokens(apps.alpha) == {"only"}


# ---- reload ----

class Traffic(threading.Thread):
    """Sends one push to an app (None: the default app) per fresh connection until stopped."""

    def __init__(self, f, app=None):
        super().__init__(daemon=True)
        self.f, self.app, self.accepted, self.other = f, app, [], []
        self.done = threading.Event()

    def run(self):
        i = 0
        while not self.done.is_set():
            t = f"traffic-{self.app}-{i}"
            i += 1
            data = {"tokens": t, "payload": "{}", **({"app": self.app} if self.app else {})}
            try:
                r = requests.post(self.f.url("/gcm/send"), data=data, headers={"Connection": "close"}, timeout=5)
                (self.accepted if r.status_code == 200 else self.other).append((t, r.status_code))
            except requests.RequestException as e:
                self.other.append((t, repr(e)))


def test_sighup_adds_changes_and_removes_apps_under_traffic(apps, start_fcmd):
    f = apps.start(start_fcmd)
    assert send(f, {"tokens": ["before"], "payload": {}, "app": "beta"}).ok
    f.wait_idle()
    traffic, alpha = Traffic(f), Traffic(f, "alpha")
    traffic.start()
    alpha.start()
    try:
        wait_until(lambda: len(traffic.accepted) > 20 and len(alpha.accepted) > 20, what="traffic")
        old = set(f.children())
        gamma = f"[app gamma]\napikey = {ALPHA_KEY}\ngcm_url = {apps.alpha.url()}\n"
        apps.write(alpha_url=apps.alpha2.url(), alpha_key=ALPHA_KEY2, drop=("beta",), extra=gamma)
        f.proc.send_signal(signal.SIGHUP)
        wait_until(lambda: "generation 2 serves" in f.log_text(), what="generation 2")
        wait_until(lambda: not (old & set(f.children())), timeout=20, what="the old generation to go")
        n, na = len(traffic.accepted), len(alpha.accepted)
        wait_until(lambda: len(traffic.accepted) > n + 20 and len(alpha.accepted) > na + 20,
                   what="traffic after the reload")
    finally:
        for t in (traffic, alpha):
            t.done.set()
            t.join(10)
    assert traffic.other == [] and len(traffic.accepted) > 40 and alpha.other == []
    assert send(f, {"tokens": ["changed"], "payload": {}, "app": "alpha"}).ok
    assert send(f, {"tokens": ["added"], "payload": {}, "app": "gamma"}).ok
    r = send(f, {"tokens": ["removed"], "payload": {}, "app": "beta"})
    assert r.status_code == 400 and "unknown app" in r.json()["error"]
    rep = f.wait_idle()
    assert rep["failures"] == 0
    assert rep["successes"] == len(traffic.accepted) + len(alpha.accepted) + 3
    assert {t for t, _ in traffic.accepted} <= tokens(apps.default)
    # alpha's pushes went with its old key to its old upstream until the new
    # generation took over, then with the new key to the new one; none lost.
    alpha_sent = {t for t, _ in alpha.accepted}
    old_side, new_side = tokens(apps.alpha) & alpha_sent, tokens(apps.alpha2) & alpha_sent
    assert old_side | new_side == alpha_sent and old_side and new_side and not (old_side & new_side)
    assert "changed" in tokens(apps.alpha2) and "added" in tokens(apps.alpha)
    assert "changed" not in tokens(apps.alpha)
    assert set(rep["apps"]) == {"default", "alpha", "gamma", "ios"}
    assert rep["apps"]["gamma"]["successes"] == 1
    assert rep["apps"]["alpha"]["successes"] == len(alpha.accepted) + 1
    assert rep["apps"]["default"]["successes"] == len(traffic.accepted)


def test_a_key_that_breaks_at_reload_refuses_only_its_app(apps, start_fcmd, tmp_path):
    # No spool: nothing an app that cannot send was given waits for the
    # generation that holds it to be retired.
    f = apps.start(start_fcmd, workers=1, args=["--shutdown-timeout", "1"])
    apps.write(ios_key=tmp_path / "missing.p8")
    f.proc.send_signal(signal.SIGHUP)
    wait_until(lambda: "generation 2 serves" in f.log_text(), what="generation 2")
    assert "reload: [app ios]" in f.log_text()
    # The new worker serves before its v1 app (beta) has its access token,
    # which it fetches on its own: until then /readyz names beta too.
    degraded = {"status": "degraded", "unhealthy_apps": ["ios"]}
    wait_until(lambda: (lambda r: r.status_code == 200 and r.json() == degraded)(
        requests.get(f.url("/readyz"), timeout=5)), what="/readyz to name ios alone")
    why = requests.get(f.url("/readyz?app=ios"), timeout=5)
    assert why.status_code == 503 and "a reload could not read its credentials" in why.json()["error"]
    # ios's pushes are refused, by field and by header, saying why; nothing is queued.
    for body, headers in (({"tokens": [apns_tok(3)], "payload": {"aps": {}}, "app": "ios"}, {}),
                          ({"tokens": [apns_tok(3)], "payload": {"aps": {}}}, {"X-Fcmd-App": "ios"})):
        r = requests.post(f.url("/apns/send"), json=body, headers=headers, timeout=5)
        assert r.status_code == 503 and r.headers["retry-after"] == "1", r.text
        assert r.json()["error"].startswith('app "ios" cannot send: a reload could not read its credentials')
    assert send(f, {"tokens": ["fine"], "payload": {}, "app": "alpha"}).ok
    wait_until(lambda: "fine" in tokens(apps.alpha), what="alpha's push")
    rep = report(f)
    assert rep["pending"] == 0 and rep["failures"] == 0 and rep["accepted"] == 1
    # A reload that can read the key again: ios is taken and sent; the
    # generation it retires held nothing, so nothing was lost.
    apps.write()
    f.proc.send_signal(signal.SIGHUP)
    wait_until(lambda: "generation 3 serves" in f.log_text(), what="generation 3")
    wait_until(lambda: requests.get(f.url("/readyz?app=ios"), timeout=5).status_code == 200, what="ios ready")
    assert send(f, {"tokens": [apns_tok(3)], "payload": {"aps": {}}, "app": "ios"}, path="/apns/send").ok
    wait_until(lambda: apns_tok(3) in tokens(apps.ios), timeout=30, what="ios's push")
    rep = f.wait_idle(timeout=30)
    assert rep["failures"] == 0 and rep["lost"] == 0


# ---- a broken app's credential ----

def test_a_refused_service_account_holds_only_its_app(apps, start_fcmd, other_rsa, tmp_path):
    bad = write_service_account(tmp_path / "bad-sa.json", other_rsa, f"http://127.0.0.1:{apps.beta.port}/token",
                                project="beta-project")
    f = apps.start(start_fcmd, beta_sa=bad, args=["--shutdown-timeout", "1"])  # beta's push never finishes
    wait_until(lambda: requests.get(f.url("/readyz"), timeout=5).status_code == 200 and
               requests.get(f.url("/readyz"), timeout=5).headers["content-type"] == "application/json",
               what="/readyz to name the broken app")
    r = requests.get(f.url("/readyz"), timeout=5)
    assert r.json() == {"status": "degraded", "unhealthy_apps": ["beta"]}
    assert requests.get(f.url("/readyz?app=beta"), timeout=5).status_code == 503
    assert requests.get(f.url("/readyz?app=alpha"), timeout=5).status_code == 200
    assert requests.get(f.url("/readyz?app=nope"), timeout=5).status_code == 400
    assert send(f, {"tokens": ["stuck"], "payload": {}, "app": "beta"}).ok
    for i in range(20):
        assert send(f, {"tokens": [f"flows{i}"], "payload": {}, "app": "alpha"}).ok
        assert f.send_form([f"dflows{i}"], {}).ok
    wait_until(lambda: len(tokens(apps.alpha)) == 20 and len(tokens(apps.default)) == 20,
               what="the other apps' pushes")
    rep = report(f)
    assert rep["pending"] == 1 and rep["failures"] == 0 and report(f, "?app=beta")["unhealthy"] is True
    assert tokens(apps.beta) == set()


def test_with_no_app_able_to_send_readyz_is_503(apps, start_fcmd, other_rsa, tmp_path):
    bad = write_service_account(tmp_path / "bad-sa.json", other_rsa, f"http://127.0.0.1:{apps.beta.port}/token")
    apps.conf.write_text(f"[app beta]\nservice_account = {bad}\nfcm_url = {apps.beta.base}\n")
    f = start_fcmd(apikey=None, workers=1, args=["--config", str(apps.conf)])
    r = requests.get(f.url("/readyz"), timeout=5)
    assert r.status_code == 503 and r.json() == {"status": "unavailable", "unhealthy_apps": ["beta"]}


TOKEN = "apps-operator-token-7"


def readyz(f, query="", token=None):
    return requests.get(f.url("/readyz" + query), timeout=5,
                        headers={"Authorization": f"Bearer {token}"} if token else {})


def test_readyz_names_apps_only_to_the_token(apps, start_fcmd, other_rsa, tmp_path):
    bad = write_service_account(tmp_path / "bad-sa.json", other_rsa, f"http://127.0.0.1:{apps.beta.port}/token",
                                project="beta-project")
    f = apps.start(start_fcmd, workers=1, beta_sa=bad, args=["--auth-token", TOKEN, "--shutdown-timeout", "1"])
    wait_until(lambda: readyz(f, token=TOKEN).headers["content-type"] == "application/json",
               what="/readyz to name the broken app")
    r = readyz(f, token=TOKEN)
    assert r.status_code == 200 and r.json() == {"status": "degraded", "unhealthy_apps": ["beta"]}
    assert readyz(f, "?app=beta", TOKEN).status_code == 503
    assert readyz(f, "?app=alpha", TOKEN).status_code == 200
    assert readyz(f, "?app=nope", TOKEN).status_code == 400
    # Without the token (or with a wrong one): ready or not, and nothing else.
    for token in (None, "wrong-token"):
        r = readyz(f, token=token)
        assert (r.status_code, r.text) == (200, "ok\n"), r.text
        for name in ("beta", "alpha", "nope", "default"):
            r = readyz(f, f"?app={name}", token)
            assert r.status_code == 401 and r.headers["www-authenticate"] == "Bearer", (name, r.text)
            assert name not in r.text
    assert "beta" not in readyz(f, "?app=beta").text


def test_readyz_without_the_token_hides_which_apps_cannot_send(apps, start_fcmd, other_rsa, tmp_path):
    bad = write_service_account(tmp_path / "bad-sa.json", other_rsa, f"http://127.0.0.1:{apps.beta.port}/token")
    apps.conf.write_text(f"[app beta]\nservice_account = {bad}\nfcm_url = {apps.beta.base}\n")
    f = start_fcmd(apikey=None, workers=1, args=["--config", str(apps.conf), "--auth-token", TOKEN])
    r = readyz(f, token=TOKEN)
    assert r.status_code == 503 and r.json() == {"status": "unavailable", "unhealthy_apps": ["beta"]}
    r = readyz(f)
    assert r.status_code == 503 and r.json() == {"error": "not ready"}, r.text


# ---- the spool keeps each push's app ----

def kill_all(f):
    children = f.children()
    for pid in [f.proc.pid, *children]:
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    f.proc.wait(10)
    for pid in children:
        wait_until(lambda: not os.path.exists(f"/proc/{pid}") or
                   open(f"/proc/{pid}/stat").read().split()[2] == "Z", what=f"worker {pid} to die")


def replayed_and_idle(f, n):
    """The report once n targets were adopted from the spool and all finished
    (adoption runs after the start, so pending alone may still be 0)."""
    return wait_until(lambda: (lambda r: r if r["replayed"] >= n and r["pending"] == 0 else None)(report(f)),
                      timeout=30, what=f"{n} replayed targets to finish")


def spool_first_run(apps, start_fcmd, spool):
    dead = f"http://127.0.0.1:{free_port()}"
    f = apps.start(start_fcmd, args=["--spool", str(spool)], alpha_url=dead + "/fcm/send", ios_url=dead)
    assert send(f, {"tokens": ["sp-a1", "sp-a2"], "payload": {}, "app": "alpha"}).ok
    assert send(f, {"tokens": [apns_tok(9)], "payload": {"aps": {}}}, path="/apns/send",
                headers={"X-Fcmd-App": "ios"}).ok
    assert f.send_form(["sp-d1"], {}).ok
    wait_until(lambda: "sp-d1" in tokens(apps.default), what="the default app's push")
    wait_until(lambda: report(f)["retries"] >= 3, what="alpha and ios to be retrying")
    kill_all(f)


def test_spool_replay_keeps_each_pushs_app(apps, start_fcmd, tmp_path):
    spool = tmp_path / "spool"
    spool_first_run(apps, start_fcmd, spool)
    f = Fcmd(tmp_path, apikey=None, args=["--config", str(apps.write()), "--ca-file", str(apps.cert),
                                          "--spool", str(spool)])
    try:
        rep = replayed_and_idle(f, 3)
        assert rep["replayed"] == 3 and rep["failures"] == 0 and rep["successes"] == 3
        assert tokens(apps.alpha) == {"sp-a1", "sp-a2"} and tokens(apps.ios) == {apns_tok(9)}
        assert tokens(apps.default) == {"sp-d1"}
        assert rep["apps"]["alpha"]["successes"] == 2 and rep["apps"]["ios"]["successes"] == 1
    finally:
        f.stop()


def test_spooled_pushes_of_a_removed_app_fail_without_a_crash(apps, start_fcmd, tmp_path):
    spool = tmp_path / "spool"
    spool_first_run(apps, start_fcmd, spool)
    f = Fcmd(tmp_path, apikey=None, args=["--config", str(apps.write(drop=("alpha",))), "--ca-file",
                                          str(apps.cert), "--spool", str(spool)])
    try:
        pids = set(f.children())
        rep = replayed_and_idle(f, 3)
        assert rep["failures"] == 2 and rep["successes"] == 1 and tokens(apps.ios) == {apns_tok(9)}
        text = requests.get(f.url("/metrics"), timeout=5).text
        fams = {s.labels.get("reason"): s.value for fam in text_string_to_metric_families(text)
                for s in fam.samples if s.name == "fcmd_failures_total"}
        assert fams["not_configured"] == 2
        assert set(f.children()) == pids and f.healthy()
        assert "sp-a1" not in tokens(apps.default)
    finally:
        f.stop()
