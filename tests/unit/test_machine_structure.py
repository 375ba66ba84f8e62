"""The machine package keeps its contract: pure, one typed table, sub-records that load from old files."""

from __future__ import annotations

import ast
import dataclasses
import json
from pathlib import Path

from failover.machine import TABLE, Changes, Hold, NodeState, Role, State, initial_state
from failover.machine.diagram import page
from failover.state import StateStore

MACHINE = Path(__file__).resolve().parents[2] / "failover" / "machine"
ROOT = MACHINE.parents[1]
# What a pure module must not import: I/O, clocks, randomness, threads, processes.
IMPURE = {
    "os",
    "sys",
    "io",
    "time",
    "datetime",
    "random",
    "secrets",
    "socket",
    "select",
    "selectors",
    "subprocess",
    "threading",
    "multiprocessing",
    "asyncio",
    "pathlib",
    "shutil",
    "tempfile",
    "logging",
    "signal",
    "fcntl",
    "json",
}


def imports_of(path: Path) -> set[str]:
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module)
    return found


def test_the_machine_imports_no_io_and_no_clock() -> None:
    for path in MACHINE.glob("*.py"):
        if path.name == "diagram.py":
            continue  # the page generator prints; it is not imported by the machine
        bad = {name for name in imports_of(path) if name.split(".")[0] in IMPURE}
        assert not bad, f"{path.name} imports {sorted(bad)}"
        outside = {
            n
            for n in imports_of(path)
            if n.startswith("failover.") and not n.startswith("failover.machine") and n != "failover.errors"
        }
        assert not outside, f"{path.name} imports {sorted(outside)}: the machine depends on nothing of the project"


def test_the_machine_calls_no_io_builtin() -> None:
    forbidden = {"open", "print", "input", "exec", "eval", "__import__", "breakpoint"}
    for path in MACHINE.glob("*.py"):
        if path.name == "diagram.py":
            continue
        calls = {
            node.func.id
            for node in ast.walk(ast.parse(path.read_text()))
            if isinstance(node, ast.Call) and isinstance(node.func, ast.Name)
        }
        assert not calls & forbidden, f"{path.name} calls {sorted(calls & forbidden)}"


def test_no_rule_asserts_the_type_of_its_event() -> None:
    for path in MACHINE.glob("*.py"):
        assert "assert isinstance" not in path.read_text(), f"{path.name}: type the rule's event instead"


def test_the_table_is_written_out_row_by_row() -> None:
    source = (MACHINE / "__init__.py").read_text()
    assert source.count("    row(") == len(TABLE)  # no row comes from a loop or setdefault


def test_changes_names_every_field_a_rule_may_change() -> None:
    set_by_move = {"role", "state", "reason", "code", "subject"}
    assert set(Changes.__annotations__) == {f.name for f in dataclasses.fields(NodeState)} - set_by_move


def test_the_committed_state_table_page_is_the_current_one() -> None:
    assert (ROOT / "docs" / "state-table.md").read_text() == page(), (
        "run `python -m failover.machine.diagram > docs/state-table.md`"
    )


def test_a_version_2_state_file_with_the_hold_flat_loads_into_a_hold(tmp_path: Path) -> None:
    store = StateStore(str(tmp_path), Role.SLAVE, "h")
    old = {
        "version": 2,
        "role": "slave",
        "state": "MAINTENANCE",
        "term": 3,
        "reason": "held by ops",
        "held_from": "STANDBY",
        "hold_by": "ops@h",
        "hold_since": "2026-11-30T10:00:00Z",
        "hold_reason": "kernel update",
    }
    Path(store.state_path).write_text(json.dumps(old))
    node = store.load()
    assert node is not None and node.state is State.MAINTENANCE and node.term == 3
    assert node.hold == Hold(State.STANDBY, "ops@h", "2026-11-30T10:00:00Z", "kernel update")
    assert node.group == "STANDBY (held)"
    unheld = dict(old, state="STANDBY", held_from=None, hold_by="", hold_since="", hold_reason="")
    Path(store.state_path).write_text(json.dumps(unheld))
    loaded = store.load()
    assert loaded is not None and loaded.hold is None


def test_a_hold_survives_a_save_and_load(tmp_path: Path) -> None:
    from failover.machine import Transition, Why

    store = StateStore(str(tmp_path), Role.MASTER, "h")
    held = dataclasses.replace(
        initial_state(Role.MASTER), state=State.MAINTENANCE, hold=Hold(State.ACTIVE, "ops", "t", "r"), code=Why.HELD
    )
    store.save(held, Transition(State.ACTIVE, State.MAINTENANCE, 0, 0, "held", "HoldRequested", Why.HELD))
    assert store.load() == held
    assert store.journal_tail(1)[0]["code"] == "held"


def test_every_exception_class_of_the_project_has_the_one_root() -> None:
    import importlib
    import inspect
    import pkgutil

    import failover
    from failover.errors import FailoverError

    orphans = []
    for info in pkgutil.walk_packages(failover.__path__, "failover."):
        if info.name.endswith("__main__"):
            continue  # running it is its whole job
        module = importlib.import_module(info.name)
        for name, value in vars(module).items():
            ours = inspect.isclass(value) and issubclass(value, BaseException) and value.__module__ == info.name
            if ours and not issubclass(value, FailoverError):
                orphans.append(f"{info.name}.{name}")
    assert not orphans, f"exceptions outside failover.errors.FailoverError: {orphans}"
