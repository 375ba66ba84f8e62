"""The fence chain end to end on loopback: real sshd for the fence by ssh, a real HAProxy in front."""

from __future__ import annotations

import os
import signal
import socket
import threading
import time
from collections.abc import Callable
from pathlib import Path

from failover.lab.haproxy import HAProxyInstance
from failover.lab.pair import LoopbackPair, Poller
from failover.lab.pop3 import free_port
from failover.machine import Role
from tests.harness.pair import ssh_settings, start_pair
from tests.harness.sshd import SshdInstance

M, S = Role.MASTER, Role.SLAVE
MakePair = Callable[..., LoopbackPair]
# these tests lose the master's agents (killed, frozen): only the communication-loss trigger fails over
FENCE = {"FENCE_TIMEOUT": 15.0, "SHUTDOWN_ACK_TIMEOUT": 4.0, "TRIGGER_COMMUNICATION_LOSS": True}


def with_haproxy(pair: LoopbackPair) -> HAProxyInstance:
    haproxy = HAProxyInstance(
        os.path.join(pair.dir, "haproxy"),
        ("127.0.0.1", free_port()),
        {role: ("127.0.0.1", pair.pop3[role].port) for role in Role},
    )
    haproxy.start()
    address = haproxy.admin
    pair.write_config(
        LOAD_BALANCER={"address": address, "backend": "pop3_pool", "master_server": "master", "slave_server": "slave"}
    )
    return haproxy


def reasons(pair: LoopbackPair, role: Role) -> str:
    return "\n".join(e["reason"] for e in pair.journal(role))


def accepting_witness() -> socket.socket:
    """A witness on loopback that accepts (and drops) every connection: one that never accepted
    would fill its backlog with the agents' probes and stop answering on its own after a few
    seconds. Close it to make the witness unreachable."""
    witness = socket.create_server(("127.0.0.1", 0))

    def accept_all() -> None:
        while True:
            try:
                witness.accept()[0].close()
            except OSError:
                return

    threading.Thread(target=accept_all, daemon=True).start()
    return witness


def test_no_ack_then_the_fence_by_ssh_stops_the_master_through_its_own_agent(
    make_pair: MakePair, sshd: SshdInstance
) -> None:
    pair = make_pair(start=False, **FENCE, **ssh_settings(sshd))
    start_pair(pair)
    pair.kill_daemon("socketserver")  # no ACK can come over the control port
    pair.kill_daemon("lhcd")  # and the master's agent is gone too
    pair.pop3[M].kill(signal.SIGKILL)
    pair.wait_for(S, "ACTIVE", timeout=60)
    assert "the master is fenced for term 1 by ssh" in reasons(pair, S)
    master = pair.state(M)  # written by fence-self on the master, under lhcd's lock
    assert (master["state"], master["term"]) == ("INACTIVE", 1)
    pair.start_agents(M)  # and the master's agents, started again, stay INACTIVE
    time.sleep(1)
    assert pair.state(M)["state"] == "INACTIVE" and not pair.pop3[M].running()


def test_ssh_impossible_then_the_load_balancer_fence_keeps_clients_off_a_running_master(
    make_pair: MakePair, sshd: SshdInstance
) -> None:
    # LEASE=False: lhcd is killed below, so no lease guard would stop the master's service; this
    # is the fence chain's own test (with a lease the slave would start at the lease's end)
    pair = make_pair(start=False, LEASE=False, **FENCE, **ssh_settings(sshd))
    haproxy = with_haproxy(pair)
    try:
        start_pair(pair)
        poller = Poller(pair, through=haproxy.frontend)
        poller.start()
        sshd.stop()  # the fence by ssh cannot work
        pair.kill_daemon("socketserver")  # no ACK
        pair.kill_daemon("lhcd")  # nobody tells the master anything: it keeps serving
        # the master's POP3 still answers its own port, but the slave's probes no longer reach it:
        # simulate that path failure by stopping it only for the slave, i.e. fail its probes
        pair.write_config(REMOTE_POP3_PORT=free_port())
        pair.stop_agents(S)
        pair.start_agents(S)
        pair.wait_for(S, "ACTIVE", timeout=90)
        time.sleep(1.0)
        poller.stop()
        log = reasons(pair, S)
        assert "fence by ssh failed for term 1" in log and "trying loadbalancer" in log
        assert "fenced for term 1 by loadbalancer" in log
        lb = haproxy.runtime()
        assert lb.status(M) == "MAINT" and pair.pop3[M].running()  # fenced, though still running
        first = poller.first("slave", after=0)
        assert first is not None and poller.count("master", after=first) == 0
    finally:
        haproxy.stop()


def test_the_ack_path_fences_the_master_at_the_load_balancer_and_enables_the_slave(make_pair: MakePair) -> None:
    pair = make_pair(start=False, **FENCE)
    haproxy = with_haproxy(pair)
    try:
        start_pair(pair)
        poller = Poller(pair, through=haproxy.frontend)
        poller.start()
        time.sleep(0.5)
        killed = time.monotonic()
        pair.pop3[M].kill(signal.SIGKILL)
        pair.wait_for(S, "ACTIVE", timeout=30)
        time.sleep(1.0)
        lb = haproxy.runtime()
        assert lb.status(M) == "MAINT" and lb.status(S) == "UP"
        # the old master's POP3 is back (its lease guard kills it at once, lhcd stops it anyway;
        # HAProxy keeps it out meanwhile): it may not even get to answer its own first login
        pair.pop3[M].start(wait=False)
        time.sleep(1.5)
        poller.stop()
        first = poller.first("slave", after=killed)
        assert first is not None and poller.count("master", after=first) == 0
        assert lb.status(M) == "MAINT"
    finally:
        haproxy.stop()


def test_an_isolated_master_stops_its_own_service(make_pair: MakePair) -> None:
    witness = accepting_witness()
    pair = make_pair(
        start=False,
        WITNESS=f"127.0.0.1:{witness.getsockname()[1]}",
        ISOLATION_TIMEOUT=1.5,
        SHUTDOWN_ACK_TIMEOUT=6.0,
        CONTROL_TIMEOUT=0.3,  # the witness is asked every heartbeat, after the heartbeat's attempt
    )
    start_pair(pair)
    pair.stop_agents(S)  # the slave is gone...
    time.sleep(3.0)
    assert pair.state(M)["state"] == "ACTIVE"  # ...but the witness answers: the master is not isolated
    witness.shutdown(socket.SHUT_RDWR)  # and now the witness is gone too
    witness.close()
    pair.wait_for(M, "INACTIVE", timeout=30)
    assert "isolated: reached neither the slave nor the witness" in reasons(pair, M)
    assert not pair.pop3[M].running()


def test_a_frozen_master_is_fenced_at_the_load_balancer_and_stops_when_it_wakes(make_pair: MakePair) -> None:
    pair = make_pair(start=False, **FENCE)
    haproxy = with_haproxy(pair)
    try:
        start_pair(pair)
        poller = Poller(pair, through=haproxy.frontend)
        poller.start()
        frozen = [pid for pid in (pair.daemon_pid("lhcd"), pair.daemon_pid("socketserver")) if pid]
        pair.pop3[M].kill(signal.SIGSTOP)
        for pid in frozen:
            os.kill(pid, signal.SIGSTOP)
        try:
            pair.wait_for(S, "ACTIVE", timeout=60)
            assert "MAINT at the load balancer" in reasons(pair, S)  # no ACK: the lease's end
            assert haproxy.runtime().status(M) == "MAINT"
        finally:
            pair.pop3[M].kill(signal.SIGCONT)
            for pid in frozen:
                os.kill(pid, signal.SIGCONT)
        pair.wait_for(M, "INACTIVE", timeout=30)  # it wakes up, learns term 1, stops its service
        time.sleep(1.0)
        poller.stop()
        log = Path(pair.dir, "log", "lhcd.log").read_text()
        # It learns term 1 one of two ways, both of which stop it: its loop notices the frozen
        # wait and asks the slave ("woke up", then "deposed by term 1"), or, frozen in the middle
        # of an event (no wait to measure), it first takes the slave's SHUTDOWN_YOUR_SERVICE
        # for term 1 that its socketserver held while frozen.
        # Or its lease guard, which woke up with it, finds the lease ended and kills the service.
        woke = "woke up" in log and "deposed by term 1" in reasons(pair, M)
        lease = "the lease ended" in reasons(pair, M)
        assert woke or lease or "the slave requested shutdown for term 1" in reasons(pair, M)
        assert pair.state(M)["term"] == 1
        assert not pair.pop3[M].running()
        first = poller.first("slave", after=0)
        assert first is not None and poller.count("master", after=first) == 0
    finally:
        haproxy.stop()


def test_stopping_the_masters_agents_never_stops_its_service(make_pair: MakePair) -> None:
    """Regression: lhcd's heartbeat thread stops first on SIGTERM; the loop must not then take the
    missing contact for isolation and stop the service while the agents shut down."""
    witness = accepting_witness()
    pair = make_pair(
        start=False,
        WITNESS=f"127.0.0.1:{witness.getsockname()[1]}",
        ISOLATION_TIMEOUT=0.5,
        SHUTDOWN_ACK_TIMEOUT=6.0,
        HEARTBEAT_INTERVAL=0.1,  # ISOLATION_TIMEOUT > HEARTBEAT_INTERVAL + 2 x CONTROL_TIMEOUT
        CONTROL_TIMEOUT=0.15,
    )
    try:
        start_pair(pair)
        for _ in range(3):
            pair.stop_agents(M)
            time.sleep(0.3)
            pair.start_agents(M)
            time.sleep(0.5)
        assert pair.state(M)["state"] == "ACTIVE" and pair.pop3[M].running()
        assert "isolated" not in reasons(pair, M)
    finally:
        witness.close()
