"""The slave's rules: watch the master, decide whether a trigger fires, fail over safely.

A failover starts only through an enabled trigger (Policy.triggers):
- abnormal shutdown: the master reports its service failed past its local restart limit, and
  our own probe failed too;
- normal shutdown: the master reports its service stopped cleanly (or its agents stopped), and,
  for a stopped service, our own probe failed too;
- communication loss: no heartbeat for HEARTBEAT_TIMEOUT and PROBE_FAILURES failed probes.
With none enabled (manual mode) the slave watches and reports. Pure handlers; no I/O.
"""

from __future__ import annotations

import dataclasses

from failover.master_rules import peer_report_other, step_down_on_higher_term
from failover.model import (
    MAX_TERM,
    Action,
    Alert,
    CheckService,
    Condition,
    Event,
    Fence,
    FenceConfirmed,
    FenceMethod,
    FenceResult,
    LbEnable,
    LbFence,
    LoadBalancerDone,
    NodeState,
    OnAckTimeout,
    PeerReport,
    Policy,
    ProbeNow,
    ProbeResult,
    Reachability,
    Role,
    RunScripts,
    ScriptKind,
    ScriptsFinished,
    SendShutdown,
    ServiceChecked,
    ShutdownAnswered,
    State,
    Step,
    Trigger,
)
from failover.steps import keep, move

WATCHING = (State.STANDBY, State.SUSPECT)


def _heartbeats_fresh(p: Policy, n: NodeState, now: float) -> bool:
    return n.last_heartbeat is not None and now - n.last_heartbeat <= p.heartbeat_timeout


def _fired(p: Policy, n: NodeState, now: float) -> tuple[Trigger, str] | tuple[None, str]:
    """Which trigger the current evidence fires (enabled or not), and why; or None and what is missing."""
    probe_failed = n.failures >= 1
    fresh = _heartbeats_fresh(p, n, now)
    if not probe_failed and not (fresh and n.master_condition is Condition.AGENTS_STOPPED):
        return None, "the master's service answers again"
    if fresh:
        if n.master_condition is Condition.FAILED and probe_failed:
            return Trigger.ABNORMAL_SHUTDOWN, "abnormal shutdown: the master's service failed past its restart limit"
        if n.master_condition is Condition.STOPPED and probe_failed:
            return Trigger.NORMAL_SHUTDOWN, "normal shutdown: the master's service was stopped cleanly"
        if n.master_condition is Condition.AGENTS_STOPPED:
            return Trigger.NORMAL_SHUTDOWN, "normal shutdown: the master's agents were stopped cleanly"
        return None, f"the master reports its service {n.master_condition} and its heartbeats arrive"
    if n.failures >= p.probe_failures:
        return Trigger.COMMUNICATION_LOSS, (
            f"communication loss: no heartbeat for over {p.heartbeat_timeout:g} s and {p.probe_failures} "
            "probes in a row failed"
        )
    return None, f"{n.failures}/{p.probe_failures} probes failed"


def _decide(p: Policy, n: NodeState, e: Event, detail: str) -> Step:
    """After new evidence while watching: fail over if an enabled trigger fires, else say why not."""
    trigger, why = _fired(p, n, e.now)
    if trigger is not None and trigger in p.triggers:
        return _trigger(p, n, e, trigger, f"{why} ({detail})")
    quiet = trigger is Trigger.NORMAL_SHUTDOWN and n.failures == 0  # agents stopped, service answers
    if (trigger is None or quiet) and n.failures == 0:
        if n.state is State.SUSPECT:
            return move(n, e, State.STANDBY, f"{why} ({detail})")
        return keep(n)
    if trigger is not None:
        mode = "manual mode (no trigger enabled)" if p.manual else f"the {trigger} trigger is disabled"
        reason = f"{why}, but {mode}: not failing over; `failover switchover` moves the service"
        alert: list[Action] = [Alert(reason)]
    else:
        reason, alert = f"the master's service does not answer our probes: {why}", []
    if n.state is State.SUSPECT and n.reason.startswith(reason):
        return keep(n)  # nothing new: no journal entry for every probe
    return move(n, e, State.SUSPECT, f"{reason} (last: {detail})", *alert)


def _trigger(p: Policy, n: NodeState, e: Event, trigger: Trigger, why: str) -> Step:
    """A trigger fired (or the operator asked): the witness gate, then the hooks, then the claim."""
    if p.isolation_timeout is not None and n.witness_ok is not True:
        reason = f"{why}; but the witness does not answer either: this slave may be the isolated one, not taking over"
        if n.state is State.SUSPECT and n.reason == reason:
            return keep(n)
        return move(n, e, State.SUSPECT, reason, Alert(reason))
    if trigger in p.prepare:
        reason = f"{why}: running the trigger's scripts and BEFORE_FAILOVER_SCRIPTS before anything moves"
        return move(n, e, State.PREPARING, reason, RunScripts(ScriptKind.BEFORE_FAILOVER), trigger=trigger)
    return claim(p, dataclasses.replace(n, trigger=trigger), e, why)


def claim(p: Policy, n: NodeState, e: Event, why: str) -> Step:
    if n.term >= MAX_TERM:
        reason = f"{why}; but term {n.term} is the ceiling MAX_TERM: no new term can be claimed, not taking over"
        return move(n, e, State.FAILED, reason, Alert(reason))
    term = n.term + 1
    reason = f"{why}: claiming term {term} and asking the master to shut down"
    return move(
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


def preparing_scripts_finished(p: Policy, n: NodeState, e: Event) -> Step:
    assert isinstance(e, ScriptsFinished)
    if e.kind is not ScriptKind.BEFORE_FAILOVER:
        return keep(n)
    if e.ok:
        return claim(p, n, e, f"{n.trigger}: the before-failover scripts succeeded ({e.detail})")
    if p.before_required and n.trigger is not Trigger.SWITCHOVER:
        reason = (
            f"BEFORE_FAILOVER_SCRIPTS failed ({e.detail}): automatic failover stopped and held; "
            "fix the cause, then `failover release` (or `failover switchover`)"
        )
        return move(
            n,
            e,
            State.MAINTENANCE,
            reason,
            Alert(reason),
            held_from=State.STANDBY,
            hold_by="failover (hook failed)",
            hold_reason=reason,
            trigger=None,
            failures=0,
        )
    if n.trigger is Trigger.SWITCHOVER and p.before_required:
        reason = f"switchover stopped: BEFORE_FAILOVER_SCRIPTS failed ({e.detail}); nothing moved"
        return move(n, e, State.STANDBY, reason, Alert(reason), trigger=None, failures=0)
    return claim(p, n, e, f"{n.trigger}: before-failover scripts failed ({e.detail}), not required: going on")


def started_watching(p: Policy, n: NodeState, e: Event) -> Step:
    # heartbeats get a HEARTBEAT_TIMEOUT from now to arrive before their absence means anything
    fresh = {"failures": 0, "last_heartbeat": e.now, "master_condition": Condition.UNKNOWN}
    if n.state is State.SUSPECT:
        return move(n, e, State.STANDBY, "restarted: probing afresh", **fresh)
    return keep(n, **fresh)


def started_preparing(p: Policy, n: NodeState, e: Event) -> Step:
    return move(
        n,
        e,
        State.STANDBY,
        "restarted while running the before-failover scripts: watching afresh",
        failures=0,
        last_heartbeat=e.now,
        trigger=None,
    )


def probe(p: Policy, n: NodeState, e: Event) -> Step:
    assert isinstance(e, ProbeResult)
    n = dataclasses.replace(n, failures=0 if e.ok else n.failures + 1)
    return _decide(p, n, e, e.detail)


def heartbeat_watching(p: Policy, n: NodeState, e: Event) -> Step:
    assert isinstance(e, PeerReport)
    condition = e.condition if e.state in (State.ACTIVE, State.RESTARTING) else Condition.UNKNOWN
    news = condition is not n.master_condition
    n = dataclasses.replace(
        n, term=max(n.term, e.term), last_heartbeat=e.now, master_condition=condition, heartbeats_lost=False
    )
    if news and condition in (Condition.FAILED, Condition.STOPPED) and n.failures == 0:
        reason = f"the master reports its service {condition} ({e.detail}): probing now"
        return move(n, e, State.SUSPECT, reason, ProbeNow())
    return _decide(p, n, e, e.detail or f"the master is {e.state}, its service {condition}")


def heartbeat_other(p: Policy, n: NodeState, e: Event) -> Step:
    assert isinstance(e, PeerReport)
    n = dataclasses.replace(n, last_heartbeat=e.now, heartbeats_lost=False)
    return peer_report_other(p, n, e)


def tick_watching(p: Policy, n: NodeState, e: Event) -> Step:
    """Heartbeats lost for HEARTBEAT_TIMEOUT: the hosts cannot synchronise (once per loss)."""
    if n.heartbeats_lost or n.last_heartbeat is None or e.now - n.last_heartbeat <= p.heartbeat_timeout:
        return keep(n)
    silent = e.now - n.last_heartbeat
    reason = f"no heartbeat from the master for {silent:.1f} s (HEARTBEAT_TIMEOUT {p.heartbeat_timeout:g} s)"
    actions: list[Action] = [Alert(reason)]
    if p.sync_failure_hooks:
        actions.append(RunScripts(ScriptKind.SYNC_FAILURE))
    step = move(n, e, n.state, reason, *actions, heartbeats_lost=True)
    if n.state in WATCHING and n.failures >= p.probe_failures:
        decided = _decide(p, step.state, e, "heartbeats lost")
        return dataclasses.replace(decided, actions=(*step.actions, *decided.actions))
    return step


def heartbeat_active(p: Policy, n: NodeState, e: Event) -> Step:
    assert isinstance(e, PeerReport)
    if e.term > n.term:
        return step_down_on_higher_term(p, n, e)
    n = dataclasses.replace(n, last_heartbeat=e.now, heartbeats_lost=False)
    if e.state in (State.ACTIVE, State.RESTARTING):
        reason = (
            f"the master reports {e.state} in term {e.term} while this slave is ACTIVE in term {n.term}: "
            "telling it to shut down"
        )
        return keep(n, Alert(reason), SendShutdown(n.term, p.ack_timeout))
    return keep(n)


def _authorized(p: Policy, n: NodeState, e: Event, why: str, fenced_at_lb: bool = False) -> Step:
    """The master is known not to serve for this term: start. With a load balancer, the
    master's server is put in maintenance first (unless that was the fence itself)."""
    actions: list[Action] = [RunScripts(ScriptKind.STARTUP)]
    if p.load_balancer and not fenced_at_lb:
        actions.insert(0, LbFence(Role.MASTER))
    return move(
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
    return move(n, e, State.FENCING, reason, *actions, deadline=e.now + p.ack_timeout, fence_index=0)


def answered(p: Policy, n: NodeState, e: Event) -> Step:
    assert isinstance(e, ShutdownAnswered)
    if e.term != n.term:
        return keep(n)  # an answer for another term proves nothing about this one
    if e.ok:
        return _authorized(p, n, e, f"the master acknowledged the shutdown for term {n.term} ({e.detail})")
    if n.state is State.FENCING:
        return keep(n)
    return _fencing(p, n, e, f"the master could not confirm its shutdown for term {n.term}: {e.detail}; not starting")


def tick_failing_over(p: Policy, n: NodeState, e: Event) -> Step:
    if n.deadline is None or e.now < n.deadline:
        return keep(n)
    waited = f"no ACK from the master within {p.ack_timeout:g} s for term {n.term}"
    if p.on_ack_timeout is OnAckTimeout.TAKEOVER:
        reason = f"{waited}; ON_ACK_TIMEOUT='takeover': starting WITHOUT a confirmed stop of the master"
        step = _authorized(p, n, e, reason)
        return dataclasses.replace(step, actions=(Alert(reason), *step.actions))
    how = "trying the fence chain" if p.fence_methods else "waiting for the master's ACK or `confirm-fenced`"
    return _fencing(p, n, e, f"{waited}: NOT starting; {how}")


def tick_fencing(p: Policy, n: NodeState, e: Event) -> Step:
    if n.deadline is not None and e.now < n.deadline:
        return keep(n)
    actions: list[Action] = [SendShutdown(n.term, p.ack_timeout)]
    changes: dict[str, object] = {"deadline": e.now + p.ack_timeout}
    if p.fence_methods and n.fence_index >= len(p.fence_methods):  # the chain ended: try it again
        actions.append(Fence(n.term, p.fence_methods[0]))
        changes["fence_index"] = 0
    message = (
        f"still FENCING in term {n.term}: the master has not confirmed its shutdown and no fence "
        "succeeded; asking again (an operator who made sure may run `failover confirm-fenced`)"
    )
    return keep(n, Alert(message), *actions, **changes)


def fence_result(p: Policy, n: NodeState, e: Event) -> Step:
    assert isinstance(e, FenceResult)
    current = p.fence_methods[n.fence_index] if n.fence_index < len(p.fence_methods) else None
    if e.term != n.term or e.method is not current:
        return keep(n)  # a late result of another term or of an earlier attempt
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
        return move(n, e, State.FENCING, reason, Fence(n.term, nxt), fence_index=following)
    reason = (
        f"fence by {e.method} failed for term {n.term} ({e.detail}); every fence method failed: waiting "
        "for the master's ACK or an operator's `failover confirm-fenced`"
    )
    return move(n, e, State.FENCING, reason, Alert(reason), fence_index=following)


def started_failing_over(p: Policy, n: NodeState, e: Event) -> Step:
    return move(
        n,
        e,
        State.FAILING_OVER,
        f"restarted while failing over: asking the master again for term {n.term}",
        SendShutdown(n.term, p.ack_timeout),
        deadline=e.now + p.ack_timeout,
    )


def started_fencing(p: Policy, n: NodeState, e: Event) -> Step:
    # the next Tick asks again, alerts, and starts the fence chain over (its results were lost)
    return keep(n, deadline=e.now, fence_index=len(p.fence_methods))


def fence_confirmed(p: Policy, n: NodeState, e: Event) -> Step:
    assert isinstance(e, FenceConfirmed)
    if e.term != n.term:
        return keep(n)
    return _authorized(p, n, e, f"fence of the master confirmed for term {n.term} by {e.method}")


def load_balancer_done(p: Policy, n: NodeState, e: Event) -> Step:
    assert isinstance(e, LoadBalancerDone)
    return keep(n) if e.ok else keep(n, Alert(f"load balancer: {e.what} failed: {e.detail}"))


def started_starting(p: Policy, n: NodeState, e: Event) -> Step:
    """Both roles (the master starts in a switchback)."""
    return move(
        n,
        e,
        State.STARTING,
        f"restarted during the startup for term {n.term}: checking whether the service already answers",
        CheckService(expect_up=True),
        scripts_done=False,
    )


def starting_scripts_finished(p: Policy, n: NodeState, e: Event) -> Step:
    assert isinstance(e, ScriptsFinished)
    if e.kind is not ScriptKind.STARTUP:
        return keep(n)
    if not e.ok:
        reason = f"startup scripts failed for term {n.term}: {e.detail}"
        return move(n, e, State.FAILED, reason, Alert(reason), detail=e.detail)
    return keep(n, CheckService(expect_up=True), scripts_done=True, detail=e.detail)


def starting_service_checked(p: Policy, n: NodeState, e: Event) -> Step:
    """Both roles: the service answers here, so this host is ACTIVE; the AFTER hooks run now."""
    assert isinstance(e, ServiceChecked)
    if e.up:
        how = "after the startup scripts" if n.scripts_done else "(startup had completed before the restart)"
        actions: list[Action] = [LbEnable(n.role)] if p.load_balancer else []
        if p.after_hooks:
            actions.append(RunScripts(ScriptKind.AFTER_FAILOVER))
        return move(
            n,
            e,
            State.ACTIVE,
            f"the service answers on this host {how}: ACTIVE in term {n.term}",
            *actions,
            service_ok=True,
            condition=Condition.UP,
            trigger=None,
            restarts=(),
        )
    if not n.scripts_done:
        return move(
            n,
            e,
            State.STARTING,
            f"the service does not answer yet ({e.detail}): running the startup scripts",
            RunScripts(ScriptKind.STARTUP),
        )
    reason = f"the service does not answer after the startup scripts: {e.detail}"
    return move(n, e, State.FAILED, reason, Alert(reason))


def after_hooks_finished(p: Policy, n: NodeState, e: Event) -> Step:
    """AFTER_FAILOVER (or SYNC_FAILURE) hooks: a failure alerts; the service stays up."""
    assert isinstance(e, ScriptsFinished)
    if e.ok or e.kind not in (ScriptKind.AFTER_FAILOVER, ScriptKind.SYNC_FAILURE):
        return keep(n)
    return keep(n, Alert(f"{e.kind} scripts failed (the service stays up): {e.detail}"))


def reachability(p: Policy, n: NodeState, e: Event) -> Step:
    assert isinstance(e, Reachability)
    return keep(n) if e.witness is None else keep(n, witness_ok=e.witness)
