"""VAPID options: `fcmd --vapid-public-key --vapid-key FILE` prints the
key's public half (as OpenSSL reads it) and exits 0; a bad key file or
subject ends the start, and --check-config, with exit status 2 and one line
naming the problem and never the key, before any worker is forked."""

import base64
import subprocess

import pytest

from conftest import API_KEY, FCMD_BIN, free_port

SUBJECT = "mailto:ops@example.com"


def openssl(*args):
    subprocess.run(["openssl", *args], check=True, capture_output=True, timeout=30)


def public_point(pem):
    der = subprocess.run(["openssl", "ec", "-in", str(pem), "-pubout", "-outform", "DER", "-conv_form",
                          "uncompressed"], capture_output=True, check=True, timeout=30).stdout
    return base64.urlsafe_b64encode(der[-65:]).rstrip(b"=").decode()


@pytest.fixture(scope="module")
def keys(tmp_path_factory):
    d = tmp_path_factory.mktemp("vapid-keys")
    openssl("ecparam", "-name", "prime256v1", "-genkey", "-noout", "-out", str(d / "sec1.pem"))
    openssl("pkcs8", "-topk8", "-nocrypt", "-in", str(d / "sec1.pem"), "-out", str(d / "pkcs8.pem"))
    openssl("pkcs8", "-topk8", "-in", str(d / "sec1.pem"), "-out", str(d / "enc.pem"), "-passout", "pass:secret")
    openssl("genpkey", "-algorithm", "RSA", "-pkeyopt", "rsa_keygen_bits:2048", "-out", str(d / "rsa.pem"))
    openssl("ecparam", "-name", "secp384r1", "-genkey", "-noout", "-out", str(d / "p384.pem"))
    (d / "empty.pem").write_bytes(b"")
    (d / "text.pem").write_bytes(b"not a key\n")
    (d / "garbage.pem").write_bytes(b"-----BEGIN EC PRIVATE KEY-----\nQUJD\n-----END EC PRIVATE KEY-----\n")
    (d / "huge.pem").write_bytes(b"-----BEGIN EC PRIVATE KEY-----\n" + b"QUJD" * 8192)
    return d


def fcmd(*args, timeout=20):
    return subprocess.run([FCMD_BIN, *args], capture_output=True, text=True, timeout=timeout)


def check(*args):
    return fcmd("--apikey", API_KEY, "--port", str(free_port()), "--workers", "1", "--check-config", *args)


@pytest.mark.parametrize("name", ["sec1.pem", "pkcs8.pem"])
def test_public_key_is_printed_without_any_upstream(keys, name):
    r = fcmd("--vapid-public-key", "--vapid-key", str(keys / name))
    assert (r.returncode, r.stderr) == (0, ""), r.stderr
    assert r.stdout == public_point(keys / "sec1.pem") + "\n"


def test_public_key_of_the_config_files_key(keys, tmp_path):
    conf = tmp_path / "fcmd.conf"
    conf.write_text(f"[webpush]\nvapid_key = {keys / 'sec1.pem'}\nvapid_subject = {SUBJECT}\n")
    r = fcmd("--config", str(conf), "--vapid-public-key")
    assert r.returncode == 0 and r.stdout == public_point(keys / "sec1.pem") + "\n", r.stderr
    r = check("--config", str(conf))
    assert r.returncode == 0 and r.stdout == "ok\n", r.stderr


def test_public_key_needs_a_key():
    r = fcmd("--vapid-public-key")
    assert r.returncode == 2 and r.stderr == "fcmd: --vapid-public-key needs --vapid-key FILE\n"


@pytest.mark.parametrize("subject", [SUBJECT, "https://example.com/contact"])
def test_good_key_and_subject_pass_check_config(keys, subject):
    r = check("--vapid-key", str(keys / "sec1.pem"), "--vapid-subject", subject)
    assert r.returncode == 0 and r.stdout == "ok\n", r.stderr


@pytest.mark.parametrize("name,needle", [
    ("empty.pem", "is empty"),
    ("text.pem", "is not a PEM file"),
    ("garbage.pem", "holds no readable private key"),
    ("huge.pem", "is larger than 16384 bytes"),
    ("enc.pem", "is encrypted with a passphrase"),
    ("rsa.pem", "is an RSA key"),
    ("p384.pem", "curve secp384r1"),
    ("missing.pem", "cannot read"),
    (".", "not a regular file"),
])
@pytest.mark.parametrize("mode", ["check-config", "public-key", "start"])
def test_bad_key_file_exits_2_naming_it(keys, name, needle, mode):
    path = str(keys / name) if name != "." else str(keys)
    if mode == "check-config":
        r = check("--vapid-key", path, "--vapid-subject", SUBJECT)
    elif mode == "public-key":
        r = fcmd("--vapid-public-key", "--vapid-key", path)
    else:  # a real start stops before it binds or forks
        r = fcmd("--apikey", API_KEY, "--port", str(free_port()), "--workers", "1", "--vapid-key", path,
                 "--vapid-subject", SUBJECT)
    lines = r.stderr.strip().splitlines()
    assert r.returncode == 2 and len(lines) == 1, r.stderr
    assert lines[0].startswith("fcmd: --vapid-key: ") and path in lines[0] and needle in lines[0], lines[0]
    assert "QUJD" not in r.stderr and "MII" not in r.stderr and r.stdout == ""


@pytest.mark.parametrize("args,needle", [
    (["--vapid-key", "{key}"], "--vapid-key needs --vapid-subject URI"),
    (["--vapid-subject", SUBJECT], "--vapid-subject needs --vapid-key FILE"),
    (["--vapid-key", "{key}", "--vapid-subject", "ops@example.com"], '--vapid-subject: "ops@example.com" is not'),
    (["--vapid-key", "{key}", "--vapid-subject", "mailto:ops"], '--vapid-subject: "mailto:ops" is not'),
    (["--vapid-key", "{key}", "--vapid-subject", "http://example.com"], '--vapid-subject: "http://example.com"'),
    (["--vapid-key", "{key}", "--vapid-subject", "mailto:a@b\r\nX: y"], '--vapid-subject: "mailto:a@b??X: y" is not'),
    (["--vapid-key", "{key}", "--vapid-subject", "mailto:a@" + "b" * 600], "--vapid-subject:"),
])
def test_missing_or_bad_subject_exits_2(keys, args, needle):
    r = check(*[a.format(key=keys / "sec1.pem") for a in args])
    lines = r.stderr.strip().splitlines()
    assert r.returncode == 2 and len(lines) == 1 and needle in lines[0], r.stderr


def test_an_apps_bad_key_or_subject_names_the_app(keys, tmp_path):
    conf = tmp_path / "fcmd.conf"
    conf.write_text(f"[app shop]\napikey = k2\nvapid_key = {keys / 'rsa.pem'}\nvapid_subject = {SUBJECT}\n")
    r = check("--config", str(conf))
    assert r.returncode == 2 and "[app shop]: --vapid-key:" in r.stderr and "is an RSA key" in r.stderr, r.stderr
    conf.write_text(f"[app shop]\napikey = k2\nvapid_key = {keys / 'sec1.pem'}\n")
    r = check("--config", str(conf))
    assert r.returncode == 2 and "[app shop]: --vapid-key needs --vapid-subject" in r.stderr, r.stderr
    conf.write_text(f"[app shop]\napikey = k2\nvapid_key = {keys / 'pkcs8.pem'}\nvapid_subject = {SUBJECT}\n")
    r = check("--config", str(conf))
    assert r.returncode == 0 and r.stdout == "ok\n", r.stderr


def test_a_vapid_key_alone_is_credentials_enough(keys):
    """POST /webpush/send sends with it, so a VAPID key stands in for the
    credentials of an upstream; without any, the line names it too."""
    r = fcmd("--check-config", "--vapid-key", str(keys / "sec1.pem"), "--vapid-subject", SUBJECT)
    assert r.returncode == 0, r.stderr
    r = fcmd("--check-config")
    assert r.returncode == 2 and "no upstream credentials" in r.stderr and "--vapid-key" in r.stderr, r.stderr
