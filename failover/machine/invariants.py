"""The invariants the design asks of the machine's own output, as code: the
property tests (tests/property) call these after every step of both machines, and a violation
names the invariant. Pure. (What needs the world, such as "the service never runs on both hosts"
or "the slave starts only with an ACK or a confirmed fence", is checked by the simulated pair,
which knows the world.)

1. At most one of the two nodes is ACTIVE in any term.
2. Every transition carries a reason (text) and its code, and no term is ever forgotten.
3. MAINTENANCE emits no automatic action: no SHUTDOWN_YOUR_SERVICE, no script, no fence.
4. A node is held (MAINTENANCE) only with the hold's facts (who, since, why, where from), and a
   hold outlives MAINTENANCE only on the way into it (a slave stopping for a switchback) or where
   that way failed (FAILED).
5. A slave waiting for an ACK (FAILING_OVER) or fencing (FENCING) has a deadline to act on.
"""

from __future__ import annotations

from collections.abc import Iterable

from failover.machine.actions import Action, Fence, RunScripts, SendShutdown
from failover.machine.model import NodeState, Role, State, Transition, Why

AUTOMATIC = (SendShutdown, RunScripts, Fence)  # what a held node must never do on its own
HOLD_STATES = frozenset({State.MAINTENANCE, State.STOPPING, State.FAILED})


def check_pair(master: NodeState, slave: NodeState) -> list[str]:
    """Invariants 1, 4 and 5 over both nodes; the problems found (empty: none)."""
    problems = [*check_node(master), *check_node(slave)]
    if master.state is State.ACTIVE and slave.state is State.ACTIVE and master.term == slave.term:
        problems.append(f"1: both hosts ACTIVE in term {master.term}")
    return problems


def check_node(n: NodeState) -> list[str]:
    """Invariants 4 and 5 for one node."""
    problems = []
    if n.state is State.MAINTENANCE and n.hold is None:
        problems.append(f"4: the {n.role} is MAINTENANCE without a hold")
    if n.hold is not None and n.state not in HOLD_STATES:
        problems.append(f"4: the {n.role} is {n.state} but still carries a hold ({n.hold})")
    if n.role is Role.SLAVE and n.state in (State.FAILING_OVER, State.FENCING) and n.deadline is None:
        problems.append(f"5: the slave is {n.state} without a deadline")
    return problems


def check_transition(role: Role, t: Transition) -> list[str]:
    """Invariant 2."""
    problems = []
    if not t.reason.strip():
        problems.append(f"2: the {role}'s transition {t} has no reason")
    if not isinstance(t.code, Why):
        problems.append(f"2: the {role}'s transition {t} has no reason code")
    if t.term < t.from_term:
        problems.append(f"2: the {role} forgot a term: {t}")
    return problems


def check_actions(after: NodeState, actions: Iterable[Action], event: str) -> list[str]:
    """Invariant 3: a step that leaves the node held did nothing automatic (a held node that is
    deposed leaves MAINTENANCE for STOPPING: stopping is safety, not an automatic action)."""
    if after.state is not State.MAINTENANCE:
        return []
    return [f"3: the held {after.role} did {a} on {event}" for a in actions if isinstance(a, AUTOMATIC)]
