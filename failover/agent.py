"""The loop shared by lhcd and rhcd: events in, machine.step, persist, then act.

Input threads (probes, heartbeats, the local socket) only `submit()` events. One loop thread
takes them in order, asks the machine, persists and journals every transition, and only then
executes the actions. An action's result is the next event. Nothing here decides anything:
the decisions are all in failover.machine.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import logging
import os
import queue
import threading
import time
from collections.abc import Callable
from typing import Any

from failover import fencing, service, watchdog
from failover.channel import LocalServer
from failover.config import Config
from failover.daemon import notify_ready, socket_path
from failover.loadbalancer import LoadBalancerError
from failover.machine import (
    Action,
    Alert,
    Answer,
    CheckService,
    ClockJump,
    Event,
    HoldRequested,
    LbEnable,
    LbFence,
    LoadBalancerDone,
    NodeState,
    Notify,
    OperatorRequest,
    ReleaseRequested,
    Role,
    RunScripts,
    ScriptKind,
    ScriptsFinished,
    ServiceChecked,
    Started,
    State,
    SwitchbackStart,
    SwitchbackStop,
    SwitchoverRequested,
    Tick,
    Transition,
    initial_state,
    step,
)
from failover.probes import tcp_probe
from failover.protocol import Message, OperatorAnswer, OperatorCommand, ProtocolError, Refused, parse_local_request
from failover.scripts import ScriptsResult, run_scripts
from failover.state import StateStore, atomic_write, wall_clock
from failover.supervise import DaemonFailed, Supervisor

OPERATOR_EVENTS: dict[str, type[OperatorRequest]] = {
    "hold": HoldRequested,
    "release": ReleaseRequested,
    "switchover": SwitchoverRequested,
    "switchback-stop": SwitchbackStop,
    "switchback-start": SwitchbackStart,
}


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
        self._events: queue.Queue[tuple[Event, threading.Event | None, list[Answer] | None]] = queue.Queue()
        self._answers: list[Answer] | None = None  # where Answer actions go while an operator's event runs
        self._notices: queue.Queue[tuple[Transition, NodeState]] = queue.Queue()
        self.last_transition: Transition | None = None
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

    def submit(self, event: Event, done: threading.Event | None = None, answers: list[Answer] | None = None) -> None:
        """Queue an event (any thread). `done` is set once it has been processed; the machine's
        Answer actions for it are appended to `answers`."""
        self._events.put((event, done, answers))

    def submit_and_wait(self, event: Event, timeout: float) -> NodeState:
        done = threading.Event()
        self.submit(event, done)
        done.wait(timeout)
        return self.node

    def operator_request(self, command: OperatorCommand) -> Message:
        """An operator's command (forwarded by the control server): the machine decides, the
        answer says what it did or why it refused."""
        kind = OPERATOR_EVENTS[command.action]  # the parser accepts only these actions
        texts = {"by": command.by, "reason": command.reason, "since": command.since}
        if kind is SwitchbackStart:
            event: Event = SwitchbackStart(
                time.monotonic(),
                **texts,
                peer_term=command.peer_term,
                peer_state=State(command.peer_state),
                peer_service_down=command.peer_service_down,
            )
        else:
            event = kind(time.monotonic(), **texts)
        self.log.warning("operator %s: %s by %s (%s)", self.name, command.action, command.by, command.reason)
        done, answers = threading.Event(), list[Answer]()
        self.submit(event, done, answers)
        if not done.wait(self.config.SHUTDOWN_ACK_TIMEOUT):
            return Refused(f"{self.name} is busy: the request was queued but not decided yet")
        answer = answers[0] if answers else Answer(False, "no answer from the state machine")
        return OperatorAnswer(answer.ok, answer.message, self.node.state.value, self.node.term)

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

    def live_observations(self, now: float) -> dict[str, Any]:
        """What status shows that changes by itself (the stream's health, the lease left)."""
        return {}

    # ------------------------------------------------------------------ the loop

    def serve(self, stop: threading.Event, inputs: list[Callable[[threading.Event], None]]) -> None:
        """Listen on the local socket, start the input threads, run the loop until `stop`.

        Every thread runs under one Supervisor: a failing one is logged and restarted. The
        `inputs` (probes, heartbeats, the service watch) are vital: one that keeps failing stops
        the daemon, and so does the local socket's thread ending or the loop raising; this
        method then raises DaemonFailed, so the process exits non-zero and is restarted whole.
        The notification and sync threads are not vital: they are restarted as long as it takes."""
        guard = Supervisor(stop, self.log)
        local = LocalServer(socket_path(self.config, self.name), self.on_local_request)
        guard.watch("local-server", local.start())
        extra: list[Callable[[threading.Event], None]] = [self.run_notices]
        if self.config.SYNC_FILES:
            from failover.sync.auto import AutoSync  # only hosts that sync files need SSH and SFTP

            syncer = AutoSync(
                self.config,
                self.role,
                lambda: self.node,
                self.log,
                lambda event, reason: self.store.note(self.node, event, reason),
                self.script_env,
                self.report_scripts,
            )
            extra.append(syncer.run)
        for target in inputs:
            guard.start(target.__name__, target, vital=True)
        for target in extra:
            guard.start(target.__name__, target, vital=False)
        try:
            self.run(stop)
        except Exception as e:
            guard.fail(f"the decision loop raised {type(e).__name__}: {e}")
            raise DaemonFailed(guard.failure) from e
        finally:
            stop.set()  # before closing the local socket: its thread ending is then no failure
            local.close()
        guard.check()

    def on_local_request(self, request: dict[str, Any]) -> dict[str, Any]:
        """A request from this host's control server or CLI: parsed into its typed message first
        (anything malformed is refused and never reaches the agent), then served."""
        try:
            message, peer = parse_local_request(request, self.name)
        except ProtocolError as e:
            self.log.warning("local request refused: %s", e)
            return Refused(f"refused: {e}").body()
        return self.serve_local(message, peer).body()

    def serve_local(self, message: Message, peer: str) -> Message:
        """Serve one parsed local request (subclasses add theirs, then call this)."""
        if isinstance(message, OperatorCommand):
            return self.operator_request(message)
        return Refused(f"{self.name} does not serve {message.TYPE}")

    def run(self, stop: threading.Event) -> None:
        # Ready now: the state is loaded (in __init__), the local socket listens and the loop
        # takes its first event. Not after Started is handled: in STOPPING that reruns the
        # shutdown scripts, which may take SCRIPT_TIMEOUT each, and a start must not wait for them.
        notify_ready()
        self.process(Started(time.monotonic()))
        last_tick = last_event = time.monotonic()
        while not stop.is_set():
            watchdog.kick_if_due()  # under systemd: only this loop's passes keep the daemon alive
            before = time.monotonic()
            # idle for TICK since the last event: a Tick; while events stream in, the Tick rides
            # along with one of them (below), so a stream of reports wakes this loop once each
            timeout = max(0.0, min(self.TICK - (before - last_event), self._until_due(before)))
            try:
                event, done, answers = self._events.get(timeout=timeout)
            except queue.Empty:
                event, done, answers = Tick(time.monotonic()), None, None
            waited = time.monotonic() - before
            if stop.is_set():
                # Told to stop while waiting: decide nothing more. The input threads have already
                # stopped, so what they no longer report (contact, health) must not look like news.
                if done is not None:
                    done.set()
                break
            if waited > timeout + self.JUMP:  # the monotonic clock jumped under us: we were frozen
                self.log.warning("woke up: a wait of %.2f s took %.2f s", timeout, waited)
                self.process(ClockJump(time.monotonic(), waited - timeout))
            self._answers = answers
            try:
                self.process(event)
            finally:
                self._answers = None
                if done is not None:
                    done.set()
            # deadlines are kept even while events stream in (a datagram every beat)
            if isinstance(event, Tick):
                last_tick = event.now
            elif time.monotonic() - last_tick >= self.TICK or self._until_due(time.monotonic()) == 0:
                last_tick = time.monotonic()
                self.process(Tick(last_tick))
            last_event = time.monotonic()
            self.publish()

    def _until_due(self, now: float) -> float:
        """Seconds to the moment the node waits for (the master's lease surely over), so that
        a Tick comes then rather than up to TICK later; TICK when it waits for none."""
        due = self.node.lease_gone_at
        if due is None or self.node.state not in (State.FAILING_OVER, State.FENCING):
            return self.TICK
        return max(0.0, due - now)

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
                self.last_transition = t
            self.node = result.state
            if result.transition is not None:
                self.publish(force=True)
            for action in result.actions:
                follow = self.execute(action)
                if follow is not None:
                    pending.append(follow)

    # ------------------------------------------------------------------ actions

    def executors(self) -> dict[type[Action], Callable[[Any], Event | None]]:
        """Action type -> the method that carries it out (its result is the next event). Each
        role adds its own; tests/unit/test_executor.py checks the table against ACTIONS_OF."""
        return {
            RunScripts: self.run_scripts_action,
            CheckService: self.check_service_action,
            Alert: self.alert,
            Answer: self.answer_operator,
            Notify: self.notify,
            LbFence: self.load_balancer,
            LbEnable: self.load_balancer,
        }

    def execute(self, action: Action) -> Event | None:
        executor = self._executors.get(type(action))
        if executor is None:  # the machine emitted what this role has no executor for: a bug
            raise NotImplementedError(f"{self.name} cannot execute {action!r}")
        return executor(action)

    @functools.cached_property
    def _executors(self) -> dict[type[Action], Callable[[Any], Event | None]]:
        return self.executors()

    def run_scripts_action(self, action: RunScripts) -> Event:
        return self.run_scripts(action.kind)

    def check_service_action(self, action: CheckService) -> Event:
        return self.check_service(action.expect_up)

    def alert(self, action: Alert) -> None:
        self.log.error("ALERT: %s", action.message)
        self.observe(last_alert=action.message, last_alert_time=wall_clock())

    def answer_operator(self, action: Answer) -> None:
        self.log.info("answer to the operator: %s: %s", "done" if action.ok else "REFUSED", action.message)
        if self._answers is not None:
            self._answers.append(action)

    def notify(self, action: Notify) -> None:
        self._notices.put((action.transition, self.node))

    def load_balancer(self, action: LbFence | LbEnable) -> Event:
        what = f"{'fence' if isinstance(action, LbFence) else 'enable'} the {action.role}'s server"
        lb = fencing.load_balancer(self.config)
        try:
            if lb is None:
                raise LoadBalancerError("no LOAD_BALANCER configured")
            detail = lb.fence(action.role) if isinstance(action, LbFence) else lb.enable(action.role)
        except LoadBalancerError as e:
            self.log.error("load balancer: %s failed: %s", what, e)
            return LoadBalancerDone(time.monotonic(), what, False, str(e))
        self.log.info("load balancer: %s", detail)
        fenced = action.role if isinstance(action, LbFence) else None  # read back MAINT: confirmed
        return LoadBalancerDone(time.monotonic(), what, True, detail, fenced, self.granted_receipt())

    def granted_receipt(self) -> float | None:
        """The stream's last grant of a lease (heartbeat.py's g), read after a fence; None: this
        agent grants none (the master) or has no stream."""
        return None

    def script_env(
        self, kind: str, transition: Transition | None = None, node: NodeState | None = None, numbered: bool = True
    ) -> dict[str, str]:
        """What every script learns of the event: FAILOVER_EVENT, _FROM_STATE, _TO_STATE, _TERM,
        _REASON, _ROLE, _PEER (and _HOST, _STATE, _TRIGGER), and FAILOVER_SEQ: this host's hook
        number, greater at every call, across restarts too (StateStore.hook_seq). Not `numbered`
        (the lease guard's hard stop): no FAILOVER_SEQ, since the number may need a journal write
        and the journal's lock, and a kill must wait for neither."""
        peer = self.role.peer
        numbers = {"FAILOVER_SEQ": str(self.store.hook_seq(self.node))} if numbered else {}
        node = node or self.node
        t = transition or self.last_transition
        return {
            **numbers,
            "FAILOVER_EVENT": kind,
            "FAILOVER_ROLE": self.role.value,
            "FAILOVER_HOST": self.config.host_of(self.role),
            "FAILOVER_PEER": self.config.host_of(peer),
            "FAILOVER_TERM": str(node.term),
            "FAILOVER_STATE": node.state.value,
            "FAILOVER_FROM_STATE": (t.from_state if t else node.state).value,
            "FAILOVER_TO_STATE": (t.to_state if t else node.state).value,
            "FAILOVER_REASON": t.reason if t else node.reason,
            "FAILOVER_TRIGGER": node.trigger.value if node.trigger else "",
        }

    def commands_for(self, kind: ScriptKind) -> tuple[str, ...]:
        c = self.config
        return {
            ScriptKind.STARTUP: c.STARTUP_SCRIPTS,
            ScriptKind.SHUTDOWN: c.SHUTDOWN_SCRIPTS,
            ScriptKind.RESTART: c.RESTART_SCRIPTS,
            ScriptKind.BEFORE_FAILOVER: c.trigger_scripts(self.node.trigger) + c.BEFORE_FAILOVER_SCRIPTS,
            ScriptKind.AFTER_FAILOVER: c.AFTER_FAILOVER_SCRIPTS,
            ScriptKind.SYNC_FAILURE: c.SYNC_FAILURE_SCRIPTS,
        }[kind]

    def run_scripts(self, kind: ScriptKind) -> Event:
        commands = self.commands_for(kind)
        if commands:
            self.log.info("running %s scripts: %s", kind, "; ".join(commands))
        result = run_scripts(commands, self.config.SCRIPT_TIMEOUT, self.config.base_dir, self.script_env(kind.value))
        self.report_scripts(kind.value, result)
        return ScriptsFinished(time.monotonic(), kind, result.ok, result.summary())

    def report_scripts(self, kind: str, result: ScriptsResult) -> None:
        """Log every script's result and journal them together."""
        for r in result.results:
            level = logging.INFO if r.ok else logging.ERROR
            self.log.log(level, "%s script %s", kind, r.summary())
            if not r.ok and r.output.strip():
                self.log.log(level, "%s script output:\n%s", kind, r.output.rstrip()[-2000:])
        if result.results:
            self.store.note(self.node, f"scripts:{kind}", f"{'ok' if result.ok else 'FAILED'}: {result.summary()}")

    def run_notices(self, stop: threading.Event) -> None:
        """NOTIFY_SCRIPTS for each transition, in order, off the decision loop (a slow
        notification never delays a failover)."""
        while not stop.is_set():
            try:
                transition, node = self._notices.get(timeout=0.5)
            except queue.Empty:
                continue
            env = self.script_env(transition.event, transition, node)
            result = run_scripts(self.config.NOTIFY_SCRIPTS, self.config.SCRIPT_TIMEOUT, self.config.base_dir, env)
            self.report_scripts("notify", result)

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
            "observations": {**self.observations, **self.live_observations(now)},
        }
        atomic_write(status_path(self.config, self.name), json.dumps(status, default=str).encode(), durable=False)
