"""Never active on both hosts, proven on three hosts: master, slave, and a client with HAProxy.

Each host is a network namespace (tests/harness/network.py). Dovecot runs on master and slave,
sshd on the master (for the fence by ssh), HAProxy on the client in front of both (its runtime
API over TCP, so the slave's load-balancer fence crosses the network), and the witness is
HAProxy's frontend. A client inside the client namespace polls through HAProxy every 20 ms with
a full POP3 exchange. For every fault: the slave ends ACTIVE and serves, and after its first
answer no answer ever comes from the master again.
"""

from __future__ import annotations

import signal
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from failover.machine import Role
from tests.conftest import POP3_KIND
from tests.harness.cluster import ADMIN, TIMINGS, ClientPoller, Cluster, build_cluster, wait_until

M, S = Role.MASTER, Role.SLAVE


@pytest.fixture
def cluster() -> Iterator[Cluster]:
    """Fast timings, so that each fault is over in seconds."""
    yield from build_cluster(TIMINGS, POP3_KIND)


@pytest.fixture
def default_cluster() -> Iterator[Cluster]:
    """The shipped default timings (with a witness, the load balancer and ssh)."""
    yield from build_cluster({}, POP3_KIND)


def assert_one_server(cluster: Cluster, poller: ClientPoller, injected: float) -> None:
    poller.stop()
    first = poller.first("slave", after=injected)
    assert first is not None, f"the client never got an answer from the slave\n{cluster.pair.logs()}"
    assert poller.count("master", after=first) == 0, "the master answered after the slave's first answer"
    assert cluster.slave_serves()
    assert cluster.reasons(S) and cluster.reasons(M)


def test_kill_9_of_the_masters_dovecot(cluster: Cluster) -> None:
    poller = cluster.poller()
    time.sleep(0.5)
    injected = time.monotonic()
    cluster.pair.pop3[M].kill(signal.SIGKILL)
    cluster.pair.wait_for(S, "ACTIVE", timeout=60)
    cluster.pair.wait_for(M, "INACTIVE", timeout=30)
    time.sleep(1.0)
    assert_one_server(cluster, poller, injected)
    assert cluster.haproxy.runtime().status(M) == "MAINT"


def test_the_master_cut_off_the_network(cluster: Cluster) -> None:
    poller = cluster.poller()
    time.sleep(0.5)
    injected = time.monotonic()
    cluster.net.cut_off("master")
    cluster.pair.wait_for(S, "ACTIVE", timeout=60)
    assert "MAINT at the load balancer" in cluster.reasons(S)  # no ACK: the lease's end
    cluster.pair.wait_for(M, "INACTIVE", timeout=30)  # its lease ended: it stopped its service itself
    assert "the lease ended" in cluster.reasons(M)
    time.sleep(1.0)
    assert_one_server(cluster, poller, injected)
    assert not cluster.pair.pop3[M].running()


def test_every_master_process_frozen_then_thawed(cluster: Cluster) -> None:
    poller = cluster.poller()
    time.sleep(0.5)
    injected = time.monotonic()
    cluster.net.signal_all("master", signal.SIGSTOP)
    try:
        cluster.pair.wait_for(S, "ACTIVE", timeout=60)
    finally:
        cluster.net.signal_all("master", signal.SIGCONT)  # every process there, whatever exited meanwhile
    time.sleep(5.0)  # watched for several seconds after it wakes up
    assert_one_server(cluster, poller, injected)
    master = cluster.pair.wait_for(M, "INACTIVE", timeout=30)
    assert master["term"] == 1 and not cluster.pair.pop3[M].running()


def test_partition_between_master_and_slave_only(cluster: Cluster) -> None:
    """Both still reach the client and HAProxy: the slave fences the master there and waits
    out its lease; the master, granted nothing and MAINT at HAProxy, kills its service itself
    (tests/netns/test_lease.py checks the order on the journals). After the partition heals it
    learns term 1 and stays INACTIVE."""
    poller = cluster.poller()
    time.sleep(0.5)
    injected = time.monotonic()
    cluster.net.link("master", "slave", up=False)
    cluster.pair.wait_for(S, "ACTIVE", timeout=60)
    assert "MAINT at the load balancer" in cluster.reasons(S)
    cluster.pair.wait_for(M, "INACTIVE", timeout=30)
    assert "the lease ended" in cluster.reasons(M) and not cluster.pair.pop3[M].running()
    cluster.net.link("master", "slave", up=True)
    wait_until(lambda: cluster.pair.state(M)["term"] == 1, "the master learns term 1")
    assert cluster.pair.state(M)["state"] == "INACTIVE"
    assert_one_server(cluster, poller, injected)


def _without_the_lease(cluster: Cluster) -> None:
    """LEASE = False: no start without an ACK but through the fence chain (ssh, then HAProxy)."""
    cluster.pair.write_config(LEASE=False)
    for role in (M, S):
        cluster.pair.stop_agents(role)
        cluster.pair.start_agents(role)
    wait_until(lambda: cluster.pair.state(M)["state"] == "ACTIVE" and cluster.pair.pop3[M].running(), "master up")


def test_kill_9_of_rhcd_between_the_request_and_the_startup(cluster: Cluster) -> None:
    slow = Path(cluster.pair.dir, "slow-stop.sh")
    slow.write_text("#!/bin/sh\nsleep 0.8\nexec ./pop3-ctl stop\n")
    slow.chmod(0o755)
    cluster.pair.write_config(SHUTDOWN_SCRIPTS=["./slow-stop.sh"])
    cluster.pair.stop_agents(M)
    cluster.pair.start_agents(M)
    poller = cluster.poller()
    time.sleep(0.5)
    injected = time.monotonic()
    cluster.pair.pop3[M].kill(signal.SIGKILL)
    cluster.pair.wait_for(S, "FAILING_OVER", timeout=60)
    cluster.pair.kill_daemon("rhcd")
    cluster.pair.start_agents(S)
    active = cluster.pair.wait_for(S, "ACTIVE", timeout=60)
    assert active["term"] == 1
    time.sleep(1.0)
    assert_one_server(cluster, poller, injected)


def test_socketserver_killed_the_fence_by_ssh(cluster: Cluster) -> None:
    _without_the_lease(cluster)
    poller = cluster.poller()
    time.sleep(0.5)
    injected = time.monotonic()
    cluster.pair.kill_daemon("socketserver")
    cluster.pair.pop3[M].kill(signal.SIGKILL)
    cluster.pair.wait_for(S, "ACTIVE", timeout=60)
    assert "fenced for term 1 by ssh" in cluster.reasons(S)
    assert cluster.pair.state(M)["state"] == "INACTIVE"
    time.sleep(1.0)
    assert_one_server(cluster, poller, injected)


def test_ssh_impossible_the_load_balancer_fence(cluster: Cluster) -> None:
    _without_the_lease(cluster)
    poller = cluster.poller()
    time.sleep(0.5)
    injected = time.monotonic()
    cluster.sshd.stop()
    cluster.pair.kill_daemon("socketserver")
    cluster.pair.pop3[M].kill(signal.SIGKILL)
    cluster.pair.wait_for(S, "ACTIVE", timeout=60)
    reasons = cluster.reasons(S)
    assert "fence by ssh failed for term 1" in reasons and "fenced for term 1 by loadbalancer" in reasons
    time.sleep(1.0)
    assert_one_server(cluster, poller, injected)


def test_no_fence_possible_the_slave_waits_for_the_operator(cluster: Cluster) -> None:
    cluster.pair.write_config(
        LOAD_BALANCER={
            "address": ADMIN,
            "backend": "no_such_backend",
            "master_server": "master",
            "slave_server": "slave",
        }
    )
    cluster.pair.stop_agents(S)
    cluster.pair.start_agents(S)
    poller = cluster.poller()
    time.sleep(0.5)
    injected = time.monotonic()
    cluster.sshd.stop()
    cluster.pair.kill_daemon("socketserver")
    cluster.pair.pop3[M].kill(signal.SIGKILL)
    wait_until(lambda: "every fence method failed" in cluster.reasons(S), "the fence chain ends", timeout=60)
    time.sleep(2.0)
    assert cluster.pair.state(S)["state"] == "FENCING" and not cluster.pair.pop3[S].running()
    done = cluster.pair.failover("confirm-fenced", "--yes", role=S)
    assert done.returncode == 0, done.stderr
    cluster.pair.wait_for(S, "ACTIVE", timeout=30)
    time.sleep(1.0)
    assert_one_server(cluster, poller, injected)


@pytest.mark.parametrize(("loss", "delay"), [(0.2, 0.0), (0.0, 0.2)], ids=["20%-loss", "200ms-delay"])
def test_a_healthy_master_on_a_bad_link_is_never_failed_over(
    default_cluster: Cluster, loss: float, delay: float
) -> None:
    """The master's links to the slave and to the client lose 20 % of their frames (or hold each
    for 200 ms) for 15 s (15 times HEARTBEAT_TIMEOUT; bench/netns_failover.py runs minutes): with
    the default settings nothing moves."""
    from tests.harness.relay import LossyLink

    links = [
        LossyLink(default_cluster.net, "master", other, loss, delay, max_duration=120, seed=n)
        for n, other in enumerate(("slave", "client"))
    ]
    for link in links:
        link.start()
    try:
        time.sleep(15)
        for link in links:
            link.loss, link.delay = 0.0, 0.0
        time.sleep(3)
    finally:
        for link in links:
            link.stop()
    pair = default_cluster.pair
    assert pair.state(S)["state"] in ("STANDBY", "SUSPECT") and pair.state(S)["term"] == 0, pair.journal(S)
    assert pair.state(M)["state"] == "ACTIVE" and pair.state(M)["term"] == 0, pair.journal(M)
    assert not any(e["to"] in ("FAILING_OVER", "STOPPING") for e in pair.journal(S) + pair.journal(M))
    assert pair.pop3[M].running() and not pair.pop3[S].running()
    if loss:
        assert all(link.dropped > 0 for link in links)  # the loss really happened
