"""Parsers of the config's structured values (LOAD_BALANCER, SYNC_FILES, SYNC_ROOT, ...): each
returns the value or raises Bad with the problem; validation (loading.py) names the key."""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from failover.errors import FailoverError
from failover.sync.files import SyncEntry


class Bad(FailoverError):
    """The value is wrong; the message says how."""


def seconds(lo: float, hi: float) -> Callable[[Any], float]:
    """A parser of a number of seconds in [lo, hi]."""

    def parse(value: Any) -> float:
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise Bad(f"expected a number of seconds, got {type(value).__name__} {value!r}")
        if not math.isfinite(value) or not lo <= value <= hi:
            raise Bad(f"{value!r} is out of range: expected {lo:g} <= value <= {hi:g} (seconds)")
        return float(value)

    return parse


@dataclass(frozen=True)
class LoadBalancerConfig:
    """LOAD_BALANCER: HAProxy's runtime API and the backend's server name of each host."""

    address: str  # "unix:/run/haproxy/admin.sock" or "host:port"
    backend: str
    master_server: str
    slave_server: str
    timeout: float = 2.0


def load_balancer(value: Any) -> LoadBalancerConfig | None:
    if value is None:
        return None
    if not isinstance(value, dict):
        raise Bad("expected None or a dict with address, backend, master_server, slave_server (and timeout)")
    fields = {"address", "backend", "master_server", "slave_server", "timeout"}
    unknown, missing = set(value) - fields, {"address", "backend", "master_server", "slave_server"} - set(value)
    if unknown or missing:
        raise Bad(f"unknown fields {sorted(unknown)}, missing fields {sorted(missing)}; expected {sorted(fields)}")
    for name in ("address", "backend", "master_server", "slave_server"):
        if not isinstance(value[name], str) or not value[name].strip():
            raise Bad(f"{name} must be a non-empty string")
    address = value["address"]
    if not address.startswith("unix:") and not address.rpartition(":")[2].isdigit():
        raise Bad(f"address {address!r}: expected 'unix:/path/to/admin.sock' or 'host:port'")
    timeout = seconds(0.05, 60)(value.get("timeout", 2.0))
    return LoadBalancerConfig(address, value["backend"], value["master_server"], value["slave_server"], timeout)


def sync_files(value: Any) -> tuple[SyncEntry, ...]:
    """A list of absolute paths or globs, or dicts {"path", "mode": "sync"|"verify", "substitute"}."""
    if value in (None, [], ()):
        return ()
    if not isinstance(value, list | tuple):
        raise Bad("expected a list of paths, or of dicts with path, mode and substitute")
    entries = []
    for i, item in enumerate(value):
        if isinstance(item, str):
            item = {"path": item}
        if not isinstance(item, dict) or not isinstance(item.get("path"), str):
            raise Bad(f"item {i}: expected a path or a dict with a 'path'")
        unknown = set(item) - {"path", "mode", "substitute"}
        if unknown:
            raise Bad(f"item {i}: unknown fields {sorted(unknown)}; expected path, mode, substitute")
        path, mode, pairs = item["path"], item.get("mode", "sync"), item.get("substitute") or {}
        if not path.startswith("/") or ".." in path.split("/"):
            raise Bad(f"item {i}: {path!r}: expected an absolute path without '..'")
        if mode not in ("sync", "verify"):
            raise Bad(f"item {i}: mode {mode!r}: expected 'sync' or 'verify'")
        if not isinstance(pairs, dict) or not all(isinstance(k, str) and isinstance(v, str) for k, v in pairs.items()):
            raise Bad(f"item {i}: substitute must map strings to strings (old address -> new)")
        if pairs and mode == "verify":
            raise Bad(f"item {i}: a 'verify' entry is never copied, so it cannot have a substitution")
        entries.append(SyncEntry(path, mode, tuple(pairs.items())))
    return tuple(entries)


def never_start(value: Any) -> bool:
    if value is not False:
        raise Bad(
            "only False: starting the service on the standby after a sync would run it on both hosts "
            "(it must run on one); the standby starts it only by a failover or `failover switchover`"
        )
    return False


def sync_root(value: Any) -> dict[str, str]:
    if not isinstance(value, dict) or set(value) != {"master", "slave"}:
        raise Bad("expected {'master': DIR, 'slave': DIR} (both '/' on two real hosts)")
    for role, path in value.items():
        if not isinstance(path, str) or not path.startswith("/"):
            raise Bad(f"{role}: expected an absolute directory, got {path!r}")
    return dict(value)
