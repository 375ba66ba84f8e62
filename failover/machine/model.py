"""The machine's vocabulary: roles, states, conditions, triggers, the policy, the node's state.

Data only, no decisions (those are in the rule modules of failover.machine), no clock, no I/O.
Events and actions have their own modules (events.py, actions.py).
"""

from __future__ import annotations

import enum
import math
from dataclasses import dataclass
from typing import TypedDict

# --------------------------------------------------------------------------------------------
# Vocabulary

# The highest term there can be. Far beyond any real count of failovers, and far below 2**63,
# so that no JSON reader, int64 column or hook script overflows on it; the parser refuses a
# peer's term above it, and a node that has reached it claims no new term (it says why).
MAX_TERM = 2**31 - 1


class Role(enum.StrEnum):
    MASTER = "master"
    SLAVE = "slave"

    @property
    def peer(self) -> Role:
        """The other role of the pair (the one place that says so)."""
        return Role.SLAVE if self is Role.MASTER else Role.MASTER


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
    # slave, with a lease (a load balancer): how long after its last granted acknowledgement
    # (takeover_wait) and after the load balancer confirmed the master's server MAINT
    # (lb_takeover_wait) the master's service is surely down (heartbeat.takeover_wait)
    takeover_wait: float | None = None
    lb_takeover_wait: float | None = None

    def __post_init__(self) -> None:
        if self.probe_failures < 1:
            raise ValueError(f"probe_failures must be >= 1, got {self.probe_failures}")
        if not (math.isfinite(self.ack_timeout) and self.ack_timeout > 0):
            raise ValueError(f"ack_timeout must be a positive number, got {self.ack_timeout}")
        if self.restart_limit < 0:
            raise ValueError(f"restart_limit must be >= 0, got {self.restart_limit}")
        for name in ("takeover_wait", "lb_takeover_wait"):
            wait = getattr(self, name)
            if wait is not None and not (math.isfinite(wait) and wait > 0):
                raise ValueError(f"{name} must be a positive number, got {wait}")
        if (self.takeover_wait is None) != (self.lb_takeover_wait is None):
            raise ValueError("takeover_wait and lb_takeover_wait go together (a lease has both)")
        if Trigger.SWITCHOVER in self.triggers:
            raise ValueError("switchover is the operator's command, not a trigger flag")

    @property
    def manual(self) -> bool:
        """No trigger enabled: the slave watches and reports, only `failover switchover` moves."""
        return not self.triggers


class Why(enum.StrEnum):
    """The machine-readable code of a reason, beside its text: what a decision compares, what
    scripts and status may match on. The text is for people and may be reworded freely."""

    FIRST_START = "first-start"
    RESTARTED = "restarted"  # a daemon restart resumed or restarted the current step
    LEARNED_TERM = "learned-term"
    DEPOSED = "deposed"
    # the master's own service
    SERVICE_BACK = "service-back"
    RESTARTING = "restarting"
    ABNORMAL_SHUTDOWN = "abnormal-shutdown"
    NORMAL_SHUTDOWN = "normal-shutdown"
    RUNNING_WHILE_INACTIVE = "running-while-inactive"
    ISOLATED = "isolated"
    LEASE_EXPIRED = "lease-expired"  # the guard killed the service: the lease ended
    # stopping and starting
    SHUTDOWN_REQUESTED = "shutdown-requested"
    VERIFIED_DOWN = "verified-down"
    STILL_RUNNING = "still-running"
    AUTHORIZED = "authorized"  # an ACK, a confirmed fence, or ON_ACK_TIMEOUT='takeover'
    STARTUP_FAILED = "startup-failed"
    NOT_UP = "not-up"
    UP = "up"
    # the slave watching
    ANSWERS = "answers"  # the master's service answers again
    PROBES_FAILING = "probes-failing"
    MASTER_REPORTS = "master-reports"  # the master's heartbeat reports its service down
    COMMUNICATION_LOSS = "communication-loss"
    TRIGGER_DISABLED = "trigger-disabled"
    WITNESS_SILENT = "witness-silent"
    HEARTBEATS_LOST = "heartbeats-lost"
    PREPARING = "preparing"
    # claim and fencing
    CLAIMED = "claimed"
    TERM_CEILING = "term-ceiling"
    BEFORE_FAILED = "before-failed"
    NO_ACK = "no-ack"
    FENCE_FAILED = "fence-failed"
    LEASE_WAIT = "lease-wait"  # fenced at the load balancer: waiting for the master's lease to end
    OLD_MASTER_ACTIVE = "old-master-active"  # slave ACTIVE: the old master still says it serves
    # the operator
    HELD = "held"
    RELEASED = "released"
    SWITCHOVER = "switchover"
    SWITCHBACK = "switchback"


@dataclass(frozen=True)
class Hold:
    """An operator's hold (or one a failing hook set): the four facts always change together.
    While the node is MAINTENANCE it holds; a slave stopping for a switchback carries it into
    MAINTENANCE once its service is down."""

    held_from: State  # where `failover release` returns to
    by: str
    since: str = ""  # wall-clock text for status only; decisions never use it
    reason: str = ""

    def who(self) -> str:
        """Who holds, since when and why, as answers and alerts say it."""
        return f"{self.by} since {self.since} ({self.reason})"


@dataclass(frozen=True)
class NodeState:
    """Everything one agent knows, persisted as a whole after each transition. Fields marked
    "master" or "slave" mean something to that role only; the other keeps their defaults."""

    role: Role
    state: State
    term: int = 0
    reason: str = "initial state"
    code: Why = Why.FIRST_START  # the machine-readable code of `reason`
    subject: str = ""  # what the code is about (a trigger, a count), for "is this news?" only
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
    # slave, FENCING: the index in Policy.fence_methods of the fence being tried (past the end: none)
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
    heartbeats_lost: bool = False  # slave: SYNC_FAILURE hooks ran for this loss
    trigger: Trigger | None = None  # slave: the trigger of the failover under way
    # slave, claiming with a lease: from when the master's service is surely down (monotonic),
    # known once the load balancer confirmed its server MAINT (failover.machine.lease)
    lease_gone_at: float | None = None
    silence_probed: bool = False  # slave: the probe at half HEARTBEAT_TIMEOUT of silence was asked
    hold: Hold | None = None
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
        if self.state is State.MAINTENANCE and self.hold is not None:
            return f"{GROUP_WORD[(self.role, self.hold.held_from)]} (held)"
        return GROUP_WORD[(self.role, self.state)]


class Changes(TypedDict, total=False):
    """The fields a rule may change besides the state and the reason (steps.move and keep take
    them as keywords, so mypy checks every name and type). Kept equal to NodeState's fields (but
    role, state, reason, code and subject, which move() sets) by a test."""

    term: int
    failures: int
    deadline: float | None
    scripts_done: bool
    service_ok: bool | None
    detail: str
    fence_index: int
    last_contact: float | None
    witness_ok: bool | None
    condition: Condition
    restarts: tuple[float, ...]
    peer_contact: float | None
    master_condition: Condition
    last_heartbeat: float | None
    heartbeats_lost: bool
    trigger: Trigger | None
    lease_gone_at: float | None
    silence_probed: bool
    hold: Hold | None
    entered: float | None


def initial_state(role: Role) -> NodeState:
    if role is Role.MASTER:
        return NodeState(Role.MASTER, State.ACTIVE, reason="first start: the master serves")
    return NodeState(Role.SLAVE, State.STANDBY, reason="first start: the slave watches the master")


@dataclass(frozen=True)
class Transition:
    from_state: State
    to_state: State
    from_term: int
    term: int
    reason: str
    event: str
    code: Why = Why.FIRST_START
