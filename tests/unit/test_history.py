"""`failover history` without a pair: the merge and --since, the JOURNAL reply's bounds, its parser
under hypothesis (a hostile or malformed reply is refused, never a traceback), the command with
the other host unreachable, and FAILOVER_SEQ's numbers across restarts and rotations."""

from __future__ import annotations

import json
import logging
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from hypothesis import given, settings
from hypothesis import strategies as st

from failover import master_control
from failover.cli import history as history_command
from failover.cli import main
from failover.config import load
from failover.history import (
    REASON_CHARS,
    VERSION,
    HistoryError,
    as_json,
    from_reply,
    merge,
    parse_since,
    readable,
    render,
    reply,
)
from failover.machine import Role, State, Transition, initial_state
from failover.protocol import (
    MAX_LINE,
    JournalReply,
    JournalRequest,
    Message,
    ProtocolError,
    Refused,
    StatusReply,
    encode_line,
    parse_message,
)
from failover.state import HOOK_SPAN, StateStore, read_journal
from tests.unit.test_cli import CONFIG, write_scripts_and_secret

NOW = datetime(2026, 12, 1, 10, 0, 0, tzinfo=UTC)


def entry(role: str, second: float, frm: str = "STANDBY", to: str = "SUSPECT", **more: Any) -> dict[str, Any]:
    when = (NOW + timedelta(seconds=second)).isoformat(timespec="milliseconds").replace("+00:00", "Z")
    base = {"time": when, "role": role, "host": "10.0.0.1", "from": frm, "to": to, "term": 1, "from_term": 1}
    return {**base, "event": "ProbeResult", "reason": f"{role} at {second}", **more}


# ---------------------------------------------------------------------------------------------- merge, --since


def test_the_merge_is_in_time_order_and_keeps_each_hosts_own_order() -> None:
    master = [entry("master", 1), entry("master", 4), entry("master", 3)]  # its clock stepped back at the last
    slave = [entry("slave", 2), entry("slave", 5)]
    story = merge(master, slave)
    assert [e["reason"] for e in story] == ["master at 1", "slave at 2", "master at 4", "master at 3", "slave at 5"]
    assert [e["role"] for e in story if e["role"] == "master"] == ["master"] * 3


def test_since_and_limit_apply_to_the_merged_story() -> None:
    master = [entry("master", s) for s in (0, 10, 20, 30)]
    slave = [entry("slave", s) for s in (5, 15, 25)]
    since = NOW + timedelta(seconds=12)
    assert [e["reason"] for e in merge(master, slave, since=since)] == [
        "slave at 15",
        "master at 20",
        "slave at 25",
        "master at 30",
    ]
    assert [e["reason"] for e in merge(master, slave, since=since, limit=2)] == ["slave at 25", "master at 30"]
    assert merge(master, slave, since=NOW + timedelta(hours=1)) == []


@pytest.mark.parametrize(
    ("text", "back"),
    [
        ("90s", timedelta(seconds=90)),
        ("15m", timedelta(minutes=15)),
        ("2h", timedelta(hours=2)),
        ("1d", timedelta(days=1)),
        ("1h30m", timedelta(minutes=90)),
        ("300", timedelta(seconds=300)),
        ("0.5s", timedelta(seconds=0.5)),
    ],
)
def test_since_takes_a_duration(text: str, back: timedelta) -> None:
    assert parse_since(text, NOW) == NOW - back


def test_since_takes_an_iso_time_utc_without_an_offset() -> None:
    assert parse_since("2026-11-30T08:00:00Z", NOW) == datetime(2026, 11, 30, 8, tzinfo=UTC)
    assert parse_since("2026-11-30T08:00:00", NOW) == datetime(2026, 11, 30, 8, tzinfo=UTC)
    assert parse_since("2026-11-30T10:00:00+02:00", NOW) == datetime(2026, 11, 30, 8, tzinfo=UTC)
    assert parse_since("999999999w", NOW) == datetime.min.replace(tzinfo=UTC)  # further back than any journal


@pytest.mark.parametrize("text", ["", "yesterday", "5 minutes", "1x", "h", "2026-13-01", "-5m"])
def test_a_bad_since_is_refused_with_what_is_expected(text: str) -> None:
    with pytest.raises(HistoryError, match="expected a duration"):
        parse_since(text, NOW)


def test_the_text_is_one_aligned_line_per_entry_in_utc() -> None:
    story = merge(
        [entry("master", 1, "ACTIVE", "STOPPING", from_term=0, reason="told to\nstop")],
        [entry("slave", 0.5, "SUSPECT", "FAILING_OVER", event="LocalHealth", host="slave.example.net")],
    )
    lines = render(story).splitlines()
    assert len(lines) == 3 and lines[0].startswith("TIME (UTC)")
    assert lines[1].startswith("2026-12-01T10:00:00.500Z  slave ") and lines[2].startswith("2026-12-01T10:00:01.000Z")
    column = lines[0].index("REASON")  # the reasons start in one column
    assert lines[1][column:] == "slave at 0.5" and lines[2][column:] == "told to\\nstop"  # no line of its own
    assert "0->1" in lines[2]  # the term it moved from


# ---------------------------------------------------------------------------------------------- the reply


def test_the_reply_keeps_the_newest_entries_within_the_line_limit() -> None:
    good = [entry("slave", i, reason="x" * 5000) for i in range(300)]
    answer = reply([*good, "torn", {"time": 3}])
    assert answer.version == VERSION and 0 < len(answer.entries) < 300
    assert answer.omitted == 300 - len(answer.entries) + 2  # the older ones, and the two unreadable lines
    assert answer.entries[-1]["time"] == good[-1]["time"]  # the newest kept, oldest first
    assert all(len(e["reason"]) < REASON_CHARS + 40 for e in answer.entries)  # cut, and says so
    line = encode_line({"seq": 1, "body": answer.body(), "mac": "0" * 64})  # the envelope fits too
    assert len(line) <= MAX_LINE
    assert from_reply(answer, Role.SLAVE, 1000) == answer.entries


def test_a_clock_in_another_offset_is_shown_in_utc() -> None:
    (shown,) = readable([entry("slave", 0, time="2026-12-01T11:00:00.000+01:00")])[0]
    assert shown["time"] == "2026-12-01T10:00:00.000Z"


VALID = entry("slave", 0, code="probe_failed", seq=7)


@pytest.mark.parametrize(
    ("change", "problem"),
    [
        ({"term": "1"}, r"entries\[0\]\.term: expected an integer"),
        ({"term": 2**31}, r"entries\[0\]\.term: 2147483648 is out of range"),
        ({"term": True}, r"entries\[0\]\.term: expected an integer, got bool"),
        ({"from": "BOSS"}, r"entries\[0\]\.from: not a state name"),
        ({"to": None}, r"entries\[0\]\.to: missing"),
        ({"time": "yesterday"}, r"entries\[0\]\.time: not an ISO time"),
        ({"time": "2026-12-01T10:00:00"}, r"entries\[0\]\.time: not an ISO time with its offset"),
        ({"time": "0001-01-01T00:00:00+01:00"}, r"entries\[0\]\.time: out of range"),
        ({"role": "master"}, r"entries\[0\]\.role: master in the slave's journal"),
        ({"reason": "x" * (REASON_CHARS + 41)}, r"entries\[0\]\.reason: \d+ characters, more than"),
        ({"reason": "x" * (REASON_CHARS + 30)}, r"entries\[0\]\.reason: longer than"),
        ({"seq": -1}, r"entries\[0\]\.seq: -1 is out of range"),
        ({"host": ["a"]}, r"entries\[0\]\.host: expected text, got list"),
    ],
)
def test_a_bad_entry_is_refused_by_its_field(change: dict[str, Any], problem: str) -> None:
    with pytest.raises(HistoryError, match=problem):
        from_reply(JournalReply(VERSION, [{**VALID, **change}]), Role.SLAVE, 10)


def test_a_reply_of_another_version_or_over_the_limit_is_refused() -> None:
    with pytest.raises(HistoryError, match="version 2; this failover reads version 1"):
        from_reply(JournalReply(2, [VALID]), Role.SLAVE, 10)
    with pytest.raises(HistoryError, match="3 entries where at most 2"):
        from_reply(JournalReply(VERSION, [VALID] * 3), Role.SLAVE, 2)
    assert from_reply(JournalReply(VERSION, [{**VALID, "color": {"a": [1]}}]), Role.SLAVE, 1) == [VALID]  # dropped


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=30),
    lambda children: st.lists(children, max_size=3) | st.dictionaries(st.text(max_size=8), children, max_size=3),
    max_leaves=12,
)
field_values = {
    "time": st.sampled_from(["2026-12-01T10:00:00.000Z", "2026-12-01T10:00:00", "9999-12-31T23:59:59-23:59"])
    | json_values,
    "role": st.sampled_from(["slave", "master"]) | json_values,
    "from": st.sampled_from([s.value for s in State]) | json_values,
    "to": st.sampled_from([s.value for s in State]) | json_values,
    "term": st.integers(-5, 2**31 + 5) | json_values,
    "reason": st.text(max_size=50) | json_values,
    "event": st.text(max_size=10) | json_values,
    "seq": st.integers(-1, 2**60) | json_values,
}
entries = st.fixed_dictionaries({}, optional=field_values) | st.builds(
    lambda base, changes: {**base, **changes}, st.just(VALID), st.fixed_dictionaries({}, optional=field_values)
)
bodies = st.fixed_dictionaries(
    {"type": st.just("JOURNAL_REPLY")},
    optional={
        "version": st.just(VERSION) | json_values,
        "entries": st.lists(entries | json_values, max_size=4) | json_values,
        "omitted": st.integers(-2, 5) | json_values,
        "extra": json_values,
    },
)


@settings(max_examples=500)
@given(bodies)
def test_fuzz_a_journal_reply_is_refused_or_every_entry_is_sound(body: dict[str, Any]) -> None:
    """What a peer could send after authenticating: parsed as the channel parses it, then checked."""
    try:
        message = parse_message(json.loads(encode_line(body)))
        assert isinstance(message, JournalReply)
        story = from_reply(message, Role.SLAVE, 3)
    except (ProtocolError, HistoryError) as e:
        assert str(e)
        return
    assert len(story) <= 3
    for item in story:
        assert item["role"] == "slave" and item["from"] in State.__members__ and 0 <= item["term"] < 2**31
        assert item["time"].endswith("Z") and isinstance(item["reason"], str)
    text = render(merge(story))
    assert len(text.splitlines()) == len(story) + 1
    assert all(o["schema_version"] == VERSION for o in json.loads(json.dumps(as_json(story))))


@pytest.mark.parametrize("limit", [0, -1, 1001, "5", True, None])
def test_a_journal_request_out_of_bounds_is_refused(limit: object) -> None:
    with pytest.raises(ProtocolError, match="limit"):
        parse_message({"type": "JOURNAL", "limit": limit})


# ---------------------------------------------------------------------------------------------- served, asked


def transition(frm: State, to: State, term: int, reason: str = "because") -> Transition:
    return Transition(frm, to, term, term, reason, "ProbeResult")


@pytest.fixture
def confdir(tmp_path: Path) -> Path:
    write_scripts_and_secret(tmp_path)
    (tmp_path / "failover_config.py").write_text(CONFIG.replace("}", '    "CONTROL_TIMEOUT": 0.5,\n}'))
    return tmp_path


def test_the_control_server_serves_its_journal_and_the_asker_can_read_it(confdir: Path) -> None:
    store = StateStore(str(confdir / "state"), Role.MASTER, "127.0.0.1")
    node = initial_state(Role.MASTER)
    for term in range(5):
        store.save(node, transition(State.ACTIVE, State.ACTIVE, term, f"step {term}"))
    with open(store.journal_path, "a") as f:
        f.write('{"torn": \n')
    handler = master_control.make_handler(load(confdir / "failover_config.py"), logging.getLogger("test"))
    answer = handler(JournalRequest(3), "127.0.0.1:1")
    assert isinstance(answer, JournalReply) and answer.omitted == 0
    assert parse_message(json.loads(encode_line(answer.body()))) == answer
    assert [e["reason"] for e in from_reply(answer, Role.MASTER, 3)] == ["step 2", "step 3", "step 4"]


def test_with_the_peer_unreachable_this_hosts_history_is_shown_and_exit_4(confdir: Path) -> None:
    store = StateStore(str(confdir / "state"), Role.MASTER, "127.0.0.1")
    store.save(initial_state(Role.MASTER), transition(State.ACTIVE, State.STOPPING, 1, "told to stop"))
    args = ["--config", str(confdir / "failover_config.py"), "--role", "master", "history"]
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 4, result.output
    assert "ACTIVE -> STOPPING" in result.stdout and "told to stop" in result.stdout
    assert "WARNING: the slave's history is missing, only the master's is shown: the slave at 127.0.0.1:17891" in (
        result.stderr
    )
    result = CliRunner().invoke(main, [*args, "--json"])
    assert result.exit_code == 4
    (shown,) = json.loads(result.stdout)
    assert shown["schema_version"] == VERSION and shown["reason"] == "told to stop" and shown["seq"] == 1
    result = CliRunner().invoke(main, [*args, "--since", "soon"])
    assert result.exit_code == 2 and "expected a duration" in result.stderr


@pytest.mark.parametrize(
    ("answer", "problem"),
    [
        (JournalReply(VERSION, [{**VALID, "term": "one"}]), "sent a journal that cannot be read: entries[0].term"),
        (JournalReply(VERSION, [{**VALID, "role": "master"}]), "entries[0].role: master in the slave's journal"),
        (JournalReply(9, []), "entries are version 9; this failover reads version 1"),
        (Refused("no\x1b[2J journal"), "refused: no\\x1b[2J journal"),
        (StatusReply({}), "answered STATUS_REPLY to JOURNAL"),
    ],
)
def test_a_hostile_reply_is_refused_with_one_clear_line(
    confdir: Path, monkeypatch: pytest.MonkeyPatch, answer: Message, problem: str
) -> None:
    monkeypatch.setattr(history_command, "request", lambda *args: answer)
    StateStore(str(confdir / "state"), Role.MASTER, "127.0.0.1").save(
        initial_state(Role.MASTER), transition(State.ACTIVE, State.STOPPING, 1, "told to stop")
    )
    result = CliRunner().invoke(main, ["--config", str(confdir / "failover_config.py"), "--role", "master", "history"])
    assert result.exit_code == 4, result.output  # a line, not a traceback
    assert "told to stop" in result.stdout
    (line,) = result.stderr.splitlines()
    assert line.startswith("WARNING: the slave's history is missing") and problem in line, line


# ---------------------------------------------------------------------------------------------- FAILOVER_SEQ


def test_journal_entries_are_numbered_across_restarts_and_rotations(tmp_path: Path) -> None:
    node = initial_state(Role.SLAVE)
    for _ in range(3):  # three processes, each its own store, the journal rotating all along
        store = StateStore(str(tmp_path), Role.SLAVE, "h", journal_max_bytes=600, journal_backups=40)
        for i in range(4):
            store.save(node, transition(State.STANDBY, State.STANDBY, i))
            store.note(node, "scripts:notify", "ok")
    files = sorted(tmp_path.glob("slave.journal*"), key=lambda p: -int(p.suffix[1:]) if p.suffix[1:].isdigit() else 0)
    seqs = [e["seq"] for f in files for e in read_journal(str(f))]
    assert seqs == list(range(1, 25)), seqs


def test_failover_seq_increases_per_hook_across_restarts_and_rotations(tmp_path: Path) -> None:
    node = initial_state(Role.SLAVE)
    given: list[int] = []

    def process(saves: int, hooks: int) -> None:
        store = StateStore(str(tmp_path), Role.SLAVE, "h", journal_max_bytes=400, journal_backups=3)
        for i in range(saves):
            store.save(node, transition(State.STANDBY, State.SUSPECT, i))
            given.append(store.hook_seq(node))
        given.extend(store.hook_seq(node) for _ in range(hooks))

    process(saves=1, hooks=2)  # a transition, its hooks
    process(saves=0, hooks=2)  # restarted: hooks before any transition
    process(saves=0, hooks=1)  # and again (a crash after the hooks, nothing journaled by it)
    process(saves=5, hooks=0)  # rotations
    process(saves=0, hooks=1)
    assert given == sorted(set(given)), given  # strictly increasing, never reused
    assert given[:2] == [HOOK_SPAN + 1, HOOK_SPAN + 2]  # journal entry 1, then its hooks 1 and 2
    notes = [e for f in tmp_path.glob("slave.journal*") for e in read_journal(str(f)) if e["event"] == "hooks"]
    assert notes and all("FAILOVER_SEQ continues" in e["reason"] for e in notes)


def test_failover_seq_takes_a_new_journal_entry_every_span_of_hooks(tmp_path: Path) -> None:
    store = StateStore(str(tmp_path), Role.MASTER, "h")
    node = initial_state(Role.MASTER)
    store.save(node, transition(State.ACTIVE, State.ACTIVE, 0))
    numbers = [store.hook_seq(node) for _ in range(2 * HOOK_SPAN)]
    assert numbers == sorted(set(numbers)) and numbers[0] == HOOK_SPAN + 1
    assert len(read_journal(store.journal_path)) == 3  # the save, then a note each HOOK_SPAN - 1 hooks
