"""The Grafana dashboard (conf/grafana-fcmd.json): a structure Grafana
imports (rows, unique ids, panels on the 24-column grid without overlap,
every target with a refId and an expression, every query on the dashboard's
data source variable), and every panel's PromQL evaluated by a real
Prometheus that scrapes a real fcmd every second.  That fcmd delivers,
fails, retries and refuses pushes through three apps (legacy FCM, FCM v1
with OAuth2, APNs) against the mock upstream, so each expression, as
Grafana would send it for the run's time range, has data; none may fake it
with vector().  The dashboard also reads every family fcmd exports, and its
variables' label_values() queries find the run's job, instance and apps.
Prometheus' answers are read with Python's json, /metrics with
prometheus_client's parser."""

import json
import math
import os
import re
import subprocess
import time

import pytest
import requests
from prometheus_client.parser import text_string_to_metric_families

from apns_keys import KEY_ID, TEAM_ID, TOPIC, make_p256
from conftest import API_KEY, ROOT, Fcmd, Mock, free_port, stop_process, wait_until, write_service_account

DASHBOARD = os.path.join(ROOT, "conf", "grafana-fcmd.json")
DATASOURCE = {"type": "prometheus", "uid": "${datasource}"}
JOB = "fcmd"
QUEUE_SIZE = 40  # per worker: small, so the run can fill it and be refused with 503
# Grafana's $__rate_interval for a data source scraped every second: four scrapes.
RATE_INTERVAL = "4s"


def dashboard():
    with open(DASHBOARD) as f:
        return json.load(f)


def walk(panels):
    for p in panels:
        yield p
        yield from walk(p.get("panels", []))


def queries(d=None):
    """(panel, target) for every target of every panel, rows' panels included."""
    return [(p, t) for p in walk((d or dashboard())["panels"]) for t in p.get("targets", [])]


def variables(d=None):
    return {v["name"]: v for v in (d or dashboard())["templating"]["list"]}


def variable_query(v):
    q = v["query"]
    return q["query"] if isinstance(q, dict) else q


# ---- the structure ----

def overlaps(a, b):
    return (a["x"] < b["x"] + b["w"] and b["x"] < a["x"] + a["w"] and
            a["y"] < b["y"] + b["h"] and b["y"] < a["y"] + a["h"])


def test_the_dashboard_is_one_grafana_imports():
    d = dashboard()
    assert d["schemaVersion"] >= 36 and d["title"] and re.fullmatch(r"[A-Za-z0-9_-]{1,40}", d["uid"]), d["uid"]
    # One file both imports and provisions: no __inputs to fill in, no database id.
    assert "__inputs" not in d and d.get("id") is None
    panels = list(walk(d["panels"]))
    ids = [p["id"] for p in panels]
    assert all(isinstance(i, int) for i in ids) and len(ids) == len(set(ids)), ids
    # Placement: on the grid, and no two panels of one layout on top of each other (a
    # collapsed row's panels are laid out when it opens, so they are a layout of their own).
    layouts = [d["panels"]] + [p["panels"] for p in d["panels"] if p["type"] == "row" and p["collapsed"]]
    for layout in layouts:
        for i, p in enumerate(layout):
            g = p["gridPos"]
            assert {"x", "y", "w", "h"} <= set(g) and all(isinstance(g[k], int) for k in "xywh"), p["title"]
            assert g["x"] >= 0 and g["w"] > 0 and g["x"] + g["w"] <= 24 and g["h"] > 0 and g["y"] >= 0, p["title"]
            for q in layout[:i]:
                assert not overlaps(g, q["gridPos"]), (p["title"], q["title"])
    rows = [p for p in d["panels"] if p["type"] == "row"]
    assert len(rows) >= 8
    for row in rows:
        assert row["gridPos"]["w"] == 24 and row["title"]
        assert bool(row["panels"]) == row["collapsed"], row["title"]  # an open row's panels follow it
    assert any(r["collapsed"] for r in rows)
    for p in panels:
        if p["type"] == "row":
            assert "targets" not in p
            continue
        assert p["type"] in {"stat", "timeseries", "heatmap", "table"}, p["type"]
        assert p["title"] and p["description"], p["id"]
        assert p["datasource"] == DATASOURCE, p["title"]
        assert p["targets"], p["title"]
        refs = [t["refId"] for t in p["targets"]]
        assert len(refs) == len(set(refs)) and all(re.fullmatch(r"[A-Z]", r) for r in refs), (p["title"], refs)
        for t in p["targets"]:
            assert t["datasource"] == DATASOURCE, (p["title"], t["refId"])
            assert isinstance(t["expr"], str) and t["expr"].strip(), (p["title"], t["refId"])
            assert isinstance(t["legendFormat"], str), (p["title"], t["refId"])
    kinds = {p["type"] for p in panels}
    assert {"stat", "timeseries", "heatmap", "table"} <= kinds


def test_the_variables_pick_the_data_source_job_instance_and_app():
    v = variables()
    assert v["datasource"]["type"] == "datasource" and v["datasource"]["query"] == "prometheus"
    for name, label in (("job", "job"), ("instance", "instance"), ("app", "app")):
        assert v[name]["type"] == "query" and v[name]["datasource"] == DATASOURCE, name
        assert v[name]["multi"] and v[name]["includeAll"] and v[name]["allValue"] == ".*", name
        assert re.fullmatch(rf"label_values\(fcmd_\w+(\{{.*\}})?, {label}\)", variable_query(v[name])), name
    # The instance list follows the job chosen, the app list both.
    assert '$job' in variable_query(v["instance"]) and '$instance' in variable_query(v["app"])


def test_every_query_is_per_job_and_instance_and_reads_real_series():
    defined = set(variables())
    for p, t in queries():
        expr = t["expr"]
        assert not re.search(r"\b(vector|absent|absent_over_time)\s*\(", expr), (p["title"], expr)
        # Every series it reads, selected by the dashboard's job and instance.
        names = re.findall(r"\b(fcmd_[a-z_]+|up)\b(\{[^}]*\})?", expr)
        assert names, (p["title"], expr)
        for name, sel in names:
            assert 'job=~"$job"' in sel and 'instance=~"$instance"' in sel, (p["title"], name, expr)
        for var in re.findall(r"\$(\w+)", expr):
            assert var.startswith("__") or var in defined, (p["title"], var)
        if "fcmd_app_targets_total" in expr:
            assert 'app=~"$app"' in expr, (p["title"], expr)


# ---- against a real Prometheus scraping a real fcmd ----

class Prometheus:
    def __init__(self, tmp, target):
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        config = tmp / "prometheus.yml"
        config.write_text(
            "global:\n  scrape_interval: 1s\n  scrape_timeout: 1s\n  evaluation_interval: 1s\n"
            f"scrape_configs:\n  - job_name: {JOB}\n    static_configs:\n      - targets: [\"{target}\"]\n")
        self.log = tmp / "prometheus.log"
        with open(self.log, "w") as log:
            self.proc = subprocess.Popen(
                ["prometheus", f"--config.file={config}", f"--storage.tsdb.path={tmp / 'tsdb'}",
                 f"--web.listen-address=127.0.0.1:{self.port}", "--log.level=warn"],
                stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        try:
            wait_until(self.ready, timeout=30, interval=0.1, what="Prometheus to be ready")
        except BaseException:
            self.stop()
            raise

    def ready(self):
        if self.proc.poll() is not None:
            raise AssertionError(f"prometheus exited with {self.proc.returncode}: {self.log.read_text()}")
        try:
            return requests.get(self.url + "/-/ready", timeout=2).status_code == 200
        except requests.ConnectionError:
            return False

    def api(self, path, **params):
        r = requests.get(self.url + "/api/v1/" + path, params=params, timeout=10)
        body = json.loads(r.text)
        assert r.status_code == 200 and body["status"] == "success", (path, params, r.status_code, r.text)
        return body["data"]

    def value(self, expr):
        """The single value expr has now, or None."""
        result = self.api("query", query=expr)["result"]
        return float(result[0]["value"][1]) if len(result) == 1 else None

    def stop(self):
        stop_process(self.proc)


def apns_tok(prefix, i):
    return (prefix + f"{i:x}".rjust(8, "0")).ljust(64, "a")


def send(f, path, body):
    return requests.post(f.url(path), json=body, timeout=5)


def traffic(f, prom):
    """Pushes that make every series the dashboard draws move: deliveries on
    all three upstreams, invalid tokens, canonicals, retries (Unavailable,
    5xx, token refused) and failures (retries exhausted, a refused key, the
    project's third-party credentials), bad requests, drain reads, and
    pushes refused with 503."""
    payload = {"msg": "hi"}
    for i in range(5):
        assert send(f, "/gcm/send", {"tokens": [f"ok-{i}-{j}" for j in range(3)], "payload": payload}).ok
    assert send(f, "/gcm/send", {"tokens": ["notreg-1", "canon-1", "unavail1-1", "mismatch-1", "unavail-1"],
                                 "payload": payload}).ok
    assert send(f, "/gcm/send", {"tokens": ["http401-1"], "payload": payload}).ok
    assert send(f, "/gcm/send", {"app": "beta", "tokens": ["ok-v1-1", "notreg-v1", "thirdparty-v1", "refuse1-v1"],
                                 "payload": payload}).ok
    assert send(f, "/apns/send", {"app": "ios", "tokens": [apns_tok("ab", 1), apns_tok("dead", 2),
                                                           apns_tok("0503", 3)],
                                  "payload": {"aps": {"alert": "hi"}}}).ok

    # A status is in /metrics from its first answer on, so a series is born at 1 and
    # rate() sees it move only from its second: each error happens again once
    # Prometheus has scraped the first.
    def scraped(status):
        wait_until(lambda: prom.value(f'sum(fcmd_http_requests_total{{job="{JOB}",status="{status}"}})'),
                   timeout=30, interval=0.2, what=f"Prometheus to scrape a {status}")

    for _ in range(2):
        assert requests.post(f.url("/gcm/send"), data="{", headers={"Content-Type": "application/json"},
                             timeout=5).status_code == 400
        assert requests.get(f.url("/gcm/send"), timeout=5).status_code == 405
        assert requests.get(f.url("/no/such/page"), timeout=5).status_code == 404
        for status in (400, 405, 404):
            scraped(status)
    f.wait_idle(timeout=60)
    for path in ("/gcm/report/canonical", "/gcm/report/notregistered"):
        assert requests.get(f.url(path), timeout=5).status_code == 200
    # A full queue: pushes the mock answers 503 (Retry-After: 2) on their first try
    # stay pending until every worker's queue is full, and the next is refused.
    n = [0]

    def refused():
        n[0] += 1
        r = send(f, "/gcm/send", {"tokens": [f"http503once-{n[0]}-{i}" for i in range(QUEUE_SIZE)],
                                  "payload": payload})
        assert r.status_code in (200, 503), (r.status_code, r.text)
        return r.status_code == 503
    for _ in range(2):
        wait_until(refused, timeout=15, interval=0, what="a send refused with 503")
        scraped(503)
    f.wait_idle(timeout=60)


@pytest.fixture(scope="module")
def live(tmp_path_factory, tls_cert, signing_key):
    """A real fcmd scraped by a real Prometheus from before its first push
    until after its last target finished."""
    tmp = tmp_path_factory.mktemp("dashboard")
    cert, key = tls_cert
    apns_key, apns_pub = make_p256(tmp)
    private_pem, public = signing_key
    procs = []
    try:
        mock = Mock("--apikey", API_KEY, "--oauth-public-key", str(public), "--oauth-fail", "1",
                    "--retry-after", "2", "--tls-cert", str(cert), "--tls-key", str(key),
                    "--apns-public-key", str(apns_pub), "--apns-key-id", KEY_ID, "--apns-team-id", TEAM_ID,
                    "--apns-topic", TOPIC, cafile=str(cert))
        procs.append(mock)
        sa = write_service_account(tmp / "sa.json", private_pem, f"{mock.base}/token")
        conf = tmp / "fcmd.conf"
        conf.write_text(
            f"[upstream]\napikey = {API_KEY}\ngcm_url = {mock.url()}\n[send]\nretries = 1\n"
            f"[app beta]\nservice_account = {sa}\nfcm_url = {mock.base}\n"
            f"[app ios]\napns_key = {apns_key}\napns_key_id = {KEY_ID}\napns_team_id = {TEAM_ID}\n"
            f"apns_topic = {TOPIC}\napns_url = {mock.base}\n")
        os.chmod(conf, 0o600)
        f = Fcmd(tmp, apikey=None, workers=2,
                 args=["--config", str(conf), "--ca-file", str(cert), "--spool", str(tmp / "spool"),
                       "--queue-size", str(QUEUE_SIZE)])
        procs.append(f)
        prom = Prometheus(tmp, f"127.0.0.1:{f.port}")
        procs.append(prom)
        up = f'up{{job="{JOB}"}}'
        wait_until(lambda: prom.value(up) == 1, timeout=30, interval=0.2, what="a first scrape of fcmd")
        start = time.time()
        traffic(f, prom)
        report = f.report()
        assert report["failures"] > 0 and report["retries"] > 0 and report["notregistered"] > 0, report
        # Prometheus has scraped the end state: every target accepted, none pending.
        wait_until(lambda: prom.value(f'fcmd_accepted_targets_total{{job="{JOB}"}}') == report["accepted"]
                   and prom.value(f'fcmd_pending{{job="{JOB}"}}') == 0,
                   timeout=30, interval=0.2, what="Prometheus to scrape the run's end")
        metrics = requests.get(f.url("/metrics"), timeout=5).text
        yield {"prom": prom, "fcmd": f, "start": start, "end": time.time(), "metrics": metrics}
    finally:
        for p in reversed(procs):
            p.stop()


def regex_value(values):
    """A multi-value variable as Grafana puts it in a PromQL regex: each value
    regex-escaped (and escaped again for the string literal), alternatives in
    parentheses."""
    escaped = [re.escape(v).replace("\\", "\\\\") for v in values]
    return escaped[0] if len(escaped) == 1 else "(" + "|".join(escaped) + ")"


def variable_values(prom, query, chosen):
    """What a label_values(METRIC{...}, LABEL) variable lists, its selector's
    variables set to the values chosen so far."""
    m = re.fullmatch(r"label_values\((.+), (\w+)\)", query)
    selector = m.group(1)
    for name, value in chosen.items():
        selector = selector.replace(f"${name}", value)
    return prom.api(f"label/{m.group(2)}/values", **{"match[]": selector})


def test_the_variables_list_the_runs_job_instance_and_apps(live):
    prom, f = live["prom"], live["fcmd"]
    chosen, listed = {}, {}
    for name in ("job", "instance", "app"):
        listed[name] = variable_values(prom, variable_query(variables()[name]), chosen)
        chosen[name] = regex_value(listed[name])
    assert listed == {"job": [JOB], "instance": [f"127.0.0.1:{f.port}"], "app": ["beta", "default", "ios"]}


def test_every_panel_query_has_data_in_a_real_prometheus(live):
    prom, start, end = live["prom"], live["start"], live["end"]
    span = math.ceil(end - start) + 1
    chosen = {}
    for name in ("job", "instance", "app"):
        chosen[name] = regex_value(variable_values(prom, variable_query(variables()[name]), chosen))
    subs = {"$__rate_interval": RATE_INTERVAL, "$__interval": "1s", "$__range": f"{span}s", **{
        f"${k}": v for k, v in chosen.items()}}
    checked = 0
    for p, t in queries():
        expr = t["expr"]
        for k in sorted(subs, key=len, reverse=True):
            expr = expr.replace(k, subs[k])
        assert "$" not in expr, (p["title"], expr)
        what = f"{p['title']} ({t['refId']}): {expr}"
        if t.get("instant"):
            data = prom.api("query", query=expr, time=end)
            values = [s["value"][1] for s in data["result"]]
        else:
            data = prom.api("query_range", query=expr, start=start, end=end, step=1)
            values = [v[1] for s in data["result"] for v in s["values"]]
        assert data["result"], f"no data: {what}"
        assert data["resultType"] == ("vector" if t.get("instant") else "matrix"), what
        # Something to draw: not only NaN (0/0) or infinities.
        assert any(math.isfinite(float(v)) for v in values), f"only {set(values)}: {what}"
        checked += 1
    assert checked == len(queries()) >= 60


def test_the_dashboard_reads_every_family_fcmd_exports(live):
    exprs = " ".join(t["expr"] for _, t in queries())
    read = set(re.findall(r"\bfcmd_[a-z_]+", exprs))
    missing = []
    for family in text_string_to_metric_families(live["metrics"]):
        names = {s.name for s in family.samples}
        if family.type == "histogram":
            names = {family.name + "_bucket"}
        if not names & read:
            missing.append(family.name)
    assert not missing, f"families no panel shows: {missing}"
    # And no panel reads a series fcmd does not export.
    exported = {s.name for fam in text_string_to_metric_families(live["metrics"]) for s in fam.samples}
    assert read <= exported, read - exported
