"""The slave's claim and the fence chain: a new term, SHUTDOWN_YOUR_SERVICE, then the ACK, a
confirmed fence, or (only with ON_ACK_TIMEOUT='takeover') the timeout; nothing else lets it start.

Rules for the table in failover.machine; pure, time only from events.
"""

from __future__ import annotations

import dataclasses

from failover.machine.actions import Action, Alert, Fence, LbFence, RunScripts, SendShutdown, Step
from failover.machine.events import Event, FenceConfirmed, FenceResult, ScriptsFinished, ShutdownAnswered, Started
from failover.machine.lease import service_down_at, takeover_due
from failover.machine.model import (
    MAX_TERM,
    FenceMethod,
    Hold,
    NodeState,
    OnAckTimeout,
    Policy,
    Role,
    ScriptKind,
    State,
    Trigger,
    Why,
)
from failover.machine.steps import keep, move


def claim(p: Policy, n: NodeState, e: Event, why: str) -> Step:
    """Claim the next term and ask the master to shut down for it."""
    if n.term >= MAX_TERM:
        reason = f"{why}; but term {n.term} is the ceiling MAX_TERM: no new term can be claimed, not taking over"
        return move(n, e, State.FAILED, Why.TERM_CEILING, reason, Alert(reason))
    term = n.term + 1
    reason = f"{why}: claiming term {term} and asking the master to shut down"
    return move(
        n,
        e,
        State.FAILING_OVER,
        Why.CLAIMED,
        reason,
        *_ask(p, term, n.trigger),
        term=term,
        deadline=e.now + p.ack_timeout,
        scripts_done=False,
        detail="",
        lease_gone_at=None,
    )


def _ask(p: Policy, term: int, trigger: Trigger | None) -> tuple[Action, ...]:
    """SHUTDOWN_YOUR_SERVICE for `term`; with a lease, fence the master at the load balancer at
    once too (fence at suspicion): its confirmation starts the lease's wait, and clients are
    protected from that moment, ACK or not. Not for a switchover: the master is healthy and
    stops gracefully, serving until it has; the fence comes with the ACK (`_authorized`)."""
    if p.takeover_wait is None or trigger is Trigger.SWITCHOVER:
        return (SendShutdown(term, p.ack_timeout),)
    return SendShutdown(term, p.ack_timeout), LbFence(Role.MASTER)


def preparing_scripts_finished(p: Policy, n: NodeState, e: ScriptsFinished) -> Step:
    """PREPARING: the trigger's scripts and BEFORE_FAILOVER_SCRIPTS ended; claim, or stop and hold."""
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
            Why.BEFORE_FAILED,
            reason,
            Alert(reason),
            hold=Hold(State.STANDBY, "failover (hook failed)", "", reason),
            trigger=None,
            failures=0,
        )
    if n.trigger is Trigger.SWITCHOVER and p.before_required:
        reason = f"switchover stopped: BEFORE_FAILOVER_SCRIPTS failed ({e.detail}); nothing moved"
        return move(n, e, State.STANDBY, Why.BEFORE_FAILED, reason, Alert(reason), trigger=None, failures=0)
    return claim(p, n, e, f"{n.trigger}: before-failover scripts failed ({e.detail}), not required: going on")


def _authorized(p: Policy, n: NodeState, e: Event, why: str, fenced_at_lb: bool = False) -> Step:
    """The master is known not to serve for this term: start. With a load balancer, the
    master's server is put in maintenance first (unless that was the fence itself)."""
    actions: list[Action] = [RunScripts(ScriptKind.STARTUP)]
    if p.load_balancer and not fenced_at_lb and n.lease_gone_at is None:
        actions.insert(0, LbFence(Role.MASTER))
    return move(
        n,
        e,
        State.STARTING,
        Why.AUTHORIZED,
        f"{why}: running the startup scripts",
        *actions,
        deadline=None,
        scripts_done=False,
        detail="",
        lease_gone_at=None,  # waited for no more
    )


def _fencing(p: Policy, n: NodeState, e: Event, reason: str) -> Step:
    """Enter FENCING: alert, and try the first fence method of the chain (if any)."""
    actions: list[Action] = [Alert(reason)]
    if p.fence_methods:
        actions.append(Fence(n.term, p.fence_methods[0]))
    return move(n, e, State.FENCING, Why.NO_ACK, reason, *actions, deadline=e.now + p.ack_timeout, fence_index=0)


def answered(p: Policy, n: NodeState, e: ShutdownAnswered) -> Step:
    if e.term != n.term:
        return keep(n)  # an answer for another term proves nothing about this one
    if e.ok:
        return _authorized(p, n, e, f"the master acknowledged the shutdown for term {n.term} ({e.detail})")
    if n.state is State.FENCING:
        return keep(n)
    return _fencing(p, n, e, f"the master could not confirm its shutdown for term {n.term}: {e.detail}; not starting")


def _lease_ended(p: Policy, n: NodeState, e: Event) -> Step:
    """Start without an ACK: the master's lease has surely ended (failover.machine.lease)."""
    reason = (
        f"no ACK for term {n.term}, but the master's server is MAINT at the load balancer and the slave "
        f"granted no lease since its claim: the master's lease has ended (its guard stops the service "
        f"within {p.takeover_wait or 0:.2f} s of the last grant, {p.lb_takeover_wait or 0:.2f} s of the fence)"
    )
    return _authorized(p, n, e, reason, fenced_at_lb=True)


def tick_failing_over(p: Policy, n: NodeState, e: Event) -> Step:
    if takeover_due(p, n, e.now):
        return _lease_ended(p, n, e)
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
    if takeover_due(p, n, e.now):
        return _lease_ended(p, n, e)
    if n.deadline is not None and e.now < n.deadline:
        return keep(n)
    message = (
        f"still FENCING in term {n.term}: the master has not confirmed its shutdown and no fence "
        "succeeded; asking again (an operator who made sure may run `failover confirm-fenced`)"
    )
    ask = SendShutdown(n.term, p.ack_timeout)
    if p.fence_methods and n.fence_index >= len(p.fence_methods):  # the chain ended: try it again
        again = Fence(n.term, p.fence_methods[0])
        return keep(n, Alert(message), ask, again, deadline=e.now + p.ack_timeout, fence_index=0)
    return keep(n, Alert(message), ask, deadline=e.now + p.ack_timeout)


def fence_result(p: Policy, n: NodeState, e: FenceResult) -> Step:
    current = p.fence_methods[n.fence_index] if n.fence_index < len(p.fence_methods) else None
    if e.term != n.term or e.method is not current:
        return keep(n)  # a late result of another term or of an earlier attempt
    if e.ok and e.method is FenceMethod.LOAD_BALANCER and p.takeover_wait is not None:
        # with a lease, MAINT at the load balancer protects the clients, not shared storage:
        # the master's service is known down only once its lease has ended
        reason = (
            f"the master is fenced for term {n.term} by {e.method} ({e.detail}): starting once its "
            f"lease has ended ({p.takeover_wait:.2f} s), or on its ACK"
        )
        gone = service_down_at(p, e.now, None) if n.lease_gone_at is None else n.lease_gone_at
        return move(n, e, State.FENCING, Why.LEASE_WAIT, reason, lease_gone_at=gone)
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
        return move(n, e, State.FENCING, Why.FENCE_FAILED, reason, Fence(n.term, nxt), fence_index=following)
    reason = (
        f"fence by {e.method} failed for term {n.term} ({e.detail}); every fence method failed: waiting "
        "for the master's ACK or an operator's `failover confirm-fenced`"
    )
    return move(n, e, State.FENCING, Why.FENCE_FAILED, reason, Alert(reason), fence_index=following)


def started_failing_over(p: Policy, n: NodeState, e: Started) -> Step:
    return move(
        n,
        e,
        State.FAILING_OVER,
        Why.RESTARTED,
        f"restarted while failing over: asking the master again for term {n.term}",
        *_ask(p, n.term, n.trigger),
        deadline=e.now + p.ack_timeout,
        lease_gone_at=None,  # fenced again: a confirmation of an earlier boot is not taken on trust
    )


def started_fencing(p: Policy, n: NodeState, e: Started) -> Step:
    # the next Tick asks again, alerts, and starts the fence chain over (its results were lost);
    # with a lease, the load balancer's fence is asked again and its wait starts afresh
    early = (LbFence(Role.MASTER),) if p.takeover_wait is not None else ()
    return keep(n, *early, deadline=e.now, fence_index=len(p.fence_methods), lease_gone_at=None)


def fence_confirmed(p: Policy, n: NodeState, e: FenceConfirmed) -> Step:
    if e.term != n.term:
        return keep(n)
    return _authorized(p, n, e, f"fence of the master confirmed for term {n.term} by {e.method}")
