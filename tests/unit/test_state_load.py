"""Properties of loading a state file: whatever the file holds, the answer is a NodeState or a
StateError that names the key at fault (one line), never another exception; what loads is a
state that saves and loads again unchanged."""

from __future__ import annotations

import dataclasses
import json
import math
import tempfile
from pathlib import Path
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from failover.machine import NodeState, Role, State, Transition, initial_state
from failover.state import StateError, StateStore, from_dict, to_dict

FIELDS = [f.name for f in dataclasses.fields(NodeState)]
# no timing in these properties: a loaded 2-core machine may be slow at any example
RELAXED = settings(deadline=None, suppress_health_check=[HealthCheck.too_slow])

json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.integers(min_value=-(2**70), max_value=2**70)
    | st.floats()  # NaN and +-Infinity included: json.loads accepts them
    | st.text(max_size=20)
    | st.sampled_from([v.value for v in State] + ["master", "slave", "up", "failed", "switchover"]),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4),
    max_leaves=10,
)
keys = st.sampled_from([*FIELDS, "version", "master_says_down"]) | st.text(max_size=12)


def valid_states() -> st.SearchStrategy[dict[str, Any]]:
    """The saved form of valid states of both roles, a few fields varied."""

    def build(role: Role, term: int, failures: int, heartbeat: float | None, restarts: list[float]) -> dict[str, Any]:
        node = dataclasses.replace(
            initial_state(role), term=term, failures=failures, last_heartbeat=heartbeat, restarts=tuple(restarts)
        )
        return {"version": 2, **to_dict(node)}

    finite = st.floats(allow_nan=False, allow_infinity=False)
    return st.builds(
        build,
        st.sampled_from(list(Role)),
        st.integers(0, 2**31 - 1),
        st.integers(0, 1000),
        st.none() | finite,
        st.lists(finite, max_size=3),
    )


def assert_named(data: dict[str, Any], error: StateError, allowed: set[str]) -> None:
    assert error.key is not None and error.key in allowed, (error.key, str(error))
    shown = error.key if error.key.isidentifier() else repr(error.key)[:40]
    assert str(error).startswith(f"{shown}: ") or str(error).startswith(f"{shown}, "), str(error)
    assert "\n" not in str(error)


@RELAXED
@given(st.dictionaries(keys, json_values, max_size=8))
def test_any_json_object_loads_or_names_its_key(data: dict[str, Any]) -> None:
    try:
        node = from_dict(data)
    except StateError as e:
        assert_named(data, e, set(data) | {"role", "state"})  # role and state may be missing
    else:
        assert isinstance(node, NodeState)


@RELAXED
@given(valid_states(), st.sampled_from([*FIELDS, "version"]), json_values)
def test_a_mutated_field_loads_or_is_named(data: dict[str, Any], key: str, value: Any) -> None:
    mutated = {**data, key: value}
    try:
        node = from_dict(mutated)
    except StateError as e:
        # a valid role of the other side makes the state the one at fault (STANDBY is no master's state)
        assert_named(mutated, e, {key, "state"} if key == "role" else {key})
    else:
        assert isinstance(node, NodeState)
        for name in ("deadline", "last_contact", "peer_contact", "last_heartbeat"):
            number = getattr(node, name)
            assert number is None or (isinstance(number, float) and math.isfinite(number))


@RELAXED
@given(valid_states(), st.sampled_from(FIELDS))
def test_a_missing_field_takes_its_default_unless_it_has_none(data: dict[str, Any], key: str) -> None:
    del data[key]
    try:
        node = from_dict(data)
    except StateError as e:
        assert key in ("role", "state") and e.key == key and str(e) == f"{key}: missing"
    else:
        assert getattr(node, key) == getattr(NodeState(node.role, node.state), key)


@settings(RELAXED, max_examples=150)
@given(valid_states(), st.data())
def test_a_damaged_file_loads_or_is_a_state_error(data: dict[str, Any], draw: st.DataObject) -> None:
    """Byte-level damage (a truncation, a flipped or inserted byte) of a real state file."""
    raw = json.dumps(data, indent=1).encode()
    at = draw.draw(st.integers(0, len(raw)))
    damage = draw.draw(st.sampled_from(["truncate", "flip", "insert"]))
    byte = bytes([draw.draw(st.integers(0, 255))])
    if damage == "truncate":
        raw = raw[:at]
    elif damage == "flip":
        raw = raw[:at] + byte + raw[at + 1 :]
    else:
        raw = raw[:at] + byte + raw[at:]
    role = Role(data["role"])
    with tempfile.TemporaryDirectory() as directory:
        store = StateStore(directory, role, "h")
        Path(store.state_path).write_bytes(raw)
        try:
            node = store.load()
        except StateError as e:
            assert str(e).startswith(f"{store.state_path}: ") and "\n" not in str(e)
        else:
            assert node is not None and node.role is role


@RELAXED
@given(valid_states())
def test_what_loads_saves_and_loads_again_unchanged(data: dict[str, Any]) -> None:
    node = from_dict(data)
    with tempfile.TemporaryDirectory() as directory:
        store = StateStore(directory, node.role, "h")
        store.save(node, Transition(node.state, node.state, node.term, node.term, "r", "Tick"))
        assert store.load() == node
