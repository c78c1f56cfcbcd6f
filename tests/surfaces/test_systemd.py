"""The systemd unit: systemd's verifier passes, the hardening is in place, and the daemon works
under the same restrictions, as far as this machine can impose them without systemd as PID 1.

Without a running systemd (`systemd-run` needs one), the sandbox test rebuilds by hand what the
unit's directives do to the process: a non-root user with no capabilities and no new privileges
(DynamicUser, CapabilityBoundingSet=, NoNewPrivileges), umask 0077 (UMask), /proc mounted with
hidepid=invisible and subset=pid (ProtectProc, ProcSubset), a user namespace mapping only that user
(PrivateUsers), and the unit's system call filter computed from the unit itself, as systemd
computes it, loaded with libseccomp, beside the seccomp rules systemd uses for
MemoryDenyWriteExecute and RestrictAddressFamilies. ProtectSystem, ProtectHome, PrivateTmp,
PrivateDevices and the other mount-namespace directives are not rebuilt here.
"""

from __future__ import annotations

import base64
import ctypes.util
import errno
import json
import os
import pwd
import re
import shlex
import shutil
import stat
import subprocess
import sys
import tempfile
from collections.abc import Iterable, Iterator
from pathlib import Path

import pytest
import yaml

from tests.support.project import ROOT, render_feed, write_config
from tests.support.servers import FeedServer, Sink

UNIT = ROOT / "systemd" / "monitor.service"
HARDENING = {
    "DynamicUser": ["yes"],
    "NoNewPrivileges": ["yes"],
    "ProtectSystem": ["strict"],
    "ProtectHome": ["yes"],
    "PrivateTmp": ["yes"],
    "PrivateDevices": ["yes"],
    "ProtectKernelTunables": ["yes"],
    "ProtectKernelModules": ["yes"],
    "ProtectKernelLogs": ["yes"],
    "ProtectControlGroups": ["yes"],
    "ProtectHostname": ["yes"],
    "ProtectClock": ["yes"],
    "ProtectProc": ["invisible"],
    "ProcSubset": ["pid"],
    "PrivateUsers": ["yes"],
    "PrivateMounts": ["yes"],
    "RestrictAddressFamilies": ["AF_INET AF_INET6 AF_UNIX"],
    "RestrictNamespaces": ["yes"],
    "RestrictRealtime": ["yes"],
    "RestrictSUIDSGID": ["yes"],
    "MemoryDenyWriteExecute": ["yes"],
    "LockPersonality": ["yes"],
    "SystemCallFilter": ["@system-service", "~@privileged @resources"],
    "SystemCallArchitectures": ["native"],
    "CapabilityBoundingSet": [""],
    "UMask": ["0077"],
}
# What `systemd-analyze security` still marks as exposed, each kept on purpose: the daemon is a
# Python program of the host (RootDirectory), fetches feeds and talks to chat services anywhere on
# the Internet (RestrictAddressFamilies, PrivateNetwork, IPAddressDeny), logs to journald and may
# use a local PostgreSQL socket (AF_UNIX), and ProtectClock itself grants read access to /dev/rtc.
ACCEPTED_EXPOSURES = {
    "RootDirectory=/RootImage=",
    "RestrictAddressFamilies=~AF_UNIX",
    "RestrictAddressFamilies=~AF_(INET|INET6)",
    "PrivateNetwork=",
    "IPAddressDeny=",
    "DeviceAllow=",
}


def service_settings() -> dict[str, list[str]]:
    """Each key of the unit's [Service] section with its values, in the file's order."""
    settings: dict[str, list[str]] = {}
    section = ""
    for raw in UNIT.read_text(encoding="utf-8").splitlines():
        line = raw.strip()
        if not line or line.startswith(("#", ";")):
            continue
        if line.startswith("["):
            section = line
        elif section == "[Service]":
            key, _, value = line.partition("=")
            settings.setdefault(key.strip(), []).append(value.strip())
    return settings


def _analyze() -> str:
    analyze = shutil.which("systemd-analyze")
    if analyze is None:
        pytest.skip("systemd-analyze is not installed")
    return analyze


def test_unit_passes_systemd_analyze_verify() -> None:
    """`systemd-analyze verify systemd/monitor.service` reports nothing."""
    done = subprocess.run([_analyze(), "verify", str(UNIT)],
                          capture_output=True, text=True, timeout=60, check=False)
    assert done.returncode == 0, done.stderr
    assert "monitor.service" not in done.stderr, done.stderr


def test_unit_sets_each_hardening_directive() -> None:
    """The unit's [Service] section sets every hardening directive to exactly the value chosen."""
    settings = service_settings()
    assert {key: settings.get(key) for key in HARDENING} == HARDENING


def test_systemd_analyze_security_finds_only_the_accepted_exposures() -> None:
    """`systemd-analyze security --offline=yes` passes the new directives and flags nothing but
    the exposures the daemon's work needs."""
    done = subprocess.run([_analyze(), "security", "--offline=yes", str(UNIT)],
                          capture_output=True, text=True, timeout=120, check=False)
    if done.returncode != 0 and "offline" in done.stderr:
        pytest.skip(f"this systemd-analyze cannot judge a unit file offline: {done.stderr}")
    assert done.returncode == 0, done.stderr
    passed = {line.split()[1] for line in done.stdout.splitlines() if line.startswith("✓ ")}
    exposed = {line.split()[1] for line in done.stdout.splitlines() if line.startswith("✗ ")}
    assert {"ProtectProc=", "ProcSubset=", "PrivateUsers=", "PrivateMounts=",
            "SystemCallFilter=~@privileged", "SystemCallFilter=~@resources"} <= passed
    assert exposed == ACCEPTED_EXPOSURES


def _syscall_groups(analyze: str) -> dict[str, list[str]]:
    """systemd's named system call groups (@default, @system-service…) and their members."""
    listing = subprocess.run([analyze, "syscall-filter"], capture_output=True, text=True,
                             timeout=60, check=True).stdout
    groups: dict[str, list[str]] = {}
    members: list[str] | None = None
    for line in listing.splitlines():
        if line.startswith("@"):
            members = groups.setdefault(line.strip(), [])
        elif not line.strip():
            members = None
        elif members is not None and line.startswith(" ") and not line.strip().startswith("#"):
            members.append(line.strip())
    return groups


def _expand(names: Iterable[str], groups: dict[str, list[str]]) -> set[str]:
    found: set[str] = set()
    for name in names:
        found |= _expand(groups[name], groups) if name.startswith("@") else {name}
    return found


def allowed_syscalls(analyze: str) -> set[str]:
    """The system calls the unit's SystemCallFilter= lines let through, computed as systemd
    does: a first line that allows makes an allow list that @default joins; each later line adds
    to it, or with ~ removes from it."""
    groups = _syscall_groups(analyze)
    lines = service_settings()["SystemCallFilter"]
    assert not lines[0].startswith("~")  # an allow list: anything not named is killed
    allowed = _expand(["@default"], groups)
    for value in lines:
        names = _expand(value.removeprefix("~").split(), groups)
        allowed = allowed - names if value.startswith("~") else allowed | names
    return allowed


# Run inside the sandbox by the unprivileged user, last: loads the seccomp filters systemd would
# load for the unit, then becomes the command in argv[2:]. The first filter holds the rules systemd
# uses for MemoryDenyWriteExecute (no writable+executable mapping, no mapping made executable
# later) and RestrictAddressFamilies=AF_INET AF_INET6 AF_UNIX; the second is the allow list of
# argv[1], anything else killing the process (SystemCallFilter; native architecture only, as
# SystemCallArchitectures=native). It goes last as the allow list forbids seccomp() itself.
LAUNCHER = r"""
import ctypes, errno, os, sys
lib = ctypes.CDLL(sys.argv[1], use_errno=True)
class Cmp(ctypes.Structure):
    _fields_ = [("arg", ctypes.c_uint), ("op", ctypes.c_int), ("a", ctypes.c_uint64),
                ("b", ctypes.c_uint64)]
lib.seccomp_init.restype = ctypes.c_void_p
lib.seccomp_init.argtypes = [ctypes.c_uint32]
lib.seccomp_syscall_resolve_name.argtypes = [ctypes.c_char_p]
lib.seccomp_rule_add_array.argtypes = [ctypes.c_void_p, ctypes.c_uint32, ctypes.c_int,
                                       ctypes.c_uint, ctypes.POINTER(Cmp)]
lib.seccomp_load.argtypes = [ctypes.c_void_p]
ALLOW, KILL_PROCESS, MASKED_EQ, EQ = 0x7FFF0000, 0x80000000, 7, 4
def refuse(code): return 0x00050000 | code
def number(name): return lib.seccomp_syscall_resolve_name(name.encode())
def rule(ctx, action, name, *compare):
    array = (Cmp * max(len(compare), 1))(*[Cmp(*c) for c in compare])
    assert lib.seccomp_rule_add_array(ctx, action, number(name), len(compare), array) == 0, name
PROT_WRITE, PROT_EXEC, SHM_EXEC = 2, 4, 0o100000
guards = lib.seccomp_init(ALLOW)
rule(guards, refuse(errno.EPERM), "mmap", (2, MASKED_EQ, PROT_WRITE | PROT_EXEC,
                                           PROT_WRITE | PROT_EXEC))
rule(guards, refuse(errno.EPERM), "mprotect", (2, MASKED_EQ, PROT_EXEC, PROT_EXEC))
rule(guards, refuse(errno.EPERM), "pkey_mprotect", (2, MASKED_EQ, PROT_EXEC, PROT_EXEC))
rule(guards, refuse(errno.EPERM), "shmat", (2, MASKED_EQ, SHM_EXEC, SHM_EXEC))
for family in set(range(46)) - {1, 2, 10}:  # all but AF_UNIX, AF_INET, AF_INET6
    rule(guards, refuse(errno.EAFNOSUPPORT), "socket", (0, EQ, family, 0))
assert lib.seccomp_load(guards) == 0
allow_list = lib.seccomp_init(KILL_PROCESS)
for name in sys.argv[2].split(","):
    if number(name) >= 0:  # else not a system call of this architecture
        rule(allow_list, ALLOW, name)
assert lib.seccomp_load(allow_list) == 0
os.execv(sys.argv[3], sys.argv[3:])
"""
# Printed from inside the sandbox, to show the restrictions really apply.
PROBE = r"""
import json, mmap, os, socket
status = dict(line.split(":\t", 1) for line in open("/proc/self/status").read().splitlines())
try:
    socket.socket(socket.AF_NETLINK, socket.SOCK_RAW)
    netlink = "allowed"
except OSError as error:
    netlink = os.strerror(error.errno)
try:
    mmap.mmap(-1, 4096, prot=mmap.PROT_READ | mmap.PROT_WRITE | mmap.PROT_EXEC)
    writable_code = "allowed"
except OSError as error:
    writable_code = os.strerror(error.errno)
print(json.dumps({
    "uid": os.getuid(), "umask": oct(os.umask(0o077)),
    "uid_map": open("/proc/self/uid_map").read().split(),
    "seccomp": status["Seccomp"], "no_new_privs": status["NoNewPrivs"], "cap_eff": status["CapEff"],
    "meminfo": os.path.exists("/proc/meminfo"), "pid_1": os.path.exists("/proc/1"),
    "netlink": netlink, "writable_code": writable_code}))
"""


def _unused_uid() -> int:
    for uid in range(61_934, 65_000):  # in systemd's range for dynamic users
        try:
            pwd.getpwuid(uid)
        except KeyError:
            return uid
    raise AssertionError("no free uid")


def _walled_off(path: Path) -> Path | None:
    """The highest folder on the way to `path` that other users cannot enter, if any."""
    for folder in [*reversed(path.parents), path]:
        if not folder.stat().st_mode & stat.S_IXOTH:
            return folder
    return None


def _exposing(paths: list[Path], stash: Path) -> list[str]:
    """Shell lines that, in a private mount namespace, let other users reach `paths` (the Python
    install and this project): each walled-off folder on their way becomes an empty tmpfs into
    which the paths are bind-mounted back, as BindReadOnlyPaths= would do it under systemd."""
    lines = [f"mount -t tmpfs -o mode=0700 tmpfs {stash}"]
    walls: dict[Path, list[Path]] = {}
    for path in paths:
        wall = _walled_off(path)
        if wall is not None:
            walls.setdefault(wall, []).append(path)
    for n, (wall, inside) in enumerate(walls.items()):
        saved = [stash / f"{n}-{k}" for k in range(len(inside))]
        for path, copy in zip(inside, saved, strict=True):
            lines += [f"mkdir {copy}", f"mount --bind {shlex.quote(str(path))} {copy}"]
        lines.append(f"mount -t tmpfs -o mode=0755 tmpfs {shlex.quote(str(wall))}")
        for path, copy in zip(inside, saved, strict=True):
            lines += [f"mkdir -p {shlex.quote(str(path))}",
                      f"mount --bind {copy} {shlex.quote(str(path))}"]
    return lines


class Sandbox:
    """Runs commands as `uid` under the unit's restrictions (see the module's docstring)."""

    def __init__(self, uid: int, base: Path, syscalls: set[str], seccomp: str,
                 prelude: Iterable[str] = ()):
        """`prelude`: shell lines run first, as root, in the sandbox's mount namespace."""
        self.uid, self.syscalls, self.seccomp = uid, syscalls, seccomp
        stash = base / "stash"
        stash.mkdir()
        needed = [Path(p).resolve() for p in (sys.base_prefix, sys.prefix, ROOT)] + [base]
        self.script = "\n".join([
            "set -eu",
            *prelude,
            "mount -t proc -o hidepid=invisible,subset=pid proc /proc",
            *_exposing(needed, stash),
            "umask 0077",
            f"exec setpriv --reuid={uid} --regid={uid} --clear-groups --inh-caps=-all "
            '--bounding-set=-all --no-new-privs unshare --user --map-current-user -- "$@"'])

    def run(self, command: list[str], env: dict[str, str],
            filtered: bool = True) -> subprocess.CompletedProcess[str]:
        """`command` in the sandbox; `filtered`: under the unit's seccomp filters."""
        if filtered:
            command = [sys.executable, "-c", LAUNCHER, self.seccomp,
                       ",".join(sorted(self.syscalls)), *command]
        return subprocess.run(["unshare", "--mount", "--propagation", "private", "--", "sh",
                               "-c", self.script, "sandbox", *command],
                              capture_output=True, text=True, env=env, timeout=300, check=False)


@pytest.fixture
def sandbox_base() -> Iterator[Path]:
    """A folder other users may enter but not list, removed afterwards."""
    base = Path(tempfile.mkdtemp(prefix="monitor-sandbox-"))
    base.chmod(0o711)
    yield base
    shutil.rmtree(base, ignore_errors=True)


def test_run_once_works_as_an_unprivileged_user_under_the_units_restrictions(
        sandbox_base: Path, feed_server: FeedServer, sink: Sink) -> None:
    """`run --once` as a non-root user with no capabilities, umask 0077, a /proc of its own
    processes only, in its own user namespace and under the unit's system call filter: the
    parser worker caps its memory and parses, the alert goes out, the database is 0600."""
    if os.geteuid() != 0:
        pytest.skip("building the sandbox (mounting /proc, changing user) needs root")
    missing = [tool for tool in ("unshare", "setpriv") if shutil.which(tool) is None]
    if missing:
        pytest.skip(f"{' and '.join(missing)} (util-linux) not installed")
    seccomp = ctypes.util.find_library("seccomp")
    if seccomp is None:
        pytest.skip("libseccomp is not installed")
    uid = _unused_uid()
    state, etc = sandbox_base / "state", sandbox_base / "etc"
    state.mkdir(mode=0o700)
    os.chown(state, uid, uid)
    etc.mkdir(mode=0o755)
    sandbox = Sandbox(uid, sandbox_base, allowed_syscalls(_analyze()), seccomp)
    env = {"PATH": "/usr/local/bin:/usr/bin:/bin", "LANG": "C.UTF-8",
           "STATE_DIRECTORY": str(state), "CONFIGURATION_DIRECTORY": str(etc)}

    bare = sandbox.run(["true"], env, filtered=False)
    if bare.returncode != 0:
        pytest.skip(f"this machine cannot build the sandbox: {bare.stderr.strip()}")
    probe = sandbox.run([sys.executable, "-c", PROBE], env)
    assert probe.returncode == 0, probe.stderr
    assert re.fullmatch(r"\{.*\}\n", probe.stdout), probe.stdout
    facts = json.loads(probe.stdout)
    assert facts == {"uid": uid, "umask": "0o77", "uid_map": [str(uid), str(uid), "1"],
                     "seccomp": "2", "no_new_privs": "1", "cap_eff": "0000000000000000",
                     "meminfo": False, "pid_1": False,
                     "netlink": os.strerror(errno.EAFNOSUPPORT),
                     "writable_code": os.strerror(errno.EPERM)}

    feeds = [{"url": feed_server.serve("/ru.xml", render_feed("russian.xml")), "name": "ru"}]
    config = write_config(etc, feeds, [{"url": sink.url}], database="",
                          poll={"parsers": 1, "parse_memory": "512MiB"})
    config.chmod(0o644)  # root's, readable by the service, as /etc/monitor/config.yaml
    done = sandbox.run([sys.executable, "-m", "monitor", "--config", str(config), "run",
                        "--once"], env)
    assert done.returncode == 0, done.stderr
    assert "Traceback" not in done.stderr, done.stderr
    assert "feed ru failed" not in done.stderr, done.stderr
    assert [t for t in sink.titles() if "Лавров прибыл в Пхеньян" in t] == sink.titles()
    assert len(sink.titles()) == 1, sink.titles()
    database = (state / "monitor.db").stat()
    assert (database.st_uid, stat.S_IMODE(database.st_mode)) == (uid, 0o600)


# The README's service steps that this machine does instead of the test: installing the package
# (the test's own environment has it), linking it onto PATH, installing the unit, reloading
# systemd and reading the journal.
DONE_BY_THE_MACHINE = ("sudo python3 -m venv", "sudo ln -s", "sudo cp systemd/",
                       "sudo systemctl daemon-reload", "journalctl")
SERVICE_SECRET = "s3cr3t-sink-token"


def readme_service_steps() -> list[str]:
    """The command lines of the README's service section (comments dropped)."""
    section = (ROOT / "README.md").read_text(encoding="utf-8").split(
        "## Running it as a systemd service", 1)[1]
    block = section.split("```sh\n", 1)[1].split("```", 1)[0]
    return [line.split("  #", 1)[0].strip() for line in block.splitlines() if line.strip()]


def _environment_file(path: Path) -> dict[str, str]:
    """KEY=VALUE lines as systemd's EnvironmentFile= reads them (comments and blanks skipped)."""
    found = {}
    for line in path.read_text(encoding="utf-8").splitlines():
        if line.strip() and not line.lstrip().startswith(("#", ";")):
            key, _, value = line.partition("=")
            found[key.strip()] = value.strip().strip('"')
    return found


class ServiceHost:
    """This machine seen through a private mount namespace whose /etc is a copy and whose
    /var/lib is empty, so the README's absolute paths can be used as they are."""

    def __init__(self, base: Path):
        self.etc, self.var_lib = base / "etc", base / "var-lib"
        subprocess.run(["cp", "-a", "/etc", str(self.etc)], check=True, timeout=120)
        self.var_lib.mkdir(mode=0o755)
        self.mounts = [f"mount --bind {self.etc} /etc", f"mount --bind {self.var_lib} /var/lib"]

    def as_root(self, command: list[str], env: dict[str, str]
                ) -> subprocess.CompletedProcess[str]:
        """`command` as root (a person using sudo), with no systemd variables set."""
        script = "\n".join(["set -eu", *self.mounts, 'exec "$@"'])
        return subprocess.run(["unshare", "--mount", "--propagation", "private", "--", "sh",
                               "-c", script, "root", *command],
                              capture_output=True, text=True, env=env, timeout=300,
                              check=False)


def test_the_readmes_service_steps_work_as_written(
        sandbox_base: Path, feed_server: FeedServer, sink: Sink) -> None:
    """Each step of the README's service section, with /etc and /var/lib as written: `init`
    leaves a config the service can read (no tokens in it) and a root-only env file, `check`
    passes, the daemon runs as the unit's unprivileged user under its restrictions with the
    token from the env file and alerts, and a person's `status` reads the service's database."""
    if os.geteuid() != 0:
        pytest.skip("changing user and mounting /etc need root")
    seccomp = ctypes.util.find_library("seccomp")
    if seccomp is None or shutil.which("setpriv") is None:
        pytest.skip("libseccomp or setpriv (util-linux) is not installed")
    uid = _unused_uid()
    host = ServiceHost(sandbox_base)
    sandbox = Sandbox(uid, sandbox_base, allowed_syscalls(_analyze()), seccomp,
                      prelude=host.mounts)
    person = {"PATH": "/usr/local/bin:/usr/bin:/bin", "LANG": "C.UTF-8"}
    monitor = [sys.executable, "-m", "monitor"]
    config, env_file = host.etc / "monitor" / "config.yaml", host.etc / "monitor" / "env"
    edits = {
        "/etc/monitor/config.yaml": lambda: _point_at_local_servers(config, feed_server, sink),
        "/etc/monitor/env": lambda: env_file.write_text(
            env_file.read_text(encoding="utf-8") + f"SINK_TOKEN={SERVICE_SECRET}\n"),
    }
    outputs = []
    for step in readme_service_steps():
        if step.startswith(DONE_BY_THE_MACHINE):
            continue
        words = shlex.split(step)
        if words[0] == "sudoedit":
            edits[words[1]]()
        elif words[:2] == ["sudo", "monitor"]:
            done = host.as_root(monitor + words[2:], person)
            assert done.returncode == 0, (step, done.stderr)
            outputs.append(done.stdout + done.stderr)
        elif step == "sudo systemctl enable --now monitor":
            outputs.append(_start_service(sandbox, host, uid))
        else:
            raise AssertionError(f"a README step this test does not know: {step}")
    init, check, service, status = outputs
    assert (stat.S_IMODE(config.stat().st_mode), config.stat().st_uid) == (0o644, 0)
    assert (stat.S_IMODE(env_file.stat().st_mode), env_file.stat().st_uid) == (0o600, 0)
    assert SERVICE_SECRET not in config.read_text(encoding="utf-8")
    assert "database: /var/lib/monitor/monitor.db (not created yet" in check
    assert "Traceback" not in service and "holds a token" not in service, service
    assert len(sink.received) == 1 and "Лавров прибыл в Пхеньян" in sink.titles()[0]
    assert sink.authorizations == [
        "Basic " + base64.b64encode(f"monitor:{SERVICE_SECRET}".encode()).decode()]
    assert "database: /var/lib/monitor/monitor.db\n" in status and "1 sent" in status
    assert SERVICE_SECRET not in init + check + service + status


def _point_at_local_servers(config: Path, feed_server: FeedServer, sink: Sink) -> None:
    """The person's edit: a local feed, the local sink with its token as ${SINK_TOKEN}, and a
    parser memory cap that fits the sandbox."""
    data = yaml.safe_load(config.read_text(encoding="utf-8"))
    target = sink.url.replace("json://", "json://monitor:${SINK_TOKEN}@")
    data.update(feeds=[{"url": feed_server.serve("/ru.xml", render_feed("russian.xml")),
                        "name": "ru"}], notify=[{"url": target}],
                poll={**data.get("poll", {}), "parsers": 1, "parse_memory": "512MiB"})
    config.write_text(yaml.safe_dump(data, allow_unicode=True, sort_keys=False),
                      encoding="utf-8")


def _start_service(sandbox: Sandbox, host: ServiceHost, uid: int) -> str:
    """What systemd does for `enable --now`: create the state directory for the service's user,
    read the EnvironmentFile as root, and run ExecStart (one cycle of it) as that user."""
    state = host.var_lib / "monitor"
    state.mkdir(mode=0o700)
    os.chown(state, uid, uid)
    settings = service_settings()
    env = {"PATH": "/usr/local/bin:/usr/bin:/bin", "LANG": "C.UTF-8",
           "STATE_DIRECTORY": "/var/lib/monitor", "CONFIGURATION_DIRECTORY": "/etc/monitor"}
    for source in settings["EnvironmentFile"]:
        path = host.etc / Path(source.removeprefix("-")).relative_to("/etc")
        if path.exists() or not source.startswith("-"):
            env.update(_environment_file(path))
    command = shlex.split(settings["ExecStart"][0].replace("${CONFIGURATION_DIRECTORY}",
                                                           "/etc/monitor"))
    assert command[:2] == ["/usr/bin/env", "monitor"] and command[-1] == "run"
    done = sandbox.run([sys.executable, "-m", "monitor", *command[2:], "--once"], env)
    assert done.returncode == 0, done.stderr
    return done.stdout + done.stderr
