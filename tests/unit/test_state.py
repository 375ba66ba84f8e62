"""failover/state.py: atomic state file and journal, including kill -9 in the middle of a save."""

from __future__ import annotations

import dataclasses
import json
import os
import signal
import stat
import subprocess
import sys
import time
from pathlib import Path

import pytest

from failover.machine import NodeState, Role, State, Transition, initial_state
from failover.state import StateError, StateStore, read_journal


def transition(a: State, b: State, term: int = 1) -> Transition:
    return Transition(a, b, term - 1, term, f"{a} to {b}", "Tick")


def test_first_start_has_no_state(tmp_path: Path) -> None:
    assert StateStore(str(tmp_path / "s"), Role.SLAVE, "h").load() is None
    assert stat.S_IMODE(os.stat(tmp_path / "s").st_mode) == 0o700


def test_save_then_load_round_trips_and_journals(tmp_path: Path) -> None:
    store = StateStore(str(tmp_path), Role.SLAVE, "slave-host")
    node = dataclasses.replace(initial_state(Role.SLAVE), state=State.FAILING_OVER, term=3, deadline=12.5)
    store.save(node, transition(State.STANDBY, State.FAILING_OVER, 3))
    assert store.load() == node
    (entry,) = read_journal(store.journal_path)
    assert entry["from"] == "STANDBY" and entry["to"] == "FAILING_OVER" and entry["term"] == 3
    assert entry["host"] == "slave-host" and entry["role"] == "slave" and entry["reason"]
    assert entry["time"].endswith("Z") and isinstance(entry["mono"], float)
    assert stat.S_IMODE(os.stat(store.state_path).st_mode) == 0o600


@pytest.mark.parametrize(
    ("content", "problem"),
    [
        (b"{not json", "not valid JSON"),
        (b"[]", "expected a JSON object"),
        (b'{"role": "slave", "state": "BOSS"}', "'BOSS' is not a valid State"),
        (b'{"role": "slave", "state": "STANDBY", "term": "1"}', "term must be"),
        (b'{"role": "slave", "state": "STANDBY", "color": 1}', "unknown fields"),
        (b'{"role": "master", "state": "ACTIVE"}', "belongs to the master"),
    ],
)
def test_a_state_file_that_cannot_be_trusted_is_an_error_not_a_reset(
    tmp_path: Path, content: bytes, problem: str
) -> None:
    store = StateStore(str(tmp_path), Role.SLAVE, "h")
    Path(store.state_path).write_bytes(content)
    with pytest.raises(StateError, match=problem):
        store.load()


def test_a_torn_journal_line_is_skipped(tmp_path: Path) -> None:
    store = StateStore(str(tmp_path), Role.MASTER, "h")
    store.save(initial_state(Role.MASTER), transition(State.ACTIVE, State.STOPPING))
    with open(store.journal_path, "a") as f:
        f.write('{"time": "2026-')
    assert len(store.journal_tail(10)) == 1


WRITER = """
import dataclasses, sys
from failover.machine import Role, State, Transition, initial_state
from failover.state import StateStore
store = StateStore(sys.argv[1], Role.SLAVE, "h")
node = initial_state(Role.SLAVE)
term = 0
print("ready", flush=True)
while True:
    term += 1
    node = dataclasses.replace(node, term=term, reason="x" * (term % 5000))
    store.save(node, Transition(State.STANDBY, State.STANDBY, term - 1, term, "r", "Tick"))
"""


def test_kill_9_in_the_middle_of_saving_leaves_a_whole_state(tmp_path: Path) -> None:
    """A real process saving as fast as it can is killed at random moments: the state file is
    always one whole state, and the journal never runs ahead of it."""
    for attempt in range(5):
        directory = tmp_path / f"run{attempt}"
        proc = subprocess.Popen([sys.executable, "-c", WRITER, str(directory)], stdout=subprocess.PIPE)
        assert proc.stdout is not None and proc.stdout.readline() == b"ready\n"
        time.sleep(0.05 + 0.07 * attempt)
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        store = StateStore(str(directory), Role.SLAVE, "h")
        node = store.load()
        assert isinstance(node, NodeState) and node.term >= 1
        assert node.reason == "x" * (node.term % 5000)
        terms = [e["term"] for e in read_journal(store.journal_path)]
        # the state is written before the journal: the journal holds the state's term or one less
        assert terms[-1] in (node.term, node.term - 1)
        assert terms == list(range(1, len(terms) + 1))
        leftovers = [p.name for p in directory.iterdir() if ".tmp." in p.name]
        assert len(leftovers) <= 1  # a temp file may remain; load() never reads it
        json.loads(Path(store.state_path).read_text())
