"""A master, a slave and a client with HAProxy, each in its own network namespace, ready to fail.

Shared by tests/netns and bench/netns_failover.py. Dovecot runs on master and slave, sshd on the
master (for the fence by ssh), HAProxy on the client in front of both (its runtime API over TCP,
so the slave's load-balancer fence crosses the network), and the witness is HAProxy's frontend.
`ClientPoller` polls through HAProxy from inside the client's namespace.
"""

from __future__ import annotations

import contextlib
import os
import pwd
import shutil
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from failover.lab.haproxy import HAProxyInstance
from failover.lab.pair import LoopbackPair, Poller
from failover.lab.pop3 import make_world_readable_dir
from failover.machine import Role
from tests.harness.network import ADDRESS, ThreeHosts, in_netns
from tests.harness.sshd import SshdInstance

M, S = Role.MASTER, Role.SLAVE
TIMINGS: dict[str, Any] = {
    # probes are asked at once when the master reports its service failed, or at half the
    # silence: the periodic ones only find a hung service, once a second is enough
    "PROBE_INTERVAL": 1.0,
    "PROBE_FAILURES": 2,
    "REMOTE_POP3_TIMEOUT": 0.25,
    "HEARTBEAT_INTERVAL": 1.0,  # the TCP heartbeat (contact is the stream's), which also asks the witness
    "BEAT_INTERVAL": 0.05,  # the stream: 20 datagrams a second each way
    # communication loss: no contact for 0.45 s (over 20 datagrams) and failed probes; a link
    # that flaps for 0.3 s loses neither the contact nor the master's lease
    "HEARTBEAT_TIMEOUT": 0.45,
    "LEASE_TIME": 0.7,  # rides out a 0.3 s flap and a 200 ms delay each way (a 0.4 s round trip)
    "HARD_STOP_TIMEOUT": 0.1,
    "SHUTDOWN_ACK_TIMEOUT": 3.5,
    "SCRIPT_TIMEOUT": 1.0,
    "SERVICE_CHECK_TIMEOUT": 1.0,
    "CONTROL_TIMEOUT": 0.4,
    "FENCE_TIMEOUT": 8.0,
    "ISOLATION_TIMEOUT": 2.0,  # > HEARTBEAT_INTERVAL + 2 x CONTROL_TIMEOUT (the witness is asked per heartbeat)
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
        from failover.lab.pop3 import PASSWORD, USER
        from failover.probes import pop3_probe

        with in_netns(self.net.ns("client")):
            outcome = pop3_probe(*FRONTEND, 2.0, USER, PASSWORD)
        return outcome.ok and "POP3 slave" in outcome.detail


def build_cluster(timings: dict[str, Any], pop3_kind: str | None = None) -> Iterator[Cluster]:
    """Set up the three hosts with these timings (on top of the shipped defaults); tear all down after."""
    if os.geteuid() != 0:
        raise PermissionError("the multi-host tests create network namespaces: run them as root")
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
            pop3_kind=pop3_kind,
            addresses={M: ADDRESS["master"], S: ADDRESS["slave"]},
            prefixes={M: net.exec("master"), S: net.exec("slave")},
            **timings,
            TRIGGER_COMMUNICATION_LOSS=True,  # a dead, cut-off or frozen host must fail over here
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


running_cluster = contextlib.contextmanager(build_cluster)  # `with running_cluster(timings) as cluster:`
