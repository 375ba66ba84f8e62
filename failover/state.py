"""Persisted role state: the state file (atomic replace) and the journal (JSON lines).

`save()` runs before any action of a transition: it writes the whole NodeState to a temporary
file in the same directory, fsyncs it, renames it over the state file and fsyncs the directory,
so after a crash the file holds either the old state or the new one, never a mix. Then it
appends the transition to the journal and fsyncs that too. A daemon killed at any point resumes
from the state file; the journal is the story an operator reads.
"""

from __future__ import annotations

import dataclasses
import json
import os
import threading
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from failover.machine import Condition, NodeState, Role, State, Transition, Trigger


class StateError(Exception):
    """The state file exists but cannot be trusted; the daemon must not guess."""


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


def to_dict(node: NodeState) -> dict[str, Any]:
    return {k: (v.value if hasattr(v, "value") else v) for k, v in dataclasses.asdict(node).items()}


RETIRED_FIELDS = frozenset({"master_says_down"})  # written by earlier versions, ignored on load


_CONVERT: dict[str, Any] = {
    "condition": Condition,
    "master_condition": Condition,
    "trigger": Trigger,
    "held_from": State,
    "restarts": lambda times: tuple(float(t) for t in times),
}


def from_dict(data: dict[str, Any]) -> NodeState:
    names = {f.name for f in dataclasses.fields(NodeState)}
    data = {k: v for k, v in data.items() if k not in RETIRED_FIELDS}
    unknown = set(data) - names
    if unknown:
        raise StateError(f"unknown fields {sorted(unknown)}")
    term = data.get("term", 0)
    if not isinstance(term, int) or isinstance(term, bool):
        raise StateError(f"term must be an integer, got {term!r}")
    try:
        fields = dict(data, role=Role(data["role"]), state=State(data["state"]))
        for name, kind in _CONVERT.items():
            if fields.get(name) is not None:
                fields[name] = kind(fields[name])
        return NodeState(**fields)
    except (KeyError, ValueError, TypeError) as e:
        raise StateError(str(e)) from None


class StateStore:
    """The state file and journal of one role in STATE_DIR."""

    def __init__(self, state_dir: str, role: Role, host: str) -> None:
        self.role, self.host = role, host
        self.state_path = os.path.join(state_dir, f"{role.value}.state.json")
        self.journal_path = os.path.join(state_dir, f"{role.value}.journal")
        self._journal_lock = threading.Lock()
        ensure_private_dir(state_dir)

    def load(self) -> NodeState | None:
        """The persisted state, or None on first start. Raises StateError if it is unreadable."""
        try:
            raw = Path(self.state_path).read_bytes()
        except FileNotFoundError:
            return None
        try:
            data = json.loads(raw)
        except ValueError as e:
            raise StateError(f"{self.state_path}: not valid JSON ({e}); move it away to start afresh") from None
        if not isinstance(data, dict):
            raise StateError(f"{self.state_path}: expected a JSON object")
        try:
            node = from_dict(data)
        except StateError as e:
            raise StateError(f"{self.state_path}: {e}") from None
        if node.role is not self.role:
            raise StateError(f"{self.state_path} belongs to the {node.role}, not the {self.role}")
        return node

    def save(self, node: NodeState, transition: Transition) -> None:
        """Persist the state, then journal the transition: both durable before any action runs."""
        atomic_write(self.state_path, json.dumps(to_dict(node), indent=1).encode() + b"\n")
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
            "reason": transition.reason,
        }
        self._append(entry)

    def _append(self, entry: dict[str, Any]) -> None:
        with self._journal_lock:  # the notice thread journals too
            fd = os.open(self.journal_path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
            try:
                os.write(fd, json.dumps(entry).encode() + b"\n")
                os.fsync(fd)
            finally:
                os.close(fd)

    def note(self, node: NodeState, event: str, reason: str) -> None:
        """Journal something that happened without a transition (scripts' results)."""
        entry = {
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
        self._append(entry)

    def journal_tail(self, count: int) -> list[dict[str, Any]]:
        return read_journal(self.journal_path)[-count:]


def read_journal(path: str) -> list[dict[str, Any]]:
    """Every readable entry; a torn last line (a crash mid-append) is skipped."""
    try:
        lines = Path(path).read_text().splitlines()
    except FileNotFoundError:
        return []
    entries = []
    for line in lines:
        try:
            entry = json.loads(line)
        except ValueError:
            continue
        if isinstance(entry, dict):
            entries.append(entry)
    return entries
