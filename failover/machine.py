"""The failover state machine: every decision of both agents, and nothing else.

Pure: no I/O, no clock reads, no randomness. Time arrives only inside events (``now`` is a
monotonic reading taken by the daemon). ``step(policy, state, event)`` returns the next state,
the actions to execute and, when something changed, a ``Transition`` with a human-readable
reason. The daemons persist the new state, journal the transition, then execute the actions;
the results of those actions come back as events.

The protocol is written as one table, ``(role, state, event type) -> handler``. An event type
that the role can receive but the table does not list for the current state is ignored (the
state is kept and nothing is done); an event type that the role can never receive raises
``MachineError``, whose message names role, state and event.
"""

from __future__ import annotations

import dataclasses

from failover import master_rules as m
from failover import operator_rules as op
from failover import slave_rules as sl
from failover.model import (
    GROUP_WORD,
    HOLDABLE,
    Action,
    Alert,
    Answer,
    CheckService,
    ClockJump,
    Condition,
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
    Observation,
    OnAckTimeout,
    OperatorRequest,
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
    Step,
    SwitchbackStart,
    SwitchbackStop,
    SwitchoverRequested,
    Tick,
    Transition,
    Trigger,
    initial_state,
)
from failover.steps import Handler, ignore


class MachineError(Exception):
    """An event the role can never receive: a bug in the daemon that fed it."""

    def __init__(self, role: Role, state: State, event: Event) -> None:
        super().__init__(f"the {role} in state {state} cannot receive {type(event).__name__}: {event!r}")
        self.role, self.state, self.event = role, state, event


# --------------------------------------------------------------------------------------------
# The table. Keys missing here for an event type the role can receive: ignored.

_M, _S = Role.MASTER, Role.SLAVE
_TABLE: dict[tuple[Role, State, type[Event]], Handler] = {
    # master: watching and restarting its own service
    (_M, State.ACTIVE, Started): m.started_active,
    (_M, State.RESTARTING, Started): m.started_restarting,
    (_M, State.STOPPING, Started): m.started_stopping,
    (_M, State.STARTING, Started): sl.started_starting,
    (_M, State.ACTIVE, LocalHealth): m.health_active,
    (_M, State.STOPPING, LocalHealth): m.record_health,
    (_M, State.INACTIVE, LocalHealth): m.health_inactive,
    (_M, State.FAILED, LocalHealth): m.record_health,
    (_M, State.MAINTENANCE, LocalHealth): m.record_health,
    (_M, State.RESTARTING, ScriptsFinished): m.restart_scripts_finished,
    (_M, State.RESTARTING, ServiceChecked): m.restart_checked,
    # master: shutdown requests and stopping
    (_M, State.ACTIVE, ShutdownRequested): m.shutdown_active,
    (_M, State.RESTARTING, ShutdownRequested): m.shutdown_active,
    (_M, State.STOPPING, ShutdownRequested): m.shutdown_stopping,
    (_M, State.INACTIVE, ShutdownRequested): m.shutdown_inactive,
    (_M, State.FAILED, ShutdownRequested): m.shutdown_failed,
    (_M, State.MAINTENANCE, ShutdownRequested): m.shutdown_held,
    (_M, State.STOPPING, ScriptsFinished): m.stopping_scripts_finished,
    (_M, State.STOPPING, ServiceChecked): m.stopping_service_checked,
    # master: terms
    (_M, State.ACTIVE, PeerReport): m.step_down_on_higher_term,
    (_M, State.RESTARTING, PeerReport): m.step_down_on_higher_term,
    (_M, State.STOPPING, PeerReport): m.peer_report_other,
    (_M, State.INACTIVE, PeerReport): m.peer_report_other,
    (_M, State.FAILED, PeerReport): m.peer_report_other,
    (_M, State.STARTING, PeerReport): m.peer_report_other,
    (_M, State.MAINTENANCE, PeerReport): m.peer_report_held,
    # master: switchback start
    (_M, State.INACTIVE, SwitchbackStart): op.switchback_start,
    (_M, State.STARTING, ScriptsFinished): sl.starting_scripts_finished,
    (_M, State.STARTING, ServiceChecked): sl.starting_service_checked,
    (_M, State.ACTIVE, ScriptsFinished): sl.after_hooks_finished,
    # slave: watching
    (_S, State.STANDBY, Started): sl.started_watching,
    (_S, State.SUSPECT, Started): sl.started_watching,
    (_S, State.PREPARING, Started): sl.started_preparing,
    (_S, State.STANDBY, ProbeResult): sl.probe,
    (_S, State.SUSPECT, ProbeResult): sl.probe,
    (_S, State.STANDBY, PeerReport): sl.heartbeat_watching,
    (_S, State.SUSPECT, PeerReport): sl.heartbeat_watching,
    (_S, State.STANDBY, Tick): sl.tick_watching,
    (_S, State.SUSPECT, Tick): sl.tick_watching,
    (_S, State.ACTIVE, Tick): sl.tick_watching,
    (_S, State.PREPARING, ScriptsFinished): sl.preparing_scripts_finished,
    # slave: failing over
    (_S, State.FAILING_OVER, Started): sl.started_failing_over,
    (_S, State.FENCING, Started): sl.started_fencing,
    (_S, State.STARTING, Started): sl.started_starting,
    (_S, State.STOPPING, Started): m.started_stopping,
    (_S, State.FAILING_OVER, ShutdownAnswered): sl.answered,
    (_S, State.FENCING, ShutdownAnswered): sl.answered,
    (_S, State.FAILING_OVER, Tick): sl.tick_failing_over,
    (_S, State.FENCING, Tick): sl.tick_fencing,
    (_S, State.FAILING_OVER, FenceConfirmed): sl.fence_confirmed,
    (_S, State.FENCING, FenceConfirmed): sl.fence_confirmed,
    (_S, State.FENCING, FenceResult): sl.fence_result,
    (_S, State.STARTING, ScriptsFinished): sl.starting_scripts_finished,
    (_S, State.STARTING, ServiceChecked): sl.starting_service_checked,
    (_S, State.ACTIVE, ScriptsFinished): sl.after_hooks_finished,
    (_S, State.STANDBY, ScriptsFinished): sl.after_hooks_finished,
    (_S, State.SUSPECT, ScriptsFinished): sl.after_hooks_finished,
    (_S, State.STOPPING, ScriptsFinished): m.stopping_scripts_finished,
    (_S, State.STOPPING, ServiceChecked): m.stopping_service_checked,
    (_S, State.ACTIVE, LocalHealth): m.record_health,
    (_S, State.MAINTENANCE, LocalHealth): m.record_health,
    # slave: terms
    (_S, State.ACTIVE, PeerReport): sl.heartbeat_active,
    (_S, State.MAINTENANCE, PeerReport): sl.heartbeat_other,
    (_S, State.PREPARING, PeerReport): sl.heartbeat_other,
    (_S, State.FAILING_OVER, PeerReport): sl.heartbeat_other,
    (_S, State.FENCING, PeerReport): sl.heartbeat_other,
    (_S, State.STARTING, PeerReport): sl.heartbeat_other,
    (_S, State.STOPPING, PeerReport): sl.heartbeat_other,
    (_S, State.FAILED, PeerReport): sl.heartbeat_other,
    # slave: operator
    (_S, State.STANDBY, SwitchoverRequested): op.switchover,
    (_S, State.SUSPECT, SwitchoverRequested): op.switchover,
    (_S, State.ACTIVE, SwitchbackStop): op.switchback_stop,
}
for _role, _state in GROUP_WORD:
    if _role is _S:
        _TABLE[(_S, _state, LoadBalancerDone)] = sl.load_balancer_done
        _TABLE[(_S, _state, Reachability)] = sl.reachability
    else:
        _TABLE[(_M, _state, LoadBalancerDone)] = sl.load_balancer_done
    for _request in (SwitchoverRequested, SwitchbackStop, SwitchbackStart):
        _TABLE.setdefault((_role, _state, _request), op.refuse_busy)
    _TABLE[(_role, _state, HoldRequested)] = op.hold
    _TABLE[(_role, _state, ReleaseRequested)] = op.release
_TABLE[(_S, State.MAINTENANCE, SwitchbackStop)] = op.switchback_stop_done
for _state in (State.ACTIVE, State.RESTARTING):
    _TABLE[(_M, _state, Reachability)] = m.reachability
    _TABLE[(_M, _state, Tick)] = m.tick_active
    _TABLE[(_M, _state, ClockJump)] = m.clock_jump

_OPERATOR = frozenset({HoldRequested, ReleaseRequested, SwitchoverRequested, SwitchbackStop, SwitchbackStart})
_COMMON = frozenset({Started, Tick, LocalHealth, Reachability, ClockJump, ScriptsFinished, ServiceChecked, PeerReport})
# Every event type each role can receive. The rest raise MachineError.
EVENTS_OF: dict[Role, frozenset[type[Event]]] = {
    Role.MASTER: _COMMON | _OPERATOR | {ShutdownRequested, LoadBalancerDone},
    Role.SLAVE: _COMMON | _OPERATOR | {ProbeResult, ShutdownAnswered, FenceConfirmed, FenceResult, LoadBalancerDone},
}


def stale(node: NodeState, observation: Observation) -> bool:
    """Whether the check began before the current state was entered (see Observation)."""
    taken = observation.taken
    return taken is not None and node.entered is not None and taken < node.entered


def step(policy: Policy, node: NodeState, event: Event) -> Step:
    """Decide what `event` means for `node`: the next state, the actions, the transition."""
    if type(event) not in EVENTS_OF[node.role]:
        raise MachineError(node.role, node.state, event)
    if isinstance(event, Observation) and stale(node, event):
        return Step(node)
    handler = _TABLE.get((node.role, node.state, type(event)), ignore)
    result = handler(policy, node, event)
    if result.state.state is not node.state or isinstance(event, Started):
        # a new state (or a new boot): observations begun before this moment are stale
        result = dataclasses.replace(result, state=dataclasses.replace(result.state, entered=event.now))
    if result.transition is None and result.state.term != node.term:
        # A term is never forgotten: a learned term is journaled like any transition.
        reason = f"learned term {result.state.term} from {type(event).__name__}"
        result = dataclasses.replace(
            result,
            state=dataclasses.replace(result.state, reason=reason),
            transition=Transition(node.state, node.state, node.term, result.state.term, reason, type(event).__name__),
        )
    if policy.notify and result.transition is not None:
        result = dataclasses.replace(result, actions=(*result.actions, Notify(result.transition)))
    return result


__all__ = [
    "EVENTS_OF",
    "GROUP_WORD",
    "HOLDABLE",
    "Action",
    "Alert",
    "Answer",
    "CheckService",
    "ClockJump",
    "Condition",
    "Event",
    "Fence",
    "FenceConfirmed",
    "FenceMethod",
    "FenceResult",
    "HoldRequested",
    "LbEnable",
    "LbFence",
    "LoadBalancerDone",
    "LocalHealth",
    "MachineError",
    "NodeState",
    "Notify",
    "Observation",
    "OnAckTimeout",
    "OperatorRequest",
    "PeerReport",
    "Policy",
    "ProbeNow",
    "ProbeResult",
    "Reachability",
    "ReleaseRequested",
    "Reply",
    "Role",
    "RunScripts",
    "ScriptKind",
    "ScriptsFinished",
    "SendHeartbeat",
    "SendShutdown",
    "ServiceChecked",
    "ShutdownAnswered",
    "ShutdownRequested",
    "Started",
    "State",
    "Step",
    "SwitchbackStart",
    "SwitchbackStop",
    "SwitchoverRequested",
    "Tick",
    "Transition",
    "Trigger",
    "initial_state",
    "step",
]
