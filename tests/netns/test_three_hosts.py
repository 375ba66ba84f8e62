"""Never active on both hosts, proven on three hosts: master, slave, and a client with HAProxy.

Each host is a network namespace (tests/netns/network.py). Dovecot runs on master and slave,
sshd on the master (for the fence by ssh), HAProxy on the client in front of both (its runtime
API over TCP, so the slave's load-balancer fence crosses the network), and the witness is
HAProxy's frontend. A client inside the client namespace polls through HAProxy every 20 ms with
a full POP3 exchange. For every fault: the slave ends ACTIVE and serves, and after its first
answer no answer ever comes from the master again.
"""

from __future__ import annotations

import os
import pwd
import shutil
import signal
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from failover.localhaproxy import HAProxyInstance
from failover.localpop3 import make_world_readable_dir
from failover.loopback import LoopbackPair, Poller
from failover.machine import Role
from tests.conftest import POP3_KIND
from tests.netns.network import ADDRESS, ThreeHosts, in_netns
from tests.sshd import SshdInstance

M, S = Role.MASTER, Role.SLAVE
TIMINGS: dict[str, Any] = {
    "PROBE_INTERVAL": 0.2,
    "PROBE_FAILURES": 3,
    "REMOTE_POP3_TIMEOUT": 0.5,
    "HEARTBEAT_INTERVAL": 0.3,
    "SHUTDOWN_ACK_TIMEOUT": 3.0,
    "SCRIPT_TIMEOUT": 1.0,
    "SERVICE_CHECK_TIMEOUT": 1.0,
    "CONTROL_TIMEOUT": 0.5,
    "FENCE_TIMEOUT": 8.0,
    "ISOLATION_TIMEOUT": 1.0,
}
FRONTEND = (ADDRESS["client"], 110)
ADMIN = f"{ADDRESS['client']}:9999"


class ClientPoller(Poller):
    """The poller, running inside the client's namespace."""

    def __init__(self, pair: LoopbackPair, netns: str) -> None:
        super().__init__(pair, interval=0.02, timeout=0.5, through=FRONTEND)
        self.netns = netns

    def run(self) -> None:
        with in_netns(self.netns):
            super().run()


@dataclass
class Cluster:
    net: ThreeHosts
    pair: LoopbackPair
    haproxy: HAProxyInstance
    sshd: SshdInstance

    def poller(self) -> ClientPoller:
        poller = ClientPoller(self.pair, self.net.ns("client"))
        poller.start()
        return poller

    def reasons(self, role: Role) -> str:
        return "\n".join(e["reason"] for e in self.pair.journal(role))

    def slave_serves(self) -> bool:
        from failover.localpop3 import PASSWORD, USER
        from failover.probes import pop3_probe

        with in_netns(self.net.ns("client")):
            outcome = pop3_probe(*FRONTEND, 2.0, USER, PASSWORD)
        return outcome.ok and "POP3 slave" in outcome.detail


def build_cluster(timings: dict[str, Any]) -> Iterator[Cluster]:
    if os.geteuid() != 0:
        pytest.fail("the multi-host tests create network namespaces: run them as root")
    net = ThreeHosts()
    base = make_world_readable_dir("failover-netns-")
    pair: LoopbackPair | None = None
    haproxy: HAProxyInstance | None = None
    sshd: SshdInstance | None = None
    try:
        net.create()
        sshd = SshdInstance(os.path.join(base, "sshd"), address=ADDRESS["master"], port=2222)
        pair = LoopbackPair(
            base_dir=os.path.join(base, "pair"),
            profile="default",
            pop3_kind=POP3_KIND,
            addresses={M: ADDRESS["master"], S: ADDRESS["slave"]},
            prefixes={M: net.exec("master"), S: net.exec("slave")},
            **timings,
            WITNESS=f"{FRONTEND[0]}:{FRONTEND[1]}",
            LOAD_BALANCER={
                "address": ADMIN,
                "backend": "pop3_pool",
                "master_server": "master",
                "slave_server": "slave",
            },
            RLOGIN_USER=pwd.getpwuid(os.getuid()).pw_name,
            RLOGIN_PORT=2222,
            RLOGIN_KEY_FILE=sshd.key_file,
            RLOGIN_KNOWN_HOSTS=sshd.known_hosts,
        )
        haproxy = HAProxyInstance(
            os.path.join(base, "haproxy"),
            FRONTEND,
            {role: (pair.addresses[role], pair.pop3[role].port) for role in Role},
            ADMIN,
        )
        sshd.start(netns=net.ns("master"))
        pair.pop3[M].start(prefix=" ".join(net.exec("master")), wait=False)
        with in_netns(net.ns("master")):
            pair.pop3[M].wait_ready()
        haproxy.start(netns=net.ns("client"))
        pair.start_agents(M)
        pair.start_agents(S)
        wait_until(lambda: haproxy.runtime().status(M) == "UP", "HAProxy sees the master UP")
        wait_until(lambda: "heartbeat_time" in _observations(pair), "the agents talk")
        yield Cluster(net, pair, haproxy, sshd)
    finally:
        if pair is not None:
            pair.close(remove=False)
        if haproxy is not None:
            haproxy.stop()
        if sshd is not None:
            sshd.stop()
        net.destroy()
        shutil.rmtree(base, ignore_errors=True)


@pytest.fixture
def cluster() -> Iterator[Cluster]:
    """Fast timings, so that each fault is over in seconds."""
    yield from build_cluster(TIMINGS)


@pytest.fixture
def default_cluster() -> Iterator[Cluster]:
    """The shipped default timings (with a witness, the load balancer and ssh)."""
    yield from build_cluster({})


def _observations(pair: LoopbackPair) -> dict[str, Any]:
    import json

    try:
        observations: dict[str, Any] = json.loads(Path(pair.dir, "state", "rhcd.status.json").read_text())[
            "observations"
        ]
        return observations
    except (OSError, ValueError, KeyError):
        return {}


def wait_until(check: Any, what: str, timeout: float = 30) -> None:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        try:
            if check():
                return
        except Exception:
            pass
        time.sleep(0.05)
    raise TimeoutError(what)


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
    assert "fenced for term 1 by loadbalancer" in cluster.reasons(S)  # ssh cannot reach it either
    cluster.pair.wait_for(M, "INACTIVE", timeout=30)  # isolated: it stopped its service itself
    assert "isolated: reached neither the slave nor the witness" in cluster.reasons(M)
    time.sleep(1.0)
    assert_one_server(cluster, poller, injected)
    assert not cluster.pair.pop3[M].running()


def test_every_master_process_frozen_then_thawed(cluster: Cluster) -> None:
    poller = cluster.poller()
    time.sleep(0.5)
    injected = time.monotonic()
    frozen = cluster.net.signal_all("master", signal.SIGSTOP)
    try:
        cluster.pair.wait_for(S, "ACTIVE", timeout=60)
    finally:
        for pid in frozen:
            os.kill(pid, signal.SIGCONT)
    time.sleep(5.0)  # watched for several seconds after it wakes up
    assert_one_server(cluster, poller, injected)
    master = cluster.pair.wait_for(M, "INACTIVE", timeout=30)
    assert master["term"] == 1 and not cluster.pair.pop3[M].running()


def test_partition_between_master_and_slave_only(cluster: Cluster) -> None:
    poller = cluster.poller()
    time.sleep(0.5)
    injected = time.monotonic()
    cluster.net.link("master", "slave", up=False)  # both still reach the client and HAProxy
    cluster.pair.wait_for(S, "ACTIVE", timeout=60)
    assert "fenced for term 1 by loadbalancer" in cluster.reasons(S)
    time.sleep(1.0)
    assert cluster.pair.state(M)["state"] == "ACTIVE"  # it reaches the witness: not isolated
    cluster.net.link("master", "slave", up=True)  # the partition heals: the master learns term 1
    cluster.pair.wait_for(M, "INACTIVE", timeout=30)
    assert "deposed by term 1" in cluster.reasons(M)
    assert_one_server(cluster, poller, injected)


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
    for 200 ms) for 30 s: with the default settings nothing moves."""
    from tests.netns.relay import LossyLink

    links = [
        LossyLink(default_cluster.net, "master", other, loss, delay, max_duration=120, seed=n)
        for n, other in enumerate(("slave", "client"))
    ]
    for link in links:
        link.start()
    try:
        time.sleep(30)
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
