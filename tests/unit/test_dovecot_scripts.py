"""scripts/dovecot-start.sh and dovecot-stop.sh against a real Dovecot, as the agents run them."""

from __future__ import annotations

import os
import shutil
import signal
from collections.abc import Iterator

import pytest

from failover.lab.pop3 import Pop3Instance, dovecot_available, free_port, make_world_readable_dir
from failover.probes import pop3_probe
from failover.scripts import run_script


@pytest.fixture
def dovecot() -> Iterator[Pop3Instance]:
    """A started Dovecot, whatever FAILOVER_TEST_POP3 says: these are its scripts."""
    if not dovecot_available():
        pytest.fail("Dovecot is not installed: run scripts/setup.sh")
    base = make_world_readable_dir("failover-test-scripts-")
    instance = Pop3Instance(os.path.join(base, "dovecot"), free_port(), "dovecot", kind="dovecot")
    os.chmod(instance.dir, 0o755)
    try:
        instance.start()
        yield instance
    finally:
        instance.stop()
        shutil.rmtree(base, ignore_errors=True)


def test_start_is_idempotent(dovecot: Pop3Instance) -> None:
    pid = dovecot.pid()
    again = run_script(dovecot.start_command(), 10, dovecot.dir)
    assert again.ok and "already running" in again.output
    assert dovecot.pid() == pid


def test_stop_closes_the_port_and_a_second_stop_is_a_no_op(dovecot: Pop3Instance) -> None:
    stop = run_script(dovecot.stop_command(), 10, dovecot.dir)
    assert stop.ok and "stopped" in stop.output, stop.output
    assert pop3_probe(dovecot.address, dovecot.port, 2.0).refused
    assert not dovecot.running()
    again = run_script(dovecot.stop_command(), 10, dovecot.dir)
    assert again.ok and "not running" in again.output


def test_a_master_that_does_not_exit_on_sigterm_is_killed_within_the_script_timeout(dovecot: Pop3Instance) -> None:
    # A stopped master keeps its SIGTERM pending, like a master sleeping while its children finish:
    # it still holds the POP3 port. The grace is half of the 2 s timeout the script is given.
    pid = dovecot.pid()
    assert pid is not None
    os.kill(pid, signal.SIGSTOP)
    stop = run_script(dovecot.stop_command(), 2.0, dovecot.dir)
    assert stop.ok, stop.summary() + stop.output
    assert "SIGKILL after a 1 s grace" in stop.output
    assert pop3_probe(dovecot.address, dovecot.port, 2.0).refused
    assert not dovecot.running()
    # a stop asked for is clean even when it took SIGKILL: no pid file is left to read as a crash
    assert not os.path.exists(dovecot.pidfile)


def test_a_bad_grace_is_refused_and_stops_nothing(dovecot: Pop3Instance) -> None:
    stop = run_script(f"{dovecot.stop_command()} 1.5s", 10, dovecot.dir)
    assert stop.returncode == 2 and "GRACE_SECONDS must be a number of seconds, not '1.5s'" in stop.output
    assert dovecot.running() and pop3_probe(dovecot.address, dovecot.port, 2.0).ok
