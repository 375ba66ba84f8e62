"""failover/scripts.py with real processes: order, failure, timeouts that kill the whole group."""

from __future__ import annotations

import os
import time
from pathlib import Path

from failover.scripts import run_script, run_scripts


def alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except FileNotFoundError:
        return False
    return state != "Z"


def test_scripts_run_in_order_in_the_directory_with_the_environment(tmp_path: Path) -> None:
    result = run_scripts(
        ["echo one >> log", "echo $FAILOVER_TERM >> log; pwd >> log"], 5, str(tmp_path), {"FAILOVER_TERM": "7"}
    )
    assert result.ok and len(result.results) == 2
    assert (tmp_path / "log").read_text() == f"one\n7\n{tmp_path}\n"
    assert "exit 0" in result.summary()


def test_the_first_failure_stops_the_list_and_is_reported(tmp_path: Path) -> None:
    result = run_scripts(["echo oops >&2; exit 3", "touch ran"], 5, str(tmp_path))
    assert not result.ok and len(result.results) == 1
    assert result.results[0].returncode == 3
    assert (
        result.summary()
        == "echo oops >&2; exit 3: exit 3 in " + f"{result.results[0].duration:.2f} s" + " (last output: oops)"
    )
    assert not (tmp_path / "ran").exists()


def test_a_hung_script_is_killed_with_its_whole_group_and_reported(tmp_path: Path) -> None:
    start = time.monotonic()
    result = run_script("echo started; sleep 300 & echo $! > child; wait", 0.5, str(tmp_path))
    took = time.monotonic() - start
    assert result.timed_out and not result.ok and result.returncode is None
    assert took < 5
    assert "killed after its" in result.summary() and "started" in result.output
    child = int((tmp_path / "child").read_text())
    time.sleep(0.1)
    assert not alive(child), "the script's background child survived the timeout"


def test_a_script_ignoring_sigterm_is_killed(tmp_path: Path) -> None:
    result = run_script("trap '' TERM; sleep 300", 0.3, str(tmp_path))
    assert result.timed_out and result.duration < 5


def test_a_daemon_started_by_a_script_does_not_hold_the_run_open(tmp_path: Path) -> None:
    start = time.monotonic()
    result = run_script("setsid sleep 30 & echo $! > daemon; echo done", 10, str(tmp_path))
    assert result.ok and time.monotonic() - start < 3 and "done" in result.output
    daemon = int((tmp_path / "daemon").read_text())
    assert alive(daemon)  # started on purpose: not killed by a successful run
    os.kill(daemon, 9)


def test_only_the_tail_of_a_huge_output_is_kept(tmp_path: Path) -> None:
    result = run_script("yes line | head -c 1000000; echo; echo the-end", 10, str(tmp_path))
    assert result.ok and len(result.output) <= 4096 and result.output.strip().endswith("the-end")


def test_every_script_finds_its_own_timeout_in_its_environment(tmp_path: Path) -> None:
    result = run_script("echo $FAILOVER_SCRIPT_TIMEOUT", 2.5, str(tmp_path))
    assert result.ok and result.output.strip() == "2.5"
