"""How a rule answers, and how a rule is registered: typed, so mypy checks both.

- `move()`: a transition (new state, its reason and code, field changes, actions); `keep()`: no
  transition. Field changes are keywords checked against `Changes`: a misspelt field or a value of
  the wrong type is a type error, not a surprise at run time.
- `row()`: one row of the machine's table. The rule's event parameter must accept the row's event
  type, so a rule written for ScriptsFinished cannot be registered for Tick.
Pure.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any, TypeVar, Unpack

from failover.machine.actions import Action, Alert, RunScripts, Step
from failover.machine.events import Event
from failover.machine.model import Changes, NodeState, Policy, Role, ScriptKind, State, Transition, Why

E = TypeVar("E", bound=Event)
Rule = Callable[[Policy, NodeState, E], Step]
Handler = Callable[[Policy, NodeState, Any], Step]  # a rule as the table stores it (row() checked it)
Key = tuple[Role, State, type[Event]]


def row(role: Role, state: State, event: type[E], rule: Rule[E]) -> tuple[Key, Handler]:
    """(role, state, event type) -> rule, with the rule's event type checked."""
    return (role, state, event), rule


def move(
    node: NodeState,
    event: Event,
    to: State,
    why: Why,
    reason: str,
    *actions: Action,
    subject: str = "",
    **changes: Unpack[Changes],
) -> Step:
    """A transition: the new state (with `changes`), its reason (text), its code and what the code
    is about (`subject`: a trigger, a count; what "is this news?" compares), and the actions."""
    new = dataclasses.replace(node, state=to, reason=reason, code=why, subject=subject, **changes)
    transition = Transition(node.state, to, node.term, new.term, reason, type(event).__name__, why)
    return Step(new, actions, transition)


def stop_alerted(node: NodeState, event: Event, why: Why, reason: str, **changes: Unpack[Changes]) -> Step:
    """Stop this host's service on the machine's own finding (isolated, deposed, lease ended,
    running while INACTIVE): STOPPING, an alert with the reason, the shutdown scripts."""
    changes = {"scripts_done": False, "detail": "", **changes}
    return move(node, event, State.STOPPING, why, reason, Alert(reason), RunScripts(ScriptKind.SHUTDOWN), **changes)


def keep(node: NodeState, *actions: Action, **changes: Unpack[Changes]) -> Step:
    """No transition: the same state, maybe some bookkeeping (`changes`) and actions."""
    return Step(dataclasses.replace(node, **changes), actions)


def ignore(p: Policy, n: NodeState, e: Event) -> Step:
    """What the table does with an event the role can receive but the state has no row for."""
    return keep(n)
