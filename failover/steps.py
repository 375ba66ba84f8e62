"""The two ways a handler of the state machine answers: a transition (`move`) or not (`keep`).

Shared by the rule modules (failover.master_rules, slave_rules, operator_rules). Pure.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

from failover.model import Action, Event, NodeState, Policy, Role, State, Step, Transition

Handler = Callable[[Policy, NodeState, Event], Step]


def move(node: NodeState, event: Event, to: State, reason: str, *actions: Action, **changes: object) -> Step:
    """A transition: new state (and any field changes), a reason, actions."""
    new = dataclasses.replace(node, state=to, reason=reason, **changes)  # type: ignore[arg-type]
    transition = Transition(node.state, to, node.term, new.term, reason, type(event).__name__)
    return Step(new, actions, transition)


def keep(node: NodeState, *actions: Action, **changes: object) -> Step:
    """No transition: same state, maybe some bookkeeping and actions."""
    return Step(dataclasses.replace(node, **changes), actions)  # type: ignore[arg-type]


def peer(role: Role) -> Role:
    return Role.SLAVE if role is Role.MASTER else Role.MASTER


def ignore(p: Policy, n: NodeState, e: Event) -> Step:
    return keep(n)
