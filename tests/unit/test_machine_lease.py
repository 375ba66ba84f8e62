"""The lease in the machine: the slave fences at its claim, grants nothing from then on, and
starts without an ACK only once the lease's wait has passed since the load balancer confirmed
the master MAINT; the master stops for good when its guard reports the lease's end."""

from __future__ import annotations

import dataclasses

from failover.machine import (
    Alert,
    Condition,
    FenceMethod,
    FenceResult,
    Hold,
    LbFence,
    LeaseExpired,
    LoadBalancerDone,
    PeerReport,
    Policy,
    ProbeResult,
    RunScripts,
    ScriptKind,
    SendShutdown,
    ShutdownAnswered,
    Started,
    State,
    Step,
    Tick,
    Trigger,
    Why,
    step,
)
from failover.machine.lease import grants_lease, may_serve
from tests.unit.test_machine import M, S, kinds, node, run

WAIT = 0.7
LEASED = Policy(
    probe_failures=2,
    ack_timeout=10.0,
    load_balancer=True,
    fence_methods=(FenceMethod.LOAD_BALANCER,),
    triggers=frozenset({Trigger.ABNORMAL_SHUTDOWN, Trigger.COMMUNICATION_LOSS}),
    heartbeat_timeout=0.5,
    takeover_wait=WAIT,
)
FENCED = LoadBalancerDone(2.0, "fence the master's server", True, "MAINT", fenced=M)


def claimed() -> list[Step]:
    """Communication loss on a leased pair: the claim, at t=1.2."""
    return run(
        node(S, State.STANDBY, last_heartbeat=0.0), ProbeResult(1.0, False), ProbeResult(1.2, False), policy=LEASED
    )


def test_the_claim_fences_the_master_at_the_load_balancer_at_once() -> None:
    s = claimed()[-1]
    assert s.state.state is State.FAILING_OVER and s.state.lb_fenced is None
    assert kinds(s) == [SendShutdown, LbFence]


def test_the_slave_starts_once_the_wait_has_passed_since_the_fence_was_confirmed() -> None:
    n = claimed()[-1].state
    n = step(LEASED, n, FENCED).state
    assert n.lb_fenced == 2.0 and n.state is State.FAILING_OVER
    assert step(LEASED, n, Tick(2.0 + WAIT - 0.01)).state.state is State.FAILING_OVER
    s = step(LEASED, n, Tick(2.0 + WAIT))
    assert s.state.state is State.STARTING and s.actions == (RunScripts(ScriptKind.STARTUP),)  # no second LbFence
    assert "lease has ended" in s.state.reason


def test_a_failed_or_foreign_load_balancer_answer_starts_no_wait() -> None:
    n = claimed()[-1].state
    failed = step(LEASED, n, LoadBalancerDone(2.0, "fence the master's server", False, "refused"))
    assert failed.state.lb_fenced is None and kinds(failed) == [Alert]
    enabled = step(LEASED, n, LoadBalancerDone(2.0, "enable the slave's server", True, "UP"))
    assert enabled.state.lb_fenced is None
    assert step(LEASED, failed.state, Tick(100)).state.state is State.FENCING  # the ACK timeout, no start


def test_without_a_lease_the_claim_does_not_fence_early_and_the_wait_never_starts() -> None:
    plain = dataclasses.replace(LEASED, takeover_wait=None)
    n = run(node(S, State.STANDBY, last_heartbeat=0.0), ProbeResult(1.0, False), ProbeResult(1.2, False), policy=plain)
    s = n[-1]
    assert kinds(s) == [SendShutdown]
    assert step(plain, s.state, FENCED).state.lb_fenced is None


def test_the_ack_still_starts_at_once() -> None:
    n = claimed()[-1].state
    ack = ShutdownAnswered(2.5, term=1, ok=True, detail="verified down")
    s = step(LEASED, step(LEASED, n, FENCED).state, ack)
    assert s.state.state is State.STARTING and s.actions == (RunScripts(ScriptKind.STARTUP),)  # fenced at the claim
    early = step(LEASED, n, ack)  # before the fence's confirmation: fenced (again) first
    assert early.state.state is State.STARTING and kinds(early) == [LbFence, RunScripts]


def test_the_fence_chains_load_balancer_step_waits_for_the_lease_too() -> None:
    n = node(S, State.FENCING, term=1, deadline=50.0, fence_index=0)
    s = step(LEASED, n, FenceResult(3.0, 1, FenceMethod.LOAD_BALANCER, True, "MAINT"))
    assert s.state.state is State.FENCING and s.state.code is Why.LEASE_WAIT and s.state.lb_fenced == 3.0
    assert step(LEASED, s.state, Tick(3.0 + WAIT)).state.state is State.STARTING


def test_a_restart_while_claiming_fences_again_and_trusts_no_earlier_confirmation() -> None:
    for state in (State.FAILING_OVER, State.FENCING):
        n = node(S, state, term=1, deadline=50.0, lb_fenced=2.0)
        s = step(LEASED, n, Started(9.0))
        assert s.state.lb_fenced is None and LbFence in kinds(s)
        assert step(LEASED, s.state, Tick(9.0 + WAIT)).state.state is state


def test_the_slave_grants_only_while_it_has_claimed_nothing() -> None:
    for state in State:
        try:
            n = node(S, state)
        except ValueError:
            continue  # not a slave state
        expected = state in (State.STANDBY, State.SUSPECT, State.PREPARING)
        assert grants_lease(n) is expected, state
    assert not grants_lease(node(M, State.ACTIVE))
    # held: only from a watching state with its own service down (a switchback's stopped slave)
    assert grants_lease(node(S, State.MAINTENANCE, hold=Hold(State.STANDBY, "op"), service_ok=False))
    assert not grants_lease(node(S, State.MAINTENANCE, hold=Hold(State.ACTIVE, "op")))
    assert not grants_lease(node(S, State.MAINTENANCE, hold=Hold(State.FAILED, "op")))
    assert not grants_lease(node(S, State.MAINTENANCE, hold=Hold(State.STANDBY, "op"), service_ok=True))


def test_the_master_stops_for_good_when_its_lease_ended() -> None:
    for state in (State.ACTIVE, State.RESTARTING, State.STARTING):
        s = step(LEASED, node(M, state), LeaseExpired(5.0, until=4.9, detail="killed 6 process(es)"))
        assert s.state.state is State.STOPPING and s.state.code is Why.LEASE_EXPIRED
        assert kinds(s) == [Alert, RunScripts]
    held = node(M, State.MAINTENANCE, hold=Hold(State.ACTIVE, "op"))
    s = step(LEASED, held, LeaseExpired(5.0, until=4.9))
    assert s.state.state is State.MAINTENANCE and s.state.hold == held.hold and kinds(s) == [Alert]
    assert step(LEASED, node(M, State.INACTIVE), LeaseExpired(5.0, until=4.9)).transition is None
    assert may_serve(node(M, State.STOPPING)) and may_serve(held) and not may_serve(node(M, State.INACTIVE))
    assert may_serve(node(M, State.FAILED))  # still running after the shutdown scripts


def test_an_old_master_that_still_says_active_is_alerted_once_and_asked_every_time() -> None:
    active = node(S, State.ACTIVE, term=1)
    report = PeerReport(1.0, 0, State.ACTIVE, condition=Condition.UP)
    first = step(LEASED, active, report)
    assert kinds(first) == [Alert, SendShutdown] and first.state.code is Why.OLD_MASTER_ACTIVE
    again = step(LEASED, first.state, dataclasses.replace(report, now=1.02))
    assert kinds(again) == [SendShutdown] and again.transition is None


def test_a_master_that_stopped_itself_is_taken_over_once_our_probe_fails() -> None:
    """Its lease ended (or it was isolated) and nobody claimed: INACTIVE in the slave's own
    term, nobody serves. A failed probe of ours confirms it, and the slave claims."""
    watching = node(S, State.STANDBY, term=0, last_heartbeat=0.0)
    stopped = PeerReport(1.0, 0, State.INACTIVE)
    s = step(LEASED, watching, stopped)
    assert s.state.state is State.SUSPECT and s.state.master_condition is Condition.FAILED
    claimed = step(LEASED, s.state, ProbeResult(1.1, False, "connection refused"))
    assert claimed.state.state is State.FAILING_OVER and claimed.state.term == 1
    deposed = step(LEASED, node(S, State.STANDBY, term=2, last_heartbeat=0.0), PeerReport(1.0, 1, State.INACTIVE))
    assert deposed.state.master_condition is Condition.UNKNOWN  # an old term's INACTIVE: that is just history
