"""The loop shared by lhcd and rhcd: events in, machine.step, persist, then act.

Input threads (probes, heartbeats, the local socket) only `submit()` events. One loop thread
takes them in order, asks the machine, persists and journals every transition, and only then
executes the actions. An action's result is the next event. Nothing here decides anything:
the decisions are all in failover.machine.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import queue
import threading
import time
from collections.abc import Callable
from typing import Any

from failover import service
from failover.channel import LocalServer
from failover.config import Config
from failover.daemon import socket_path
from failover.machine import (
    Action,
    Alert,
    CheckService,
    ClockJump,
    Event,
    NodeState,
    Role,
    RunScripts,
    ScriptKind,
    ScriptsFinished,
    ServiceChecked,
    Started,
    Tick,
    Transition,
    initial_state,
    step,
)
from failover.probes import tcp_probe
from failover.scripts import run_scripts
from failover.state import StateStore, atomic_write, wall_clock


def status_path(config: Config, name: str) -> str:
    return os.path.join(config.STATE_DIR, f"{name}.status.json")


class Agent:
    """Subclasses add input threads and execute their own action types."""

    TICK = 1.0  # seconds without an event before a Tick is fed
    JUMP = 2.0  # a wait that overran its timeout by this much means the process was frozen
    STATUS_EVERY = 1.0  # seconds between status file refreshes when nothing changes

    def __init__(self, config: Config, role: Role, name: str, log: logging.Logger) -> None:
        self.config, self.role, self.name, self.log = config, role, name, log
        self.policy = config.policy()
        self.secret = config.read_secret()  # read once: both hosts change it together, then restart
        self.store = StateStore(config.STATE_DIR, role, config.host_of(role))
        self._events: queue.Queue[tuple[Event, threading.Event | None]] = queue.Queue()
        self.observations: dict[str, Any] = {}  # what the input threads saw last, for status
        self._status_written = 0.0
        loaded = self.store.load()
        if loaded is None:
            self.node = initial_state(role)
            first = Transition(self.node.state, self.node.state, 0, 0, self.node.reason, "Started")
            self.store.save(self.node, first)
        else:
            self.node = loaded
        log.info("state %s term %d (%s): %s", self.node.state, self.node.term, self.node.group, self.node.reason)

    # ------------------------------------------------------------------ inputs

    def submit(self, event: Event, done: threading.Event | None = None) -> None:
        """Queue an event (any thread). `done` is set once it has been processed."""
        self._events.put((event, done))

    def submit_and_wait(self, event: Event, timeout: float) -> NodeState:
        done = threading.Event()
        self.submit(event, done)
        done.wait(timeout)
        return self.node

    def probe_witness(self) -> bool | None:
        """Whether the WITNESS accepts a connection (None: no witness configured)."""
        address = self.config.witness_address()
        if address is None:
            return None
        ok = tcp_probe(*address, self.config.CONTROL_TIMEOUT).ok
        self.observe(witness_ok=ok)
        return ok

    def observe(self, **values: Any) -> None:
        self.observations.update(values)

    # ------------------------------------------------------------------ the loop

    def serve(self, stop: threading.Event, inputs: list[Callable[[threading.Event], None]]) -> None:
        """Listen on the local socket, start the input threads, run the loop until `stop`."""
        local = LocalServer(socket_path(self.config, self.name), self.on_local_request)
        local.start()
        for target in inputs:
            threading.Thread(target=target, args=(stop,), name=target.__name__, daemon=True).start()
        try:
            self.run(stop)
        finally:
            local.close()

    def on_local_request(self, request: dict[str, Any]) -> dict[str, Any]:
        """A request from this host's control server or CLI (subclasses serve theirs)."""
        return {"error": f"{self.name} does not serve {str(request.get('type'))[:40]!r}"}

    def run(self, stop: threading.Event) -> None:
        self.process(Started(time.monotonic()))
        while not stop.is_set():
            before = time.monotonic()
            try:
                event, done = self._events.get(timeout=self.TICK)
            except queue.Empty:
                event, done = Tick(time.monotonic()), None
            waited = time.monotonic() - before
            if stop.is_set():
                # Told to stop while waiting: decide nothing more. The input threads have already
                # stopped, so what they no longer report (contact, health) must not look like news.
                if done is not None:
                    done.set()
                break
            if waited > self.TICK + self.JUMP:  # the monotonic clock jumped under us: we were frozen
                self.log.warning("woke up: a wait of %.2f s took %.2f s", self.TICK, waited)
                self.process(ClockJump(time.monotonic(), waited - self.TICK))
            try:
                self.process(event)
            finally:
                if done is not None:
                    done.set()
            self.publish()

    def process(self, event: Event) -> None:
        pending = [event]
        while pending:
            current = pending.pop(0)
            result = step(self.policy, self.node, current)
            if result.transition is not None:
                self.store.save(result.state, result.transition)  # persisted before any action runs
                t = result.transition
                term = f"term {t.from_term}->{t.term}" if t.term != t.from_term else f"term {t.term}"
                self.log.info("%s -> %s (%s): %s", t.from_state, t.to_state, term, t.reason)
            self.node = result.state
            if result.transition is not None:
                self.publish(force=True)
            for action in result.actions:
                follow = self.execute(action)
                if follow is not None:
                    pending.append(follow)

    # ------------------------------------------------------------------ actions

    def execute(self, action: Action) -> Event | None:
        if isinstance(action, RunScripts):
            return self.run_scripts(action.kind)
        if isinstance(action, CheckService):
            return self.check_service(action.expect_up)
        if isinstance(action, Alert):
            self.log.error("ALERT: %s", action.message)
            self.observe(last_alert=action.message, last_alert_time=wall_clock())
            return None
        raise NotImplementedError(f"{self.name} cannot execute {action!r}")

    def script_env(self, kind: str) -> dict[str, str]:
        peer = Role.SLAVE if self.role is Role.MASTER else Role.MASTER
        return {
            "FAILOVER_EVENT": kind,
            "FAILOVER_ROLE": self.role.value,
            "FAILOVER_HOST": self.config.host_of(self.role),
            "FAILOVER_PEER": self.config.host_of(peer),
            "FAILOVER_TERM": str(self.node.term),
            "FAILOVER_STATE": self.node.state.value,
            "FAILOVER_REASON": self.node.reason,
        }

    def run_scripts(self, kind: ScriptKind) -> Event:
        commands = self.config.STARTUP_SCRIPTS if kind is ScriptKind.STARTUP else self.config.SHUTDOWN_SCRIPTS
        self.log.info("running %s scripts: %s", kind, "; ".join(commands))
        result = run_scripts(commands, self.config.SCRIPT_TIMEOUT, self.config.base_dir, self.script_env(kind.value))
        for r in result.results:
            level = logging.INFO if r.ok else logging.ERROR
            self.log.log(level, "%s script %s", kind, r.summary())
            if not r.ok and r.output.strip():
                self.log.log(level, "%s script output:\n%s", kind, r.output.rstrip()[-2000:])
        return ScriptsFinished(time.monotonic(), kind, result.ok, result.summary())

    def check_service(self, expect_up: bool) -> Event:
        met, detail = service.wait_for(self.config, self.role, expect_up, self.config.SERVICE_CHECK_TIMEOUT)
        up = met if expect_up else not met
        self.log.info("service check (expecting %s): %s", "up" if expect_up else "down", detail)
        return ServiceChecked(time.monotonic(), up, detail)

    # ------------------------------------------------------------------ status

    def publish(self, force: bool = False) -> None:
        """Refresh the status file that the control server and `failover status` read."""
        now = time.monotonic()
        if not force and now - self._status_written < self.STATUS_EVERY:
            return
        self._status_written = now
        node = dataclasses.asdict(self.node)
        status = {
            "daemon": self.name,
            "pid": os.getpid(),
            "updated": wall_clock(),
            "state": self.node.state.value,
            "group": self.node.group,
            "term": self.node.term,
            "reason": self.node.reason,
            "failures": node["failures"],
            "observations": self.observations,
        }
        atomic_write(status_path(self.config, self.name), json.dumps(status, default=str).encode(), durable=False)
