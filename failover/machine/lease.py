"""The lease, as the machine decides it (failover/heartbeat.py holds the safety argument and
the arithmetic): when the slave's datagrams grant the master a lease, what counts as contact,
what the master does when its lease has ended, and when the slave may start without an ACK.

- The slave grants only while it watches, has claimed nothing (or waits for the ACK of an
  operator's switchover: `switching_over`), and the master says it hears the slave
  (`grants_lease`): an acknowledgement that does not arrive renews nothing anyway, and stopping
  early bounds the master's lease the sooner when the slave-to-master way is cut.
- Contact is two-way (`heard`): a datagram of the master counts from the moment the master
  last heard the slave, so a master that has not heard the slave for HEARTBEAT_TIMEOUT is
  lost, whichever way the link is cut.
- At its claim, with a lease (Policy.takeover_wait), the slave fences the master at the load
  balancer at once (fence at suspicion); at the confirmation it computes `lease_gone_at`:
  its last grant + takeover_wait, and the confirmation + lb_takeover_wait, whichever is later.
- The slave starts without an ACK from `lease_gone_at` on.
- The master's lease guard (failover/lease_guard.py) kills the service the moment the lease
  ends, whatever the loop is busy with, then feeds LeaseExpired: the master stops for good
  (STOPPING, then INACTIVE), as a master whose service was fenced off must.
Rules for the table in failover.machine; pure, time only from events.
"""

from __future__ import annotations

import dataclasses
import math

from failover.machine.actions import Alert, Step
from failover.machine.events import LeaseExpired, LoadBalancerDone, PeerReport
from failover.machine.model import NodeState, Policy, Role, State, Trigger, Why
from failover.machine.steps import keep, move, stop_alerted

# The slave's states in which it has claimed nothing and will claim nothing before it leaves
# them; MAINTENANCE grants when held from one of them (a release returns there, and a slave
# stopped for a switchback is held from STANDBY) with its own service not running.
GRANTING = frozenset({State.STANDBY, State.SUSPECT, State.PREPARING})


def grants_lease(node: NodeState, peer_silent: float, heartbeat_timeout: float) -> bool:
    """Slave: whether the datagrams it sends now may renew the master's lease. `peer_silent`:
    how long the master, in its newest datagram, said it had heard nothing from us; past half
    HEARTBEAT_TIMEOUT we stop granting (our acknowledgements do not reach it, or only late)."""
    if node.role is not Role.SLAVE or peer_silent >= heartbeat_timeout / 2:
        return False
    if switching_over(node):
        return True
    if node.state is State.MAINTENANCE:
        return node.hold is not None and node.hold.held_from in GRANTING and node.service_ok is not True
    return node.state in GRANTING


def switching_over(node: NodeState) -> bool:
    """Slave: an operator's switchover waits for the master's ACK (FAILING_OVER) and grants
    meanwhile, so that the master's graceful stop is not cut short by its lease; it stops
    granting at the ACK timeout (FENCING), and no wait for the lease starts before that."""
    return node.role is Role.SLAVE and node.state is State.FAILING_OVER and node.trigger is Trigger.SWITCHOVER


def heard(p: Policy, n: NodeState, e: PeerReport) -> NodeState:
    """The peer's report as contact: the moment it last heard us (it sent this `peer_silent`
    after; never earlier than the contact already known). Fresh contact ends a loss, and
    re-arms the probe at half the timeout."""
    contact = e.now - e.peer_silent
    if math.isinf(contact) or (n.last_heartbeat is not None and contact <= n.last_heartbeat):
        return n  # it has never heard us (since its start), or tells nothing newer
    fresh = e.now - contact <= p.heartbeat_timeout
    return dataclasses.replace(
        n,
        last_heartbeat=contact,
        heartbeats_lost=n.heartbeats_lost and not fresh,
        silence_probed=n.silence_probed and e.now - contact > p.heartbeat_timeout / 2,
    )


# The master's states in which its service may run (STOPPING: the graceful stop is under way).
# FAILED: its service was found still running after the shutdown scripts.
SERVING = frozenset({State.ACTIVE, State.RESTARTING, State.STARTING, State.STOPPING, State.FAILED})


def may_serve(node: NodeState) -> bool:
    """Master: whether its service may run now, so that an ended lease must kill it."""
    if node.state is State.MAINTENANCE:
        return node.hold is not None and node.hold.held_from in SERVING
    return node.state in SERVING


def expired(lease_until: float, now: float) -> bool:
    """Master: whether the lease that runs until `lease_until` (monotonic) has ended at `now`."""
    return now >= lease_until


def takeover_due(p: Policy, n: NodeState, now: float) -> bool:
    """Slave: the master's lease has surely ended (its service is down)."""
    return p.takeover_wait is not None and n.lease_gone_at is not None and now >= n.lease_gone_at


def service_down_at(p: Policy, fenced: float, granted: float | None) -> float:
    """Slave: from when the master's service is surely down, given the readings of the load
    balancer's confirmation and of the last grant (heartbeat.py, point 4). An unknown grant is
    taken as the confirmation itself: later is safe."""
    assert p.takeover_wait is not None and p.lb_takeover_wait is not None
    last_grant = fenced if granted is None else min(granted, fenced)
    return max(last_grant + p.takeover_wait, fenced + p.lb_takeover_wait)


def lease_expired(p: Policy, n: NodeState, e: LeaseExpired) -> Step:
    """Master, where its service may run: the guard has killed it; stop for good."""
    reason = (
        f"the lease ended {e.now - e.until:.2f} s ago (no acknowledged heartbeat and no load balancer "
        f"that shows this server in service): the service was killed ({e.detail}); the slave may take over"
    )
    return stop_alerted(n, e, Why.LEASE_EXPIRED, reason)


def lease_expired_held(p: Policy, n: NodeState, e: LeaseExpired) -> Step:
    """Master, held: a hold stops decisions, not the guard; say what the guard did."""
    reason = f"the lease ended while held: the guard killed the service ({e.detail})"
    return move(n, e, State.MAINTENANCE, Why.LEASE_EXPIRED, reason, Alert(reason))


def fenced_at_load_balancer(p: Policy, n: NodeState, e: LoadBalancerDone) -> Step:
    """Slave, claiming: the early fence at the load balancer is confirmed; from now the end of
    the master's lease is known (a later reading than the confirmation itself: later is safe)."""
    if e.ok and e.fenced is Role.MASTER and p.takeover_wait is not None and n.lease_gone_at is None:
        if switching_over(n):
            return keep(n)  # it still grants: the lease's end is not known yet
        return keep(n, lease_gone_at=service_down_at(p, e.now, e.granted))
    if e.ok:
        return keep(n)
    return keep(n, Alert(f"load balancer: {e.what} failed: {e.detail}"))
