"""systemd units (failover.units, `failover install-units`) checked by the real systemd-analyze,
and sd_notify (failover.watchdog) against a real AF_UNIX datagram socket: readiness, the
watchdog kicks of a real rhcd, and of the decision loop only."""

from __future__ import annotations

import dataclasses
import logging
import os
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from click.testing import CliRunner

from failover import daemon, watchdog
from failover.agent import Agent
from failover.cli import main
from failover.cli import units as units_cli
from failover.config import Config, load
from failover.lab.pair import LoopbackPair
from failover.machine import Role
from failover.units import UnitError, loop_budget, render, watchdog_sec

ROOT = Path(__file__).resolve().parents[2]
SYSTEMD_ANALYZE = "/usr/bin/systemd-analyze"


@pytest.fixture(scope="module")
def pair() -> Iterator[LoopbackPair]:
    made = LoopbackPair(pop3_kind="builtin")  # only its config: no POP3 server is started
    yield made
    made.close()


@pytest.fixture
def config(pair: LoopbackPair) -> Config:
    return load(pair.config_path)


def install(pair: LoopbackPair, *args: str) -> tuple[int, str]:
    result = CliRunner().invoke(main, ["--config", pair.config_path, "install-units", *args])
    return result.exit_code, result.output


def keys(text: str) -> dict[str, list[str]]:
    """Every Key=value of a unit file, in order (comments and sections left out)."""
    found: dict[str, list[str]] = {}
    for line in text.splitlines():
        if line and not line.startswith(("#", "[")):
            key, _, value = line.partition("=")
            found.setdefault(key, []).append(value)
    return found


# ---------------------------------------------------------------------------------------------- the units


@pytest.mark.parametrize("role", list(Role))
def test_the_units_pass_systemd_analyze_verify(pair: LoopbackPair, tmp_path: Path, role: Role) -> None:
    code, out = install(pair, "--role", role.value, "--dir", str(tmp_path))
    assert code == 0, out
    files = sorted(tmp_path.iterdir())
    assert [f.name for f in files] == sorted(render(load(pair.config_path), role, sys.executable, "/x"))
    done = subprocess.run(
        [SYSTEMD_ANALYZE, "verify", "--man=no", *map(str, files)], capture_output=True, text=True, timeout=30
    )
    # verify exits 0 on a key it ignores: any word from it is a fault of the units
    assert (done.returncode, done.stdout + done.stderr) == (0, "")


def test_the_units_run_this_interpreter_on_this_config(pair: LoopbackPair, tmp_path: Path) -> None:
    code, out = install(pair, "--role", "master", "--dir", str(tmp_path))
    assert code == 0, out
    config_path = str(Path(pair.config_path).resolve())
    lhcd = keys((tmp_path / "failover-lhcd.service").read_text())
    control = keys((tmp_path / "failover-socketserver.service").read_text())
    target = keys((tmp_path / "failover-master.target").read_text())
    python = os.path.abspath(sys.executable)
    assert lhcd["ExecStart"] == [f"{python} -m agents.master.lhcd --config {config_path} --foreground"]
    assert control["ExecStart"] == [f"{python} -m agents.master.socketserver --config {config_path} --foreground"]
    assert lhcd["WorkingDirectory"] == control["WorkingDirectory"] == [pair.dir]
    assert target["Wants"] == ["failover-socketserver.service failover-lhcd.service"]
    assert target["WantedBy"] == ["multi-user.target"]
    for unit in (lhcd, control):
        assert unit["Type"] == ["notify"]
        assert unit["PartOf"] == ["failover-master.target"]
        assert unit["Restart"] == ["on-failure"]
        assert unit["RestartPreventExitStatus"] == ["2"]  # a bad config or state file waits for the operator
    assert lhcd["After"] == ["failover-socketserver.service network-online.target"]  # as start.sh: control first
    # the agent: its restart never kills the service its scripts started, no sandbox the service would inherit
    assert lhcd["KillMode"] == ["process"]
    assert lhcd["WatchdogSec"] == [str(watchdog_sec(load(pair.config_path)))]
    assert not {"NoNewPrivileges", "ProtectSystem", "ProtectHome", "PrivateTmp"} & lhcd.keys()
    # the control server runs no script: sandboxed, writing only where it must, no watchdog to feed
    assert "KillMode" not in control and "WatchdogSec" not in control
    assert control["ProtectSystem"] == ["strict"] and control["NoNewPrivileges"] == ["yes"]
    assert control["ReadWritePaths"] == [f"-{pair.dir}/state -{pair.dir}/log"]
    names = ("failover-master.target", "failover-socketserver.service", "failover-lhcd.service")
    assert out.splitlines()[:3] == [f"wrote {tmp_path}/{name}" for name in names]


def test_changed_units_are_not_replaced_without_force(pair: LoopbackPair, tmp_path: Path) -> None:
    assert install(pair, "--role", "slave", "--dir", str(tmp_path))[0] == 0
    rhcd = tmp_path / "failover-rhcd.service"
    edited = rhcd.read_text().replace("RestartSec=2", "RestartSec=9")
    rhcd.write_text(edited)
    code, out = install(pair, "--role", "slave", "--dir", str(tmp_path))
    assert code == 1 and f"not replaced, their content differs: {rhcd}" in out
    assert rhcd.read_text() == edited  # nothing written, not even the unchanged ones
    code, out = install(pair, "--role", "slave", "--dir", str(tmp_path), "--force")
    assert code == 0 and f"replaced {rhcd}" in out and "RestartSec=2\n" in rhcd.read_text()
    code, out = install(pair, "--role", "slave", "--dir", str(tmp_path))
    assert code == 0 and out.count("unchanged ") == 3
    assert oct(rhcd.stat().st_mode & 0o777) == "0o644"


def test_enable_reloads_and_enables_only_where_systemd_runs(
    pair: LoopbackPair, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    bin_dir, calls = tmp_path / "bin", tmp_path / "calls"
    bin_dir.mkdir()
    (bin_dir / "systemctl").write_text(f'#!/bin/sh\necho "$@" >> {calls}\n')
    (bin_dir / "systemctl").chmod(0o755)
    monkeypatch.setenv("PATH", f"{bin_dir}:{os.environ['PATH']}")
    units = tmp_path / "units"
    monkeypatch.setattr(units_cli, "systemd_running", lambda: False)
    code, out = install(pair, "--role", "master", "--dir", str(units), "--enable")
    assert code == 1 and "systemd does not run on this host" in out and not calls.exists()
    assert (units / "failover-lhcd.service").exists()
    code, out = install(pair, "--role", "master", "--dir", str(units))
    assert code == 0 and not calls.exists()  # not asked: nothing run
    monkeypatch.setattr(units_cli, "systemd_running", lambda: True)
    code, out = install(pair, "--role", "master", "--dir", str(units), "--enable")
    assert code == 0, out
    assert calls.read_text().splitlines() == ["daemon-reload", "enable failover-master.target"]


def test_a_path_systemd_would_read_otherwise_is_refused(config: Config) -> None:
    for python in ("/opt/my venv/bin/python", "/opt/100%/python", "/opt/$HOME/python", "relative/python"):
        with pytest.raises(UnitError, match="the interpreter"):
            render(config, Role.MASTER, python, "/etc/failover_config.py")


def test_the_watchdog_outlasts_twice_the_longest_pass(config: Config) -> None:
    more = dataclasses.replace(config, SHUTDOWN_SCRIPTS=("./a", "./b", "./c"), SCRIPT_TIMEOUT=100.0)
    assert loop_budget(more) >= 3 * 100 + config.SERVICE_CHECK_TIMEOUT
    assert watchdog_sec(more) >= 2 * loop_budget(more) > watchdog_sec(config) >= 30


# ---------------------------------------------------------------------------------------------- sd_notify


@pytest.fixture
def notify_socket(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[socket.socket]:
    """A datagram socket standing in for systemd's, named in NOTIFY_SOCKET."""
    path = str(tmp_path / "notify")
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(path)
    sock.settimeout(5)
    monkeypatch.setenv("NOTIFY_SOCKET", path)
    monkeypatch.delenv("WATCHDOG_PID", raising=False)
    monkeypatch.setattr(watchdog, "_last_kick", None)
    yield sock
    sock.close()


def test_kick_and_readiness_reach_the_notify_socket(
    notify_socket: socket.socket, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert watchdog.kick()
    assert notify_socket.recv(100) == b"WATCHDOG=1"
    daemon.notify_ready()
    assert notify_socket.recv(100) == b"READY=1"
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as abstract:
        name = f"failover-test-{os.getpid()}"
        abstract.bind("\0" + name)
        abstract.settimeout(5)
        monkeypatch.setenv("NOTIFY_SOCKET", "@" + name)
        assert watchdog.kick()
        assert abstract.recv(100) == b"WATCHDOG=1"
    monkeypatch.delenv("NOTIFY_SOCKET")
    assert not watchdog.kick()  # not under systemd: nothing to tell


def test_the_interval_is_only_this_process_s(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("WATCHDOG_USEC", raising=False)
    assert watchdog.watchdog_interval() is None
    monkeypatch.setenv("WATCHDOG_USEC", "2500000")
    monkeypatch.setenv("WATCHDOG_PID", str(os.getpid()))
    assert watchdog.watchdog_interval() == 2.5
    monkeypatch.setenv("WATCHDOG_PID", str(os.getppid()))  # inherited from the watched parent
    assert watchdog.watchdog_interval() is None
    monkeypatch.delenv("WATCHDOG_PID")
    for bad in ("0", "-5", "soon"):
        monkeypatch.setenv("WATCHDOG_USEC", bad)
        assert watchdog.watchdog_interval() is None


def test_kicks_come_at_most_every_half_interval(notify_socket: socket.socket, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("WATCHDOG_USEC", "1000000")
    sent = [t for t in (10.0, 10.2, 10.49, 10.5, 10.7, 11.1) if watchdog.kick_if_due(t)]
    assert sent == [10.0, 10.5, 11.1]
    notify_socket.settimeout(0.5)
    assert [notify_socket.recv(100) for _ in sent] == [b"WATCHDOG=1"] * 3


def test_a_full_notify_socket_costs_a_kick_not_a_wait(notify_socket: socket.socket) -> None:
    results: list[bool] = []
    sender = threading.Thread(target=lambda: results.extend(watchdog.kick() for _ in range(5000)), daemon=True)
    sender.start()
    sender.join(5)  # nobody reads: the queue fills; a blocking send would hang here
    assert not sender.is_alive() and len(results) == 5000
    assert results[0] and not results[-1]


def test_a_real_rhcd_says_ready_and_kicks_within_the_interval(pair: LoopbackPair, notify_socket: socket.socket) -> None:
    env = {k: v for k, v in os.environ.items() if k not in (daemon.READY_FD_ENV, "INVOCATION_ID")}
    env.update(NOTIFY_SOCKET=notify_socket.getsockname(), WATCHDOG_USEC="2000000")
    proc = subprocess.Popen(
        [sys.executable, "-m", "agents.slave.rhcd", "--config", pair.config_path],
        cwd=pair.dir,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        notify_socket.settimeout(15)
        assert notify_socket.recv(100) == b"READY=1"
        notify_socket.settimeout(2.5)  # the interval, and room for a loaded host
        times = []
        for _ in range(2):
            assert notify_socket.recv(100) == b"WATCHDOG=1"
            times.append(time.monotonic())
        assert 0.9 <= times[1] - times[0] < 2.0  # at most every half interval, well within it
    finally:
        proc.terminate()
        _, err = proc.communicate(timeout=15)
    assert proc.returncode == 0, err


def test_only_the_decision_loop_kicks(
    pair: LoopbackPair, notify_socket: socket.socket, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A loop stuck in one pass stops the kicks, though every other thread lives on."""
    monkeypatch.setenv("WATCHDOG_USEC", "200000")
    config = dataclasses.replace(load(pair.config_path), STATE_DIR=os.path.join(pair.dir, "loop-state"))
    os.makedirs(config.STATE_DIR)
    agent = Agent(config, Role.SLAVE, "rhcd", logging.getLogger("test-units"))
    agent.TICK = 0.05
    stuck, free = threading.Event(), threading.Event()
    monkeypatch.setattr(agent, "process", lambda event: free.wait() if stuck.is_set() else None)
    stop = threading.Event()
    loop = threading.Thread(target=agent.run, args=(stop,), daemon=True)
    loop.start()

    def kicks_within(seconds: float) -> int:
        end, count = time.monotonic() + seconds, 0
        while (left := end - time.monotonic()) > 0:
            notify_socket.settimeout(left)
            try:
                count += notify_socket.recv(100) == b"WATCHDOG=1"
            except TimeoutError:
                break
        return count

    try:
        assert notify_socket.recv(100) == b"READY=1"
        assert kicks_within(0.5) >= 3
        stuck.set()
        kicks_within(0.15)  # a kick already under way
        assert kicks_within(0.5) == 0
        stuck.clear()
        free.set()
        assert kicks_within(0.5) >= 3
    finally:
        stop.set()
        free.set()
        loop.join(5)


def test_scripts_do_not_inherit_the_agents_systemd_sockets(monkeypatch: pytest.MonkeyPatch) -> None:
    """A service started by a script must not speak to systemd for the agent (READY=1, kicks)."""
    from failover.scripts import script_environment

    monkeypatch.setenv("NOTIFY_SOCKET", "@/run/x")
    monkeypatch.setenv("WATCHDOG_USEC", "2000000")
    monkeypatch.setenv("WATCHDOG_PID", "1234")
    monkeypatch.setenv("PATH", "/usr/bin")
    env = script_environment({"FAILOVER_EVENT": "startup"}, 5)
    assert not {"NOTIFY_SOCKET", "WATCHDOG_USEC", "WATCHDOG_PID"} & set(env)
    assert env["PATH"] == "/usr/bin" and env["FAILOVER_EVENT"] == "startup"
