"""Automatic partial sync, run by the agent of the ACTIVE host: every SYNC_INTERVAL it looks at
the size and mtime of every SYNC_FILES path and sends only what changed (the first time, and
after each failure, whatever differs from the standby). Failures are retried with backoff,
journaled, and run SYNC_FAILURE_SCRIPTS; after SYNC_FAILURE_LIMIT in a row automatic sync pauses
until an operator runs `failover sync --full`. It never starts a service anywhere.

The thread never ends by itself: a turn that raises anything unexpected (a bug, a damaged
file) is logged with its traceback (once while the same error repeats), counted and reported as
a sync failure, and the loop goes on after the same backoff.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable

from failover.config import Config
from failover.machine import NodeState, Role, State
from failover.scripts import ScriptsResult, run_scripts
from failover.sync.files import SYNCED_KINDS, FileInfo, SyncError, inventory, mode_of
from failover.sync.peer import Peer, failure_count, read_result, wait_time, write_result


class AutoSync:
    def __init__(
        self,
        config: Config,
        role: Role,
        node: Callable[[], NodeState],
        log: logging.Logger,
        note: Callable[[str, str], None],
        env: Callable[[str], dict[str, str]],
        report: Callable[[str, ScriptsResult], None],
    ) -> None:
        self.config, self.role, self.node, self.log = config, role, node, log
        self.note, self.env, self.report = note, env, report
        self.snapshot: dict[str, FileInfo] | None = None  # None: compare with the peer
        self.failures = 0  # in a row, as last read from or written to the sync result
        self.unexpected: str | None = None  # the unexpected error whose traceback was logged last

    def run(self, stop: threading.Event) -> None:
        delay = 0.0
        while not stop.wait(delay):
            try:
                delay = self.turn()
            except Exception as e:  # the guard: whatever one turn raises, the thread goes on
                delay = self.survive(e)

    def turn(self) -> float:
        """One look, and one sync if something changed; the delay before the next turn."""
        interval = self.config.SYNC_INTERVAL
        if self.node().state is not State.ACTIVE:
            self.snapshot = None  # a host that becomes ACTIVE compares everything first
            return interval
        status = read_result(self.config)
        if status.get("paused"):
            return interval
        self.failures = failure_count(status)
        try:
            sent = self.once()
        except (SyncError, OSError) as e:
            return self.count_failure(str(e))
        self.unexpected = None
        if sent or self.failures:
            self.log.info("sync: %s to the standby", ", ".join(f"/{r}" for r in sent) or "nothing to send")
            self.note("sync", f"sent {len(sent)}: " + ", ".join(f"/{r}" for r in sent[:20]))
        write_result(self.config, auto_ok=True, auto_sent=len(sent), failures=0, last_error=None)
        self.failures = 0
        return interval

    def survive(self, error: Exception) -> float:
        """An unexpected exception in a turn: logged (its traceback once while it repeats),
        counted and reported as a sync failure; the backoff before the next turn."""
        why = f"unexpected {type(error).__name__}: {error}"
        if why != self.unexpected:
            self.log.error("sync: %s", why, exc_info=error)
            self.unexpected = why
        try:
            return self.count_failure(why)
        except Exception as e:  # reporting it failed as well (STATE_DIR full?): still go on
            self.log.error("sync: reporting a sync failure failed: %s: %s", type(e).__name__, e)
            return wait_time(self.failures, self.config.SYNC_INTERVAL)

    def count_failure(self, why: str) -> float:
        self.failures += 1
        self.failed(why, self.failures)
        return wait_time(self.failures, self.config.SYNC_INTERVAL)

    def metadata(self) -> dict[str, FileInfo]:
        return inventory(self.config.sync_root(self.role), self.config.sync_entries(), for_standby=False, hashed=False)

    def sendable(self, rel: str, info: FileInfo) -> bool:
        """Only 'sync' paths are sent: a changed 'verify' file (a secret) never leaves this host."""
        return info.kind in SYNCED_KINDS and mode_of(self.config.sync_entries(), rel) == "sync"

    def once(self) -> list[str]:
        current = self.metadata()
        if self.snapshot is not None:
            changed = sorted(
                rel for rel, info in current.items() if self.snapshot.get(rel) != info and self.sendable(rel, info)
            )
            if not changed:
                return []
        with Peer(self.config, self.role) as peer:
            if self.snapshot is None:
                changed = peer.plan(full=False).send
            for line in peer.send(changed):
                self.log.info("sync: %s", line)
        self.snapshot = current
        return changed

    def failed(self, why: str, failures: int) -> None:
        limit = self.config.SYNC_FAILURE_LIMIT
        paused = failures >= limit
        message = f"sync to the standby failed ({failures}/{limit} in a row): {why}"
        if paused:
            message += "; automatic sync PAUSED until `failover sync --full`"
        self.log.error("%s", message)
        self.note("sync-failure", message)
        self.snapshot = None  # compare everything again next time: nothing half-sent is trusted
        write_result(self.config, auto_ok=False, failures=failures, last_error=why, paused=paused)
        if self.config.SYNC_FAILURE_SCRIPTS:
            env = dict(self.env("sync_failure"), FAILOVER_REASON=message)
            result = run_scripts(
                self.config.SYNC_FAILURE_SCRIPTS, self.config.SCRIPT_TIMEOUT, self.config.base_dir, env
            )
            self.report("sync_failure", result)
