"""Automatic partial sync, run by the agent of the ACTIVE host: every SYNC_INTERVAL it looks at
the size and mtime of every SYNC_FILES path and sends only what changed (the first time, and
after each failure, whatever differs from the standby). Failures are retried with backoff,
journaled, and run SYNC_FAILURE_SCRIPTS; after SYNC_FAILURE_LIMIT in a row automatic sync pauses
until an operator runs `failover sync --full`. It never starts a service anywhere.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable

from failover.config import Config
from failover.machine import NodeState, Role, State
from failover.scripts import ScriptsResult, run_scripts
from failover.syncfiles import SyncError, inventory
from failover.syncpeer import Peer, read_result, wait_time, write_result


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
        self.snapshot: dict[str, tuple[int, int, int, int, int]] | None = None  # None: compare with the peer

    def run(self, stop: threading.Event) -> None:
        delay = 0.0
        while not stop.wait(delay):
            delay = self.config.SYNC_INTERVAL
            if self.node().state is not State.ACTIVE:
                self.snapshot = None  # a host that becomes ACTIVE compares everything first
                continue
            status = read_result(self.config)
            if status.get("paused"):
                continue
            failures = int(status.get("failures") or 0)
            try:
                sent = self.once()
            except (SyncError, OSError) as e:
                failures += 1
                delay = wait_time(failures, self.config.SYNC_INTERVAL)
                self.failed(str(e), failures)
                continue
            if sent or failures:
                self.log.info("sync: %s to the standby", ", ".join(f"/{r}" for r in sent) or "nothing to send")
                self.note("sync", f"sent {len(sent)}: " + ", ".join(f"/{r}" for r in sent[:20]))
            write_result(self.config, auto_ok=True, auto_sent=len(sent), failures=0, last_error=None)

    def metadata(self) -> dict[str, tuple[int, int, int, int, int]]:
        found = inventory(self.config.sync_root(self.role), self.config.sync_entries(), for_standby=False, hashed=False)
        return {rel: (i.size, i.mtime_ns, i.mode, i.uid, i.gid) for rel, i in found.items()}

    def once(self) -> list[str]:
        current = self.metadata()
        if self.snapshot is not None:
            changed = sorted(rel for rel, meta in current.items() if self.snapshot.get(rel) != meta)
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
