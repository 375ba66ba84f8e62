"""A log that says what happened without letting a flood write one line per event.

`RateLimitedLog.log(kind, level, msg, *args)` writes at most `burst` lines at once and then one
line per `interval` seconds for each kind (for example "refused", "cut", "bad message", "accept
error"): a token bucket per kind. The lines it holds back are counted, and the next line of that
kind ends with "(N more in the last T s)", T being the time since the kind's previous line.
`flush()` writes that count for a kind whose flood stopped, so no suppressed event goes
unmentioned for long: call it from any loop that wakes up regularly. Times come from a monotonic
clock (a wall clock step must neither silence a kind nor let a flood through), and every method
may be called from any thread.

A small `burst` keeps a few distinct events in a row (two peers with a wrong secret) each on its
own line, and still makes a sustained flood cost one line per interval.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass


@dataclass
class _Kind:
    tokens: float  # lines that may be written now (at most burst)
    updated: float  # when tokens was last refilled (monotonic)
    last: float  # when the last line of this kind was written (monotonic)
    suppressed: int = 0
    level: int = logging.INFO  # of the last suppressed line: its summary keeps that severity


class RateLimitedLog:
    """At most `burst` lines, then one per `interval` seconds, per kind; counts what it held back."""

    def __init__(
        self,
        logger: logging.Logger,
        interval: float = 1.0,
        burst: int = 1,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if interval <= 0 or burst < 1:
            raise ValueError("interval must be > 0 and burst >= 1")
        self.logger, self.interval, self.burst, self._clock = logger, interval, burst, clock
        self._kinds: dict[str, _Kind] = {}
        self._lock = threading.Lock()

    def _take(self, kind: str, now: float) -> _Kind | None:
        """Under the lock: the kind's state if a line may be written now (a token consumed)."""
        state = self._kinds.get(kind)
        if state is None:
            state = self._kinds[kind] = _Kind(float(self.burst), now, now)
        state.tokens = min(float(self.burst), state.tokens + (now - state.updated) / self.interval)
        state.updated = now
        if state.tokens < 1:
            return None
        state.tokens -= 1
        return state

    def log(self, kind: str, level: int, msg: str, *args: object) -> bool:
        """Write `msg % args` unless this kind used up its lines; True when it was written."""
        now = self._clock()
        with self._lock:
            state = self._take(kind, now)
            if state is None:
                held = self._kinds[kind]
                held.suppressed += 1
                held.level = level
                return False
            suppressed, since = state.suppressed, now - state.last
            state.suppressed, state.last = 0, now
        # written outside the lock: a slow handler (a full disk) must not stall the other threads
        if suppressed:
            # with no args logging leaves msg alone; with ours appended it formats it, so escape it
            text = msg if args else msg.replace("%", "%%")
            self.logger.log(level, text + " (%d more in the last %.1f s)", *args, suppressed, since)
        else:
            self.logger.log(level, msg, *args)
        return True

    def flush(self) -> int:
        """Write the count of every kind that held lines back and may write a line again (its
        flood stopped before another line of that kind came); the number of lines written."""
        now = self._clock()
        due: list[tuple[str, int, int, float]] = []
        with self._lock:
            for kind, held in self._kinds.items():
                if held.suppressed and self._take(kind, now) is not None:
                    due.append((kind, held.level, held.suppressed, now - held.last))
                    held.suppressed, held.last = 0, now
        for kind, level, count, since in due:
            self.logger.log(level, "%s: %d more in the last %.1f s", kind, count, since)
        return len(due)

    def pending(self) -> dict[str, int]:
        """The count held back so far for each kind (not yet written by a line)."""
        with self._lock:
            return {kind: state.suppressed for kind, state in self._kinds.items() if state.suppressed}
