"""failover/config.py: every problem is found, named by its key, and reported together."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from failover.config import ConfigError, find_role, load
from failover.config import loading as cfg
from failover.machine import OnAckTimeout, Role, Trigger

GOOD = """\
# failover config
CONFIG = {
    "MASTER_HOST": "10.0.0.1",
    "SLAVE_HOST": "10.0.0.2",
    "MONITOR_PORT": 7890,
    "MONITOR_PORT_SLAVE": 7891,
    "SECRET_FILE": "secret",
    "SHUTDOWN_SCRIPTS": "./scripts/stop.sh >/dev/null 2>&1, ./scripts/stop2.sh",
    "STARTUP_SCRIPTS": ["./scripts/start.sh"],
    "REMOTE_POP3_TIMEOUT": 5,
}
"""


@pytest.fixture
def confdir(tmp_path: Path) -> Path:
    (tmp_path / "scripts").mkdir()
    for name in ("stop.sh", "stop2.sh", "start.sh"):
        script = tmp_path / "scripts" / name
        script.write_text("#!/bin/sh\nexit 0\n")
        script.chmod(0o755)
    secret = tmp_path / "secret"
    secret.write_text("0123456789abcdef0123456789abcdef\n")
    secret.chmod(0o600)
    (tmp_path / "failover_config.py").write_text(GOOD)
    return tmp_path


def write(confdir: Path, text: str) -> Path:
    path = confdir / "failover_config.py"
    path.write_text(text)
    return path


def edit(confdir: Path, **changes: object) -> Path:
    """GOOD with some keys replaced (None removes a key)."""
    lines = [line for line in GOOD.splitlines() if not any(f'"{k}"' in line for k in changes)]
    extra = [f"    {k!r}: {v!r}," for k, v in changes.items() if v is not None]
    return write(confdir, "\n".join(lines[:-1] + extra + ["}"]) + "\n")


def problems(path: Path) -> list[str]:
    with pytest.raises(ConfigError) as info:
        load(path)
    return info.value.lines()


def test_good_config_loads_with_defaults(confdir: Path) -> None:
    c = load(confdir / "failover_config.py")
    assert c.SHUTDOWN_SCRIPTS == ("./scripts/stop.sh >/dev/null 2>&1", "./scripts/stop2.sh")  # the Perl string
    assert c.STARTUP_SCRIPTS == ("./scripts/start.sh",)  # a list
    assert c.REMOTE_POP3_HOST == "10.0.0.1" and c.SLAVE_POP3_HOST == "10.0.0.2"
    assert c.REMOTE_POP3_PORT == 110 == c.SLAVE_POP3_PORT and c.REMOTE_POP3_TIMEOUT == 5.0
    assert c.ON_ACK_TIMEOUT is OnAckTimeout.FENCE and c.warnings == ()
    assert c.SECRET_FILE == str(confdir / "secret") and c.base_dir == str(confdir)
    assert c.policy().probe_failures == 3


def test_every_problem_is_reported_at_once(confdir: Path) -> None:
    lines = problems(edit(confdir, MONITOR_PORT=None, PROBE_FAILURES=0, REMOTE_POP3_PORT="110"))
    assert len(lines) == 3
    assert any(line.startswith("failover_config.py: MONITOR_PORT: missing") for line in lines)
    assert "failover_config.py: PROBE_FAILURES: 0 is out of range: expected 1 <= integer <= 1000" in lines
    assert "failover_config.py: REMOTE_POP3_PORT: expected a port, got str '110'" in lines


def test_unknown_key_suggests_the_close_one(confdir: Path) -> None:
    assert problems(edit(confdir, REMOTE_POP3_TIMOUT=3)) == [
        "failover_config.py: REMOTE_POP3_TIMOUT: unknown key; did you mean REMOTE_POP3_TIMEOUT?"
    ]


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        ({"PROBE_INTERVAL": "5"}, "PROBE_INTERVAL: expected a number of seconds, got str '5'"),
        ({"PROBE_INTERVAL": True}, "PROBE_INTERVAL: expected a number of seconds, got bool True"),
        ({"PROBE_INTERVAL": -1}, "PROBE_INTERVAL: -1 is out of range: expected 0.01 <= value <= 3600 (seconds)"),
        ({"MONITOR_PORT": 70000}, "MONITOR_PORT: 70000 is out of range: expected 1 <= port <= 65535"),
        ({"MASTER_HOST": ""}, "MASTER_HOST: must not be empty"),
        ({"MASTER_HOST": "a b"}, "MASTER_HOST: expected a host name or IP address, got 'a b'"),
        ({"STARTUP_SCRIPTS": []}, "STARTUP_SCRIPTS: expected at least one script"),
        ({"STARTUP_SCRIPTS": 3}, "STARTUP_SCRIPTS: expected a list of commands or a comma-separated string, got int"),
        ({"ON_ACK_TIMEOUT": "start"}, "ON_ACK_TIMEOUT: expected 'fence' (recommended) or 'takeover', got 'start'"),
        ({"POP3_PROBE_USER": "test"}, "POP3_PROBE_PASS: POP3_PROBE_USER and POP3_PROBE_PASS go together"),
    ],
)
def test_wrong_type_and_range(confdir: Path, change: dict[str, object], expected: str) -> None:
    lines = problems(edit(confdir, **change))
    assert any(line.startswith(f"failover_config.py: {expected}") for line in lines), lines


def test_unsupported_python_value(confdir: Path) -> None:
    write(confdir, GOOD.replace('"REMOTE_POP3_TIMEOUT": 5,', '"REMOTE_POP3_TIMEOUT": {5},'))
    (line,) = problems(confdir / "failover_config.py")
    assert line == "failover_config.py: REMOTE_POP3_TIMEOUT: unsupported value of type set: {5}"


def test_port_clash_on_the_same_host(confdir: Path) -> None:
    path = edit(confdir, MASTER_HOST="127.0.0.1", SLAVE_HOST="localhost", MONITOR_PORT_SLAVE=7890, SLAVE_POP3_PORT=111)
    assert problems(path) == [
        "failover_config.py: MONITOR_PORT_SLAVE: port clash: MONITOR_PORT_SLAVE and MONITOR_PORT both use "
        "localhost:7890; each listener needs its own port"
    ]
    load(edit(confdir, MONITOR_PORT_SLAVE=7890))  # different hosts: no clash


def test_pop3_and_monitor_port_clash(confdir: Path) -> None:
    (line,) = problems(edit(confdir, REMOTE_POP3_PORT=7890))
    assert "REMOTE_POP3_PORT: port clash: REMOTE_POP3_PORT and MONITOR_PORT both use 10.0.0.1:7890" in line


def test_missing_and_non_executable_scripts(confdir: Path) -> None:
    (confdir / "scripts" / "start.sh").chmod(0o644)
    lines = problems(edit(confdir, SHUTDOWN_SCRIPTS="./scripts/nope.sh, no-such-program-xyz --flag"))
    assert lines == [
        f"failover_config.py: SHUTDOWN_SCRIPTS: ./scripts/nope.sh: no such file (looked for {confdir}/scripts/nope.sh)",
        "failover_config.py: SHUTDOWN_SCRIPTS: no-such-program-xyz: not found on PATH",
        f"failover_config.py: STARTUP_SCRIPTS: ./scripts/start.sh: not executable "
        f"(chmod +x {confdir}/scripts/start.sh)",
    ]


def test_secret_missing_readable_by_others_or_short(confdir: Path) -> None:
    secret = confdir / "secret"
    secret.chmod(0o644)
    (line,) = problems(confdir / "failover_config.py")
    assert line == (
        f"failover_config.py: SECRET_FILE: {secret}: mode 0644 lets others read it; expected 0600 (chmod 600 {secret})"
    )
    secret.chmod(0o600)
    secret.write_text("short\n")
    (line,) = problems(confdir / "failover_config.py")
    assert "5 bytes; expected at least 16 random bytes" in line
    secret.unlink()
    (line,) = problems(confdir / "failover_config.py")
    assert line == (
        f"failover_config.py: SECRET_FILE: {secret}: no such file; create it on both hosts with "
        f"`failover keygen {secret}`"
    )


def test_syntax_error_names_the_line(confdir: Path) -> None:
    path = write(confdir, GOOD.replace('"MONITOR_PORT": 7890,', '"MONITOR_PORT": 7890'))
    (line,) = problems(path)
    assert line.startswith("failover_config.py: line 5: syntax error:"), line


def test_runtime_error_names_the_line(confdir: Path) -> None:
    path = write(confdir, GOOD.replace('"MONITOR_PORT": 7890,', '"MONITOR_PORT": PORT,'))
    assert problems(path) == ["failover_config.py: line 5: NameError: name 'PORT' is not defined"]


def test_missing_config_dict(confdir: Path) -> None:
    assert problems(write(confdir, "X = 1\n")) == ["failover_config.py: CONFIG: the file must define CONFIG = {...}"]
    assert problems(write(confdir, "CONFIG = [1]\n")) == ["failover_config.py: CONFIG: CONFIG must be a dict, got list"]


def test_a_file_that_exits_or_hangs_cannot_take_the_agent_with_it(
    confdir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert problems(write(confdir, "import sys\nsys.exit(3)\n")) == [
        "failover_config.py: (file): the file called exit(3)"
    ]
    monkeypatch.setattr(cfg, "LOAD_TIMEOUT", 1.0)
    assert problems(write(confdir, "while True:\n    pass\n")) == [
        "failover_config.py: (file): executing the file took over 1 s"
    ]


def test_missing_file(tmp_path: Path) -> None:
    (line,) = problems(tmp_path / "failover_config.py")
    assert line.startswith("failover_config.py: (file): cannot read") and "No such file" in line


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        (
            {"SHUTDOWN_ACK_TIMEOUT": 60, "SCRIPT_TIMEOUT": 30},
            "SHUTDOWN_ACK_TIMEOUT: timing rule broken: expected SHUTDOWN_ACK_TIMEOUT (60) > SCRIPT_TIMEOUT (30) x 2 "
            "SHUTDOWN_SCRIPTS + SERVICE_CHECK_TIMEOUT (10) = 70: otherwise a master that is still stopping normally "
            "is taken for one that does not answer",
        ),
        (
            {"SERVICE_CHECK_TIMEOUT": 2},
            "SERVICE_CHECK_TIMEOUT: timing rule broken: expected SERVICE_CHECK_TIMEOUT (2) >= REMOTE_POP3_TIMEOUT (5)",
        ),
        (
            {"CONTROL_TIMEOUT": 60, "SHUTDOWN_ACK_TIMEOUT": 60, "SCRIPT_TIMEOUT": 1},
            "CONTROL_TIMEOUT: timing rule broken: expected CONTROL_TIMEOUT (60) < SHUTDOWN_ACK_TIMEOUT (60)",
        ),
    ],
)
def test_timeouts_that_cannot_work_together(confdir: Path, change: dict[str, object], expected: str) -> None:
    lines = problems(edit(confdir, **change))
    assert any(line.startswith(f"failover_config.py: {expected}") for line in lines), lines


def test_takeover_and_password_are_accepted_with_warnings(confdir: Path) -> None:
    (confdir / "known_hosts").write_text("")
    c = load(
        edit(confdir, ON_ACK_TIMEOUT="takeover", RLOGIN_PASS="x", RLOGIN_KNOWN_HOSTS="known_hosts", FENCE_TIMEOUT=120)
    )
    assert c.ON_ACK_TIMEOUT is OnAckTimeout.TAKEOVER
    assert [w.split(":")[0] for w in c.warnings] == ["ON_ACK_TIMEOUT", "RLOGIN_PASS"]
    assert "runs twice" in c.warnings[0]


def test_relative_paths_are_taken_from_the_config_directory(confdir: Path) -> None:
    c = load(edit(confdir, STATE_DIR="state", LOG_DIR="/var/log/x", SERVICE_PIDFILE="run/x.pid"))
    assert (c.STATE_DIR, c.LOG_DIR, c.SERVICE_PIDFILE) == (
        str(confdir / "state"),
        "/var/log/x",
        str(confdir / "run/x.pid"),
    )


def test_schema_and_config_fields_agree() -> None:
    fields = set(cfg.Config.__dataclass_fields__) - {"source", "base_dir", "warnings"}
    assert fields == set(cfg.KEY_NAMES)


def test_role_from_the_host(confdir: Path) -> None:
    c = load(edit(confdir, SLAVE_HOST="127.0.0.1"))
    assert find_role(c) is Role.SLAVE
    with pytest.raises(ConfigError, match=r"SLAVE_HOST: this host is SLAVE_HOST \(127.0.0.1\), the slave: it cannot"):
        find_role(c, Role.MASTER)
    both = load(edit(confdir, MASTER_HOST="127.0.0.1", SLAVE_HOST="localhost", SLAVE_POP3_PORT=111))
    with pytest.raises(ConfigError, match=r"are this host \(a pair on one machine\): give the role explicitly"):
        find_role(both)
    assert find_role(both, Role.MASTER) is Role.MASTER
    with pytest.raises(ConfigError, match="neither MASTER_HOST"):
        find_role(load(write(confdir, GOOD)))


def test_scripts_run_from_the_config_directory_not_the_callers(confdir: Path) -> None:
    here = os.getcwd()
    try:
        os.chdir("/")
        load(confdir / "failover_config.py")  # ./scripts/... found relative to the file
    finally:
        os.chdir(here)


def test_the_fence_chain_follows_what_is_configured(confdir: Path) -> None:
    (confdir / "id").write_text("key")
    (confdir / "known_hosts").write_text("")
    assert load(confdir / "failover_config.py").fence_methods() == ()
    lb = {"address": "unix:/run/haproxy/admin.sock", "backend": "pop3", "master_server": "a", "slave_server": "b"}
    c = load(
        edit(
            confdir,
            RLOGIN_KEY_FILE="id",
            RLOGIN_KNOWN_HOSTS="known_hosts",
            LOAD_BALANCER=lb,
            FENCE_SCRIPTS="./scripts/stop.sh",
            FENCE_TIMEOUT=120,
            SERVICE_PIDFILE="/run/dovecot/master.pid",
        )
    )
    assert [m.value for m in c.fence_methods()] == ["ssh", "loadbalancer", "scripts"]
    assert c.policy().load_balancer and c.LOAD_BALANCER is not None and c.LOAD_BALANCER.timeout == 2.0
    assert c.RLOGIN_KEY_FILE == str(confdir / "id")


def test_a_load_balancer_brings_the_lease_and_its_hard_stop(confdir: Path) -> None:
    plain = load(confdir / "failover_config.py")  # no load balancer: no lease, no automatic takeover of a silent master
    assert plain.policy().takeover_wait is None and Trigger.COMMUNICATION_LOSS not in plain.triggers()
    lb = {"address": "unix:/run/haproxy/admin.sock", "backend": "pop3", "master_server": "a", "slave_server": "b"}
    assert problems(edit(confdir, LOAD_BALANCER=lb)) == [
        "failover_config.py: HARD_STOP_SCRIPTS: with a LOAD_BALANCER the master serves under a lease and must "
        "be able to kill its service at once when it ends: set SERVICE_PIDFILE (its process tree is killed) or "
        "HARD_STOP_SCRIPTS, or LEASE = False (then the slave never starts without an ACK or a fence)"
    ]
    c = load(edit(confdir, LOAD_BALANCER=lb, HARD_STOP_SCRIPTS=["./scripts/stop.sh"], LEASE_TIME=0.6))
    wait = c.policy().takeover_wait
    # the shipped HARD_STOP_TIMEOUT 0.5 and HEARTBEAT_TIMEOUT 1; the margin is a twentieth of the lease
    assert wait is not None and wait == pytest.approx((0.6 + 0.5 + 0.03) * 1.01 / 0.99)
    # the load balancer's lease: LEASE_TIME - HEARTBEAT_TIMEOUT, but at least a quarter of it
    assert c.policy().lb_takeover_wait == pytest.approx((0.15 + 0.5 + 0.03) * 1.01 / 0.99)
    assert Trigger.COMMUNICATION_LOSS in c.triggers()  # the default with a lease: a dead master fails over
    unleased = load(edit(confdir, LOAD_BALANCER=lb, LEASE=False))
    assert unleased.policy().takeover_wait is None and Trigger.COMMUNICATION_LOSS not in unleased.triggers()
    kept_off = load(
        edit(confdir, LOAD_BALANCER=lb, HARD_STOP_SCRIPTS="./scripts/stop.sh", TRIGGER_COMMUNICATION_LOSS=False)
    )
    assert Trigger.COMMUNICATION_LOSS not in kept_off.triggers()  # one key away: manual about it
    assert problems(
        edit(confdir, LOAD_BALANCER=lb, HARD_STOP_SCRIPTS="./scripts/stop.sh", LEASE_TIME=0.2, BEAT_INTERVAL=0.05)
    ) == [
        "failover_config.py: LEASE_TIME: timing rule broken: expected LEASE_TIME (0.2) >= 5 x BEAT_INTERVAL = "
        "0.25: a few lost datagrams on a bad link must not end a healthy master's lease"
    ]


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        ({"RLOGIN_KEY_FILE": "id"}, "RLOGIN_KNOWN_HOSTS: required with RLOGIN_KEY_FILE or RLOGIN_PASS"),
        (
            {"RLOGIN_KEY_FILE": "id", "RLOGIN_KNOWN_HOSTS": "id"},
            "FENCE_TIMEOUT: timing rule broken: expected FENCE_TIMEOUT (90) > 2 x (SCRIPT_TIMEOUT x 2",
        ),
        ({"RLOGIN_KEY_FILE": "nope", "RLOGIN_KNOWN_HOSTS": "nope2"}, "RLOGIN_KEY_FILE: "),
        ({"LOAD_BALANCER": "haproxy"}, "LOAD_BALANCER: expected None or a dict"),
        ({"LOAD_BALANCER": {"address": "x"}}, "LOAD_BALANCER: unknown fields [], missing fields ['backend'"),
        (
            {"LOAD_BALANCER": {"address": "here", "backend": "b", "master_server": "m", "slave_server": "s"}},
            "LOAD_BALANCER: address 'here': expected 'unix:/path/to/admin.sock' or 'host:port'",
        ),
        ({"FENCE_SCRIPTS": ["./missing.sh"]}, "FENCE_SCRIPTS: ./missing.sh: no such file"),
    ],
)
def test_fence_settings_are_checked(confdir: Path, change: dict[str, object], expected: str) -> None:
    (confdir / "id").write_text("key")
    lines = problems(edit(confdir, **change))
    assert any(line.startswith(f"failover_config.py: {expected}") for line in lines), lines


def test_a_witness_needs_timeouts_that_let_the_isolated_master_stop_first(confdir: Path) -> None:
    (line,) = problems(edit(confdir, WITNESS="10.0.0.9:80", ISOLATION_TIMEOUT=60))
    assert line.startswith(
        "failover_config.py: ISOLATION_TIMEOUT: timing rule broken: expected PROBE_INTERVAL x PROBE_FAILURES + "
        "SHUTDOWN_ACK_TIMEOUT = 75 (the slave's earliest takeover without an ACK) > ISOLATION_TIMEOUT + "
        "SCRIPT_TIMEOUT x 2 + SERVICE_CHECK_TIMEOUT = 110"
    )
    c = load(edit(confdir, WITNESS="10.0.0.9:80", ISOLATION_TIMEOUT=15, SCRIPT_TIMEOUT=10))
    assert c.policy().isolation_timeout == 15 and c.witness_address() == ("10.0.0.9", 80)
    assert load(edit(confdir, ISOLATION_TIMEOUT=10)).policy().isolation_timeout is None  # no witness, no effect
    (line,) = problems(edit(confdir, WITNESS="10.0.0.9:80", ISOLATION_TIMEOUT=10))
    assert "ISOLATION_TIMEOUT (10) > HEARTBEAT_INTERVAL (0.5) + 2 x CONTROL_TIMEOUT (5) = 10.5" in line
    (line,) = problems(edit(confdir, WITNESS="lb.example.net"))
    assert "WITNESS: expected 'host:port'" in line


def test_sync_files_entries_are_parsed_and_checked(confdir: Path) -> None:
    entries = ["/etc/dovecot", {"path": "/etc/l.conf", "substitute": {"10.0.0.1": "10.0.0.2"}}]
    entries.append({"path": "/etc/secret", "mode": "verify"})
    c = load(edit(confdir, SYNC_FILES=entries))
    assert [e.mode for e in c.SYNC_FILES] == ["sync", "sync", "verify"]
    assert c.SYNC_FILES[1].substitute == (("10.0.0.1", "10.0.0.2"),)
    bad = problems(edit(confdir, SYNC_FILES=["etc/relative", {"path": "/x", "mode": "copy"}]))
    assert bad == ["failover_config.py: SYNC_FILES: item 0: 'etc/relative': expected an absolute path without '..'"]
    bad = problems(edit(confdir, SYNC_FILES=[{"path": "/s", "mode": "verify", "substitute": {"a": "b"}}]))
    assert "cannot have a substitution" in bad[0]


def test_trigger_flags_and_the_heartbeat_rule(confdir: Path) -> None:
    c = load(edit(confdir, TRIGGER_ABNORMAL_SHUTDOWN=False))
    assert c.policy().manual and any("manual mode" in w for w in c.warnings)
    c = load(edit(confdir, TRIGGER_COMMUNICATION_LOSS=True))
    assert any("cannot tell a slow or cut network" in w for w in c.warnings)
    bad = problems(edit(confdir, HEARTBEAT_TIMEOUT=0.2, BEAT_INTERVAL=0.05))
    assert bad == [
        "failover_config.py: HEARTBEAT_TIMEOUT: timing rule broken: expected HEARTBEAT_TIMEOUT (0.2) >= 5 x "
        "BEAT_INTERVAL = 0.25: contact is any datagram of the stream: a few lost in a row on a bad link must "
        "not count as lost"
    ]
    assert problems(edit(confdir, TRIGGER_NORMAL_SHUTDOWN="yes")) == [
        "failover_config.py: TRIGGER_NORMAL_SHUTDOWN: expected True or False, got str 'yes'"
    ]
