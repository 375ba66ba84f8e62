"""The lease argument of failover/heartbeat.py's docstring, checked by a discrete-event simulation
(the machinery is tests/property/lease_sim.py).

Real time is the simulation's time; each host reads a monotonic clock offset + rate x real time
with its rate within [1 - rho, 1 + rho]. The master and the slave each send a real heartbeat
datagram (failover.heartbeat: Stream, encode, decode, the replay window and the handshake, the
silence each datagram reports) every interval of their own clock; each datagram may be lost,
duplicated or delayed arbitrarily (so reordered); one-way cuts and full partitions drop whatever
is sent in them, and a stall holds what is sent in it until a release (so a granted datagram sent
before the claim may arrive after the fence, the later ones behind it, and pass the replay
window). The slave grants as `grants_lease` says, from the state it reads AFTER computing the
acknowledgement (point 2, as failover/beatlink.py does) and the silence the master's newest
datagram reported (Stream.peer_silent), with a drawn HEARTBEAT_TIMEOUT; it claims at the real
moment k, from when the state it reads is not granting. The load balancer confirms MAINT at
f > k; the slave reads its clock at or after f (fenced_at), then the stream's g (Stream.granted_at,
or its own start when it granted nothing), and starts at service_down_at: max(g + W(L),
fenced_at + W(B)) on its clock. The master renews its lease from granted acknowledgements
(lease_end: base + L) and from load-balancer reads begun before f (such a read may still show
"not MAINT": base + B, B drawn <= L); its guard looks every `check` <= m of its clock and kills
the service, down at most H later. The property: the master's service is down by the time the
slave starts. Broken variants show that the checker can fail.

The master's lhcd starts as failover/lease_guard.py says ("The start"), at a real moment s0
drawn anywhere (0, between the slave's last grants and f, after f, about when a lease from the
last grants ends), or starts before f, dies anywhere later and is started again after a gap
(often none, up to B): a restart. Its service runs from the first start (the service of a boot
comes up with lhcd; one that runs before it is in the window that lease_guard.py documents as
unguarded). A start holds B from s0, a restart min(s0 + B, the lease file); either writes that to
the file at once, and a revocation writes the revoked lease. Later the code's renew_loop writes
the lease at its wakeups once it grew by PERSIST_EVERY (it lags, only shorter): here, at the
renewal that took it PERSIST_EVERY, 0 (exact) or L (a loop asleep while acknowledgements keep
the lease) past the end written last. Its first read of the load balancer begins at s0 and ends
within its timeout, B / 2 of the master's clock (a read keeps one deadline): begun before f and
answered, it renews B from s0 (worst case: not MAINT yet); MAINT (begun at or after f) or no
answer revokes the start lease, a first start's or a restart's, unless an acknowledgement renewed
it first, and the guard then looks at once. Only a restart that found its lease already ended at
its start has its guard wait for that read; any other guard kills at the lease's end as usual. A
new stream (a new sender id) takes up the handshake. Between a death and the next start nothing
kills the service and nothing renews. Or the master's lhcd has run since before the slave's own
start (real 0), with L from the last grant of the slave's predecessor, at or before 0: the g of a
slave that granted nothing is its own start (point 2), which covers it.

The property is asserted over the whole domain the argument covers; what is left out is exactly
the window that lease_guard.py documents as unguarded: while lhcd is down (a first start at or
after f, whose service ran before lhcd; a gap between a death and the restart in which the dead
lhcd's guard would have killed: Outcome.gap_outran), and after a restart that found its lease
already ended at its start, until its first read (Outcome.found_ended; a gap that outran the
lease always leaves it so). And that only where the last lhcd starts at or after f: one started
before f holds a lease from a base before f (its start, its first read), which the argument covers
whatever came before, so there the property is asserted all the same. Where it is left out, what
is asserted is that lhcd ends the service: down within m + H after its first read ended (which
showed MAINT or got no answer, and revoked). No other scenario is left out of the drawing: every
first read, a first start's or a restart's, may take up to its timeout and get no answer.
"""

from __future__ import annotations

import dataclasses
import math

import pytest
from hypothesis import HealthCheck, event, given, settings, target

from failover.heartbeat import LeaseTimes, takeover_wait
from failover.lease_guard import PERSIST_EVERY
from tests.property.lease_sim import SLACK, TO_MASTER, Clock, Lhcd, Outcome, Scenario, scenarios, simulate


def covered(sc: Scenario, out: Outcome) -> bool:
    """Whether the run is outside the documented window: its last lhcd started before f, or it is
    a restart that found its lease still running (and the gap before it did not outrun it)."""
    return sc.lhcds[-1].start < sc.fenced or (len(sc.lhcds) > 1 and not (out.gap_outran or out.found_ended))


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(scenarios())
def test_the_masters_service_is_down_before_the_slave_starts(sc: Scenario) -> None:
    out = simulate(sc)
    # liveness: the slave that claimed starts, at most W(L) / (1 - rho) after the real moment of
    # its g and W(B) / (1 - rho) after that of its fenced_at, whichever is later; and its g was
    # taken before its claim (the claim stopped the grants: nothing later can push its start out)
    assert out.granted is not None and out.fenced_at is not None and math.isfinite(out.slave_start)
    rho, (wait, lb_wait) = sc.times.drift, sc.waits()
    granted, fenced_at = sc.slave_clock.when(out.granted), sc.slave_clock.when(out.fenced_at)
    assert granted <= sc.claim + SLACK and fenced_at >= sc.fenced - SLACK
    assert out.slave_start <= max(granted + wait / (1 - rho), fenced_at + lb_wait / (1 - rho)) + SLACK
    last = sc.lhcds[-1]
    when = "before f" if last.start < sc.fenced else "at or after f"
    kind = "a restart" if len(sc.lhcds) > 1 else "the lhcd from before 0" if sc.predecessor_grant is not None else "one"
    event(f"the last lhcd: {kind}, started {when}{', with a lease file' if out.lease_file else ''}")
    event(f"its first read {'answers' if last.answers else 'gets no answer'}")
    if out.found_ended:
        event(f"the restart found its lease ended{', its guard waited' if out.waited else ''}, started {when}")
    if not covered(sc, out):  # the documented window: lhcd ends the service once its first read revokes
        why = "the gap outran the lease" if out.gap_outran else "a restart found its lease ended"
        event(f"not covered: {why if len(sc.lhcds) > 1 else 'a first start after f'}")
        assert out.master_down <= sc.ended_by() + SLACK, f"the service runs until {out.master_down}"
        return
    assert not out.violated, f"the master's service runs until {out.master_down}, the slave starts at {out.slave_start}"
    event("the master's service still ran at f" if out.master_down > sc.fenced else "it was down before f")
    event(f"the last lease came from {out.last_lease}")
    event("the slave waited out its last grant" if out.granted + wait > out.fenced_at + lb_wait else "the fence")
    # per source of the last lease: drive each kind of renewal towards the tightest case
    target(out.master_down - out.slave_start, label=f"down minus start, last lease from {out.last_lease}")


# lhcd's reads of the load balancer at its start (every B / 4 while less than B is left), until
# the first acknowledgement (0.302 s) renews: the start lease and its first read give 0.25 s only
STARTUP_READS = tuple((k / 16, 0.005) for k in range(1, 5))


def steady(**broken: object) -> Scenario:
    """No loss, 2 ms each way, exact clocks, L = 1, B = 0.25, H = 0.5, m = 0.1 (W(L) = 1.6,
    W(B) = 0.85), HEARTBEAT_TIMEOUT 0.5: the master, started at 0 (its reads of the load balancer
    keep it until the grants come), beats every 100 ms and the slave answers each one, granting
    from 0.3 s (once the handshake is done and the master says it hears it) until it claims at 3.05 s;
    f = 3.1 s. The last grant (3.0 s) names the master's heartbeat of 2.9 s, received at 2.902 s
    (g): its lease ends at 3.9 s, the guard looks at 3.95 s, down at 4.45 s; the slave starts at
    max(g + W(L), f + W(B)) = max(4.502, 3.95) = 4.502 s."""
    sc = Scenario(
        times=LeaseTimes(1.0, 0.5, 0.25, 0.0, 0.1),
        heartbeat_timeout=0.5,
        interval=0.1,
        master_clock=Clock(100.0, 1.0),
        slave_clock=Clock(200.0, 1.0),
        master_phase=0.0,
        slave_phase=0.0,
        claim=3.05,
        fenced=3.1,
        fence_read=0.0,
        read_lag=0.0,
        check=0.1,
        kill=0.5,
        to_slave=((0.002,),) * 100,
        to_master=((0.002,),) * 100,
        cuts=(),
        stalls=(),
        lb_reads=STARTUP_READS,
        lhcds=(Lhcd(0.0, guard_phase=0.05),),
    )
    return dataclasses.replace(sc, **broken)  # type: ignore[arg-type]


def test_the_steady_run_is_safe_and_the_last_grant_is_what_protects_it() -> None:
    out = simulate(steady())
    assert not out.violated
    assert out.ack_renewals > 20 and out.last_lease == "an acknowledgement"
    assert out.granted == pytest.approx(202.902) and out.fenced_at == pytest.approx(203.1)
    assert out.master_down == pytest.approx(4.45) and out.slave_start == pytest.approx(4.502)


def test_a_load_balancer_read_just_before_the_fence_renews_for_b_only() -> None:
    """While acknowledgements renew, a read (3.09 s + B = 3.34 s) does not lengthen the lease."""
    out = simulate(steady(lb_reads=(*STARTUP_READS, (3.09, 0.005))))
    assert not out.violated and out.master_down == pytest.approx(4.45) and out.last_lease == "an acknowledgement"


def cut_and_read(**broken: object) -> Scenario:
    """The way to the master is cut from 2.0 s (its last acknowledgement names its heartbeat of
    1.8 s: 2.8 s); it reads the load balancer at 2.7 s, 2.9 s and 3.09 s, just before f: the lease
    runs to 3.09 + B = 3.34 s, the guard looks at 3.35 s, down at 3.85 s; the slave (g = 2.102 s)
    starts at f + W(B) = 3.95 s."""
    reads = (*STARTUP_READS, (2.7, 0.005), (2.9, 0.005), (3.09, 0.005))
    return steady(cuts=((TO_MASTER, 2.0, 10.0),), lb_reads=reads, **broken)


def test_a_load_balancer_read_is_the_last_lease_when_the_acknowledgements_stop() -> None:
    out = simulate(cut_and_read())
    assert not out.violated and out.last_lease == "a read"
    assert out.master_down == pytest.approx(3.85) and out.slave_start == pytest.approx(3.95)


def test_a_master_that_renews_a_load_balancer_read_with_l_is_caught() -> None:
    out = simulate(cut_and_read(lb_renews_lease=True))
    assert out.violated and out.last_lease == "a read"  # its lease runs to 3.09 + L = 4.09 s
    assert math.isinf(out.master_down) and out.slave_start == pytest.approx(3.95)  # it still runs at 3.95 s


def test_a_slave_that_keeps_granting_after_its_claim_is_caught() -> None:
    out = simulate(steady(grant_always=True))
    assert out.violated and math.isinf(out.master_down)  # the master still runs when the slave starts


def test_a_slave_that_waits_w_b_after_its_last_grant_is_caught() -> None:
    out = simulate(steady(grant_wait=takeover_wait(steady().times, by_load_balancer=True)))
    assert out.violated and out.slave_start == pytest.approx(3.95)  # f + W(B): the grant's bound gave 3.752


def test_a_slave_that_reads_g_before_its_claim_stopped_the_grants_is_caught() -> None:
    out = simulate(steady(grant_read=2.95))  # before the grant of 3.0: g is 2.802, not 2.902
    assert out.violated and out.granted == pytest.approx(202.802) and out.slave_start == pytest.approx(4.402)


def test_a_wait_of_half_the_lease_is_caught() -> None:
    out = simulate(steady(grant_wait=0.5, lb_wait=0.5))
    assert out.violated and out.slave_start == pytest.approx(3.6)  # down at 4.45 s


def test_a_slave_that_granted_nothing_waits_from_its_own_start() -> None:
    """The master's datagrams never reach the slave: it grants nothing, and the master's lhcd,
    running since before the slave's start (real 0), holds L from its predecessor's last grant, at
    0 (down at 1.55 s). The slave claims at 0.1 s, f = 0.2 s: it starts at max(its start + W(L),
    f + W(B)) = 1.6 s; one that took only f + W(B) (1.05 s) is caught."""
    cut = {"to_slave": ((),) * 100, "claim": 0.1, "fenced": 0.2, "predecessor_grant": 0.0}
    out = simulate(steady(**cut))
    assert not out.violated and out.ack_renewals == 0 and out.last_lease == "the slave's predecessor"
    assert out.granted == 200.0 and out.master_down == pytest.approx(1.55) and out.slave_start == pytest.approx(1.6)
    broken = simulate(steady(**cut, start_as_grant=False))
    assert broken.violated and broken.slave_start == pytest.approx(1.05)


def test_a_slave_stops_granting_once_the_master_says_it_has_not_heard_it() -> None:
    """The way to the master is cut from 2.0 s: the master's datagrams say so (0.098 s of silence at
    2.0 s, 0.198 at 2.1, 0.298 at 2.2 >= HEARTBEAT_TIMEOUT / 2), so the slave's last grant
    (computed at 2.2 s) names the heartbeat of 2.1 s, received at 2.102 s; the master's lease is
    from the last acknowledgement it got (heartbeat 1.8 s: down at 2.8 + 0.05 + 0.5 = 3.35 s)."""
    out = simulate(steady(cuts=((TO_MASTER, 2.0, 10.0),)))
    assert not out.violated and out.granted == pytest.approx(202.102)
    assert out.master_down == pytest.approx(3.35) and out.slave_start == pytest.approx(3.95)  # f + W(B)


def shipped(*lhcds: Lhcd, **changes: object) -> Scenario:
    """The shipped defaults (LeaseTimes.for_config(1.5, 0.5, 1.0)): L = 1.5, D = 1, B = 0.5,
    H = 0.5, m = 0.075, rho = 0.01 (W(L) = 2.117, W(B) = 1.097), exact clocks, beats every 100 ms,
    2 ms each way. The master's datagrams never reach the slave, which starts at 0 and grants
    nothing (g = 0); it claims at 1.0 s, f = 1.05 s: it starts at f + W(B) = 2.147 s."""
    sc = steady(
        times=LeaseTimes.for_config(1.5, 0.5, 1.0),
        heartbeat_timeout=1.0,
        claim=1.0,
        fenced=1.05,
        check=0.075,
        to_slave=((),) * 100,
        lb_reads=(),
        lhcds=lhcds,
    )
    return dataclasses.replace(sc, **changes)  # type: ignore[arg-type]


def test_a_first_start_just_before_the_fence_holds_b_from_it_and_the_old_rule_is_caught() -> None:
    """The previous helper's counterexample: the master's first lhcd starts at 0.95 s, between the
    slave's g (0: it granted nothing) and f; its first read (begun then) is not MAINT yet. The
    start lease and the read's renewal both run to 0.95 + B = 1.45 s: the guard looks at 1.475 s,
    down at 1.975 s. With the old start lease, L from the start, it runs to 2.45 s: the service
    still runs when the slave starts at 2.147 s."""
    out = simulate(shipped(Lhcd(0.95)))
    assert not out.violated and out.last_lease == "the start" and out.granted == 200.0
    assert out.master_down == pytest.approx(1.975) and out.slave_start == pytest.approx(2.14672, abs=1e-5)
    broken = simulate(shipped(Lhcd(0.95), start_lease_full=True))
    assert broken.violated and broken.last_lease == "the start" and math.isinf(broken.master_down)


def test_a_first_start_after_the_fence_is_revoked_by_its_first_read() -> None:
    """Started at 1.2 s, after f: the first read shows MAINT at 1.3 s and revokes the start lease;
    down at 1.8 s (not covered by the argument, the service ran without lhcd: down within m + H
    of that read)."""
    sc = shipped(Lhcd(1.2, took=0.1))
    out = simulate(sc)
    assert not covered(sc, out) and out.last_lease == "the start, revoked"
    assert out.master_down == pytest.approx(1.8) and out.master_down <= sc.ended_by()


def test_a_restart_holds_no_more_than_the_lease_file() -> None:
    """The first lhcd starts at 0.9 s (its start lease, to 1.4 s, goes to the lease file at once;
    its first read renews to 1.4 s too), dies at 1.3 s and is restarted at once: min(1.3 + B, 1.4)
    = 1.4; its first read at 1.3 s (after f) shows MAINT and revokes it: down at 1.8 s."""
    out = simulate(shipped(Lhcd(0.9, died=1.3), Lhcd(1.3)))
    assert out.lease_file and not out.gap_outran and not out.found_ended and not out.violated
    assert out.last_lease == "the start, revoked" and out.master_down == pytest.approx(1.8)


def test_a_first_read_that_gets_no_answer_revokes_the_start_lease() -> None:
    """The scenario reported against the previous lease_guard: the first lhcd starts at 0.9 s and
    its first read gets no answer (at 1.15 s): that revokes its start lease, and the guard looks
    at once: down at 1.65 s, before the slave's start (2.147 s). Had it died at 1.1 s, before that
    answer, its start lease (to 1.4 s) is in the lease file already: the restart at 1.2 s (after
    f) holds min(1.2 + B, 1.4) = 1.4 s, not 1.7 s, and its own first read, unanswered at 1.3 s,
    revokes it: down at 1.8 s. A first start at 1.2 s is revoked the same way, at 1.45 s."""
    out = simulate(shipped(Lhcd(0.9, 0.25, answers=False, died=1.3), Lhcd(1.3, 0.25, answers=False)))
    assert not out.violated and out.last_lease == "the start, revoked" and out.master_down == pytest.approx(1.65)
    sc = shipped(Lhcd(0.9, 0.25, answers=False, died=1.1), Lhcd(1.2, 0.1, answers=False))
    out = simulate(sc)
    assert out.lease_file and not out.found_ended and covered(sc, out) and not out.violated
    assert out.last_lease == "the start, revoked" and out.master_down == pytest.approx(1.8)
    sc = shipped(Lhcd(1.2, 0.25, answers=False))
    out = simulate(sc)
    assert not covered(sc, out) and out.last_lease == "the start, revoked"
    assert out.master_down == pytest.approx(1.95) and out.master_down <= sc.ended_by()


def test_a_restart_whose_lease_ends_during_its_first_read() -> None:
    """The slave grants (both ways up) until its claim: its last grant names the master's
    heartbeat of 0.8 s (g = 0.802 s; the slave starts at g + W(L) = 2.919 s), and the first
    lhcd's lease runs to 0.8 + L = 2.3 s, in the lease file (exact). It dies at 2.25 s and is
    restarted at once: min(2.25 + B, 2.3) = 2.3 s, not ended yet, so its guard does not wait for
    its first read (begun at 2.25 s, after f, taking its timeout, B / 2): it looks at 2.325 s,
    down at 2.825 s. With the file lagging (written every PERSIST_EVERY: 2.2 s), the restart
    finds its lease ended and its guard waits for that read, which revokes at 2.5 s: down at
    3.0 s, after the slave's start. That is the window lease_guard.py documents, and the property
    leaves out exactly that."""
    sc = shipped(Lhcd(0.0, died=2.25), Lhcd(2.25, took=0.25), to_slave=((0.002,),) * 100, persist_every=0.0)
    out = simulate(sc)
    assert out.lease_file and not out.found_ended and covered(sc, out) and out.granted == pytest.approx(200.802)
    assert not out.violated and out.last_lease == "the lease file" and out.master_down == pytest.approx(2.825)
    lagging = dataclasses.replace(sc, persist_every=PERSIST_EVERY)
    out = simulate(lagging)
    assert out.found_ended and out.waited and not out.gap_outran and not covered(lagging, out)
    assert out.violated and out.master_down == pytest.approx(3.0) and out.master_down <= lagging.ended_by()


def test_a_restart_that_found_its_lease_ended_waits_for_its_first_read() -> None:
    """The first lhcd starts at 0 (the lease file: 0.5 s; its first read renews no further) and
    dies at 0.3 s; restarted at 0.51 s, before its guard would have looked (0.525 s), it finds its
    lease ended: its guard waits for its first read, begun then (before f), which renews to
    0.51 + B = 1.01 s after 0.25 s: the guard looks at 1.035 s, down at 1.535 s (a respawn on a
    healthy pair keeps its service). Had that read got no answer, it revokes at 0.76 s: down at
    1.26 s. Either way before the slave's start (f + W(B) = 2.147 s)."""
    for answers, down, last in ((True, 1.535, "a read"), (False, 1.26, "the start, revoked")):
        sc = shipped(Lhcd(0.0, died=0.3), Lhcd(0.51, 0.25, answers=answers))
        out = simulate(sc)
        assert out.found_ended and out.waited and not out.gap_outran and covered(sc, out)
        assert not out.violated and out.last_lease == last and out.master_down == pytest.approx(down)
