"""The machine's table as a matrix per role, made from the table itself (as h11's
make-state-diagrams does): `python -m failover.machine.diagram > docs/state-table.md`. A test
checks that the committed page is the one this prints, so the page cannot drift from the code."""

from __future__ import annotations

from failover.machine import EVENTS_OF, GROUP_WORD, TABLE
from failover.machine.model import Role, State

HEADER = """# The state machine's table

Made by `python -m failover.machine.diagram` from `failover/machine/__init__.py`; do not edit by
hand. Each cell names the rule (module.function) that handles the event in that state; an empty
cell means the event is ignored there. Events a role never receives are not columns.
"""


def matrix(role: Role) -> str:
    states = [s for s in State if (role, s) in GROUP_WORD]
    events = sorted(EVENTS_OF[role], key=lambda e: e.__name__)
    lines = [
        f"| {role} state | " + " | ".join(e.__name__ for e in events) + " |",
        "|---" * (len(events) + 1) + "|",
    ]
    for state in states:
        cells = []
        for event in events:
            rule = TABLE.get((role, state, event))
            cells.append(f"{rule.__module__.rsplit('.', 1)[-1]}.{rule.__name__}" if rule else "")
        lines.append(f"| {state} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def page() -> str:
    return HEADER + "".join(f"\n## The {role}\n\n{matrix(role)}\n" for role in Role)


if __name__ == "__main__":
    print(page(), end="")
