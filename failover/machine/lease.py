"""The lease, as the machine decides it (failover/heartbeat.py holds the safety argument and
the arithmetic): when the slave's datagrams grant the master a lease, what the master does when
its lease has ended, and when the slave may start without an ACK.

- The slave grants only while it watches and has claimed nothing (`grants_lease`).
- At its claim, with a lease (Policy.takeover_wait), the slave fences the master at the load
  balancer at once (fence at suspicion); the confirmation's time is `lb_fenced`.
- The slave starts without an ACK once `takeover_wait` has passed since `lb_fenced`.
- The master's lease guard (failover/lease_guard.py) kills the service the moment the lease
  ends, whatever the loop is busy with, then feeds LeaseExpired: the master stops for good
  (STOPPING, then INACTIVE), as a master whose service was fenced off must.
Rules for the table in failover.machine; pure, time only from events.
"""

from __future__ import annotations

from failover.machine.actions import Alert, Step
from failover.machine.events import LeaseExpired, LoadBalancerDone
from failover.machine.model import NodeState, Policy, Role, State, Why
from failover.machine.steps import keep, move, stop_alerted

# The slave's states in which it has claimed nothing and will claim nothing before it leaves
# them; MAINTENANCE grants when held from one of them (a release returns there, and a slave
# stopped for a switchback is held from STANDBY) with its own service not running.
GRANTING = frozenset({State.STANDBY, State.SUSPECT, State.PREPARING})


def grants_lease(node: NodeState) -> bool:
    """Slave: whether the datagrams it sends now may renew the master's lease."""
    if node.role is not Role.SLAVE:
        return False
    if node.state is State.MAINTENANCE:
        return node.hold is not None and node.hold.held_from in GRANTING and node.service_ok is not True
    return node.state in GRANTING


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
    """Slave: the master's lease has surely ended (its service is down): the load balancer
    confirmed its server MAINT for this claim `takeover_wait` ago."""
    return p.takeover_wait is not None and n.lb_fenced is not None and now >= n.lb_fenced + p.takeover_wait


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
    """Slave, claiming: the early fence at the load balancer is confirmed; the lease's wait
    starts now (a later reading than the confirmation itself: later is safe)."""
    if e.ok and e.fenced is Role.MASTER and p.takeover_wait is not None and n.lb_fenced is None:
        return keep(n, lb_fenced=e.now)
    if e.ok:
        return keep(n)
    return keep(n, Alert(f"load balancer: {e.what} failed: {e.detail}"))
