"""One test per decision of failover.machine: (role, state, event) -> state, actions, reason."""

from __future__ import annotations

import dataclasses

import pytest

from failover.machine import (
    EVENTS_OF,
    GROUP_WORD,
    Alert,
    CheckService,
    ClockJump,
    Condition,
    FenceConfirmed,
    LocalHealth,
    MachineError,
    NodeState,
    PeerReport,
    Policy,
    ProbeNow,
    ProbeResult,
    Reachability,
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
    Tick,
    Trigger,
    initial_state,
    step,
)

P = Policy(probe_failures=3, ack_timeout=10.0)  # the shipped triggers: abnormal shutdown only
COMM = Policy(probe_failures=3, ack_timeout=10.0, triggers=frozenset({Trigger.COMMUNICATION_LOSS}))
MANUAL = Policy(probe_failures=3, ack_timeout=10.0, triggers=frozenset())
M, S = Role.MASTER, Role.SLAVE


def node(role: Role, state: State, **kw: object) -> NodeState:
    return dataclasses.replace(NodeState(role, state), **kw)  # type: ignore[arg-type]


def run(n: NodeState, *events: object, policy: Policy = P) -> list[Step]:
    steps = []
    for e in events:
        s = step(policy, n, e)  # type: ignore[arg-type]
        steps.append(s)
        n = s.state
    return steps


def kinds(s: Step) -> list[type]:
    return [type(a) for a in s.actions]


# ---------------------------------------------------------------------------- initial states


def test_initial_states() -> None:
    assert initial_state(M).state is State.ACTIVE and initial_state(M).group == "ACTIVE"
    assert initial_state(S).state is State.STANDBY and initial_state(S).group == "STANDBY"


def test_state_must_belong_to_role() -> None:
    with pytest.raises(ValueError, match="INACTIVE is not a state of the slave"):
        NodeState(S, State.INACTIVE)
    with pytest.raises(ValueError, match="STANDBY is not a state of the master"):
        NodeState(M, State.STANDBY)


@pytest.mark.parametrize(
    "make",
    [
        lambda: Tick(now=-1),
        lambda: Tick(now=float("nan")),
        lambda: ShutdownRequested(now=1, term=0),
        lambda: PeerReport(now=1, term=-1, state=State.ACTIVE),
        lambda: FenceConfirmed(now=1, term=1, method=""),
        lambda: ShutdownAnswered(now=1, term=True, ok=True),
    ],
)
def test_events_validate_themselves(make: object) -> None:
    with pytest.raises(ValueError):
        make()  # type: ignore[operator]


def test_event_the_role_never_receives_names_role_state_event() -> None:
    with pytest.raises(MachineError, match=r"the slave in state STANDBY cannot receive ShutdownRequested"):
        step(P, initial_state(S), ShutdownRequested(now=1, term=1))
    with pytest.raises(MachineError, match=r"the master in state ACTIVE cannot receive ProbeResult"):
        step(P, initial_state(M), ProbeResult(now=1, ok=False))


def test_unlisted_event_is_ignored_without_transition() -> None:
    n = initial_state(M)
    s = step(P, n, Tick(now=5))
    assert s.state == n and s.actions == () and s.transition is None


# ---------------------------------------------------------------------------- slave: detection


def test_probe_failures_below_threshold_go_suspect_then_back() -> None:
    s1, s2, s3 = run(
        initial_state(S),
        ProbeResult(1, False, "refused"),
        ProbeResult(2, False, "refused"),
        ProbeResult(3, True, "+OK"),
    )
    assert s1.state.state is State.SUSPECT and s1.state.failures == 1
    assert "1/3" in s1.transition.reason  # type: ignore[union-attr]
    assert s2.state.state is State.SUSPECT and s2.state.failures == 2
    assert s3.state.state is State.STANDBY and s3.state.failures == 0
    assert "answers again" in s3.transition.reason  # type: ignore[union-attr]


def test_communication_loss_claims_a_new_term_and_sends_shutdown() -> None:
    steps = run(initial_state(S), *(ProbeResult(t, False, "timeout") for t in (1, 2, 3)), policy=COMM)
    last = steps[-1]
    assert last.state.state is State.FAILING_OVER and last.state.term == 1
    assert last.actions == (SendShutdown(term=1, timeout=10.0),)
    assert last.state.deadline == 3 + 10.0
    assert "communication loss" in last.transition.reason  # type: ignore[union-attr]
    assert last.transition.from_term == 0 and last.transition.term == 1  # type: ignore[union-attr]


@pytest.mark.parametrize(("policy", "words"), [(P, "communication_loss trigger is disabled"), (MANUAL, "manual mode")])
def test_a_disabled_trigger_never_fails_over_and_says_why_once(policy: Policy, words: str) -> None:
    steps = run(initial_state(S), *(ProbeResult(t, False, "timeout") for t in range(1, 8)), policy=policy)
    assert all(s.state.state is State.SUSPECT and s.state.term == 0 for s in steps)
    assert words in steps[-1].state.reason
    alerts = [a for s in steps for a in s.actions if isinstance(a, Alert)]
    assert len(alerts) == 1  # said once, not on every probe


def test_communication_loss_waits_while_heartbeats_arrive() -> None:
    hb = PeerReport(0.5, term=0, state=State.ACTIVE, service_ok=True, condition=Condition.UP)
    steps = run(initial_state(S), hb, *(ProbeResult(t, False, "timeout") for t in (1, 2, 3, 4)), policy=COMM)
    assert steps[-1].state.state is State.SUSPECT and "heartbeats arrive" in steps[-1].state.reason
    lost = run(steps[-1].state, Tick(16), ProbeResult(16.1, False, "timeout"), policy=COMM)
    assert lost[0].state.heartbeats_lost and "no contact" in lost[0].state.reason
    assert lost[-1].state.state is State.FAILING_OVER


def test_successful_probe_in_standby_is_not_a_transition() -> None:
    s = step(P, initial_state(S), ProbeResult(1, True))
    assert s.transition is None and s.state.failures == 0


def failed_heartbeat(now: float, condition: Condition = Condition.FAILED) -> PeerReport:
    return PeerReport(now, term=0, state=State.ACTIVE, service_ok=False, detail="pid 42 gone", condition=condition)


def test_abnormal_shutdown_then_failed_probe_fails_over_at_once() -> None:
    s1, s2 = run(initial_state(S), failed_heartbeat(1), ProbeResult(1.1, False, "refused"))
    assert s1.state.state is State.SUSPECT and s1.actions == (ProbeNow(),)
    assert s2.state.state is State.FAILING_OVER and s2.state.term == 1
    assert s2.state.trigger is Trigger.ABNORMAL_SHUTDOWN
    assert "abnormal shutdown" in s2.transition.reason  # type: ignore[union-attr]


def test_abnormal_shutdown_after_our_failed_probe_fails_over_at_once() -> None:
    _, s2 = run(initial_state(S), ProbeResult(1, False, "refused"), failed_heartbeat(2))
    assert s2.state.state is State.FAILING_OVER and "abnormal shutdown" in s2.transition.reason  # type: ignore


def test_the_masters_word_alone_never_fails_over() -> None:
    hb = failed_heartbeat(1)
    steps = run(initial_state(S), hb, ProbeResult(2, True), hb, hb, ProbeResult(3, True))
    assert all(s.state.state in (State.STANDBY, State.SUSPECT) for s in steps)
    # the repeated word does not flap the journal
    assert [s.transition is not None for s in steps] == [True, True, False, False, False]


def test_a_restarting_master_is_waited_for() -> None:
    hb = failed_heartbeat(1, Condition.RESTARTING)
    steps = run(initial_state(S), hb, *(ProbeResult(t, False, "refused") for t in (2, 3, 4, 5)))
    assert all(s.state.state in (State.STANDBY, State.SUSPECT) and s.state.term == 0 for s in steps)
    assert "restarting" in steps[-1].state.reason


@pytest.mark.parametrize("enabled", [True, False])
def test_normal_shutdown_trigger(enabled: bool) -> None:
    triggers = frozenset({Trigger.NORMAL_SHUTDOWN}) if enabled else frozenset({Trigger.ABNORMAL_SHUTDOWN})
    policy = Policy(probe_failures=3, ack_timeout=10.0, triggers=triggers)
    stopped = failed_heartbeat(1, Condition.STOPPED)
    last = run(initial_state(S), stopped, ProbeResult(1.1, False, "refused"), policy=policy)[-1]
    assert (last.state.state is State.FAILING_OVER) is enabled
    assert "normal shutdown" in last.state.reason
    agents = PeerReport(1, term=0, state=State.ACTIVE, service_ok=True, condition=Condition.AGENTS_STOPPED)
    assert (step(policy, initial_state(S), agents).state.state is State.FAILING_OVER) is enabled


def test_heartbeat_saying_ok_clears_the_master_word() -> None:
    ok = PeerReport(2, term=0, state=State.ACTIVE, service_ok=True, condition=Condition.UP)
    steps = run(initial_state(S), failed_heartbeat(1), ProbeResult(1.5, True), ok, ProbeResult(3, False))
    assert steps[-1].state.state is State.SUSPECT  # one failure only: back to counting


def test_heartbeat_teaches_the_slave_a_higher_term() -> None:
    s = step(COMM, initial_state(S), PeerReport(1, term=7, state=State.ACTIVE, service_ok=True))
    assert s.state.term == 7 and s.transition is not None and "learned term 7" in s.transition.reason
    claim = run(s.state, *(ProbeResult(t, False) for t in (20, 21, 22)), policy=COMM)[-1]
    assert claim.state.term == 8


def test_restart_while_watching_resets_the_counters() -> None:
    n = node(S, State.SUSPECT, failures=2, master_condition=Condition.FAILED)
    s = step(P, n, Started(50))
    assert s.state.state is State.STANDBY and s.state.failures == 0
    assert s.state.master_condition is Condition.UNKNOWN and s.state.last_heartbeat == 50


# ---------------------------------------------------------------------------- master


def test_shutdown_request_stops_then_acks_with_the_scripts_results() -> None:
    n = initial_state(M)
    s1, s2, s3 = run(
        n,
        ShutdownRequested(1, term=1),
        ScriptsFinished(2, ScriptKind.SHUTDOWN, True, "stop.sh: 0"),
        ServiceChecked(3, False, "port refused, no process"),
    )
    assert s1.state.state is State.STOPPING and s1.state.term == 1 and s1.actions == (RunScripts(ScriptKind.SHUTDOWN),)
    assert s2.actions == (CheckService(expect_up=False),)
    assert s3.state.state is State.INACTIVE and s3.state.group == "INACTIVE"
    (reply,) = s3.actions
    assert isinstance(reply, Reply) and reply.ok and reply.term == 1 and "stop.sh: 0" in reply.detail


def test_failing_stop_script_is_judged_by_the_service_check() -> None:
    s = run(
        initial_state(M),
        ShutdownRequested(1, term=1),
        ScriptsFinished(2, ScriptKind.SHUTDOWN, False, "rc 1"),
        ServiceChecked(3, False, "refused"),
    )[-1]
    assert s.state.state is State.INACTIVE and isinstance(s.actions[0], Reply) and s.actions[0].ok


def test_service_still_up_after_stop_nacks_and_fails() -> None:
    s = run(
        initial_state(M),
        ShutdownRequested(1, term=1),
        ScriptsFinished(2, ScriptKind.SHUTDOWN, True),
        ServiceChecked(3, True, "+OK"),
    )[-1]
    assert s.state.state is State.FAILED and kinds(s) == [Reply, Alert]
    assert not s.actions[0].ok  # type: ignore[attr-defined]


def test_failed_master_retries_on_the_next_request() -> None:
    s = step(P, node(M, State.FAILED, term=1), ShutdownRequested(5, term=1))
    assert s.state.state is State.STOPPING and s.actions == (RunScripts(ScriptKind.SHUTDOWN),)


def test_stale_request_is_refused_in_every_state() -> None:
    for state in (State.ACTIVE, State.STOPPING, State.INACTIVE, State.FAILED):
        n = node(M, state, term=5)
        s = step(P, n, ShutdownRequested(1, term=4 if state is not State.ACTIVE else 5))
        assert s.state == n and len(s.actions) == 1
        assert isinstance(s.actions[0], Reply) and not s.actions[0].ok and "stale" in s.actions[0].detail


def test_duplicate_request_while_stopping_waits_for_the_same_stop() -> None:
    n = node(M, State.STOPPING, term=1)
    assert step(P, n, ShutdownRequested(2, term=1)).actions == ()


def test_inactive_master_acks_again_idempotently() -> None:
    n = node(M, State.INACTIVE, term=1, detail="service verified down")
    s = step(P, n, ShutdownRequested(2, term=1))
    assert s.actions == (Reply(1, True, "service verified down"),) and s.transition is None
    s = step(P, n, ShutdownRequested(2, term=3))
    assert s.state.term == 3 and s.transition is not None  # the learned term is journaled


def test_inactive_master_never_starts_again_on_restart() -> None:
    n = node(M, State.INACTIVE, term=1)
    assert step(P, n, Started(9)).actions == ()


def test_inactive_master_stops_a_service_someone_started() -> None:
    s = step(P, node(M, State.INACTIVE, term=1), LocalHealth(5, True, "+OK"))
    assert s.state.state is State.STOPPING and kinds(s) == [Alert, RunScripts]
    assert "no automatic failback" in s.transition.reason  # type: ignore[union-attr]


def test_a_health_check_begun_before_the_stop_finished_is_ignored_after_it() -> None:
    # Seen in a three-host trial: 5 ms after STOPPING -> INACTIVE, a health result taken before
    # the stop said "running", and the master ran its stop scripts again.
    stopping = node(M, State.STOPPING, term=1, scripts_done=True)
    inactive = step(P, stopping, ServiceChecked(10.0, False, "port refused")).state
    assert inactive.state is State.INACTIVE and inactive.entered == 10.0
    stale = step(P, inactive, LocalHealth(10.005, True, "+OK", taken=9.5))
    assert stale.state == inactive and stale.actions == () and stale.transition is None
    fresh = step(P, inactive, LocalHealth(10.5, True, "+OK", taken=10.2))
    assert fresh.state.state is State.STOPPING  # a check begun after the stop still counts


def test_the_state_entry_time_restarts_with_the_daemon() -> None:
    # monotonic readings of an earlier boot are meaningless: Started resets the entry time
    n = node(M, State.INACTIVE, term=1, entered=5000.0)
    restarted = step(P, n, Started(3.0)).state
    assert restarted.entered == 3.0
    assert step(P, restarted, LocalHealth(4.0, True, "+OK", taken=3.5)).state.state is State.STOPPING


def test_a_probe_begun_before_the_slave_changed_state_is_ignored() -> None:
    suspect = node(S, State.SUSPECT, term=0, failures=1, entered=20.0)
    assert step(COMM, suspect, ProbeResult(20.1, False, "refused", taken=19.9)).state == suspect
    assert step(COMM, suspect, ProbeResult(20.3, False, "refused", taken=20.2)).state.failures == 2


@pytest.mark.parametrize("taken", [-1.0, float("nan"), 11.0])
def test_an_observation_cannot_be_taken_after_it_arrived(taken: float) -> None:
    with pytest.raises(ValueError, match="taken"):
        LocalHealth(10.0, True, taken=taken)


def test_master_restarted_while_stopping_runs_the_scripts_again() -> None:
    s = step(P, node(M, State.STOPPING, term=1, scripts_done=True), Started(9))
    assert s.actions == (RunScripts(ScriptKind.SHUTDOWN),) and not s.state.scripts_done


def test_master_health_change_sends_a_heartbeat_at_once() -> None:
    s1, s2, s3 = run(initial_state(M), LocalHealth(1, True), LocalHealth(2, False, "pid gone"), LocalHealth(3, False))
    assert s1.actions == () and kinds(s2) == [Alert, SendHeartbeat] and s3.actions == ()
    assert s2.state.service_ok is False and s2.state.condition is Condition.FAILED
    assert "abnormal shutdown" in s2.state.reason and "RESTART_LIMIT 0" in s2.state.reason


def test_active_master_deposed_by_a_higher_term() -> None:
    s = step(P, initial_state(M), PeerReport(5, term=1, state=State.ACTIVE))
    assert s.state.state is State.STOPPING and s.state.term == 1 and kinds(s) == [Alert, RunScripts]
    assert "deposed by term 1" in s.transition.reason  # type: ignore[union-attr]


def test_master_learns_but_ignores_equal_or_lower_terms() -> None:
    n = node(M, State.ACTIVE, term=3)
    assert step(P, n, PeerReport(5, term=3, state=State.STANDBY)).state == dataclasses.replace(n, peer_contact=5)
    s = step(P, node(M, State.INACTIVE, term=3), PeerReport(5, term=4, state=State.ACTIVE))
    assert s.state.term == 4 and s.state.state is State.INACTIVE and s.actions == ()


# ---------------------------------------------------------------------------- whole table


@pytest.mark.parametrize("role", list(Role))
def test_every_transition_has_a_reason_and_every_state_handles_every_event(role: Role) -> None:
    """Smoke over the whole table: every (state, event) pair gives a valid step."""
    samples = [
        Started(1),
        Tick(1e6),
        ProbeResult(1, False, "x"),
        ProbeResult(1, True),
        LocalHealth(1, True),
        LocalHealth(1, False),
        ShutdownRequested(1, term=1),
        ShutdownRequested(1, term=9),
        ShutdownAnswered(1, term=1, ok=True),
        ShutdownAnswered(1, term=1, ok=False),
        ScriptsFinished(1, ScriptKind.SHUTDOWN, True),
        ScriptsFinished(1, ScriptKind.STARTUP, False),
        ServiceChecked(1, True),
        ServiceChecked(1, False),
        FenceConfirmed(1, term=1, method="op"),
        PeerReport(1, term=5, state=State.ACTIVE, service_ok=False),
    ]
    states = {st for (r, st) in GROUP_WORD if r is role}
    for st in states:
        for done in (False, True):
            n = node(role, st, term=1, scripts_done=done, failures=1)
            for e in samples:
                if type(e) not in EVENTS_OF[role]:
                    continue
                s = step(P, n, e)
                if s.transition is not None:
                    assert s.transition.reason.strip()
                    assert s.state.reason == s.transition.reason
                assert s.state.term >= n.term


# ---------------------------------------------------------------------------- isolation and waking up (issue 4)

WITNESSED = Policy(probe_failures=3, ack_timeout=10.0, isolation_timeout=5.0, triggers=COMM.triggers)


def test_an_isolated_master_stops_its_service_itself() -> None:
    n = initial_state(M)
    s0 = step(WITNESSED, n, Started(100))
    steps = run(
        s0.state,
        Reachability(101, peer=False, witness=True),  # the witness still answers: in touch
        Reachability(104, peer=False, witness=False),
        Reachability(105.9, peer=False, witness=False),
        Reachability(106.1, peer=False, witness=False),
        policy=WITNESSED,
    )
    assert [s.state.state for s in steps] == [State.ACTIVE, State.ACTIVE, State.ACTIVE, State.STOPPING]
    assert kinds(steps[-1]) == [Alert, RunScripts] and "isolated: reached neither" in steps[-1].state.reason
    down = run(
        steps[-1].state, ScriptsFinished(107, ScriptKind.SHUTDOWN, True), ServiceChecked(108, False), policy=WITNESSED
    )[-1]
    assert down.state.state is State.INACTIVE  # and it stays there: no automatic failback


def test_the_isolation_deadline_is_also_checked_on_ticks_and_restarts_reset_it() -> None:
    s0 = step(WITNESSED, initial_state(M), Started(100)).state
    assert step(WITNESSED, s0, Tick(104)).state.state is State.ACTIVE
    assert step(WITNESSED, s0, Tick(105.5)).state.state is State.STOPPING
    restarted = step(WITNESSED, s0, Started(200)).state
    assert step(WITNESSED, restarted, Tick(203)).state.state is State.ACTIVE


def test_without_a_witness_the_master_never_self_fences() -> None:
    s0 = step(P, initial_state(M), Started(100)).state
    assert step(P, s0, Reachability(10_000, peer=False, witness=False)).state.state is State.ACTIVE


def test_a_slave_that_cannot_reach_the_witness_does_not_take_over() -> None:
    n = step(WITNESSED, initial_state(S), Reachability(1, peer=None, witness=False)).state
    steps = run(n, *(ProbeResult(t, False, "timeout") for t in (2, 3, 4, 5)), policy=WITNESSED)
    assert all(s.state.state is State.SUSPECT for s in steps)
    assert "may be the isolated one" in steps[-1].state.reason
    assert [s.transition is not None for s in steps] == [True, True, True, False]  # no journal flapping
    back = step(WITNESSED, steps[-1].state, Reachability(6, peer=None, witness=True)).state
    claim = step(WITNESSED, back, ProbeResult(7, False, "timeout"))
    assert claim.state.state is State.FAILING_OVER and claim.state.term == 1


def test_a_master_that_wakes_up_asks_for_the_term_at_once() -> None:
    s = step(P, initial_state(M), ClockJump(50, gap=12.0))
    assert kinds(s) == [Alert, SendHeartbeat] and "gap of 12.0 s" in s.actions[0].message  # type: ignore[attr-defined]
    deposed = step(P, s.state, PeerReport(51, term=1, state=State.ACTIVE))
    assert deposed.state.state is State.STOPPING and "deposed by term 1" in deposed.state.reason


def test_a_slave_cut_off_from_the_witness_alerts_once_per_isolation_whatever_the_probe_says() -> None:
    # Chosen with the reason codes (issue 11): the gate compares (code, trigger), not the text,
    # so a new probe detail ("refused", then "timed out") is no new alert while nothing changed.
    n = node(S, State.STANDBY, witness_ok=False, last_heartbeat=0.0)
    steps = run(
        n,
        ProbeResult(20, False, "refused"),
        ProbeResult(21, False, "refused"),
        ProbeResult(22, False, "refused"),  # the communication-loss trigger fires: witness gate
        ProbeResult(23, False, "timed out"),
        ProbeResult(24, False, "refused"),
        policy=WITNESSED,
    )
    gated = [s for s in steps if s.transition is not None and s.state.code.value == "witness-silent"]
    assert len(gated) == 1 and kinds(gated[0]) == [Alert]
    assert steps[-1].state.state is State.SUSPECT and steps[-1].state.term == 0  # no takeover
    back = step(WITNESSED, steps[-1].state, Reachability(25, None, True)).state
    claimed = step(WITNESSED, back, ProbeResult(26, False, "refused"))
    assert claimed.state.state is State.FAILING_OVER and claimed.state.term == 1  # once the witness answers
