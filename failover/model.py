"""The vocabulary of the state machine: roles, states, the node's state, events and actions.

Data only, no decisions (those are in failover.machine). Events validate themselves; actions
are what the daemons must do. Nothing here reads a clock or does I/O.
"""

from __future__ import annotations

import enum
import math
from dataclasses import dataclass, field

# --------------------------------------------------------------------------------------------
# Vocabulary

# The highest term there can be. Far beyond any real count of failovers, and far below 2**63,
# so that no JSON reader, int64 column or hook script overflows on it; the parser refuses a
# peer's term above it, and a node that has reached it claims no new term (it says why).
MAX_TERM = 2**31 - 1


class Role(enum.StrEnum):
    MASTER = "master"
    SLAVE = "slave"


class State(enum.StrEnum):
    # master
    ACTIVE = "ACTIVE"  # (both roles) the service is allowed to run here
    STOPPING = "STOPPING"  # (both roles) shutdown scripts running, then the service is verified down
    INACTIVE = "INACTIVE"  # master after a failover: never starts again except through switchback
    # slave
    STANDBY = "STANDBY"  # watching the master
    SUSPECT = "SUSPECT"  # at least one failed probe, or the master reported its service down
    FAILING_OVER = "FAILING_OVER"  # new term claimed, SHUTDOWN_YOUR_SERVICE sent, waiting for the ACK
    FENCING = "FENCING"  # no ACK: not starting until an ACK or a confirmed fence arrives
    STARTING = "STARTING"  # startup scripts running, then the local service is verified up
    FAILED = "FAILED"  # (both roles) a step failed; an operator must look
    PREPARING = "PREPARING"  # slave: a trigger fired; trigger scripts and BEFORE_FAILOVER hooks running
    RESTARTING = "RESTARTING"  # master: restarting its failed service locally (RESTART_LIMIT)
    MAINTENANCE = "MAINTENANCE"  # (both roles) held by an operator: no automatic action


class Condition(enum.StrEnum):
    """The master's own view of its service, sent in every heartbeat."""

    UNKNOWN = "unknown"  # not checked yet
    UP = "up"
    RESTARTING = "restarting"  # down, and lhcd is restarting it (within RESTART_LIMIT)
    FAILED = "failed"  # abnormal shutdown: still failing after RESTART_LIMIT restarts in RESTART_WINDOW
    STOPPED = "stopped"  # normal shutdown: stopped cleanly (its pid file removed), not by failover
    AGENTS_STOPPED = "agents-stopped"  # the master's agents were stopped cleanly by an operator


class Trigger(enum.StrEnum):
    """Why an automatic failover (or the operator's switchover) starts; each trigger has its own flag."""

    ABNORMAL_SHUTDOWN = "abnormal_shutdown"
    COMMUNICATION_LOSS = "communication_loss"
    NORMAL_SHUTDOWN = "normal_shutdown"
    SWITCHOVER = "switchover"  # not a config flag: the operator's planned move


class ScriptKind(enum.StrEnum):
    SHUTDOWN = "shutdown"
    STARTUP = "startup"
    RESTART = "restart"  # master: restart its failed service locally
    BEFORE_FAILOVER = "before_failover"  # the trigger's scripts, then BEFORE_FAILOVER_SCRIPTS
    AFTER_FAILOVER = "after_failover"  # once the service answers on its new host
    SYNC_FAILURE = "sync_failure"  # the hosts cannot synchronise (heartbeats lost)


class FenceMethod(enum.StrEnum):
    """The fence chain, tried in this order when the master does not acknowledge."""

    SSH = "ssh"  # rcmd runs the master's shutdown through its own agent, and verifies it
    LOAD_BALANCER = "loadbalancer"  # the master's server goes to maintenance at the load balancer
    SCRIPTS = "scripts"  # the operator's FENCE_SCRIPTS (power off, storage fence, ...)


class OnAckTimeout(enum.StrEnum):
    FENCE = "fence"  # default: no ACK means no start until a fence is confirmed
    TAKEOVER = "takeover"  # the Perl tool's "ack or timeout": can run the service twice


# OpCon's application-group words, shown next to the detailed state.
GROUP_WORD: dict[tuple[Role, State], str] = {
    (Role.MASTER, State.ACTIVE): "ACTIVE",
    (Role.MASTER, State.STOPPING): "ACTIVE",
    (Role.MASTER, State.INACTIVE): "INACTIVE",
    (Role.MASTER, State.FAILED): "INACTIVE",
    (Role.SLAVE, State.STANDBY): "STANDBY",
    (Role.SLAVE, State.SUSPECT): "STANDBY",
    (Role.SLAVE, State.FAILING_OVER): "STANDBY",
    (Role.SLAVE, State.FENCING): "STANDBY",
    (Role.SLAVE, State.STARTING): "STANDBY",
    (Role.SLAVE, State.ACTIVE): "ACTIVE",
    (Role.SLAVE, State.STOPPING): "ACTIVE",
    (Role.SLAVE, State.FAILED): "INACTIVE",
    (Role.MASTER, State.RESTARTING): "ACTIVE",
    (Role.MASTER, State.STARTING): "INACTIVE",  # switchback: starting again in a new term
    (Role.SLAVE, State.PREPARING): "STANDBY",
    # MAINTENANCE shows the word of the state it was held from (NodeState.group)
    (Role.MASTER, State.MAINTENANCE): "MAINTENANCE",
    (Role.SLAVE, State.MAINTENANCE): "MAINTENANCE",
}
# Where an operator may hold: stable states only, never in the middle of a failover.
HOLDABLE = frozenset({State.ACTIVE, State.INACTIVE, State.STANDBY, State.SUSPECT, State.FAILED})


@dataclass(frozen=True)
class Policy:
    """The settings the machine decides with (taken from the config)."""

    probe_failures: int = 3
    ack_timeout: float = 60.0
    on_ack_timeout: OnAckTimeout = OnAckTimeout.FENCE
    fence_methods: tuple[FenceMethod, ...] = ()
    load_balancer: bool = False  # fence the master there on takeover, and enable the slave
    isolation_timeout: float | None = None  # with a WITNESS: an isolated master stops after this
    triggers: frozenset[Trigger] = frozenset({Trigger.ABNORMAL_SHUTDOWN})  # none: manual mode
    restart_limit: int = 0  # master: local restarts allowed within restart_window before "abnormal"
    restart_window: float = 600.0
    heartbeat_timeout: float = 15.0  # slave: no heartbeat for this long = heartbeats lost
    prepare: frozenset[Trigger] = frozenset()  # triggers with scripts to run before the takeover
    before_required: bool = True  # a failing BEFORE hook stops an automatic failover
    after_hooks: bool = False
    sync_failure_hooks: bool = False
    notify: bool = False  # NOTIFY_SCRIPTS run on every transition

    def __post_init__(self) -> None:
        if self.probe_failures < 1:
            raise ValueError(f"probe_failures must be >= 1, got {self.probe_failures}")
        if not (math.isfinite(self.ack_timeout) and self.ack_timeout > 0):
            raise ValueError(f"ack_timeout must be a positive number, got {self.ack_timeout}")
        if self.restart_limit < 0:
            raise ValueError(f"restart_limit must be >= 0, got {self.restart_limit}")
        if Trigger.SWITCHOVER in self.triggers:
            raise ValueError("switchover is the operator's command, not a trigger flag")

    @property
    def manual(self) -> bool:
        """No trigger enabled: the slave watches and reports, only `failover switchover` moves."""
        return not self.triggers


@dataclass(frozen=True)
class NodeState:
    """Everything one agent knows. Persisted as a whole after each transition."""

    role: Role
    state: State
    term: int = 0
    reason: str = "initial state"
    # slave: consecutive failed probes of the master's service
    failures: int = 0
    # FAILING_OVER: when to stop waiting for the ACK; FENCING: when to resend the request
    deadline: float | None = None
    # STARTING / STOPPING: the scripts of this attempt have finished
    scripts_done: bool = False
    # master: the last local health check result (None before the first one)
    service_ok: bool | None = None
    # the scripts' results of the current STOPPING / STARTING attempt, carried into the ACK
    detail: str = ""
    # FENCING: the index in Policy.fence_methods of the fence being tried (past the end: none)
    fence_index: int = 0
    # master: when the slave or the witness last answered (monotonic); slave: the witness answers
    last_contact: float | None = None
    witness_ok: bool | None = None
    # master: its service's condition (heartbeats carry it), the monotonic times of local restarts
    condition: Condition = Condition.UNKNOWN
    restarts: tuple[float, ...] = ()
    peer_contact: float | None = None  # master: when the slave last answered a heartbeat
    # slave: what the master's last heartbeat said, and when it came (monotonic)
    master_condition: Condition = Condition.UNKNOWN
    last_heartbeat: float | None = None
    heartbeats_lost: bool = False  # SYNC_FAILURE hooks ran for this loss
    trigger: Trigger | None = None  # the trigger of the failover under way
    # MAINTENANCE: the state it was held from, who held it, since when (wall clock, display only), why
    held_from: State | None = None
    hold_by: str = ""
    hold_since: str = ""
    hold_reason: str = ""
    # when the current state was entered (monotonic; reset at every start, since the readings of
    # an earlier boot mean nothing): an observation taken before it is stale
    entered: float | None = None

    def __post_init__(self) -> None:
        if (self.role, self.state) not in GROUP_WORD:
            raise ValueError(f"{self.state} is not a state of the {self.role}")
        if not 0 <= self.term <= MAX_TERM:
            raise ValueError(f"term must be within 0..{MAX_TERM} (MAX_TERM), got {self.term}")

    @property
    def group(self) -> str:
        if self.state is State.MAINTENANCE and self.held_from is not None:
            return f"{GROUP_WORD[(self.role, self.held_from)]} (held)"
        return GROUP_WORD[(self.role, self.state)]


def initial_state(role: Role) -> NodeState:
    if role is Role.MASTER:
        return NodeState(Role.MASTER, State.ACTIVE, reason="first start: the master serves")
    return NodeState(Role.SLAVE, State.STANDBY, reason="first start: the slave watches the master")


# --------------------------------------------------------------------------------------------
# Events: what the daemons observed. Each validates itself.


def _check_now(now: float) -> None:
    if not (math.isfinite(now) and now >= 0):
        raise ValueError(f"now must be a finite monotonic reading >= 0, got {now}")


def _check_term(term: int) -> None:
    if isinstance(term, bool) or not isinstance(term, int) or not 0 <= term <= MAX_TERM:
        raise ValueError(f"term must be an int within 0..{MAX_TERM} (MAX_TERM), got {term!r}")


@dataclass(frozen=True)
class Event:
    now: float

    def __post_init__(self) -> None:
        _check_now(self.now)


@dataclass(frozen=True)
class Started(Event):
    """The daemon (re)started and loaded its persisted state."""


@dataclass(frozen=True)
class Tick(Event):
    """Time passed; lets the machine act on its deadlines."""


@dataclass(frozen=True)
class Observation(Event):
    """An event that reports a check. `taken` is when the check began (monotonic; None: at
    `now`): a check that began before the current state was entered saw the world of an
    earlier state, and the machine ignores it (a health check taken before a stop finished
    must not say "running" after it)."""

    taken: float | None = field(default=None, kw_only=True)  # keyword-only: after the subclasses' fields

    def __post_init__(self) -> None:
        super().__post_init__()
        taken = self.taken
        if taken is not None and not (math.isfinite(taken) and 0 <= taken <= self.now):
            raise ValueError(f"taken must be a monotonic reading within 0..now, got {taken}")


@dataclass(frozen=True)
class ProbeResult(Observation):
    """Slave: one probe of the master's service."""

    ok: bool
    detail: str = ""


@dataclass(frozen=True)
class PeerReport(Event):
    """What the peer says of itself: a heartbeat (on the slave) or its reply (on the master)."""

    term: int
    state: State
    service_ok: bool | None = None
    detail: str = ""
    condition: Condition = Condition.UNKNOWN  # heartbeats: the master's view of its service

    def __post_init__(self) -> None:
        super().__post_init__()
        _check_term(self.term)


@dataclass(frozen=True)
class LocalHealth(Observation):
    """Periodic check of this host's own service (process and local probe)."""

    ok: bool
    detail: str = ""
    clean: bool = False  # down and stopped cleanly (its pid file was removed): a normal shutdown


@dataclass(frozen=True)
class OperatorRequest(Event):
    """An operator's command, authenticated by the control channel. `since` is wall-clock text
    for status only; decisions never use it."""

    by: str
    reason: str = ""
    since: str = ""


@dataclass(frozen=True)
class HoldRequested(OperatorRequest):
    """`failover hold`: no automatic action until released; survives restarts."""


@dataclass(frozen=True)
class ReleaseRequested(OperatorRequest):
    """`failover release`: resume watching (and acting)."""


@dataclass(frozen=True)
class SwitchoverRequested(OperatorRequest):
    """Slave: `failover switchover`: a planned move of the service from the master to this host."""


@dataclass(frozen=True)
class SwitchbackStop(OperatorRequest):
    """Slave, switchback step: stop the service here and stay held until the master serves."""


@dataclass(frozen=True)
class SwitchbackStart(OperatorRequest):
    """Master, switchback step: the slave reported its service verified down, held, in `peer_term`."""

    peer_term: int = 0
    peer_state: State = State.MAINTENANCE
    peer_service_down: bool = False

    def __post_init__(self) -> None:
        super().__post_init__()
        _check_term(self.peer_term)


@dataclass(frozen=True)
class ShutdownRequested(Event):
    """Master: an authenticated SHUTDOWN_YOUR_SERVICE arrived."""

    term: int

    def __post_init__(self) -> None:
        super().__post_init__()
        _check_term(self.term)
        if self.term < 1:
            raise ValueError("a shutdown request must carry a term >= 1")


@dataclass(frozen=True)
class ShutdownAnswered(Event):
    """Slave: the master's authenticated answer (ok=True is the ACK)."""

    term: int
    ok: bool
    detail: str = ""

    def __post_init__(self) -> None:
        super().__post_init__()
        _check_term(self.term)


@dataclass(frozen=True)
class ScriptsFinished(Event):
    kind: ScriptKind
    ok: bool
    detail: str = ""


@dataclass(frozen=True)
class ServiceChecked(Event):
    """The answer to a CheckService action: is this host's service up?"""

    up: bool
    detail: str = ""


@dataclass(frozen=True)
class FenceConfirmed(Event):
    """Slave: the master is known not to serve for this term (operator, or a fence method)."""

    term: int
    method: str

    def __post_init__(self) -> None:
        super().__post_init__()
        _check_term(self.term)
        if not self.method:
            raise ValueError("a fence confirmation must name its method")


@dataclass(frozen=True)
class Reachability(Event):
    """Whether the peer and the witness answered (None: not asked this time)."""

    peer: bool | None
    witness: bool | None


@dataclass(frozen=True)
class ClockJump(Event):
    """The daemon's loop saw `gap` seconds pass in one wait: it was frozen (SIGSTOP, VM pause)."""

    gap: float


@dataclass(frozen=True)
class FenceResult(Event):
    """Slave: the outcome of one Fence action; ok=True means the master serves no one for this term."""

    term: int
    method: FenceMethod
    ok: bool
    detail: str = ""

    def __post_init__(self) -> None:
        super().__post_init__()
        _check_term(self.term)


@dataclass(frozen=True)
class LoadBalancerDone(Event):
    """The outcome of LbFence / LbEnable (informational: a failure is alerted, nothing waits on it)."""

    what: str
    ok: bool
    detail: str = ""


# --------------------------------------------------------------------------------------------
# Actions: what the daemons must do. Data only.


@dataclass(frozen=True)
class Transition:
    from_state: State
    to_state: State
    from_term: int
    term: int
    reason: str
    event: str


@dataclass(frozen=True)
class Action:
    pass


@dataclass(frozen=True)
class SendShutdown(Action):
    """Slave: send SHUTDOWN_YOUR_SERVICE for term; wait at most `timeout` s for the answer."""

    term: int
    timeout: float


@dataclass(frozen=True)
class Reply(Action):
    """Master: answer the pending SHUTDOWN_YOUR_SERVICE requests of `term` (ok=True: the ACK)."""

    term: int
    ok: bool
    detail: str


@dataclass(frozen=True)
class RunScripts(Action):
    kind: ScriptKind


@dataclass(frozen=True)
class CheckService(Action):
    """Check this host's service until it is `expect_up` or the check timeout passes."""

    expect_up: bool


@dataclass(frozen=True)
class ProbeNow(Action):
    """Slave: probe the master's service now instead of at the next interval."""


@dataclass(frozen=True)
class SendHeartbeat(Action):
    """Master: send a heartbeat now (the local health changed)."""


@dataclass(frozen=True)
class Fence(Action):
    """Slave: try one fence method against the master for this term."""

    term: int
    method: FenceMethod


@dataclass(frozen=True)
class LbFence(Action):
    """Put `role`'s server in maintenance at the load balancer and cut its sessions."""

    role: Role


@dataclass(frozen=True)
class LbEnable(Action):
    """Put `role`'s server in service at the load balancer."""

    role: Role


@dataclass(frozen=True)
class Answer(Action):
    """The outcome of an operator's request, for the command that is waiting for it."""

    ok: bool
    message: str


@dataclass(frozen=True)
class Notify(Action):
    """Run NOTIFY_SCRIPTS for this transition (in order, in the background)."""

    transition: Transition


@dataclass(frozen=True)
class Alert(Action):
    """Something an operator must see now."""

    message: str


@dataclass(frozen=True)
class Step:
    state: NodeState
    actions: tuple[Action, ...] = ()
    transition: Transition | None = None
