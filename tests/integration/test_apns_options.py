"""APNs options: a good .p8 key and its ids start fcmd; a bad key file or a
missing or malformed id ends the start with exit status 2 and one line on
stderr naming the problem, before any worker is forked."""

import os
import pty
import select
import signal
import subprocess
import time

import pytest

from apns_keys import KEY_ID, TEAM_ID, apns_args, make_key, make_p256
from conftest import API_KEY, FCMD_BIN, free_port


@pytest.fixture(scope="module")
def keys(tmp_path_factory):
    d = tmp_path_factory.mktemp("apns-keys")
    return {
        "good": make_p256(d)[0],
        "rsa": make_key(d, "rsa", "-algorithm", "RSA", "-pkeyopt", "rsa_keygen_bits:2048")[0],
        "p384": make_key(d, "p384", "-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-384")[0],
        "ed25519": make_key(d, "ed", "-algorithm", "ED25519")[0],
        "dir": d,
    }


def run(args, check=True, tmp_path=None, conf=None):
    if conf is not None:
        (tmp_path / "fcmd.conf").write_text(conf)
        args = ["--config", str(tmp_path / "fcmd.conf")] + args
    cmd = [FCMD_BIN, "--apikey", API_KEY, "--port", str(free_port()), "--workers", "1"]
    if check:
        cmd.append("--check-config")
    return subprocess.run(cmd + args, capture_output=True, text=True, timeout=20)


def test_good_key_is_accepted(keys, tmp_path):
    r = run(apns_args(keys["good"]))
    assert r.returncode == 0 and r.stdout == "ok\n", r.stderr
    conf = (f"[apns]\nkey = {keys['good']}\nkey_id = {KEY_ID}\nteam_id = {TEAM_ID}\ntopic = com.example.app\n"
            "url = https://api.sandbox.push.apple.com\n")
    r = run([], tmp_path=tmp_path, conf=conf)
    assert r.returncode == 0 and r.stdout == "ok\n", r.stderr


def bad_file(keys, name, contents):
    path = keys["dir"] / name
    path.write_bytes(contents)
    return path


@pytest.mark.parametrize("case,needle", [
    ("empty", "is empty"),
    ("text", "is not a PEM file"),
    ("garbage-pem", "holds no readable private key"),
    ("huge", "is larger than 16384 bytes"),
    ("rsa", "is an RSA key"),
    ("p384", "curve secp384r1"),
    ("ed25519", "is an Ed25519 key"),
    ("missing", "cannot read"),
    ("directory", "not a regular file"),
])
def test_bad_key_file_exits_2_naming_it(keys, case, needle):
    path = {
        "empty": lambda: bad_file(keys, "empty.p8", b""),
        "text": lambda: bad_file(keys, "text.p8", b"this is not a key\n"),
        "garbage-pem": lambda: bad_file(keys, "g.p8", b"-----BEGIN PRIVATE KEY-----\nQUJD\n-----END PRIVATE KEY-----\n"),
        "huge": lambda: bad_file(keys, "huge.p8", b"-----BEGIN PRIVATE KEY-----\n" + b"QUJD" * 8192),
        "missing": lambda: keys["dir"] / "nonexistent.p8",
        "directory": lambda: keys["dir"],
    }.get(case, lambda: keys[case])()
    r = run(apns_args(path))
    lines = r.stderr.strip().splitlines()
    assert r.returncode == 2 and len(lines) == 1, r.stderr
    assert "--apns-key" in lines[0] and str(path) in lines[0] and needle in lines[0], lines[0]
    assert "QUJD" not in r.stderr and "MII" not in r.stderr


def test_bad_key_stops_a_real_start_before_any_fork(keys):
    r = run(apns_args(keys["rsa"]), check=False)
    assert r.returncode == 2 and "is an RSA key" in r.stderr, r.stderr


@pytest.mark.parametrize("args,needle", [
    (["--apns-key", "{good}", "--apns-team-id", TEAM_ID], "--apns-key needs --apns-key-id"),
    (["--apns-key", "{good}", "--apns-key-id", KEY_ID], "--apns-key needs --apns-team-id"),
    (["--apns-key", "{good}", "--apns-key-id", "short", "--apns-team-id", TEAM_ID], '--apns-key-id: "short"'),
    (["--apns-key", "{good}", "--apns-key-id", KEY_ID, "--apns-team-id", "team987654"], '--apns-team-id: "team987654"'),
    (["--apns-key-id", KEY_ID], "--apns-key-id needs --apns-key FILE"),
    (["--apns-team-id", TEAM_ID], "--apns-team-id needs --apns-key FILE"),
    (["--apns-topic", "com.example.app"], "--apns-topic needs --apns-key FILE"),
    (["--apns-key", "{good}", "--apns-key-id", KEY_ID, "--apns-team-id", TEAM_ID, "--apns-topic", "com.ex app"],
     "--apns-topic"),
    (["--apns-key", "{good}", "--apns-key-id", KEY_ID, "--apns-team-id", TEAM_ID, "--apns-topic", "x"],
     "--apns-topic"),
    (["--apns-key", "{good}", "--apns-key-id", KEY_ID, "--apns-team-id", TEAM_ID, "--apns-topic", "com..app"],
     "--apns-topic"),
    (["--apns-key", "{good}", "--apns-key-id", KEY_ID, "--apns-team-id", TEAM_ID, "--apns-url", "ftp://x"],
     "--apns-url"),
])
def test_missing_or_bad_ids_exit_2(keys, args, needle):
    r = run([a.format(good=keys["good"]) for a in args])
    lines = r.stderr.strip().splitlines()
    assert r.returncode == 2 and len(lines) == 1 and needle in lines[0], r.stderr


def test_config_file_errors_name_the_key(keys, tmp_path):
    r = run([], tmp_path=tmp_path, conf=f"[apns]\nkey = {keys['good']}\nkey_id = nope\nteam_id = {TEAM_ID}\n")
    assert r.returncode == 2 and "--apns-key-id" in r.stderr, r.stderr
    r = run([], tmp_path=tmp_path, conf="[apns]\nunknown = 1\n")
    assert r.returncode == 2 and 'unknown key "unknown" in [apns]' in r.stderr, r.stderr


def test_no_credentials_at_all_names_every_kind():
    r = subprocess.run([FCMD_BIN, "--check-config", "--port", str(free_port())], capture_output=True, text=True,
                       timeout=20, env={"PATH": "/usr/bin:/bin"})
    assert r.returncode == 2 and "no upstream credentials" in r.stderr and "--apns-key" in r.stderr, r.stderr


def test_a_key_under_a_passphrase_is_refused_not_asked_about(keys, tmp_path):
    """On a terminal, OpenSSL would ask for the passphrase and the start
    would wait there; fcmd refuses the key with one line and exit 2."""
    enc = tmp_path / "enc.p8"
    subprocess.run(["openssl", "pkcs8", "-topk8", "-in", str(keys["good"]), "-out", str(enc), "-passout",
                    "pass:secret"], check=True, capture_output=True, timeout=30)
    pid, fd = pty.fork()  # the child gets the pty as its controlling terminal
    if pid == 0:
        os.execv(FCMD_BIN, [FCMD_BIN, "--check-config", "--apikey", API_KEY, *apns_args(enc)])
    out, deadline = b"", time.monotonic() + 10
    try:
        while time.monotonic() < deadline:
            done, status = os.waitpid(pid, os.WNOHANG)
            if done:
                break
            if select.select([fd], [], [], 0.1)[0]:
                try:
                    out += os.read(fd, 4096)
                except OSError:
                    pass
        else:
            os.kill(pid, signal.SIGKILL)
            os.waitpid(pid, 0)
            raise AssertionError(f"fcmd waited on the terminal: {out!r}")
    finally:
        os.close(fd)
    assert os.waitstatus_to_exitcode(status) == 2
    assert b"pass phrase" not in out.lower() and b"encrypted with a passphrase" in out, out
