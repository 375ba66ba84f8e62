"""The slave failing over, starting, and the fence chain: (role, state, event) -> state, actions, reason."""

from __future__ import annotations

import dataclasses

import pytest

from failover.machine import (
    Alert,
    CheckService,
    Fence,
    FenceConfirmed,
    FenceMethod,
    FenceResult,
    LbEnable,
    LbFence,
    LoadBalancerDone,
    LocalHealth,
    NodeState,
    OnAckTimeout,
    PeerReport,
    Policy,
    ProbeResult,
    Role,
    RunScripts,
    ScriptKind,
    ScriptsFinished,
    SendShutdown,
    ServiceChecked,
    ShutdownAnswered,
    Started,
    State,
    Tick,
    step,
)
from tests.unit.test_machine import P, S, kinds, node, run  # one set of helpers

# ---------------------------------------------------------------------------- slave: failing over


def failing_over(term: int = 1, deadline: float = 20.0) -> NodeState:
    return node(S, State.FAILING_OVER, term=term, deadline=deadline)


def test_ack_starts_the_startup_scripts() -> None:
    s = step(P, failing_over(), ShutdownAnswered(5, term=1, ok=True, detail="service verified down"))
    assert s.state.state is State.STARTING and s.actions == (RunScripts(ScriptKind.STARTUP),)
    assert "acknowledged" in s.transition.reason  # type: ignore[union-attr]


@pytest.mark.parametrize("term", [0, 2])
def test_ack_for_another_term_is_ignored(term: int) -> None:
    s = step(P, failing_over(), ShutdownAnswered(5, term=term, ok=True))
    assert s.state == failing_over() and s.actions == ()


def test_nack_goes_fencing_and_alerts() -> None:
    s = step(P, failing_over(), ShutdownAnswered(5, term=1, ok=False, detail="service still running"))
    assert s.state.state is State.FENCING and kinds(s) == [Alert]
    assert "not starting" in s.transition.reason  # type: ignore[union-attr]


def test_no_ack_before_the_deadline_waits() -> None:
    s = step(P, failing_over(deadline=20.0), Tick(19.99))
    assert s.state.state is State.FAILING_OVER and s.actions == ()


def test_no_ack_by_the_deadline_fences_and_never_starts() -> None:
    s = step(P, failing_over(deadline=20.0), Tick(20.0))
    assert s.state.state is State.FENCING and kinds(s) == [Alert]
    assert "NOT starting" in s.transition.reason  # type: ignore[union-attr]
    assert s.state.deadline == 30.0


def test_no_ack_with_takeover_policy_starts_anyway_and_says_so() -> None:
    pol = Policy(probe_failures=3, ack_timeout=10.0, on_ack_timeout=OnAckTimeout.TAKEOVER)
    s = step(pol, failing_over(deadline=20.0), Tick(21))
    assert s.state.state is State.STARTING and kinds(s) == [Alert, RunScripts]
    assert "WITHOUT a confirmed stop" in s.transition.reason  # type: ignore[union-attr]


def test_fencing_asks_again_each_ack_timeout_and_alerts() -> None:
    n = node(S, State.FENCING, term=1, deadline=30.0)
    assert step(P, n, Tick(29)).actions == ()
    s = step(P, n, Tick(31))
    assert kinds(s) == [Alert, SendShutdown] and s.state.deadline == 41 and s.transition is None


def test_late_ack_while_fencing_starts() -> None:
    s = step(P, node(S, State.FENCING, term=1), ShutdownAnswered(40, term=1, ok=True))
    assert s.state.state is State.STARTING and s.actions == (RunScripts(ScriptKind.STARTUP),)


def test_nack_while_fencing_changes_nothing() -> None:
    n = node(S, State.FENCING, term=1)
    assert step(P, n, ShutdownAnswered(40, term=1, ok=False)).state == n


@pytest.mark.parametrize("state", [State.FAILING_OVER, State.FENCING])
def test_confirmed_fence_for_this_term_starts(state: State) -> None:
    s = step(P, node(S, state, term=3), FenceConfirmed(9, term=3, method="operator"))
    assert s.state.state is State.STARTING and "by operator" in s.transition.reason  # type: ignore[union-attr]
    assert step(P, node(S, state, term=3), FenceConfirmed(9, term=2, method="operator")).actions == ()


def test_restart_while_failing_over_asks_again_with_a_new_deadline() -> None:
    s = step(P, failing_over(term=4, deadline=1e9), Started(100))
    assert s.state.state is State.FAILING_OVER and s.state.term == 4
    assert s.actions == (SendShutdown(4, 10.0),) and s.state.deadline == 110


def test_restart_while_fencing_asks_at_the_next_tick() -> None:
    s1, s2 = run(node(S, State.FENCING, term=2, deadline=1e9), Started(100), Tick(100))
    assert s1.actions == () and kinds(s2) == [Alert, SendShutdown]


def test_probes_are_ignored_once_failing_over() -> None:
    for state in (State.FAILING_OVER, State.FENCING, State.STARTING, State.ACTIVE, State.FAILED):
        n = node(S, state, term=1)
        assert step(P, n, ProbeResult(1, False)).state == n


# ---------------------------------------------------------------------------- slave: starting


def test_startup_scripts_then_check_then_active() -> None:
    n = node(S, State.STARTING, term=1)
    s1, s2 = run(n, ScriptsFinished(1, ScriptKind.STARTUP, True, "ok"), ServiceChecked(2, True, "+OK"))
    assert s1.actions == (CheckService(expect_up=True),) and s1.transition is None
    assert s2.state.state is State.ACTIVE and s2.state.group == "ACTIVE"
    assert "ACTIVE in term 1" in s2.transition.reason  # type: ignore[union-attr]


def test_failing_startup_script_leaves_failed_with_the_reason() -> None:
    s = step(
        P,
        node(S, State.STARTING, term=1),
        ScriptsFinished(1, ScriptKind.STARTUP, False, "start.sh killed after 5 s timeout"),
    )
    assert s.state.state is State.FAILED and kinds(s) == [Alert]
    assert "killed after 5 s timeout" in s.transition.reason  # type: ignore[union-attr]


def test_service_not_answering_after_scripts_is_failed() -> None:
    s = run(
        node(S, State.STARTING, term=1),
        ScriptsFinished(1, ScriptKind.STARTUP, True),
        ServiceChecked(2, False, "refused"),
    )[-1]
    assert s.state.state is State.FAILED and "does not answer" in s.transition.reason  # type: ignore


def test_restart_in_starting_checks_before_repeating_the_startup() -> None:
    n = node(S, State.STARTING, term=2, scripts_done=True)
    s1, s2 = run(n, Started(5), ServiceChecked(6, True, "+OK"))
    assert s1.actions == (CheckService(expect_up=True),) and not s1.state.scripts_done
    assert s2.state.state is State.ACTIVE and "completed before the restart" in s2.transition.reason  # type: ignore


def test_restart_in_starting_reruns_the_startup_when_not_up() -> None:
    _, s2, s3 = run(
        node(S, State.STARTING, term=2),
        Started(5),
        ServiceChecked(6, False, "refused"),
        ScriptsFinished(7, ScriptKind.STARTUP, True),
    )
    assert s2.actions == (RunScripts(ScriptKind.STARTUP),) and s2.state.term == 2
    assert s3.actions == (CheckService(expect_up=True),)


def test_active_and_failed_slave_do_nothing_on_restart() -> None:
    for state in (State.ACTIVE, State.FAILED):
        n = node(S, state, term=1)
        assert step(P, n, Started(1)).actions == ()


def test_active_slave_tells_an_active_master_to_shut_down() -> None:
    s = step(P, node(S, State.ACTIVE, term=1), PeerReport(5, term=0, state=State.ACTIVE, service_ok=True))
    assert kinds(s) == [Alert, SendShutdown] and s.state.state is State.ACTIVE
    assert step(P, node(S, State.ACTIVE, term=1), PeerReport(5, term=1, state=State.INACTIVE)).actions == ()


def test_active_slave_steps_down_on_a_higher_term() -> None:
    n = node(S, State.ACTIVE, term=1)
    s1, s2, s3 = run(
        n,
        PeerReport(5, term=2, state=State.ACTIVE),
        ScriptsFinished(6, ScriptKind.SHUTDOWN, True),
        ServiceChecked(7, False, "refused"),
    )
    assert s1.state.state is State.STOPPING and s1.state.term == 2 and "deposed by term 2" in s1.state.reason
    assert s2.actions == (CheckService(expect_up=False),)
    assert s3.state.state is State.STANDBY and s3.actions == ()


def test_slave_records_its_own_health_when_active() -> None:
    assert step(P, node(S, State.ACTIVE, term=1), LocalHealth(1, False)).state.service_ok is False


# ---------------------------------------------------------------------------- the fence chain (issue 4)

CHAIN = Policy(
    probe_failures=3,
    ack_timeout=10.0,
    fence_methods=(FenceMethod.SSH, FenceMethod.LOAD_BALANCER, FenceMethod.SCRIPTS),
    load_balancer=True,
)


def test_no_ack_starts_the_fence_chain_with_its_first_method() -> None:
    s = step(CHAIN, failing_over(deadline=20.0), Tick(20.0))
    assert s.state.state is State.FENCING and s.state.fence_index == 0
    assert s.actions == (Alert(s.state.reason), Fence(1, FenceMethod.SSH))
    assert "trying the fence chain" in s.state.reason


def test_each_failed_fence_tries_the_next_then_waits_for_the_operator() -> None:
    n = node(S, State.FENCING, term=1, fence_index=0)
    s1, s2, s3 = run(
        n,
        FenceResult(1, 1, FenceMethod.SSH, False, "ssh: connection refused"),
        FenceResult(2, 1, FenceMethod.LOAD_BALANCER, False, "haproxy unreachable"),
        FenceResult(3, 1, FenceMethod.SCRIPTS, False, "exit 1"),
        policy=CHAIN,
    )
    assert s1.actions == (Fence(1, FenceMethod.LOAD_BALANCER),) and "trying loadbalancer" in s1.state.reason
    assert s2.actions == (Fence(1, FenceMethod.SCRIPTS),)
    assert kinds(s3) == [Alert] and "every fence method failed" in s3.state.reason
    assert s3.state.state is State.FENCING and s3.state.fence_index == 3
    retry = step(CHAIN, dataclasses.replace(s3.state, deadline=30.0), Tick(31))
    assert kinds(retry) == [Alert, SendShutdown, Fence] and retry.state.fence_index == 0


def test_a_confirmed_ssh_fence_starts_and_fences_the_master_at_the_load_balancer_first() -> None:
    n = node(S, State.FENCING, term=1, fence_index=0)
    s = step(CHAIN, n, FenceResult(1, 1, FenceMethod.SSH, True, "service verified down over ssh"))
    assert s.state.state is State.STARTING
    assert s.actions == (LbFence(Role.MASTER), RunScripts(ScriptKind.STARTUP))
    assert "fenced for term 1 by ssh" in s.state.reason


def test_a_load_balancer_fence_is_not_repeated() -> None:
    n = node(S, State.FENCING, term=1, fence_index=1)
    s = step(CHAIN, n, FenceResult(1, 1, FenceMethod.LOAD_BALANCER, True, "MAINT"))
    assert s.actions == (RunScripts(ScriptKind.STARTUP),)


@pytest.mark.parametrize(
    "result",
    [
        FenceResult(1, 2, FenceMethod.SSH, True),  # another term
        FenceResult(1, 1, FenceMethod.LOAD_BALANCER, True),  # not the method being tried
    ],
)
def test_a_late_or_stray_fence_result_starts_nothing(result: FenceResult) -> None:
    n = node(S, State.FENCING, term=1, fence_index=0)
    assert step(CHAIN, n, result).state == n


def test_the_ack_path_also_fences_at_the_load_balancer_and_active_enables_the_slave() -> None:
    s1 = step(CHAIN, failing_over(), ShutdownAnswered(5, term=1, ok=True, detail="down"))
    assert s1.actions == (LbFence(Role.MASTER), RunScripts(ScriptKind.STARTUP))
    s2 = run(s1.state, ScriptsFinished(6, ScriptKind.STARTUP, True), ServiceChecked(7, True), policy=CHAIN)[-1]
    assert s2.state.state is State.ACTIVE and s2.actions == (LbEnable(Role.SLAVE),)


def test_a_restart_while_fencing_runs_the_chain_again_at_the_next_tick() -> None:
    n = node(S, State.FENCING, term=1, fence_index=1, deadline=1e9)
    s1, s2 = run(n, Started(100), Tick(100), policy=CHAIN)
    assert s1.state.fence_index == 3 and kinds(s2) == [Alert, SendShutdown, Fence]


def test_a_failed_load_balancer_change_is_alerted_and_changes_nothing() -> None:
    n = node(S, State.STARTING, term=1)
    s = step(CHAIN, n, LoadBalancerDone(1, "fence master", False, "no such server"))
    assert s.state == n and kinds(s) == [Alert]
    assert step(CHAIN, n, LoadBalancerDone(1, "fence master", True)).actions == ()


def test_takeover_with_a_load_balancer_still_fences_the_master_there() -> None:
    pol = dataclasses.replace(CHAIN, on_ack_timeout=OnAckTimeout.TAKEOVER)
    s = step(pol, failing_over(deadline=20.0), Tick(21))
    assert kinds(s) == [Alert, LbFence, RunScripts]
