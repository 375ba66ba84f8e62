"""Actions: what the daemons must do, as data; and Step, what `step()` returns. The daemons
carry out each action (one executor per action type) and feed its result back as an event."""

from __future__ import annotations

from dataclasses import dataclass

from failover.machine.model import FenceMethod, NodeState, Role, ScriptKind, Transition


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
    """Slave: probe the master's service now instead of at the next interval; `timeout`, when
    set, bounds that probe below REMOTE_POP3_TIMEOUT (its answer is needed by then)."""

    timeout: float | None = None


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
