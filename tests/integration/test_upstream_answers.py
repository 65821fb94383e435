"""What fcmd makes of upstream answers longer than it needs.

An answer is read up to a bound of its adapter's (legacy: what a full answer
for the job's tokens can hold; v1 and APNs: a few KiB); past it, the
transfer is stopped and the HTTP status decides, with the legacy results
the prefix holds.  A 2xx is delivered once, counted a success and not
retried, however much the server goes on sending; a 5xx is a 5xx.

The huge and endless answers come from tools/mock-upstream."""

import json

import pytest
import requests

from apns_keys import KEY_ID, TEAM_ID, TOPIC, apns_args, make_p256
from conftest import wait_until, write_service_account

MIB = 1 << 20


def metric(f, name, **labels):
    text = requests.get(f.url("/metrics"), timeout=5).text
    want = name + ("{" + ",".join(f'{k}="{v}"' for k, v in labels.items()) + "}" if labels else "")
    for line in text.splitlines():
        if line.startswith(want + " "):
            return float(line.split()[-1])
    raise AssertionError(f"{want} not in /metrics")


def peak_rss_kib(pid):
    with open(f"/proc/{pid}/status") as fh:
        for line in fh:
            if line.startswith("VmHWM:"):
                return int(line.split()[1])
    raise AssertionError("no VmHWM")


def attempts_at_mock(mock, *tokens):
    toks = mock.stats()["tokens"]
    return {t: toks[t]["attempts"] if t in toks else 0 for t in tokens}


def still_serves(f, mock, token):
    """The worker answers and delivers a plain push after the long answers."""
    assert f.send_form([token], {"k": "v"}).status_code == 200
    wait_until(lambda: (mock.token(token) or {}).get("delivered") == 1, what=f"{token} delivered")


# ---- legacy (plain HTTP/1.1 to the mock) ----

def test_legacy_results_before_a_huge_tail_are_used(mock, start_fcmd):
    f = start_fcmd(mock=mock, workers=1, args=["--retries", "3"])
    tokens = ["hugeafter-1", "notreg-2", "canon-3", "unavail1-4"]
    assert f.send_json({"tokens": tokens, "payload": {"k": "v"}}).json() == {"accepted": 4}
    r = f.wait_idle(timeout=20)
    assert mock.stats(summary=True)["huge_answers"] == 1  # the first answer was 5 MiB long
    # Every result lay before the padding: each target got its own outcome,
    # and only the Unavailable one went again.
    assert attempts_at_mock(mock, *tokens) == {"hugeafter-1": 1, "notreg-2": 1, "canon-3": 1, "unavail1-4": 2}
    assert r["successes"] == 3 and r["notregistered"] == 1 and r["canonicals"] == 1
    assert r["failures"] == 0 and r["retries"] == 1 and r["attempts"] == 5
    assert metric(f, "fcmd_upstream_errors_total") == 0
    assert requests.get(f.url("/gcm/report/canonical"), timeout=5).json()["canonical_replacements"] == [
        {"original": "canon-3", "canonical": "canonical-canon-3"}]


def test_legacy_200_whose_results_lie_past_the_bound_is_delivered(mock, start_fcmd):
    f = start_fcmd(mock=mock, workers=1)
    tokens = ["hugebefore-1", "notreg-2"]
    assert f.send_form(tokens, {"k": "v"}).text == "ok\n"
    r = f.wait_idle(timeout=20)
    # FCM said 200 and no result is within reach: success, never a resend.
    assert attempts_at_mock(mock, *tokens) == {"hugebefore-1": 1, "notreg-2": 1}
    assert r["successes"] == 2 and r["failures"] == 0 and r["retries"] == 0 and r["attempts"] == 2
    assert r["notregistered"] == 0
    assert metric(f, "fcmd_upstream_errors_total") == 0
    assert "answer over" in f.log_text()  # said once, with the bound
    still_serves(f, mock, "after-1")


def test_legacy_endless_200_is_read_to_the_bound_and_delivered(mock, start_fcmd):
    f = start_fcmd(mock=mock, workers=1)
    base = peak_rss_kib(f.children()[0])
    batches = [[f"endless-{i}", f"notreg-{i}"] for i in range(20)]
    for b in batches:
        assert f.send_form(b, {"k": "v"}).status_code == 200
    r = f.wait_idle(timeout=30)
    assert mock.stats(summary=True)["endless_answers"] == 20
    for b in batches:
        assert attempts_at_mock(mock, *b) == {b[0]: 1, b[1]: 1}
    assert r["successes"] == 20 and r["notregistered"] == 20 and r["failures"] == 0 and r["retries"] == 0
    assert r["attempts"] == 40
    assert metric(f, "fcmd_upstream_errors_total") == 0
    assert peak_rss_kib(f.children()[0]) - base < 16 * 1024  # a few KiB an answer, not MiBs
    still_serves(f, mock, "after-2")


def test_legacy_huge_503_is_retried_as_a_5xx(start_mock, start_fcmd):
    mock = start_mock("--retry-after", "0")
    f = start_fcmd(mock=mock, workers=1)
    assert f.send_form(["huge503once-1"], {"k": "v"}).status_code == 200
    r = f.wait_idle(timeout=20)
    assert mock.stats(summary=True)["huge_answers"] == 1
    assert attempts_at_mock(mock, "huge503once-1") == {"huge503once-1": 2}
    assert r["successes"] == 1 and r["retries"] == 1 and r["attempts"] == 2 and r["failures"] == 0
    assert metric(f, "fcmd_retries_total", reason="http_5xx") == 1
    assert metric(f, "fcmd_retries_total", reason="network") == 0
    assert metric(f, "fcmd_upstream_errors_total") == 0


# ---- FCM HTTP v1 (HTTP/2 over TLS) ----

@pytest.fixture
def v1(start_mock, start_fcmd, tls_cert, signing_key, tmp_path):
    cert, key = tls_cert
    private_pem, public = signing_key
    mock = start_mock("--tls-cert", str(cert), "--tls-key", str(key), "--oauth-public-key", str(public),
                      "--retry-after", "0", cafile=str(cert))
    sa = write_service_account(tmp_path / "sa.json", private_pem, f"https://localhost:{mock.port}/token")
    f = start_fcmd(workers=1, apikey=None, args=["--service-account", str(sa), "--fcm-url",
                                                 f"https://localhost:{mock.port}", "--ca-file", str(cert)])
    return mock, f


def test_v1_huge_and_endless_200s_are_one_success_each(v1):
    mock, f = v1
    wait_until(lambda: f.report()["oauth_tokens"] == 1, what="an access token")
    base = peak_rss_kib(f.children()[0])
    tokens = ["hugeok-1"] + [f"endless-{i}" for i in range(20)]
    assert f.send_form(tokens, {"k": "v"}).status_code == 200
    r = f.wait_idle(timeout=30)
    s = mock.stats(summary=True)
    assert s["huge_answers"] == 1 and s["endless_answers"] == 20
    assert set(attempts_at_mock(mock, *tokens).values()) == {1}
    assert r["successes"] == 21 and r["failures"] == 0 and r["retries"] == 0 and r["attempts"] == 21
    assert metric(f, "fcmd_upstream_errors_total") == 0
    assert peak_rss_kib(f.children()[0]) - base < 16 * 1024
    still_serves(f, mock, "after-1")


def test_v1_huge_503_is_retried_as_a_5xx(v1):
    mock, f = v1
    assert f.send_form(["huge503once-1"], {"k": "v"}).status_code == 200
    r = f.wait_idle(timeout=20)
    assert mock.stats(summary=True)["huge_answers"] == 1
    assert attempts_at_mock(mock, "huge503once-1") == {"huge503once-1": 2}
    assert r["successes"] == 1 and r["retries"] == 1 and r["attempts"] == 2 and r["failures"] == 0
    assert metric(f, "fcmd_retries_total", reason="http_5xx") == 1
    assert metric(f, "fcmd_upstream_errors_total") == 0


# ---- APNs (HTTP/2 over TLS) ----

def tok(prefix, i=0):
    """A 64-hex-digit device token with the mock's prefix."""
    return (prefix + f"{i:x}".rjust(8, "0")).ljust(64, "a")


@pytest.fixture(scope="module")
def apns_key(tmp_path_factory):
    return make_p256(tmp_path_factory.mktemp("apns"))


@pytest.fixture
def apns(start_mock, start_fcmd, tls_cert, apns_key):
    cert, tkey = tls_cert
    mock = start_mock("--tls-cert", str(cert), "--tls-key", str(tkey), "--apns-public-key", str(apns_key[1]),
                      "--apns-key-id", KEY_ID, "--apns-team-id", TEAM_ID, "--apns-topic", TOPIC,
                      "--retry-after", "0", cafile=str(cert))
    f = start_fcmd(gcm_url=mock.url("localhost"), workers=1,
                   args=["--ca-file", str(cert), *apns_args(apns_key[0], mock.base)])
    return mock, f


def apns_send(f, tokens):
    r = requests.post(f.url("/apns/send"), data={"tokens": tokens, "payload": json.dumps({"aps": {"alert": "x"}})},
                      timeout=5)
    assert r.status_code == 200


def test_apns_huge_and_endless_200s_are_one_success_each(apns):
    mock, f = apns
    base = peak_rss_kib(f.children()[0])
    tokens = [tok("b160", 1)] + [tok("b16e", i) for i in range(20)]
    apns_send(f, tokens)
    r = f.wait_idle(timeout=30)
    s = mock.stats(summary=True)
    assert s["huge_answers"] == 1 and s["endless_answers"] == 20
    assert set(attempts_at_mock(mock, *tokens).values()) == {1}
    assert r["successes"] == 21 and r["failures"] == 0 and r["retries"] == 0 and r["attempts"] == 21
    assert metric(f, "fcmd_upstream_errors_total") == 0
    assert peak_rss_kib(f.children()[0]) - base < 16 * 1024
    apns_send(f, [tok("ab", 1)])
    wait_until(lambda: (mock.token(tok("ab", 1)) or {}).get("delivered") == 1, what="a push after them")


def test_apns_huge_503_is_retried(apns):
    mock, f = apns
    apns_send(f, [tok("b163", 1)])
    r = f.wait_idle(timeout=20)
    assert mock.stats(summary=True)["huge_answers"] == 1
    assert attempts_at_mock(mock, tok("b163", 1)) == {tok("b163", 1): 2}
    assert r["successes"] == 1 and r["retries"] == 1 and r["attempts"] == 2 and r["failures"] == 0
    assert metric(f, "fcmd_retries_total", reason="unavailable") == 1  # Apple's 503 ServiceUnavailable
    assert metric(f, "fcmd_upstream_errors_total") == 0
