"""Web Push's crypto judged by an implementation that shares no code with
fcmd: what fcmd encrypts (RFC 8291, aes128gcm) must decrypt with npm's
http_ece and the subscription's private key, and its VAPID header (RFC 8292)
must verify with jws and the public key it names, that key being the one
OpenSSL reads from the PEM file.  tests/webpush/oracle.js is the judge (it
checks itself against web-push first); build/tests/webpush_tool is fcmd's
crypto on the command line (tests/integration/webpush_tool.c)."""

import base64
import json
import os
import shutil
import subprocess
import time

import pytest

from conftest import FCMD_BIN, ROOT

TOOL = os.environ.get("WEBPUSH_TOOL", os.path.join(os.path.dirname(FCMD_BIN), "build", "tests", "webpush_tool"))
ORACLE_DIR = os.path.join(ROOT, "tests", "webpush")
ORACLE = os.path.join(ORACLE_DIR, "oracle.js")
SUBJECT = "mailto:ops@example.com"


def b64(data):
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def unb64(text):
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def strict_json(text):
    def no_repeats(pairs):
        keys = [k for k, _ in pairs]
        assert len(keys) == len(set(keys)), f"repeated key in {text}"
        return dict(pairs)
    return json.loads(text, object_pairs_hook=no_repeats)


@pytest.fixture(scope="module", autouse=True)
def built():
    assert os.path.exists(TOOL), f"build {TOOL} first (make integration does)"
    assert shutil.which("node"), "node is missing (make deps installs it)"
    assert os.path.isdir(os.path.join(ORACLE_DIR, "node_modules", "http_ece")), \
        "the oracle's npm packages are missing (make webpush-oracle installs them)"


def node(*args, stdin=None):
    out = subprocess.run(["node", ORACLE, *args], input=stdin, capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout)


def tool(*args, stdin=b""):
    return subprocess.run([TOOL, *args], input=stdin, capture_output=True, timeout=30)


def encrypt(sub, plaintext):
    out = tool("encrypt", sub["p256dh"], sub["auth"], stdin=plaintext)
    assert out.returncode == 0, out.stderr
    return out.stdout.decode().strip()


def judge(messages=(), vapid=()):
    verdict = node("judge", stdin=json.dumps({"messages": list(messages), "vapid": list(vapid)}))
    assert all(verdict["self_check"].values()), f"the oracle fails its own check: {verdict['self_check']}"
    return verdict


def test_the_oracle_passes_its_own_check():
    """RFC 8291's example, web-push's bodies and VAPID headers pass it; a
    tampered body and a token under another key fail it."""
    assert judge()["self_check"] == {"rfc8291": True, "web_push_body": True, "tampered_body_fails": True,
                                     "web_push_vapid": True, "wrong_key_fails": True}


def test_bodies_decrypt_with_the_subscriptions_private_key():
    payloads = [b"", b"x", json.dumps({"title": "Hello", "body": "\u00e9t\u00e9"}).encode(), bytes(range(256)),
                os.urandom(3993)]
    subs = node("subscriptions", str(len(payloads)))
    messages = [dict(sub, body=encrypt(sub, p)) for sub, p in zip(subs, payloads)]
    # The same plaintext twice for one subscription: a fresh salt and sender key each time.
    messages.append(dict(subs[2], body=encrypt(subs[2], payloads[2])))
    verdict = judge(messages)
    for (m, got), want in zip(zip(messages, verdict["messages"]), payloads + [payloads[2]]):
        assert "error" not in got, got["error"]
        assert unb64(got["plaintext"]) == want
        assert (got["rs"], got["idlen"]) == (4096, 65)
        assert got["length"] == 86 + len(want) + 1 + 16
        assert got["keyid"] != m["p256dh"]
        assert unb64(got["keyid"])[0] == 4
    salts = {g["salt"] for g in verdict["messages"]}
    keys = {g["keyid"] for g in verdict["messages"]}
    assert len(salts) == len(keys) == len(messages)
    # The largest body is exactly what a push service must accept.
    assert verdict["messages"][4]["length"] == 4096


def test_a_body_for_another_subscription_does_not_decrypt():
    a, b = node("subscriptions", "2")
    body = encrypt(a, b"for a only")
    assert "error" in judge([dict(b, body=body)])["messages"][0]
    # b's key with a's auth secret fails too: the auth secret is part of the key.
    assert "error" in judge([dict(a, auth=b["auth"], body=body)])["messages"][0]


def test_oversized_payloads_are_refused():
    sub = node("subscriptions", "1")[0]
    for n in (3994, 4079, 5000):
        out = tool("encrypt", sub["p256dh"], sub["auth"], stdin=b"a" * n)
        assert out.returncode == 1, out
        assert out.stdout == b""
        assert f"the payload is {n} bytes; one Web Push message holds at most 3993" in out.stderr.decode()


@pytest.mark.parametrize("p256dh, auth, reason", [
    ("{p}+", "{a}", "keys.p256dh is not base64url"),
    ("{p}==", "{a}", "keys.p256dh is not base64url"),  # "=" only where it completes a group of four
    ("not base64url!", "{a}", "keys.p256dh is not base64url"),
    ("{p:.43}", "{a}", "keys.p256dh is 32 bytes"),
    ("{p}AAAA", "{a}", "longer than a P-256 public key"),
    ("{off}", "{a}", "not a point on the P-256 curve"),
    ("{p}", "{a:.16}", "keys.auth is 12 bytes"),
    ("{p}", "{a}AAAA", "keys.auth is longer than 16 bytes"),
    ("{p}", "{a}\r\n", "keys.auth is not base64url"),
    ("{p}", "", "keys.auth is 0 bytes"),
])
def test_bad_subscription_keys_are_refused_with_a_reason(p256dh, auth, reason):
    sub = node("subscriptions", "1")[0]
    point = bytearray(unb64(sub["p256dh"]))
    point[64] ^= 1  # y changed: 65 bytes, almost never on the curve
    fields = {"p": sub["p256dh"], "a": sub["auth"], "off": b64(bytes(point))}
    out = tool("encrypt", p256dh.format(**fields), auth.format(**fields), stdin=b"hello")
    assert out.returncode == 1, out  # refused, not a crash (a signal is negative)
    assert reason in out.stderr.decode()
    # The reason names the key, never its value.
    assert sub["auth"] not in out.stderr.decode()


def openssl_point(pem_path):
    """The key's public point as OpenSSL writes it: the last 65 bytes of the
    SubjectPublicKeyInfo of an uncompressed P-256 key."""
    der = subprocess.run(["openssl", "ec", "-in", pem_path, "-pubout", "-outform", "DER",
                          "-conv_form", "uncompressed"], capture_output=True, check=True).stdout
    return b64(der[-65:])


@pytest.fixture(params=["sec1", "pkcs8"])
def vapid_key(request, tmp_path):
    sec1 = tmp_path / "vapid.pem"
    subprocess.run(["openssl", "ecparam", "-name", "prime256v1", "-genkey", "-noout", "-out", str(sec1)],
                   check=True, capture_output=True)
    if request.param == "sec1":
        return str(sec1)
    pkcs8 = tmp_path / "vapid-pkcs8.pem"
    subprocess.run(["openssl", "pkcs8", "-topk8", "-nocrypt", "-in", str(sec1), "-out", str(pkcs8)],
                   check=True, capture_output=True)
    return str(pkcs8)


def test_public_key_is_the_one_openssl_reads(vapid_key):
    out = tool("public-key", vapid_key)
    assert out.returncode == 0, out.stderr
    assert out.stdout.decode().strip() == openssl_point(vapid_key)


@pytest.mark.parametrize("endpoint, aud", [
    ("https://fcm.googleapis.com/fcm/send/dX:APA91b", "https://fcm.googleapis.com"),
    ("https://updates.push.services.mozilla.com/wpush/v2/gAAAAABk", "https://updates.push.services.mozilla.com"),
    ("https://Web.Push.Apple.com/QGuQyavXutnMH", "https://web.push.apple.com"),
    ("https://push.example:8443/p/1?x=y", "https://push.example:8443"),
])
def test_vapid_header_verifies_with_the_key_it_names(vapid_key, endpoint, aud):
    now = int(time.time())
    out = tool("vapid", vapid_key, SUBJECT, endpoint, str(now))
    assert out.returncode == 0, out.stderr
    header = out.stdout.decode().rstrip("\n")
    got = judge(vapid=[header])["vapid"][0]
    assert got["valid"] is True, got
    assert got["k"] == openssl_point(vapid_key)
    assert strict_json(got["header"]) == {"typ": "JWT", "alg": "ES256"}
    claims = strict_json(got["claims"])
    assert set(claims) == {"aud", "exp", "sub"}
    assert claims["aud"] == aud
    assert claims["sub"] == SUBJECT
    assert now < claims["exp"] <= now + 24 * 3600


def test_a_tampered_vapid_token_does_not_verify(vapid_key):
    header = tool("vapid", vapid_key, SUBJECT, "https://push.example/x", str(int(time.time()))).stdout.decode()
    prefix, _, rest = header.rstrip("\n").partition("t=")
    jwt, _, k = rest.partition(", k=")
    head, claims, sig = jwt.split(".")
    forged = b64(json.dumps({"aud": "https://evil.example", "exp": 1, "sub": SUBJECT}).encode())
    got = judge(vapid=[f"{prefix}t={head}.{forged}.{sig}, k={k}"])["vapid"][0]
    assert got["valid"] is False


def test_bad_vapid_keys_and_subjects_are_refused(tmp_path):
    rsa = tmp_path / "rsa.pem"
    subprocess.run(["openssl", "genpkey", "-algorithm", "RSA", "-pkeyopt", "rsa_keygen_bits:2048", "-out", str(rsa)],
                   check=True, capture_output=True)
    p384 = tmp_path / "p384.pem"
    subprocess.run(["openssl", "ecparam", "-name", "secp384r1", "-genkey", "-noout", "-out", str(p384)],
                   check=True, capture_output=True)
    for path, reason in ((rsa, "is an RSA key; VAPID needs an EC P-256 key"),
                         (p384, "is an EC key on curve secp384r1; VAPID needs P-256"),
                         (tmp_path / "missing.pem", "cannot read")):
        out = tool("public-key", str(path))
        assert out.returncode == 1
        assert out.stderr.decode().startswith(f'--vapid-key: "{path}"' if "cannot" not in reason
                                              else "--vapid-key: cannot read")
        assert reason in out.stderr.decode()
        assert b"PRIVATE" not in out.stderr
