"""A daemon that failed at run time starts again as a fresh process, unless something else does.

A vital thread that keeps failing, or a decision loop that raises, ends the daemon (never a
half-alive one), and a supervisor must start it again: failover's safety needs lhcd and rhcd
running. Under systemd (INVOCATION_ID or NOTIFY_SOCKET set) the unit's Restart= does that and
this module stays out of the way. Otherwise (`start.sh`, `failover start`) the daemon is its own
supervisor of last resort: after a backoff (1, 2, 4 ... 30 s) it replaces itself with a fresh
copy of the same command line (`os.execv`: same pid, so `failover stop` and the pid lock keep
working), at most FAILOVER_RESPAWN_LIMIT times (5) within WINDOW; past that it exits and says
so. A bad config or state file is never respawned: the operator must fix it first. The times of
earlier respawns travel in the environment (monotonic readings: the same boot, the same clock).
"""

from __future__ import annotations

import logging
import os
import sys
import threading
import time
from collections.abc import Callable

TIMES_ENV = "FAILOVER_RESPAWNS"
LIMIT_ENV = "FAILOVER_RESPAWN_LIMIT"
WINDOW = 600.0  # seconds over which respawns are counted
MAX_BACKOFF = 30.0


def supervised_elsewhere() -> bool:
    """Whether a service manager restarts this daemon (systemd sets these for its units)."""
    return "INVOCATION_ID" in os.environ or "NOTIFY_SOCKET" in os.environ


def _earlier(now: float) -> list[float]:
    times = []
    for text in os.environ.get(TIMES_ENV, "").split(","):
        try:
            value = float(text)
        except ValueError:
            continue
        if 0 <= now - value <= WINDOW:
            times.append(value)
    return times


def _limit() -> int:
    try:
        return max(0, int(os.environ.get(LIMIT_ENV, "5")))
    except ValueError:
        return 5


def plan(log: logging.Logger, name: str) -> float | None:
    """The backoff before respawning, or None when this daemon must exit instead (and why is logged)."""
    if supervised_elsewhere():
        log.error("%s exits; its service manager restarts it", name)
        return None
    earlier, limit = _earlier(time.monotonic()), _limit()
    if len(earlier) >= limit:
        log.error("%s failed after %d respawns within %g s: giving up; start it again by hand", name, limit, WINDOW)
        return None
    delay = min(float(2 ** len(earlier)), MAX_BACKOFF)
    log.error("%s respawns in %g s (%d of %d within %g s)", name, delay, len(earlier) + 1, limit, WINDOW)
    return delay


def respawn(stop: threading.Event, delay: float, release: Callable[[], None]) -> None:
    """Wait `delay` (a stop signal meanwhile cancels it), then become a fresh copy of this
    command. `release` is called just before (the pid lock: held until then, so that
    `failover stop` still finds this daemon while it waits). Returns only if cancelled."""
    if stop.wait(delay):
        return
    release()
    now = time.monotonic()
    os.environ[TIMES_ENV] = ",".join(str(t) for t in [*_earlier(now), now])
    logging.shutdown()
    os.execv(sys.executable, [sys.executable, *sys.orig_argv[1:]])
