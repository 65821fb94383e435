"""The man page (docs/fcmd.8) as man renders it: without a warning from man or
groff, in 80 columns; with every option fcmd --help prints and no other, each
with the config key and the default the README's option table gives it; with
the environment variables --help names, the signals, the files and the exit
statuses; and with fcmd's own version in its title."""

import os
import re
import subprocess

from conftest import FCMD_BIN, ROOT

PAGE = os.path.join(ROOT, "docs", "fcmd.8")


def man(width, *args):
    env = dict(os.environ, LC_ALL="C", MANWIDTH=str(width))
    env.pop("MAN_KEEP_FORMATTING", None)
    return subprocess.run(["man", *args, "-l", PAGE], capture_output=True, text=True, env=env, timeout=60)


def sections():
    """{SECTION: [lines]} of the page rendered one paragraph a line."""
    out, current = {}, None
    for line in man(1000).stdout.splitlines():
        if re.match(r"[A-Z][A-Z ]+$", line):
            current = out.setdefault(line, [])
        elif current is not None:
            current.append(line)
    return out


def entries(lines):
    """{header: body} of a section's tagged paragraphs (.TP): the tag at
    column 7, the body at 14, on the tag's line when the tag ends before."""
    out, header = {}, None
    for i, line in enumerate(lines):
        if re.match(r" {7}\S", line):
            alone = i + 1 < len(lines) and re.match(r" {14}\S", lines[i + 1])
            header = line.strip() if alone else line[7:14].strip()
            out[header] = "" if alone else line[14:].strip()
        elif header is not None and line.strip():
            out[header] += " " + line.strip()
    return out


def help_text():
    r = subprocess.run([FCMD_BIN, "--help"], capture_output=True, text=True, timeout=10)
    assert r.returncode == 0, r.stderr
    return r.stdout


def help_options():
    """The options --help lists: every --name on a line that starts with one."""
    return {o for line in help_text().splitlines() if re.match(r"\s+--", line)
            for o in re.findall(r"--[a-z0-9][a-z0-9-]*", line)}


def option_entries():
    return entries(sections()["OPTIONS"])


def entry_of(option, opts):
    found = [body for header, body in opts.items() if option in re.findall(r"--?[a-z0-9][a-z0-9-]*", header)]
    assert len(found) == 1, f"{option}: {len(found)} entries in the man page"
    return found[0]


def test_man_and_groff_render_it_without_a_warning():
    r = man(80, "--warnings=w")
    assert r.returncode == 0 and r.stderr == "", r.stderr
    assert "fcmd - push-notification gateway" in r.stdout
    wide = [line for line in r.stdout.splitlines() if len(line) > 80]
    assert wide == [], wide
    r = subprocess.run(["groff", "-man", "-ww", "-z", PAGE], capture_output=True, text=True, timeout=60)
    assert r.returncode == 0 and r.stderr == "", r.stderr


def test_every_option_of_help_has_an_entry_and_every_entry_is_an_option():
    opts = option_entries()
    listed = help_options()
    assert len(listed) > 50 and "--queue-size" in listed and "--redis-queue-max" in listed
    for option in sorted(listed):
        entry_of(option, opts)
    headed = {o for header in opts for o in re.findall(r"--?[a-z0-9][a-z0-9-]*", header)}
    assert headed - {"-h"} == listed


def readme_rows():
    """(options, config keys, default) of each row of the README's option table."""
    with open(os.path.join(ROOT, "README.md")) as f:
        text = f.read()
    table = text[text.index("| option | config key | default | meaning |"):text.index("### Secrets")]
    rows = []
    for line in table.splitlines()[2:]:
        if not line.startswith("|"):
            break
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        assert len(cells) == 4, line
        options = re.findall(r"`(--[a-z0-9-]+)[^`]*`", cells[0])
        keys, section = [], None
        for k in re.findall(r"`([^`]*)`", cells[1]):
            m = re.match(r"(\[[^]]+\])\s*(.*)", k)
            if m:
                section = m.group(1)
            keys.append(k if m else f"{section} {k}")
        rows.append((options, keys, cells[2].replace("`", "")))
    return rows


def test_each_option_has_the_readmes_config_key_and_default():
    opts = option_entries()
    rows = readme_rows()
    assert len(rows) > 50
    for options, keys, default in rows:
        if not options:  # the [app NAME] row: its keys are the configuration file's
            conf = " ".join(sections()["CONFIGURATION FILE"])
            assert "[app NAME]" in conf
            for k in keys[1:]:
                assert k.split()[-1] in conf, k
            continue
        for i, option in enumerate(options):
            body = entry_of(option, opts)
            if not keys:
                assert "No config key." in body, (option, body)
            else:
                key = keys[i] if len(keys) == len(options) else keys[0]
                assert key in body, (option, key, body)
            if default not in ("", "—"):
                assert f"Default: {default}." in body, (option, default, body)


def test_environment_signals_files_and_exit_statuses():
    s = sections()
    env = entries(s["ENVIRONMENT"])
    for var in set(re.findall(r"FCMD_[A-Z_]+", help_text())):
        assert var in env, var
    assert {"FCMD_APIKEY", "FCMD_AUTH_TOKEN", "FCMD_REDIS_PASSWORD"} <= set(env)
    signals = entries(s["SIGNALS"])
    assert {"SIGHUP", "SIGTERM, SIGINT", "SIGUSR1"} <= set(signals)
    assert "exit 0" in signals["SIGTERM, SIGINT"] and "reopen the log" in signals["SIGHUP"]
    files = " ".join(entries(s["FILES"]))
    for f in ("/etc/fcmd/fcmd.conf", "/usr/local/share/fcmd/fcmd-alerts.yml",
              "/usr/local/share/fcmd/grafana-fcmd.json", "/var/lib/fcmd/spool", "/etc/systemd/system/fcmd.service",
              "/etc/logrotate.d/fcmd", "/run/fcmd/fcmd.pid", "/etc/fcmd/service-account.json"):
        assert f in files, f
    assert set(entries(s["EXIT STATUS"])) == {"0", "1", "2"}
    endpoints = set(entries(s["ENDPOINTS"]))
    assert {"POST /gcm/send", "POST /apns/send", "POST /webpush/send", "GET /gcm/report", "GET /gcm/report/canonical",
            "GET /gcm/report/notregistered", "GET /metrics", "GET /healthz", "GET /readyz", "GET /push/ID",
            "GET /, GET /status"} == endpoints


def test_the_title_names_fcmds_version():
    version = subprocess.run([FCMD_BIN, "--version"], capture_output=True, text=True, timeout=10).stdout.split()[1]
    with open(PAGE) as f:
        th = next(line for line in f if line.startswith(".TH "))
    assert f'"fcmd {version}"' in th, th
