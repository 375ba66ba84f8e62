"""Persisted role state: the state file (atomic replace) and the journal (JSON lines).

`save()` runs before any action of a transition: it writes the whole NodeState to a temporary
file in the same directory, fsyncs it, renames it over the state file and fsyncs the directory,
so after a crash the file holds either the old state or the new one, never a mix. Then it
appends the transition to the journal and fsyncs that too. A daemon killed at any point resumes
from the state file; the journal is the story an operator reads.

The state file carries a `version` (STATE_VERSION; a file without one is version 1). `load()`
trusts nothing in it: every NodeState field is checked for its type, then its range (terms
within 0..MAX_TERM, counts non-negative, enum values known, numbers finite), and any problem is
a StateError that names the file and the key, so that a daemon refuses to start with one clear
line instead of dying later on a value of the wrong type.

The journal is rotated by size (JOURNAL_MAX_BYTES, keeping JOURNAL_BACKUPS older files as
NAME.journal.1 .. .N), and `journal_tail()` reads it from the end, so neither the disk nor a
STATUS request grows with the age of the pair. Each entry has a `seq` (failover/journal.py), and
`hook_seq()` derives FAILOVER_SEQ from it without a write of its own.
"""

from __future__ import annotations

import dataclasses
import enum
import json
import math
import os
import threading
import time
import types
import typing
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from failover.errors import FailoverError
from failover.journal import TAIL_ENTRY_BYTES, entry_of, last_seq, lines_from_end
from failover.journal import read_journal as read_journal  # re-exported: the tests and the lab read it here
from failover.machine import NodeState, Role, Transition
from failover.machine.model import MAX_TERM


class StateError(FailoverError):
    """The state file exists but cannot be trusted; the daemon must not guess. `key` names the
    field at fault (None when the file as a whole is unreadable)."""

    def __init__(self, message: str, key: str | None = None) -> None:
        super().__init__(message)
        self.key = key


def ensure_private_dir(path: str) -> None:
    os.makedirs(path, mode=0o700, exist_ok=True)


def wall_clock() -> str:
    """Wall-clock time for humans (log lines, journal); never used in a decision."""
    return datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def fsync_dir(path: str) -> None:
    """Make the renames and unlinks done in a directory durable."""
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def atomic_write(path: str, data: bytes, durable: bool = True) -> None:
    """Replace `path` with `data` atomically; durable=True also survives a power cut."""
    directory = os.path.dirname(path) or "."
    tmp = f"{path}.tmp.{os.getpid()}"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        os.write(fd, data)
        if durable:
            os.fsync(fd)
    finally:
        os.close(fd)
    os.replace(tmp, path)
    if durable:
        fsync_dir(directory)


# 1: no version field; 2: the version field is written; 3: the hold is one record, reasons have codes
STATE_VERSION = 3


def _plain(value: Any) -> Any:
    """A field's value as JSON holds it: enums by their value, records as objects."""
    if isinstance(value, enum.Enum):
        return value.value
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    return value


def to_dict(node: NodeState) -> dict[str, Any]:
    return {k: _plain(v) for k, v in dataclasses.asdict(node).items()}


RETIRED_FIELDS = frozenset({"master_says_down", "lb_fenced"})  # written by earlier versions, ignored on load

_JSON_TYPE = {
    bool: "a boolean",
    int: "an integer",
    float: "a number",
    str: "a string",
    list: "a list",
    dict: "an object",
}


def _shown(value: Any) -> str:
    """A value as an error message shows it: its JSON type and a short repr, on one line."""
    if value is None:
        return "null"
    kind = _JSON_TYPE.get(type(value), type(value).__name__)
    text = repr(value)
    return f"{kind} {text[:60]}{'...' if len(text) > 60 else ''}"


class _Bad(FailoverError):
    """One field's problem, without the key (the caller adds it)."""


Check = Callable[[Any], Any]  # the JSON value -> the field's value, or raises _Bad


def _integer(value: Any) -> int:
    # bool is an int to Python, never to a state file
    if isinstance(value, bool) or not isinstance(value, int):
        raise _Bad(f"expected an integer, got {_shown(value)}")
    if not 0 <= value <= MAX_TERM:  # terms, counts and indices alike: none is negative or past a term's ceiling
        raise _Bad(f"{value} is out of range: expected 0..{MAX_TERM} (MAX_TERM)")
    return value


def _number(value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise _Bad(f"expected a number, got {_shown(value)}")
    try:
        number = float(value)
    except OverflowError:
        raise _Bad(f"{_shown(value)} is too large for a number") from None
    if not math.isfinite(number):  # json.loads accepts NaN and Infinity; no time or deadline is either
        raise _Bad(f"{number} is not a finite number")
    return number


def _boolean(value: Any) -> bool:
    if not isinstance(value, bool):
        raise _Bad(f"expected true or false, got {_shown(value)}")
    return value


def _string(value: Any) -> str:
    if not isinstance(value, str):
        raise _Bad(f"expected a string, got {_shown(value)}")
    return value


def _enum(kind: type[enum.Enum]) -> Check:
    known = [str(member.value) for member in kind]

    def check(value: Any) -> Any:
        if not isinstance(value, str):
            raise _Bad(f"expected one of {', '.join(known)}, got {_shown(value)}")
        if value not in known:
            raise _Bad(f"{_shown(value)} is not a known {kind.__name__}: expected one of {', '.join(known)}")
        return kind(value)

    return check


def _optional(inner: Check) -> Check:
    def check(value: Any) -> Any:
        if value is None:
            return None
        try:
            return inner(value)
        except _Bad as e:
            raise _Bad(str(e).replace(", got", " or null, got", 1)) from None

    return check


def _sequence(inner: Check) -> Check:
    def check(value: Any) -> tuple[Any, ...]:
        if not isinstance(value, list | tuple):
            raise _Bad(f"expected a list, got {_shown(value)}")
        items = []
        for i, item in enumerate(value):
            try:
                items.append(inner(item))
            except _Bad as e:
                raise _Bad(f"item {i}: {e}") from None
        return tuple(items)

    return check


def _record(kind: type[Any]) -> Check:
    """A nested record (a frozen dataclass such as Hold): an object with exactly its fields, each
    checked by its own type, the error naming the inner field."""
    checks = {name: _check_for(hint) for name, hint in typing.get_type_hints(kind).items()}
    required = [f.name for f in dataclasses.fields(kind) if f.default is dataclasses.MISSING]

    def check(value: Any) -> Any:
        if not isinstance(value, dict):
            raise _Bad(f"expected an object, got {_shown(value)}")
        unknown = sorted(str(k)[:40] for k in set(value) - set(checks))
        if unknown:
            raise _Bad(f"unknown field {unknown[0]}")
        for name in required:
            if name not in value:
                raise _Bad(f"{name}: missing")
        fields = {}
        for name, item in value.items():
            try:
                fields[name] = checks[name](item)
            except _Bad as e:
                raise _Bad(f"{name}: {e}") from None
        return kind(**fields)

    return check


def _check_for(hint: Any) -> Check:
    """The check of a NodeState field's type; a type this does not know fails at import, so a new
    field cannot slip through unchecked."""
    simple: dict[Any, Check] = {int: _integer, float: _number, bool: _boolean, str: _string}
    if hint in simple:
        return simple[hint]
    if dataclasses.is_dataclass(hint) and isinstance(hint, type):
        return _record(hint)
    if isinstance(hint, type) and issubclass(hint, enum.Enum):
        return _enum(hint)
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin in (types.UnionType, typing.Union) and len(args) == 2 and type(None) in args:
        return _optional(_check_for(next(a for a in args if a is not type(None))))
    if origin is tuple and len(args) == 2 and args[1] is Ellipsis:
        return _sequence(_check_for(args[0]))
    raise TypeError(f"state.py cannot check a NodeState field of type {hint!r}: add its check")


_FIELDS = {f.name: f for f in dataclasses.fields(NodeState)}
_CHECKS: dict[str, Check] = {name: _check_for(hint) for name, hint in typing.get_type_hints(NodeState).items()}
_REQUIRED = [name for name, f in _FIELDS.items() if f.default is dataclasses.MISSING]


def _version(data: dict[str, Any]) -> int:
    version = data.get("version", 1)  # files written before the version field are version 1
    if isinstance(version, bool) or not isinstance(version, int):
        raise StateError(f"version: expected an integer, got {_shown(version)}", "version")
    if version < 1:
        raise StateError(f"version: {version} is out of range: expected 1..{STATE_VERSION}", "version")
    if version > STATE_VERSION:
        raise StateError(
            f"version: {version} is newer than this failover reads (up to {STATE_VERSION}): "
            "run the failover that wrote it, or move the file away to start afresh",
            "version",
        )
    return version


_FLAT_HOLD = ("held_from", "hold_by", "hold_since", "hold_reason")  # versions 1 and 2: the hold, flat


def _migrated(data: dict[str, Any], version: int) -> dict[str, Any]:
    """A file of an earlier version in this version's shape (its values are checked after)."""
    if version >= 3:
        return data
    flat = {name: data.pop(name) for name in _FLAT_HOLD if name in data}
    held_from = flat.get("held_from")
    if held_from is not None:
        data["hold"] = {
            "held_from": held_from,
            "by": flat.get("hold_by", ""),
            "since": flat.get("hold_since", ""),
            "reason": flat.get("hold_reason", ""),
        }
    return data


def from_dict(data: dict[str, Any]) -> NodeState:
    """A NodeState from a state file's object, every field checked; StateError names the key."""
    version = _version(data)
    data = {k: v for k, v in data.items() if k not in RETIRED_FIELDS and k != "version"}
    data = _migrated(data, version)
    unknown = sorted(set(data) - set(_FIELDS))
    if unknown:
        shown = ", ".join(k if k.isidentifier() else repr(k)[:40] for k in unknown)  # a key may hold anything
        raise StateError(f"{shown}: unknown field (written by another version?)", unknown[0])
    for name in _REQUIRED:
        if name not in data:
            raise StateError(f"{name}: missing", name)
    fields: dict[str, Any] = {}
    for name, value in data.items():
        try:
            fields[name] = _CHECKS[name](value)
        except _Bad as e:
            raise StateError(f"{name}: {e}", name) from None
    try:
        return NodeState(**fields)
    except ValueError as e:  # what the fields mean together (a state of the other role)
        raise StateError(f"state: {e}", "state") from None


JOURNAL_MAX_BYTES = 8 * 2**20  # the journal is rotated once it reaches this size ...
JOURNAL_BACKUPS = 4  # ... keeping NAME.journal.1 (the newest) .. NAME.journal.4; the oldest is dropped
HOOK_SPAN = 1000  # FAILOVER_SEQ = the seq of this process's last journal entry x HOOK_SPAN + the hooks since


class StateStore:
    """The state file and journal of one role in STATE_DIR."""

    def __init__(
        self,
        state_dir: str,
        role: Role,
        host: str,
        journal_max_bytes: int = JOURNAL_MAX_BYTES,
        journal_backups: int = JOURNAL_BACKUPS,
    ) -> None:
        if journal_backups < 1:
            raise ValueError("journal_backups must be >= 1: the entry that triggers a rotation goes to .1")
        self.role, self.host = role, host
        self.state_path = os.path.join(state_dir, f"{role.value}.state.json")
        self.journal_path = os.path.join(state_dir, f"{role.value}.journal")
        self.journal_max_bytes, self.journal_backups = journal_max_bytes, journal_backups
        self._journal_lock = threading.Lock()
        self._seq: int | None = None  # the last journal entry's seq; read from the journal at the first append
        self._mark: int | None = None  # the seq of the last entry this process appended (None: none yet)
        self._hooks = 0  # hook numbers handed out since that entry
        ensure_private_dir(state_dir)

    def load(self) -> NodeState | None:
        """The persisted state, or None on first start. Raises StateError if it cannot be trusted."""
        try:
            raw = Path(self.state_path).read_bytes()
        except FileNotFoundError:
            return None
        except OSError as e:
            raise StateError(f"{self.state_path}: cannot be read: {e.strerror or e}") from None
        try:
            data = json.loads(raw)
        except (ValueError, RecursionError) as e:  # RecursionError: nesting deeper than the parser goes
            problem = str(e) if isinstance(e, ValueError) else "nested too deeply"
            raise StateError(f"{self.state_path}: not valid JSON ({problem}); move it away to start afresh") from None
        if not isinstance(data, dict):
            raise StateError(f"{self.state_path}: expected a JSON object, got {_shown(data)}")
        try:
            node = from_dict(data)
        except StateError as e:
            raise StateError(f"{self.state_path}: {e}", e.key) from None
        if node.role is not self.role:
            raise StateError(
                f"{self.state_path}: role: the file belongs to the {node.role}, not the {self.role}", "role"
            )
        return node

    def save(self, node: NodeState, transition: Transition) -> None:
        """Persist the state, then journal the transition: both durable before any action runs."""
        data = {"version": STATE_VERSION, **to_dict(node)}
        atomic_write(self.state_path, json.dumps(data, indent=1).encode() + b"\n")
        entry = {
            "time": wall_clock(),
            "mono": round(time.monotonic(), 3),
            "host": self.host,
            "role": self.role.value,
            "from": transition.from_state.value,
            "to": transition.to_state.value,
            "from_term": transition.from_term,
            "term": transition.term,
            "event": transition.event,
            "code": transition.code.value,
            "reason": transition.reason,
        }
        self._append(entry)

    def _append(self, entry: dict[str, Any]) -> None:
        with self._journal_lock:  # the notice thread journals too; a rotation happens under it
            self._write(entry)

    def _write(self, entry: dict[str, Any]) -> None:
        """Append `entry` with the next seq, durably (the journal lock held). A failed write
        leaves a gap in the numbers, never a number used twice."""
        if self._seq is None:
            self._seq = last_seq(self.journal_tail(8))  # past a rotation too: the tail reads .1
        self._seq += 1
        line = json.dumps({**entry, "seq": self._seq}).encode() + b"\n"
        fd = os.open(self.journal_path, os.O_RDWR | os.O_CREAT | os.O_APPEND, 0o600)
        try:
            size = os.fstat(fd).st_size
            if size and os.pread(fd, 1, size - 1) != b"\n":
                # a crash tore the last line: end it, or this entry would be glued to it and lost
                line = b"\n" + line
            os.write(fd, line)
            os.fsync(fd)
            size += len(line)
        finally:
            os.close(fd)
        self._mark, self._hooks = self._seq, 0
        if size >= self.journal_max_bytes:
            self._rotate()  # the entry is fsynced already: it stays durable, in .1

    def hook_seq(self, node: NodeState) -> int:
        """FAILOVER_SEQ for the next hook: strictly greater than every number handed out before
        on this host, by this process or an earlier one, whatever crashed or rotated meanwhile.

        It is the seq of the last journal entry this process appended x HOOK_SPAN + the hooks
        since (1, 2, ...): the journal entry is durable already (fsynced), so a hook costs no
        write. A process that has appended nothing yet (restarted without a transition), or
        that ran HOOK_SPAN - 1 hooks since its last entry, first journals a note: an earlier
        process may have used every number up to the next entry's. A note that cannot be written
        (a full disk) must not stop the hook: the number then continues unjournaled."""
        with self._journal_lock:
            if self._mark is None or self._hooks >= HOOK_SPAN - 1:
                seen = self._seq
                try:
                    self._write(self._note(node, "hooks", "FAILOVER_SEQ continues past every number used before"))
                except OSError:
                    if self._mark is None:  # the best guess without a write: past the last journaled entry
                        self._mark, self._hooks = (seen or 0) + 1, 0
            self._hooks += 1
            assert self._mark is not None
            return self._mark * HOOK_SPAN + self._hooks

    def _journal_files(self) -> list[str]:
        """The journal and its rotated files, newest first."""
        return [self.journal_path] + [f"{self.journal_path}.{i}" for i in range(1, self.journal_backups + 1)]

    def _rotate(self) -> None:
        """.N-1 -> .N (the oldest is replaced, so dropped) .. .1 -> .2, then the journal -> .1.
        A crash in between leaves a gap in the numbers at worst, which journal_tail skips."""
        files = self._journal_files()
        for i in range(len(files) - 2, 0, -1):  # .N-1 first, so that nothing is overwritten unread
            if os.path.exists(files[i]):
                os.replace(files[i], files[i + 1])
        os.replace(self.journal_path, files[1])
        fsync_dir(os.path.dirname(self.journal_path) or ".")

    def note(self, node: NodeState, event: str, reason: str) -> None:
        """Journal something that happened without a transition (scripts' results)."""
        self._append(self._note(node, event, reason))

    def _note(self, node: NodeState, event: str, reason: str) -> dict[str, Any]:
        return {
            "time": wall_clock(),
            "mono": round(time.monotonic(), 3),
            "host": self.host,
            "role": self.role.value,
            "from": node.state.value,
            "to": node.state.value,
            "from_term": node.term,
            "term": node.term,
            "event": event,
            "reason": reason,
        }

    def journal_tail(self, count: int) -> list[dict[str, Any]]:
        """The last `count` readable entries, oldest first. Read backwards from the end of the
        journal, and of its rotated files when the journal holds fewer: a STATUS costs the same
        whatever the journal's age. A torn last line (a crash mid-append) is skipped."""
        entries: list[dict[str, Any]] = []
        seen: set[tuple[int, int]] = set()
        for path in self._journal_files():
            if len(entries) >= count:
                break
            try:
                fd = os.open(path, os.O_RDONLY)
            except FileNotFoundError:
                continue  # not rotated that often yet, or a gap left by a crash mid-rotation
            try:
                st = os.fstat(fd)
                if (st.st_dev, st.st_ino) in seen:
                    continue  # rotated while we read: this file was read under its newer name
                seen.add((st.st_dev, st.st_ino))
                found: list[dict[str, Any]] = []
                for line in lines_from_end(fd, count * TAIL_ENTRY_BYTES):
                    entry = entry_of(line)
                    if entry is not None:
                        found.append(entry)
                        if len(entries) + len(found) >= count:
                            break
                entries = found[::-1] + entries
            finally:
                os.close(fd)
        return entries
