"""Events: what the daemons observed, handed to `step()`. Frozen, and each validates itself, so
a malformed event cannot be built (the daemon that tried has a bug). `now` is a monotonic reading
taken by the daemon; nothing here reads a clock."""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from failover.machine.model import MAX_TERM, Condition, FenceMethod, Role, ScriptKind, State


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
    # the stream: how long the peer had heard nothing from us when it sent this (contact is
    # two-way: failover.machine.lease.heard); TCP exchanges are two-way by nature: 0
    peer_silent: float = 0.0

    def __post_init__(self) -> None:
        super().__post_init__()
        _check_term(self.term)
        if not self.peer_silent >= 0:  # infinite: it never heard us (NaN fails)
            raise ValueError(f"peer_silent must be a non-negative number, got {self.peer_silent}")


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
    """The outcome of LbFence / LbEnable. `fenced`: the role whose server the load balancer has
    confirmed MAINT (a claiming slave with a lease waits on it; otherwise informational).
    `granted`: the slave's stream's receive time of the newest heartbeat it acknowledged with
    GRANTS_LEASE, read after the confirmation (None: unknown, so no earlier than now)."""

    what: str
    ok: bool
    detail: str = ""
    fenced: Role | None = None
    granted: float | None = None

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.fenced is not None and not self.ok:
            raise ValueError("a failed load-balancer change confirms no fence")
        if self.granted is not None and not math.isfinite(self.granted):
            raise ValueError(f"granted must be a finite reading, got {self.granted}")


@dataclass(frozen=True)
class LeaseExpired(Event):
    """Master: its lease ended at `until` (monotonic) and the lease guard killed the service
    hard (`detail` says how, and whether it was verified down)."""

    until: float
    detail: str = ""

    def __post_init__(self) -> None:
        super().__post_init__()
        _check_now(self.until)
