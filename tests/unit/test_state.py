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
from failover.state import STATE_VERSION, StateError, StateStore, read_journal


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
        (b"", "not valid JSON"),
        (b"\xff\xfe garbage", "not valid JSON"),
        (b"[" * 100_000, "not valid JSON"),
        (b"[]", "expected a JSON object"),
        (b'{"role": "slave", "state": "BOSS"}', "state: a string 'BOSS' is not a known State"),
        (b'{"role": "slave", "state": "STANDBY", "term": "1"}', "term: expected an integer, got a string '1'"),
        (b'{"role": "slave", "state": "STANDBY", "color": 1}', "color: unknown field"),
        (b'{"role": "master", "state": "ACTIVE"}', "role: the file belongs to the master"),
        (b'{"state": "STANDBY"}', "role: missing"),
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


# ---------------------------------------------------------------------------------------------- version, types


def test_save_writes_the_version_and_a_file_without_one_is_version_1(tmp_path: Path) -> None:
    store = StateStore(str(tmp_path), Role.SLAVE, "h")
    node = dataclasses.replace(initial_state(Role.SLAVE), term=4, last_heartbeat=12.5, restarts=(1.0, 2.0))
    store.save(node, transition(State.STANDBY, State.STANDBY, 4))
    data = json.loads(Path(store.state_path).read_text())
    assert data["version"] == STATE_VERSION == 3
    del data["version"]  # as written before the version field
    Path(store.state_path).write_text(json.dumps(data))
    assert store.load() == node


@pytest.mark.parametrize("version", [4, 99])
def test_a_newer_version_is_refused_by_name(tmp_path: Path, version: int) -> None:
    store = StateStore(str(tmp_path), Role.SLAVE, "h")
    store.save(initial_state(Role.SLAVE), transition(State.STANDBY, State.STANDBY, 0))
    data = json.loads(Path(store.state_path).read_text())
    Path(store.state_path).write_text(json.dumps({**data, "version": version}))
    with pytest.raises(StateError, match=f"version: {version} is newer than this failover reads") as e:
        store.load()
    assert e.value.key == "version" and str(e.value).startswith(f"{store.state_path}: version: ")


# Each field of NodeState with a value of the wrong type or out of range, and what load says.
BAD_FIELDS: list[tuple[str, object, str]] = [
    ("term", -1, "term: -1 is out of range: expected 0..2147483647"),
    ("term", 2**31, "term: 2147483648 is out of range"),
    ("term", 1.5, "term: expected an integer, got a number 1.5"),
    ("term", True, "term: expected an integer, got a boolean True"),
    ("reason", 7, "reason: expected a string, got an integer 7"),
    ("failures", -3, "failures: -3 is out of range"),
    ("deadline", "soon", "deadline: expected a number or null, got a string 'soon'"),
    ("deadline", float("inf"), "deadline: inf is not a finite number"),
    ("scripts_done", 1, "scripts_done: expected true or false, got an integer 1"),
    ("service_ok", "yes", "service_ok: expected true or false or null, got a string 'yes'"),
    ("detail", None, "detail: expected a string, got null"),
    ("fence_index", "0", "fence_index: expected an integer"),
    ("last_contact", [], "last_contact: expected a number or null, got a list []"),
    ("witness_ok", 0, "witness_ok: expected true or false or null"),
    ("condition", "sideways", "condition: a string 'sideways' is not a known Condition"),
    ("restarts", 5, "restarts: expected a list, got an integer 5"),
    ("restarts", [1.0, "x"], "restarts: item 1: expected a number, got a string 'x'"),
    ("peer_contact", float("nan"), "peer_contact: nan is not a finite number"),
    ("master_condition", None, "master_condition: expected one of unknown, up"),
    ("last_heartbeat", "yesterday", "last_heartbeat: expected a number or null, got a string 'yesterday'"),
    ("last_heartbeat", {"t": 1}, "last_heartbeat: expected a number or null, got an object"),
    ("lease_gone_at", "soon", "lease_gone_at: expected a number or null, got a string 'soon'"),
    ("silence_probed", 1, "silence_probed: expected true or false, got an integer 1"),
    ("heartbeats_lost", None, "heartbeats_lost: expected true or false, got null"),
    ("trigger", "boredom", "trigger: a string 'boredom' is not a known Trigger"),
    ("hold", "ops", "hold: expected an object or null, got a string 'ops'"),
    ("hold", {"by": "ops"}, "hold: held_from: missing"),
    ("hold", {"held_from": 3, "by": "x"}, "hold: held_from: expected one of ACTIVE"),
    ("hold", {"held_from": "STANDBY", "by": ["x"]}, "hold: by: expected a string"),
    ("hold", {"held_from": "STANDBY", "by": "x", "when": 1}, "hold: unknown field when"),
    ("code", "because", "code: a string 'because' is not a known Why"),
    ("subject", 3, "subject: expected a string"),
    ("state", "INACTIVE", "state: INACTIVE is not a state of the slave"),
    ("version", "2", "version: expected an integer, got a string '2'"),
    ("version", 0, "version: 0 is out of range"),
]


@pytest.mark.parametrize(("key", "value", "problem"), BAD_FIELDS, ids=[f"{k}={v!r}" for k, v, _ in BAD_FIELDS])
def test_every_field_is_checked_on_load_and_named(tmp_path: Path, key: str, value: object, problem: str) -> None:
    store = StateStore(str(tmp_path), Role.SLAVE, "h")
    store.save(initial_state(Role.SLAVE), transition(State.STANDBY, State.STANDBY, 0))
    data = json.loads(Path(store.state_path).read_text())
    Path(store.state_path).write_text(json.dumps({**data, key: value}))  # NaN and Infinity as json.dumps writes them
    with pytest.raises(StateError) as e:
        store.load()
    assert str(e.value).startswith(f"{store.state_path}: {problem}"), str(e.value)
    assert e.value.key == key and "\n" not in str(e.value)


def test_the_table_above_covers_every_field() -> None:
    checked = {key for key, _, _ in BAD_FIELDS}
    assert {f.name for f in dataclasses.fields(NodeState)} - {"role", "entered"} <= checked


# ---------------------------------------------------------------------------------------------- journal growth


def test_a_torn_line_is_ended_before_the_next_entry(tmp_path: Path) -> None:
    """After a crash mid-append, the next entry must not be glued to the torn line (and lost)."""
    store = StateStore(str(tmp_path), Role.MASTER, "h")
    store.save(initial_state(Role.MASTER), transition(State.ACTIVE, State.STOPPING, 1))
    with open(store.journal_path, "a") as f:
        f.write('{"time": "2026-')
    store.save(initial_state(Role.MASTER), transition(State.STOPPING, State.INACTIVE, 2))
    assert [e["term"] for e in read_journal(store.journal_path)] == [1, 2]
    assert [e["term"] for e in store.journal_tail(5)] == [1, 2]


def test_the_journal_rotates_by_size_keeping_the_last_files(tmp_path: Path) -> None:
    store = StateStore(str(tmp_path), Role.SLAVE, "h", journal_max_bytes=2000, journal_backups=3)
    node = initial_state(Role.SLAVE)
    last = 100
    for term in range(1, last + 1):
        store.save(dataclasses.replace(node, term=term), transition(State.STANDBY, State.STANDBY, term))
    while not os.path.exists(store.journal_path):  # the last save rotated: one more starts a new file
        last += 1
        store.save(dataclasses.replace(node, term=last), transition(State.STANDBY, State.STANDBY, last))
    names = sorted(p.name for p in tmp_path.iterdir() if p.name.startswith("slave.journal"))
    assert names == ["slave.journal", "slave.journal.1", "slave.journal.2", "slave.journal.3"]
    files = [*(f"{store.journal_path}.{i}" for i in (3, 2, 1)), store.journal_path]  # oldest first
    for f in files[:-1]:  # each rotated file stopped at the entry that reached the size, no later
        size = os.path.getsize(f)
        final = Path(f).read_bytes().splitlines()[-1]
        assert 2000 <= size < 2000 + len(final) + 1
    flat = [e["term"] for f in files for e in read_journal(f)]
    assert flat == list(range(flat[0], last + 1))  # nothing lost or doubled among the kept files
    assert flat[0] > 1  # the oldest files were dropped
    tail = store.journal_tail(len(flat) + 10)  # more than there are: all of them, in order
    assert [e["term"] for e in tail] == flat
    assert [e["term"] for e in store.journal_tail(3)] == [last - 2, last - 1, last]


def test_the_entry_that_triggers_a_rotation_is_in_the_rotated_file(tmp_path: Path) -> None:
    store = StateStore(str(tmp_path), Role.SLAVE, "h", journal_max_bytes=1, journal_backups=2)
    store.save(initial_state(Role.SLAVE), transition(State.STANDBY, State.SUSPECT, 7))
    assert not os.path.exists(store.journal_path)
    (entry,) = read_journal(store.journal_path + ".1")
    assert entry["term"] == 7 and store.journal_tail(1) == [entry]


def test_the_tail_spans_the_journal_and_its_rotated_file(tmp_path: Path) -> None:
    store = StateStore(str(tmp_path), Role.SLAVE, "h", journal_max_bytes=10**6, journal_backups=2)
    lines = [json.dumps({"term": t}) + "\n" for t in range(10)]
    Path(store.journal_path + ".1").write_text("".join(lines[:7]))
    Path(store.journal_path).write_text("".join(lines[7:]) + '{"term": 1')  # a torn last line
    assert [e["term"] for e in store.journal_tail(5)] == [5, 6, 7, 8, 9]


def _bytes_read() -> int:
    """What this process has read through read(2) and pread(2) so far (Linux /proc)."""
    for line in Path("/proc/self/io").read_text().splitlines():
        if line.startswith("rchar:"):
            return int(line.split()[1])
    raise AssertionError("no rchar in /proc/self/io")


def test_status_reads_only_the_end_of_a_long_journal(tmp_path: Path) -> None:
    store = StateStore(str(tmp_path), Role.MASTER, "h")
    entry = {"from": "ACTIVE", "to": "ACTIVE", "term": 0, "reason": "x" * 200}
    with open(store.journal_path, "w") as f:
        for i in range(40_000):  # about 10 MB: years of transitions
            f.write(json.dumps({**entry, "n": i}) + "\n")
    before = _bytes_read()
    tail = store.journal_tail(8)
    read = _bytes_read() - before
    assert [e["n"] for e in tail] == list(range(39_992, 40_000))
    assert read < 200_000, f"read {read} bytes of a {os.path.getsize(store.journal_path)}-byte journal"


def test_concurrent_appends_rotate_without_losing_an_entry(tmp_path: Path) -> None:
    import threading

    store = StateStore(str(tmp_path), Role.SLAVE, "h", journal_max_bytes=3000, journal_backups=200)
    node = initial_state(Role.SLAVE)

    def writer(k: int) -> None:
        for i in range(50):
            store.note(node, f"w{k}", str(i))

    threads = [threading.Thread(target=writer, args=(k,)) for k in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    entries = store.journal_tail(1000)
    assert len(entries) == 200
    for k in range(4):  # each writer's entries, complete and in its order
        assert [e["reason"] for e in entries if e["event"] == f"w{k}"] == [str(i) for i in range(50)]
