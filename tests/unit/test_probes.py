"""failover/probes.py against a real POP3 server, a closed port, a silent server, a zombie."""

from __future__ import annotations

import socket
import subprocess
import sys
import time
from pathlib import Path

from failover.lab.pop3 import PASSWORD, USER, Pop3Instance, free_port
from failover.probes import command_probe, pop3_probe, process_alive, tcp_probe


def test_pop3_probe_greeting_and_login(pop3: Pop3Instance) -> None:
    outcome = pop3_probe("127.0.0.1", pop3.port, 5)
    assert outcome.ok and "primary ready" in outcome.detail and outcome.latency < 5
    outcome = pop3_probe("127.0.0.1", pop3.port, 5, USER, PASSWORD)
    assert outcome.ok and "+OK 3 " in outcome.detail  # STAT of the three messages


def test_pop3_probe_with_a_wrong_password_fails(pop3: Pop3Instance) -> None:
    outcome = pop3_probe("127.0.0.1", pop3.port, 10, USER, "wrong")
    assert not outcome.ok and outcome.detail.startswith("PASS: '-ERR") and not outcome.refused


def test_closed_port_is_refused() -> None:
    outcome = pop3_probe("127.0.0.1", free_port(), 2)
    assert not outcome.ok and outcome.refused and "refused" in outcome.detail
    assert tcp_probe("127.0.0.1", free_port(), 2).refused


def test_a_silent_server_times_out_within_the_probe_timeout() -> None:
    with socket.create_server(("127.0.0.1", 0)) as silent:
        start = time.monotonic()
        outcome = pop3_probe("127.0.0.1", silent.getsockname()[1], 0.3)
        assert not outcome.ok and not outcome.refused and "no answer" in outcome.detail
        assert time.monotonic() - start < 2


def test_a_frozen_pop3_server_is_not_refused(pop3: Pop3Instance) -> None:
    import signal

    pop3.kill(signal.SIGSTOP)
    try:
        outcome = pop3_probe("127.0.0.1", pop3.port, 0.3)
        assert not outcome.ok and not outcome.refused
    finally:
        pop3.kill(signal.SIGCONT)
    assert pop3_probe("127.0.0.1", pop3.port, 5).ok


def test_process_alive_follows_the_pid_file(pop3: Pop3Instance, tmp_path: Path) -> None:
    assert process_alive(pop3.pidfile)[0]
    pop3.kill()
    deadline = time.monotonic() + 5
    while process_alive(pop3.pidfile)[0] and time.monotonic() < deadline:
        time.sleep(0.01)
    alive, detail = process_alive(pop3.pidfile)
    assert not alive and ("gone" in detail or "zombie" in detail)
    assert process_alive(str(tmp_path / "nope.pid")) == (False, f"no pid file {tmp_path}/nope.pid")


def test_a_zombie_counts_as_dead(tmp_path: Path) -> None:
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    time.sleep(0.5)  # exited, not yet reaped: a zombie
    (tmp_path / "z.pid").write_text(f"{child.pid}\n")
    alive, detail = process_alive(str(tmp_path / "z.pid"))
    assert not alive and "zombie" in detail
    child.wait()


def test_command_probe(tmp_path: Path) -> None:
    assert command_probe("true", 5, str(tmp_path)).ok
    assert not command_probe("exit 2", 5, str(tmp_path)).ok
