"""The master watching its own service: health, local restarts within RESTART_LIMIT, the
abnormal and normal shutdowns its heartbeats report, isolation, waking up after a freeze.

Rules for the table in failover.machine; pure, time only from events.
"""

from __future__ import annotations

from failover.machine.actions import Alert, CheckService, RunScripts, SendHeartbeat, Step
from failover.machine.events import (
    ClockJump,
    Event,
    LocalHealth,
    Reachability,
    ScriptsFinished,
    ServiceChecked,
    Started,
)
from failover.machine.model import Condition, NodeState, Policy, ScriptKind, State, Why
from failover.machine.steps import keep, move, stop_alerted


def started_active(p: Policy, n: NodeState, e: Started) -> Step:
    # isolation is counted from now; restarts and contact of an earlier boot mean nothing to this clock
    return keep(n, last_contact=e.now, restarts=(), peer_contact=None)


def started_restarting(p: Policy, n: NodeState, e: Started) -> Step:
    return keep(n, CheckService(expect_up=True), last_contact=e.now, restarts=(), scripts_done=True, peer_contact=None)


def _isolated(p: Policy, n: NodeState, e: Event) -> Step | None:
    """ACTIVE and out of touch with the slave and the witness for ISOLATION_TIMEOUT: self-fence."""
    if p.isolation_timeout is None or n.last_contact is None or e.now - n.last_contact < p.isolation_timeout:
        return None
    reason = (
        f"isolated: reached neither the slave nor the witness for {e.now - n.last_contact:.1f} s "
        f"(ISOLATION_TIMEOUT {p.isolation_timeout:g} s): stopping the service, the slave may take over"
    )
    return stop_alerted(n, e, Why.ISOLATED, reason)


def reachability(p: Policy, n: NodeState, e: Reachability) -> Step:
    if e.peer or e.witness or n.last_contact is None:
        return keep(n, last_contact=e.now)
    return _isolated(p, n, e) or keep(n)


def tick_active(p: Policy, n: NodeState, e: Event) -> Step:
    return _isolated(p, n, e) or keep(n)


def clock_jump(p: Policy, n: NodeState, e: ClockJump) -> Step:
    message = (
        f"woke up after a gap of {e.gap:.1f} s (frozen?): asking the slave for the current term before anything else"
    )
    return keep(n, Alert(message), SendHeartbeat())


def _service_failed(p: Policy, n: NodeState, e: Event, detail: str) -> Step:
    """The service is down and was not stopped cleanly: restart it locally within the limit,
    past it report an abnormal shutdown (the slave's recommended trigger)."""
    if n.condition is Condition.FAILED:
        return keep(n, service_ok=False)
    recent = tuple(t for t in n.restarts if e.now - t < p.restart_window)
    # Restart only while the slave answers: one that cannot be asked may be taking over (a fence
    # an operator confirms for a master whose service is down must not be undone by a restart).
    in_touch = n.peer_contact is not None and e.now - n.peer_contact <= p.heartbeat_timeout
    if len(recent) < p.restart_limit and in_touch:
        count = f"{len(recent) + 1}/{p.restart_limit} within {p.restart_window:g} s"
        return move(
            n,
            e,
            State.RESTARTING,
            Why.RESTARTING,
            f"the service failed ({detail}): restarting it here ({count})",
            SendHeartbeat(),
            RunScripts(ScriptKind.RESTART),
            restarts=(*recent, e.now),
            condition=Condition.RESTARTING,
            service_ok=False,
            scripts_done=False,
        )
    if len(recent) < p.restart_limit:
        why = "and the slave does not answer, so no local restart"
    elif p.restart_limit:
        why = f"after {len(recent)} local restarts within {p.restart_window:g} s"
    else:
        why = "(RESTART_LIMIT 0)"
    reason = f"abnormal shutdown: the service failed {why}: {detail}"
    return move(
        n,
        e,
        State.ACTIVE,
        Why.ABNORMAL_SHUTDOWN,
        reason,
        Alert(reason),
        SendHeartbeat(),
        restarts=recent,
        condition=Condition.FAILED,
        service_ok=False,
    )


def health_active(p: Policy, n: NodeState, e: LocalHealth) -> Step:
    if e.ok:
        if n.condition in (Condition.FAILED, Condition.STOPPED):
            reason = f"the service answers again ({e.detail})"
            return move(
                n, e, State.ACTIVE, Why.SERVICE_BACK, reason, SendHeartbeat(), service_ok=True, condition=Condition.UP
            )
        # Tell the slave at once when the service comes back (not for the first "up").
        urgent = n.condition is not Condition.UP and n.condition is not Condition.UNKNOWN
        return keep(n, *([SendHeartbeat()] if urgent else []), service_ok=True, condition=Condition.UP)
    if e.clean:
        if n.condition is Condition.STOPPED:
            return keep(n, service_ok=False)
        reason = f"normal shutdown: the service was stopped cleanly, not by failover ({e.detail}); not restarting it"
        return move(
            n,
            e,
            State.ACTIVE,
            Why.NORMAL_SHUTDOWN,
            reason,
            SendHeartbeat(),
            service_ok=False,
            condition=Condition.STOPPED,
        )
    return _service_failed(p, n, e, e.detail)


def restart_scripts_finished(p: Policy, n: NodeState, e: ScriptsFinished) -> Step:
    if e.kind is not ScriptKind.RESTART:
        return keep(n)
    return keep(n, CheckService(expect_up=True), scripts_done=True, detail=e.detail)


def restart_checked(p: Policy, n: NodeState, e: ServiceChecked) -> Step:
    if not n.scripts_done:
        return keep(n)
    if e.up:
        reason = f"the service answers again after a local restart ({e.detail})"
        return move(
            n, e, State.ACTIVE, Why.SERVICE_BACK, reason, SendHeartbeat(), service_ok=True, condition=Condition.UP
        )
    return _service_failed(p, n, e, f"not up after the restart: {e.detail}")


def health_inactive(p: Policy, n: NodeState, e: LocalHealth) -> Step:
    if not e.ok:
        return keep(n, service_ok=False)
    reason = (
        f"service found running while INACTIVE (term {n.term}): stopping it, no automatic "
        "failback; use switchback to move the service back"
    )
    return stop_alerted(n, e, Why.RUNNING_WHILE_INACTIVE, reason, service_ok=True)


def record_health(p: Policy, n: NodeState, e: LocalHealth) -> Step:
    """Both roles, where the health changes no decision: only remembered for status."""
    return keep(n, service_ok=e.ok)
