"""Load and validate failover_config.py: one CONFIG dict, the same file on both hosts.

The file is the operator's Python (like the Perl tool's `sub CONFIG`), so it is executed in a
separate interpreter with a timeout and only its CONFIG dict comes back, as JSON. Validation is
a declarative schema: every key is checked, every problem is collected with its key, and they
are raised together (`ConfigError`). Timing rules are rejected with the inequality that fails,
never adjusted silently.
"""

from __future__ import annotations

import difflib
import ipaddress
import json
import os
import shlex
import shutil
import socket
import stat
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from failover.config_rules import TIMING_RULES, stop_budget, warnings_of
from failover.config_values import Bad as _Bad
from failover.config_values import LoadBalancerConfig, load_balancer, never_start, sync_files, sync_root
from failover.config_values import seconds as _number
from failover.filetrust import writable_by_others
from failover.machine import FenceMethod, OnAckTimeout, Policy, Role, Trigger
from failover.syncfiles import SyncEntry

LOAD_TIMEOUT = 10.0  # seconds the operator's file may take to execute
MIN_SECRET_BYTES = 16


@dataclass(frozen=True)
class Problem:
    key: str
    message: str


class ConfigError(Exception):
    """Every problem found in a config file, one line each: `file: KEY: problem`."""

    def __init__(self, source: str, problems: list[Problem]) -> None:
        self.source, self.problems = source, problems
        super().__init__("\n".join(self.lines()))

    def lines(self) -> list[str]:
        return [f"{self.source}: {p.key}: {p.message}" for p in self.problems]


@dataclass(frozen=True)
class Config:
    """A validated config. Paths are absolute (relative ones are taken from the file's directory)."""

    MASTER_HOST: str
    SLAVE_HOST: str
    MONITOR_PORT: int
    MONITOR_PORT_SLAVE: int
    SECRET_FILE: str
    SHUTDOWN_SCRIPTS: tuple[str, ...]
    STARTUP_SCRIPTS: tuple[str, ...]
    REMOTE_POP3_HOST: str
    REMOTE_POP3_PORT: int
    REMOTE_POP3_TIMEOUT: float
    SLAVE_POP3_HOST: str
    SLAVE_POP3_PORT: int
    POP3_PROBE_USER: str | None
    POP3_PROBE_PASS: str | None
    RLOGIN_USER: str
    RLOGIN_PASS: str | None
    RLOGIN_PORT: int
    RLOGIN_KEY_FILE: str | None
    RLOGIN_KNOWN_HOSTS: str | None
    REMOTE_FAILOVER: str | None
    REMOTE_CONFIG: str | None
    LOAD_BALANCER: LoadBalancerConfig | None
    FENCE_SCRIPTS: tuple[str, ...]
    FENCE_TIMEOUT: float
    WITNESS: str | None
    ISOLATION_TIMEOUT: float
    PROBE_INTERVAL: float
    PROBE_FAILURES: int
    HEARTBEAT_INTERVAL: float
    SHUTDOWN_ACK_TIMEOUT: float
    SCRIPT_TIMEOUT: float
    SERVICE_CHECK_TIMEOUT: float
    CONTROL_TIMEOUT: float
    ON_ACK_TIMEOUT: OnAckTimeout
    HEARTBEAT_TIMEOUT: float
    RESTART_SCRIPTS: tuple[str, ...]
    RESTART_LIMIT: int
    RESTART_WINDOW: float
    TRIGGER_ABNORMAL_SHUTDOWN: bool
    TRIGGER_COMMUNICATION_LOSS: bool
    TRIGGER_NORMAL_SHUTDOWN: bool
    TRIGGER_ABNORMAL_SHUTDOWN_SCRIPTS: tuple[str, ...]
    TRIGGER_COMMUNICATION_LOSS_SCRIPTS: tuple[str, ...]
    TRIGGER_NORMAL_SHUTDOWN_SCRIPTS: tuple[str, ...]
    BEFORE_FAILOVER_SCRIPTS: tuple[str, ...]
    BEFORE_FAILOVER_REQUIRED: bool
    AFTER_FAILOVER_SCRIPTS: tuple[str, ...]
    NOTIFY_SCRIPTS: tuple[str, ...]
    SYNC_FAILURE_SCRIPTS: tuple[str, ...]
    SYNC_FILES: tuple[SyncEntry, ...]
    SYNC_INTERVAL: float
    SYNC_TIMEOUT: float
    SYNC_FAILURE_LIMIT: int
    SYNC_START_SERVICES: bool
    SYNC_ROOT: dict[str, str]
    SERVICE_PIDFILE: str | None
    STATE_DIR: str
    LOG_DIR: str
    VERSION: str
    source: str = "failover_config.py"  # the file it came from (for messages)
    base_dir: str = "."  # where relative script paths are resolved and scripts run
    warnings: tuple[str, ...] = ()

    def stop_budget(self) -> float:
        """The longest a graceful stop of the service may take (config_rules.stop_budget)."""
        return stop_budget(self.SCRIPT_TIMEOUT, len(self.SHUTDOWN_SCRIPTS), self.SERVICE_CHECK_TIMEOUT)

    def fence_wait(self) -> float:
        """How long rhcd lets `confirm-fenced` wait for its decision: a fence step may be under
        way, and each step of the chain takes at most FENCE_TIMEOUT (one more for the one running)."""
        return self.FENCE_TIMEOUT * (len(self.fence_methods()) + 1) + self.CONTROL_TIMEOUT

    def fence_methods(self) -> tuple[FenceMethod, ...]:
        """The fence chain this config allows, in the order it is tried."""
        methods = []
        if self.RLOGIN_KEY_FILE or self.RLOGIN_PASS:
            methods.append(FenceMethod.SSH)
        if self.LOAD_BALANCER:
            methods.append(FenceMethod.LOAD_BALANCER)
        if self.FENCE_SCRIPTS:
            methods.append(FenceMethod.SCRIPTS)
        return tuple(methods)

    def triggers(self) -> frozenset[Trigger]:
        """The failover triggers enabled by their flags (none: manual mode)."""
        return frozenset(t for t in TRIGGER_FLAGS if getattr(self, f"TRIGGER_{t.name}"))

    def trigger_scripts(self, trigger: Trigger | None) -> tuple[str, ...]:
        if trigger is None or trigger is Trigger.SWITCHOVER:
            return ()
        scripts: tuple[str, ...] = getattr(self, f"TRIGGER_{trigger.name}_SCRIPTS")
        return scripts

    def sync_entries(self) -> tuple[SyncEntry, ...]:
        return self.SYNC_FILES

    def sync_root(self, role: Role) -> str:
        """Where SYNC_FILES paths live on `role`'s host ("/" unless both roles share a machine)."""
        return self.SYNC_ROOT[role.value]

    def policy(self) -> Policy:
        everything = frozenset(Trigger)
        prepare = (
            everything if self.BEFORE_FAILOVER_SCRIPTS else frozenset(t for t in everything if self.trigger_scripts(t))
        )
        return Policy(
            self.PROBE_FAILURES,
            self.SHUTDOWN_ACK_TIMEOUT,
            self.ON_ACK_TIMEOUT,
            self.fence_methods(),
            self.LOAD_BALANCER is not None,
            self.ISOLATION_TIMEOUT if self.WITNESS else None,
            triggers=self.triggers(),
            restart_limit=self.RESTART_LIMIT,
            restart_window=self.RESTART_WINDOW,
            heartbeat_timeout=self.HEARTBEAT_TIMEOUT,
            prepare=prepare,
            before_required=self.BEFORE_FAILOVER_REQUIRED,
            after_hooks=bool(self.AFTER_FAILOVER_SCRIPTS),
            sync_failure_hooks=bool(self.SYNC_FAILURE_SCRIPTS),
            notify=bool(self.NOTIFY_SCRIPTS),
        )

    def witness_address(self) -> tuple[str, int] | None:
        if not self.WITNESS:
            return None
        host, _, port = self.WITNESS.rpartition(":")
        return host, int(port)

    def host_of(self, role: Role) -> str:
        return self.MASTER_HOST if role is Role.MASTER else self.SLAVE_HOST

    def monitor_port_of(self, role: Role) -> int:
        return self.MONITOR_PORT if role is Role.MASTER else self.MONITOR_PORT_SLAVE

    def pop3_of(self, role: Role) -> tuple[str, int]:
        """Where this role's own POP3 service answers."""
        if role is Role.MASTER:
            return self.REMOTE_POP3_HOST, self.REMOTE_POP3_PORT
        return self.SLAVE_POP3_HOST, self.SLAVE_POP3_PORT

    def read_secret(self) -> bytes:
        return Path(self.SECRET_FILE).read_bytes().strip()


# --------------------------------------------------------------------------------------------
# The schema: one Key per config key. A parser returns the value or raises _Bad(problem).


REQUIRED = object()
Parser = Callable[[Any], Any]


@dataclass(frozen=True)
class Key:
    name: str
    parse: Parser
    default: Any = REQUIRED
    doc: str = ""
    same_as: str | None = None  # the default is the value of that other key


def _text(value: Any) -> str:
    if not isinstance(value, str):
        raise _Bad(f"expected a string, got {type(value).__name__} {value!r}")
    if not value.strip():
        raise _Bad("must not be empty")
    return value


def _optional_text(value: Any) -> str | None:
    return None if value is None else _text(value)


def _host(value: Any) -> str:
    text = _text(value)
    if any(c.isspace() for c in text) or "/" in text:
        raise _Bad(f"expected a host name or IP address, got {text!r}")
    return text


def _integer(lo: int, hi: int, what: str = "integer", article: str = "an") -> Parser:
    def parse(value: Any) -> int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise _Bad(f"expected {article} {what}, got {type(value).__name__} {value!r}")
        if not lo <= value <= hi:
            raise _Bad(f"{value} is out of range: expected {lo} <= {what} <= {hi}")
        return value

    return parse


_port = _integer(1, 65535, "port", "a")


def _scripts(value: Any) -> tuple[str, ...]:
    """A list of command lines, or the Perl tool's comma-separated string."""
    if isinstance(value, str):
        items = [part.strip() for part in value.split(",")]
        items = [part for part in items if part]
    elif isinstance(value, list | tuple):
        items = []
        for i, item in enumerate(value):
            if not isinstance(item, str) or not item.strip():
                raise _Bad(f"item {i} must be a non-empty command string, got {item!r}")
            items.append(item.strip())
    else:
        raise _Bad(f"expected a list of commands or a comma-separated string, got {type(value).__name__}")
    if not items:
        raise _Bad("expected at least one script")
    for item in items:
        try:
            shlex.split(item)
        except ValueError as e:
            raise _Bad(f"cannot parse command {item!r}: {e}") from None
    return tuple(items)


def _optional_scripts(value: Any) -> tuple[str, ...]:
    return () if value in (None, "", [], ()) else _scripts(value)


def _flag(value: Any) -> bool:
    if not isinstance(value, bool):
        raise _Bad(f"expected True or False, got {type(value).__name__} {value!r}")
    return value


TRIGGER_FLAGS = (Trigger.ABNORMAL_SHUTDOWN, Trigger.COMMUNICATION_LOSS, Trigger.NORMAL_SHUTDOWN)


def _witness(value: Any) -> str | None:
    if value is None:
        return None
    text = _text(value)
    host, _, port = text.rpartition(":")
    if not host or not port.isdigit() or not 1 <= int(port) <= 65535:
        raise _Bad(f"expected 'host:port' of something both hosts should reach (the load balancer), got {text!r}")
    return text


def _on_ack_timeout(value: Any) -> OnAckTimeout:
    try:
        return OnAckTimeout(value)
    except ValueError:
        raise _Bad(f"expected 'fence' (recommended) or 'takeover', got {value!r}") from None


KEYS: tuple[Key, ...] = (
    Key("VERSION", _text, "", "free text, kept from the Perl tool"),
    Key("MASTER_HOST", _host, doc="the master's host name or address"),
    Key("SLAVE_HOST", _host, doc="the slave's host name or address"),
    Key("MONITOR_PORT", _port, doc="the master's control port (socketserver)"),
    Key("MONITOR_PORT_SLAVE", _port, doc="the slave's control port (socketserver2)"),
    Key("SECRET_FILE", _text, doc="shared secret for the control protocol, mode 0600"),
    Key("SHUTDOWN_SCRIPTS", _scripts, doc="run on the master to stop its service"),
    Key("STARTUP_SCRIPTS", _scripts, doc="run on the slave to start its service"),
    Key("REMOTE_POP3_HOST", _host, None, "where the master's POP3 service answers", same_as="MASTER_HOST"),
    Key("REMOTE_POP3_PORT", _port, 110),
    Key("REMOTE_POP3_TIMEOUT", _number(0.01, 3600), 10.0, "timeout of one POP3 probe"),
    Key("SLAVE_POP3_HOST", _host, None, "where the slave's POP3 service answers", same_as="SLAVE_HOST"),
    Key("SLAVE_POP3_PORT", _port, None, same_as="REMOTE_POP3_PORT"),
    Key("POP3_PROBE_USER", _optional_text, None, "log in during probes (USER/PASS/STAT)"),
    Key("POP3_PROBE_PASS", _optional_text, None),
    Key("RLOGIN_USER", _text, "root", "SSH user on the peer (rcmd)"),
    Key("RLOGIN_PASS", _optional_text, None, "SSH password: accepted, a key is preferred"),
    Key("RLOGIN_PORT", _port, 22),
    Key("RLOGIN_KEY_FILE", _optional_text, None, "private key for SSH to the peer (the fence by ssh)"),
    Key("RLOGIN_KNOWN_HOSTS", _optional_text, None, "known_hosts file that pins the peer's host key"),
    Key("REMOTE_FAILOVER", _optional_text, None, "the failover command on the peer (default: the same as here)"),
    Key("REMOTE_CONFIG", _optional_text, None, "this config's path on the peer (default: the same path)"),
    Key("LOAD_BALANCER", load_balancer, None, "HAProxy runtime API, for the fence and the takeover"),
    Key("FENCE_SCRIPTS", _optional_scripts, (), "run on the slave to fence the master; exit 0 = fenced"),
    Key("FENCE_TIMEOUT", _number(0.1, 3600), 90.0, "each step of the fence chain gives up after this"),
    Key("WITNESS", _witness, None, "host:port both hosts should reach (typically the load balancer)"),
    Key("ISOLATION_TIMEOUT", _number(0.1, 3600), 30.0, "with a WITNESS: an isolated master stops after this"),
    Key("PROBE_INTERVAL", _number(0.01, 3600), 5.0, "seconds between probes"),
    Key("PROBE_FAILURES", _integer(1, 1000), 3, "consecutive failed probes that start a failover"),
    Key("HEARTBEAT_INTERVAL", _number(0.01, 3600), 2.0, "seconds between the master's heartbeats"),
    Key("SHUTDOWN_ACK_TIMEOUT", _number(0.1, 86400), 60.0, "how long the slave waits for the ACK"),
    Key("SCRIPT_TIMEOUT", _number(0.1, 86400), 20.0, "each script is killed after this"),
    Key("SERVICE_CHECK_TIMEOUT", _number(0.1, 3600), 10.0, "how long a service may take to come up or down"),
    Key("CONTROL_TIMEOUT", _number(0.05, 600), 5.0, "connect/read timeout of the control channel"),
    Key("ON_ACK_TIMEOUT", _on_ack_timeout, OnAckTimeout.FENCE, "'fence' (wait for a fence) or 'takeover'"),
    Key("SERVICE_PIDFILE", _optional_text, None, "pid file of the service, watched by lhcd"),
    Key("HEARTBEAT_TIMEOUT", _number(0.05, 3600), 15.0, "no heartbeat for this long: heartbeats lost"),
    Key("RESTART_SCRIPTS", _optional_scripts, None, "restart the master's failed service", same_as="STARTUP_SCRIPTS"),
    Key("RESTART_LIMIT", _integer(0, 100), 1, "local restarts within RESTART_WINDOW before 'abnormal shutdown'"),
    Key("RESTART_WINDOW", _number(1, 86400), 600.0, "the window RESTART_LIMIT counts in (seconds)"),
    Key("TRIGGER_ABNORMAL_SHUTDOWN", _flag, True, "fail over when the master's service fails past RESTART_LIMIT"),
    Key("TRIGGER_COMMUNICATION_LOSS", _flag, False, "fail over when heartbeats and probes are lost"),
    Key("TRIGGER_NORMAL_SHUTDOWN", _flag, False, "fail over when the master's service or agents stop cleanly"),
    Key("TRIGGER_ABNORMAL_SHUTDOWN_SCRIPTS", _optional_scripts, (), "run on the slave before that takeover"),
    Key("TRIGGER_COMMUNICATION_LOSS_SCRIPTS", _optional_scripts, (), "run on the slave before that takeover"),
    Key("TRIGGER_NORMAL_SHUTDOWN_SCRIPTS", _optional_scripts, (), "run on the slave before that takeover"),
    Key("BEFORE_FAILOVER_SCRIPTS", _optional_scripts, (), "run before anything moves (slave, then master)"),
    Key("BEFORE_FAILOVER_REQUIRED", _flag, True, "a failing BEFORE_FAILOVER script stops an automatic failover"),
    Key("AFTER_FAILOVER_SCRIPTS", _optional_scripts, (), "run once the service answers on its new host"),
    Key("NOTIFY_SCRIPTS", _optional_scripts, (), "run on every transition, with FAILOVER_* variables"),
    Key("SYNC_FAILURE_SCRIPTS", _optional_scripts, (), "run when the hosts cannot synchronise"),
    Key("SYNC_FILES", sync_files, (), "files that must match on both hosts (sync or verify)"),
    Key("SYNC_INTERVAL", _number(0.1, 86400), 10.0, "the ACTIVE host looks for changed synced files this often"),
    Key("SYNC_TIMEOUT", _number(1, 86400), 600.0, "one remote step of a sync (inventory, commit) gives up after"),
    Key("SYNC_FAILURE_LIMIT", _integer(1, 1000), 5, "automatic sync pauses after this many failures in a row"),
    Key("SYNC_START_SERVICES", never_start, False, "a sync never starts a service (JSCAPE's option, refused)"),
    Key("SYNC_ROOT", sync_root, {"master": "/", "slave": "/"}, "where SYNC_FILES live on each host"),
    Key("STATE_DIR", _text, "/var/lib/failover", "state files and journals"),
    Key("LOG_DIR", _text, "/var/log/failover", "daemon logs"),
)
KEY_NAMES = tuple(k.name for k in KEYS)


# --------------------------------------------------------------------------------------------
# Loading


_RUNNER = r"""
import json, runpy, sys, traceback
path = sys.argv[1]
def dump(obj):
    def default(o):
        if isinstance(o, (set, frozenset)):
            return {"__unsupported__": type(o).__name__, "repr": repr(o)}
        return {"__unsupported__": type(o).__name__, "repr": repr(o)[:200]}
    return json.dumps(obj, default=default)
try:
    namespace = runpy.run_path(path, run_name="failover_config")
except SystemExit as e:
    print(json.dumps({"error": f"the file called exit({e.code!r})", "line": None})); sys.exit(0)
except BaseException as e:
    line = None
    for frame in traceback.extract_tb(e.__traceback__):
        if frame.filename == path:
            line = frame.lineno
    print(json.dumps({"error": f"{type(e).__name__}: {e}", "line": line})); sys.exit(0)
if "CONFIG" not in namespace:
    print(json.dumps({"error": "the file must define CONFIG = {...}", "line": None, "key": "CONFIG"}))
elif not isinstance(namespace["CONFIG"], dict):
    print(json.dumps({"error": f"CONFIG must be a dict, got {type(namespace['CONFIG']).__name__}",
                      "line": None, "key": "CONFIG"}))
else:
    print(dump({"config": namespace["CONFIG"]}))
"""


def read_raw(path: Path) -> dict[str, Any]:
    """Execute the config file in a fresh interpreter and return its CONFIG dict."""
    name = path.name
    try:
        source = path.read_text()
    except OSError as e:
        raise ConfigError(name, [Problem("(file)", f"cannot read {path}: {e.strerror}")]) from None
    untrusted = writable_by_others(path)  # it is executed as root: its writers own the failover
    if untrusted:
        raise ConfigError(name, [Problem("(file)", f"not executed: {untrusted}")])
    try:
        compile(source, str(path), "exec")
    except SyntaxError as e:
        raise ConfigError(name, [Problem(f"line {e.lineno}", f"syntax error: {e.msg}")]) from None
    try:
        done = subprocess.run(
            [sys.executable, "-I", "-c", _RUNNER, str(path.resolve())],
            capture_output=True,
            text=True,
            timeout=LOAD_TIMEOUT,
            cwd=path.resolve().parent,
        )
    except subprocess.TimeoutExpired:
        raise ConfigError(name, [Problem("(file)", f"executing the file took over {LOAD_TIMEOUT:g} s")]) from None
    try:
        result = json.loads(done.stdout.strip().splitlines()[-1])
    except (IndexError, json.JSONDecodeError):
        raise ConfigError(name, [Problem("(file)", f"could not be executed: {done.stderr.strip()[-300:]}")]) from None
    if "error" in result:
        where = result.get("key") or (f"line {result['line']}" if result.get("line") else "(file)")
        raise ConfigError(name, [Problem(where, result["error"])])
    config: dict[str, Any] = result["config"]
    return config


def load(path: str | os.PathLike[str], check_files: bool = True) -> Config:
    """Read, execute and validate a config file. Raises ConfigError with every problem."""
    p = Path(path)
    return validate(read_raw(p), source=p.name, base_dir=str(p.resolve().parent), check_files=check_files)


# --------------------------------------------------------------------------------------------
# Validation


def validate(
    raw: dict[str, Any], source: str = "failover_config.py", base_dir: str = ".", check_files: bool = True
) -> Config:
    problems: list[Problem] = []
    for name in raw:
        if name not in KEY_NAMES:
            close = difflib.get_close_matches(str(name), KEY_NAMES, n=1, cutoff=0.6)
            hint = f"; did you mean {close[0]}?" if close else f"; known keys: {', '.join(KEY_NAMES)}"
            problems.append(Problem(str(name), f"unknown key{hint}"))
    values: dict[str, Any] = {}
    for key in KEYS:
        if key.name in raw:
            value = raw[key.name]
            if isinstance(value, dict) and "__unsupported__" in value:
                problems.append(
                    Problem(key.name, f"unsupported value of type {value['__unsupported__']}: {value['repr']}")
                )
                continue
            try:
                values[key.name] = key.parse(value)
            except _Bad as e:
                problems.append(Problem(key.name, str(e)))
        elif key.default is REQUIRED:
            problems.append(Problem(key.name, f"missing: {key.doc}"))
    for key in KEYS:  # defaults, after parsing, so "the value of another key" is the parsed one
        if key.name in raw or key.default is REQUIRED:
            continue
        if key.same_as is None:
            values[key.name] = key.default
        elif key.same_as in values:
            values[key.name] = values[key.same_as]
        # else: that key is missing or broken, which is already reported
    for name in ("SECRET_FILE", "STATE_DIR", "LOG_DIR", "SERVICE_PIDFILE", "RLOGIN_KEY_FILE", "RLOGIN_KNOWN_HOSTS"):
        if values.get(name):
            values[name] = os.path.normpath(os.path.join(base_dir, values[name]))  # absolute stays absolute
    problems += _relations(values)
    if check_files:
        problems += _files(values, base_dir)
    if problems:
        raise ConfigError(source, problems)
    return Config(**values, source=source, base_dir=base_dir, warnings=tuple(warnings_of(values)))


def _relations(v: dict[str, Any]) -> list[Problem]:
    problems: list[Problem] = []
    if (v.get("POP3_PROBE_USER") is None) != (v.get("POP3_PROBE_PASS") is None):
        problems.append(Problem("POP3_PROBE_PASS", "POP3_PROBE_USER and POP3_PROBE_PASS go together: set both or none"))
    if (v.get("RLOGIN_KEY_FILE") or v.get("RLOGIN_PASS")) and not v.get("RLOGIN_KNOWN_HOSTS"):
        problems.append(
            Problem(
                "RLOGIN_KNOWN_HOSTS",
                "required with RLOGIN_KEY_FILE or RLOGIN_PASS: the peer's SSH "
                "host key must be pinned (a known_hosts file)",
            )
        )
    problems += _port_clashes(v)
    for key, needs, rule, why in TIMING_RULES:
        if all(k in v for k in needs):
            holds, inequality = rule(v)
            if not holds:
                problems.append(Problem(key, f"timing rule broken: expected {inequality}: {why}"))
    return problems


def _same_host(a: str, b: str) -> bool:
    def norm(h: str) -> str:
        return "127.0.0.1" if h.lower() in ("localhost", "::1", "127.0.0.1") else h.lower()

    return norm(a) == norm(b)


def _port_clashes(v: dict[str, Any]) -> list[Problem]:
    """Two listeners of the pair on the same host and port cannot both run."""
    listeners = [
        ("MONITOR_PORT", "MASTER_HOST"),
        ("MONITOR_PORT_SLAVE", "SLAVE_HOST"),
        ("REMOTE_POP3_PORT", "REMOTE_POP3_HOST"),
        ("SLAVE_POP3_PORT", "SLAVE_POP3_HOST"),
    ]
    seen: list[tuple[str, str, int]] = []
    problems = []
    for port_key, host_key in listeners:
        if port_key not in v or host_key not in v:
            continue
        host, port = v[host_key], v[port_key]
        for other_key, other_host, other_port in seen:
            if other_port == port and _same_host(other_host, host):
                problems.append(
                    Problem(
                        port_key,
                        f"port clash: {port_key} and {other_key} both use {host}:{port}; "
                        "each listener needs its own port",
                    )
                )
        seen.append((port_key, host, port))
    return problems


def _files(v: dict[str, Any], base_dir: str) -> list[Problem]:
    problems = []
    for key in [k.name for k in KEYS if k.name.endswith("_SCRIPTS")]:
        if key == "RESTART_SCRIPTS" and v.get(key) == v.get("STARTUP_SCRIPTS"):
            continue  # the default: already checked
        for command in v.get(key, ()):
            problem = script_problem(command, base_dir)
            if problem:
                problems.append(Problem(key, problem))
    for key in ("RLOGIN_KEY_FILE", "RLOGIN_KNOWN_HOSTS"):
        if v.get(key) and not os.path.isfile(v[key]):
            problems.append(Problem(key, f"{v[key]}: no such file"))
    secret = v.get("SECRET_FILE")
    if secret:
        problem = secret_problem(secret)
        if problem:
            problems.append(Problem("SECRET_FILE", problem))
    return problems


def script_problem(command: str, base_dir: str) -> str | None:
    """Whether the program a command line starts exists and is executable."""
    program = shlex.split(command)[0]
    if "/" in program:
        path = Path(base_dir, program) if not os.path.isabs(program) else Path(program)
        if not path.is_file():
            return f"{program}: no such file (looked for {path})"
        if not os.access(path, os.X_OK):
            return f"{program}: not executable (chmod +x {path})"
        return None
    if shutil.which(program) is None:
        return f"{program}: not found on PATH"
    return None


def secret_problem(path: str) -> str | None:
    try:
        st = os.stat(path)
    except FileNotFoundError:
        return f"{path}: no such file; create it on both hosts with `failover keygen {path}`"
    except OSError as e:
        return f"{path}: {e.strerror}"
    if not stat.S_ISREG(st.st_mode):
        return f"{path}: not a regular file"
    if st.st_mode & 0o077:
        return f"{path}: mode {stat.S_IMODE(st.st_mode):04o} lets others read it; expected 0600 (chmod 600 {path})"
    untrusted = writable_by_others(path)
    if untrusted:
        return f"{path}: {untrusted}"
    try:
        size = len(Path(path).read_bytes().strip())
    except OSError as e:
        return f"{path}: cannot read: {e.strerror}"
    if size < MIN_SECRET_BYTES:
        return f"{path}: {size} bytes; expected at least {MIN_SECRET_BYTES} random bytes (failover keygen)"
    return None


# --------------------------------------------------------------------------------------------
# Which host am I?


def _local_addresses() -> set[str]:
    import psutil  # local import: config validation itself does not need it

    addresses = {"127.0.0.1", "::1"}
    for entries in psutil.net_if_addrs().values():
        for entry in entries:
            if entry.family in (socket.AF_INET, socket.AF_INET6):
                addresses.add(entry.address.split("%")[0])
    return addresses


def _is_local(host: str, addresses: set[str]) -> bool:
    if host.lower() in {socket.gethostname().lower(), socket.getfqdn().lower(), "localhost"}:
        return True
    try:
        ipaddress.ip_address(host)
        candidates = {host}
    except ValueError:
        try:
            candidates = {str(info[4][0]) for info in socket.getaddrinfo(host, None)}
        except OSError:
            return False
    return bool(candidates & addresses)


def find_role(config: Config, explicit: Role | None = None) -> Role:
    """This host's role: the one whose host name or address is local, or the explicit one.
    An explicit role is refused on a host that is plainly the other one."""
    addresses = _local_addresses()
    master, slave = _is_local(config.MASTER_HOST, addresses), _is_local(config.SLAVE_HOST, addresses)
    found = (Role.MASTER if master else Role.SLAVE) if master != slave else None
    if explicit is not None:
        if found is not None and found is not explicit:
            key = "MASTER_HOST" if found is Role.MASTER else "SLAVE_HOST"
            raise ConfigError(
                config.source,
                [
                    Problem(
                        key,
                        (f"this host is {key} ({config.host_of(found)}), the {found}: it cannot run as the {explicit}"),
                    )
                ],
            )
        return explicit
    if found is not None:
        return found
    hosts = f"MASTER_HOST ({config.MASTER_HOST}) and SLAVE_HOST ({config.SLAVE_HOST})"
    why = f"both {hosts} are this host (a pair on one machine)" if master else f"neither {hosts} is this host"
    raise ConfigError(config.source, [Problem("MASTER_HOST", f"{why}: give the role explicitly (--role master|slave)")])
