"""failover/deathwatch.py with real processes: a death ends the wait at once, and only once."""

from __future__ import annotations

import os
import signal
import subprocess
import threading
import time

from failover.deathwatch import DeathWatch

WAIT = 10.0  # the interval a wait would sleep without a death: far longer than a kill takes


def daemonized_sleep() -> int:
    """A process that is not our child (as the service is not lhcd's): its parent exits at once."""
    out = subprocess.run(["sh", "-c", "sleep 60 >/dev/null 2>&1 & echo $!"], capture_output=True, text=True)
    return int(out.stdout.strip())


def test_a_kill_ends_the_wait_at_once_then_the_watch_only_sleeps() -> None:
    pid = daemonized_sleep()
    watch, stop = DeathWatch(), threading.Event()
    threading.Timer(0.3, os.kill, (pid, signal.SIGKILL)).start()
    start = time.monotonic()
    assert watch.wait(pid, WAIT, stop) is True
    assert time.monotonic() - start < WAIT / 2  # woken by the death, not by the interval
    again = time.monotonic()
    assert watch.wait(pid, 0.3, stop) is False  # reported once: an unreaped corpse does not spin
    assert time.monotonic() - again >= 0.25
    watch.close()


def test_a_live_process_lets_the_interval_run_out() -> None:
    proc = subprocess.Popen(["sleep", "60"])
    try:
        start = time.monotonic()
        assert DeathWatch().wait(proc.pid, 0.3, threading.Event()) is False
        assert time.monotonic() - start >= 0.25
    finally:
        proc.kill()
        proc.wait()


def test_without_a_pid_it_sleeps_and_stop_cuts_the_sleep_short() -> None:
    stop = threading.Event()
    threading.Timer(0.2, stop.set).start()
    start = time.monotonic()
    assert DeathWatch().wait(None, WAIT, stop) is False
    assert time.monotonic() - start < WAIT / 2


def test_a_pid_that_is_already_gone_is_not_waited_on() -> None:
    proc = subprocess.Popen(["true"])
    proc.wait()
    start = time.monotonic()
    assert DeathWatch().wait(proc.pid, 0.2, threading.Event()) is False  # the check reports it
    assert time.monotonic() - start >= 0.15
