"""The vocabulary of the state machine: roles, states, the node's state, events and actions.

Data only, no decisions (those are in failover.machine). Events validate themselves; actions
are what the daemons must do. Nothing here reads a clock or does I/O.
"""

from __future__ import annotations

import enum
import math
from dataclasses import dataclass

# --------------------------------------------------------------------------------------------
# Vocabulary


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


class ScriptKind(enum.StrEnum):
    SHUTDOWN = "shutdown"
    STARTUP = "startup"


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
}


@dataclass(frozen=True)
class Policy:
    """The settings the machine decides with (taken from the config)."""

    probe_failures: int = 3
    ack_timeout: float = 60.0
    on_ack_timeout: OnAckTimeout = OnAckTimeout.FENCE
    fence_methods: tuple[FenceMethod, ...] = ()
    load_balancer: bool = False  # fence the master there on takeover, and enable the slave
    isolation_timeout: float | None = None  # with a WITNESS: an isolated master stops after this

    def __post_init__(self) -> None:
        if self.probe_failures < 1:
            raise ValueError(f"probe_failures must be >= 1, got {self.probe_failures}")
        if not (math.isfinite(self.ack_timeout) and self.ack_timeout > 0):
            raise ValueError(f"ack_timeout must be a positive number, got {self.ack_timeout}")


@dataclass(frozen=True)
class NodeState:
    """Everything one agent knows. Persisted as a whole after each transition."""

    role: Role
    state: State
    term: int = 0
    reason: str = "initial state"
    # slave: consecutive failed probes of the master's service
    failures: int = 0
    # slave: the master's last heartbeat said its own service is down
    master_says_down: bool = False
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

    def __post_init__(self) -> None:
        if (self.role, self.state) not in GROUP_WORD:
            raise ValueError(f"{self.state} is not a state of the {self.role}")
        if self.term < 0:
            raise ValueError(f"term must be >= 0, got {self.term}")

    @property
    def group(self) -> str:
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
    if isinstance(term, bool) or not isinstance(term, int) or term < 0:
        raise ValueError(f"term must be an int >= 0, got {term!r}")


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
class ProbeResult(Event):
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

    def __post_init__(self) -> None:
        super().__post_init__()
        _check_term(self.term)


@dataclass(frozen=True)
class LocalHealth(Event):
    """Periodic check of this host's own service (process and local probe)."""

    ok: bool
    detail: str = ""


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
class Alert(Action):
    """Something an operator must see now."""

    message: str


@dataclass(frozen=True)
class Transition:
    from_state: State
    to_state: State
    from_term: int
    term: int
    reason: str
    event: str


@dataclass(frozen=True)
class Step:
    state: NodeState
    actions: tuple[Action, ...] = ()
    transition: Transition | None = None
