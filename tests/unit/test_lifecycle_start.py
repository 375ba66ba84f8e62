"""`failover start` and the daemons' lives, as real processes: a daemon that cannot start says why
in one line and exits 2, `failover start` reports it and stops what it started, a daemon whose
vital thread keeps failing exits non-zero, and logs rotate.

The review: with a corrupt state file the daemon exits, but `failover start` returned 0 and
printed "started" in 13 of 57 starts (it returned as soon as the pid lock was taken), printed
no reason otherwise, and left the control server running."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from failover.cli.daemons import StartFailed, spawn, wait_ready
from failover.daemon import PidUnknown, running_pid, signal_daemon
from failover.lab.pop3 import free_port
from failover.state import STATE_VERSION
from tests.unit.test_cli import write_scripts_and_secret

CONFIG = """\
CONFIG = {{
    "MASTER_HOST": "127.0.0.1",
    "SLAVE_HOST": "127.0.0.1",
    "MONITOR_PORT": {master},
    "MONITOR_PORT_SLAVE": {slave},
    "REMOTE_POP3_PORT": {pop3},
    "SLAVE_POP3_PORT": {pop3_slave},
    "SECRET_FILE": "secret",
    "SHUTDOWN_SCRIPTS": "./stop.sh",
    "STARTUP_SCRIPTS": ["./start.sh"],
    "STATE_DIR": "state",
    "LOG_DIR": "log",
}}
"""
CONTROL = {"master": "socketserver", "slave": "socketserver2"}
BRAIN = {"master": "lhcd", "slave": "rhcd"}


@pytest.fixture
def confdir(tmp_path: Path) -> Iterator[Path]:
    yield make_confdir(tmp_path)
    for pid_file in (tmp_path / "state").glob("*.pid"):  # a failing test leaves no daemon behind
        with contextlib.suppress(PidUnknown, ProcessLookupError):
            pid = running_pid(str(pid_file))
            if pid:
                signal_daemon(pid, signal.SIGKILL)


def make_confdir(tmp_path: Path) -> Path:
    write_scripts_and_secret(tmp_path)
    ports = {"master": free_port(), "slave": free_port(), "pop3": free_port(), "pop3_slave": free_port()}
    (tmp_path / "failover_config.py").write_text(CONFIG.format(**ports))
    (tmp_path / "state").mkdir(mode=0o700)
    return tmp_path


def failover(confdir: Path, role: str, *args: str) -> subprocess.CompletedProcess[str]:
    command = [sys.executable, "-m", "failover.cli", "--config", str(confdir / "failover_config.py"), "--role", role]
    return subprocess.run([*command, *args], capture_output=True, text=True, timeout=120, cwd=confdir)


def port_of(confdir: Path, role: str) -> int:
    text = (confdir / "failover_config.py").read_text()
    key = '"MONITOR_PORT": ' if role == "master" else '"MONITOR_PORT_SLAVE": '
    return int(text.split(key)[1].split(",")[0])


def accepts(port: int) -> bool:
    try:
        socket.create_connection(("127.0.0.1", port), 2).close()
        return True
    except OSError:
        return False


def none_running(confdir: Path, role: str) -> bool:
    return all(running_pid(str(confdir / "state" / f"{n}.pid")) is None for n in (CONTROL[role], BRAIN[role]))


CORRUPT: list[tuple[str, str, bytes, str]] = [
    ("master", "garbage", b"\x00\x17 garbage {", "not valid JSON"),
    ("master", "empty", b"", "not valid JSON"),
    ("master", "negative-term", b'{"role": "master", "state": "ACTIVE", "term": -1}', "term: -1 is out of range"),
    ("master", "newer-version", b'{"version": 4, "role": "master", "state": "ACTIVE"}', "version: 4 is newer"),
    (
        "master",
        "wrong-type",
        b'{"role": "master", "state": "ACTIVE", "last_contact": "yesterday"}',
        "last_contact: expected a number or null, got a string 'yesterday'",
    ),
    (
        "slave",
        "wrong-type-heartbeat",
        b'{"role": "slave", "state": "STANDBY", "last_heartbeat": [1]}',
        "last_heartbeat: expected a number or null, got a list [1]",
    ),
]


@pytest.mark.parametrize(("role", "content", "problem"), [c[0:1] + c[2:] for c in CORRUPT], ids=[c[1] for c in CORRUPT])
def test_start_on_a_corrupt_state_file_fails_with_the_reason_and_leaves_nothing_running(
    confdir: Path, role: str, content: bytes, problem: str
) -> None:
    state = confdir / "state" / f"{role}.state.json"
    state.write_bytes(content)
    done = failover(confdir, role, "start", role)
    output = done.stdout + done.stderr
    brain, control = BRAIN[role], CONTROL[role]
    assert done.returncode == 1, output
    assert f"{brain} did not start (exit 2): {brain}: {state}: {problem}" in done.stderr, output
    assert f"stopped {control} (pid " in done.stderr and f"{brain} started" not in output, output
    assert "Traceback" not in output
    assert none_running(confdir, role), output
    assert not accepts(port_of(confdir, role)), "the control server still answers"
    log = (confdir / "log" / f"{brain}.log").read_text()
    assert f"ERROR {state}: {problem}" in log and "Traceback" not in log


def test_start_in_the_foreground_on_a_corrupt_state_file_fails_and_stops_both(confdir: Path) -> None:
    state = confdir / "state" / "master.state.json"
    state.write_text(json.dumps({"role": "master", "state": "ACTIVE", "condition": 3}))
    done = failover(confdir, "master", "start", "master", "--foreground")  # returns once no daemon holds its pipes
    output = done.stdout + done.stderr
    assert done.returncode == 1, output
    assert f"lhcd did not start (exit 2): lhcd: {state}: condition: expected one of unknown, up" in done.stderr
    assert "stopped socketserver (pid " in done.stderr and "Traceback" not in output
    assert none_running(confdir, "master")


def test_a_daemon_refusing_its_state_file_exits_2_with_one_line(confdir: Path) -> None:
    state = confdir / "state" / "master.state.json"
    state.write_text(json.dumps({"role": "master", "state": "ACTIVE", "restarts": [1.0, None]}))
    done = subprocess.run(
        [sys.executable, "-m", "agents.master.lhcd", "--config", str(confdir / "failover_config.py")],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=confdir,
    )
    assert done.returncode == 2
    assert done.stderr == f"lhcd: {state}: restarts: item 1: expected a number, got null\n"


def test_start_waits_until_each_daemon_is_ready(confdir: Path) -> None:
    done = failover(confdir, "master", "start", "master")
    try:
        assert done.returncode == 0, done.stdout + done.stderr
        assert "socketserver started (pid " in done.stdout and "lhcd started (pid " in done.stdout
        assert accepts(port_of(confdir, "master"))  # READY means listening: no wait needed
        assert (confdir / "state" / "lhcd.sock").exists()
        assert json.loads((confdir / "state" / "master.state.json").read_text())["version"] == STATE_VERSION
    finally:
        stopped = failover(confdir, "master", "stop", "master")
    assert stopped.returncode == 0, stopped.stdout + stopped.stderr
    assert none_running(confdir, "master")


def test_a_daemon_that_never_says_ready_is_stopped_after_the_timeout(tmp_path: Path) -> None:
    out = str(tmp_path / "sleeper.out")
    launch = spawn("sleeper", [sys.executable, "-c", "import time; time.sleep(120)"], str(tmp_path), out)
    with pytest.raises(StartFailed, match=r"^sleeper was not ready within 1 s: stopped it"):
        wait_ready(launch, timeout=1.0)
    assert launch.proc.poll() is not None


def test_a_daemon_that_dies_without_a_word_is_reported_with_its_last_line(tmp_path: Path) -> None:
    out = tmp_path / "dying.out"
    out.write_text("an earlier start's line\n")
    code = "import sys; print('Traceback ...', file=sys.stderr); print('KeyError: x', file=sys.stderr); sys.exit(3)"
    launch = spawn("dying", [sys.executable, "-c", code], str(tmp_path), str(out))
    with pytest.raises(StartFailed, match=r"^dying did not start \(exit 3\): KeyError: x$"):
        wait_ready(launch, timeout=60)


VITAL_FAILS = """
import sys, threading
from failover.master_agent import Lhcd
from failover.daemon import daemon_main
from failover.machine import Role


def run(config, stop, log):
    agent = Lhcd(config, log)

    def send_heartbeats(stop: threading.Event) -> None:
        raise TypeError("'NoneType' object is not subscriptable")

    agent.serve(stop, [agent.watch_service, send_heartbeats])
    agent.say_goodbye()


sys.exit(daemon_main("lhcd", Role.MASTER, run))
"""


def test_a_daemon_whose_vital_thread_keeps_failing_respawns_then_exits_non_zero(confdir: Path) -> None:
    """The review: lhcd's heartbeat thread died on an unexpected TypeError while lhcd stayed up.
    Now the daemon ends, starts again as a fresh process (here once: FAILOVER_RESPAWN_LIMIT=1),
    and gives up with exit 1 when it keeps failing."""
    script = confdir / "lhcd_failing.py"
    script.write_text(VITAL_FAILS)
    proc = subprocess.Popen(
        [sys.executable, str(script), "--config", str(confdir / "failover_config.py")],
        stderr=subprocess.PIPE,
        text=True,
        cwd=confdir,
        env={**os.environ, "FAILOVER_RESPAWN_LIMIT": "1"},
    )
    try:
        _, stderr = proc.communicate(timeout=60)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.communicate()
        pytest.fail("lhcd kept running with a dead heartbeat thread")
    assert proc.returncode == 1
    assert stderr.startswith("lhcd: failed: vital thread send_heartbeats failed 5 times within 60 s; last: TypeError")
    log = (confdir / "log" / "lhcd.log").read_text()
    assert log.count("Traceback") == 2  # once per process: the same error is rate-limited, counted every time
    assert "thread send_heartbeats failed (1 so far)" in log
    assert "the daemon exits: vital thread send_heartbeats failed 5 times" in log
    assert "lhcd respawns in 1 s (1 of 1 within 600 s)" in log
    assert log.count(" started (config ") == 2 and "after 1 respawns within 600 s: giving up" in log
    assert running_pid(str(confdir / "state" / "lhcd.pid")) is None


def test_a_stop_while_waiting_to_respawn_stops_the_daemon_for_good(confdir: Path) -> None:
    script = confdir / "lhcd_failing.py"
    script.write_text(VITAL_FAILS)
    proc = subprocess.Popen(
        [sys.executable, str(script), "--config", str(confdir / "failover_config.py")],
        stderr=subprocess.DEVNULL,
        cwd=confdir,
        env={**os.environ, "FAILOVER_RESPAWN_LIMIT": "5"},
    )
    log = confdir / "log" / "lhcd.log"
    end = time.monotonic() + 60
    while "respawns in" not in (log.read_text() if log.exists() else "") and time.monotonic() < end:
        time.sleep(0.05)
    pid = running_pid(str(confdir / "state" / "lhcd.pid"))
    assert pid == proc.pid  # still holds its lock while it waits: `failover stop` finds it
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=30) == 1
    assert "stopped while waiting to respawn" in log.read_text() and log.read_text().count(" started (config ") == 1


LOGGER = """
import sys
from failover.config import load
from failover.daemon import setup_logging
from failover.machine import Role

log = setup_logging(load(sys.argv[1]), "lhcd", Role.MASTER, False, max_bytes=2000, backups=3)
for i in range(300):
    log.info("line %d %s", i, "x" * 40)
"""


def test_the_log_rotates_by_size_keeping_the_last_files(confdir: Path) -> None:
    subprocess.run([sys.executable, "-c", LOGGER, str(confdir / "failover_config.py")], check=True, timeout=60)
    names = sorted(p.name for p in (confdir / "log").iterdir())
    assert names == ["lhcd.log", "lhcd.log.1", "lhcd.log.2", "lhcd.log.3"]
    assert all((confdir / "log" / n).stat().st_size <= 2000 for n in names)
    assert (confdir / "log" / "lhcd.log").read_text().rstrip().endswith("line 299 " + "x" * 40)
