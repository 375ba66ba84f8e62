"""The issue-5 decisions of failover.machine: local restarts, hooks, hold, switchover, switchback."""

from __future__ import annotations

import dataclasses

import pytest

from failover.machine import (
    Alert,
    Answer,
    CheckService,
    Condition,
    Event,
    Hold,
    HoldRequested,
    LbEnable,
    LocalHealth,
    NodeState,
    Notify,
    PeerReport,
    Policy,
    ProbeResult,
    ReleaseRequested,
    Reply,
    Role,
    RunScripts,
    ScriptKind,
    ScriptsFinished,
    SendHeartbeat,
    SendShutdown,
    ServiceChecked,
    ShutdownRequested,
    Started,
    State,
    Step,
    SwitchbackStart,
    SwitchbackStop,
    SwitchoverRequested,
    Tick,
    Trigger,
    initial_state,
    step,
)
from tests.unit.test_machine import kinds, node
from tests.unit.test_machine import run as run_events

M, S = Role.MASTER, Role.SLAVE
P = Policy(probe_failures=3, ack_timeout=10.0, restart_limit=2, restart_window=100.0)
HOOKED = dataclasses.replace(
    P, prepare=frozenset({Trigger.ABNORMAL_SHUTDOWN, Trigger.SWITCHOVER}), after_hooks=True, sync_failure_hooks=True
)


def run(n: NodeState, *events: object, policy: Policy = P) -> list[Step]:
    return run_events(n, *events, policy=policy)


# ---------------------------------------------------------------------------- master: local restarts


def heard(now: float) -> PeerReport:
    """The slave answered a heartbeat: STANDBY in term 0."""
    return PeerReport(now, term=0, state=State.STANDBY)


def die_and_restart(n: NodeState, now: float, policy: Policy = P) -> list[Step]:
    """The slave answers, then the service dies; if the master restarts it, the restart works."""
    steps = run(n, heard(now - 0.5), LocalHealth(now, False, "pid gone"), policy=policy)
    if steps[-1].state.state is State.RESTARTING:
        steps += run(
            steps[-1].state,
            ScriptsFinished(now + 0.1, ScriptKind.RESTART, True),
            ServiceChecked(now + 0.2, True, "+OK"),
            policy=policy,
        )
    return steps


@pytest.mark.parametrize(("deaths", "failed"), [(1, False), (2, False), (3, True)])
def test_the_restart_limit_counts_deaths_within_the_window(deaths: int, failed: bool) -> None:
    n = step(P, initial_state(M), LocalHealth(0, True)).state
    for i in range(deaths):
        steps = die_and_restart(n, 10.0 * (i + 1))
        n = steps[-1].state
    assert (n.condition is Condition.FAILED) is failed
    assert n.state is State.ACTIVE
    if failed:
        assert "abnormal shutdown" in n.reason and "after 2 local restarts" in n.reason
    else:
        assert n.condition is Condition.UP and len(n.restarts) == deaths


def test_a_restart_starts_the_restart_scripts_and_tells_the_slave() -> None:
    s = run(initial_state(M), heard(4), LocalHealth(5, False, "pid gone"))[-1]
    assert s.state.state is State.RESTARTING and s.state.condition is Condition.RESTARTING
    assert kinds(s) == [SendHeartbeat, RunScripts] and s.actions[1] == RunScripts(ScriptKind.RESTART)
    assert "1/2" in s.state.reason


def test_restarts_outside_the_window_are_forgotten() -> None:
    n = initial_state(M)
    for now in (10.0, 20.0, 200.0, 210.0):  # two, then the window passes, then two more
        n = die_and_restart(n, now)[-1].state
    assert n.condition is Condition.UP and n.restarts == (200.0, 210.0)


def test_without_the_slave_the_master_does_not_restart_its_service() -> None:
    """A slave that does not answer may be taking over: a restart could undo a fence."""
    for n in (initial_state(M), step(P, initial_state(M), heard(1)).state):
        s = step(P, n, LocalHealth(30, False, "pid gone"))
        assert s.state.state is State.ACTIVE and s.state.condition is Condition.FAILED
        assert "does not answer, so no local restart" in s.state.reason


def test_a_failed_restart_counts_and_ends_in_abnormal_shutdown() -> None:
    n = run(initial_state(M), heard(0.5), LocalHealth(1, False, "pid gone"))[-1].state
    for now in (2.0, 3.0):
        n = run(n, ScriptsFinished(now, ScriptKind.RESTART, True), ServiceChecked(now, False, "refused"))[-1].state
    assert n.state is State.ACTIVE and n.condition is Condition.FAILED


def test_a_clean_stop_is_a_normal_shutdown_and_is_not_restarted() -> None:
    s = step(P, initial_state(M), LocalHealth(1, False, "no pid file", clean=True))
    assert s.state.condition is Condition.STOPPED and kinds(s) == [SendHeartbeat]
    assert "normal shutdown" in s.state.reason


def test_a_shutdown_request_while_restarting_stops_the_service() -> None:
    n = run(initial_state(M), heard(0.5), LocalHealth(1, False))[-1].state
    s = step(P, n, ShutdownRequested(2, term=1))
    assert s.state.state is State.STOPPING and s.state.term == 1


# ---------------------------------------------------------------------------- hooks


def test_a_trigger_with_hooks_runs_them_before_claiming_a_term() -> None:
    hb = PeerReport(1, term=0, state=State.ACTIVE, service_ok=False, condition=Condition.FAILED)
    _, s2 = run(initial_state(S), hb, ProbeResult(1.1, False, "refused"), policy=HOOKED)
    assert s2.state.state is State.PREPARING and s2.state.term == 0
    assert s2.actions == (RunScripts(ScriptKind.BEFORE_FAILOVER),)
    claim = step(HOOKED, s2.state, ScriptsFinished(2, ScriptKind.BEFORE_FAILOVER, True, "ok"))
    assert claim.state.state is State.FAILING_OVER and claim.state.term == 1 and kinds(claim) == [SendShutdown]


def test_a_failing_required_before_hook_stops_the_failover_and_holds() -> None:
    n = node(S, State.PREPARING, trigger=Trigger.ABNORMAL_SHUTDOWN)
    s = step(HOOKED, n, ScriptsFinished(2, ScriptKind.BEFORE_FAILOVER, False, "exit 3"))
    assert s.state.state is State.MAINTENANCE and s.state.term == 0 and kinds(s) == [Alert]
    assert (
        "BEFORE_FAILOVER_SCRIPTS failed" in s.state.reason
        and s.state.hold is not None
        and s.state.hold.held_from is State.STANDBY
    )


def test_a_failing_before_hook_that_is_not_required_goes_on() -> None:
    policy = dataclasses.replace(HOOKED, before_required=False)
    n = node(S, State.PREPARING, trigger=Trigger.ABNORMAL_SHUTDOWN)
    s = step(policy, n, ScriptsFinished(2, ScriptKind.BEFORE_FAILOVER, False, "exit 3"))
    assert s.state.state is State.FAILING_OVER and "not required" in s.state.reason


def test_after_hooks_run_once_the_service_answers_and_their_failure_only_alerts() -> None:
    n = node(S, State.STARTING, term=1, scripts_done=True)
    s = step(HOOKED, n, ServiceChecked(5, True, "+OK"))
    assert s.state.state is State.ACTIVE and s.actions == (RunScripts(ScriptKind.AFTER_FAILOVER),)
    failed = step(HOOKED, s.state, ScriptsFinished(6, ScriptKind.AFTER_FAILOVER, False, "exit 1"))
    assert failed.state.state is State.ACTIVE and kinds(failed) == [Alert]


def test_the_master_runs_its_before_hooks_before_its_shutdown_scripts() -> None:
    s = step(HOOKED, initial_state(M), ShutdownRequested(1, term=1))
    assert s.actions == (RunScripts(ScriptKind.BEFORE_FAILOVER), RunScripts(ScriptKind.SHUTDOWN))


def test_lost_heartbeats_run_the_sync_failure_hooks_once() -> None:
    n = step(HOOKED, initial_state(S), Started(0)).state
    steps = run(n, Tick(5), Tick(16), Tick(17), Tick(30), policy=HOOKED)
    assert [RunScripts(ScriptKind.SYNC_FAILURE) in s.actions for s in steps] == [False, True, False, False]
    back = step(HOOKED, steps[-1].state, PeerReport(31, term=0, state=State.ACTIVE, service_ok=True))
    assert not back.state.heartbeats_lost


def test_notify_follows_every_transition_when_configured() -> None:
    policy = dataclasses.replace(P, notify=True)
    s = step(policy, initial_state(M), HoldRequested(1, by="ops@m", reason="patching"))
    assert isinstance(s.actions[-1], Notify) and s.actions[-1].transition == s.transition
    assert not any(isinstance(a, Notify) for a in step(policy, s.state, LocalHealth(2, True)).actions)


# ---------------------------------------------------------------------------- hold and release


@pytest.mark.parametrize(("role", "state"), [(M, State.ACTIVE), (M, State.INACTIVE), (S, State.STANDBY)])
def test_hold_then_release_returns_to_where_it_was(role: Role, state: State) -> None:
    n = node(role, state, term=2)
    held = step(P, n, HoldRequested(1, by="ops@h", reason="patching", since="2026-11-23T10:00:00"))
    assert held.state.state is State.MAINTENANCE and held.actions[0] == Answer(True, held.actions[0].message)  # type: ignore[attr-defined]
    assert held.state.hold == Hold(state, "ops@h", "2026-11-23T10:00:00", "patching") and "(held)" in held.state.group
    released = step(P, held.state, ReleaseRequested(2, by="ops@h"))
    assert released.state.state is state and released.state.hold is None and released.state.term == 2


def test_a_hold_is_refused_in_the_middle_of_a_failover() -> None:
    s = step(P, node(S, State.FAILING_OVER, term=1), HoldRequested(1, by="ops"))
    assert s.transition is None and s.actions[0] == Answer(False, s.actions[0].message)  # type: ignore[attr-defined]
    assert isinstance(s.actions[0], Answer) and "under way" in s.actions[0].message


def test_a_held_pair_takes_no_automatic_action() -> None:
    master = step(P, initial_state(M), HoldRequested(1, by="ops")).state
    for automatic in (LocalHealth(2, False, "pid gone"), Tick(1e6)):
        s = step(P, master, automatic)
        assert s.state.state is State.MAINTENANCE and s.actions == ()
    refused = step(P, master, ShutdownRequested(3, term=1))
    assert refused.actions[0] == Reply(1, False, refused.actions[0].detail)  # type: ignore[attr-defined]
    slave = step(P, initial_state(S), HoldRequested(1, by="ops")).state
    hb = PeerReport(2, term=0, state=State.ACTIVE, service_ok=False, condition=Condition.FAILED)
    events: list[Event] = [hb, *(ProbeResult(t, False) for t in (3, 4, 5, 6)), Tick(100)]
    for e in events:
        s = step(P, slave, e)
        assert s.state.state is State.MAINTENANCE and s.actions == ()
        slave = s.state


def test_a_held_active_master_still_steps_down_when_deposed() -> None:
    held = step(P, initial_state(M), HoldRequested(1, by="ops")).state
    s = step(P, held, PeerReport(2, term=1, state=State.ACTIVE))
    assert s.state.state is State.STOPPING and s.state.hold is None


def test_a_restarted_agent_stays_held() -> None:
    held = step(P, initial_state(S), HoldRequested(1, by="ops")).state
    assert step(P, held, Started(2)).state.state is State.MAINTENANCE


# ---------------------------------------------------------------------------- switchover and switchback


def test_switchover_claims_a_term_like_a_failover_and_answers() -> None:
    s = step(P, initial_state(S), SwitchoverRequested(1, by="ops", reason="planned"))
    assert s.state.state is State.FAILING_OVER and s.state.term == 1 and s.state.trigger is Trigger.SWITCHOVER
    assert kinds(s) == [Answer, SendShutdown] and s.actions[0].ok  # type: ignore[attr-defined]


def test_switchover_runs_the_before_hooks_first() -> None:
    s = step(HOOKED, initial_state(S), SwitchoverRequested(1, by="ops"))
    assert s.state.state is State.PREPARING and kinds(s) == [Answer, RunScripts]


@pytest.mark.parametrize("state", [State.ACTIVE, State.FAILING_OVER, State.MAINTENANCE])
def test_switchover_is_refused_unless_the_slave_is_watching(state: State) -> None:
    s = step(P, node(S, state, term=1, hold=Hold(State.STANDBY, "ops")), SwitchoverRequested(1, by="ops"))
    assert s.transition is None and kinds(s) == [Answer] and not s.actions[0].ok  # type: ignore[attr-defined]


def test_switchback_round_trip() -> None:
    slave = node(S, State.ACTIVE, term=1, service_ok=True)
    master = node(M, State.INACTIVE, term=1)
    stop = step(P, slave, SwitchbackStop(1, by="ops"))
    assert stop.state.state is State.STOPPING and kinds(stop) == [Answer, RunScripts]
    stopped = run(stop.state, ScriptsFinished(2, ScriptKind.SHUTDOWN, True), ServiceChecked(3, False, "refused"))
    slave = stopped[-1].state
    assert slave.state is State.MAINTENANCE and slave.hold is not None and slave.hold.reason == "switchback in progress"
    start = step(P, master, SwitchbackStart(4, by="ops", peer_term=1, peer_state=slave.state, peer_service_down=True))
    assert start.state.state is State.STARTING and start.state.term == 2 and kinds(start) == [Answer, RunScripts]
    lb = dataclasses.replace(P, load_balancer=True)
    active = run(start.state, ScriptsFinished(5, ScriptKind.STARTUP, True), ServiceChecked(6, True), policy=lb)[-1]
    assert active.state.state is State.ACTIVE and active.state.term == 2 and active.actions == (LbEnable(M),)
    learned = step(P, slave, PeerReport(7, term=2, state=State.ACTIVE))
    assert learned.state.term == 2 and learned.state.state is State.MAINTENANCE
    assert step(P, learned.state, ReleaseRequested(8, by="ops")).state.state is State.STANDBY


@pytest.mark.parametrize(
    "event",
    [
        SwitchbackStart(1, by="ops", peer_term=1, peer_state=State.ACTIVE, peer_service_down=True),
        SwitchbackStart(1, by="ops", peer_term=1, peer_state=State.MAINTENANCE, peer_service_down=False),
        SwitchbackStart(1, by="ops", peer_term=0, peer_state=State.MAINTENANCE, peer_service_down=True),
    ],
)
def test_the_master_refuses_to_start_while_the_slave_may_serve(event: SwitchbackStart) -> None:
    s = step(P, node(M, State.INACTIVE, term=1), event)
    assert s.transition is None and kinds(s) == [Answer] and not s.actions[0].ok  # type: ignore[attr-defined]


def test_a_resumed_switchback_stop_is_idempotent() -> None:
    held = node(S, State.MAINTENANCE, term=1, hold=Hold(State.STANDBY, "ops"), service_ok=False)
    s = step(P, held, SwitchbackStop(1, by="ops"))
    assert s.transition is None and s.actions[0].ok  # type: ignore[attr-defined]


def test_a_master_restarted_while_starting_checks_first() -> None:
    s = step(P, node(M, State.STARTING, term=2), Started(1))
    assert s.state.state is State.STARTING and s.actions == (CheckService(expect_up=True),)
