"""The Debian package (make deb): lintian finds no error in it; its Depends
name the package of every library fcmd links; dpkg -i puts each file where
the README says, with its owner and mode, and makes the fcmd user and the
spool's directory; fcmd runs from it as that user on the unit's own command
lines; and dpkg --purge takes away all the package added, and only that.

These tests install and purge the package on this machine (CI's is a
throw-away Debian 12, run as root), and purge it again however a test ends.
They refuse to start, saying why, where an fcmd package is installed or a
directory a purge would delete is already there; an fcmd user made by hand
is used, and kept."""

import glob
import grp
import gzip
import os
import pwd
import re
import shlex
import stat
import subprocess

import pytest
import requests

from conftest import API_KEY, FCMD_BIN, ROOT, Mock, free_port, stop_process, wait_until

# postinst's comment on the user it makes (debian/postinst).
MARK = "fcmd push-notification gateway"
# What a purge deletes whole: the package's state, the logs, and what the
# tests make in systemd's stead (RuntimeDirectory=).
OWNED_DIRS = ("/etc/fcmd", "/var/lib/fcmd", "/var/log/fcmd", "/run/fcmd")
UNIT = "/lib/systemd/system/fcmd.service"
ENABLED = "/etc/systemd/system/multi-user.target.wants/fcmd.service"

# path: (owner, group, mode, the source file it is, or None)
FILES = {
    "/usr/bin/fcmd": ("root", "root", 0o755, None),
    "/usr/share/man/man8/fcmd.8.gz": ("root", "root", 0o644, "docs/fcmd.8"),
    UNIT: ("root", "root", 0o644, None),
    "/etc/logrotate.d/fcmd": ("root", "root", 0o644, "conf/fcmd.logrotate"),
    "/etc/fcmd": ("root", "fcmd", 0o750, None),
    "/etc/fcmd/fcmd.conf": ("root", "fcmd", 0o640, "conf/fcmd.conf"),
    "/usr/share/fcmd/fcmd-alerts.yml": ("root", "root", 0o644, "conf/fcmd-alerts.yml"),
    "/usr/share/fcmd/grafana-fcmd.json": ("root", "root", 0o644, "conf/grafana-fcmd.json"),
    "/usr/share/doc/fcmd/copyright": ("root", "root", 0o644, "debian/copyright"),
    "/var/lib/fcmd": ("fcmd", "fcmd", 0o750, None),
}


def run(*cmd, **kw):
    return subprocess.run(cmd, capture_output=True, text=True, timeout=kw.pop("timeout", 120), **kw)


def fcmd_version():
    return run(FCMD_BIN, "--version").stdout.split()[1]


def package_status():
    r = run("dpkg-query", "-W", "-f=${db:Status-Status}", "fcmd")
    return r.stdout if r.returncode == 0 else "not-installed"


def passwd(name):
    try:
        return pwd.getpwnam(name)
    except KeyError:
        return None


def group(name):
    try:
        return grp.getgrnam(name)
    except KeyError:
        return None


def dpkg(*args):
    r = run("dpkg", *args, timeout=300)
    assert r.returncode == 0, f"dpkg {' '.join(args)}: {r.stdout}{r.stderr}"
    return r


def purge_for_good():
    """dpkg --purge fcmd, whatever state a failed test left it in, then
    away with anything of fcmd's still there (the machine fixture saw none
    of it before).  Should the package's own removal scripts fail, dpkg
    purges it without them, so the machine keeps neither a half-removed
    package nor a statoverride naming a group that is gone; the failure is
    still reported."""
    failed = None
    if package_status() != "not-installed":
        r = run("dpkg", "--purge", "fcmd", timeout=300)
        if r.returncode != 0:
            failed = r.stdout + r.stderr
            for script in ("prerm", "postrm"):
                path = f"/var/lib/dpkg/info/fcmd.{script}"
                if os.path.exists(path):
                    os.remove(path)
            run("dpkg", "--purge", "--force-remove-reinstreq", "fcmd", timeout=300)
    for path in ("/etc/fcmd/fcmd.conf", "/etc/fcmd"):
        if run("dpkg-statoverride", "--list", path).returncode == 0:
            run("dpkg-statoverride", "--remove", path)
    subprocess.run(["rm", "-rf", *OWNED_DIRS], check=True)
    user = passwd("fcmd")
    if user is not None and user.pw_gecos.startswith(MARK):
        subprocess.run(["userdel", "fcmd"], check=True)
    assert failed is None, f"dpkg --purge fcmd failed, purged without its scripts: {failed}"


@pytest.fixture(scope="module")
def deb(tmp_path_factory):
    """make deb, into a directory of the test's.  make's own variables are
    not passed on: under make asan they would build the package's fcmd
    with the sanitizers."""
    out = tmp_path_factory.mktemp("deb")
    env = {k: v for k, v in os.environ.items() if k not in ("MAKEFLAGS", "MFLAGS", "MAKELEVEL", "MAKEOVERRIDES")}
    r = run("make", "-s", "-C", ROOT, "deb", f"DEBDIR={out}", env=env, timeout=900)
    assert r.returncode == 0, r.stdout + r.stderr
    arch = run("dpkg", "--print-architecture").stdout.strip()
    debs = glob.glob(str(out / "*.deb"))
    assert debs == [str(out / f"fcmd_{fcmd_version()}_{arch}.deb")], debs
    return debs[0]


@pytest.fixture
def machine():
    """This machine, checked to hold nothing a purge of fcmd would take
    from someone else, and the package purged from it when the test ends.
    Yields the fcmd user that was there before (None: none was)."""
    status = package_status()
    assert status == "not-installed", (
        f"an fcmd package is on this machine ({status}); test_deb installs and purges its own. "
        "Remove it first (dpkg --purge fcmd) or run the test on another machine")
    there = [d for d in OWNED_DIRS if os.path.lexists(d)]
    assert not there, (f"{there} exist with no fcmd package installed: test_deb's purge would "
                       "delete them. Move them away first")
    user = passwd("fcmd")
    assert user is None or not user.pw_gecos.startswith(MARK), (
        f"a user fcmd ({user.pw_gecos!r}) made by the package, which is not installed: a "
        "leftover that test_deb's purge would delete. Remove it first (deluser --system fcmd)")
    try:
        yield user
    finally:
        purge_for_good()


def owner_mode(path):
    st = os.lstat(path)
    return pwd.getpwuid(st.st_uid).pw_name, grp.getgrgid(st.st_gid).gr_name, f"{stat.S_IMODE(st.st_mode):04o}"


def source(rel):
    with open(os.path.join(ROOT, rel), "rb") as f:
        return f.read()


def unit_commands(key):
    """The command lines of one Exec key of the installed unit."""
    with open(UNIT) as f:
        return [shlex.split(line.split("=", 1)[1]) for line in f if line.startswith(key + "=")]


def as_fcmd(cmd, env, **kw):
    """cmd run as user fcmd with group fcmd alone, as the unit's User= and
    Group= run it."""
    return dict(args=cmd, user="fcmd", group="fcmd", extra_groups=[], env=env, **kw)


def test_lintian_finds_no_error(deb):
    r = run("lintian", "--show-overrides", deb, timeout=600)
    errors = [line for line in r.stdout.splitlines() if line.startswith("E:")]
    assert errors == [] and r.returncode == 0, r.stdout + r.stderr
    # It read the package, and each override still silences its tag.
    with open(os.path.join(ROOT, "debian", "lintian-overrides")) as f:
        overrides = [line.split(":", 1)[1].strip() for line in f if line.startswith("fcmd:")]
    assert len(overrides) >= 1
    for tag in overrides:
        assert f"O: fcmd: {tag}" in r.stdout, (tag, r.stdout)


def test_depends_name_the_package_of_each_library_fcmd_links(deb, tmp_path):
    fields = dict(line.split(": ", 1) for line in run("dpkg-deb", "-f", deb).stdout.splitlines()
                  if ": " in line and not line.startswith(" "))
    assert fields["Package"] == "fcmd" and fields["Version"] == fcmd_version()
    assert fields["Architecture"] == run("dpkg", "--print-architecture").stdout.strip()
    depends = {d.split()[0] for d in fields["Depends"].split(", ")}
    assert "adduser" in depends  # postinst makes the user with it
    run("dpkg-deb", "-x", deb, str(tmp_path))
    binary = str(tmp_path / "usr/bin/fcmd")
    needed = re.findall(r"\(NEEDED\)\s+Shared library: \[([^]]+)\]", run("readelf", "-d", binary).stdout)
    assert "libh2o.so.0.13" in needed and "libcurl.so.4" in needed, needed
    loaded = dict(re.findall(r"^\s*(\S+) => (/\S+)", run("ldd", binary).stdout, re.M))
    for soname in needed:
        owners = set()
        # dpkg knows each file by one of its two names on a merged /usr.
        for path in (loaded[soname], loaded[soname].removeprefix("/usr") if loaded[soname].startswith("/usr/")
                     else "/usr" + loaded[soname]):
            r = run("dpkg", "-S", path)
            owners |= {line.split(":")[0] for line in r.stdout.splitlines()} if r.returncode == 0 else set()
        assert owners and owners <= depends, (soname, loaded[soname], owners, fields["Depends"])

def test_install_run_and_purge(deb, machine, tmp_path):
    dpkg("-i", deb)
    user = passwd("fcmd")
    if machine is None:  # made by postinst: a system user with no shell, at home in the spool's place
        assert user.pw_gecos.startswith(MARK) and user.pw_uid < 1000, user
        assert user.pw_dir == "/var/lib/fcmd" and user.pw_shell == "/usr/sbin/nologin", user
        assert grp.getgrgid(user.pw_gid).gr_name == "fcmd"
    else:
        assert user == machine
    # A second configure (a reinstall, an upgrade) changes nothing.
    dpkg("-i", deb)
    assert passwd("fcmd") == user

    for path, (owner, grp_name, mode, src) in FILES.items():
        assert owner_mode(path) == (owner, grp_name, f"{mode:04o}"), path
        if src:
            data = open(path, "rb").read()
            assert (gzip.decompress(data) if path.endswith(".gz") else data) == source(src), path
    conffiles = run("dpkg-query", "-W", "-f=${Conffiles}", "fcmd").stdout.split()[0::2]
    assert conffiles == ["/etc/fcmd/fcmd.conf", "/etc/logrotate.d/fcmd"]
    assert run("/usr/bin/fcmd", "--version").stdout.split()[:2] == ["fcmd", fcmd_version()]
    assert run("man", "-w", "fcmd").stdout.strip() == "/usr/share/man/man8/fcmd.8.gz"
    r = run("logrotate", "-d", "/etc/logrotate.d/fcmd")
    assert r.returncode == 0 and "considering log /var/log/fcmd/*.log" in r.stderr, r.stderr

    # The unit names the packaged binary, which systemd finds.
    with open(UNIT) as f:
        unit = f.read()
    assert "/usr/local" not in unit and "\nUser=fcmd\n" in unit
    starts = unit_commands("ExecStartPre") + unit_commands("ExecStart")
    assert len(starts) == 2 and all(c[0] == "/usr/bin/fcmd" for c in starts), starts
    r = run("systemd-analyze", "verify", UNIT)
    assert r.returncode == 0, r.stdout + r.stderr

    # The unit's commands, as its user: the packaged configuration names no
    # credential, so the check wants one (here from the environment).
    for d in ("/run/fcmd", "/var/log/fcmd"):  # RuntimeDirectory= and LogsDirectory=
        subprocess.run(["install", "-d", "-o", "fcmd", "-g", "fcmd", d], check=True)
    check, start = starts
    env = {"PATH": "/usr/bin:/bin"}
    r = subprocess.run(**as_fcmd(check, env), capture_output=True, text=True, timeout=30)
    assert r.returncode == 2 and "no upstream credentials" in r.stderr, r.stderr
    env["FCMD_APIKEY"] = API_KEY
    r = subprocess.run(**as_fcmd(check, env), capture_output=True, text=True, timeout=30)
    assert (r.returncode, r.stdout) == (0, "ok\n"), r.stderr

    mock = Mock()
    port = free_port()
    cmd = start + ["--host", "127.0.0.1", "--port", str(port), "--workers", "1", "--gcm-url", mock.url(),
                   "--spool", "/var/lib/fcmd/spool"]
    proc = subprocess.Popen(**as_fcmd(cmd, env), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                            text=True, start_new_session=True)
    try:
        def healthy():
            assert proc.poll() is None, f"fcmd exited with {proc.returncode}: {proc.stderr.read()}"
            try:
                return requests.get(f"http://127.0.0.1:{port}/healthz", timeout=1).status_code == 200
            except requests.ConnectionError:
                return False
        wait_until(healthy, what="the packaged fcmd to answer /healthz")
        r = requests.post(f"http://127.0.0.1:{port}/gcm/send", timeout=5,
                          data={"tokens": ["deb-token"], "payload": '{"from": "the package"}'})
        assert r.status_code == 200 and r.text == "ok\n"
        wait_until(lambda: mock.token("deb-token"), what="the push at the mock")
        assert mock.token("deb-token")["data"] == {"from": "the package"}
        with open("/run/fcmd/fcmd.pid") as f:
            assert int(f.read()) == proc.pid
        assert owner_mode("/var/lib/fcmd/spool") == ("fcmd", "fcmd", "0750")
        with open("/var/log/fcmd/fcmd.log") as f:
            assert "listening on 127.0.0.1" in f.read()
    finally:
        code = stop_process(proc)
        mock.stop()
    assert code == 0, proc.stderr.read()

    # What an operator does next; the purge undoes it too.
    r = run("systemctl", "enable", "fcmd.service")
    assert r.returncode == 0 and os.path.islink(ENABLED), r.stderr

    dpkg("--purge", "fcmd")
    assert package_status() == "not-installed"
    left = [p for p in [*FILES, *OWNED_DIRS, ENABLED, "/usr/share/fcmd", "/usr/share/doc/fcmd"]
            if os.path.lexists(p) and p != "/run/fcmd"]
    assert left == []
    assert "fcmd" not in run("dpkg-statoverride", "--list").stdout
    if machine is None:
        assert passwd("fcmd") is None and group("fcmd") is None
    else:
        assert passwd("fcmd") == machine


def test_purge_keeps_what_the_operator_made(deb, machine):
    """An fcmd user made before the package, and a key put in /etc/fcmd,
    outlive the purge; what the package made goes."""
    made = machine is None
    try:
        if made:
            subprocess.run(["useradd", "--system", "--user-group", "--no-create-home", "--home-dir",
                            "/nonexistent", "--shell", "/usr/sbin/nologin", "fcmd"], check=True)
        user = passwd("fcmd")
        dpkg("-i", deb)
        assert passwd("fcmd") == user
        # A key beside the configuration, as the README keeps one.
        subprocess.run(["install", "-m", "0640", "-g", "fcmd", "/dev/null", "/etc/fcmd/apikey"], check=True)
        with open("/etc/fcmd/apikey", "w") as f:
            f.write(API_KEY + "\n")
        check = ["/usr/bin/fcmd", "--config", "/etc/fcmd/fcmd.conf", "--apikey-file", "/etc/fcmd/apikey",
                 "--check-config"]
        r = subprocess.run(**as_fcmd(check, {}), capture_output=True, text=True, timeout=30)
        assert (r.returncode, r.stdout) == (0, "ok\n"), r.stderr
        assert os.path.isdir("/var/lib/fcmd")

        dpkg("--purge", "fcmd")
        assert package_status() == "not-installed"
        assert os.listdir("/etc/fcmd") == ["apikey"]
        assert not os.path.lexists("/var/lib/fcmd")
        assert passwd("fcmd") == user and group("fcmd") is not None
    finally:
        purge_for_good()  # before the group goes, which a statoverride may name
        if made and passwd("fcmd") is not None:
            subprocess.run(["userdel", "fcmd"], check=True)
        if made and group("fcmd") is not None:
            subprocess.run(["groupdel", "fcmd"], check=True)
