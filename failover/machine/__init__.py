"""The failover state machine: every decision of both agents, and nothing else.

Two rules, as in h11's _state.py:
1. Everything that affects a decision lives in this package: the table below, the rules it
   names, and the vocabulary (model.py, events.py, actions.py). The daemons only turn what they
   observe into events, persist what `step()` returns, then carry out its actions.
2. Nothing here does I/O or reads a clock (tests/unit/test_machine_structure.py enforces it): time
   arrives only inside events (`now`, a monotonic reading taken by the daemon).

`step(policy, node, event)` returns the next NodeState, the actions to execute and, when
something changed, a Transition with a reason (text) and its code. The protocol is ONE literal
table, (role, state, event type) -> rule, read top to bottom: a row per event a state handles.
An event type the role can receive but the table does not list for the state is ignored (the
state is kept, nothing is done); one the role can never receive raises MachineError, whose
message names role, state and event. `row()` checks with mypy that each rule takes its event.
The invariants both machines keep together are in invariants.py.
"""

from __future__ import annotations

import dataclasses

from failover.errors import FailoverError
from failover.machine import claim, lease, terms, watch
from failover.machine import operator as op
from failover.machine import startstop as ss
from failover.machine import triggers as trig
from failover.machine.actions import (
    Action,
    Alert,
    Answer,
    CheckService,
    Fence,
    LbEnable,
    LbFence,
    Notify,
    ProbeNow,
    Reply,
    RunScripts,
    SendHeartbeat,
    SendShutdown,
    Step,
)
from failover.machine.events import (
    ClockJump,
    Event,
    FenceConfirmed,
    FenceResult,
    HoldRequested,
    LeaseExpired,
    LoadBalancerDone,
    LocalHealth,
    Observation,
    OperatorRequest,
    PeerReport,
    ProbeResult,
    Reachability,
    ReleaseRequested,
    ScriptsFinished,
    ServiceChecked,
    ShutdownAnswered,
    ShutdownRequested,
    Started,
    SwitchbackStart,
    SwitchbackStop,
    SwitchoverRequested,
    Tick,
)
from failover.machine.model import (
    GROUP_WORD,
    HOLDABLE,
    MAX_TERM,
    Changes,
    Condition,
    FenceMethod,
    Hold,
    NodeState,
    OnAckTimeout,
    Policy,
    Role,
    ScriptKind,
    State,
    Transition,
    Trigger,
    Why,
    initial_state,
)
from failover.machine.steps import Handler, Key, ignore, row


class MachineError(FailoverError):
    """An event the role can never receive: a bug in the daemon that fed it."""

    def __init__(self, role: Role, state: State, event: Event) -> None:
        super().__init__(f"the {role} in state {state} cannot receive {type(event).__name__}: {event!r}")
        self.role, self.state, self.event = role, state, event


M, S = Role.MASTER, Role.SLAVE
ACTIVE, STOPPING, INACTIVE, FAILED, MAINTENANCE = (
    State.ACTIVE,
    State.STOPPING,
    State.INACTIVE,
    State.FAILED,
    State.MAINTENANCE,
)
STANDBY, SUSPECT, PREPARING, FAILING_OVER, FENCING, STARTING, RESTARTING = (
    State.STANDBY,
    State.SUSPECT,
    State.PREPARING,
    State.FAILING_OVER,
    State.FENCING,
    State.STARTING,
    State.RESTARTING,
)

# --------------------------------------------------------------------------------------------
# THE TABLE: (role, state, event type) -> rule. Missing rows for an event the role can receive:
# ignored. watch: the master's own service; trig: the slave watching and its triggers; claim:
# the claim and the fence chain; ss: stopping and starting; terms; op: the operator.

TABLE: dict[Key, Handler] = dict(
    [
        # master ACTIVE
        row(M, ACTIVE, Started, watch.started_active),
        row(M, ACTIVE, Tick, watch.tick_active),
        row(M, ACTIVE, ClockJump, watch.clock_jump),
        row(M, ACTIVE, LocalHealth, watch.health_active),
        row(M, ACTIVE, PeerReport, terms.step_down_on_higher_term),
        row(M, ACTIVE, Reachability, watch.reachability),
        row(M, ACTIVE, ShutdownRequested, ss.shutdown_active),
        row(M, ACTIVE, ScriptsFinished, ss.after_hooks_finished),
        row(M, ACTIVE, LoadBalancerDone, ss.load_balancer_done),
        row(M, ACTIVE, LeaseExpired, lease.lease_expired),
        row(M, ACTIVE, HoldRequested, op.hold),
        row(M, ACTIVE, ReleaseRequested, op.release),
        row(M, ACTIVE, SwitchoverRequested, op.refuse_busy),
        row(M, ACTIVE, SwitchbackStop, op.refuse_busy),
        row(M, ACTIVE, SwitchbackStart, op.refuse_busy),
        # master RESTARTING
        row(M, RESTARTING, Started, watch.started_restarting),
        row(M, RESTARTING, Tick, watch.tick_active),
        row(M, RESTARTING, ClockJump, watch.clock_jump),
        row(M, RESTARTING, PeerReport, terms.step_down_on_higher_term),
        row(M, RESTARTING, Reachability, watch.reachability),
        row(M, RESTARTING, ShutdownRequested, ss.shutdown_active),
        row(M, RESTARTING, ScriptsFinished, watch.restart_scripts_finished),
        row(M, RESTARTING, ServiceChecked, watch.restart_checked),
        row(M, RESTARTING, LoadBalancerDone, ss.load_balancer_done),
        row(M, RESTARTING, LeaseExpired, lease.lease_expired),
        row(M, RESTARTING, HoldRequested, op.hold),
        row(M, RESTARTING, ReleaseRequested, op.release),
        row(M, RESTARTING, SwitchoverRequested, op.refuse_busy),
        row(M, RESTARTING, SwitchbackStop, op.refuse_busy),
        row(M, RESTARTING, SwitchbackStart, op.refuse_busy),
        # master STOPPING
        row(M, STOPPING, Started, ss.started_stopping),
        row(M, STOPPING, LocalHealth, watch.record_health),
        row(M, STOPPING, PeerReport, terms.peer_report_other),
        row(M, STOPPING, ShutdownRequested, ss.shutdown_stopping),
        row(M, STOPPING, ScriptsFinished, ss.stopping_scripts_finished),
        row(M, STOPPING, ServiceChecked, ss.stopping_service_checked),
        row(M, STOPPING, LoadBalancerDone, ss.load_balancer_done),
        row(M, STOPPING, HoldRequested, op.hold),
        row(M, STOPPING, ReleaseRequested, op.release),
        row(M, STOPPING, SwitchoverRequested, op.refuse_busy),
        row(M, STOPPING, SwitchbackStop, op.refuse_busy),
        row(M, STOPPING, SwitchbackStart, op.refuse_busy),
        # master INACTIVE
        row(M, INACTIVE, LocalHealth, watch.health_inactive),
        row(M, INACTIVE, PeerReport, terms.peer_report_other),
        row(M, INACTIVE, ShutdownRequested, ss.shutdown_inactive),
        row(M, INACTIVE, LoadBalancerDone, ss.load_balancer_done),
        row(M, INACTIVE, HoldRequested, op.hold),
        row(M, INACTIVE, ReleaseRequested, op.release),
        row(M, INACTIVE, SwitchoverRequested, op.refuse_busy),
        row(M, INACTIVE, SwitchbackStop, op.refuse_busy),
        row(M, INACTIVE, SwitchbackStart, op.switchback_start),
        # master STARTING
        row(M, STARTING, Started, ss.started_starting),
        row(M, STARTING, PeerReport, terms.peer_report_other),
        row(M, STARTING, ScriptsFinished, ss.starting_scripts_finished),
        row(M, STARTING, ServiceChecked, ss.starting_service_checked),
        row(M, STARTING, LoadBalancerDone, ss.load_balancer_done),
        row(M, STARTING, LeaseExpired, lease.lease_expired),
        row(M, STARTING, HoldRequested, op.hold),
        row(M, STARTING, ReleaseRequested, op.release),
        row(M, STARTING, SwitchoverRequested, op.refuse_busy),
        row(M, STARTING, SwitchbackStop, op.refuse_busy),
        row(M, STARTING, SwitchbackStart, op.refuse_busy),
        # master FAILED
        row(M, FAILED, LocalHealth, watch.record_health),
        row(M, FAILED, PeerReport, terms.peer_report_other),
        row(M, FAILED, ShutdownRequested, ss.shutdown_failed),
        row(M, FAILED, LoadBalancerDone, ss.load_balancer_done),
        row(M, FAILED, HoldRequested, op.hold),
        row(M, FAILED, ReleaseRequested, op.release),
        row(M, FAILED, SwitchoverRequested, op.refuse_busy),
        row(M, FAILED, SwitchbackStop, op.refuse_busy),
        row(M, FAILED, SwitchbackStart, op.refuse_busy),
        # master MAINTENANCE
        row(M, MAINTENANCE, LocalHealth, watch.record_health),
        row(M, MAINTENANCE, PeerReport, terms.peer_report_held),
        row(M, MAINTENANCE, ShutdownRequested, ss.shutdown_held),
        row(M, MAINTENANCE, LoadBalancerDone, ss.load_balancer_done),
        row(M, MAINTENANCE, LeaseExpired, lease.lease_expired_held),
        row(M, MAINTENANCE, HoldRequested, op.hold),
        row(M, MAINTENANCE, ReleaseRequested, op.release),
        row(M, MAINTENANCE, SwitchoverRequested, op.refuse_busy),
        row(M, MAINTENANCE, SwitchbackStop, op.refuse_busy),
        row(M, MAINTENANCE, SwitchbackStart, op.refuse_busy),
        # slave STANDBY
        row(S, STANDBY, Started, trig.started_watching),
        row(S, STANDBY, Tick, trig.tick_watching),
        row(S, STANDBY, ProbeResult, trig.probe),
        row(S, STANDBY, PeerReport, trig.heartbeat_watching),
        row(S, STANDBY, Reachability, trig.reachability),
        row(S, STANDBY, ScriptsFinished, ss.after_hooks_finished),
        row(S, STANDBY, LoadBalancerDone, ss.load_balancer_done),
        row(S, STANDBY, HoldRequested, op.hold),
        row(S, STANDBY, ReleaseRequested, op.release),
        row(S, STANDBY, SwitchoverRequested, op.switchover),
        row(S, STANDBY, SwitchbackStop, op.refuse_busy),
        row(S, STANDBY, SwitchbackStart, op.refuse_busy),
        # slave SUSPECT
        row(S, SUSPECT, Started, trig.started_watching),
        row(S, SUSPECT, Tick, trig.tick_watching),
        row(S, SUSPECT, ProbeResult, trig.probe),
        row(S, SUSPECT, PeerReport, trig.heartbeat_watching),
        row(S, SUSPECT, Reachability, trig.reachability),
        row(S, SUSPECT, ScriptsFinished, ss.after_hooks_finished),
        row(S, SUSPECT, LoadBalancerDone, ss.load_balancer_done),
        row(S, SUSPECT, HoldRequested, op.hold),
        row(S, SUSPECT, ReleaseRequested, op.release),
        row(S, SUSPECT, SwitchoverRequested, op.switchover),
        row(S, SUSPECT, SwitchbackStop, op.refuse_busy),
        row(S, SUSPECT, SwitchbackStart, op.refuse_busy),
        # slave PREPARING
        row(S, PREPARING, Started, trig.started_preparing),
        row(S, PREPARING, PeerReport, trig.heartbeat_other),
        row(S, PREPARING, Reachability, trig.reachability),
        row(S, PREPARING, ScriptsFinished, claim.preparing_scripts_finished),
        row(S, PREPARING, LoadBalancerDone, ss.load_balancer_done),
        row(S, PREPARING, HoldRequested, op.hold),
        row(S, PREPARING, ReleaseRequested, op.release),
        row(S, PREPARING, SwitchoverRequested, op.refuse_busy),
        row(S, PREPARING, SwitchbackStop, op.refuse_busy),
        row(S, PREPARING, SwitchbackStart, op.refuse_busy),
        # slave FAILING_OVER
        row(S, FAILING_OVER, Started, claim.started_failing_over),
        row(S, FAILING_OVER, Tick, claim.tick_failing_over),
        row(S, FAILING_OVER, PeerReport, trig.heartbeat_other),
        row(S, FAILING_OVER, Reachability, trig.reachability),
        row(S, FAILING_OVER, ShutdownAnswered, claim.answered),
        row(S, FAILING_OVER, FenceConfirmed, claim.fence_confirmed),
        row(S, FAILING_OVER, LoadBalancerDone, lease.fenced_at_load_balancer),
        row(S, FAILING_OVER, HoldRequested, op.hold),
        row(S, FAILING_OVER, ReleaseRequested, op.release),
        row(S, FAILING_OVER, SwitchoverRequested, op.refuse_busy),
        row(S, FAILING_OVER, SwitchbackStop, op.refuse_busy),
        row(S, FAILING_OVER, SwitchbackStart, op.refuse_busy),
        # slave FENCING
        row(S, FENCING, Started, claim.started_fencing),
        row(S, FENCING, Tick, claim.tick_fencing),
        row(S, FENCING, PeerReport, trig.heartbeat_other),
        row(S, FENCING, Reachability, trig.reachability),
        row(S, FENCING, ShutdownAnswered, claim.answered),
        row(S, FENCING, FenceResult, claim.fence_result),
        row(S, FENCING, FenceConfirmed, claim.fence_confirmed),
        row(S, FENCING, LoadBalancerDone, lease.fenced_at_load_balancer),
        row(S, FENCING, HoldRequested, op.hold),
        row(S, FENCING, ReleaseRequested, op.release),
        row(S, FENCING, SwitchoverRequested, op.refuse_busy),
        row(S, FENCING, SwitchbackStop, op.refuse_busy),
        row(S, FENCING, SwitchbackStart, op.refuse_busy),
        # slave STARTING
        row(S, STARTING, Started, ss.started_starting),
        row(S, STARTING, PeerReport, trig.heartbeat_other),
        row(S, STARTING, Reachability, trig.reachability),
        row(S, STARTING, ScriptsFinished, ss.starting_scripts_finished),
        row(S, STARTING, ServiceChecked, ss.starting_service_checked),
        row(S, STARTING, LoadBalancerDone, ss.load_balancer_done),
        row(S, STARTING, HoldRequested, op.hold),
        row(S, STARTING, ReleaseRequested, op.release),
        row(S, STARTING, SwitchoverRequested, op.refuse_busy),
        row(S, STARTING, SwitchbackStop, op.refuse_busy),
        row(S, STARTING, SwitchbackStart, op.refuse_busy),
        # slave ACTIVE
        row(S, ACTIVE, Tick, trig.tick_watching),
        row(S, ACTIVE, LocalHealth, watch.record_health),
        row(S, ACTIVE, PeerReport, terms.heartbeat_active),
        row(S, ACTIVE, Reachability, trig.reachability),
        row(S, ACTIVE, ScriptsFinished, ss.after_hooks_finished),
        row(S, ACTIVE, LoadBalancerDone, ss.load_balancer_done),
        row(S, ACTIVE, HoldRequested, op.hold),
        row(S, ACTIVE, ReleaseRequested, op.release),
        row(S, ACTIVE, SwitchoverRequested, op.refuse_busy),
        row(S, ACTIVE, SwitchbackStop, op.switchback_stop),
        row(S, ACTIVE, SwitchbackStart, op.refuse_busy),
        # slave STOPPING
        row(S, STOPPING, Started, ss.started_stopping),
        row(S, STOPPING, PeerReport, trig.heartbeat_other),
        row(S, STOPPING, Reachability, trig.reachability),
        row(S, STOPPING, ScriptsFinished, ss.stopping_scripts_finished),
        row(S, STOPPING, ServiceChecked, ss.stopping_service_checked),
        row(S, STOPPING, LoadBalancerDone, ss.load_balancer_done),
        row(S, STOPPING, HoldRequested, op.hold),
        row(S, STOPPING, ReleaseRequested, op.release),
        row(S, STOPPING, SwitchoverRequested, op.refuse_busy),
        row(S, STOPPING, SwitchbackStop, op.refuse_busy),
        row(S, STOPPING, SwitchbackStart, op.refuse_busy),
        # slave FAILED
        row(S, FAILED, PeerReport, trig.heartbeat_other),
        row(S, FAILED, Reachability, trig.reachability),
        row(S, FAILED, LoadBalancerDone, ss.load_balancer_done),
        row(S, FAILED, HoldRequested, op.hold),
        row(S, FAILED, ReleaseRequested, op.release),
        row(S, FAILED, SwitchoverRequested, op.refuse_busy),
        row(S, FAILED, SwitchbackStop, op.refuse_busy),
        row(S, FAILED, SwitchbackStart, op.refuse_busy),
        # slave MAINTENANCE
        row(S, MAINTENANCE, LocalHealth, watch.record_health),
        row(S, MAINTENANCE, PeerReport, trig.heartbeat_other),
        row(S, MAINTENANCE, Reachability, trig.reachability),
        row(S, MAINTENANCE, LoadBalancerDone, ss.load_balancer_done),
        row(S, MAINTENANCE, HoldRequested, op.hold),
        row(S, MAINTENANCE, ReleaseRequested, op.release),
        row(S, MAINTENANCE, SwitchoverRequested, op.refuse_busy),
        row(S, MAINTENANCE, SwitchbackStop, op.switchback_stop_done),
        row(S, MAINTENANCE, SwitchbackStart, op.refuse_busy),
    ]
)

# Every event type each role can receive; any other raises MachineError.
_OPERATOR = frozenset({HoldRequested, ReleaseRequested, SwitchoverRequested, SwitchbackStop, SwitchbackStart})
_COMMON = frozenset({Started, Tick, LocalHealth, Reachability, ClockJump, ScriptsFinished, ServiceChecked, PeerReport})
EVENTS_OF: dict[Role, frozenset[type[Event]]] = {
    Role.MASTER: _COMMON | _OPERATOR | {ShutdownRequested, LoadBalancerDone, LeaseExpired},
    Role.SLAVE: _COMMON | _OPERATOR | {ProbeResult, ShutdownAnswered, FenceConfirmed, FenceResult, LoadBalancerDone},
}


# Every action type each role's rules can emit. Each daemon has exactly one executor per type
# (tests/unit/test_executor.py), and the simulated pair of the property tests one each too.
_ACTIONS = frozenset({RunScripts, CheckService, Alert, Answer, Notify, LbFence, LbEnable})
ACTIONS_OF: dict[Role, frozenset[type[Action]]] = {
    Role.MASTER: _ACTIONS | {Reply, SendHeartbeat},
    Role.SLAVE: _ACTIONS | {SendShutdown, ProbeNow, Fence},
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
    handler = TABLE.get((node.role, node.state, type(event)), ignore)
    result = handler(policy, node, event)
    if result.state.state is not node.state or isinstance(event, Started):
        # a new state (or a new boot): observations begun before this moment are stale
        result = dataclasses.replace(result, state=dataclasses.replace(result.state, entered=event.now))
    if result.transition is None and result.state.term != node.term:
        # A term is never forgotten: a learned term is journaled like any transition.
        reason = f"learned term {result.state.term} from {type(event).__name__}"
        result = dataclasses.replace(
            result,
            state=dataclasses.replace(result.state, reason=reason, code=Why.LEARNED_TERM),
            transition=Transition(
                node.state, node.state, node.term, result.state.term, reason, type(event).__name__, Why.LEARNED_TERM
            ),
        )
    if policy.notify and result.transition is not None:
        result = dataclasses.replace(result, actions=(*result.actions, Notify(result.transition)))
    return result


__all__ = [
    "ACTIONS_OF",
    "EVENTS_OF",
    "GROUP_WORD",
    "HOLDABLE",
    "MAX_TERM",
    "TABLE",
    "Action",
    "Alert",
    "Answer",
    "Changes",
    "CheckService",
    "ClockJump",
    "Condition",
    "Event",
    "Fence",
    "FenceConfirmed",
    "FenceMethod",
    "FenceResult",
    "Hold",
    "HoldRequested",
    "LbEnable",
    "LbFence",
    "LeaseExpired",
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
    "Why",
    "initial_state",
    "step",
]
