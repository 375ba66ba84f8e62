"""The schema: one Key per config key, with its parser, its default and one line of doc.

A parser returns the value or raises values.Bad with the problem; validation names the key. The
scalar parsers (text, host, port, scripts, flags) are here, the structured ones in values.py.
"""

from __future__ import annotations

import shlex
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from failover.config.values import Bad as _Bad
from failover.config.values import load_balancer, never_start, sync_files, sync_root
from failover.config.values import seconds as _number
from failover.machine import OnAckTimeout

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


def _optional_flag(value: Any) -> bool | None:
    return None if value is None else _flag(value)


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
    Key("HEARTBEAT_INTERVAL", _number(0.01, 3600), 0.5, "seconds between the master's heartbeats (TCP)"),
    Key("BEAT_INTERVAL", _number(0.005, 10), 0.05, "seconds between datagrams of the UDP heartbeat stream, each way"),
    Key("LEASE", _flag, True, "with a LOAD_BALANCER: the master serves only under a lease the slave may outwait"),
    Key("LEASE_TIME", _number(0.05, 600), 1.5, "the master kills its service this long after its lease's last renewal"),
    Key("HARD_STOP_TIMEOUT", _number(0.01, 600), 0.5, "a hard stop (SIGKILL) of the service must be verified within"),
    Key("HARD_STOP_SCRIPTS", _optional_scripts, (), "kill the service now (default: SIGKILL of its tree)"),
    Key("SHUTDOWN_ACK_TIMEOUT", _number(0.1, 86400), 60.0, "how long the slave waits for the ACK"),
    Key("SCRIPT_TIMEOUT", _number(0.1, 86400), 20.0, "each script is killed after this"),
    Key("SERVICE_CHECK_TIMEOUT", _number(0.1, 3600), 10.0, "how long a service may take to come up or down"),
    Key("CONTROL_TIMEOUT", _number(0.05, 600), 5.0, "connect/read timeout of the control channel"),
    Key("ON_ACK_TIMEOUT", _on_ack_timeout, OnAckTimeout.FENCE, "'fence' (wait for a fence) or 'takeover'"),
    Key("SERVICE_PIDFILE", _optional_text, None, "pid file of the service, watched by lhcd"),
    Key("HEARTBEAT_TIMEOUT", _number(0.05, 3600), 1.0, "no two-way contact (datagram, heartbeat) this long: lost"),
    Key("RESTART_SCRIPTS", _optional_scripts, None, "restart the master's failed service", same_as="STARTUP_SCRIPTS"),
    Key("RESTART_LIMIT", _integer(0, 100), 1, "local restarts within RESTART_WINDOW before 'abnormal shutdown'"),
    Key("RESTART_WINDOW", _number(1, 86400), 600.0, "the window RESTART_LIMIT counts in (seconds)"),
    Key("TRIGGER_ABNORMAL_SHUTDOWN", _flag, True, "fail over when the master's service fails past RESTART_LIMIT"),
    Key(
        "TRIGGER_COMMUNICATION_LOSS",
        _optional_flag,
        None,
        "fail over when contact and probes are lost (None: on exactly when the pair has a lease)",
    ),
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
