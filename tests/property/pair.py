"""MasterSlavePair: both state machines in a simulated world, like h11's ConnectionPair.

The world is what the daemons would observe: each host's service (running or not), a network
of in-flight messages that the test may deliver, duplicate, reorder or drop, actions whose
results arrive later (or never, if the daemon restarts first), and daemon restarts that reload
only what was persisted (the state at the last transition). Every emitted action is checked
against the safety invariants (failover/machine/invariants.py and the world's own) as it happens.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from failover.machine import (
    ACTIONS_OF,
    Action,
    Alert,
    Answer,
    CheckService,
    ClockJump,
    Event,
    Fence,
    FenceConfirmed,
    FenceMethod,
    FenceResult,
    HoldRequested,
    LbEnable,
    LbFence,
    LoadBalancerDone,
    LocalHealth,
    NodeState,
    Notify,
    OnAckTimeout,
    PeerReport,
    Policy,
    ProbeNow,
    ProbeResult,
    Reachability,
    ReleaseRequested,
    Reply,
    Role,
    RunScripts,
    ScriptKind,
    ScriptsFinished,
    SendHeartbeat,
    SendShutdown,
    ServiceChecked,
    ShutdownAnswered,
    ShutdownRequested,
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
from failover.machine.invariants import check_actions, check_pair, check_transition


class InvariantViolation(AssertionError):
    pass


@dataclass(frozen=True)
class Message:
    to: Role
    event: Event  # delivered with its `now` replaced by the time of delivery


@dataclass
class Host:
    node: NodeState
    persisted: NodeState
    service_running: bool
    pending: list[Action] = field(default_factory=list)  # actions whose result has not come back yet
    ever_inactive: bool = False
    lb_fenced: bool = False  # in maintenance at the load balancer: no client reaches it
    # (time, service running) before each event fed: what a check begun then would have seen
    history: list[tuple[float, bool]] = field(default_factory=list)
    ran_since_inactive: bool = False  # the service ran at some point since the master became INACTIVE

    @property
    def serving(self) -> bool:
        return self.service_running and not self.lb_fenced


class MasterSlavePair:
    def __init__(self, policy: Policy, start_term: int = 0) -> None:
        """start_term > 0: earlier failovers and switchbacks happened; both hosts know that term."""
        self.policy = policy
        self.now = 0.0
        m = dataclasses.replace(initial_state(Role.MASTER), term=start_term)
        s = dataclasses.replace(initial_state(Role.SLAVE), term=start_term)
        self.hosts = {
            Role.MASTER: Host(m, m, service_running=True),
            Role.SLAVE: Host(s, s, service_running=False),
        }
        self.network: list[Message] = []
        self.authorized_terms: set[int] = set()  # terms the slave holds an ACK or a confirmed fence for
        self.transitions: list[tuple[Role, Transition]] = []
        self.alerts: list[str] = []
        self.answers: list[Answer] = []
        self.switchback_start = False  # the master is starting through a switchback

    @property
    def master(self) -> Host:
        return self.hosts[Role.MASTER]

    @property
    def slave(self) -> Host:
        return self.hosts[Role.SLAVE]

    # ------------------------------------------------------------------ feeding events

    def feed(self, role: Role, event: Event) -> None:
        host = self.hosts[role]
        before = host.node
        for h in self.hosts.values():
            h.history = [*h.history[-199:], (self.now, h.service_running)]
            if h.service_running and h.node.state is State.INACTIVE:
                h.ran_since_inactive = True
        result = step(self.policy, before, event)
        if isinstance(event, ShutdownAnswered) and event.ok:
            self.authorized_terms.add(event.term)
        if isinstance(event, FenceConfirmed) or (isinstance(event, FenceResult) and event.ok):
            self.authorized_terms.add(event.term)
        host.node = result.state
        if isinstance(event, SwitchbackStart) and result.state.state is State.STARTING:
            self.switchback_start, self.master.ever_inactive = True, False
        if result.transition is not None:
            host.persisted = result.state  # persist before acting
            self.transitions.append((role, result.transition))
            self._check_transition(role, result.transition)
        self._raise(check_actions(result.state, result.actions, type(event).__name__))
        for action in result.actions:
            self._check_action(role, action)
            self._execute(role, action)
        self._check_world()
        # Each event a moment after the last, so that a check begun before a transition is
        # strictly older than it, as on a real host.
        self.now += 1e-6

    def _execute(self, role: Role, action: Action) -> None:
        """What the world does with an action: one simulator per action type, as a daemon has one
        executor per type (the same ACTIONS_OF, checked in test_pair_properties)."""
        if type(action) not in ACTIONS_OF[role]:
            raise InvariantViolation(f"the {role} emitted {action!r}, not one of its ACTIONS_OF")
        self.simulators()[type(action)](role, action)

    def simulators(self) -> dict[type[Action], Callable[[Role, Any], None]]:
        """Action type -> what the world does with it now (the rest waits for `complete()`)."""
        return {
            SendShutdown: self._request_shutdown,
            Reply: self._reply,
            SendHeartbeat: lambda role, action: self.send_heartbeat(),
            Alert: lambda role, action: self.alerts.append(action.message),
            Answer: lambda role, action: self.answers.append(action),
            Notify: lambda role, action: None,  # NOTIFY_SCRIPTS change nothing in the world
            RunScripts: self._pending,
            CheckService: self._pending,
            ProbeNow: self._pending,
            Fence: self._pending,
            LbFence: self._pending,
            LbEnable: self._pending,
        }

    def _request_shutdown(self, role: Role, action: SendShutdown) -> None:
        self.network.append(Message(Role.MASTER, ShutdownRequested(self.now, term=action.term)))

    def _reply(self, role: Role, action: Reply) -> None:
        self.network.append(Message(Role.SLAVE, ShutdownAnswered(self.now, action.term, action.ok, action.detail)))

    def _pending(self, role: Role, action: Action) -> None:
        self.hosts[role].pending.append(action)  # its result comes back when complete() says

    # ------------------------------------------------------------------ the world's moves

    def advance(self, dt: float) -> None:
        self.now += dt
        for role in Role:
            self.feed(role, Tick(self.now))

    def probe(self, spurious_failure: bool = False) -> None:
        ok = self.master.service_running and not spurious_failure
        self.feed(Role.SLAVE, ProbeResult(self.now, ok, "answers" if ok else "refused"))

    def local_health(self, role: Role = Role.MASTER) -> None:
        self.feed(role, LocalHealth(self.now, self.hosts[role].service_running))

    def stale_local_health(self, back: int, role: Role = Role.MASTER) -> None:
        """A check begun `back` events ago arrives now, reporting the world as it was then."""
        history = self.hosts[role].history
        if history:
            taken, running = history[-min(back, len(history))]
            self.feed(role, LocalHealth(self.now, running, taken=taken))

    def stale_probe(self, back: int) -> None:
        """A probe of the master begun `back` events ago arrives now."""
        history = self.master.history
        if history:
            taken, running = history[-min(back, len(history))]
            self.feed(Role.SLAVE, ProbeResult(self.now, running, "answers" if running else "refused", taken=taken))

    def reachability(self, peer: bool, witness: bool) -> None:
        """Each host learns whether the other and the witness answered (a partition, or not)."""
        self.feed(Role.MASTER, Reachability(self.now, peer, witness))
        self.feed(Role.SLAVE, Reachability(self.now, None, witness))

    def wake_up(self, gap: float) -> None:
        """The master was frozen for `gap` seconds and runs again."""
        self.now += gap
        self.feed(Role.MASTER, ClockJump(self.now, gap))

    def send_heartbeat(self) -> None:
        m = self.master.node
        running = self.master.service_running
        report = PeerReport(self.now, term=m.term, state=m.state, service_ok=running, condition=m.condition)
        self.network.append(Message(Role.SLAVE, report))
        s = self.slave.node
        self.network.append(Message(Role.MASTER, PeerReport(self.now, term=s.term, state=s.state)))

    def deliver(self, index: int, keep: bool = False) -> None:
        """Deliver one in-flight message; keep=True leaves a copy in flight (a duplicate)."""
        if not self.network:
            return
        message = self.network[index % len(self.network)]
        if not keep:
            self.network.remove(message)
        self.feed(message.to, dataclasses.replace(message.event, now=self.now))

    def inject_stale(self, age: int, to: Role, fence: bool = False) -> None:
        """A message of an earlier term arrives late: an old ACK, an old fence confirmation or an
        old fence result to the slave; an old request to the master."""
        term = self.hosts[to].node.term - age
        if term < 1:
            return
        if to is Role.MASTER:
            self.network.append(Message(Role.MASTER, ShutdownRequested(self.now, term=term)))
            return
        self.authorized_terms.add(term)  # it was genuine, for its own (old) term
        old: list[Event] = [ShutdownAnswered(self.now, term, True, "old ACK")]
        if fence:
            old = [FenceConfirmed(self.now, term=term, method="old confirmation")]
            old += [FenceResult(self.now, term, method, True, "old fence") for method in self.policy.fence_methods]
        self.network.extend(Message(Role.SLAVE, event) for event in old)

    def drop(self, index: int) -> None:
        if self.network:
            del self.network[index % len(self.network)]

    def complete(self, role: Role, ok: bool = True) -> None:
        """The oldest pending action of `role` finishes; scripts succeed or fail as `ok` says."""
        host = self.hosts[role]
        if host.pending:
            action = host.pending.pop(0)
            self.finishers()[type(action)](role, action, ok)

    def finishers(self) -> dict[type[Action], Callable[[Role, Any, bool], None]]:
        """Action type -> how the world finishes it (for the actions that wait in `pending`)."""
        return {
            RunScripts: self._scripts_finish,
            CheckService: lambda role, action, ok: self.feed(
                role, ServiceChecked(self.now, self.hosts[role].service_running)
            ),
            ProbeNow: lambda role, action, ok: self.probe(),
            Fence: self._fence_finishes,
            LbFence: self._load_balancer_finishes,
            LbEnable: self._load_balancer_finishes,
        }

    def _scripts_finish(self, role: Role, action: RunScripts, ok: bool) -> None:
        host = self.hosts[role]
        if ok and action.kind in (ScriptKind.STARTUP, ScriptKind.RESTART):
            host.service_running = True
        elif ok and action.kind is ScriptKind.SHUTDOWN:
            host.service_running = False
        self.feed(role, ScriptsFinished(self.now, action.kind, ok, "ok" if ok else "rc 1"))

    def _fence_finishes(self, role: Role, action: Fence, ok: bool) -> None:
        if ok:  # a fence succeeds only by making it true
            if action.method is FenceMethod.LOAD_BALANCER:
                self.master.lb_fenced = True
            else:  # ssh stops the service through the master's agent; scripts power it off
                self.master.service_running = False
        self.feed(role, FenceResult(self.now, action.term, action.method, ok, "ok" if ok else "failed"))

    def _load_balancer_finishes(self, role: Role, action: LbFence | LbEnable, ok: bool) -> None:
        if ok:
            self.hosts[action.role].lb_fenced = isinstance(action, LbFence)
        self.feed(role, LoadBalancerDone(self.now, type(action).__name__, ok))

    def crash_service(self, role: Role = Role.MASTER) -> None:
        self.hosts[role].service_running = False

    def restart(self, role: Role) -> None:
        """kill -9 of the daemon, then start: pending work is lost, only the persisted state survives."""
        host = self.hosts[role]
        host.pending.clear()
        host.node = host.persisted
        self.feed(role, Started(self.now))

    def confirm_fence(self) -> None:
        """The operator confirms the fence, as `confirm-fenced` asks: only once the master serves no
        client (its service down), and by making sure it stays so (powered off or cut off)."""
        if not self.master.service_running:
            self.master.lb_fenced = True
            self.feed(Role.SLAVE, FenceConfirmed(self.now, term=self.slave.node.term, method="operator"))

    def operator(self, role: Role, action: str) -> None:
        """An operator's hold, release or switchover."""
        kind = {"hold": HoldRequested, "release": ReleaseRequested, "switchover": SwitchoverRequested}[action]
        self.feed(role, kind(self.now, by="ops", reason="test"))

    def switchback(self) -> None:
        """The switchback command's two moves, each with what the other host really reports."""
        if self.slave.node.state is State.ACTIVE:
            self.feed(Role.SLAVE, SwitchbackStop(self.now, by="ops"))
        s = self.slave.node
        self.feed(
            Role.MASTER,
            SwitchbackStart(
                self.now,
                by="ops",
                peer_term=s.term,
                peer_state=s.state,
                peer_service_down=not self.slave.service_running,
            ),
        )

    def drain(self) -> None:
        """Deliver every message and finish every pending action, until nothing is left."""
        while self.network or any(h.pending for h in self.hosts.values()):
            while self.network:
                self.deliver(0)
            for role in Role:
                while self.hosts[role].pending:
                    self.complete(role, ok=True)

    def settle(self, rounds: int = 60) -> None:
        """A healthy network and successful scripts from now on: run until nothing moves."""
        for _ in range(rounds):
            self.drain()
            self.probe()
            self.local_health()
            self.send_heartbeat()
            self.drain()
            self.advance(self.policy.ack_timeout)

    # ------------------------------------------------------------------ invariants

    @staticmethod
    def _raise(problems: list[str]) -> None:
        """The machine's own invariants (failover.machine.invariants) broken: say which."""
        if problems:
            raise InvariantViolation("; ".join(problems))

    def _check_transition(self, role: Role, t: Transition) -> None:
        self._raise(check_transition(role, t))
        # a hold ends only by a release, or by stepping down when deposed (safety before maintenance)
        released = t.event == "ReleaseRequested" or (t.event == "PeerReport" and t.to_state is State.STOPPING)
        if t.from_state is State.MAINTENANCE and t.to_state is not State.MAINTENANCE and not released:
            raise InvariantViolation(f"the held {role} moved on its own: {t}")
        if role is Role.MASTER:
            if t.from_state is State.INACTIVE and t.to_state is State.STOPPING and not self.master.ran_since_inactive:
                raise InvariantViolation(f"the INACTIVE master stopped a service that has not run since: {t}")
            if t.to_state is State.INACTIVE:
                self.master.ever_inactive = True
                self.master.ran_since_inactive = False
            if self.master.ever_inactive and t.to_state in (State.ACTIVE, State.STARTING, State.RESTARTING):
                raise InvariantViolation(f"the master became ACTIVE again after INACTIVE: {t}")
            if t.to_state in (State.INACTIVE, State.STOPPING):
                self.switchback_start = False

    def _check_action(self, role: Role, action: Action) -> None:
        if isinstance(action, RunScripts) and action.kind is ScriptKind.STARTUP:
            if role is Role.MASTER:
                if not self.switchback_start:
                    raise InvariantViolation("the master started its service outside switchback")
                return
            term = self.hosts[role].node.term
            if term not in self.authorized_terms and self.policy.on_ack_timeout is OnAckTimeout.FENCE:
                raise InvariantViolation(
                    f"the slave runs its startup scripts in term {term} without an ACK "
                    f"or a confirmed fence (authorized: {sorted(self.authorized_terms)})"
                )
        if isinstance(action, RunScripts) and action.kind is ScriptKind.RESTART and self.master.ever_inactive:
            raise InvariantViolation("an INACTIVE master restarted its service")
        if isinstance(action, Reply) and action.ok and self.master.service_running:  # its own check lied
            raise InvariantViolation(f"the master acknowledged term {action.term} while its service runs")

    def _check_world(self) -> None:
        m, s = self.master.node, self.slave.node
        self._raise(check_pair(m, s))
        both_serving = self.master.serving and self.slave.serving
        if both_serving and self.policy.on_ack_timeout is OnAckTimeout.FENCE:
            raise InvariantViolation(f"the service serves clients on both hosts: master {m}, slave {s}")
