"""The rules between config keys: keys that go together, listeners that would clash, timing
inequalities, each reported with the numbers that break it, and the warnings `failover check`
prints. Values are the parsed keys, by name."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from failover.config.problems import Problem
from failover.machine.model import OnAckTimeout

# Timing rules: (the key to blame, the keys it needs, the inequality, why). Each is checked only
# when the keys it needs are valid, and reported with the numbers that break it.
TimingRule = tuple[str, tuple[str, ...], Callable[[dict[str, Any]], tuple[bool, str]], str]


def stop_budget(script_timeout: float, shutdown_scripts: int, check_timeout: float) -> float:
    """The longest a graceful stop may take: each shutdown script to its timeout, then the check
    that the service is down. The one formula the ACK timeout, the fence and fence-self share."""
    return script_timeout * shutdown_scripts + check_timeout


def _stop(v: dict[str, Any]) -> float:
    return stop_budget(v["SCRIPT_TIMEOUT"], len(v["SHUTDOWN_SCRIPTS"]), v["SERVICE_CHECK_TIMEOUT"])


def _ack_rule(v: dict[str, Any]) -> tuple[bool, str]:
    n = len(v["SHUTDOWN_SCRIPTS"])
    stop = _stop(v)
    text = (
        f"SHUTDOWN_ACK_TIMEOUT ({v['SHUTDOWN_ACK_TIMEOUT']:g}) > SCRIPT_TIMEOUT ({v['SCRIPT_TIMEOUT']:g}) x {n} "
        f"SHUTDOWN_SCRIPTS + SERVICE_CHECK_TIMEOUT ({v['SERVICE_CHECK_TIMEOUT']:g}) = {stop:g}"
    )
    return v["SHUTDOWN_ACK_TIMEOUT"] > stop, text


def _check_rule(v: dict[str, Any]) -> tuple[bool, str]:
    text = (
        f"SERVICE_CHECK_TIMEOUT ({v['SERVICE_CHECK_TIMEOUT']:g}) >= REMOTE_POP3_TIMEOUT ({v['REMOTE_POP3_TIMEOUT']:g})"
    )
    return v["SERVICE_CHECK_TIMEOUT"] >= v["REMOTE_POP3_TIMEOUT"], text


def _control_rule(v: dict[str, Any]) -> tuple[bool, str]:
    text = f"CONTROL_TIMEOUT ({v['CONTROL_TIMEOUT']:g}) < SHUTDOWN_ACK_TIMEOUT ({v['SHUTDOWN_ACK_TIMEOUT']:g})"
    return v["CONTROL_TIMEOUT"] < v["SHUTDOWN_ACK_TIMEOUT"], text


def _fence_rule(v: dict[str, Any]) -> tuple[bool, str]:
    if not (v.get("RLOGIN_KEY_FILE") or v.get("RLOGIN_PASS")):
        return True, ""  # no fence by ssh
    stop = _stop(v)
    text = (
        f"FENCE_TIMEOUT ({v['FENCE_TIMEOUT']:g}) > 2 x (SCRIPT_TIMEOUT x {len(v['SHUTDOWN_SCRIPTS'])} "
        f"SHUTDOWN_SCRIPTS + SERVICE_CHECK_TIMEOUT) = {2 * stop:g}"
    )
    return v["FENCE_TIMEOUT"] > 2 * stop, text


def _isolation_rule(v: dict[str, Any]) -> tuple[bool, str]:
    if not v.get("WITNESS"):
        return True, ""
    n = len(v["SHUTDOWN_SCRIPTS"])
    slave = v["PROBE_INTERVAL"] * v["PROBE_FAILURES"] + v["SHUTDOWN_ACK_TIMEOUT"]
    master = v["ISOLATION_TIMEOUT"] + _stop(v)
    text = (
        f"PROBE_INTERVAL x PROBE_FAILURES + SHUTDOWN_ACK_TIMEOUT = {slave:g} (the slave's earliest takeover "
        f"without an ACK) > ISOLATION_TIMEOUT + SCRIPT_TIMEOUT x {n} + SERVICE_CHECK_TIMEOUT = {master:g} "
        "(an isolated master has stopped its service)"
    )
    return slave > master, text


LOST_IN_A_ROW = 5  # datagrams: the fewest lost in a row that a timeout must ride out


def _witness_rule(v: dict[str, Any]) -> tuple[bool, str]:
    if not v.get("WITNESS"):
        return True, ""
    cycle = v["HEARTBEAT_INTERVAL"] + 2 * v["CONTROL_TIMEOUT"]
    text = (
        f"ISOLATION_TIMEOUT ({v['ISOLATION_TIMEOUT']:g}) > HEARTBEAT_INTERVAL ({v['HEARTBEAT_INTERVAL']:g}) + 2 x "
        f"CONTROL_TIMEOUT ({v['CONTROL_TIMEOUT']:g}) = {cycle:g}"
    )
    return v["ISOLATION_TIMEOUT"] > cycle, text


def _rides_out_lost_datagrams(key: str, v: dict[str, Any]) -> tuple[bool, str]:
    limit = LOST_IN_A_ROW * v["BEAT_INTERVAL"]
    text = f"{key} ({v[key]:g}) >= {LOST_IN_A_ROW} x BEAT_INTERVAL = {limit:g}"
    return v[key] >= limit - 1e-9, text


def _heartbeat_rule(v: dict[str, Any]) -> tuple[bool, str]:
    return _rides_out_lost_datagrams("HEARTBEAT_TIMEOUT", v)


def _lease_rule(v: dict[str, Any]) -> tuple[bool, str]:
    if not (v.get("LEASE") and v.get("LOAD_BALANCER")):
        return True, ""
    return _rides_out_lost_datagrams("LEASE_TIME", v)


TIMING_RULES: tuple[TimingRule, ...] = (
    (
        "HEARTBEAT_TIMEOUT",
        ("HEARTBEAT_TIMEOUT", "BEAT_INTERVAL"),
        _heartbeat_rule,
        "contact is any datagram of the stream: a few lost in a row on a bad link must not count as lost",
    ),
    (
        "LEASE_TIME",
        ("LEASE", "LOAD_BALANCER", "LEASE_TIME", "BEAT_INTERVAL"),
        _lease_rule,
        "a few lost datagrams on a bad link must not end a healthy master's lease",
    ),
    (
        "SHUTDOWN_ACK_TIMEOUT",
        ("SHUTDOWN_ACK_TIMEOUT", "SCRIPT_TIMEOUT", "SERVICE_CHECK_TIMEOUT", "SHUTDOWN_SCRIPTS"),
        _ack_rule,
        "otherwise a master that is still stopping normally is taken for one that does not answer",
    ),
    (
        "SERVICE_CHECK_TIMEOUT",
        ("SERVICE_CHECK_TIMEOUT", "REMOTE_POP3_TIMEOUT"),
        _check_rule,
        "a service check must leave time for at least one probe",
    ),
    (
        "FENCE_TIMEOUT",
        ("FENCE_TIMEOUT", "SCRIPT_TIMEOUT", "SERVICE_CHECK_TIMEOUT", "SHUTDOWN_SCRIPTS"),
        _fence_rule,
        "the fence by ssh may wait that long for a hung lhcd, then stop the service itself",
    ),
    (
        "ISOLATION_TIMEOUT",
        (
            "WITNESS",
            "ISOLATION_TIMEOUT",
            "PROBE_INTERVAL",
            "PROBE_FAILURES",
            "SHUTDOWN_ACK_TIMEOUT",
            "SCRIPT_TIMEOUT",
            "SERVICE_CHECK_TIMEOUT",
            "SHUTDOWN_SCRIPTS",
        ),
        _isolation_rule,
        "otherwise an isolated master may still serve when the slave starts",
    ),
    (
        "ISOLATION_TIMEOUT",
        ("WITNESS", "ISOLATION_TIMEOUT", "HEARTBEAT_INTERVAL", "CONTROL_TIMEOUT"),
        _witness_rule,
        "lhcd asks the witness once per heartbeat, after the heartbeat's own attempt: a master that cannot "
        "reach the slave must hear the witness at least once per ISOLATION_TIMEOUT",
    ),
    (
        "CONTROL_TIMEOUT",
        ("CONTROL_TIMEOUT", "SHUTDOWN_ACK_TIMEOUT"),
        _control_rule,
        "the request must be delivered before the wait for its ACK ends",
    ),
)


def relations(v: dict[str, Any]) -> list[Problem]:
    """Every rule between keys that the valid values `v` break."""
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
    if v.get("LEASE") and v.get("LOAD_BALANCER") and not (v.get("SERVICE_PIDFILE") or v.get("HARD_STOP_SCRIPTS")):
        problems.append(
            Problem(
                "HARD_STOP_SCRIPTS",
                "with a LOAD_BALANCER the master serves under a lease and must be able to kill its service at "
                "once when it ends: set SERVICE_PIDFILE (its process tree is killed) or HARD_STOP_SCRIPTS, "
                "or LEASE = False (then the slave never starts without an ACK or a fence)",
            )
        )
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


def warnings_of(v: dict[str, Any]) -> list[str]:
    warnings = []
    if v.get("ON_ACK_TIMEOUT") is OnAckTimeout.TAKEOVER:
        warnings.append(
            "ON_ACK_TIMEOUT: 'takeover' starts the slave without a confirmed stop of the master: a "
            "master that is alive but unreachable then serves too (the service runs twice)"
        )
    flags = ("TRIGGER_ABNORMAL_SHUTDOWN", "TRIGGER_COMMUNICATION_LOSS", "TRIGGER_NORMAL_SHUTDOWN")
    if all(name in v for name in flags) and not any(v[name] for name in flags):
        warnings.append(
            "manual mode: no TRIGGER_* is enabled, so the slave watches and reports but never takes over "
            "on its own; only `failover switchover` moves the service"
        )
    if v.get("TRIGGER_COMMUNICATION_LOSS") and not (v.get("LEASE") and v.get("LOAD_BALANCER")):
        extra = "" if v.get("WITNESS") else "; set WITNESS so that an isolated slave does not take over"
        warnings.append(
            "TRIGGER_COMMUNICATION_LOSS: cannot tell a slow or cut network from a dead master, and without a "
            f"lease (a LOAD_BALANCER) a partition makes the slave take over (after fencing the master){extra}"
        )
    if v.get("LEASE") and v.get("LOAD_BALANCER") and all(k in v for k in ("SCRIPT_TIMEOUT", "LEASE_TIME")):
        stop = _stop(v)
        if stop > v["LEASE_TIME"]:
            warnings.append(
                f"LEASE_TIME: a graceful stop may take {stop:g} s (SCRIPT_TIMEOUT x SHUTDOWN_SCRIPTS + "
                f"SERVICE_CHECK_TIMEOUT), longer than the lease ({v['LEASE_TIME']:g} s): when the slave takes "
                "over on a trigger, the master's lease ends first and its guard kills what is still running "
                "(a switchover grants the lease until the ACK: its graceful stop runs to the end)"
            )
    if all(k in v for k in ("HEARTBEAT_TIMEOUT", "HEARTBEAT_INTERVAL")) and (
        v["HEARTBEAT_TIMEOUT"] <= v["HEARTBEAT_INTERVAL"]
    ):
        warnings.append(
            f"HEARTBEAT_TIMEOUT ({v['HEARTBEAT_TIMEOUT']:g}) <= HEARTBEAT_INTERVAL ({v['HEARTBEAT_INTERVAL']:g}): "
            "contact rests on the UDP heartbeat stream alone; if a firewall drops it, the TCP heartbeats "
            "cannot keep contact (allow UDP on MONITOR_PORT and MONITOR_PORT_SLAVE between the hosts)"
        )
    if v.get("RLOGIN_PASS"):
        warnings.append("RLOGIN_PASS: an SSH password is accepted, but a key is safer (RLOGIN_PASS = None)")
    return warnings
