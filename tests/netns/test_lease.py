"""The lease on three hosts: whenever the servers lose each other while both still reach the
load balancer (a partition, a one-way cut either way), the old master's service is killed before
the slave's startup scripts run, and the slave serves; a short flap, a lossy link and a dead
slave move nothing.

The order is read from the journals (the master's "hard-stop" note is written once its service
is verified down; the slave's STARTING transition before its startup scripts run): both
hosts write wall-clock milliseconds on the same machine, so the times compare.
"""

from __future__ import annotations

import json
import os
import signal
import time
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path

import pytest

from failover.machine import Role
from tests.conftest import POP3_KIND
from tests.harness.cluster import TIMINGS, Cluster, build_cluster
from tests.harness.relay import LossyLink

M, S = Role.MASTER, Role.SLAVE
ENDS = ("slave", "client")  # the master's two links


@pytest.fixture
def cluster() -> Iterator[Cluster]:
    yield from build_cluster(TIMINGS, POP3_KIND)


def _when(entry: dict[str, str]) -> datetime:
    return datetime.fromisoformat(entry["time"].replace("Z", "+00:00"))


def assert_master_down_before_the_slave_starts(cluster: Cluster) -> None:
    pair = cluster.pair
    stops = [e for e in pair.journal(M) if e.get("event") == "hard-stop" or e.get("to") == "INACTIVE"]
    starts = [e for e in pair.journal(S) if e.get("to") == "STARTING"]
    assert stops and starts, f"{pair.journal(M)}\n{pair.journal(S)}"
    assert _when(stops[0]) < _when(starts[0]), f"master down {stops[0]['time']}, slave starts {starts[0]['time']}"
    assert not pair.pop3[M].running() and pair.pop3[S].running()


def _between_the_servers(cluster: Cluster) -> LossyLink:
    link = LossyLink(cluster.net, "master", "slave", max_duration=120)
    link.start()
    time.sleep(1.0)  # the stream goes through the relay now
    return link


def test_a_partition_between_the_servers_stops_the_master_before_the_slave_starts(cluster: Cluster) -> None:
    cluster.net.link("master", "slave", up=False)  # both still reach HAProxy
    cluster.pair.wait_for(S, "ACTIVE", timeout=30)
    cluster.pair.wait_for(M, "INACTIVE", timeout=30)
    assert "the lease ended" in "\n".join(e["reason"] for e in cluster.pair.journal(M))
    assert_master_down_before_the_slave_starts(cluster)


def test_a_cut_from_master_to_slave_stops_the_master_before_the_slave_starts(cluster: Cluster) -> None:
    """The slave hears nothing and takes over; the master still hears the slave, whose
    datagrams stop granting at its claim, and HAProxy shows the master MAINT: its lease ends."""
    link = _between_the_servers(cluster)
    try:
        link.cut_from = "master"
        cluster.pair.wait_for(S, "ACTIVE", timeout=30)
        cluster.pair.wait_for(M, "INACTIVE", timeout=30)
        assert_master_down_before_the_slave_starts(cluster)
    finally:
        link.stop()


def test_a_cut_from_slave_to_master_stops_the_master_before_the_slave_starts(cluster: Cluster) -> None:
    """The slave still hears the master, but its datagrams say it has heard nothing from the
    slave: contact is two-way, so that is a loss of contact; the slave stops granting, fences the
    master at HAProxy, the master's lease ends on HAProxy's MAINT, and the slave takes over."""
    link = _between_the_servers(cluster)
    try:
        link.cut_from = "slave"
        cluster.pair.wait_for(S, "ACTIVE", timeout=30)
        cluster.pair.wait_for(M, "INACTIVE", timeout=30)
        assert_master_down_before_the_slave_starts(cluster)
        assert "communication loss: no contact" in "\n".join(e["reason"] for e in cluster.pair.journal(S))
    finally:
        link.stop()


def test_a_dead_slave_never_stops_the_master(cluster: Cluster) -> None:
    """rhcd frozen: no datagram grants the lease any more, and the master keeps it on HAProxy's
    word (its server in service), read every B / 4."""
    pair = cluster.pair
    rhcd = pair.daemon_pid("rhcd")
    assert rhcd is not None
    os.kill(rhcd, signal.SIGSTOP)
    try:
        time.sleep(4 * TIMINGS["LEASE_TIME"] + 1)
        assert pair.state(M)["state"] == "ACTIVE" and pair.pop3[M].running() and not pair.pop3[S].running()
        assert not any(e.get("event") == "lease-expired" for e in pair.journal(M))
        status = json.loads(Path(pair.dir, "state", "lhcd.status.json").read_text())["observations"]
        assert status["lease_renewed_by"] == "load-balancer" and status["lease_left"] > 0, status
    finally:
        os.kill(rhcd, signal.SIGCONT)


def test_a_flap_of_0_3_s_moves_nothing(cluster: Cluster) -> None:
    """Every frame of the master's two links is lost for 0.3 s, three times."""
    links = [
        LossyLink(cluster.net, "master", other, max_duration=120, seed=n) for n, other in enumerate(("slave", "client"))
    ]
    for link in links:
        link.start()
    try:
        time.sleep(1.0)
        for _ in range(3):
            for link in links:
                link.loss = 1.0
            time.sleep(0.3)
            for link in links:
                link.loss = 0.0
            time.sleep(2.0)
        pair = cluster.pair
        assert pair.state(M)["state"] == "ACTIVE" and pair.state(S)["state"] in ("STANDBY", "SUSPECT")
        assert not any(e.get("to") in ("FAILING_OVER", "STOPPING") for e in pair.journal(S) + pair.journal(M))
        assert pair.pop3[M].running() and all(link.dropped > 0 for link in links)
    finally:
        for link in links:
            link.stop()


def test_20_percent_loss_between_the_servers_moves_nothing(cluster: Cluster) -> None:
    link = _between_the_servers(cluster)
    pair = cluster.pair
    try:
        link.loss = 0.2
        time.sleep(20)
        assert link.dropped > 0
        assert not any(e.get("to") in ("FAILING_OVER", "STOPPING") for e in pair.journal(S) + pair.journal(M))
        assert not any(e.get("event") == "lease-expired" for e in pair.journal(M)), pair.journal(M)
    finally:
        link.stop()
