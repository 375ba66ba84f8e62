"""`failover history`, sans I/O: both hosts' journals as one story.

A host answers JOURNAL with `reply()`: the newest entries of its journal that are readable,
within REPLY_BYTES once encoded (the protocol's line limit, less the envelope), each reason cut
to REASON_CHARS. The asking host trusts nothing in that reply: `from_reply()` checks its
version, its size and every field of every entry (types first, then ranges: a state name, a
term within MAX_TERM, a time that is an ISO time with its offset), and any problem is a
HistoryError naming the entry and the field, so that a hostile or broken peer costs a clear
line, never a traceback. Unknown fields are dropped (a newer peer may add some), never shown.

`merge()` interleaves the hosts by wall-clock time, each host's entries kept in its journal's
order (a clock stepped back on one host does not reorder that host's story); `--since` and
`--limit` apply to the merged story. Times are shown in UTC. The hosts' clocks may differ:
between hosts, the order is as good as their clocks.
"""

from __future__ import annotations

import heapq
import json
import re
from collections.abc import Callable, Iterable
from datetime import UTC, datetime, timedelta
from typing import Any

from failover.errors import FailoverError
from failover.journal import MAX_SEQ
from failover.machine.model import MAX_TERM, Role, State
from failover.protocol import MAX_LINE, JournalReply
from failover.sanitize import clean

VERSION = 1  # the shape of an entry: in a JOURNAL_REPLY, and the "schema_version" of `failover history --json`
REPLY_BYTES = MAX_LINE - 1024  # a reply's entries, encoded; the rest of the line is the envelope and its MAC
REASON_CHARS = 2000  # a reason longer than this is cut (the journal on its host keeps it whole)
_CUT = re.compile(r"\.\.\.\(\d{1,9} more characters\)")


class HistoryError(FailoverError):
    """A journal reply (or a --since) that cannot be used; the message says where and why."""


def _text(limit: int) -> Callable[[Any], str]:
    def check(value: Any) -> str:
        if not isinstance(value, str):
            raise HistoryError(f"expected text, got {type(value).__name__}")
        if len(value) > limit:
            raise HistoryError(f"{len(value)} characters, more than {limit}")
        return value

    return check


def _integer(maximum: int) -> Callable[[Any], int]:
    def check(value: Any) -> int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise HistoryError(f"expected an integer, got {type(value).__name__}")
        if not 0 <= value <= maximum:
            raise HistoryError(f"{value if abs(value) < 10**20 else 'a huge number'} is out of range 0..{maximum}")
        return value

    return check


def _state(value: Any) -> str:
    if not isinstance(value, str) or value not in State.__members__:
        raise HistoryError(f"not a state name: {clean(value, 40)!r}")
    return value


def _role(value: Any) -> str:
    if value not in [r.value for r in Role]:
        raise HistoryError(f"not a role: {clean(value, 40)!r}")
    return str(value)


def parse_time(value: Any) -> datetime:
    """An entry's time: an ISO time with its offset (the journal writes UTC, "...Z"), in UTC."""
    if not isinstance(value, str) or len(value) > 40:
        raise HistoryError(f"expected an ISO time of at most 40 characters, got {clean(value, 40)!r}")
    try:
        moment: datetime | None = datetime.fromisoformat(value)
    except ValueError:
        moment = None
    if moment is None or moment.utcoffset() is None:
        raise HistoryError(f"not an ISO time with its offset: {clean(value, 40)!r}")
    try:
        return moment.astimezone(UTC)
    except OverflowError:
        raise HistoryError(f"out of range: {clean(value, 40)!r}") from None


def utc(moment: datetime) -> str:
    return moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _time(value: Any) -> str:
    return utc(parse_time(value))


# The fields shown, each with its check; (required, check). Any other field is dropped.
FIELDS: dict[str, tuple[bool, Callable[[Any], Any]]] = {
    "time": (True, _time),
    "role": (True, _role),
    "from": (True, _state),
    "to": (True, _state),
    "term": (True, _integer(MAX_TERM)),
    "reason": (True, _text(REASON_CHARS + 40)),
    "event": (False, _text(200)),
    "host": (False, _text(255)),
    "from_term": (False, _integer(MAX_TERM)),
    "code": (False, _text(100)),
    "seq": (False, _integer(MAX_SEQ)),
}


def checked_entry(value: Any, where: str = "entry") -> dict[str, Any]:
    """One journal entry with only the fields above, each checked; HistoryError names the field."""
    if not isinstance(value, dict):
        raise HistoryError(f"{where}: expected an object, got {type(value).__name__}")
    entry: dict[str, Any] = {}
    for name, (required, check) in FIELDS.items():
        if name not in value or value[name] is None:
            if required:
                raise HistoryError(f"{where}.{name}: missing")
            continue
        try:
            entry[name] = check(value[name])
        except HistoryError as e:
            raise HistoryError(f"{where}.{name}: {e}") from None
    return entry


def _clipped(entry: dict[str, Any]) -> dict[str, Any]:
    reason = entry.get("reason")
    if isinstance(reason, str) and len(reason) > REASON_CHARS:
        return {**entry, "reason": f"{reason[:REASON_CHARS]}...({len(reason) - REASON_CHARS} more characters)"}
    return entry


def readable(raw: Iterable[Any]) -> tuple[list[dict[str, Any]], int]:
    """A host's own journal entries as history shows them, and how many could not be read."""
    entries, unreadable = [], 0
    for item in raw:
        try:
            entries.append(checked_entry(_clipped(item) if isinstance(item, dict) else item))
        except HistoryError:
            unreadable += 1
    return entries, unreadable


def _size(entry: dict[str, Any]) -> int:
    return len(json.dumps(entry, separators=(",", ":"), sort_keys=True, ensure_ascii=True)) + 1


def reply(raw: list[Any]) -> JournalReply:
    """The answer to JOURNAL from this host's journal tail: its newest readable entries that fit
    in REPLY_BYTES; `omitted` counts the older ones left out, and the unreadable lines."""
    entries, unreadable = readable(raw)
    room, kept = REPLY_BYTES, 0
    for entry in reversed(entries):
        room -= _size(entry)
        if room < 0:
            break
        kept += 1
    return JournalReply(VERSION, entries[len(entries) - kept :], len(entries) - kept + unreadable)


def from_reply(message: JournalReply, role: Role, limit: int) -> list[dict[str, Any]]:
    """The entries of `role`'s JOURNAL_REPLY, every field checked; HistoryError says what is wrong."""
    if message.version != VERSION:
        raise HistoryError(
            f"its journal entries are version {message.version}; this failover reads version {VERSION}: "
            "run the same failover on both hosts"
        )
    if len(message.entries) > limit:
        raise HistoryError(f"{len(message.entries)} entries where at most {limit} were asked for")
    entries = []
    for i, item in enumerate(message.entries):
        entry = checked_entry(item, f"entries[{i}]")
        if entry["role"] != role.value:
            raise HistoryError(f"entries[{i}].role: {entry['role']} in the {role}'s journal")
        if len(entry["reason"]) > REASON_CHARS and not _CUT.fullmatch(entry["reason"][REASON_CHARS:]):
            raise HistoryError(f"entries[{i}].reason: longer than {REASON_CHARS} characters")
        entries.append(entry)
    return entries


# ------------------------------------------------------------------------------------------ --since

_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}
_SECONDS = re.compile(r"\d{1,9}(?:\.\d{1,6})?")
_PART = re.compile(r"(\d{1,9}(?:\.\d{1,6})?)([smhdw])")
_DURATION = re.compile(rf"(?:{_PART.pattern})+")


def parse_since(text: str, now: datetime) -> datetime:
    """--since: a duration back from `now` (90s, 15m, 2h, 1d, 1h30m; a bare number is seconds)
    or an ISO time (one without an offset is UTC)."""
    text = text.strip()
    if _SECONDS.fullmatch(text) or _DURATION.fullmatch(text):
        parts = _PART.findall(text) or [(text, "s")]
        try:
            return now - timedelta(seconds=sum(float(n) * _UNITS[u] for n, u in parts))
        except OverflowError:
            return datetime.min.replace(tzinfo=UTC)  # further back than any journal
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        raise HistoryError(
            f"--since {clean(text, 60)!r}: expected a duration (90s, 15m, 2h, 1d, 1h30m) or an ISO time "
            "(2026-12-01T10:00:00Z; without an offset it is UTC)"
        ) from None
    try:
        return moment.replace(tzinfo=UTC) if moment.utcoffset() is None else moment.astimezone(UTC)
    except OverflowError:
        return datetime.min.replace(tzinfo=UTC)


# ------------------------------------------------------------------------------------------ merge, output


def merge(
    *hosts: list[dict[str, Any]], since: datetime | None = None, limit: int | None = None
) -> list[dict[str, Any]]:
    """The hosts' checked entries as one story in time order, each host's in its journal's order;
    only those at or after `since`, and the newest `limit` of them."""
    story = list(heapq.merge(*hosts, key=lambda e: parse_time(e["time"])))
    if since is not None:
        story = [e for e in story if parse_time(e["time"]) >= since]
    return story[-limit:] if limit else story


def as_json(story: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [{"schema_version": VERSION, **entry} for entry in story]


def _term(entry: dict[str, Any]) -> str:
    before = entry.get("from_term")
    return f"{before}->{entry['term']}" if before is not None and before != entry["term"] else str(entry["term"])


def render(story: list[dict[str, Any]]) -> str:
    """One aligned line per entry: time (UTC), role, host, from -> to, term, event, then the reason."""
    header = ("TIME (UTC)", "ROLE", "HOST", "FROM -> TO", "TERM", "EVENT")
    rows = [header] + [
        (
            entry["time"],
            entry["role"],
            clean(entry.get("host", "?"), 40),
            f"{entry['from']} -> {entry['to']}",
            _term(entry),
            clean(entry.get("event", "?"), 40),
        )
        for entry in story
    ]
    reasons = ["REASON"] + [clean(entry["reason"], REASON_CHARS + 40) for entry in story]
    widths = [max(len(row[i]) for row in rows) for i in range(len(header))]
    return "\n".join(
        "  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)) + "  " + reason
        for row, reason in zip(rows, reasons, strict=True)
    )
