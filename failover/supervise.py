"""One guard for every long-running thread of a daemon: none dies silently, none half-alive.

Python ends a thread on an uncaught exception and lets the process run on: a control server
whose accept loop raised, or an lhcd whose heartbeat thread died, still holds its pid lock (so
nothing restarts it) while it no longer does its job. `Supervisor.start()` runs a thread's
function in a loop instead: an unexpected exception is logged with its traceback (the same
error at most once per LOG_EVERY seconds, so a tight failure does not flood the log), counted,
and the function is called again after a backoff that doubles with each recent failure. A
*vital* thread (heartbeats, probes, the service watch, the control server) that fails
VITAL_FAILURES times within FAILURE_WINDOW cannot be trusted to recover: the supervisor sets
the daemon's stop event and records why, and the daemon exits non-zero (`check()` raises
DaemonFailed) so that its own supervisor (start.sh, systemd) starts a fresh process.
A function that returns while the daemon still runs counts as a failure too: every supervised
function is a loop that ends only when `stop` is set.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from collections.abc import Callable

from failover.errors import FailoverError

RESTART_BACKOFF = 0.1  # seconds before the first restart; doubled per failure within the window
BACKOFF_MAX = 5.0
VITAL_FAILURES = 5  # this many failures of a vital thread within FAILURE_WINDOW end the daemon
FAILURE_WINDOW = 60.0
LOG_EVERY = 10.0  # the same error of the same thread is logged with its traceback at most this often

ThreadFunction = Callable[[threading.Event], None]


class DaemonFailed(FailoverError):
    """A vital thread kept failing or the decision loop raised: the daemon must exit non-zero."""


class Supervisor:
    """Runs and restarts a daemon's threads; the first fatal failure stops the whole daemon."""

    def __init__(
        self,
        stop: threading.Event,
        log: logging.Logger,
        *,
        backoff: float = RESTART_BACKOFF,
        backoff_max: float = BACKOFF_MAX,
        vital_failures: int = VITAL_FAILURES,
        window: float = FAILURE_WINDOW,
        log_every: float = LOG_EVERY,
    ) -> None:
        self.stop, self.log = stop, log
        self.backoff, self.backoff_max = backoff, backoff_max
        self.vital_failures, self.window, self.log_every = vital_failures, window, log_every
        self.failure: str | None = None  # why the daemon must exit (the first fatal failure)
        self.counts: dict[str, int] = {}  # failures per thread since start, for status and tests
        self._lock = threading.Lock()
        self._logged: dict[tuple[str, str], tuple[float, int]] = {}  # error -> (when logged, repeats since)

    def start(self, name: str, target: ThreadFunction, vital: bool) -> threading.Thread:
        """Run `target(stop)` in a daemon thread named `name`, restarted whenever it fails."""
        with self._lock:
            self.counts.setdefault(name, 0)
        thread = threading.Thread(target=self._guard, args=(name, target, vital), name=name, daemon=True)
        thread.start()
        return thread

    def watch(self, name: str, thread: threading.Thread) -> None:
        """A thread started by someone else (it cannot be restarted from here): its end while the
        daemon runs is fatal."""

        def wait(stop: threading.Event) -> None:
            while thread.is_alive() and not stop.is_set():
                thread.join(0.5)
            if not stop.is_set():
                self.fail(f"the {name} thread ended while the daemon runs")

        threading.Thread(target=wait, args=(self.stop,), name=f"watch-{name}", daemon=True).start()

    def fail(self, reason: str) -> None:
        """Stop the daemon because of `reason` (only the first reason is kept)."""
        with self._lock:
            first = self.failure is None
            if first:
                self.failure = reason
        if first:
            self.log.error("the daemon exits: %s", reason)
        self.stop.set()

    def check(self) -> None:
        """Raise DaemonFailed if a fatal failure stopped the daemon."""
        if self.failure is not None:
            raise DaemonFailed(self.failure)

    # ------------------------------------------------------------------ inside the threads

    def _guard(self, name: str, target: ThreadFunction, vital: bool) -> None:
        recent: deque[float] = deque()  # monotonic times of this thread's failures within the window
        while not self.stop.is_set():
            error: BaseException | None = None
            try:
                target(self.stop)
            except Exception as e:
                error = e
            except BaseException as e:  # SystemExit in a thread: it would end silently
                self.fail(f"thread {name} raised {type(e).__name__}: {e}")
                raise
            if error is None and self.stop.is_set():
                return
            problem = f"{type(error).__name__}: {error}" if error is not None else "returned while the daemon runs"
            now = time.monotonic()
            recent.append(now)
            while recent and now - recent[0] > self.window:
                recent.popleft()
            with self._lock:
                self.counts[name] = self.counts.get(name, 0) + 1
                total = self.counts[name]
            fatal = vital and len(recent) >= self.vital_failures
            delay = min(self.backoff * 2 ** (len(recent) - 1), self.backoff_max)
            then = "giving up" if fatal else f"restarting it in {delay:.1f} s"
            self._log_failure(name, problem, error, f"thread {name} failed ({total} so far): {problem}; {then}")
            if fatal:
                self.fail(f"vital thread {name} failed {len(recent)} times within {self.window:g} s; last: {problem}")
                return
            self.stop.wait(delay)

    def _log_failure(self, name: str, problem: str, error: BaseException | None, message: str) -> None:
        """Log with the traceback, unless the same error of this thread was logged less than
        log_every seconds ago: then only count it, and say how many were left out next time."""
        key = (name, problem[:300])
        now = time.monotonic()
        with self._lock:
            logged = self._logged.get(key)
            if logged is not None and now - logged[0] < self.log_every:
                self._logged[key] = (logged[0], logged[1] + 1)
                return
            repeats = logged[1] if logged is not None else 0
            self._logged[key] = (now, 0)
        if repeats:
            message += f" (the same failure {repeats} more times since it was last logged)"
        self.log.error("%s", message, exc_info=error)
