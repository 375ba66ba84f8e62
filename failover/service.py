"""This host's own service: is it healthy, and wait until it is up or verified down.

"Up" means a POP3 exchange succeeds (and, on the master with SERVICE_PIDFILE, its process
runs). "Verified down" is stronger than "not up": the POP3 port refuses connections and the
process is gone. A service that hangs (a frozen process still holding its port) is neither, so
a master with a hung service never acknowledges a shutdown it cannot prove.
"""

from __future__ import annotations

import os
import time

from failover.config import Config
from failover.machine import Role
from failover.probes import pop3_probe, process_alive

POLL = 0.05  # seconds between checks while waiting


def _pidfile(config: Config, role: Role) -> str | None:
    return config.SERVICE_PIDFILE if role is Role.MASTER else None


def stopped_cleanly(config: Config, role: Role) -> bool:
    """A service that exits cleanly removes its pid file; a crashed or killed one leaves it.
    Without SERVICE_PIDFILE this cannot be told, and a stop counts as a failure."""
    pidfile = _pidfile(config, role)
    return bool(pidfile) and not os.path.exists(pidfile)  # type: ignore[arg-type]


def pid(config: Config, role: Role) -> int | None:
    """The pid in this role's SERVICE_PIDFILE, if there is one and it can be read."""
    pidfile = _pidfile(config, role)
    try:
        with open(pidfile) as f:  # type: ignore[arg-type]
            return int(f.read().split()[0])
    except (TypeError, OSError, ValueError, IndexError):
        return None


def process_runs(config: Config, role: Role) -> bool:
    pidfile = _pidfile(config, role)
    return bool(pidfile) and process_alive(pidfile)[0]  # type: ignore[arg-type]


def health(config: Config, role: Role) -> tuple[bool, str]:
    """(healthy, detail) of this role's own service."""
    pidfile = _pidfile(config, role)
    if pidfile:
        alive, detail = process_alive(pidfile)
        if not alive:
            return False, detail
    host, port = config.pop3_of(role)
    outcome = pop3_probe(host, port, config.REMOTE_POP3_TIMEOUT, config.POP3_PROBE_USER, config.POP3_PROBE_PASS)
    return outcome.ok, outcome.detail


def _verified_down(config: Config, role: Role) -> tuple[bool, str]:
    host, port = config.pop3_of(role)
    outcome = pop3_probe(host, port, min(config.REMOTE_POP3_TIMEOUT, 2.0))
    if not outcome.refused:
        return False, f"POP3 still {'answers' if outcome.ok else 'holds its port'} ({outcome.detail})"
    pidfile = _pidfile(config, role)
    if pidfile:
        alive, detail = process_alive(pidfile)
        if alive:
            return False, f"port closed but {detail}"
        return True, f"{outcome.detail}; {detail}"
    return True, outcome.detail


def wait_for(config: Config, role: Role, expect_up: bool, timeout: float) -> tuple[bool, str]:
    """Check until the service is up (expect_up) or verified down, or `timeout` passes.
    Returns (expectation met, detail of the last check)."""
    end = time.monotonic() + timeout
    while True:
        met, detail = health(config, role) if expect_up else _verified_down(config, role)
        if met or time.monotonic() >= end:
            return met, detail
        time.sleep(POLL)
