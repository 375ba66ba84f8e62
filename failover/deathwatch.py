"""Learn of the death of this host's service process at once, not at the next check.

lhcd checks its service every PROBE_INTERVAL; a kill -9 between two checks would wait for the
next one. `DeathWatch.wait()` sleeps until the interval ends OR the process named by
SERVICE_PIDFILE dies, whichever comes first, through a pidfd (Linux 5.3 and later: the kernel
makes it readable when the process exits, child or not, so no polling). Where there is no
pidfd (an older kernel, no pid file, a pid that cannot be opened) it only sleeps, as before.
A death is reported once per pid: a dead process that nobody reaps stays readable, and the
watch must not spin on it.
"""

from __future__ import annotations

import contextlib
import os
import select
import threading


class DeathWatch:
    """One service process watched at a time; not thread-safe (the watch thread owns it)."""

    def __init__(self) -> None:
        self._pid: int | None = None
        self._fd: int | None = None
        self._reported = False

    def _follow(self, pid: int | None) -> None:
        if pid == self._pid:
            return
        self.close()
        self._pid, self._reported = pid, False
        if pid is not None and pid > 1:
            try:
                self._fd = os.pidfd_open(pid)
            except ProcessLookupError:
                self._reported = True  # already gone: the check that follows reports it
            except (OSError, AttributeError):
                self._fd = None  # no pidfd here: sleep only

    def wait(self, pid: int | None, timeout: float, stop: threading.Event) -> bool:
        """Wait `timeout` seconds, or less if `pid` dies (True) or `stop` is set when only sleeping."""
        self._follow(pid)
        if self._fd is None or self._reported:
            stop.wait(timeout)
            return False
        readable, _, _ = select.select([self._fd], [], [], timeout)
        if readable:
            self._reported = True
            return True
        return False

    def close(self) -> None:
        if self._fd is not None:
            with contextlib.suppress(OSError):
                os.close(self._fd)
        self._fd = None
