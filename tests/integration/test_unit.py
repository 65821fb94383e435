"""The shipped systemd unit, conf/fcmd.service: systemd itself accepts it, its
sandbox lets fcmd write every path the docs suggest, and no secret is on its
command lines."""

import os
import re
import shutil
import subprocess

from conftest import FCMD_BIN, ROOT

UNIT = os.path.join(ROOT, "conf", "fcmd.service")
CONF = os.path.join(ROOT, "conf", "fcmd.conf")
README = os.path.join(ROOT, "README.md")
SHIPPED_BIN = "/usr/local/bin/fcmd"


def unit_entries():
    """[(section, key, value)] of the unit, comments and blank lines left out."""
    entries, section = [], None
    for line in open(UNIT):
        line = line.strip()
        if not line or line[0] in "#;":
            continue
        if line.startswith("["):
            section = line.strip("[]")
            continue
        key, _, value = line.partition("=")
        entries.append((section, key.strip(), value.strip()))
    return entries


def service(key):
    return [v for s, k, v in unit_entries() if s == "Service" and k == key]


def writable_roots():
    """Where the unit's sandbox (ProtectSystem=strict) lets fcmd write."""
    roots = []
    for v in service("ReadWritePaths"):
        roots += [p.lstrip("-+") for p in v.split()]
    for key, base in (("StateDirectory", "/var/lib"), ("LogsDirectory", "/var/log"),
                      ("RuntimeDirectory", "/run"), ("CacheDirectory", "/var/cache")):
        for v in service(key):
            roots += [f"{base}/{name.split(':')[0]}" for name in v.split()]
    if "yes" in service("PrivateTmp"):
        roots += ["/tmp", "/var/tmp"]
    return roots


def under(path, root):
    return path == root or path.startswith(root.rstrip("/") + "/")


def suggested_paths():
    """Every path under /var or /run that the unit's command lines, the
    example config or the README name: fcmd writes each (log, access log, pid
    file, UNIX socket, spool)."""
    texts = {"the unit's command lines": " ".join(v for s, k, v in unit_entries() if k.startswith("Exec")),
             "conf/fcmd.conf": open(CONF).read(), "README.md": open(README).read()}
    found = {}
    for where, text in texts.items():
        for m in re.finditer(r"(?<![\w./])/(?:var|run)/[\w./*-]+", text):
            found.setdefault(m.group(0).rstrip("."), where)
    return found


def test_unit_passes_systemd_analyze_verify(tmp_path):
    # A missing systemd-analyze fails the test, as a skip would hide a unit
    # no systemd accepts; make deps installs it (the systemd package in DEPS).
    analyze = shutil.which("systemd-analyze")
    assert analyze is not None, "systemd-analyze is missing: make deps installs systemd"
    text = open(UNIT).read()
    assert SHIPPED_BIN in text
    # verify checks that every Exec binary exists: point them at the built one.
    unit = tmp_path / "fcmd.service"
    unit.write_text(text.replace(SHIPPED_BIN, os.path.abspath(FCMD_BIN)))
    r = subprocess.run([analyze, "verify", str(unit)], capture_output=True, text=True, timeout=60)
    ours = [l for l in (r.stdout + r.stderr).splitlines() if "fcmd" in l]
    assert r.returncode == 0 and not ours, f"systemd-analyze verify ({r.returncode}):\n{r.stdout}{r.stderr}"


def test_unit_sandbox_lets_fcmd_write_every_path_the_docs_suggest():
    assert "strict" in service("ProtectSystem"), "the unit's hardening is gone"
    roots = writable_roots()
    paths = suggested_paths()
    assert "/var/lib/fcmd/spool" in paths and "/var/log/fcmd/fcmd.log" in paths and "/run/fcmd/fcmd.pid" in paths
    blocked = {p: where for p, where in paths.items() if not any(under(p, r) for r in roots)}
    assert not blocked, f"the unit lets fcmd write only {roots}, but these are suggested: {blocked}"


def test_unit_says_where_the_spool_goes():
    text = open(UNIT).read()
    assert "/var/lib/fcmd/spool" in text, "the unit does not say where the spool goes"


def test_unit_command_lines_carry_no_secret():
    """Any local user can read a command line (ps, /proc/PID/cmdline)."""
    secret_flags = ("apikey", "auth-token")
    for key, value in ((k, v) for s, k, v in unit_entries() if k.startswith("Exec")):
        for word in value.split():
            flag = word.lstrip("-").split("=")[0] if word.startswith("-") else None
            assert flag not in secret_flags, f"{key} passes a secret on the command line: {value}"


def test_unit_shows_how_to_hand_over_a_key_file_with_load_credential():
    comments = "".join(l for l in open(UNIT) if l.startswith("#"))
    assert re.search(r"LoadCredential=(\S+):/etc/fcmd/\S+", comments), "no LoadCredential= example"
    for name in re.findall(r"LoadCredential=([^:\s]+):", comments):
        assert f"%d/{name}" in comments, f"the credential {name} is loaded but never named on a command line"


def test_example_config_gives_every_secret_a_file_alternative():
    """Next to each secret in conf/fcmd.conf, the way to keep it in a file instead."""
    text = open(CONF).read()
    for key, flag in (("apikey", "apikey"), ("auth_token", "auth-token")):
        assert re.search(rf"^;{key} = ", text, re.M), f"{key} is no longer in the example"
        assert re.search(rf"^;{key}_file = /etc/fcmd/", text, re.M), f"{key} has no {key}_file next to it"
        assert f"flag: --{flag}-file" in text
