"""The shape of a host's status (STATUS_REPLY), checked before anything reads it.

A status comes from the other host, so a wrong type in it must not crash `failover status`,
`failover switchover` or `failover switchback` (the review found a crafted reply doing so):
`checked()` verifies every field those commands read, types first, then ranges, and raises
StatusError naming the field. Unknown fields pass through untouched (newer peers may add some);
they are shown only as JSON. Pure.
"""

from __future__ import annotations

import math
from typing import Any

from failover.errors import FailoverError
from failover.machine.model import MAX_TERM, State

Scalar = (str, int, float, bool, type(None))


class StatusError(FailoverError):
    """A status that cannot be shown or acted on; the message names the field."""


def _scalar(where: str, value: Any) -> None:
    if not isinstance(value, Scalar):
        raise StatusError(f"{where}: expected a plain value, got {type(value).__name__}")
    if isinstance(value, float) and not math.isfinite(value):
        raise StatusError(f"{where}: not a finite number")


def _typed(where: str, value: Any, *kinds: type) -> None:
    if isinstance(value, bool) and bool not in kinds:
        raise StatusError(f"{where}: expected {'/'.join(k.__name__ for k in kinds)}, got bool")
    if not isinstance(value, kinds):
        raise StatusError(f"{where}: expected {'/'.join(k.__name__ for k in kinds)}, got {type(value).__name__}")
    if isinstance(value, float) and not math.isfinite(value):
        raise StatusError(f"{where}: not a finite number")


def _flat(where: str, value: Any, optional: bool = True) -> dict[str, Any]:
    """A dict of plain values (observations, sync, hold)."""
    if value is None and optional:
        return {}
    _typed(where, value, dict)
    for key, item in value.items():
        _scalar(f"{where}.{key}", item)
    return dict(value)


_REQUIRED = ("host", "reason", "state", "group", "term", "daemons")  # what every status has (collect())
_TEXT = ("host", "reason", "group", "error", "note", "mode", "condition", "role", "checked")
_NUMBERS = {"observations": ("probe_latency",), "sync": ("epoch", "failures")}


def checked(status: Any) -> dict[str, Any]:
    """`status` if every field that is read has the right type and range; else StatusError."""
    _typed("status", status, dict)
    for name in _REQUIRED:
        if name not in status:
            raise StatusError(f"{name}: missing")
    for name in ("host", "reason"):
        _typed(name, status[name], str)
    for name in _TEXT:
        if status.get(name) is not None:
            _typed(name, status[name], str)
    state = status.get("state")
    if state is not None and (not isinstance(state, str) or state not in State.__members__):
        raise StatusError(f"state: not a state name: {str(state)[:40]!r}")
    term = status.get("term")
    if term is not None:
        _typed("term", term, int)
        if not 0 <= term <= MAX_TERM:
            raise StatusError(f"term: {term} is out of range 0..{MAX_TERM}")
    for name in ("service_ok",):
        if status.get(name) is not None:
            _typed(name, status[name], bool)
    if status.get("restarts") is not None:
        _typed("restarts", status["restarts"], int)
    daemons = status["daemons"]
    _typed("daemons", daemons, dict)
    for name, pid in daemons.items():
        if pid is not None:
            _typed(f"daemons.{name}", pid, int, str)
    triggers = status.get("triggers", [])
    _typed("triggers", triggers, list)
    for i, trigger in enumerate(triggers):
        _typed(f"triggers[{i}]", trigger, str)
    journal = status.get("journal", [])
    _typed("journal", journal, list)
    for i, entry in enumerate(journal):
        _flat(f"journal[{i}]", entry, optional=False)
        if "time" in entry:
            _typed(f"journal[{i}].time", entry["time"], str)
    for name in ("observations", "sync", "hold"):
        _flat(name, status.get(name))
    for name, numbers in _NUMBERS.items():
        for key in numbers:
            value = (status.get(name) or {}).get(key)
            if value is not None:
                _typed(f"{name}.{key}", value, int, float)
    valid: dict[str, Any] = status
    return valid
