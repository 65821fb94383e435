"""Secrets off the command line (issue 17): the legacy key and the clients'
token from a file or from the environment, with a flag winning over the
config file and the file over the environment; none of them readable in
/proc/PID/cmdline or /proc/PID/environ of the master or a worker."""

import os
import re
import signal
import subprocess

import pytest
import requests

from conftest import API_KEY, FCMD_BIN, free_port, wait_until

TOKEN = "client-token-5d1e77"
WRONG = "wrong-key-0c4b"


def env_with(**kw):
    env = {k: v for k, v in os.environ.items() if not k.startswith("FCMD_")}
    env.update(kw)
    return env


def proc_bytes(pid):
    with open(f"/proc/{pid}/cmdline", "rb") as f:
        cmdline = f.read()
    with open(f"/proc/{pid}/environ", "rb") as f:
        environ = f.read()
    return cmdline, environ


def assert_delivers_and_hides(f, mock, secrets, token=None):
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    if token:
        assert f.send_form(["s1"], {"x": 1}).status_code == 401
    assert f.send_form(["s1"], {"x": 1}, headers=headers).status_code == 200
    r = requests.get(f.url("/gcm/report"), headers=headers, timeout=5)
    assert r.status_code == 200
    f.wait_idle() if not token else None
    # With a token the report needs it, so wait_idle cannot ask: poll the mock.
    stats = wait_until(lambda: (lambda st: st if st["delivered"] >= 1 else None)(mock.stats(summary=True)), 10,
                       what="the mock to have the message")
    assert stats["auth_failures"] == 0, stats
    pids = [f.proc.pid] + f.children()
    assert len(pids) == 3
    for pid in pids:
        cmdline, environ = proc_bytes(pid)
        for secret in secrets:
            assert secret.encode() not in cmdline, (pid, "cmdline")
            assert secret.encode() not in environ, (pid, "environ")
    assert all(s not in f.log_text() for s in secrets)


def test_key_and_token_from_the_environment(start_mock, start_fcmd):
    mock = start_mock("--apikey", API_KEY)
    f = start_fcmd(mock, apikey=None, env=env_with(FCMD_APIKEY=API_KEY, FCMD_AUTH_TOKEN=TOKEN))
    assert_delivers_and_hides(f, mock, [API_KEY, TOKEN], token=TOKEN)


def test_key_and_token_from_files(start_mock, start_fcmd, tmp_path):
    mock = start_mock("--apikey", API_KEY)
    (tmp_path / "key").write_text(API_KEY + "\r\n")
    (tmp_path / "token").write_text(TOKEN + "\n")
    f = start_fcmd(mock, apikey=None, env=env_with(),
                   args=["--apikey-file", str(tmp_path / "key"), "--auth-token-file", str(tmp_path / "token")])
    assert_delivers_and_hides(f, mock, [API_KEY, TOKEN], token=TOKEN)


@pytest.mark.parametrize("conf,args,env", [
    # A flag wins over the config file...
    ("[upstream]\napikey = " + WRONG + "\n", ["--apikey-file", "{key}"], {}),
    ("[upstream]\napikey_file = {wrong}\n", ["--apikey-file", "{key}"], {}),
    # ...which wins over the environment...
    ("[upstream]\napikey_file = {key}\n", [], {"FCMD_APIKEY": WRONG}),
    # ...and a flag over the environment too.
    ("", ["--apikey-file", "{key}"], {"FCMD_APIKEY": WRONG}),
])
def test_which_key_wins(start_mock, start_fcmd, tmp_path, conf, args, env):
    mock = start_mock("--apikey", API_KEY)
    paths = {"key": tmp_path / "key", "wrong": tmp_path / "wrong"}
    paths["key"].write_text(API_KEY + "\n")
    paths["wrong"].write_text(WRONG + "\n")
    (tmp_path / "fcmd.conf").write_text(conf.format(**paths))
    f = start_fcmd(mock, apikey=None, workers=1, env=env_with(**env),
                   args=["--config", str(tmp_path / "fcmd.conf")] + [a.format(**paths) for a in args])
    f.send_form(["w1"], {})
    f.wait_idle()
    stats = mock.stats(summary=True)
    assert stats["auth_failures"] == 0 and stats["delivered"] == 1, stats


def run_check(args, env=None, conf=None, tmp_path=None):
    if conf is not None:
        (tmp_path / "fcmd.conf").write_text(conf)
        args = ["--config", str(tmp_path / "fcmd.conf")] + args
    return subprocess.run([FCMD_BIN, "--check-config", "--port", str(free_port()), *args], capture_output=True,
                          text=True, timeout=10, env=env_with(**(env or {})))


def test_check_config_accepts_the_file_and_the_environment(tmp_path):
    (tmp_path / "key").write_text(API_KEY + "\n")
    assert run_check(["--apikey-file", str(tmp_path / "key")]).stdout == "ok\n"
    r = run_check([], env={"FCMD_APIKEY": API_KEY, "FCMD_AUTH_TOKEN": TOKEN})
    assert r.returncode == 0 and r.stdout == "ok\n", r.stderr
    r = run_check([], conf=f"[upstream]\napikey_file = {tmp_path}/key\n", tmp_path=tmp_path)
    assert r.returncode == 0 and r.stdout == "ok\n", r.stderr


@pytest.mark.parametrize("contents,args,env,conf,needle", [
    pytest.param("", ["--apikey-file", "{path}"], {}, None, 'apikey-file: "{path}" holds no key', id="empty"),
    pytest.param("\r\n" + API_KEY, ["--apikey-file", "{path}"], {}, None, 'apikey-file: "{path}" holds no key',
                 id="empty-first-line"),
    pytest.param(None, ["--apikey-file", "{path}"], {}, None, 'apikey-file: cannot read a key from "{path}"',
                 id="missing"),
    pytest.param("x" * 65537, ["--apikey-file", "{path}"], {}, None, '"{path}" is longer than 65536 bytes',
                 id="too-long"),
    pytest.param(API_KEY + "\x01\n", ["--apikey-file", "{path}"], {}, None, '"{path}" has a control character',
                 id="control-character"),
    pytest.param(API_KEY, ["--apikey-file", "{path}", "--apikey", "k"], {}, None,
                 "--apikey and --apikey-file: give one", id="both-flags"),
    pytest.param(API_KEY, [], {}, "[upstream]\napikey = k\napikey_file = {path}\n",
                 "[upstream] apikey and apikey_file: give one", id="both-in-config"),
    pytest.param(API_KEY, [], {}, "[server]\nauth_token = t\nauth_token_file = {path}\n[upstream]\napikey = k\n",
                 "[server] auth_token and auth_token_file: give one", id="both-tokens-in-config"),
    pytest.param(None, [], {"FCMD_APIKEY": ""}, None, "FCMD_APIKEY is set but empty", id="empty-env-key"),
    pytest.param(None, ["--apikey", "k"], {"FCMD_AUTH_TOKEN": ""}, None, "FCMD_AUTH_TOKEN is set but empty",
                 id="empty-env-token"),
    pytest.param(None, ["--apikey", "k"], {"FCMD_AUTH_TOKEN": TOKEN + "\n"}, None,
                 "in FCMD_AUTH_TOKEN has a control character", id="env-token-line-break"),
])
def test_bad_secrets_exit_2(tmp_path, contents, args, env, conf, needle):
    path = tmp_path / "secret"
    if contents is not None:
        path.write_text(contents)
    r = run_check([a.format(path=path) for a in args], env=env,
                  conf=conf.format(path=path) if conf else None, tmp_path=tmp_path)
    lines = r.stderr.strip().splitlines()
    assert r.returncode == 2 and len(lines) == 1 and needle.format(path=path) in lines[0], r.stderr
    assert API_KEY not in r.stderr and TOKEN not in r.stderr and "x" * 16 not in r.stderr


def test_a_reload_keeps_the_key_from_the_environment(start_mock, start_fcmd):
    # The master unset FCMD_APIKEY at start; a SIGHUP must still find the key.
    mock = start_mock("--apikey", API_KEY)
    f = start_fcmd(mock, apikey=None, workers=1, env=env_with(FCMD_APIKEY=API_KEY))
    before = set(f.children())
    f.proc.send_signal(signal.SIGHUP)
    wait_until(lambda: "generation 2 serves" in f.log_text(), what="the reload")
    wait_until(lambda: f.children() and not set(f.children()) & before, what="the new generation alone")
    f.send_form(["after-reload"], {})
    f.wait_idle()
    stats = mock.stats(summary=True)
    assert stats["auth_failures"] == 0 and stats["delivered"] == 1, stats
    assert "reload failed" not in f.log_text()


def test_no_example_puts_a_secret_on_the_command_line():
    # Every command shown in the docs, the config examples and `make run` gives
    # the key and the token as files or in the environment.
    root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    docs = [os.path.join(root, "README.md")] + [os.path.join(root, "docs", n) for n in
                                                sorted(os.listdir(os.path.join(root, "docs"))) if n.endswith(".md")]
    flag = re.compile(r"--(apikey|auth-token)[ =]")
    for path in docs:
        in_block = False
        for n, line in enumerate(open(path), 1):
            if line.startswith("```"):
                in_block = not in_block
            elif in_block:
                assert not flag.search(line), f"{path}:{n}: {line.strip()}"
    for path in [os.path.join(root, "tools", "demo.sh")] + [os.path.join(root, "conf", n) for n in
                                                             os.listdir(os.path.join(root, "conf"))]:
        for n, line in enumerate(open(path), 1):
            assert not flag.search(line), f"{path}:{n}: {line.strip()}"
