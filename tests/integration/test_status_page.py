"""The status page at / and /status: its answer (headers, HEAD, 405, and a
CSP whose hashes are those of the page's own inline script and style,
computed here with Python's html.parser and hashlib), and the page itself in
a real browser - Debian's chromium, headless, driven by selenium - showing
the numbers /gcm/report has (read here with requests and Python's json)
while pushes flow, asking for the token when one is set and never putting it
in a URL, loading nothing from elsewhere, and logging no console error.

Screenshots go to $FCMD_ARTEFACTS (build/artefacts by default):
status-page.png at 1280x900 and status-page-phone.png at 390x844."""

import base64
import hashlib
import html.parser
import json
import os
import threading

import pytest
import requests
from selenium import webdriver
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By

from conftest import ROOT, wait_until
from webhook_receiver import Receiver
from test_fleet import redis  # noqa: F401 (the fixture)

ARTEFACTS = os.environ.get("FCMD_ARTEFACTS", os.path.join(ROOT, "build", "artefacts"))
TOKEN = "status-page-token-5e1d0c"
PAGE_HEADERS = {
    "content-type": "text/html; charset=utf-8",
    "x-content-type-options": "nosniff",
    "referrer-policy": "no-referrer",
    "cache-control": "no-store",
    "x-frame-options": "DENY",
}


class Inline(html.parser.HTMLParser):
    """The text of every <script> and <style> element, and whether any
    element loads a script or a stylesheet or has an inline style or handler."""

    def __init__(self):
        super().__init__(convert_charrefs=False)
        self.blocks, self.open, self.bad = {"script": [], "style": []}, None, []

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        if tag in self.blocks:
            self.open = tag
            self.blocks[tag].append("")
        if "src" in a and tag == "script" or tag == "link" and a.get("rel") == "stylesheet":
            self.bad.append(tag)
        self.bad += [f"{tag} {k}" for k in a if k == "style" or k.startswith("on")]

    def handle_endtag(self, tag):
        if tag == self.open:
            self.open = None

    def handle_data(self, data):
        if self.open:
            self.blocks[self.open][-1] += data


def sha256(text):
    return "'sha256-" + base64.b64encode(hashlib.sha256(text.encode()).digest()).decode() + "'"


def csp(resp):
    return {d.split()[0]: d.split()[1:] for d in (x.strip() for x in resp.headers["content-security-policy"].split(";"))}


def test_the_page_answers_at_root_and_status_under_its_own_csp(mock, start_fcmd):
    f = start_fcmd(mock, workers=1)
    root, status = requests.get(f.url("/"), timeout=5), requests.get(f.url("/status"), timeout=5)
    assert root.status_code == status.status_code == 200
    assert root.content == status.content and root.text.startswith("<!doctype html>")
    for name, value in PAGE_HEADERS.items():
        assert root.headers[name] == status.headers[name] == value, name
    assert "x-fcmd-report-auth" not in root.headers  # no token is set

    page = Inline()
    page.feed(root.text)
    assert page.bad == [] and len(page.blocks["script"]) == len(page.blocks["style"]) == 1
    policy = csp(root)
    assert policy == {
        "default-src": ["'none'"],
        "script-src": [sha256(page.blocks["script"][0])],
        "style-src": [sha256(page.blocks["style"][0])],
        "connect-src": ["'self'"],
        "img-src": ["data:"],
        "base-uri": ["'none'"],
        "form-action": ["'none'"],
        "frame-ancestors": ["'none'"],
    }, policy

    head = requests.head(f.url("/"), timeout=5)
    assert head.status_code == 200 and head.content == b""
    assert head.headers["content-length"] == str(len(root.content))
    assert head.headers["content-security-policy"] == root.headers["content-security-policy"]
    for method in ("POST", "PUT", "DELETE"):
        r = requests.request(method, f.url("/status"), timeout=5)
        assert r.status_code == 405 and r.headers["allow"] == "GET" and r.json()["error"], (method, r.text)
    # The page takes no query; every other path is still a JSON 404.
    r = requests.get(f.url("/?token=x"), timeout=5)
    assert r.status_code == 400 and "unknown query parameter" in r.json()["error"]
    for path in ("/index.html", "/status/", "/statusx", "//"):
        r = requests.get(f.url(path), timeout=5)
        assert r.status_code == 404 and r.json() == {"error": "no such endpoint"}, path
    metrics = requests.get(f.url("/metrics"), timeout=5).text
    assert 'fcmd_http_requests_total{endpoint="status",status="200"} 3' in metrics, metrics
    assert 'fcmd_http_requests_total{endpoint="status",status="405"} 3' in metrics, metrics


def test_the_page_tells_whether_the_report_needs_a_token(mock, start_fcmd, tmp_path):
    token_file = tmp_path / "token"
    token_file.write_text(TOKEN + "\n")
    f = start_fcmd(mock, workers=1, args=["--auth-token-file", str(token_file)])
    bare = requests.get(f.url("/"), timeout=5)
    assert bare.status_code == 200 and bare.headers["x-fcmd-report-auth"] == "bearer"
    told = requests.get(f.url("/"), headers={"Authorization": f"Bearer {TOKEN}"}, timeout=5)
    assert told.status_code == 200 and "x-fcmd-report-auth" not in told.headers
    assert told.content == bare.content
    g = start_fcmd(mock, workers=1, args=["--auth-token-file", str(token_file), "--auth-scopes", "send"])
    assert "x-fcmd-report-auth" not in requests.get(g.url("/"), timeout=5).headers


@pytest.fixture
def browser(tmp_path):
    """Headless chromium; its console is checked for errors when the test is done."""
    opts = webdriver.ChromeOptions()
    opts.binary_location = "/usr/bin/chromium"
    for a in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
              "--disable-extensions", "--no-first-run", "--window-size=1280,900",
              f"--user-data-dir={tmp_path / 'chromium'}"):
        opts.add_argument(a)
    opts.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(service=Service("/usr/bin/chromedriver"), options=opts)
    driver.console = []
    try:
        yield driver
        driver.console += driver.get_log("browser")
    finally:
        driver.quit()


def console_errors(driver, allowed=()):
    driver.console += driver.get_log("browser")
    return [e for e in driver.console if e["level"] == "SEVERE" and not any(a in e["message"] for a in allowed)]


def shown(driver):
    """What the page shows: its report keys, totals, upstream rows and bars."""
    return driver.execute_script("""
        var out = {keys: {}, totals: {}, upstreams: {}, bars: {}, rates: {}};
        document.querySelectorAll('#report-keys dd').forEach(function (e) { out.keys[e.dataset.key] = e.textContent; });
        ['accepted', 'successes', 'failures', 'pending', 'dropped'].forEach(function (k) {
            out.totals[k] = document.getElementById('v-' + k).textContent;
            var r = document.getElementById('rate-' + k);
            if (r) out.rates[k] = r.dataset.rate;
        });
        document.querySelectorAll('#upstream-table tr[data-name]').forEach(function (tr) {
            var row = {};
            tr.querySelectorAll('td[data-key]').forEach(function (td) { row[td.dataset.key] = td.textContent; });
            out.upstreams[tr.dataset.name] = row;
        });
        document.querySelectorAll('.bar').forEach(function (b) {
            var v = b.querySelector('[data-value]');
            out.bars[b.id] = {value: v.dataset.value, bound: v.dataset.bound, records: b.dataset.records};
        });
        out.main = !document.getElementById('main').hidden;
        out.login = !document.getElementById('login').hidden;
        out.ready = document.getElementById('ready').dataset.state;
        return out;""")


def number(text):
    return int(text.replace(",", ""))


def matches(page, rep):
    """Whether every number the page shows is the report's (uptime aside)."""
    keys = {k: v for k, v in rep.items() if not isinstance(v, dict) and k != "uptime_seconds"}
    if set(page["keys"]) - {"uptime_seconds"} != set(keys):
        return False
    for k, v in keys.items():
        if (number(page["keys"][k]) if isinstance(v, int) else page["keys"][k]) != v:
            return False
    if any(number(page["totals"][k]) != rep[k] for k in page["totals"]):
        return False
    row = page["upstreams"].get(rep["upstream"], {})
    if {k: number(v) for k, v in row.items()} != {k: rep[k] for k in row} or not row:
        return False
    bars = page["bars"]
    return (bars["bar-queue-depth"]["value"] == str(rep["queue_depth"])
            and bars["bar-queue-depth"]["bound"] == str(rep["queue_capacity"])
            and bars["bar-queue-bytes"]["bound"] == str(rep["queue_max_bytes"])
            and bars["bar-list-notregistered"]["records"] == str(rep["notregistered_records"])
            and bars["bar-list-notregistered"]["value"] == str(rep["notregistered_bytes"])
            and bars["bar-list-notregistered"]["bound"] == str(rep["drain_list_bytes"]))


class Pusher(threading.Thread):
    """Sends pushes that succeed, are invalid or fail, until stopped."""

    def __init__(self, f, headers=None):
        super().__init__(daemon=True)
        self.f, self.headers, self.stop, self.sent, self.error = f, headers or {}, threading.Event(), 0, None
        self.start()

    def run(self):
        try:
            with requests.Session() as s:
                while not self.stop.is_set():
                    i = self.sent
                    body = {"tokens": [f"ok-{i}", f"ok2-{i}", f"notreg-{i}", f"mismatch-{i}"], "payload": {"n": i}}
                    r = s.post(self.f.url("/gcm/send"), json=body, headers=self.headers, timeout=5)
                    assert r.status_code == 200, r.text
                    self.sent += 1
                    self.stop.wait(0.02 + 0.02 * (i // 300 % 3))  # a pace that changes, as traffic does
        except BaseException as e:  # noqa: B902 - reported by finish()
            self.error = e

    def finish(self):
        self.stop.set()
        self.join(10)
        assert self.error is None, self.error
        return self.sent


def resources(driver):
    return driver.execute_script("return performance.getEntriesByType('resource').map(function (e) { return e.name; })")


def save(driver, name):
    os.makedirs(ARTEFACTS, exist_ok=True)
    path = os.path.join(ARTEFACTS, name)
    assert driver.save_screenshot(path), path
    assert os.path.getsize(path) > 10000, path
    return path


def test_the_page_shows_the_report_while_pushes_flow(start_mock, start_fcmd, browser):
    mock = start_mock("--latency-ms", "20")
    f = start_fcmd(mock, workers=2)
    browser.get(f.url("/"))
    wait_until(lambda: shown(browser)["main"], timeout=15, what="the page's first report")
    assert browser.find_element(By.ID, "webhook").is_displayed() is False  # the report has no webhook
    assert browser.find_element(By.ID, "fleet").is_displayed() is False
    pusher = Pusher(f)
    try:
        # Rates come from successive samples: with pushes flowing they show.
        wait_until(lambda: all(float(shown(browser)["rates"][k] or 0) > 0 for k in ("accepted", "successes",
                                                                                     "failures")),
                   timeout=30, interval=0.2, what="the page to show rates above 0")
        # FCMD_STATUS_SAMPLES=N keeps pushes flowing until the charts hold N
        # samples (two seconds apart), for a screenshot with some history.
        samples = int(os.environ.get("FCMD_STATUS_SAMPLES", "0"))
        wait_until(lambda: int(browser.find_element(By.ID, "chart-accepted").get_attribute("data-samples")) >= samples,
                   timeout=10 + 3 * samples, interval=0.5, what=f"{samples} samples in the charts")
        save(browser, "status-page-flowing.png")
    finally:
        sent = pusher.finish()
    rep = f.wait_idle(timeout=30)
    assert rep["accepted"] == 4 * sent and rep["notregistered"] == sent > 0

    def agree():
        r = requests.get(f.url("/gcm/report"), timeout=5).json()
        page = shown(browser)
        agree.last = (page, r)
        return matches(page, r)
    agree.last = None
    try:
        wait_until(agree, timeout=20, interval=0.3, what="the page to show the report's numbers")
    except AssertionError as e:
        raise AssertionError(f"{e}: {json.dumps(agree.last, indent=1)}") from None
    assert shown(browser)["ready"] == "ready"
    save(browser, "status-page.png")

    # Everything the page loaded is its own origin's, and reading the report drained nothing.
    urls = resources(browser)
    assert any(u.startswith(f.url("/gcm/report")) for u in urls), urls
    assert all(u.startswith(f.base + "/") for u in urls), urls
    assert requests.get(f.url("/gcm/report/notregistered"), timeout=5).json()["tokens"] is not None

    # Readable on a phone: nothing wider than the screen.
    browser.execute_cdp_cmd("Emulation.setDeviceMetricsOverride",
                            {"width": 390, "height": 844, "deviceScaleFactor": 2, "mobile": True})
    wait_until(lambda: browser.execute_script("return innerWidth") == 390, what="the phone's viewport")
    wait_until(agree, timeout=20, interval=0.3, what="a render at the phone's size")
    width = browser.execute_script("return [document.documentElement.scrollWidth, innerWidth]")
    assert width[0] <= width[1], width
    save(browser, "status-page-phone.png")
    browser.execute_cdp_cmd("Emulation.clearDeviceMetricsOverride", {})

    assert console_errors(browser) == []


def test_the_webhook_and_its_lag(mock, start_fcmd, browser):
    # A receiver that refuses every batch: its events wait, and the page
    # shows them with the lag first, as the report has them.
    rcv = Receiver(plan=lambda n: "fail")
    try:
        f = start_fcmd(mock, workers=2, args=["--webhook", rcv.url, "--webhook-events", "all"])
        for i in range(3):
            assert f.send_json({"tokens": [f"ok-w{i}", f"notreg-w{i}"], "payload": {"k": i}}).status_code == 200
        wait_until(lambda: f.report()["webhook_pending"] == 9, what="nine events waiting")
        wait_until(lambda: rcv.requests >= 2 and f.report()["webhook_failed_attempts"] >= 2, timeout=15,
                   what="failed attempts counted")
        browser.get(f.url("/"))

        def agree():
            page = dict(browser.execute_script(
                "return [].map.call(document.querySelectorAll('#webhook-facts dd'), function (e) {"
                " return [e.dataset.key, e.textContent]; })"))
            rep = f.report()
            want = {k[8:]: f"{rep[k]:,}" for k in rep if k.startswith("webhook_")}
            return page if page == want and browser.find_element(By.ID, "webhook").is_displayed() else None

        wait_until(agree, timeout=20, interval=0.3, what="the page's webhook facts to match the report")
        keys = browser.execute_script(
            "return [].map.call(document.querySelectorAll('#webhook-facts dd'), function (e) { return e.dataset.key; })")
        assert keys[0] == "oldest_seconds" and keys[1] == "pending", keys
        save(browser, "status-page-webhook.png")
        assert console_errors(browser) == []
    finally:
        rcv.stop()


def test_the_page_asks_for_the_token_and_keeps_it_out_of_urls(mock, start_fcmd, browser, tmp_path):
    token_file = tmp_path / "token"
    token_file.write_text(TOKEN + "\n")
    log = tmp_path / "access.log"
    f = start_fcmd(mock, workers=2, args=["--auth-token-file", str(token_file), "--access-log", str(log)])
    auth = {"Authorization": f"Bearer {TOKEN}"}
    assert requests.get(f.url("/gcm/report"), timeout=5).status_code == 401
    browser.get(f.url("/status"))
    wait_until(lambda: shown(browser)["login"], timeout=15, what="the token prompt")
    page = shown(browser)
    assert not page["main"] and page["keys"] == {}
    # It asked before reading the report: no refused request.
    assert not any("/gcm/report" in u for u in resources(browser)), resources(browser)

    # A wrong token is refused and asked for again.
    field = browser.find_element(By.ID, "token")
    assert field.get_attribute("type") == "password"
    field.send_keys("not-the-token")
    browser.find_element(By.CSS_SELECTOR, "#login button").click()
    wait_until(lambda: browser.find_element(By.ID, "login-error").text == "That token was refused."
               and shown(browser)["login"], timeout=10, what="the wrong token refused")

    browser.find_element(By.ID, "token").send_keys(TOKEN)
    browser.find_element(By.CSS_SELECTOR, "#login button").click()
    wait_until(lambda: shown(browser)["main"], timeout=15, what="the report after the token")
    pusher = Pusher(f, auth)
    try:
        wait_until(lambda: number(shown(browser)["totals"]["accepted"]) > 0, timeout=20, interval=0.2,
                   what="pushes shown")
    finally:
        pusher.finish()
    wait_until(lambda: (lambda r: r["pending"] == 0 and r)(requests.get(f.url("/gcm/report"), headers=auth,
                                                                         timeout=5).json()),
               timeout=30, what="pending to reach 0")
    wait_until(lambda: matches(shown(browser), requests.get(f.url("/gcm/report"), headers=auth, timeout=5).json()),
               timeout=20, interval=0.3, what="the page to show the report's numbers")

    # The token went in a header only: in no URL the browser asked for, not
    # in the page's address, not in localStorage; sessionStorage holds it.
    urls = resources(browser) + [browser.current_url]
    assert not any(TOKEN in u for u in urls), urls
    assert browser.execute_script("return JSON.stringify(localStorage)") == "{}"
    assert browser.execute_script("return sessionStorage.getItem('fcmd-token')") == TOKEN
    requested = [line.split('"')[1] for line in log.read_text().splitlines()]
    assert any(r.startswith("GET /gcm/report ") for r in requested), requested
    assert not any(TOKEN in line or "not-the-token" in line for line in log.read_text().splitlines())
    # The one refusal, of the wrong token, is the only console error.
    refused = "/gcm/report - Failed to load resource: the server responded with a status of 401"
    assert console_errors(browser, allowed=(refused,)) == []
    assert len(console_errors(browser)) == 1, browser.console


@pytest.mark.parametrize("fleet", [False, True], ids=["instance", "fleet"])
def test_an_apps_token_is_told_the_page_wants_the_instances(mock, start_fcmd, browser, tmp_path, request, fleet):
    app_token = "alpha-tenant-token-7d1c"
    (tmp_path / "alpha.token").write_text(app_token + "\n")
    (tmp_path / "token").write_text(TOKEN + "\n")
    conf = tmp_path / "fcmd.conf"
    conf.write_text(f"[app alpha]\napikey = k-alpha\nauth_token_file = {tmp_path / 'alpha.token'}\n")
    conf.chmod(0o600)
    args = ["--config", str(conf), "--auth-token-file", str(tmp_path / "token")]
    if fleet:
        args += ["--redis", request.getfixturevalue("redis").url]
    f = start_fcmd(mock, workers=1, args=args)
    # What the page is about to meet: the app's report, not the instance's;
    # in a fleet too, which sums no app's counters (this instance's view of it).
    own = requests.get(f.url("/gcm/report"), headers={"Authorization": f"Bearer {app_token}"}, timeout=5).json()
    assert own["app"] == "alpha" and "pending" not in own and "instances" not in own, own
    browser.get(f.url("/status"))
    wait_until(lambda: shown(browser)["login"], timeout=15, what="the token prompt")
    browser.find_element(By.ID, "token").send_keys(app_token)
    browser.find_element(By.CSS_SELECTOR, "#login button").click()
    wait_until(lambda: "app \u201calpha\u201d" in browser.find_element(By.ID, "login-error").text
               and shown(browser)["login"], timeout=10, what="the app's token turned away")
    assert "instance\u2019s token" in browser.find_element(By.ID, "login-error").text
    assert not shown(browser)["main"]
    assert browser.execute_script("return sessionStorage.getItem('fcmd-token')") is None
    # The instance's token then shows the instance.
    browser.find_element(By.ID, "token").send_keys(TOKEN)
    browser.find_element(By.CSS_SELECTOR, "#login button").click()
    wait_until(lambda: shown(browser)["main"], timeout=15, what="the report after the instance's token")
    assert console_errors(browser) == [], browser.console


def test_the_page_shows_the_fleet(redis, mock, start_fcmd, browser):  # noqa: F811
    f = start_fcmd(mock, workers=1, args=["--redis", redis.url])
    wait_until(lambda: requests.get(f.url("/gcm/report"), timeout=5).json().get("scope") == "fleet",
               timeout=20, what="the fleet's report")
    browser.get(f.url("/"))

    def fleet():
        facts = browser.execute_script(
            "return [].map.call(document.querySelectorAll('#fleet-facts dd'), function (e) {"
            " return [e.dataset.key, e.textContent]; })")
        return dict(facts) if browser.find_element(By.ID, "fleet").is_displayed() else None
    facts = wait_until(fleet, timeout=15, interval=0.2, what="the fleet's section")
    assert facts["instances"] == "1" and facts["scope"] == "fleet" and facts["redis"] == "ok", facts
    # The queue is the instance's, from ?scope=local, and says so.
    local = requests.get(f.url("/gcm/report?scope=local"), timeout=5).json()
    wait_until(lambda: shown(browser)["bars"].get("bar-queue-depth", {}).get("bound") == str(local["queue_capacity"]),
               timeout=10, what="the instance's queue")
    assert browser.find_element(By.ID, "queue-scope").get_attribute("textContent") == "(this instance)"
    assert console_errors(browser) == []
