"""The lease in the machine: the slave fences at its claim, grants nothing from then on, and
starts without an ACK only once the lease's wait has passed since its last grant and the load
balancer's shorter one since it confirmed the master MAINT; contact is two-way; the master stops
for good when its guard reports the lease's end."""

from __future__ import annotations

import dataclasses
import math

import pytest

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
    ProbeNow,
    ProbeResult,
    RunScripts,
    ScriptKind,
    SendShutdown,
    ShutdownAnswered,
    Started,
    State,
    Step,
    SwitchoverRequested,
    Tick,
    Trigger,
    Why,
    step,
)
from failover.machine.lease import grants_lease, may_serve, service_down_at
from tests.unit.test_machine import M, S, kinds, node, run

WAIT, LB_WAIT = 0.7, 0.3
LEASED = Policy(
    probe_failures=2,
    ack_timeout=10.0,
    load_balancer=True,
    fence_methods=(FenceMethod.LOAD_BALANCER,),
    triggers=frozenset({Trigger.ABNORMAL_SHUTDOWN, Trigger.COMMUNICATION_LOSS}),
    heartbeat_timeout=0.5,
    takeover_wait=WAIT,
    lb_takeover_wait=LB_WAIT,
)
FENCED = LoadBalancerDone(2.0, "fence the master's server", True, "MAINT", fenced=M)  # no grant known


def grants(n: object, peer_silent: float = 0.0) -> bool:
    assert isinstance(n, type(node(S, State.STANDBY)))
    return grants_lease(n, peer_silent, LEASED.heartbeat_timeout)


def claimed() -> list[Step]:
    """Communication loss on a leased pair (one failed probe is enough): the claim, at t=1.2."""
    return run(node(S, State.STANDBY, last_heartbeat=0.0), ProbeResult(1.2, False), policy=LEASED)


def test_the_claim_fences_the_master_at_the_load_balancer_at_once() -> None:
    s = claimed()[-1]
    assert s.state.state is State.FAILING_OVER and s.state.lease_gone_at is None
    assert kinds(s) == [SendShutdown, LbFence]


def test_the_slave_starts_once_the_wait_has_passed_since_the_fence_was_confirmed() -> None:
    """No grant known: the confirmation stands for the last grant, the longer wait counts."""
    n = claimed()[-1].state
    n = step(LEASED, n, FENCED).state
    assert n.lease_gone_at == 2.0 + WAIT and n.state is State.FAILING_OVER
    assert step(LEASED, n, Tick(2.0 + WAIT - 0.01)).state.state is State.FAILING_OVER
    s = step(LEASED, n, Tick(2.0 + WAIT))
    assert s.state.state is State.STARTING and s.actions == (RunScripts(ScriptKind.STARTUP),)  # no second LbFence
    assert "lease has ended" in s.state.reason


def test_the_wait_counts_from_the_last_grant_and_from_the_fence_whichever_ends_later() -> None:
    n = claimed()[-1].state
    early_grant = step(LEASED, n, dataclasses.replace(FENCED, granted=1.0)).state
    assert early_grant.lease_gone_at == max(1.0 + WAIT, 2.0 + LB_WAIT) == 2.3
    late_grant = step(LEASED, n, dataclasses.replace(FENCED, granted=1.9)).state
    assert late_grant.lease_gone_at == 1.9 + WAIT
    assert step(LEASED, late_grant, Tick(2.59)).state.state is State.FAILING_OVER
    assert step(LEASED, late_grant, Tick(2.6)).state.state is State.STARTING
    # a grant reading after the confirmation is taken as the confirmation (it cannot be later)
    assert service_down_at(LEASED, 2.0, 5.0) == 2.0 + WAIT


def test_a_failed_or_foreign_load_balancer_answer_starts_no_wait() -> None:
    n = claimed()[-1].state
    failed = step(LEASED, n, LoadBalancerDone(2.0, "fence the master's server", False, "refused"))
    assert failed.state.lease_gone_at is None and kinds(failed) == [Alert]
    enabled = step(LEASED, n, LoadBalancerDone(2.0, "enable the slave's server", True, "UP"))
    assert enabled.state.lease_gone_at is None
    assert step(LEASED, failed.state, Tick(100)).state.state is State.FENCING  # the ACK timeout, no start


def test_without_a_lease_the_claim_does_not_fence_early_and_the_wait_never_starts() -> None:
    plain = dataclasses.replace(LEASED, takeover_wait=None, lb_takeover_wait=None)
    n = run(node(S, State.STANDBY, last_heartbeat=0.0), ProbeResult(1.0, False), ProbeResult(1.2, False), policy=plain)
    assert n[0].state.state is State.SUSPECT  # PROBE_FAILURES = 2 without a lease
    s = n[-1]
    assert kinds(s) == [SendShutdown]
    assert step(plain, s.state, FENCED).state.lease_gone_at is None


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
    assert s.state.state is State.FENCING and s.state.code is Why.LEASE_WAIT and s.state.lease_gone_at == 3.0 + WAIT
    assert step(LEASED, s.state, Tick(3.0 + WAIT)).state.state is State.STARTING


def test_a_restart_while_claiming_fences_again_and_trusts_no_earlier_confirmation() -> None:
    for state in (State.FAILING_OVER, State.FENCING):
        n = node(S, state, term=1, deadline=50.0, lease_gone_at=2.0)
        s = step(LEASED, n, Started(9.0))
        assert s.state.lease_gone_at is None and LbFence in kinds(s)
        assert step(LEASED, s.state, Tick(9.0 + WAIT)).state.state is state


def test_the_slave_grants_only_while_it_has_claimed_nothing() -> None:
    for state in State:
        try:
            n = node(S, state)
        except ValueError:
            continue  # not a slave state
        expected = state in (State.STANDBY, State.SUSPECT, State.PREPARING)
        assert grants(n) is expected, state
    assert not grants(node(M, State.ACTIVE))
    # held: only from a watching state with its own service down (a switchback's stopped slave)
    assert grants(node(S, State.MAINTENANCE, hold=Hold(State.STANDBY, "op"), service_ok=False))
    assert not grants(node(S, State.MAINTENANCE, hold=Hold(State.ACTIVE, "op")))
    assert not grants(node(S, State.MAINTENANCE, hold=Hold(State.FAILED, "op")))
    assert not grants(node(S, State.MAINTENANCE, hold=Hold(State.STANDBY, "op"), service_ok=True))
    # a master that has not heard us for half HEARTBEAT_TIMEOUT is granted nothing
    assert grants(node(S, State.STANDBY), peer_silent=0.24) and not grants(node(S, State.STANDBY), peer_silent=0.25)


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


def test_contact_is_two_way_a_master_that_does_not_hear_us_is_lost() -> None:
    """The master's datagrams keep coming, but say it has heard nothing from us since t=1.0 (a
    cut from slave to master): contact stays at 1.0, and after HEARTBEAT_TIMEOUT it is lost;
    with a failed probe that is a communication loss, as for a cut link."""
    n = node(S, State.STANDBY, last_heartbeat=1.0, master_condition=Condition.UP)
    for t in (1.1, 1.3, 1.5):
        n = step(LEASED, n, PeerReport(t, 0, State.ACTIVE, condition=Condition.UP, peer_silent=t - 1.0)).state
        assert n.last_heartbeat == 1.0
    lost = step(LEASED, n, Tick(1.51))
    assert lost.state.heartbeats_lost and lost.state.code is Why.HEARTBEATS_LOST
    claimed = step(LEASED, lost.state, ProbeResult(1.6, False, "timed out"))
    assert claimed.state.state is State.FAILING_OVER and kinds(claimed) == [SendShutdown, LbFence]
    # heard again: contact from the moment the master heard us, the loss is over
    back = step(LEASED, lost.state, PeerReport(1.7, 0, State.ACTIVE, condition=Condition.UP, peer_silent=0.05))
    assert back.state.last_heartbeat == 1.65 and not back.state.heartbeats_lost


def test_a_report_never_moves_contact_back() -> None:
    n = node(S, State.STANDBY, last_heartbeat=2.0)
    late = step(LEASED, n, PeerReport(2.1, 0, State.ACTIVE, condition=Condition.UP, peer_silent=0.5))
    assert late.state.last_heartbeat == 2.0


def test_half_a_silence_asks_one_probe_bounded_to_the_rest_of_it() -> None:
    n = node(S, State.STANDBY, last_heartbeat=1.0)
    assert step(LEASED, n, Tick(1.2)).actions == ()
    asked = step(LEASED, n, Tick(1.3))
    (probe,) = asked.actions
    assert isinstance(probe, ProbeNow) and probe.timeout == pytest.approx(0.2) and asked.state.silence_probed
    assert step(LEASED, asked.state, Tick(1.4)).actions == ()  # once per silence
    # contact again re-arms it
    heard = step(LEASED, asked.state, PeerReport(1.45, 0, State.ACTIVE, condition=Condition.UP)).state
    assert not heard.silence_probed
    plain = dataclasses.replace(LEASED, takeover_wait=None, lb_takeover_wait=None)
    assert step(plain, n, Tick(1.3)).actions == ()  # without a lease: PROBE_FAILURES probes, as before


def test_with_a_lease_one_failed_probe_and_lost_contact_fail_over() -> None:
    n = node(S, State.STANDBY, last_heartbeat=0.0)
    s = run(n, Tick(0.6), ProbeResult(0.7, False, "timed out"), policy=LEASED)[-1]
    assert s.state.state is State.FAILING_OVER
    plain = dataclasses.replace(LEASED, takeover_wait=None, lb_takeover_wait=None)
    s = run(n, Tick(0.6), ProbeResult(0.7, False, "timed out"), policy=plain)[-1]
    assert s.state.state is State.SUSPECT  # PROBE_FAILURES = 2


def test_a_master_that_never_heard_us_gives_no_contact_whatever_the_timeout() -> None:
    """The saturated "silent ms" is infinite: even a HEARTBEAT_TIMEOUT above a minute does not
    take it for contact, and nothing is granted to it."""
    long = dataclasses.replace(LEASED, heartbeat_timeout=600.0)
    n = node(S, State.STANDBY, last_heartbeat=1.0)
    never = PeerReport(100.0, 0, State.ACTIVE, condition=Condition.UP, peer_silent=math.inf)
    assert step(long, n, never).state.last_heartbeat == 1.0
    assert step(long, node(S, State.STANDBY), never).state.last_heartbeat is None
    assert not grants_lease(node(S, State.STANDBY), math.inf, 600.0)


def test_a_switchover_grants_until_the_ack_so_the_graceful_stop_runs_to_its_end() -> None:
    """A planned move: no early fence, grants while waiting for the ACK (the master's lease is
    not cut short), and a confirmation of a fence meanwhile starts no wait; at the ACK timeout
    grants stop (FENCING) and the fence chain's load-balancer step waits the full lease."""
    s = step(LEASED, node(S, State.STANDBY), SwitchoverRequested(1.0, by="ops"))
    assert s.state.state is State.FAILING_OVER and LbFence not in kinds(s)
    assert grants(s.state)
    assert step(LEASED, s.state, dataclasses.replace(FENCED, granted=1.5)).state.lease_gone_at is None
    ack = step(LEASED, s.state, ShutdownAnswered(4.0, term=1, ok=True, detail="verified down"))
    assert ack.state.state is State.STARTING and kinds(ack) == [LbFence, RunScripts]
    timed_out = step(LEASED, s.state, Tick(1.0 + LEASED.ack_timeout))
    assert timed_out.state.state is State.FENCING and not grants(timed_out.state)
    fenced = step(LEASED, timed_out.state, FenceResult(12.0, 1, FenceMethod.LOAD_BALANCER, True, "MAINT"))
    assert fenced.state.lease_gone_at == 12.0 + WAIT
    # a failover on a trigger grants nothing from its claim on
    assert not grants(claimed()[-1].state)


def test_the_wait_is_over_once_the_slave_starts() -> None:
    """lease_gone_at is cleared when the slave is authorized (on the lease's end or the ACK): a
    deadline left behind would have the agent loop tick without pause from then on."""
    n = step(LEASED, claimed()[-1].state, FENCED).state
    started = step(LEASED, n, Tick(2.0 + WAIT))
    assert started.state.state is State.STARTING and started.state.lease_gone_at is None
    ack = step(LEASED, n, ShutdownAnswered(2.5, term=1, ok=True, detail="verified down"))
    assert ack.state.state is State.STARTING and ack.state.lease_gone_at is None
