"""Pid files: a locked pid file without a valid pid must never give a number that reaches os.kill.

The review found `running_pid()` returning -1 while a daemon held its lock but had not written
its pid yet, and `failover stop` passing it to os.kill: kill(-1, SIGTERM) signals every process.
These tests hold the lock from a real second process, as a starting daemon does.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from click.testing import CliRunner

from failover import daemon
from failover.cli import main
from failover.daemon import PidUnknown, running_pid, signal_daemon
from tests.unit.test_cli import confdir  # noqa: F401 (a fixture)

HOLDER = """
import fcntl, os, sys, time
fd = os.open(sys.argv[1], os.O_RDWR | os.O_CREAT, 0o644)
fcntl.flock(fd, fcntl.LOCK_EX)
os.ftruncate(fd, 0)
print("locked", flush=True)
time.sleep(float(sys.argv[3]))
if sys.argv[2] != "none":
    os.write(fd, sys.argv[2].encode() + b"\\n")
time.sleep(60)
"""


@contextmanager
def lock_holder(path: Path, content: str, write_after: float = 0.0) -> Iterator[subprocess.Popen[bytes]]:
    """A process that holds `path` locked and writes `content` into it `write_after` s later."""
    proc = subprocess.Popen(
        [sys.executable, "-c", HOLDER, str(path), content, str(write_after)], stdout=subprocess.PIPE
    )
    try:
        assert proc.stdout is not None and proc.stdout.readline() == b"locked\n"
        yield proc
    finally:
        proc.kill()
        proc.wait()


@pytest.fixture
def no_proc_locks(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """Where the kernel cannot name the lock holder (no /proc/locks): the pid file's text."""
    monkeypatch.setattr(daemon, "LOCKS", str(tmp_path / "no-such-locks"))


@pytest.mark.parametrize("content", ["none", "-1", "0", "1", "garbage"])
@pytest.mark.usefixtures("no_proc_locks")
def test_a_locked_pid_file_without_a_valid_pid_raises(tmp_path: Path, content: str) -> None:
    path = tmp_path / "lhcd.pid"
    with lock_holder(path, content), pytest.raises(PidUnknown, match="names no valid pid"):
        running_pid(str(path))


@pytest.mark.usefixtures("no_proc_locks")
def test_the_pid_written_just_after_the_lock_is_found(tmp_path: Path) -> None:
    path = tmp_path / "lhcd.pid"
    with lock_holder(path, "4242", write_after=0.3):
        assert running_pid(str(path)) == 4242


@pytest.mark.parametrize("content", ["none", "-1", "4242"])
def test_the_kernel_names_the_lock_holder_whatever_the_file_says(tmp_path: Path, content: str) -> None:
    # Between its flock and its write, a new daemon's pid file still names the previous daemon,
    # whose pid may belong to another process by now: /proc/locks names the real holder.
    path = tmp_path / "lhcd.pid"
    with lock_holder(path, content, write_after=0.0) as holder:
        assert running_pid(str(path)) == holder.pid


def test_an_unlocked_or_missing_pid_file_means_not_running(tmp_path: Path) -> None:
    assert running_pid(str(tmp_path / "missing.pid")) is None
    (tmp_path / "stale.pid").write_text("-1\n")
    assert running_pid(str(tmp_path / "stale.pid")) is None


@pytest.mark.parametrize("pid", [-1, 0, 1])
def test_signal_daemon_refuses_pids_that_are_not_one_other_process(pid: int) -> None:
    with pytest.raises(PidUnknown):
        signal_daemon(pid, signal.SIGTERM)
    with pytest.raises(PidUnknown):
        signal_daemon(os.getpid(), signal.SIGTERM)


@pytest.mark.usefixtures("no_proc_locks")
def test_failover_stop_sends_no_signal_to_a_daemon_whose_pid_is_unknown(confdir: Path) -> None:  # noqa: F811
    state = confdir / "state"
    state.mkdir(mode=0o700)
    # A bystander in our own process group: kill(-1) or kill(0) would reach it.
    bystander = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        with lock_holder(state / "lhcd.pid", "-1") as holder:
            started = time.monotonic()
            result = CliRunner().invoke(main, ["--config", str(confdir / "failover_config.py"), "stop", "master"])
            assert result.exit_code == 1, result.output
            assert "names no valid pid" in result.output
            assert time.monotonic() - started < 10
            assert holder.poll() is None and bystander.poll() is None  # nothing was signalled
    finally:
        bystander.kill()
        bystander.wait()
