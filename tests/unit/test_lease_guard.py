"""The master's lease guard and its hard stop against real processes (a real Dovecot as the
service) and a real HAProxy; the stream's sockets on loopback with real datagrams."""

from __future__ import annotations

import dataclasses
import logging
import os
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import psutil
import pytest

from failover.beatlink import BeatLink
from failover.config import Config, load
from failover.hardstop import kill_tree
from failover.heartbeat import GRANTS_LEASE, LeaseTimes, Received, encode
from failover.lab.haproxy import HAProxyInstance
from failover.lab.pop3 import Pop3Instance, free_port
from failover.lease_guard import LEASE_FILE, LeaseGuard, read_lease, write_lease
from failover.machine import Event, LeaseExpired, NodeState, Role, State
from tests.unit.test_cli import CONFIG, write_scripts_and_secret

LOG = logging.getLogger("test")


@pytest.fixture
def config(tmp_path: Path) -> Config:
    write_scripts_and_secret(tmp_path)
    (tmp_path / "failover_config.py").write_text(CONFIG)
    return load(tmp_path / "failover_config.py")


def _alive(p: psutil.Process) -> bool:
    try:
        return p.is_running() and p.status() != psutil.STATUS_ZOMBIE
    except psutil.Error:
        return False


def test_kill_tree_kills_the_service_and_every_process_below_it() -> None:
    top = subprocess.Popen(["sh", "-c", "sleep 300 & sleep 300 & wait"], start_new_session=True)
    try:
        end = time.monotonic() + 5
        while len(psutil.Process(top.pid).children(recursive=True)) < 2 and time.monotonic() < end:
            time.sleep(0.02)
        processes = [psutil.Process(top.pid), *psutil.Process(top.pid).children(recursive=True)]
        ok, detail = kill_tree(top.pid, 2.0)
        assert ok and "killed 3 process(es)" in detail, detail
        top.wait(5)
        assert not any(_alive(p) for p in processes)
    finally:
        if top.poll() is None:
            top.kill()


def test_kill_tree_refuses_init_and_lhcd_itself() -> None:
    assert kill_tree(1, 0.1) == (False, "refusing to kill pid 1 (SERVICE_PIDFILE names no service)")
    assert kill_tree(os.getpid(), 0.1)[0] is False


# ---------------------------------------------------------------------------- the guard


@pytest.fixture
def service(pop3_factory: Callable[[str], Pop3Instance]) -> Pop3Instance:
    instance = pop3_factory("master")
    instance.start()
    return instance


@pytest.fixture
def haproxy(service: Pop3Instance, pop3_factory: Callable[[str], Pop3Instance]) -> Iterator[HAProxyInstance]:
    slave = pop3_factory("slave")
    slave.start()
    instance = HAProxyInstance(
        os.path.join(service.dir, "..", "haproxy"),
        ("127.0.0.1", free_port()),
        {Role.MASTER: ("127.0.0.1", service.port), Role.SLAVE: ("127.0.0.1", slave.port)},
    )
    instance.start()
    yield instance
    instance.stop()


class Guarded:
    """A LeaseGuard over the real service, run in its two threads; what it fed and journaled."""

    def __init__(self, config: Config, service: Pop3Instance, lb: HAProxyInstance | None, lease: float) -> None:
        config = dataclasses.replace(config, SERVICE_PIDFILE=service.pidfile, HARD_STOP_TIMEOUT=2.0)
        self.events: list[Event] = []
        self.notes: list[str] = []
        node = NodeState(Role.MASTER, State.ACTIVE)
        self.guard = LeaseGuard(
            config,
            LeaseTimes(lease, 2.0),
            None if lb is None else lb.runtime(),
            LOG,
            lambda: node,
            self.events.append,
            lambda event, reason: self.notes.append(event),
            dict,
        )
        self.stop = threading.Event()
        loops = (self.guard.guard_loop, self.guard.renew_loop)
        self.threads = [threading.Thread(target=loop, args=(self.stop,)) for loop in loops]
        for thread in self.threads:
            thread.start()

    def expired(self, timeout: float) -> LeaseExpired | None:
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            found = [e for e in self.events if isinstance(e, LeaseExpired)]
            if found:
                return found[0]
            time.sleep(0.02)
        return None

    def killed(self, timeout: float) -> None:
        """Until the guard journaled its kill (it tells the machine first, then kills, then journals)."""
        end = time.monotonic() + timeout
        while len(self.notes) < 2 and time.monotonic() < end:
            time.sleep(0.02)

    def close(self) -> None:
        self.stop.set()
        self.guard._wake.set()
        for thread in self.threads:
            thread.join(5)


def test_with_no_renewal_the_lease_ends_and_the_service_is_killed(config: Config, service: Pop3Instance) -> None:
    begun = time.monotonic()  # before the guard exists: its start lease runs from its making
    guarded = Guarded(config, service, None, lease=0.4)
    try:
        expired = guarded.expired(5)
        assert expired is not None and "killed" in expired.detail, guarded.events
        assert 0.4 <= time.monotonic() - begun < 3
        guarded.killed(5)
        assert guarded.notes == ["lease-expired", "hard-stop"]  # journaled once it is done
        assert not service.running()
    finally:
        guarded.close()


def test_the_load_balancer_keeps_the_lease_of_a_master_it_sends_clients_to(
    config: Config, service: Pop3Instance, haproxy: HAProxyInstance
) -> None:
    guarded = Guarded(config, service, haproxy, lease=0.4)
    try:
        assert guarded.expired(2.5) is None, guarded.events
        assert guarded.guard.renewed_by == "load-balancer" and service.running()
    finally:
        guarded.close()


def test_a_start_lease_is_revoked_when_the_master_is_maint_at_the_load_balancer(
    config: Config, service: Pop3Instance, haproxy: HAProxyInstance
) -> None:
    haproxy.runtime().fence(Role.MASTER)  # the slave fenced it while lhcd was down
    guarded = Guarded(config, service, haproxy, lease=30.0)  # a start lease far longer than the test
    try:
        assert guarded.expired(5) is not None, guarded.events
        assert guarded.guard.renewed_by.startswith("start, revoked: this server is MAINT")
        guarded.killed(5)
        assert not service.running()
    finally:
        guarded.close()


def test_a_restarted_guard_holds_no_longer_than_its_predecessor(config: Config, tmp_path: Path) -> None:
    config = dataclasses.replace(config, STATE_DIR=str(tmp_path))
    path = os.path.join(config.STATE_DIR, LEASE_FILE)
    assert read_lease(path) is None
    write_lease(path, time.monotonic() + 0.2)  # what the previous lhcd of this boot held
    node = NodeState(Role.MASTER, State.ACTIVE)
    guard = LeaseGuard(config, LeaseTimes(5.0, 1.0), None, LOG, lambda: node, print, print, dict)
    assert guard.restarted and guard.left(time.monotonic()) <= 0.2  # not a fresh 5 s
    Path(path).write_text('{"boot_id": "another boot", "until": 1e12}')
    assert read_lease(path) is None  # a monotonic reading of another boot means nothing
    fresh = LeaseGuard(config, LeaseTimes(5.0, 1.0), None, LOG, lambda: node, print, print, dict)
    assert not fresh.restarted and fresh.left(time.monotonic()) > 4


def test_only_a_renewed_lease_may_start_the_service_and_a_revocation_is_written_down(
    config: Config, tmp_path: Path
) -> None:
    """A start lease covers a service that runs, not a new start (heartbeat.py, point 1); and a
    start lease revoked by the load balancer's MAINT or silence is what the next lhcd inherits."""
    config = dataclasses.replace(config, STATE_DIR=str(tmp_path))
    node = NodeState(Role.MASTER, State.ACTIVE)
    guard = LeaseGuard(config, LeaseTimes(5.0, 1.0), None, LOG, lambda: node, print, print, dict)
    assert guard.left(time.monotonic()) > 4 and not guard.confirmed(0.1)  # only the start's lease
    guard.renew(time.monotonic(), "an acknowledged heartbeat")
    assert guard.confirmed(0.0)
    revoked = LeaseGuard(config, LeaseTimes(5.0, 1.0), None, LOG, lambda: node, print, print, dict)
    path = os.path.join(config.STATE_DIR, LEASE_FILE)
    assert (read_lease(path) or 0) > time.monotonic() + 4  # the start lease, written at once
    revoked._revoke_start_lease(time.monotonic(), "this server is MAINT at the load balancer")
    assert (read_lease(path) or 1e12) <= time.monotonic() and not revoked.confirmed(0.0)


# ---------------------------------------------------------------------------- the stream's sockets


def test_the_slave_grants_only_while_it_watches_and_bad_datagrams_are_counted(config: Config) -> None:
    config = dataclasses.replace(config, MONITOR_PORT=free_port(), MONITOR_PORT_SLAVE=free_port(), BEAT_INTERVAL=0.02)
    secret = config.read_secret()
    slave_node = [NodeState(Role.SLAVE, State.STANDBY)]
    granted: list[bool] = []
    heard: list[Received] = []

    def master_hears(r: Received, now: float) -> None:
        granted.append(bool(r.beat.flags & GRANTS_LEASE) and r.acked_sent_at is not None)

    master = BeatLink(config, Role.MASTER, secret, LOG, lambda: NodeState(Role.MASTER, State.ACTIVE), master_hears)
    slave = BeatLink(config, Role.SLAVE, secret, LOG, lambda: slave_node[0], lambda r, now: heard.append(r))
    stop = threading.Event()
    loops = [master.run, slave.run]
    threads = [threading.Thread(target=loop, args=(stop,)) for loop in loops]
    for thread in threads:
        thread.start()
    try:
        time.sleep(0.5)
        assert any(granted) and heard and heard[-1].beat.state is State.ACTIVE
        slave_node[0] = NodeState(Role.SLAVE, State.FAILING_OVER, term=1)  # the claim
        time.sleep(0.1)
        before = len(granted)
        time.sleep(0.4)
        assert len(granted) > before + 5 and not any(granted[before:])  # heard, never granted again
        stop.set()
        for thread in threads:
            thread.join(5)
        # what the master's socket refuses, by kind: a stranger, garbage, a replay
        assert master.take(b"x" * 76, ("127.0.0.2", 1), time.monotonic()) is None
        assert master.take(b"x" * 10, master.peer, time.monotonic()) is None
        newest = slave.stream.next_beat(time.monotonic(), 1, State.FAILING_OVER, heard[-1].beat.condition)
        data = encode(slave.key, newest)
        assert master.take(data, master.peer, time.monotonic()) is not None
        assert master.take(data, master.peer, time.monotonic()) is None
        counts = master.counts
        assert counts["address"] == 1 and counts["size"] == 1 and counts["replayed"] >= 1
        health = master.health(time.monotonic())
        assert "address 1" in str(health["stream_dropped"]) and health["stream_received"] == counts["received"]
    finally:
        stop.set()
        for thread in threads:
            thread.join(5)
        master.close()
        slave.close()
