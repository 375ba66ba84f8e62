"""The master's rules: watch and restart its own service, stop it when told or deposed.

Pure handlers for failover.machine's table; no I/O, time only from events.
"""

from __future__ import annotations

import dataclasses

from failover.model import (
    Action,
    Alert,
    CheckService,
    ClockJump,
    Condition,
    Event,
    LocalHealth,
    NodeState,
    PeerReport,
    Policy,
    Reachability,
    Reply,
    Role,
    RunScripts,
    ScriptKind,
    ScriptsFinished,
    SendHeartbeat,
    ServiceChecked,
    ShutdownRequested,
    State,
    Step,
)
from failover.steps import keep, move, peer


def started_stopping(p: Policy, n: NodeState, e: Event) -> Step:
    return move(
        n,
        e,
        State.STOPPING,
        f"restarted while stopping for term {n.term}: running the shutdown scripts again",
        RunScripts(ScriptKind.SHUTDOWN),
        scripts_done=False,
    )


def started_active(p: Policy, n: NodeState, e: Event) -> Step:
    # isolation is counted from now; restarts and contact of an earlier boot mean nothing to this clock
    return keep(n, last_contact=e.now, restarts=(), peer_contact=None)


def started_restarting(p: Policy, n: NodeState, e: Event) -> Step:
    return keep(n, CheckService(expect_up=True), last_contact=e.now, restarts=(), scripts_done=True, peer_contact=None)


def _isolated(p: Policy, n: NodeState, e: Event) -> Step | None:
    """ACTIVE and out of touch with the slave and the witness for ISOLATION_TIMEOUT: self-fence."""
    if p.isolation_timeout is None or n.last_contact is None or e.now - n.last_contact < p.isolation_timeout:
        return None
    reason = (
        f"isolated: reached neither the slave nor the witness for {e.now - n.last_contact:.1f} s "
        f"(ISOLATION_TIMEOUT {p.isolation_timeout:g} s): stopping the service, the slave may take over"
    )
    return move(
        n, e, State.STOPPING, reason, Alert(reason), RunScripts(ScriptKind.SHUTDOWN), scripts_done=False, detail=""
    )


def reachability(p: Policy, n: NodeState, e: Event) -> Step:
    assert isinstance(e, Reachability)
    if e.peer or e.witness or n.last_contact is None:
        return keep(n, last_contact=e.now)
    return _isolated(p, n, e) or keep(n)


def tick_active(p: Policy, n: NodeState, e: Event) -> Step:
    return _isolated(p, n, e) or keep(n)


def clock_jump(p: Policy, n: NodeState, e: Event) -> Step:
    assert isinstance(e, ClockJump)
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
        reason,
        Alert(reason),
        SendHeartbeat(),
        restarts=recent,
        condition=Condition.FAILED,
        service_ok=False,
    )


def health_active(p: Policy, n: NodeState, e: Event) -> Step:
    assert isinstance(e, LocalHealth)
    if e.ok:
        if n.condition in (Condition.FAILED, Condition.STOPPED):
            reason = f"the service answers again ({e.detail})"
            return move(n, e, State.ACTIVE, reason, SendHeartbeat(), service_ok=True, condition=Condition.UP)
        # Tell the slave at once when the service comes back (not for the first "up").
        urgent = n.condition is not Condition.UP and n.condition is not Condition.UNKNOWN
        return keep(n, *([SendHeartbeat()] if urgent else []), service_ok=True, condition=Condition.UP)
    if e.clean:
        if n.condition is Condition.STOPPED:
            return keep(n, service_ok=False)
        reason = f"normal shutdown: the service was stopped cleanly, not by failover ({e.detail}); not restarting it"
        return move(n, e, State.ACTIVE, reason, SendHeartbeat(), service_ok=False, condition=Condition.STOPPED)
    return _service_failed(p, n, e, e.detail)


def restart_scripts_finished(p: Policy, n: NodeState, e: Event) -> Step:
    assert isinstance(e, ScriptsFinished)
    if e.kind is not ScriptKind.RESTART:
        return keep(n)
    return keep(n, CheckService(expect_up=True), scripts_done=True, detail=e.detail)


def restart_checked(p: Policy, n: NodeState, e: Event) -> Step:
    assert isinstance(e, ServiceChecked)
    if not n.scripts_done:
        return keep(n)
    if e.up:
        reason = f"the service answers again after a local restart ({e.detail})"
        return move(n, e, State.ACTIVE, reason, SendHeartbeat(), service_ok=True, condition=Condition.UP)
    return _service_failed(p, n, e, f"not up after the restart: {e.detail}")


def health_inactive(p: Policy, n: NodeState, e: Event) -> Step:
    assert isinstance(e, LocalHealth)
    if not e.ok:
        return keep(n, service_ok=False)
    reason = (
        f"service found running while INACTIVE (term {n.term}): stopping it, no automatic "
        "failback; use switchback to move the service back"
    )
    return move(
        n,
        e,
        State.STOPPING,
        reason,
        Alert(reason),
        RunScripts(ScriptKind.SHUTDOWN),
        scripts_done=False,
        service_ok=True,
    )


def record_health(p: Policy, n: NodeState, e: Event) -> Step:
    assert isinstance(e, LocalHealth)
    return keep(n, service_ok=e.ok)


def _stop_for(p: Policy, n: NodeState, e: Event, term: int, reason: str) -> Step:
    """Stop the service for `term`; the BEFORE_FAILOVER hooks of this host run first."""
    actions: list[Action] = [RunScripts(ScriptKind.SHUTDOWN)]
    if p.prepare:
        actions.insert(0, RunScripts(ScriptKind.BEFORE_FAILOVER))
    return move(n, e, State.STOPPING, reason, *actions, term=term, scripts_done=False, detail="")


def shutdown_active(p: Policy, n: NodeState, e: Event) -> Step:
    assert isinstance(e, ShutdownRequested)
    if e.term <= n.term:
        return keep(n, Reply(e.term, False, f"stale term {e.term}: this master is ACTIVE in term {n.term}"))
    return _stop_for(p, n, e, e.term, f"the slave requested shutdown for term {e.term}")


def shutdown_stopping(p: Policy, n: NodeState, e: Event) -> Step:
    assert isinstance(e, ShutdownRequested)
    if e.term < n.term:
        return keep(n, Reply(e.term, False, f"stale term {e.term}: current term is {n.term}"))
    # Already stopping: the answer goes to every pending request when the stop is verified.
    return keep(n, term=e.term)


def shutdown_inactive(p: Policy, n: NodeState, e: Event) -> Step:
    assert isinstance(e, ShutdownRequested)
    if e.term < n.term:
        return keep(n, Reply(e.term, False, f"stale term {e.term}: current term is {n.term}"))
    detail = n.detail or "service verified down"
    return keep(n, Reply(e.term, True, detail), term=e.term)


def shutdown_failed(p: Policy, n: NodeState, e: Event) -> Step:
    assert isinstance(e, ShutdownRequested)
    if e.term < n.term:
        return keep(n, Reply(e.term, False, f"stale term {e.term}: current term is {n.term}"))
    return move(
        n,
        e,
        State.STOPPING,
        f"shutdown requested again for term {e.term}: retrying",
        RunScripts(ScriptKind.SHUTDOWN),
        term=e.term,
        scripts_done=False,
        detail="",
    )


def shutdown_held(p: Policy, n: NodeState, e: Event) -> Step:
    assert isinstance(e, ShutdownRequested)
    why = f"held for maintenance by {n.hold_by} since {n.hold_since} ({n.hold_reason}): nothing was stopped"
    return keep(n, Reply(e.term, False, why), Alert(f"refused SHUTDOWN_YOUR_SERVICE for term {e.term}: {why}"))


def stopping_scripts_finished(p: Policy, n: NodeState, e: Event) -> Step:
    assert isinstance(e, ScriptsFinished)
    if e.kind is ScriptKind.BEFORE_FAILOVER:
        return keep(n) if e.ok else keep(n, Alert(f"BEFORE_FAILOVER_SCRIPTS failed here: {e.detail}"))
    if e.kind is not ScriptKind.SHUTDOWN:
        return keep(n)
    # Whatever the scripts said, only the service check decides whether the service is down.
    return keep(n, CheckService(expect_up=False), scripts_done=True, detail=e.detail)


def stopping_service_checked(p: Policy, n: NodeState, e: Event) -> Step:
    """Both roles: the service after the shutdown scripts. A slave stopping for a switchback
    (held_from set) stays held until the master serves."""
    assert isinstance(e, ServiceChecked)
    if not n.scripts_done:
        return keep(n)
    done = State.STANDBY if n.held_from is None else State.MAINTENANCE
    if n.role is Role.MASTER:
        done = State.INACTIVE
    if not e.up:
        detail = f"service verified down ({e.detail})" + (f"; scripts: {n.detail}" if n.detail else "")
        actions: list[Action] = [Reply(n.term, True, detail)] if n.role is Role.MASTER else []
        return move(
            n,
            e,
            done,
            f"service verified down for term {n.term}",
            *actions,
            detail=detail,
            service_ok=False,
            condition=Condition.UNKNOWN,
        )
    reason = f"service still running after the shutdown scripts: {e.detail}"
    reason += f"; scripts: {n.detail}" if n.detail else ""
    actions = [Alert(reason)]
    if n.role is Role.MASTER:
        actions.insert(0, Reply(n.term, False, reason))
    return move(n, e, State.FAILED, reason, *actions)


def step_down_on_higher_term(p: Policy, n: NodeState, e: Event) -> Step:
    """ACTIVE (or held while ACTIVE) and the peer shows a higher term: this node was deposed and
    stops its service. Safety before maintenance: a hold does not keep a deposed node serving."""
    assert isinstance(e, PeerReport)
    if e.term <= n.term:
        step = peer_report_other(p, n, e)
        return dataclasses.replace(step, state=dataclasses.replace(step.state, peer_contact=e.now))
    reason = f"deposed by term {e.term} (the {peer(n.role)} is {e.state}): stopping the service"
    return move(
        n,
        e,
        State.STOPPING,
        reason,
        Alert(reason),
        RunScripts(ScriptKind.SHUTDOWN),
        term=e.term,
        scripts_done=False,
        detail="",
        held_from=None,
    )


def peer_report_other(p: Policy, n: NodeState, e: Event) -> Step:
    """Outside ACTIVE: only learn the higher term (persisted, so it is never forgotten)."""
    assert isinstance(e, PeerReport)
    if e.term > n.term:
        reason = f"learned term {e.term} from the {peer(n.role)} ({e.state})"
        return move(n, e, n.state, reason, term=e.term)
    return keep(n)


def peer_report_held(p: Policy, n: NodeState, e: Event) -> Step:
    assert isinstance(e, PeerReport)
    if n.held_from is State.ACTIVE:
        return step_down_on_higher_term(p, n, e)
    return peer_report_other(p, n, e)
