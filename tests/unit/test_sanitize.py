"""Text from peers and operators cannot forge log lines, status lines or break a script's start."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from failover.machine import Role
from failover.sanitize import CONTINUATION, LogFormatter, clean
from failover.scripts import run_script
from failover.status import render
from failover.status_schema import StatusError, checked

CONTROL = {chr(c) for c in [*range(0x20), *range(0x7F, 0xA0), 0x2028, 0x2029]}


@given(st.text(), st.integers(min_value=1, max_value=300))
def test_clean_gives_one_printable_line_of_bounded_length(text: str, limit: int) -> None:
    line = clean(text, limit)
    assert not CONTROL & set(line)
    assert len(line) <= limit + len("...(99999999 more characters)")


def test_clean_escapes_visibly() -> None:
    assert clean("kernel update\n2026-12-01T00:00:00 lhcd[1] INFO forged") == (
        "kernel update\\n2026-12-01T00:00:00 lhcd[1] INFO forged"
    )
    assert clean("a\x00b\x1b[2Jc") == "a\\x00b\\x1b[2Jc"
    assert clean("x" * 20, 5) == "xxxxx...(15 more characters)"


@given(st.text())
def test_a_log_record_cannot_start_a_line_of_its_own(reason: str) -> None:
    record = logging.LogRecord("lhcd", logging.WARNING, __file__, 1, "operator hold by %s", (reason,), None)
    lines = LogFormatter("%(asctime)s %(message)s").format(record).split("\n")
    assert all(line.startswith(CONTINUATION) for line in lines[1:])
    assert not (CONTROL - {"\t"}) & set("".join(lines))


def test_a_nul_in_a_script_environment_value_does_not_stop_the_script(tmp_path: Path) -> None:
    # Popen raises ValueError on a NUL in the environment: the failover would have stopped.
    result = run_script('printf "%s" "$FAILOVER_REASON"', 5, str(tmp_path), {"FAILOVER_REASON": "a\x00b\nc"})
    assert result.ok, result.summary()
    assert result.output == "a\\x00b\\nc"


def test_a_script_that_cannot_start_is_reported_not_raised(tmp_path: Path) -> None:
    result = run_script("true", 5, str(tmp_path / "gone"))
    assert not result.ok and "could not be started" in result.summary()


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=20),
    lambda children: st.lists(children, max_size=3) | st.dictionaries(st.text(max_size=10), children, max_size=3),
    max_leaves=15,
)
statuses = st.fixed_dictionaries(
    {},
    optional={
        name: json_values
        for name in (
            "host",
            "state",
            "group",
            "term",
            "reason",
            "daemons",
            "journal",
            "observations",
            "hold",
            "sync",
            "triggers",
            "mode",
            "service_ok",
            "restarts",
            "error",
        )
    },
)
VALID = {
    "host": "10.0.0.2",
    "state": "STANDBY",
    "group": "STANDBY",
    "term": 3,
    "reason": "watching",
    "daemons": {"rhcd": 42, "socketserver2": None},
    "journal": [{"time": "t", "role": "slave", "from": "STANDBY", "to": "SUSPECT", "term": 3, "reason": "r"}],
    "observations": {"probe_ok": True, "probe_latency": 0.01, "probe_detail": "+OK"},
}


@settings(max_examples=400)
@given(st.one_of(json_values, statuses, statuses.map(lambda s: {**VALID, **s})))
def test_fuzz_a_peer_status_is_refused_by_field_or_rendered(status: Any) -> None:
    try:
        valid = checked(status)
    except StatusError as e:
        assert str(e)
        return
    text = render({Role.SLAVE: {**VALID, **valid}}, {Role.MASTER: "unreachable"})
    assert not (CONTROL - {"\n"}) & set(text)


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"term": "1"}, "term"),
        ({"term": 2**40}, "term"),
        ({"state": "BOSS"}, "state"),
        ({"daemons": {"rhcd": [1]}}, "daemons.rhcd"),
        ({"journal": [{"time": 3}]}, "journal[0].time"),
        ({"observations": {"probe_latency": "fast"}}, "observations.probe_latency"),
        ({"hold": {"by": {"a": 1}}}, "hold.by"),
    ],
)
def test_a_bad_status_field_is_named(change: dict[str, Any], field: str) -> None:
    with pytest.raises(StatusError, match=field.replace("[", r"\[").replace("]", r"\]")):
        checked({**VALID, **change})


def test_a_newline_in_a_reason_cannot_forge_a_status_line() -> None:
    text = render({Role.SLAVE: {**VALID, "reason": "ok\nmaster: ACTIVE (forged)"}}, {})
    assert "master: ACTIVE (forged)" not in text.splitlines()
