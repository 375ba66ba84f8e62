"""The failover state machine: every decision of both agents, and nothing else.

Pure: no I/O, no clock reads, no randomness. Time arrives only inside events (``now`` is a
monotonic reading taken by the daemon). ``step(policy, state, event)`` returns the next state,
the actions to execute and, when something changed, a ``Transition`` with a human-readable
reason. The daemons persist the new state, journal the transition, then execute the actions;
the results of those actions come back as events.

The protocol is written as one table, ``(role, state, event type) -> handler``. An event type
that the role can receive but the table does not list for the current state is ignored (the
state is kept and nothing is done); an event type that the role can never receive raises
``MachineError``, whose message names role, state and event.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

from failover.model import (
    GROUP_WORD,
    Action,
    Alert,
    CheckService,
    ClockJump,
    Event,
    Fence,
    FenceConfirmed,
    FenceMethod,
    FenceResult,
    LbEnable,
    LbFence,
    LoadBalancerDone,
    LocalHealth,
    NodeState,
    OnAckTimeout,
    PeerReport,
    Policy,
    ProbeNow,
    ProbeResult,
    Reachability,
    Reply,
    Role,
    RunScripts,
    ScriptKind,
    ScriptsFinished,
    SendHeartbeat,
    SendShutdown,
    ServiceChecked,
    ShutdownAnswered,
    ShutdownRequested,
    Started,
    State,
    Step,
    Tick,
    Transition,
    initial_state,
)


class MachineError(Exception):
    """An event the role can never receive: a bug in the daemon that fed it."""

    def __init__(self, role: Role, state: State, event: Event) -> None:
        super().__init__(f"the {role} in state {state} cannot receive {type(event).__name__}: {event!r}")
        self.role, self.state, self.event = role, state, event


# --------------------------------------------------------------------------------------------
# Helpers for handlers


def _move(node: NodeState, event: Event, to: State, reason: str, *actions: Action, **changes: object) -> Step:
    """A transition: new state (and any field changes), a reason, actions."""
    new = dataclasses.replace(node, state=to, reason=reason, **changes)  # type: ignore[arg-type]
    transition = Transition(node.state, to, node.term, new.term, reason, type(event).__name__)
    return Step(new, actions, transition)


def _keep(node: NodeState, *actions: Action, **changes: object) -> Step:
    """No transition: same state, maybe some bookkeeping and actions."""
    return Step(dataclasses.replace(node, **changes), actions)  # type: ignore[arg-type]


Handler = Callable[[Policy, NodeState, Event], Step]

# --------------------------------------------------------------------------------------------
# Master handlers


def _master_started_stopping(p: Policy, n: NodeState, e: Event) -> Step:
    return _move(
        n,
        e,
        State.STOPPING,
        f"restarted while stopping for term {n.term}: running the shutdown scripts again",
        RunScripts(ScriptKind.SHUTDOWN),
        scripts_done=False,
    )


def _master_started_active(p: Policy, n: NodeState, e: Event) -> Step:
    return _keep(n, last_contact=e.now)  # isolation is counted from now


def _isolated(p: Policy, n: NodeState, e: Event) -> Step | None:
    """ACTIVE and out of touch with the slave and the witness for ISOLATION_TIMEOUT: self-fence."""
    if p.isolation_timeout is None or n.last_contact is None or e.now - n.last_contact < p.isolation_timeout:
        return None
    reason = (
        f"isolated: reached neither the slave nor the witness for {e.now - n.last_contact:.1f} s "
        f"(ISOLATION_TIMEOUT {p.isolation_timeout:g} s): stopping the service, the slave may take over"
    )
    return _move(
        n, e, State.STOPPING, reason, Alert(reason), RunScripts(ScriptKind.SHUTDOWN), scripts_done=False, detail=""
    )


def _master_reachability(p: Policy, n: NodeState, e: Event) -> Step:
    assert isinstance(e, Reachability)
    if e.peer or e.witness:
        return _keep(n, last_contact=e.now)
    if n.last_contact is None:
        return _keep(n, last_contact=e.now)
    return _isolated(p, n, e) or _keep(n)


def _master_tick_active(p: Policy, n: NodeState, e: Event) -> Step:
    return _isolated(p, n, e) or _keep(n)


def _master_clock_jump(p: Policy, n: NodeState, e: Event) -> Step:
    assert isinstance(e, ClockJump)
    message = (
        f"woke up after a gap of {e.gap:.1f} s (frozen?): asking the slave for the current term before anything else"
    )
    return _keep(n, Alert(message), SendHeartbeat())


def _master_health_active(p: Policy, n: NodeState, e: Event) -> Step:
    assert isinstance(e, LocalHealth)
    # Tell the slave at once when the service goes down or comes back (not for the first "up").
    urgent = e.ok != n.service_ok and not (n.service_ok is None and e.ok)
    return _keep(n, *([SendHeartbeat()] if urgent else []), service_ok=e.ok)


def _master_health_inactive(p: Policy, n: NodeState, e: Event) -> Step:
    assert isinstance(e, LocalHealth)
    if not e.ok:
        return _keep(n, service_ok=False)
    reason = (
        f"service found running while INACTIVE (term {n.term}): stopping it, no automatic "
        "failback; use switchback to move the service back"
    )
    return _move(
        n,
        e,
        State.STOPPING,
        reason,
        Alert(reason),
        RunScripts(ScriptKind.SHUTDOWN),
        scripts_done=False,
        service_ok=True,
    )


def _record_health(p: Policy, n: NodeState, e: Event) -> Step:
    assert isinstance(e, LocalHealth)
    return _keep(n, service_ok=e.ok)


def _master_shutdown_active(p: Policy, n: NodeState, e: Event) -> Step:
    assert isinstance(e, ShutdownRequested)
    if e.term <= n.term:
        return _keep(n, Reply(e.term, False, f"stale term {e.term}: this master is ACTIVE in term {n.term}"))
    return _move(
        n,
        e,
        State.STOPPING,
        f"the slave requested shutdown for term {e.term}",
        RunScripts(ScriptKind.SHUTDOWN),
        term=e.term,
        scripts_done=False,
        detail="",
    )


def _master_shutdown_stopping(p: Policy, n: NodeState, e: Event) -> Step:
    assert isinstance(e, ShutdownRequested)
    if e.term < n.term:
        return _keep(n, Reply(e.term, False, f"stale term {e.term}: current term is {n.term}"))
    # Already stopping: the answer goes to every pending request when the stop is verified.
    return _keep(n, term=e.term)


def _master_shutdown_inactive(p: Policy, n: NodeState, e: Event) -> Step:
    assert isinstance(e, ShutdownRequested)
    if e.term < n.term:
        return _keep(n, Reply(e.term, False, f"stale term {e.term}: current term is {n.term}"))
    detail = n.detail or "service verified down"
    return _keep(n, Reply(e.term, True, detail), term=e.term)


def _master_shutdown_failed(p: Policy, n: NodeState, e: Event) -> Step:
    assert isinstance(e, ShutdownRequested)
    if e.term < n.term:
        return _keep(n, Reply(e.term, False, f"stale term {e.term}: current term is {n.term}"))
    return _move(
        n,
        e,
        State.STOPPING,
        f"shutdown requested again for term {e.term}: retrying",
        RunScripts(ScriptKind.SHUTDOWN),
        term=e.term,
        scripts_done=False,
        detail="",
    )


def _stopping_scripts_finished(p: Policy, n: NodeState, e: Event) -> Step:
    assert isinstance(e, ScriptsFinished)
    if e.kind is not ScriptKind.SHUTDOWN:
        return _keep(n)
    # Whatever the scripts said, only the service check decides whether the service is down.
    return _keep(n, CheckService(expect_up=False), scripts_done=True, detail=e.detail)


def _stopping_service_checked(p: Policy, n: NodeState, e: Event) -> Step:
    assert isinstance(e, ServiceChecked)
    if not n.scripts_done:
        return _keep(n)
    done = State.INACTIVE if n.role is Role.MASTER else State.STANDBY
    if not e.up:
        detail = f"service verified down ({e.detail})" + (f"; scripts: {n.detail}" if n.detail else "")
        actions: list[Action] = [Reply(n.term, True, detail)] if n.role is Role.MASTER else []
        return _move(n, e, done, f"service verified down for term {n.term}", *actions, detail=detail, service_ok=False)
    reason = f"service still running after the shutdown scripts: {e.detail}"
    actions = [Alert(reason)]
    if n.role is Role.MASTER:
        actions.insert(0, Reply(n.term, False, f"{reason}; scripts: {n.detail}"))
    return _move(n, e, State.FAILED, reason, *actions)


def _step_down_on_higher_term(p: Policy, n: NodeState, e: Event) -> Step:
    """ACTIVE and the peer shows a higher term: this node was deposed and stops its service."""
    assert isinstance(e, PeerReport)
    if e.term <= n.term:
        return _peer_report_other(p, n, e)
    reason = f"deposed by term {e.term} (the {_peer(n.role)} is {e.state}): stopping the service"
    return _move(
        n,
        e,
        State.STOPPING,
        reason,
        Alert(reason),
        RunScripts(ScriptKind.SHUTDOWN),
        term=e.term,
        scripts_done=False,
        detail="",
    )


def _peer_report_other(p: Policy, n: NodeState, e: Event) -> Step:
    """Outside ACTIVE: only learn the higher term (persisted, so it is never forgotten)."""
    assert isinstance(e, PeerReport)
    if e.term > n.term:
        reason = f"learned term {e.term} from the {_peer(n.role)} ({e.state})"
        return _move(n, e, n.state, reason, term=e.term)
    return _keep(n)


def _peer(role: Role) -> Role:
    return Role.SLAVE if role is Role.MASTER else Role.MASTER


# --------------------------------------------------------------------------------------------
# Slave handlers


def _claim_term(p: Policy, n: NodeState, e: Event, why: str) -> Step:
    if p.isolation_timeout is not None and n.witness_ok is not True:
        reason = f"{why}; but the witness does not answer either: this slave may be the isolated one, not taking over"
        if n.state is State.SUSPECT and n.reason == reason:
            return _keep(n)
        return _move(n, e, State.SUSPECT, reason, Alert(reason))
    return _claim(p, n, e, why)


def _claim(p: Policy, n: NodeState, e: Event, why: str) -> Step:
    term = n.term + 1
    reason = f"{why}: claiming term {term} and asking the master to shut down"
    return _move(
        n,
        e,
        State.FAILING_OVER,
        reason,
        SendShutdown(term, p.ack_timeout),
        term=term,
        deadline=e.now + p.ack_timeout,
        scripts_done=False,
        detail="",
    )


def _slave_started_watching(p: Policy, n: NodeState, e: Event) -> Step:
    if n.state is State.SUSPECT:
        return _move(n, e, State.STANDBY, "restarted: probing afresh", failures=0, master_says_down=False)
    return _keep(n, failures=0, master_says_down=False)


def _slave_probe(p: Policy, n: NodeState, e: Event) -> Step:
    assert isinstance(e, ProbeResult)
    if e.ok:
        if n.state is State.SUSPECT:
            return _move(n, e, State.STANDBY, f"the master's service answers again ({e.detail})", failures=0)
        return _keep(n, failures=0)
    failures = n.failures + 1
    if failures >= p.probe_failures:
        return _claim_term(p, n, e, f"{failures} consecutive probes of the master failed (last: {e.detail})")
    if n.master_says_down:
        return _claim_term(p, n, e, f"the master reports its service down and our probe failed ({e.detail})")
    reason = f"probe of the master failed ({failures}/{p.probe_failures}): {e.detail}"
    return _move(n, e, State.SUSPECT, reason, failures=failures)


def _slave_heartbeat_watching(p: Policy, n: NodeState, e: Event) -> Step:
    assert isinstance(e, PeerReport)
    n = dataclasses.replace(n, term=max(n.term, e.term))  # step() journals a learned term
    says_down = e.state is State.ACTIVE and e.service_ok is False
    if not says_down:
        return _keep(n, master_says_down=False)
    if n.failures >= 1:  # our own last probe failed too: two witnesses agree
        why = f"the master reports its service down ({e.detail}) and our last probe failed"
        return _claim_term(p, n, e, why)
    if n.master_says_down:
        return _keep(n)  # already known; the probe it triggered answered, keep watching
    return _move(
        n,
        e,
        State.SUSPECT,
        f"the master reports its service down ({e.detail}): probing now",
        ProbeNow(),
        master_says_down=True,
    )


def _slave_heartbeat_active(p: Policy, n: NodeState, e: Event) -> Step:
    assert isinstance(e, PeerReport)
    if e.term > n.term:
        return _step_down_on_higher_term(p, n, e)
    if e.state is State.ACTIVE:
        reason = (
            f"the master reports ACTIVE in term {e.term} while this slave is ACTIVE in term {n.term}: "
            "telling it to shut down"
        )
        return _keep(n, Alert(reason), SendShutdown(n.term, p.ack_timeout))
    return _keep(n)


def _authorized(p: Policy, n: NodeState, e: Event, why: str, fenced_at_lb: bool = False) -> Step:
    """The master is known not to serve for this term: start. With a load balancer, the
    master's server is put in maintenance first (unless that was the fence itself)."""
    actions: list[Action] = [RunScripts(ScriptKind.STARTUP)]
    if p.load_balancer and not fenced_at_lb:
        actions.insert(0, LbFence(Role.MASTER))
    return _move(
        n,
        e,
        State.STARTING,
        f"{why}: running the startup scripts",
        *actions,
        deadline=None,
        scripts_done=False,
        detail="",
    )


def _fencing(p: Policy, n: NodeState, e: Event, reason: str) -> Step:
    """Enter FENCING: alert, and try the first fence method of the chain (if any)."""
    actions: list[Action] = [Alert(reason)]
    if p.fence_methods:
        actions.append(Fence(n.term, p.fence_methods[0]))
    return _move(n, e, State.FENCING, reason, *actions, deadline=e.now + p.ack_timeout, fence_index=0)


def _slave_answered(p: Policy, n: NodeState, e: Event) -> Step:
    assert isinstance(e, ShutdownAnswered)
    if e.term != n.term:
        return _keep(n)  # an answer for another term proves nothing about this one
    if e.ok:
        return _authorized(p, n, e, f"the master acknowledged the shutdown for term {n.term} ({e.detail})")
    if n.state is State.FENCING:
        return _keep(n)
    return _fencing(p, n, e, f"the master could not confirm its shutdown for term {n.term}: {e.detail}; not starting")


def _slave_tick_failing_over(p: Policy, n: NodeState, e: Event) -> Step:
    if n.deadline is None or e.now < n.deadline:
        return _keep(n)
    waited = f"no ACK from the master within {p.ack_timeout:g} s for term {n.term}"
    if p.on_ack_timeout is OnAckTimeout.TAKEOVER:
        reason = f"{waited}; ON_ACK_TIMEOUT='takeover': starting WITHOUT a confirmed stop of the master"
        step = _authorized(p, n, e, reason)
        return dataclasses.replace(step, actions=(Alert(reason), *step.actions))
    how = "trying the fence chain" if p.fence_methods else "waiting for the master's ACK or `confirm-fenced`"
    return _fencing(p, n, e, f"{waited}: NOT starting; {how}")


def _slave_tick_fencing(p: Policy, n: NodeState, e: Event) -> Step:
    if n.deadline is not None and e.now < n.deadline:
        return _keep(n)
    actions: list[Action] = [SendShutdown(n.term, p.ack_timeout)]
    changes: dict[str, object] = {"deadline": e.now + p.ack_timeout}
    if p.fence_methods and n.fence_index >= len(p.fence_methods):  # the chain ended: try it again
        actions.append(Fence(n.term, p.fence_methods[0]))
        changes["fence_index"] = 0
    message = (
        f"still FENCING in term {n.term}: the master has not confirmed its shutdown and no fence "
        "succeeded; asking again (an operator who made sure may run `failover confirm-fenced`)"
    )
    return _keep(n, Alert(message), *actions, **changes)


def _slave_fence_result(p: Policy, n: NodeState, e: Event) -> Step:
    assert isinstance(e, FenceResult)
    current = p.fence_methods[n.fence_index] if n.fence_index < len(p.fence_methods) else None
    if e.term != n.term or e.method is not current:
        return _keep(n)  # a late result of another term or of an earlier attempt
    if e.ok:
        return _authorized(
            p,
            n,
            e,
            f"the master is fenced for term {n.term} by {e.method} ({e.detail})",
            fenced_at_lb=e.method is FenceMethod.LOAD_BALANCER,
        )
    following = n.fence_index + 1
    if following < len(p.fence_methods):
        nxt = p.fence_methods[following]
        reason = f"fence by {e.method} failed for term {n.term} ({e.detail}): trying {nxt}"
        return _move(n, e, State.FENCING, reason, Fence(n.term, nxt), fence_index=following)
    reason = (
        f"fence by {e.method} failed for term {n.term} ({e.detail}); every fence method failed: waiting "
        "for the master's ACK or an operator's `failover confirm-fenced`"
    )
    return _move(n, e, State.FENCING, reason, Alert(reason), fence_index=following)


def _slave_started_failing_over(p: Policy, n: NodeState, e: Event) -> Step:
    return _move(
        n,
        e,
        State.FAILING_OVER,
        f"restarted while failing over: asking the master again for term {n.term}",
        SendShutdown(n.term, p.ack_timeout),
        deadline=e.now + p.ack_timeout,
    )


def _slave_started_fencing(p: Policy, n: NodeState, e: Event) -> Step:
    # the next Tick asks again, alerts, and starts the fence chain over (its results were lost)
    return _keep(n, deadline=e.now, fence_index=len(p.fence_methods))


def _slave_fence_confirmed(p: Policy, n: NodeState, e: Event) -> Step:
    assert isinstance(e, FenceConfirmed)
    if e.term != n.term:
        return _keep(n)
    return _authorized(p, n, e, f"fence of the master confirmed for term {n.term} by {e.method}")


def _load_balancer_done(p: Policy, n: NodeState, e: Event) -> Step:
    assert isinstance(e, LoadBalancerDone)
    return _keep(n) if e.ok else _keep(n, Alert(f"load balancer: {e.what} failed: {e.detail}"))


def _slave_started_starting(p: Policy, n: NodeState, e: Event) -> Step:
    return _move(
        n,
        e,
        State.STARTING,
        f"restarted during the startup for term {n.term}: checking whether the service already answers",
        CheckService(expect_up=True),
        scripts_done=False,
    )


def _starting_scripts_finished(p: Policy, n: NodeState, e: Event) -> Step:
    assert isinstance(e, ScriptsFinished)
    if e.kind is not ScriptKind.STARTUP:
        return _keep(n)
    if not e.ok:
        reason = f"startup scripts failed for term {n.term}: {e.detail}"
        return _move(n, e, State.FAILED, reason, Alert(reason), detail=e.detail)
    return _keep(n, CheckService(expect_up=True), scripts_done=True, detail=e.detail)


def _starting_service_checked(p: Policy, n: NodeState, e: Event) -> Step:
    assert isinstance(e, ServiceChecked)
    if e.up:
        how = "after the startup scripts" if n.scripts_done else "(startup had completed before the restart)"
        enable = [LbEnable(Role.SLAVE)] if p.load_balancer else []
        return _move(n, e, State.ACTIVE, f"the service answers on this host {how}: ACTIVE in term {n.term}", *enable)
    if not n.scripts_done:
        return _move(
            n,
            e,
            State.STARTING,
            f"the service does not answer yet ({e.detail}): running the startup scripts",
            RunScripts(ScriptKind.STARTUP),
        )
    reason = f"the service does not answer after the startup scripts: {e.detail}"
    return _move(n, e, State.FAILED, reason, Alert(reason))


def _slave_reachability(p: Policy, n: NodeState, e: Event) -> Step:
    assert isinstance(e, Reachability)
    return _keep(n) if e.witness is None else _keep(n, witness_ok=e.witness)


def _ignore(p: Policy, n: NodeState, e: Event) -> Step:
    return _keep(n)


# --------------------------------------------------------------------------------------------
# The table. Keys missing here for an event type the role can receive: ignored.

_M, _S = Role.MASTER, Role.SLAVE
_TABLE: dict[tuple[Role, State, type[Event]], Handler] = {
    # master
    (_M, State.STOPPING, Started): _master_started_stopping,
    (_M, State.ACTIVE, LocalHealth): _master_health_active,
    (_M, State.STOPPING, LocalHealth): _record_health,
    (_M, State.INACTIVE, LocalHealth): _master_health_inactive,
    (_M, State.FAILED, LocalHealth): _record_health,
    (_M, State.ACTIVE, ShutdownRequested): _master_shutdown_active,
    (_M, State.STOPPING, ShutdownRequested): _master_shutdown_stopping,
    (_M, State.INACTIVE, ShutdownRequested): _master_shutdown_inactive,
    (_M, State.FAILED, ShutdownRequested): _master_shutdown_failed,
    (_M, State.STOPPING, ScriptsFinished): _stopping_scripts_finished,
    (_M, State.STOPPING, ServiceChecked): _stopping_service_checked,
    (_M, State.ACTIVE, PeerReport): _step_down_on_higher_term,
    (_M, State.STOPPING, PeerReport): _peer_report_other,
    (_M, State.INACTIVE, PeerReport): _peer_report_other,
    (_M, State.FAILED, PeerReport): _peer_report_other,
    # slave
    (_S, State.STANDBY, Started): _slave_started_watching,
    (_S, State.SUSPECT, Started): _slave_started_watching,
    (_S, State.FAILING_OVER, Started): _slave_started_failing_over,
    (_S, State.FENCING, Started): _slave_started_fencing,
    (_S, State.STARTING, Started): _slave_started_starting,
    (_S, State.STOPPING, Started): _master_started_stopping,
    (_S, State.STANDBY, ProbeResult): _slave_probe,
    (_S, State.SUSPECT, ProbeResult): _slave_probe,
    (_S, State.STANDBY, PeerReport): _slave_heartbeat_watching,
    (_S, State.SUSPECT, PeerReport): _slave_heartbeat_watching,
    (_S, State.FAILING_OVER, PeerReport): _peer_report_other,
    (_S, State.FENCING, PeerReport): _peer_report_other,
    (_S, State.STARTING, PeerReport): _peer_report_other,
    (_S, State.ACTIVE, PeerReport): _slave_heartbeat_active,
    (_S, State.STOPPING, PeerReport): _peer_report_other,
    (_S, State.FAILED, PeerReport): _peer_report_other,
    (_S, State.FAILING_OVER, ShutdownAnswered): _slave_answered,
    (_S, State.FENCING, ShutdownAnswered): _slave_answered,
    (_S, State.FAILING_OVER, Tick): _slave_tick_failing_over,
    (_S, State.FENCING, Tick): _slave_tick_fencing,
    (_S, State.FAILING_OVER, FenceConfirmed): _slave_fence_confirmed,
    (_S, State.FENCING, FenceConfirmed): _slave_fence_confirmed,
    (_S, State.FENCING, FenceResult): _slave_fence_result,
    (_S, State.STARTING, ScriptsFinished): _starting_scripts_finished,
    (_S, State.STARTING, ServiceChecked): _starting_service_checked,
    (_S, State.STOPPING, ScriptsFinished): _stopping_scripts_finished,
    (_S, State.STOPPING, ServiceChecked): _stopping_service_checked,
    (_S, State.ACTIVE, LocalHealth): _record_health,
}

_TABLE.update({(_S, state, LoadBalancerDone): _load_balancer_done for (role, state) in GROUP_WORD if role is _S})
_TABLE.update({(_S, state, Reachability): _slave_reachability for (role, state) in GROUP_WORD if role is _S})
_TABLE.update(
    {
        (_M, State.ACTIVE, Started): _master_started_active,
        (_M, State.ACTIVE, Reachability): _master_reachability,
        (_M, State.ACTIVE, Tick): _master_tick_active,
        (_M, State.ACTIVE, ClockJump): _master_clock_jump,
    }
)

# Every event type each role can receive. The rest raise MachineError.
EVENTS_OF: dict[Role, frozenset[type[Event]]] = {
    Role.MASTER: frozenset(
        {
            Started,
            Tick,
            LocalHealth,
            Reachability,
            ClockJump,
            ShutdownRequested,
            ScriptsFinished,
            ServiceChecked,
            PeerReport,
        }
    ),
    Role.SLAVE: frozenset(
        {
            Started,
            Tick,
            ProbeResult,
            PeerReport,
            LocalHealth,
            ShutdownAnswered,
            ScriptsFinished,
            ServiceChecked,
            FenceConfirmed,
            FenceResult,
            LoadBalancerDone,
            Reachability,
            ClockJump,
        }
    ),
}


def step(policy: Policy, node: NodeState, event: Event) -> Step:
    """Decide what `event` means for `node`: the next state, the actions, the transition."""
    if type(event) not in EVENTS_OF[node.role]:
        raise MachineError(node.role, node.state, event)
    handler = _TABLE.get((node.role, node.state, type(event)), _ignore)
    result = handler(policy, node, event)
    if result.transition is None and result.state.term != node.term:
        # A term is never forgotten: a learned term is journaled like any transition.
        reason = f"learned term {result.state.term} from {type(event).__name__}"
        result = dataclasses.replace(
            result,
            state=dataclasses.replace(result.state, reason=reason),
            transition=Transition(node.state, node.state, node.term, result.state.term, reason, type(event).__name__),
        )
    return result


__all__ = [
    "EVENTS_OF",
    "GROUP_WORD",
    "Action",
    "Alert",
    "CheckService",
    "ClockJump",
    "Event",
    "Fence",
    "FenceConfirmed",
    "FenceMethod",
    "FenceResult",
    "LbEnable",
    "LbFence",
    "LoadBalancerDone",
    "LocalHealth",
    "MachineError",
    "NodeState",
    "OnAckTimeout",
    "PeerReport",
    "Policy",
    "ProbeNow",
    "ProbeResult",
    "Reachability",
    "Reply",
    "Role",
    "RunScripts",
    "ScriptKind",
    "ScriptsFinished",
    "SendHeartbeat",
    "SendShutdown",
    "ServiceChecked",
    "ShutdownAnswered",
    "ShutdownRequested",
    "Started",
    "State",
    "Step",
    "Tick",
    "Transition",
    "initial_state",
    "step",
]
