"""failover/loadbalancer.py against a real HAProxy in front of two real POP3 servers."""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterator

import pytest

from failover.lab.haproxy import HAPROXY, HAProxyInstance
from failover.lab.pop3 import PASSWORD, USER, Pop3Instance, free_port
from failover.loadbalancer import HAProxyRuntime, LoadBalancerError
from failover.machine import Role
from failover.probes import pop3_probe


@pytest.fixture
def haproxy(pop3_factory: Callable[[str], Pop3Instance], tmp_path: object) -> Iterator[HAProxyInstance]:
    if not os.access(HAPROXY, os.X_OK):
        pytest.fail("HAProxy is not installed: run scripts/setup.sh")
    master, slave = pop3_factory("master"), pop3_factory("slave")
    master.start()
    slave.start()
    instance = HAProxyInstance(
        os.path.join(master.dir, "..", "haproxy"),
        ("127.0.0.1", free_port()),
        {Role.MASTER: ("127.0.0.1", master.port), Role.SLAVE: ("127.0.0.1", slave.port)},
    )
    instance.start()
    yield instance
    instance.stop()


def who_answers(instance: HAProxyInstance) -> str | None:
    outcome = pop3_probe(*instance.frontend, 2.0, USER, PASSWORD)
    if not outcome.ok:
        return None
    return "master" if "POP3 master" in outcome.detail else "slave"


def wait_until(check: Callable[[], bool], timeout: float = 10) -> None:
    end = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < end, "timed out"
        time.sleep(0.05)


def test_fence_moves_traffic_away_and_enable_brings_it_back(haproxy: HAProxyInstance) -> None:
    lb = haproxy.runtime()
    wait_until(lambda: lb.status(Role.MASTER) == "UP")
    assert who_answers(haproxy) == "master"
    text = lb.fence(Role.MASTER)
    assert "pop3_pool/master is MAINT" in text and lb.status(Role.MASTER) == "MAINT"
    wait_until(lambda: lb.status(Role.SLAVE) == "UP")
    assert who_answers(haproxy) == "slave"  # the master's POP3 still runs: only the fence keeps clients off
    assert "in service" in lb.enable(Role.MASTER)
    wait_until(lambda: who_answers(haproxy) == "master")


def test_fence_is_idempotent(haproxy: HAProxyInstance) -> None:
    lb = haproxy.runtime()
    lb.fence(Role.MASTER)
    lb.fence(Role.MASTER)
    assert lb.status(Role.MASTER) == "MAINT"


def test_unknown_server_and_unreachable_haproxy_are_errors(haproxy: HAProxyInstance) -> None:
    wrong = HAProxyRuntime(haproxy.admin, "pop3_pool", {Role.MASTER: "nope", Role.SLAVE: "slave"})
    with pytest.raises(LoadBalancerError, match="refused 'set server pop3_pool/nope state maint': No such server"):
        wrong.fence(Role.MASTER)
    gone = HAProxyRuntime(f"127.0.0.1:{free_port()}", "pop3_pool", {Role.MASTER: "master"}, timeout=0.5)
    with pytest.raises(LoadBalancerError, match="Connection refused"):
        gone.fence(Role.MASTER)


def test_enable_marks_a_verified_server_up_without_waiting_for_a_check(
    pop3_factory: Callable[[str], Pop3Instance],
) -> None:
    # A slow check (3 s) so that a passing check cannot be what marks the slave up: the agent
    # enables a server only once its service answers, and clients should not wait for HAProxy.
    master, slave = pop3_factory("master"), pop3_factory("slave")
    master.start()
    instance = HAProxyInstance(
        os.path.join(master.dir, "..", "haproxy-slow"),
        ("127.0.0.1", free_port()),
        {Role.MASTER: ("127.0.0.1", master.port), Role.SLAVE: ("127.0.0.1", slave.port)},
        check_interval="3s",
    )
    instance.start(timeout=15)
    try:
        lb = instance.runtime()
        wait_until(lambda: lb.status(Role.SLAVE) == "DOWN", timeout=15)  # its service is not running
        slave.start()
        assert "in service" in lb.enable(Role.SLAVE)
        assert lb.status(Role.SLAVE) == "UP"
    finally:
        instance.stop()
