"""The alert rules (conf/fcmd-alerts.yml) with Prometheus' own promtool: they
load, and their unit tests (tests/alerts/) pass; each alert has a case that
fires and one that does not.  Then against a real fcmd: every series a rule
reads is in its /metrics, with the labels and label values the rule selects,
and rate() and increase() read counters only.  /metrics is read with
prometheus_client's parser, the rules with PyYAML."""

import os
import re
import subprocess

import requests
import yaml
from prometheus_client.parser import text_string_to_metric_families

from conftest import ROOT

RULES = os.path.join(ROOT, "conf", "fcmd-alerts.yml")
TESTS = os.path.join(ROOT, "tests", "alerts", "fcmd-alerts.test.yml")


def promtool(*args):
    return subprocess.run(["promtool", *args], capture_output=True, text=True, timeout=120)


def alerts():
    with open(RULES) as f:
        return [r for g in yaml.safe_load(f)["groups"] for r in g["rules"] if "alert" in r]


def test_the_rules_load():
    r = promtool("check", "rules", RULES)
    assert r.returncode == 0, r.stdout + r.stderr
    assert f"SUCCESS: {len(alerts())} rules found" in r.stdout, r.stdout


def test_the_rules_unit_tests_pass():
    r = promtool("test", "rules", TESTS)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "SUCCESS" in r.stdout, r.stdout


def test_every_alert_has_a_case_that_fires_and_one_that_does_not():
    """Does not fire: an evaluation that expects none, or an instance of the
    case's input that none of its expected alerts names."""
    with open(TESTS) as f:
        cases = yaml.safe_load(f)["tests"]
    for rule in alerts():
        fires = quiet = False
        for case in cases:
            evals = [t for t in case.get("alert_rule_test", []) if t["alertname"] == rule["alert"]]
            if not evals:
                continue
            instances = {m.group(1) for s in case["input_series"]
                         for m in [re.search(r'instance="([^"]*)"', s["series"])] if m}
            named = {a["exp_labels"]["instance"] for t in evals for a in t.get("exp_alerts") or []}
            fires |= bool(named)
            quiet |= any(not t.get("exp_alerts") for t in evals) or bool(instances - named)
        assert fires, f"{rule['alert']}: no case where it fires"
        assert quiet, f"{rule['alert']}: no case where it does not fire"


def selectors(expr):
    """(name, {label: (op, value)}, inside rate/increase) for each series in expr."""
    out = []
    for m in re.finditer(r"(rate|increase)?\(?\s*(fcmd_[a-z_]+)(\{([^}]*)\})?", expr):
        matchers = {k: (op, v) for k, op, v in re.findall(r'(\w+)\s*(=~|!=|=)\s*"([^"]*)"', m.group(4) or "")}
        out.append((m.group(2), matchers, m.group(1) is not None))
    return out


def test_every_series_the_rules_read_is_in_a_real_scrape(mock, start_fcmd):
    f = start_fcmd(mock, workers=2)
    resp = requests.get(f.url("/metrics"), timeout=5)
    assert resp.status_code == 200
    samples, types, families = {}, {}, set()
    for family in text_string_to_metric_families(resp.text):
        families.add(family.name)
        for s in family.samples:
            samples.setdefault(s.name, []).append(s.labels)
            types[s.name] = family.type
    used = set()
    for rule in alerts():
        # What the annotations point the operator at is there too.
        for name in re.findall(r"fcmd_[a-z_]+", " ".join(rule.get("annotations", {}).values())):
            assert name in samples or name in families, f"{rule['alert']}'s annotations name {name}"
        names = set(re.findall(r"fcmd_[a-z_]+", rule["expr"]))
        assert names, rule["alert"]
        used |= names
        for name, matchers, in_rate in selectors(rule["expr"]):
            assert name in samples, f"{rule['alert']}: {name} is not in /metrics"
            assert types[name] == ("counter" if in_rate else "gauge"), (rule["alert"], name, types[name])
            for label, (op, value) in matchers.items():
                assert any(label in ls for ls in samples[name]), f"{rule['alert']}: {name} has no label {label}"
                # A status shows once an answer with it was counted; the other
                # labels (endpoint, reason, list) show every value from the start.
                if label != "status":
                    for v in value.split("|") if op == "=~" else [value]:
                        assert any(ls.get(label) == v for ls in samples[name]), \
                            f"{rule['alert']}: {name} has no {label}={v!r}"
    # The bounds the near-full alerts need are among them.
    assert {"fcmd_queue_capacity", "fcmd_queue_max_bytes", "fcmd_spool_max_bytes", "fcmd_redis_unreachable"} <= used
