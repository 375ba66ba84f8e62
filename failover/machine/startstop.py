"""Stopping and starting the service, on either host: SHUTDOWN_YOUR_SERVICE on the master, the
shutdown scripts and the check that the service is really down; the startup scripts, the check
that it answers, the load balancer and the after-failover hooks.

Rules for the table in failover.machine; pure, time only from events.
"""

from __future__ import annotations

from failover.machine.actions import Action, Alert, CheckService, LbEnable, Reply, RunScripts, Step
from failover.machine.events import Event, LoadBalancerDone, ScriptsFinished, ServiceChecked, ShutdownRequested, Started
from failover.machine.model import Condition, NodeState, Policy, Role, ScriptKind, State, Why
from failover.machine.steps import keep, move


def started_stopping(p: Policy, n: NodeState, e: Started) -> Step:
    return move(
        n,
        e,
        State.STOPPING,
        Why.RESTARTED,
        f"restarted while stopping for term {n.term}: running the shutdown scripts again",
        RunScripts(ScriptKind.SHUTDOWN),
        scripts_done=False,
    )


def _stop_for(p: Policy, n: NodeState, e: Event, term: int, reason: str) -> Step:
    """Stop the service for `term`; the BEFORE_FAILOVER hooks of this host run first."""
    actions: list[Action] = [RunScripts(ScriptKind.SHUTDOWN)]
    if p.prepare:
        actions.insert(0, RunScripts(ScriptKind.BEFORE_FAILOVER))
    return move(
        n, e, State.STOPPING, Why.SHUTDOWN_REQUESTED, reason, *actions, term=term, scripts_done=False, detail=""
    )


def shutdown_active(p: Policy, n: NodeState, e: ShutdownRequested) -> Step:
    if e.term <= n.term:
        return keep(n, Reply(e.term, False, f"stale term {e.term}: this master is ACTIVE in term {n.term}"))
    return _stop_for(p, n, e, e.term, f"the slave requested shutdown for term {e.term}")


def shutdown_stopping(p: Policy, n: NodeState, e: ShutdownRequested) -> Step:
    if e.term < n.term:
        return keep(n, Reply(e.term, False, f"stale term {e.term}: current term is {n.term}"))
    # Already stopping: the answer goes to every pending request when the stop is verified.
    return keep(n, term=e.term)


def shutdown_inactive(p: Policy, n: NodeState, e: ShutdownRequested) -> Step:
    if e.term < n.term:
        return keep(n, Reply(e.term, False, f"stale term {e.term}: current term is {n.term}"))
    detail = n.detail or "service verified down"
    return keep(n, Reply(e.term, True, detail), term=e.term)


def shutdown_failed(p: Policy, n: NodeState, e: ShutdownRequested) -> Step:
    if e.term < n.term:
        return keep(n, Reply(e.term, False, f"stale term {e.term}: current term is {n.term}"))
    return move(
        n,
        e,
        State.STOPPING,
        Why.SHUTDOWN_REQUESTED,
        f"shutdown requested again for term {e.term}: retrying",
        RunScripts(ScriptKind.SHUTDOWN),
        term=e.term,
        scripts_done=False,
        detail="",
    )


def shutdown_held(p: Policy, n: NodeState, e: ShutdownRequested) -> Step:
    why = f"held for maintenance by {n.hold.who() if n.hold else 'an operator'}: nothing was stopped"
    return keep(n, Reply(e.term, False, why), Alert(f"refused SHUTDOWN_YOUR_SERVICE for term {e.term}: {why}"))


def stopping_scripts_finished(p: Policy, n: NodeState, e: ScriptsFinished) -> Step:
    if e.kind is ScriptKind.BEFORE_FAILOVER:
        return keep(n) if e.ok else keep(n, Alert(f"BEFORE_FAILOVER_SCRIPTS failed here: {e.detail}"))
    if e.kind is not ScriptKind.SHUTDOWN:
        return keep(n)
    # Whatever the scripts said, only the service check decides whether the service is down.
    return keep(n, CheckService(expect_up=False), scripts_done=True, detail=e.detail)


def stopping_service_checked(p: Policy, n: NodeState, e: ServiceChecked) -> Step:
    """Both roles: the service after the shutdown scripts. A slave stopping for a switchback
    (it carries a hold) stays held until the master serves."""
    if not n.scripts_done:
        return keep(n)
    done = State.STANDBY if n.hold is None else State.MAINTENANCE
    if n.role is Role.MASTER:
        done = State.INACTIVE
    if not e.up:
        detail = f"service verified down ({e.detail})" + (f"; scripts: {n.detail}" if n.detail else "")
        actions: list[Action] = [Reply(n.term, True, detail)] if n.role is Role.MASTER else []
        return move(
            n,
            e,
            done,
            Why.VERIFIED_DOWN,
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
    return move(n, e, State.FAILED, Why.STILL_RUNNING, reason, *actions)


def started_starting(p: Policy, n: NodeState, e: Started) -> Step:
    """Both roles (the master starts in a switchback)."""
    return move(
        n,
        e,
        State.STARTING,
        Why.RESTARTED,
        f"restarted during the startup for term {n.term}: checking whether the service already answers",
        CheckService(expect_up=True),
        scripts_done=False,
    )


def starting_scripts_finished(p: Policy, n: NodeState, e: ScriptsFinished) -> Step:
    if e.kind is not ScriptKind.STARTUP:
        return keep(n)
    if not e.ok:
        reason = f"startup scripts failed for term {n.term}: {e.detail}"
        return move(n, e, State.FAILED, Why.STARTUP_FAILED, reason, Alert(reason), detail=e.detail)
    return keep(n, CheckService(expect_up=True), scripts_done=True, detail=e.detail)


def starting_service_checked(p: Policy, n: NodeState, e: ServiceChecked) -> Step:
    """Both roles: the service answers here, so this host is ACTIVE; the AFTER hooks run now."""
    if e.up:
        how = "after the startup scripts" if n.scripts_done else "(startup had completed before the restart)"
        actions: list[Action] = [LbEnable(n.role)] if p.load_balancer else []
        if p.after_hooks:
            actions.append(RunScripts(ScriptKind.AFTER_FAILOVER))
        return move(
            n,
            e,
            State.ACTIVE,
            Why.UP,
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
            Why.NOT_UP,
            f"the service does not answer yet ({e.detail}): running the startup scripts",
            RunScripts(ScriptKind.STARTUP),
        )
    reason = f"the service does not answer after the startup scripts: {e.detail}"
    return move(n, e, State.FAILED, Why.NOT_UP, reason, Alert(reason))


def after_hooks_finished(p: Policy, n: NodeState, e: ScriptsFinished) -> Step:
    """AFTER_FAILOVER (or SYNC_FAILURE) hooks: a failure alerts; the service stays up."""
    if e.ok or e.kind not in (ScriptKind.AFTER_FAILOVER, ScriptKind.SYNC_FAILURE):
        return keep(n)
    return keep(n, Alert(f"{e.kind} scripts failed (the service stays up): {e.detail}"))


def load_balancer_done(p: Policy, n: NodeState, e: LoadBalancerDone) -> Step:
    """Any state: a load-balancer change is informational; a failure is alerted, nothing waits."""
    return keep(n) if e.ok else keep(n, Alert(f"load balancer: {e.what} failed: {e.detail}"))
