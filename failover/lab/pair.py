"""A whole failover pair on one machine: what the demo, the benchmark and the end-to-end tests run.

`LoopbackPair` makes a directory with two POP3 servers (master and slave, on their own ports),
a shared secret, a config file for both agents (MASTER_HOST = SLAVE_HOST = 127.0.0.1, so the
role is given explicitly) and `pop3-ctl`, the start/stop script both hosts' config lines call:
it picks the master's or the slave's server from FAILOVER_ROLE, exactly as a real pair would
run the same command on two machines. Agents are real processes started by the `failover` CLI.
`Poller` is a POP3 client that polls through the pair and records who answered.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from failover.daemon import DAEMONS, PidUnknown, running_pid, signal_daemon
from failover.lab.pop3 import PASSWORD, USER, Pop3Instance, free_port, make_world_readable_dir
from failover.machine import Role
from failover.probes import pop3_probe
from failover.state import read_journal

# The shipped defaults, and a fast profile for the demo and the benchmark (failover_config.py
# documents both). Every profile must pass `failover check`.
# Both profiles fail over at the first death of the master's service (RESTART_LIMIT 0) so
# that a kill measures the failover itself; the shipped default restarts it once locally first.
PROFILES: dict[str, dict[str, Any]] = {
    "default": {"RESTART_LIMIT": 0},
    "fast": {
        "RESTART_LIMIT": 0,
        "HEARTBEAT_TIMEOUT": 2.0,
        "PROBE_INTERVAL": 0.1,
        "PROBE_FAILURES": 3,
        "REMOTE_POP3_TIMEOUT": 0.5,
        "HEARTBEAT_INTERVAL": 0.5,
        "SHUTDOWN_ACK_TIMEOUT": 10.0,
        "SCRIPT_TIMEOUT": 4.0,
        "SERVICE_CHECK_TIMEOUT": 3.0,
        "CONTROL_TIMEOUT": 1.0,
    },
}


class LoopbackPair:
    def __init__(
        self,
        base_dir: str | None = None,
        profile: str = "fast",
        pop3_kind: str | None = None,
        addresses: dict[Role, str] | None = None,
        prefixes: dict[Role, list[str]] | None = None,
        **overrides: Any,
    ) -> None:
        """`addresses`: each host's address (default both 127.0.0.1); `prefixes`: the command that
        runs a command on that host (for example `ip netns exec NS`; default none: this machine)."""
        self.dir = base_dir or make_world_readable_dir("failover-pair-")
        os.makedirs(self.dir, mode=0o755, exist_ok=True)
        self.addresses = addresses or {Role.MASTER: "127.0.0.1", Role.SLAVE: "127.0.0.1"}
        self.prefixes = prefixes or {Role.MASTER: [], Role.SLAVE: []}
        self.pop3 = {
            role: Pop3Instance(
                os.path.join(self.dir, f"{role.value}-pop3"), free_port(), role.value, pop3_kind, self.addresses[role]
            )
            for role in Role
        }
        self.monitor_ports = {Role.MASTER: free_port(), Role.SLAVE: free_port()}
        self.config_path = os.path.join(self.dir, "failover_config.py")
        self.secret_path = os.path.join(self.dir, "secret")
        fd = os.open(self.secret_path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        os.write(fd, os.urandom(32).hex().encode() + b"\n")
        os.close(fd)
        self._write_ctl()
        self.settings: dict[str, Any] = dict(PROFILES[profile])
        self.write_config(**overrides)

    @property
    def kind(self) -> str:
        return self.pop3[Role.MASTER].kind

    def _write_ctl(self) -> None:
        m, s = self.pop3[Role.MASTER], self.pop3[Role.SLAVE]
        path = os.path.join(self.dir, "pop3-ctl")
        Path(path).write_text(f"""#!/bin/sh
# Start or stop this host's POP3 server. Both hosts run the same command line; FAILOVER_ROLE
# (set by the agents) tells which host this is.
case "$1:${{FAILOVER_ROLE:-}}" in
  start:master) exec {m.start_command()} ;;
  stop:master) exec {m.stop_command()} ;;
  start:slave) exec {s.start_command()} ;;
  stop:slave) exec {s.stop_command()} ;;
  *) echo "usage: FAILOVER_ROLE=master|slave $0 start|stop" >&2; exit 2 ;;
esac
""")
        os.chmod(path, 0o755)

    def write_config(self, **overrides: Any) -> None:
        """(Re)write the config; `overrides` change keys for this and later writes."""
        self.settings.update(overrides)
        values: dict[str, Any] = {
            "VERSION": "loopback pair",
            "MASTER_HOST": self.addresses[Role.MASTER],
            "SLAVE_HOST": self.addresses[Role.SLAVE],
            "MONITOR_PORT": self.monitor_ports[Role.MASTER],
            "MONITOR_PORT_SLAVE": self.monitor_ports[Role.SLAVE],
            "REMOTE_POP3_HOST": self.addresses[Role.MASTER],
            "REMOTE_POP3_PORT": self.pop3[Role.MASTER].port,
            "SLAVE_POP3_HOST": self.addresses[Role.SLAVE],
            "SLAVE_POP3_PORT": self.pop3[Role.SLAVE].port,
            "POP3_PROBE_USER": USER,
            "POP3_PROBE_PASS": PASSWORD,
            "SECRET_FILE": "secret",
            "SHUTDOWN_SCRIPTS": ["./pop3-ctl stop"],
            "STARTUP_SCRIPTS": ["./pop3-ctl start"],
            "SERVICE_PIDFILE": self.pop3[Role.MASTER].pidfile,
            "STATE_DIR": "state",
            "LOG_DIR": "log",
        }
        values.update(self.settings)
        body = "".join(f"    {k!r}: {v!r},\n" for k, v in values.items())
        Path(self.config_path).write_text(
            f"# written by failover.lab.pair for a pair on one machine\nCONFIG = {{\n{body}}}\n"
        )

    # ------------------------------------------------------------------ the CLI, as an operator runs it

    def failover(
        self, *args: str, role: Role | None = None, timeout: float = 60, answers: str | None = None
    ) -> subprocess.CompletedProcess[str]:
        """Run the `failover` command as an operator would, on `role`'s host (`answers`: typed at its prompts)."""
        command = [
            *self.prefixes[role or Role.MASTER],
            sys.executable,
            "-m",
            "failover.cli",
            "--config",
            self.config_path,
        ]
        if role is not None:
            command += ["--role", role.value]
        return subprocess.run(
            [*command, *args], capture_output=True, text=True, timeout=timeout, cwd=self.dir, input=answers or ""
        )

    def start_agents(self, role: Role) -> None:
        done = self.failover("start", role.value, role=role)
        if done.returncode != 0:
            raise RuntimeError(f"failover start {role}: {done.stdout}{done.stderr}")

    def stop_agents(self, role: Role) -> None:
        self.failover("stop", role.value, role=role)

    def daemon_pid(self, name: str) -> int | None:
        return running_pid(pid_path_in(self.dir, name))

    def kill_daemon(self, name: str, sig: int = signal.SIGKILL) -> None:
        pid = self.daemon_pid(name)
        if pid:
            signal_daemon(pid, sig)
            end = time.monotonic() + 10
            while self.daemon_pid(name) and time.monotonic() < end:
                time.sleep(0.01)

    # ------------------------------------------------------------------ observing

    def state(self, role: Role) -> dict[str, Any]:
        path = Path(self.dir, "state", f"{role.value}.state.json")
        try:
            data: dict[str, Any] = json.loads(path.read_text())
            return data
        except (OSError, ValueError):
            return {}

    def wait_for(self, role: Role, states: str | tuple[str, ...], timeout: float = 30) -> dict[str, Any]:
        wanted = (states,) if isinstance(states, str) else states
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            current = self.state(role)
            if current.get("state") in wanted and self._journaled(role, current):
                return current
            time.sleep(0.02)
        raise TimeoutError(f"{role} not in {wanted} after {timeout} s: {self.state(role)}\n{self.logs()}")

    def _journaled(self, role: Role, current: dict[str, Any]) -> bool:
        """Whether the journal has caught up with the state file: an agent writes the state file
        first and appends the journal a moment later, and callers read both."""
        entries = self.journal(role)
        if not entries:
            return True  # nothing journaled yet: nothing to wait for
        last = entries[-1]  # a transition, or a note (scripts, sync) made in the state it left
        return last.get("to") == current.get("state") and last.get("term") == current.get("term")

    def journal(self, role: Role) -> list[dict[str, Any]]:
        return read_journal(os.path.join(self.dir, "state", f"{role.value}.journal"))

    def logs(self, tail: int = 3000) -> str:
        out = []
        for name in ("lhcd", "socketserver", "rhcd", "socketserver2"):
            for suffix in ("log", "out"):
                path = Path(self.dir, "log", f"{name}.{suffix}")
                if path.exists() and path.stat().st_size:
                    out.append(f"--- {path.name}\n{path.read_text()[-tail:]}")
        return "\n".join(out)

    def close(self, remove: bool = True) -> None:
        for role in Role:
            for name in DAEMONS[role]:
                with contextlib.suppress(PidUnknown):
                    pid = running_pid(pid_path_in(self.dir, name))
                    if pid:
                        with contextlib.suppress(ProcessLookupError):
                            signal_daemon(pid, signal.SIGKILL)
        for instance in self.pop3.values():
            instance.stop()
        if remove:
            shutil.rmtree(self.dir, ignore_errors=True)


def pid_path_in(directory: str, name: str) -> str:
    return os.path.join(directory, "state", f"{name}.pid")


@dataclass(frozen=True)
class Answer:
    time: float  # monotonic
    server: str | None  # "master", "slave", or None when neither answered


class Poller(threading.Thread):
    """A POP3 client: every `interval` s a full exchange (greeting, USER, PASS, STAT), with the
    master first and the slave second, like a client with two addresses. Records who answered."""

    def __init__(
        self, pair: LoopbackPair, interval: float = 0.01, timeout: float = 0.5, through: tuple[str, int] | None = None
    ) -> None:
        """`through`: one address to poll (a load balancer's frontend) instead of master, then slave."""
        super().__init__(daemon=True, name="poller")
        self.pair, self.interval, self.timeout = pair, interval, timeout
        self.targets = [through] if through else [(pair.addresses[role], pair.pop3[role].port) for role in Role]
        self.answers: list[Answer] = []
        self._stop_event = threading.Event()

    def run(self) -> None:
        while not self._stop_event.is_set():
            started = time.monotonic()
            who = None
            for host, port in self.targets:
                outcome = pop3_probe(host, port, self.timeout, USER, PASSWORD)
                if outcome.ok:
                    who = "master" if "POP3 master ready" in outcome.detail else "slave"
                    break
            self.answers.append(Answer(time.monotonic(), who))
            self._stop_event.wait(max(0.0, self.interval - (time.monotonic() - started)))

    def stop(self) -> None:
        self._stop_event.set()
        self.join(5)

    def first(self, server: str, after: float) -> float | None:
        return next((a.time for a in self.answers if a.server == server and a.time >= after), None)

    def count(self, server: str, after: float) -> int:
        return sum(1 for a in self.answers if a.server == server and a.time >= after)
