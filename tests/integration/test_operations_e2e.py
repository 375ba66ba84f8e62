"""The operator's controls end to end, with real Dovecot and real agent processes: triggers,
the local restart limit, hooks, hold, switchover and switchback (issue 5)."""

from __future__ import annotations

import itertools
import os
import signal
import subprocess
import threading
import time
from collections.abc import Callable
from pathlib import Path

import psutil
import pytest

from failover.lab.pair import LoopbackPair, Poller
from failover.machine import Role
from failover.probes import pop3_probe
from tests.harness.pair import start_pair, wait_heartbeat_seen
from tests.integration.test_fencing_e2e import reasons, with_haproxy

M, S = Role.MASTER, Role.SLAVE
MakePair = Callable[..., LoopbackPair]


def eventually(check: Callable[[], bool], timeout: float = 20, what: str = "") -> None:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if check():
            return
        time.sleep(0.05)
    raise TimeoutError(f"not within {timeout} s: {what}")


def stays(pair: LoopbackPair, seconds: float) -> None:
    """Nothing fails over for `seconds`: the slave keeps term 0 and its service off."""
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        assert pair.state(S).get("term", 0) == 0, pair.state(S)
        assert not pair.pop3[S].running()
        time.sleep(0.1)


def stop_cleanly(pair: LoopbackPair) -> None:
    """An operator stops the master's Dovecot with its own stop script (the pid file goes away)."""
    env = dict(os.environ, FAILOVER_ROLE="master")
    subprocess.run(["./pop3-ctl", "stop"], cwd=pair.dir, env=env, check=True, capture_output=True, timeout=30)


# ---------------------------------------------------------------------------------------------- restarts


@pytest.mark.parametrize(("deaths", "fails_over"), [(2, False), (3, True)])
def test_the_restart_limit_is_counted(make_pair: MakePair, deaths: int, fails_over: bool) -> None:
    """RESTART_LIMIT 2: lhcd restarts the service twice; the third death in the window is an
    abnormal shutdown, and only that makes the slave take over."""
    # Dovecot's start and the check get room on a loaded machine: a slow restart must not count as a death
    pair = make_pair(
        RESTART_LIMIT=2, RESTART_WINDOW=600.0, SCRIPT_TIMEOUT=5.0, SERVICE_CHECK_TIMEOUT=3.0, SHUTDOWN_ACK_TIMEOUT=10.0
    )
    for death in range(deaths):
        restarted = sum("after a local restart" in e["reason"] for e in pair.journal(M))
        eventually(lambda: pair.pop3[M].running(), what="the master's Dovecot runs")
        assert restarted == death
        pair.pop3[M].kill(signal.SIGKILL)
        if death < 2:
            eventually(
                lambda d=death: sum("after a local restart" in e["reason"] for e in pair.journal(M)) == d + 1,  # type: ignore[misc]
                what=f"restart {death + 1}",
            )
    if fails_over:
        pair.wait_for(S, "ACTIVE", timeout=30)
        assert "after 2 local restarts" in reasons(pair, M)
        claim = next(e for e in pair.journal(S) if e["to"] in ("FAILING_OVER", "PREPARING"))
        assert "abnormal shutdown" in claim["reason"]
    else:
        stays(pair, 3.0)
        assert pair.state(M)["state"] == "ACTIVE" and pair.pop3[M].running()


# ---------------------------------------------------------------------------------------------- triggers


@pytest.mark.parametrize("enabled", [True, False])
def test_the_abnormal_shutdown_trigger(make_pair: MakePair, enabled: bool) -> None:
    pair = make_pair(TRIGGER_ABNORMAL_SHUTDOWN=enabled, TRIGGER_NORMAL_SHUTDOWN=True)  # not manual mode
    pair.pop3[M].kill(signal.SIGKILL)
    if enabled:
        pair.wait_for(S, "ACTIVE", timeout=30)
        assert "abnormal shutdown" in next(e["reason"] for e in pair.journal(S) if e["to"] == "FAILING_OVER")
        return
    stays(pair, 3.0)
    assert "the abnormal_shutdown trigger is disabled" in pair.state(S)["reason"]
    status = pair.failover("status").stdout
    assert "failover triggers: normal_shutdown" in status and "ALERT" in Path(pair.dir, "log", "rhcd.log").read_text()


@pytest.mark.parametrize("enabled", [True, False])
def test_the_normal_shutdown_trigger(make_pair: MakePair, enabled: bool) -> None:
    # A clean stop is told from a crash once Dovecot's process is gone; lhcd waits for that up to
    # SERVICE_CHECK_TIMEOUT, and a loaded CI machine once took over QUICK's 1.5 s to stop Dovecot.
    pair = make_pair(
        TRIGGER_NORMAL_SHUTDOWN=enabled, RESTART_LIMIT=2, SERVICE_CHECK_TIMEOUT=4.0, SHUTDOWN_ACK_TIMEOUT=8.0
    )
    stop_cleanly(pair)
    if enabled:
        pair.wait_for(S, "ACTIVE", timeout=30)
        assert "normal shutdown" in next(e["reason"] for e in pair.journal(S) if e["to"] == "FAILING_OVER")
        return
    stays(pair, 3.0)
    assert not pair.pop3[M].running()  # a clean stop is an operator's: not restarted
    assert "normal shutdown" in reasons(pair, M) and "not restarting" in reasons(pair, M)


@pytest.mark.parametrize("enabled", [True, False])
def test_the_normal_shutdown_trigger_on_the_masters_agents(make_pair: MakePair, enabled: bool) -> None:
    pair = make_pair(TRIGGER_NORMAL_SHUTDOWN=enabled)
    pair.stop_agents(M)  # the last heartbeat says so; the service itself still runs
    if enabled:
        claimed = pair.wait_for(S, ("FAILING_OVER", "FENCING"), timeout=30)
        assert claimed["term"] == 1 and "agents were stopped cleanly" in reasons(pair, S)
        return
    stays(pair, 3.0)
    assert pair.pop3[M].running()


@pytest.mark.parametrize("enabled", [True, False])
def test_the_communication_loss_trigger(make_pair: MakePair, enabled: bool) -> None:
    pair = make_pair(TRIGGER_COMMUNICATION_LOSS=enabled)
    pair.kill_daemon("lhcd")  # no goodbye, no heartbeat
    pair.pop3[M].kill(signal.SIGKILL)
    if enabled:
        claimed = pair.wait_for(S, ("FAILING_OVER", "FENCING", "STARTING", "ACTIVE"), timeout=30)
        assert claimed["term"] == 1 and "communication loss" in reasons(pair, S)
        return
    stays(pair, 4.0)
    assert "the communication_loss trigger is disabled" in pair.state(S)["reason"]


def test_manual_mode_is_said_plainly_and_never_moves(make_pair: MakePair) -> None:
    pair = make_pair(TRIGGER_ABNORMAL_SHUTDOWN=False)
    check = pair.failover("check")
    assert check.returncode == 0 and "MANUAL MODE" in check.stdout and "manual mode" in check.stderr
    pair.pop3[M].kill(signal.SIGKILL)
    stays(pair, 3.0)
    assert "manual mode" in pair.state(S)["reason"]
    assert "MANUAL MODE" in pair.failover("status").stdout


# ---------------------------------------------------------------------------------------------- hooks

HOOK = """#!/bin/sh
printf '%s|%s|%s|%s|%s|%s|%s|%s\\n' "$1" "$FAILOVER_ROLE" "$FAILOVER_EVENT" "$FAILOVER_FROM_STATE" \\
    "$FAILOVER_TO_STATE" "$FAILOVER_TERM" "$FAILOVER_PEER" "$FAILOVER_REASON" >> hooks.log
"""


def hook_lines(pair: LoopbackPair) -> list[list[str]]:
    path = Path(pair.dir, "hooks.log")
    return [line.split("|") for line in path.read_text().splitlines()] if path.exists() else []


def test_hooks_run_in_order_with_the_event_in_their_environment(make_pair: MakePair) -> None:
    pair = make_pair(start=False)
    Path(pair.dir, "hook").write_text(HOOK)
    os.chmod(Path(pair.dir, "hook"), 0o755)
    pair.write_config(
        BEFORE_FAILOVER_SCRIPTS=["./hook before"],
        AFTER_FAILOVER_SCRIPTS=["./hook after"],
        NOTIFY_SCRIPTS=["./hook notify"],
        TRIGGER_ABNORMAL_SHUTDOWN_SCRIPTS=["./hook trigger"],
    )
    start_pair(pair)
    pair.pop3[M].kill(signal.SIGKILL)
    pair.wait_for(S, "ACTIVE", timeout=30)
    eventually(lambda: any(line[0] == "after" for line in hook_lines(pair)), what="the after hook")
    lines = hook_lines(pair)
    order = [(line[0], line[1]) for line in lines if line[0] != "notify"]
    assert order == [("trigger", "slave"), ("before", "slave"), ("before", "master"), ("after", "slave")], lines
    trigger = lines[[line[0] for line in lines].index("trigger")]
    assert trigger[2] == "before_failover" and trigger[4] == "PREPARING" and trigger[6] == "127.0.0.1"
    after = next(line for line in lines if line[0] == "after")
    assert after[4] == "ACTIVE" and after[5] == "1" and "answers on this host" in after[7]
    eventually(lambda: any(line[:2] == ["notify", "slave"] and line[4] == "ACTIVE" for line in hook_lines(pair)))
    notified = [(line[1], line[3], line[4]) for line in hook_lines(pair) if line[0] == "notify"]
    for expected in [
        ("slave", "SUSPECT", "PREPARING"),
        ("master", "ACTIVE", "STOPPING"),
        ("slave", "STARTING", "ACTIVE"),
    ]:
        assert expected in notified, notified
    assert "scripts:after_failover" in {e["event"] for e in pair.journal(S)}


def test_a_hanging_before_hook_is_killed_and_stops_the_failover(make_pair: MakePair) -> None:
    pair = make_pair(start=False)
    pair.write_config(BEFORE_FAILOVER_SCRIPTS=["sleep 61.5"])
    start_pair(pair)
    pair.pop3[M].kill(signal.SIGKILL)
    held = pair.wait_for(S, "MAINTENANCE", timeout=30)
    assert "BEFORE_FAILOVER_SCRIPTS failed" in held["reason"] and "after its 2.0 s timeout" in held["reason"]
    assert held["term"] == 0 and not pair.pop3[S].running()
    assert not [p for p in psutil.process_iter(["cmdline"]) if p.info["cmdline"] == ["sleep", "61.5"]]
    note = next(e for e in pair.journal(S) if e["event"] == "scripts:before_failover")
    assert note["reason"].startswith("FAILED") and "timeout" in note["reason"]
    assert "HELD by failover (hook failed)" in pair.failover("status").stdout


# ---------------------------------------------------------------------------------------------- hold


def test_a_hold_survives_restarts_and_blocks_a_failover_until_released(make_pair: MakePair) -> None:
    pair = make_pair()
    held = pair.failover("hold", "--reason", "kernel update")
    assert held.returncode == 0, held.stderr
    for role in Role:
        pair.stop_agents(role)
        pair.start_agents(role)
    assert pair.state(M)["state"] == pair.state(S)["state"] == "MAINTENANCE"
    status = pair.failover("status").stdout
    assert status.count("HELD by") == 2 and "kernel update" in status
    pair.pop3[M].kill(signal.SIGKILL)  # would fail over at once if not held
    stays(pair, 3.0)
    assert not pair.pop3[M].running()  # no automatic restart either
    released = pair.failover("release")
    assert released.returncode == 0, released.stderr
    pair.wait_for(S, "ACTIVE", timeout=30)  # the failover that was held back happens now


# ---------------------------------------------------------------------------------------------- switchover, switchback


class BothWatcher(threading.Thread):
    """Asks both hosts' POP3 ports in turn, all the time: any round where both answer is an overlap."""

    def __init__(self, pair: LoopbackPair) -> None:
        super().__init__(daemon=True)
        self.pair, self.rounds, self.overlaps = pair, 0, 0
        self.done = threading.Event()

    def run(self) -> None:
        while not self.done.is_set():
            up = [pop3_probe("127.0.0.1", self.pair.pop3[r].port, 0.5).ok for r in Role]
            self.rounds += 1
            self.overlaps += all(up)
            time.sleep(0.02)  # a round every ~25 ms: enough to catch an overlap, light on Dovecot

    def stop(self) -> None:
        self.done.set()
        self.join(5)


def test_switchover_then_switchback_never_serves_from_both(make_pair: MakePair) -> None:
    # Dovecot's stop waits for its busy login processes (HAProxy, the poller and the watcher all
    # connect): on a loaded CI machine that took over QUICK's 1.5 s service check once.
    pair = make_pair(start=False, SERVICE_CHECK_TIMEOUT=4.0, SHUTDOWN_ACK_TIMEOUT=8.0)
    haproxy = with_haproxy(pair)
    try:
        start_pair(pair)
        watcher, poller = BothWatcher(pair), Poller(pair, through=haproxy.frontend)
        watcher.start()
        poller.start()
        over = pair.failover("switchover", "--yes", "--reason", "planned move")
        assert over.returncode == 0, over.stdout + over.stderr
        assert pair.state(S)["state"] == "ACTIVE" and pair.state(M)["state"] == "INACTIVE", pair.logs()
        assert haproxy.runtime().status(M) == "MAINT"
        dry = pair.failover("switchback", "--dry-run")
        assert dry.returncode == 0 and "dry run" in dry.stdout and pair.state(S)["state"] == "ACTIVE"
        back = pair.failover("switchback", "--yes", timeout=120)
        assert back.returncode == 0, back.stdout + back.stderr
        time.sleep(1.0)
        watcher.stop()
        poller.stop()
        master, slave = pair.state(M), pair.state(S)
        assert (master["state"], master["term"], slave["state"]) == ("ACTIVE", 2, "STANDBY")
        assert haproxy.runtime().status(M) != "MAINT" and pair.pop3[M].running() and not pair.pop3[S].running()
        assert watcher.rounds > 50 and watcher.overlaps == 0
        served = [a.server for a in poller.answers if a.server]
        changes = [b for a, b in itertools.pairwise(served) if a != b]
        assert changes == ["slave", "master"], changes  # one move over, one move back
        assert "switchback" in reasons(pair, M) and "switchover requested" in reasons(pair, S)
        assert not Path(pair.dir, "state", "switchback.json").exists()
    finally:
        haproxy.stop()


def test_a_switchover_lets_a_graceful_stop_longer_than_the_lease_run_to_its_end(make_pair: MakePair) -> None:
    """A planned move grants the master's lease until its ACK: a shutdown script that takes
    twice LEASE_TIME runs to its end, and the lease guard kills nothing."""
    pair = make_pair(start=False, LEASE_TIME=0.5, SCRIPT_TIMEOUT=3.0, SHUTDOWN_ACK_TIMEOUT=8.0)
    slow = Path(pair.dir, "slow-stop")
    slow.write_text("#!/bin/sh\nsleep 1\necho slow stop done\n")
    slow.chmod(0o755)
    pair.write_config(SHUTDOWN_SCRIPTS=["./slow-stop", "./pop3-ctl stop"])
    haproxy = with_haproxy(pair)
    try:
        start_pair(pair)
        over = pair.failover("switchover", "--yes", "--reason", "planned move")
        assert over.returncode == 0, over.stdout + over.stderr
        assert pair.state(S)["state"] == "ACTIVE" and pair.state(M)["state"] == "INACTIVE", pair.logs()
        events = [e.get("event") for e in pair.journal(M)]
        assert "lease-expired" not in events and "hard-stop" not in events, pair.journal(M)
        assert "./slow-stop: exit 0" in reasons(pair, M)
    finally:
        haproxy.stop()


def test_an_interrupted_switchback_resumes_from_its_persisted_step(make_pair: MakePair) -> None:
    pair = make_pair()
    pair.pop3[M].kill(signal.SIGKILL)
    pair.wait_for(S, "ACTIVE", timeout=30)
    pair.pop3[M].kill(signal.SIGKILL)  # "repair": nothing to do, the master's service is down
    first = pair.failover("switchback", answers="y\nn\n")
    assert first.returncode == 1 and "resumes here" in first.stderr, first.stdout + first.stderr
    assert pair.state(S)["state"] == "MAINTENANCE" and pair.state(M)["state"] == "INACTIVE"
    assert not pair.pop3[S].running() and not pair.pop3[M].running()
    again = pair.failover("switchback", "--yes", timeout=120)
    assert again.returncode == 0, again.stdout + again.stderr
    assert "resuming the switchback" in again.stdout and "[done] stop the service on the slave" in again.stdout
    assert pair.state(M)["state"] == "ACTIVE" and pair.state(S)["state"] == "STANDBY"
    wait_heartbeat_seen(pair)
    pair.pop3[M].kill(signal.SIGKILL)  # and the pair fails over again, in a new term
    assert pair.wait_for(S, "ACTIVE", timeout=30)["term"] == 3
