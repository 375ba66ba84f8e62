"""The operator's commands as rules: hold, release, switchover, and the switchback's steps.

Each request is answered (Answer) with what happened or why it was refused. Pure; the
wall-clock `since` of a request is carried for status only.
"""

from __future__ import annotations

import dataclasses

from failover.machine.actions import Answer, RunScripts, Step
from failover.machine.claim import claim
from failover.machine.events import OperatorRequest, SwitchbackStart
from failover.machine.model import (
    HOLDABLE,
    MAX_TERM,
    Condition,
    Hold,
    NodeState,
    Policy,
    Role,
    ScriptKind,
    State,
    Trigger,
    Why,
)
from failover.machine.steps import keep, move


def _held_by(hold: Hold | None) -> str:
    return f"{hold.by} since {hold.since}: {hold.reason}" if hold else "an operator"


def hold(p: Policy, n: NodeState, e: OperatorRequest) -> Step:
    if n.state is State.MAINTENANCE:
        return keep(n, Answer(True, f"already held by {_held_by(n.hold)}"))
    if n.state not in HOLDABLE:
        return keep(n, Answer(False, f"the {n.role} is {n.state}: a failover is under way; hold when it ends"))
    why = e.reason or "no reason given"
    reason = f"held by {e.by}: {why}; no automatic action until `failover release`"
    step = move(n, e, State.MAINTENANCE, Why.HELD, reason, hold=Hold(n.state, e.by, e.since, why))
    return dataclasses.replace(step, actions=(Answer(True, f"the {n.role} is held ({n.group} -> MAINTENANCE)"),))


def release(p: Policy, n: NodeState, e: OperatorRequest) -> Step:
    if n.state is not State.MAINTENANCE:
        return keep(n, Answer(True, f"the {n.role} is not held ({n.state})"))
    back = n.hold.held_from if n.hold else (State.ACTIVE if n.role is Role.MASTER else State.STANDBY)
    if n.role is Role.SLAVE and back in (State.SUSPECT, State.PREPARING):
        back = State.STANDBY
    reason = f"released by {e.by}" + (f": {e.reason}" if e.reason else "") + f"; back to {back}"
    return move(
        n,
        e,
        back,
        Why.RELEASED,
        reason,
        Answer(True, f"the {n.role} is released: {back}"),
        hold=None,
        failures=0,
        last_heartbeat=e.now,
        last_contact=e.now,
        restarts=(),
        master_condition=Condition.UNKNOWN,
    )


def refuse_busy(p: Policy, n: NodeState, e: OperatorRequest) -> Step:
    """Any other operator request in a state that cannot take it."""
    if n.state is State.MAINTENANCE:
        why = f"held by {n.hold.who() if n.hold else 'an operator'}: `failover release` first"
    else:
        why = f"the {n.role} is {n.state} ({n.reason})"
    return keep(n, Answer(False, f"{type(e).__name__} refused: {why}"))


def switchover(p: Policy, n: NodeState, e: OperatorRequest) -> Step:
    """Slave, STANDBY: a planned move here, with the same safety as a failover (and the hooks)."""
    why = f"switchover requested by {e.by}" + (f": {e.reason}" if e.reason else "")
    if Trigger.SWITCHOVER in p.prepare:
        reason = f"{why}: running BEFORE_FAILOVER_SCRIPTS before anything moves"
        step = move(
            n,
            e,
            State.PREPARING,
            Why.SWITCHOVER,
            reason,
            RunScripts(ScriptKind.BEFORE_FAILOVER),
            trigger=Trigger.SWITCHOVER,
        )
    else:
        step = claim(p, dataclasses.replace(n, trigger=Trigger.SWITCHOVER), e, why)
    return dataclasses.replace(step, actions=(Answer(True, step.state.reason), *step.actions))


def switchback_stop(p: Policy, n: NodeState, e: OperatorRequest) -> Step:
    """Slave, ACTIVE: stop the service here for the switchback, and stay held afterwards (so the
    master's service being down is no reason to fail over again) until the last step releases."""
    reason = f"switchback by {e.by}: stopping the service here; held until the master serves again"
    step = move(
        n,
        e,
        State.STOPPING,
        Why.SWITCHBACK,
        reason,
        RunScripts(ScriptKind.SHUTDOWN),
        scripts_done=False,
        detail="",
        hold=Hold(State.STANDBY, e.by, e.since, "switchback in progress"),
    )
    return dataclasses.replace(step, actions=(Answer(True, reason), *step.actions))


def switchback_stop_done(p: Policy, n: NodeState, e: OperatorRequest) -> Step:
    """Slave already stopped and held (a resumed switchback): nothing to do."""
    held_from = n.hold.held_from if n.hold else None
    if n.state is State.MAINTENANCE and held_from is State.STANDBY and n.service_ok is not True:
        return keep(n, Answer(True, f"the slave's service is already stopped and held in term {n.term}"))
    return refuse_busy(p, n, e)


def switchback_start(p: Policy, n: NodeState, e: SwitchbackStart) -> Step:
    """Master, INACTIVE: start again in a new term, only once the slave's service is verified
    down and the slave is held or watching, in the term this master knows."""
    problems = []
    if e.peer_state not in (State.MAINTENANCE, State.STANDBY):
        problems.append(f"the slave is {e.peer_state}, not stopped and held")
    if not e.peer_service_down:
        problems.append("the slave's service is not verified down")
    if e.peer_term != n.term:
        problems.append(f"the slave is in term {e.peer_term}, this master in term {n.term}")
    if n.term >= MAX_TERM:
        problems.append(f"term {n.term} is the ceiling MAX_TERM: no new term can be claimed")
    if problems:
        return keep(n, Answer(False, "switchback start refused: " + "; ".join(problems)))
    term = n.term + 1
    reason = f"switchback by {e.by}: the slave's service is verified down; claiming term {term} and starting here"
    step = move(
        n,
        e,
        State.STARTING,
        Why.SWITCHBACK,
        reason,
        RunScripts(ScriptKind.STARTUP),
        term=term,
        scripts_done=False,
        detail="",
        condition=Condition.UNKNOWN,
        restarts=(),
    )
    return dataclasses.replace(step, actions=(Answer(True, reason), *step.actions))
